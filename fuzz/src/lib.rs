//! Fuzz harnesses of raida. Each `fuzz_targets/<name>.rs` is one line calling a function
//! here, so that the stable test suites (`crates/*/tests/fuzz_corpus.rs`) can replay the
//! committed seeds through exactly the same code without cargo-fuzz: they include these
//! files with `#[path]`.

pub mod channel;
pub mod common;
pub mod proto;
pub mod receiver;
pub mod server;
pub mod store;
pub mod transfer;
