//! `raida send` / `raida receive` throughput and latency:
//! `cargo bench -p raida --bench transfer [-- MIB ROUNDS]` (defaults 200 MiB, 3 rounds).
//!
//! * Throughput on loopback TCP, in the same run and interleaved (so both see the same
//!   machine load): the raw channel (X25519 + PSK + ML-KEM-768, 256 KiB `Data` messages from
//!   memory to a receiver that counts them) against `transfer::send_over` /
//!   `receive_over` (a file read from disk, hashed on both sides, written to disk, fsync'ed,
//!   renamed), and the same protocol from memory to a discarding writer (no disk). Best
//!   round of each, and the ratios.
//! * Time to first byte: from calling `transfer::send` (key exchange through 25 in-process
//!   RAIDAs, 16 parts, then TCP connect and handshake) until the receiver reports the first
//!   bytes of the file; median of 5 runs, with the key exchange's share.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raida_channel::{Channel, Config, Incoming, Psk};
use raida_client::rke::Recipient;
use raida_client::transfer::{self, Event, Item, ReceiveOptions, Receiver, SendOptions, Sink, DEFAULT_CHUNK};
use raida_server::local_network::{init_network, user_wallet, LocalNetwork, NetworkInit};
use raida_store::wallet::Wallet;
use tokio::net::{TcpListener, TcpStream};

fn cfg() -> Config {
    Config::new(Some(Psk::new(vec![7u8; 32]).expect("psk")), true)
}

async fn pair() -> (Channel, Channel) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let acc = tokio::spawn(async move {
        let (s, _) = l.accept().await.expect("accept");
        s.set_nodelay(true).expect("nodelay");
        Channel::accept(s, cfg()).await.expect("accept channel")
    });
    let s = TcpStream::connect(addr).await.expect("connect");
    s.set_nodelay(true).expect("nodelay");
    let c = Channel::connect(s, cfg()).await.expect("connect channel");
    (c, acc.await.expect("join"))
}

