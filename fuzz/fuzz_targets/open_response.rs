//! The client's verification of answers (PendingReply::open) for every EN.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| raida_fuzz::proto::open_response(data));
