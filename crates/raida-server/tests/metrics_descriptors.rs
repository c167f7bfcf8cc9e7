//! Descriptors of the metrics endpoint (issue 19, item 9), in a test binary of its own
//! because it lowers this process's RLIMIT_NOFILE: 1,100 idle connections to
//! `metrics_listen` at a 1,024-descriptor limit must leave the store its descriptors. The
//! flood comes from a child process (this binary again, `flood_child`), so that the
//! client's sockets do not count against the server's limit.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::TestState;
use raida_client::unix_now;
use raida_proto::client::{build_request, ClientKey, Routing};
use raida_proto::codec::Codec;
use raida_proto::commands::post_key::{self, CoinName};
use raida_proto::Status;
use raida_server::descriptor_reserve;
use raida_server::ledger::MemoryLedger;
use raida_server::{RunningServer, ServerLimits};
use rand_core::{OsRng, RngCore};

const RAIDA: u8 = 5;
const COIN_ID: u16 = 6;
const CHILD_ENV: &str = "RAIDA_TEST_METRICS_FLOOD_CHILD";
/// More connections than the whole descriptor limit of the server's process.
const FLOOD: usize = 1100;

/// In the child: read the server's address from stdin, open FLOOD connections from many
/// loopback addresses (one per address, 55 per /24), report, hold them until stdin closes
/// (at most 60 s). In the parent's own run: nothing.
#[test]
fn flood_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    let addr: SocketAddr = line.trim().parse().unwrap();
    let mut held = Vec::new();
    for i in 0..FLOOD {
        let source: SocketAddr = format!("127.0.{}.{}:0", 1 + i / 55, 1 + i % 55).parse().unwrap();
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        if s.bind(&source.into()).is_err() || s.connect_timeout(&addr.into(), Duration::from_secs(2)).is_err() {
            continue;
        }
        held.push(s);
    }
    println!("ready {}", held.len());
    let started = Instant::now();
    let mut rest = String::new();
    while started.elapsed() < Duration::from_secs(60) {
        rest.clear();
        if std::io::stdin().read_line(&mut rest).map(|n| n == 0).unwrap_or(true) {
            break;
        }
    }
}

fn post_payload() -> Vec<u8> {
    let mut id = [0u8; 16];
    OsRng.fill_bytes(&mut id);
    let none = CoinName { dn: 0, sn: 0 };
    post_key::PostKey::with_part(id, none, [0; 4], none, &[1; 128], 0, &[0xFF; 4]).to_bytes()
}

/// 1,100 idle connections to the metrics port at 1,024 descriptors: Post Key still
/// answers 250 (it writes a key file). Seen failing with the cap of the metrics listener
/// (`BoundedListener`) removed: Post Key answered 194; with the metrics connections left
/// out of the reserve: the TCP connection budget assertion failed (17 too many).
#[test]
fn a_metrics_connection_flood_at_1024_descriptors_leaves_post_key_answering() {
    // the child first, while this process may still open descriptors freely
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "flood_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    if hard < 1024 || rlimit::setrlimit(rlimit::Resource::NOFILE, 512, 1024).is_err() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("cannot set RLIMIT_NOFILE to 512/1024 here (soft {soft}, hard {hard}): this test needs it");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let t = TestState::build(RAIDA, COIN_ID, MemoryLedger::default(), 0, |s| {
            s.clock = raida_server::system_clock();
        });
        let limits = ServerLimits {
            udp_threads: 2,
            drain_timeout: Duration::from_secs(1),
            metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
            // long enough that the flood's connections would all be held without the cap
            metrics_timeout: Duration::from_secs(120),
            ..ServerLimits::default()
        };
        let server =
            RunningServer::start(t.state.clone(), "127.0.0.1:0".parse().unwrap(), limits.clone()).await.unwrap();
        // the metrics connections are kept for: fewer TCP connections than without them
        let slots = limits.max_key_alerts + limits.max_durable_commands + limits.max_heavy_commands;
        let metrics = limits.metrics_max_connections + 1;
        let reserve = descriptor_reserve(slots + metrics, limits.udp_threads);
        assert_eq!(server.tcp_connection_limit() as u64, 1024 - reserve);

        // the client's own socket first: it shares this process's descriptors
        let addr = server.local_addr();
        let metrics_addr = server.metrics_addr().unwrap();
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        // the flood: more connections than the process has descriptors
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "{metrics_addr}").unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let opened = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            loop {
                line.clear();
                if out.read_line(&mut line).unwrap_or(0) == 0 {
                    return 0;
                }
                // libtest prints "test flood_child ... " before the child's own output
                if let Some(at) = line.find("ready ") {
                    let n = line[at + 6..].trim().parse::<usize>().unwrap_or(0);
                    // keep reading what the child prints until it ends (no broken pipe)
                    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
                    return n;
                }
            }
        })
        .await
        .unwrap();
        eprintln!("flood: {opened} connections opened by the child");
        assert!(opened > 1024, "the child opened only {opened} connections");
        // let the server work through its accept queue before the store is asked for files
        tokio::time::sleep(Duration::from_millis(500)).await;

        // the store still gets descriptors: Post Key writes a key file (194 without them).
        // Seen failing with the cap of the metrics listener removed: 194.
        let mut buf = vec![0u8; 2048];
        for _ in 0..3 {
            let routing = Routing::new(RAIDA, COIN_ID, 4, 41);
            let (p, pending) = build_request(&routing, &ClientKey::None, &post_payload(), unix_now(), &mut OsRng);
            sock.send_to(&p, addr).await.unwrap();
            let n = tokio::time::timeout(Duration::from_secs(5), sock.recv(&mut buf)).await.unwrap().unwrap();
            assert_eq!(buf[2], Status::Success.code(), "Post Key during the flood: status {}", buf[2]);
            assert!(pending.open(&buf[..n]).is_ok());
        }
        drop(stdin);
        server.shutdown().await.unwrap();
    });
    let _ = child.wait();
}
