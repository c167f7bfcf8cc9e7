//! The server's shared state and the request engine: validate a request (raida-proto),
//! dispatch it, build the answer. No sockets here; `udp.rs` and `tcp.rs` feed it bytes.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use raida_proto::header::{RequestHeader, ServerIdentity};
use raida_proto::replay::{ReplayCheck, ReplayKey, ReplayMemory};
use raida_proto::{validate_request, IdentityCoin, Rejection, ReplyContext, Status};
use rand_core::{OsRng, RngCore};

use crate::blocking::{BlockingPool, DEFAULT_BLOCKING_THREADS};
use crate::dispatch::{DispatchTable, Handler};
use crate::inbox::Inbox;
use crate::ledger::{Ledger, LedgerKeys};
use crate::limits::{ErrorRateLimiter, LogLimiter, WorkKind};
use crate::mailbox::{MailboxSettings, SharedMailbox};
use crate::pending_keys::PendingKeys;
use crate::stats::Stats;
use crate::tickets::TicketPool;

/// A configured key server (Key Alert contacts only these), its address resolved.
pub use raida_net::network::ResolvedRaida as KeyServer;

/// Settings of Key Alert (42).
#[derive(Clone, Debug)]
pub struct KeyAlertSettings {
    pub key_servers: Vec<KeyServer>,
    /// The identity coin (DN, SN) used to authenticate Get Key, if configured. When it is
    /// configured but does not load, alerts answer 197 and fetch nothing; when none is
    /// configured, parts are fetched with EN 0 (only parts that name no receiver come back).
    pub identity: Option<IdentityCoin>,
    /// One timeout for all parts of an alert (they share one socket).
    pub timeout: Duration,
    /// Get Keys all alerts together may send per minute (config.toml
    /// `key_alert_fetches_per_minute`); an alert whose fetches do not fit gets 160 and
    /// fetches nothing, so a flood of alerts cannot spend the identity coin's replay share
    /// on the other RAIDAs.
    pub fetches_per_minute: u32,
}

/// Default of `key_alert_fetches_per_minute`.
pub(crate) const DEFAULT_KEY_ALERT_FETCHES_PER_MINUTE: u32 = 240;

impl Default for KeyAlertSettings {
    fn default() -> Self {
        KeyAlertSettings {
            key_servers: Vec::new(),
            identity: None,
            timeout: Duration::from_secs(5),
            fetches_per_minute: DEFAULT_KEY_ALERT_FETCHES_PER_MINUTE,
        }
    }
}

/// How a dishonest RAIDA answers Get Key (tests of receivers only:
/// [`crate::local_network::LocalNetwork::make_dishonest`] and
/// [`crate::local_network::LocalNetwork::set_dishonesty`]; nothing in a configuration sets it).
#[derive(Clone, Debug, Default)]
pub(crate) struct ForgedGetKey {
    /// The answer (sender, part) to a key id it does not hold, instead of "not found".
    pub unheld: Option<(raida_proto::CoinId, Vec<u8>)>,
    /// How it lies about the key ids it does hold.
    pub held: Option<raida_netsim::Dishonesty>,
}

impl ForgedGetKey {
    /// What it answers for a part it holds: `sender`'s `key` as `held` twists it.
    pub(crate) fn lie(&self, sender: raida_proto::CoinId, mut key: Vec<u8>) -> (raida_proto::CoinId, Vec<u8>) {
        match self.held {
            None => (sender, key),
            Some(raida_netsim::Dishonesty::WrongKey) => {
                key.iter_mut().for_each(|b| *b ^= 0xA5);
                (sender, key)
            }
            Some(raida_netsim::Dishonesty::OtherSender) => {
                let sn = sender.sn.checked_add(1).unwrap_or(sender.sn - 1);
                (raida_proto::CoinId { sn, ..sender }, key)
            }
        }
    }
}

/// Entries of the replay memory one key identity may hold unless configured (3.4).
pub(crate) const DEFAULT_REPLAY_SHARE: usize = 10_000;

/// Source of Unix time (seconds). The system clock in production; fixed in tests.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0))
}

/// Source of randomness on the request path (response nonces, ticket numbers, the random
/// bytes of 44): fills a buffer. The OS CSPRNG in production ([`os_random`]); tests may set
/// a seeded generator. Passed in like [`Clock`], so no handler reaches for a global.
pub(crate) type Random = Arc<dyn Fn(&mut [u8]) + Send + Sync>;

