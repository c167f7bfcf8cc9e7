//! Pending posted key parts (41 Post Key / 43 Get Key) under `Keys/`.
//!
//! One file per key, named by the 32 lowercase hex digits of the key id (nothing else
//! from a request reaches a path), mode 0640, written to a temporary name, fsync'd and
//! renamed. The in-memory index is rebuilt from the files at start; temporary files left
//! by a crash, expired keys and unreadable files are removed then, in batches of
//! [`SWEEP_BATCH`] with one directory fsync per batch.
//!
//! **The index lock is never held across disk I/O**, so a slow disk or a flood of posts
//! cannot make every other post and Get Key queue behind one fsync:
//! * Post Key reserves the key id in the index (state `Writing`: Get Key answers 216, a
//!   post of the same id 201), writes the file outside the lock (temp + fsync + rename),
//!   waits for the directory fsync, then publishes the key (`Live`) and answers.
//! * Get Key marks the key `Taking` (so it is handed out once), removes the file from its
//!   name outside the lock (recycled, see below), waits for the directory fsync, then drops the key and answers.
//! * The directory fsync is a group commit ([`DirSync`]): one fsync of `Keys/` covers the
//!   renames and unlinks of every post, Get Key and sweep waiting at that moment, and each
//!   answer still comes only after its own file and directory entry are durable.
//! * A post that replaces its poster's previous key removes the old file only after the new
//!   one is durable (a crash in between leaves both; the next open keeps the newer).
//! * **Files are recycled, not unlinked** (up to [`MAX_SPARE_FILES`]): Get Key renames the
//!   taken key's file to a temporary name and overwrites it with zeros; the next post writes
//!   its key into such a spare (in place, fdatasync) and renames it to its key id. On ext4 the
//!   creation of a new inode while thousands were just freed scans past every recently
//!   freed one (`recently_deleted`) holding the directory's lock: a profile of Post+Get
//!   pairs at 64 in flight spent a third of the server's CPU there and spinning on that
//!   lock. The durability steps are unchanged (file fdatasync before its rename, directory
//!   fsync before the answer); a crash leaves spares under temporary names, which the next
//!   open removes, and a taken key's bytes never stay in a file (it is zeroed at once).
//!
//! **Fair shares** ([`PendingKeyLimits`]): at most `max_keys` keys (254 beyond). Anonymous
//! (EN 0) posts may hold at most `anonymous_percent` % of `max_keys` in total and
//! `anonymous_per_addr` per source address (an IPv6 /64 is one address); beyond either 160.
//! A source address can be spoofed over UDP, hence the total cap: however many addresses a
//! flood uses, the rest of the store stays free for posts made with a coin, which are bounded
//! by their own identity (one pending key per poster). Source addresses are kept only in
//! memory: an anonymous post's address never reaches the disk, and after a restart the
//! anonymous keys loaded count against the total only.
//!
//! The file format, file names and reading of `Keys/` are `raida_store::keys_dir`'s.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use raida_proto::commands::post_key::{CoinName, PostedKey};
use raida_proto::Status;
use raida_store::durable::{self, DirSync};
pub use raida_store::keys_dir::{key_file_name, Poster};
use raida_store::keys_dir::{key_id_of_file_name, read_key_file, unlink, PendingKey};
use zeroize::Zeroize;

/// Files removed per directory fsync by the sweeper and at open.
pub const SWEEP_BATCH: usize = 1024;
/// Emptied files of taken keys kept for reuse by the next posts (module docs); beyond
/// this, taken keys' files are unlinked.
pub const MAX_SPARE_FILES: usize = 1024;
/// A key file is at most 34 + 255 bytes: the zeros a taken key's file is wiped with.
const MAX_SPARE_LEN: usize = 512;
/// Limits of the pending-key store (config.toml `max_pending_keys`,
/// `anonymous_pending_keys_percent`, `anonymous_posts_per_addr`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingKeyLimits {
    /// Keys pending at once; a post beyond it gets 254.
    pub max_keys: usize,
    /// Share of `max_keys` anonymous posts may hold, in percent (rounded up); beyond it 160.
    pub anonymous_percent: u8,
    /// Anonymous keys pending at once from one source address; beyond it 160.
    pub anonymous_per_addr: usize,
}

