//! `raida bench ADDR --raida-id N ...`: load against any RAIDA server, or every RAIDA of a
//! network file at once; optionally against a second server (`--vs`) in the same run,
//! with the ratio of the two rates.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::bench::{self, BenchCommand, BenchConfig, BenchProgress, BenchReport, BenchTarget};
use anyhow::Context;
use raida_proto::client::ClientKey;
use raida_proto::{CoinId, Key16, Key32};

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(crate) enum CommandArg {
    /// 0/0 Echo.
    Echo,
    /// 0/1 Version.
    Version,
    /// 2/40 Get Ticket for --coin.
    GetTicket,
    /// 4/41 Post Key then 4/43 Get Key of it (each answered once durable).
    PostGetKey,
    /// 4/44 Encrypt Key for --coin (needs --encryption 4).
    EncryptKey,
}

#[derive(clap::Args)]
pub(crate) struct BenchArgs {
    /// Server address, HOST:PORT (e.g. 127.0.0.1:50000 or localhost:50000); or --network.
    #[arg(value_parser = crate::cli::host_port, required_unless_present = "network")]
    pub addr: Option<SocketAddr>,
    /// The server's RAIDA id (with ADDR).
    #[arg(long, required_unless_present = "network")]
    pub raida_id: Option<u8>,
    /// Load every RAIDA of this network file at once (instead of ADDR).
    #[arg(long, conflicts_with_all = ["addr", "vs"])]
    pub network: Option<PathBuf>,
    /// Coin id (header bytes 6-7; a network file's own coin id wins).
    #[arg(long, default_value_t = 6)]
    pub coin_id: u16,
    /// The request to send.
    #[arg(long, value_enum, default_value = "echo")]
    pub command: CommandArg,
    /// Use TCP (one connection per --concurrency) instead of UDP.
    #[arg(long)]
    pub tcp: bool,
    /// UDP: requests in flight; TCP: connections.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// TCP: requests written back to back on each connection before reading the answers.
    #[arg(long, default_value_t = 1)]
    pub pipeline: usize,
    /// Fixed rate (requests/s in all, UDP): latency counted from each request's scheduled
    /// time (coordinated-omission correction). Without it: as fast as answers come.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Seconds to run.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Encryption type: 0, 1 (coin AN, AES-128-CTR) or 4 (SHA-256 of the AN, AES-256-GCM).
    #[arg(long, default_value_t = 0)]
    pub encryption: u8,
    /// The coin for EN 1 / EN 4, Get Ticket and Encrypt Key: DN:SN with --an-file, or
    /// DN:SN:ANHEX (AN for this RAIDA; UNSAFE on a shared machine: ps and /proc show it).
    #[arg(long, allow_hyphen_values = true)]
    pub coin: Option<String>,
    /// Read --coin's AN from this file (one line, 32 hex digits; `-`: standard input;
    /// chmod 600).
    #[arg(long, value_name = "PATH", requires = "coin")]
    pub an_file: Option<std::path::PathBuf>,
    /// The server's process id (same machine): report its CPU time per request from /proc.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Another server to run the same load against right after, e.g. the floor or another
    /// implementation (repeat for several); prints each and the ratio of the first rate
    /// to each.
    #[arg(long, value_parser = crate::cli::host_port)]
    pub vs: Vec<SocketAddr>,
    /// The other servers' RAIDA id (default: --raida-id).
    #[arg(long, requires = "vs")]
    pub vs_raida_id: Option<u8>,
    /// The other servers' process ids, in the order of --vs.
    #[arg(long, requires = "vs")]
    pub vs_pid: Vec<u32>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `--coin DN:SN:ANHEX`, or `--coin DN:SN` with the AN in `--an-file`.
fn parse_coin(s: &str, an_file: Option<&std::path::Path>) -> anyhow::Result<(CoinId, [u8; 16])> {
    let parts: Vec<&str> = s.split(':').collect();
    let an_arg = match (parts.len(), an_file) {
        (3, None) => Some(parts[2].to_string()),
        (2, Some(_)) => None,
        (3, Some(_)) => anyhow::bail!("give --coin as DN:SN when the AN is in --an-file"),
        _ => anyhow::bail!("--coin must be DN:SN:ANHEX, or DN:SN with --an-file"),
    };
    let dn: i8 = parts[0].parse().context("--coin: DN must be -8..6")?;
    let sn: u32 = parts[1].parse().context("--coin: SN must be a decimal number")?;
    let an = crate::cli::coin::one_secret::<16>(an_arg, an_file, "--an-file", "AN")?;
    Ok((CoinId { dn, sn }, *an))
}

pub(crate) fn run(args: BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.duration > 0.0, "--duration must be positive");
    if let Some(r) = args.rate {
        anyhow::ensure!(r > 0.0 && r.is_finite(), "--rate must be positive");
        anyhow::ensure!(!args.tcp, "--rate is for UDP");
    }
    let key = match args.encryption {
        0 => ClientKey::None,
        1 | 4 => {
            let coin = args.coin.as_deref().context("--encryption 1 and 4 need --coin DN:SN:ANHEX")?;
            let (coin, an) = parse_coin(coin, args.an_file.as_deref())?;
            let an = Key16::new(an);
            if args.encryption == 1 {
                ClientKey::Coin { coin, an }
            } else {
                ClientKey::Token { coin, key: Key32::sha256_of_an(&an) }
            }
        }
        other => anyhow::bail!("--encryption {other}: choose 0, 1 or 4"),
    };
    let command = match args.command {
        CommandArg::Echo => BenchCommand::Echo,
        CommandArg::Version => BenchCommand::Version,
        CommandArg::GetTicket => BenchCommand::GetTicket,
        CommandArg::PostGetKey => BenchCommand::PostGetKey,
        CommandArg::EncryptKey => BenchCommand::EncryptKey,
    };
    let (targets, coin_id) = match (&args.network, args.addr, args.raida_id) {
        (Some(path), _, _) => {
            let net = raida_net::network::Network::load(path)?;
            let mut targets = Vec::new();
            for r in &net.raidas {
                let addr = raida_net::resolve::resolve_address_blocking(&r.address)
                    .map_err(|e| anyhow::anyhow!("RAIDA {}: {e}", r.id))?;
                targets.push(BenchTarget { addr, raida_id: r.id });
            }
            anyhow::ensure!(!targets.is_empty(), "{}: no RAIDA in the network file", path.display());
            (targets, net.coin_id)
        }
        (None, Some(addr), Some(raida_id)) => (vec![BenchTarget { addr, raida_id }], args.coin_id),
        _ => anyhow::bail!("give ADDR and --raida-id, or --network FILE"),
    };
    let cfg = BenchConfig {
        targets,
        coin_id,
        tcp: args.tcp,
        concurrency: args.concurrency,
        pipeline: args.pipeline,
        duration: Duration::from_secs_f64(args.duration),
        key,
        command,
        rate: args.rate,
        loss_timeout: Duration::from_secs(1),
        server_pid: args.server_pid,
    };
    let label = |cfg: &BenchConfig| match cfg.targets.as_slice() {
        [one] => one.addr.to_string(),
        many => format!("{} servers", many.len()),
    };
    let first = measure(&cfg, args.json)?;
    let mut others = Vec::new();
    for (i, addr) in args.vs.iter().enumerate() {
        let raida_id = args.vs_raida_id.or(args.raida_id).unwrap_or(0);
        let server_pid = args.vs_pid.get(i).copied();
        let vs = BenchConfig { targets: vec![BenchTarget { addr: *addr, raida_id }], server_pid, ..cfg.clone() };
        others.push((label(&vs), measure(&vs, args.json)?));
    }
    let transport = if args.tcp { "tcp" } else { "udp" };
    let what = format!("{transport} EN {} {}", args.encryption, command.name());
    if args.json {
        let mut runs = vec![json_report(&label(&cfg), &first)];
        runs.extend(others.iter().map(|(l, r)| json_report(l, r)));
        let mut doc = serde_json::json!({
            "transport": transport,
            "encryption": args.encryption,
            "command": command.name(),
            "concurrency": args.concurrency,
            "pipeline": args.pipeline,
            "rate": args.rate,
            "runs": runs,
        });
        if !others.is_empty() {
            let ratios: Vec<f64> =
                others.iter().map(|(_, r)| first.requests_per_sec() / r.requests_per_sec().max(1e-9)).collect();
            doc["ratios"] = serde_json::json!(ratios);
        }
        println!("{doc}");
    } else {
        print_report(&label(&cfg), &what, args.concurrency, &first);
        for (l, r) in &others {
            print_report(l, &what, args.concurrency, r);
        }
        for (l, r) in &others {
            let cpu = match (first.server_cpu_per_request(), r.server_cpu_per_request()) {
                (Some(a), Some(b)) => {
                    format!(", server CPU per request {:.2}", a.as_secs_f64() / b.as_secs_f64().max(1e-12))
                }
                _ => String::new(),
            };
            let rate = first.requests_per_sec() / r.requests_per_sec().max(1e-9);
            println!("ratio {} / {l}: requests/s {rate:.3}{cpu}", label(&cfg));
        }
    }
    // a run in which nothing answered measured nothing: fail, so scripts notice
    anyhow::ensure!(first.ok > 0, "{}: no request was answered", label(&cfg));
    for (l, r) in &others {
        anyhow::ensure!(r.ok > 0, "{l}: no request was answered");
    }
    Ok(())
}