/// The OS CSPRNG, read [`OS_POOL_BYTES`] at a time per thread. Every modern answer needs 12
/// fresh nonce bytes, and one getrandom syscall per answer was a fifth of EN 4's CPU per
/// request (measured: one getrandom per answer beside 0.07 recvmmsg). Every byte handed
/// out is OS CSPRNG output used once: it is wiped from the pool as it is taken, and the
/// pool is wiped when its thread ends.
pub(crate) fn os_random() -> Random {
    Arc::new(|buf: &mut [u8]| OS_POOL.with(|pool| pool.borrow_mut().fill(buf)))
}

/// Bytes of OS randomness one thread reads at a time (about 340 answer nonces).
pub(crate) const OS_POOL_BYTES: usize = 4096;

thread_local! {
    static OS_POOL: std::cell::RefCell<OsPool> =
        const { std::cell::RefCell::new(OsPool { bytes: [0; OS_POOL_BYTES], taken: OS_POOL_BYTES }) };
}

/// Unused OS randomness of one thread: `bytes[taken..]` (the rest is already wiped).
struct OsPool {
    bytes: [u8; OS_POOL_BYTES],
    taken: usize,
}

impl OsPool {
    fn fill(&mut self, out: &mut [u8]) {
        use zeroize::Zeroize;
        if out.len() > OS_POOL_BYTES / 4 {
            // large requests straight from the OS
            OsRng.fill_bytes(out);
            return;
        }
        let mut filled = 0;
        while filled < out.len() {
            if self.taken >= OS_POOL_BYTES {
                OsRng.fill_bytes(&mut self.bytes);
                self.taken = 0;
            }
            let n = (out.len() - filled).min(OS_POOL_BYTES - self.taken);
            let src = &mut self.bytes[self.taken..self.taken + n];
            out[filled..filled + n].copy_from_slice(src);
            src.zeroize();
            self.taken += n;
            filled += n;
        }
    }
}

impl Drop for OsPool {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.bytes);
    }
}

/// A [`Random`] as a `rand_core` generator (what raida-proto and the ticket pool take).
pub struct RandomRng<'a>(&'a Random);

impl RngCore for RandomRng<'_> {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        (self.0)(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        (self.0)(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        (self.0)(dest)
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        (self.0)(dest);
        Ok(())
    }
}

/// Everything a request may touch.
///
/// Built with [`ServerState::builder`]; its fields are the crate's own (the handlers, the
/// transports, reload), and what other crates may read has an accessor.
pub struct ServerState {
    pub(crate) identity: ServerIdentity,
    pub(crate) ledger: Arc<dyn Ledger>,
    pub(crate) tickets: TicketPool,
    pub(crate) stats: Stats,
    pub(crate) replay: Mutex<ReplayMemory>,
    /// Swapped by a SIGHUP reload: set with [`ServerState::set_admin_key`].
    pub(crate) admin_key: arc_swap::ArcSwapOption<[u8; 16]>,
    pub(crate) pending_keys: PendingKeys,
    pub(crate) inbox: Inbox,
    /// Key Alert's settings at start. A SIGHUP reload ([`crate::reload`]) puts new ones in
    /// `key_alert_reloaded`, which then win: read them with [`ServerState::key_alert_settings`].
    pub(crate) key_alert: KeyAlertSettings,
    /// Key Alert's settings from the last reload, swapped atomically (an alert in flight
    /// keeps the settings it started with; readers take no lock).
    pub(crate) key_alert_reloaded: arc_swap::ArcSwapOption<KeyAlertSettings>,
    pub(crate) clock: Clock,
    /// Randomness of the request path ([`os_random`] unless a test sets another).
    pub(crate) random: Random,
    pub(crate) dispatch: DispatchTable,
    /// Error answers per source address over UDP (PROTOCOL.md section 2).
    pub(crate) udp_errors: ErrorRateLimiter,
    /// Where commands that wait for the disk run ([`crate::blocking`]).
    pub(crate) blocking: BlockingPool,
    /// Bounds the log lines a peer can trigger (a handler that panicked).
    pub(crate) peer_logs: LogLimiter,
    /// The connection table and deferred-command limits of the [`crate::RunningServer`]
    /// serving this state (set by its `start`), so that a reload reaches them too.
    pub(crate) live_limits: arc_swap::ArcSwapOption<crate::reload::LiveLimits>,
    /// Key Alert's Get Keys in the current minute (all alerts together).
    pub(crate) key_alert_fetches: Mutex<raida_net::fetch_budget::FetchBudget>,
    /// Set only by tests of receivers: this RAIDA lies (see [`ForgedGetKey`]).
    pub(crate) forged_get_key: arc_swap::ArcSwapOption<ForgedGetKey>,
    /// Alerts of 46 waiting for 47, and the held 47s.
    pub(crate) mailbox: SharedMailbox,
}

