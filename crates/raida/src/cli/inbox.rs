//! `raida inbox list DIR` and `raida inbox take DIR KEYID`: keys assembled from Key Alerts.

use std::path::PathBuf;

use raida_store::inbox::InboxDir;

#[derive(clap::Subcommand)]
pub(crate) enum InboxCommand {
    /// One line per assembled key: key id, parts, sender identities (DN.SN), time (UTC).
    List {
        /// Data directory.
        dir: PathBuf,
    },
    /// Print a key as hex and remove it from the inbox.
    Take {
        /// Data directory.
        dir: PathBuf,
        /// Key id: 32 hex digits (the first part's key id).
        key_id: String,
    },
}

pub(crate) fn run(cmd: InboxCommand) -> anyhow::Result<()> {
    match cmd {
        InboxCommand::List { dir } => {
            anyhow::ensure!(dir.is_dir(), "{}: no such data directory", dir.display());
            for k in InboxDir::new(&dir).list()? {
                // `DN.SN`, as this listing has always printed them (not CoinId's `DN:SN`).
                let senders: Vec<String> = k.senders.iter().map(|c| format!("{}.{}", c.dn, c.sn)).collect();
                println!(
                    "{} parts={} senders={} time={}",
                    hex::encode(k.key_id),
                    k.senders.len(),
                    senders.join(","),
                    raida_proto::consts::utc_timestamp(k.created)
                );
            }
            Ok(())
        }
        InboxCommand::Take { dir, key_id } => {
            anyhow::ensure!(dir.is_dir(), "{}: no such data directory", dir.display());
            let k = InboxDir::new(&dir).take(&key_id)?;
            println!("{}", hex::encode(&k.key));
            Ok(())
        }
    }
}
