//! Keys/ files read by PendingKeys::open at server start.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| raida_fuzz::server::pending_keys(data));
