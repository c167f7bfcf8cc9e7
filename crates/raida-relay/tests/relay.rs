//! The relay of section 10 end to end over loopback: pairing, every answer byte, every
//! bound (one abusive client address held to its share while another client is still
//! paired), the hello timeout, the idle timeout and a 64 MB transfer. Distinct client
//! addresses are 127.0.0.x sources (the whole 127/8 is loopback on Linux). Waits are
//! bounded; nothing asserts how long anything took.

use std::net::SocketAddr;
use std::time::Duration;

use raida_relay::{Relay, RelayAnswer, RelayHello, RelayLimits, RunningRelay, Side};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// Every wait in these tests ends within this (a failure, not a hang).
const BOUND: Duration = Duration::from_secs(30);

async fn relay(limits: RelayLimits) -> RunningRelay {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    Relay::start(listener, limits).unwrap()
}

/// A TCP connection to the relay from source address `src` (127.0.0.x).
async fn connect_from(relay: SocketAddr, src: &str) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(format!("{src}:0").parse().unwrap()).unwrap();
    tokio::time::timeout(BOUND, s.connect(relay)).await.unwrap().unwrap()
}

/// Connects from `src` and sends a hello.
async fn hello(relay: SocketAddr, src: &str, id: u8, side: Side) -> TcpStream {
    let mut s = connect_from(relay, src).await;
    s.write_all(&RelayHello::new([id; 32], side).to_bytes()).await.unwrap();
    s
}

/// The relay's answer byte.
async fn answer(s: &mut TcpStream) -> u8 {
    let mut b = [0u8; 1];
    tokio::time::timeout(BOUND, s.read_exact(&mut b)).await.expect("an answer in time").expect("an answer byte");
    b[0]
}

/// Reads until end of stream (or a reset); true when the relay closed the connection.
async fn closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(BOUND, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    })
    .await
    .unwrap_or(false)
}

