//! `raida receive --network FILE --wallet FILE --listen HOST:PORT [--from DN:SN ...]
//! [-o DIR | --stdout]`: wait for a key through the RAIDA, accept the channel on the same
//! port, receive and verify (`raida_client::transfer::Receiver`).

use std::path::PathBuf;
use std::time::Duration;

use raida_client::network::Network;
use raida_client::transfer::{ReceiveOptions, Receiver, Sink};
use raida_client::wallet::Wallet;

use super::progress::Reporter;

#[derive(clap::Args)]
pub struct ReceiveArgs {
    #[command(flatten)]
    pub receiver: super::ReceiverArgs,
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
    #[command(flatten)]
    pub output_mode: super::TransferOutput,
}

pub fn run(a: ReceiveArgs) -> anyhow::Result<()> {
    let network = Network::load(&a.receiver.network)?;
    let wallet = Wallet::load(&a.receiver.wallet)?;
    let accept = a.receiver.accepted_senders()?;
    let min_parts = a.receiver.min_parts(&network)?;
    let opts = ReceiveOptions {
        accept,
        rke: raida_client::rke::ReceiveOptions { min_parts, ..Default::default() },
        pq: !a.output_mode.no_pq,
        overwrite: a.overwrite,
        key_timeout: a.timeout.map(Duration::from_secs),
        ..ReceiveOptions::default()
    };
    let sink = if a.stdout { Sink::Writer(Box::new(std::io::stdout())) } else { Sink::Directory(a.output.clone()) };
    let mut reporter = Reporter::new(a.output_mode.quiet, a.output_mode.json, a.stdout, "received");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let received = rt.block_on(async {
        let receiver = Receiver::bind(&a.receiver.listen, network, wallet, opts).await?;
        receiver.receive(sink, &mut |e| reporter.event(e)).await
    });
    // a writer still blocked on stdout (the transfer failed) must not keep the process alive
    rt.shutdown_timeout(Duration::from_millis(200));
    received?;
    Ok(())
}
