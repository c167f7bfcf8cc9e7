//! Thin wrappers over well-kept crates for the primitives the protocol uses: AES-128-CTR
//! and one AES-128 block (key tickets) from RustCrypto (the `aes` crate picks AES-NI at
//! run time), AES-256-GCM (detached tag, in place) from aws-lc-rs (AWS-LC's assembly,
//! several times the `aes-gcm` crate's rate on bulk bodies), CRC32 challenges. No cipher
//! is implemented here.

use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit, KeyIvInit, StreamCipher};
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};

use crate::keys::{Key16, Key32};

type Aes128Ctr = ctr::Ctr128BE<aes::Aes128>;

/// The CTR IV of a legacy request: header bytes 24-31 || eight zero bytes.
pub fn legacy_iv(nonce8: &[u8; 8]) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..8].copy_from_slice(nonce8);
    iv
}

/// AES-128-CTR (128-bit big-endian counter) applied in place.
pub fn ctr_apply(key: &Key16, iv: &[u8; 16], buf: &mut [u8]) {
    let mut c = Aes128Ctr::new(key.as_bytes().into(), iv.into());
    c.apply_keystream(buf);
}

/// AES-256-GCM seal in place; returns the 16-byte tag.
pub fn gcm_seal(key: &Key32, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8]) -> [u8; 16] {
    GcmKey::new(key).map(|k| k.seal(nonce, aad, buf)).unwrap_or([0u8; 16])
}

/// AES-256-GCM open in place; false (and `buf` unspecified) when the tag fails.
pub fn gcm_open(key: &Key32, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8], tag: &[u8; 16]) -> bool {
    GcmKey::new(key).is_some_and(|k| k.open(nonce, aad, buf, tag))
}

/// An AES-256-GCM key expanded once (round keys and GHASH tables), for a request whose
/// body is opened and whose answer is sealed under the same key: the expansion cost as
/// much as opening a small body. AWS-LC cleanses the expanded key when it is dropped.
pub struct GcmKey(LessSafeKey);

impl GcmKey {
    /// None only if the library refused a 32-byte key.
    pub fn new(key: &Key32) -> Option<GcmKey> {
        UnboundKey::new(&AES_256_GCM, key.as_bytes()).ok().map(|k| GcmKey(LessSafeKey::new(k)))
    }

    /// Seal in place; returns the 16-byte tag.
    pub fn seal(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8]) -> [u8; 16] {
        match self.0.seal_in_place_separate_tag(Nonce::assume_unique_for_key(*nonce), Aad::from(aad), buf) {
            Ok(tag) => {
                let mut t = [0u8; 16];
                t.copy_from_slice(&tag.as_ref()[..16]);
                t
            }
            // Only fails for plaintexts above 64 GiB, which a 16-bit body length excludes.
            Err(_) => [0u8; 16],
        }
    }

    /// Open in place; false (and `buf` unspecified) when the tag fails.
    pub fn open(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8], tag: &[u8; 16]) -> bool {
        self.0.open_in_place_separate_tag(Nonce::assume_unique_for_key(*nonce), Aad::from(aad), tag, buf).is_ok()
    }
}

impl std::fmt::Debug for GcmKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GcmKey(..)")
    }
}

/// One AES-128 block encryption (ECB of exactly 16 bytes), used for key tickets (44).
pub fn aes128_encrypt_block(key: &Key16, block: &[u8; 16]) -> [u8; 16] {
    let cipher = aes::Aes128::new(key.as_bytes().into());
    let mut b = aes::Block::clone_from_slice(block);
    cipher.encrypt_block(&mut b);
    b.into()
}

/// One AES-128 block decryption, used to open key tickets (45).
pub fn aes128_decrypt_block(key: &Key16, block: &[u8; 16]) -> [u8; 16] {
    let cipher = aes::Aes128::new(key.as_bytes().into());
    let mut b = aes::Block::clone_from_slice(block);
    cipher.decrypt_block(&mut b);
    b.into()
}

/// zlib CRC-32.
pub fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

/// A challenge: 12 random bytes || big-endian CRC32 of them.
pub fn make_challenge(random12: &[u8; 12]) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[..12].copy_from_slice(random12);
    c[12..].copy_from_slice(&crc32(random12).to_be_bytes());
    c
}

/// Whether a (decrypted) challenge carries a valid CRC32.
pub fn check_challenge(challenge: &[u8; 16]) -> bool {
    crc32(&challenge[..12]).to_be_bytes() == challenge[12..16]
}
