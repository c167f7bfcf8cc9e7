//! The coin store: an on-demand page cache over the page files (`page_cache.rs`: slots,
//! loading, CLOCK eviction, checkpoints), made durable by the journal (`journal.rs`); the
//! small tables (identity coins, lockers, tokens, secrets) are `tables.rs`'s.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex, RwLock};
use zeroize::Zeroizing;

use crate::config::Config;
use crate::durable::create_dir_durable;
use crate::error::{Result, StoreError};
use crate::journal::{self, FaultInjector, Journal};
use crate::layout::*;
use crate::page_cache::*;
use crate::tables;
use raida_proto::{CoinId, Key16};

/// Name of the lock file a running store holds.
pub const LOCK_FILE: &str = ".lock";
/// Directory of the journal segments.
pub const JOURNAL_DIR: &str = "Journal";

/// One coin record.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct CoinRecord {
    pub an: [u8; 16],
    pub mfs: u8,
}

/// One coin record to write ([`Store::set_many`]): which coin, its new AN and MFS. Named
/// fields and a [`CoinId`], so that a DN, SN, AN or MFS cannot be put in another's place;
/// a bare `(dn, sn)` is not a coin:
///
/// ```compile_fail
/// use raida_store::CoinUpdate;
/// let _ = CoinUpdate { coin: (1, 5), an: [0; 16], mfs: 30 };
/// ```
///
/// ```
/// use raida_proto::CoinId;
/// use raida_store::CoinUpdate;
/// let _ = CoinUpdate { coin: CoinId { dn: 1, sn: 5 }, an: [0; 16], mfs: 30 };
/// ```
///
/// In memory only: the journal keeps its own 22-byte record (`journal.rs`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct CoinUpdate {
    pub coin: CoinId,
    pub an: [u8; 16],
    pub mfs: u8,
}

/// Counters of a store.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct StoreStats {
    /// Pages in memory now.
    pub cached_pages: usize,
    /// Cached pages with changes not yet written to their page file (they are in the journal).
    pub dirty_pages: usize,
    /// Most pages the cache keeps (from `cache_mib`).
    pub capacity_pages: usize,
    /// Pages read from disk (cache misses).
    pub page_loads: u64,
    /// Reads answered from a cached page (cache hits).
    pub cache_hits: u64,
    /// Pages dropped from the cache.
    pub evictions: u64,
    /// Coin records changed through `set`/`set_many`.
    pub updates: u64,
    /// Journal fdatasync calls (each covers every writer waiting at that moment).
    pub journal_syncs: u64,
    /// Journal bytes written.
    pub journal_bytes: u64,
    /// Fsyncs by the number of batches (writers) each made durable, per bucket of
    /// [`crate::journal::BATCH_SIZE_BUCKETS`] and then the larger ones (not cumulative).
    pub journal_batch_sizes: [u64; crate::journal::BATCH_SIZE_BUCKETS.len() + 1],
    /// Batches made durable by all fsyncs together (the histogram's sum).
    pub journal_batches: u64,
    /// Checkpoints completed.
    pub checkpoints: u64,
    /// Page files written (checkpoints and evictions of dirty pages).
    pub page_writes: u64,
    /// Changed records of pages dropped from the cache before being written (kept in
    /// memory, charged to the cache bound, written by the next checkpoint).
    pub overlay_records: u64,
    /// Memory charged to the cache bound for the overlay records.
    pub overlay_bytes: u64,
}

/// Tuning knobs; `Default` is what `Store::open` uses.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Cache bound in bytes; `None` = `cache_mib` from config.toml.
    pub cache_bytes: Option<u64>,
    /// Size of each (zero-filled) journal segment.
    pub segment_bytes: u64,
    /// A checkpoint starts once this many journal bytes were written since the last one.
    pub checkpoint_bytes: u64,
    /// A checkpoint also runs this often while pages are dirty.
    pub checkpoint_interval: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            cache_bytes: None,
            segment_bytes: 4 << 20,
            checkpoint_bytes: 32 << 20,
            checkpoint_interval: Duration::from_secs(60),
        }
    }
}

/// An open data directory. Dropping the last `Arc` writes every dirty page and releases
/// the lock file.
pub struct Store {
    pub(crate) inner: Arc<Inner>,
    bg: Mutex<Option<JoinHandle<()>>>,
}

pub(crate) fn locate(dn: i8, sn: u32) -> Result<(usize, usize)> {
    check_dn(dn)?;
    check_sn(sn)?;
    let page = (sn / RECORDS_PER_PAGE) as usize;
    let idx = (dn - MIN_DN) as usize * TOTAL_PAGES as usize + page;
    Ok((idx, (sn % RECORDS_PER_PAGE) as usize))
}

pub(crate) fn slot_dn_page(idx: usize) -> (i8, u32) {
    let dn = (idx / TOTAL_PAGES as usize) as i8 + MIN_DN;
    (dn, (idx % TOTAL_PAGES as usize) as u32)
}

