//! Replays the committed fuzz seeds (`fuzz/corpus/<target>/seed-*`) of the protocol-core
//! targets through the very harness code the fuzzers run (included from `fuzz/src`), so
//! that CI, which has no cargo-fuzz, checks that no seed input panics.

// the fuzz crate uses these modules from its targets: `pub` there
#[allow(unreachable_pub)]
#[path = "../../../fuzz/src/common.rs"]
mod common;
#[allow(unreachable_pub)]
#[path = "../../../fuzz/src/proto.rs"]
mod proto;

use std::path::PathBuf;

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus")
}

#[test]
fn validate_request_seeds() {
    common::replay_seeds(&corpus(), "validate_request", proto::validate_raw);
}

#[test]
fn request_encrypted_seeds() {
    common::replay_seeds(&corpus(), "request_encrypted", proto::request_encrypted);
}

#[test]
fn command_payloads_seeds() {
    common::replay_seeds(&corpus(), "command_payloads", proto::all_command_parsers);
}

#[test]
fn mailbox_payloads_seeds() {
    common::replay_seeds(&corpus(), "mailbox_payloads", proto::mailbox_payloads);
}

#[test]
fn open_response_seeds() {
    common::replay_seeds(&corpus(), "open_response", proto::open_response);
}

#[test]
fn tcp_framing_seeds() {
    common::replay_seeds(&corpus(), "tcp_framing", proto::tcp_framing);
}

#[test]
fn relay_hello_seeds() {
    common::replay_seeds(&corpus(), "relay_hello", proto::relay_hello);
}
