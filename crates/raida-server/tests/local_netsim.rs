//! A local network behind simulated links (`LocalNetwork::start_with`, raida-netsim): each
//! RAIDA's public address is its proxy, which plays the RAIDA's link and fault. Bounded
//! waits only; no assertion on timings.

use std::net::SocketAddr;
use std::time::Duration;

use raida_netsim::{Dishonesty, Fault, LinkConfig, Simulation};
use raida_proto::client::{build_request, ClientKey, Routing};
use raida_proto::Status;
use raida_server::local_network::{init_network, LocalNetwork, NetworkInit};
use rand_core::OsRng;
use tokio::net::{TcpStream, UdpSocket};

const SEED: u64 = 2022;

/// An EN 0 Echo to RAIDA `id` at `addr` over UDP: Some(status) of its answer, None if
/// none came within `wait`, Err for an ICMP error.
async fn echo(id: u8, coin_id: u16, addr: SocketAddr, wait: Duration) -> std::io::Result<Option<Status>> {
    let (packet, pending) =
        build_request(&Routing::new(id, coin_id, 0, 0), &ClientKey::None, &[], raida_client::unix_now(), &mut OsRng);
    let s = UdpSocket::bind("127.0.0.1:0").await?;
    s.connect(addr).await?;
    s.send(&packet).await?;
    let mut buf = vec![0u8; 65_536];
    match tokio::time::timeout(wait, s.recv(&mut buf)).await {
        Err(_) => Ok(None),
        Ok(Err(e)) => Err(e),
        Ok(Ok(n)) => match pending.open(&buf[..n]) {
            Ok(reply) => Ok(Some(reply.status)),
            // an error answer of the proxy (header only) carries its status in byte 2
            Err(_) => Ok(Some(Status::from_code(buf[2]).expect("a known status"))),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_raida_plays_its_link_and_fault() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    let opts =
        NetworkInit { raidas: 6, users: vec![], base_port: 42_000, denominations: vec![1], ..NetworkInit::default() };
    init_network(&dir, &opts).unwrap();
    let sim = Simulation::new(SEED)
        .with_link(LinkConfig {
            delay: Duration::from_millis(5),
            jitter: Duration::from_millis(5),
            ..LinkConfig::PERFECT
        })
        .with_raida_link(0, LinkConfig { loss: 1.0, ..LinkConfig::PERFECT })
        .with_fault(1, Fault::Refusing)
        .with_fault(2, Fault::Overloaded)
        .with_fault(3, Fault::Slow(Duration::from_millis(300)))
        .with_fault(4, Fault::Dishonest(Dishonesty::WrongKey));
    let net = LocalNetwork::start_with(&dir, &[], true, Some(&sim)).await.unwrap();
    let coin_id = net.network().coin_id;
    let addr = |id: u8| -> SocketAddr { net.network().raida(id).unwrap().address.parse().unwrap() };
    for id in 0..6 {
        assert_ne!(Some(addr(id)), net.server_addr(id), "RAIDA {id}'s public address is its proxy");
    }
    let wait = Duration::from_secs(5);

    // 100% loss: nothing comes back, while the server itself answers around the link
    assert_eq!(echo(0, coin_id, addr(0), Duration::from_millis(500)).await.unwrap(), None);
    assert_eq!(echo(0, coin_id, net.server_addr(0).unwrap(), wait).await.unwrap(), Some(Status::Success));
    // refusing: port unreachable, connection refused
    let e = echo(1, coin_id, addr(1), wait).await.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
    assert_eq!(TcpStream::connect(addr(1)).await.unwrap_err().kind(), std::io::ErrorKind::ConnectionRefused);
    // overloaded: 160 from the proxy
    assert_eq!(echo(2, coin_id, addr(2), wait).await.unwrap(), Some(Status::RequestRate));
    // slow, dishonest (Get Key only) and healthy RAIDAs answer Echo
    for id in [3, 4, 5] {
        assert_eq!(echo(id, coin_id, addr(id), wait).await.unwrap(), Some(Status::Success), "RAIDA {id}");
    }

    // faults change while running
    net.set_fault(1, None).await.unwrap();
    assert_eq!(echo(1, coin_id, addr(1), wait).await.unwrap(), Some(Status::Success));
    net.set_fault(5, Some(Fault::Down)).await.unwrap();
    assert_eq!(echo(5, coin_id, addr(5), Duration::from_millis(500)).await.unwrap(), None);
    net.set_link(0, LinkConfig::PERFECT).unwrap();
    assert_eq!(echo(0, coin_id, addr(0), wait).await.unwrap(), Some(Status::Success));
    net.shutdown().await;
}

#[tokio::test]
async fn without_a_simulation_nothing_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    let opts =
        NetworkInit { raidas: 1, users: vec![], base_port: 42_100, denominations: vec![1], ..NetworkInit::default() };
    init_network(&dir, &opts).unwrap();
    let net = LocalNetwork::start(&dir, &[], true).await.unwrap();
    let addr: SocketAddr = net.network().raida(0).unwrap().address.parse().unwrap();
    assert_eq!(Some(addr), net.server_addr(0));
    assert!(net.simulation().is_none() && net.proxy(0).is_none());
    assert!(net.set_fault(0, Some(Fault::Down)).await.is_err());
    net.shutdown().await;
}
