//! The ticket pool (section 6, group 2): 512 slots, each with its own lock; a slot's
//! live ticket number sits in an atomic so lookups scan without locking.

use std::sync::atomic::{AtomicU32, Ordering};

use parking_lot::Mutex;
use raida_proto::consts::{TICKET_POOL_SIZE, TICKET_RELEASE_SECONDS, TOTAL_RAIDA_SERVERS};
use raida_proto::Status;

#[derive(Default)]
struct SlotData {
    created: u64,
    coins: Vec<(i8, u32)>,
    /// Bit r set: RAIDA r claimed it.
    claimed: u32,
}

struct Slot {
    /// 0 = free.
    number: AtomicU32,
    data: Mutex<SlotData>,
}

/// Healing tickets: issued by Get Ticket, claimed by Validate Ticket.
pub struct TicketPool {
    slots: Vec<Slot>,
    ttl: u64,
}

impl Default for TicketPool {
    fn default() -> Self {
        TicketPool::new(TICKET_POOL_SIZE, TICKET_RELEASE_SECONDS)
    }
}

impl TicketPool {
    pub fn new(size: usize, ttl_secs: u64) -> Self {
        let slots =
            (0..size).map(|_| Slot { number: AtomicU32::new(0), data: Mutex::new(SlotData::default()) }).collect();
        TicketPool { slots, ttl: ttl_secs }
    }

    fn expired(&self, d: &SlotData, now: u64) -> bool {
        now.saturating_sub(d.created) >= self.ttl
    }

    /// Issue a ticket for `coins`. `random` supplies 32 random bits; the number is
    /// made unique among live tickets by carrying the slot index in its low bits.
    /// None when every slot holds a live ticket (42).
    pub fn issue(&self, coins: Vec<(i8, u32)>, now: u64, random: u32) -> Option<u32> {
        let n = self.slots.len();
        let start = random as usize % n;
        for k in 0..n {
            let i = (start + k) % n;
            let slot = &self.slots[i];
            let Some(mut d) = slot.data.try_lock() else {
                continue;
            };
            let cur = slot.number.load(Ordering::Acquire);
            if cur != 0 && !self.expired(&d, now) {
                continue;
            }
            let bits = (n as u32).next_power_of_two().trailing_zeros();
            let mut number = (random.wrapping_mul(2_654_435_761) << bits) | i as u32;
            if number == 0 {
                number = 1 << bits;
            }
            *d = SlotData { created: now, coins, claimed: 0 };
            slot.number.store(number, Ordering::Release);
            return Some(number);
        }
        None
    }

    /// Place a ticket with a given number (tests and vectors). None when full.
    pub fn insert(&self, number: u32, coins: Vec<(i8, u32)>, now: u64) -> Option<()> {
        for slot in &self.slots {
            let mut d = slot.data.lock();
            let cur = slot.number.load(Ordering::Acquire);
            if cur == 0 || self.expired(&d, now) {
                *d = SlotData { created: now, coins, claimed: 0 };
                slot.number.store(number, Ordering::Release);
                return Some(());
            }
        }
        None
    }

    /// Claim a ticket for RAIDA `raida`: 43 unknown or expired, 44 already claimed by it.
    pub fn claim(&self, number: u32, raida: u8, now: u64) -> Result<Vec<(i8, u32)>, Status> {
        if number == 0 || raida >= TOTAL_RAIDA_SERVERS {
            return Err(Status::NoTicketFound);
        }
        for slot in &self.slots {
            if slot.number.load(Ordering::Acquire) != number {
                continue;
            }
            let mut d = slot.data.lock();
            if slot.number.load(Ordering::Acquire) != number {
                continue;
            }
            if self.expired(&d, now) {
                return Err(Status::NoTicketFound);
            }
            let bit = 1u32 << raida;
            if d.claimed & bit != 0 {
                return Err(Status::TicketClaimedAlready);
            }
            d.claimed |= bit;
            return Ok(d.coins.clone());
        }
        Err(Status::NoTicketFound)
    }

    /// Free every expired slot (the background sweep).
    pub fn sweep(&self, now: u64) {
        for slot in &self.slots {
            if slot.number.load(Ordering::Acquire) == 0 {
                continue;
            }
            let mut d = slot.data.lock();
            if self.expired(&d, now) {
                slot.number.store(0, Ordering::Release);
                *d = SlotData::default();
            }
        }
    }

    /// Slots free for a new ticket at `now`.
    pub fn free_slots(&self, now: u64) -> usize {
        self.slots.iter().filter(|s| s.number.load(Ordering::Acquire) == 0 || self.expired(&s.data.lock(), now)).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_claim_expire() {
        let pool = TicketPool::new(4, 300);
        let t = pool.issue(vec![(1, 2)], 1000, 77).unwrap();
        assert_ne!(t, 0);
        assert_eq!(pool.claim(t, 3, 1000), Ok(vec![(1, 2)]));
        assert_eq!(pool.claim(t, 3, 1000), Err(Status::TicketClaimedAlready));
        assert_eq!(pool.claim(t, 4, 1299), Ok(vec![(1, 2)]));
        assert_eq!(pool.claim(t, 5, 1300), Err(Status::NoTicketFound));
        for r in 0..4 {
            assert!(pool.issue(vec![], 2000, r).is_some());
        }
        assert!(pool.issue(vec![], 2000, 9).is_none());
        assert_eq!(pool.free_slots(2000), 0);
        pool.sweep(2300);
        assert_eq!(pool.free_slots(2300), 4);
    }

    #[test]
    fn numbers_unique_among_live() {
        let pool = TicketPool::new(512, 300);
        let mut seen = std::collections::HashSet::new();
        for r in 0..512u32 {
            let t = pool.issue(vec![], 0, r.wrapping_mul(7919)).unwrap();
            assert!(seen.insert(t));
        }
    }
}