/// The transport a request came in on: UDP answers fewer requests than TCP, because a
/// UDP source address can be spoofed (PROTOCOL.md section 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// Default of `udp_error_rate_per_addr` (config.toml).
pub(crate) const DEFAULT_UDP_ERROR_RATE: u32 = 1_000;

/// One command invocation: typed inputs for a handler.
#[derive(Clone, Debug)]
pub struct Call {
    pub header: RequestHeader,
    pub payload: Vec<u8>,
    pub peer: IpAddr,
    pub now: u64,
    /// The transport it came in on (47 answers fewer alerts over UDP and never waits there).
    pub transport: Transport,
}

/// A handler's result: a status and a payload (empty for errors).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: Status,
    pub payload: Vec<u8>,
}

impl Answer {
    pub fn ok(payload: Vec<u8>) -> Answer {
        Answer { status: Status::Success, payload }
    }
    pub fn status(status: Status) -> Answer {
        Answer { status, payload: Vec::new() }
    }
}

impl From<Status> for Answer {
    fn from(s: Status) -> Answer {
        Answer::status(s)
    }
}

/// Where a [`Handler::Deferred`] command sends its answer, exactly once, from whichever
/// thread finishes its work (e.g. the one making its write durable). If the handler panics
/// before handing it on, the server answers 252 in its place.
pub struct Reply(Arc<Mutex<Option<ReplyFn>>>);

type ReplyFn = Box<dyn FnOnce(Answer) + Send>;

impl Reply {
    /// A reply that hands the answer to `f`.
    pub fn new(f: impl FnOnce(Answer) + Send + 'static) -> Reply {
        Reply(Arc::new(Mutex::new(Some(Box::new(f)))))
    }

    /// Send the answer (finish it: count, log, encrypt; then the transport sends it).
    pub fn send(self, answer: Answer) {
        let f = self.0.lock().take();
        if let Some(f) = f {
            f(answer);
        }
    }
}

/// What became of one request.
pub enum Outcome {
    /// The answer is in the output buffer.
    Reply,
    /// No answer at all: a datagram shorter than 32 bytes; over UDP also a source port
    /// below 1024, a 255/2/3 failure, or an error answer beyond the address's rate.
    Drop,
    /// The command runs off the receiving thread (durable write, heavy read or network):
    /// route it with [`crate::dispatch::DeferredWork::route`].
    Deferred(Box<Deferred>),
}

/// A command that runs later (where its [`WorkKind`] says), then answers.
pub struct Deferred {
    handler: Handler,
    kind: WorkKind,
    call: Call,
    reply: ReplyContext,
    started: Instant,
    bytes_in: usize,
}

/// Everything a [`ServerState`] is made of, with defaults: a 512-slot ticket pool, a
/// replay memory of 1,000,000 entries, pending keys under `data_dir/Keys` kept an hour,
/// the inbox under `data_dir/Inbox`, the standard dispatch table, no key servers, no admin
/// key. Change a field, then [`ServerStateBuilder::build`]. `raida serve` fills it from
/// `config.toml`; tests set what they exercise.
pub struct ServerStateBuilder {
    /// RAIDA id, coin id, whether EN 1 / 2 are answered.
    pub identity: ServerIdentity,
    /// The coin store as handlers see it (a test may wrap it, e.g. to slow it down).
    pub ledger: Arc<dyn Ledger>,
    data_dir: std::path::PathBuf,
    /// Where the request path reads the time (Unix seconds).
    pub clock: Clock,
    /// How long a posted key part waits for its Get Key.
    pub key_ttl_secs: u64,
    pub replay_capacity: usize,
    /// Entries of the replay memory one key may hold.
    pub replay_share: usize,
    /// Tickets one requester may hold at once (None: the pool's default).
    pub tickets_per_requester: Option<usize>,
    pub pending_key_limits: crate::pending_keys::PendingKeyLimits,
    pub inbox_limits: crate::inbox::InboxLimits,
    pub durable_threads: usize,
    /// Show Stats' admin key (None: Show Stats is refused).
    pub admin_key: Option<[u8; 16]>,
    pub key_alert: KeyAlertSettings,
    /// The mailbox of 46 / 47: alert TTL, total alerts, held polls.
    pub mailbox: MailboxSettings,
    /// The request path's randomness ([`os_random`] by default).
    pub random: Random,
    pub dispatch: DispatchTable,
}

