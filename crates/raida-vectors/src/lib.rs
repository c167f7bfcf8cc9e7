//! Test support shared by the workspace's test suites: loads the independent test
//! vectors from the repository's own copy in `vectors/` (the originals live in
//! `../shared/vectors/`; `tests/shared_copy.rs` says when the two differ) and reads
//! their fields. A missing folder or file is a loud failure, never a skip.

use std::path::PathBuf;

pub use serde_json::Value;

/// The workspace root.
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The vectors folder: `$RAIDA_VECTORS` if set, else `<workspace>/vectors` (the
/// repository's copy of `../shared/vectors`).
pub fn dir() -> PathBuf {
    if let Ok(d) = std::env::var("RAIDA_VECTORS") {
        return PathBuf::from(d);
    }
    workspace().join("vectors")
}

/// The repository's copy of the specification, `docs/PROTOCOL.md`.
pub fn protocol() -> PathBuf {
    workspace().join("docs/PROTOCOL.md")
}

/// The originals beside the repository (`../shared`), when they are there.
pub fn shared() -> PathBuf {
    workspace().join("../shared")
}

/// Every case of one vector file. Panics with a clear message if it cannot be read.
pub fn load(file: &str) -> Vec<Value> {
    let path = dir().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "test vectors missing: cannot read {} ({e}); they live in the repository's vectors/ folder",
            path.display()
        )
    });
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: bad JSON: {e}", path.display()));
    match v {
        Value::Array(cases) => {
            assert!(!cases.is_empty(), "{}: no cases", path.display());
            cases
        }
        _ => panic!("{}: not a JSON list", path.display()),
    }
}

/// Cases of one kind.
pub fn cases(file: &str, kind: &str) -> Vec<Value> {
    let all: Vec<Value> = load(file).into_iter().filter(|c| c["kind"] == kind).collect();
    assert!(!all.is_empty(), "{file}: no cases of kind {kind}");
    all
}

/// Case name, for assertion messages.
pub fn name(case: &Value) -> String {
    case["name"].as_str().unwrap_or("?").to_string()
}

/// A hex string field as bytes (panics with the field name if absent or malformed).
pub fn bytes(v: &Value) -> Vec<u8> {
    let s = v.as_str().unwrap_or_else(|| panic!("expected a hex string, got {v}"));
    hex::decode(s).unwrap_or_else(|e| panic!("bad hex {s}: {e}"))
}

/// A hex string field as bytes, or None for JSON null.
pub fn opt_bytes(v: &Value) -> Option<Vec<u8>> {
    if v.is_null() {
        None
    } else {
        Some(bytes(v))
    }
}

/// A fixed-size hex field.
pub fn arr<const N: usize>(v: &Value) -> [u8; N] {
    let b = bytes(v);
    b.as_slice().try_into().unwrap_or_else(|_| panic!("expected {N} bytes, got {} ({v})", b.len()))
}

pub fn u64_(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("expected an unsigned integer, got {v}"))
}

pub fn i64_(v: &Value) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("expected an integer, got {v}"))
}
