//! `raida locker add DIR ANHEX`: lockers (EN 2 keys, found by their first 5 bytes).

use std::path::PathBuf;

use super::coin::{open, parse_hex};

#[derive(clap::Subcommand)]
pub enum LockerCommand {
    /// Add a locker AN (refuses a second locker with the same 5-byte prefix).
    Add {
        /// Data directory.
        dir: PathBuf,
        /// The locker's AN, 32 hex digits.
        an: String,
    },
}

pub fn run(cmd: LockerCommand) -> anyhow::Result<()> {
    match cmd {
        LockerCommand::Add { dir, an } => {
            let an = parse_hex::<16>(&an, "AN")?;
            open(&dir)?.add_locker(*an)?;
            Ok(())
        }
    }
}
