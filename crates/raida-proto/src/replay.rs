//! Freshness and the bounded replay memory of section 3.4. The caller passes the time.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::BuildHasher;

use nohash_hasher::BuildNoHashHasher;

use crate::consts::{FRESHNESS_WINDOW_SECS, REPLAY_WINDOW_SECS};
use crate::header::Encryption;
use crate::status::Status;

/// What identifies one accepted modern request: EN, key identity bytes, nonce.
pub type ReplayKey = [u8; 23];

/// Build the replay key of a modern request from its header bytes (48).
pub fn replay_key(header: &[u8]) -> ReplayKey {
    let mut k = [0u8; 23];
    let en = header[16];
    k[0] = en;
    // key identity: bytes 17-21 for all modern types, plus the second token for EN 5
    k[1..6].copy_from_slice(&header[17..22]);
    if en == Encryption::TokenPair.code() {
        k[6..11].copy_from_slice(&header[24..29]);
    }
    k[11..23].copy_from_slice(&header[32..44]);
    k
}

/// A request time is fresh when it is at most 300 s away from the server clock.
pub fn check_freshness(request_time: u32, now: u64) -> Result<(), Status> {
    if u64::from(request_time).abs_diff(now) <= FRESHNESS_WINDOW_SECS {
        Ok(())
    } else {
        Err(Status::TxnProcessed)
    }
}

/// Accept-once check that a server runs after a modern request's tag verified.
pub trait ReplayCheck {
    /// 177 when already accepted within 600 s, 160 while full, else remember it.
    fn check_and_insert(&mut self, key: &ReplayKey, now: u64) -> Result<(), Status>;
}

/// Remembers nothing: for a server that takes only EN 0 requests (they carry no nonce to
/// remember, and a modern request needs a key, so it never gets this far) and for benches
/// that measure the codec alone.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoReplay;
impl ReplayCheck for NoReplay {
    fn check_and_insert(&mut self, _: &ReplayKey, _: u64) -> Result<(), Status> {
        Ok(())
    }
}

/// Remembers every nonce accepted in the last 2 × FRESHNESS_WINDOW, up to a bound.
/// Only expired entries are dropped; while it is full of unexpired entries, new
/// requests get 160 — it never forgets a nonce that could still be replayed.
///
/// One key identity (EN + the key's header bytes) may hold at most `share` entries, so a
/// client flooding with one valid coin gets 160 itself while every other key is served.
///
/// Entries are stored compactly: a 64-bit keyed hash of the replay key (SipHash with a
/// per-process random key, so nobody can aim a collision at another client's nonce; a
/// chance collision makes one request 177 with probability below 2^-40 at full memory)
/// and the time it was accepted.
#[derive(Debug)]
pub struct ReplayMemory {
    capacity: usize,
    share: usize,
    hasher: RandomState,
    /// Hashes of the replay keys accepted in the window. They are keyed SipHash values
    /// already, so the sets use them as they are instead of hashing them again.
    seen: HashSet<u64, BuildNoHashHasher<u64>>,
    /// (accepted at, key hash, identity hash) in acceptance order, for expiry.
    order: VecDeque<Entry>,
    /// Live entries per key identity (hash).
    per_identity: HashMap<u64, u32, BuildNoHashHasher<u64>>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    accepted: u64,
    key: u64,
    identity: u64,
}

/// Bytes of a replay key that name the key identity (EN and the header's key bytes).
const IDENTITY_BYTES: usize = 11;

impl ReplayMemory {
    /// A memory of `capacity` entries where one identity may use all of it.
    pub fn new(capacity: usize) -> Self {
        ReplayMemory::with_share(capacity, capacity)
    }

    /// A memory of `capacity` entries, at most `share` of them for one key identity.
    pub fn with_share(capacity: usize, share: usize) -> Self {
        ReplayMemory {
            capacity,
            share: share.max(1),
            hasher: RandomState::new(),
            seen: HashSet::default(),
            order: VecDeque::new(),
            per_identity: HashMap::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Entries one key identity may hold.
    pub fn share(&self) -> usize {
        self.share
    }

    /// Key identities that hold entries now.
    pub fn identities(&self) -> usize {
        self.per_identity.len()
    }

    /// Drop entries accepted more than 600 s before `now`.
    pub fn expire(&mut self, now: u64) {
        while let Some(e) = self.order.front().copied() {
            if now.saturating_sub(e.accepted) <= REPLAY_WINDOW_SECS {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&e.key);
            if let Some(n) = self.per_identity.get_mut(&e.identity) {
                *n -= 1;
                if *n == 0 {
                    self.per_identity.remove(&e.identity);
                }
            }
        }
    }

    fn hash(&self, bytes: &[u8]) -> u64 {
        self.hasher.hash_one(bytes)
    }
}

impl ReplayCheck for ReplayMemory {
    fn check_and_insert(&mut self, key: &ReplayKey, now: u64) -> Result<(), Status> {
        self.expire(now);
        let key_hash = self.hash(key);
        if self.seen.contains(&key_hash) {
            return Err(Status::TxnProcessed);
        }
        let identity = self.hash(&key[..IDENTITY_BYTES]);
        let held = self.per_identity.get(&identity).copied().unwrap_or(0);
        if held as usize >= self.share || self.order.len() >= self.capacity {
            return Err(Status::RequestRate);
        }
        self.seen.insert(key_hash);
        self.order.push_back(Entry { accepted: now, key: key_hash, identity });
        *self.per_identity.entry(identity).or_insert(0) += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freshness_edges() {
        assert!(check_freshness(1000, 1300).is_ok());
        assert!(check_freshness(1600, 1300).is_ok());
        assert_eq!(check_freshness(999, 1300), Err(Status::TxnProcessed));
        assert_eq!(check_freshness(1601, 1300), Err(Status::TxnProcessed));
    }

    #[test]
    fn full_then_expired() {
        let mut m = ReplayMemory::new(2);
        assert!(m.check_and_insert(&[1; 23], 0).is_ok());
        assert!(m.check_and_insert(&[2; 23], 10).is_ok());
        assert_eq!(m.check_and_insert(&[1; 23], 600), Err(Status::TxnProcessed));
        assert_eq!(m.check_and_insert(&[3; 23], 600), Err(Status::RequestRate));
        assert!(m.check_and_insert(&[3; 23], 601).is_ok());
        assert_eq!(m.len(), 2);
    }

    fn key(identity: u8, nonce: u8) -> ReplayKey {
        let mut k = [0u8; 23];
        k[0] = 4;
        k[1] = identity;
        k[22] = nonce;
        k
    }

    #[test]
    fn one_identity_cannot_fill_the_memory() {
        let mut m = ReplayMemory::with_share(100, 10);
        for n in 0..10 {
            assert!(m.check_and_insert(&key(1, n), 0).is_ok());
        }
        // the flooding key is refused, another key is still served
        assert_eq!(m.check_and_insert(&key(1, 10), 0), Err(Status::RequestRate));
        assert!(m.check_and_insert(&key(2, 0), 0).is_ok());
        // a replay is still a replay, not a rate answer
        assert_eq!(m.check_and_insert(&key(1, 3), 0), Err(Status::TxnProcessed));
        // after the window, the share is free again
        assert!(m.check_and_insert(&key(1, 10), 601).is_ok());
        assert_eq!(m.identities(), 1);
    }
}
