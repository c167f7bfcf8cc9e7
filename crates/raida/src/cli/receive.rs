//! `raida receive --network FILE --wallet FILE --listen HOST:PORT [--from DN:SN ...]
//! [-o DIR | --stdout]`: wait for a key through the RAIDA, accept the channel on the same
//! port, receive and verify (`raida_client::transfer::Receiver`).

use std::path::PathBuf;
use std::time::Duration;

use raida_client::network::Network;
use raida_client::transfer::{ReceiveOptions, Receiver, Sink};
use raida_client::wallet::{parse_coin_name, Wallet};

use super::progress::Reporter;

#[derive(clap::Args)]
pub struct ReceiveArgs {
    /// The network file (network.toml): only its RAIDAs are asked for key parts.
    #[arg(long, value_name = "FILE")]
    pub network: PathBuf,
    /// This receiver's coin file (<DN 2 hex>.<SN>.bin).
    #[arg(long, value_name = "FILE")]
    pub wallet: PathBuf,
    /// Where to listen, UDP (key) and TCP (key and channel).
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: String,
    /// Accept only this sender coin (repeat for several); default: any sender.
    #[arg(long = "from", value_name = "DN:SN", allow_hyphen_values = true)]
    pub from: Vec<String>,
    /// Directory for the received files (must exist).
    #[arg(short = 'o', long = "output", value_name = "DIR", default_value = ".", conflicts_with = "stdout")]
    pub output: PathBuf,
    /// Write the received bytes to stdout instead (not resumable).
    #[arg(long)]
    pub stdout: bool,
    /// Replace existing files of the same name.
    #[arg(long)]
    pub overwrite: bool,
    /// Give up when no key came within this many seconds (default: wait).
    #[arg(long, value_name = "S")]
    pub timeout: Option<u64>,
    /// X25519 + PSK only, without ML-KEM-768 (the sender must say --no-pq too).
    #[arg(long)]
    pub no_pq: bool,
    /// No output except errors.
    #[arg(long, short, conflicts_with = "json")]
    pub quiet: bool,
    /// One JSON object per event (on stdout; on stderr with --stdout).
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: ReceiveArgs) -> anyhow::Result<()> {
    let network = Network::load(&a.network)?;
    let wallet = Wallet::load(&a.wallet)?;
    let accept = a.from.iter().map(|s| parse_coin_name(s)).collect::<Result<Vec<_>, _>>()?;
    let opts = ReceiveOptions {
        accept,
        pq: !a.no_pq,
        overwrite: a.overwrite,
        key_timeout: a.timeout.map(Duration::from_secs),
        ..ReceiveOptions::default()
    };
    let sink = if a.stdout { Sink::Writer(Box::new(std::io::stdout())) } else { Sink::Directory(a.output.clone()) };
    let mut reporter = Reporter::new(a.quiet, a.json, a.stdout, "received");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let received = rt.block_on(async {
        let receiver = Receiver::bind(&a.listen, network, wallet, opts).await?;
        receiver.receive(sink, &mut |e| reporter.event(e)).await
    });
    // a writer still blocked on stdout (the transfer failed) must not keep the process alive
    rt.shutdown_timeout(Duration::from_millis(200));
    received?;
    Ok(())
}
