//! `raida key send` / `raida key receive`: the key exchange between two machines
//! (PROTOCOL.md section 9, `raida_client::rke`): the sender posts the parts EN 4 under its
//! wallet's coin and alerts the receiver; both print the same session key K.
//! The older form `raida key send --receiver ID@ADDR:PORT --via ...` still gives a key to a
//! receiving RAIDA server (its operator takes it with `raida inbox take`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use raida_client::exchange::{self, KeyServerTarget};
use raida_client::rke::{send_key, AlertOutcome, KeyReceiver, ReceiveOptions, Recipient, SendOptions};
use raida_client::{Client, Server, Transport};
use raida_net::network::Network;
use raida_proto::client::ClientKey;
use raida_proto::codec::Codec;
use raida_proto::CoinId;
use raida_proto::Status;
use raida_proto::{Key16, Key32};
use raida_store::wallet::Wallet;

#[derive(clap::Subcommand)]
pub(crate) enum KeyCommand {
    /// Send a fresh key: --network, --wallet, --to DN:SN@HOST:PORT (or the older
    /// --receiver/--via form for a receiving RAIDA server).
    Send(SendArgs),
    /// Wait for one key (answer one Key Alert), print the sender's coin and K.
    Receive(ReceiveArgs),
    /// Give a RAIDA that lost a coin's AN a new one, through key tickets from two other RAIDAs.
    Fix(FixArgs),
}

#[derive(clap::Args)]
pub(crate) struct FixArgs {
    /// The RAIDA that lost the AN: ID@ADDR:PORT.
    #[arg(long, value_name = "ID@ADDR:PORT")]
    pub target: String,
    /// The target RAIDA's identity coin (its coins/ file), DN:SN.
    #[arg(long, value_name = "DN:SN", allow_hyphen_values = true)]
    pub identity: String,
    /// The coin whose AN the target lost, DN:SN.
    #[arg(long, value_name = "DN:SN", allow_hyphen_values = true)]
    pub coin: String,
    /// A helper RAIDA: ID@ADDR:PORT with the coin's AN there in --an-file, or
    /// ID@ADDR:PORT=ANHEX (UNSAFE on a shared machine: ps and /proc show it). Exactly
    /// twice: the first makes the ticket for AN bytes 0-7, the second for bytes 8-15.
    #[arg(long = "helper", value_name = "ID@ADDR:PORT[=ANHEX]", required = true, num_args = 1)]
    pub helpers: Vec<String>,
    /// Read the helpers' ANs from this file, one line each (32 hex digits) in the order
    /// of --helper, and optionally a third line: the new AN. `-`: standard input. The file
    /// must be yours and private (chmod 600).
    #[arg(long, value_name = "PATH")]
    pub an_file: Option<std::path::PathBuf>,
    /// The new AN (32 hex digits; UNSAFE on a shared machine, see --an-file); default:
    /// fresh from the OS CSPRNG.
    #[arg(long)]
    pub new_an: Option<String>,
    /// Coin id of the network.
    #[arg(long, default_value_t = 6)]
    pub coin_id: u16,
    /// Use TCP instead of UDP.
    #[arg(long)]
    pub tcp: bool,
    /// Seconds to wait for each answer.
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
}

#[derive(clap::Args)]
pub(crate) struct ReceiveArgs {
    #[command(flatten)]
    pub receiver: super::ReceiverArgs,
    /// Write K (hex) to this new file, mode 0600, instead of printing it.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Give up after this many seconds (default: wait until a key comes).
    #[arg(long, value_name = "S")]
    pub timeout: Option<u64>,
}

