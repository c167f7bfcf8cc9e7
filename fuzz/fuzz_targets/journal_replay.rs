//! Journal segments replayed by Store::open (recovery).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| raida_fuzz::store::journal_replay(data));
