//! The tokio shell: a UDP + TCP proxy on one public address that forwards to an upstream
//! address through a [`Link`] each way, or plays a [`Fault`].
//!
//! UDP: one upstream socket per client address (a flow), so each answer goes back to the
//! client that asked; at most [`MAX_FLOWS`] flows (a new one evicts the longest idle), and
//! a flow idle for [`FLOW_IDLE`] is closed. Datagrams waiting out their delay are at most
//! [`MAX_IN_FLIGHT`] (beyond it they are dropped, as by a full router queue).
//! TCP: each accepted connection gets its own upstream connection; chunks go through the
//! link's [`Pacer`] each way (delay and rate cap), through a queue holding about two
//! bandwidth-delay products; at most [`MAX_TCP_CONNECTIONS`] connections.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use raida_proto::consts::LEGACY_HEADER_SIZE;
use raida_proto::header::{header_size_for, request_len};
use raida_proto::{ReplyContext, Status};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::{Fate, Fault, Link, LinkConfig, Pacer};

/// UDP client addresses with a flow (an upstream socket) at once.
pub const MAX_FLOWS: usize = 1024;
/// A flow without a datagram either way for this long is closed.
pub const FLOW_IDLE: Duration = Duration::from_secs(60);
/// Datagrams waiting out their delay, in all.
pub const MAX_IN_FLIGHT: usize = 65_536;
/// TCP connections through the proxy at once (more are closed at accept).
pub const MAX_TCP_CONNECTIONS: usize = 1024;
/// A TCP connection to a down or overloaded RAIDA that sends nothing for this long is closed.
const TCP_IDLE: Duration = Duration::from_secs(30);
/// How long the proxy tries to reach the upstream address for a TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes read from a TCP stream at a time (one pacing step).
const CHUNK: usize = 16 * 1024;
/// The rate a TCP queue is sized for when the link has no cap.
const UNCAPPED_RATE: u64 = 1_000_000_000;

/// Link ids within one proxy's seed: one stream of decisions per direction.
const TO_SERVER: u64 = 0;
const TO_CLIENT: u64 = 1;

/// The 160 REQUEST_RATE answer to `request`, built as the server builds an answer to a
/// request it does not run ([`ReplyContext::unauthenticated`]: the request's RAIDA id,
/// command group and echo bytes; header only for a modern request, legacy plain
/// otherwise). None for fewer than 32 bytes (the server drops those unanswered).
pub fn overloaded_answer(request: &[u8]) -> Option<Vec<u8>> {
    if request.len() < LEGACY_HEADER_SIZE {
        return None;
    }
    let modern = header_size_for(request[16]) > LEGACY_HEADER_SIZE;
    let reply = ReplyContext::unauthenticated(request[2], request, modern);
    let mut out = Vec::new();
    // header-only and plain answers draw no nonce: any generator will do
    let mut no_nonce = <rand_chacha::ChaCha8Rng as rand_core::SeedableRng>::seed_from_u64(0);
    reply.write(Status::RequestRate, &[], 0, &mut no_nonce, &mut out);
    Some(out)
}

/// What the proxy's tasks share.
struct Shared {
    upstream: SocketAddr,
    seed: u64,
    fault: Mutex<Option<Fault>>,
    link: Mutex<Links>,
    in_flight: AtomicUsize,
    tcp_connections: AtomicUsize,
    /// Milliseconds are counted from here (flows' last activity).
    epoch: Instant,
}

struct Links {
    config: LinkConfig,
    to_server: Link,
    to_client: Link,
    tcp_to_server: Pacer,
    tcp_to_client: Pacer,
}

