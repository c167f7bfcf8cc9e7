//! # raida-relay
//!
//! The relay of PROTOCOL.md section 10. Two clients that both sit behind NAT connect out
//! to it; each sends a 40-byte hello naming a rendezvous id and its side
//! ([`raida_proto::relay`]); when both sides of one id are there the relay answers `0x01`
//! to both and copies bytes between them, both ways, until either side closes (then it
//! closes the other). Otherwise it answers one byte and closes: `0x02` malformed hello,
//! `0x03` that side of that id is already waiting, `0x04` a bound below is reached, `0x05`
//! no peer within the pairing wait.
//!
//! What the relay learns: the two addresses, the times and the byte counts. Never the data
//! (the channel of section 8 runs end to end through it; the copy path never reads the
//! bytes, see `copy.rs`) and never K (the rendezvous id is a one-way function of it; the
//! relay does not log ids).
//!
//! Bounds ([`RelayLimits`], all replaceable while running with
//! [`RunningRelay::set_limits`]): connections waiting (from accept until paired, so a
//! client that never finishes its hello counts too) per client address and in total;
//! spliced pairs per address (a pair counts once for each distinct address in it) and
//! in total; a pair idle in both directions for `idle` is closed; optional bytes per
//! second per pair; a client that sends no complete hello within `hello_timeout` is closed.

mod copy;

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use raida_proto::relay::{RelayAnswer, RelayHello, Side, HELLO_LEN};

/// The relay's bounds (section 10: "all configurable").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayLimits {
    /// Connections waiting for a peer (or for their hello) from one client address.
    pub waiting_per_address: usize,
    /// Connections waiting for a peer (or for their hello) in all.
    pub waiting_total: usize,
    /// Spliced pairs one client address takes part in.
    pub pairs_per_address: usize,
    /// Spliced pairs in all.
    pub pairs_total: usize,
    /// How long a hello waits for the other side before `0x05`.
    pub pairing_wait: Duration,
    /// A pair with no byte either way for this long is closed.
    pub idle: Duration,
    /// A client that has not sent its 40 bytes within this is closed.
    pub hello_timeout: Duration,
    /// Bytes per second per pair (both directions together), or no bound.
    pub bytes_per_second: Option<u64>,
}

impl Default for RelayLimits {
    /// Section 10's numbers; the totals keep a default relay within a few thousand
    /// descriptors (a pair holds two sockets and, on Linux, two pipes of two ends each).
    fn default() -> RelayLimits {
        RelayLimits {
            waiting_per_address: 8,
            waiting_total: 1024,
            pairs_per_address: 8,
            pairs_total: 1024,
            pairing_wait: Duration::from_secs(60),
            idle: Duration::from_secs(120),
            hello_timeout: Duration::from_secs(10),
            bytes_per_second: None,
        }
    }
}

/// Counters of a running relay (for metrics), all since it started except the two
/// "now" gauges.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RelayStats {
    /// Connections accepted.
    pub connections: u64,
    /// Answers sent, by answer byte (index = the byte; index 0 unused).
    pub answers: [u64; 6],
    /// Clients closed because their hello did not arrive in time.
    pub hello_timeouts: u64,
    /// Pairs closed because they were idle.
    pub idle_closed: u64,
    /// Bytes relayed, both directions.
    pub bytes_relayed: u64,
    /// Directions copied through a user-space buffer because splice(2) was not available
    /// (always on systems other than Linux).
    pub copy_fallbacks: u64,
    /// Connections waiting now (for their hello or for a peer).
    pub waiting_now: u64,
    /// Hellos waiting for a peer now.
    pub hellos_waiting_now: u64,
    /// Spliced pairs now.
    pub pairs_now: u64,
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    answers: [AtomicU64; 6],
    hello_timeouts: AtomicU64,
    idle_closed: AtomicU64,
    bytes_relayed: AtomicU64,
    copy_fallbacks: AtomicU64,
}

/// What one address holds.
#[derive(Clone, Copy, Default)]
struct PerAddress {
    waiting: usize,
    pairs: usize,
}

/// What a waiting connection is told.
enum Pairing {
    /// The other side arrived: here is its stream and the pair's place in the bounds.
    Peer(TcpStream, PairSlot),
    /// The other side arrived but the pair would exceed a bound.
    Busy,
}

struct Waiter {
    token: u64,
    ip: IpAddr,
    tx: oneshot::Sender<Pairing>,
}

