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
//!   post of the same id 201 — unless it is a retransmission, see below), writes the file
//!   outside the lock (temp + fsync + rename),
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
//! **Retransmissions** (PROTOCOL.md 6/41 and 6/43 as amended; over UDP an answer can be
//! lost and the request sent again):
//! * A post from the same poster ([`Requester`]: its key identity, or for EN 0 its source
//!   address) with the same key id, key field, KS and KL as a pending one is answered as
//!   that one: 250 at once when it is durable, or, while it is still being written, by the
//!   first post's own result once its directory fsync has run (at most
//!   [`MAX_WAITING_RETRANSMISSIONS`] wait per key; beyond, 160). Never 201. What makes a post
//!   the same is kept in memory only (a 16-byte digest of key field, KS and KL, and an
//!   anonymous post's source address): after a restart an anonymous retransmission gets 201
//!   and a coin's replaces its key in place (250), as before; the file format is unchanged.
//! * A key handed out by Get Key leaves its answer in memory for [`REPEAT_SECS`]: the same
//!   requester asking again for that key id gets the same bytes (sealed afresh by the
//!   response path), anyone else 216 (a key posted again under that id meanwhile is
//!   pending, and handed out as any other). A peer consumes this memory by taking keys, so it is
//!   bounded: [`MAX_KEPT_ANSWERS_PER_REQUESTER`] per requester and [`MAX_KEPT_ANSWERS`] in
//!   total, the oldest evicted first (its repeat then gets 216); key bytes are wiped when an
//!   answer expires or is evicted. A post retransmitted after its key was handed out (a
//!   late duplicate) is answered 250 from this memory too, without parking the key again.
//!
//! The file format, file names and reading of `Keys/` are `raida_store::keys_dir`'s.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use raida_proto::commands::post_key::{CoinName, PostKey};
use raida_proto::Status;
use raida_store::durable::{self, DirSync};
pub use raida_store::keys_dir::{key_file_name, Poster};
use raida_store::keys_dir::{key_id_of_file_name, read_key_file, unlink, PendingKey};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

/// Files removed per directory fsync by the sweeper and at open.
pub const SWEEP_BATCH: usize = 1024;
/// Emptied files of taken keys kept for reuse by the next posts (module docs); beyond
/// this, taken keys' files are unlinked.
pub const MAX_SPARE_FILES: usize = 1024;
/// A key file is at most 34 + 255 bytes: the zeros a taken key's file is wiped with.
const MAX_SPARE_LEN: usize = 512;
/// A handed-out key's answer is kept this many seconds for a repeated Get Key (6/43).
pub const REPEAT_SECS: u64 = 30;
/// Answers kept for repeated Get Keys, in total; beyond, the oldest is evicted.
pub const MAX_KEPT_ANSWERS: usize = 65_536;
/// Answers kept for one requester; beyond, its oldest is evicted.
pub const MAX_KEPT_ANSWERS_PER_REQUESTER: usize = 1_024;
/// Retransmitted posts waiting for their first copy to be durable, per key; beyond, 160.
pub const MAX_WAITING_RETRANSMISSIONS: usize = 8;

/// Who sent a request, as a retransmission is recognised (6/41, 6/43): its key identity
/// (the coin for EN 1 and EN 4, the first token for EN 5, the locker prefix, the RAIDA and
/// key id for EN 7), or for EN 0 its source address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Requester {
    Key(Poster),
    Address(IpAddr),
}

impl Requester {
    /// `identity`: the request's key identity as a [`Poster`]; `source`: its source address.
    pub fn of(identity: Poster, source: IpAddr) -> Requester {
        match identity {
            Poster::Anonymous => Requester::Address(canonical(source)),
            p => Requester::Key(p),
        }
    }
}

