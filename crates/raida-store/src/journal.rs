//! Write-ahead journal with group commit.
//!
//! `Journal/<generation, 16 lowercase hex>.wal` segments, each created zero-filled (so that
//! an append + fdatasync never has to change the file size or allocate blocks) and
//! fsynced with its directory. A segment is a sequence of batches:
//!
//! ```text
//! count u32 BE (>= 1) | count × record | CRC-32 (zlib) u32 BE of count || records
//! record (22 bytes): DN wire byte | SN u32 BE | AN 16 | MFS 1
//! ```
//!
//! A zero count or a CRC mismatch ends the segment (zero fill or a torn unacknowledged tail).
//! Writers append their batch to a shared buffer while holding the page locks of the pages
//! they changed; then one of the waiting writers (the leader) writes everything buffered and
//! calls fdatasync once for all of them (group commit), the others wait on a condvar.
//!
//! Errors: a transient error of a write (EMFILE, ENFILE, ENOSPC, EINTR, EAGAIN) is retried
//! a few times with a short backoff, each retry rewriting the whole buffer before syncing
//! again. Any other error, or a transient one that outlasts the retries, fails every batch
//! not yet durable, and the journal refuses further batches: the store then undoes those
//! batches in its cache (their callers get the error), and the failed bytes are zeroed on a
//! best-effort basis so that a restart does not replay what the callers were told failed.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::durable::{fsync_dir, remove_file_durable};
use crate::error::{Result, StoreError};
use crate::store::CoinUpdate;
use raida_proto::CoinId;

/// Bytes of one journal record.
pub(crate) const JOURNAL_RECORD_BYTES: usize = 22;
/// Upper bound of records in one batch accepted at replay.
const MAX_BATCH_RECORDS: usize = 1 << 22;

/// Retries of a journal write after a transient error (then the batch fails).
pub(crate) const TRANSIENT_RETRIES: u32 = 5;
/// Sleep before the first retry; doubled before each further one (2+4+8+16+32 = 62 ms at most).
const FIRST_BACKOFF: Duration = Duration::from_millis(2);

/// Errors that say "not now" rather than "broken": out of descriptors (EMFILE, ENFILE), a
/// full disk that a checkpoint or an operator may free (ENOSPC), an interrupted or
/// would-block call (EINTR, EAGAIN).
pub(crate) fn is_transient(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Interrupted
        || matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOSPC | libc::EINTR | libc::EAGAIN))
}

/// A hook through which tests make the store's file operations fail as the operating
/// system would (a given errno). Production never installs one: it exists only behind
/// [`Store::open_with_faults`](crate::Store::open_with_faults). Each method is called just
/// before the real operation; an `Err` is returned in its place.
pub trait FaultInjector: Send + Sync {
    /// Before each write of buffered batches to a journal segment.
    fn journal_write(&self) -> io::Result<()> {
        Ok(())
    }
    /// Before each fdatasync of a journal segment.
    fn journal_sync(&self) -> io::Result<()> {
        Ok(())
    }
    /// Before a page file is opened to be read into the cache.
    fn page_read(&self) -> io::Result<()> {
        Ok(())
    }
}

struct Segment {
    gen: u64,
    file: Arc<File>,
    len: u64,
}

struct State {
    buf: Vec<u8>,
    spare: Vec<u8>,
    appended: u64,
    durable: u64,
    flushing: bool,
    current: Option<Segment>,
    write_off: u64,
    next_gen: u64,
    old_gens: Vec<u64>,
    failed: Option<String>,
    /// A zero-filled segment made ahead of time by the background thread; used only if its
    /// generation is above every segment holding data.
    spare_seg: Option<Segment>,
    preparing: bool,
}

