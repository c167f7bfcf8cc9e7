//! Every directory of a data directory is mode 0700 (PROTOCOL.md section 7): after init,
//! after open (wider modes are tightened) and for directories the store creates later.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use raida_proto::IdentityCoin;
use raida_store::{init_data_dir, InitOptions, Store};

/// Every directory under `dir`, `dir` included (symbolic links not followed).
fn all_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    for ent in fs::read_dir(dir).unwrap() {
        let ent = ent.unwrap();
        if ent.file_type().unwrap().is_dir() {
            out.extend(all_dirs(&ent.path()));
        }
    }
    out
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn assert_private(dir: &Path) -> usize {
    let dirs = all_dirs(dir);
    for d in &dirs {
        assert_eq!(mode(d), 0o700, "{}", d.display());
    }
    dirs.len()
}

fn small_init(dir: &Path) {
    // the usual umask: without the defence directories come out 0755
    // SAFETY: umask only sets this process's file creation mask.
    unsafe { libc::umask(0o022) };
    let mut opts = InitOptions::new(0);
    opts.pages = 300; // Data/<dn>/00 and Data/<dn>/01
    opts.denominations = vec![-8, 0, 1];
    init_data_dir(dir, opts).unwrap();
}

#[test]
fn every_directory_is_private_after_init() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("data");
    small_init(&dir);
    // data, Data, 3 denominations x 2 page folders, coins, Keys, Inbox, Journal
    assert_eq!(assert_private(&dir), 1 + 1 + 3 + 6 + 4);

    // an existing empty directory given to init is tightened too
    let empty = d.path().join("empty");
    fs::create_dir(&empty).unwrap();
    fs::set_permissions(&empty, fs::Permissions::from_mode(0o755)).unwrap();
    let mut opts = InitOptions::new(0);
    opts.pages = 1;
    opts.denominations = vec![0];
    init_data_dir(&empty, opts).unwrap();
    assert_private(&empty);
}

#[test]
fn wider_modes_are_tightened_at_open_and_new_directories_are_private() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("data");
    small_init(&dir);
    // an older version (or an operator) left everything world-readable
    for p in all_dirs(&dir) {
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    }
    fs::remove_dir(dir.join("coins")).unwrap();
    fs::remove_dir(dir.join("Journal")).unwrap();
    let store = Store::open(&dir).unwrap();
    assert_private(&dir);
    // folders the store creates later
    store.write_identity_coin(IdentityCoin((1, 5).into()), 6, &[[3; 16]; 25]).unwrap();
    assert!(dir.join("coins").is_dir() && dir.join("Journal").is_dir());
    assert_private(&dir);
}
