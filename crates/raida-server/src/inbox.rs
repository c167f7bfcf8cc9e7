//! Keys assembled from Key Alerts, under `Inbox/` (the files and their format are
//! `raida_store::inbox`'s: written durably, never replaced).
//!
//! The inbox is bounded (PROTOCOL.md 6/42): at most `max_keys` keys, each expiring
//! `max_age_secs` after it was stored. A server keeps an in-memory index of the keys (built
//! at open, reconciled with the folder by [`Inbox::sweep`], which also removes expired keys)
//! so that the checks made before every alert touch no disk. `raida inbox take` may run in
//! another process while the server runs: a key it takes keeps counting until the next sweep.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use parking_lot::Mutex;
use raida_proto::Status;
use raida_store::inbox::InboxDir;
pub use raida_store::inbox::{InboxError, InboxKey};

/// Bounds of the inbox (config.toml `inbox_max_keys`, `inbox_max_age_seconds`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InboxLimits {
    pub max_keys: usize,
    pub max_age_secs: u64,
}

impl Default for InboxLimits {
    fn default() -> Self {
        InboxLimits { max_keys: 10_000, max_age_secs: 86_400 }
    }
}

struct Entry {
    created: u64,
    /// When the entry entered the index (see [`Index::seq`]).
    seq: u64,
    /// False while a store of this id is under way (the slot is reserved).
    stored: bool,
}

/// The keys in the folder, and stores under way.
#[derive(Default)]
struct Index {
    by_id: HashMap<[u8; 16], Entry>,
    by_age: BTreeSet<(u64, [u8; 16])>,
    /// Increases with every insertion: a sweep drops only entries older than its listing
    /// of the folder, never a key stored while it was listing.
    seq: u64,
}

impl Index {
    fn insert(&mut self, id: [u8; 16], created: u64, stored: bool) {
        self.seq += 1;
        if let Some(old) = self.by_id.insert(id, Entry { created, seq: self.seq, stored }) {
            self.by_age.remove(&(old.created, id));
        }
        self.by_age.insert((created, id));
    }

    fn remove(&mut self, id: &[u8; 16]) {
        if let Some(old) = self.by_id.remove(id) {
            self.by_age.remove(&(old.created, *id));
        }
    }

    /// Keys that count against the bound at `now`: all but the expired ones.
    fn live(&self, now: u64, limits: &InboxLimits) -> usize {
        let expired = self.by_age.iter().take_while(|(created, _)| expired(*created, now, limits)).count();
        self.by_id.len() - expired
    }
}

fn expired(created: u64, now: u64, limits: &InboxLimits) -> bool {
    created.saturating_add(limits.max_age_secs) <= now
}

/// Why a key cannot enter the inbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 201: a key with this id is in the inbox (or being stored); it is never replaced.
    Exists,
    /// 254: the inbox holds `max_keys` unexpired keys.
    Full,
}

impl Refusal {
    pub fn status(self) -> Status {
        match self {
            Refusal::Exists => Status::FileExists,
            Refusal::Full => Status::MemoryAlloc,
        }
    }
}

/// The inbox folder of a data directory.
pub struct Inbox {
    files: InboxDir,
    /// Swapped whole by a SIGHUP reload ([`Inbox::set_limits`]).
    limits: arc_swap::ArcSwap<InboxLimits>,
    index: Mutex<Index>,
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox").field("dir", &self.files.dir()).field("limits", &self.limits()).finish()
    }
}

impl From<Refusal> for InboxError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Exists => InboxError::Exists,
            Refusal::Full => InboxError::Full,
        }
    }
}

impl Inbox {
    /// `DIR/Inbox` for reading and taking keys: no index is loaded, so the bound counts
    /// only what this value stores. A server uses [`Inbox::open`].
    pub fn new(data_dir: &Path) -> Inbox {
        Inbox {
            files: InboxDir::new(data_dir),
            limits: arc_swap::ArcSwap::from_pointee(InboxLimits::default()),
            index: Mutex::new(Index::default()),
        }
    }