#[derive(clap::Args)]
pub(crate) struct SendArgs {
    /// The network file (network.toml) whose RAIDAs hold the parts.
    #[arg(long, value_name = "FILE", requires_all = ["wallet", "to"], conflicts_with_all = ["receiver", "via"])]
    pub network: Option<PathBuf>,
    /// The sender's coin file (<DN 2 hex>.<SN>.bin).
    #[arg(long, value_name = "FILE")]
    pub wallet: Option<PathBuf>,
    /// The receiver: its coin, DN:SN (the alert goes to its mailbox RAIDAs), optionally with
    /// where `raida key receive --listen` listens, DN:SN@HOST:PORT (a RAIDA server as
    /// receiver: DN:SN@ID@HOST:PORT).
    #[arg(long, value_name = "DN:SN[@HOST:PORT]", allow_hyphen_values = true)]
    pub to: Option<String>,
    /// Number of parts, each on its own RAIDA: at most 16 and at least a majority of the
    /// network file's RAIDAs (13 of 25). Default: 16, or every RAIDA of a smaller network.
    #[arg(long, value_name = "N")]
    pub parts: Option<usize>,
    /// Let only the --to address fetch the key parts (off by default: a receiver on 0.0.0.0
    /// or behind NAT reaches the RAIDAs from another address than the one named here).
    #[arg(long)]
    pub bind_address: bool,
    /// The default now (any address may fetch the parts); kept so that old scripts run.
    #[arg(long, hide = true, conflicts_with = "bind_address")]
    pub any_address: bool,
    /// Older form: the receiving RAIDA server, ID@ADDR:PORT (its config.toml must list the key servers).
    #[arg(long, value_name = "ID@ADDR:PORT", requires = "via")]
    pub receiver: Option<String>,
    /// Older form: a key server holding one part, ID@ADDR:PORT (repeat, 1 to 16 times, in part order).
    #[arg(long = "via", value_name = "ID@ADDR:PORT")]
    pub via: Vec<String>,
    /// Key length in bytes, the final 0xFF included (a sum of the parts' allowed lengths).
    #[arg(long, default_value_t = 32)]
    pub length: usize,
    /// Only a Get Key made with this coin may fetch the parts (the receiver's identity coin), DN:SN.
    #[arg(long, value_name = "DN:SN", allow_hyphen_values = true)]
    pub receiver_coin: Option<String>,
    /// Coin id of the network.
    #[arg(long, default_value_t = 6)]
    pub coin_id: u16,
    /// Use TCP instead of UDP.
    #[arg(long)]
    pub tcp: bool,
    /// Write the key (hex) to this new file, mode 0600, instead of printing it (checked
    /// before anything is sent).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Seconds to wait for each answer.
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
}

/// `ID@HOST:PORT` (a host name is resolved here).
pub(crate) fn parse_server(s: &str) -> anyhow::Result<Server> {
    let (id, addr) = s.split_once('@').with_context(|| format!("{s:?}: expected ID@HOST:PORT"))?;
    let raida_id: u8 = id
        .parse()
        .ok()
        .filter(|i| *i < raida_proto::consts::TOTAL_RAIDA_SERVERS)
        .with_context(|| format!("{s:?}: RAIDA id must be 0..24"))?;
    let addr: SocketAddr = crate::cli::host_port(addr).map_err(|e| anyhow::anyhow!("{s:?}: {e}"))?;
    Ok(Server { addr, raida_id })
}

/// `DN:SN` of a coin or key token: [`CoinId::new`] checks the range.
fn parse_coin(s: &str) -> anyhow::Result<CoinId> {
    let (dn, sn) = s.split_once(':').with_context(|| format!("{s:?}: expected DN:SN"))?;
    let dn = dn.parse().context("DN must be -8..11")?;
    CoinId::new(dn, sn.parse().context("SN must be decimal")?).with_context(|| format!("{s:?}"))
}

pub(crate) fn run(cmd: KeyCommand) -> anyhow::Result<()> {
    match cmd {
        KeyCommand::Send(a) if a.network.is_some() => send_rke(a),
        KeyCommand::Send(a) => {
            // the --out file is created before anything is sent; remove it again (only the
            // one we created) if the key was not delivered
            let out = a.out.clone();
            let existed = out.as_deref().is_some_and(|p| p.exists());
            let r = send(a);
            if let (Err(_), Some(p), false) = (&r, &out, existed) {
                let _ = std::fs::remove_file(p);
            }
            r
        }
        KeyCommand::Receive(a) => receive(a),
        KeyCommand::Fix(a) => fix(a),
    }
}

fn parse_an(s: &str, what: &str) -> anyhow::Result<[u8; 16]> {
    let mut an = [0u8; 16];
    hex::decode_to_slice(s.trim(), &mut an).with_context(|| format!("{what} must be 32 hex digits"))?;
    Ok(an)
}

