//! Load generator: any request against any RAIDA server (it speaks only the protocol),
//! over UDP with K requests in flight on one socket, or over TCP with K connections (each
//! optionally pipelining several requests).
//!
//! Honest by construction:
//! * UDP requests and answers move in batches (sendmmsg / recvmmsg, [`raida_net::mmsg`]), so
//!   the generator spends one syscall per batch, not per datagram, and a figure measures
//!   the server rather than the generator's own syscalls.
//! * Request randomness (nonces, challenges) comes from a ChaCha20 stream seeded once from
//!   the OS: a getrandom syscall per request would again measure the generator.
//! * The server's CPU time is read from `/proc/PID/stat` when its pid is given, and the
//!   generator's own from getrusage, so CPU per request can be compared between servers.
//! * Fixed-rate mode (`rate`) sends on a schedule and measures each latency from when the
//!   request SHOULD have gone out (coordinated-omission correction, as wrk2 does): a stall
//!   of the server shows in the percentiles instead of silently slowing the generator.
//! * Percentiles come from an HdrHistogram (3 significant digits).

use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use raida_proto::client::Routing;
use raida_proto::client::{encode_legacy, encode_modern, ClientKey, HeaderFields, PendingReply, ResponseError};
use raida_proto::codec::Request;
use raida_proto::commands::echo::Echo;
use raida_proto::commands::encrypt_key::EncryptKey;
use raida_proto::commands::get_key::GetKey;
use raida_proto::commands::get_ticket::{GetTicket, TicketRecord};
use raida_proto::commands::post_key::{CoinName, PostKey, KEY_FIELD};
use raida_proto::commands::version::Version;
use raida_proto::CoinId;
use raida_proto::IdentityCoin;
use rand_chacha::ChaCha20Rng;
use rand_core::{OsRng, RngCore, SeedableRng};

use raida_net::mmsg::{RecvBatch, SendBatch, BATCH, MAX_DATAGRAM};
use raida_net::unix_now;

/// Which request the generator sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BenchCommand {
    /// 0/0 Echo.
    Echo,
    /// 0/1 Version.
    Version,
    /// 2/40 Get Ticket for the given coin (one record).
    GetTicket,
    /// 4/41 Post Key of a fresh key id, then 4/43 Get Key of it: a pair per slot. Both
    /// answers come after the part is durable (Post) and its removal is (Get).
    PostGetKey,
    /// 4/44 Encrypt Key: a key ticket for the coin itself (needs EN 4 under that coin).
    EncryptKey,
}

impl BenchCommand {
    /// Name as on the command line.
    pub(crate) fn name(self) -> &'static str {
        match self {
            BenchCommand::Echo => "echo",
            BenchCommand::Version => "version",
            BenchCommand::GetTicket => "get-ticket",
            BenchCommand::PostGetKey => "post-get-key",
            BenchCommand::EncryptKey => "encrypt-key",
        }
    }
}

/// One server to load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BenchTarget {
    pub addr: SocketAddr,
    pub raida_id: u8,
}

/// What to send and how hard.
#[derive(Clone, Debug)]
pub(crate) struct BenchConfig {
    /// Every server loaded at once (slots are spread over them in turn).
    pub targets: Vec<BenchTarget>,
    pub coin_id: u16,
    pub tcp: bool,
    /// UDP: requests in flight. TCP: connections.
    pub concurrency: usize,
    /// TCP: requests written back to back on a connection before reading their answers.
    pub pipeline: usize,
    pub duration: Duration,
    pub key: ClientKey,
    pub command: BenchCommand,
    /// Requests per second in all (fixed-rate mode, UDP); None: as fast as answers come.
    pub rate: Option<f64>,
    /// A request unanswered this long counts as lost and is sent again (UDP).
    pub loss_timeout: Duration,
    /// The server's process id, to read its CPU time from /proc (same machine only).
    pub server_pid: Option<u32>,
}

/// The outcome of a run.
#[derive(Clone, Debug)]
pub(crate) struct BenchReport {
    pub ok: u64,
    pub errors: u64,
    pub lost: u64,
    pub elapsed: Duration,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub p999: Duration,
    pub max: Duration,
    /// The first error answer, as text.
    pub first_error: Option<String>,
    /// The server's CPU time (user + system) during the run, if its pid was given.
    pub server_cpu: Option<Duration>,
    /// The generator's own CPU time during the run.
    pub client_cpu: Duration,
}

