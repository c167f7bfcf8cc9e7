//! Freshness and the bounded replay memory of section 3.4. The caller passes the time.

use std::collections::{HashMap, VecDeque};

use crate::consts::{FRESHNESS_WINDOW_SECS, REPLAY_WINDOW_SECS};
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
    if en == 5 {
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

/// Remembers every nonce accepted in the last 2 × FRESHNESS_WINDOW, up to a bound.
/// Only expired entries are dropped; while it is full of unexpired entries, new
/// requests get 160 — it never forgets a nonce that could still be replayed.
#[derive(Debug)]
pub struct ReplayMemory {
    capacity: usize,
    seen: HashMap<ReplayKey, u64>,
    order: VecDeque<(u64, ReplayKey)>,
}

impl ReplayMemory {
    pub fn new(capacity: usize) -> Self {
        ReplayMemory { capacity, seen: HashMap::new(), order: VecDeque::new() }
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Drop entries accepted more than 600 s before `now`.
    pub fn expire(&mut self, now: u64) {
        while let Some(&(t, key)) = self.order.front() {
            if now.saturating_sub(t) <= REPLAY_WINDOW_SECS {
                break;
            }
            self.order.pop_front();
            if self.seen.get(&key) == Some(&t) {
                self.seen.remove(&key);
            }
        }
    }
}

impl ReplayCheck for ReplayMemory {
    fn check_and_insert(&mut self, key: &ReplayKey, now: u64) -> Result<(), Status> {
        self.expire(now);
        if let Some(&t) = self.seen.get(key) {
            if now.saturating_sub(t) <= REPLAY_WINDOW_SECS {
                return Err(Status::TxnProcessed);
            }
        }
        if self.seen.len() >= self.capacity {
            return Err(Status::RequestRate);
        }
        self.seen.insert(*key, now);
        self.order.push_back((now, *key));
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
}
