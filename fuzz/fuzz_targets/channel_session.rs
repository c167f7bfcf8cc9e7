//! A channel Session against a fuzzer-driven peer (records, messages, rekeys).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| raida_fuzz::channel::channel_session(data));
