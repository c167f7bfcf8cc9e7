//! Binding, starting and stopping a server: UDP and TCP on one port, background sweeps,
//! graceful shutdown (stop taking requests, finish those in flight, flush the store).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use raida_proto::header::ServerIdentity;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::dispatch::DeferredWork;
use crate::ledger::{Ledger, LedgerError, StoreLedger};
use crate::limits::{connection_budget, descriptor_reserve, raise_descriptor_limit, DeferredLimits};
use crate::state::{system_clock, Clock, KeyAlertSettings, ServerState};
use crate::udp::{spawn_workers, UdpContext};
use raida_net::{ConnectionTable, TcpLimits};

/// Resource bounds of one server.
#[derive(Clone, Debug)]
pub struct ServerLimits {
    /// Threads reading the UDP socket.
    pub udp_threads: usize,
    /// Concurrent TCP connections (lowered at start to what the descriptor limit allows
    /// after the store's reserve); when full, the longest-idle one is closed for a new one.
    pub max_connections: usize,
    /// Concurrent TCP connections from one IP address.
    pub max_connections_per_ip: usize,
    /// Concurrent TCP connections from one /24 (IPv4) or /64 (IPv6).
    pub max_connections_per_subnet: usize,
    /// A TCP connection is closed after this long (after the answer in flight).
    pub connection_lifetime: Duration,
    /// Key Alerts running at once (UDP and TCP together).
    pub max_key_alerts: usize,
    /// Commands waiting for a durable write at once (UDP and TCP together).
    pub max_durable_commands: usize,
    /// Commands that may touch thousands of pages running at once (blocking pool).
    pub max_heavy_commands: usize,
    /// UDP error answers per source address and second.
    pub udp_error_rate_per_addr: u32,
    /// TCP idle timeout (RAIDA_SERVER_RCV_TIMEOUT).
    pub idle_timeout: Duration,
    /// How long shutdown waits for requests in flight.
    pub drain_timeout: Duration,
    /// Key Alert's timeout for all parts.
    pub key_alert_timeout: Duration,
    /// Where `GET /metrics` is served (config.toml `metrics_listen`); `None`: nowhere.
    pub metrics_listen: Option<SocketAddr>,
    /// Connections to the metrics endpoint open at once (config.toml
    /// `metrics_max_connections`); kept out of the TCP connections' descriptors.
    pub metrics_max_connections: usize,
    /// A metrics connection is closed this long after it opened (`metrics_timeout_seconds`).
    pub metrics_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            udp_threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).clamp(2, 16),
            max_connections: 4096,
            max_connections_per_ip: 64,
            max_connections_per_subnet: 256,
            connection_lifetime: Duration::from_secs(600),
            max_key_alerts: 256,
            max_durable_commands: 256,
            max_heavy_commands: 4,
            udp_error_rate_per_addr: crate::state::DEFAULT_UDP_ERROR_RATE,
            idle_timeout: Duration::from_secs(raida_proto::consts::RAIDA_SERVER_RCV_TIMEOUT_SECS),
            drain_timeout: Duration::from_secs(4),
            key_alert_timeout: Duration::from_secs(5),
            metrics_listen: None,
            metrics_max_connections: 16,
            metrics_timeout: Duration::from_secs(10),
        }
    }
}

impl ServerLimits {
    /// These limits with the settings of config.toml applied.
    pub fn with_config(mut self, c: &raida_store::Config) -> ServerLimits {
        self.max_connections = c.tcp_max_connections;
        self.max_connections_per_ip = c.tcp_max_connections_per_addr;
        self.max_connections_per_subnet = c.tcp_max_connections_per_subnet;
        self.connection_lifetime = Duration::from_secs(c.tcp_connection_lifetime_seconds);
        self.max_key_alerts = c.max_key_alerts;
        self.max_durable_commands = c.max_durable_commands;
        self.max_heavy_commands = c.max_heavy_commands;
        self.udp_error_rate_per_addr = c.udp_error_rate_per_addr;
        // validated by Config::from_toml
        self.metrics_listen = c.metrics_listen.as_deref().and_then(|m| m.parse().ok());
        self.metrics_max_connections = c.metrics_max_connections;
        self.metrics_timeout = Duration::from_secs(c.metrics_timeout_seconds);
        self
    }

    fn metrics_limits(&self) -> crate::metrics::MetricsLimits {
        crate::metrics::MetricsLimits {
            max_connections: self.metrics_max_connections.max(1),
            timeout: self.metrics_timeout,
        }
    }

