//! Key material and the key derivation of PROTOCOL.md section 5.
//!
//! A 16-byte key ([`Key16`], an AN or a locker) and a 32-byte key ([`Key32`]) are
//! different types. A [`Key32`] can only be made from a 32-byte secret, from
//! SHA-256 of an AN (type 4), or from two ANs of two *distinct* tokens (type 5):
//! there is no way to widen one AN by repeating it.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::coin::CoinId;
use crate::consts::{is_coin_dn, is_key_token_dn, MAX_SN, TOTAL_RAIDA_SERVERS};
use crate::header::KeyIdentity;
use crate::status::Status;

/// A 16-byte key: a coin's AN (type 1) or a locker's AN (type 2). Wiped on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Key16([u8; 16]);

/// A 32-byte key for the modern types 4, 5 and 7. Wiped on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Key32([u8; 32]);

impl Key16 {
    pub fn new(bytes: [u8; 16]) -> Self {
        Key16(bytes)
    }
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
    /// Constant-time equality.
    pub fn ct_eq(&self, other: &[u8; 16]) -> bool {
        self.0.ct_eq(other).into()
    }
}

impl Key32 {
    /// A 32-byte secret used as is (key-token secret, RAIDA pre-shared secret).
    pub fn from_secret(bytes: [u8; 32]) -> Self {
        Key32(bytes)
    }
    /// Type 4 with a coin: SHA-256(AN).
    pub fn sha256_of_an(an: &Key16) -> Self {
        let digest = Sha256::digest(an.as_bytes());
        let mut k = [0u8; 32];
        k.copy_from_slice(&digest);
        Key32(k)
    }
    /// Type 5: AN1 || AN2 of two distinct tokens (`first` != `second`).
    pub fn concat_two_tokens(first: CoinId, an1: &Key16, second: CoinId, an2: &Key16) -> Result<Self, Status> {
        if first == second {
            return Err(Status::InvalidEncryption);
        }
        let mut k = [0u8; 32];
        k[..16].copy_from_slice(an1.as_bytes());
        k[16..].copy_from_slice(an2.as_bytes());
        Ok(Key32(k))
    }
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for Key16 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key16(..)")
    }
}
impl std::fmt::Debug for Key32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key32(..)")
    }
}

/// The key of one request: 16 bytes for the legacy types, 32 for the modern ones.
#[derive(Clone, Debug)]
pub enum RequestKey {
    Legacy(Key16),
    Modern(Key32),
}

/// What a server knows about keys: the lookups section 5 needs, from a source that
/// cannot fail (in-memory maps: tests, tools). A store on disk implements
/// [`FallibleKeyLookup`] instead, so that a read error is not mistaken for "no such key".
/// Every lookup defaults to "no such key" (fails closed), so a source names only the keys
/// it holds.
pub trait KeyLookup {
    /// The AN of a *present* coin (DN -8..6, SN < 1,024,000, MFS != 0), else None.
    fn coin_an(&self, _coin: CoinId) -> Option<[u8; 16]> {
        None
    }
    /// The AN of the locker whose AN starts with `prefix`.
    fn locker_an(&self, _prefix: &[u8; 5]) -> Option<[u8; 16]> {
        None
    }
    /// A key token's 32-byte secret for this RAIDA (DN 7..11).
    fn token_secret(&self, _token: CoinId) -> Option<[u8; 32]> {
        None
    }
    /// The pre-shared secret [sender][this RAIDA][key id].
    fn raida_secret(&self, _sender: u8, _key_id: u32) -> Option<[u8; 32]> {
        None
    }
}

/// Knows no key at all: only EN 0 requests pass (EN 1 and 2 get 34, EN 4, 5 and 7 get
/// 25). A key receiver (section 9) holds no keys; tests use it too.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoKeys;
impl KeyLookup for NoKeys {}

