//! `raida secret set DIR SENDER_RAIDA KEY_ID (--secret-file PATH | HEX64)`: type-7 pre-shared secrets.

use std::path::PathBuf;

use super::coin::{one_secret, open, parse_num};

#[derive(clap::Subcommand)]
pub(crate) enum SecretCommand {
    /// Store the 32-byte secret that RAIDA SENDER_RAIDA uses with this RAIDA under KEY_ID.
    Set {
        /// Data directory.
        dir: PathBuf,
        /// Sender RAIDA id, 0..24.
        sender_raida: String,
        /// Key id (decimal, 32-bit).
        key_id: String,
        /// The secret, 64 hex digits. UNSAFE on a shared machine (ps, /proc show it):
        /// use --secret-file.
        #[arg(required_unless_present = "secret_file", conflicts_with = "secret_file")]
        secret: Option<String>,
        /// Read the secret from this file (one line; `-`: standard input; chmod 600).
        #[arg(long, value_name = "PATH")]
        secret_file: Option<PathBuf>,
    },
}

pub(crate) fn run(cmd: SecretCommand) -> anyhow::Result<()> {
    match cmd {
        SecretCommand::Set { dir, sender_raida, key_id, secret, secret_file } => {
            let sender: u8 = parse_num(&sender_raida, "sender RAIDA id")?;
            anyhow::ensure!(sender <= 24, "sender RAIDA id {sender} is above 24");
            let key_id: u32 = parse_num(&key_id, "key id")?;
            let secret = one_secret::<32>(secret, secret_file.as_deref(), "--secret-file", "secret")?;
            open(&dir)?.set_raida_secret(sender, key_id, &secret)?;
            Ok(())
        }
    }
}
