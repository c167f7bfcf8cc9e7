//! Crash-safe file replacement: temp file in the same directory, fsync, rename, fsync the
//! directory. A reader (or a restart after a crash) sees either the old or the new file,
//! never a mix.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A temp file name next to `path` that no other writer in this or another process uses.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    parent_of(path).join(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

/// fsync a directory so that a rename, create or unlink in it is durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `bytes` to a new temp file next to `path` and fsyncs it, renaming it over `path`
/// without fsyncing the directory. Used by the page checkpoint, which fsyncs each directory once.
pub(crate) fn write_replace_no_dir_sync(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let tmp = temp_path(path);
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_data()?;
        drop(f);
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Atomically and durably replaces (or creates) `path` with `bytes`, file mode `mode`
/// (e.g. 0o600): temp file in the same directory + fsync + rename + fsync of the directory.
/// When it returns Ok the new content survives a crash; a crash before leaves the old content.
pub fn write_file_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    write_replace_no_dir_sync(path, bytes, mode)?;
    fsync_dir(parent_of(path))
}

/// Removes `path` and fsyncs its directory, so the removal survives a crash.
pub fn remove_file_durable(path: &Path) -> io::Result<()> {
    fs::remove_file(path)?;
    fsync_dir(parent_of(path))
}

/// Creates `dir` (and parents) and fsyncs the new directory entries.
pub fn create_dir_durable(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent = parent_of(dir).to_path_buf();
    if !parent.is_dir() {
        create_dir_durable(&parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    }
    fsync_dir(&parent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_and_remove() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.bin");
        write_file_atomic(&p, b"one", 0o600).unwrap();
        write_file_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(d.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temp file left");
        remove_file_durable(&p).unwrap();
        assert!(!p.exists());
        assert!(remove_file_durable(&p).is_err());
    }
}
