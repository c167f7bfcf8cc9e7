//! Raw bytes through the server's request path (validate_request).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| raida_fuzz::proto::validate_raw(data));
