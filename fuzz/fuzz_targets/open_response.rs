//! Fuzz the client's response verification for legacy and modern answers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use raida_proto::client::PendingReply;
use raida_proto::keys::{Key16, Key32};

fuzz_target!(|data: &[u8]| {
    let echo = [data.get(6).copied().unwrap_or(0), data.get(7).copied().unwrap_or(0)];
    let _ = PendingReply::legacy(echo, Some(Key16::new([7; 16])), [0; 16], [0; 16]).open(data);
    let _ = PendingReply::modern(echo, Key32::from_secret([3; 32]), [0; 12]).open(data);
});
