//! Crash-safe file replacement: temp file in the same directory, fsync, rename, fsync the
//! directory. A reader (or a restart after a crash) sees either the old or the new file,
//! never a mix.
//!
//! Also: [`DirSync`], the group commit of one directory's fsync (many renames or unlinks,
//! one fsync), and [`create_private_dir`] / [`tighten_dir_mode`], which keep every directory
//! of a data directory at mode 0700 (PROTOCOL.md section 7).

use std::collections::VecDeque;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::{Condvar, Mutex, MutexGuard};

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A temp file name next to `path` that no other writer in this or another process uses
/// (recognised by [`is_temp_file_name`]).
pub fn temp_path(path: &Path) -> PathBuf {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    parent_of(path).join(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

/// fsync a directory so that a rename, create or unlink in it is durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Whether `name` is a temporary file name made by this module (`.<name>.<pid>.<n>.tmp`):
/// one left in a directory after a crash mid-write is garbage and may be removed at open.
pub fn is_temp_file_name(name: &str) -> bool {
    name.len() > 5 && name.starts_with('.') && name.ends_with(".tmp")
}

/// Writes `bytes` to a new temp file next to `path` and fsyncs it, renaming it over `path`
/// without fsyncing the directory: the caller makes the rename durable, once for many files
/// (the page checkpoint fsyncs each directory once; pending keys go through a [`DirSync`]).
pub fn write_replace_no_dir_sync(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
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

/// Mode of every directory of a data directory (PROTOCOL.md section 7): a key id alone can
/// fetch a pending key part that names no receiver, so other local users must not even list
/// `Keys/` (or any other directory of the server).
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// Creates `dir` (and missing parents) with mode 0700 and fsyncs each new directory entry.
/// An existing directory is tightened to 0700 if group or others have any access
/// ([`tighten_dir_mode`], logged). Every directory a data directory gets goes through here.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        tighten_dir_mode(dir)?;
        return Ok(());
    }
    let parent = parent_of(dir).to_path_buf();
    if !parent.is_dir() {
        create_private_dir(&parent)?;
    }
    match DirBuilder::new().mode(PRIVATE_DIR_MODE).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            tighten_dir_mode(dir)?;
            return Ok(());
        }
        Err(e) => return Err(e),
    }
    fsync_dir(&parent)
}

/// Creates `dir` (and parents) like [`create_private_dir`]: mode 0700, entries fsynced.
pub fn create_dir_durable(dir: &Path) -> io::Result<()> {
    create_private_dir(dir)
}

/// Sets `dir` to mode 0700 when group or others have any permission on it (a directory
/// made by an older version or by hand); logs the change. Returns whether it changed.
/// Symbolic links are not followed: a link is not one of our directories.
pub fn tighten_dir_mode(dir: &Path) -> io::Result<bool> {
    let meta = fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Ok(false);
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(false);
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(PRIVATE_DIR_MODE))?;
    tracing::warn!(dir = %dir.display(), "directory mode {mode:04o} tightened to 0700");
    Ok(true)
}

/// Group commit of one directory's fsync.
///
/// Callers rename or unlink entries in the directory, then call [`DirSync::sync`], which
/// returns once those changes are durable, or [`DirSync::sync_then`], which returns at
/// once and runs a continuation when they are. The first caller to find no fsync running
/// (the leader) fsyncs the directory once for every caller registered at that moment;
/// callers that arrive meanwhile are covered by the next fsync. Under load one fsync thus
/// makes the renames and unlinks of many requests durable, and nobody holds a lock of its
/// own across the wait. A leader goes on while continuations wait (nobody else would run
/// them) and runs each covered continuation itself, so that their threads need not sleep
/// and be woken for it.
pub struct DirSync {
    dir: PathBuf,
    st: Mutex<DirSyncState>,
    cond: Condvar,
    /// Held around every fsync; [`DirSync::pause`] holds it to let tests line callers up.
    gate: Mutex<()>,
    fsyncs: AtomicU64,
    waiting: AtomicUsize,
}

