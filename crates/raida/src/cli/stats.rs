//! `raida stats HOST:PORT --admin-key K`: a server's counters (0/2 Show Stats). The admin
//! key must not cross a network in clear: EN 0 only to a loopback address (the server
//! refuses it from anywhere else with 34); elsewhere give `--wallet` and the request goes
//! as EN 4 under that coin (AES-256-GCM).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use raida_client::{Client, Server, Transport};
use raida_proto::client::ClientKey;
use raida_proto::commands::show_stats::ShowStats;
use raida_proto::keys::Key32;
use raida_store::wallet::Wallet;
use zeroize::Zeroize;

#[derive(clap::Args)]
pub(crate) struct StatsArgs {
    /// The server.
    #[arg(value_name = "HOST:PORT", value_parser = crate::cli::host_port)]
    pub server: SocketAddr,
    /// Its admin key (32 hex digits): `admin_key` in that RAIDA's config.toml; for a `raida
    /// network up` network, DIR/raida-NN/config.toml (NN = --raida-id, two digits).
    #[arg(long, env = "RAIDA_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
    /// Its RAIDA id.
    #[arg(long, default_value_t = 0)]
    pub raida_id: u8,
    /// Coin id of its network.
    #[arg(long, default_value_t = 6)]
    pub coin_id: u16,
    /// A wallet whose coin the server holds: the request goes as EN 4 under it (needed
    /// for a server that is not on this machine).
    #[arg(long, value_name = "FILE")]
    pub wallet: Option<PathBuf>,
}

pub(crate) fn run(args: StatsArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.raida_id < 25, "--raida-id must be 0..24");
    let Some(given) = &args.admin_key else {
        anyhow::bail!(
            "give the RAIDA's admin key with --admin-key KEY (or RAIDA_ADMIN_KEY): {}",
            super::errors::ADMIN_KEY_WHERE
        );
    };
    let mut admin_key = [0u8; 16];
    hex::decode_to_slice(given.trim(), &mut admin_key)
        .map_err(|_| anyhow::anyhow!("--admin-key must be 32 hex digits: {}", super::errors::ADMIN_KEY_WHERE))?;
    let key = match &args.wallet {
        Some(path) => {
            let w = Wallet::load(path)?;
            let an = w.an(args.raida_id).context("the wallet has no AN for that RAIDA id")?;
            ClientKey::Token { coin: w.identity().0, key: Key32::sha256_of_an(&an) }
        }
        None => {
            anyhow::ensure!(
                args.server.ip().is_loopback(),
                "{}: not a loopback address: the admin key would cross the network in clear; \
                 give --wallet FILE (a coin that server holds) to send it encrypted (EN 4)",
                args.server
            );
            ClientKey::None
        }
    };
    let mut request = ShowStats { admin_key };
    admin_key.zeroize();
    let client = Client::new(Transport::Tcp, args.coin_id, Duration::from_secs(5));
    let server = Server { addr: args.server, raida_id: args.raida_id };
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the runtime")?;
    let answer = runtime.block_on(client.call(server, &key, &request));
    request.admin_key.zeroize();
    print!("{}", answer?.0);
    Ok(())
}
