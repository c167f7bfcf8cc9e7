//! A flood of Key Alerts against a key server that never answers: the alerts' fetches
//! share one socket per alert, so the process's descriptors stay near one per alert in
//! flight (it was one socket and one 64 KiB buffer per part: 16 per alert).
//!
//! Its own test binary, with a single test, so that no other test's sockets are counted.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::TestState;
use raida_proto::client::{build_request, ClientKey, Routing};
use raida_proto::codec::Codec;
use raida_proto::commands::ids::{GROUP_KEY_EXCHANGE, KEY_ALERT};
use raida_proto::commands::key_alert::{self, AlertEntry};
use raida_server::ledger::MemoryLedger;
use raida_server::{KeyServer, RunningServer, ServerLimits};
use rand_core::{OsRng, RngCore};

const ALERTS: usize = 200;
const PARTS: usize = 16;

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_alerts_hold_one_socket_each() {
    // a key server that reads every request and never answers
    let silent = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
    let _ = silent.set_recv_buffer_size(8 << 20);
    silent.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into()).unwrap();
    let silent: UdpSocket = silent.into();
    silent.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let ks = silent.local_addr().unwrap();

    let rx = TestState::build(3, 6, MemoryLedger::default(), raida_client::unix_now(), |s| {
        s.clock = raida_server::system_clock();
        s.key_alert.key_servers = vec![KeyServer::new(1, ks, false)];
        // long enough that every alert is still waiting when the descriptors are counted
        s.key_alert.timeout = Duration::from_secs(30);
        // every alert fetches: this test counts what alerts in flight cost, not the budget
        s.key_alert.fetches_per_minute = u32::MAX;
    });
    // room for every alert (one address may hold a quarter of the alert slots): this test
    // counts what alerts in flight cost, not how many are admitted
    let limits = ServerLimits {
        drain_timeout: Duration::from_millis(200),
        max_key_alerts: 4 * ALERTS,
        ..ServerLimits::default()
    };
    let server = RunningServer::start(rx.state.clone(), "127.0.0.1:0".parse().unwrap(), limits).await.unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();

    let fds_before = open_descriptors();
    let rss_before = rss_kib();
    for _ in 0..ALERTS {
        let entries: Vec<AlertEntry> = (0..PARTS)
            .map(|_| {
                let mut id = [0u8; 16];
                OsRng.fill_bytes(&mut id);
                AlertEntry::new(id, ks.ip(), ks.port(), 1)
            })
            .collect();
        let routing = Routing::new(3, 6, GROUP_KEY_EXCHANGE, KEY_ALERT);
        let (packet, _) = build_request(
            &routing,
            &ClientKey::None,
            &key_alert::KeyAlert { entries: entries.to_vec() }.to_bytes(),
            raida_client::unix_now(),
            &mut OsRng,
        );
        client.send_to(&packet, server.local_addr()).unwrap();
    }
    // wait (bounded) until the requests stop coming: every accepted alert is then waiting
    let started = Instant::now();
    let mut requests = 0usize;
    let mut buf = [0u8; 512];
    while requests < ALERTS * PARTS && started.elapsed() < Duration::from_secs(15) {
        match silent.recv_from(&mut buf) {
            Ok(_) => requests += 1,
            Err(_) if requests > 0 => break,
            Err(_) => {}
        }
    }
    let fds_during = open_descriptors();
    let rss_during = rss_kib();
    // no alert may have answered yet, else the count would not show the alerts in flight
    client.set_nonblocking(true).unwrap();
    assert!(client.recv_from(&mut buf).is_err(), "an alert answered before the descriptors were counted");
    eprintln!(
        "{ALERTS} alerts x {PARTS} parts: {requests} Get Key requests seen; descriptors {fds_before} -> {fds_during}; \
         RSS {rss_before} KiB -> {rss_during} KiB"
    );
    assert!(requests > 0, "no alert reached the key server");
    assert!(
        fds_during <= fds_before + ALERTS + 32,
        "{fds_during} descriptors open with {ALERTS} alerts in flight (was {fds_before})"
    );
    server.shutdown().await.unwrap();
}
