//! The small tables of a data directory: identity coins (`coins/`, read at use) and the
//! tables kept in memory after open and persisted as whole files (atomic replace):
//!
//! * `lockers.bin`: N × 16-byte locker ANs (the key of EN 2 is found by the first 5 bytes;
//!   prefixes are unique).
//! * `tokens.bin`: N × 37 bytes: key-token DN wire byte (0x07..0x0B) | SN u32 BE | secret 32
//!   (this RAIDA's 32-byte secret of the key token).
//! * `raida_secrets.bin`: N × 37 bytes: sender RAIDA id (0..24) | key id u32 BE | secret 32
//!   (type-7 pre-shared secret from the sender RAIDA to this RAIDA).
//!
//! All three are written with mode 0600, sorted, and read back strictly (size must be a
//! multiple of the record size, no duplicate keys).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use parking_lot::RwLock;
use zeroize::{Zeroize, Zeroizing};

use crate::durable::{create_dir_durable, write_file_atomic};
use crate::error::{Result, StoreError};
use crate::layout::*;
use crate::store::Store;
use raida_proto::{CoinId, IdentityCoin, Key16, Key32};

pub(crate) const LOCKERS_FILE: &str = "lockers.bin";
pub(crate) const TOKENS_FILE: &str = "tokens.bin";
pub(crate) const RAIDA_SECRETS_FILE: &str = "raida_secrets.bin";

/// A table `K -> secret` persisted as fixed-size records.
pub(crate) struct Table<K, const N: usize> {
    path: PathBuf,
    map: RwLock<HashMap<K, Zeroizing<[u8; N]>>>,
    key_len: usize,
    enc: fn(&K, &mut Vec<u8>),
    dec: fn(&[u8]) -> Option<K>,
}

