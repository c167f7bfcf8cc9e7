pub(crate) mod bench;
pub(crate) mod channel;
pub(crate) mod coin;
pub(crate) mod errors;
pub(crate) mod identity;
pub(crate) mod inbox;
pub(crate) mod init;
pub(crate) mod key;
pub(crate) mod locker;
pub(crate) mod network;
pub(crate) mod progress;
pub(crate) mod receive;
pub(crate) mod relay;
pub(crate) mod secret;
pub(crate) mod secret_file;
pub(crate) mod selfcheck;
pub(crate) mod send;
pub(crate) mod serve;
pub(crate) mod stats;
pub(crate) mod status;
pub(crate) mod token;
pub(crate) mod wallet;

/// `-v` / `--verbose`, set once at the start of main.
static VERBOSE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub(crate) fn set_verbose(on: bool) {
    VERBOSE.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Was `-v` given?
pub(crate) fn verbose() -> bool {
    VERBOSE.load(std::sync::atomic::Ordering::Relaxed)
}

/// A `HOST:PORT` flag: an IP address or a host name (resolved once, here; IPv4 preferred).
pub(crate) fn host_port(s: &str) -> Result<std::net::SocketAddr, raida_net::resolve::ResolveError> {
    raida_net::resolve::resolve_address_blocking(s)
}

/// The tokio runtime `raida serve` and `raida network up` run their servers on (2 workers:
/// UDP has its own threads, the runtime carries TCP and deferred commands).
pub(crate) fn server_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("raida-worker")
        .build()
        .context("cannot start the runtime")
}

/// What a receiving side (`raida key receive`, `raida receive`) is: its network, its coin,
/// where it listens and whom it accepts.
#[derive(clap::Args)]
pub(crate) struct ReceiverArgs {
    /// The network file (network.toml): only its RAIDAs are asked for key parts.
    #[arg(long, value_name = "FILE")]
    pub network: std::path::PathBuf,
    /// This receiver's coin file (<DN 2 hex>.<SN>.bin).
    #[arg(long, value_name = "FILE")]
    pub wallet: std::path::PathBuf,
    /// Also listen here, UDP and TCP, for a direct Key Alert (and, for `raida receive`, the
    /// channel); a host name is resolved. Without it the key comes from this coin's mailbox
    /// RAIDAs and no port is opened (behind NAT).
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// Accept keys only from this sender coin (repeat for several); default: any sender.
    #[arg(long = "from", value_name = "DN:SN", allow_hyphen_values = true)]
    pub from: Vec<String>,
    /// Accept only keys of at least N parts, each on its own RAIDA (default and floor: a
    /// majority of the network file's RAIDAs, 13 of 25; at most 16).
    #[arg(long, value_name = "N")]
    pub min_parts: Option<usize>,
}

impl ReceiverArgs {
    /// The `--from` coins, parsed.
    pub(crate) fn accepted_senders(&self) -> anyhow::Result<Vec<raida_proto::commands::post_key::CoinName>> {
        Ok(self.from.iter().map(|s| raida_store::wallet::parse_coin_name(s)).collect::<Result<Vec<_>, _>>()?)
    }

    /// `--min-parts`, checked against the network: never below its majority (a receiver may
    /// demand more parts, never fewer), never above what a key can have. 0 = the majority.
    pub(crate) fn min_parts(&self, network: &raida_net::network::Network) -> anyhow::Result<usize> {
        let Some(n) = self.min_parts else { return Ok(0) };
        let majority = network.majority();
        let most = raida_client::rke::DEFAULT_PARTS.min(network.raidas.len());
        anyhow::ensure!(
            n >= majority,
            "--min-parts {n} is fewer than a majority of the network's {} RAIDAs ({majority}): a receiver may \
             demand more parts, never fewer (give {majority} to {most})",
            network.raidas.len()
        );
        anyhow::ensure!(n <= most, "--min-parts {n} is more than any key can have here (give {majority} to {most})");
        Ok(n)
    }
}

/// The flags `raida send` and `raida receive` share: the channel's mode and the output.
#[derive(clap::Args)]
pub(crate) struct TransferOutput {
    /// X25519 + PSK only, without ML-KEM-768 (the other side must say --no-pq too).
    #[arg(long)]
    pub no_pq: bool,
    /// No output except errors.
    #[arg(long, short, conflicts_with = "json")]
    pub quiet: bool,
    /// One JSON object per event (on stdout; on stderr when `raida receive --stdout`).
    #[arg(long)]
    pub json: bool,
}