/// What runs once a [`DirSync::sync_then`] caller's changes are durable (or with the error
/// of the fsync that should have made them so).
pub type AfterSync = Box<dyn FnOnce(io::Result<()>) + Send>;

#[derive(Default)]
struct DirSyncState {
    /// Tickets handed out (one per `sync` or `sync_then` call).
    requested: u64,
    /// Every ticket up to here has its fsync result.
    done: u64,
    syncing: bool,
    /// Ticket ranges whose fsync failed (kept short: failures are rare).
    failures: VecDeque<(u64, u64, io::ErrorKind, String)>,
    /// Failures dropped from the list above reached up to this ticket; tickets at or
    /// below it answer an error (conservative: a lost failure must never read as success).
    forgotten_through: u64,
    /// Continuations of `sync_then` callers not yet covered, in ticket order.
    after: VecDeque<(u64, AfterSync)>,
}

const DIR_SYNC_FAILURES_KEPT: usize = 64;

thread_local! {
    /// This thread is running continuations as a leader ([`DirSync::sync_then`]).
    static RUNNING_CONTINUATIONS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl DirSync {
    pub fn new(dir: &Path) -> DirSync {
        DirSync {
            dir: dir.to_path_buf(),
            st: Mutex::new(DirSyncState::default()),
            cond: Condvar::new(),
            gate: Mutex::new(()),
            fsyncs: AtomicU64::new(0),
            waiting: AtomicUsize::new(0),
        }
    }

    /// The directory this syncs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Returns once every rename, create or unlink made in the directory before this call
    /// is durable (or the error of the fsync that should have covered it). A caller that
    /// leads while [`DirSync::sync_then`] continuations wait goes on leading until none is
    /// left: under a steady stream of them, a thread that must return soon should fsync
    /// the directory itself ([`fsync_dir`]) instead.
    pub fn sync(&self) -> io::Result<()> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let mut st = self.st.lock();
        st.requested += 1;
        let ticket = st.requested;
        let result = self.wait_or_lead(st, Some(ticket));
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        result
    }

    /// Runs `then` once every rename, create or unlink made in the directory before this
    /// call is durable (or with the error of the fsync that should have covered it).
    /// Returns at once when another caller is fsyncing: that leader runs `then`. Otherwise
    /// this caller leads, and returns when no continuation is left waiting. `then` must
    /// not wait for this directory's sync itself; it may call `sync_then` again (the
    /// leader running it then covers that one too).
    pub fn sync_then(&self, then: AfterSync) {
        let mut st = self.st.lock();
        st.requested += 1;
        let ticket = st.requested;
        st.after.push_back((ticket, then));
        // A continuation that asks for another sync leaves it to the leader running it
        // (which goes on while continuations wait): leading from inside would nest.
        if !st.syncing && !RUNNING_CONTINUATIONS.get() {
            let _ = self.wait_or_lead(st, None);
        }
    }

    /// Waits for `own` ticket (if any) to be covered, leading fsyncs while nobody else
    /// does, and goes on leading while continuations wait for a leader.
    fn wait_or_lead(&self, mut st: MutexGuard<'_, DirSyncState>, own: Option<u64>) -> io::Result<()> {
        loop {
            let own_done = own.is_none_or(|t| st.done >= t);
            if own_done && (st.after.is_empty() || st.syncing) {
                // nothing of ours is left; continuations, if any, are the running leader's
                return own.map_or(Ok(()), |t| Self::result_of(&st, t));
            }
            if st.syncing {
                self.cond.wait(&mut st);
                continue;
            }
            // Leader: every ticket handed out so far belongs to a change made before it
            // was taken, hence before this fsync starts.
            st.syncing = true;
            let from = st.done + 1;
            let target = st.requested;
            let result = MutexGuard::unlocked(&mut st, || {
                let _gate = self.gate.lock();
                let r = fsync_dir(&self.dir);
                self.fsyncs.fetch_add(1, Ordering::Relaxed);
                r
            });
            if let Err(e) = &result {
                tracing::error!(dir = %self.dir.display(), error = %e, "directory fsync failed");
                st.failures.push_back((from, target, e.kind(), e.to_string()));
                if st.failures.len() > DIR_SYNC_FAILURES_KEPT {
                    if let Some((_, to, _, _)) = st.failures.pop_front() {
                        st.forgotten_through = st.forgotten_through.max(to);
                    }
                }
            }
            st.done = target;
            st.syncing = false;
            let mut covered = Vec::new();
            while st.after.front().is_some_and(|(t, _)| *t <= target) {
                if let Some((t, then)) = st.after.pop_front() {
                    covered.push((then, Self::result_of(&st, t)));
                }
            }
            self.cond.notify_all();
            if !covered.is_empty() {
                MutexGuard::unlocked(&mut st, || {
                    let outer = RUNNING_CONTINUATIONS.replace(true);
                    for (then, result) in covered {
                        // one continuation that panics must not lose the others' answers
                        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| then(result))).is_err() {
                            tracing::error!(dir = %self.dir.display(), "a continuation after a directory fsync panicked");
                        }
                    }
                    RUNNING_CONTINUATIONS.set(outer);
                });
            }
        }
    }

    fn result_of(st: &DirSyncState, ticket: u64) -> io::Result<()> {
        if ticket <= st.forgotten_through {
            return Err(io::Error::other("directory fsync failed"));
        }
        match st.failures.iter().find(|(from, to, _, _)| (*from..=*to).contains(&ticket)) {
            Some((_, _, kind, msg)) => Err(io::Error::new(*kind, msg.clone())),
            None => Ok(()),
        }
    }

    /// Directory fsyncs made so far.
    pub fn fsyncs(&self) -> u64 {
        self.fsyncs.load(Ordering::Relaxed)
    }

    /// Callers inside [`DirSync::sync`] right now (waiting or syncing); continuations of
    /// [`DirSync::sync_then`] are not counted.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Continuations of [`DirSync::sync_then`] waiting for their fsync right now.
    pub fn queued(&self) -> usize {
        self.st.lock().after.len()
    }

    /// Holds every directory fsync until the guard drops (tests use it to line up
    /// concurrent callers deterministically; nothing else should).
    #[doc(hidden)]
    pub fn pause(&self) -> parking_lot::MutexGuard<'_, ()> {
        self.gate.lock()
    }
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

    #[test]
    fn temp_names_are_recognised() {
        let t = temp_path(Path::new("/x/0123456789abcdef0123456789abcdef"));
        assert!(is_temp_file_name(&t.file_name().unwrap().to_string_lossy()));
        assert!(!is_temp_file_name("0123456789abcdef0123456789abcdef"));
        assert!(!is_temp_file_name(".tmp"));
    }

    #[test]
    fn dir_sync_batches_waiting_callers() {
        let d = tempfile::tempdir().unwrap();
        let sync = DirSync::new(d.path());
        sync.sync().unwrap();
        assert_eq!(sync.fsyncs(), 1);
        let pause = sync.pause();
        std::thread::scope(|s| {
            for _ in 0..16 {
                s.spawn(|| sync.sync().unwrap());
            }
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while sync.waiting() < 16 && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            drop(pause);
        });
        // the leader blocked by the pause covers itself (and whoever came before it), the
        // next fsync covers everyone who waited
        assert!(sync.fsyncs() <= 3, "{} fsyncs for 16 callers", sync.fsyncs());
    }

    #[test]
    fn a_continuation_that_syncs_again_is_covered_by_the_same_leader_without_nesting() {
        use std::sync::atomic::AtomicUsize;
        use std::sync::Arc;
        static DEPTH: AtomicUsize = AtomicUsize::new(0);
        static DEEPEST: AtomicUsize = AtomicUsize::new(0);
        let d = tempfile::tempdir().unwrap();
        let sync = Arc::new(DirSync::new(d.path()));
        let (tx, rx) = std::sync::mpsc::channel();
        // a chain of 100 continuations, each asking for the next sync from inside the last
        fn chain(sync: Arc<DirSync>, left: u32, tx: std::sync::mpsc::Sender<u32>) {
            let s2 = sync.clone();
            sync.sync_then(Box::new(move |r| {
                let depth = DEPTH.fetch_add(1, Ordering::SeqCst) + 1;
                DEEPEST.fetch_max(depth, Ordering::SeqCst);
                assert!(r.is_ok());
                tx.send(left).unwrap();
                if left > 0 {
                    chain(s2, left - 1, tx);
                }
                DEPTH.fetch_sub(1, Ordering::SeqCst);
            }));
        }
        chain(sync.clone(), 100, tx);
        // all ran before the first call returned, one fsync each, one after the other
        assert_eq!(rx.try_iter().count(), 101);
        assert_eq!(sync.fsyncs(), 101);
        assert_eq!(DEEPEST.load(Ordering::SeqCst), 1, "continuations ran nested");
    }

    #[test]
    fn continuations_run_once_covered_and_by_the_leader() {
        let d = tempfile::tempdir().unwrap();
        let sync = DirSync::new(d.path());
        let (tx, rx) = std::sync::mpsc::channel();
        // no fsync running: this caller leads and runs its own continuation before returning
        let t = tx.clone();
        sync.sync_then(Box::new(move |r| t.send((0, r.is_ok(), std::thread::current().id())).unwrap()));
        assert_eq!(rx.try_recv().unwrap(), (0, true, std::thread::current().id()));
        assert_eq!(sync.fsyncs(), 1);
        // while a leader (a blocking caller) is held in its fsync, 16 continuations queue
        // and return at once; the leader then covers them all with one more fsync
        let pause = sync.pause();
        std::thread::scope(|s| {
            let leader = s.spawn(|| sync.sync().unwrap());
            while sync.waiting() < 1 {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            for i in 1..=16 {
                let t = tx.clone();
                sync.sync_then(Box::new(move |r| t.send((i, r.is_ok(), std::thread::current().id())).unwrap()));
            }
            assert!(rx.try_recv().is_err(), "nothing runs before its fsync");
            drop(pause);
            let leader_thread = leader.thread().id();
            leader.join().unwrap();
            let mut seen: Vec<_> = (0..16).map(|_| rx.recv().unwrap()).collect();
            seen.sort_by_key(|(i, ..)| *i);
            assert!(seen.iter().all(|(_, ok, thread)| *ok && *thread == leader_thread), "{seen:?}");
            assert_eq!(seen.iter().map(|(i, ..)| *i).collect::<Vec<_>>(), (1..=16).collect::<Vec<_>>());
        });
        assert_eq!(sync.fsyncs(), 3, "one fsync for the leader, one for the 16 continuations");
    }

    #[test]
    fn dir_sync_reports_a_failed_fsync() {
        let d = tempfile::tempdir().unwrap();
        let sync = DirSync::new(&d.path().join("missing"));
        assert!(sync.sync().is_err());
        assert!(sync.sync().is_err());
    }

    #[test]
    fn private_dirs() {
        let d = tempfile::tempdir().unwrap();
        let deep = d.path().join("a/b/c");
        create_private_dir(&deep).unwrap();
        for p in [d.path().join("a"), d.path().join("a/b"), deep.clone()] {
            assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o7777, 0o700, "{}", p.display());
        }
        fs::set_permissions(&deep, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(tighten_dir_mode(&deep).unwrap());
        assert!(!tighten_dir_mode(&deep).unwrap());
        fs::set_permissions(&deep, fs::Permissions::from_mode(0o750)).unwrap();
        create_private_dir(&deep).unwrap();
        assert_eq!(fs::metadata(&deep).unwrap().permissions().mode() & 0o7777, 0o700);
    }
}
