//! lockers.bin, tokens.bin, raida_secrets.bin and identity coin files loaded by Store.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| raida_fuzz::store::store_tables(data));