#[derive(Default)]
struct Table {
    waiting: HashMap<([u8; 32], Side), Waiter>,
    per_address: HashMap<IpAddr, PerAddress>,
    waiting_total: usize,
    pairs_total: usize,
    next_token: u64,
}

impl Table {
    fn entry(&mut self, ip: IpAddr) -> &mut PerAddress {
        self.per_address.entry(ip).or_default()
    }

    /// Forgets an address that holds nothing (the map stays as small as the live set).
    fn tidy(&mut self, ip: IpAddr) {
        if self.per_address.get(&ip).is_some_and(|p| p.waiting == 0 && p.pairs == 0) {
            self.per_address.remove(&ip);
        }
    }
}

struct Shared {
    limits: ArcSwap<RelayLimits>,
    table: Mutex<Table>,
    counters: Counters,
    /// Connections being answered and closed gently (see `answer_and_close`).
    closing: Semaphore,
}

/// How many refused connections may linger at once for their answer to arrive.
const CLOSING: usize = 256;
/// How long a refused connection lingers.
const LINGER: Duration = Duration::from_secs(1);

/// A connection's place in the waiting bounds, from accept until paired or closed.
struct WaitSlot {
    shared: Arc<Shared>,
    ip: IpAddr,
}

impl Drop for WaitSlot {
    fn drop(&mut self) {
        let mut t = self.shared.table.lock();
        t.waiting_total -= 1;
        t.entry(self.ip).waiting -= 1;
        t.tidy(self.ip);
    }
}

/// A pair's place in the pair bounds, for as long as it is spliced.
struct PairSlot {
    shared: Arc<Shared>,
    ips: Vec<IpAddr>,
}

impl Drop for PairSlot {
    fn drop(&mut self) {
        let mut t = self.shared.table.lock();
        t.pairs_total -= 1;
        for ip in &self.ips {
            t.entry(*ip).pairs -= 1;
            t.tidy(*ip);
        }
    }
}

/// Reads a relay's counters ([`RunningRelay::stats_handle`]).
#[derive(Clone)]
pub struct StatsHandle(Arc<Shared>);

impl std::fmt::Debug for StatsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StatsHandle")
    }
}

impl StatsHandle {
    pub fn stats(&self) -> RelayStats {
        self.0.stats()
    }
}

impl Shared {
    fn stats(&self) -> RelayStats {
        let c = &self.counters;
        let (waiting_now, hellos_waiting_now, pairs_now) = {
            let t = self.table.lock();
            (t.waiting_total as u64, t.waiting.len() as u64, t.pairs_total as u64)
        };
        RelayStats {
            connections: c.connections.load(Ordering::Relaxed),
            answers: std::array::from_fn(|i| c.answers[i].load(Ordering::Relaxed)),
            hello_timeouts: c.hello_timeouts.load(Ordering::Relaxed),
            idle_closed: c.idle_closed.load(Ordering::Relaxed),
            bytes_relayed: c.bytes_relayed.load(Ordering::Relaxed),
            copy_fallbacks: c.copy_fallbacks.load(Ordering::Relaxed),
            waiting_now,
            hellos_waiting_now,
            pairs_now,
        }
    }

    fn count(&self, a: RelayAnswer) {
        if let Some(c) = self.counters.answers.get(usize::from(a.code())) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn try_wait_slot(self: &Arc<Self>, ip: IpAddr, limits: &RelayLimits) -> Option<WaitSlot> {
        let mut t = self.table.lock();
        if t.waiting_total >= limits.waiting_total || t.entry(ip).waiting >= limits.waiting_per_address {
            t.tidy(ip);
            return None;
        }
        t.waiting_total += 1;
        t.entry(ip).waiting += 1;
        Some(WaitSlot { shared: self.clone(), ip })
    }

    /// Removes a waiter if it is still the one with `token` (not taken by a peer).
    fn remove_waiter(&self, key: &([u8; 32], Side), token: u64) -> bool {
        let mut t = self.table.lock();
        if t.waiting.get(key).is_some_and(|w| w.token == token) {
            t.waiting.remove(key);
            true
        } else {
            false
        }
    }
}

/// What the hello leads to.
enum Step {
    Answer(TcpStream, RelayAnswer),
    /// Handed to the waiting peer, which runs the pair.
    Handed,
    Wait {
        stream: TcpStream,
        rx: oneshot::Receiver<Pairing>,
        token: u64,
    },
}

/// Starts relays.
#[derive(Debug)]
#[non_exhaustive]
pub struct Relay;

impl Relay {
    /// Serves `listener` with `limits` until [`RunningRelay::shutdown`]. Needs a tokio
    /// runtime.
    pub fn start(listener: TcpListener, limits: RelayLimits) -> io::Result<RunningRelay> {
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            limits: ArcSwap::from_pointee(limits),
            table: Mutex::new(Table::default()),
            counters: Counters::default(),
            closing: Semaphore::new(CLOSING),
        });
        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();
        tracker.spawn(accept_loop(listener, shared.clone(), stop.clone(), tracker.clone()));
        tracing::info!(%addr, "relay listening");
        Ok(RunningRelay { addr, shared, stop, tracker })
    }
}

