//! `relay::connect` against real relays on loopback: pairing, and the next relay after
//! 0x04, 0x05, a refused connect and a silent relay; every failure in one error line.

use std::time::Duration;

use raida_net::relay::{connect, RelayError};
use raida_proto::relay::Side;
use raida_relay::{Relay, RelayLimits, RunningRelay};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const BOUND: Duration = Duration::from_secs(30);

async fn relay(limits: RelayLimits) -> RunningRelay {
    Relay::start(TcpListener::bind("127.0.0.1:0").await.unwrap(), limits).unwrap()
}

/// An address where nothing listens (bound, then closed).
async fn dead_address() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap().to_string();
    drop(l);
    a
}

#[tokio::test]
async fn pairs_after_skipping_dead_busy_and_peerless_relays() {
    let busy = relay(RelayLimits { waiting_per_address: 0, ..RelayLimits::default() }).await;
    let lonely = relay(RelayLimits { pairing_wait: Duration::from_millis(100), ..RelayLimits::default() }).await;
    let good = relay(RelayLimits::default()).await;
    // a relay that accepts and never answers: the client's wait ends it
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let dead = dead_address().await;
    let relays = vec![dead.clone(), busy.local_addr().to_string(), silent_addr.clone(), good.local_addr().to_string()];
    let id = [42u8; 32];
    // the sender alone first: it passes the dead, busy and silent relays and waits on the good one
    let sender = {
        let relays = relays.clone();
        tokio::spawn(async move { connect(&relays, &id, Side::Sender, Duration::from_secs(5)).await })
    };
    // the receiver tries the lonely relay first (0x05 there), then the same list
    let mut receiver_list = vec![lonely.local_addr().to_string()];
    receiver_list.extend(relays.iter().cloned());
    let (mut r, via_r) =
        tokio::time::timeout(BOUND, connect(&receiver_list, &id, Side::Receiver, Duration::from_secs(5)))
            .await
            .unwrap()
            .unwrap();
    let (mut s, via_s) = tokio::time::timeout(BOUND, sender).await.unwrap().unwrap().unwrap();
    assert_eq!(via_r, good.local_addr().to_string());
    assert_eq!(via_s, via_r);
    s.write_all(b"ping").await.unwrap();
    let mut b = [0u8; 4];
    r.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"ping");
    drop(silent);
}

#[tokio::test]
async fn every_failure_in_one_line() {
    let busy = relay(RelayLimits { waiting_per_address: 0, ..RelayLimits::default() }).await;
    let lonely = relay(RelayLimits { pairing_wait: Duration::from_millis(100), ..RelayLimits::default() }).await;
    let dead = dead_address().await;
    let relays = vec![dead.clone(), busy.local_addr().to_string(), lonely.local_addr().to_string()];
    let e = connect(&relays, &[1; 32], Side::Sender, Duration::from_secs(5)).await.unwrap_err();
    let text = e.to_string();
    assert!(!text.contains('\n'), "{text}");
    assert!(text.contains(&format!("{dead}: connect")), "{text}");
    assert!(text.contains("busy (0x04)"), "{text}");
    assert!(text.contains("no peer within its pairing wait (0x05)"), "{text}");
    assert!(matches!(connect(&[], &[1; 32], Side::Sender, BOUND).await, Err(RelayError::NoRelays)));
}

#[tokio::test]
async fn side_taken_stops_the_walk() {
    let r1 = relay(RelayLimits::default()).await;
    let r2 = relay(RelayLimits::default()).await;
    let relays = vec![r1.local_addr().to_string(), r2.local_addr().to_string()];
    let first = {
        let relays = relays.clone();
        tokio::spawn(async move { connect(&relays[..1], &[7; 32], Side::Sender, Duration::from_secs(20)).await })
    };
    tokio::time::timeout(BOUND, async {
        while r1.stats().hellos_waiting_now == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    let e = connect(&relays, &[7; 32], Side::Sender, Duration::from_secs(5)).await.unwrap_err();
    let RelayError::Failed { tried } = &e else { panic!("{e}") };
    assert_eq!(tried.len(), 1, "{e}");
    assert!(e.to_string().contains("0x03"), "{e}");
    first.abort();
}