/// Polls until `f` holds (bounded).
async fn until(relay: &RunningRelay, f: impl Fn(&raida_relay::RelayStats) -> bool) {
    tokio::time::timeout(BOUND, async {
        while !f(&relay.stats()) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("relay never reached the state; stats {:?}", relay.stats()));
}

/// Pairs two clients from `a` and `b` on id `id`; both get 0x01.
async fn pair(relay: &RunningRelay, a: &str, b: &str, id: u8) -> (TcpStream, TcpStream) {
    let before = relay.stats().hellos_waiting_now;
    let mut s = hello(relay.local_addr(), a, id, Side::Sender).await;
    until(relay, |st| st.hellos_waiting_now > before).await;
    let mut r = hello(relay.local_addr(), b, id, Side::Receiver).await;
    assert_eq!(answer(&mut s).await, 1);
    assert_eq!(answer(&mut r).await, 1);
    (s, r)
}

/// Bytes go both ways, and when one side closes the relay closes the other.
async fn exchange(s: &mut TcpStream, r: &mut TcpStream) {
    s.write_all(b"from the sender").await.unwrap();
    let mut buf = [0u8; 15];
    tokio::time::timeout(BOUND, r.read_exact(&mut buf)).await.unwrap().unwrap();
    assert_eq!(&buf, b"from the sender");
    r.write_all(b"back").await.unwrap();
    let mut buf = [0u8; 4];
    tokio::time::timeout(BOUND, s.read_exact(&mut buf)).await.unwrap().unwrap();
    assert_eq!(&buf, b"back");
}

#[tokio::test]
async fn pairs_and_copies_both_ways_then_closes_the_other() {
    let relay = relay(RelayLimits::default()).await;
    let (mut s, mut r) = pair(&relay, "127.0.0.1", "127.0.0.1", 1).await;
    exchange(&mut s, &mut r).await;
    drop(s);
    assert!(closed(&mut r).await, "the receiver is closed after the sender closes");
    until(&relay, |st| st.pairs_now == 0).await;
    let st = relay.stats();
    assert_eq!(st.answers[1], 2);
    assert_eq!(st.bytes_relayed, 19);
    relay.shutdown().await;
}

#[tokio::test]
async fn early_bytes_of_a_waiting_client_are_relayed() {
    let relay = relay(RelayLimits::default()).await;
    let mut s = hello(relay.local_addr(), "127.0.0.1", 2, Side::Sender).await;
    s.write_all(b"early").await.unwrap();
    until(&relay, |st| st.hellos_waiting_now == 1).await;
    let mut r = hello(relay.local_addr(), "127.0.0.1", 2, Side::Receiver).await;
    assert_eq!(answer(&mut s).await, 1);
    assert_eq!(answer(&mut r).await, 1);
    let mut buf = [0u8; 5];
    tokio::time::timeout(BOUND, r.read_exact(&mut buf)).await.unwrap().unwrap();
    assert_eq!(&buf, b"early");
    relay.shutdown().await;
}

#[tokio::test]
async fn malformed_hello_is_0x02() {
    let relay = relay(RelayLimits::default()).await;
    let mut bad = RelayHello::new([3; 32], Side::Sender).to_bytes();
    bad[39] = 1; // a reserved byte
    let mut s = connect_from(relay.local_addr(), "127.0.0.1").await;
    s.write_all(&bad).await.unwrap();
    assert_eq!(answer(&mut s).await, RelayAnswer::Malformed.code());
    assert!(closed(&mut s).await);
    // a hello cut short by the end of the stream
    let mut s = connect_from(relay.local_addr(), "127.0.0.1").await;
    s.write_all(b"RLY1").await.unwrap();
    s.shutdown().await.unwrap();
    assert_eq!(answer(&mut s).await, 2);
    relay.shutdown().await;
}

#[tokio::test]
async fn same_side_twice_is_0x03_and_the_first_stays() {
    let relay = relay(RelayLimits::default()).await;
    let mut first = hello(relay.local_addr(), "127.0.0.1", 4, Side::Receiver).await;
    until(&relay, |st| st.hellos_waiting_now == 1).await;
    let mut second = hello(relay.local_addr(), "127.0.0.1", 4, Side::Receiver).await;
    assert_eq!(answer(&mut second).await, RelayAnswer::SideTaken.code());
    assert!(closed(&mut second).await);
    let mut s = hello(relay.local_addr(), "127.0.0.1", 4, Side::Sender).await;
    assert_eq!(answer(&mut first).await, 1);
    assert_eq!(answer(&mut s).await, 1);
    exchange(&mut s, &mut first).await;
    relay.shutdown().await;
}

#[tokio::test]
async fn no_peer_in_the_wait_is_0x05() {
    let relay = relay(RelayLimits { pairing_wait: Duration::from_millis(200), ..RelayLimits::default() }).await;
    let mut s = hello(relay.local_addr(), "127.0.0.1", 5, Side::Sender).await;
    assert_eq!(answer(&mut s).await, RelayAnswer::NoPeer.code());
    assert!(closed(&mut s).await);
    until(&relay, |st| st.waiting_now == 0 && st.hellos_waiting_now == 0).await;
    relay.shutdown().await;
}

#[tokio::test]
async fn a_waiter_that_hangs_up_is_not_paired() {
    let relay = relay(RelayLimits::default()).await;
    let s = hello(relay.local_addr(), "127.0.0.1", 6, Side::Sender).await;
    until(&relay, |st| st.hellos_waiting_now == 1).await;
    drop(s);
    until(&relay, |st| st.hellos_waiting_now == 0).await;
    // the next sender of that id waits (is not told "side taken")
    let (mut s, mut r) = pair(&relay, "127.0.0.1", "127.0.0.1", 6).await;
    exchange(&mut s, &mut r).await;
    relay.shutdown().await;
}

/// Seen failing with the per-address waiting check removed: the 4th hello waited instead
/// of getting 0x04.
#[tokio::test]
async fn waiting_per_address_holds_one_address_to_its_share() {
    let relay = relay(RelayLimits { waiting_per_address: 3, ..RelayLimits::default() }).await;
    let mut held = Vec::new();
    for id in 0..3 {
        held.push(hello(relay.local_addr(), "127.0.0.2", 100 + id, Side::Sender).await);
    }
    until(&relay, |st| st.hellos_waiting_now == 3).await;
    let mut over = hello(relay.local_addr(), "127.0.0.2", 110, Side::Sender).await;
    assert_eq!(answer(&mut over).await, RelayAnswer::Busy.code());
    // another address is still paired
    let (mut s, mut r) = pair(&relay, "127.0.0.3", "127.0.0.4", 7).await;
    exchange(&mut s, &mut r).await;
    // clients that never send their hello count too (a slow-loris holds no more)
    drop(held);
    until(&relay, |st| st.waiting_now == 0).await;
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(connect_from(relay.local_addr(), "127.0.0.2").await);
    }
    until(&relay, |st| st.waiting_now == 3).await;
    let mut over = hello(relay.local_addr(), "127.0.0.2", 111, Side::Sender).await;
    assert_eq!(answer(&mut over).await, 4);
    relay.shutdown().await;
}

