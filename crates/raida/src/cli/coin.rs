//! `raida coin get DIR DN SN` and `raida coin set DIR DN SN (--an-file PATH | ANHEX) [--mfs M]`.

use raida_proto::CoinId;
use std::path::PathBuf;

use anyhow::Context;
use raida_store::Store;
use zeroize::Zeroizing;

#[derive(clap::Subcommand)]
pub(crate) enum CoinCommand {
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
        /// New AN, 32 hex digits. UNSAFE on a shared machine: every local user sees the
        /// arguments of a running command (ps, /proc); use --an-file.
        #[arg(required_unless_present = "an_file", conflicts_with = "an_file")]
        an: Option<String>,
        /// Read the AN from this file (one line, 32 hex digits; `-`: standard input). The
        /// file must be yours and private (chmod 600), as ssh wants of a private key.
        #[arg(long, value_name = "PATH")]
        an_file: Option<PathBuf>,
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

/// A secret given as an argument or, better, in `--FLAG PATH` (one line; `-`: stdin), as
/// `N` bytes of hex. clap makes sure exactly one of the two is given.
pub(crate) fn one_secret<const N: usize>(
    arg: Option<String>,
    file: Option<&std::path::Path>,
    flag: &str,
    what: &str,
) -> anyhow::Result<Zeroizing<[u8; N]>> {
    let arg = Zeroizing::new(arg);
    match (arg.as_deref(), file) {
        (Some(s), None) => parse_hex::<N>(s, what),
        (None, Some(p)) => {
            let hex_digits = format!("{what}, {} hex digits", 2 * N);
            let lines = super::secret_file::read_exactly(p, flag, 1, &hex_digits)?;
            parse_hex::<N>(&lines[0], &format!("the {what} in {flag} {}", p.display()))
        }
        _ => anyhow::bail!("give the {what} as an argument or in {flag}, not both"),
    }
}

pub(crate) fn open(dir: &std::path::Path) -> anyhow::Result<std::sync::Arc<Store>> {
    Ok(Store::open(dir)?)
}

pub(crate) fn run(cmd: CoinCommand) -> anyhow::Result<()> {
    match cmd {
        CoinCommand::Get { dir, dn, sn } => {
            let coin @ CoinId { dn, sn } = parse_coin(&dn, &sn)?;
            let store = open(&dir)?;
            let r = store.get(coin).with_context(|| format!("coin {dn}/{sn}"))?;
            let an = Zeroizing::new(hex::encode(r.an));
            println!("{} {}", an.as_str(), r.mfs);
            Ok(())
        }
        CoinCommand::Set { dir, dn, sn, an, an_file, mfs } => {
            let coin @ CoinId { dn, sn } = parse_coin(&dn, &sn)?;
            let an = one_secret::<16>(an, an_file.as_deref(), "--an-file", "AN")?;
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