impl<K: std::hash::Hash + Eq + Ord + Copy, const N: usize> Table<K, N> {
    pub(crate) fn load(
        path: PathBuf,
        key_len: usize,
        enc: fn(&K, &mut Vec<u8>),
        dec: fn(&[u8]) -> Option<K>,
    ) -> Result<Self> {
        let mut map = HashMap::new();
        match std::fs::read(&path) {
            Ok(bytes) => {
                let bytes = Zeroizing::new(bytes);
                let rec = key_len + N;
                let corrupt = |reason: String| StoreError::CorruptFile { path: path.clone(), reason };
                if bytes.len() % rec != 0 {
                    return Err(corrupt(format!("{} bytes is not a multiple of the {rec}-byte record", bytes.len())));
                }
                for (i, r) in bytes.chunks_exact(rec).enumerate() {
                    let Some(k) = dec(&r[..key_len]) else {
                        return Err(corrupt(format!("record {i} has an invalid key")));
                    };
                    let mut v = Zeroizing::new([0u8; N]);
                    v.copy_from_slice(&r[key_len..]);
                    if map.insert(k, v).is_some() {
                        return Err(corrupt(format!("record {i} repeats a key")));
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io("cannot read", path, e)),
        }
        Ok(Table { path, map: RwLock::new(map), key_len, enc, dec })
    }

    pub(crate) fn get(&self, k: &K) -> Option<[u8; N]> {
        self.map.read().get(k).map(|v| **v)
    }

    pub(crate) fn len(&self) -> usize {
        self.map.read().len()
    }

    /// Inserts (`replace`: or replaces) and persists durably before returning.
    /// With `replace == false` an existing key gives `Ok(false)` and changes nothing.
    pub(crate) fn put(&self, k: K, v: &[u8; N], replace: bool) -> Result<bool> {
        let mut map = self.map.write();
        if !replace && map.contains_key(&k) {
            return Ok(false);
        }
        let mut keys: Vec<K> = map.keys().copied().filter(|x| *x != k).collect();
        keys.push(k);
        keys.sort();
        let mut out = Zeroizing::new(Vec::with_capacity(keys.len() * (self.key_len + N)));
        for key in &keys {
            (self.enc)(key, &mut out);
            if *key == k {
                out.extend_from_slice(v);
            } else if let Some(val) = map.get(key) {
                out.extend_from_slice(&val[..]);
            }
        }
        debug_assert!((self.dec)(&out[..self.key_len]).is_some());
        write_file_atomic(&self.path, &out, 0o600).map_err(|e| StoreError::io("cannot write", &self.path, e))?;
        map.insert(k, Zeroizing::new(*v));
        Ok(true)
    }

    /// Removes a key and persists; `Ok(false)` when absent.
    pub(crate) fn remove(&self, k: &K) -> Result<bool> {
        let mut map = self.map.write();
        if !map.contains_key(k) {
            return Ok(false);
        }
        let mut keys: Vec<K> = map.keys().copied().filter(|x| x != k).collect();
        keys.sort();
        let mut out = Zeroizing::new(Vec::new());
        for key in &keys {
            (self.enc)(key, &mut out);
            if let Some(val) = map.get(key) {
                out.extend_from_slice(&val[..]);
            }
        }
        write_file_atomic(&self.path, &out, 0o600).map_err(|e| StoreError::io("cannot write", &self.path, e))?;
        if let Some(mut v) = map.remove(k) {
            v.zeroize();
        }
        Ok(true)
    }
}

/// Lockers: the map key is the 5-byte prefix, the value the whole AN (prefix included).
pub(crate) fn lockers(dir: &Path) -> Result<Table<[u8; 5], 16>> {
    // The file holds bare 16-byte ANs: key_len 0, the prefix is derived from the value.
    let path = dir.join(LOCKERS_FILE);
    let mut map = HashMap::new();
    match std::fs::read(&path) {
        Ok(bytes) => {
            let bytes = Zeroizing::new(bytes);
            if bytes.len() % 16 != 0 {
                return Err(StoreError::CorruptFile {
                    path,
                    reason: format!("{} bytes is not a multiple of 16", bytes.len()),
                });
            }
            for an in bytes.chunks_exact(16) {
                let mut v = Zeroizing::new([0u8; 16]);
                v.copy_from_slice(an);
                let mut p = [0u8; 5];
                p.copy_from_slice(&an[..5]);
                if map.insert(p, v).is_some() {
                    return Err(StoreError::CorruptFile {
                        path,
                        reason: format!("two lockers with prefix {}", hex::encode(p)),
                    });
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(StoreError::io("cannot read", path, e)),
    }
    Ok(Table { path, map: RwLock::new(map), key_len: 0, enc: |_, _| {}, dec: |_| Some([0u8; 5]) })
}

pub(crate) fn tokens(dir: &Path) -> Result<Table<(i8, u32), 32>> {
    Table::load(
        dir.join(TOKENS_FILE),
        5,
        |k, out| {
            out.push(k.0 as u8);
            out.extend_from_slice(&k.1.to_be_bytes());
        },
        |b| {
            let dn = b[0] as i8;
            (7..=11).contains(&dn).then(|| (dn, u32::from_be_bytes([b[1], b[2], b[3], b[4]])))
        },
    )
}

pub(crate) fn raida_secrets(dir: &Path) -> Result<Table<(u8, u32), 32>> {
    Table::load(
        dir.join(RAIDA_SECRETS_FILE),
        5,
        |k, out| {
            out.push(k.0);
            out.extend_from_slice(&k.1.to_be_bytes());
        },
        |b| (b[0] <= 24).then(|| (b[0], u32::from_be_bytes([b[1], b[2], b[3], b[4]]))),
    )
}

impl Store {
    // ---- identity coins ----

    /// Path of an identity coin file.
    pub fn identity_coin_path(&self, IdentityCoin(CoinId { dn, sn }): IdentityCoin) -> PathBuf {
        self.inner.dir.join(identity_coin_rel_path(dn, sn))
    }

    /// Loads `coins/<DN>.<SN>.bin` and returns its 25 ANs; any deviation from the 440-byte
    /// layout or a coin id other than `coin_id` is an error (the server answers 197).
    /// No such coin: `MissingCoinFile`, `BadCoinFile` or `BadDenomination`; the file could
    /// not be read (e.g. EMFILE): `Io`.
    pub fn identity_coin(&self, identity: IdentityCoin, coin_id: u16) -> Result<[[u8; 16]; TOTAL_RAIDA]> {
        check_dn(identity.0.dn)?;
        let path = self.identity_coin_path(identity);
        let buf = match read_coin_file(&path) {
            Ok(buf) => buf,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(StoreError::MissingCoinFile(path)),
            Err(e) => return Err(StoreError::io("cannot read", path, e)),
        };
        decode_identity_coin(&buf, coin_id).map_err(|reason| StoreError::BadCoinFile { path, reason })
    }

    /// Writes an identity coin file durably (mode 0600); refuses to overwrite an existing one.
    pub fn write_identity_coin(
        &self,
        identity: IdentityCoin,
        coin_id: u16,
        ans: &[[u8; 16]; TOTAL_RAIDA],
    ) -> Result<()> {
        check_dn(identity.0.dn)?;
        let path = self.identity_coin_path(identity);
        if path.exists() {
            return Err(StoreError::CoinFileExists(path));
        }
        if let Some(parent) = path.parent() {
            create_dir_durable(parent).map_err(|e| StoreError::io("cannot create", parent, e))?;
        }
        let bytes = Zeroizing::new(encode_identity_coin(coin_id, ans));
        write_file_atomic(&path, &bytes[..], 0o600).map_err(|e| StoreError::io("cannot write", path, e))
    }

    // ---- lockers ----

    /// The locker whose AN starts with `prefix`.
    pub fn locker_by_prefix(&self, prefix: &[u8; 5]) -> Option<Key16> {
        self.inner.lockers.get(prefix).map(Key16::new)
    }

    /// Adds a locker durably; refuses a second locker with the same 5-byte prefix.
    pub fn add_locker(&self, an: [u8; 16]) -> Result<()> {
        let mut p = [0u8; 5];
        p.copy_from_slice(&an[..5]);
        if self.inner.lockers.put(p, &an, false)? {
            Ok(())
        } else {
            Err(StoreError::DuplicateLocker(hex::encode(p)))
        }
    }

    /// Removes the locker with this prefix; `Ok(false)` if there was none.
    pub fn remove_locker(&self, prefix: &[u8; 5]) -> Result<bool> {
        self.inner.lockers.remove(prefix)
    }

    /// Number of lockers.
    pub fn locker_count(&self) -> usize {
        self.inner.lockers.len()
    }

    // ---- key tokens ----

    /// This RAIDA's 32-byte secret of key token (DN 7..11, SN).
    pub fn token_secret(&self, token: CoinId) -> Option<Key32> {
        if !raida_proto::consts::is_key_token_dn(token.dn) {
            return None;
        }
        self.inner.tokens.get(&(token.dn, token.sn)).map(Key32::from_secret)
    }

    /// Stores (or replaces) a key token's secret durably.
    pub fn set_token_secret(&self, CoinId { dn, sn }: CoinId, secret: &[u8; 32]) -> Result<()> {
        if !raida_proto::consts::is_key_token_dn(dn) {
            return Err(StoreError::BadTokenDenomination(dn));
        }
        self.inner.tokens.put((dn, sn), secret, true).map(|_| ())
    }

    // ---- RAIDA pre-shared secrets ----

    /// Type-7 pre-shared secret from RAIDA `sender` to this RAIDA, key id `key_id`.
    pub fn raida_secret(&self, sender: u8, key_id: u32) -> Option<Key32> {
        if sender >= raida_proto::consts::TOTAL_RAIDA_SERVERS {
            return None;
        }
        self.inner.raida_secrets.get(&(sender, key_id)).map(Key32::from_secret)
    }

    /// Stores (or replaces) a type-7 pre-shared secret durably.
    pub fn set_raida_secret(&self, sender: u8, key_id: u32, secret: &[u8; 32]) -> Result<()> {
        if sender >= raida_proto::consts::TOTAL_RAIDA_SERVERS {
            return Err(StoreError::BadRaidaId(sender));
        }
        self.inner.raida_secrets.put((sender, key_id), secret, true).map(|_| ())
    }
}
