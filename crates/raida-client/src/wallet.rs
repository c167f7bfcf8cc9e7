//! A user's identity (PROTOCOL.md section 9): one coin, DN, SN and its 25 ANs (one per
//! RAIDA), in the 440-byte coin file format of 6/45 named `<DN 2 hex>.<SN>.bin`:
//! bytes 0-1 zero, 2-3 the coin id (big-endian), 4-39 zero, 40..440 the ANs of RAIDA 0..24.
//! The DN (as its wire byte, lowercase hex: -1 is `ff`) and the SN are in the file name,
//! as in a server's `coins/` folder, so a RAIDA's identity coin file is a wallet too.
//!
//! ```no_run
//! # fn main() -> Result<(), raida_client::wallet::WalletError> {
//! use raida_client::wallet::Wallet;
//! let w = Wallet::generate((1, 101).into(), 6)?;             // 25 ANs from the OS CSPRNG
//! let path = w.save(std::path::Path::new("wallets/alice"))?; // wallets/alice/01.101.bin, mode 0600
//! let again = Wallet::load(&path)?;
//! assert_eq!((again.dn(), again.sn()), (1, 101));
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};

use raida_proto::client::ClientKey;
use raida_proto::commands::post_key::CoinName;
use raida_proto::{CoinId, IdentityCoin, Key16, Key32};
use raida_store::layout::{decode_identity_coin, dn_hex, encode_identity_coin};
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

/// Number of RAIDAs (and ANs in a coin file).
pub const RAIDAS: usize = 25;

/// Why a wallet cannot be made, read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalletError {
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("the OS random generator failed: {0}")]
    Random(String),
    #[error("{0}")]
    BadCoin(String),
}

/// A coin with its 25 ANs. The ANs are wiped on drop and never shown by `Debug`.
#[derive(Clone)]
pub struct Wallet {
    coin: CoinId,
    coin_id: u16,
    ans: Zeroizing<[[u8; 16]; RAIDAS]>,
}

impl std::fmt::Debug for Wallet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Wallet({}:{}, coin id {}, ANs hidden)", self.coin.dn, self.coin.sn, self.coin_id)
    }
}

/// Check a coin name: DN -8..6 (a coin, not a key token), SN < 1,024,000, not 0:0.
pub fn check_coin(CoinId { dn, sn }: CoinId) -> Result<(), WalletError> {
    if !(-8..=6).contains(&dn) {
        return Err(WalletError::BadCoin(format!("DN {dn} is not a coin denomination (-8..6)")));
    }
    if sn >= raida_store::MAX_SN {
        return Err(WalletError::BadCoin(format!("SN {sn} is not below {}", raida_store::MAX_SN)));
    }
    if dn == 0 && sn == 0 {
        return Err(WalletError::BadCoin("0:0 means \"no identity\" on the wire; choose another coin".into()));
    }
    Ok(())
}

/// Parse `DN:SN` (signed decimal DN).
pub fn parse_coin_name(s: &str) -> Result<CoinName, WalletError> {
    let bad = || WalletError::BadCoin(format!("{s:?}: expected DN:SN, e.g. 1:101"));
    let (dn, sn) = s.split_once(':').ok_or_else(bad)?;
    let name = CoinName { dn: dn.trim().parse().map_err(|_| bad())?, sn: sn.trim().parse().map_err(|_| bad())? };
    check_coin(name)?;
    Ok(name)
}

impl Wallet {
    /// A new coin with 25 ANs from the OS CSPRNG.
    pub fn generate(coin: CoinId, coin_id: u16) -> Result<Wallet, WalletError> {
        check_coin(coin)?;
        let mut ans = Zeroizing::new([[0u8; 16]; RAIDAS]);
        for an in ans.iter_mut() {
            OsRng.try_fill_bytes(an).map_err(|e| WalletError::Random(e.to_string()))?;
        }
        Ok(Wallet { coin, coin_id, ans })
    }

    /// A wallet from known ANs (e.g. a RAIDA's identity coin).
    pub fn from_ans(coin: CoinId, coin_id: u16, ans: [[u8; 16]; RAIDAS]) -> Result<Wallet, WalletError> {
        check_coin(coin)?;
        Ok(Wallet { coin, coin_id, ans: Zeroizing::new(ans) })
    }

    pub fn dn(&self) -> i8 {
        self.coin.dn
    }
    pub fn sn(&self) -> u32 {
        self.coin.sn
    }
    pub fn coin_id(&self) -> u16 {
        self.coin_id
    }
    /// The coin, as the identity it is.
    pub fn identity(&self) -> IdentityCoin {
        IdentityCoin(self.coin)
    }
    /// The coin's name as the wire carries it.
    pub fn name(&self) -> CoinName {
        self.coin
    }