/// MB/s of `bytes` in `d`.
fn mbs(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

async fn raw_channel(total: u64) -> Duration {
    let (tx, mut rx) = pair().await;
    let (counted_tx, counted) = tokio::sync::oneshot::channel();
    let counting = tokio::spawn(async move {
        let mut n = 0u64;
        while let Some(Ok(i)) = rx.recv().await {
            match i {
                Incoming::Data(d) => n += d.len() as u64,
                Incoming::End => break,
                Incoming::Request { .. } => {}
            }
        }
        let _ = counted_tx.send(n);
        // then wait for the sender's shutdown
        let _ = rx.closed().await;
    });
    let t = Instant::now();
    let mut sent = 0u64;
    while sent < total {
        // a fresh buffer per message, as a reader would produce
        let chunk = vec![0x5Au8; DEFAULT_CHUNK];
        sent += chunk.len() as u64;
        tx.send(chunk).await.expect("send");
    }
    tx.sender().finish().await.expect("finish");
    let got = counted.await.expect("count");
    let d = t.elapsed();
    let _ = tx.shutdown().await;
    let _ = counting.await;
    assert_eq!(got, sent);
    d
}

/// The receiver accepts whatever passes its checks (`--yes`).
fn yes() -> transfer::ReceiveOptions {
    transfer::ReceiveOptions { approval: transfer::Approval::Always, ..transfer::ReceiveOptions::default() }
}

async fn file_transfer(src: &Path, out: &Path) -> Duration {
    let _ = std::fs::remove_file(out.join("payload.bin"));
    let (tx, rx) = pair().await;
    let dir = out.to_path_buf();
    let receiving =
        tokio::spawn(async move { transfer::receive_over(rx, Sink::Directory(dir), &yes(), &mut |_| {}).await });
    let t = Instant::now();
    let items = vec![Item::file(src).expect("item")];
    transfer::send_over(tx, items, &SendOptions::default(), &mut |_| {}).await.expect("send");
    receiving.await.expect("join").expect("receive");
    t.elapsed()
}

/// The transfer protocol without the disk: a stream item from memory to a writer that
/// discards (both SHA-256 passes still run).
async fn memory_transfer(total: u64) -> Duration {
    let (tx, rx) = pair().await;
    let receiving = tokio::spawn(async move {
        transfer::receive_over(rx, Sink::Writer(Box::new(std::io::sink())), &yes(), &mut |_| {}).await
    });
    let t = Instant::now();
    let data = std::io::Read::take(std::io::repeat(0x5A), total);
    let items = vec![Item::Stream { name: "memory".into(), reader: Box::new(data) }];
    transfer::send_over(tx, items, &SendOptions::default(), &mut |_| {}).await.expect("send");
    receiving.await.expect("join").expect("receive");
    t.elapsed()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let mib: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(200);
    let rounds: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    let total = mib << 20;
    let tmp = tempfile::tempdir().expect("temp dir");
    let src = tmp.path().join("payload.bin");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&src).expect("create");
        let mut block = vec![0u8; 1 << 20];
        for i in 0..mib {
            for (j, b) in block.iter_mut().enumerate() {
                *b = (j as u64 * 2654435761 + i) as u8;
            }
            f.write_all(&block).expect("write");
        }
    }
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        let (mut best_raw, mut best_file, mut best_mem) = (Duration::MAX, Duration::MAX, Duration::MAX);
        for round in 1..=rounds {
            let raw = raw_channel(total).await;
            let file = file_transfer(&src, &out).await;
            let mem = memory_transfer(total).await;
            println!(
                "round {round}: raw channel {:.0} MB/s, transfer file to file {:.0} MB/s, memory to memory {:.0} MB/s ({mib} MiB)",
                mbs(total, raw),
                mbs(total, file),
                mbs(total, mem)
            );
            best_raw = best_raw.min(raw);
            best_file = best_file.min(file);
            best_mem = best_mem.min(mem);
        }
        let (r, f, m) = (mbs(total, best_raw), mbs(total, best_file), mbs(total, best_mem));
        println!(
            "best: raw channel {r:.0} MB/s, transfer file to file {f:.0} MB/s ({:.0}%), memory to memory {m:.0} MB/s ({:.0}%)",
            f / r * 100.0,
            m / r * 100.0
        );
        // what the transfer adds per byte on each side: one SHA-256 pass (and a copy to or
        // from the page cache); both sides share this machine's cores
        let block = vec![0xA5u8; DEFAULT_CHUNK];
        let blocks = total / DEFAULT_CHUNK as u64;
        // the two SHA-256 implementations side by side, interleaved, best of 5 each
        let (mut best_sha2, mut best_awslc) = (Duration::MAX, Duration::MAX);
        for _ in 0..5 {
            let t = Instant::now();
            let mut h = <sha2::Sha256 as sha2::Digest>::new();
            for _ in 0..blocks {
                sha2::Digest::update(&mut h, &block);
            }
            let _ = sha2::Digest::finalize(h);
            best_sha2 = best_sha2.min(t.elapsed());
            let t = Instant::now();
            let mut h = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
            for _ in 0..blocks {
                h.update(&block);
            }
            let _ = h.finish();
            best_awslc = best_awslc.min(t.elapsed());
        }
        println!(
            "SHA-256 alone, one core, best of 5 interleaved: aws-lc-rs {:.0} MB/s, sha2 (the transfer's) {:.0} MB/s",
            mbs(total, best_awslc),
            mbs(total, best_sha2)
        );
    });

    // time to first byte through the key exchange
    let net_dir = tmp.path().join("net");
    let opts = NetworkInit {
        users: vec!["alice".into(), "bob".into()],
        pages: 1,
        denominations: vec![1],
        ..NetworkInit::default()
    };
    init_network(&net_dir, &opts).expect("network init");
    let small = tmp.path().join("small.txt");
    std::fs::write(&small, vec![b'x'; 100_000]).expect("write");
    rt.block_on(async {
        let net = LocalNetwork::start(&net_dir, &[], true).await.expect("network up");
        let network = net.network().clone();
        let alice = Wallet::load(&user_wallet(&net_dir, "alice").expect("alice")).expect("wallet");
        let bob = Wallet::load(&user_wallet(&net_dir, "bob").expect("bob")).expect("wallet");
        let mut firsts = Vec::new();
        let mut keys = Vec::new();
        for run in 0..5 {
            let inbox = tmp.path().join(format!("inbox{run}"));
            std::fs::create_dir(&inbox).expect("mkdir");
            let ropts = ReceiveOptions { accept: vec![alice.name()], ..ReceiveOptions::default() };
            let receiver = Receiver::bind("127.0.0.1:0", network.clone(), bob.clone(), ropts).await.expect("bind");
            let to = Recipient { coin: bob.name(), address: receiver.local_addr().map(|a| a.to_string()), raida_id: None };
            let first: Arc<Mutex<Option<Instant>>> = Arc::default();
            let mark = first.clone();
            let receiving = tokio::spawn(async move {
                receiver
                    .receive(Sink::Directory(inbox), &mut |e| {
                        if let Event::Progress { .. } = e {
                            mark.lock().expect("lock").get_or_insert_with(Instant::now);
                        }
                    })
                    .await
            });
            let t = Instant::now();
            let mut key_at = None;
            let items = vec![Item::file(&small).expect("item")];
            transfer::send(&network, &alice, &to, items, &SendOptions::default(), &mut |e| {
                if let Event::KeyExchanged { .. } = e {
                    key_at = Some(t.elapsed());
                }
            })
            .await
            .expect("send");
            receiving.await.expect("join").expect("receive");
            let first = first.lock().expect("lock").expect("a first byte");
            firsts.push(first.duration_since(t));
            keys.push(key_at.expect("key event"));
        }
        firsts.sort();
        keys.sort();
        println!(
            "time to first byte (send start -> receiver has the first bytes): median {:.1} ms (min {:.1}, max {:.1}); key exchange median {:.1} ms",
            firsts[2].as_secs_f64() * 1e3,
            firsts[0].as_secs_f64() * 1e3,
            firsts[4].as_secs_f64() * 1e3,
            keys[2].as_secs_f64() * 1e3
        );
        net.shutdown().await;
    });
}