    /// Descriptors the metrics endpoint may hold (none when it is off).
    fn metrics_slots(&self) -> usize {
        match self.metrics_listen {
            Some(_) => crate::metrics::metrics_descriptors(&self.metrics_limits()),
            None => 0,
        }
    }

    /// Slots of every deferred kind together (each may hold a descriptor).
    fn deferred_slots(&self) -> usize {
        self.max_key_alerts.saturating_add(self.max_durable_commands).saturating_add(self.max_heavy_commands)
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
        Self::open_configured(dir, limits, clock).map(|(state, listen, _)| (state, listen))
    }

    /// [`ServerBuilder::open`], and `limits` with the settings of config.toml applied
    /// (pass them to [`RunningServer::start`]).
    pub fn open_configured(
        dir: &Path,
        limits: &ServerLimits,
        clock: Option<Clock>,
    ) -> Result<(Arc<ServerState>, SocketAddr, ServerLimits), ServerError> {
        let store = raida_store::Store::open(dir)?;
        let config = store.config().clone();
        Self::build(store, config, dir, limits, clock)
    }

    /// [`ServerBuilder::open_configured`] with `config` in place of the file's (e.g.
    /// [`raida_store::Config::load_with_env`]: `RAIDA_*` variables over config.toml, what
    /// `raida serve` uses); the page cache is sized by `config.cache_mib`.
    pub fn open_with_config(
        dir: &Path,
        config: raida_store::Config,
        limits: &ServerLimits,
        clock: Option<Clock>,
    ) -> Result<(Arc<ServerState>, SocketAddr, ServerLimits), ServerError> {
        let opts = raida_store::StoreOptions {
            cache_bytes: Some(config.cache_mib.saturating_mul(1 << 20)),
            ..Default::default()
        };
        let store = raida_store::Store::open_with(dir, opts)?;
        Self::build(store, config, dir, limits, clock)
    }

    fn build(
        store: Arc<raida_store::Store>,
        config: raida_store::Config,
        dir: &Path,
        limits: &ServerLimits,
        clock: Option<Clock>,
    ) -> Result<(Arc<ServerState>, SocketAddr, ServerLimits), ServerError> {
        let limits = &limits.clone().with_config(&config);
        let clock = clock.unwrap_or_else(system_clock);
        let listen: SocketAddr = config
            .listen
            .parse()
            .map_err(|_| ServerError::Config(format!("config.toml: listen = {:?} is not ADDR:PORT", config.listen)))?;
        let admin_key = config.admin_key_bytes();
        if admin_key.is_none() {
            tracing::warn!("config.toml has no valid admin_key (32 hex digits): Show Stats is disabled");
        }
        let key_servers =
            crate::key_servers::configured_key_servers(&config, dir).map_err(|e| ServerError::Config(e.to_string()))?;
        let ledger: Arc<dyn Ledger> = Arc::new(StoreLedger { store, coin_id: config.coin_id });
        let identity = ServerIdentity {
            legacy_encryption: config.legacy_encryption,
            ..ServerIdentity::new(config.raida_id, config.coin_id)
        };
        if !config.legacy_encryption {
            tracing::info!("legacy encryption is off: EN 1 and EN 2 requests are answered 27");
        }
        let mut state = ServerState::builder(identity, ledger, dir, clock);
        state.key_ttl_secs = config.key_ttl_seconds;
        state.replay_capacity = config.replay_capacity;
        state.replay_share = config.replay_share_per_key;
        state.tickets_per_requester = Some(config.tickets_per_requester);
        state.pending_key_limits = crate::pending_keys::PendingKeyLimits::from_config(&config);
        state.inbox_limits =
            crate::inbox::InboxLimits { max_keys: config.inbox_max_keys, max_age_secs: config.inbox_max_age_seconds };
        state.durable_threads = config.durable_threads;
        state.mailbox = crate::mailbox::MailboxSettings::from_config(&config);
        state.admin_key = admin_key;
        state.key_alert = KeyAlertSettings {
            key_servers,
            identity: config.identity.as_ref().map(|i| raida_proto::IdentityCoin((i.dn, i.sn).into())),
            timeout: limits.key_alert_timeout,
            fetches_per_minute: config.key_alert_fetches_per_minute,
        };
        let state = state.build().map_err(io_err(format!("{} (Keys/, Inbox/)", dir.display())))?;
        Ok((Arc::new(state), listen, limits.clone()))
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
    table: Arc<ConnectionTable>,
    deferred: Arc<DeferredLimits>,
    metrics_addr: Option<SocketAddr>,
}

/// Bind UDP and TCP on the same port (with port 0, the port UDP got).
fn bind(listen: SocketAddr) -> Result<(std::net::UdpSocket, std::net::TcpListener), ServerError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let mut last = None;
    for _ in 0..20 {
        let domain = if listen.is_ipv4() { Domain::IPV4 } else { Domain::IPV6 };
        let udp = udp_socket(listen)?;
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

/// A UDP socket bound to `at`, joining the port's SO_REUSEPORT group: the kernel spreads
/// datagrams over the group by source address and port, one socket per worker thread.
/// (Only sockets of the same user may join a group, so another user cannot take a share.)
fn udp_socket(at: SocketAddr) -> Result<std::net::UdpSocket, ServerError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if at.is_ipv4() { Domain::IPV4 } else { Domain::IPV6 };
    let udp = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).map_err(io_err("udp socket"))?;
    let _ = udp.set_recv_buffer_size(4 << 20);
    let _ = udp.set_send_buffer_size(4 << 20);
    #[cfg(all(unix, not(target_os = "solaris"), not(target_os = "illumos")))]
    let _ = udp.set_reuse_port(true);
    udp.bind(&at.into()).map_err(io_err(format!("bind udp {at}")))?;
    Ok(udp.into())
}

