//! `raida receive --network FILE --wallet FILE [--listen HOST:PORT] [--from DN:SN ...]
//! [--yes] [-o DIR | --stdout]`: wait for a key through the RAIDA (from this coin's mailbox,
//! and on the --listen port when given), open the channel (direct, sender hint or relay),
//! show the sender's manifest and ask (or accept it: `--from`, `--yes`), receive and verify
//! (`raida_client::transfer::Receiver`).

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use raida_client::transfer::{self, Approval, Manifest, ReceiveOptions, Receiver, Sink};
use raida_net::network::Network;
use raida_store::wallet::Wallet;

use super::progress::Reporter;

#[derive(clap::Args)]
pub(crate) struct ReceiveArgs {
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
    /// Accept what the sender offers without asking (needed when not on a terminal and no
    /// --from names the sender).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// At most this many items in one session: every file (those inside folders too),
    /// stream and folder.
    #[arg(long, value_name = "N", default_value_t = transfer::DEFAULT_MAX_FILES)]
    pub max_files: u64,
    /// At most this many bytes in one session, streams included (e.g. 500M, 2G, 1TiB).
    #[arg(long, value_name = "SIZE", default_value = "100GiB", value_parser = parse_size_arg)]
    pub max_bytes: u64,
    /// End the transfer when no data arrived for this many seconds (keepalives do not count).
    #[arg(long, value_name = "S", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub stall_timeout: u64,
    #[command(flatten)]
    pub output_mode: super::TransferOutput,
}

/// `2G`, `500 MB`, `1TiB`, `12345` (bytes).
fn parse_size_arg(s: &str) -> Result<u64, String> {
    parse_size::Config::new()
        .with_binary()
        .parse_size(s)
        .map_err(|e| format!("{e} (a size such as 500M, 2G or 1TiB; K, M, G, T are powers of 1024)"))
}

/// Who decides: `--yes`; a person at the terminal; or the `--from` list. With none of
/// them, nobody could confirm what arrives: refuse before listening.
fn approval(a: &ReceiveArgs, named_senders: bool) -> anyhow::Result<Approval> {
    if a.yes {
        return Ok(Approval::Always);
    }
    if std::io::stdin().is_terminal() {
        return Ok(Approval::Ask(Arc::new(ask)));
    }
    anyhow::ensure!(
        named_senders,
        "not on a terminal, so nobody can confirm what arrives: name the sender with --from DN:SN, or accept any sender's files with --yes"
    );
    Ok(Approval::Listed)
}

/// Names listed in the prompt (the rest counted).
const PROMPT_NAMES: usize = 20;

/// Show the manifest (every peer string escaped) and read y/N from the terminal.
fn ask(m: &Manifest) -> bool {
    let mut err = std::io::stderr().lock();
    let who = m.peer.map(|c| c.to_string()).unwrap_or_else(|| "the sender".into());
    let streams = match m.streams() {
        0 => String::new(),
        n => format!(" and {n} stream(s) of unknown size"),
    };
    let _ = writeln!(err, "coin {who} offers {} item(s), {} bytes{streams}:", m.items.len(), m.bytes());
    for o in m.items.iter().take(PROMPT_NAMES) {
        let size = match o.kind {
            transfer::wire::Kind::File => format!("{} bytes", o.size),
            transfer::wire::Kind::Stream => "stream".into(),
            transfer::wire::Kind::Directory => "folder".into(),
        };
        let _ = writeln!(err, "  {} ({size})", transfer::escape(&o.name));
    }
    if m.items.len() > PROMPT_NAMES {
        let _ = writeln!(err, "  ... and {} more", m.items.len() - PROMPT_NAMES);
    }
    let _ = write!(err, "accept? [y/N] ");
    let _ = err.flush();
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).is_err() {
        return false;
    }
    matches!(line.trim(), "y" | "Y" | "yes" | "YES" | "Yes")
}

pub(crate) fn run(a: ReceiveArgs) -> anyhow::Result<()> {
    let accept = a.receiver.accepted_senders()?;
    let approval = approval(&a, !accept.is_empty())?;
    let network = Network::load(&a.receiver.network)?;
    let wallet = Wallet::load(&a.receiver.wallet)?;
    let min_parts = a.receiver.min_parts(&network)?;
    let opts = ReceiveOptions {
        accept,
        rke: raida_client::rke::ReceiveOptions { min_parts, ..Default::default() },
        pq: !a.output_mode.no_pq,
        overwrite: a.overwrite,
        key_timeout: a.timeout.map(Duration::from_secs),
        approval,
        max_files: a.max_files,
        max_bytes: a.max_bytes,
        stall_timeout: Duration::from_secs(a.stall_timeout),
        ..ReceiveOptions::default()
    };
    let sink = if a.stdout { Sink::Writer(Box::new(std::io::stdout())) } else { Sink::Directory(a.output.clone()) };
    let mut reporter = Reporter::new(a.output_mode.quiet, a.output_mode.json, a.stdout, "received");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let received = rt.block_on(async {
        let receiver = match &a.receiver.listen {
            Some(listen) => Receiver::bind(listen, network, wallet, opts).await?,
            None => Receiver::mailbox(network, wallet, opts).await?,
        };
        let mut events = |e: &transfer::Event| reporter.event(e);
        tokio::select! {
            r = receiver.receive(sink, &mut events) => r.map(Some),
            _ = tokio::signal::ctrl_c() => Ok(None),
        }
    });
    // a writer still blocked on stdout (the transfer failed) must not keep the process alive
    rt.shutdown_timeout(Duration::from_millis(200));
    if received?.is_none() {
        // Ctrl-C: say what was kept and how to go on, then the shell's usual 130
        drop(reporter);
        eprintln!("{}", interrupted(&a));
        std::process::exit(130);
    }
    Ok(())
}

/// What an interrupted receiver tells: how many partial files it keeps, and that the same
/// command resumes them.
fn interrupted(a: &ReceiveArgs) -> String {
    if a.stdout {
        return "interrupted: what was written to stdout is incomplete (a stream does not resume)".into();
    }
    let dir = a.output.join(transfer::PARTIAL_DIR);
    // the receiver's own resumable partial files (streams never resume)
    let kept = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().starts_with("file-")).count())
        .unwrap_or(0);
    if kept == 0 {
        // an empty partial directory has nothing to resume
        let _ = std::fs::remove_dir(&dir);
        return "interrupted: no partial file was kept (files that arrived whole are in place)".into();
    }
    format!(
        "interrupted: {kept} partial file(s) kept in {}; run the same command again to resume (the sender sends \
         again, and only the rest moves)",
        dir.display()
    )
}
