//! `raida network init|up|add-user`: a whole RAIDA network on this machine
//! (`raida_server::local_network`).

use std::path::{Path, PathBuf};

use raida_net::network::NETWORK_FILE;
use raida_server::local_network::{add_user, init_network, user_wallet, LocalNetwork, NetworkInit};

/// Folder used by `raida network up` when no DIR is given; created on first start.
pub(crate) const DEFAULT_DIR: &str = "raida-network";

#[derive(clap::Subcommand)]
pub(crate) enum NetworkCommand {
    /// Create DIR: one data directory per RAIDA (ports base..base+N-1 on 127.0.0.1), an
    /// identity coin for each, every other RAIDA as key server, DIR/network.toml (with one
    /// relay at base+25), and a wallet per user registered on every RAIDA (DIR/wallets/<user>/).
    Init {
        dir: PathBuf,
        /// Number of RAIDAs (1..25).
        #[arg(long, default_value_t = 25)]
        raidas: u8,
        /// Users to create, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "alice,bob")]
        users: Vec<String>,
        /// RAIDA N listens on 127.0.0.1:(base + N).
        #[arg(long, default_value_t = 50_000)]
        base_port: u16,
        /// Pages per denomination in each data directory (1024 coins each).
        #[arg(long, default_value_t = 1)]
        pages: u32,
        /// IP address every RAIDA listens on and network.toml names (e.g. this machine's
        /// LAN address, so that another machine can use the network).
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
    },
    /// Run every RAIDA of DIR, and its relay, in this process (default ./raida-network,
    /// created with users alice and bob on first start). Ctrl-C stops them all.
    Up {
        dir: Option<PathBuf>,
        /// RAIDA ids to leave out (comma-separated), to try failures.
        #[arg(long, value_delimiter = ',')]
        skip: Vec<u8>,
        /// Log filter (tracing EnvFilter syntax).
        #[arg(long, default_value = "warn")]
        log: String,
        /// Log lines as text or as one JSON object per line.
        #[arg(long, value_enum, default_value_t = super::serve::LogFormat::Text, env = "RAIDA_LOG_FORMAT")]
        log_format: super::serve::LogFormat,
    },
    /// Make one more user's wallet and register it on every RAIDA (the network must be stopped).
    AddUser { dir: PathBuf, name: String },
}

pub(crate) fn run(cmd: NetworkCommand) -> anyhow::Result<()> {
    match cmd {
        NetworkCommand::Init { dir, raidas, users, base_port, pages, host } => {
            let opts = NetworkInit {
                raidas,
                users: users.clone(),
                base_port,
                pages,
                host: host.clone(),
                ..NetworkInit::default()
            };
            init_network(&dir, &opts)?;
            println!("created {} ({raidas} RAIDAs on {host}:{base_port}.., users {})", dir.display(), users.join(", "));
            Ok(())
        }
        NetworkCommand::AddUser { dir, name } => {
            let path = add_user(&dir, &name)?;
            println!("{}", path.display());
            Ok(())
        }
        NetworkCommand::Up { dir, skip, log, log_format } => up(dir, skip, &log, log_format),
    }
}

fn up(dir: Option<PathBuf>, skip: Vec<u8>, log: &str, log_format: super::serve::LogFormat) -> anyhow::Result<()> {
    super::serve::init_logging(log, log_format)?;
    let dir = match dir {
        Some(d) => {
            anyhow::ensure!(
                d.join(NETWORK_FILE).is_file(),
                "{}: no {NETWORK_FILE} (create the network with `raida network init {}`)",
                d.display(),
                d.display()
            );
            d
        }
        None => {
            let d = PathBuf::from(DEFAULT_DIR);
            if !d.join(NETWORK_FILE).is_file() {
                eprintln!(
                    "creating {} (25 RAIDAs on 127.0.0.1:50000-50024, a relay on 127.0.0.1:50025, users alice and bob)",
                    d.display()
                );
                init_network(&d, &NetworkInit::default())?;
            }
            d
        }
    };
    let runtime = super::server_runtime()?;
    runtime.block_on(async move {
        let net = LocalNetwork::start(&dir, &skip, false).await?;
        let running = net.running();
        let addrs: Vec<&str> =
            net.network().raidas.iter().filter(|r| running.contains(&r.id)).map(|r| r.address.as_str()).collect();
        let relay = net.relay_addr().map(|a| format!("; relay on {a} (tcp)")).unwrap_or_default();
        println!(
            "{} RAIDAs listening on {} .. {} (udp, tcp){relay}; network file {}",
            running.len(),
            addrs.first().copied().unwrap_or("-"),
            addrs.last().copied().unwrap_or("-"),
            dir.join(NETWORK_FILE).display()
        );
        print_hint(&dir);
        wait_for_signal().await;
        eprintln!("stopping");
        net.shutdown().await;
        Ok(())
    })
}

/// How to try it: the two commands of the quick start, with this folder's wallets.
fn print_hint(dir: &Path) {
    let (Some(alice), Some(bob)) = (user_wallet(dir, "alice"), user_wallet(dir, "bob")) else { return };
    let net = dir.join(NETWORK_FILE);
    let coin = |w: &Path| {
        w.file_name()
            .and_then(|n| n.to_str())
            .and_then(raida_store::parse_coin_file_name)
            .map(|coin| coin.to_string())
            .unwrap_or_default()
    };
    let (alice_coin, bob_coin) = (coin(&alice), coin(&bob));
    eprintln!("try, in two more terminals (bob receives a file from alice):");
    eprintln!("  raida receive --network {} --wallet {} --from {alice_coin} -o .", net.display(), bob.display());
    eprintln!("  raida send FILE --network {} --wallet {} --to {bob_coin}", net.display(), alice.display());
    eprintln!("(the key alone: raida key receive / raida key send, see the README)");
}

/// Until Ctrl-C (SIGINT) or SIGTERM: what stops `raida serve` and `raida network up`.
pub(crate) async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