/// Knows the AN of one coin and nothing else (`raida selfcheck`, benches, tests).
#[derive(Clone)]
pub struct OneCoin {
    pub coin: CoinId,
    pub an: [u8; 16],
}
impl KeyLookup for OneCoin {
    fn coin_an(&self, coin: CoinId) -> Option<[u8; 16]> {
        (coin == self.coin).then_some(self.an)
    }
}

/// A lookup that could not be answered: the server's store failed to read (an I/O error
/// such as running out of descriptors), which says nothing about whether the key exists.
/// Request validation answers it with 194 (FILESYSTEM), never with 34 or 25.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LookupFault;

impl From<LookupFault> for Status {
    fn from(_: LookupFault) -> Status {
        Status::Filesystem
    }
}

/// The lookups of [`KeyLookup`] for a source that can fail (a store on disk): each says
/// found, absent (`Ok(None)`) or could not tell (`Err(LookupFault)`). Request validation
/// takes this trait; every [`KeyLookup`] (in-memory maps) is one that never fails.
pub trait FallibleKeyLookup {
    /// As [`KeyLookup::coin_an`].
    fn try_coin_an(&self, coin: CoinId) -> Result<Option<[u8; 16]>, LookupFault>;
    /// As [`KeyLookup::locker_an`].
    fn try_locker_an(&self, prefix: &[u8; 5]) -> Result<Option<[u8; 16]>, LookupFault>;
    /// As [`KeyLookup::token_secret`].
    fn try_token_secret(&self, token: CoinId) -> Result<Option<[u8; 32]>, LookupFault>;
    /// As [`KeyLookup::raida_secret`].
    fn try_raida_secret(&self, sender: u8, key_id: u32) -> Result<Option<[u8; 32]>, LookupFault>;
}

impl<K: KeyLookup + ?Sized> FallibleKeyLookup for K {
    fn try_coin_an(&self, coin: CoinId) -> Result<Option<[u8; 16]>, LookupFault> {
        Ok(self.coin_an(coin))
    }
    fn try_locker_an(&self, prefix: &[u8; 5]) -> Result<Option<[u8; 16]>, LookupFault> {
        Ok(self.locker_an(prefix))
    }
    fn try_token_secret(&self, token: CoinId) -> Result<Option<[u8; 32]>, LookupFault> {
        Ok(self.token_secret(token))
    }
    fn try_raida_secret(&self, sender: u8, key_id: u32) -> Result<Option<[u8; 32]>, LookupFault> {
        Ok(self.raida_secret(sender, key_id))
    }
}

fn present_coin(keys: &impl FallibleKeyLookup, coin: CoinId) -> Result<Option<Key16>, LookupFault> {
    if !is_coin_dn(coin.dn) || coin.sn >= MAX_SN {
        return Ok(None);
    }
    Ok(keys.try_coin_an(coin)?.map(Key16))
}

/// Resolve the key of a request (section 3.2 / 3.4 / 5).
///
/// Errors: legacy unknown coin or locker → 34; EN 5 naming one token twice → 34
/// (before any lookup); modern key not found → 25; a lookup that failed (the store could
/// not be read) → 194. EN 0 has no key (`Ok(None)`).
pub fn resolve_key(identity: &KeyIdentity, keys: &impl FallibleKeyLookup) -> Result<Option<RequestKey>, Status> {
    match *identity {
        KeyIdentity::None => Ok(None),
        KeyIdentity::Coin { coin } => {
            present_coin(keys, coin)?.map(|k| Some(RequestKey::Legacy(k))).ok_or(Status::InvalidEncryption)
        }
        KeyIdentity::Locker { prefix } => {
            keys.try_locker_an(&prefix)?.map(|k| Some(RequestKey::Legacy(Key16(k)))).ok_or(Status::InvalidEncryption)
        }
        KeyIdentity::Token { coin } => type4_key(keys, coin).map(|k| Some(RequestKey::Modern(k))),
        KeyIdentity::TokenPair { first, second } => {
            if first == second {
                return Err(Status::InvalidEncryption);
            }
            let an1 = present_coin(keys, first)?.ok_or(Status::EncryptionCoinNotFound)?;
            let an2 = present_coin(keys, second)?.ok_or(Status::EncryptionCoinNotFound)?;
            Key32::concat_two_tokens(first, &an1, second, &an2).map(|k| Some(RequestKey::Modern(k)))
        }
        KeyIdentity::Raida { sender, key_id } => {
            if sender >= TOTAL_RAIDA_SERVERS {
                return Err(Status::EncryptionCoinNotFound);
            }
            keys.try_raida_secret(sender, key_id)?
                .map(|s| Some(RequestKey::Modern(Key32(s))))
                .ok_or(Status::EncryptionCoinNotFound)
        }
    }
}

