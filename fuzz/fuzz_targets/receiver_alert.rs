//! The key receiver's rules before any fetch (`raida_client::rke::plan_alert`) on any 42 payload.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| raida_fuzz::receiver::receiver_alert(data));
