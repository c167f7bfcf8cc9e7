//! `raida locker add DIR (--an-file PATH | ANHEX)`: lockers (EN 2 keys, found by their first 5 bytes).

use std::path::PathBuf;

use super::coin::{one_secret, open};

#[derive(clap::Subcommand)]
pub(crate) enum LockerCommand {
    /// Add a locker AN (refuses a second locker with the same 5-byte prefix).
    Add {
        /// Data directory.
        dir: PathBuf,
        /// The locker's AN, 32 hex digits. UNSAFE on a shared machine (ps, /proc show
        /// it): use --an-file.
        #[arg(required_unless_present = "an_file", conflicts_with = "an_file")]
        an: Option<String>,
        /// Read the AN from this file (one line; `-`: standard input; chmod 600).
        #[arg(long, value_name = "PATH")]
        an_file: Option<PathBuf>,
    },
}

pub(crate) fn run(cmd: LockerCommand) -> anyhow::Result<()> {
    match cmd {
        LockerCommand::Add { dir, an, an_file } => {
            let an = one_secret::<16>(an, an_file.as_deref(), "--an-file", "AN")?;
            open(&dir)?.add_locker(*an)?;
            Ok(())
        }
    }
}
