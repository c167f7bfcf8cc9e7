//! Replays the committed fuzz seeds (`fuzz/corpus/<target>/seed-*`) of the channel targets
//! through the very harness code the fuzzers run (included from `fuzz/src`), so that CI,
//! which has no cargo-fuzz, checks that no seed input panics.

// the fuzz crate uses these modules from its targets: `pub` there
#[allow(unreachable_pub)]
#[path = "../../../fuzz/src/channel.rs"]
mod channel;
#[allow(unreachable_pub)]
#[path = "../../../fuzz/src/common.rs"]
mod common;

use std::path::PathBuf;

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus")
}

#[test]
fn channel_handshake_seeds() {
    common::replay_seeds(&corpus(), "channel_handshake", channel::channel_handshake);
}

#[test]
fn channel_session_seeds() {
    common::replay_seeds(&corpus(), "channel_session", channel::channel_session);
}
