//! Load generator: Echo requests against any RAIDA server (it speaks only the protocol),
//! over UDP with K requests in flight on one socket, or over TCP with K connections.
//! Reports requests/s and latency percentiles.

use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use raida_proto::client::{dn_sn_bytes, encode_legacy, encode_modern, ClientKey, HeaderFields, PendingReply, Routing};
use raida_proto::commands::ids::{ECHO, GROUP_STATUS};
use rand_core::{OsRng, RngCore};

use crate::unix_now;

/// What to send and how hard.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    pub addr: SocketAddr,
    pub raida_id: u8,
    pub coin_id: u16,
    pub tcp: bool,
    /// UDP: requests in flight. TCP: connections (one request in flight each).
    pub concurrency: usize,
    pub duration: Duration,
    pub key: ClientKey,
    /// A request unanswered this long counts as lost and is sent again (UDP).
    pub loss_timeout: Duration,
}

/// The outcome of a run.
#[derive(Clone, Debug)]
pub struct BenchReport {
    pub ok: u64,
    pub errors: u64,
    pub lost: u64,
    pub elapsed: Duration,
    pub p50: Duration,
    pub p99: Duration,
    pub p999: Duration,
    pub max: Duration,
}

impl BenchReport {
    pub fn requests_per_sec(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Live counters for a progress display.
#[derive(Default)]
pub struct BenchProgress {
    pub done: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("the server answered the first Echo with an error: {0}")]
    Rejected(String),
}

fn build(cfg: &BenchConfig, echo: [u8; 2]) -> (Vec<u8>, PendingReply) {
    let routing = Routing::new(cfg.raida_id, cfg.coin_id, GROUP_STATUS, ECHO);
    let mut rnd = [0u8; 24];
    OsRng.fill_bytes(&mut rnd);
    match &cfg.key {
        ClientKey::None => {
            let f = HeaderFields::standard(&routing, 0, [0; 5]);
            let n = [rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], echo[0], echo[1]];
            encode_legacy(&f, n, rnd[8..20].try_into().unwrap_or([0; 12]), &[], None)
        }
        ClientKey::Coin { coin, an } => {
            let f = HeaderFields::standard(&routing, 1, dn_sn_bytes(coin.dn, coin.sn));
            let n = [rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], echo[0], echo[1]];
            encode_legacy(&f, n, rnd[8..20].try_into().unwrap_or([0; 12]), &[], Some(an))
        }
        ClientKey::Token { coin, key } => {
            let f = HeaderFields::standard(&routing, 4, dn_sn_bytes(coin.dn, coin.sn));
            let nonce: [u8; 12] = rnd[..12].try_into().unwrap_or([0; 12]);
            encode_modern(&f, [0; 6], echo, nonce, unix_now() as u32, &[], key)
        }
        other => {
            // any other key: the generic builder (echo chosen by it)
            crate::build_echo_generic(&routing, other)
        }
    }
}

struct Slot {
    sent: Instant,
    pending: Option<PendingReply>,
}

/// Run the benchmark (blocking; call from a thread or `spawn_blocking`).
pub fn run(cfg: &BenchConfig, progress: &BenchProgress) -> Result<BenchReport, BenchError> {
    if cfg.tcp {
        run_tcp(cfg, progress)
    } else {
        run_udp(cfg, progress)
    }
}

fn percentile(sorted: &[u32], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    Duration::from_nanos(sorted[i.min(sorted.len() - 1)] as u64 * 100)
}

fn report(mut lat: Vec<u32>, ok: u64, errors: u64, lost: u64, elapsed: Duration) -> BenchReport {
    lat.sort_unstable();
    BenchReport {
        ok,
        errors,
        lost,
        elapsed,
        p50: percentile(&lat, 0.50),
        p99: percentile(&lat, 0.99),
        p999: percentile(&lat, 0.999),
        max: percentile(&lat, 1.0),
    }
}

/// Latency in units of 100 ns (fits u32 up to 7 minutes).
fn ticks(d: Duration) -> u32 {
    (d.as_nanos() / 100).min(u32::MAX as u128) as u32
}

