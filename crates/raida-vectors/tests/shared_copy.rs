//! The repository keeps its own copies of `../shared/PROTOCOL.md` (as `docs/PROTOCOL.md`)
//! and `../shared/vectors/` (as `vectors/`), so that a fresh clone with nothing beside it
//! passes its tests. When `../shared` is there (a developer's checkout, CI), the copies must
//! equal the originals byte for byte: a difference means the specification or a vector was
//! amended and the copy (and the code) must follow.

use std::collections::BTreeSet;
use std::path::Path;

fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn the_copies_equal_the_shared_originals() {
    let shared = raida_vectors::shared();
    if !shared.join("PROTOCOL.md").is_file() {
        eprintln!("{} is not there: nothing to compare (a clone on its own uses its copies)", shared.display());
        return;
    }
    let mut stale = Vec::new();
    let ours = std::fs::read(raida_vectors::protocol()).expect("docs/PROTOCOL.md");
    if ours != std::fs::read(shared.join("PROTOCOL.md")).expect("../shared/PROTOCOL.md") {
        stale.push("docs/PROTOCOL.md".to_string());
    }
    let (theirs_dir, ours_dir) = (shared.join("vectors"), raida_vectors::dir());
    let (theirs, mine) = (names(&theirs_dir), names(&ours_dir));
    for missing in theirs.difference(&mine) {
        stale.push(format!("vectors/{missing} (missing)"));
    }
    for extra in mine.difference(&theirs) {
        stale.push(format!("vectors/{extra} (not in ../shared/vectors)"));
    }
    for name in theirs.intersection(&mine) {
        if std::fs::read(theirs_dir.join(name)).ok() != std::fs::read(ours_dir.join(name)).ok() {
            stale.push(format!("vectors/{name}"));
        }
    }
    assert!(
        stale.is_empty(),
        "these copies differ from ../shared: {stale:?}; copy them (cp ../shared/PROTOCOL.md docs/; cp ../shared/vectors/* vectors/) and follow the amendment"
    );
}
