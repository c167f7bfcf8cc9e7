//! The page cache of the coin store: one slot per possible page, each with its own lock,
//! loaded on demand, bounded in memory by CLOCK eviction (a dirty page's changed records
//! stay as an overlay until a checkpoint writes them), and the checkpoint that writes dirty
//! pages with temp file + fsync + rename. `store.rs` is the public face; `tables.rs` the
//! small tables.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex, RwLock};
use zeroize::{Zeroize, Zeroizing};

use crate::config::Config;
use crate::durable::{fsync_dir, write_file_atomic, write_replace_no_dir_sync};
use crate::error::{Result, StoreError};
use crate::journal::{FaultInjector, Journal};
use crate::layout::*;
use crate::store::*;
use crate::tables::Table;

/// A page in memory and which of its records changed since its file was last written;
/// wiped when dropped (it holds ANs).
pub(crate) struct PageBuf(pub(crate) Box<PageMem>);

pub(crate) struct PageMem {
    pub(crate) bytes: [u8; PAGE_BYTES],
    pub(crate) changed: Changed,
}

/// Which records of a cached page changed since its file was last written.
pub(crate) struct Changed(pub(crate) [u64; 16]);

impl Changed {
    pub(crate) fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    pub(crate) fn clear(&mut self) {
        self.0 = [0; 16];
    }
    pub(crate) fn count(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }
    pub(crate) fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        (0..RECORDS_PER_PAGE as usize).filter(|&i| self.0[i / 64] & (1 << (i % 64)) != 0)
    }
}

/// A changed record of a page that was dropped from the cache before its file was written:
/// (record index, AN, MFS). Its journal batch stays until a checkpoint writes it.
pub(crate) struct OverlayRec(pub(crate) u16, pub(crate) [u8; 16], pub(crate) u8);

impl Drop for OverlayRec {
    fn drop(&mut self) {
        self.1.zeroize();
    }
}

/// Bytes charged to the cache bound for an overlay vector: twice its heap capacity plus
/// the allocator's overhead (small, often resized allocations fragment the heap; measured
/// RSS stays within the bound this way).
pub(crate) fn overlay_cost(v: &Vec<OverlayRec>) -> u64 {
    if v.capacity() == 0 {
        0
    } else {
        2 * (v.capacity() * std::mem::size_of::<OverlayRec>()) as u64 + 32
    }
}

/// What one slot's lock protects.
#[derive(Default)]
pub(crate) struct SlotData {
    pub(crate) page: Option<PageBuf>,
    pub(crate) overlay: Vec<OverlayRec>,
}

impl PageBuf {
    pub(crate) fn record(&self, i: usize) -> CoinRecord {
        let mut an = [0u8; 16];
        an.copy_from_slice(&self.0.bytes[i * RECORD_BYTES..i * RECORD_BYTES + 16]);
        CoinRecord { an, mfs: self.0.bytes[i * RECORD_BYTES + 16] }
    }
    pub(crate) fn set(&mut self, i: usize, an: &[u8; 16], mfs: u8) {
        self.0.bytes[i * RECORD_BYTES..i * RECORD_BYTES + 16].copy_from_slice(an);
        self.0.bytes[i * RECORD_BYTES + 16] = mfs;
        self.0.changed.set(i);
    }
}

impl Drop for PageBuf {
    fn drop(&mut self) {
        self.0.bytes.zeroize();
    }
}

/// One cache slot per possible page (15 denominations × 1000 pages). The page's own lock
/// is the only lock a cached read takes. Aligned to a cache line so that readers of
/// neighbouring pages do not share one.
#[repr(align(64))]
pub(crate) struct Slot {
    pub(crate) data: RwLock<SlotData>,
    /// Serialises writing this page's file (checkpoint vs eviction).
    pub(crate) io: Mutex<()>,
    /// The cached page has changes not in its file.
    pub(crate) dirty: AtomicBool,
    pub(crate) referenced: AtomicBool,
    pub(crate) loaded: AtomicBool,
}