impl Links {
    fn new(config: LinkConfig, seed: u64) -> Links {
        Links {
            config,
            to_server: Link::new(config, seed, TO_SERVER),
            to_client: Link::new(config, seed, TO_CLIENT),
            tcp_to_server: Pacer::new(&config),
            tcp_to_client: Pacer::new(&config),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    ToServer,
    ToClient,
}

impl Shared {
    fn fault(&self) -> Option<Fault> {
        *self.fault.lock()
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn datagram(&self, dir: Direction) -> Fate {
        let mut l = self.link.lock();
        match dir {
            Direction::ToServer => l.to_server.datagram(),
            Direction::ToClient => l.to_client.datagram(),
        }
    }

    fn schedule(&self, dir: Direction, len: usize) -> Instant {
        let mut l = self.link.lock();
        let now = Instant::now();
        match dir {
            Direction::ToServer => l.tcp_to_server.schedule(now, len),
            Direction::ToClient => l.tcp_to_client.schedule(now, len),
        }
    }

    /// The extra delay of everything going to the client (a slow RAIDA's answers).
    fn answer_delay(&self, dir: Direction) -> Duration {
        match (dir, self.fault()) {
            (Direction::ToClient, Some(Fault::Slow(d))) => d,
            _ => Duration::ZERO,
        }
    }

    /// Nothing gets through (down, or refusing while a connection of before is open).
    fn silent(&self) -> bool {
        matches!(self.fault(), Some(Fault::Down | Fault::Refusing))
    }
}

/// A running proxy: `local_addr` forwards to its upstream address through the link.
/// Dropping it stops it (without waiting); [`Proxy::stop`] waits until its sockets are closed.
pub struct Proxy {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
    /// The public sockets' tasks, or while refusing the port held without them.
    public: tokio::sync::Mutex<Public>,
}

enum Public {
    Serving(Sockets),
    Refusing(Reserved),
    Stopped,
}

/// A refusing RAIDA's port, held so that nothing else takes it (a test binding a free port
/// took it 1 run in 6 with 6 runs at once) while the kernel still refuses: a UDP socket
/// connected elsewhere receives nothing from clients (they get port unreachable), and a
/// TCP socket bound but not listening accepts nothing (connection refused).
struct Reserved {
    _udp: UdpSocket,
    _tcp: tokio::net::TcpSocket,
}

impl Reserved {
    /// Hold `udp`'s port: `udp` connected to port 1 of its loopback, a fresh TCP socket bound.
    async fn hold(udp: UdpSocket) -> io::Result<Reserved> {
        let at = udp.local_addr()?;
        let nowhere: SocketAddr = if at.is_ipv4() {
            (std::net::Ipv4Addr::LOCALHOST, 1).into()
        } else {
            (std::net::Ipv6Addr::LOCALHOST, 1).into()
        };
        udp.connect(nowhere).await?;
        let tcp = if at.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
        tcp.set_reuseaddr(true)?;
        tcp.bind(at)?;
        Ok(Reserved { _udp: udp, _tcp: tcp })
    }
}

struct Sockets {
    stop: CancellationToken,
    tracker: TaskTracker,
}

impl Sockets {
    async fn close(self) {
        self.stop.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Proxy {
    /// Bind `listen` (UDP and TCP on the same port; port 0: a free one) and forward to
    /// `upstream` through `link` each way, playing `fault`. `seed` seeds both directions'
    /// decisions. Must be called in a tokio runtime.
    pub async fn start(
        listen: SocketAddr,
        upstream: SocketAddr,
        link: LinkConfig,
        fault: Option<Fault>,
        seed: u64,
    ) -> io::Result<Proxy> {
        link.check().map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let (udp, tcp) = bind_pair(listen).await?;
        let local_addr = udp.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            seed,
            fault: Mutex::new(fault),
            link: Mutex::new(Links::new(link, seed)),
            in_flight: AtomicUsize::new(0),
            tcp_connections: AtomicUsize::new(0),
            epoch: Instant::now(),
        });
        let proxy = Proxy {
            local_addr,
            shared,
            stop: CancellationToken::new(),
            public: tokio::sync::Mutex::new(Public::Stopped),
        };
        let public = if fault == Some(Fault::Refusing) {
            drop(tcp);
            Public::Refusing(Reserved::hold(udp).await?)
        } else {
            Public::Serving(proxy.serve(udp, tcp))
        };
        *proxy.public.lock().await = public;
        Ok(proxy)
    }

    /// The public address (what clients use).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address it forwards to.
    pub fn upstream(&self) -> SocketAddr {
        self.shared.upstream
    }

    pub fn fault(&self) -> Option<Fault> {
        self.shared.fault()
    }

    pub fn link(&self) -> LinkConfig {
        self.shared.link.lock().config
    }

    /// Play `fault` from now on. Into [`Fault::Refusing`]: the public sockets (and every
    /// connection through them) are closed before this returns, the port held without
    /// them; out of it: served again on the same address. Open TCP connections keep forwarding or answering as when
    /// they were accepted, except that down or refusing silences them at once and a
    /// slow RAIDA's answers are delayed at once.
    pub async fn set_fault(&self, fault: Option<Fault>) -> io::Result<()> {
        let mut public = self.public.lock().await;
        *self.shared.fault.lock() = fault;
        let refusing = fault == Some(Fault::Refusing);
        match std::mem::replace(&mut *public, Public::Stopped) {
            Public::Serving(s) if refusing => {
                s.close().await;
                *public = Public::Refusing(Reserved::hold(UdpSocket::bind(self.local_addr).await?).await?);
            }
            Public::Refusing(held) if !refusing => {
                drop(held);
                let (udp, tcp) = bind_pair(self.local_addr).await?;
                *public = Public::Serving(self.serve(udp, tcp));
            }
            other => *public = other,
        }
        Ok(())
    }

    /// Use `link` from now on (decisions start again from the seed).
    pub fn set_link(&self, link: LinkConfig) -> io::Result<()> {
        link.check().map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        *self.shared.link.lock() = Links::new(link, self.shared.seed);
        Ok(())
    }

    /// Close every socket and connection, and wait until they are closed.
    pub async fn stop(self) {
        self.stop.cancel();
        if let Public::Serving(s) = std::mem::replace(&mut *self.public.lock().await, Public::Stopped) {
            s.close().await;
        }
    }

    fn serve(&self, udp: UdpSocket, tcp: TcpListener) -> Sockets {
        let stop = self.stop.child_token();
        let tracker = TaskTracker::new();
        let udp = Arc::new(udp);
        tracker.spawn(udp_loop(udp, self.shared.clone(), stop.clone(), tracker.clone()));
        tracker.spawn(tcp_loop(tcp, self.shared.clone(), stop.clone(), tracker.clone()));
        Sockets { stop, tracker }
    }
}

/// UDP and TCP on one address; for port 0, a port free for both.
async fn bind_pair(addr: SocketAddr) -> io::Result<(UdpSocket, TcpListener)> {
    if addr.port() != 0 {
        return Ok((UdpSocket::bind(addr).await?, TcpListener::bind(addr).await?));
    }
    let mut last = None;
    for _ in 0..32 {
        let udp = UdpSocket::bind(addr).await?;
        match TcpListener::bind(udp.local_addr()?).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::AddrInUse, "no port free for UDP and TCP")))
}

/// Where a delayed datagram goes.
#[derive(Clone)]
enum Target {
    /// From the public socket to a client.
    Client(Arc<UdpSocket>, SocketAddr),
    /// From a flow's socket (connected) to the upstream address.
    Server(Arc<UdpSocket>),
}

impl Target {
    fn try_send(&self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Target::Client(s, to) => s.try_send_to(bytes, *to),
            Target::Server(s) => s.try_send(bytes),
        }
    }