fn run_udp(cfg: &BenchConfig, progress: &BenchProgress) -> Result<BenchReport, BenchError> {
    let io = |what: &str| {
        let what = what.to_string();
        move |e| BenchError::Io(what, e)
    };
    let bind: SocketAddr = if cfg.addr.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
    let sock = UdpSocket::bind(bind).map_err(io("bind"))?;
    sock.connect(cfg.addr).map_err(io("connect"))?;
    sock.set_read_timeout(Some(Duration::from_millis(20))).map_err(io("socket"))?;
    let k = cfg.concurrency.clamp(1, 65_535);
    let mut slots: Vec<Slot> = (0..k).map(|_| Slot { sent: Instant::now(), pending: None }).collect();
    let mut buf = vec![0u8; 65_536];
    let mut lat = Vec::with_capacity(1 << 20);
    let (mut ok, mut errors, mut lost) = (0u64, 0u64, 0u64);
    let send = |slot: &mut Slot, i: usize| -> Result<(), BenchError> {
        let (packet, pending) = build(cfg, (i as u16).to_be_bytes());
        slot.pending = Some(pending);
        slot.sent = Instant::now();
        sock.send(&packet).map_err(|e| BenchError::Io("send".into(), e))?;
        Ok(())
    };
    let start = Instant::now();
    for (i, s) in slots.iter_mut().enumerate() {
        send(s, i)?;
    }
    let mut last_scan = Instant::now();
    while start.elapsed() < cfg.duration {
        match sock.recv(&mut buf) {
            Ok(n) if n >= 8 => {
                let i = u16::from_be_bytes([buf[6], buf[7]]) as usize;
                if let Some(slot) = slots.get_mut(i) {
                    if let Some(p) = slot.pending.take() {
                        match p.open(&buf[..n]) {
                            Ok(_) => {
                                ok += 1;
                                lat.push(ticks(slot.sent.elapsed()));
                            }
                            Err(e) => {
                                if ok == 0 && errors == 0 {
                                    return Err(BenchError::Rejected(e.to_string()));
                                }
                                errors += 1;
                            }
                        }
                        progress.done.fetch_add(1, Ordering::Relaxed);
                        send(slot, i)?;
                    }
                }
            }
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => return Err(BenchError::Io("recv".into(), e)),
        }
        if last_scan.elapsed() > Duration::from_millis(100) {
            last_scan = Instant::now();
            for (i, s) in slots.iter_mut().enumerate() {
                if s.pending.is_some() && s.sent.elapsed() > cfg.loss_timeout {
                    lost += 1;
                    send(s, i)?;
                }
            }
        }
    }
    Ok(report(lat, ok, errors, lost, start.elapsed()))
}

/// What one TCP connection measured.
#[derive(Default)]
struct ConnResult {
    lat: Vec<u32>,
    ok: u64,
    errors: u64,
}

fn run_tcp(cfg: &BenchConfig, progress: &BenchProgress) -> Result<BenchReport, BenchError> {
    use std::io::{Read, Write};
    let k = cfg.concurrency.clamp(1, 4096);
    let stop = Arc::new(AtomicBool::new(false));
    let mut conns = Vec::with_capacity(k);
    for _ in 0..k {
        let s = TcpStream::connect(cfg.addr).map_err(|e| BenchError::Io(format!("connect {}", cfg.addr), e))?;
        let _ = s.set_nodelay(true);
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        conns.push(s);
    }
    let start = Instant::now();
    let results: Vec<Result<ConnResult, BenchError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = conns
            .into_iter()
            .enumerate()
            .map(|(c, mut s)| {
                let stop = stop.clone();
                scope.spawn(move || {
                    let mut lat = Vec::new();
                    let (mut ok, mut errors) = (0u64, 0u64);
                    let mut head = [0u8; 32];
                    let mut resp = Vec::with_capacity(256);
                    while !stop.load(Ordering::Relaxed) && start.elapsed() < cfg.duration {
                        let (packet, pending) = build(cfg, (c as u16).to_be_bytes());
                        let t = Instant::now();
                        s.write_all(&packet).map_err(|e| BenchError::Io("tcp write".into(), e))?;
                        s.read_exact(&mut head).map_err(|e| BenchError::Io("tcp read".into(), e))?;
                        let total = raida_proto::client::response_size(&head);
                        resp.clear();
                        resp.extend_from_slice(&head);
                        resp.resize(total, 0);
                        s.read_exact(&mut resp[32..]).map_err(|e| BenchError::Io("tcp read".into(), e))?;
                        match pending.open(&resp) {
                            Ok(_) => {
                                ok += 1;
                                lat.push(ticks(t.elapsed()));
                            }
                            Err(e) => {
                                if ok == 0 && errors == 0 {
                                    return Err(BenchError::Rejected(e.to_string()));
                                }
                                errors += 1;
                            }
                        }
                        progress.done.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(ConnResult { lat, ok, errors })
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Ok(ConnResult::default()))).collect()
    });
    let elapsed = start.elapsed();
    let mut lat = Vec::new();
    let (mut ok, mut errors) = (0, 0);
    for r in results {
        let r = r?;
        lat.extend(r.lat);
        ok += r.ok;
        errors += r.errors;
    }
    Ok(report(lat, ok, errors, 0, elapsed))
}