pub(crate) struct Inner {
    pub(crate) dir: PathBuf,
    pub(crate) config: Config,
    pub(crate) opts: StoreOptions,
    pub(crate) slots: Box<[Slot]>,
    pub(crate) capacity: usize,
    pub(crate) cached: AtomicUsize,
    pub(crate) dirty: AtomicUsize,
    pub(crate) hand: AtomicUsize,
    pub(crate) evict_lock: Mutex<()>,
    pub(crate) checkpoint_lock: Mutex<()>,
    pub(crate) journal: Journal,
    pub(crate) kick_pending: AtomicBool,
    pub(crate) lockers: Table<[u8; 5], 16>,
    pub(crate) tokens: Table<(i8, u32), 32>,
    pub(crate) raida_secrets: Table<(u8, u32), 32>,
    pub(crate) page_loads: AtomicU64,
    pub(crate) cache_hits: HitCounter,
    pub(crate) evictions: AtomicU64,
    pub(crate) updates: AtomicU64,
    pub(crate) checkpoints: AtomicU64,
    pub(crate) page_writes: AtomicU64,
    pub(crate) overlay_bytes: AtomicU64,
    pub(crate) overlay_records: AtomicU64,
    pub(crate) cache_bytes: u64,
    pub(crate) signal: Arc<Signal>,
    /// Page buffers not in use. They are never freed while the store is open (freeing and
    /// reallocating 17 KB blocks from several threads fragments the heap and keeps RSS
    /// above the bound); beyond the first `POOL_HOT` the memory of a pooled buffer is handed
    /// back to the kernel with `madvise(MADV_DONTNEED)`.
    pub(crate) pool: Mutex<Vec<PageBuf>>,
    /// The cache's record of journal batches not yet durable, so that a failed journal
    /// write can be undone: per record (slot, index), each pending write's (batch sequence,
    /// value before it), oldest first. Entries leave once their batch is durable.
    pub(crate) undo: Mutex<HashMap<(usize, usize), PendingWrites>>,
    /// Test hook (never set in production).
    pub(crate) faults: Option<Arc<dyn FaultInjector>>,
    pub(crate) _lock_file: File,
}

/// The not yet durable writes of one record: (journal batch sequence, value before it),
/// oldest first.
pub(crate) type PendingWrites = VecDeque<(u64, CoinRecord)>;

/// Pooled buffers kept resident.
pub(crate) const POOL_HOT: usize = 64;

/// Returns the whole memory pages inside a pooled buffer to the kernel; they read as zero
/// when touched again (the next load overwrites the buffer anyway).
pub(crate) fn release_buffer_memory(buf: &mut PageBuf) {
    // SAFETY: sysconf has no memory effects.
    let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as usize,
        _ => return,
    };
    let start = buf.0.bytes.as_mut_ptr() as usize;
    let end = start + PAGE_BYTES;
    let a = start.div_ceil(page) * page;
    let b = end / page * page;
    if b > a {
        // SAFETY: [a, b) lies inside `buf.0.bytes`, which we own exclusively (&mut) and
        // which stays allocated; MADV_DONTNEED on private anonymous memory only makes those
        // bytes read as zero afterwards, which is a valid value for a byte array.
        unsafe {
            libc::madvise(a as *mut libc::c_void, b - a, libc::MADV_DONTNEED);
        }
    }
}

pub(crate) struct Signal {
    pub(crate) state: Mutex<(bool, bool)>, // (stop, kick)
    pub(crate) cond: Condvar,
}

impl Inner {
    /// Wakes the background thread (spare journal segment wanted).
    pub(crate) fn kick_background(&self) {
        let mut s = self.signal.state.lock();
        s.1 = true;
        self.signal.cond.notify_all();
    }

    /// Asks the background thread for a checkpoint (once until it starts).
    pub(crate) fn kick_checkpoint(&self) {
        if !self.kick_pending.swap(true, Ordering::AcqRel) {
            let mut s = self.signal.state.lock();
            s.1 = true;
            self.signal.cond.notify_all();
        }
    }

    pub(crate) fn page_path(&self, idx: usize) -> PathBuf {
        let (dn, page) = slot_dn_page(idx);
        self.dir.join(page_rel_path(dn, page))
    }

