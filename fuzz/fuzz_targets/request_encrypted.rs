//! Harness-encrypted requests (every EN) through validate_request to the command parsers.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| raida_fuzz::proto::request_encrypted(data));