impl BenchReport {
    pub(crate) fn requests_per_sec(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Server CPU per successful request.
    pub(crate) fn server_cpu_per_request(&self) -> Option<Duration> {
        self.server_cpu.map(|c| c.div_f64(self.ok.max(1) as f64))
    }

    /// Generator CPU per successful request.
    pub(crate) fn client_cpu_per_request(&self) -> Duration {
        self.client_cpu.div_f64(self.ok.max(1) as f64)
    }
}

/// Live counters for a progress display.
#[derive(Default)]
pub(crate) struct BenchProgress {
    pub done: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum BenchError {
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("the server answered the first request with an error: {0}")]
    Rejected(String),
    #[error("{0}")]
    Config(String),
}

/// Run the benchmark (blocking; call from a thread or `spawn_blocking`).
pub(crate) fn run(cfg: &BenchConfig, progress: &BenchProgress) -> Result<BenchReport, BenchError> {
    if cfg.targets.is_empty() {
        return Err(BenchError::Config("no server to load".into()));
    }
    if matches!(cfg.command, BenchCommand::GetTicket | BenchCommand::EncryptKey) && coin_of(&cfg.key).is_none() {
        return Err(BenchError::Config(format!("{} needs a coin (EN 1 or 4)", cfg.command.name())));
    }
    let server_before = cfg.server_pid.and_then(process_cpu);
    let client_before = own_cpu();
    let mut report = if cfg.tcp { run_tcp(cfg, progress)? } else { run_udp(cfg, progress)? };
    report.server_cpu = match (server_before, cfg.server_pid.and_then(process_cpu)) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    report.client_cpu = own_cpu().saturating_sub(client_before);
    Ok(report)
}

/// CPU time (user + system) of a process from /proc/PID/stat, all its threads included.
pub(crate) fn process_cpu(pid: u32) -> Option<Duration> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // fields after the command name, which is in parentheses and may contain spaces
    let rest = text.get(text.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let hz = clock_ticks_per_second();
    Some(Duration::from_secs_f64((utime + stime) as f64 / hz))
}

fn clock_ticks_per_second() -> f64 {
    #[cfg(unix)]
    {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if hz > 0 {
            return hz as f64;
        }
    }
    100.0
}

/// This process's CPU time (user + system).
fn own_cpu() -> Duration {
    #[cfg(unix)]
    {
        // SAFETY: getrusage writes one rusage into the zeroed struct it is given.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } == 0 {
            let tv = |t: libc::timeval| {
                Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
            };
            return tv(u.ru_utime) + tv(u.ru_stime);
        }
    }
    Duration::ZERO
}

/// A request as the bench sends it: its numbers and its payload.
fn wire<R: Request>(request: &R) -> (u8, u8, Vec<u8>) {
    (R::GROUP, R::COMMAND, request.to_bytes())
}

fn coin_of(key: &ClientKey) -> Option<(CoinId, Option<[u8; 16]>)> {
    match key {
        ClientKey::Coin { coin, an } => Some((*coin, Some(*an.as_bytes()))),
        ClientKey::Token { coin, .. } => Some((*coin, None)),
        _ => None,
    }
}

/// What one slot (one request in flight) is doing.
struct Slot {
    target: usize,
    /// When the request was sent (closed loop) or should have been (fixed rate).
    sent: Instant,
    pending: Option<PendingReply>,
    /// When the request actually went out (loss detection).
    wire_sent: Instant,
    /// Post+Get: the key id posted, while its Get is due.
    key_id: Option<[u8; 16]>,
    /// Post+Get: the request in flight is the Get.
    is_get: bool,
}

impl Slot {
    fn new(target: usize, now: Instant) -> Slot {
        Slot { target, sent: now, wire_sent: now, pending: None, key_id: None, is_get: false }
    }

    /// Account an answer: true when the slot's next request continues a pair (the Get
    /// after its Post), false when it starts afresh.
    fn answered(&mut self, command: BenchCommand, success: bool) -> bool {
        self.pending = None;
        let continues = command == BenchCommand::PostGetKey && success && !self.is_get && self.key_id.is_some();
        if !continues {
            self.key_id = None;
        }
        continues
    }
}

/// Builds requests with echo = slot index, so an answer names its slot.
struct Builder<'a> {
    cfg: &'a BenchConfig,
    rng: ChaCha20Rng,
    ticket_an: [u8; 16],
}