fn fix(a: FixArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.helpers.len() == 2, "give exactly two --helper RAIDAs (one per half of the AN)");
    let target = parse_server(&a.target)?;
    let identity = parse_coin(&a.identity)?;
    let coin = parse_coin(&a.coin)?;
    let from_file = match &a.an_file {
        Some(p) => {
            let lines = super::secret_file::read_lines(p, "--an-file")?;
            anyhow::ensure!(
                lines.len() == 2 || lines.len() == 3,
                "--an-file {}: expected 2 lines (the helpers' ANs) or 3 (and the new AN), found {}",
                p.display(),
                lines.len()
            );
            anyhow::ensure!(
                lines.len() == 2 || a.new_an.is_none(),
                "--an-file {} has a new AN: leave out --new-an",
                p.display()
            );
            Some(lines)
        }
        None => None,
    };
    let mut helpers = Vec::with_capacity(2);
    for (i, h) in a.helpers.iter().enumerate() {
        let (server, an) = match (h.split_once('='), &from_file) {
            (Some((server, an)), None) => (server, parse_an(an, "the helper's AN")?),
            (None, Some(lines)) => (h.as_str(), parse_an(&lines[i.min(1)], "each helper's AN in --an-file")?),
            (Some(_), Some(_)) => anyhow::bail!(
                "--helper {:?}: give the AN in --an-file or after '=', not both",
                h.split('=').next().unwrap_or_default()
            ),
            (None, None) => {
                anyhow::bail!("--helper {h:?}: expected ID@ADDR:PORT=ANHEX, or ID@ADDR:PORT with --an-file")
            }
        };
        let an = Key16::new(an);
        // EN 4 under the coin itself: 44 only makes tickets for a coin's own key (6/44),
        // and our clients use the modern types (the legacy answer leaks AN bytes).
        let key = Key32::sha256_of_an(&an);
        helpers.push((parse_server(server)?, ClientKey::Token { coin, key }));
    }
    let new_an = match (&a.new_an, from_file.as_ref().and_then(|l| l.get(2))) {
        (Some(h), _) => parse_an(h, "--new-an")?,
        (None, Some(h)) => parse_an(h, "the new AN in --an-file")?,
        (None, None) => {
            let mut an = [0u8; 16];
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut an);
            an
        }
    };
    let transport = if a.tcp { Transport::Tcp } else { Transport::Udp };
    let client = Client::new(transport, a.coin_id, Duration::from_secs(a.timeout.max(1)));
    let helpers: [(Server, ClientKey); 2] =
        helpers.try_into().map_err(|_| anyhow::anyhow!("give exactly two --helper RAIDAs"))?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let results =
        rt.block_on(exchange::fix_an(&client, helpers, target, raida_proto::IdentityCoin(identity), coin, new_an))?;
    anyhow::ensure!(
        results.0 == [true, true],
        "the target RAIDA rejected the tickets (result bytes {})",
        hex::encode(results.to_bytes())
    );
    eprintln!("RAIDA {} now holds the new AN of coin {coin}", target.raida_id);
    println!("{}", hex::encode(new_an));
    Ok(())
}

fn send(a: SendArgs) -> anyhow::Result<()> {
    let receiver = parse_server(a.receiver.as_deref().context(
        "give --network FILE --wallet FILE --to DN:SN@HOST:PORT (or the older --receiver ID@ADDR:PORT --via ...)",
    )?)?;
    let mut out_file = a.out.as_deref().map(create_out).transpose()?;
    let targets: Vec<KeyServerTarget> = a
        .via
        .iter()
        .map(|v| parse_server(v).map(|server| KeyServerTarget { server, auth: ClientKey::None }))
        .collect::<anyhow::Result<_>>()?;
    let receiver_coin = a.receiver_coin.as_deref().map(parse_coin).transpose()?.unwrap_or(CoinId::default());
    let transport = if a.tcp { Transport::Tcp } else { Transport::Udp };
    let timeout = Duration::from_secs(a.timeout.max(1));
    let client = Client::new(transport, a.coin_id, timeout);
    let key = exchange::random_key(a.length);
    exchange::split_key(&key, targets.len())?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (entries, status, map) = rt.block_on(async {
        let entries = exchange::post_parts(&client, &targets, &key, receiver_coin, [0; 4], CoinId::default()).await?;
        let (status, map) = exchange::alert(&client, receiver, &ClientKey::None, &entries).await?;
        Ok::<_, anyhow::Error>((entries, status, map))
    })?;
    if status != Status::Success {
        let fetched: Vec<String> =
            map[..entries.len()].iter().map(|b| if *b == 0xFF { "yes" } else { "no" }.into()).collect();
        anyhow::bail!("the receiver answered {status}: parts fetched: {}", fetched.join(", "));
    }
    let key_hex = hex::encode(&key);
    eprintln!("key delivered: inbox id {} ({} parts)", hex::encode(entries[0].key_id), entries.len());
    match (out_file.as_mut(), &a.out) {
        (Some(f), Some(path)) => {
            use std::io::Write;
            writeln!(f, "{key_hex}")?;
            f.sync_all()?;
            eprintln!("key written to {}", path.display());
        }
        _ => println!("{key_hex}"),
    }
    Ok(())
}

/// Create the output file now (new, mode 0600), before anything is sent or received: a key
/// must never be delivered and then lost because the file cannot be written.
fn create_out(path: &std::path::Path) -> anyhow::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {} (it must not exist yet)", path.display()))
}

