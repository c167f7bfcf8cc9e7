//! TCP: a connection carries any number of requests; answers go out in request order.
//! Every read of a complete request is bounded by RAIDA_SERVER_RCV_TIMEOUT, every
//! request by the 16-bit body length, a connection's life by a lifetime cap, and the
//! connections by a table: per address, per /24 (IPv4) or /64 (IPv6), and in all, where
//! a new connection closes the longest-idle one instead of being refused (so clients that
//! connect and say nothing cannot lock everybody out).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use raida_proto::header::header_size_for;
use raida_proto::Status;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::limits::DeferredLimits;
use crate::state::{Outcome, ServerState};

/// How many connections may be open, and for how long.
#[derive(Clone, Copy, Debug)]
pub struct TcpLimits {
    /// In all (sized from the descriptor limit at start).
    pub total: usize,
    /// From one IP address.
    pub per_addr: usize,
    /// From one /24 (IPv4) or /64 (IPv6).
    pub per_subnet: usize,
    /// Without a complete request (RAIDA_SERVER_RCV_TIMEOUT).
    pub idle_timeout: Duration,
    /// In all: closed after the answer in flight once this has passed.
    pub lifetime: Duration,
}

/// The network a connection counts against besides its own address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Subnet {
    V4([u8; 3]),
    V6([u8; 8]),
}

fn subnet_of(ip: IpAddr) -> Subnet {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            Subnet::V4([o[0], o[1], o[2]])
        }
        IpAddr::V6(v6) => {
            let o = v6.octets();
            Subnet::V6([o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]])
        }
    }
}

/// Why a connection was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    PerAddress,
    PerSubnet,
    /// Full, and every open connection is working on a request.
    Full,
}

/// `last_active` of a connection working on a request: never evicted, because its
/// descriptor (and the deferred slot it may hold) would outlive the eviction.
const BUSY: u64 = u64::MAX;

struct Entry {
    ip: IpAddr,
    /// Milliseconds since the table's start at the last answer (or the connect), or BUSY.
    last_active: Arc<AtomicU64>,
    evict: CancellationToken,
    evicted: bool,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    entries: HashMap<u64, Entry>,
    per_addr: HashMap<IpAddr, usize>,
    per_subnet: HashMap<Subnet, usize>,
    /// Entries not evicted.
    live: usize,
}

/// The open connections. Memory is bounded by `limits.total` plus the connections being
/// closed after eviction (they end at their next poll).
pub struct ConnectionTable {
    /// Swapped by a SIGHUP reload ([`ConnectionTable::set_limits`]): read at each admission
    /// and, for the lifetime, when a connection opens.
    limits: arc_swap::ArcSwap<TcpLimits>,
    started: Instant,
    table: Mutex<Table>,
}

impl ConnectionTable {
    pub fn new(limits: TcpLimits) -> Arc<ConnectionTable> {
        Arc::new(ConnectionTable {
            limits: arc_swap::ArcSwap::from_pointee(limits),
            started: Instant::now(),
            table: Mutex::default(),
        })
    }

    /// The limits now.
    pub fn limits(&self) -> TcpLimits {
        **self.limits.load()
    }

    /// New limits for the connections admitted from now on. Connections already open stay
    /// (each keeps the lifetime it opened with) until they close, time out, or are evicted
    /// for a newcomer by the usual rule: over a lowered cap, each new connection still
    /// closes the longest-idle one, so the table does not grow while it shrinks by attrition.
    pub fn set_limits(&self, limits: TcpLimits) {
        self.limits.store(Arc::new(limits));
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis().min(u64::MAX as u128) as u64
    }

    /// Count a connection from `ip`. When the table is full the longest-idle connection
    /// is told to close and the new one takes its place.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionSlot, Refusal> {
        let ip = ip.to_canonical();
        let subnet = subnet_of(ip);
        let now = self.now_ms();
        let limits = self.limits();
        let mut t = self.table.lock();
        if t.per_addr.get(&ip).copied().unwrap_or(0) >= limits.per_addr {
            return Err(Refusal::PerAddress);
        }
        if t.per_subnet.get(&subnet).copied().unwrap_or(0) >= limits.per_subnet {
            return Err(Refusal::PerSubnet);
        }
        if t.live >= limits.total.max(1) {
            // O(total) once per eviction: a few thousand loads, cheaper than the accept
            let victim = t
                .entries
                .iter()
                .filter(|(_, e)| !e.evicted)
                .map(|(id, e)| (*id, e.last_active.load(Ordering::Relaxed)))
                .filter(|&(_, active)| active != BUSY)
                .min_by_key(|&(_, active)| active)
                .map(|(id, _)| id);
            let Some(victim) = victim else { return Err(Refusal::Full) };
            if let Some(e) = t.entries.get_mut(&victim) {
                e.evicted = true;
                e.evict.cancel();
                tracing::debug!(client = %e.ip, "tcp: connections full; closed the longest-idle one");
            }
            t.live -= 1;
        }
        let id = t.next_id;
        t.next_id += 1;
        let last_active = Arc::new(AtomicU64::new(now));
        let evict = CancellationToken::new();
        t.entries.insert(id, Entry { ip, last_active: last_active.clone(), evict: evict.clone(), evicted: false });
        *t.per_addr.entry(ip).or_insert(0) += 1;
        *t.per_subnet.entry(subnet).or_insert(0) += 1;
        t.live += 1;
        Ok(ConnectionSlot { id, table: self.clone(), last_active, evict })
    }

    /// Connections open and not being closed.
    pub fn live(&self) -> usize {
        self.table.lock().live
    }
}

