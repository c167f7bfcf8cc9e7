//! `raida network init|up|add-user`: a whole RAIDA network on this machine
//! (`raida_server::local_network`).

use std::path::{Path, PathBuf};

use raida_net::network::NETWORK_FILE;
use raida_netsim::{LinkSettings, Simulation, SimulationSettings};
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
        #[command(flatten)]
        simulate: Box<SimulateFlags>,
    },
    /// Make one more user's wallet and register it on every RAIDA (the network must be stopped).
    AddUser { dir: PathBuf, name: String },
}

/// `raida network up`'s simulated links (raida_netsim): with any of these, or a
/// `[simulation]` section in network.toml (these win over it), every RAIDA runs behind a
/// proxy on its address that plays its link and fault.
#[derive(clap::Args, Clone, Debug, Default)]
#[command(next_help_heading = "Simulated network (every RAIDA behind a simulated link)")]
pub(crate) struct SimulateFlags {
    /// Seed of every link's decisions (default: a random one, printed, to replay a run).
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// Percent of UDP datagrams lost, each direction.
    #[arg(long, value_name = "PCT")]
    loss: Option<f64>,
    /// Percent of UDP datagrams delivered twice.
    #[arg(long, value_name = "PCT")]
    duplicate: Option<f64>,
    /// Percent of UDP datagrams held back so that later ones overtake them.
    #[arg(long, value_name = "PCT")]
    reorder: Option<f64>,
    /// One-way delay of every datagram and TCP chunk (a round trip: twice this).
    #[arg(long, value_name = "MS")]
    delay: Option<u64>,
    /// Up to this much more delay per UDP datagram (uniform).
    #[arg(long, value_name = "MS")]
    jitter: Option<u64>,
    /// TCP bandwidth cap per RAIDA, each direction, e.g. 100Mbit, 800kbit, 12.5MB.
    #[arg(long, value_name = "RATE")]
    bandwidth: Option<String>,
    /// RAIDAs that are down (silent), comma-separated ids.
    #[arg(long, value_delimiter = ',', value_name = "IDS")]
    down: Vec<u8>,
    /// RAIDAs that refuse (UDP port unreachable, TCP connection refused).
    #[arg(long, value_delimiter = ',', value_name = "IDS")]
    refusing: Vec<u8>,
    /// RAIDAs that answer every request with 160 REQUEST_RATE.
    #[arg(long, value_delimiter = ',', value_name = "IDS")]
    overloaded: Vec<u8>,
    /// Slow RAIDAs: ID=MS (answers that much later), comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "ID=MS")]
    slow: Vec<String>,
    /// Dishonest RAIDAs: ID=wrong-key (wrong key bytes) or ID=other-sender, comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "ID=KIND")]
    dishonest: Vec<String>,
}

impl SimulateFlags {
    /// The flags as simulation settings (to lay over network.toml's section).
    fn settings(&self) -> anyhow::Result<SimulationSettings> {
        let mut s = SimulationSettings {
            seed: self.seed,
            link: LinkSettings {
                loss: self.loss,
                duplicate: self.duplicate,
                reorder: self.reorder,
                delay: self.delay,
                jitter: self.jitter,
                bandwidth: self.bandwidth.clone(),
            },
            ..SimulationSettings::default()
        };
        let id_eq = |flag: &str, v: &str| -> anyhow::Result<(u8, String)> {
            let (id, arg) = v.split_once('=').ok_or_else(|| anyhow::anyhow!("--{flag} {v}: use ID=VALUE"))?;
            let id = id.trim().parse().map_err(|_| anyhow::anyhow!("--{flag} {v}: {id:?} is not a RAIDA id"))?;
            Ok((id, arg.trim().to_string()))
        };
        let mut faults = Vec::new();
        for (ids, name) in [(&self.down, "down"), (&self.refusing, "refusing"), (&self.overloaded, "overloaded")] {
            faults.extend(ids.iter().map(|&id| (id, name.to_string())));
        }
        for v in &self.slow {
            let (id, ms) = id_eq("slow", v)?;
            faults.push((id, format!("slow:{ms}")));
        }
        for v in &self.dishonest {
            let (id, kind) = id_eq("dishonest", v)?;
            faults.push((id, format!("dishonest:{kind}")));
        }
        for (id, fault) in faults {
            let entry = s.raida_mut(id);
            if let Some(other) = &entry.fault {
                anyhow::bail!("RAIDA {id} is given two faults ({other} and {fault}): one per RAIDA");
            }
            entry.fault = Some(fault);
        }
        Ok(s)
    }
}

/// The simulation of `raida network up`: network.toml's `[simulation]` section with the
/// flags over it; None when neither says anything.
fn simulation(network_file: &Path, flags: &SimulateFlags) -> anyhow::Result<Option<Simulation>> {
    let from_file = SimulationSettings::from_network_file(network_file)?;
    let flags = flags.settings()?;
    if from_file.is_none() && flags.is_empty() {
        return Ok(None);
    }
    let mut settings = from_file.unwrap_or_default();
    settings.overlay(flags);
    let sim = settings.resolve(|| rand_core::RngCore::next_u64(&mut rand_core::OsRng))?;
    Ok(Some(sim))
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
        NetworkCommand::Up { dir, skip, log, log_format, simulate } => up(dir, skip, &log, log_format, &simulate),
    }
}

fn up(
    dir: Option<PathBuf>,
    skip: Vec<u8>,
    log: &str,
    log_format: super::serve::LogFormat,
    simulate: &SimulateFlags,
) -> anyhow::Result<()> {
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
    let sim = simulation(&dir.join(NETWORK_FILE), simulate)?;
    let runtime = super::server_runtime()?;
    runtime.block_on(async move {
        let net = LocalNetwork::start_with(&dir, &skip, false, sim.as_ref()).await?;
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
        if let Some(sim) = net.simulation() {
            println!("simulated network: {sim}");
            println!("(replay these links with --seed {}; the flags win over network.toml's [simulation])", sim.seed);
        }
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
