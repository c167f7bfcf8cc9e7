//! One file per command. Each handler sees typed inputs ([`Call`](crate::state::Call):
//! header, decrypted payload, peer, time) and returns an [`Answer`](crate::state::Answer);
//! payload layouts live in `raida_proto::commands`.

pub mod decrypt_raida_key;
pub mod echo;
pub mod encrypt_key;
pub mod get_key;
pub mod get_ticket;
pub mod key_alert;
pub mod post_key;
pub mod show_stats;
pub mod validate_ticket;
pub mod version;

use raida_proto::{Encryption, KeyIdentity};

/// The coins whose keys encrypted a request (EN 1, EN 4, both tokens of EN 5).
/// EN 2 (a locker) and EN 7 (a RAIDA secret) name no coin.
pub fn request_coins(id: &KeyIdentity) -> Vec<(i8, u32)> {
    match *id {
        KeyIdentity::Coin { dn, sn } | KeyIdentity::Token { dn, sn } => vec![(dn, sn)],
        KeyIdentity::TokenPair { first, second } => vec![first, second],
        _ => Vec::new(),
    }
}

/// Whether the request was encrypted at all.
pub fn encrypted(en: Encryption) -> bool {
    en != Encryption::None
}