impl ServerState {
    /// A builder for a state around `ledger`, keeping its files under `data_dir` and
    /// reading the time from `clock`.
    pub fn builder(
        identity: ServerIdentity,
        ledger: Arc<dyn Ledger>,
        data_dir: &std::path::Path,
        clock: Clock,
    ) -> ServerStateBuilder {
        ServerStateBuilder {
            identity,
            ledger,
            data_dir: data_dir.to_path_buf(),
            clock,
            key_ttl_secs: 3600,
            replay_capacity: 1_000_000,
            replay_share: DEFAULT_REPLAY_SHARE,
            tickets_per_requester: None,
            pending_key_limits: Default::default(),
            inbox_limits: Default::default(),
            durable_threads: DEFAULT_BLOCKING_THREADS,
            admin_key: None,
            key_alert: KeyAlertSettings::default(),
            mailbox: MailboxSettings::default(),
            random: os_random(),
            dispatch: DispatchTable::standard(),
        }
    }
}

impl ServerStateBuilder {
    /// Open `Keys/` and `Inbox/` under the data directory and assemble the state.
    pub fn build(self) -> std::io::Result<ServerState> {
        let now = (self.clock)();
        let tickets = match self.tickets_per_requester {
            Some(per) => TicketPool::with_share(
                raida_proto::consts::TICKET_POOL_SIZE,
                raida_proto::consts::TICKET_RELEASE_SECONDS,
                per,
            ),
            None => TicketPool::default(),
        };
        let pending_keys = PendingKeys::open(&self.data_dir.join("Keys"), self.key_ttl_secs, now)?;
        pending_keys.set_limits(self.pending_key_limits);
        let inbox = Inbox::open(&self.data_dir, now)?;
        inbox.set_limits(self.inbox_limits);
        let blocking = BlockingPool::new(DEFAULT_BLOCKING_THREADS);
        blocking.set_max_threads(self.durable_threads);
        let state = ServerState {
            identity: self.identity,
            ledger: self.ledger,
            tickets,
            stats: Stats::default(),
            replay: Mutex::new(ReplayMemory::with_share(self.replay_capacity, self.replay_share)),
            admin_key: arc_swap::ArcSwapOption::empty(),
            pending_keys,
            inbox,
            key_alert_fetches: Mutex::new(raida_net::fetch_budget::FetchBudget::new(
                DEFAULT_KEY_ALERT_FETCHES_PER_MINUTE,
            )),
            key_alert: self.key_alert,
            key_alert_reloaded: arc_swap::ArcSwapOption::empty(),
            clock: self.clock,
            random: self.random,
            dispatch: self.dispatch,
            udp_errors: ErrorRateLimiter::new(DEFAULT_UDP_ERROR_RATE),
            blocking,
            peer_logs: LogLimiter::default(),
            live_limits: arc_swap::ArcSwapOption::empty(),
            forged_get_key: arc_swap::ArcSwapOption::empty(),
            mailbox: SharedMailbox::new(self.mailbox),
        };
        state.set_admin_key(self.admin_key);
        Ok(state)
    }
}

impl ServerState {
    /// The server's RAIDA id, coin id and encryption settings.
    pub fn identity(&self) -> &ServerIdentity {
        &self.identity
    }

    /// The coin store as handlers see it.
    pub fn ledger(&self) -> &Arc<dyn Ledger> {
        &self.ledger
    }

    /// The ticket pool (group 2).
    pub fn tickets(&self) -> &TicketPool {
        &self.tickets
    }

    /// The counters of Show Stats and /metrics.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Key parts posted and waiting for their Get Key (41, 43).
    pub fn pending_keys(&self) -> &PendingKeys {
        &self.pending_keys
    }

    /// Keys assembled by Key Alert (42), for `raida inbox`.
    pub fn inbox(&self) -> &Inbox {
        &self.inbox
    }

    /// Alerts left with 46 for 47, and the held 47s.
    pub fn mailbox(&self) -> &SharedMailbox {
        &self.mailbox
    }
}

