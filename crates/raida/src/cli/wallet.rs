//! `raida wallet new DN:SN [--out DIR]` and `raida wallet show FILE [--reveal]`: a user's
//! identity coin (PROTOCOL.md section 9), through `raida_store::wallet`.

use std::path::PathBuf;

use anyhow::Context;
use raida_store::wallet::{parse_coin_name, Wallet};
use zeroize::Zeroizing;

#[derive(clap::Subcommand)]
pub(crate) enum WalletCommand {
    /// Make a coin with 25 ANs from the OS CSPRNG: writes DIR/<DN 2 hex>.<SN>.bin (mode 0600)
    /// and prints, per RAIDA, the line its operator runs to register the coin.
    New {
        /// The coin, DN:SN (DN -8..6, SN below 1,024,000).
        #[arg(value_name = "DN:SN", allow_hyphen_values = true)]
        coin: String,
        /// Folder for the coin file (default: the current folder).
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// Coin id of the network.
        #[arg(long, default_value_t = 6)]
        coin_id: u16,
    },
    /// Print a coin file: DN, SN, coin id (the ANs only with --reveal).
    Show {
        file: PathBuf,
        /// Also print the 25 ANs (secrets: anyone who has them is this coin).
        #[arg(long)]
        reveal: bool,
    },
}

pub(crate) fn run(cmd: WalletCommand) -> anyhow::Result<()> {
    match cmd {
        WalletCommand::New { coin, out, coin_id } => {
            let name = parse_coin_name(&coin)?;
            let wallet = Wallet::generate(name, coin_id)?;
            let path = wallet.save(&out).context("cannot write the coin file")?;
            eprintln!("wrote {} (coin {name}, coin id {coin_id})", path.display());
            eprintln!(
                "register it: on each RAIDA N, its operator runs the line for N (DIR = that RAIDA's data directory)"
            );
            let mut lines = Zeroizing::new(String::new());
            for id in 0..25u8 {
                if let Some(an) = wallet.an(id) {
                    lines.push_str(&format!(
                        "raida coin set DIR {} {} {}   # RAIDA {id}\n",
                        name.dn,
                        name.sn,
                        hex::encode(an.as_bytes())
                    ));
                }
            }
            print!("{}", lines.as_str());
            Ok(())
        }
        WalletCommand::Show { file, reveal } => {
            let wallet = Wallet::load(&file)?;
            println!("coin {}:{} (coin id {})", wallet.dn(), wallet.sn(), wallet.coin_id());
            if reveal {
                let mut lines = Zeroizing::new(String::new());
                for id in 0..25u8 {
                    if let Some(an) = wallet.an(id) {
                        lines.push_str(&format!("RAIDA {id:2}: {}\n", hex::encode(an.as_bytes())));
                    }
                }
                print!("{}", lines.as_str());
            } else {
                println!("(25 ANs, one per RAIDA; --reveal prints them)");
            }
            Ok(())
        }
    }
}