    /// `DIR/Inbox` as a server keeps it: removes temporary files a crash left and indexes
    /// the keys (a file that does not decode counts from `now`, so it still takes a slot).
    pub fn open(data_dir: &Path, now: u64) -> std::io::Result<Inbox> {
        let inbox = Inbox::new(data_dir);
        let ids = inbox.files.recover()?;
        let mut index = inbox.index.lock();
        for id in ids {
            index.insert(id, inbox.files.created_of(&id).unwrap_or(now), true);
        }
        drop(index);
        Ok(inbox)
    }

    /// Set the bounds (at start, and on a SIGHUP reload: keys already stored stay).
    pub fn set_limits(&self, limits: InboxLimits) {
        self.limits.store(std::sync::Arc::new(limits));
    }

    pub fn limits(&self) -> InboxLimits {
        **self.limits.load()
    }

    /// Whether a key with `key_id` stored at `now` could enter (no disk access): checked
    /// before an alert fetches anything.
    pub fn admit(&self, key_id: &[u8; 16], now: u64) -> Result<(), Refusal> {
        let index = self.index.lock();
        if index.by_id.contains_key(key_id) {
            return Err(Refusal::Exists);
        }
        let limits = self.limits();
        if index.live(now, &limits) >= limits.max_keys {
            return Err(Refusal::Full);
        }
        Ok(())
    }

    /// Store durably, never replacing a key: the slot is reserved in the index and the file
    /// is linked into place only if no file has the name (create-new), so of two concurrent
    /// stores of one key id exactly one succeeds. `key.created` is the time the bound is
    /// checked at.
    pub fn store(&self, key: &InboxKey) -> Result<(), InboxError> {
        {
            let mut index = self.index.lock();
            if index.by_id.contains_key(&key.key_id) {
                return Err(InboxError::Exists);
            }
            let limits = self.limits();
            if index.live(key.created, &limits) >= limits.max_keys {
                return Err(InboxError::Full);
            }
            index.insert(key.key_id, key.created, false);
        }
        let result = self.files.write_new(key);
        let mut index = self.index.lock();
        match &result {
            Ok(()) => {
                if let Some(e) = index.by_id.get_mut(&key.key_id) {
                    e.stored = true;
                }
            }
            Err(_) => index.remove(&key.key_id),
        }
        result
    }

    /// Periodic upkeep: forget keys taken by another process, index keys this one does not
    /// know, remove expired keys (one directory fsync for all). Returns how many expired.
    pub fn sweep(&self, now: u64) -> std::io::Result<usize> {
        let listed_at = self.index.lock().seq;
        let on_disk = self.files.key_ids()?;
        let unknown: Vec<[u8; 16]> = {
            let mut index = self.index.lock();
            let gone: Vec<[u8; 16]> = index
                .by_id
                .iter()
                .filter(|(id, e)| e.stored && e.seq <= listed_at && !on_disk.contains(*id))
                .map(|(id, _)| *id)
                .collect();
            for id in &gone {
                index.remove(id);
            }
            on_disk.iter().filter(|id| !index.by_id.contains_key(*id)).copied().collect()
        };
        for id in unknown {
            let created = self.files.created_of(&id).unwrap_or(now);
            let mut index = self.index.lock();
            if !index.by_id.contains_key(&id) {
                index.insert(id, created, true);
            }
        }
        let doomed: Vec<[u8; 16]> = {
            let index = self.index.lock();
            index
                .by_age
                .iter()
                .take_while(|(created, _)| expired(*created, now, &self.limits()))
                .filter(|(_, id)| index.by_id.get(id).is_some_and(|e| e.stored))
                .map(|(_, id)| *id)
                .collect()
        };
        let mut removed = 0;
        for id in &doomed {
            if self.files.remove(id)? {
                removed += 1;
            }
            self.index.lock().remove(id);
        }
        if removed > 0 {
            self.files.sync()?;
        }
        Ok(removed)
    }

    /// Keys in the index (stored or being stored), expired ones included until swept.
    pub fn indexed(&self) -> usize {
        self.index.lock().by_id.len()
    }

    /// Every key, oldest first. A missing folder is an empty inbox.
    pub fn list(&self) -> Result<Vec<InboxKey>, InboxError> {
        self.files.list()
    }

