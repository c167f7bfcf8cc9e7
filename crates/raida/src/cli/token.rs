//! `raida token set DIR DN SN (--secret-file PATH | HEX64)`: a key token's 32-byte secret for this RAIDA.

use std::path::PathBuf;

use super::coin::{one_secret, open, parse_coin};

#[derive(clap::Subcommand)]
pub(crate) enum TokenCommand {
    /// Store this RAIDA's 32-byte secret of key token DN (7..11) / SN.
    Set {
        /// Data directory.
        dir: PathBuf,
        /// Key-token denomination, 7..11.
        #[arg(allow_negative_numbers = true, allow_hyphen_values = true)]
        dn: String,
        /// Serial number (decimal).
        sn: String,
        /// The secret, 64 hex digits. UNSAFE on a shared machine (ps, /proc show it):
        /// use --secret-file.
        #[arg(required_unless_present = "secret_file", conflicts_with = "secret_file")]
        secret: Option<String>,
        /// Read the secret from this file (one line; `-`: standard input; chmod 600).
        #[arg(long, value_name = "PATH")]
        secret_file: Option<PathBuf>,
    },
}

pub(crate) fn run(cmd: TokenCommand) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Set { dir, dn, sn, secret, secret_file } => {
            let token = parse_coin(&dn, &sn)?;
            let secret = one_secret::<32>(secret, secret_file.as_deref(), "--secret-file", "secret")?;
            open(&dir)?.set_token_secret(token, &secret)?;
            Ok(())
        }
    }
}
