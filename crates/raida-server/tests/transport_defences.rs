//! Issue 9, the transport under attack: reflection loops between two servers (section 2),
//! UDP error answers per source address, low source ports, TCP connection caps per
//! address / subnet / in all with idle eviction and a lifetime cap, heavy commands off the
//! receiving threads, and separate concurrency limits per deferred command kind.
//! Every loop is bounded by count and time; traffic only to loopback (127.0.0.0/8).

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Harness, TestState};
use raida_client::read_response;
use raida_proto::client::{build_request, ClientKey, PendingReply, Routing};
use raida_proto::codec::Codec;
use raida_proto::commands::post_key::{self, CoinName};
use raida_proto::commands::{decrypt_raida_key, get_key, get_ticket, key_alert};
use raida_proto::Status;
use raida_proto::{CoinId, IdentityCoin};
use raida_server::dispatch::Handler;
use raida_server::ledger::{CoinUpdate, Fault, Ledger, MemoryLedger};
use raida_server::WorkKind;
use raida_server::{Answer, KeyAlertSettings, KeyServer, ServerLimits, ServerState, ServerStateBuilder};
use raida_server::{Outcome, Transport};
use rand_core::{OsRng, RngCore};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream, UdpSocket};

const RAIDA: u8 = 5;
const COIN_ID: u16 = 6;
const AN_A: [u8; 16] = [0xA1; 16];

fn now() -> u64 {
    raida_client::unix_now()
}

fn ledger() -> MemoryLedger {
    let l = MemoryLedger::with_coins([((1, 100), (AN_A, 40))]);
    l.identities.write().insert(IdentityCoin(CoinId { dn: 1, sn: 500 }), [[0x11; 16]; 25]);
    l
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

impl Harness {
    async fn start(tweak: impl FnOnce(&mut ServerStateBuilder), limits: ServerLimits) -> Harness {
        Harness::launch(RAIDA, COIN_ID, ledger(), tweak, limits).await
    }
}

fn limits() -> ServerLimits {
    ServerLimits { udp_threads: 2, drain_timeout: Duration::from_secs(1), ..ServerLimits::default() }
}

fn request(group: u8, command: u8, payload: &[u8]) -> (Vec<u8>, PendingReply) {
    build_request(&Routing::new(RAIDA, COIN_ID, group, command), &ClientKey::None, payload, now(), &mut OsRng)
}

fn echo() -> (Vec<u8>, PendingReply) {
    request(0, 0, &[])
}

/// Send one datagram from `sock` and wait up to `wait` for the datagram answering it.
async fn udp_call(sock: &UdpSocket, to: SocketAddr, packet: &[u8], wait: Duration) -> Option<Vec<u8>> {
    sock.send_to(packet, to).await.unwrap();
    let mut buf = vec![0u8; 70_000];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
            Ok(Ok(n)) if n >= 8 && buf[6..8] == packet[30..32] => return Some(buf[..n].to_vec()),
            Ok(Ok(_)) => continue, // an answer to an earlier request
            _ => return None,
        }
    }
}

async fn udp_from(source: &str) -> UdpSocket {
    UdpSocket::bind((ip(source), 0)).await.unwrap()
}

async fn tcp_from(source: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind((ip(source), 0).into())?;
    s.connect(to).await
}

/// One Echo over an open connection; false when the server closed it (or said nothing).
async fn tcp_echo(s: &mut TcpStream) -> bool {
    let (p, pending) = echo();
    if s.write_all(&p).await.is_err() {
        return false;
    }
    match tokio::time::timeout(Duration::from_secs(3), read_response(s)).await {
        Ok(Ok(r)) => pending.open(&r).map(|r| r.status == Status::Success).unwrap_or(false),
        _ => false,
    }
}

async fn tcp_call(s: &mut TcpStream, packet: &[u8], wait: Duration) -> Option<Vec<u8>> {
    s.write_all(packet).await.ok()?;
    tokio::time::timeout(wait, read_response(s)).await.ok()?.ok()
}

// ---------------------------------------------------------------------------------------
// 1. Reflection loops
// ---------------------------------------------------------------------------------------

/// Deliver `first` to `a` as if `b` had sent it (spoofed), then each answer to the other
/// server as a request, as two servers on the network would; the number of answers sent.
async fn bounce(a: &Arc<ServerState>, b: &Arc<ServerState>, first: Vec<u8>, max_steps: usize) -> usize {
    let addr_a: SocketAddr = "127.0.0.1:50001".parse().unwrap();
    let addr_b: SocketAddr = "127.0.0.2:50002".parse().unwrap();
    let mut packet = first;
    let mut to_a = true;
    let mut answers = 0;
    for _ in 0..max_steps {
        let (server, from) = if to_a { (a, addr_b) } else { (b, addr_a) };
        let mut out = Vec::new();
        let sent = match server.handle_from(Transport::Udp, &mut packet, from, &mut out) {
            Outcome::Reply => true,
            Outcome::Drop => false,
            Outcome::Deferred(d) => {
                let (status, answer) = d.answer(server.clone()).await;
                out = answer;
                server.may_answer(Transport::Udp, from, status)
            }
        };
        if !sent {
            break;
        }
        answers += 1;
        packet = out;
        to_a = !to_a;
    }
    answers
}

