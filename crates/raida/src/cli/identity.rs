//! `raida identity new DIR DN SN`: this server's identity coin file with 25 CSPRNG ANs.

use raida_proto::{CoinId, IdentityCoin};
use std::path::PathBuf;

use anyhow::Context;
use raida_proto::consts::RAIDA_COUNT;
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use super::coin::{open, parse_coin};

#[derive(clap::Subcommand)]
pub(crate) enum IdentityCommand {
    /// Write coins/<DN>.<SN>.bin with 25 random ANs and print them (one line per RAIDA 0..24).
    New {
        /// Data directory.
        dir: PathBuf,
        /// Denomination, -8..6 (signed decimal).
        #[arg(allow_negative_numbers = true, allow_hyphen_values = true)]
        dn: String,
        /// Serial number (decimal).
        sn: String,
    },
}

pub(crate) fn run(cmd: IdentityCommand) -> anyhow::Result<()> {
    match cmd {
        IdentityCommand::New { dir, dn, sn } => {
            let coin @ CoinId { dn, sn } = parse_coin(&dn, &sn)?;
            let store = open(&dir)?;
            let mut ans = Zeroizing::new([[0u8; 16]; RAIDA_COUNT]);
            for an in ans.iter_mut() {
                OsRng.try_fill_bytes(an).map_err(|e| anyhow::anyhow!("OS random generator: {e}"))?;
            }
            let coin_id = store.config().coin_id;
            store
                .write_identity_coin(IdentityCoin(coin), coin_id, &ans)
                .with_context(|| format!("identity coin {dn}/{sn}"))?;
            // The first identity coin becomes config.toml's [identity].
            if store.config().identity.is_none() {
                let mut c = store.config().clone();
                c.identity = Some(raida_store::IdentityConfig { dn, sn });
                c.save(&dir)?;
            }
            let mut out = String::with_capacity(RAIDA_COUNT * 33);
            for an in ans.iter() {
                out.push_str(&hex::encode(an));
                out.push('\n');
            }
            let out = Zeroizing::new(out);
            print!("{}", out.as_str());
            Ok(())
        }
    }
}
