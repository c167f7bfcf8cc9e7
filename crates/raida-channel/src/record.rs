//! Records: `[seq 8][nonce 12][AES-256-GCM ciphertext || tag 16]` with the AAD
//! `seq:{seq}:{direction}:{endpoint}` (ASCII, seq in decimal).

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use rand_core::CryptoRngCore;

use crate::error::ChannelError;

/// Length of the sequence number field.
pub const SEQ_LEN: usize = 8;
/// Length of the nonce field.
pub const NONCE_LEN: usize = 12;
/// Length of the GCM tag.
pub const TAG_LEN: usize = 16;
/// Bytes before the ciphertext.
pub const HEADER_LEN: usize = SEQ_LEN + NONCE_LEN;
/// Bytes a record adds to its plaintext.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// Largest plaintext a record may carry (16 MiB).
pub const MAX_PLAINTEXT: usize = 16 * 1024 * 1024;
/// Largest record (and frame) accepted.
pub const MAX_RECORD: usize = MAX_PLAINTEXT + OVERHEAD + 64;
/// Endpoint string used on a byte stream.
pub const STREAM_ENDPOINT: &str = "stream";
/// Endpoint string used in HTTP mode (the HTTP path).
pub const HTTP_ENDPOINT: &str = "/message";

/// The direction of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Initiator to responder.
    AliceToBob,
    /// Responder to initiator.
    BobToAlice,
}

impl Direction {
    /// The ASCII name used in the AAD and in the HKDF info.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::AliceToBob => "alice-to-bob",
            Direction::BobToAlice => "bob-to-alice",
        }
    }

    /// Parses `alice-to-bob` / `bob-to-alice`.
    pub fn parse(s: &str) -> Option<Direction> {
        match s {
            "alice-to-bob" => Some(Direction::AliceToBob),
            "bob-to-alice" => Some(Direction::BobToAlice),
            _ => None,
        }
    }
}

/// The AAD of a record: `seq:{seq}:{direction}:{endpoint}`.
pub fn aad(seq: u64, direction: Direction, endpoint: &str) -> Vec<u8> {
    format!("seq:{seq}:{}:{endpoint}", direction.as_str()).into_bytes()
}

/// The sequence number field of a record (after checking the minimum length).
pub fn record_seq(message: &[u8]) -> Result<u64, ChannelError> {
    if message.len() < OVERHEAD {
        return Err(ChannelError::Truncated(message.len()));
    }
    let mut s = [0u8; SEQ_LEN];
    s.copy_from_slice(&message[..SEQ_LEN]);
    Ok(u64::from_be_bytes(s))
}

/// Seals `plaintext` as record `seq` under `key` with the given nonce.
pub fn seal_with_nonce(
    key: &[u8; 32],
    seq: u64,
    nonce: &[u8; NONCE_LEN],
    direction: Direction,
    endpoint: &str,
    plaintext: &[u8],
) -> Result<Vec<u8>, ChannelError> {
    seal_parts_with_nonce(key, seq, nonce, direction, endpoint, &[plaintext])
}

/// Seals the concatenation of `parts` (copied once, straight into the record buffer).
pub fn seal_parts_with_nonce(
    key: &[u8; 32],
    seq: u64,
    nonce: &[u8; NONCE_LEN],
    direction: Direction,
    endpoint: &str,
    parts: &[&[u8]],
) -> Result<Vec<u8>, ChannelError> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    if len > MAX_PLAINTEXT {
        return Err(ChannelError::PayloadTooLarge(len));
    }
    let mut out = Vec::with_capacity(len + OVERHEAD);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(nonce);
    for p in parts {
        out.extend_from_slice(p);
    }
    let cipher = gcm_key(key).ok_or(ChannelError::Seal)?;
    let tag = cipher
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(*nonce),
            Aad::from(aad(seq, direction, endpoint)),
            &mut out[HEADER_LEN..],
        )
        .map_err(|_| ChannelError::Seal)?;
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

/// Seals the concatenation of `parts` with a fresh nonce from `rng` (the OS CSPRNG in
/// production; [`crate::chain::SendChain`] draws its nonces in batches instead).
pub fn seal_parts(
    key: &[u8; 32],
    seq: u64,
    direction: Direction,
    endpoint: &str,
    parts: &[&[u8]],
    rng: &mut (impl CryptoRngCore + ?Sized),
) -> Result<Vec<u8>, ChannelError> {
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    seal_parts_with_nonce(key, seq, &nonce, direction, endpoint, parts)
}

/// Seals `plaintext` as record `seq` under `key` with a fresh nonce from `rng`.
pub fn seal(
    key: &[u8; 32],
    seq: u64,
    direction: Direction,
    endpoint: &str,
    plaintext: &[u8],
    rng: &mut (impl CryptoRngCore + ?Sized),
) -> Result<Vec<u8>, ChannelError> {
    seal_parts(key, seq, direction, endpoint, &[plaintext], rng)
}

/// Opens a record under `key`; the AAD is rebuilt from the record's own sequence number.
/// This checks authenticity only; replay and ordering are [`crate::window`]'s job.
pub fn open(key: &[u8; 32], message: &[u8], direction: Direction, endpoint: &str) -> Result<Vec<u8>, ChannelError> {
    let seq = record_seq(message)?;
    let nonce =
        Nonce::try_assume_unique_for_key(&message[SEQ_LEN..HEADER_LEN]).map_err(|_| ChannelError::Auth { seq })?;
    let body_end = message.len() - TAG_LEN;
    let tag = &message[body_end..];
    let mut buf = message[HEADER_LEN..body_end].to_vec();
    let cipher = gcm_key(key).ok_or(ChannelError::Auth { seq })?;
    match cipher.open_in_place_separate_tag(nonce, Aad::from(aad(seq, direction, endpoint)), tag, &mut buf) {
        Ok(_) => Ok(buf),
        Err(_) => Err(ChannelError::Auth { seq }),
    }
}

/// The record key for AES-256-GCM (aws-lc-rs: AWS-LC's assembly; its key state is
/// cleansed when freed). None only if the library refused a 32-byte key.
fn gcm_key(key: &[u8; 32]) -> Option<LessSafeKey> {
    UnboundKey::new(&AES_256_GCM, key).ok().map(LessSafeKey::new)
}
