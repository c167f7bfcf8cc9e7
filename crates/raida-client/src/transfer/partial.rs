//! The receiver's partial files: `DIR/.raida-partial/`, a directory that only the receiving
//! user can write (created with mode 0700; an existing one is used only when it is a real
//! directory, not a symlink, owned by us, mode 0700). Every file in it is opened relative
//! to that one directory descriptor (openat), never through a path another user could
//! swap: created O_CREAT | O_EXCL | O_NOFOLLOW with mode 0600, and adopted for a resume
//! only when it is a regular file of ours, mode 0600, with one link. Without this, another
//! local user who can write to DIR could plant a file under the predictable partial name,
//! have it adopted and hard-linked into place, and rewrite the delivered file after the
//! SHA-256 check.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags};

use super::TransferError;

/// The partial files' directory inside the output directory.
pub const PARTIAL_DIR: &str = ".raida-partial";

/// Permission bits of the directory and of each partial file.
const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;

/// The checked partial directory and the output directory, both held open.
pub(super) struct PartialDir {
    out: OwnedFd,
    dir: OwnedFd,
    path: PathBuf,
    out_path: PathBuf,
}

/// The folder `name` in `dir`, opened without following a link; created (mode 0777 less
/// the umask, as any folder) when missing and `create`.
fn open_or_make(dir: &OwnedFd, name: &str, create: bool) -> std::io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let refused = |name: &str| {
        std::io::Error::other(format!(
            "{} is a symbolic link or a file, not a folder (links are never followed)",
            super::escape(name)
        ))
    };
    match rustix::fs::openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => return Ok(fd),
        Err(rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR) => return Err(refused(name)),
        Err(rustix::io::Errno::NOENT) if create => {}
        Err(e) => return Err(e.into()),
    }
    match rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o777)) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
        Err(e) => return Err(e.into()),
    }
    rustix::fs::openat(dir, name, flags, Mode::empty()).map_err(|e| match e {
        rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR => refused(name),
        e => e.into(),
    })
}

fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

