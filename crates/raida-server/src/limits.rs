//! Bounds the transports put on what one peer can make the server do: error answers per
//! source address (reflection), deferred commands per kind and per address, and the
//! descriptor budget that sizes the TCP connection table.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

/// Error answers per source address and second (shared with `raida key receive`).
pub(crate) use raida_net::ErrorRateLimiter;

/// Log lines a peer can trigger (a handler that panicked on its request): at most one per
/// source address and second, and [`LOG_LINES_PER_SECOND`] in total, because a UDP source
/// address can be spoofed (millions of addresses must not fill the log either).
pub(crate) struct LogLimiter {
    per_addr: ErrorRateLimiter,
    total: ErrorRateLimiter,
    suppressed: AtomicU64,
}

/// Peer-triggered log lines per second, all addresses together.
pub(crate) const LOG_LINES_PER_SECOND: u32 = 10;

impl Default for LogLimiter {
    fn default() -> Self {
        LogLimiter {
            per_addr: ErrorRateLimiter::new(1),
            total: ErrorRateLimiter::new(LOG_LINES_PER_SECOND),
            suppressed: AtomicU64::new(0),
        }
    }
}

impl LogLimiter {
    /// Whether a line about `ip` may be logged now (else it is counted as suppressed).
    pub(crate) fn allow(&self, ip: IpAddr) -> bool {
        let ok = self.per_addr.allow(ip) && self.total.allow(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        if !ok {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// Lines not logged so far.
    #[cfg(test)]
    pub(crate) fn suppressed(&self) -> u64 {
        self.suppressed.load(Ordering::Relaxed)
    }
}

/// Which concurrency limit a command that runs off the receiving thread counts against,
/// and so where it runs ([`crate::state::Deferred::start`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkKind {
    /// Key Alert: waits for other servers, as an async task.
    KeyAlert,
    /// Waits for a durable write: Post Key, Get Key, Decrypt RAIDA Key, on the durable-write
    /// threads ([`crate::blocking`]).
    Durable,
    /// May touch thousands of pages: Get Ticket / Decrypt RAIDA Key with many records, on
    /// tokio's blocking pool (never holding the durable-write threads).
    Heavy,
    /// Take Alerts (47), which over TCP may wait up to 30 s for an alert: a task that
    /// holds nothing but its connection. Not counted here: the mailbox bounds held polls
    /// itself (per address and in total, [`crate::mailbox::SharedMailbox::hold`]), and a
    /// 47 that is not held answers at once; so a held poll never takes a slot of another
    /// kind.
    LongPoll,
}

/// One kind's pool: a total and, per source address, at most a quarter of it, so one
/// client cannot hold every slot of a kind either.
///
/// Counters under one lock rather than a tokio `Semaphore`: every acquisition is a
/// `try_` (a full kind answers 160, nothing waits), the per-address count needs the lock
/// anyway, and a reload can then lower the limit while slots are held without waiting
/// for them: a `Semaphore` can only forget permits that are free, so the held ones would
/// need a debt kept beside it.
struct KindPool {
    counts: Arc<Mutex<PoolCounts>>,
}

struct PoolCounts {
    /// Commands of this kind that may start while fewer than this many run.
    limit: usize,
    per_addr_max: u32,
    /// Commands of this kind running now (may exceed `limit` after a reload lowered it).
    running: usize,
    per_addr: HashMap<IpAddr, u32>,
}

impl PoolCounts {
    fn new(limit: usize) -> PoolCounts {
        let mut c = PoolCounts { limit: 0, per_addr_max: 0, running: 0, per_addr: HashMap::new() };
        c.set_limit(limit);
        c
    }

    fn set_limit(&mut self, limit: usize) {
        self.limit = limit.max(1);
        self.per_addr_max = (limit / 4).max(1).min(u32::MAX as usize) as u32;
    }
}

/// Concurrency limits of deferred commands, one per [`WorkKind`], shared by UDP and TCP.
pub struct DeferredLimits {
    key_alert: KindPool,
    durable: KindPool,
    heavy: KindPool,
}

impl DeferredLimits {
    pub fn new(key_alerts: usize, durable: usize, heavy: usize) -> DeferredLimits {
        let pool = |n: usize| KindPool { counts: Arc::new(Mutex::new(PoolCounts::new(n))) };
        DeferredLimits { key_alert: pool(key_alerts), durable: pool(durable), heavy: pool(heavy) }
    }

    fn pool(&self, kind: WorkKind) -> Option<&KindPool> {
        match kind {
            WorkKind::KeyAlert => Some(&self.key_alert),
            WorkKind::Durable => Some(&self.durable),
            WorkKind::Heavy => Some(&self.heavy),
            WorkKind::LongPoll => None,
        }
    }

    /// A slot for one command of `kind` from `ip`; None when the kind (or that address's
    /// share of it) is full: the caller answers 160. [`WorkKind::LongPoll`] always gets
    /// one that counts nothing (the mailbox bounds it).
    pub fn try_acquire(&self, kind: WorkKind, ip: IpAddr) -> Option<DeferredPermit> {
        let ip = ip.to_canonical();
        let Some(pool) = self.pool(kind) else { return Some(DeferredPermit { ip, counts: None }) };
        let mut c = pool.counts.lock();
        if c.running >= c.limit {
            return None;
        }
        let per_addr_max = c.per_addr_max;
        let n = c.per_addr.entry(ip).or_insert(0);
        if *n >= per_addr_max {
            return None;
        }
        *n += 1;
        c.running += 1;
        Some(DeferredPermit { ip, counts: Some(pool.counts.clone()) })
    }

    /// New limits (a SIGHUP reload), each with its per-address quarter. Never waits: a
    /// lowered limit leaves the commands running finish, and no new one of that kind
    /// starts until fewer than the new limit run; a raised one admits more at once.
    pub fn set_limits(&self, key_alerts: usize, durable: usize, heavy: usize) {
        self.key_alert.counts.lock().set_limit(key_alerts);
        self.durable.counts.lock().set_limit(durable);
        self.heavy.counts.lock().set_limit(heavy);
    }

    /// The limit of a kind now (none for [`WorkKind::LongPoll`]: usize::MAX).
    pub fn limit(&self, kind: WorkKind) -> usize {
        self.pool(kind).map_or(usize::MAX, |p| p.counts.lock().limit)
    }

    /// Commands of a kind running now (after a lowered limit, possibly more than it; 0 for
    /// [`WorkKind::LongPoll`], which is not counted here).
    pub fn running(&self, kind: WorkKind) -> usize {
        self.pool(kind).map_or(0, |p| p.counts.lock().running)
    }

    /// Free slots of a kind (tests and logs).
    pub fn available(&self, kind: WorkKind) -> usize {
        self.pool(kind).map_or(usize::MAX, |p| {
            let c = p.counts.lock();
            c.limit.saturating_sub(c.running)
        })
    }
}

/// Held while a deferred command runs; frees its slots on drop.
pub struct DeferredPermit {
    ip: IpAddr,
    /// None for a kind not counted here ([`WorkKind::LongPoll`]).
    counts: Option<Arc<Mutex<PoolCounts>>>,
}

impl Drop for DeferredPermit {
    fn drop(&mut self) {
        let Some(counts) = &self.counts else { return };
        let mut c = counts.lock();
        c.running = c.running.saturating_sub(1);
        if let Some(n) = c.per_addr.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                // entries live only while a command runs: the map stays as small as the pool
                c.per_addr.remove(&self.ip);
            }
        }
    }
}