/// A relay that runs; stopped by [`RunningRelay::shutdown`] (or, abruptly, when dropped).
pub struct RunningRelay {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
    tracker: TaskTracker,
}

impl std::fmt::Debug for RunningRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningRelay").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl RunningRelay {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// New bounds (SIGHUP): they apply to connections and pairs from now on; pairs and
    /// waiters already admitted keep their place.
    pub fn set_limits(&self, limits: RelayLimits) {
        self.shared.limits.store(Arc::new(limits));
    }

    pub fn limits(&self) -> RelayLimits {
        **self.shared.limits.load()
    }

    pub fn stats(&self) -> RelayStats {
        self.shared.stats()
    }

    /// A handle that reads the counters while the relay runs (for a metrics endpoint
    /// that outlives no one: it holds the counters, not the relay).
    pub fn stats_handle(&self) -> StatsHandle {
        StatsHandle(self.shared.clone())
    }

    /// Stops accepting, closes waiting clients and spliced pairs, and waits for every
    /// task to end.
    pub async fn shutdown(self) {
        self.stop.cancel();
        self.tracker.close();
        self.tracker.wait().await;
        tracing::info!(addr = %self.addr, "relay stopped");
    }
}

impl Drop for RunningRelay {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken, tracker: TaskTracker) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = stop.cancelled() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                shared.counters.connections.fetch_add(1, Ordering::Relaxed);
                // the channel's handshake is small messages back and forth
                let _ = stream.set_nodelay(true);
                tracker.spawn(connection(stream, peer, shared.clone(), stop.clone()));
            }
            Err(e) => {
                // out of descriptors and the like: the listener stays, accepting resumes
                tracing::warn!(error = %e, "relay: accept failed");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                    () = stop.cancelled() => return,
                }
            }
        }
    }
}

