//! Key exchanges per second and their latency on a local network of 25 RAIDAs (PROTOCOL.md
//! section 9): `cargo bench -p raida --bench rke [-- SECONDS CONCURRENCY PARTS [LOSS_PCT
//! ONE_WAY_MS]]` (defaults 10 s, 16 exchanges in parallel, 16 parts, a perfect loopback).
//! With LOSS_PCT or ONE_WAY_MS every RAIDA sits behind a simulated link (`raida_netsim`,
//! seed 22) losing that share of datagrams each way and delaying each by that much (a round
//! trip is twice it); `scripts/bench-lossy.sh` runs the table of docs/performance.md.
//!
//! Everything runs in this one process on this machine: the 25 RAIDAs (every Post Key made
//! durable before its answer, every Get Key deleting durably), CONCURRENCY senders and as
//! many receivers. Each sender/receiver pair is its own pair of coins: a coin has one
//! pending key per RAIDA (6/41), so one coin cannot run two exchanges at once.
//! Latency = from `send_key` until the sender has K (probe, posts, alert, the receiver's
//! fetches and its answer).

use std::time::{Duration, Instant};

use raida_client::rke::{send_key, AlertOutcome, KeyReceiver, ReceiveOptions, Recipient, SendOptions};
use raida_server::local_network::{init_network, user_wallet, LocalNetwork, NetworkInit};
use raida_store::wallet::Wallet;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let seconds: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(10);
    let concurrency: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(16);
    let parts: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(16);
    let loss_pct: f64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(0.0);
    let one_way_ms: u64 = args.get(4).and_then(|a| a.parse().ok()).unwrap_or(0);
    let simulation = (loss_pct > 0.0 || one_way_ms > 0).then(|| {
        let link = raida_netsim::LinkConfig {
            loss: loss_pct / 100.0,
            delay: Duration::from_millis(one_way_ms),
            ..raida_netsim::LinkConfig::PERFECT
        };
        raida_netsim::Simulation::new(22).with_link(link)
    });
    let tmp = tempfile::tempdir().expect("temp dir");
    let users: Vec<String> = (0..concurrency).flat_map(|i| [format!("s{i}"), format!("r{i}")]).collect();
    let opts = NetworkInit { users: users.clone(), pages: 1, denominations: vec![1], ..NetworkInit::default() };
    init_network(tmp.path(), &opts).expect("network init");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async move {
        let net = LocalNetwork::start_with(tmp.path(), &[], true, simulation.as_ref()).await.expect("network up");
        let network = net.network().clone();
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let mut tasks = Vec::new();
        for i in 0..concurrency {
            let sender = Wallet::load(&user_wallet(tmp.path(), &format!("s{i}")).unwrap()).unwrap();
            let receiver_w = Wallet::load(&user_wallet(tmp.path(), &format!("r{i}")).unwrap()).unwrap();
            let network = network.clone();
            tasks.push(tokio::spawn(async move {
                let accept = ReceiveOptions { accept: vec![sender.name()], ..ReceiveOptions::default() };
                let mut rx = KeyReceiver::bind("127.0.0.1:0", network.clone(), receiver_w.clone(), accept).await.unwrap();
                let to = Recipient { coin: receiver_w.name(), address: rx.local_addr().map(|a| a.to_string()), raida_id: None };
                let rx_task = tokio::spawn(async move {
                    let mut n = 0usize;
                    loop {
                        match rx.next_alert().await {
                            AlertOutcome::Accepted(_) => n += 1,
                            AlertOutcome::Refused { reason, .. } => eprintln!("refused: {reason}"),
                            AlertOutcome::MailboxUnreachable { reason } => eprintln!("mailbox: {reason}"),
                        }
                        if n == usize::MAX {
                            return;
                        }
                    }
                });
                let send_opts = SendOptions { parts: Some(parts), ..SendOptions::default() };
                let mut latencies = Vec::new();
                let mut failures = 0usize;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    match send_key(&network, &sender, &to, &send_opts).await {
                        Ok(_) => latencies.push(t.elapsed()),
                        Err(e) => {
                            failures += 1;
                            eprintln!("exchange failed: {e}");
                        }
                    }
                }
                rx_task.abort();
                (latencies, failures)
            }));
        }
        let started = Instant::now();
        let mut all = Vec::new();
        let mut failures = 0;
        for t in tasks {
            let (l, f) = t.await.unwrap();
            all.extend(l);
            failures += f;
        }
        let elapsed = started.elapsed().as_secs_f64();
        all.sort_unstable();
        let pct = |p: f64| all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1))).copied().unwrap_or_default();
        println!(
            "loss {loss_pct}% each way, round trip {} ms: {} exchanges ({parts} parts, {concurrency} in parallel) in {elapsed:.1} s: {:.1} exchanges/s; latency p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {failures} failed",
            2 * one_way_ms,
            all.len(),
            all.len() as f64 / elapsed,
            pct(0.50).as_secs_f64() * 1e3,
            pct(0.90).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3,
            all.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        );
        net.shutdown().await;
    });
}