/// Who asks for a key (43 Get Key): what the receiver rules and the repeat check need.
#[derive(Clone, Copy, Debug)]
pub struct Taker<'a> {
    /// The coins whose keys encrypted the request (EN 1, EN 4, both tokens of EN 5).
    pub coins: &'a [CoinName],
    /// Its key identity (for EN 0 its address): who gets the same answer again.
    pub requester: Requester,
    /// Its source address.
    pub ip: IpAddr,
}

/// An IPv4 address for an IPv4-mapped IPv6 one (one host, whichever socket it came in on).
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// What makes a post a retransmission of another with the same poster and key id: its key
/// field, KS and KL (6/41). Only a digest is kept (the first 16 bytes of SHA-256).
type PostDigest = [u8; 16];

fn post_digest(req: &PostKey) -> PostDigest {
    let mut h = Sha256::new();
    h.update(req.key_field);
    h.update([req.key_start, req.key_length]);
    let full = h.finalize();
    let mut d = [0u8; 16];
    d.copy_from_slice(&full[..16]);
    d
}

/// How a post is answered: once, with its result (or the result of the first copy it
/// retransmits).
type PostDone = Box<dyn FnOnce(Result<(), Status>) + Send>;
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
    /// The source address of an anonymous post made since start (None after a restart).
    source: Option<IpAddr>,
    /// The digest of a post made since start (None for a key loaded at open).
    digest: Option<PostDigest>,
    /// Retransmissions of this post waiting for it to be durable (state `Writing` only).
    waiting: Vec<PostDone>,
}

impl Entry {
    /// A key posted now (state `Writing`).
    fn posted(key: PendingKey, source: Option<IpAddr>, digest: PostDigest) -> Entry {
        Entry { key, state: KeyState::Writing, source, digest: Some(digest), waiting: Vec::new() }
    }

    /// A key loaded from its file at open.
    fn loaded(key: PendingKey) -> Entry {
        Entry { key, state: KeyState::Live, source: None, digest: None, waiting: Vec::new() }
    }

    /// Who posted it, as far as a retransmission is concerned (None: an anonymous key
    /// loaded at open, whose source address is not kept).
    fn posted_by(&self) -> Option<Requester> {
        match self.key.poster {
            Poster::Anonymous => self.source.map(Requester::Address),
            p => Some(Requester::Key(p)),
        }
    }

    /// Whether a post by `by` with `digest` is a retransmission of this one.
    fn resent_by(&self, by: Requester, digest: &PostDigest) -> bool {
        self.posted_by() == Some(by) && self.digest.is_some_and(|d| bool::from(d.ct_eq(digest)))
    }
}

/// A handed-out key's answer, kept [`REPEAT_SECS`] for a repeated Get Key. The key bytes
/// are wiped when it goes.
struct KeptAnswer {
    /// Its place in [`KeptAnswers::order`] (tells a stale queue entry from the live one).
    seq: u64,
    at: u64,
    requester: Requester,
    sender: CoinName,
    key: Zeroizing<Vec<u8>>,
    /// Who posted the key and the post's digest: a retransmission of that post is answered
    /// 250 without parking the key again.
    post: Option<(Requester, PostDigest)>,
}

/// The answers kept for repeated Get Keys (module docs), bounded per requester and in
/// total; both queues are in the order answers were kept, so the oldest goes first.
#[derive(Default)]
struct KeptAnswers {
    by_key: HashMap<[u8; 16], KeptAnswer>,
    order: VecDeque<(u64, [u8; 16])>,
    by_requester: HashMap<Requester, VecDeque<(u64, [u8; 16])>>,
    next_seq: u64,
}

impl KeptAnswers {
    fn fresh(a: &KeptAnswer, now: u64) -> bool {
        now.saturating_sub(a.at) <= REPEAT_SECS
    }

    /// The answer `requester` got for `key_id`, if it is still kept.
    fn repeat(&self, key_id: &[u8; 16], requester: Requester, now: u64) -> Option<(CoinName, Vec<u8>)> {
        let a = self.by_key.get(key_id).filter(|a| a.requester == requester && Self::fresh(a, now))?;
        Some((a.sender, a.key.to_vec()))
    }

