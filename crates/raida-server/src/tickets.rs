//! The ticket pool (section 6, group 2): 512 slots, each with its own lock; a slot's
//! live ticket number sits in an atomic so lookups scan without locking.
//!
//! Fair shares: one requester (the request's key identity, or the source address for
//! EN 0) may hold at most `per_requester` live tickets, so 512 quick Get Tickets from one
//! client cannot starve everyone else for the 300 s a ticket lives.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;
use raida_proto::consts::{TICKET_POOL_SIZE, TICKET_RELEASE_SECONDS, TOTAL_RAIDA_SERVERS};
use raida_proto::CoinId;
use raida_proto::{KeyIdentity, Status};
use rand_core::RngCore;

/// Default number of live tickets one requester may hold.
pub(crate) const DEFAULT_TICKETS_PER_REQUESTER: usize = 16;

/// Who asked for a ticket: the key that encrypted the request, or for EN 0 the address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Requester {
    Key(KeyIdentity),
    Address(IpAddr),
}

impl Requester {
    /// The requester of a call: its key identity, or its source address when it has none.
    pub fn of(identity: &KeyIdentity, peer: IpAddr) -> Requester {
        match identity {
            KeyIdentity::None => Requester::Address(peer),
            id => Requester::Key(*id),
        }
    }
}

#[derive(Default)]
struct SlotData {
    created: u64,
    coins: Vec<CoinId>,
    /// Bit r set: RAIDA r claimed it.
    claimed: u32,
}

struct Slot {
    /// 0 = free.
    number: AtomicU32,
    /// Creation time, readable without the lock (for counting live tickets).
    created: AtomicU64,
    /// Keyed hash of the requester (0 = none).
    requester: AtomicU64,
    data: Mutex<SlotData>,
}

/// Healing tickets: issued by Get Ticket, claimed by Validate Ticket.
pub struct TicketPool {
    slots: Vec<Slot>,
    ttl: u64,
    /// Atomic: a SIGHUP reload changes it while tickets are issued.
    per_requester: AtomicUsize,
    hasher: RandomState,
    /// Serialises issuing (count, then take a slot), so a requester cannot exceed its
    /// share by racing itself. Claims and sweeps never take it.
    issuing: Mutex<()>,
}

impl Default for TicketPool {
    fn default() -> Self {
        TicketPool::new(TICKET_POOL_SIZE, TICKET_RELEASE_SECONDS)
    }
}

impl TicketPool {
    pub fn new(size: usize, ttl_secs: u64) -> Self {
        TicketPool::with_share(size, ttl_secs, DEFAULT_TICKETS_PER_REQUESTER)
    }

    /// A pool whose requesters may hold at most `per_requester` live tickets each.
    pub fn with_share(size: usize, ttl_secs: u64, per_requester: usize) -> Self {
        let slots = (0..size)
            .map(|_| Slot {
                number: AtomicU32::new(0),
                created: AtomicU64::new(0),
                requester: AtomicU64::new(0),
                data: Mutex::new(SlotData::default()),
            })
            .collect();
        TicketPool {
            slots,
            ttl: ttl_secs,
            per_requester: AtomicUsize::new(per_requester.max(1)),
            hasher: RandomState::new(),
            issuing: Mutex::new(()),
        }
    }

    /// Live tickets one requester may hold.
    pub fn per_requester(&self) -> usize {
        self.per_requester.load(Ordering::Relaxed)
    }

    /// Change the share (SIGHUP reload); tickets already held stay valid.
    pub fn set_per_requester(&self, per_requester: usize) {
        self.per_requester.store(per_requester.max(1), Ordering::Relaxed);
    }

    fn expired_at(&self, created: u64, now: u64) -> bool {
        now.saturating_sub(created) >= self.ttl
    }

    fn live(&self, slot: &Slot, now: u64) -> bool {
        slot.number.load(Ordering::Acquire) != 0 && !self.expired_at(slot.created.load(Ordering::Acquire), now)
    }

    fn requester_hash(&self, requester: &Requester) -> u64 {
        // never 0: 0 marks a slot without a requester
        self.hasher.hash_one(requester) | 1
    }

    /// Issue a ticket for `coins` on behalf of `requester`. The number is 32 random bits
    /// from `rng`, non-zero and unique among live tickets. Duplicate coins are kept once,
    /// so Validate Ticket never answers more than the ticket's distinct coins.
    /// Err(160) when the requester already holds its share, Err(42) when every slot is live.
    pub fn issue(
        &self,
        mut coins: Vec<CoinId>,
        requester: &Requester,
        now: u64,
        rng: &mut impl RngCore,
    ) -> Result<u32, Status> {
        let mut distinct = std::collections::HashSet::with_capacity(coins.len());
        coins.retain(|c| distinct.insert(*c));
        let who = self.requester_hash(requester);
        let _issuing = self.issuing.lock();
        let held =
            self.slots.iter().filter(|s| s.requester.load(Ordering::Acquire) == who && self.live(s, now)).count();
        if held >= self.per_requester() {
            return Err(Status::RequestRate);
        }
        let number = loop {
            let n = rng.next_u32();
            if n != 0 && !self.slots.iter().any(|s| s.number.load(Ordering::Acquire) == n && self.live(s, now)) {
                break n;
            }
        };
        let free = self.slots.iter().find(|s| !self.live(s, now)).ok_or(Status::NoTicketSlot)?;
        let mut d = free.data.lock();
        *d = SlotData { created: now, coins, claimed: 0 };
        free.created.store(now, Ordering::Release);
        free.requester.store(who, Ordering::Release);
        free.number.store(number, Ordering::Release);
        Ok(number)
    }