impl<'a> Builder<'a> {
    fn new(cfg: &'a BenchConfig) -> Self {
        let mut ticket_an = [0u8; 16];
        if let ClientKey::Coin { an, .. } = &cfg.key {
            ticket_an = *an.as_bytes();
        }
        Builder {
            cfg,
            rng: ChaCha20Rng::from_rng(OsRng).unwrap_or_else(|_| ChaCha20Rng::from_seed([7; 32])),
            ticket_an,
        }
    }

    /// The next request of `slot` (whose echo is `echo`) into `out`.
    fn build(&mut self, slot: &mut Slot, echo: [u8; 2], out: &mut Vec<u8>) {
        let t = self.cfg.targets[slot.target];
        slot.is_get = false;
        let (group, command, payload) = match self.cfg.command {
            BenchCommand::Echo => wire(&Echo),
            BenchCommand::Version => wire(&Version),
            BenchCommand::GetTicket => {
                let (coin, _) = coin_of(&self.cfg.key).unwrap_or_default();
                wire(&GetTicket { records: vec![TicketRecord { coin, an: self.ticket_an }] })
            }
            BenchCommand::PostGetKey => match slot.key_id {
                Some(key_id) => {
                    slot.is_get = true;
                    wire(&GetKey { key_id })
                }
                None => {
                    let mut id = [0u8; 16];
                    self.rng.fill_bytes(&mut id);
                    let mut pad = [0u8; KEY_FIELD];
                    self.rng.fill_bytes(&mut pad);
                    let none = CoinName { dn: 0, sn: 0 };
                    slot.key_id = Some(id);
                    let part = pad[..16].to_vec();
                    wire(&PostKey::with_part(id, none, [0; 4], none, &pad, 0, &part))
                }
            },
            BenchCommand::EncryptKey => {
                let (coin, _) = coin_of(&self.cfg.key).unwrap_or_default();
                let mut key_part = [0u8; 8];
                self.rng.fill_bytes(&mut key_part);
                wire(&EncryptKey { recipient: IdentityCoin(coin), key_part, target: coin })
            }
        };
        let routing = Routing::new(t.raida_id, self.cfg.coin_id, group, command);
        let mut rnd = [0u8; 20];
        self.rng.fill_bytes(&mut rnd);
        let challenge: [u8; 12] = rnd[8..20].try_into().unwrap_or([0; 12]);
        let (packet, pending) = match &self.cfg.key {
            ClientKey::None => {
                let f = HeaderFields::standard(&routing, 0, [0; 5]);
                let n = [rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], echo[0], echo[1]];
                encode_legacy(&f, n, challenge, &payload, None)
            }
            ClientKey::Coin { coin, an } => {
                let f = HeaderFields::standard(&routing, 1, coin.wire_bytes());
                let n = [rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], echo[0], echo[1]];
                encode_legacy(&f, n, challenge, &payload, Some(an))
            }
            ClientKey::Token { coin, key } => {
                let f = HeaderFields::standard(&routing, 4, coin.wire_bytes());
                let nonce: [u8; 12] = rnd[..12].try_into().unwrap_or([0; 12]);
                encode_modern(&f, [0; 6], echo, nonce, unix_now() as u32, &payload, key)
            }
            other => raida_proto::client::build_request(&routing, other, &payload, unix_now(), &mut self.rng),
        };
        out.clear();
        out.extend_from_slice(&packet);
        slot.pending = Some(pending);
    }
}

fn histogram() -> Result<Histogram<u64>, BenchError> {
    // nanoseconds up to an hour, 3 significant digits (beyond an hour: counted as an hour)
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).map_err(|e| BenchError::Config(format!("histogram: {e}")))
}

fn report(
    h: &Histogram<u64>,
    ok: u64,
    errors: u64,
    lost: u64,
    elapsed: Duration,
    first_error: Option<String>,
) -> BenchReport {
    let q = |p: f64| Duration::from_nanos(if h.is_empty() { 0 } else { h.value_at_quantile(p) });
    BenchReport {
        ok,
        errors,
        lost,
        elapsed,
        p50: q(0.50),
        p90: q(0.90),
        p99: q(0.99),
        p999: q(0.999),
        max: Duration::from_nanos(if h.is_empty() { 0 } else { h.max() }),
        first_error,
        server_cpu: None,
        client_cpu: Duration::ZERO,
    }
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos().min(u64::MAX as u128) as u64
}

