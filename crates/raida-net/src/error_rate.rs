//! Error answers per source address and second, in fixed memory: the server's UDP
//! transport and `raida key receive` bound the error answers one address can draw
//! (reflection, section 2) with the same limiter.

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

/// Counters per row of [`ErrorRateLimiter`]: 2 rows × 16,384 × 8 bytes = 256 KiB, fixed.
const SLOTS: usize = 1 << 14;
const ROWS: usize = 2;

/// Error answers per source address and second, in fixed memory.
///
/// A count-min sketch of one-second windows: each address is counted in one slot of each
/// of two rows, and its count is the smaller of the two. Millions of spoofed addresses can
/// only share slots, never add any, so memory is fixed. Slots are chosen by a keyed hash
/// (std's `RandomState`, random keys per process), so nobody can aim collisions at a
/// given address; an innocent address is only throttled when both of its slots are busy.
pub struct ErrorRateLimiter {
    per_second: AtomicU32,
    started: Instant,
    hasher: std::collections::hash_map::RandomState,
    /// Each slot: window (seconds since `started`, high 32 bits) and count (low 32 bits).
    slots: Box<[AtomicU64]>,
}

impl ErrorRateLimiter {
    pub fn new(per_second: u32) -> ErrorRateLimiter {
        ErrorRateLimiter {
            per_second: AtomicU32::new(per_second.max(1)),
            started: Instant::now(),
            hasher: Default::default(),
            slots: (0..ROWS * SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Change the limit (the state is built before the configuration is applied).
    pub fn set_per_second(&self, per_second: u32) {
        self.per_second.store(per_second.max(1), Ordering::Relaxed);
    }

    pub fn per_second(&self) -> u32 {
        self.per_second.load(Ordering::Relaxed)
    }

    /// Count one error answer to `ip`; false when that address is over its limit this second.
    pub fn allow(&self, ip: IpAddr) -> bool {
        let window = self.started.elapsed().as_secs().min(u32::MAX as u64);
        let limit = u64::from(self.per_second());
        let h = self.hasher.hash_one(ip.to_canonical());
        let idx = [(h as u32 as usize) % SLOTS, SLOTS + ((h >> 32) as usize) % SLOTS];
        let count_in = |v: u64| if v >> 32 == window { v & 0xFFFF_FFFF } else { 0 };
        let estimate = idx.iter().map(|&i| count_in(self.slots[i].load(Ordering::Relaxed))).min().unwrap_or(0);
        if estimate >= limit {
            return false;
        }
        for &i in &idx {
            // lock-free: a lost race only miscounts by one
            let _ = self.slots[i].fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some((window << 32) | (count_in(v) + 1).min(0xFFFF_FFFF))
            });
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn error_limit_is_per_address() {
        let l = ErrorRateLimiter::new(5);
        let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let b = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        let allowed = (0..50).filter(|_| l.allow(a)).count();
        // at most two windows if the second turned during the loop
        assert!((5..=10).contains(&allowed), "{allowed}");
        assert!(l.allow(b));
    }

    #[test]
    fn error_limiter_memory_is_fixed_under_a_million_addresses() {
        let l = ErrorRateLimiter::new(1000);
        for i in 0..1_000_000u32 {
            let _ = l.allow(IpAddr::V4(Ipv4Addr::from(i)));
        }
        assert_eq!(l.slots.len(), ROWS * SLOTS);
        // a fresh address is still answered: a million senders at one error each fill no slot
        assert!(l.allow(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))));
    }
}
