//! The receiving half of one direction: the anti-replay window of 3 and its key window.
//!
//! A record is accepted only if its sequence number was never accepted and is greater than
//! `highest accepted - 3`. The receiver keeps `K_(highest+1)` (the chain head) and the keys
//! of the not-yet-accepted sequence numbers inside the window (at most 2), and nothing
//! else: a key is erased as soon as its record is accepted or leaves the window. It
//! derives forward at most [`MAX_SKIP`] steps from the chain head. A record that does not
//! authenticate changes nothing.

use tracing::warn;

use crate::chain::{next_key, SecretKey, SEQ_LIMIT};
use crate::error::ChannelError;
use crate::record::{self, Direction};

/// Size of the anti-replay window (and of the key window).
pub const WINDOW: u64 = 3;
/// Most HKDF steps derived forward from the chain head for one record.
pub const MAX_SKIP: u64 = 1000;

/// Receive state of one direction.
pub struct RecvWindow {
    highest: u64,
    head: SecretKey,
    pending: Vec<(u64, SecretKey)>,
    direction: Direction,
    endpoint: &'static str,
}

impl RecvWindow {
    /// A fresh receiver expecting records sealed from `key_1`.
    pub fn new(key_1: SecretKey, direction: Direction, endpoint: &'static str) -> Self {
        RecvWindow { highest: 0, head: key_1, pending: Vec::new(), direction, endpoint }
    }

    /// Highest sequence number accepted (0 = none).
    pub fn highest(&self) -> u64 {
        self.highest
    }

    /// Number of keys held (chain head + key window), for tests of erasure.
    pub fn keys_held(&self) -> usize {
        1 + self.pending.len()
    }

    /// Checks and opens one record. On success returns `(seq, plaintext)` and updates the
    /// window; on any error nothing changes and a `tracing` event is emitted.
    pub fn open(&mut self, message: &[u8]) -> Result<(u64, Vec<u8>), ChannelError> {
        let r = self.open_inner(message);
        if let Err(e) = &r {
            warn!(
                direction = self.direction.as_str(),
                endpoint = self.endpoint,
                reason = e.reason(),
                highest = self.highest,
                "record rejected: {e}"
            );
        }
        r
    }

    fn open_inner(&mut self, message: &[u8]) -> Result<(u64, Vec<u8>), ChannelError> {
        let seq = record::record_seq(message)?;
        if seq == 0 {
            return Err(ChannelError::ZeroSeq);
        }
        let highest = self.highest;
        if seq <= highest.saturating_sub(WINDOW) && highest >= WINDOW {
            return Err(ChannelError::TooOld { seq, highest });
        }
        if seq <= highest {
            let Some(idx) = self.pending.iter().position(|(s, _)| *s == seq) else {
                return Err(ChannelError::Replay { seq });
            };
            let pt = record::open(&self.pending[idx].1, message, self.direction, self.endpoint)?;
            // Accepted: erase its key.
            self.pending.swap_remove(idx);
            return Ok((seq, pt));
        }
        // seq > highest: derive forward from the head K_(highest+1).
        let steps = seq - (highest + 1);
        if steps > MAX_SKIP || seq >= SEQ_LIMIT {
            return Err(ChannelError::Gap { seq, highest });
        }
        let low = seq.saturating_sub(WINDOW - 1).max(highest + 1);
        let mut skipped: Vec<(u64, SecretKey)> = Vec::new();
        let mut cur: SecretKey = SecretKey::new(*self.head);
        let mut n = highest + 1;
        while n < seq {
            let next = next_key(&cur, n);
            if n >= low {
                skipped.push((n, cur));
            }
            cur = next;
            n += 1;
        }
        let pt = record::open(&cur, message, self.direction, self.endpoint)?;
        // Commit: new head K_(seq+1); keep only keys inside the new window.
        self.head = next_key(&cur, seq);
        drop(cur);
        let floor = seq.saturating_sub(WINDOW);
        self.pending.retain(|(s, _)| *s > floor);
        self.pending.extend(skipped);
        self.highest = seq;
        Ok((seq, pt))
    }
}
