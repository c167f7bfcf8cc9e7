//! `raida send FILE... | - --to DN:SN[@HOST:PORT] --network FILE --wallet FILE`: a key
//! through the RAIDA (alert to the receiver's mailbox, and directly when an address is
//! given), the secure channel (direct, hint or relay), then the files
//! (`raida_client::transfer::send`).

use std::path::{Path, PathBuf};

use raida_client::rke::Recipient;
use raida_client::transfer::{self, Item, SendOptions};
use raida_net::network::Network;
use raida_store::wallet::Wallet;

use super::progress::Reporter;

#[derive(clap::Args)]
pub(crate) struct SendArgs {
    /// Files or folders to send (a folder goes whole, empty folders included; symbolic links
    /// and hidden names inside it are skipped with a warning), or `-` for stdin as a stream.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// The receiver: its coin, DN:SN (the alert goes to its mailbox RAIDAs; no address
    /// needed), optionally with where `raida receive --listen` listens: DN:SN@HOST:PORT.
    #[arg(long, value_name = "DN:SN[@HOST:PORT]", allow_hyphen_values = true)]
    pub to: String,
    /// Also listen here (TCP) and offer it to the receiver as a hint, so that a receiver
    /// behind NAT can connect to this sender directly instead of through a relay.
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// Give up when no path to the receiver opened within this many seconds after the key
    /// was sent (a receiver may take its alert from the mailbox later, within 600 s).
    #[arg(long, value_name = "S", default_value_t = 600)]
    pub wait: u64,
    /// The network file (network.toml) whose RAIDAs carry the key.
    #[arg(long, value_name = "FILE")]
    pub network: PathBuf,
    /// The sender's coin file (<DN 2 hex>.<SN>.bin).
    #[arg(long, value_name = "FILE")]
    pub wallet: PathBuf,
    /// Name offered for the item (one file or folder only; the default is its own name,
    /// `stdin` for `-`).
    #[arg(long)]
    pub name: Option<String>,
    /// Number of key parts, each on its own RAIDA: at most 16 and at least a majority of
    /// the network file's RAIDAs (13 of 25). Default: 16, or every RAIDA of a smaller network.
    #[arg(long, value_name = "N")]
    pub parts: Option<usize>,
    /// Let only the --to address fetch the key parts (off by default: a receiver on 0.0.0.0
    /// or behind NAT reaches the RAIDAs from another address than the one named here).
    #[arg(long)]
    pub bind_address: bool,
    /// The default now (any address may fetch the parts); kept so that old scripts run.
    #[arg(long, hide = true, conflicts_with = "bind_address")]
    pub any_address: bool,
    /// At most this many bytes per second.
    #[arg(long, value_name = "BYTES_PER_S")]
    pub limit_rate: Option<u64>,
    #[command(flatten)]
    pub output_mode: super::TransferOutput,
}

pub(crate) fn run(a: SendArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.name.is_none() || a.files.len() == 1, "--name needs exactly one FILE");
    let to = Recipient::parse(&a.to)?;
    let network = Network::load(&a.network)?;
    let wallet = Wallet::load(&a.wallet)?;
    // every file is checked before the key exchange
    let mut items = Vec::with_capacity(a.files.len());
    for f in &a.files {
        if f == Path::new("-") {
            let name = a.name.clone().unwrap_or_else(|| "stdin".into());
            items.push(Item::Stream { name, reader: Box::new(std::io::stdin()) });
        } else if f.is_dir() {
            let (tree, skipped) = match &a.name {
                Some(n) => Item::directory_named(f, n)?,
                None => Item::directory(f)?,
            };
            if !a.output_mode.quiet {
                for s in &skipped {
                    eprintln!("warning: skipped {}: {}", transfer::escape(&s.path.display().to_string()), s.reason);
                }
            }
            items.extend(tree);
        } else {
            items.push(match &a.name {
                Some(n) => Item::file_named(f, n)?,
                None => Item::file(f)?,
            });
        }
    }
    let mut reporter = Reporter::new(a.output_mode.quiet, a.output_mode.json, false, "sent");
    let opts = SendOptions {
        rke: raida_client::rke::SendOptions {
            parts: a.parts,
            bind_receiver_address: a.bind_address,
            progress: reporter.key_progress(),
            ..Default::default()
        },
        pq: !a.output_mode.no_pq,
        rate_limit: a.limit_rate,
        listen: a.listen.clone(),
        connect_timeout: std::time::Duration::from_secs(a.wait),
        ..SendOptions::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let sent = rt.block_on(async {
        let mut events = |e: &transfer::Event| reporter.event(e);
        tokio::select! {
            r = transfer::send(&network, &wallet, &to, items, &opts, &mut events) => Some(r),
            _ = tokio::signal::ctrl_c() => None,
        }
    });
    // a reader still blocked on stdin (the transfer failed) must not keep the process alive
    rt.shutdown_timeout(std::time::Duration::from_millis(200));
    let Some(sent) = sent else {
        // Ctrl-C: say what became of the transfer, then the shell's usual 130
        drop(reporter);
        eprintln!(
            "interrupted; nothing more was sent; the receiver keeps what arrived: run the same command again \
             (with the receiver waiting again) to resume"
        );
        std::process::exit(130);
    };
    sent?;
    Ok(())
}