    /// Read one key and remove it durably.
    pub fn take(&self, key_id_hex: &str) -> Result<InboxKey, InboxError> {
        let key = self.files.take(key_id_hex)?;
        self.index.lock().remove(&key.key_id);
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u8, created: u64) -> InboxKey {
        InboxKey { key_id: [id; 16], created, senders: vec![(1, 2).into()], key: vec![id, 0xFF] }
    }

    #[test]
    fn a_key_is_never_replaced_even_by_concurrent_stores() {
        let d = tempfile::tempdir().unwrap();
        let inbox = std::sync::Arc::new(Inbox::open(d.path(), 100).unwrap());
        for round in 0..40u8 {
            let stores: Vec<_> = (0..2u8)
                .map(|i| {
                    let inbox = inbox.clone();
                    std::thread::spawn(move || {
                        let mut k = key(round, 100);
                        k.key = vec![i, 0xFF];
                        inbox.store(&k).map(|()| i)
                    })
                })
                .collect();
            let results: Vec<_> = stores.into_iter().map(|t| t.join().unwrap()).collect();
            let winners: Vec<u8> = results.iter().filter_map(|r| r.as_ref().ok().copied()).collect();
            assert_eq!(winners.len(), 1, "round {round}: {results:?}");
            assert!(results.iter().any(|r| matches!(r, Err(InboxError::Exists))));
            let stored = inbox.list().unwrap().into_iter().find(|k| k.key_id == [round; 16]).unwrap();
            assert_eq!(stored.key, vec![winners[0], 0xFF], "the winner's key stays");
        }
        // a new value (another process, or no index) cannot replace the file either
        let other = Inbox::new(d.path());
        assert!(matches!(other.store(&key(0, 100)), Err(InboxError::Exists)));
        assert_eq!(inbox.indexed(), 40);
        let names: Vec<String> = std::fs::read_dir(d.path().join("Inbox"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(
            names.iter().all(|n| raida_store::keys_dir::key_id_of_file_name(n).is_some()),
            "no temp file left: {names:?}"
        );
    }

    #[test]
    fn bounded_in_count_and_age() {
        let d = tempfile::tempdir().unwrap();
        let inbox = Inbox::open(d.path(), 1000).unwrap();
        inbox.set_limits(InboxLimits { max_keys: 2, max_age_secs: 50 });
        inbox.store(&key(1, 1000)).unwrap();
        inbox.store(&key(2, 1010)).unwrap();
        assert_eq!(inbox.admit(&[3; 16], 1020), Err(Refusal::Full));
        assert!(matches!(inbox.store(&key(3, 1020)), Err(InboxError::Full)));
        assert_eq!(inbox.admit(&[1; 16], 1020), Err(Refusal::Exists));
        // key 1 expires at 1050: its slot frees at once, its file goes at the next sweep
        assert_eq!(inbox.admit(&[3; 16], 1050), Ok(()));
        assert_eq!(inbox.sweep(1050).unwrap(), 1);
        assert_eq!(inbox.list().unwrap().iter().map(|k| k.key_id[0]).collect::<Vec<_>>(), vec![2]);
        inbox.store(&key(3, 1050)).unwrap();
        assert!(matches!(inbox.store(&key(4, 1050)), Err(InboxError::Full)));

        // another process takes key 2 (and leaves a crash's temp file): the sweep notices
        Inbox::new(d.path()).take(&hex::encode([2u8; 16])).unwrap();
        std::fs::write(d.path().join("Inbox").join(".x.1.2.tmp"), b"junk").unwrap();
        assert_eq!(inbox.admit(&[4; 16], 1050), Err(Refusal::Full));
        inbox.sweep(1050).unwrap();
        assert_eq!(inbox.admit(&[4; 16], 1050), Ok(()));

        // at open: temp files removed, keys indexed with their own time
        let reopened = Inbox::open(d.path(), 1060).unwrap();
        reopened.set_limits(InboxLimits { max_keys: 2, max_age_secs: 50 });
        assert_eq!(reopened.indexed(), 1);
        assert!(!d.path().join("Inbox").join(".x.1.2.tmp").exists());
        assert_eq!(reopened.admit(&[3; 16], 1060), Err(Refusal::Exists));
        assert_eq!(reopened.sweep(1100).unwrap(), 1, "key 3 (stored at 1050) expires at 1100");
        assert!(reopened.list().unwrap().is_empty());
    }
}
