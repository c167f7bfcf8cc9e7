//! Pending posted key parts (41 Post Key / 43 Get Key) under `Keys/`.
//!
//! One file per key, named by the 32 lowercase hex digits of the key id (nothing else
//! from a request reaches a path), mode 0640, written to a temporary name, fsync'd and
//! renamed. The in-memory index is rebuilt from the files at start.
//!
//! File format (big-endian), version 1:
//! `[1][created u64][poster kind 1][poster 9][receiver DN 1][receiver SN 4][receiver IP 4]`
//! `[sender DN 1][sender SN 4][KL 1][key bytes KL]`.
//! Poster kinds: 0 anonymous, 1 coin (DN, SN), 2 locker (5-byte prefix), 3 RAIDA (sender, key id).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use raida_proto::commands::post_key::{CoinName, PostKey};
use raida_proto::Status;
use zeroize::Zeroize;

/// The request's key identity, as Post Key defines the poster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Poster {
    Anonymous,
    Coin(i8, u32),
    Locker([u8; 5]),
    Raida(u8, u32),
}

impl Poster {
    fn encode(&self) -> [u8; 10] {
        let mut b = [0u8; 10];
        match *self {
            Poster::Anonymous => {}
            Poster::Coin(dn, sn) => {
                b[0] = 1;
                b[1] = dn as u8;
                b[2..6].copy_from_slice(&sn.to_be_bytes());
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
        let sn = u32::from_be_bytes([b[2], b[3], b[4], b[5]]);
        Some(match b[0] {
            0 => Poster::Anonymous,
            1 => Poster::Coin(b[1] as i8, sn),
            2 => Poster::Locker([b[1], b[2], b[3], b[4], b[5]]),
            3 => Poster::Raida(b[1], sn),
            _ => return None,
        })
    }
}

struct PendingKey {
    created: u64,
    poster: Poster,
    receiver: CoinName,
    receiver_ip: [u8; 4],
    sender: CoinName,
    key_bytes: Vec<u8>,
}

impl Drop for PendingKey {
    fn drop(&mut self) {
        self.key_bytes.zeroize();
    }
}

impl PendingKey {
    fn encode(&self) -> Vec<u8> {
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
    fn decode(b: &[u8]) -> Option<PendingKey> {
        if b.len() < 34 || b[0] != 1 {
            return None;
        }
        let be32 = |s: &[u8]| u32::from_be_bytes([s[0], s[1], s[2], s[3]]);
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

#[derive(Default)]
struct Index {
    keys: HashMap<[u8; 16], PendingKey>,
    by_poster: HashMap<Poster, [u8; 16]>,
}

/// The pending keys of one server.
pub struct PendingKeys {
    dir: PathBuf,
    ttl: u64,
    max_keys: usize,
    index: Mutex<Index>,
}

/// The `Keys/` path of a key id.
pub fn key_file_name(key_id: &[u8; 16]) -> String {
    hex::encode(key_id)
}

impl PendingKeys {
    /// Open `dir` (created if missing) and load every pending key in it. Unreadable or
    /// expired files are removed and logged.
    /// At most this many keys are pending by default (a post beyond it gets 254).
    pub const DEFAULT_MAX_KEYS: usize = 1_000_000;

    pub fn open(dir: &Path, ttl_secs: u64, now: u64) -> std::io::Result<PendingKeys> {
        std::fs::create_dir_all(dir)?;
        let mut index = Index::default();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let mut id = [0u8; 16];
            if name.len() != 32 || hex::decode_to_slice(name, &mut id).is_err() {
                continue; // temporary or foreign file
            }
            match std::fs::read(entry.path()).ok().and_then(|b| PendingKey::decode(&b)) {
                Some(k) if now.saturating_sub(k.created) <= ttl_secs => {
                    if k.poster != Poster::Anonymous {
                        index.by_poster.insert(k.poster, id);
                    }
                    index.keys.insert(id, k);
                }
                Some(_) => {
                    let _ = raida_store::durable::remove_file_durable(&entry.path());
                }
                None => {
                    tracing::warn!(file = %entry.path().display(), "unreadable pending key file removed");
                    let _ = raida_store::durable::remove_file_durable(&entry.path());
                }
            }
        }
        Ok(PendingKeys {
            dir: dir.to_path_buf(),
            ttl: ttl_secs,
            max_keys: Self::DEFAULT_MAX_KEYS,
            index: Mutex::new(index),
        })
    }

    /// Bound the number of pending keys (memory and disk); posts beyond it get 254.
    pub fn with_max_keys(mut self, max: usize) -> Self {
        self.max_keys = max;
        self
    }

    fn path(&self, id: &[u8; 16]) -> PathBuf {
        self.dir.join(key_file_name(id))
    }

    fn live(&self, k: &PendingKey, now: u64) -> bool {
        now.saturating_sub(k.created) <= self.ttl
    }

    /// Store a posted key durably (checks 217 and 201 here; 16/195/196 are the codec's).
    pub fn post(&self, post: &PostKey, poster: Poster, now: u64) -> Result<(), Status> {
        if post.sender.is_set() && poster != Poster::Coin(post.sender.dn, post.sender.sn) {
            return Err(Status::ReceiverAuth);
        }
        let mut idx = self.index.lock();
        if let Some(existing) = idx.keys.get(&post.key_id) {
            let same = existing.poster == poster && poster != Poster::Anonymous;
            if !same && self.live(existing, now) {
                return Err(Status::FileExists);
            }
        }
        let replaces =
            idx.keys.contains_key(&post.key_id) || (poster != Poster::Anonymous && idx.by_poster.contains_key(&poster));
        if !replaces && idx.keys.len() >= self.max_keys {
            return Err(Status::MemoryAlloc);
        }
        let key = PendingKey {
            created: now,
            poster,
            receiver: post.receiver,
            receiver_ip: post.receiver_ip,
            sender: post.sender,
            key_bytes: post.key_bytes.clone(),
        };
        let mut bytes = key.encode();
        let written = raida_store::durable::write_file_atomic(&self.path(&post.key_id), &bytes, 0o640);
        bytes.zeroize();
        if let Err(e) = written {
            tracing::error!(error = %e, "cannot write pending key");
            return Err(Status::Filesystem);
        }
        if poster != Poster::Anonymous {
            if let Some(old) = idx.by_poster.insert(poster, post.key_id) {
                if old != post.key_id {
                    idx.keys.remove(&old);
                    if let Err(e) = raida_store::durable::remove_file_durable(&self.path(&old)) {
                        tracing::warn!(error = %e, "cannot remove replaced pending key");
                    }
                }
            }
        }
        if let Some(prev) = idx.keys.insert(post.key_id, key) {
            if prev.poster != poster && prev.poster != Poster::Anonymous {
                idx.by_poster.remove(&prev.poster);
            }
        }
        Ok(())
    }

    /// Hand a key out once: 216 not pending, 217 wrong receiver coin, 218 wrong address.
    /// `requester_coins`: the coins whose key encrypted the request.
    pub fn take(
        &self,
        key_id: &[u8; 16],
        requester_coins: &[(i8, u32)],
        requester_ip: IpAddr,
        now: u64,
    ) -> Result<(CoinName, Vec<u8>), Status> {
        let mut idx = self.index.lock();
        let k = idx.keys.get(key_id).ok_or(Status::KeyNotFound)?;
        if !self.live(k, now) {
            return Err(Status::KeyNotFound);
        }
        if k.receiver.is_set() && !requester_coins.contains(&(k.receiver.dn, k.receiver.sn)) {
            return Err(Status::ReceiverAuth);
        }
        if k.receiver_ip != [0; 4] {
            let allowed = IpAddr::V4(Ipv4Addr::from(k.receiver_ip));
            let ip = match requester_ip {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(requester_ip),
                v4 => v4,
            };
            if ip != allowed {
                return Err(Status::ReceiverAddress);
            }
        }
        if let Err(e) = raida_store::durable::remove_file_durable(&self.path(key_id)) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::error!(error = %e, "cannot delete pending key");
                return Err(Status::Filesystem);
            }
        }
        let Some(mut k) = idx.keys.remove(key_id) else {
            return Err(Status::KeyNotFound);
        };
        if idx.by_poster.get(&k.poster) == Some(key_id) {
            idx.by_poster.remove(&k.poster);
        }
        Ok((k.sender, std::mem::take(&mut k.key_bytes)))
    }

    /// Delete expired keys (the background sweeper).
    pub fn sweep(&self, now: u64) -> usize {
        let mut idx = self.index.lock();
        let expired: Vec<[u8; 16]> = idx.keys.iter().filter(|(_, k)| !self.live(k, now)).map(|(id, _)| *id).collect();
        for id in &expired {
            if let Some(k) = idx.keys.remove(id) {
                if idx.by_poster.get(&k.poster) == Some(id) {
                    idx.by_poster.remove(&k.poster);
                }
            }
            let _ = raida_store::durable::remove_file_durable(&self.path(id));
        }
        expired.len()
    }

    pub fn len(&self) -> usize {
        self.index.lock().keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
