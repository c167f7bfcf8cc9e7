//! Replays the committed fuzz seeds (`fuzz/corpus/<target>/seed-*`) of the data-directory
//! targets through the very harness code the fuzzers run (included from `fuzz/src`), so
//! that CI, which has no cargo-fuzz, checks that no seed input panics.

// the fuzz crate uses these modules from its targets: `pub` there
#[allow(unreachable_pub)]
#[path = "../../../fuzz/src/common.rs"]
mod common;
#[allow(unreachable_pub)]
#[path = "../../../fuzz/src/store.rs"]
mod store;

use std::path::PathBuf;

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus")
}

#[test]
fn journal_replay_seeds() {
    common::replay_seeds(&corpus(), "journal_replay", store::journal_replay);
}

#[test]
fn store_tables_seeds() {
    common::replay_seeds(&corpus(), "store_tables", store::store_tables);
}

#[test]
fn config_toml_seeds() {
    common::replay_seeds(&corpus(), "config_toml", store::config_toml);
}