    /// Whether a post by `by` with `digest` retransmits the post of a key handed out lately.
    fn reposted(&self, key_id: &[u8; 16], by: Requester, digest: &PostDigest, now: u64) -> bool {
        self.by_key
            .get(key_id)
            .filter(|a| Self::fresh(a, now))
            .and_then(|a| a.post)
            .is_some_and(|(poster, d)| poster == by && bool::from(d.ct_eq(digest)))
    }

    /// Keeps an answer, evicting the requester's oldest and then the oldest of all beyond
    /// their bounds.
    fn keep(&mut self, key_id: [u8; 16], mut answer: KeptAnswer, now: u64) {
        self.prune(now);
        self.remove(&key_id);
        let seq = self.next_seq;
        self.next_seq += 1;
        answer.seq = seq;
        let own = self.by_requester.entry(answer.requester).or_default();
        own.push_back((seq, key_id));
        let evict = if own.len() > MAX_KEPT_ANSWERS_PER_REQUESTER { own.front().map(|&(_, id)| id) } else { None };
        self.by_key.insert(key_id, answer);
        self.order.push_back((seq, key_id));
        if let Some(id) = evict {
            self.remove(&id);
        }
        while self.by_key.len() > MAX_KEPT_ANSWERS {
            let Some((seq, id)) = self.order.pop_front() else { break };
            if self.by_key.get(&id).is_some_and(|a| a.seq == seq) {
                self.remove(&id);
            }
        }
        if self.order.len() > 2 * self.by_key.len() + 1024 {
            // evictions per requester and replaced ids leave stale entries behind
            let mut q: Vec<(u64, [u8; 16])> = self.by_key.iter().map(|(id, a)| (a.seq, *id)).collect();
            q.sort_unstable();
            self.order = q.into();
        }
    }

    /// Drops the answers older than [`REPEAT_SECS`].
    fn prune(&mut self, now: u64) {
        while let Some(&(seq, id)) = self.order.front() {
            match self.by_key.get(&id) {
                Some(a) if a.seq == seq && Self::fresh(a, now) => break,
                Some(a) if a.seq == seq => {
                    self.remove(&id);
                }
                _ => {}
            }
            self.order.pop_front();
        }
    }

    fn remove(&mut self, key_id: &[u8; 16]) {
        let Some(a) = self.by_key.remove(key_id) else { return };
        if let Some(own) = self.by_requester.get_mut(&a.requester) {
            if own.front().is_some_and(|&(s, _)| s == a.seq) {
                own.pop_front();
            } else {
                own.retain(|&(s, _)| s != a.seq);
            }
            if own.is_empty() {
                self.by_requester.remove(&a.requester);
            }
        }
        // `a.key` is wiped on drop
    }

    fn len(&self) -> usize {
        self.by_key.len()
    }
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
    /// Answers of handed-out keys kept for a repeated Get Key.
    answers: KeptAnswers,
}

