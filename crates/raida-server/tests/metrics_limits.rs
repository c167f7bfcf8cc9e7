//! The metrics endpoint within bounds (issue 19, item 9): its connections are capped and
//! time out, and a configured duration far beyond any real need cannot make a TCP
//! connection panic. Every server binds 127.0.0.1 on an ephemeral port.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::TestState;
use raida_client::{Client, Server, Transport};
use raida_proto::client::ClientKey;
use raida_server::ledger::MemoryLedger;
use raida_server::{RunningServer, ServerLimits};

const RAIDA: u8 = 5;
const COIN_ID: u16 = 6;

async fn start(limits: ServerLimits) -> (TestState, RunningServer) {
    let t = TestState::build(RAIDA, COIN_ID, MemoryLedger::default(), 0, |s| {
        s.clock = raida_server::system_clock();
    });
    let server = RunningServer::start(t.state.clone(), "127.0.0.1:0".parse().unwrap(), limits).await.unwrap();
    (t, server)
}

fn metrics_limits(max: usize, timeout: Duration) -> ServerLimits {
    ServerLimits {
        udp_threads: 1,
        drain_timeout: Duration::from_secs(1),
        metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
        metrics_max_connections: max,
        metrics_timeout: timeout,
        ..ServerLimits::default()
    }
}

/// Whether the server closes `s` (end of stream or a reset) within `bound`; false when it
/// is still open then. No timing is asserted beyond that bound.
fn closed_within(s: &mut TcpStream, bound: Duration) -> bool {
    let started = Instant::now();
    let mut buf = [0u8; 64];
    s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    while started.elapsed() < bound {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
    }
    false
}

/// A scrape over a fresh connection: the body's first metric line, or None.
fn scrape(addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.contains("raida_uptime_seconds").then_some(text)
}

/// A metrics connection that never sends a byte is closed after `metrics_timeout_seconds`
/// (1 s here; waited for at most 20 s), and scrapes still work. Seen failing with the
/// deadline of `TimedStream` removed: the idle connection was still open after 20 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_metrics_connection_is_closed_after_the_timeout() {
    let (_t, server) = start(metrics_limits(4, Duration::from_secs(1))).await;
    let at = server.metrics_addr().unwrap();
    let closed = tokio::task::spawn_blocking(move || {
        let mut idle = TcpStream::connect(at).unwrap();
        closed_within(&mut idle, Duration::from_secs(20))
    })
    .await
    .unwrap();
    assert!(closed, "an idle metrics connection was still open after 20 s (timeout 1 s)");
    assert!(tokio::task::spawn_blocking(move || scrape(at)).await.unwrap().is_some());
    server.shutdown().await.unwrap();
}

/// With `metrics_max_connections = 4` held by idle clients, a fifth connection is closed at
/// once (the four stay open), and once one of them goes a scrape is answered. Seen failing
/// with the cap of `BoundedListener` removed: the fifth connection stayed open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_connections_beyond_the_cap_are_closed() {
    let (_t, server) = start(metrics_limits(4, Duration::from_secs(120))).await;
    let at = server.metrics_addr().unwrap();
    tokio::task::spawn_blocking(move || {
        let mut held: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(at).unwrap()).collect();
        // the server has accepted the four once a scrape-less probe is refused
        let mut fifth = TcpStream::connect(at).unwrap();
        assert!(closed_within(&mut fifth, Duration::from_secs(20)), "a fifth metrics connection stayed open");
        for s in &mut held {
            assert!(!closed_within(s, Duration::from_millis(300)), "a connection within the cap was closed");
        }
        held.pop();
        // the freed slot is taken by the next scrape (bounded retries: the close is async)
        let ok = (0..50).any(|_| {
            scrape(at).is_some() || {
                std::thread::sleep(Duration::from_millis(100));
                false
            }
        });
        assert!(ok, "no scrape answered after a slot was freed");
    })
    .await
    .unwrap();
    server.shutdown().await.unwrap();
}

/// A TCP connection lifetime of u64::MAX seconds (what config validation now refuses, set
/// here directly) does not make the connection panic: the deadline saturates. Seen failing
/// with `Instant::now() + lifetime` in place of `deadline_from`: the connection task
/// panicked ("overflow when adding duration to instant") and Echo over TCP failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_connection_lifetime_does_not_panic() {
    let limits = ServerLimits {
        udp_threads: 1,
        drain_timeout: Duration::from_secs(1),
        connection_lifetime: Duration::from_secs(u64::MAX),
        ..ServerLimits::default()
    };
    let (_t, server) = start(limits).await;
    let s = Server { addr: server.local_addr(), raida_id: RAIDA };
    let r = Client::new(Transport::Tcp, COIN_ID, Duration::from_secs(5)).request(s, 0, 0, &ClientKey::None, &[]).await;
    assert!(r.is_ok(), "Echo over TCP with a huge lifetime: {r:?}");
    server.shutdown().await.unwrap();
}
