//! The proxy alone, in front of plain UDP and TCP echo servers: flows, the TCP link's
//! delay and cap, and the faults the proxy plays. No assertion on timings: only on what
//! arrives (or that nothing does within a bound).

use std::net::SocketAddr;
use std::time::Duration;

use raida_netsim::{Fault, LinkConfig, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

const SEED: u64 = 22;

/// A UDP and TCP echo server on one port of 127.0.0.1 free for both (a UDP port may be
/// taken for TCP, by a listener or a connection's local end: AddrInUse was seen 2 runs in
/// 12 with 12 runs at once).
async fn echo_server() -> SocketAddr {
    let (udp, tcp) = 'bound: {
        for _ in 0..32 {
            let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()).await {
                break 'bound (udp, tcp);
            }
        }
        panic!("no port free for UDP and TCP");
    };
    let addr = udp.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, from)) = udp.recv_from(&mut buf).await {
            let _ = udp.send_to(&buf[..n], from).await;
        }
    });
    tokio::spawn(async move {
        while let Ok((mut s, _)) = tcp.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

fn any() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// The next datagram within `wait`, if any.
async fn recv_within(s: &UdpSocket, wait: Duration) -> Option<std::io::Result<Vec<u8>>> {
    let mut buf = vec![0u8; 65_536];
    match tokio::time::timeout(wait, s.recv(&mut buf)).await {
        Ok(Ok(n)) => Some(Ok(buf[..n].to_vec())),
        Ok(Err(e)) => Some(Err(e)),
        Err(_) => None,
    }
}

async fn udp_client(to: SocketAddr) -> UdpSocket {
    let s = UdpSocket::bind(any()).await.unwrap();
    s.connect(to).await.unwrap();
    s
}

#[tokio::test]
async fn each_client_gets_its_own_answers_and_duplicates_come_twice() {
    let upstream = echo_server().await;
    let link = LinkConfig {
        delay: Duration::from_millis(5),
        jitter: Duration::from_millis(5),
        duplicate: 1.0,
        ..LinkConfig::PERFECT
    };
    let proxy = Proxy::start(any(), upstream, link, None, SEED).await.unwrap();
    let (a, b) = (udp_client(proxy.local_addr()).await, udp_client(proxy.local_addr()).await);
    a.send(b"from a").await.unwrap();
    b.send(b"from b").await.unwrap();
    // duplicated each way: 2 copies reach the server, each answered, each answer doubled
    for (s, want) in [(&a, &b"from a"[..]), (&b, &b"from b"[..])] {
        for _ in 0..4 {
            let got = recv_within(s, Duration::from_secs(5)).await.expect("an answer").unwrap();
            assert_eq!(got, want);
        }
    }
    proxy.stop().await;
}

#[tokio::test]
async fn a_lost_link_answers_nothing() {
    let upstream = echo_server().await;
    let proxy =
        Proxy::start(any(), upstream, LinkConfig { loss: 1.0, ..LinkConfig::PERFECT }, None, SEED).await.unwrap();
    let c = udp_client(proxy.local_addr()).await;
    for _ in 0..5 {
        c.send(b"anyone?").await.unwrap();
    }
    assert!(recv_within(&c, Duration::from_millis(300)).await.is_none());
    proxy.stop().await;
}

/// 4 MB each way through 50 ms and 100 Mbit/s arrive intact and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_through_a_capped_link_arrives_intact() {
    let upstream = echo_server().await;
    let link = LinkConfig { delay: Duration::from_millis(50), tcp_rate: Some(12_500_000), ..LinkConfig::PERFECT };
    let proxy = Proxy::start(any(), upstream, link, None, SEED).await.unwrap();
    let data: Vec<u8> = (0..4u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let s = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let (mut r, mut w) = s.into_split();
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&sent).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let mut back = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), r.read_to_end(&mut back)).await.expect("within 30 s").unwrap();
    writer.await.unwrap();
    assert_eq!(back.len(), data.len());
    assert!(back == data, "the bytes came back changed");
    proxy.stop().await;
}

fn request(en: u8, raida: u8, body: usize) -> Vec<u8> {
    let header = if en == 4 { 48 } else { 32 };
    let mut p = vec![0u8; header + body];
    p[0] = 1;
    p[2] = raida;
    p[4] = 2; // command group
    p[16] = en;
    p[22..24].copy_from_slice(&(body as u16).to_be_bytes());
    p[30] = 0xAB;
    p[31] = 0xCD;
    p
}