/// Takes the exclusive advisory lock `DIR/.lock`.
fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| StoreError::io("cannot open lock file", &path, e))?;
    // SAFETY: flock on a file descriptor we own; no memory is passed.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::WouldBlock {
            return Err(StoreError::Locked(dir.to_path_buf()));
        }
        return Err(StoreError::io("cannot lock", path, e));
    }
    Ok(f)
}

impl Store {
    /// Opens a data directory: reads config.toml, takes the lock file, replays the journal.
    pub fn open(dir: &Path) -> Result<Arc<Store>> {
        Store::open_with(dir, StoreOptions::default())
    }

    /// [`Store::open`] with explicit tuning.
    pub fn open_with(dir: &Path, opts: StoreOptions) -> Result<Arc<Store>> {
        Store::open_inner(dir, opts, None)
    }

    /// [`Store::open_with`] with a test hook that makes journal writes, journal fsyncs or
    /// page reads fail on demand. For tests only: production opens without one.
    pub fn open_with_faults(dir: &Path, opts: StoreOptions, faults: Arc<dyn FaultInjector>) -> Result<Arc<Store>> {
        Store::open_inner(dir, opts, Some(faults))
    }

    fn open_inner(dir: &Path, opts: StoreOptions, faults: Option<Arc<dyn FaultInjector>>) -> Result<Arc<Store>> {
        if !dir.is_dir() {
            return Err(StoreError::NoSuchDir(dir.to_path_buf()));
        }
        let config = Config::load(dir)?;
        let lock_file = lock_dir(dir)?;
        crate::init::secure_dir_modes(dir)?;
        let jdir = dir.join(JOURNAL_DIR);
        create_dir_durable(&jdir).map_err(|e| StoreError::io("cannot create", &jdir, e))?;
        let segments = journal::list_segments(&jdir)?;
        let next_gen = segments.last().map(|s| s.0 + 1).unwrap_or(1);

        let nslots = NUM_DN * TOTAL_PAGES as usize;
        let slots: Box<[Slot]> = (0..nslots)
            .map(|_| Slot {
                data: RwLock::new(SlotData::default()),
                io: Mutex::new(()),
                dirty: AtomicBool::new(false),
                referenced: AtomicBool::new(false),
                loaded: AtomicBool::new(false),
            })
            .collect();
        let cache_bytes = opts.cache_bytes.unwrap_or(config.cache_mib.saturating_mul(1 << 20));
        // Slots, the pool of recycled page buffers and the journal buffers.
        let overhead = (nslots * std::mem::size_of::<Slot>()) as u64 + (2 << 20);
        let per_page = std::mem::size_of::<PageMem>() as u64 + 64;
        // 10% of the bound is left for allocator overhead and fragmentation.
        let usable = cache_bytes / 100 * 90;
        let capacity = (usable.saturating_sub(overhead) / per_page).max(16) as usize;

        let inner = Arc::new(Inner {
            dir: dir.to_path_buf(),
            lockers: tables::lockers(dir)?,
            tokens: tables::tokens(dir)?,
            raida_secrets: tables::raida_secrets(dir)?,
            config,
            journal: Journal::new(jdir, next_gen, opts.segment_bytes).with_faults(faults.clone()),
            opts,
            slots,
            capacity,
            cached: AtomicUsize::new(0),
            dirty: AtomicUsize::new(0),
            hand: AtomicUsize::new(0),
            evict_lock: Mutex::new(()),
            checkpoint_lock: Mutex::new(()),
            kick_pending: AtomicBool::new(false),
            page_loads: AtomicU64::new(0),
            cache_hits: HitCounter::default(),
            evictions: AtomicU64::new(0),
            updates: AtomicU64::new(0),
            checkpoints: AtomicU64::new(0),
            page_writes: AtomicU64::new(0),
            overlay_bytes: AtomicU64::new(0),
            overlay_records: AtomicU64::new(0),
            cache_bytes,
            signal: Arc::new(Signal { state: Mutex::new((false, false)), cond: Condvar::new() }),
            pool: Mutex::new(Vec::new()),
            undo: Mutex::new(HashMap::new()),
            faults,
            _lock_file: lock_file,
        });

        // Recovery: apply every complete batch of every segment in order, write the pages,
        // then drop the segments.
        if !segments.is_empty() {
            for (_, path) in &segments {
                let bytes = Zeroizing::new(fs::read(path).map_err(|e| StoreError::io("cannot read", path, e))?);
                journal::parse_segment(&bytes, |recs| {
                    inner.apply(recs, false)?;
                    inner.maybe_evict();
                    Ok(())
                })?;
            }
            inner.write_all_dirty()?;
            let gens: Vec<u64> = segments.iter().map(|s| s.0).collect();
            inner.journal.remove_segments(&gens)?;
            tracing::info!("replayed {} journal segment(s)", gens.len());
        }

        let bg = {
            let inner = inner.clone();
            std::thread::Builder::new()
                .name("raida-store-checkpoint".into())
                .spawn(move || background(inner))
                .map_err(|e| StoreError::io("cannot start checkpoint thread", dir, e))?
        };
        Ok(Arc::new(Store { inner, bg: Mutex::new(Some(bg)) }))
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The configuration read at open.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Reads one coin record.
    pub fn get(&self, CoinId { dn, sn }: CoinId) -> Result<CoinRecord> {
        let (idx, rec) = locate(dn, sn)?;
        let slot = &self.inner.slots[idx];
        {
            let g = slot.data.read();
            if let Some(p) = g.page.as_ref() {
                if !slot.referenced.load(Ordering::Relaxed) {
                    slot.referenced.store(true, Ordering::Relaxed);
                }
                self.inner.cache_hits.add(idx);
                return Ok(p.record(rec));
            }
        }
        self.inner.read_loading(idx, sn, rec)
    }

    /// The AN of a *present* coin (DN -8..6, SN < 1,024,000, MFS != 0). `Ok(None)`: the
    /// coin is not present (DN or SN out of range, no page file, MFS 0). `Err`: its page
    /// could not be read (an I/O error such as EMFILE, a page file of the wrong size), which
    /// says nothing about the coin and must never be reported as "not present".
    pub fn present_an(&self, coin: CoinId) -> Result<Option<Key16>> {
        match self.get(coin) {
            Ok(r) => Ok((r.mfs != 0).then(|| Key16::new(r.an))),
            Err(StoreError::BadDenomination(_) | StoreError::SnOutOfRange(_) | StoreError::MissingPage { .. }) => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Changes one record; durable when it returns Ok.
    pub fn set(&self, coin: CoinId, an: [u8; 16], mfs: u8) -> Result<()> {
        self.set_many(&[CoinUpdate { coin, an, mfs }])
    }

    /// Changes several records as one journal batch (one fsync); durable when it returns Ok.
    /// Records are applied in order (a later record for the same coin wins).
    pub fn set_many(&self, updates: &[CoinUpdate]) -> Result<()> {
        let inner = &self.inner;
        let Some(seq) = inner.apply(updates, true)? else {
            return Ok(());
        };
        inner.maybe_evict();
        if let Err(e) = inner.journal.wait_durable(seq) {
            inner.roll_back_pending();
            return Err(e);
        }
        inner.forget_durable(updates, seq);
        if inner.journal.bytes_since_rotate.load(Ordering::Relaxed) >= inner.opts.checkpoint_bytes {
            inner.kick_checkpoint();
        } else if inner.journal.spare_wanted.load(Ordering::Relaxed) {
            inner.kick_background();
        }
        Ok(())
    }

    /// Writes every dirty page to its page file and empties the journal (clean shutdown).
    pub fn flush(&self) -> Result<()> {
        self.inner.checkpoint()
    }

    /// Counters.
    pub fn stats(&self) -> StoreStats {
        let i = &self.inner;
        StoreStats {
            cached_pages: i.cached.load(Ordering::Relaxed),
            dirty_pages: i.dirty.load(Ordering::Relaxed),
            capacity_pages: i.capacity,
            page_loads: i.page_loads.load(Ordering::Relaxed),
            cache_hits: i.cache_hits.sum(),
            evictions: i.evictions.load(Ordering::Relaxed),
            updates: i.updates.load(Ordering::Relaxed),
            journal_syncs: i.journal.fsyncs.load(Ordering::Relaxed),
            journal_bytes: i.journal.bytes_total.load(Ordering::Relaxed),
            journal_batch_sizes: i.journal.batch_sizes.snapshot().0,
            journal_batches: i.journal.batch_sizes.snapshot().1,
            checkpoints: i.checkpoints.load(Ordering::Relaxed),
            page_writes: i.page_writes.load(Ordering::Relaxed),
            overlay_records: i.overlay_records.load(Ordering::Relaxed),
            overlay_bytes: i.overlay_bytes.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        {
            let mut s = self.inner.signal.state.lock();
            s.0 = true;
            self.inner.signal.cond.notify_all();
        }
        if let Some(h) = self.bg.lock().take() {
            let _ = h.join();
        }
        if let Err(e) = self.inner.checkpoint() {
            tracing::error!("flush at close of {}: {e}", self.inner.dir.display());
        }
        self.inner.journal.discard_spare();
    }
}

pub(crate) fn background(inner: Arc<Inner>) {
    let signal = inner.signal.clone();
    loop {
        let kicked = {
            let mut s = signal.state.lock();
            if !s.0 && !s.1 {
                signal.cond.wait_for(&mut s, inner.opts.checkpoint_interval);
            }
            if s.0 {
                return;
            }
            std::mem::take(&mut s.1)
        };
        // A kick asks for a checkpoint (kick_pending) and/or a spare journal segment; a
        // timeout checkpoints whatever is dirty.
        let want_checkpoint = inner.kick_pending.load(Ordering::Acquire)
            || (!kicked
                && (inner.dirty.load(Ordering::Relaxed) > 0 || inner.overlay_bytes.load(Ordering::Relaxed) > 0));
        if want_checkpoint {
            if let Err(e) = inner.checkpoint() {
                tracing::error!("checkpoint of {}: {e}", inner.dir.display());
            }
        }
        inner.journal.prepare_spare();
    }
}