impl ServerState {
    /// The request path's randomness as a generator.
    pub fn rng(&self) -> RandomRng<'_> {
        RandomRng(&self.random)
    }

    /// The admin key Show Stats checks (`None`: Show Stats is refused), at start and on a
    /// SIGHUP reload.
    pub fn set_admin_key(&self, key: Option<[u8; 16]>) {
        self.admin_key.store(key.map(Arc::new));
    }

    /// Key Alert's settings now: those of the last reload, else those at start.
    pub fn key_alert_settings(&self) -> KeyAlertSettingsRef<'_> {
        KeyAlertSettingsRef { reloaded: self.key_alert_reloaded.load_full(), start: &self.key_alert }
    }
}

/// Key Alert's settings as read by one alert (see [`ServerState::key_alert_settings`]).
pub struct KeyAlertSettingsRef<'a> {
    reloaded: Option<Arc<KeyAlertSettings>>,
    start: &'a KeyAlertSettings,
}

impl std::ops::Deref for KeyAlertSettingsRef<'_> {
    type Target = KeyAlertSettings;
    fn deref(&self) -> &KeyAlertSettings {
        self.reloaded.as_deref().unwrap_or(self.start)
    }
}

struct SharedReplay<'a>(&'a Mutex<ReplayMemory>);
impl ReplayCheck for SharedReplay<'_> {
    fn check_and_insert(&mut self, key: &ReplayKey, now: u64) -> Result<(), Status> {
        self.0.lock().check_and_insert(key, now)
    }
}

impl ServerState {
    /// Validate and (for commands answered now) execute one request as over TCP (every request
    /// that frames is answered); the answer goes to `out`.
    pub fn handle(&self, packet: &mut [u8], peer: SocketAddr, out: &mut Vec<u8>) -> Outcome {
        self.handle_from(Transport::Tcp, packet, peer, out)
    }

    /// Validate and (for commands answered now) execute one request that came in on
    /// `transport`; a deferred one comes back as [`Outcome::Deferred`].
    ///
    /// Over UDP nothing is answered that could feed a reflection loop (section 2): a
    /// source port below 1024 (before any work), a version / split id / RAIDA id failure
    /// (no client of this server sends one, and every RAIDA answer parses as a request),
    /// and error answers beyond `udp_errors` for the source address.
    pub fn handle_from(&self, transport: Transport, packet: &mut [u8], peer: SocketAddr, out: &mut Vec<u8>) -> Outcome {
        if transport == Transport::Udp && peer.port() < 1024 {
            return self.drop_request();
        }
        let started = Instant::now();
        let bytes_in = packet.len();
        let now = (self.clock)();
        let keys = LedgerKeys(self.ledger.as_ref());
        let validated =
            validate_request(packet, &self.identity, &self.dispatch, &keys, &mut SharedReplay(&self.replay), now);
        let v = match validated {
            Ok(v) => v,
            Err(Rejection::Drop) => return self.drop_request(),
            Err(Rejection::Reply { status, .. })
                if transport == Transport::Udp
                    && matches!(status, Status::InvalidRouting | Status::InvalidSplitId | Status::InvalidRaidaId) =>
            {
                return self.drop_request();
            }
            Err(Rejection::Reply { status, reply }) => {
                if !self.may_answer(transport, peer, status) {
                    return self.drop_request();
                }
                let group = packet.get(4).copied().unwrap_or(0);
                let command = packet.get(5).copied().unwrap_or(0);
                self.finish(&reply, group, command, peer.ip(), None, Answer::status(status), started, bytes_in, out);
                return Outcome::Reply;
            }
        };
        let Some(handler) = self.dispatch.get(v.header.command_group, v.header.command) else {
            // unreachable: validation checked the table (so no rate check either)
            self.finish(
                &v.reply,
                v.header.command_group,
                v.header.command,
                peer.ip(),
                Some(&v.header),
                Answer::status(Status::InvalidCommand),
                started,
                bytes_in,
                out,
            );
            return Outcome::Reply;
        };
        let call = Call { header: v.header, payload: packet[v.payload].to_vec(), peer: peer.ip(), now, transport };
        // a command that may touch thousands of pages leaves the receiving thread
        let heavy = self.dispatch.is_heavy(call.header.command_group, call.header.command, call.payload.len());
        let kind = match handler {
            _ if heavy => WorkKind::Heavy,
            Handler::Deferred(kind, _) => kind,
            Handler::Now(f) => {
                let answer =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(self, &call))).unwrap_or_else(|_| {
                        if self.peer_logs.allow(peer.ip()) {
                            tracing::error!(client = %peer, "command handler panicked");
                        }
                        Answer::status(Status::Internal)
                    });
                if !self.may_answer(transport, peer, answer.status) {
                    return self.drop_request();
                }
                self.finish(
                    &v.reply,
                    call.header.command_group,
                    call.header.command,
                    call.peer,
                    Some(&call.header),
                    answer,
                    started,
                    bytes_in,
                    out,
                );
                return Outcome::Reply;
            }
        };
        Outcome::Deferred(Box::new(Deferred { handler, kind, call, reply: v.reply, started, bytes_in }))
    }

    /// Whether an answer with `status` may go to `peer`: over UDP an error answer counts
    /// against the address's rate (section 2), and beyond it the datagram is dropped.
    pub fn may_answer(&self, transport: Transport, peer: SocketAddr, status: Status) -> bool {
        let ok = transport == Transport::Tcp || status.is_success() || self.udp_errors.allow(peer.ip());
        if !ok {
            self.stats.rate_limited.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        ok
    }

    fn drop_request(&self) -> Outcome {
        self.stats.dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Outcome::Drop
    }

    /// Build the answer, count it, log it.
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        reply: &ReplyContext,
        group: u8,
        command: u8,
        peer: IpAddr,
        header: Option<&RequestHeader>,
        answer: Answer,
        started: Instant,
        bytes_in: usize,
        out: &mut Vec<u8>,
    ) {
        let us = started.elapsed().as_micros().min(u32::MAX as u128) as u32;
        let payload: &[u8] = if answer.status.is_success() { &answer.payload } else { &[] };
        reply.write(answer.status, payload, us, &mut self.rng(), out);
        self.stats.record(group, command, answer.status, bytes_in, out.len());
        self.stats.observe_latency(us);
        if tracing::enabled!(tracing::Level::DEBUG) {
            let coin = header.map(|h| format!("{:?}", h.key_identity)).unwrap_or_else(|| "-".into());
            tracing::debug!(
                client = %peer,
                en = header.map(|h| h.encryption as u8).unwrap_or(0),
                coin = %coin,
                group,
                command,
                exec_us = us,
                status = answer.status.code(),
                "request"
            );
        }
    }
}

