//! `raida token set DIR DN SN HEX64`: a key token's 32-byte secret for this RAIDA.

use std::path::PathBuf;

use super::coin::{open, parse_coin, parse_hex};

#[derive(clap::Subcommand)]
pub enum TokenCommand {
    /// Store this RAIDA's 32-byte secret of key token DN (7..11) / SN.
    Set {
        /// Data directory.
        dir: PathBuf,
        /// Key-token denomination, 7..11.
        #[arg(allow_negative_numbers = true, allow_hyphen_values = true)]
        dn: String,
        /// Serial number (decimal).
        sn: String,
        /// The secret, 64 hex digits.
        secret: String,
    },
}

pub fn run(cmd: TokenCommand) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Set { dir, dn, sn, secret } => {
            let token = parse_coin(&dn, &sn)?;
            let secret = parse_hex::<32>(&secret, "secret")?;
            open(&dir)?.set_token_secret(token, &secret)?;
            Ok(())
        }
    }
}