fn write_key(
    out: Option<(std::fs::File, &std::path::Path)>,
    key: &raida_client::rke::SessionKey,
) -> anyhow::Result<()> {
    use std::io::Write;
    match out {
        Some((mut f, path)) => {
            writeln!(f, "{}", key.to_hex().as_str())?;
            f.sync_all()?;
            eprintln!("K written to {}", path.display());
        }
        None => println!("key {}", key.to_hex().as_str()),
    }
    Ok(())
}

fn load(network: &std::path::Path, wallet: &std::path::Path) -> anyhow::Result<(Network, Wallet)> {
    Ok((Network::load(network)?, Wallet::load(wallet)?))
}

fn send_rke(a: SendArgs) -> anyhow::Result<()> {
    let (Some(network), Some(wallet), Some(to)) = (&a.network, &a.wallet, &a.to) else {
        anyhow::bail!("give --network FILE --wallet FILE --to DN:SN (or DN:SN@HOST:PORT)");
    };
    let to = Recipient::parse(to)?;
    let (network, wallet) = load(network, wallet)?;
    let out = a.out.as_deref().map(|p| create_out(p).map(|f| (f, p))).transpose()?;
    let (mut line, progress) = super::progress::KeyLine::new(false, false);
    let opts =
        SendOptions { parts: a.parts, bind_receiver_address: a.bind_address, progress, ..SendOptions::default() };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let sent = rt.block_on(send_key(&network, &wallet, &to, &opts));
    line.done();
    let report = match sent {
        Ok(r) => r,
        Err(e) => {
            if let Some((_, p)) = &out {
                let _ = std::fs::remove_file(p);
            }
            return Err(e.into());
        }
    };
    for f in &report.reposted {
        eprintln!("note: {f}; that part went to another RAIDA");
    }
    let how = match &report.delivery {
        raida_client::rke::AlertDelivery::Direct => "the receiver took it directly".to_string(),
        raida_client::rke::AlertDelivery::Mailbox { raidas, direct, .. } => {
            if let Some(why) = direct {
                eprintln!("note: the direct alert failed ({why}); the receiver's mailbox carries the key");
            }
            format!("alert left in the receiver's mailbox on RAIDAs {raidas:?}")
        }
    };
    eprintln!(
        "key delivered: {} parts on RAIDAs {:?}, first key id {}; {how}",
        report.key_servers.len(),
        report.key_servers,
        hex::encode(report.first_key_id)
    );
    println!("receiver {}", report.receiver);
    write_key(out, &report.session_key)
}

fn receive(a: ReceiveArgs) -> anyhow::Result<()> {
    let (network, wallet) = load(&a.receiver.network, &a.receiver.wallet)?;
    let accept = a.receiver.accepted_senders()?;
    let min_parts = a.receiver.min_parts(&network)?;
    let out = a.out.as_deref().map(|p| create_out(p).map(|f| (f, p))).transpose()?;
    let opts = ReceiveOptions { accept, min_parts, ..ReceiveOptions::default() };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let result = rt.block_on(async {
        let mut receiver = match &a.receiver.listen {
            Some(listen) => KeyReceiver::bind(listen, network, wallet, opts).await?,
            None => KeyReceiver::mailbox(network, wallet, opts).await?,
        };
        match receiver.local_addr() {
            Some(at) => eprintln!("waiting for a key on {at} (udp, tcp) and in the mailbox"),
            None => eprintln!("waiting for a key in the mailbox (RAIDAs {:?})", receiver.mailbox_raidas()),
        }
        let deadline =
            a.timeout.map(|s| raida_proto::time::deadline_from(tokio::time::Instant::now(), Duration::from_secs(s)));
        loop {
            let next = receiver.next_alert();
            let outcome = match deadline {
                Some(d) => match tokio::time::timeout_at(d, next).await {
                    Ok(o) => o,
                    Err(_) => anyhow::bail!("no key within {} s", a.timeout.unwrap_or_default()),
                },
                None => next.await,
            };
            match outcome {
                AlertOutcome::Accepted(r) => return Ok(r),
                AlertOutcome::Refused { from, status, reason } => {
                    eprintln!("refused a Key Alert from {from} ({status}): {reason}; still waiting");
                }
                AlertOutcome::MailboxUnreachable { reason } => eprintln!("warning: {reason}"),
            }
        }
    });
    let received = match result {
        Ok(r) => r,
        Err(e) => {
            if let Some((_, p)) = &out {
                let _ = std::fs::remove_file(p);
            }
            return Err(e);
        }
    };
    eprintln!("key received from {} ({} parts)", received.source, received.parts);
    println!("sender {}", received.sender);
    write_key(out, &received.session_key)
}