#[tokio::test]
async fn waiting_total_is_a_bound() {
    let limits = RelayLimits { waiting_per_address: 2, waiting_total: 4, ..RelayLimits::default() };
    let relay = relay(limits).await;
    let mut held = Vec::new();
    for (i, src) in ["127.0.0.2", "127.0.0.2", "127.0.0.3", "127.0.0.3"].iter().enumerate() {
        held.push(hello(relay.local_addr(), src, 120 + i as u8, Side::Sender).await);
    }
    until(&relay, |st| st.hellos_waiting_now == 4).await;
    let mut over = hello(relay.local_addr(), "127.0.0.5", 130, Side::Sender).await;
    assert_eq!(answer(&mut over).await, RelayAnswer::Busy.code());
    // one abuser leaves: a newcomer is paired with a waiting peer
    held.truncate(3);
    until(&relay, |st| st.waiting_now == 3).await;
    let mut r = hello(relay.local_addr(), "127.0.0.5", 122, Side::Receiver).await;
    assert_eq!(answer(&mut r).await, 1);
    let mut s = held.remove(2);
    assert_eq!(answer(&mut s).await, 1);
    exchange(&mut s, &mut r).await;
    relay.shutdown().await;
}

/// Seen failing with the pair checks removed (with `pairs_total_is_a_bound`): the third
/// pair of one address was paired.
#[tokio::test]
async fn pairs_per_address_holds_one_address_to_its_share() {
    let relay = relay(RelayLimits { pairs_per_address: 2, ..RelayLimits::default() }).await;
    let mut pairs = Vec::new();
    for id in 0..2 {
        pairs.push(pair(&relay, "127.0.0.2", "127.0.0.2", 140 + id).await);
    }
    until(&relay, |st| st.pairs_now == 2).await;
    // a third pair of that address: refused as soon as its hello arrives
    let mut over = hello(relay.local_addr(), "127.0.0.2", 150, Side::Sender).await;
    assert_eq!(answer(&mut over).await, RelayAnswer::Busy.code());
    // a pair that would put that address over its share: both of its sides are told
    // (they must meet on one relay)
    let mut waiting = hello(relay.local_addr(), "127.0.0.6", 151, Side::Sender).await;
    until(&relay, |st| st.hellos_waiting_now == 1).await;
    let mut over = hello(relay.local_addr(), "127.0.0.2", 151, Side::Receiver).await;
    assert_eq!(answer(&mut over).await, 4);
    assert_eq!(answer(&mut waiting).await, 4);
    // another address is still paired
    let (mut s, mut r) = pair(&relay, "127.0.0.3", "127.0.0.4", 152).await;
    exchange(&mut s, &mut r).await;
    relay.shutdown().await;
}

#[tokio::test]
async fn pairs_total_is_a_bound() {
    let relay = relay(RelayLimits { pairs_total: 2, ..RelayLimits::default() }).await;
    let first = pair(&relay, "127.0.0.2", "127.0.0.2", 160).await;
    let _second = pair(&relay, "127.0.0.3", "127.0.0.3", 161).await;
    let mut s = hello(relay.local_addr(), "127.0.0.4", 162, Side::Sender).await;
    until(&relay, |st| st.hellos_waiting_now == 1).await;
    let mut r = hello(relay.local_addr(), "127.0.0.5", 162, Side::Receiver).await;
    assert_eq!(answer(&mut r).await, RelayAnswer::Busy.code());
    assert_eq!(answer(&mut s).await, RelayAnswer::Busy.code());
    // a pair ends: the newcomers are paired
    drop(first);
    until(&relay, |st| st.pairs_now == 1).await;
    let (mut s, mut r) = pair(&relay, "127.0.0.4", "127.0.0.5", 163).await;
    exchange(&mut s, &mut r).await;
    relay.shutdown().await;
}