impl Default for PendingKeyLimits {
    fn default() -> Self {
        PendingKeyLimits { max_keys: PendingKeys::DEFAULT_MAX_KEYS, anonymous_percent: 25, anonymous_per_addr: 16 }
    }
}

impl PendingKeyLimits {
    /// The limits set in `config.toml`.
    pub fn from_config(c: &raida_store::Config) -> PendingKeyLimits {
        PendingKeyLimits {
            max_keys: c.max_pending_keys,
            anonymous_percent: c.anonymous_pending_keys_percent,
            anonymous_per_addr: c.anonymous_posts_per_addr,
        }
    }

    /// Anonymous keys allowed at once: `anonymous_percent` % of `max_keys`, rounded up.
    pub fn anonymous_max(&self) -> usize {
        let share = (self.max_keys as u128 * u128::from(self.anonymous_percent.min(100))).div_ceil(100);
        usize::try_from(share).unwrap_or(usize::MAX)
    }
}

/// Where anonymous posts are counted: an IPv4 address, or the /64 prefix of an IPv6
/// address (one IPv6 host commonly holds a whole /64, so single addresses would count nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum SourceBucket {
    V4([u8; 4]),
    V6([u8; 8]),
}

impl SourceBucket {
    fn of(ip: IpAddr) -> SourceBucket {
        match ip {
            IpAddr::V4(v4) => SourceBucket::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => SourceBucket::V4(v4.octets()),
                None => {
                    let [a, b, c, d, e, f, g, h, ..] = v6.octets();
                    SourceBucket::V6([a, b, c, d, e, f, g, h])
                }
            },
        }
    }
}

/// Where a key is in its life; only `Live` keys are handed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyState {
    /// Reserved by a post whose file is being written.
    Writing,
    /// Durable and answered: Get Key may take it.
    Live,
    /// Being deleted (Get Key, a replacing post, the sweeper).
    Taking,
}

struct Entry {
    key: PendingKey,
    state: KeyState,
    /// The source of an anonymous post made since start (None after a restart).
    source: Option<SourceBucket>,
}

#[derive(Default)]
struct Index {
    keys: HashMap<[u8; 16], Entry>,
    /// A poster's newest key (non-anonymous posters only).
    by_poster: HashMap<Poster, [u8; 16]>,
    /// Anonymous keys in `keys`, in total and per source.
    anonymous: usize,
    anonymous_by_source: HashMap<SourceBucket, usize>,
    /// (created, key id) in the order keys were added: the sweeper pops expired keys from
    /// the front instead of scanning every key under the lock. Entries whose key is gone
    /// are skipped when they reach the front (and compacted away if they pile up).
    expiry: VecDeque<(u64, [u8; 16])>,
}

impl Index {
    fn add(&mut self, id: [u8; 16], entry: Entry) {
        if entry.key.poster == Poster::Anonymous {
            self.anonymous += 1;
            if let Some(b) = entry.source {
                *self.anonymous_by_source.entry(b).or_insert(0) += 1;
            }
        }
        self.expiry.push_back((entry.key.created, id));
        if let Some(old) = self.keys.insert(id, entry) {
            // callers remove first; keep the counters right anyway
            self.forget(&id, &old);
        }
        self.compact_expiry();
    }

    fn remove(&mut self, id: &[u8; 16]) -> Option<Entry> {
        let e = self.keys.remove(id)?;
        self.forget(id, &e);
        Some(e)
    }

