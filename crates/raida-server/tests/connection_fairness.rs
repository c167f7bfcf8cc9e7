//! Issue 19, item 8: fair shares within a subnet. A /24 whose connections are all held
//! (from many addresses, one of them holding many) still lets in a client whose address
//! holds nothing: the address holding the most loses its longest-idle connection. Bounded
//! in count (a few dozen loopback connections) and time (3 s per answer).

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::Harness;
use raida_client::read_response;
use raida_proto::client::{build_request, ClientKey, PendingReply, Routing};
use raida_proto::Status;
use raida_server::ledger::MemoryLedger;
use raida_server::ServerLimits;
use rand_core::OsRng;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

const RAIDA: u8 = 5;
const COIN_ID: u16 = 6;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn echo() -> (Vec<u8>, PendingReply) {
    build_request(&Routing::new(RAIDA, COIN_ID, 0, 0), &ClientKey::None, &[], raida_client::unix_now(), &mut OsRng)
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

/// Connections held from 127.0.0.2 (12, its cap) and 127.0.0.3-18 (one each) fill the
/// /24's 28; five connections from 127.0.0.1, which holds nothing, are each served, and each
/// takes its place from 127.0.0.2 (the biggest holder), never from an address holding one.
/// Before: 0 of 5 answered (issue 19). Now: 5 of 5; 127.0.0.2 holds 7; the /24 never holds
/// more than 28. Seen failing with the fair eviction removed (a full subnet refusing every
/// newcomer, as before): "a newcomer from the full /24 is served: 0 of 5".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_of_a_full_subnet_is_served_and_the_biggest_holder_pays() {
    const PER_IP: usize = 12;
    const PER_SUBNET: usize = 28;
    let limits = ServerLimits {
        udp_threads: 2,
        drain_timeout: Duration::from_secs(1),
        max_connections_per_ip: PER_IP,
        max_connections_per_subnet: PER_SUBNET,
        ..ServerLimits::default()
    };
    let h = Harness::launch(RAIDA, COIN_ID, MemoryLedger::default(), |_| {}, limits).await;
    let table = h.running().connection_table().clone();
    let mut big = Vec::new();
    for _ in 0..PER_IP {
        let mut s = tcp_from("127.0.0.2", h.addr).await.unwrap();
        assert!(tcp_echo(&mut s).await, "the big holder's connections are served first");
        big.push(s);
    }
    let mut small = Vec::new();
    for host in 3..=18 {
        let mut s = tcp_from(&format!("127.0.0.{host}"), h.addr).await.unwrap();
        assert!(tcp_echo(&mut s).await, "127.0.0.{host}'s one connection");
        small.push(s);
    }
    assert_eq!(table.live_in_subnet(ip("127.0.0.1")), PER_SUBNET, "the /24 is full");
    // five newcomers from an address holding nothing (then 1, 2, ...: still the least)
    let mut served = 0;
    let mut newcomers = Vec::new();
    for _ in 0..5 {
        let mut s = tcp_from("127.0.0.1", h.addr).await.unwrap();
        if tcp_echo(&mut s).await {
            served += 1;
        }
        newcomers.push(s);
        assert!(table.live_in_subnet(ip("127.0.0.1")) <= PER_SUBNET, "the /24 over its cap");
    }
    assert_eq!(served, 5, "a newcomer from the full /24 is served: {served} of 5");
    assert_eq!(table.live_from(ip("127.0.0.2")), PER_IP - 5, "the biggest holder lost one per newcomer");
    assert_eq!(table.live_from(ip("127.0.0.1")), 5);
    // nobody holding one lost it
    for (i, s) in small.iter_mut().enumerate() {
        assert!(tcp_echo(s).await, "127.0.0.{}'s only connection was closed", i + 3);
    }
    // and the biggest holder's remaining connections still work; 5 were closed
    let mut alive = 0;
    for s in big.iter_mut() {
        if tcp_echo(s).await {
            alive += 1;
        }
    }
    assert_eq!(alive, PER_IP - 5);
    drop((big, small, newcomers));
    h.stop().await;
}
