//! Binding, starting and stopping a server: UDP and TCP on one port, background sweeps,
//! graceful shutdown (stop taking requests, finish those in flight, flush the store).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use raida_proto::header::ServerIdentity;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::ledger::{Ledger, StoreLedger};
use crate::state::{system_clock, Clock, KeyAlertSettings, ServerState};
use crate::udp::{spawn_workers, UdpContext};

/// Resource bounds of one server.
#[derive(Clone, Debug)]
pub struct ServerLimits {
    /// Threads reading the UDP socket.
    pub udp_threads: usize,
    /// Concurrent TCP connections.
    pub max_connections: usize,
    /// Concurrent TCP connections from one IP address.
    pub max_connections_per_ip: usize,
    /// Commands waiting for the disk or the network at once (UDP).
    pub max_deferred: usize,
    /// TCP idle timeout (RAIDA_SERVER_RCV_TIMEOUT).
    pub idle_timeout: Duration,
    /// How long shutdown waits for requests in flight.
    pub drain_timeout: Duration,
    /// Key Alert's timeout for all parts.
    pub key_alert_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            udp_threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).clamp(2, 16),
            max_connections: 1024,
            max_connections_per_ip: 64,
            max_deferred: 1024,
            idle_timeout: Duration::from_secs(raida_proto::consts::RAIDA_SERVER_RCV_TIMEOUT_SECS),
            drain_timeout: Duration::from_secs(4),
            key_alert_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("data directory: {0}")]
    Store(#[from] raida_store::StoreError),
    #[error("{0}")]
    Config(String),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServerError {
    let what = what.into();
    move |source| ServerError::Io { what, source }
}

/// Builds the state of a server for a data directory.
pub struct ServerBuilder;

impl ServerBuilder {
    /// Open the data directory (taking its lock) and build the server state.
    /// Returns the state and the configured listen address.
    pub fn open(
        dir: &Path,
        limits: &ServerLimits,
        clock: Option<Clock>,
    ) -> Result<(Arc<ServerState>, SocketAddr), ServerError> {
        let store = raida_store::Store::open(dir)?;
        let config = store.config().clone();
        let clock = clock.unwrap_or_else(system_clock);
        let listen: SocketAddr = config
            .listen
            .parse()
            .map_err(|_| ServerError::Config(format!("config.toml: listen = {:?} is not ADDR:PORT", config.listen)))?;
        let admin_key = config.admin_key_bytes();
        if admin_key.is_none() {
            tracing::warn!("config.toml has no valid admin_key (32 hex digits): Show Stats is disabled");
        }
        let key_servers = crate::key_servers::configured_key_servers(&config, dir).map_err(ServerError::Config)?;
        let ledger: Arc<dyn Ledger> = Arc::new(StoreLedger { store, coin_id: config.coin_id });
        let identity = ServerIdentity {
            legacy_encryption: config.legacy_encryption,
            ..ServerIdentity::new(config.raida_id, config.coin_id)
        };
        if !config.legacy_encryption {
            tracing::info!("legacy encryption is off: EN 1 and EN 2 requests are answered 27");
        }
        let mut state = ServerState::new(identity, ledger, dir, config.key_ttl_seconds, config.replay_capacity, clock)
            .map_err(io_err(format!("{} (Keys/, Inbox/)", dir.display())))?;
        state.admin_key = admin_key;
        state.replay = parking_lot::Mutex::new(raida_proto::replay::ReplayMemory::with_share(
            config.replay_capacity,
            config.replay_share_per_key,
        ));
        state.tickets = crate::tickets::TicketPool::with_share(
            raida_proto::consts::TICKET_POOL_SIZE,
            raida_proto::consts::TICKET_RELEASE_SECONDS,
            config.tickets_per_requester,
        );
        state.inbox.set_limits(crate::inbox::InboxLimits {
            max_keys: config.inbox_max_keys,
            max_age_secs: config.inbox_max_age_seconds,
        });
        state.key_alert = KeyAlertSettings {
            key_servers,
            identity: config.identity.as_ref().map(|i| (i.dn, i.sn)),
            timeout: limits.key_alert_timeout,
        };
        Ok((Arc::new(state), listen))
    }
}

/// A server whose sockets are open and whose workers run.
pub struct RunningServer {
    addr: SocketAddr,
    state: Arc<ServerState>,
    stop_udp: Arc<AtomicBool>,
    stop: CancellationToken,
    tracker: TaskTracker,
    udp_threads: Vec<std::thread::JoinHandle<()>>,
    drain_timeout: Duration,
}

/// Bind UDP and TCP on the same port (with port 0, the port UDP got).
fn bind(listen: SocketAddr) -> Result<(std::net::UdpSocket, std::net::TcpListener), ServerError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let mut last = None;
    for _ in 0..20 {
        let domain = if listen.is_ipv4() { Domain::IPV4 } else { Domain::IPV6 };
        let udp = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).map_err(io_err("udp socket"))?;
        let _ = udp.set_recv_buffer_size(4 << 20);
        let _ = udp.set_send_buffer_size(4 << 20);
        udp.bind(&listen.into()).map_err(io_err(format!("bind udp {listen}")))?;
        let udp: std::net::UdpSocket = udp.into();
        let port = udp.local_addr().map_err(io_err("udp address"))?.port();
        let tcp_addr = SocketAddr::new(listen.ip(), port);
        let tcp = Socket::new(domain, Type::STREAM, Some(Protocol::TCP)).map_err(io_err("tcp socket"))?;
        let _ = tcp.set_reuse_address(true);
        match tcp.bind(&tcp_addr.into()).and_then(|()| tcp.listen(1024)) {
            Ok(()) => {
                let tcp: std::net::TcpListener = tcp.into();
                tcp.set_nonblocking(true).map_err(io_err("tcp nonblocking"))?;
                return Ok((udp, tcp));
            }
            Err(e) if listen.port() == 0 => last = Some(e), // port taken for TCP: try another
            Err(e) => return Err(ServerError::Io { what: format!("bind tcp {tcp_addr}"), source: e }),
        }
    }
    Err(ServerError::Io {
        what: format!("bind {listen}"),
        source: last.unwrap_or_else(|| std::io::Error::other("no free port")),
    })
}