impl PartialDir {
    /// Open (creating it when missing) `out/.raida-partial` and check it. Err: one line
    /// naming the directory, what is wrong and what to do.
    pub(super) fn open(out: &Path) -> Result<PartialDir, TransferError> {
        let path = out.join(PARTIAL_DIR);
        let bad = |why: String| {
            TransferError::Io(format!(
                "{}: cannot hold partial files: {why}; remove it (raida receive creates it, mode 0700)",
                path.display()
            ))
        };
        let out_fd = rustix::fs::open(out, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| TransferError::Io(format!("{}: {e}", out.display())))?;
        let created = match rustix::fs::mkdirat(&out_fd, PARTIAL_DIR, Mode::from_raw_mode(DIR_MODE)) {
            Ok(()) => true,
            Err(rustix::io::Errno::EXIST) => false,
            Err(e) => return Err(TransferError::Io(format!("{}: cannot create it: {e}", path.display()))),
        };
        // O_NOFOLLOW | O_DIRECTORY: a symlink or a file planted under the name is refused
        let dir = rustix::fs::openat(
            &out_fd,
            PARTIAL_DIR,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR => {
                bad("it is not a directory (a symlink or a file)".into())
            }
            e => bad(e.to_string()),
        })?;
        if created {
            // the umask may have taken bits away; nobody else could have touched it yet
            // (the name is ours since mkdir succeeded, and the mode never grants more)
            rustix::fs::fchmod(&dir, Mode::from_raw_mode(DIR_MODE)).map_err(|e| bad(e.to_string()))?;
        }
        let st = rustix::fs::fstat(&dir).map_err(|e| bad(e.to_string()))?;
        if st.st_uid != euid() {
            return Err(bad(format!("it belongs to uid {}, not to us", st.st_uid)));
        }
        let mode = st.st_mode & 0o7777;
        if mode != DIR_MODE {
            return Err(bad(format!("its mode is {mode:o}, not 700")));
        }
        Ok(PartialDir { out: out_fd, dir, path, out_path: out.to_path_buf() })
    }

    /// Where a partial file is, for messages.
    pub(super) fn path_of(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// The output directory, for messages.
    pub(super) fn out_path(&self) -> &Path {
        &self.out_path
    }

    /// A new partial file: O_EXCL | O_NOFOLLOW, mode 0600.
    pub(super) fn create(&self, name: &str) -> std::io::Result<File> {
        let fd = rustix::fs::openat(
            &self.dir,
            name,
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(FILE_MODE),
        )?;
        Ok(File::from(fd))
    }

    /// The existing partial file `name`, when it may be resumed: a regular file (not a
    /// link: O_NOFOLLOW), ours, mode 0600, one link, at most `max_len` bytes. Anything else
    /// under the name is removed (it is in our own directory) and None returned.
    pub(super) fn adopt(&self, name: &str, max_len: u64) -> Option<File> {
        let opened = rustix::fs::openat(
            &self.dir,
            name,
            OFlags::RDWR | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        );
        let fd = match opened {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return None,
            Err(_) => {
                self.remove(name);
                return None;
            }
        };
        let f = File::from(fd);
        let ok = f.metadata().is_ok_and(|m| {
            m.file_type().is_file()
                && m.uid() == euid()
                && m.mode() & 0o7777 == FILE_MODE
                && m.nlink() == 1
                && m.len() <= max_len
        });
        if ok {
            Some(f)
        } else {
            tracing::warn!(partial = %self.path_of(name).display(), "a partial file that is not ours alone was removed");
            drop(f);
            self.remove(name);
            None
        }
    }

    /// Remove a partial file (best effort).
    pub(super) fn remove(&self, name: &str) {
        let _ = rustix::fs::unlinkat(&self.dir, name, AtFlags::empty());
    }

    /// Make the partial file `name` the output file `dest` (a checked relative path; its
    /// folders are created): a rename when overwriting, else a hard link (never replaces a
    /// file that appeared meanwhile) and the partial name removed; then the folder holding
    /// it is synced.
    pub(super) fn place(&self, name: &str, dest: &str, overwrite: bool) -> std::io::Result<()> {
        let (parent, leaf) = self.parent_of(dest, true)?.ok_or_else(|| std::io::Error::other("no parent folder"))?;
        if overwrite {
            rustix::fs::renameat(&self.dir, name, &parent, leaf)?;
        } else {
            rustix::fs::linkat(&self.dir, name, &parent, leaf, AtFlags::empty())?;
            self.remove(name);
        }
        // the new name survives a crash once the directory is on disk
        let _ = rustix::fs::fsync(&parent);
        Ok(())
    }

    /// Does `dest` (a checked relative path) exist in the output directory (any kind, a
    /// dangling link included)? Err: a folder on the way is a link or a file.
    pub(super) fn dest_exists(&self, dest: &str) -> std::io::Result<bool> {
        Ok(match self.parent_of(dest, false)? {
            Some((parent, leaf)) => rustix::fs::statat(&parent, leaf, AtFlags::SYMLINK_NOFOLLOW).is_ok(),
            None => false,
        })
    }

    /// The file `dest` (a checked relative path) already in the output directory, open for
    /// reading, when it is a regular file (not a link: O_NOFOLLOW, also on the way) of
    /// exactly `size` bytes; None otherwise.
    pub(super) fn open_existing(&self, dest: &str, size: u64) -> std::io::Result<Option<File>> {
        let Some((parent, leaf)) = self.parent_of(dest, false)? else { return Ok(None) };
        let fd = match rustix::fs::openat(
            &parent,
            leaf,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(_) => return Ok(None),
        };
        let f = File::from(fd);
        let m = f.metadata()?;
        Ok((m.file_type().is_file() && m.len() == size).then_some(f))
    }

    /// Create the folder `path` (a checked relative path) and the folders above it; one
    /// that exists already is used when it is a real folder (not a link).
    pub(super) fn make_dir(&self, path: &str) -> std::io::Result<()> {
        let (parent, leaf) = self.parent_of(path, true)?.ok_or_else(|| std::io::Error::other("no parent folder"))?;
        drop(open_or_make(&parent, leaf, true)?);
        Ok(())
    }

    /// The folder holding `path` (a relative path already checked by `check_path`), opened
    /// one component at a time from the output directory with O_NOFOLLOW | O_DIRECTORY, so
    /// that a symbolic link (or a file) planted on the way is refused, never followed: the
    /// walk cannot leave the output directory. Missing folders are created when `create`,
    /// else None. Returns the folder and the last component.
    fn parent_of<'a>(&self, path: &'a str, create: bool) -> std::io::Result<Option<(OwnedFd, &'a str)>> {
        let (dirs, leaf) = match path.rsplit_once('/') {
            Some((dirs, leaf)) => (Some(dirs), leaf),
            None => (None, path),
        };
        let mut cur = rustix::io::dup(&self.out)?;
        for component in dirs.into_iter().flat_map(|d| d.split('/')) {
            match open_or_make(&cur, component, create) {
                Ok(next) => cur = next,
                Err(e) if !create && e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        Ok(Some((cur, leaf)))
    }

    /// The end of a session: remove the directory when empty (nothing to resume).
    pub(super) fn finish(&self) {
        let _ = rustix::fs::unlinkat(&self.out, PARTIAL_DIR, AtFlags::REMOVEDIR);
    }
}
