//! The coin store: an on-demand page cache over the page files, made durable by the
//! journal (see `journal.rs`) and checkpointed with temp file + fsync + rename.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex, RwLock};
use zeroize::{Zeroize, Zeroizing};

use crate::config::Config;
use crate::durable::{create_dir_durable, fsync_dir, write_file_atomic, write_replace_no_dir_sync};
use crate::error::{Result, StoreError};
use crate::extras::{self, Table};
use crate::journal::{self, FaultInjector, Journal, Update};
use crate::layout::*;

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

/// Cache hits, counted in 16 cache-line-sized stripes chosen by page slot: readers of
/// different pages on different cores rarely touch the same line (one shared counter
/// would bounce between cores on every cached read).
#[derive(Default)]
struct HitCounter([HitStripe; 16]);

#[derive(Default)]
#[repr(align(64))]
struct HitStripe(AtomicU64);

impl HitCounter {
    fn add(&self, slot: usize) {
        if let Some(s) = self.0.get(slot % 16) {
            s.0.fetch_add(1, Ordering::Relaxed);
        }
    }
    fn sum(&self) -> u64 {
        self.0.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
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

/// A page in memory and which of its records changed since its file was last written;
/// wiped when dropped (it holds ANs).
struct PageBuf(Box<PageMem>);

struct PageMem {
    bytes: [u8; PAGE_BYTES],
    changed: Changed,
}

/// Which records of a cached page changed since its file was last written.
struct Changed([u64; 16]);

impl Changed {
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self) {
        self.0 = [0; 16];
    }
    fn count(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }
    fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        (0..RECORDS_PER_PAGE as usize).filter(|&i| self.0[i / 64] & (1 << (i % 64)) != 0)
    }
}

/// A changed record of a page that was dropped from the cache before its file was written:
/// (record index, AN, MFS). Its journal batch stays until a checkpoint writes it.
struct OverlayRec(u16, [u8; 16], u8);

impl Drop for OverlayRec {
    fn drop(&mut self) {
        self.1.zeroize();
    }
}

/// Bytes charged to the cache bound for an overlay vector: twice its heap capacity plus
/// the allocator's overhead (small, often resized allocations fragment the heap; measured
/// RSS stays within the bound this way).
fn overlay_cost(v: &Vec<OverlayRec>) -> u64 {
    if v.capacity() == 0 {
        0
    } else {
        2 * (v.capacity() * std::mem::size_of::<OverlayRec>()) as u64 + 32
    }
}

/// What one slot's lock protects.
#[derive(Default)]
struct SlotData {
    page: Option<PageBuf>,
    overlay: Vec<OverlayRec>,
}

