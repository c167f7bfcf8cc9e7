//! Conversations with ServerState::handle over an in-memory ledger (every command).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| raida_fuzz::server::server_handle(data));
