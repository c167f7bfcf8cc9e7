//! `raida coin get DIR DN SN` and `raida coin set DIR DN SN ANHEX [--mfs M]`.

use raida_proto::CoinId;
use std::path::PathBuf;

use anyhow::Context;
use raida_store::Store;
use zeroize::Zeroizing;

#[derive(clap::Subcommand)]
pub enum CoinCommand {
    /// Print one coin record as `ANHEX MFS`.
    Get {
        /// Data directory.
        dir: PathBuf,
        /// Denomination, -8..6 (signed decimal).
        #[arg(allow_negative_numbers = true, allow_hyphen_values = true)]
        dn: String,
        /// Serial number (decimal).
        sn: String,
    },
    /// Change one coin record durably (fails while a server holds DIR).
    Set {
        /// Data directory.
        dir: PathBuf,
        /// Denomination, -8..6 (signed decimal).
        #[arg(allow_negative_numbers = true, allow_hyphen_values = true)]
        dn: String,
        /// Serial number (decimal).
        sn: String,
        /// New AN, 32 hex digits.
        an: String,
        /// MFS byte, 0..255 (default: the current month, which makes the coin present).
        #[arg(long, value_name = "M")]
        mfs: Option<String>,
    },
}

/// Parses a decimal number with a one-line error naming `what`.
pub(crate) fn parse_num<T: std::str::FromStr>(s: &str, what: &str) -> anyhow::Result<T> {
    s.trim().parse().map_err(|_| anyhow::anyhow!("invalid {what} {s:?}: expected a decimal number in range"))
}

/// Parses a signed decimal denomination (range checked by the store).
pub(crate) fn parse_dn(s: &str) -> anyhow::Result<i8> {
    parse_num(s, "denomination")
}

/// Parses the DN (signed decimal) and SN (decimal) of a coin (range checked by the store).
pub(crate) fn parse_coin(dn: &str, sn: &str) -> anyhow::Result<CoinId> {
    Ok(CoinId { dn: parse_dn(dn)?, sn: parse_num(sn, "serial number")? })
}

/// Parses exactly `N` bytes of hex (either case) into a wiped-on-drop array.
pub(crate) fn parse_hex<const N: usize>(s: &str, what: &str) -> anyhow::Result<Zeroizing<[u8; N]>> {
    let mut out = Zeroizing::new([0u8; N]);
    let s = s.trim();
    if s.len() != 2 * N {
        anyhow::bail!("{what} must be {} hex digits, got {} characters", 2 * N, s.len());
    }
    hex::decode_to_slice(s, &mut out[..]).map_err(|_| anyhow::anyhow!("{what} is not valid hex"))?;
    Ok(out)
}

pub(crate) fn open(dir: &std::path::Path) -> anyhow::Result<std::sync::Arc<Store>> {
    Ok(Store::open(dir)?)
}

pub fn run(cmd: CoinCommand) -> anyhow::Result<()> {
    match cmd {
        CoinCommand::Get { dir, dn, sn } => {
            let coin @ CoinId { dn, sn } = parse_coin(&dn, &sn)?;
            let store = open(&dir)?;
            let r = store.get(coin).with_context(|| format!("coin {dn}/{sn}"))?;
            let an = Zeroizing::new(hex::encode(r.an));
            println!("{} {}", an.as_str(), r.mfs);
            Ok(())
        }
        CoinCommand::Set { dir, dn, sn, an, mfs } => {
            let coin @ CoinId { dn, sn } = parse_coin(&dn, &sn)?;
            let an = parse_hex::<16>(&an, "AN")?;
            let mfs: u8 = match mfs {
                Some(m) => parse_num(&m, "MFS")?,
                None => raida_store::mfs_now(),
            };
            let store = open(&dir)?;
            store.set(coin, *an, mfs).with_context(|| format!("coin {dn}/{sn}"))?;
            store.flush()?;
            Ok(())
        }
    }
}