impl PageBuf {
    fn record(&self, i: usize) -> CoinRecord {
        let mut an = [0u8; 16];
        an.copy_from_slice(&self.0.bytes[i * RECORD_BYTES..i * RECORD_BYTES + 16]);
        CoinRecord { an, mfs: self.0.bytes[i * RECORD_BYTES + 16] }
    }
    fn set(&mut self, i: usize, an: &[u8; 16], mfs: u8) {
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
struct Slot {
    data: RwLock<SlotData>,
    /// Serialises writing this page's file (checkpoint vs eviction).
    io: Mutex<()>,
    /// The cached page has changes not in its file.
    dirty: AtomicBool,
    referenced: AtomicBool,
    loaded: AtomicBool,
}

struct Inner {
    dir: PathBuf,
    config: Config,
    opts: StoreOptions,
    slots: Box<[Slot]>,
    capacity: usize,
    cached: AtomicUsize,
    dirty: AtomicUsize,
    hand: AtomicUsize,
    evict_lock: Mutex<()>,
    checkpoint_lock: Mutex<()>,
    journal: Journal,
    kick_pending: AtomicBool,
    lockers: Table<[u8; 5], 16>,
    tokens: Table<(i8, u32), 32>,
    raida_secrets: Table<(u8, u32), 32>,
    page_loads: AtomicU64,
    cache_hits: HitCounter,
    evictions: AtomicU64,
    updates: AtomicU64,
    checkpoints: AtomicU64,
    page_writes: AtomicU64,
    overlay_bytes: AtomicU64,
    overlay_records: AtomicU64,
    cache_bytes: u64,
    signal: Arc<Signal>,
    /// Page buffers not in use. They are never freed while the store is open (freeing and
    /// reallocating 17 KB blocks from several threads fragments the heap and keeps RSS
    /// above the bound); beyond the first `POOL_HOT` the memory of a pooled buffer is handed
    /// back to the kernel with `madvise(MADV_DONTNEED)`.
    pool: Mutex<Vec<PageBuf>>,
    /// The cache's record of journal batches not yet durable, so that a failed journal
    /// write can be undone: per record (slot, index), each pending write's (batch sequence,
    /// value before it), oldest first. Entries leave once their batch is durable.
    undo: Mutex<HashMap<(usize, usize), PendingWrites>>,
    /// Test hook (never set in production).
    faults: Option<Arc<dyn FaultInjector>>,
    _lock_file: File,
}

/// The not yet durable writes of one record: (journal batch sequence, value before it),
/// oldest first.
type PendingWrites = VecDeque<(u64, CoinRecord)>;

/// Pooled buffers kept resident.
const POOL_HOT: usize = 64;

/// Returns the whole memory pages inside a pooled buffer to the kernel; they read as zero
/// when touched again (the next load overwrites the buffer anyway).
fn release_buffer_memory(buf: &mut PageBuf) {
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

struct Signal {
    state: Mutex<(bool, bool)>, // (stop, kick)
    cond: Condvar,
}

/// An open data directory. Dropping the last `Arc` writes every dirty page and releases
/// the lock file.
pub struct Store {
    inner: Arc<Inner>,
    bg: Mutex<Option<JoinHandle<()>>>,
}

fn locate(dn: i8, sn: u32) -> Result<(usize, usize)> {
    check_dn(dn)?;
    check_sn(sn)?;
    let page = (sn / RECORDS_PER_PAGE) as usize;
    let idx = (dn - MIN_DN) as usize * TOTAL_PAGES as usize + page;
    Ok((idx, (sn % RECORDS_PER_PAGE) as usize))
}

fn slot_dn_page(idx: usize) -> (i8, u32) {
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
            lockers: extras::lockers(dir)?,
            tokens: extras::tokens(dir)?,
            raida_secrets: extras::raida_secrets(dir)?,
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
    pub fn get(&self, dn: i8, sn: u32) -> Result<CoinRecord> {
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
    pub fn present_an(&self, dn: i8, sn: u32) -> Result<Option<[u8; 16]>> {
        match self.get(dn, sn) {
            Ok(r) => Ok((r.mfs != 0).then_some(r.an)),
            Err(StoreError::BadDenomination(_) | StoreError::SnOutOfRange(_) | StoreError::MissingPage { .. }) => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Changes one record; durable when it returns Ok.
    pub fn set(&self, dn: i8, sn: u32, an: [u8; 16], mfs: u8) -> Result<()> {
        self.set_many(&[(dn, sn, an, mfs)])
    }

    /// Changes several records as one journal batch (one fsync); durable when it returns Ok.
    /// Records are applied in order (a later record for the same coin wins).
    pub fn set_many(&self, updates: &[Update]) -> Result<()> {
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
            checkpoints: i.checkpoints.load(Ordering::Relaxed),
            page_writes: i.page_writes.load(Ordering::Relaxed),
            overlay_records: i.overlay_records.load(Ordering::Relaxed),
            overlay_bytes: i.overlay_bytes.load(Ordering::Relaxed),
        }
    }

    // ---- identity coins ----

    /// Path of an identity coin file.
    pub fn identity_coin_path(&self, dn: i8, sn: u32) -> PathBuf {
        self.inner.dir.join(identity_coin_rel_path(dn, sn))
    }

    /// Loads `coins/<DN>.<SN>.bin` and returns its 25 ANs; any deviation from the 440-byte
    /// layout or a coin id other than `coin_id` is an error (the server answers 197).
    /// No such coin: `MissingCoinFile`, `BadCoinFile` or `BadDenomination`; the file could
    /// not be read (e.g. EMFILE): `Io`.
    pub fn identity_coin(&self, dn: i8, sn: u32, coin_id: u16) -> Result<[[u8; 16]; TOTAL_RAIDA]> {
        check_dn(dn)?;
        let path = self.identity_coin_path(dn, sn);
        let mut f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(StoreError::MissingCoinFile(path)),
            Err(e) => return Err(StoreError::io("cannot open", path, e)),
        };
        let mut buf = Zeroizing::new(Vec::with_capacity(IDENTITY_COIN_BYTES + 1));
        (&mut f)
            .take(IDENTITY_COIN_BYTES as u64 + 1)
            .read_to_end(&mut buf)
            .map_err(|e| StoreError::io("cannot read", &path, e))?;
        decode_identity_coin(&buf, coin_id).map_err(|reason| StoreError::BadCoinFile { path, reason })
    }

    /// Writes an identity coin file durably (mode 0600); refuses to overwrite an existing one.
    pub fn write_identity_coin(&self, dn: i8, sn: u32, coin_id: u16, ans: &[[u8; 16]; TOTAL_RAIDA]) -> Result<()> {
        check_dn(dn)?;
        let path = self.identity_coin_path(dn, sn);
        if path.exists() {
            return Err(StoreError::CoinFileExists(path));
        }
        if let Some(parent) = path.parent() {
            create_dir_durable(parent).map_err(|e| StoreError::io("cannot create", parent, e))?;
        }
        let bytes = Zeroizing::new(encode_identity_coin(coin_id, ans));
        write_file_atomic(&path, &bytes[..], 0o600).map_err(|e| StoreError::io("cannot write", path, e))
    }

    // ---- lockers ----

    /// The locker whose AN starts with `prefix`.
    pub fn locker_by_prefix(&self, prefix: &[u8; 5]) -> Option<[u8; 16]> {
        self.inner.lockers.get(prefix)
    }

    /// Adds a locker durably; refuses a second locker with the same 5-byte prefix.
    pub fn add_locker(&self, an: [u8; 16]) -> Result<()> {
        let mut p = [0u8; 5];
        p.copy_from_slice(&an[..5]);
        if self.inner.lockers.put(p, &an, false)? {
            Ok(())
        } else {
            Err(StoreError::DuplicateLocker(hex::encode(p)))
        }
    }

    /// Removes the locker with this prefix; `Ok(false)` if there was none.
    pub fn remove_locker(&self, prefix: &[u8; 5]) -> Result<bool> {
        self.inner.lockers.remove(prefix)
    }

    /// Number of lockers.
    pub fn locker_count(&self) -> usize {
        self.inner.lockers.len()
    }

    // ---- key tokens ----

    /// This RAIDA's 32-byte secret of key token (DN 7..11, SN).
    pub fn token_secret(&self, dn: i8, sn: u32) -> Option<[u8; 32]> {
        if !(7..=11).contains(&dn) {
            return None;
        }
        self.inner.tokens.get(&(dn, sn))
    }

    /// Stores (or replaces) a key token's secret durably.
    pub fn set_token_secret(&self, dn: i8, sn: u32, secret: &[u8; 32]) -> Result<()> {
        if !(7..=11).contains(&dn) {
            return Err(StoreError::BadTokenDenomination(dn));
        }
        self.inner.tokens.put((dn, sn), secret, true).map(|_| ())
    }

    // ---- RAIDA pre-shared secrets ----

    /// Type-7 pre-shared secret from RAIDA `sender` to this RAIDA, key id `key_id`.
    pub fn raida_secret(&self, sender: u8, key_id: u32) -> Option<[u8; 32]> {
        if sender > 24 {
            return None;
        }
        self.inner.raida_secrets.get(&(sender, key_id))
    }

    /// Stores (or replaces) a type-7 pre-shared secret durably.
    pub fn set_raida_secret(&self, sender: u8, key_id: u32, secret: &[u8; 32]) -> Result<()> {
        if sender > 24 {
            return Err(StoreError::BadRaidaId(sender));
        }
        self.inner.raida_secrets.put((sender, key_id), secret, true).map(|_| ())
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

fn background(inner: Arc<Inner>) {
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

impl Inner {
    /// Wakes the background thread (spare journal segment wanted).
    fn kick_background(&self) {
        let mut s = self.signal.state.lock();
        s.1 = true;
        self.signal.cond.notify_all();
    }

    /// Asks the background thread for a checkpoint (once until it starts).
    fn kick_checkpoint(&self) {
        if !self.kick_pending.swap(true, Ordering::AcqRel) {
            let mut s = self.signal.state.lock();
            s.1 = true;
            self.signal.cond.notify_all();
        }
    }

    fn page_path(&self, idx: usize) -> PathBuf {
        let (dn, page) = slot_dn_page(idx);
        self.dir.join(page_rel_path(dn, page))
    }

    fn read_page(&self, idx: usize, sn: u32) -> Result<PageBuf> {
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

    fn drop_overlay(&self, v: &mut Vec<OverlayRec>) {
        let cost = overlay_cost(v);
        let n = v.len() as u64;
        *v = Vec::new();
        self.overlay_bytes.fetch_sub(cost, Ordering::Relaxed);
        self.overlay_records.fetch_sub(n, Ordering::Relaxed);
    }

    /// Keeps an evicted page buffer for the next load (which overwrites all of it; a buffer
    /// that is finally dropped is zeroized then).
    fn recycle(&self, mut buf: PageBuf) {
        let mut pool = self.pool.lock();
        if pool.len() >= POOL_HOT {
            release_buffer_memory(&mut buf);
        }
        pool.push(buf);
    }

    /// Reads the page file into an empty slot (write lock held) and applies its overlay.
    fn load_into(&self, slot: &Slot, g: &mut SlotData, idx: usize, sn: u32) -> Result<()> {
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

    fn read_loading(&self, idx: usize, sn: u32, rec: usize) -> Result<CoinRecord> {
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

    fn mark_dirty(&self, slot: &Slot) {
        if !slot.dirty.swap(true, Ordering::SeqCst) {
            self.dirty.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Applies updates to the cached pages (loading them), under all their page locks; with
    /// `log`, appends the batch to the journal under those locks and returns its sequence.
    fn apply(&self, updates: &[Update], log: bool) -> Result<Option<u64>> {
        if updates.is_empty() {
            return Ok(None);
        }
        let mut locs = Vec::with_capacity(updates.len());
        for (dn, sn, _, _) in updates {
            locs.push(locate(*dn, *sn)?);
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
                    let sn = updates.iter().zip(&locs).find(|(_, l)| l.0 == i).map(|(u, _)| u.1).unwrap_or(0);
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
            for ((_, _, an, mfs), (i, rec)) in updates.iter().zip(&locs) {
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
    fn forget_durable(&self, updates: &[Update], seq: u64) {
        let mut undo = self.undo.lock();
        for (dn, sn, _, _) in updates {
            let Ok(key) = locate(*dn, *sn) else { continue };
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
    fn roll_back_pending(&self) {
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
    fn page_limit(&self) -> usize {
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
    fn maybe_evict(&self) {
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
    fn write_back(&self, idx: usize) -> Result<Option<PathBuf>> {
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
    fn write_all_dirty(&self) -> Result<()> {
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
    fn checkpoint(&self) -> Result<()> {
        let _c = self.checkpoint_lock.lock();
        self.kick_pending.store(false, Ordering::Release);
        let old = self.journal.rotate()?;
        self.write_all_dirty()?;
        self.journal.remove_segments(&old)?;
        self.checkpoints.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
