//! The transfer's wire messages (offer, start, done, answers) and the file-name check.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| raida_fuzz::transfer::transfer_wire(data));