/// Spoofed datagrams worth trying: valid requests of every command, every header fault,
/// answers of a RAIDA, and random bytes.
fn spoofed_datagrams(to: u8) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    let req = |g: u8, c: u8, p: &[u8]| {
        build_request(&Routing::new(to, COIN_ID, g, c), &ClientKey::None, p, now(), &mut OsRng).0
    };
    for (g, c, p) in [
        (0u8, 0u8, vec![]),
        (0, 1, vec![]),
        (0, 2, vec![0; 16]),
        (
            2,
            40,
            get_ticket::GetTicket {
                records: vec![get_ticket::TicketRecord { coin: CoinId { dn: 1, sn: 100 }, an: AN_A }],
            }
            .to_bytes(),
        ),
        (2, 50, vec![3, 0, 0, 0, 1]),
        (
            4,
            41,
            post_key::PostKey::with_part(
                [7; 16],
                CoinName { dn: 0, sn: 0 },
                [0; 4],
                CoinName { dn: 0, sn: 0 },
                &[1; 128],
                0,
                &[0xFF; 4],
            )
            .to_bytes(),
        ),
        (4, 43, get_key::GetKey { key_id: [8; 16] }.to_bytes()),
        (4, 44, vec![0; 18]),
        (
            4,
            45,
            decrypt_raida_key::DecryptRaidaKey { coin: IdentityCoin(CoinId { dn: 1, sn: 500 }), records: vec![] }
                .to_bytes(),
        ),
        (
            4,
            42,
            key_alert::KeyAlert { entries: vec![key_alert::AlertEntry::new([9; 16], ip("127.0.0.1"), 1, 1)] }
                .to_bytes(),
        ),
    ] {
        v.push(req(g, c, &p));
    }
    let base = req(0, 0, &[]);
    for f in [
        |p: &mut Vec<u8>| p[0] = 2,
        |p: &mut Vec<u8>| p[1] = 1,
        |p: &mut Vec<u8>| p[2] ^= 1,
        |p: &mut Vec<u8>| p[4] = 14,
        |p: &mut Vec<u8>| p[3] = 4,
        |p: &mut Vec<u8>| p[5] = 99,
        |p: &mut Vec<u8>| p[7] ^= 1,
        |p: &mut Vec<u8>| p[16] = 3,
        |p: &mut Vec<u8>| p[32] ^= 1,
        |p: &mut Vec<u8>| p.push(0),
    ] {
        let mut p = base.clone();
        f(&mut p);
        v.push(p);
    }
    // a RAIDA's answers: header only, every status, as RAIDA 1 (whose id passes the version rule)
    for status in 0..=255u8 {
        let mut p = vec![0u8; 32];
        p[0] = 1;
        p[2] = status;
        p[5] = 1;
        v.push(p);
    }
    for _ in 0..200 {
        let n = 32 + (OsRng.next_u32() as usize % 200);
        let mut p = vec![0u8; n];
        OsRng.fill_bytes(&mut p);
        p[0] = 1;
        p[1] = 0;
        p[2] = to;
        v.push(p);
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_spoofed_datagram_between_two_servers_dies_out() {
    const MAX_STEPS: usize = 10_000;
    let started = Instant::now();
    // every pair of RAIDA ids where one passes the other's version rule, and a few more
    let mut pairs: Vec<(u8, u8)> = (0..25u8).filter(|&b| b != 1).flat_map(|b| [(1, b), (b, 1)]).collect();
    pairs.extend([(0, 2), (3, 4), (24, 23)]);
    let (mut runs, mut total, mut worst) = (0usize, 0usize, 0usize);
    for (ia, ib) in pairs {
        if started.elapsed() > Duration::from_secs(20) {
            break;
        }
        let ta = TestState::build(ia, COIN_ID, ledger(), now(), |s| s.clock = raida_server::system_clock());
        let tb = TestState::build(ib, COIN_ID, ledger(), now(), |s| s.clock = raida_server::system_clock());
        for first in spoofed_datagrams(ia) {
            let n = bounce(&ta.state, &tb.state, first, MAX_STEPS).await;
            runs += 1;
            total += n;
            worst = worst.max(n);
        }
    }
    eprintln!("reflection: {runs} spoofed datagrams, {total} answers in total, at most {worst} from one");
    assert!(runs > 1000, "{runs}");
    // the spoofed request's own answer, its answer's answer, and at most one more
    assert!(worst <= 3, "one spoofed datagram made {worst} answers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_faults_are_dropped_over_udp_but_answered_over_tcp() {
    let h = Harness::start(|_| {}, limits()).await;
    let sock = udp_from("127.0.0.1").await;
    for (name, f) in [
        ("version 255", (|p: &mut Vec<u8>| p[0] = 2) as fn(&mut Vec<u8>)),
        ("split id 2", |p: &mut Vec<u8>| p[1] = 1),
        ("raida id 3", |p: &mut Vec<u8>| p[2] = RAIDA + 1),
    ] {
        let (mut p, _) = echo();
        f(&mut p);
        let dropped = h.state.stats().dropped.load(Ordering::Relaxed);
        assert!(udp_call(&sock, h.addr, &p, Duration::from_secs(1)).await.is_none(), "{name} over UDP");
        assert!(h.state.stats().dropped.load(Ordering::Relaxed) > dropped, "{name}: counted as dropped");
        let mut s = TcpStream::connect(h.addr).await.unwrap();
        let r = tcp_call(&mut s, &p, Duration::from_secs(3)).await.expect("answered over TCP");
        let want = [Status::InvalidRouting, Status::InvalidSplitId, Status::InvalidRaidaId];
        assert!(want.iter().any(|w| w.code() == r[2]), "{name}: status {}", r[2]);
    }
    // the next fault in rule order (group) is still answered over UDP
    let (mut p, _) = echo();
    p[4] = 14;
    let r = udp_call(&sock, h.addr, &p, Duration::from_secs(3)).await.expect("group fault answered");
    assert_eq!(r[2], Status::InvalidCommandGroup.code());
    h.stop().await;
}

/// A datagram from a source port below 1024 is dropped before any work (reflection toward
/// a service port); the same request from an ordinary port is answered. Needs root (or
/// CAP_NET_BIND_SERVICE) to bind the low port, and fails saying so instead of skipping.
///
/// Seen failing with the low-port check removed from `ServerState::handle_from`: 3 of 3 runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_port_below_1024_is_never_answered() {
    let h = Harness::start(|_| {}, limits()).await;
    let mut low = None;
    for port in (600..1024u16).rev() {
        if let Ok(s) = UdpSocket::bind(("127.0.0.1", port)).await {
            low = Some(s);
            break;
        }
    }
    // No skipping: a run that cannot bind a low port has not tested this defence.
    let low = low.expect(
        "cannot bind a UDP port below 1024 on 127.0.0.1: this test needs root or CAP_NET_BIND_SERVICE (CI runs as root)",
    );
    let dropped = h.state.stats().dropped.load(Ordering::Relaxed);
    let (p, _) = echo();
    assert!(udp_call(&low, h.addr, &p, Duration::from_secs(1)).await.is_none(), "answered a low port");
    assert_eq!(h.state.stats().dropped.load(Ordering::Relaxed), dropped + 1);
    assert_eq!(h.state.stats().requests_for(0, 0), 0, "dropped before any work");
    // the same request from an ordinary port is answered
    let high = udp_from("127.0.0.1").await;
    assert!(udp_call(&high, h.addr, &p, Duration::from_secs(3)).await.is_some());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_error_answers_are_rate_limited_per_source_address() {
    const LIMIT: u32 = 20;
    const SENT: usize = 300;
    let h = Harness::start(|_| {}, ServerLimits { udp_error_rate_per_addr: LIMIT, ..limits() }).await;
    let abuser = udp_from("127.0.0.1").await;
    // wrong coin id: 7, an error answer that passes the routing rules
    let bad = || {
        let (mut p, _) = echo();
        p[7] ^= 1;
        p
    };
    let started = Instant::now();
    for _ in 0..SENT {
        abuser.send_to(&bad(), h.addr).await.unwrap();
    }
    let mut answers = 0usize;
    let mut buf = vec![0u8; 2048];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(1), abuser.recv(&mut buf)).await {
        assert_eq!(buf[2], Status::InvalidCoinId.code(), "{n}");
        answers += 1;
    }
    let windows = started.elapsed().as_secs() as usize + 2;
    eprintln!("rate limit {LIMIT}/s: {SENT} error requests -> {answers} answers");
    assert!(answers >= 1 && answers <= LIMIT as usize * windows, "{answers} answers");
    assert!(answers < SENT);
    // another address is still answered, errors included
    let other = udp_from("127.0.0.2").await;
    let r = udp_call(&other, h.addr, &bad(), Duration::from_secs(3)).await.expect("other address answered");
    assert_eq!(r[2], Status::InvalidCoinId.code());
    // and the abuser's successful requests are not limited
    let (p, pending) = echo();
    let r = udp_call(&abuser, h.addr, &p, Duration::from_secs(3)).await.expect("success still answered");
    assert_eq!(pending.open(&r).unwrap().status, Status::Success);
    h.stop().await;
}

// ---------------------------------------------------------------------------------------
// 2. TCP connections
// ---------------------------------------------------------------------------------------

/// Twenty connections from five addresses of one /24 never make the table hold more than
/// the /24's 8 (later addresses take the places of earlier ones, fairly: issue 19 item 8),
/// an address of that /24 holding nothing is still served, and so is another /24.
/// Seen failing with the per-subnet cap removed: "the /24 holds 9 connections, over 8".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_one_subnet_cannot_take_every_connection() {
    let l = ServerLimits { max_connections_per_ip: 4, max_connections_per_subnet: 8, ..limits() };
    let h = Harness::start(|_| {}, l).await;
    let table = h.running().connection_table().clone();
    let in_subnet = || table.live_in_subnet(ip("127.0.0.1"));
    // an abuser with five addresses in 127.0.0.0/24, 4 connections each
    let mut held = Vec::new();
    let mut served = 0;
    for host in 1..=5 {
        for _ in 0..4 {
            let Ok(mut s) = tcp_from(&format!("127.0.0.{host}"), h.addr).await else { continue };
            if tcp_echo(&mut s).await {
                served += 1;
            }
            held.push(s);
            assert!(in_subnet() <= 8, "the /24 holds {} connections, over 8", in_subnet());
        }
    }
    assert!(served >= 8, "{served} of 20 answered");
    assert_eq!(in_subnet(), 8, "the /24 holds 8 connections");
    // an address of that /24 holding nothing is served, the /24 still holds 8
    let mut same = tcp_from("127.0.0.9", h.addr).await.unwrap();
    assert!(tcp_echo(&mut same).await, "a newcomer of the full /24");
    assert_eq!(in_subnet(), 8, "the /24 holds {} connections, over 8", in_subnet());
    let mut other = tcp_from("127.0.1.1", h.addr).await.unwrap();
    assert!(tcp_echo(&mut other).await, "another /24 is served");
    drop(held);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_full_table_closes_the_longest_idle_connection_for_a_new_one() {
    const TOTAL: usize = 8;
    let h = Harness::start(|_| {}, ServerLimits { max_connections: TOTAL, ..limits() }).await;
    assert_eq!(h.running().tcp_connection_limit(), TOTAL);
    // an abuser from 8 subnets fills the table with connections that then say nothing
    let mut idle = Vec::new();
    for net in 1..=TOTAL {
        let mut s = tcp_from(&format!("127.0.{net}.1"), h.addr).await.unwrap();
        assert!(tcp_echo(&mut s).await);
        idle.push(s);
        tokio::time::sleep(Duration::from_millis(5)).await; // distinct idle ages
    }
    // a new client is served: the longest-idle connection made room
    let mut client = tcp_from("127.0.100.1", h.addr).await.unwrap();
    assert!(tcp_echo(&mut client).await, "new client served while the table was full");
    assert!(!tcp_echo(&mut idle[0]).await, "the longest-idle connection was closed");
    // the others are still open
    assert!(tcp_echo(&mut idle[TOTAL - 1]).await);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connection_lifetime_is_capped() {
    let h = Harness::start(|_| {}, ServerLimits { connection_lifetime: Duration::from_millis(800), ..limits() }).await;
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    let mut answered = 0;
    let mut closed = false;
    for _ in 0..60 {
        if !tcp_echo(&mut s).await {
            closed = true;
            break;
        }
        answered += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(answered >= 1);
    assert!(closed, "a busy connection outlived its lifetime ({answered} answers)");
    h.stop().await;
}

// ---------------------------------------------------------------------------------------
// 3. Descriptors
// ---------------------------------------------------------------------------------------

/// Set in the child that [`descriptor_limit_is_raised_and_connections_leave_the_reserve`]
/// starts: its own process, so lowering RLIMIT_NOFILE there touches no other test.
const DESCRIPTOR_CHILD: &str = "RAIDA_TEST_DESCRIPTOR_CHILD";
/// Low enough that the reserve decides the connection count (below `max_connections` 4,096).
const CHILD_SOFT: u64 = 512;
const CHILD_HARD: u64 = 2000;

/// In the child: lower RLIMIT_NOFILE to 512 / 2,000, start a server, check that it raised
/// the soft limit to the hard one and left the reserve out of its connections, and print
/// `descriptors ok`. In the parent's own run (no environment variable): nothing.
#[test]
fn descriptor_child() {
    if std::env::var_os(DESCRIPTOR_CHILD).is_none() {
        return;
    }
    rlimit::setrlimit(rlimit::Resource::NOFILE, CHILD_SOFT, CHILD_HARD)
        .expect("cannot set RLIMIT_NOFILE to 512 / 2,000 in the child");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let h = Harness::start(|_| {}, limits()).await;
        let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
        assert_eq!((soft, hard), (CHILD_HARD, CHILD_HARD), "the soft limit is raised to the hard one");
        let l = limits();
        let slots = l.max_key_alerts + l.max_durable_commands + l.max_heavy_commands;
        let reserve = raida_server::descriptor_reserve(slots, l.udp_threads);
        let n = h.running().tcp_connection_limit();
        assert!(n < l.max_connections, "the descriptors, not max_connections, must bound the table here: {n}");
        assert!(n as u64 + reserve <= soft, "{n} connections + {reserve} reserve > {soft} descriptors");
        assert!(n > 1000, "only {n} connections of {soft} descriptors ({reserve} reserve)");
        println!("descriptors ok: {n} connections + {reserve} reserve <= {soft}");
        h.stop().await;
    });
}

/// The server raises the soft descriptor limit to the hard one and sizes its TCP table so
/// that the reserve (store, deferred slots, UDP threads) stays free. Run in a child with a
/// soft / hard limit of 512 / 2,000, where the reserve decides (at this process's own hard
/// limit 4,096 connections plus any reserve fit, and the test proved nothing).
///
/// Seen failing with the reserve removed (`connection_budget` not subtracting it):
/// 3 of 3 runs ("2000 connections + 774 reserve > 2000 descriptors").
#[test]
fn descriptor_limit_is_raised_and_connections_leave_the_reserve() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "descriptor_child", "--nocapture", "--test-threads=1"])
        .env(DESCRIPTOR_CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("descriptors ok"),
        "child failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}

// ---------------------------------------------------------------------------------------
// 4. Heavy commands
// ---------------------------------------------------------------------------------------

#[test]
fn get_ticket_and_decrypt_with_many_records_are_heavy() {
    let t = TestState::new(RAIDA, COIN_ID, ledger(), now());
    let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let rec = get_ticket::TicketRecord { coin: CoinId { dn: 1, sn: 100 }, an: AN_A };
    let dec = decrypt_raida_key::DecryptRecord {
        coin_id: COIN_ID,
        split_id: 0,
        raida_id: 1,
        shard: 0,
        target: CoinId { dn: 1, sn: 100 },
        ticket: [0; 16],
    };
    let kind = |group, command, payload: Vec<u8>| {
        let (mut p, _) = build_request(
            &Routing::new(RAIDA, COIN_ID, group, command),
            &ClientKey::None,
            &payload,
            t.now(),
            &mut OsRng,
        );
        match t.state.handle_from(Transport::Udp, &mut p, peer, &mut Vec::new()) {
            Outcome::Reply => None,
            Outcome::Drop => panic!("dropped"),
            Outcome::Deferred(d) => Some(d.kind()),
        }
    };
    assert_eq!(kind(2, 40, get_ticket::GetTicket { records: vec![rec; 64] }.to_bytes()), None);
    assert_eq!(kind(2, 40, get_ticket::GetTicket { records: vec![rec; 65] }.to_bytes()), Some(WorkKind::Heavy));
    let decrypt = |n: usize| {
        let coin = IdentityCoin(CoinId { dn: 1, sn: 500 });
        decrypt_raida_key::DecryptRaidaKey { coin, records: vec![dec; n] }.to_bytes()
    };
    assert_eq!(kind(4, 45, decrypt(64)), Some(WorkKind::Durable));
    assert_eq!(kind(4, 45, decrypt(65)), Some(WorkKind::Heavy));
    assert_eq!(kind(4, 41, vec![0; 167]), Some(WorkKind::Durable));
    assert_eq!(
        kind(
            4,
            42,
            key_alert::KeyAlert { entries: vec![key_alert::AlertEntry::new([1; 16], peer.ip(), 1, 1)] }.to_bytes()
        ),
        Some(WorkKind::KeyAlert)
    );
}

/// Status 45 (more than 4,096 Get Ticket records) cannot be provoked over the wire: the
/// body length field is 16 bits, so an EN 0 request (16-byte challenge, 2-byte terminator)
/// carries at most (65,535 - 18) / 21 = 3,119 records over TCP, and an IPv4 datagram (65,507
/// bytes with the 32-byte header) at most 3,117; EN 4/5/7 (16-byte tag) the same over TCP
/// and fewer over UDP. The handler's rule is tested directly
/// (`commands.rs::get_ticket_too_many_records`); here the largest request each transport
/// can carry is answered with what it gets (243: every record judged, only the last, the
/// one with the right AN, passed), not dropped, refused or cut.
///
/// Seen failing with `MAX_COINS_PER_TICKET` lowered to 3,000: 3 of 3 runs (the arithmetic
/// check, now made at compile time), and with that check commented out 1 of 1 runs (45 over
/// UDP).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_get_ticket_each_transport_carries_is_answered() {
    const TCP_MAX: usize = (u16::MAX as usize - 16 - 2) / get_ticket::RECORD;
    const UDP_MAX: usize = (65_507 - 32 - 16 - 2) / get_ticket::RECORD;
    assert_eq!((TCP_MAX, UDP_MAX), (3119, 3117));
    // 45 would be reachable over TCP otherwise (checked at compile time)
    const _: () = assert!(TCP_MAX < raida_proto::consts::MAX_COINS_PER_TICKET);
    let h = Harness::start(|_| {}, limits()).await;
    let records = |n: usize| {
        let wrong = get_ticket::TicketRecord { coin: CoinId { dn: 1, sn: 100 }, an: [0; 16] };
        let mut v = vec![wrong; n - 1];
        v.push(get_ticket::TicketRecord { coin: CoinId { dn: 1, sn: 100 }, an: AN_A });
        get_ticket::GetTicket { records: v.to_vec() }.to_bytes()
    };
    let check = |r: Option<Vec<u8>>, pending: PendingReply, n: usize, transport: &str| {
        let r = r.unwrap_or_else(|| panic!("{transport}: {n} records not answered"));
        let reply = pending.open(&r).unwrap_or_else(|e| panic!("{transport}: {e:?}"));
        assert_eq!(reply.status, Status::Mixed, "{transport}: {n} records");
        // one pass bit per record, then the ticket: only the last record's bit is set
        assert_eq!(reply.payload.len(), n.div_ceil(8) + 4, "{transport}: {n} records");
        let bits = &reply.payload[..n.div_ceil(8)];
        let set: Vec<usize> = (0..n).filter(|i| bits[i / 8] & (1 << (i % 8)) != 0).collect();
        assert_eq!(set, [n - 1], "{transport}: passes");
    };
    let (p, pending) = request(2, 40, &records(UDP_MAX));
    assert_eq!(p.len(), 65_507, "the largest IPv4 datagram");
    let sock = udp_from("127.0.0.1").await;
    check(udp_call(&sock, h.addr, &p, Duration::from_secs(10)).await, pending, UDP_MAX, "udp");
    let (p, pending) = request(2, 40, &records(TCP_MAX));
    assert_eq!(raida_proto::header::body_length(&p), 65_517, "within the 16-bit body length");
    let mut s = tcp_from("127.0.0.1", h.addr).await.unwrap();
    check(tcp_call(&mut s, &p, Duration::from_secs(10)).await, pending, TCP_MAX, "tcp");
    h.stop().await;
}