    /// The AN on RAIDA `raida_id` (None above 24).
    pub fn an(&self, raida_id: u8) -> Option<Key16> {
        self.ans.get(raida_id as usize).map(|a| Key16::new(*a))
    }

    /// The EN 4 key for RAIDA `raida_id`: SHA-256 of the coin's AN there (section 5).
    pub fn en4_key(&self, raida_id: u8) -> Option<ClientKey> {
        let an = self.an(raida_id)?;
        Some(ClientKey::Token { coin: self.coin, key: Key32::sha256_of_an(&an) })
    }

    /// `<DN 2 hex>.<SN>.bin`.
    pub fn file_name(&self) -> String {
        format!("{}.{}.bin", dn_hex(self.coin.dn), self.coin.sn)
    }

    /// The 440-byte file (wiped on drop).
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(encode_identity_coin(self.coin_id, &self.ans).to_vec())
    }

    /// Read a coin file; DN and SN come from its name `<DN 2 hex>.<SN>.bin`.
    pub fn load(path: &Path) -> Result<Wallet, WalletError> {
        let p = path.display().to_string();
        let invalid = |reason: String| WalletError::Invalid { path: p.clone(), reason };
        let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| invalid("no file name".into()))?;
        let IdentityCoin(coin) = parse_file_name(name).ok_or_else(|| {
            invalid("a coin file is named <DN 2 hex>.<SN>.bin, e.g. 01.101.bin (DN 1, SN 101)".into())
        })?;
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|source| WalletError::Io { path: p.clone(), source })?);
        // the file carries the coin id; accept whichever it names (checked against the network by the caller)
        let coin_id = match bytes.get(2..4) {
            Some(b) => u16::from_be_bytes([b[0], b[1]]),
            None => return Err(invalid(format!("{} bytes, expected 440", bytes.len()))),
        };
        let ans = decode_identity_coin(&bytes, coin_id).map_err(invalid)?;
        let w = Wallet::from_ans(coin, coin_id, ans).map_err(|e| invalid(e.to_string()))?;
        Ok(w)
    }

    /// Write `<dir>/<DN 2 hex>.<SN>.bin` (mode 0600; the folder is created mode 0700). Never
    /// overwrites an existing file.
    pub fn save(&self, dir: &Path) -> Result<PathBuf, WalletError> {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| WalletError::Io { path, source }
        };
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io(dir))?;
        let path = dir.join(self.file_name());
        let mut f =
            std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).map_err(io(&path))?;
        f.write_all(&self.to_bytes()).map_err(io(&path))?;
        f.sync_all().map_err(io(&path))?;
        Ok(path)
    }
}

/// `<DN 2 hex>.<SN decimal>.bin` → the identity coin (DN, SN).
pub fn parse_file_name(name: &str) -> Option<IdentityCoin> {
    let stem = name.strip_suffix(".bin")?;
    let (dn, sn) = stem.split_once('.')?;
    if dn.len() != 2 || sn.is_empty() || !sn.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let dn = u8::from_str_radix(dn, 16).ok()? as i8;
    Some(IdentityCoin(CoinId { dn, sn: sn.parse().ok()? }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_round_trip_and_checks() {
        let tmp = tempfile::tempdir().unwrap();
        let w = Wallet::generate((-1, 77).into(), 6).unwrap();
        let path = w.save(tmp.path()).unwrap();
        assert!(path.ends_with("ff.77.bin"));
        let back = Wallet::load(&path).unwrap();
        assert_eq!((back.dn(), back.sn(), back.coin_id()), (-1, 77, 6));
        assert_eq!(back.an(24).unwrap().as_bytes(), w.an(24).unwrap().as_bytes());
        assert!(w.save(tmp.path()).is_err(), "never overwrites");
        assert!(!format!("{w:?}").contains(&hex::encode(w.an(0).unwrap().as_bytes())));
        assert!(Wallet::generate((7, 1).into(), 6).is_err());
        assert!(Wallet::generate((0, 0).into(), 6).is_err());
        std::fs::write(tmp.path().join("01.5.bin"), [0u8; 439]).unwrap();
        assert!(Wallet::load(&tmp.path().join("01.5.bin")).is_err());
        assert_eq!(parse_file_name("0a.12.bin"), Some(IdentityCoin(CoinId { dn: 10, sn: 12 })));
        assert_eq!(parse_file_name("1.12.bin"), None);
        assert!(parse_coin_name("1:101").is_ok());
        assert!(parse_coin_name("x").is_err());
    }
}
