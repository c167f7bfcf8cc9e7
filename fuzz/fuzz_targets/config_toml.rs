//! config.toml text through Config::from_toml and a save/load round trip.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| raida_fuzz::store::config_toml(data));
