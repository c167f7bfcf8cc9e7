//! Names of things in the data directory (PROTOCOL.md section 7) and small helpers.

use raida_proto::{CoinId, IdentityCoin};
use zeroize::Zeroizing;

use crate::error::{Result, StoreError};

/// Records per page file.
pub const RECORDS_PER_PAGE: u32 = 1024;
/// Bytes per record: 16-byte AN and one MFS byte.
pub const RECORD_BYTES: usize = 17;
/// Bytes per page file.
pub const PAGE_BYTES: usize = RECORDS_PER_PAGE as usize * RECORD_BYTES;
/// Pages per denomination (TOTAL_PAGES).
pub const TOTAL_PAGES: u32 = 1000;
/// Serial numbers are below this.
pub const MAX_SN: u32 = TOTAL_PAGES * RECORDS_PER_PAGE;
/// Lowest coin denomination.
pub const MIN_DN: i8 = -8;
/// Highest coin denomination.
pub const MAX_DN: i8 = 6;
/// Number of coin denominations.
pub const NUM_DN: usize = (MAX_DN as i16 - MIN_DN as i16 + 1) as usize;
/// Size of an identity coin file.
pub const IDENTITY_COIN_BYTES: usize = 440;
/// RAIDA servers (ids 0..24).
pub const TOTAL_RAIDA: usize = 25;

/// All coin denominations, -8..=6.
pub fn all_denominations() -> Vec<i8> {
    (MIN_DN..=MAX_DN).collect()
}

/// Checks a coin denomination.
pub fn check_dn(dn: i8) -> Result<()> {
    if (MIN_DN..=MAX_DN).contains(&dn) {
        Ok(())
    } else {
        Err(StoreError::BadDenomination(dn))
    }
}

/// Checks a serial number.
pub fn check_sn(sn: u32) -> Result<()> {
    if sn < MAX_SN {
        Ok(())
    } else {
        Err(StoreError::SnOutOfRange(sn))
    }
}

/// The wire byte of a denomination as 2 lowercase hex digits (-8 → `f8`).
pub fn dn_hex(dn: i8) -> String {
    format!("{:02x}", dn as u8)
}

/// Relative path of a page file: `Data/<DN 2 hex>/<page>>8 2 hex>/<page 4 hex>.bin`.
pub fn page_rel_path(dn: i8, page: u32) -> String {
    format!("Data/{}/{:02x}/{:04x}.bin", dn_hex(dn), page >> 8, page)
}

/// Relative page path and record index of a serial number.
pub fn page_path_for_sn(dn: i8, sn: u32) -> (String, usize) {
    (page_rel_path(dn, sn / RECORDS_PER_PAGE), (sn % RECORDS_PER_PAGE) as usize)
}

/// Relative path of an identity coin file: `coins/<DN 2 hex>.<SN decimal>.bin`.
pub fn identity_coin_rel_path(dn: i8, sn: u32) -> String {
    format!("coins/{}", coin_file_name(CoinId { dn, sn }))
}

/// The name of a coin file (a server's identity coin, a user's wallet):
/// `<DN 2 hex>.<SN decimal>.bin`. The file itself does not carry DN and SN.
pub fn coin_file_name(CoinId { dn, sn }: CoinId) -> String {
    format!("{}.{}.bin", dn_hex(dn), sn)
}

/// The coin a coin file's name names ([`coin_file_name`] read back); None for any other name.
pub fn parse_coin_file_name(name: &str) -> Option<IdentityCoin> {
    let stem = name.strip_suffix(".bin")?;
    let (dn, sn) = stem.split_once('.')?;
    if dn.len() != 2 || sn.is_empty() || !sn.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let dn = u8::from_str_radix(dn, 16).ok()? as i8;
    Some(IdentityCoin(CoinId { dn, sn: sn.parse().ok()? }))
}

/// Read a coin file, at most one byte more than the format's 440 (so a huge file is
/// refused by [`decode_identity_coin`] without being read whole); the bytes are wiped on
/// drop, as they hold the ANs.
pub fn read_coin_file(path: &std::path::Path) -> std::io::Result<Zeroizing<Vec<u8>>> {
    use std::io::Read;
    let f = std::fs::File::open(path)?;
    let mut buf = Zeroizing::new(Vec::with_capacity(IDENTITY_COIN_BYTES + 1));
    f.take(IDENTITY_COIN_BYTES as u64 + 1).read_to_end(&mut buf)?;
    Ok(buf)
}

/// The coin id a coin file names (bytes 2-3), whatever it is; None when too short.
pub fn coin_file_coin_id(bytes: &[u8]) -> Option<u16> {
    bytes.get(COIN_ID_AT).map(|b| u16::from_be_bytes([b[0], b[1]]))
}

/// Bytes 2-3 of a coin file: the coin id, big-endian.
const COIN_ID_AT: std::ops::Range<usize> = 2..4;

/// Builds the 440-byte identity coin file.
pub fn encode_identity_coin(coin_id: u16, ans: &[[u8; 16]; TOTAL_RAIDA]) -> [u8; IDENTITY_COIN_BYTES] {
    let mut out = [0u8; IDENTITY_COIN_BYTES];
    out[COIN_ID_AT].copy_from_slice(&coin_id.to_be_bytes());
    for (i, an) in ans.iter().enumerate() {
        out[40 + 16 * i..56 + 16 * i].copy_from_slice(an);
    }
    out
}

/// Parses an identity coin file; `Err(reason)` when it does not load.
pub fn decode_identity_coin(bytes: &[u8], coin_id: u16) -> std::result::Result<[[u8; 16]; TOTAL_RAIDA], String> {
    if bytes.len() > IDENTITY_COIN_BYTES {
        return Err("more than 440 bytes".into());
    }
    if bytes.len() != IDENTITY_COIN_BYTES {
        return Err(format!("{} bytes, expected 440", bytes.len()));
    }
    if bytes[0..2] != [0, 0] {
        return Err("bytes 0-1 are not zero".into());
    }
    let file_coin = coin_file_coin_id(bytes).unwrap_or_default();
    if file_coin != coin_id {
        return Err(format!("coin id {file_coin}, expected {coin_id}"));
    }
    if bytes[4..40].iter().any(|&b| b != 0) {
        return Err("bytes 4-39 are not zero".into());
    }
    let mut ans = [[0u8; 16]; TOTAL_RAIDA];
    for (i, an) in ans.iter_mut().enumerate() {
        an.copy_from_slice(&bytes[40 + 16 * i..56 + 16 * i]);
    }
    Ok(ans)
}

/// MFS for a Unix time (months since January 2023 UTC, at least 1): the protocol core's rule.
pub use raida_proto::consts::mfs_for_unix_time;

/// MFS for the current time.
pub fn mfs_now() -> u8 {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    mfs_for_unix_time(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(page_rel_path(-8, 0), "Data/f8/00/0000.bin");
        assert_eq!(page_path_for_sn(6, 1_023_999), ("Data/06/03/03e7.bin".into(), 1023));
        assert_eq!(identity_coin_rel_path(-1, 7), "coins/ff.7.bin");
        assert_eq!(parse_coin_file_name("0a.12.bin"), Some(IdentityCoin(CoinId { dn: 10, sn: 12 })));
        assert_eq!(parse_coin_file_name(&coin_file_name(CoinId { dn: -1, sn: 7 })), Some(IdentityCoin((-1, 7).into())));
        assert_eq!(parse_coin_file_name("1.12.bin"), None);
        assert_eq!(parse_coin_file_name("01.1x.bin"), None);
    }
}