/// Type 4: a key token's secret, or SHA-256 of a present coin's AN; else 25 (194 when the
/// lookup failed).
pub fn type4_key(keys: &impl FallibleKeyLookup, token: CoinId) -> Result<Key32, Status> {
    if is_key_token_dn(token.dn) {
        keys.try_token_secret(token)?.map(Key32).ok_or(Status::EncryptionCoinNotFound)
    } else if is_coin_dn(token.dn) {
        present_coin(keys, token)?.map(|an| Key32::sha256_of_an(&an)).ok_or(Status::EncryptionCoinNotFound)
    } else {
        Err(Status::EncryptionCoinNotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Knows every key, but its store cannot be read.
    struct Broken;
    impl FallibleKeyLookup for Broken {
        fn try_coin_an(&self, _: CoinId) -> Result<Option<[u8; 16]>, LookupFault> {
            Err(LookupFault)
        }
        fn try_locker_an(&self, _: &[u8; 5]) -> Result<Option<[u8; 16]>, LookupFault> {
            Err(LookupFault)
        }
        fn try_token_secret(&self, _: CoinId) -> Result<Option<[u8; 32]>, LookupFault> {
            Err(LookupFault)
        }
        fn try_raida_secret(&self, _: u8, _: u32) -> Result<Option<[u8; 32]>, LookupFault> {
            Err(LookupFault)
        }
    }

    fn status(r: Result<Option<RequestKey>, Status>) -> Option<Status> {
        r.err()
    }

    #[test]
    fn a_failed_lookup_is_194_and_an_absent_key_34_or_25() {
        let cases = [
            (KeyIdentity::Coin { coin: CoinId { dn: 1, sn: 5 } }, Status::InvalidEncryption),
            (KeyIdentity::Locker { prefix: [1; 5] }, Status::InvalidEncryption),
            (KeyIdentity::Token { coin: CoinId { dn: 1, sn: 5 } }, Status::EncryptionCoinNotFound),
            (KeyIdentity::Token { coin: CoinId { dn: 7, sn: 5 } }, Status::EncryptionCoinNotFound),
            (KeyIdentity::TokenPair { first: (1, 5).into(), second: (1, 6).into() }, Status::EncryptionCoinNotFound),
            (KeyIdentity::Raida { sender: 3, key_id: 9 }, Status::EncryptionCoinNotFound),
        ];
        for (id, absent) in cases {
            assert_eq!(status(resolve_key(&id, &Broken)), Some(Status::Filesystem), "{id:?}");
            assert_eq!(status(resolve_key(&id, &NoKeys)), Some(absent), "{id:?}");
        }
        // Rules that need no lookup keep their status.
        assert_eq!(status(resolve_key(&KeyIdentity::None, &Broken)), None);
        let same = KeyIdentity::TokenPair { first: (1, 5).into(), second: (1, 5).into() };
        assert_eq!(status(resolve_key(&same, &Broken)), Some(Status::InvalidEncryption));
        assert_eq!(
            status(resolve_key(&KeyIdentity::Coin { coin: CoinId { dn: 1, sn: 1_024_000 } }, &Broken)),
            Some(Status::InvalidEncryption)
        );
    }
}