/// One admitted connection; released on drop.
pub struct ConnectionSlot {
    id: u64,
    table: Arc<ConnectionTable>,
    last_active: Arc<AtomicU64>,
    evict: CancellationToken,
}

impl ConnectionSlot {
    /// The connection answered: idle from now.
    fn touch(&self) {
        self.last_active.store(self.table.now_ms(), Ordering::Relaxed);
    }

    /// The connection read a request and works on it until the next [`Self::touch`].
    fn busy(&self) {
        self.last_active.store(BUSY, Ordering::Relaxed);
    }

    /// Cancelled when the table closes this connection for a new one.
    pub fn evicted(&self) -> &CancellationToken {
        &self.evict
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut t = self.table.table.lock();
        let Some(e) = t.entries.remove(&self.id) else { return };
        if !e.evicted {
            t.live -= 1;
        }
        if let Some(n) = t.per_addr.get_mut(&e.ip) {
            *n -= 1;
            if *n == 0 {
                t.per_addr.remove(&e.ip);
            }
        }
        let subnet = subnet_of(e.ip);
        if let Some(n) = t.per_subnet.get_mut(&subnet) {
            *n -= 1;
            if *n == 0 {
                t.per_subnet.remove(&subnet);
            }
        }
    }
}

/// Accept connections until `stop` is cancelled.
pub async fn accept_loop(
    listener: TcpListener,
    state: Arc<ServerState>,
    table: Arc<ConnectionTable>,
    deferred: Arc<DeferredLimits>,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // e.g. EMFILE: wait for descriptors to come back rather than spin
                    tracing::warn!(error = %e, "tcp accept");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let slot = match table.admit(peer.ip()) {
            Ok(s) => s,
            Err(why) => {
                tracing::debug!(client = %peer, ?why, "tcp: too many connections: closed");
                drop(stream);
                continue;
            }
        };
        let state = state.clone();
        let stop = stop.clone();
        let deferred = deferred.clone();
        let limits = table.limits();
        tracker.spawn(async move {
            connection(stream, peer, state, &slot, &deferred, limits, stop).await;
            drop(slot);
        });
    }
}