    async fn send(&self, bytes: &[u8]) {
        // a datagram that cannot be sent is lost, as on a real link
        let _ = match self {
            Target::Client(s, to) => s.send_to(bytes, *to).await,
            Target::Server(s) => s.send(bytes).await,
        };
    }
}

/// Counts a datagram waiting out its delay until dropped.
struct InFlight(Arc<Shared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Send `bytes` (and its duplicate) when `fate` says, `extra` later.
fn deliver(
    shared: &Arc<Shared>,
    ctx: &(CancellationToken, TaskTracker),
    fate: Fate,
    extra: Duration,
    target: Target,
    bytes: Vec<u8>,
) {
    let Fate::Delivered { after, copy_after } = fate else { return };
    if let Some(c) = copy_after {
        send_after(shared, ctx, c + extra, target.clone(), bytes.clone());
    }
    send_after(shared, ctx, after + extra, target, bytes);
}

fn send_after(
    shared: &Arc<Shared>,
    ctx: &(CancellationToken, TaskTracker),
    after: Duration,
    target: Target,
    bytes: Vec<u8>,
) {
    if after.is_zero() {
        match target.try_send(&bytes) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            _ => return,
        }
    }
    if shared.in_flight.fetch_add(1, Ordering::Relaxed) >= MAX_IN_FLIGHT {
        shared.in_flight.fetch_sub(1, Ordering::Relaxed);
        return;
    }
    let guard = InFlight(shared.clone());
    let stop = ctx.0.clone();
    ctx.1.spawn(async move {
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(after) => target.send(&bytes).await,
        }
        drop(guard);
    });
}