impl Deferred {
    /// The concurrency limit this command counts against.
    pub fn kind(&self) -> WorkKind {
        self.kind
    }

    /// Answer without running the command (e.g. 160 when too many commands are queued).
    pub fn reject(self, state: &ServerState, status: Status, out: &mut Vec<u8>) {
        let h = self.call.header;
        state.finish(
            &self.reply,
            h.command_group,
            h.command,
            self.call.peer,
            Some(&h),
            Answer::status(status),
            self.started,
            self.bytes_in,
            out,
        );
    }

    /// What to answer when this command's answer is lost (its continuation panicked,
    /// logged where it ran): a TCP client gets an answer (252) for every request it sent.
    pub fn lost_answer(&self) -> LostAnswer {
        LostAnswer {
            reply: self.reply.clone(),
            header: self.call.header,
            peer: self.call.peer,
            started: self.started,
            bytes_in: self.bytes_in,
        }
    }

    /// Start the command where its kind runs: a durable write on a thread of
    /// [`ServerState::blocking`] (no task hop: that thread, or the one leading the fsync
    /// that makes the write durable, finishes the answer), a heavy read on `runtime`'s
    /// blocking pool (so that a flood of them never holds the durable threads), Key Alert
    /// and Take Alerts here, in `runtime`'s context (their handlers answer at once or
    /// spawn their task). `done` gets the
    /// status and the finished answer, exactly once, unless the answer is lost; a handler
    /// that panics answers 252. No limit is checked here: see
    /// [`crate::dispatch::DeferredWork::route`].
    pub fn start(
        self,
        state: Arc<ServerState>,
        runtime: &tokio::runtime::Handle,
        done: impl FnOnce(Status, Vec<u8>) + Send + 'static,
    ) {
        let Deferred { handler, kind, call, reply, started, bytes_in } = self;
        let h = call.header;
        let peer = call.peer;
        let st = state.clone();
        let answer = Reply::new(move |answer: Answer| {
            let status = answer.status;
            let mut out = Vec::new();
            st.finish(&reply, h.command_group, h.command, peer, Some(&h), answer, started, bytes_in, &mut out);
            done(status, out);
        });
        let (st, runner) = (state.clone(), state.clone());
        let job = move || {
            let slot = answer.0.clone();
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler.start(st, call, answer))).is_err() {
                if state.peer_logs.allow(peer) {
                    tracing::error!(client = %peer, "command handler panicked");
                }
                Reply(slot).send(Answer::status(Status::Internal));
            }
        };
        match kind {
            WorkKind::Durable => runner.blocking.execute(job),
            WorkKind::Heavy => drop(runtime.spawn_blocking(job)),
            // a long poll's handler answers at once or spawns the task that holds it
            WorkKind::KeyAlert | WorkKind::LongPoll => {
                let _in_runtime = runtime.enter();
                job();
            }
        }
    }

    /// [`Deferred::start`] on the current runtime, awaiting the status and the finished
    /// answer (252 if lost): for tests and the fuzz harness, which drive
    /// [`ServerState::handle`] without a transport (no limit is checked).
    pub async fn answer(self, state: Arc<ServerState>) -> (Status, Vec<u8>) {
        let lost = self.lost_answer();
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.start(state.clone(), &tokio::runtime::Handle::current(), move |status, answer| {
            let _ = tx.send((status, answer));
        });
        match rx.await {
            Ok(answered) => answered,
            Err(_) => {
                let mut out = Vec::new();
                lost.write(&state, &mut out);
                (Status::Internal, out)
            }
        }
    }
}

