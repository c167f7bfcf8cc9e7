//! Inbox/ files read by Inbox::list and Inbox::take.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| raida_fuzz::server::inbox_files(data));