pub(crate) struct Journal {
    dir: PathBuf,
    segment_bytes: u64,
    faults: Option<Arc<dyn FaultInjector>>,
    st: Mutex<State>,
    cond: Condvar,
    /// Set when the current segment is half full (or closed) and there is no spare.
    pub(crate) spare_wanted: AtomicBool,
    /// Bytes made durable since the last rotation (checkpoint trigger).
    pub(crate) bytes_since_rotate: AtomicU64,
    pub(crate) fsyncs: AtomicU64,
    pub(crate) bytes_total: AtomicU64,
    pub(crate) batch_sizes: BatchSizes,
}

/// Upper bounds of the buckets of the batch-size histogram (batches made durable by one
/// fsync); one more bucket counts the larger ones.
pub const BATCH_SIZE_BUCKETS: [u64; 10] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512];

/// Batches per fsync (the group commit size), counted once per fsync, not per request.
#[derive(Default)]
pub(crate) struct BatchSizes {
    /// Per bucket of [`BATCH_SIZE_BUCKETS`], then the larger ones (not cumulative).
    pub(crate) buckets: [AtomicU64; BATCH_SIZE_BUCKETS.len() + 1],
    pub(crate) sum: AtomicU64,
}

impl BatchSizes {
    fn record(&self, batches: u64) {
        let i = BATCH_SIZE_BUCKETS.iter().position(|&b| batches <= b).unwrap_or(BATCH_SIZE_BUCKETS.len());
        if let Some(bucket) = self.buckets.get(i) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        self.sum.fetch_add(batches, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> ([u64; BATCH_SIZE_BUCKETS.len() + 1], u64) {
        (self.buckets.each_ref().map(|b| b.load(Ordering::Relaxed)), self.sum.load(Ordering::Relaxed))
    }
}

pub(crate) fn segment_path(dir: &Path, gen: u64) -> PathBuf {
    dir.join(format!("{gen:016x}.wal"))
}

/// Lists the journal segments in `dir`, oldest first.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let rd = fs::read_dir(dir).map_err(|e| StoreError::io("cannot list", dir, e))?;
    for ent in rd {
        let ent = ent.map_err(|e| StoreError::io("cannot list", dir, e))?;
        let name = ent.file_name();
        let name = name.to_string_lossy();
        if let Some(stem) = name.strip_suffix(".wal") {
            if stem.len() == 16 && stem.bytes().all(|b| b.is_ascii_hexdigit()) {
                if let Ok(g) = u64::from_str_radix(stem, 16) {
                    out.push((g, ent.path()));
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Encodes one batch.
pub(crate) fn encode_batch(out: &mut Vec<u8>, recs: &[CoinUpdate]) {
    let start = out.len();
    out.extend_from_slice(&(recs.len() as u32).to_be_bytes());
    for CoinUpdate { coin, an, mfs } in recs {
        out.push(coin.dn as u8);
        out.extend_from_slice(&coin.sn.to_be_bytes());
        out.extend_from_slice(an);
        out.push(*mfs);
    }
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// Parses the valid batches at the start of a segment, calling `f` for each.
/// Returns the number of bytes of valid batches.
pub(crate) fn parse_segment(bytes: &[u8], mut f: impl FnMut(&[CoinUpdate]) -> Result<()>) -> Result<usize> {
    let mut off = 0usize;
    let mut recs = Vec::new();
    while let Some(hdr) = bytes.get(off..off + 4) {
        let count = u32::from_be_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]) as usize;
        if count == 0 || count > MAX_BATCH_RECORDS {
            break;
        }
        let body_end = off + 4 + count * JOURNAL_RECORD_BYTES;
        let Some(crc_bytes) = bytes.get(body_end..body_end + 4) else {
            break;
        };
        let crc = u32::from_be_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
        if crc32fast::hash(&bytes[off..body_end]) != crc {
            break;
        }
        recs.clear();
        for r in bytes[off + 4..body_end].chunks_exact(JOURNAL_RECORD_BYTES) {
            let mut an = [0u8; 16];
            an.copy_from_slice(&r[5..21]);
            let coin = CoinId { dn: r[0] as i8, sn: u32::from_be_bytes([r[1], r[2], r[3], r[4]]) };
            recs.push(CoinUpdate { coin, an, mfs: r[21] });
        }
        f(&recs)?;
        off = body_end + 4;
    }
    for r in recs.iter_mut() {
        zeroize::Zeroize::zeroize(&mut r.an);
    }
    Ok(off)
}

fn create_segment(dir: &Path, gen: u64, len: u64) -> io::Result<Segment> {
    let path = segment_path(dir, gen);
    let made = (|| {
        let mut f = OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(&path)?;
        // Real zeros (not a hole / fallocate): later fdatasyncs then only flush data blocks.
        let zeros = vec![0u8; 256 * 1024];
        let mut left = len;
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            f.write_all(&zeros[..n])?;
            left -= n as u64;
        }
        f.sync_all()?;
        fsync_dir(dir)?;
        Ok(Segment { gen, file: Arc::new(f), len })
    })();
    if made.is_err() {
        // A half-made segment must go: a retry creates the same generation again.
        let _ = fs::remove_file(&path);
    }
    made
}

/// Runs `op` once, then again after each transient error (at most [`TRANSIENT_RETRIES`]
/// more times, sleeping 2, 4, 8, ... ms in between).
fn retry_transient<T>(what: &Path, mut op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    let mut backoff = FIRST_BACKOFF;
    let mut retries = 0;
    loop {
        match op() {
            Err(e) if is_transient(&e) && retries < TRANSIENT_RETRIES => {
                retries += 1;
                tracing::warn!("journal write in {}: {e}; retry {retries} of {TRANSIENT_RETRIES}", what.display());
                std::thread::sleep(backoff);
                backoff *= 2;
            }
            r => return r,
        }
    }
}

impl Journal {
    /// A journal in `dir` whose next segment gets generation `next_gen`.
    pub(crate) fn new(dir: PathBuf, next_gen: u64, segment_bytes: u64) -> Journal {
        Journal {
            dir,
            segment_bytes: segment_bytes.max(4096),
            faults: None,
            st: Mutex::new(State {
                buf: Vec::new(),
                spare: Vec::new(),
                appended: 0,
                durable: 0,
                flushing: false,
                current: None,
                write_off: 0,
                next_gen,
                old_gens: Vec::new(),
                failed: None,
                spare_seg: None,
                preparing: false,
            }),
            cond: Condvar::new(),
            spare_wanted: AtomicBool::new(true),
            bytes_since_rotate: AtomicU64::new(0),
            fsyncs: AtomicU64::new(0),
            bytes_total: AtomicU64::new(0),
            batch_sizes: BatchSizes::default(),
        }
    }

    /// Installs a test hook (see [`FaultInjector`]).
    pub(crate) fn with_faults(mut self, faults: Option<Arc<dyn FaultInjector>>) -> Journal {
        self.faults = faults;
        self
    }

    /// Writes `buf` at `off` of `file` and fdatasyncs it, through the test hook.
    fn write_and_sync(&self, file: &File, buf: &[u8], off: u64) -> io::Result<()> {
        if let Some(f) = &self.faults {
            f.journal_write()?;
        }
        file.write_all_at(buf, off)?;
        if let Some(f) = &self.faults {
            f.journal_sync()?;
        }
        file.sync_data()
    }

    /// The sequence number of the last batch on stable storage (frozen once a write failed).
    pub(crate) fn durable_seq(&self) -> u64 {
        self.st.lock().durable
    }

    /// Fails when an earlier journal write failed.
    pub(crate) fn check(&self) -> Result<()> {
        match &self.st.lock().failed {
            Some(e) => Err(StoreError::JournalFailed(e.clone())),
            None => Ok(()),
        }
    }

    /// Buffers one batch; returns its sequence number for [`Journal::wait_durable`].
    pub(crate) fn append(&self, recs: &[CoinUpdate]) -> Result<u64> {
        let mut st = self.st.lock();
        if let Some(e) = &st.failed {
            return Err(StoreError::JournalFailed(e.clone()));
        }
        encode_batch(&mut st.buf, recs);
        st.appended += 1;
        Ok(st.appended)
    }

    /// Returns once batch `seq` is on stable storage (group commit).
    pub(crate) fn wait_durable(&self, seq: u64) -> Result<()> {
        let mut st = self.st.lock();
        loop {
            if st.durable >= seq {
                return Ok(());
            }
            if let Some(e) = &st.failed {
                return Err(StoreError::JournalFailed(e.clone()));
            }
            if st.flushing {
                self.cond.wait(&mut st);
                continue;
            }
            self.lead_flush(&mut st, false);
        }
    }

    /// Writes and fsyncs everything buffered; with `rotate`, afterwards closes the current
    /// segment (the next flush starts a new one). Caller holds the lock, `flushing` is false.
    fn lead_flush(&self, st: &mut MutexGuard<'_, State>, rotate: bool) {
        st.flushing = true;
        let spare = std::mem::take(&mut st.spare);
        let buf = std::mem::replace(&mut st.buf, spare);
        let target = st.appended;
        let fits = match &st.current {
            Some(s) => st.write_off + buf.len() as u64 <= s.len,
            None => false,
        };
        let cur_file = st.current.as_ref().map(|s| s.file.clone());
        let off = st.write_off;
        let new_len = self.segment_bytes.max(buf.len() as u64);
        let need_new = !buf.is_empty() && !fits;
        // A new segment: the spare when it is big enough, else one made now (its
        // generation reserved here, above the spare's, which is then never used).
        let spare = if need_new && st.spare_seg.as_ref().is_some_and(|s| s.len >= buf.len() as u64) {
            st.spare_seg.take()
        } else {
            None
        };
        // A spare too small for this (huge) batch must never be used after the segment made
        // now: it has a lower generation. Drop it (an empty segment replays as nothing).
        let stale = if need_new && spare.is_none() { st.spare_seg.take() } else { None };
        let new_gen = st.next_gen;
        if need_new && spare.is_none() {
            st.next_gen += 1;
        }
        let dir = self.dir.clone();
        let result = MutexGuard::unlocked(st, || -> io::Result<Option<Segment>> {
            if let Some(old) = stale {
                let path = segment_path(&dir, old.gen);
                drop(old);
                let _ = fs::remove_file(path);
            }
            if buf.is_empty() {
                return Ok(None);
            }
            // A retry rewrites the whole buffer before it syncs again: after a failed fsync
            // the kernel may have marked the pages clean without writing them, so a second
            // fsync alone could succeed without the bytes being on disk.
            match (fits, cur_file) {
                (true, Some(f)) => {
                    let written = retry_transient(&dir, || self.write_and_sync(&f, &buf, off));
                    if written.is_err() {
                        self.scrub(&f, buf.len(), off);
                    }
                    written.map(|()| None)
                }
                _ => {
                    let mut seg = spare;
                    let written = retry_transient(&dir, || {
                        if seg.is_none() {
                            seg = Some(create_segment(&dir, new_gen, new_len)?);
                        }
                        match &seg {
                            Some(s) => self.write_and_sync(&s.file, &buf, 0),
                            None => Err(io::Error::other("no journal segment")),
                        }
                    });
                    match written {
                        Ok(()) => Ok(seg),
                        Err(e) => {
                            if let Some(s) = &seg {
                                self.scrub(&s.file, buf.len(), 0);
                            }
                            Err(e)
                        }
                    }
                }
            }
        });
        let written = buf.len() as u64;
        match result {
            Ok(new_seg) => {
                if written > 0 {
                    self.fsyncs.fetch_add(1, Ordering::Relaxed);
                    self.batch_sizes.record(target.saturating_sub(st.durable));
                    self.bytes_total.fetch_add(written, Ordering::Relaxed);
                    self.bytes_since_rotate.fetch_add(written, Ordering::Relaxed);
                }
                if let Some(seg) = new_seg {
                    if let Some(old) = st.current.take() {
                        st.old_gens.push(old.gen);
                    }
                    st.current = Some(seg);
                    st.write_off = written;
                } else {
                    st.write_off += written;
                }
                st.durable = target;
                if rotate {
                    if let Some(old) = st.current.take() {
                        st.old_gens.push(old.gen);
                    }
                    st.write_off = 0;
                    self.bytes_since_rotate.store(0, Ordering::Relaxed);
                }
                let half_full = match &st.current {
                    Some(c) => st.write_off * 2 >= c.len,
                    None => true,
                };
                if half_full && st.spare_seg.is_none() && !st.preparing {
                    self.spare_wanted.store(true, Ordering::Relaxed);
                }
            }
            Err(e) => {
                let msg = format!("journal write in {}: {e}", self.dir.display());
                tracing::error!("{msg}");
                st.failed = Some(msg);
            }
        }
        let mut buf = buf;
        buf.clear();
        if buf.capacity() <= 1 << 20 {
            st.spare = buf;
        }
        st.flushing = false;
        self.cond.notify_all();
    }

    /// Best effort after a failed write: zeroes the bytes of the failed batches so that a
    /// restart does not replay batches whose callers were told they failed (a zero count
    /// ends a segment). When this fails too, a restart may replay them: their callers got
    /// an error, which does not promise that nothing was written.
    fn scrub(&self, file: &File, len: usize, off: u64) {
        let zeros = vec![0u8; len];
        if let Err(e) = self.write_and_sync(file, &zeros, off) {
            tracing::error!("cannot erase failed journal batches in {}: {e}", self.dir.display());
        }
    }

    /// Creates the spare segment if one is wanted (background thread; no lock held while
    /// writing it). A failure is only logged: the next flush then creates its own.
    pub(crate) fn prepare_spare(&self) {
        if !self.spare_wanted.swap(false, Ordering::Relaxed) {
            return;
        }
        let gen = {
            let mut st = self.st.lock();
            if st.spare_seg.is_some() || st.preparing || st.failed.is_some() {
                return;
            }
            st.preparing = true;
            let g = st.next_gen;
            st.next_gen += 1;
            g
        };
        let made = create_segment(&self.dir, gen, self.segment_bytes);
        let mut st = self.st.lock();
        st.preparing = false;
        match made {
            Ok(seg) => {
                let newest = st.current.as_ref().map(|c| c.gen).into_iter().chain(st.old_gens.iter().copied()).max();
                if newest.is_none_or(|n| seg.gen > n) {
                    st.spare_seg = Some(seg);
                } else {
                    drop(st);
                    let _ = fs::remove_file(segment_path(&self.dir, gen));
                }
            }
            Err(e) => {
                tracing::warn!("cannot prepare journal segment in {}: {e}", self.dir.display());
                let _ = fs::remove_file(segment_path(&self.dir, gen));
            }
        }
    }

    /// Deletes the unused spare segment (clean shutdown).
    pub(crate) fn discard_spare(&self) {
        let spare = self.st.lock().spare_seg.take();
        if let Some(seg) = spare {
            let path = segment_path(&self.dir, seg.gen);
            drop(seg);
            if let Err(e) = remove_file_durable(&path) {
                tracing::warn!("cannot remove {}: {e}", path.display());
            }
        }
    }

    /// Makes everything appended so far durable and closes the current segment. Returns the
    /// generations of all closed segments: once every dirty page is written, they may go.
    pub(crate) fn rotate(&self) -> Result<Vec<u64>> {
        let mut st = self.st.lock();
        while st.flushing {
            self.cond.wait(&mut st);
        }
        if let Some(e) = &st.failed {
            return Err(StoreError::JournalFailed(e.clone()));
        }
        self.lead_flush(&mut st, true);
        if let Some(e) = &st.failed {
            return Err(StoreError::JournalFailed(e.clone()));
        }
        Ok(st.old_gens.clone())
    }

    /// Deletes closed segments after a checkpoint covered them.
    pub(crate) fn remove_segments(&self, gens: &[u64]) -> Result<()> {
        if gens.is_empty() {
            return Ok(());
        }
        for g in gens {
            let p = segment_path(&self.dir, *g);
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io("cannot remove", p, e)),
            }
        }
        fsync_dir(&self.dir).map_err(|e| StoreError::io("cannot fsync", &self.dir, e))?;
        self.st.lock().old_gens.retain(|g| !gens.contains(g));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(dn: i8, sn: u32, an: [u8; 16], mfs: u8) -> CoinUpdate {
        CoinUpdate { coin: CoinId { dn, sn }, an, mfs }
    }

    /// The bytes on disk are docs/store.md's "Journal format", whatever the in-memory type.
    #[test]
    fn a_batch_is_the_documented_bytes() {
        let mut buf = Vec::new();
        encode_batch(&mut buf, &[update(-2, 0x0102_0304, [0xA5; 16], 7), update(6, 9, [0x5A; 16], 0)]);
        let mut want = vec![0, 0, 0, 2];
        want.extend_from_slice(&[0xFE, 1, 2, 3, 4]);
        want.extend_from_slice(&[0xA5; 16]);
        want.push(7);
        want.extend_from_slice(&[6, 0, 0, 0, 9]);
        want.extend_from_slice(&[0x5A; 16]);
        want.push(0);
        let crc = crc32fast::hash(&want);
        want.extend_from_slice(&crc.to_be_bytes());
        assert_eq!(buf, want);
        assert_eq!(want.len(), 4 + 2 * JOURNAL_RECORD_BYTES + 4);
    }

    #[test]
    fn batches_round_trip_and_torn_tail() {
        let mut buf = Vec::new();
        encode_batch(&mut buf, &[update(-8, 5, [1; 16], 3), update(6, 1_023_999, [2; 16], 0)]);
        encode_batch(&mut buf, &[update(0, 7, [3; 16], 9)]);
        let full = buf.len();
        buf.extend_from_slice(&[0u8; 100]);
        let mut seen = Vec::new();
        let n = parse_segment(&buf, |r| {
            seen.extend_from_slice(r);
            Ok(())
        })
        .unwrap();
        assert_eq!(n, full);
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[1], update(6, 1_023_999, [2; 16], 0));
        // Torn second batch: only the first one counts.
        let mut torn = buf[..full - 3].to_vec();
        torn.extend_from_slice(&[0xAA; 3]);
        let mut count = 0;
        parse_segment(&torn, |r| {
            count += r.len();
            Ok(())
        })
        .unwrap();
        assert_eq!(count, 2);
    }

    #[test]
    fn group_commit_and_rotation() {
        let d = tempfile::tempdir().unwrap();
        let j = Arc::new(Journal::new(d.path().to_path_buf(), 1, 8192));
        let threads: Vec<_> = (0..8u32)
            .map(|t| {
                let j = j.clone();
                std::thread::spawn(move || {
                    for i in 0..50u32 {
                        let s = j.append(&[update(1, t * 1000 + i, [t as u8; 16], 1)]).unwrap();
                        j.wait_durable(s).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let old = j.rotate().unwrap();
        let segs = list_segments(d.path()).unwrap();
        assert_eq!(old.len(), segs.len());
        let mut n = 0;
        for (_, p) in &segs {
            parse_segment(&fs::read(p).unwrap(), |r| {
                n += r.len();
                Ok(())
            })
            .unwrap();
        }
        assert_eq!(n, 400);
        assert!(j.fsyncs.load(Ordering::Relaxed) <= 400);
        // the batch-size histogram: one count per fsync, its sum every batch made durable
        let (buckets, sum) = j.batch_sizes.snapshot();
        assert_eq!(buckets.iter().sum::<u64>(), j.fsyncs.load(Ordering::Relaxed));
        assert_eq!(sum, 400);
        j.remove_segments(&old).unwrap();
        assert!(list_segments(d.path()).unwrap().is_empty());
    }
}