/// The 252 answer of a deferred command whose answer was lost ([`Deferred::lost_answer`]).
pub struct LostAnswer {
    reply: ReplyContext,
    header: RequestHeader,
    peer: IpAddr,
    started: Instant,
    bytes_in: usize,
}

impl LostAnswer {
    /// Write the 252 answer to `out`.
    pub fn write(self, state: &ServerState, out: &mut Vec<u8>) {
        let h = self.header;
        let lost = Answer::status(Status::Internal);
        state.finish(
            &self.reply,
            h.command_group,
            h.command,
            self.peer,
            Some(&h),
            lost,
            self.started,
            self.bytes_in,
            out,
        );
    }
}

#[cfg(test)]
mod os_pool_tests {
    use super::*;

    #[test]
    fn pooled_os_randomness_is_never_handed_out_twice_and_is_wiped_when_taken() {
        let random = os_random();
        // 1,000 answer nonces cross two refills of the pool: all distinct
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let mut nonce = [0u8; 12];
            random(&mut nonce);
            assert!(seen.insert(nonce), "a nonce came out twice");
        }
        // what was taken is gone from the pool; the rest is still there
        let mut pool = OsPool { bytes: [7; OS_POOL_BYTES], taken: 0 };
        let mut out = [0u8; 100];
        pool.fill(&mut out);
        assert_eq!(out, [7; 100]);
        assert!(pool.bytes[..100].iter().all(|&b| b == 0) && pool.bytes[100] == 7);
        // a request larger than a quarter of the pool goes straight to the OS
        let mut big = vec![0u8; OS_POOL_BYTES];
        pool.fill(&mut big);
        assert_eq!(pool.taken, 100);
        assert!(big.iter().any(|&b| b != 0));
    }
}

#[cfg(test)]
mod forged_get_key_tests {
    use super::*;

    /// A dishonest RAIDA (raida_netsim::Dishonesty) twists the parts it holds: wrong bytes
    /// under the true sender, or the true bytes under another sender; an honest one not.
    #[test]
    fn dishonest_raidas_lie_about_the_parts_they_hold() {
        use raida_netsim::Dishonesty;
        let sender = raida_proto::CoinId { dn: 1, sn: 7 };
        let key = vec![1u8, 2, 3];
        let lie = |held| ForgedGetKey { unheld: None, held }.lie(sender, key.clone());
        assert_eq!(lie(None), (sender, key.clone()));
        let (s, k) = lie(Some(Dishonesty::WrongKey));
        assert_eq!(s, sender);
        assert_eq!(k.len(), key.len());
        assert!(k.iter().zip(&key).all(|(a, b)| a != b));
        let (s, k) = lie(Some(Dishonesty::OtherSender));
        assert_ne!(s, sender);
        assert_eq!(k, key);
    }
}
