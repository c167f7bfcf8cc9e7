//! `raida key send`: give a fresh key to a receiving RAIDA server through key servers
//! (Post Key to each, then Key Alert to the receiver). The receiver's operator takes it
//! from the inbox with `raida inbox take`; both sides can then use it as the secure
//! channel's pre-shared key.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use raida_client::exchange::{self, KeyServerTarget};
use raida_client::{Client, Server, Transport};
use raida_proto::client::ClientKey;
use raida_proto::commands::post_key::CoinName;
use raida_proto::Status;
use raida_proto::{Key16, Key32};

#[derive(clap::Subcommand)]
pub enum KeyCommand {
    /// Split a fresh key across key servers and alert the receiving server.
    Send(SendArgs),
    /// Give a RAIDA that lost a coin's AN a new one, through key tickets from two other RAIDAs.
    Fix(FixArgs),
}

#[derive(clap::Args)]
pub struct FixArgs {
    /// The RAIDA that lost the AN: ID@ADDR:PORT.
    #[arg(long, value_name = "ID@ADDR:PORT")]
    pub target: String,
    /// The target RAIDA's identity coin (its coins/ file), DN:SN.
    #[arg(long, value_name = "DN:SN", allow_hyphen_values = true)]
    pub identity: String,
    /// The coin whose AN the target lost, DN:SN.
    #[arg(long, value_name = "DN:SN", allow_hyphen_values = true)]
    pub coin: String,
    /// A helper RAIDA and the coin's AN there: ID@ADDR:PORT=ANHEX (exactly twice: the first
    /// makes the ticket for AN bytes 0-7, the second for bytes 8-15).
    #[arg(long = "helper", value_name = "ID@ADDR:PORT=ANHEX", required = true, num_args = 1)]
    pub helpers: Vec<String>,
    /// The new AN (32 hex digits); default: fresh from the OS CSPRNG.
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
pub struct SendArgs {
    /// The receiving RAIDA server: ID@ADDR:PORT (its config.toml must list the key servers).
    #[arg(long, value_name = "ID@ADDR:PORT")]
    pub receiver: String,
    /// A key server holding one part: ID@ADDR:PORT (repeat, 1 to 16 times, in part order).
    #[arg(long = "via", value_name = "ID@ADDR:PORT", required = true)]
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
    /// Write the key (hex) to this file, mode 0600, instead of printing it.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Seconds to wait for each answer.
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
}

/// `ID@ADDR:PORT`.
pub fn parse_server(s: &str) -> anyhow::Result<Server> {
    let (id, addr) = s.split_once('@').with_context(|| format!("{s:?}: expected ID@ADDR:PORT"))?;
    let raida_id: u8 = id.parse().ok().filter(|i| *i < 25).with_context(|| format!("{s:?}: RAIDA id must be 0..24"))?;
    let addr: SocketAddr = addr.parse().with_context(|| format!("{s:?}: expected ID@ADDR:PORT"))?;
    Ok(Server { addr, raida_id })
}

fn parse_coin(s: &str) -> anyhow::Result<CoinName> {
    let (dn, sn) = s.split_once(':').with_context(|| format!("{s:?}: expected DN:SN"))?;
    Ok(CoinName { dn: dn.parse().context("DN must be -8..11")?, sn: sn.parse().context("SN must be decimal")? })
}

pub fn run(cmd: KeyCommand) -> anyhow::Result<()> {
    match cmd {
        KeyCommand::Send(a) => send(a),
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
    let mut helpers = Vec::with_capacity(2);
    for h in &a.helpers {
        let (server, an) = h.split_once('=').with_context(|| format!("{h:?}: expected ID@ADDR:PORT=ANHEX"))?;
        let an = Key16::new(parse_an(an, "the helper's AN")?);
        // EN 4 under the coin itself: 44 only makes tickets for a coin's own key (6/44),
        // and our clients use the modern types (the legacy answer leaks AN bytes).
        let key = Key32::sha256_of_an(&an);
        helpers.push((parse_server(server)?, ClientKey::Token { dn: coin.dn, sn: coin.sn, key }));
    }
    let new_an = match &a.new_an {
        Some(h) => parse_an(h, "--new-an")?,
        None => {
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
    let results = rt.block_on(exchange::fix_an(
        &client,
        helpers,
        target,
        (identity.dn, identity.sn),
        (coin.dn, coin.sn),
        new_an,
    ))?;
    anyhow::ensure!(
        results == [1, 1],
        "the target RAIDA rejected the tickets (result bytes {})",
        hex::encode(&results)
    );
    eprintln!("RAIDA {} now holds the new AN of coin {}:{}", target.raida_id, coin.dn, coin.sn);
    println!("{}", hex::encode(new_an));
    Ok(())
}

fn send(a: SendArgs) -> anyhow::Result<()> {
    let receiver = parse_server(&a.receiver)?;
    let targets: Vec<KeyServerTarget> = a
        .via
        .iter()
        .map(|v| parse_server(v).map(|server| KeyServerTarget { server, auth: ClientKey::None }))
        .collect::<anyhow::Result<_>>()?;
    let receiver_coin = a.receiver_coin.as_deref().map(parse_coin).transpose()?.unwrap_or(CoinName { dn: 0, sn: 0 });
    let transport = if a.tcp { Transport::Tcp } else { Transport::Udp };
    let timeout = Duration::from_secs(a.timeout.max(1));
    let client = Client::new(transport, a.coin_id, timeout);
    let key = exchange::random_key(a.length);
    exchange::split_key(&key, targets.len())?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (entries, status, map) = rt.block_on(async {
        let entries =
            exchange::post_parts(&client, &targets, &key, receiver_coin, [0; 4], CoinName { dn: 0, sn: 0 }).await?;
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
    match a.out {
        Some(path) => {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            writeln!(f, "{key_hex}")?;
            eprintln!("key written to {}", path.display());
        }
        None => println!("{key_hex}"),
    }
    Ok(())
}