/// A store whose coin reads are slow, like a page load from a cold disk: every `coin_an`
/// waits `SLOW_READ` first. Installed through `ServerState::ledger` (the server's only hook
/// into its data), so Get Ticket runs its real handler and is slow because of its records.
struct SlowLedger(Arc<dyn Ledger>);

const SLOW_READ: Duration = Duration::from_micros(200);

impl Ledger for SlowLedger {
    fn coin_an(&self, coin: CoinId) -> Result<Option<raida_proto::Key16>, Fault> {
        std::thread::sleep(SLOW_READ);
        self.0.coin_an(coin)
    }
    fn locker_an(&self, prefix: &[u8; 5]) -> Result<Option<[u8; 16]>, Fault> {
        self.0.locker_an(prefix)
    }
    fn token_secret(&self, token: CoinId) -> Result<Option<[u8; 32]>, Fault> {
        self.0.token_secret(token)
    }
    fn raida_secret(&self, sender: u8, key_id: u32) -> Result<Option<[u8; 32]>, Fault> {
        self.0.raida_secret(sender, key_id)
    }
    fn identity_coin(&self, coin: IdentityCoin) -> Result<Option<raida_proto::consts::AnsPerRaida>, Fault> {
        self.0.identity_coin(coin)
    }
    fn write_coins(&self, updates: &[CoinUpdate]) -> Result<(), raida_server::ledger::LedgerError> {
        self.0.write_coins(updates)
    }
    fn page_stats(&self) -> (u64, u64) {
        self.0.page_stats()
    }
    fn flush(&self) -> Result<(), raida_server::ledger::LedgerError> {
        self.0.flush()
    }
}

