//! Every command payload parser and its round trip on the same bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| raida_fuzz::proto::all_command_parsers(data));
