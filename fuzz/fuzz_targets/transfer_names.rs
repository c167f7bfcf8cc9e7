//! The transfer's file-name check and the escape of peer strings.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| raida_fuzz::transfer::transfer_names(data));
