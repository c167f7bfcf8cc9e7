//! The relay hello of section 10 (decode / encode round trip).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| raida_fuzz::proto::relay_hello(data));
