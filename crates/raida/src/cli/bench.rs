//! `raida bench ADDR --raida-id N ...`: Echo load against any RAIDA server.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use raida_client::bench::{self, BenchConfig, BenchProgress};
use raida_proto::client::ClientKey;
use raida_proto::{CoinId, Key16, Key32};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Server address, HOST:PORT (e.g. 127.0.0.1:50000 or localhost:50000).
    #[arg(value_parser = crate::cli::host_port)]
    pub addr: SocketAddr,
    /// The server's RAIDA id.
    #[arg(long)]
    pub raida_id: u8,
    /// Coin id (header bytes 6-7).
    #[arg(long, default_value_t = 6)]
    pub coin_id: u16,
    /// Use TCP (one request in flight per connection) instead of UDP.
    #[arg(long)]
    pub tcp: bool,
    /// UDP: requests in flight; TCP: connections.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Encryption type: 0, 1 (coin AN, AES-128-CTR) or 4 (SHA-256 of the AN, AES-256-GCM).
    #[arg(long, default_value_t = 0)]
    pub encryption: u8,
    /// The coin for EN 1 / EN 4: DN:SN:ANHEX (AN for this RAIDA).
    #[arg(long, allow_hyphen_values = true)]
    pub coin: Option<String>,
}

fn parse_coin(s: &str) -> anyhow::Result<(i8, u32, [u8; 16])> {
    let parts: Vec<&str> = s.split(':').collect();
    anyhow::ensure!(parts.len() == 3, "--coin must be DN:SN:ANHEX");
    let dn: i8 = parts[0].parse().context("--coin: DN must be -8..6")?;
    let sn: u32 = parts[1].parse().context("--coin: SN must be a decimal number")?;
    let mut an = [0u8; 16];
    hex::decode_to_slice(parts[2], &mut an).context("--coin: AN must be 32 hex digits")?;
    Ok((dn, sn, an))
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.duration > 0.0, "--duration must be positive");
    let key = match args.encryption {
        0 => ClientKey::None,
        1 | 4 => {
            let coin = args.coin.as_deref().context("--encryption 1 and 4 need --coin DN:SN:ANHEX")?;
            let (dn, sn, an) = parse_coin(coin)?;
            let an = Key16::new(an);
            if args.encryption == 1 {
                ClientKey::Coin { coin: CoinId { dn, sn }, an }
            } else {
                ClientKey::Token { coin: CoinId { dn, sn }, key: Key32::sha256_of_an(&an) }
            }
        }
        other => anyhow::bail!("--encryption {other}: choose 0, 1 or 4"),
    };
    let cfg = BenchConfig {
        addr: args.addr,
        raida_id: args.raida_id,
        coin_id: args.coin_id,
        tcp: args.tcp,
        concurrency: args.concurrency,
        duration: Duration::from_secs_f64(args.duration),
        key,
        loss_timeout: Duration::from_secs(1),
    };
    let progress = BenchProgress::default();
    let bar = indicatif::ProgressBar::new((args.duration * 10.0) as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let report = std::thread::scope(|scope| {
        let worker = scope.spawn(|| bench::run(&cfg, &progress));
        let started = std::time::Instant::now();
        while !worker.is_finished() {
            std::thread::sleep(Duration::from_millis(100));
            let done = progress.done.load(Ordering::Relaxed);
            let secs = started.elapsed().as_secs_f64();
            bar.set_position((secs * 10.0) as u64);
            bar.set_message(format!("{done} requests, {:.0}/s", done as f64 / secs.max(1e-9)));
        }
        bar.finish_and_clear();
        worker.join().map_err(|_| anyhow::anyhow!("bench thread panicked"))
    })??;
    let transport = if args.tcp { "tcp" } else { "udp" };
    println!(
        "{transport} EN {} echo, concurrency {}: {} ok, {} errors, {} lost in {:.2} s",
        args.encryption,
        args.concurrency,
        report.ok,
        report.errors,
        report.lost,
        report.elapsed.as_secs_f64()
    );
    println!("requests/s: {:.0}", report.requests_per_sec());
    println!(
        "latency: p50 {:.1} us, p99 {:.1} us, p999 {:.1} us, max {:.1} us",
        report.p50.as_secs_f64() * 1e6,
        report.p99.as_secs_f64() * 1e6,
        report.p999.as_secs_f64() * 1e6,
        report.max.as_secs_f64() * 1e6
    );
    Ok(())
}