/// One client address's upstream socket.
struct Flow {
    socket: Arc<UdpSocket>,
    /// [`Shared::now_ms`] of its last datagram either way.
    last: Arc<AtomicU64>,
    stop: CancellationToken,
}

async fn udp_loop(public: Arc<UdpSocket>, shared: Arc<Shared>, stop: CancellationToken, tracker: TaskTracker) {
    let ctx = (stop.clone(), tracker.clone());
    let mut flows: HashMap<SocketAddr, Flow> = HashMap::new();
    let mut buf = vec![0u8; 65_536];
    let mut sweep = tokio::time::interval(FLOW_IDLE / 4);
    loop {
        let (n, client) = tokio::select! {
            _ = stop.cancelled() => break,
            _ = sweep.tick() => {
                let oldest = shared.now_ms().saturating_sub(FLOW_IDLE.as_millis() as u64);
                flows.retain(|_, f| {
                    let keep = f.last.load(Ordering::Relaxed) >= oldest;
                    if !keep {
                        f.stop.cancel();
                    }
                    keep
                });
                continue;
            }
            r = public.recv_from(&mut buf) => match r {
                Ok(x) => x,
                // e.g. an ICMP error about an earlier answer: the next datagram is unaffected
                Err(_) => continue,
            },
        };
        let packet = &buf[..n];
        match shared.fault() {
            Some(Fault::Down | Fault::Refusing) => continue,
            Some(Fault::Overloaded) => {
                if let Some(answer) = overloaded_answer(packet) {
                    let fate = shared.datagram(Direction::ToClient);
                    deliver(&shared, &ctx, fate, Duration::ZERO, Target::Client(public.clone(), client), answer);
                }
                continue;
            }
            _ => {}
        }
        if !flows.contains_key(&client) {
            if flows.len() >= MAX_FLOWS {
                let idlest = flows.iter().min_by_key(|(_, f)| f.last.load(Ordering::Relaxed)).map(|(a, _)| *a);
                if let Some(f) = idlest.and_then(|a| flows.remove(&a)) {
                    f.stop.cancel();
                }
            }
            match open_flow(&public, client, &shared, &stop, &tracker).await {
                Ok(f) => {
                    flows.insert(client, f);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "netsim: no upstream socket");
                    continue;
                }
            }
        }
        let Some(flow) = flows.get(&client) else { continue };
        flow.last.store(shared.now_ms(), Ordering::Relaxed);
        let fate = shared.datagram(Direction::ToServer);
        deliver(&shared, &ctx, fate, Duration::ZERO, Target::Server(flow.socket.clone()), packet.to_vec());
    }
    for f in flows.values() {
        f.stop.cancel();
    }
}

/// A socket connected to the upstream address for `client`, and the task that sends its
/// answers back to `client`.
async fn open_flow(
    public: &Arc<UdpSocket>,
    client: SocketAddr,
    shared: &Arc<Shared>,
    stop: &CancellationToken,
    tracker: &TaskTracker,
) -> io::Result<Flow> {
    let any: SocketAddr = if shared.upstream.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(any).await?;
    socket.connect(shared.upstream).await?;
    let flow =
        Flow { socket: Arc::new(socket), last: Arc::new(AtomicU64::new(shared.now_ms())), stop: stop.child_token() };
    let (socket, last, flow_stop) = (flow.socket.clone(), flow.last.clone(), flow.stop.clone());
    let (public, shared) = (public.clone(), shared.clone());
    let ctx = (stop.clone(), tracker.clone());
    tracker.spawn(async move {
        let mut buf = vec![0u8; 65_536];
        loop {
            let n = tokio::select! {
                _ = flow_stop.cancelled() => return,
                r = socket.recv(&mut buf) => match r {
                    Ok(n) => n,
                    // port unreachable from an upstream that is gone: wait for the next
                    Err(_) => continue,
                },
            };
            last.store(shared.now_ms(), Ordering::Relaxed);
            if shared.silent() || shared.fault() == Some(Fault::Overloaded) {
                continue;
            }
            let fate = shared.datagram(Direction::ToClient);
            let extra = shared.answer_delay(Direction::ToClient);
            deliver(&shared, &ctx, fate, extra, Target::Client(public.clone(), client), buf[..n].to_vec());
        }
    });
    Ok(flow)
}

