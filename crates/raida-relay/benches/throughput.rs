//! Relay throughput against direct TCP on loopback, side by side in one run:
//! `cargo bench -p raida-relay --bench throughput [-- MIB ROUNDS]` (defaults 512 MiB, 3
//! rounds). Each round moves MIB MiB from a sender to a receiver once directly over one
//! loopback TCP connection and once through a relay (two connections spliced by it),
//! interleaved so that both see the same machine load; it prints the best round of each
//! in MB/s (10^6 bytes per second) and the ratio relayed / direct.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use raida_relay::{Relay, RelayHello, RelayLimits, Side};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const CHUNK: usize = 1 << 20;

async fn send(mut s: TcpStream, total: u64) {
    let buf = vec![0x5au8; CHUNK];
    let mut left = total;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        s.write_all(&buf[..n]).await.expect("send");
        left -= n as u64;
    }
    s.shutdown().await.expect("shutdown");
}

async fn receive(mut r: TcpStream) -> u64 {
    let mut buf = vec![0u8; CHUNK];
    let mut n = 0u64;
    loop {
        match r.read(&mut buf).await.expect("receive") {
            0 => return n,
            k => n += k as u64,
        }
    }
}

/// Seconds to move `total` bytes from `s` to `r`.
async fn timed(s: TcpStream, r: TcpStream, total: u64) -> Duration {
    let start = Instant::now();
    let sender = tokio::spawn(send(s, total));
    let got = receive(r).await;
    sender.await.expect("sender");
    assert_eq!(got, total, "all bytes arrived");
    start.elapsed()
}

async fn direct(total: u64) -> Duration {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let (s, r) = tokio::join!(TcpStream::connect(addr), l.accept());
    timed(s.expect("connect"), r.expect("accept").0, total).await
}

async fn relayed(relay: SocketAddr, id: u8, total: u64) -> Duration {
    let open = |side| async move {
        let mut c = TcpStream::connect(relay).await.expect("connect");
        c.write_all(&RelayHello::new([id; 32], side).to_bytes()).await.expect("hello");
        c
    };
    let mut s = open(Side::Sender).await;
    let mut r = open(Side::Receiver).await;
    let mut a = [0u8; 1];
    s.read_exact(&mut a).await.expect("answer");
    assert_eq!(a[0], 1);
    r.read_exact(&mut a).await.expect("answer");
    assert_eq!(a[0], 1);
    timed(s, r, total).await
}

fn mbps(total: u64, d: Duration) -> f64 {
    total as f64 / d.as_secs_f64() / 1e6
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let mib: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(512);
    let rounds: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    let total = mib << 20;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async move {
        let relay = Relay::start(TcpListener::bind("127.0.0.1:0").await.expect("bind"), RelayLimits::default())
            .expect("relay");
        let (mut best_direct, mut best_relayed) = (Duration::MAX, Duration::MAX);
        let mut ratios = Vec::new();
        for round in 0..rounds {
            let d = direct(total).await;
            let r = relayed(relay.local_addr(), round as u8, total).await;
            println!("round {}: direct {:.0} MB/s, relayed {:.0} MB/s", round + 1, mbps(total, d), mbps(total, r));
            ratios.push(d.as_secs_f64() / r.as_secs_f64());
            best_direct = best_direct.min(d);
            best_relayed = best_relayed.min(r);
        }
        let (d, r) = (mbps(total, best_direct), mbps(total, best_relayed));
        // the ratio of each round (both halves under the same load), median
        ratios.sort_by(f64::total_cmp);
        let median = ratios.get(ratios.len() / 2).copied().unwrap_or(0.0);
        println!(
            "{mib} MiB, best of {rounds}: direct {d:.0} MB/s, relayed {r:.0} MB/s, ratio {:.2}; median ratio of the rounds {median:.2} (splice fallbacks: {})",
            r / d,
            relay.stats().copy_fallbacks
        );
        relay.shutdown().await;
    });
}