/// Real Get Tickets of 3,000 records each (about 0.6 s of slow page reads apiece) flood a
/// server with ONE UDP socket (so the Echo client cannot land on a socket the flood does not
/// use); another client's Echo must still be answered, because Get Ticket above 64 records
/// runs as heavy work off the receiving thread (and beyond `max_heavy_commands` gets 160).
///
/// Seen failing with heavy routing removed (`DispatchTable::is_heavy` returning false):
/// 3 of 3 runs (Echo answered 0 of 10; with it 10 of 10).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_heavy_commands_does_not_starve_echo() {
    const RECORDS: usize = 3000;
    let h = Harness::start(
        |s| s.ledger = Arc::new(SlowLedger(s.ledger.clone())),
        ServerLimits { max_heavy_commands: 2, udp_threads: 1, ..limits() },
    )
    .await;
    let addr = h.addr;
    // a present coin with a wrong AN: every record is read, none passes, no ticket is issued
    let rec = get_ticket::TicketRecord { coin: CoinId { dn: 1, sn: 100 }, an: [0; 16] };
    let payload = get_ticket::GetTicket { records: vec![rec; RECORDS] }.to_bytes();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood_stop = stop.clone();
    let flood = tokio::spawn(async move {
        let sock = udp_from("127.0.0.1").await;
        let started = Instant::now();
        let mut sent = 0usize;
        while started.elapsed() < Duration::from_secs(20) && !flood_stop.load(Ordering::Relaxed) {
            for _ in 0..10 {
                let (p, _) = request(2, 40, &payload);
                let _ = sock.send_to(&p, addr).await;
                sent += 1;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        sent
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let client = udp_from("127.0.0.2").await;
    let mut answered = 0;
    for _ in 0..10 {
        let (p, pending) = echo();
        if let Some(r) = udp_call(&client, addr, &p, Duration::from_secs(1)).await {
            if pending.open(&r).is_ok_and(|r| r.status == Status::Success) {
                answered += 1;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let sent = flood.await.unwrap();
    let heavy = h.state.stats().requests_for(2, 40);
    eprintln!("heavy flood: {sent} Get Tickets of {RECORDS} records ({heavy} counted); echo answered {answered}/10");
    assert!(heavy >= 1, "the flood reached Get Ticket");
    assert!(answered >= 8, "echo answered {answered} of 10 during the flood");
    h.stop().await;
}

// ---------------------------------------------------------------------------------------
// 5. Concurrency limits per kind
// ---------------------------------------------------------------------------------------

fn alert_packet(silent: SocketAddr) -> (Vec<u8>, PendingReply) {
    let mut id = [0u8; 16];
    OsRng.fill_bytes(&mut id);
    let entry = key_alert::AlertEntry::new(id, silent.ip(), silent.port(), 7);
    request(4, 42, &key_alert::KeyAlert { entries: vec![entry] }.to_bytes())
}

fn post_packet() -> (Vec<u8>, PendingReply) {
    let mut id = [0u8; 16];
    OsRng.fill_bytes(&mut id);
    let none = CoinName { dn: 0, sn: 0 };
    request(4, 41, &post_key::PostKey::with_part(id, none, [0; 4], none, &[1; 128], 0, &[0xFF; 4]).to_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::needless_update)] // KeyAlertSettings may grow fields this test leaves at their defaults
async fn a_flood_of_key_alerts_that_never_complete_does_not_stop_post_key() {
    const ALERTS: usize = 8;
    // a key server that takes every Get Key and never answers
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let h = Harness::start(
        |s| {
            s.key_alert = KeyAlertSettings {
                key_servers: vec![KeyServer::new(7, silent_addr, false)],
                identity: Some(IdentityCoin(CoinId { dn: 1, sn: 500 })),
                timeout: Duration::from_secs(20),
                ..Default::default()
            };
        },
        ServerLimits { max_key_alerts: ALERTS, max_durable_commands: 8, ..limits() },
    )
    .await;
    // the flood: alerts from 8 addresses, half over UDP, half over TCP (each holds a slot)
    let mut held = Vec::new();
    for host in 1..=8 {
        let source = format!("127.0.2.{host}");
        if host % 2 == 0 {
            let sock = udp_from(&source).await;
            for _ in 0..4 {
                sock.send_to(&alert_packet(silent_addr).0, h.addr).await.unwrap();
            }
            held.push(Err(sock));
        } else {
            for _ in 0..2 {
                let mut s = tcp_from(&source, h.addr).await.unwrap();
                s.write_all(&alert_packet(silent_addr).0).await.unwrap();
                held.push(Ok(s));
            }
        }
    }
    let deferred = h.running().deferred_limits().clone();
    let started = Instant::now();
    while deferred.available(WorkKind::KeyAlert) > 0 && started.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(deferred.available(WorkKind::KeyAlert), 0, "the alerts hold every alert slot");
    // one more alert is refused with 160, over TCP (counted too) and over UDP
    let (p, _) = alert_packet(silent_addr);
    let mut s = tcp_from("127.0.3.1", h.addr).await.unwrap();
    let r = tcp_call(&mut s, &p, Duration::from_secs(3)).await.expect("answered");
    assert_eq!(r[2], Status::RequestRate.code(), "TCP alert beyond the limit");
    let sock = udp_from("127.0.3.2").await;
    let (p, _) = alert_packet(silent_addr);
    let r = udp_call(&sock, h.addr, &p, Duration::from_secs(3)).await.expect("answered");
    assert_eq!(r[2], Status::RequestRate.code(), "UDP alert beyond the limit");
    // Post Key is still answered 250, over both transports
    for host in 1..=3 {
        let (p, pending) = post_packet();
        let sock = udp_from(&format!("127.0.4.{host}")).await;
        let r = udp_call(&sock, h.addr, &p, Duration::from_secs(3)).await.expect("post answered over UDP");
        assert_eq!(pending.open(&r).unwrap().status, Status::Success, "UDP post");
        let (p, pending) = post_packet();
        let mut s = tcp_from(&format!("127.0.5.{host}"), h.addr).await.unwrap();
        let r = tcp_call(&mut s, &p, Duration::from_secs(3)).await.expect("post answered over TCP");
        assert_eq!(pending.open(&r).unwrap().status, Status::Success, "TCP post");
    }
    drop(held);
    drop(silent);
    h.stop().await;
}

// ---------------------------------------------------------------------------------------
// 6. Limits changed by a reload (SIGHUP) while the server runs
// ---------------------------------------------------------------------------------------

/// A test command that stands for a durable write that takes long: it runs (holding its
/// deferred slot) until the test releases it; `N` picks the gate, one per test.
const GATED: (u8, u8) = (13, 211);

struct Gate {
    releases: std::sync::Mutex<usize>,
    cv: std::sync::Condvar,
}

static GATES: [Gate; 2] = [
    Gate { releases: std::sync::Mutex::new(0), cv: std::sync::Condvar::new() },
    Gate { releases: std::sync::Mutex::new(0), cv: std::sync::Condvar::new() },
];

fn gated<const N: usize>(_: Arc<ServerState>, _: raida_server::Call, reply: raida_server::Reply) {
    let gate = &GATES[N];
    let mut releases = gate.releases.lock().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20); // never hangs a test
    while *releases == 0 && Instant::now() < deadline {
        releases = gate.cv.wait_timeout(releases, Duration::from_millis(50)).unwrap().0;
    }
    *releases = releases.saturating_sub(1);
    reply.send(Answer::ok(vec![]))
}

fn release<const N: usize>(n: usize) {
    *GATES[N].releases.lock().unwrap() += n;
    GATES[N].cv.notify_all();
}

async fn gated_server<const N: usize>(durable: usize) -> Harness {
    Harness::start(
        |s| s.dispatch.insert(GATED.0, GATED.1, Handler::Deferred(WorkKind::Durable, gated::<N>)),
        ServerLimits { max_durable_commands: durable, ..limits() },
    )
    .await
}

/// Durable commands running, once it is `n` (or after 5 s).
async fn running_becomes(h: &Harness, n: usize) -> usize {
    let deferred = h.running().deferred_limits();
    let started = Instant::now();
    while deferred.running(WorkKind::Durable) != n && started.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    deferred.running(WorkKind::Durable)
}

/// Start one gated command from `source` (its socket is returned, to be kept).
async fn start_gated(h: &Harness, source: &str) -> UdpSocket {
    let sock = udp_from(source).await;
    sock.send_to(&request(GATED.0, GATED.1, &[]).0, h.addr).await.unwrap();
    sock
}

/// A gated command from a fresh address is refused with 160 at once (not started).
async fn gated_is_refused(h: &Harness, source: &str) -> bool {
    let sock = udp_from(source).await;
    let r = udp_call(&sock, h.addr, &request(GATED.0, GATED.1, &[]).0, Duration::from_secs(3)).await;
    r.is_some_and(|r| r[2] == Status::RequestRate.code())
}

/// What `raida serve` does on SIGHUP, from config.toml text `old` to `new`; fails the
/// test if it takes more than 5 s (a reload never waits for the commands running).
async fn reload(h: &Harness, old: &str, new: &str) -> Vec<String> {
    let (state, old, new) = (h.state.clone(), old.to_string(), new.to_string());
    let apply = tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        let c = |t: &str| raida_store::Config::from_toml(t, &dir.path().join("config.toml")).unwrap();
        raida_server::reload::apply(&state, &c(&old), &c(&new), dir.path()).unwrap()
    });
    tokio::time::timeout(Duration::from_secs(5), apply).await.expect("the reload returned").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_raising_max_durable_commands_lets_more_run_at_once() {
    let h = gated_server::<0>(2).await;
    let mut held = Vec::new();
    for host in 1..=2 {
        held.push(start_gated(&h, &format!("127.0.8.{host}")).await);
    }
    assert_eq!(running_becomes(&h, 2).await, 2);
    assert!(gated_is_refused(&h, "127.0.8.50").await, "a third beyond the limit of 2");
    let restart =
        reload(&h, "raida_id = 5\nmax_durable_commands = 2\n", "raida_id = 5\nmax_durable_commands = 4\n").await;
    assert!(restart.is_empty(), "{restart:?}");
    for host in 3..=4 {
        held.push(start_gated(&h, &format!("127.0.8.{host}")).await);
    }
    assert_eq!(running_becomes(&h, 4).await, 4, "two more run after the reload");
    assert!(gated_is_refused(&h, "127.0.8.51").await, "a fifth beyond the new limit of 4");
    release::<0>(100);
    assert_eq!(running_becomes(&h, 0).await, 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_lowering_max_durable_commands_below_those_running_starts_none_until_below() {
    let h = gated_server::<1>(4).await;
    let mut held = Vec::new();
    for host in 1..=4 {
        held.push(start_gated(&h, &format!("127.0.9.{host}")).await);
    }
    assert_eq!(running_becomes(&h, 4).await, 4);
    // lowered to 1 with 4 running: the reload returns at once (bounded in `reload`)
    reload(&h, "raida_id = 5\nmax_durable_commands = 4\n", "raida_id = 5\nmax_durable_commands = 1\n").await;
    assert_eq!(h.running().deferred_limits().limit(WorkKind::Durable), 1);
    assert_eq!(running_becomes(&h, 4).await, 4, "the running ones are not cut");
    // as they finish one by one, nothing new starts while 1 or more run
    for (n, host) in [(4, 50), (3, 51), (2, 52), (1, 53)] {
        assert_eq!(running_becomes(&h, n).await, n);
        assert!(gated_is_refused(&h, &format!("127.0.9.{host}")).await, "{n} running, limit 1");
        release::<1>(1);
    }
    assert_eq!(running_becomes(&h, 0).await, 0);
    held.push(start_gated(&h, "127.0.9.60").await);
    assert_eq!(running_becomes(&h, 1).await, 1, "below the new limit: one starts");
    assert!(gated_is_refused(&h, "127.0.9.61").await);
    release::<1>(100);
    assert_eq!(running_becomes(&h, 0).await, 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_lowering_tcp_connections_per_addr_refuses_the_next_and_keeps_the_open_ones() {
    let h = Harness::start(|_| {}, ServerLimits { max_connections_per_ip: 4, ..limits() }).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut s = tcp_from("127.0.10.1", h.addr).await.unwrap();
        assert!(tcp_echo(&mut s).await);
        open.push(s);
    }
    reload(&h, "raida_id = 5\ntcp_max_connections_per_addr = 4\n", "raida_id = 5\ntcp_max_connections_per_addr = 2\n")
        .await;
    let mut next = tcp_from("127.0.10.1", h.addr).await.unwrap();
    assert!(!tcp_echo(&mut next).await, "a fourth connection from the address after the reload");
    for s in &mut open {
        assert!(tcp_echo(s).await, "an open connection is not cut");
    }
    let mut other = tcp_from("127.0.10.2", h.addr).await.unwrap();
    assert!(tcp_echo(&mut other).await, "another address is served");
    // once the address has fewer than 2 open, it is served again
    open.truncate(1);
    let started = Instant::now();
    let mut served = false;
    while !served && started.elapsed() < Duration::from_secs(5) {
        let mut s = tcp_from("127.0.10.1", h.addr).await.unwrap();
        served = tcp_echo(&mut s).await;
    }
    assert!(served);
    h.stop().await;
}
