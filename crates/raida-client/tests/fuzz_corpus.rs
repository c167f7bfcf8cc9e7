//! Replays the committed fuzz seeds (`fuzz/corpus/<target>/seed-*`) of the transfer and receiver targets
//! through the very harness code the fuzzer runs (included from `fuzz/src`), so that CI,
//! which has no cargo-fuzz, checks that no seed input panics.

// the fuzz crate uses these modules from its targets: `pub` there
#[allow(unreachable_pub)]
#[path = "../../../fuzz/src/common.rs"]
mod common;
#[allow(unreachable_pub)]
#[path = "../../../fuzz/src/receiver.rs"]
mod receiver;
#[allow(unreachable_pub)]
#[path = "../../../fuzz/src/transfer.rs"]
mod transfer;

use std::path::PathBuf;

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus")
}

#[test]
fn transfer_wire_seeds() {
    let n = common::replay_seeds(&corpus(), "transfer_wire", transfer::transfer_wire);
    assert!(n >= 10, "only {n} seeds");
}

#[test]
fn receiver_alert_seeds() {
    let n = common::replay_seeds(&corpus(), "receiver_alert", receiver::receiver_alert);
    assert!(n >= 10, "only {n} seeds");
}

#[test]
fn transfer_names_seeds() {
    let n = common::replay_seeds(&corpus(), "transfer_names", transfer::transfer_names);
    assert!(n >= 10, "only {n} seeds");
}