fn run_udp(cfg: &BenchConfig, progress: &BenchProgress) -> Result<BenchReport, BenchError> {
    let io = |what: &'static str| move |e| BenchError::Io(what.to_string(), e);
    let v6 = cfg.targets[0].addr.is_ipv6();
    let bind: SocketAddr = if v6 { ([0u16; 8], 0).into() } else { ([0, 0, 0, 0], 0).into() };
    let sock = UdpSocket::bind(bind).map_err(io("bind"))?;
    let sock2 = socket2::SockRef::from(&sock);
    let _ = sock2.set_recv_buffer_size(4 << 20);
    let _ = sock2.set_send_buffer_size(4 << 20);
    let poll = if cfg.rate.is_some() { Duration::from_micros(500) } else { Duration::from_millis(20) };
    sock.set_read_timeout(Some(poll)).map_err(io("socket"))?;
    let k = cfg.concurrency.clamp(1, 65_535);
    let now = Instant::now();
    let mut slots: Vec<Slot> = (0..k).map(|i| Slot::new(i % cfg.targets.len(), now)).collect();
    let mut builder = Builder::new(cfg);
    let mut rx = RecvBatch::new(BATCH, MAX_DATAGRAM);
    let mut tx = SendBatch::new(BATCH);
    let mut hist = histogram()?;
    let (mut ok, mut errors, mut lost) = (0u64, 0u64, 0u64);
    let mut first_error = None;
    // slots with nothing in flight (fixed rate only; a closed loop refills at once)
    let mut free: Vec<usize> = Vec::new();
    let mut send_slot = |slots: &mut [Slot], tx: &mut SendBatch, i: usize, intended: Instant| {
        if tx.is_full() {
            tx.flush(&sock);
        }
        let slot = &mut slots[i];
        builder.build(slot, (i as u16).to_be_bytes(), tx.next_buf());
        slot.sent = intended;
        slot.wire_sent = Instant::now();
        tx.commit(cfg.targets[slot.target].addr);
    };
    let start = Instant::now();
    // fixed rate: request j is due at start + j / rate
    let interval = cfg.rate.filter(|r| *r > 0.0).map(|r| Duration::from_secs_f64(1.0 / r));
    let mut due = start;
    if interval.is_some() {
        free.extend((0..k).rev());
    } else {
        for i in 0..k {
            send_slot(&mut slots, &mut tx, i, Instant::now());
        }
        tx.flush(&sock);
    }
    let mut last_scan = Instant::now();
    while start.elapsed() < cfg.duration {
        if let Some(step) = interval {
            let now = Instant::now();
            while due <= now {
                let Some(i) = free.pop() else { break };
                send_slot(&mut slots, &mut tx, i, due);
                due += step;
            }
            tx.flush(&sock);
        }
        let n = match rx.recv(&sock) {
            Ok(n) => n,
            Err(e) if raida_net::mmsg::is_transient(&e) => 0,
            Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => 0,
            Err(e) => return Err(BenchError::Io("recv".into(), e)),
        };
        let arrived = Instant::now();
        for r in 0..n {
            let (from, answer) = (rx.addr(r), rx.datagram_mut(r));
            let Some(echo) = answer.get(6..8) else { continue };
            let i = u16::from_be_bytes([echo[0], echo[1]]) as usize;
            let Some(slot) = slots.get_mut(i) else { continue };
            if from != Some(cfg.targets[slot.target].addr) {
                continue;
            }
            let Some(pending) = slot.pending.as_ref() else { continue };
            let success = match pending.open(answer) {
                Ok(_) => {
                    ok += 1;
                    hist.saturating_record(nanos(arrived.saturating_duration_since(slot.sent)));
                    true
                }
                Err(e @ ResponseError::Status { .. }) => {
                    if ok == 0 && errors == 0 && interval.is_none() {
                        return Err(BenchError::Rejected(e.to_string()));
                    }
                    errors += 1;
                    first_error.get_or_insert_with(|| e.to_string());
                    false
                }
                // not this request's answer (late, duplicated or forged): ignored
                Err(_) => continue,
            };
            progress.done.fetch_add(1, Ordering::Relaxed);
            let continues = slot.answered(cfg.command, success);
            if interval.is_none() || continues {
                // the Get of a pair follows its Post at once, in both modes
                let intended = if continues && interval.is_some() { slot.sent } else { arrived };
                send_slot(&mut slots, &mut tx, i, intended);
            } else {
                free.push(i);
            }
        }
        tx.flush(&sock);
        if last_scan.elapsed() > Duration::from_millis(100) {
            last_scan = Instant::now();
            for i in 0..k {
                let s = &mut slots[i];
                if s.pending.is_some() && s.wire_sent.elapsed() > cfg.loss_timeout {
                    lost += 1;
                    s.answered(cfg.command, false);
                    send_slot(&mut slots, &mut tx, i, Instant::now());
                }
            }
            tx.flush(&sock);
        }
    }
    Ok(report(&hist, ok, errors, lost, start.elapsed(), first_error))
}