/// Read one whole request into `buf`: 32 bytes, 16 more for EN 4/5/7, then the body.
async fn read_request<R: tokio::io::AsyncRead + Unpin>(r: &mut R, buf: &mut Vec<u8>) -> std::io::Result<()> {
    buf.resize(32, 0);
    r.read_exact(&mut buf[..32]).await?;
    let header = header_size_for(buf[16]);
    let body_at = if header > 32 {
        buf.resize(header, 0);
        r.read_exact(&mut buf[32..header]).await?;
        header
    } else {
        32
    };
    let body = raida_proto::header::body_length(buf);
    buf.resize(body_at + body, 0);
    r.read_exact(&mut buf[body_at..]).await?;
    Ok(())
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    state: Arc<ServerState>,
    slot: &ConnectionSlot,
    deferred: &DeferredLimits,
    limits: TcpLimits,
    stop: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let (r, w) = stream.into_split();
    let mut reader = BufReader::with_capacity(16 * 1024, r);
    let mut writer = BufWriter::with_capacity(16 * 1024, w);
    let mut buf = Vec::with_capacity(1024);
    let mut out = Vec::with_capacity(1024);
    // capped: a configured lifetime near 2^63 s would overflow the Instant and panic
    let end_of_life = raida_proto::time::deadline_from(tokio::time::Instant::now(), limits.lifetime);
    let idle = limits.idle_timeout;
    loop {
        let read = tokio::select! {
            _ = stop.cancelled() => break,
            _ = slot.evicted().cancelled() => return, // its descriptor is wanted now: no flush
            _ = tokio::time::sleep_until(end_of_life) => {
                tracing::debug!(client = %peer, "tcp: connection lifetime reached");
                break;
            }
            r = tokio::time::timeout(idle, read_request(&mut reader, &mut buf)) => r,
        };
        match read {
            Ok(Ok(())) => {}
            Ok(Err(_)) => break, // peer closed or i/o error
            Err(_) => {
                tracing::debug!(client = %peer, "tcp idle timeout");
                break;
            }
        }
        slot.busy();
        match state.handle(&mut buf, peer, &mut out) {
            Outcome::Reply => {}
            Outcome::Drop => {
                slot.touch();
                continue;
            }
            // counted against the same per-kind limits as UDP
            Outcome::Deferred(d) => match deferred.try_acquire(d.kind(), peer.ip()) {
                Some(permit) => {
                    d.run(state.clone(), &mut out).await;
                    drop(permit);
                }
                None => d.reject(&state, Status::RequestRate, &mut out),
            },
        }
        let write = async {
            writer.write_all(&out).await?;
            if reader.buffer().is_empty() {
                writer.flush().await?;
            }
            Ok::<(), std::io::Error>(())
        };
        let written = tokio::time::timeout(idle, write).await;
        match written {
            Ok(Ok(())) => slot.touch(),
            _ => break,
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), writer.flush()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per_addr: usize, per_subnet: usize) -> TcpLimits {
        TcpLimits {
            total,
            per_addr,
            per_subnet,
            idle_timeout: Duration::from_secs(32),
            lifetime: Duration::from_secs(600),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn per_address_and_per_subnet_caps() {
        let t = ConnectionTable::new(limits(100, 2, 3));
        let _a1 = t.admit(ip("10.0.0.1")).unwrap();
        let _a2 = t.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(t.admit(ip("10.0.0.1")).err(), Some(Refusal::PerAddress));
        let _b = t.admit(ip("10.0.0.2")).unwrap();
        assert_eq!(t.admit(ip("10.0.0.3")).err(), Some(Refusal::PerSubnet));
        // an IPv4-mapped IPv6 address is the same address
        assert_eq!(t.admit(ip("::ffff:10.0.0.1")).err(), Some(Refusal::PerAddress));
        assert!(t.admit(ip("10.0.1.1")).is_ok());
        // IPv6: one /64
        let _c1 = t.admit(ip("2001:db8::1")).unwrap();
        let _c2 = t.admit(ip("2001:db8::2")).unwrap();
        let _c3 = t.admit(ip("2001:db8::3")).unwrap();
        assert_eq!(t.admit(ip("2001:db8::4")).err(), Some(Refusal::PerSubnet));
        assert!(t.admit(ip("2001:db8:0:1::1")).is_ok());
    }

    #[test]
    fn lowered_limits_refuse_new_connections_and_keep_the_open_ones() {
        let t = ConnectionTable::new(limits(4, 3, 10));
        let open: Vec<_> = (0..3).map(|_| t.admit(ip("10.0.0.1")).unwrap()).collect();
        let other = t.admit(ip("10.0.1.1")).unwrap();
        t.set_limits(limits(2, 1, 10));
        assert_eq!(t.limits().per_addr, 1);
        assert_eq!(t.admit(ip("10.0.0.1")).err(), Some(Refusal::PerAddress));
        assert!(open.iter().chain([&other]).all(|s| !s.evicted().is_cancelled()), "none is cut");
        assert_eq!(t.live(), 4);
        // over the lowered total, a newcomer still takes the longest-idle one's place:
        // the table does not grow
        let new = t.admit(ip("10.0.2.1")).unwrap();
        assert_eq!(t.live(), 4);
        assert_eq!(open.iter().chain([&other]).filter(|s| s.evicted().is_cancelled()).count(), 1);
        drop((open, other, new));
        assert_eq!(t.live(), 0);
        // raised again: admitted
        t.set_limits(limits(4, 3, 10));
        let again: Vec<_> = (0..3).map(|_| t.admit(ip("10.0.0.1")).unwrap()).collect();
        assert_eq!(again.len(), 3);
    }

    #[test]
    fn full_table_evicts_the_longest_idle() {
        let t = ConnectionTable::new(limits(2, 10, 10));
        let old = t.admit(ip("10.0.0.1")).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let idle = t.admit(ip("10.0.1.1")).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        old.touch(); // now `idle` has been idle longest
        let new = t.admit(ip("10.0.2.1")).unwrap();
        assert!(idle.evicted().is_cancelled());
        assert!(!old.evicted().is_cancelled() && !new.evicted().is_cancelled());
        assert_eq!(t.live(), 2);
        drop(idle);
        assert_eq!(t.live(), 2);
        // a connection working on a request is never evicted; all working: refused
        old.busy();
        new.busy();
        assert_eq!(t.admit(ip("10.0.3.1")).err(), Some(Refusal::Full));
        new.touch();
        let newest = t.admit(ip("10.0.3.1")).unwrap();
        assert!(new.evicted().is_cancelled() && !old.evicted().is_cancelled());
        drop((old, new, newest));
        assert_eq!(t.live(), 0);
        assert!(t.table.lock().per_addr.is_empty() && t.table.lock().per_subnet.is_empty());
    }
}