impl RunningServer {
    /// Bind and start serving. Must be called inside a tokio runtime.
    pub async fn start(
        state: Arc<ServerState>,
        listen: SocketAddr,
        limits: ServerLimits,
    ) -> Result<RunningServer, ServerError> {
        let (udp, tcp) = bind(listen)?;
        let addr = udp.local_addr().map_err(io_err("udp address"))?;
        let tcp = tokio::net::TcpListener::from_std(tcp).map_err(io_err("tcp listener"))?;
        let stop = CancellationToken::new();
        let stop_udp = Arc::new(AtomicBool::new(false));
        let tracker = TaskTracker::new();
        let ctx = Arc::new(UdpContext {
            socket: Arc::new(udp),
            state: state.clone(),
            runtime: tokio::runtime::Handle::current(),
            deferred: Arc::new(Semaphore::new(limits.max_deferred)),
            tracker: tracker.clone(),
            stop: stop_udp.clone(),
        });
        let udp_threads = spawn_workers(ctx, limits.udp_threads).map_err(io_err("udp workers"))?;
        tracker.spawn(crate::tcp::accept_loop(
            tcp,
            state.clone(),
            crate::tcp::ConnectionLimits::new(limits.max_connections, limits.max_connections_per_ip),
            limits.idle_timeout,
            stop.clone(),
            tracker.clone(),
        ));
        // background sweeps: expired tickets, pending keys and inbox keys
        let sweep_state = state.clone();
        let sweep_stop = stop.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = sweep_stop.cancelled() => return,
                    _ = tick.tick() => {
                        let now = (sweep_state.clock)();
                        sweep_state.tickets.sweep(now);
                        let st = sweep_state.clone();
                        let _ = tokio::task::spawn_blocking(move || st.pending_keys.sweep(now)).await;
                        let st = sweep_state.clone();
                        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || st.inbox.sweep(now)).await {
                            tracing::warn!(error = %e, "inbox sweep");
                        }
                    }
                }
            }
        });
        Ok(RunningServer { addr, state, stop_udp, stop, tracker, udp_threads, drain_timeout: limits.drain_timeout })
    }

    /// The bound address (UDP and TCP share the port).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn state(&self) -> &Arc<ServerState> {
        &self.state
    }

    /// Stop taking requests, finish those in flight (up to the drain timeout), flush the store.
    pub async fn shutdown(self) -> Result<(), String> {
        self.stop_udp.store(true, Ordering::Relaxed);
        self.stop.cancel();
        self.tracker.close();
        let threads = self.udp_threads;
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
        if tokio::time::timeout(self.drain_timeout, self.tracker.wait()).await.is_err() {
            tracing::warn!("shutdown: requests still in flight after the drain timeout");
        }
        let state = self.state.clone();
        tokio::task::spawn_blocking(move || state.ledger.flush()).await.map_err(|e| e.to_string())?
    }
}