    pub(crate) fn read_page(&self, idx: usize, sn: u32) -> Result<PageBuf> {
        let path = self.page_path(idx);
        if let Some(faults) = &self.faults {
            faults.page_read().map_err(|e| StoreError::io("cannot open", &path, e))?;
        }
        let mut f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(StoreError::MissingPage { path, sn }),
            Err(e) => return Err(StoreError::io("cannot open", path, e)),
        };
        let len = f.metadata().map_err(|e| StoreError::io("cannot stat", &path, e))?.len();
        if len != PAGE_BYTES as u64 {
            return Err(StoreError::BadPageSize { path, len });
        }
        let recycled = self.pool.lock().pop();
        let mut buf = match recycled {
            Some(b) => b,
            None => PageBuf(Box::new(PageMem { bytes: [0; PAGE_BYTES], changed: Changed([0; 16]) })),
        };
        buf.0.changed.clear();
        if let Err(e) = f.read_exact(&mut buf.0.bytes[..]) {
            self.recycle(buf);
            return Err(StoreError::io("cannot read", &path, e));
        }
        self.page_loads.fetch_add(1, Ordering::Relaxed);
        Ok(buf)
    }

    pub(crate) fn drop_overlay(&self, v: &mut Vec<OverlayRec>) {
        let cost = overlay_cost(v);
        let n = v.len() as u64;
        *v = Vec::new();
        self.overlay_bytes.fetch_sub(cost, Ordering::Relaxed);
        self.overlay_records.fetch_sub(n, Ordering::Relaxed);
    }

    /// Keeps an evicted page buffer for the next load (which overwrites all of it; a buffer
    /// that is finally dropped is zeroized then).
    pub(crate) fn recycle(&self, mut buf: PageBuf) {
        let mut pool = self.pool.lock();
        if pool.len() >= POOL_HOT {
            release_buffer_memory(&mut buf);
        }
        pool.push(buf);
    }

    /// Reads the page file into an empty slot (write lock held) and applies its overlay.
    pub(crate) fn load_into(&self, slot: &Slot, g: &mut SlotData, idx: usize, sn: u32) -> Result<()> {
        let mut p = self.read_page(idx, sn)?;
        if !g.overlay.is_empty() {
            for OverlayRec(i, an, mfs) in &g.overlay {
                p.set(*i as usize, an, *mfs);
            }
            self.mark_dirty(slot);
            self.drop_overlay(&mut g.overlay);
        }
        g.page = Some(p);
        slot.referenced.store(true, Ordering::Relaxed);
        slot.loaded.store(true, Ordering::Relaxed);
        self.cached.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    pub(crate) fn read_loading(&self, idx: usize, sn: u32, rec: usize) -> Result<CoinRecord> {
        let slot = &self.slots[idx];
        let r = {
            let mut g = slot.data.write();
            if g.page.is_none() {
                self.load_into(slot, &mut g, idx, sn)?;
            }
            match g.page.as_ref() {
                Some(p) => p.record(rec),
                None => return Err(StoreError::Invalid("page vanished".into())),
            }
        };
        self.maybe_evict();
        Ok(r)
    }

    pub(crate) fn mark_dirty(&self, slot: &Slot) {
        if !slot.dirty.swap(true, Ordering::SeqCst) {
            self.dirty.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Applies updates to the cached pages (loading them), under all their page locks; with
    /// `log`, appends the batch to the journal under those locks and returns its sequence.
    pub(crate) fn apply(&self, updates: &[CoinUpdate], log: bool) -> Result<Option<u64>> {
        if updates.is_empty() {
            return Ok(None);
        }
        let mut locs = Vec::with_capacity(updates.len());
        for u in updates {
            locs.push(locate(u.coin.dn, u.coin.sn)?);
        }
        if log {
            self.journal.check()?;
        }
        let mut idxs: Vec<usize> = locs.iter().map(|l| l.0).collect();
        idxs.sort_unstable();
        idxs.dedup();
        let mut seq = None;
        {
            let mut guards = Vec::with_capacity(idxs.len());
            for &i in &idxs {
                let slot = &self.slots[i];
                let mut g = slot.data.write();
                if g.page.is_none() {
                    let sn = updates.iter().zip(&locs).find(|(_, l)| l.0 == i).map(|(u, _)| u.coin.sn).unwrap_or(0);
                    self.load_into(slot, &mut g, i, sn)?;
                }
                guards.push(g);
            }
            if log {
                seq = Some(self.journal.append(updates)?);
            }
            // Under the page locks, so that the writes of one record are recorded in the
            // order of their batches.
            let mut undo = seq.map(|_| self.undo.lock());
            for (CoinUpdate { an, mfs, .. }, (i, rec)) in updates.iter().zip(&locs) {
                if let Ok(gi) = idxs.binary_search(i) {
                    if let Some(p) = guards[gi].page.as_mut() {
                        if let (Some(undo), Some(seq)) = (undo.as_mut(), seq) {
                            undo.entry((*i, *rec)).or_default().push_back((seq, p.record(*rec)));
                        }
                        p.set(*rec, an, *mfs);
                    }
                }
            }
            drop(undo);
            for &i in &idxs {
                self.mark_dirty(&self.slots[i]);
            }
        }
        self.updates.fetch_add(updates.len() as u64, Ordering::Relaxed);
        Ok(seq)
    }

    /// Batch `seq` is durable: its records' pending writes up to `seq` need no undo.
    pub(crate) fn forget_durable(&self, updates: &[CoinUpdate], seq: u64) {
        let mut undo = self.undo.lock();
        for u in updates {
            let Ok(key) = locate(u.coin.dn, u.coin.sn) else { continue };
            if let Some(q) = undo.get_mut(&key) {
                while q.front().is_some_and(|(s, _)| *s <= seq) {
                    q.pop_front();
                }
                if q.is_empty() {
                    undo.remove(&key);
                }
            }
        }
    }

    /// A journal write failed: every batch not yet durable failed with it (the journal
    /// refuses further batches), so each record they changed goes back to its value before
    /// the oldest of those writes, the last durable one. Entries of batches that are durable
    /// but whose writers have not yet called `forget_durable` are dropped first. The other
    /// entries stay: a batch appended just before the failure but recorded after this pass
    /// restores the same value, and a second pass is harmless.
    pub(crate) fn roll_back_pending(&self) {
        // Frozen: the caller saw the failure, and after one no batch becomes durable.
        let durable = self.journal.durable_seq();
        let restores: Vec<((usize, usize), CoinRecord)> = {
            let mut undo = self.undo.lock();
            undo.retain(|_, q| {
                while q.front().is_some_and(|(s, _)| *s <= durable) {
                    q.pop_front();
                }
                !q.is_empty()
            });
            undo.iter().filter_map(|(k, q)| q.front().map(|(_, before)| (*k, *before))).collect()
        };
        for ((idx, rec), before) in restores {
            let slot = &self.slots[idx];
            let mut g = slot.data.write();
            if g.page.is_none() {
                // Evicted since: load it (file + overlay) and correct it in the cache.
                let (_, page) = slot_dn_page(idx);
                if let Err(e) = self.load_into(slot, &mut g, idx, page * RECORDS_PER_PAGE) {
                    tracing::error!("cannot undo a failed update in the cache: {e}");
                    continue;
                }
            }
            if let Some(p) = g.page.as_mut() {
                p.set(rec, &before.an, before.mfs);
                self.mark_dirty(slot);
            }
        }
    }

    /// Most pages the cache may hold now: the bound less the overlay records.
    pub(crate) fn page_limit(&self) -> usize {
        let per_page = std::mem::size_of::<PageMem>() as u64 + 64;
        let over = self.overlay_bytes.load(Ordering::Relaxed) / per_page;
        self.capacity.saturating_sub(over as usize).max(16)
    }

    /// Drops unreferenced pages (CLOCK, a cheap LRU approximation) until the cache is
    /// within its bound, clean pages first. A dirty victim's changed records move to the
    /// slot's overlay (no I/O; a checkpoint starts when overlays use 1/8 of the bound);
    /// only when overlays fill a quarter of the bound is a dirty victim
    /// written to its page file instead. Callers that overflow the cache wait here
    /// (back-pressure), so the bound holds under any load.
    pub(crate) fn maybe_evict(&self) {
        if self.cached.load(Ordering::Relaxed) <= self.page_limit() {
            return;
        }
        let _e = self.evict_lock.lock();
        let overlay = self.overlay_bytes.load(Ordering::Relaxed);
        if overlay * 8 > self.cache_bytes {
            self.kick_checkpoint();
        }
        let n = self.slots.len();
        let mut scanned = 0;
        let mut skipped_dirty = 0;
        let mut freed = Vec::new();
        while self.cached.load(Ordering::Relaxed) > self.page_limit() && scanned < 4 * n {
            scanned += 1;
            // Prefer clean victims, but not at the price of long scans: moving a dirty
            // page to the overlay costs no I/O.
            let allow_dirty = skipped_dirty >= 32 || scanned > 2 * n;
            let i = self.hand.fetch_add(1, Ordering::Relaxed) % n;
            let slot = &self.slots[i];
            if !slot.loaded.load(Ordering::Relaxed) {
                continue;
            }
            if slot.referenced.swap(false, Ordering::Relaxed) {
                continue;
            }
            if !allow_dirty && slot.dirty.load(Ordering::Relaxed) {
                skipped_dirty += 1;
                continue;
            }
            let Some(_io) = slot.io.try_lock() else {
                continue;
            };
            let Some(mut g) = slot.data.try_write() else {
                continue;
            };
            let g = &mut *g;
            let Some(p) = g.page.as_mut() else {
                slot.loaded.store(false, Ordering::Relaxed);
                continue;
            };
            if slot.dirty.load(Ordering::SeqCst) {
                if self.overlay_bytes.load(Ordering::Relaxed) * 4 <= self.cache_bytes {
                    let before = overlay_cost(&g.overlay);
                    let n0 = g.overlay.len();
                    // One allocation of the exact size (the overlay is empty whenever the
                    // page is cached, so this is the common case).
                    let mut v = Vec::with_capacity(n0 + p.0.changed.count());
                    v.append(&mut g.overlay);
                    v.extend(p.0.changed.iter().map(|r| {
                        let rec = p.record(r);
                        OverlayRec(r as u16, rec.an, rec.mfs)
                    }));
                    g.overlay = v;
                    let after = overlay_cost(&g.overlay);
                    self.overlay_bytes.fetch_add(after - before, Ordering::Relaxed);
                    self.overlay_records.fetch_add((g.overlay.len() - n0) as u64, Ordering::Relaxed);
                } else {
                    let path = self.page_path(i);
                    if let Err(e) = write_file_atomic(&path, &p.0.bytes[..], 0o600) {
                        tracing::error!("cannot write page {}: {e}", path.display());
                        continue;
                    }
                    self.page_writes.fetch_add(1, Ordering::Relaxed);
                }
                p.0.changed.clear();
                slot.dirty.store(false, Ordering::SeqCst);
                self.dirty.fetch_sub(1, Ordering::Relaxed);
            }
            if let Some(buf) = g.page.take() {
                freed.push(buf);
            }
            slot.loaded.store(false, Ordering::Relaxed);
            self.cached.fetch_sub(1, Ordering::Relaxed);
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
        for b in freed {
            self.recycle(b);
        }
    }

    /// Writes one slot's changes to its page file: a dirty cached page (snapshot taken under
    /// its lock), or the overlay of an uncached page (file read, overlay applied, written,
    /// under the slot's write lock). Returns the page file's directory when it wrote.
    pub(crate) fn write_back(&self, idx: usize) -> Result<Option<PathBuf>> {
        let slot = &self.slots[idx];
        let _io = slot.io.lock();
        let path = self.page_path(idx);
        let snapshot = {
            let mut g = slot.data.write();
            let g = &mut *g;
            match g.page.as_mut() {
                Some(p) => {
                    if !slot.dirty.swap(false, Ordering::SeqCst) {
                        return Ok(None);
                    }
                    self.dirty.fetch_sub(1, Ordering::Relaxed);
                    let saved = p.0.changed.0;
                    p.0.changed.clear();
                    (Zeroizing::new(p.0.bytes.to_vec()), saved)
                }
                None if !g.overlay.is_empty() => {
                    // Hold the write lock: a concurrent load must see either the overlay or
                    // the written file.
                    let (_, page) = slot_dn_page(idx);
                    let mut p = self.read_page(idx, page * RECORDS_PER_PAGE)?;
                    for OverlayRec(i, an, mfs) in &g.overlay {
                        p.set(*i as usize, an, *mfs);
                    }
                    let r = write_replace_no_dir_sync(&path, &p.0.bytes[..], 0o600);
                    self.recycle(p);
                    r.map_err(|e| StoreError::io("cannot write page", &path, e))?;
                    self.drop_overlay(&mut g.overlay);
                    self.page_writes.fetch_add(1, Ordering::Relaxed);
                    return Ok(path.parent().map(Path::to_path_buf));
                }
                None => return Ok(None),
            }
        };
        let (snapshot, saved) = snapshot;
        if let Err(e) = write_replace_no_dir_sync(&path, &snapshot, 0o600) {
            // Still dirty: restore which records changed (the page may have been evicted
            // meanwhile only if it was clean, which it is not: the io lock is held).
            let mut g = slot.data.write();
            if let Some(p) = g.page.as_mut() {
                for (w, old) in p.0.changed.0.iter_mut().zip(saved) {
                    *w |= old;
                }
            }
            self.mark_dirty(slot);
            return Err(StoreError::io("cannot write page", path, e));
        }
        self.page_writes.fetch_add(1, Ordering::Relaxed);
        Ok(path.parent().map(Path::to_path_buf))
    }

    /// Writes every dirty page (4 threads: the device overlaps their fsyncs) and fsyncs
    /// their directories.
    pub(crate) fn write_all_dirty(&self) -> Result<()> {
        let dirty: Vec<usize> = (0..self.slots.len())
            .filter(|&i| {
                // Under the slot's lock: a page moving between "dirty" and "overlay" does so
                // under its write lock, so it is never seen in neither state.
                let slot = &self.slots[i];
                let g = slot.data.read();
                slot.dirty.load(Ordering::SeqCst) || !g.overlay.is_empty()
            })
            .collect();
        if dirty.is_empty() {
            return Ok(());
        }
        let workers = if dirty.len() >= 16 { 4 } else { 1 };
        let chunk = dirty.len().div_ceil(workers);
        let results: Vec<(BTreeSet<PathBuf>, Option<StoreError>)> = std::thread::scope(|sc| {
            let handles: Vec<_> = dirty
                .chunks(chunk)
                .map(|part| {
                    sc.spawn(move || {
                        let mut dirs = BTreeSet::new();
                        let mut err = None;
                        for &i in part {
                            match self.write_back(i) {
                                Ok(Some(d)) => {
                                    dirs.insert(d);
                                }
                                Ok(None) => {}
                                Err(e) => {
                                    err.get_or_insert(e);
                                }
                            }
                        }
                        (dirs, err)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| (BTreeSet::new(), Some(StoreError::Invalid("page writer panicked".into()))))
                })
                .collect()
        });
        let mut dirs = BTreeSet::new();
        let mut first_err = None;
        for (d, e) in results {
            dirs.extend(d);
            if let Some(e) = e {
                first_err.get_or_insert(e);
            }
        }
        for d in dirs {
            fsync_dir(&d).map_err(|e| StoreError::io("cannot fsync", &d, e))?;
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Closes the journal segment, writes every dirty page, then deletes the covered segments.
    pub(crate) fn checkpoint(&self) -> Result<()> {
        let _c = self.checkpoint_lock.lock();
        self.kick_pending.store(false, Ordering::Release);
        let old = self.journal.rotate()?;
        self.write_all_dirty()?;
        self.journal.remove_segments(&old)?;
        self.checkpoints.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Cache hits, counted in 16 cache-line-sized stripes chosen by page slot: readers of
/// different pages on different cores rarely touch the same line (one shared counter
/// would bounce between cores on every cached read).
#[derive(Default)]
pub(crate) struct HitCounter([HitStripe; 16]);

#[derive(Default)]
#[repr(align(64))]
struct HitStripe(AtomicU64);

impl HitCounter {
    pub(crate) fn add(&self, slot: usize) {
        if let Some(s) = self.0.get(slot % 16) {
            s.0.fetch_add(1, Ordering::Relaxed);
        }
    }
    pub(crate) fn sum(&self) -> u64 {
        self.0.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}