fn measure(cfg: &BenchConfig, quiet: bool) -> anyhow::Result<BenchReport> {
    let progress = BenchProgress::default();
    let secs_total = cfg.duration.as_secs_f64();
    let bar =
        if quiet { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new((secs_total * 10.0) as u64) };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let report = std::thread::scope(|scope| {
        let worker = scope.spawn(|| bench::run(cfg, &progress));
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
    Ok(report)
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn print_report(label: &str, what: &str, concurrency: usize, r: &BenchReport) {
    println!(
        "{label}: {what}, concurrency {concurrency}: {} ok, {} errors, {} lost in {:.2} s",
        r.ok,
        r.errors,
        r.lost,
        r.elapsed.as_secs_f64()
    );
    if let Some(e) = &r.first_error {
        println!("  first error: {e}");
    }
    println!("  requests/s: {:.0}", r.requests_per_sec());
    println!(
        "  latency: p50 {:.1} us, p90 {:.1} us, p99 {:.1} us, p999 {:.1} us, max {:.1} us",
        us(r.p50),
        us(r.p90),
        us(r.p99),
        us(r.p999),
        us(r.max)
    );
    let server = r.server_cpu_per_request().map(|c| format!("server {:.2} us", us(c))).unwrap_or_default();
    println!(
        "  cpu per request: {server}{}load generator {:.2} us",
        if server.is_empty() { "" } else { ", " },
        us(r.client_cpu_per_request())
    );
}

fn json_report(label: &str, r: &BenchReport) -> serde_json::Value {
    serde_json::json!({
        "target": label,
        "ok": r.ok,
        "errors": r.errors,
        "lost": r.lost,
        "first_error": r.first_error,
        "seconds": r.elapsed.as_secs_f64(),
        "requests_per_sec": r.requests_per_sec(),
        "latency_us": {
            "p50": us(r.p50), "p90": us(r.p90), "p99": us(r.p99), "p999": us(r.p999), "max": us(r.max),
        },
        "server_cpu_us_per_request": r.server_cpu_per_request().map(us),
        "client_cpu_us_per_request": us(r.client_cpu_per_request()),
    })
}
