//! Keys assembled from Key Alerts, under `Inbox/`: one file per key, named by the first
//! part's key id in 32 lowercase hex digits, written durably (temp + fsync + rename).
//!
//! File format, version 1: `[1][created u64][parts 1][parts × (sender DN 1, sender SN 4)]`
//! `[key length u16][key bytes]`.

use std::path::{Path, PathBuf};

use zeroize::Zeroize;

/// One assembled key.
#[derive(Clone, PartialEq, Eq)]
pub struct InboxKey {
    pub key_id: [u8; 16],
    pub created: u64,
    /// The sender identity each key server reported, in part order.
    pub senders: Vec<(i8, u32)>,
    pub key: Vec<u8>,
}

impl Drop for InboxKey {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

impl std::fmt::Debug for InboxKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboxKey")
            .field("key_id", &hex::encode(self.key_id))
            .field("created", &self.created)
            .field("senders", &self.senders)
            .field("key_len", &self.key.len())
            .finish()
    }
}

impl InboxKey {
    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(12 + self.senders.len() * 5 + self.key.len());
        b.push(1);
        b.extend_from_slice(&self.created.to_be_bytes());
        b.push(self.senders.len() as u8);
        for (dn, sn) in &self.senders {
            b.push(*dn as u8);
            b.extend_from_slice(&sn.to_be_bytes());
        }
        b.extend_from_slice(&(self.key.len() as u16).to_be_bytes());
        b.extend_from_slice(&self.key);
        b
    }

    fn decode(key_id: [u8; 16], b: &[u8]) -> Option<InboxKey> {
        if b.len() < 12 || b[0] != 1 {
            return None;
        }
        let created = u64::from_be_bytes(b[1..9].try_into().ok()?);
        let n = b[9] as usize;
        let mut pos = 10;
        let mut senders = Vec::with_capacity(n);
        for _ in 0..n {
            let s = b.get(pos..pos + 5)?;
            senders.push((s[0] as i8, u32::from_be_bytes([s[1], s[2], s[3], s[4]])));
            pos += 5;
        }
        let len_bytes = b.get(pos..pos + 2)?;
        let len = u16::from_be_bytes([len_bytes[0], len_bytes[1]]) as usize;
        let key = b.get(pos + 2..)?;
        if key.len() != len {
            return None;
        }
        Some(InboxKey { key_id, created, senders, key: key.to_vec() })
    }
}

/// The inbox folder of a data directory.
#[derive(Clone, Debug)]
pub struct Inbox {
    dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("{0}: not a valid inbox file")]
    Corrupt(String),
    #[error("no key {0} in the inbox")]
    NotFound(String),
    #[error("key id must be 32 hex digits")]
    BadKeyId,
}

impl Inbox {
    /// `DIR/Inbox` (created on first store).
    pub fn new(data_dir: &Path) -> Inbox {
        Inbox { dir: data_dir.join("Inbox") }
    }

    fn path(&self, key_id: &[u8; 16]) -> PathBuf {
        self.dir.join(hex::encode(key_id))
    }

    /// Store durably (replacing an earlier key with the same id).
    pub fn store(&self, key: &InboxKey) -> Result<(), InboxError> {
        let io = |e| InboxError::Io(self.dir.display().to_string(), e);
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        let mut bytes = key.encode();
        let r = raida_store::durable::write_file_atomic(&self.path(&key.key_id), &bytes, 0o600);
        bytes.zeroize();
        r.map_err(|e| InboxError::Io(self.path(&key.key_id).display().to_string(), e))
    }

    /// Every key, oldest first. A missing folder is an empty inbox.
    pub fn list(&self) -> Result<Vec<InboxKey>, InboxError> {
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(InboxError::Io(self.dir.display().to_string(), e)),
        };
        let mut out = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|e| InboxError::Io(self.dir.display().to_string(), e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let mut id = [0u8; 16];
            if name.len() != 32 || hex::decode_to_slice(name, &mut id).is_err() {
                continue;
            }
            let path = entry.path();
            let bytes = std::fs::read(&path).map_err(|e| InboxError::Io(path.display().to_string(), e))?;
            out.push(InboxKey::decode(id, &bytes).ok_or_else(|| InboxError::Corrupt(path.display().to_string()))?);
        }
        out.sort_by_key(|k| (k.created, k.key_id));
        Ok(out)
    }

    /// Read one key and remove it durably.
    pub fn take(&self, key_id_hex: &str) -> Result<InboxKey, InboxError> {
        let mut id = [0u8; 16];
        if key_id_hex.len() != 32 || hex::decode_to_slice(key_id_hex.to_ascii_lowercase(), &mut id).is_err() {
            return Err(InboxError::BadKeyId);
        }
        let path = self.path(&id);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(InboxError::NotFound(key_id_hex.to_string()))
            }
            Err(e) => return Err(InboxError::Io(path.display().to_string(), e)),
        };
        let key = InboxKey::decode(id, &bytes).ok_or_else(|| InboxError::Corrupt(path.display().to_string()))?;
        raida_store::durable::remove_file_durable(&path).map_err(|e| InboxError::Io(path.display().to_string(), e))?;
        Ok(key)
    }
}