impl Index {
    fn add(&mut self, id: [u8; 16], entry: Entry) {
        if entry.key.poster == Poster::Anonymous {
            self.anonymous += 1;
            if let Some(ip) = entry.source {
                *self.anonymous_by_source.entry(SourceBucket::of(ip)).or_insert(0) += 1;
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
            if let Some(b) = e.source.map(SourceBucket::of) {
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
    /// Retransmitted posts answered as their first copy (6/41).
    pub posts_resent: u64,
    /// Repeated Get Keys answered from the kept answers (6/43).
    pub takes_repeated: u64,
    /// Answers of handed-out keys kept for a repeat right now.
    pub kept_answers: usize,
}

impl PendingKeyStats {
    /// `name=value` lines for Show Stats.
    pub fn render(&self) -> String {
        format!(
            "pending_keys={}\npending_keys_anonymous={}\npending_keys_posted={}\npending_keys_taken={}\n\
             pending_keys_expired={}\npending_keys_temp_files_removed={}\npending_keys_dir_fsyncs={}\n\
             pending_keys_posts_resent={}\npending_keys_takes_repeated={}\npending_keys_kept_answers={}\n",
            self.keys,
            self.anonymous,
            self.posts,
            self.taken,
            self.expired,
            self.temp_files_removed,
            self.dir_fsyncs,
            self.posts_resent,
            self.takes_repeated,
            self.kept_answers
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
    posts_resent: AtomicU64,
    takes_repeated: AtomicU64,
}

/// What became of the first steps of a post.
enum PostStep {
    /// Its file is written under its key id: make that durable, publish, then answer.
    Written(PostWritten, PostDone),
    /// Answered already (refused, or a retransmission of a durable post), or left with the
    /// first copy it retransmits, whose publication answers it.
    Answered,
}

/// What [`PendingKeys::reserve`] made of a post.
enum Reserved {
    /// The key id is reserved for it (state `Writing`); it replaces `previous` once durable.
    Key {
        previous: Option<[u8; 16]>,
    },
    Refused(Status),
    /// A retransmission of a durable post: answered 250 now.
    Resent,
    /// A retransmission of a post being written: left with it.
    Waiting,
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
/// request's), so this thread is free at once. A retransmission of a post still being
/// written is answered the same way, with that post's result. `keys` finds the store in
/// `owner` (the continuation outlives this call).
pub fn post_then<O: Send + Sync + 'static>(
    owner: Arc<O>,
    keys: fn(&O) -> &PendingKeys,
    post: &PostKey,
    poster: Poster,
    source: IpAddr,
    now: u64,
    done: impl FnOnce(Result<(), Status>) + Send + 'static,
) {
    let store = keys(&owner);
    let (written, done) = match store.post_write(post, poster, source, now, Box::new(done)) {
        PostStep::Written(w, done) => (w, done),
        PostStep::Answered => return,
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
/// durable (as in [`post_then`]); a repeat of a kept answer runs it at once.
pub fn take_then<O: Send + Sync + 'static>(
    owner: Arc<O>,
    keys: fn(&O) -> &PendingKeys,
    key_id: [u8; 16],
    taker: Taker<'_>,
    now: u64,
    done: impl FnOnce(Result<(CoinName, Vec<u8>), Status>) + Send + 'static,
) {
    let store = keys(&owner);
    let requester = taker.requester;
    match store.take_remove(&key_id, taker, now) {
        Err(status) => return done(Err(status)),
        Ok(Some(repeat)) => return done(Ok(repeat)),
        Ok(None) => {}
    }
    let owner2 = owner.clone();
    store.dir_sync.sync_then(Box::new(move |synced| done(keys(&owner2).take_finish(&key_id, requester, now, synced))));
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
            posts_resent: AtomicU64::new(0),
            takes_repeated: AtomicU64::new(0),
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
            index.add(id, Entry::loaded(k));
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
        let (keys, anonymous, kept_answers) = {
            let idx = self.index.lock();
            (idx.keys.len(), idx.anonymous, idx.answers.len())
        };
        PendingKeyStats {
            keys,
            anonymous,
            posts: self.posts.load(Ordering::Relaxed),
            taken: self.taken.load(Ordering::Relaxed),
            expired: self.expired.load(Ordering::Relaxed),
            temp_files_removed: self.temp_files_removed.load(Ordering::Relaxed),
            dir_fsyncs: self.dir_sync.fsyncs() + self.sweep_fsyncs.load(Ordering::Relaxed),
            posts_resent: self.posts_resent.load(Ordering::Relaxed),
            takes_repeated: self.takes_repeated.load(Ordering::Relaxed),
            kept_answers,
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
    /// source address (counted for anonymous posts, and what makes an anonymous post the
    /// same poster's retransmission). Returns once the key is durable (the server uses
    /// [`post_then`], which does not wait; mixing both under load can keep a caller of this
    /// one leading fsyncs for the others, see `DirSync::sync`).
    pub fn post(&self, post: &PostKey, poster: Poster, source: IpAddr, now: u64) -> Result<(), Status> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let done: PostDone = Box::new(move |r| {
            let _ = tx.send(r);
        });
        let written = match self.post_write(post, poster, source, now, done) {
            PostStep::Written(w, _) => w,
            // refused, or a retransmission: answered (or to be answered by its first copy)
            PostStep::Answered => return rx.recv().unwrap_or(Err(Status::Filesystem)),
        };
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
    /// A post refused, or recognised as a retransmission, is answered through `done` here
    /// or by the first copy's publication ([`PostStep::Answered`]).
    fn post_write(&self, req: &PostKey, poster: Poster, source: IpAddr, now: u64, done: PostDone) -> PostStep {
        let post = req.posted();
        if post.sender.is_set() && poster != Poster::Coin(post.sender) {
            done(Err(Status::ReceiverAuth));
            return PostStep::Answered;
        }
        let id = post.key_id;
        let requester = Requester::of(poster, source);
        let digest = post_digest(req);
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
        let mut done = Some(done);
        let reserved = {
            let mut idx = self.index.lock();
            self.reserve(&mut idx, id, key, requester, &digest, source, now, &mut done)
        };
        if !matches!(reserved, Reserved::Key { .. }) {
            bytes.zeroize();
        }
        let previous = match reserved {
            Reserved::Key { previous } => previous,
            Reserved::Refused(status) => {
                if let Some(done) = done {
                    done(Err(status));
                }
                return PostStep::Answered;
            }
            Reserved::Resent => {
                self.posts_resent.fetch_add(1, Ordering::Relaxed);
                if let Some(done) = done {
                    done(Ok(())); // the first copy is durable
                }
                return PostStep::Answered;
            }
            Reserved::Waiting => {
                self.posts_resent.fetch_add(1, Ordering::Relaxed);
                return PostStep::Answered;
            }
        };
        let Some(done) = done else { return PostStep::Answered };

        // 2. write the file, outside the lock; its directory entry is made durable by the
        // caller's directory sync
        let path = self.path(&id);
        let result = self.write_key_file(&path, &bytes);
        bytes.zeroize();
        let written = PostWritten { id, poster, previous, path };
        match result {
            Ok(()) => PostStep::Written(written, done),
            Err(e) => {
                done(Err(self.post_failed(written, e)));
                PostStep::Answered
            }
        }
    }

    /// Step 1 of a post, under the index lock: reserve the key id for `key` (state
    /// `Writing`), or tell why not. A retransmission of a post still being written leaves
    /// `done` with it (taken out of `done`).
    #[allow(clippy::too_many_arguments)]
    fn reserve(
        &self,
        idx: &mut Index,
        id: [u8; 16],
        key: PendingKey,
        requester: Requester,
        digest: &PostDigest,
        source: IpAddr,
        now: u64,
        done: &mut Option<PostDone>,
    ) -> Reserved {
        let poster = key.poster;
        let anonymous = poster == Poster::Anonymous;
        let (mut same_id, mut expired) = (false, false);
        if let Some(e) = idx.keys.get_mut(&id) {
            let resent = e.resent_by(requester, digest);
            if e.state == KeyState::Live && !self.live(&e.key, now) {
                expired = true; // its file is replaced by the rename below
            } else if resent && e.state == KeyState::Writing {
                // answered with the first copy's result once that one is durable
                if e.waiting.len() >= MAX_WAITING_RETRANSMISSIONS {
                    return Reserved::Refused(Status::RequestRate);
                }
                if let Some(d) = done.take() {
                    e.waiting.push(d);
                }
                return Reserved::Waiting;
            } else if resent {
                return Reserved::Resent; // durable already (live, or being handed out)
            } else if e.state == KeyState::Writing && !anonymous && e.key.poster == poster {
                // the same poster's other bytes while its first is written: one post at a time
                return Reserved::Refused(Status::RequestRate);
            } else if e.state == KeyState::Live && !anonymous && e.key.poster == poster {
                same_id = true; // the poster posts its key id again: replaced in place
            } else {
                return Reserved::Refused(Status::FileExists);
            }
        } else if idx.answers.reposted(&id, requester, digest, now) {
            // a late copy of a post whose key was handed out meanwhile: not parked again
            return Reserved::Resent;
        }
        let previous = if anonymous { None } else { idx.by_poster.get(&poster).copied() };
        if let Some(prev) = previous.filter(|p| *p != id) {
            if idx.keys.get(&prev).is_some_and(|e| e.state == KeyState::Writing) {
                // one post per poster at a time: which one replaces which is then clear
                return Reserved::Refused(Status::RequestRate);
            }
        }
        let replaces = same_id || expired || previous.is_some();
        let limits = self.limits();
        if !replaces && idx.keys.len() >= limits.max_keys {
            return Reserved::Refused(Status::MemoryAlloc);
        }
        if anonymous
            && (idx.anonymous >= limits.anonymous_max()
                || idx.anonymous_by_source.get(&SourceBucket::of(source)).copied().unwrap_or(0)
                    >= limits.anonymous_per_addr)
        {
            return Reserved::Refused(Status::RequestRate);
        }
        if same_id || expired {
            idx.remove(&id);
        }
        idx.add(id, Entry::posted(key, anonymous.then(|| canonical(source)), *digest));
        if !anonymous {
            idx.by_poster.insert(poster, id);
        }
        Reserved::Key { previous: previous.filter(|p| *p != id) }
    }

    /// A post whose file or directory entry could not be made durable: answered 194, and
    /// nothing is left under its key id (the rename may have happened before the directory
    /// fsync failed). The id stays reserved until the file is gone, so no other post's
    /// file can be removed here. Its waiting retransmissions get 194 too.
    fn post_failed(&self, w: PostWritten, e: io::Error) -> Status {
        tracing::error!(error = %e, "cannot write pending key");
        let _ = unlink(&w.path);
        let waiting = {
            let mut idx = self.index.lock();
            let waiting = idx.remove(&w.id).map(|mut e| std::mem::take(&mut e.waiting)).unwrap_or_default();
            if let Some(prev) = w.previous {
                if idx.keys.get(&prev).is_some_and(|e| e.key.poster == w.poster) {
                    idx.by_poster.insert(w.poster, prev);
                }
            }
            waiting
        };
        for done in waiting {
            done(Err(Status::Filesystem));
        }
        Status::Filesystem
    }

    /// Step 3 of a post, once the directory sync that covers its rename has run: publish
    /// the key (Get Key may take it now) and answer its waiting retransmissions. Returns
    /// the poster's previous key, if this one replaces it: it stops being handed out now,
    /// and the caller removes its file ([`PendingKeys::stale_removed`] once that is durable).
    fn post_publish(&self, w: PostWritten, synced: io::Result<()>) -> Result<Option<[u8; 16]>, Status> {
        if let Err(e) = synced {
            return Err(self.post_failed(w, e));
        }
        let PostWritten { id, poster, previous, .. } = w;
        let (stale, waiting) = {
            let mut idx = self.index.lock();
            let mut waiting = Vec::new();
            if let Some(e) = idx.keys.get_mut(&id) {
                e.state = KeyState::Live;
                waiting = std::mem::take(&mut e.waiting);
            }
            let stale = previous
                .filter(|p| idx.keys.get(p).is_some_and(|e| e.state == KeyState::Live && e.key.poster == poster));
            if let Some(e) = stale.and_then(|p| idx.keys.get_mut(&p)) {
                e.state = KeyState::Taking;
            }
            (stale, waiting)
        };
        self.posts.fetch_add(1, Ordering::Relaxed);
        for done in waiting {
            done(Ok(()));
        }
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

    /// Hand a key out once: 216 not pending, 217 wrong receiver coin, 218 wrong address;
    /// the same requester asking again within [`REPEAT_SECS`] gets the same answer. The
    /// key's deletion is durable before this returns it (the server uses [`take_then`],
    /// which does not wait).
    pub fn take(&self, key_id: &[u8; 16], taker: Taker<'_>, now: u64) -> Result<(CoinName, Vec<u8>), Status> {
        if let Some(repeat) = self.take_remove(key_id, taker, now)? {
            return Ok(repeat);
        }
        let synced = self.dir_sync.sync();
        self.take_finish(key_id, taker.requester, now, synced)
    }

    /// Step 1 of a take: check, mark the key `Taking` (handed out once) and take its file
    /// away from its name (the removal is durable once the next directory sync has run);
    /// or, for a key id not pending, the kept answer of a repeat (`Some`: nothing else to do).
    fn take_remove(
        &self,
        key_id: &[u8; 16],
        taker: Taker<'_>,
        now: u64,
    ) -> Result<Option<(CoinName, Vec<u8>)>, Status> {
        let requester = taker.requester;
        {
            let mut idx = self.index.lock();
            idx.answers.prune(now);
            let pending = idx.keys.get(key_id).is_some_and(|e| e.state == KeyState::Live && self.live(&e.key, now));
            if !pending {
                // not pending (again): the answer this requester got for it, if it is kept
                let repeat = idx.answers.repeat(key_id, requester, now).ok_or(Status::KeyNotFound)?;
                drop(idx);
                self.takes_repeated.fetch_add(1, Ordering::Relaxed);
                return Ok(Some(repeat));
            }
            let e = idx.keys.get_mut(key_id).ok_or(Status::KeyNotFound)?;
            let k = &e.key;
            if k.receiver.is_set() && !taker.coins.contains(&k.receiver) {
                return Err(Status::ReceiverAuth);
            }
            if k.receiver_ip != [0; 4] && canonical(taker.ip) != IpAddr::V4(Ipv4Addr::from(k.receiver_ip)) {
                return Err(Status::ReceiverAddress);
            }
            e.state = KeyState::Taking;
        }
        match self.remove_key_file(&self.path(key_id)) {
            Ok(()) => Ok(None),
            Err(e) => self.take_finish(key_id, requester, now, Err(e)).map(|_| None),
        }
    }

    /// Step 2 of a take, once the directory sync covering the removal has run: drop the key,
    /// keep its answer for a repeat by `requester` and hand out its bytes; on a failure the
    /// key is live again (194).
    fn take_finish(
        &self,
        key_id: &[u8; 16],
        requester: Requester,
        now: u64,
        removed: io::Result<()>,
    ) -> Result<(CoinName, Vec<u8>), Status> {
        let mut idx = self.index.lock();
        if let Err(e) = removed {
            tracing::error!(error = %e, "cannot delete pending key");
            if let Some(e) = idx.keys.get_mut(key_id) {
                e.state = KeyState::Live;
            }
            return Err(Status::Filesystem);
        }
        let mut e = idx.remove(key_id).ok_or(Status::KeyNotFound)?;
        let key = std::mem::take(&mut e.key.key_bytes);
        let kept = KeptAnswer {
            seq: 0,
            at: now,
            requester,
            sender: e.key.sender,
            key: Zeroizing::new(key.clone()),
            post: e.posted_by().zip(e.digest),
        };
        idx.answers.keep(*key_id, kept, now);
        drop(idx);
        self.taken.fetch_add(1, Ordering::Relaxed);
        Ok((e.key.sender, key))
    }

    /// Delete expired keys and kept answers (the background sweeper): batches of [`SWEEP_BATCH`], each with
    /// one directory fsync; the index lock is held only to pick and to drop a batch.
    pub fn sweep(&self, now: u64) -> usize {
        // kept answers go after REPEAT_SECS even when no Get Key comes to prune them
        self.index.lock().answers.prune(now);
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
