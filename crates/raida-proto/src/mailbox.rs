//! The derivations and rules of the mailbox (PROTOCOL.md sections 6/46, 6/47, 9 and 10)
//! that sender, receiver and server share: who may use a mailbox, which RAIDAs hold a
//! receiver's mailbox, a part's commitment and the relay's rendezvous id.

use hkdf::Hkdf;
use sha2::{Digest, Sha256};

use crate::coin::CoinId;
use crate::consts::{is_coin_dn, TOTAL_RAIDA_SERVERS};
use crate::header::KeyIdentity;
use crate::status::Status;

/// Mailbox RAIDAs per receiver.
pub const MAILBOX_RAIDAS: usize = 7;
/// A send fails when fewer mailbox RAIDAs than this accepted its alert.
pub const MIN_MAILBOX_ACCEPTS: usize = 3;
/// Domain of a part's commitment.
pub const COMMITMENT_DOMAIN: &[u8] = b"raida-part v1";
/// HKDF salt of the rendezvous id.
pub const RENDEZVOUS_SALT: &[u8] = b"raida-relay v1";
/// Default time an alert waits in a mailbox, in seconds.
pub const DEFAULT_ALERT_TTL_SECS: u64 = 600;
/// An answered alert (and a handed-out key's answer) is kept this long for a repeat.
pub const REPEAT_SECONDS: u64 = 30;
/// Alerts waiting per (sender, receiver) pair; a further one replaces the pair's oldest.
pub const PER_PAIR: usize = 2;
/// Alerts waiting per receiver (then 254).
pub const PER_RECEIVER: usize = 64;
/// Alerts waiting per sender coin, across receivers (then 160).
pub const PER_SENDER: usize = 64;
/// Held Take Alerts per address (then 160).
pub const HELD_PER_ADDRESS: usize = 4;

/// The coin a 46 or 47 acts for: the coin of EN 1 or EN 4, the first token of EN 5. EN 0,
/// 2 and 7 name no coin, and EN 4 under a key token names no coin either → 34 (checked
/// before the payload's size).
pub fn owner(identity: &KeyIdentity) -> Result<CoinId, Status> {
    let coin = match *identity {
        KeyIdentity::Coin { coin } | KeyIdentity::Token { coin } => coin,
        KeyIdentity::TokenPair { first, .. } => first,
        _ => return Err(Status::InvalidEncryption),
    };
    if is_coin_dn(coin.dn) {
        Ok(coin)
    } else {
        Err(Status::InvalidEncryption)
    }
}

/// The receiver's mailbox RAIDAs: `(SN + j) mod 25`, j = 0..6 (the DN plays no part).
pub fn mailbox_raidas(receiver: CoinId) -> [u8; MAILBOX_RAIDAS] {
    let n = u32::from(TOTAL_RAIDA_SERVERS);
    std::array::from_fn(|j| ((receiver.sn % n + j as u32) % n) as u8)
}

/// The first 16 bytes of SHA-256("raida-part v1" || key id || the part's key bytes).
pub fn commitment(key_id: &[u8; 16], part: &[u8]) -> [u8; 16] {
    let d = Sha256::new().chain_update(COMMITMENT_DOMAIN).chain_update(key_id).chain_update(part).finalize();
    let mut c = [0u8; 16];
    c.copy_from_slice(&d[..16]);
    c
}

/// `HKDF-SHA256(ikm = K, salt = "raida-relay v1", info)`, 32 bytes, where `info` is the
/// alert id (or, for a 42-only exchange, the first part's key id). One-way in K: a relay
/// that sees it learns nothing of K.
pub fn rendezvous_id(k: &[u8; 32], info: &[u8; 16]) -> [u8; 32] {
    let mut out = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's limit of 255 × 32: this cannot fail
    let _ = Hkdf::<Sha256>::new(Some(RENDEZVOUS_SALT), k).expand(info, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailboxes_wrap_around_24() {
        assert_eq!(mailbox_raidas(CoinId { dn: 1, sn: 20 }), [20, 21, 22, 23, 24, 0, 1]);
        assert_eq!(mailbox_raidas(CoinId { dn: -8, sn: 25 }), [0, 1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn owners() {
        let c = CoinId { dn: 1, sn: 2 };
        assert_eq!(owner(&KeyIdentity::Token { coin: c }), Ok(c));
        assert_eq!(owner(&KeyIdentity::TokenPair { first: c, second: CoinId { dn: 2, sn: 3 } }), Ok(c));
        assert_eq!(owner(&KeyIdentity::Token { coin: CoinId { dn: 8, sn: 2 } }), Err(Status::InvalidEncryption));
        assert_eq!(owner(&KeyIdentity::None), Err(Status::InvalidEncryption));
    }
}
