//! Channel handshake hello/reply parsing (all modes) and stream frames.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| raida_fuzz::channel::channel_handshake(data));