/// What one TCP connection measured.
struct ConnResult {
    hist: Histogram<u64>,
    ok: u64,
    errors: u64,
    first_error: Option<String>,
}

fn run_tcp(cfg: &BenchConfig, progress: &BenchProgress) -> Result<BenchReport, BenchError> {
    use std::io::{Read, Write};
    let k = cfg.concurrency.clamp(1, 4096);
    let depth = cfg.pipeline.clamp(1, 1024);
    let stop = Arc::new(AtomicBool::new(false));
    let mut conns = Vec::with_capacity(k);
    for c in 0..k {
        let addr = cfg.targets[c % cfg.targets.len()].addr;
        let s = TcpStream::connect(addr).map_err(|e| BenchError::Io(format!("connect {addr}"), e))?;
        let _ = s.set_nodelay(true);
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        conns.push((c, s));
    }
    let start = Instant::now();
    let results: Vec<Result<ConnResult, BenchError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = conns
            .into_iter()
            .map(|(c, mut s)| {
                let stop = stop.clone();
                scope.spawn(move || {
                    let mut builder = Builder::new(cfg);
                    let mut slots: Vec<Slot> = (0..depth).map(|_| Slot::new(c % cfg.targets.len(), start)).collect();
                    let mut r = ConnResult { hist: histogram()?, ok: 0, errors: 0, first_error: None };
                    let mut batch = Vec::with_capacity(depth * 256);
                    let mut one = Vec::with_capacity(256);
                    let mut head = [0u8; 32];
                    let mut resp = Vec::with_capacity(256);
                    while !stop.load(Ordering::Relaxed) && start.elapsed() < cfg.duration {
                        batch.clear();
                        for (j, slot) in slots.iter_mut().enumerate() {
                            builder.build(slot, (j as u16).to_be_bytes(), &mut one);
                            batch.extend_from_slice(&one);
                        }
                        let t = Instant::now();
                        s.write_all(&batch).map_err(|e| BenchError::Io("tcp write".into(), e))?;
                        for slot in slots.iter_mut() {
                            s.read_exact(&mut head).map_err(|e| BenchError::Io("tcp read".into(), e))?;
                            let total = raida_proto::header::response_len(&head);
                            resp.clear();
                            resp.extend_from_slice(&head);
                            resp.resize(total, 0);
                            s.read_exact(&mut resp[32..]).map_err(|e| BenchError::Io("tcp read".into(), e))?;
                            let Some(pending) = slot.pending.take() else { continue };
                            // a pair's Get follows its Post in the next round
                            let success = match pending.open(&resp) {
                                Ok(_) => {
                                    r.ok += 1;
                                    r.hist.saturating_record(nanos(t.elapsed()));
                                    true
                                }
                                Err(e) => {
                                    if r.ok == 0 && r.errors == 0 {
                                        return Err(BenchError::Rejected(e.to_string()));
                                    }
                                    r.errors += 1;
                                    r.first_error.get_or_insert_with(|| e.to_string());
                                    false
                                }
                            };
                            slot.answered(cfg.command, success);
                            progress.done.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(r)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(BenchError::Config("thread panicked".into()))))
            .collect()
    });
    let elapsed = start.elapsed();
    let mut hist = histogram()?;
    let (mut ok, mut errors, mut first_error) = (0, 0, None);
    for r in results {
        let r = r?;
        let _ = hist.add(&r.hist);
        ok += r.ok;
        errors += r.errors;
        first_error = first_error.or(r.first_error);
    }
    Ok(report(&hist, ok, errors, 0, elapsed, first_error))
}
