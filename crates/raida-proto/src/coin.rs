//! A coin: denomination (DN) and serial number (SN), the way every command names one.
//!
//! [`CoinId`] holds any `[DN 1][SN 4]` a peer sends (the protocol checks the range where
//! section 6 says, with its status); [`CoinId::new`] is the checked constructor for coins
//! named by a user or a file (DN -8..11: coins -8..6 and key tokens 7..11, SN below
//! 1,024,000). Where an identity coin and a target coin meet, the identity is an
//! [`IdentityCoin`], so passing one for the other does not compile.

use std::fmt;

use crate::consts::{is_coin_dn, is_key_token_dn, MAX_SN};

/// A coin (DN, SN).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CoinId {
    pub dn: i8,
    pub sn: u32,
}

/// Why a user-named coin is not a coin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CoinIdError {
    #[error("denomination {0} is not -8..11")]
    Denomination(i8),
    #[error("serial number {0} is not below 1024000")]
    SerialNumber(u32),
}

impl CoinId {
    /// A coin or key token named by a user or a file: DN -8..11, SN < 1,024,000.
    pub fn new(dn: i8, sn: u32) -> Result<CoinId, CoinIdError> {
        if !is_coin_dn(dn) && !is_key_token_dn(dn) {
            return Err(CoinIdError::Denomination(dn));
        }
        if sn >= MAX_SN {
            return Err(CoinIdError::SerialNumber(sn));
        }
        Ok(CoinId { dn, sn })
    }

    /// `[DN 1][SN 4 BE]`, as every command carries a coin.
    pub fn wire_bytes(&self) -> [u8; 5] {
        crate::client::dn_sn_bytes(self.dn, self.sn)
    }

    /// (0, 0) means "not set" where a command lets a coin be left out (Post Key).
    pub fn is_set(&self) -> bool {
        !(self.dn == 0 && self.sn == 0)
    }
}

impl From<(i8, u32)> for CoinId {
    fn from((dn, sn): (i8, u32)) -> CoinId {
        CoinId { dn, sn }
    }
}

/// `DN:SN`, the form the command line takes and prints (`--coin 1:500`).
impl fmt::Display for CoinId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.dn, self.sn)
    }
}

/// A coin used as an identity: the coin whose per-RAIDA ANs key the tickets of 44 / 45 and
/// authenticate Get Key. A distinct type, so it cannot be passed where the target coin of
/// a ticket is meant, nor the other way round:
///
/// ```compile_fail
/// use raida_proto::commands::encrypt_key::EncryptKey;
/// use raida_proto::{CoinId, IdentityCoin};
/// let (identity, target) = (IdentityCoin(CoinId { dn: 1, sn: 500 }), CoinId { dn: 1, sn: 2 });
/// // swapped: does not compile
/// let _ = EncryptKey { recipient: target, key_part: [0; 8], target: identity };
/// ```
///
/// ```
/// use raida_proto::commands::encrypt_key::EncryptKey;
/// use raida_proto::{CoinId, IdentityCoin};
/// let (identity, target) = (IdentityCoin(CoinId { dn: 1, sn: 500 }), CoinId { dn: 1, sn: 2 });
/// let _ = EncryptKey { recipient: identity, key_part: [0; 8], target };
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdentityCoin(pub CoinId);

impl fmt::Display for IdentityCoin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dn_range_is_checked() {
        assert_eq!(CoinId::new(-8, 0), Ok(CoinId { dn: -8, sn: 0 }));
        assert_eq!(CoinId::new(11, 1_023_999).map(|c| c.to_string()), Ok("11:1023999".into()));
        assert_eq!(CoinId::new(-9, 1), Err(CoinIdError::Denomination(-9)));
        assert_eq!(CoinId::new(12, 1), Err(CoinIdError::Denomination(12)));
        assert_eq!(CoinId::new(1, 1_024_000), Err(CoinIdError::SerialNumber(1_024_000)));
    }
}
