//! `Inbox/`: keys assembled from Key Alerts (PROTOCOL.md 6/42 and section 7): one file per
//! key, named by the first part's key id in 32 lower-case hex digits, written durably and
//! never replaced (temp + fsync + hard link, which fails when the name exists, so two
//! concurrent stores of one key id cannot both succeed). The server keeps the in-memory
//! index and the bounds (`raida_server::inbox`); `raida inbox` reads and takes keys here.
//!
//! File format, version 1: `[1][created u64][parts 1][parts × (sender DN 1, sender SN 4)]`
//! `[key length u16][key bytes]`.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use raida_proto::codec::be32;
use raida_proto::CoinId;
use zeroize::Zeroize;

use crate::durable::{fsync_dir, remove_file_durable};
use crate::keys_dir::key_id_of_file_name;

/// The folder's name inside the data directory.
pub const INBOX_DIR: &str = "Inbox";

/// One assembled key.
#[derive(Clone, PartialEq, Eq)]
pub struct InboxKey {
    pub key_id: [u8; 16],
    pub created: u64,
    /// The sender identity each key server reported, in part order.
    pub senders: Vec<CoinId>,
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
    /// The file's bytes (the caller wipes them after writing).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(12 + self.senders.len() * 5 + self.key.len());
        b.push(1);
        b.extend_from_slice(&self.created.to_be_bytes());
        b.push(self.senders.len() as u8);
        for s in &self.senders {
            b.push(s.dn as u8);
            b.extend_from_slice(&s.sn.to_be_bytes());
        }
        b.extend_from_slice(&(self.key.len() as u16).to_be_bytes());
        b.extend_from_slice(&self.key);
        b
    }

    /// The key of file `key_id` from its bytes, or None when they are not a version-1 key.
    pub fn decode(key_id: [u8; 16], b: &[u8]) -> Option<InboxKey> {
        if b.len() < 12 || b[0] != 1 {
            return None;
        }
        let created = u64::from_be_bytes(b[1..9].try_into().ok()?);
        let n = b[9] as usize;
        let mut pos = 10;
        let mut senders = Vec::with_capacity(n);
        for _ in 0..n {
            let s = b.get(pos..pos + 5)?;
            senders.push(CoinId { dn: s[0] as i8, sn: be32(&s[1..]) });
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

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InboxError {
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("{0}: not a valid inbox file")]
    Corrupt(String),
    #[error("no key {0} in the inbox")]
    NotFound(String),
    #[error("key id must be 32 hex digits")]
    BadKeyId,
    #[error("a key with this id is already in the inbox (never replaced)")]
    Exists,
    #[error("the inbox is full")]
    Full,
}

/// Temp names start with a dot (never 32 hex digits, so never listed as a key).
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tmp")
}

/// The `Inbox/` folder of a data directory: its files, no bounds (a server adds those).
#[derive(Clone, Debug)]
pub struct InboxDir {
    dir: PathBuf,
}

impl InboxDir {
    /// `DATA_DIR/Inbox` (created when the first key is stored).
    pub fn new(data_dir: &Path) -> InboxDir {
        InboxDir { dir: data_dir.join(INBOX_DIR) }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, key_id: &[u8; 16]) -> PathBuf {
        self.dir.join(hex::encode(key_id))
    }

    /// At start: removes the temporary files a crash left (one directory fsync) and lists
    /// the key ids. A missing folder holds no keys.
    pub fn recover(&self) -> std::io::Result<Vec<[u8; 16]>> {
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut removed = false;
        let mut ids = Vec::new();
        for entry in rd {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if is_temp_name(name) {
                std::fs::remove_file(entry.path())?;
                removed = true;
            } else if let Some(id) = key_id_of_file_name(name) {
                ids.push(id);
            }
        }
        if removed {
            fsync_dir(&self.dir)?;
        }
        Ok(ids)
    }

    /// The key ids in the folder now. A missing folder holds no keys.
    pub fn key_ids(&self) -> std::io::Result<HashSet<[u8; 16]>> {
        let mut on_disk = HashSet::new();
        match std::fs::read_dir(&self.dir) {
            Ok(rd) => {
                for entry in rd {
                    let entry = entry?;
                    if let Some(id) = entry.file_name().to_str().and_then(key_id_of_file_name) {
                        on_disk.insert(id);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(on_disk)
    }

    /// The `created` time inside a key's file.
    pub fn created_of(&self, key_id: &[u8; 16]) -> Option<u64> {
        let mut bytes = std::fs::read(self.path(key_id)).ok()?;
        let created = InboxKey::decode(*key_id, &bytes).map(|k| k.created);
        bytes.zeroize();
        created
    }

    /// Store durably under a name no file has yet: [`InboxError::Exists`] when one has.
    pub fn write_new(&self, key: &InboxKey) -> Result<(), InboxError> {
        let io = |p: &Path| {
            let p = p.display().to_string();
            move |e| InboxError::Io(p, e)
        };
        self.create_dir().map_err(io(&self.dir))?;
        let path = self.path(&key.key_id);
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = self.dir.join(format!(".{}.{}.{n}.tmp", hex::encode(key.key_id), std::process::id()));
        let mut bytes = key.encode();
        let written = (|| {
            let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_data()
        })();
        bytes.zeroize();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(&tmp)(e));
        }
        // link(2) fails when the name exists: the atomic "never replace"
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(InboxError::Exists),
            Err(e) => return Err(io(&path)(e)),
        }
        if let Err(e) = fsync_dir(&self.dir) {
            // not durable: do not leave a key the caller is told was not stored
            let _ = std::fs::remove_file(&path);
            return Err(io(&self.dir)(e));
        }
        Ok(())
    }

    /// `Inbox/`, mode 0700 (key ids must not be listed by other local users).
    fn create_dir(&self) -> std::io::Result<()> {
        if self.dir.is_dir() {
            return Ok(());
        }
        match std::fs::DirBuilder::new().mode(0o700).create(&self.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
            Err(e) => return Err(e),
        }
        match self.dir.parent() {
            Some(parent) => fsync_dir(parent),
            None => Ok(()),
        }
    }

    /// Unlink a key's file (no directory fsync: [`InboxDir::sync`] after a batch). False
    /// when it was already gone.
    pub fn remove(&self, key_id: &[u8; 16]) -> std::io::Result<bool> {
        match std::fs::remove_file(self.path(key_id)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Make the removals so far durable (one directory fsync).
    pub fn sync(&self) -> std::io::Result<()> {
        fsync_dir(&self.dir)
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
            let Some(id) = name.to_str().and_then(key_id_of_file_name) else { continue };
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
        remove_file_durable(&path).map_err(|e| InboxError::Io(path.display().to_string(), e))?;
        Ok(key)
    }
}
