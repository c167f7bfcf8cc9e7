//! The per-direction symmetric key chain (the seed's ratchet):
//! `K_(n+1) = HKDF-SHA256(ikm = K_n, salt = "denobridge-key-ratchet", info = "ratchet:{n}")`.

use std::sync::OnceLock;

use hkdf::{Hkdf, HkdfExtract};
use sha2::Sha256;
use tracing::warn;
use zeroize::{Zeroize, Zeroizing};

use rand_core::{CryptoRngCore, OsRng};

use crate::error::ChannelError;

use crate::record::{self, Direction, NONCE_LEN};

/// The seed's ratchet salt.
pub const RATCHET_SALT: &[u8] = b"denobridge-key-ratchet";
/// Sequence numbers stop below 2^63 (a rekey must happen first).
pub const SEQ_LIMIT: u64 = 1 << 63;

/// A 32-byte secret key, zeroized on drop.
pub type SecretKey = Zeroizing<[u8; 32]>;

/// HKDF-SHA256 expanding to 32 bytes.
pub(crate) fn hkdf32(ikm: &[u8], salt: &[u8], info: &[u8]) -> SecretKey {
    let hk = Hkdf::<Sha256>::new(Some(salt), ikm);
    let mut out = Zeroizing::new([0u8; 32]);
    // 32 bytes is always a valid HKDF-SHA256 output length (at most 255 * 32).
    if hk.expand(info, out.as_mut()).is_err() {
        unreachable!("HKDF-SHA256 can always produce 32 bytes");
    }
    out
}

/// `K_(n+1)` from `K_n`.
pub fn next_key(key_n: &[u8; 32], n: u64) -> SecretKey {
    // HKDF-Extract keyed with the constant salt, set up once and cloned per step (saves
    // the HMAC key schedule of the salt on every record).
    static EXTRACT: OnceLock<HkdfExtract<Sha256>> = OnceLock::new();
    let mut ex = EXTRACT.get_or_init(|| HkdfExtract::<Sha256>::new(Some(RATCHET_SALT))).clone();
    ex.input_ikm(key_n);
    let (mut prk, hk) = ex.finalize();
    prk.as_mut_slice().zeroize();
    let mut info = [0u8; 32];
    let len = write_info(&mut info, n);
    let mut out = Zeroizing::new([0u8; 32]);
    if hk.expand(&info[..len], out.as_mut()).is_err() {
        unreachable!("HKDF-SHA256 can always produce 32 bytes");
    }
    out
}

fn write_info(buf: &mut [u8; 32], n: u64) -> usize {
    const PREFIX: &[u8] = b"ratchet:";
    buf[..PREFIX.len()].copy_from_slice(PREFIX);
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut v = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let d = &digits[i..];
    buf[PREFIX.len()..PREFIX.len() + d.len()].copy_from_slice(d);
    PREFIX.len() + d.len()
}

/// The sending half of one direction: holds only `K_next_seq`; every other key is erased.
pub struct SendChain {
    key: SecretKey,
    next_seq: u64,
    direction: Direction,
    endpoint: &'static str,
    nonces: NoncePool,
}

/// Nonces drawn from the caller's CSPRNG 32 at a time (with the OS CSPRNG: one system call
/// per 32 records).
struct NoncePool {
    buf: [u8; NONCE_POOL],
    used: usize,
}

const NONCE_POOL: usize = 32 * NONCE_LEN;

impl NoncePool {
    fn new() -> Self {
        NoncePool { buf: [0u8; NONCE_POOL], used: NONCE_POOL }
    }

    fn next(&mut self, rng: &mut (impl CryptoRngCore + ?Sized)) -> [u8; NONCE_LEN] {
        if self.used >= NONCE_POOL {
            rng.fill_bytes(&mut self.buf);
            self.used = 0;
        }
        let mut n = [0u8; NONCE_LEN];
        n.copy_from_slice(&self.buf[self.used..self.used + NONCE_LEN]);
        // Never hand out the same bytes twice.
        self.buf[self.used..self.used + NONCE_LEN].fill(0);
        self.used += NONCE_LEN;
        n
    }
}

impl SendChain {
    /// A chain whose first record (seq 1) is sealed under `key_1`.
    pub fn new(key_1: SecretKey, direction: Direction, endpoint: &'static str) -> Self {
        SendChain { key: key_1, next_seq: 1, direction, endpoint, nonces: NoncePool::new() }
    }

    /// A chain positioned at `seq` with `key` = `K_seq` (tests of the sequence limit).
    #[doc(hidden)]
    pub fn starting_at(key: SecretKey, seq: u64, direction: Direction, endpoint: &'static str) -> Self {
        SendChain { key, next_seq: seq.max(1), direction, endpoint, nonces: NoncePool::new() }
    }

    /// The sequence number the next record gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Number of records sealed so far.
    pub fn sent(&self) -> u64 {
        self.next_seq - 1
    }

    /// Seals the next record and ratchets: `K_seq` is erased before this returns. Nonces
    /// from the OS CSPRNG.
    pub fn seal(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, ChannelError> {
        self.seal_parts_with_rng(&[plaintext], &mut OsRng)
    }

    /// Seals the concatenation of `parts` as the next record (see [`SendChain::seal`]).
    pub fn seal_parts(&mut self, parts: &[&[u8]]) -> Result<Vec<u8>, ChannelError> {
        self.seal_parts_with_rng(parts, &mut OsRng)
    }

    /// [`SendChain::seal_parts`] with nonces from `rng` (a session passes its own).
    pub fn seal_parts_with_rng(
        &mut self,
        parts: &[&[u8]],
        rng: &mut (impl CryptoRngCore + ?Sized),
    ) -> Result<Vec<u8>, ChannelError> {
        let seq = self.next_seq;
        if seq >= SEQ_LIMIT {
            warn!(direction = self.direction.as_str(), "send sequence space exhausted; refusing to seal");
            return Err(ChannelError::SeqExhausted);
        }
        let nonce = self.nonces.next(rng);
        let rec = record::seal_parts_with_nonce(&self.key, seq, &nonce, self.direction, self.endpoint, parts)?;
        // The old key is zeroized when the Zeroizing box is dropped here.
        self.key = next_key(&self.key, seq);
        self.next_seq = seq + 1;
        Ok(rec)
    }
}