/// Counts an open TCP connection until dropped.
struct Connection(Arc<Shared>);

impl Drop for Connection {
    fn drop(&mut self) {
        self.0.tcp_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn tcp_loop(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken, tracker: TaskTracker) {
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(_) => {
                    // e.g. out of descriptors: wait for some to come back rather than spin
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        if shared.tcp_connections.fetch_add(1, Ordering::Relaxed) >= MAX_TCP_CONNECTIONS {
            shared.tcp_connections.fetch_sub(1, Ordering::Relaxed);
            continue;
        }
        let counted = Connection(shared.clone());
        let (shared, stop) = (shared.clone(), stop.clone());
        tracker.spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tcp_connection(stream, &shared) => {}
            }
            drop(counted);
        });
    }
}

async fn tcp_connection(client: TcpStream, shared: &Arc<Shared>) {
    let _ = client.set_nodelay(true);
    match shared.fault() {
        Some(Fault::Down | Fault::Refusing) => swallow(client).await,
        Some(Fault::Overloaded) => answer_overloaded(client, shared).await,
        _ => forward(client, shared).await,
    }
}

/// A down RAIDA's TCP: accepted, read, never answered.
async fn swallow(mut s: TcpStream) {
    let mut buf = vec![0u8; CHUNK];
    while let Ok(Ok(n)) = tokio::time::timeout(TCP_IDLE, s.read(&mut buf)).await {
        if n == 0 {
            return;
        }
    }
}

/// An overloaded RAIDA's TCP: every request (framed as the server frames them) answered 160.
async fn answer_overloaded(mut s: TcpStream, shared: &Arc<Shared>) {
    loop {
        let mut first32 = [0u8; LEGACY_HEADER_SIZE];
        if !matches!(tokio::time::timeout(TCP_IDLE, s.read_exact(&mut first32)).await, Ok(Ok(_))) {
            return;
        }
        let mut request = first32.to_vec();
        request.resize(request_len(&first32), 0);
        if !matches!(tokio::time::timeout(TCP_IDLE, s.read_exact(&mut request[LEGACY_HEADER_SIZE..])).await, Ok(Ok(_)))
        {
            return;
        }
        let Some(answer) = overloaded_answer(&request) else { return };
        let at = shared.schedule(Direction::ToClient, answer.len());
        tokio::time::sleep_until(at.into()).await;
        if s.write_all(&answer).await.is_err() {
            return;
        }
    }
}

/// Chunks a TCP queue holds: about two bandwidth-delay products, so that the cap and not
/// the queue bounds the throughput (16 to 1024 chunks of 16 KiB).
fn queue_chunks(link: &LinkConfig) -> usize {
    let rate = link.tcp_rate.unwrap_or(UNCAPPED_RATE) as f64;
    let bdp = rate * (2.0 * link.delay.as_secs_f64() + 0.01);
    ((bdp / CHUNK as f64).ceil() as usize).clamp(16, 1024)
}

async fn forward(client: TcpStream, shared: &Arc<Shared>) {
    let upstream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(shared.upstream)).await {
        Ok(Ok(u)) => u,
        // the client sees its connection closed, as when a server dies
        _ => return,
    };
    let _ = upstream.set_nodelay(true);
    let chunks = queue_chunks(&shared.link.lock().config);
    let (cr, cw) = client.into_split();
    let (ur, uw) = upstream.into_split();
    tokio::join!(pump(cr, uw, shared, Direction::ToServer, chunks), pump(ur, cw, shared, Direction::ToClient, chunks));
}

/// Copy one direction of a TCP connection through the link: each chunk written when its
/// pacer says; end of stream passed on once the queue is written.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    shared: &Arc<Shared>,
    dir: Direction,
    chunks: usize,
) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(Instant, Vec<u8>)>(chunks);
    let read = async move {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if shared.silent() {
                continue;
            }
            let at = shared.schedule(dir, n) + shared.answer_delay(dir);
            if tx.send((at, buf[..n].to_vec())).await.is_err() {
                return;
            }
        }
    };
    let write = async move {
        while let Some((at, bytes)) = rx.recv().await {
            tokio::time::sleep_until(at.into()).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(read, write);
}
