//! Replays the committed fuzz seeds (`fuzz/corpus/<target>/seed-*`) of the server targets
//! through the very harness code the fuzzers run (included from `fuzz/src`), so that CI,
//! which has no cargo-fuzz, checks that no seed input panics.

// the fuzz crate uses these modules from its targets: `pub` there
#[allow(unreachable_pub)]
#[path = "../../../fuzz/src/common.rs"]
mod common;
#[allow(unreachable_pub)]
#[path = "../../../fuzz/src/proto.rs"]
mod proto;
#[allow(unreachable_pub)]
#[path = "../../../fuzz/src/server.rs"]
mod server;

use std::path::PathBuf;

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus")
}

#[test]
fn server_handle_seeds() {
    common::replay_seeds(&corpus(), "server_handle", server::server_handle);
}

#[test]
fn pending_keys_seeds() {
    common::replay_seeds(&corpus(), "pending_keys", server::pending_keys);
}

#[test]
fn inbox_files_seeds() {
    common::replay_seeds(&corpus(), "inbox_files", server::inbox_files);
}