    fn forget(&mut self, id: &[u8; 16], e: &Entry) {
        if e.key.poster == Poster::Anonymous {
            self.anonymous = self.anonymous.saturating_sub(1);
            if let Some(b) = e.source {
                if let Some(n) = self.anonymous_by_source.get_mut(&b) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.anonymous_by_source.remove(&b);
                    }
                }
            }
        } else if self.by_poster.get(&e.key.poster) == Some(id) {
            self.by_poster.remove(&e.key.poster);
        }
    }

    /// Keeps the expiry queue within twice the keys (plus slack): posts and takes at a high
    /// rate would otherwise grow it by rate × TTL.
    fn compact_expiry(&mut self) {
        if self.expiry.len() <= 2 * self.keys.len() + 4096 {
            return;
        }
        let mut q: Vec<(u64, [u8; 16])> = self.keys.iter().map(|(id, e)| (e.key.created, *id)).collect();
        q.sort_unstable();
        self.expiry = q.into();
    }
}

/// Counters of the pending-key store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PendingKeyStats {
    /// Keys in the index (pending, being written or being taken).
    pub keys: usize,
    /// Anonymous keys among them.
    pub anonymous: usize,
    /// Posts answered 250.
    pub posts: u64,
    /// Keys handed out by Get Key.
    pub taken: u64,
    /// Expired keys removed (at open and by the sweeper).
    pub expired: u64,
    /// Temporary files from an interrupted write removed at open.
    pub temp_files_removed: u64,
    /// fsyncs of the `Keys/` directory (group commit: far fewer than posts + takes under load).
    pub dir_fsyncs: u64,
}

impl PendingKeyStats {
    /// `name=value` lines for Show Stats.
    pub fn render(&self) -> String {
        format!(
            "pending_keys={}\npending_keys_anonymous={}\npending_keys_posted={}\npending_keys_taken={}\n\
             pending_keys_expired={}\npending_keys_temp_files_removed={}\npending_keys_dir_fsyncs={}\n",
            self.keys, self.anonymous, self.posts, self.taken, self.expired, self.temp_files_removed, self.dir_fsyncs
        )
    }
}

/// The pending keys of one server.
pub struct PendingKeys {
    dir: PathBuf,
    ttl: u64,
    /// Swapped whole by a SIGHUP reload ([`PendingKeys::set_limits`]).
    limits: arc_swap::ArcSwap<PendingKeyLimits>,
    index: Mutex<Index>,
    dir_sync: DirSync,
    /// Temporary names of emptied files ready for reuse (the lock is never held across I/O).
    spares: Mutex<Vec<(PathBuf, u64)>>,
    posts: AtomicU64,
    taken: AtomicU64,
    expired: AtomicU64,
    temp_files_removed: AtomicU64,
    /// Directory fsyncs of the sweeper (outside the group commit).
    sweep_fsyncs: AtomicU64,
}

/// A post whose file is written under its key id, not yet durable in the directory.
struct PostWritten {
    id: [u8; 16],
    poster: Poster,
    /// The poster's previous key, which this one replaces once durable.
    previous: Option<[u8; 16]>,
    path: PathBuf,
}

/// [`PendingKeys::post`] without waiting: `done` runs with the result once the key is
/// durable, on the thread that led the directory fsync covering it (often another
/// request's), so this thread is free at once. `keys` finds the store in `owner` (the
/// continuation outlives this call).
pub fn post_then<O: Send + Sync + 'static>(
    owner: Arc<O>,
    keys: fn(&O) -> &PendingKeys,
    post: &PostedKey,
    poster: Poster,
    source: IpAddr,
    now: u64,
    done: impl FnOnce(Result<(), Status>) + Send + 'static,
) {
    let store = keys(&owner);
    let written = match store.post_write(post, poster, source, now) {
        Ok(w) => w,
        Err(status) => return done(Err(status)),
    };
    let owner2 = owner.clone();
    store.dir_sync.sync_then(Box::new(move |synced| {
        let store = keys(&owner2);
        match store.post_publish(written, synced) {
            Ok(stale) => {
                if let Some(old) = stale {
                    // removed only now that the new key is durable: a crash never leaves neither
                    match store.remove_key_file(&store.path(&old)) {
                        Ok(()) => {
                            let owner3 = owner2.clone();
                            store.dir_sync.sync_then(Box::new(move |r| keys(&owner3).stale_removed(old, r)));
                        }
                        Err(e) => store.stale_removed(old, Err(e)),
                    }
                }
                done(Ok(()))
            }
            Err(status) => done(Err(status)),
        }
    }));
}