/// Descriptors kept for everything but client connections, beyond one per deferred slot:
/// the journal, page files being read, pending-key and inbox files, identity coins, the
/// listening sockets, the runtime's own (epoll, eventfd, pipes), stdio.
pub(crate) const STORE_RESERVE: u64 = 256;

/// Raise the soft RLIMIT_NOFILE to the hard limit; the soft limit now in force.
pub(crate) fn raise_descriptor_limit() -> u64 {
    match rlimit::getrlimit(rlimit::Resource::NOFILE) {
        Ok((soft, hard)) => match rlimit::increase_nofile_limit(hard) {
            Ok(now) => now,
            Err(e) => {
                tracing::warn!(soft, hard, error = %e, "cannot raise the descriptor limit");
                soft
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the descriptor limit; assuming 1024");
            1024
        }
    }
}

/// How many TCP connections fit in `nofile` descriptors after the store's reserve, one
/// descriptor per deferred slot (a Key Alert's socket, a key file, a page file) and one
/// per UDP thread; never more than `wanted`, and not fewer than 16 (unless `wanted` is): a
/// server with fewer descriptors than its reserve still takes some connections, and logs why.
pub(crate) fn connection_budget(nofile: u64, wanted: usize, deferred_slots: usize, udp_threads: usize) -> usize {
    let reserve = descriptor_reserve(deferred_slots, udp_threads);
    let fits = nofile.saturating_sub(reserve).min(usize::MAX as u64) as usize;
    wanted.min(fits.max(16))
}

/// The descriptors [`connection_budget`] keeps for the rest of the server.
pub fn descriptor_reserve(deferred_slots: usize, udp_threads: usize) -> u64 {
    STORE_RESERVE.saturating_add(deferred_slots as u64).saturating_add(udp_threads as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_triggered_log_lines_are_bounded_per_address_and_in_total() {
        let logs = LogLimiter::default();
        let one: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!((0..1000).filter(|_| logs.allow(one)).count(), 1, "one line per address and second");
        // a flood from (spoofed) addresses, each new: the total bound holds
        let many = (0..1000u32).filter(|i| logs.allow(IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i)))).count();
        assert!(many < LOG_LINES_PER_SECOND as usize, "{many} lines");
        assert!(logs.suppressed() >= 1990);
    }
    use std::net::Ipv4Addr;

    #[test]
    fn deferred_kinds_are_separate_and_shared_per_address() {
        let d = DeferredLimits::new(8, 8, 2);
        let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let b = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        // one address: a quarter of the kind
        let held: Vec<_> = (0..8).filter_map(|_| d.try_acquire(WorkKind::KeyAlert, a)).collect();
        assert_eq!(held.len(), 2);
        // another kind and another address are untouched
        assert!(d.try_acquire(WorkKind::Durable, a).is_some());
        assert!(d.try_acquire(WorkKind::KeyAlert, b).is_some());
        drop(held);
        assert_eq!(d.available(WorkKind::KeyAlert), 8);
        assert!(d.key_alert.counts.lock().per_addr.is_empty());
    }

    #[test]
    fn deferred_limits_change_while_slots_are_held() {
        let d = DeferredLimits::new(8, 4, 4);
        let addr = |i: u32| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
        let mut held: Vec<_> = (0..10).filter_map(|i| d.try_acquire(WorkKind::Durable, addr(i))).collect();
        assert_eq!(held.len(), 4);
        // raised: more start at once, and the per-address quarter follows (12 / 4 = 3)
        d.set_limits(8, 12, 4);
        held.extend((10..20).filter_map(|i| d.try_acquire(WorkKind::Durable, addr(i))));
        assert_eq!(held.len(), 12);
        assert!(d.try_acquire(WorkKind::Durable, addr(99)).is_none());
        let one = addr(50);
        let mine: Vec<_> = (0..5).filter_map(|_| d.try_acquire(WorkKind::KeyAlert, one)).collect();
        assert_eq!(mine.len(), 2, "a quarter of 8");
        d.set_limits(16, 12, 4);
        let more: Vec<_> = (0..5).filter_map(|_| d.try_acquire(WorkKind::KeyAlert, one)).collect();
        assert_eq!(more.len(), 2, "a quarter of 16, two held already");
        // lowered below the slots held: returns at once, and nothing starts until fewer
        // than the new limit run
        d.set_limits(16, 2, 4);
        assert_eq!((d.running(WorkKind::Durable), d.limit(WorkKind::Durable)), (12, 2));
        assert_eq!(d.available(WorkKind::Durable), 0);
        while held.len() > 2 {
            assert!(d.try_acquire(WorkKind::Durable, addr(100 + held.len() as u32)).is_none(), "{}", held.len());
            held.pop();
        }
        assert!(d.try_acquire(WorkKind::Durable, addr(200)).is_none(), "2 running, limit 2");
        held.pop();
        let p = d.try_acquire(WorkKind::Durable, addr(201));
        assert!(p.is_some(), "1 running, limit 2");
        assert!(d.try_acquire(WorkKind::Durable, addr(202)).is_none());
        drop((held, p, mine, more));
        assert_eq!(d.running(WorkKind::Durable) + d.running(WorkKind::KeyAlert), 0);
        assert!(d.durable.counts.lock().per_addr.is_empty());
    }

    #[test]
    fn connection_budget_keeps_the_reserve() {
        // 1,024 descriptors, 516 deferred slots, 2 UDP threads: 250 connections at most
        let reserve = descriptor_reserve(516, 2);
        let n = connection_budget(1024, 4096, 516, 2);
        assert_eq!(n as u64, 1024 - reserve);
        assert!(n as u64 + reserve <= 1024);
        // plenty of descriptors: the configured figure
        assert_eq!(connection_budget(1 << 20, 4096, 516, 2), 4096);
        // fewer descriptors than the reserve: a floor, not zero
        assert_eq!(connection_budget(100, 4096, 516, 2), 16);
    }
}
