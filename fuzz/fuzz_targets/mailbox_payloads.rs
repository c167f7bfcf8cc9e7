//! The 46 Leave Alert and 47 Take Alerts decoders (request and answer), their round trips
//! and size rules.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| raida_fuzz::proto::mailbox_payloads(data));