/// [`PendingKeys::take`] without waiting: `done` runs with the key once its deletion is
/// durable (as in [`post_then`]).
pub fn take_then<O: Send + Sync + 'static>(
    owner: Arc<O>,
    keys: fn(&O) -> &PendingKeys,
    key_id: [u8; 16],
    requester_coins: &[CoinName],
    requester_ip: IpAddr,
    now: u64,
    done: impl FnOnce(Result<(CoinName, Vec<u8>), Status>) + Send + 'static,
) {
    let store = keys(&owner);
    if let Err(status) = store.take_remove(&key_id, requester_coins, requester_ip, now) {
        return done(Err(status));
    }
    let owner2 = owner.clone();
    store.dir_sync.sync_then(Box::new(move |synced| done(keys(&owner2).take_finish(&key_id, synced))));
}

impl PendingKeys {
    /// At most this many keys are pending by default (a post beyond it gets 254).
    pub const DEFAULT_MAX_KEYS: usize = 1_000_000;

    /// Open `dir` (created mode 0700 if missing, tightened to 0700 if wider) and load every
    /// pending key in it. Temporary files left by a crash, expired keys, unreadable files
    /// and keys replaced by a newer post of the same poster are removed, in batches with one
    /// directory fsync each. Default limits ([`PendingKeys::set_limits`] changes them).
    pub fn open(dir: &Path, ttl_secs: u64, now: u64) -> io::Result<PendingKeys> {
        durable::create_private_dir(dir)?;
        let keys = PendingKeys {
            dir: dir.to_path_buf(),
            ttl: ttl_secs,
            limits: arc_swap::ArcSwap::from_pointee(PendingKeyLimits::default()),
            index: Mutex::new(Index::default()),
            dir_sync: DirSync::new(dir),
            spares: Mutex::new(Vec::new()),
            posts: AtomicU64::new(0),
            taken: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            temp_files_removed: AtomicU64::new(0),
            sweep_fsyncs: AtomicU64::new(0),
        };
        let mut index = Index::default();
        let (mut temps, mut expired, mut unreadable, mut replaced) = (Vec::new(), Vec::new(), 0u64, 0u64);
        let mut garbage = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
            if durable::is_temp_file_name(name) {
                if is_file {
                    temps.push(entry.path());
                }
                continue;
            }
            let Some(id) = key_id_of_file_name(name).filter(|_| is_file) else {
                continue; // a foreign file: not ours to judge
            };
            let bytes = match read_key_file(&entry.path()) {
                Ok(b) => b,
                Err(e) => {
                    // a transient error (EMFILE, EIO) must not destroy a key: keep the file
                    tracing::error!(file = %entry.path().display(), error = %e, "cannot read pending key file");
                    continue;
                }
            };
            let Some(k) = PendingKey::decode(&bytes) else {
                tracing::warn!(file = %entry.path().display(), "unreadable pending key file removed");
                unreadable += 1;
                garbage.push(entry.path());
                continue;
            };
            if now.saturating_sub(k.created) > ttl_secs {
                expired.push(entry.path());
                continue;
            }
            if k.poster != Poster::Anonymous {
                if let Some(other) = index.by_poster.get(&k.poster).copied() {
                    // a crash between a replacing post and the removal of the key it
                    // replaced left both: keep the newer (the later key id on a tie)
                    let other_created = index.keys.get(&other).map(|e| e.key.created).unwrap_or(0);
                    replaced += 1;
                    if (other_created, other) > (k.created, id) {
                        garbage.push(keys.path(&id));
                        continue;
                    }
                    index.remove(&other);
                    garbage.push(keys.path(&other));
                }
                index.by_poster.insert(k.poster, id);
            }
            index.add(id, Entry { key: k, state: KeyState::Live, source: None });
        }
        index.expiry.make_contiguous().sort_unstable();
        let (n_temps, n_expired) = (temps.len() as u64, expired.len() as u64);
        garbage.extend(temps);
        garbage.extend(expired);
        for batch in garbage.chunks(SWEEP_BATCH) {
            for path in batch {
                if let Err(e) = unlink(path) {
                    tracing::warn!(file = %path.display(), error = %e, "cannot remove pending key file");
                }
            }
            keys.dir_sync.sync()?;
        }
        if !garbage.is_empty() {
            tracing::info!(
                dir = %dir.display(),
                temporary = n_temps,
                expired = n_expired,
                unreadable,
                replaced,
                "pending keys: files removed at open"
            );
        }
        keys.temp_files_removed.store(n_temps, Ordering::Relaxed);
        keys.expired.store(n_expired, Ordering::Relaxed);
        *keys.index.lock() = index;
        Ok(keys)
    }

    /// Set every limit (the server applies config.toml's after open, and on SIGHUP).
    pub fn set_limits(&self, limits: PendingKeyLimits) {
        self.limits.store(Arc::new(limits));
    }

    pub fn limits(&self) -> PendingKeyLimits {
        **self.limits.load()
    }

    /// The group commit of the `Keys/` directory fsync (tests line callers up with it).
    pub fn dir_sync(&self) -> &DirSync {
        &self.dir_sync
    }

    pub fn stats(&self) -> PendingKeyStats {
        let (keys, anonymous) = {
            let idx = self.index.lock();
            (idx.keys.len(), idx.anonymous)
        };
        PendingKeyStats {
            keys,
            anonymous,
            posts: self.posts.load(Ordering::Relaxed),
            taken: self.taken.load(Ordering::Relaxed),
            expired: self.expired.load(Ordering::Relaxed),
            temp_files_removed: self.temp_files_removed.load(Ordering::Relaxed),
            dir_fsyncs: self.dir_sync.fsyncs() + self.sweep_fsyncs.load(Ordering::Relaxed),
        }
    }

    fn path(&self, id: &[u8; 16]) -> PathBuf {
        self.dir.join(key_file_name(id))
    }

    /// Spare (emptied, reusable) files held right now.
    pub fn spare_files(&self) -> usize {
        self.spares.lock().len()
    }

    /// Writes a key file to `path` (a spare reused when there is one, else a new temporary
    /// file), fdatasync'd before the rename; the caller makes the rename durable.
    fn write_key_file(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let spare = self.spares.lock().pop();
        let Some((tmp, spare_len)) = spare else {
            return durable::write_replace_no_dir_sync(path, bytes, 0o640);
        };
        let result = (|| {
            // overwritten in place, not truncated: truncating frees the data block (a
            // synchronous discard on a `discard` mount) and changes the size (an inode write)
            let mut f = std::fs::OpenOptions::new().write(true).open(&tmp)?;
            f.write_all(bytes)?;
            if spare_len != bytes.len() as u64 {
                f.set_len(bytes.len() as u64)?; // a size change costs an inode write: only when needed
            }
            f.sync_data()?;
            drop(f);
            std::fs::rename(&tmp, path)
        })();
        if result.is_err() {
            let _ = unlink(&tmp);
        }
        result
    }

    /// Takes a key's file away from its name (rename to a spare, emptied at once; or unlink
    /// when enough spares are kept); the caller makes the change durable.
    fn remove_key_file(&self, path: &Path) -> io::Result<()> {
        if self.spares.lock().len() >= MAX_SPARE_FILES {
            return unlink(path);
        }
        let spare = durable::temp_path(&self.dir.join("spare"));
        match std::fs::rename(path, &spare) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        }
        // overwritten with zeros now: a taken key's bytes must not stay readable in a file
        let wiped = (|| {
            let mut f = std::fs::OpenOptions::new().write(true).open(&spare)?;
            let len = f.metadata()?.len().min(MAX_SPARE_LEN as u64) as usize;
            f.write_all(&[0u8; MAX_SPARE_LEN][..len])?;
            Ok::<_, io::Error>(len as u64)
        })();
        match wiped {
            Ok(len) => self.spares.lock().push((spare, len)),
            Err(_) => {
                let _ = unlink(&spare);
            }
        }
        Ok(())
    }

    fn live(&self, k: &PendingKey, now: u64) -> bool {
        now.saturating_sub(k.created) <= self.ttl
    }

    /// Store a posted key durably (checks 217 and 201 here, then the limits: 254 when the
    /// store is full, 160 beyond the anonymous shares or while the same poster's previous
    /// post is still being written; 16/195/196 are the codec's). `source`: the request's
    /// source address (counted for anonymous posts only). Returns once the key is durable
    /// (the server uses [`post_then`], which does not wait; mixing both under load can keep
    /// a caller of this one leading fsyncs for the others, see `DirSync::sync`).
    pub fn post(&self, post: &PostedKey, poster: Poster, source: IpAddr, now: u64) -> Result<(), Status> {
        let written = self.post_write(post, poster, source, now)?;
        let synced = self.dir_sync.sync();
        let stale = self.post_publish(written, synced)?;
        if let Some(old) = stale {
            // removed only now that the new key is durable: a crash never leaves neither
            let removed = self.remove_key_file(&self.path(&old)).and_then(|()| self.dir_sync.sync());
            self.stale_removed(old, removed);
        }
        Ok(())
    }

    /// Steps 1 and 2 of a post: reserve the key id (no I/O under the lock), then write the
    /// file and rename it to its key id, outside the lock. Its directory entry is durable
    /// once the next directory sync has run ([`PendingKeys::post_publish`] comes after).
    fn post_write(&self, post: &PostedKey, poster: Poster, source: IpAddr, now: u64) -> Result<PostWritten, Status> {
        if post.sender.is_set() && poster != Poster::Coin(post.sender) {
            return Err(Status::ReceiverAuth);
        }
        let id = post.key_id;
        let anonymous = poster == Poster::Anonymous;
        let key = PendingKey {
            created: now,
            poster,
            receiver: post.receiver,
            receiver_ip: post.receiver_ip,
            sender: post.sender,
            key_bytes: post.key_bytes.clone(),
        };
        let mut bytes = key.encode();

        // 1. reserve the key id (no I/O under the lock)
        let previous = {
            let mut idx = self.index.lock();
            let (mut same_id, mut expired) = (false, false);
            if let Some(e) = idx.keys.get(&id) {
                if e.state == KeyState::Live && !self.live(&e.key, now) {
                    expired = true; // its file is replaced by the rename below
                } else if e.state == KeyState::Live && !anonymous && e.key.poster == poster {
                    same_id = true; // the poster posts its key id again: replaced in place
                } else {
                    bytes.zeroize();
                    return Err(Status::FileExists);
                }
            }
            let previous = if anonymous { None } else { idx.by_poster.get(&poster).copied() };
            if let Some(prev) = previous.filter(|p| *p != id) {
                if idx.keys.get(&prev).is_some_and(|e| e.state == KeyState::Writing) {
                    // one post per poster at a time: which one replaces which is then clear
                    bytes.zeroize();
                    return Err(Status::RequestRate);
                }
            }
            let replaces = same_id || expired || previous.is_some();
            let limits = self.limits();
            let refusal = if !replaces && idx.keys.len() >= limits.max_keys {
                Some(Status::MemoryAlloc)
            } else if anonymous
                && (idx.anonymous >= limits.anonymous_max()
                    || idx.anonymous_by_source.get(&SourceBucket::of(source)).copied().unwrap_or(0)
                        >= limits.anonymous_per_addr)
            {
                Some(Status::RequestRate)
            } else {
                None
            };
            if let Some(status) = refusal {
                bytes.zeroize();
                return Err(status);
            }
            if same_id || expired {
                idx.remove(&id);
            }
            idx.add(id, Entry { key, state: KeyState::Writing, source: anonymous.then(|| SourceBucket::of(source)) });
            if !anonymous {
                idx.by_poster.insert(poster, id);
            }
            previous.filter(|p| *p != id)
        };

        // 2. write the file, outside the lock; its directory entry is made durable by the
        // caller's directory sync
        let path = self.path(&id);
        let result = self.write_key_file(&path, &bytes);
        bytes.zeroize();
        let written = PostWritten { id, poster, previous, path };
        match result {
            Ok(()) => Ok(written),
            Err(e) => Err(self.post_failed(written, e)),
        }
    }

    /// A post whose file or directory entry could not be made durable: answered 194, and
    /// nothing is left under its key id (the rename may have happened before the directory
    /// fsync failed). The id stays reserved until the file is gone, so no other post's
    /// file can be removed here.
    fn post_failed(&self, w: PostWritten, e: io::Error) -> Status {
        tracing::error!(error = %e, "cannot write pending key");
        let _ = unlink(&w.path);
        let mut idx = self.index.lock();
        idx.remove(&w.id);
        if let Some(prev) = w.previous {
            if idx.keys.get(&prev).is_some_and(|e| e.key.poster == w.poster) {
                idx.by_poster.insert(w.poster, prev);
            }
        }
        Status::Filesystem
    }

    /// Step 3 of a post, once the directory sync that covers its rename has run: publish
    /// the key (Get Key may take it now). Returns the poster's previous key, if this one
    /// replaces it: it stops being handed out now, and the caller removes its file
    /// ([`PendingKeys::stale_removed`] once that is durable).
    fn post_publish(&self, w: PostWritten, synced: io::Result<()>) -> Result<Option<[u8; 16]>, Status> {
        if let Err(e) = synced {
            return Err(self.post_failed(w, e));
        }
        let PostWritten { id, poster, previous, .. } = w;
        let stale = {
            let mut idx = self.index.lock();
            if let Some(e) = idx.keys.get_mut(&id) {
                e.state = KeyState::Live;
            }
            let stale = previous
                .filter(|p| idx.keys.get(p).is_some_and(|e| e.state == KeyState::Live && e.key.poster == poster));
            if let Some(e) = stale.and_then(|p| idx.keys.get_mut(&p)) {
                e.state = KeyState::Taking;
            }
            stale
        };
        self.posts.fetch_add(1, Ordering::Relaxed);
        Ok(stale)
    }

    /// A replaced key's file was removed (`removed`: made durable or not): forget the key.
    fn stale_removed(&self, old: [u8; 16], removed: io::Result<()>) {
        if let Err(e) = removed {
            // the next open removes it (it keeps the newer key of a poster)
            tracing::warn!(error = %e, "cannot remove replaced pending key");
        }
        self.index.lock().remove(&old);
    }

    /// Hand a key out once: 216 not pending, 217 wrong receiver coin, 218 wrong address.
    /// `requester_coins`: the coins whose key encrypted the request. The key's deletion is
    /// durable before this returns it (the server uses [`take_then`], which does not wait).
    pub fn take(
        &self,
        key_id: &[u8; 16],
        requester_coins: &[CoinName],
        requester_ip: IpAddr,
        now: u64,
    ) -> Result<(CoinName, Vec<u8>), Status> {
        self.take_remove(key_id, requester_coins, requester_ip, now)?;
        let synced = self.dir_sync.sync();
        self.take_finish(key_id, synced)
    }

    /// Step 1 of a take: check, mark the key `Taking` (handed out once) and take its file
    /// away from its name; the removal is durable once the next directory sync has run.
    fn take_remove(
        &self,
        key_id: &[u8; 16],
        requester_coins: &[CoinName],
        requester_ip: IpAddr,
        now: u64,
    ) -> Result<(), Status> {
        {
            let mut idx = self.index.lock();
            let e = idx.keys.get_mut(key_id).ok_or(Status::KeyNotFound)?;
            if e.state != KeyState::Live || now.saturating_sub(e.key.created) > self.ttl {
                return Err(Status::KeyNotFound);
            }
            let k = &e.key;
            if k.receiver.is_set() && !requester_coins.contains(&k.receiver) {
                return Err(Status::ReceiverAuth);
            }
            if k.receiver_ip != [0; 4] {
                let allowed = IpAddr::V4(Ipv4Addr::from(k.receiver_ip));
                let ip = match requester_ip {
                    IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(requester_ip),
                    v4 => v4,
                };
                if ip != allowed {
                    return Err(Status::ReceiverAddress);
                }
            }
            e.state = KeyState::Taking;
        }
        self.remove_key_file(&self.path(key_id)).or_else(|e| self.take_finish(key_id, Err(e)).map(|_| ()))
    }

    /// Step 2 of a take, once the directory sync covering the removal has run: drop the key
    /// and hand out its bytes; on a failure the key is live again (194).
    fn take_finish(&self, key_id: &[u8; 16], removed: io::Result<()>) -> Result<(CoinName, Vec<u8>), Status> {
        let mut idx = self.index.lock();
        if let Err(e) = removed {
            tracing::error!(error = %e, "cannot delete pending key");
            if let Some(e) = idx.keys.get_mut(key_id) {
                e.state = KeyState::Live;
            }
            return Err(Status::Filesystem);
        }
        let mut e = idx.remove(key_id).ok_or(Status::KeyNotFound)?;
        drop(idx);
        self.taken.fetch_add(1, Ordering::Relaxed);
        Ok((e.key.sender, std::mem::take(&mut e.key.key_bytes)))
    }

    /// Delete expired keys (the background sweeper): batches of [`SWEEP_BATCH`], each with
    /// one directory fsync; the index lock is held only to pick and to drop a batch.
    pub fn sweep(&self, now: u64) -> usize {
        let mut total = 0;
        loop {
            let batch = self.pick_expired(now);
            if batch.is_empty() {
                break;
            }
            for id in &batch {
                if let Err(e) = unlink(&self.path(id)) {
                    tracing::warn!(error = %e, "cannot remove expired pending key");
                }
            }
            // Its own fsync, not the group commit: a caller of `DirSync::sync` that finds
            // posts' and Get Keys' continuations waiting leads fsyncs for them until none is
            // left, which under steady load would keep the sweeper from ever finishing (and
            // expired keys in the index). Nobody waits for this one: a crash before it is
            // durable leaves expired files, which the next open removes.
            let synced = durable::fsync_dir(&self.dir);
            self.sweep_fsyncs.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = synced {
                tracing::warn!(error = %e, "cannot make the removal of expired pending keys durable");
            }
            {
                let mut idx = self.index.lock();
                for id in &batch {
                    idx.remove(id);
                }
            }
            total += batch.len();
            if batch.len() < SWEEP_BATCH {
                break;
            }
        }
        self.expired.fetch_add(total as u64, Ordering::Relaxed);
        total
    }

    /// Up to [`SWEEP_BATCH`] expired live keys, marked `Taking`.
    fn pick_expired(&self, now: u64) -> Vec<[u8; 16]> {
        let mut idx = self.index.lock();
        let mut batch = Vec::new();
        let mut busy = Vec::new();
        while batch.len() < SWEEP_BATCH {
            let Some(&(created, id)) = idx.expiry.front() else { break };
            if now.saturating_sub(created) <= self.ttl {
                break; // the queue is in posting order: nothing behind is older
            }
            idx.expiry.pop_front();
            let Some(e) = idx.keys.get_mut(&id) else { continue };
            if e.key.created != created {
                continue; // the id was posted again since: its newer entry is further back
            }
            match e.state {
                KeyState::Live => {
                    e.state = KeyState::Taking;
                    batch.push(id);
                }
                // being written or taken: look again at the next sweep
                KeyState::Writing | KeyState::Taking => busy.push((created, id)),
            }
        }
        // busy keys are looked at first by the next sweep
        for item in busy.into_iter().rev() {
            idx.expiry.push_front(item);
        }
        batch
    }

    /// Keys in the index (pending, being written or being taken).
    pub fn len(&self) -> usize {
        self.index.lock().keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
