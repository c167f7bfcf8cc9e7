//! `raida status --network FILE`: Echo and Version to every RAIDA of a network file at
//! once (EN 0 over UDP); a table of up/down, round-trip time and build date.

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
    /// Seconds to wait for each RAIDA.
    #[arg(long, default_value_t = 2.0)]
    pub timeout: f64,
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
    version: Option<String>,
    error: Option<String>,
}

pub(crate) fn run(args: StatusArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.timeout > 0.0 && args.timeout <= 60.0, "--timeout must be between 0 and 60 seconds");
    let network = Network::load(&args.network)?;
    let timeout = Duration::from_secs_f64(args.timeout);
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the runtime")?;
    let rows = runtime.block_on(probe_all(&network, timeout));
    let up = rows.iter().filter(|r| r.up).count();
    if args.json {
        let list: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "id": r.id, "address": r.address, "up": r.up,
                    "echo_ms": r.echo_ms, "version": r.version, "error": r.error,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        println!("{:>5}  {:<28} {:<5} {:>10}  {:<10} error", "raida", "address", "state", "echo", "version");
        for r in &rows {
            println!(
                "{:>5}  {:<28} {:<5} {:>10}  {:<10} {}",
                r.id,
                r.address,
                if r.up { "up" } else { "down" },
                r.echo_ms.map(|ms| format!("{ms:.2} ms")).unwrap_or_else(|| "-".into()),
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

/// Echo then Version to each RAIDA, all RAIDAs at once; rows in RAIDA id order.
async fn probe_all(network: &Network, timeout: Duration) -> Vec<Row> {
    let client = Client::new(Transport::Udp, network.coin_id, timeout);
    let mut probes = tokio::task::JoinSet::new();
    for r in network.raidas.iter().cloned() {
        probes.spawn(probe(client, r));
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

/// One RAIDA: up when it answers Echo; its Version when it answers that too.
async fn probe(client: Client, r: raida_net::network::RaidaEntry) -> Row {
    let mut row = Row { id: r.id, address: r.address.clone(), up: false, echo_ms: None, version: None, error: None };
    let addr = match raida_net::resolve::resolve_address(&r.address).await {
        Ok(a) => a,
        Err(e) => {
            row.error = Some(e.to_string());
            return row;
        }
    };
    let server = Server { addr, raida_id: r.id };
    let started = Instant::now();
    match client.call(server, &ClientKey::None, &Echo).await {
        Ok(_) => {
            row.up = true;
            row.echo_ms = Some(started.elapsed().as_secs_f64() * 1e3);
        }
        Err(e) => {
            row.error = Some(e.to_string());
            return row;
        }
    }
    match client.call(server, &ClientKey::None, &Version).await {
        Ok(date) => row.version = Some(String::from_utf8_lossy(&date.0).into_owned()),
        Err(e) => row.error = Some(format!("version: {e}")),
    }
    row
}