/// An overloaded RAIDA's answer: 160, its id, the request's group and echo bytes, header only.
fn assert_160(answer: &[u8], raida: u8) {
    assert_eq!(answer.len(), 32, "header only");
    assert_eq!(answer[0], raida);
    assert_eq!(answer[2], 160);
    assert_eq!(answer[3], 2);
    assert_eq!(&answer[6..8], &[0xAB, 0xCD]);
}

#[tokio::test]
async fn overloaded_answers_160_over_udp_and_tcp() {
    let upstream = echo_server().await;
    let proxy = Proxy::start(any(), upstream, LinkConfig::PERFECT, Some(Fault::Overloaded), SEED).await.unwrap();
    let c = udp_client(proxy.local_addr()).await;
    for (en, body) in [(0, 0), (4, 20)] {
        c.send(&request(en, 7, body)).await.unwrap();
        assert_160(&recv_within(&c, Duration::from_secs(5)).await.expect("an answer").unwrap(), 7);
    }
    let mut t = TcpStream::connect(proxy.local_addr()).await.unwrap();
    for (en, body) in [(4, 100), (1, 3)] {
        t.write_all(&request(en, 3, body)).await.unwrap();
        let mut answer = [0u8; 32];
        tokio::time::timeout(Duration::from_secs(5), t.read_exact(&mut answer)).await.expect("an answer").unwrap();
        assert_160(&answer, 3);
    }
    // healthy again: the echo server answers
    proxy.set_fault(None).await.unwrap();
    c.send(b"ping").await.unwrap();
    assert_eq!(recv_within(&c, Duration::from_secs(5)).await.expect("an answer").unwrap(), b"ping");
    proxy.stop().await;
}

#[tokio::test]
async fn refusing_closes_the_port_and_healthy_opens_it_again() {
    let upstream = echo_server().await;
    let proxy = Proxy::start(any(), upstream, LinkConfig::PERFECT, Some(Fault::Refusing), SEED).await.unwrap();
    let addr = proxy.local_addr();
    let c = udp_client(addr).await;
    c.send(b"ping").await.unwrap();
    let e = recv_within(&c, Duration::from_secs(5)).await.expect("an ICMP error").unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
    assert_eq!(TcpStream::connect(addr).await.unwrap_err().kind(), std::io::ErrorKind::ConnectionRefused);

    proxy.set_fault(None).await.unwrap();
    c.send(b"ping").await.unwrap();
    assert_eq!(recv_within(&c, Duration::from_secs(5)).await.expect("an answer").unwrap(), b"ping");
    let mut t = TcpStream::connect(addr).await.unwrap();
    t.write_all(b"tcp").await.unwrap();
    let mut back = [0u8; 3];
    t.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"tcp");

    // and closed again while a connection is open
    proxy.set_fault(Some(Fault::Refusing)).await.unwrap();
    assert_eq!(TcpStream::connect(addr).await.unwrap_err().kind(), std::io::ErrorKind::ConnectionRefused);
    proxy.stop().await;
}

#[tokio::test]
async fn down_accepts_tcp_but_answers_nothing_and_slow_answers_late() {
    let upstream = echo_server().await;
    let proxy = Proxy::start(any(), upstream, LinkConfig::PERFECT, Some(Fault::Down), SEED).await.unwrap();
    let c = udp_client(proxy.local_addr()).await;
    c.send(b"ping").await.unwrap();
    assert!(recv_within(&c, Duration::from_millis(300)).await.is_none());
    let mut t = TcpStream::connect(proxy.local_addr()).await.expect("a down RAIDA's port accepts");
    t.write_all(b"hello").await.unwrap();
    let mut buf = [0u8; 5];
    assert!(tokio::time::timeout(Duration::from_millis(300), t.read_exact(&mut buf)).await.is_err());

    proxy.set_fault(Some(Fault::Slow(Duration::from_millis(200)))).await.unwrap();
    c.send(b"slow").await.unwrap();
    assert_eq!(recv_within(&c, Duration::from_secs(5)).await.expect("a late answer").unwrap(), b"slow");
    proxy.stop().await;
}