#[tokio::test]
async fn a_client_without_a_complete_hello_is_closed() {
    let relay = relay(RelayLimits { hello_timeout: Duration::from_millis(200), ..RelayLimits::default() }).await;
    let mut s = connect_from(relay.local_addr(), "127.0.0.1").await;
    s.write_all(b"RLY1 and not forty bytes").await.unwrap();
    assert!(closed(&mut s).await, "closed after the hello timeout");
    assert_eq!(relay.stats().hello_timeouts, 1);
    until(&relay, |st| st.waiting_now == 0).await;
    relay.shutdown().await;
}

#[tokio::test]
async fn an_idle_pair_is_closed() {
    let relay = relay(RelayLimits { idle: Duration::from_millis(300), ..RelayLimits::default() }).await;
    let (mut s, mut r) = pair(&relay, "127.0.0.1", "127.0.0.1", 170).await;
    assert!(closed(&mut s).await);
    assert!(closed(&mut r).await);
    until(&relay, |st| st.pairs_now == 0).await;
    assert_eq!(relay.stats().idle_closed, 1);
    relay.shutdown().await;
}

#[tokio::test]
async fn a_rate_bound_pair_still_delivers_everything() {
    let limits = RelayLimits { bytes_per_second: Some(4 << 20), ..RelayLimits::default() };
    let relay = relay(limits).await;
    let (s, r) = pair(&relay, "127.0.0.1", "127.0.0.1", 175).await;
    transfer(s, r, 1 << 20).await;
    relay.shutdown().await;
}

/// Sends `len` deterministic bytes from `s`, closes, and checks `r` gets exactly them.
async fn transfer(mut s: TcpStream, mut r: TcpStream, len: usize) {
    let data: Vec<u8> = (0..len as u64).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let want = Sha256::digest(&data);
    let send = tokio::spawn(async move {
        s.write_all(&data).await.unwrap();
        s.shutdown().await.unwrap();
        // keep the socket open until the relay closes it (after delivering everything)
        let mut b = [0u8; 1];
        let _ = s.read(&mut b).await;
    });
    let got = tokio::time::timeout(Duration::from_secs(120), async {
        let mut h = Sha256::new();
        let mut n = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let k = r.read(&mut buf).await.unwrap();
            if k == 0 {
                break;
            }
            h.update(&buf[..k]);
            n += k;
        }
        (n, h.finalize())
    })
    .await
    .expect("the transfer ends");
    assert_eq!(got.0, len);
    assert_eq!(got.1, want, "byte-identical");
    tokio::time::timeout(BOUND, send).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_megabytes_arrive_byte_identical() {
    let relay = relay(RelayLimits::default()).await;
    let (s, r) = pair(&relay, "127.0.0.1", "127.0.0.1", 180).await;
    transfer(s, r, 64 << 20).await;
    until(&relay, |st| st.pairs_now == 0).await;
    assert_eq!(relay.stats().bytes_relayed, 64 << 20);
    // on Linux both directions went through splice(2), not the user-space buffer
    if cfg!(target_os = "linux") {
        assert_eq!(relay.stats().copy_fallbacks, 0);
    }
    relay.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_waiters_and_pairs() {
    let relay = relay(RelayLimits::default()).await;
    let (mut s, mut r) = pair(&relay, "127.0.0.1", "127.0.0.1", 190).await;
    let mut w = hello(relay.local_addr(), "127.0.0.1", 191, Side::Sender).await;
    until(&relay, |st| st.hellos_waiting_now == 1).await;
    tokio::time::timeout(BOUND, relay.shutdown()).await.expect("shutdown ends");
    assert!(closed(&mut s).await && closed(&mut r).await && closed(&mut w).await);
}

#[tokio::test]
async fn new_limits_apply_to_new_connections() {
    let relay = relay(RelayLimits::default()).await;
    relay.set_limits(RelayLimits { waiting_per_address: 0, ..RelayLimits::default() });
    let mut s = hello(relay.local_addr(), "127.0.0.1", 200, Side::Sender).await;
    assert_eq!(answer(&mut s).await, 4);
    relay.shutdown().await;
}