impl RunningServer {
    /// Bind and start serving. Must be called inside a tokio runtime.
    pub async fn start(
        state: Arc<ServerState>,
        listen: SocketAddr,
        limits: ServerLimits,
    ) -> Result<RunningServer, ServerError> {
        // descriptors: as many as the hard limit allows; connections get what the store,
        // the deferred commands and the UDP threads leave (a server out of descriptors
        // answers "coin not present" or 194 for a present coin)
        let descriptors = raise_descriptor_limit();
        let udp_threads = limits.udp_threads.max(1);
        // the metrics endpoint's connections are kept for like deferred slots: without
        // that, idle metrics connections took the descriptors the store needs
        let kept_slots = limits.deferred_slots().saturating_add(limits.metrics_slots());
        let tcp_connections = connection_budget(descriptors, limits.max_connections, kept_slots, udp_threads);
        let reserve = descriptor_reserve(kept_slots, udp_threads);
        tracing::info!(descriptors, reserve, tcp_connections, "descriptor limit");
        if tcp_connections < limits.max_connections {
            tracing::warn!(
                descriptors,
                wanted = limits.max_connections,
                tcp_connections,
                "not enough descriptors for the configured TCP connections: raise the hard RLIMIT_NOFILE"
            );
        }
        // polls may be held again if an earlier server on this state shut down
        state.mailbox.reopen();
        // the UDP error rate is one of the limits the server starts with (ServerLimits)
        state.udp_errors.set_per_second(limits.udp_error_rate_per_addr);
        let deferred = Arc::new(DeferredLimits::new(
            limits.max_key_alerts,
            limits.max_durable_commands,
            limits.max_heavy_commands,
        ));
        let (udp, tcp) = bind(listen)?;
        // before any worker starts, so that a busy metrics port leaves nothing running
        let metrics = match limits.metrics_listen {
            Some(at) => {
                Some(tokio::net::TcpListener::bind(at).await.map_err(io_err(format!("bind metrics_listen {at}")))?)
            }
            None => None,
        };
        let addr = udp.local_addr().map_err(io_err("udp address"))?;
        let tcp = tokio::net::TcpListener::from_std(tcp).map_err(io_err("tcp listener"))?;
        let stop = CancellationToken::new();
        let stop_udp = Arc::new(AtomicBool::new(false));
        let tracker = TaskTracker::new();
        // one socket per worker; where the platform refuses a second one, they share
        let more_sockets = (1..udp_threads).map_while(|_| udp_socket(addr).ok().map(Arc::new)).collect();
        // UDP and TCP route deferred commands the same way, under the same limits
        let deferred_work = Arc::new(DeferredWork {
            limits: deferred.clone(),
            runtime: tokio::runtime::Handle::current(),
            tracker: tracker.clone(),
        });
        let ctx = Arc::new(UdpContext {
            socket: Arc::new(udp),
            more_sockets,
            state: state.clone(),
            deferred: deferred_work.clone(),
            stop: stop_udp.clone(),
        });
        let udp_threads = spawn_workers(ctx, udp_threads).map_err(io_err("udp workers"))?;
        let table = ConnectionTable::new(TcpLimits {
            total: tcp_connections,
            per_addr: limits.max_connections_per_ip.max(1),
            per_subnet: limits.max_connections_per_subnet.max(1),
            idle_timeout: limits.idle_timeout,
            lifetime: limits.connection_lifetime,
        });
        let metrics_addr = match metrics {
            Some(listener) => {
                let bound = listener.local_addr().map_err(io_err("metrics address"))?;
                tracker.spawn(crate::metrics::serve(
                    listener,
                    state.clone(),
                    Some(table.clone()),
                    limits.metrics_limits(),
                    stop.clone(),
                ));
                tracing::info!(addr = %bound, "metrics at http://{bound}/metrics");
                Some(bound)
            }
            None => None,
        };
        // a SIGHUP reload (crate::reload) reaches the table and the deferred limits through the state
        state.live_limits.store(Some(Arc::new(crate::reload::LiveLimits {
            table: table.clone(),
            deferred: deferred.clone(),
            descriptors,
            udp_threads: limits.udp_threads.max(1),
            deferred_slots_at_start: limits.deferred_slots(),
            metrics_slots: limits.metrics_slots(),
        })));
        tracker.spawn(crate::tcp::accept_loop(
            tcp,
            state.clone(),
            table.clone(),
            deferred_work,
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
        Ok(RunningServer {
            addr,
            state,
            stop_udp,
            stop,
            tracker,
            udp_threads,
            drain_timeout: limits.drain_timeout,
            table,
            deferred,
            metrics_addr,
        })
    }

    /// Where `GET /metrics` answers, if `metrics_listen` is set (with port 0, the port taken).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// TCP connections this server keeps open at most (after the descriptor budget; a
    /// reload may change it).
    pub fn tcp_connection_limit(&self) -> usize {
        self.table.limits().total
    }

    /// The TCP connection table (its limits and the connections open).
    pub fn connection_table(&self) -> &Arc<ConnectionTable> {
        &self.table
    }

    /// The per-kind limits of deferred commands (UDP and TCP share them).
    pub fn deferred_limits(&self) -> &Arc<DeferredLimits> {
        &self.deferred
    }

    /// The bound address (UDP and TCP share the port).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn state(&self) -> &Arc<ServerState> {
        &self.state
    }

    /// Stop taking requests, finish those in flight (up to the drain timeout), flush the store.
    pub async fn shutdown(self) -> Result<(), ShutdownError> {
        self.stop_udp.store(true, Ordering::Relaxed);
        self.stop.cancel();
        // held 47s answer now (count 0) instead of holding the drain up to 30 s
        self.state.mailbox.cancel_holds();
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
        Ok(tokio::task::spawn_blocking(move || state.ledger.flush()).await??)
    }
}

/// Why [`RunningServer::shutdown`] could not flush the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShutdownError {
    /// The flush itself failed.
    #[error(transparent)]
    Flush(#[from] LedgerError),
    /// The blocking task that flushes panicked.
    #[error(transparent)]
    FlushTask(#[from] tokio::task::JoinError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_settings_reach_the_limits() {
        let text = "raida_id = 1\nudp_error_rate_per_addr = 7\ntcp_max_connections = 100\n\
                    tcp_max_connections_per_addr = 3\ntcp_max_connections_per_subnet = 9\n\
                    tcp_connection_lifetime_seconds = 60\nmax_key_alerts = 5\nmax_durable_commands = 6\n\
                    max_heavy_commands = 2\n";
        let c = raida_store::Config::from_toml(text, Path::new("config.toml")).unwrap();
        let l = ServerLimits::default().with_config(&c);
        assert_eq!(l.udp_error_rate_per_addr, 7);
        assert_eq!((l.max_connections, l.max_connections_per_ip, l.max_connections_per_subnet), (100, 3, 9));
        assert_eq!(l.connection_lifetime, Duration::from_secs(60));
        assert_eq!((l.max_key_alerts, l.max_durable_commands, l.max_heavy_commands), (5, 6, 2));
        // the defaults of config.toml are those of ServerLimits
        let d = ServerLimits::default();
        let c = raida_store::Config::from_toml("raida_id = 1\n", Path::new("config.toml")).unwrap();
        let l = ServerLimits::default().with_config(&c);
        assert_eq!(l.udp_error_rate_per_addr, d.udp_error_rate_per_addr);
        assert_eq!((l.max_connections, l.max_connections_per_ip, l.max_connections_per_subnet), (4096, 64, 256));
        assert_eq!(l.connection_lifetime, d.connection_lifetime);
        assert_eq!((l.max_key_alerts, l.max_durable_commands, l.max_heavy_commands), (256, 256, 4));
    }
}
