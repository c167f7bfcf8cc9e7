//! `Keys/`: the files of pending posted key parts (41 Post Key / 43 Get Key), PROTOCOL.md
//! section 7. One file per key, named by the 32 lower-case hex digits of the key id
//! (nothing else from a request reaches a path). The server keeps the in-memory index, the
//! limits and the locking (`raida_server::pending_keys`); this module is the format.
//!
//! File format (big-endian), version 1:
//! `[1][created u64][poster kind 1][poster 9][receiver DN 1][receiver SN 4][receiver IP 4]`
//! `[sender DN 1][sender SN 4][KL 1][key bytes KL]`.
//! Poster kinds: 0 anonymous, 1 coin (DN, SN), 2 locker (5-byte prefix), 3 RAIDA (sender, key id).

use std::io::{self, Read};
use std::path::Path;

use raida_proto::codec::be32;
use raida_proto::commands::post_key::CoinName;
use raida_proto::CoinId;
use zeroize::Zeroize;

/// A pending-key file is at most 34 + 255 bytes; reading stops beyond this.
const MAX_KEY_FILE: u64 = 512;

/// The request's key identity, as Post Key defines the poster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Poster {
    Anonymous,
    Coin(CoinId),
    Locker([u8; 5]),
    Raida(u8, u32),
}

impl Poster {
    fn encode(&self) -> [u8; 10] {
        let mut b = [0u8; 10];
        match *self {
            Poster::Anonymous => {}
            Poster::Coin(c) => {
                b[0] = 1;
                b[1] = c.dn as u8;
                b[2..6].copy_from_slice(&c.sn.to_be_bytes());
            }
            Poster::Locker(p) => {
                b[0] = 2;
                b[1..6].copy_from_slice(&p);
            }
            Poster::Raida(s, k) => {
                b[0] = 3;
                b[1] = s;
                b[2..6].copy_from_slice(&k.to_be_bytes());
            }
        }
        b
    }
    fn decode(b: &[u8]) -> Option<Poster> {
        let sn = be32(b.get(2..6)?);
        Some(match b[0] {
            0 => Poster::Anonymous,
            1 => Poster::Coin(CoinId { dn: b[1] as i8, sn }),
            2 => Poster::Locker([b[1], b[2], b[3], b[4], b[5]]),
            3 => Poster::Raida(b[1], sn),
            _ => return None,
        })
    }
}

/// One pending key, as its file holds it. The key bytes are wiped on drop.
pub struct PendingKey {
    pub created: u64,
    pub poster: Poster,
    pub receiver: CoinName,
    pub receiver_ip: [u8; 4],
    pub sender: CoinName,
    pub key_bytes: Vec<u8>,
}

impl Drop for PendingKey {
    fn drop(&mut self) {
        self.key_bytes.zeroize();
    }
}

impl PendingKey {
    /// The file's bytes (the caller wipes them after writing).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(40 + self.key_bytes.len());
        b.push(1);
        b.extend_from_slice(&self.created.to_be_bytes());
        b.extend_from_slice(&self.poster.encode());
        b.push(self.receiver.dn as u8);
        b.extend_from_slice(&self.receiver.sn.to_be_bytes());
        b.extend_from_slice(&self.receiver_ip);
        b.push(self.sender.dn as u8);
        b.extend_from_slice(&self.sender.sn.to_be_bytes());
        b.push(self.key_bytes.len() as u8);
        b.extend_from_slice(&self.key_bytes);
        b
    }

    /// A file's bytes, or None when they are not a version-1 pending key.
    pub fn decode(b: &[u8]) -> Option<PendingKey> {
        if b.len() < 34 || b[0] != 1 {
            return None;
        }
        let kl = b[33] as usize;
        if b.len() != 34 + kl {
            return None;
        }
        Some(PendingKey {
            created: u64::from_be_bytes(b[1..9].try_into().ok()?),
            poster: Poster::decode(&b[9..19])?,
            receiver: CoinName { dn: b[19] as i8, sn: be32(&b[20..24]) },
            receiver_ip: [b[24], b[25], b[26], b[27]],
            sender: CoinName { dn: b[28] as i8, sn: be32(&b[29..33]) },
            key_bytes: b[34..].to_vec(),
        })
    }
}

/// The `Keys/` file name of a key id.
pub fn key_file_name(key_id: &[u8; 16]) -> String {
    hex::encode(key_id)
}

/// The key id a `Keys/` (or `Inbox/`) file name stands for: 32 lower-case hex digits, the
/// only names written or read (an upper-case twin would be loaded but never deleted by
/// take or sweep: found by fuzzing).
pub fn key_id_of_file_name(name: &str) -> Option<[u8; 16]> {
    let mut id = [0u8; 16];
    let lower = name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    (name.len() == 32 && lower && hex::decode_to_slice(name, &mut id).is_ok()).then_some(id)
}

/// Reads one key file, at most [`MAX_KEY_FILE`] bytes.
pub fn read_key_file(path: &Path) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(64);
    std::fs::File::open(path)?.take(MAX_KEY_FILE).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Unlinks `path`; a file that is already gone is fine.
pub fn unlink(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
