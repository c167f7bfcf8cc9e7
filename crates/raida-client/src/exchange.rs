//! The key exchange as a client runs it: split a key into parts, post each part to a key
//! server (41), alert the receiving server where the parts wait (42); and the fix for a
//! RAIDA that lost a shared secret: key tickets from two RAIDAs (44) handed to the third (45).

use raida_proto::client::ClientKey;
use raida_proto::commands::decrypt_raida_key::{DecryptRaidaKey, DecryptRaidaKeyAnswer, DecryptRecord};
use raida_proto::commands::encrypt_key::EncryptKey;
use raida_proto::commands::key_alert::{self, AlertEntry, KeyAlert};
use raida_proto::commands::post_key::{CoinName, PostKey, KEY_LENGTHS};
use raida_proto::Status;
use raida_proto::{CoinId, IdentityCoin};
use rand_core::{OsRng, RngCore};

use crate::{Client, ClientError, Server};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExchangeError {
    #[error("a key of {len} bytes cannot be split into {parts} parts of 4, 8, 16, 24, 32 or 40 bytes")]
    BadSplit { len: usize, parts: usize },
    #[error("the key must end with the byte 0xFF (the receiver checks it)")]
    NoFinalFf,
    #[error("between 1 and 16 key servers are needed, not {0}")]
    PartCount(usize),
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// Split `key` into `parts` consecutive pieces whose lengths are all allowed key lengths
/// (KL of Post Key). The key's last byte must be 0xFF.
pub fn split_key(key: &[u8], parts: usize) -> Result<Vec<&[u8]>, ExchangeError> {
    if parts == 0 || parts > key_alert::MAX_PARTS {
        return Err(ExchangeError::PartCount(parts));
    }
    if key.last() != Some(&0xFF) {
        return Err(ExchangeError::NoFinalFf);
    }
    // as even as possible: try every length for the first part, recurse (tiny search)
    fn go(len: usize, parts: usize, out: &mut Vec<usize>) -> bool {
        if parts == 0 {
            return len == 0;
        }
        let even = len / parts;
        let mut lens: Vec<usize> = KEY_LENGTHS.iter().map(|&l| l as usize).collect();
        lens.sort_by_key(|&l| l.abs_diff(even));
        for l in lens {
            if l <= len {
                out.push(l);
                if go(len - l, parts - 1, out) {
                    return true;
                }
                out.pop();
            }
        }
        false
    }
    let mut lens = Vec::new();
    if !go(key.len(), parts, &mut lens) {
        return Err(ExchangeError::BadSplit { len: key.len(), parts });
    }
    let mut at = 0;
    Ok(lens
        .into_iter()
        .map(|l| {
            let p = &key[at..at + l];
            at += l;
            p
        })
        .collect())
}

/// A fresh random key of `len` bytes whose last byte is 0xFF.
pub fn random_key(len: usize) -> Vec<u8> {
    let mut k = vec![0u8; len];
    OsRng.fill_bytes(&mut k);
    if let Some(last) = k.last_mut() {
        *last = 0xFF;
    }
    k
}

/// One key server and the key to talk to it with.
#[derive(Clone, Debug)]
pub struct KeyServerTarget {
    pub server: Server,
    pub auth: ClientKey,
}

/// Post one part of `key` to each key server (in order) and return the alert entries
/// that tell the receiver where they wait. Only a Get Key made with `receiver` may
/// fetch a part when it is set; `receiver_ip` 0.0.0.0 allows any address.
pub async fn post_parts(
    client: &Client,
    targets: &[KeyServerTarget],
    key: &[u8],
    receiver: CoinName,
    receiver_ip: [u8; 4],
    sender: CoinName,
) -> Result<Vec<AlertEntry>, ExchangeError> {
    let posts = plan_posts(targets.len(), key, receiver, receiver_ip, sender)?;
    let mut entries = Vec::with_capacity(posts.len());
    for (t, post) in targets.iter().zip(&posts) {
        client.call(t.server, &t.auth, post).await?;
        entries.push(AlertEntry::new(post.key_id, t.server.addr.ip(), t.server.addr.port(), t.server.raida_id));
    }
    Ok(entries)
}

/// The Post Keys of [`post_parts`]: one per part, each placed by [`PostKey::for_part`].
fn plan_posts(
    servers: usize,
    key: &[u8],
    receiver: CoinName,
    receiver_ip: [u8; 4],
    sender: CoinName,
) -> Result<Vec<PostKey>, ExchangeError> {
    Ok(split_key(key, servers)?
        .into_iter()
        .map(|part| PostKey::for_part(&mut OsRng, receiver, receiver_ip, sender, part))
        .collect())
}

/// Tell the receiving server where the parts wait; returns its status (250 / 242 / 243)
/// and the 16-byte part map.
pub async fn alert(
    client: &Client,
    receiver: Server,
    auth: &ClientKey,
    entries: &[AlertEntry],
) -> Result<(Status, [u8; 16]), ExchangeError> {
    let answer = client.call(receiver, auth, &KeyAlert { entries: entries.to_vec() }).await?;
    Ok((answer.status, answer.map))
}

/// Give `target` (a RAIDA that lost coin `coin`'s AN) the new AN `new_an`: each helper
/// RAIDA makes a key ticket for one half under `target`'s identity coin `identity`
/// (44, encrypted with `helpers[i].1`), and `target` opens both (45).
/// Returns the per-record results.
pub async fn fix_an(
    client: &Client,
    helpers: [(Server, ClientKey); 2],
    target: Server,
    identity: IdentityCoin,
    coin: CoinId,
    new_an: [u8; 16],
) -> Result<DecryptRaidaKeyAnswer, ExchangeError> {
    let mut records = Vec::with_capacity(2);
    for (split, (server, key)) in helpers.iter().enumerate() {
        let mut half = [0u8; 8];
        half.copy_from_slice(&new_an[split * 8..split * 8 + 8]);
        let req = EncryptKey { recipient: identity, key_part: half, target: coin };
        let ticket = client.call(*server, key, &req).await?.0;
        records.push(DecryptRecord {
            coin_id: client.coin_id,
            split_id: split as u8,
            raida_id: server.raida_id,
            shard: 0,
            target: coin,
            ticket,
        });
    }
    Ok(client.call(target, &ClientKey::None, &DecryptRaidaKey { coin: identity, records }).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_use_allowed_lengths() {
        let key = random_key(32);
        let parts = split_key(&key, 2).unwrap();
        assert_eq!(parts.iter().map(|p| p.len()).collect::<Vec<_>>(), vec![16, 16]);
        assert_eq!(parts.concat(), key);
        let key = random_key(64);
        let parts = split_key(&key, 3).unwrap();
        assert_eq!(parts.iter().map(|p| p.len()).sum::<usize>(), 64);
        assert!(parts.iter().all(|p| KEY_LENGTHS.contains(&(p.len() as u8))));
        assert!(matches!(split_key(&random_key(33), 2), Err(ExchangeError::BadSplit { .. })));
        assert!(matches!(split_key(&[1, 2, 3, 4], 1), Err(ExchangeError::NoFinalFf)));
        assert!(matches!(split_key(&key, 0), Err(ExchangeError::PartCount(0))));
    }

    /// `raida key send --receiver` posted with KS + KL up to 128, which deployed servers
    /// refuse: its posts now come from the one sender placement (section 9: ≤ 127).
    #[test]
    fn post_parts_places_every_part_within_127() {
        let none = CoinName::default();
        for servers in 1..=5 {
            let key = random_key(if servers == 1 { 16 } else { 32 });
            for _ in 0..500 {
                let posts = plan_posts(servers, &key, none, [0; 4], none).unwrap();
                assert_eq!(posts.len(), servers);
                assert!(posts.iter().all(PostKey::within_sender_bound));
                assert_eq!(posts.iter().flat_map(|p| p.key_bytes().to_vec()).collect::<Vec<_>>(), key);
            }
        }
    }
}