/// One client, from accept to the end of its pair or its answer.
async fn connection(mut stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>, stop: CancellationToken) {
    let limits = **shared.limits.load();
    let ip = peer.ip();
    let Some(slot) = shared.try_wait_slot(ip, &limits) else {
        answer_and_close(stream, RelayAnswer::Busy, &shared).await;
        return;
    };
    let mut buf = [0u8; HELLO_LEN];
    let read = tokio::select! {
        r = tokio::time::timeout(limits.hello_timeout, stream.read_exact(&mut buf)) => r,
        () = stop.cancelled() => return,
    };
    let hello = match read {
        Err(_) => {
            shared.counters.hello_timeouts.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, "relay: no hello in time");
            return;
        }
        // end of stream (or a failure) before 40 bytes: a hello that is not 40 bytes
        Ok(Err(_)) => {
            answer_and_close(stream, RelayAnswer::Malformed, &shared).await;
            return;
        }
        Ok(Ok(_)) => match RelayHello::decode(&buf) {
            Ok(h) => h,
            Err(a) => {
                answer_and_close(stream, a, &shared).await;
                return;
            }
        },
    };
    let key = (hello.rendezvous_id, hello.side);
    let step = {
        let mut t = shared.table.lock();
        if let Some(w) = t.waiting.remove(&(hello.rendezvous_id, hello.side.peer())) {
            let mut ips = vec![ip];
            if w.ip != ip {
                ips.push(w.ip);
            }
            let full = t.pairs_total >= limits.pairs_total
                || ips.iter().any(|a| t.per_address.get(a).is_some_and(|p| p.pairs >= limits.pairs_per_address));
            if full {
                drop(t);
                // both go elsewhere: they must meet on the same relay
                let _ = w.tx.send(Pairing::Busy);
                Step::Answer(stream, RelayAnswer::Busy)
            } else {
                t.pairs_total += 1;
                for a in &ips {
                    t.entry(*a).pairs += 1;
                }
                drop(t);
                let pair = PairSlot { shared: shared.clone(), ips };
                match w.tx.send(Pairing::Peer(stream, pair)) {
                    Ok(()) => Step::Handed,
                    // the waiter's task is gone (the relay is stopping)
                    Err(_) => return,
                }
            }
        } else if t.entry(ip).pairs >= limits.pairs_per_address {
            // this address could not be paired anyway: it need not wait
            t.tidy(ip);
            Step::Answer(stream, RelayAnswer::Busy)
        } else if t.waiting.contains_key(&key) {
            Step::Answer(stream, RelayAnswer::SideTaken)
        } else {
            let (tx, rx) = oneshot::channel();
            t.next_token += 1;
            let token = t.next_token;
            t.waiting.insert(key, Waiter { token, ip, tx });
            Step::Wait { stream, rx, token }
        }
    };
    match step {
        Step::Answer(stream, a) => answer_and_close(stream, a, &shared).await,
        Step::Handed => {}
        Step::Wait { stream, rx, token } => {
            wait_for_peer(stream, peer, key, token, rx, slot, &shared, &limits, &stop).await
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn wait_for_peer(
    mut stream: TcpStream,
    peer: SocketAddr,
    key: ([u8; 32], Side),
    token: u64,
    mut rx: oneshot::Receiver<Pairing>,
    slot: WaitSlot,
    shared: &Arc<Shared>,
    limits: &RelayLimits,
    stop: &CancellationToken,
) {
    let deadline = tokio::time::sleep(limits.pairing_wait);
    tokio::pin!(deadline);
    let mut timed_out = false;
    let mut watch_close = true;
    let got = loop {
        tokio::select! {
            r = &mut rx => break r,
            () = &mut deadline, if !timed_out => {
                if shared.remove_waiter(&key, token) {
                    drop(slot);
                    answer_and_close(stream, RelayAnswer::NoPeer, shared).await;
                    return;
                }
                // a peer took this waiter just now: its message is on the way
                timed_out = true;
            }
            // a waiter that hangs up is forgotten at once, so that no peer is paired with it
            closed = peek_closed(&stream), if watch_close => {
                if closed {
                    if shared.remove_waiter(&key, token) {
                        return;
                    }
                } else {
                    // early bytes (the channel's first message): they wait in the socket
                    watch_close = false;
                }
            }
            () = stop.cancelled() => {
                shared.remove_waiter(&key, token);
                return;
            }
        }
    };
    drop(slot);
    match got {
        Ok(Pairing::Peer(mut other, pair)) => {
            shared.count(RelayAnswer::Paired);
            shared.count(RelayAnswer::Paired);
            // one byte into empty send buffers: does not block
            if stream.write_all(&[RelayAnswer::Paired.code()]).await.is_err()
                || other.write_all(&[RelayAnswer::Paired.code()]).await.is_err()
            {
                return;
            }
            let other_addr = other.peer_addr().ok();
            tracing::debug!(a = %peer, b = ?other_addr, "relay: paired");
            let bucket = limits.bytes_per_second.map(copy::Bucket::new);
            let before = shared.counters.bytes_relayed.load(Ordering::Relaxed);
            let end = copy::run_pair(&stream, &other, limits.idle, bucket.as_ref(), stop, &shared.counters).await;
            if matches!(end, copy::End::Idle) {
                shared.counters.idle_closed.fetch_add(1, Ordering::Relaxed);
            }
            let moved = shared.counters.bytes_relayed.load(Ordering::Relaxed).wrapping_sub(before);
            tracing::debug!(a = %peer, b = ?other_addr, ?end, about_bytes = moved, "relay: pair closed");
            drop(pair);
        }
        Ok(Pairing::Busy) => answer_and_close(stream, RelayAnswer::Busy, shared).await,
        Err(_) => {}
    }
}

/// True when the client closed (or failed); false when it sent bytes.
async fn peek_closed(stream: &TcpStream) -> bool {
    let mut b = [0u8; 1];
    !matches!(stream.peek(&mut b).await, Ok(n) if n > 0)
}

/// Sends the answer byte and closes so that the byte arrives: a close with unread bytes
/// in the receive buffer would send a reset that can overtake it, so the relay sends FIN
/// and reads (and drops) what the client still sends, for at most a second, with at most
/// `CLOSING` such connections at a time (beyond that it just closes).
async fn answer_and_close(mut stream: TcpStream, a: RelayAnswer, shared: &Shared) {
    shared.count(a);
    let Ok(_permit) = shared.closing.try_acquire() else {
        let _ = stream.try_write(&[a.code()]);
        return;
    };
    let _ = tokio::time::timeout(LINGER, async {
        stream.write_all(&[a.code()]).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 512];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<(), io::Error>(())
    })
    .await;
}
