//! TCP framing (request_len) over streams of built and raw requests.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| raida_fuzz::proto::tcp_framing(data));
