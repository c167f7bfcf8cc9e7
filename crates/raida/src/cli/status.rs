//! `raida status --network FILE`: Echo probes and Version to every RAIDA of a network file
//! at once (EN 0 over UDP, each probe sent once: a lost one counts as lost, it is not sent
//! again); a table of up/down, median round-trip time, loss over the probes and build date.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use raida_client::{Client, Server, Transport};
use raida_net::network::Network;
use raida_proto::client::ClientKey;
use raida_proto::commands::echo::Echo;
use raida_proto::commands::version::Version;

#[derive(clap::Args)]
pub(crate) struct StatusArgs {
    /// The network file (network.toml of `raida network init`).
    #[arg(long, value_name = "FILE")]
    pub network: PathBuf,
    /// Seconds to wait for each probe.
    #[arg(long, default_value_t = 2.0)]
    pub timeout: f64,
    /// Echo probes per RAIDA (1..=100), sent 50 ms apart: the round trip is their median,
    /// the loss the share that got no answer.
    #[arg(long, default_value_t = 5)]
    pub probes: u32,
    /// One JSON object per RAIDA, in an array, instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// What one RAIDA answered.
struct Row {
    id: u8,
    address: String,
    up: bool,
    echo_ms: Option<f64>,
    /// Probes without an answer, of `probes`.
    lost: u32,
    probes: u32,
    version: Option<String>,
    error: Option<String>,
}

pub(crate) fn run(args: StatusArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.timeout > 0.0 && args.timeout <= 60.0, "--timeout must be between 0 and 60 seconds");
    anyhow::ensure!((1..=100).contains(&args.probes), "--probes must be between 1 and 100");
    let network = Network::load(&args.network)?;
    let timeout = Duration::from_secs_f64(args.timeout);
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the runtime")?;
    let rows = runtime.block_on(probe_all(&network, timeout, args.probes));
    let up = rows.iter().filter(|r| r.up).count();
    if args.json {
        let list: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "id": r.id, "address": r.address, "up": r.up,
                    "echo_ms": r.echo_ms, "probes": r.probes, "lost": r.lost,
                    "version": r.version, "error": r.error,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        println!(
            "{:>5}  {:<28} {:<5} {:>10} {:>6}  {:<10} error",
            "raida", "address", "state", "echo", "loss", "version"
        );
        for r in &rows {
            println!(
                "{:>5}  {:<28} {:<5} {:>10} {:>6}  {:<10} {}",
                r.id,
                r.address,
                if r.up { "up" } else { "down" },
                r.echo_ms.map(|ms| format!("{ms:.2} ms")).unwrap_or_else(|| "-".into()),
                format!("{}%", r.lost * 100 / r.probes.max(1)),
                r.version.as_deref().unwrap_or("-"),
                r.error.as_deref().unwrap_or(""),
            );
        }
        println!("{up} of {} up", rows.len());
    }
    // a script can tell "all up" from "some down"
    anyhow::ensure!(up == rows.len(), "{} of {} RAIDAs down", rows.len() - up, rows.len());
    Ok(())
}

/// Echo probes then Version to each RAIDA, all RAIDAs at once; rows in RAIDA id order.
async fn probe_all(network: &Network, timeout: Duration, count: u32) -> Vec<Row> {
    let client = Client::new(Transport::Udp, network.coin_id, timeout).single_copy();
    let mut probes = tokio::task::JoinSet::new();
    for r in network.raidas.iter().cloned() {
        probes.spawn(probe(client, r, count));
    }
    let mut rows = Vec::new();
    while let Some(done) = probes.join_next().await {
        if let Ok(row) = done {
            rows.push(row);
        }
    }
    rows.sort_by_key(|r| r.id);
    rows
}

/// One RAIDA: up when it answers an Echo probe; its Version when it answers that too.
async fn probe(client: Client, r: raida_net::network::RaidaEntry, count: u32) -> Row {
    let mut row = Row {
        id: r.id,
        address: r.address.clone(),
        up: false,
        echo_ms: None,
        lost: count,
        probes: count,
        version: None,
        error: None,
    };
    let addr = match raida_net::resolve::resolve_address(&r.address).await {
        Ok(a) => a,
        Err(e) => {
            row.error = Some(e.to_string());
            return row;
        }
    };
    let server = Server { addr, raida_id: r.id };
    let mut probes = tokio::task::JoinSet::new();
    for i in 0..count {
        probes.spawn(async move {
            tokio::time::sleep(Duration::from_millis(50) * i).await;
            let started = Instant::now();
            client.call(server, &ClientKey::None, &Echo).await.map(|_| started.elapsed().as_secs_f64() * 1e3)
        });
    }
    let mut times = Vec::new();
    while let Some(done) = probes.join_next().await {
        match done {
            Ok(Ok(ms)) => times.push(ms),
            Ok(Err(e)) => row.error = Some(e.to_string()),
            Err(e) => row.error = Some(e.to_string()),
        }
    }
    row.lost = count - times.len() as u32;
    if times.is_empty() {
        return row;
    }
    times.sort_by(f64::total_cmp);
    row.up = true;
    row.echo_ms = Some(times[times.len() / 2]);
    if row.lost == 0 {
        row.error = None;
    }
    match client.call(server, &ClientKey::None, &Version).await {
        Ok(date) => row.version = Some(String::from_utf8_lossy(&date.0).into_owned()),
        Err(e) => row.error = Some(format!("version: {e}")),
    }
    row
}