    /// Place a ticket with a given number (tests and vectors). None when full.
    pub fn insert(&self, number: u32, coins: Vec<CoinId>, now: u64) -> Option<()> {
        let _issuing = self.issuing.lock();
        let slot = self.slots.iter().find(|s| !self.live(s, now))?;
        let mut d = slot.data.lock();
        *d = SlotData { created: now, coins, claimed: 0 };
        slot.created.store(now, Ordering::Release);
        slot.requester.store(0, Ordering::Release);
        slot.number.store(number, Ordering::Release);
        Some(())
    }

    /// Claim a ticket for RAIDA `raida`: 43 unknown or expired, 44 already claimed by it.
    pub fn claim(&self, number: u32, raida: u8, now: u64) -> Result<Vec<CoinId>, Status> {
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
            if self.expired_at(d.created, now) {
                continue;
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
            if self.expired_at(d.created, now) {
                slot.number.store(0, Ordering::Release);
                slot.requester.store(0, Ordering::Release);
                *d = SlotData::default();
            }
        }
    }

    /// Slots free for a new ticket at `now`.
    pub fn free_slots(&self, now: u64) -> usize {
        self.slots.iter().filter(|s| !self.live(s, now)).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    fn coins(list: &[(i8, u32)]) -> Vec<CoinId> {
        list.iter().map(|&c| c.into()).collect()
    }

    fn who(n: u8) -> Requester {
        Requester::Address(IpAddr::from([10, 0, 0, n]))
    }

    #[test]
    fn issue_claim_expire() {
        let pool = TicketPool::with_share(4, 300, 16);
        let t = pool.issue(coins(&[(1, 2)]), &who(1), 1000, &mut OsRng).unwrap();
        assert_ne!(t, 0);
        assert_eq!(pool.claim(t, 3, 1000), Ok(coins(&[(1, 2)])));
        assert_eq!(pool.claim(t, 3, 1000), Err(Status::TicketClaimedAlready));
        assert_eq!(pool.claim(t, 4, 1299), Ok(coins(&[(1, 2)])));
        assert_eq!(pool.claim(t, 5, 1300), Err(Status::NoTicketFound));
        for _ in 0..4 {
            assert!(pool.issue(vec![], &who(1), 2000, &mut OsRng).is_ok());
        }
        assert_eq!(pool.issue(vec![], &who(2), 2000, &mut OsRng), Err(Status::NoTicketSlot));
        assert_eq!(pool.free_slots(2000), 0);
        pool.sweep(2300);
        assert_eq!(pool.free_slots(2300), 4);
    }

    #[test]
    fn numbers_unique_among_live() {
        let pool = TicketPool::with_share(512, 300, 512);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..512 {
            let t = pool.issue(vec![], &who(1), 0, &mut OsRng).unwrap();
            assert!(seen.insert(t));
        }
    }

    /// An RNG that repeats one value, then counts up: a collision must be retried.
    struct Repeating(u32, u32);
    impl RngCore for Repeating {
        fn next_u32(&mut self) -> u32 {
            if self.1 > 0 {
                self.1 -= 1;
                self.0
            } else {
                self.0 = self.0.wrapping_add(1);
                self.0
            }
        }
        fn next_u64(&mut self) -> u64 {
            u64::from(self.next_u32())
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            rand_core::impls::fill_bytes_via_next(self, dest)
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }

    #[test]
    fn numbers_carry_32_random_bits_and_never_collide() {
        let pool = TicketPool::with_share(8, 300, 8);
        // the whole 32-bit value is the RNG's: no slot index in the low bits
        assert_eq!(pool.issue(vec![], &who(1), 0, &mut Repeating(0xDEAD_BEEF, 0)), Ok(0xDEAD_BEF0));
        // zero is never a ticket; a live number is never handed out twice
        assert_eq!(pool.issue(vec![], &who(1), 0, &mut Repeating(0, 1)), Ok(1));
        assert_eq!(pool.issue(vec![], &who(1), 0, &mut Repeating(0, 3)), Ok(2));
    }

    #[test]
    fn one_requester_cannot_take_the_pool() {
        let pool = TicketPool::with_share(512, 300, 16);
        let mut refused = 0;
        for _ in 0..512 {
            match pool.issue(coins(&[(1, 1)]), &who(1), 0, &mut OsRng) {
                Ok(_) => {}
                Err(s) => {
                    assert_eq!(s, Status::RequestRate);
                    refused += 1;
                }
            }
        }
        assert_eq!(refused, 512 - 16);
        assert_eq!(pool.free_slots(0), 512 - 16);
        assert!(pool.issue(coins(&[(2, 2)]), &who(2), 0, &mut OsRng).is_ok());
        // once its tickets expire the abuser may ask again
        assert!(pool.issue(coins(&[(1, 1)]), &who(1), 300, &mut OsRng).is_ok());
    }

    #[test]
    fn duplicate_coins_are_one_coin() {
        let pool = TicketPool::default();
        let t = pool.issue(coins(&[(1, 5), (1, 5), (2, 7), (1, 5)]), &who(1), 0, &mut OsRng).unwrap();
        assert_eq!(pool.claim(t, 0, 0), Ok(coins(&[(1, 5), (2, 7)])));
    }
}
