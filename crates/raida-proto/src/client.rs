//! The client side: build any request (any EN, group, command, payload) and verify +
//! decode its response into a typed result or a typed error.

use rand_core::RngCore;

use crate::coin::CoinId;
use crate::consts::{RESPONSE_HEADER_SIZE, TAG_SIZE, TERMINATOR};
use crate::crypto;
use crate::keys::{Key16, Key32};
use crate::status::Status;

/// Header bytes 0-15 and the routing fields a client chooses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Routing {
    pub raida_id: u8,
    pub shard_id: u8,
    pub command_group: u8,
    pub command: u8,
    pub coin_id: u16,
}

impl Routing {
    pub fn new(raida_id: u8, coin_id: u16, command_group: u8, command: u8) -> Self {
        Routing { raida_id, shard_id: 0, command_group, command, coin_id }
    }
}

/// The raw header fields, for building any header (including invalid ones, in tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderFields {
    pub version: u8,
    pub split_id: u8,
    pub raida_id: u8,
    pub shard_id: u8,
    pub command_group: u8,
    pub command: u8,
    pub coin_id: u16,
    pub bitfield: u8,
    /// Bytes 9-15.
    pub reserved: [u8; 7],
    pub en: u8,
    /// Bytes 17-21 (key DN + SN, locker prefix, sender + key id).
    pub key_bytes: [u8; 5],
}

impl HeaderFields {
    /// The fields clients normally send for a routing and an encryption type.
    pub fn standard(routing: &Routing, en: u8, key_bytes: [u8; 5]) -> Self {
        HeaderFields {
            version: 1,
            split_id: 0,
            raida_id: routing.raida_id,
            shard_id: routing.shard_id,
            command_group: routing.command_group,
            command: routing.command,
            coin_id: routing.coin_id,
            bitfield: 1,
            reserved: [0, 0, 0, 0, 0, 0, 1],
            en,
            key_bytes,
        }
    }

    fn write(&self, h: &mut [u8]) {
        h[0] = self.version;
        h[1] = self.split_id;
        h[2] = self.raida_id;
        h[3] = self.shard_id;
        h[4] = self.command_group;
        h[5] = self.command;
        h[6..8].copy_from_slice(&self.coin_id.to_be_bytes());
        h[8] = self.bitfield;
        h[9..16].copy_from_slice(&self.reserved);
        h[16] = self.en;
        h[17..22].copy_from_slice(&self.key_bytes);
    }
}

/// `[DN 1][SN 4]` as header bytes 17-21.
pub fn dn_sn_bytes(dn: i8, sn: u32) -> [u8; 5] {
    let s = sn.to_be_bytes();
    [dn as u8, s[0], s[1], s[2], s[3]]
}

/// The key a client encrypts a request with.
#[derive(Clone, Debug)]
pub enum ClientKey {
    /// EN 0.
    None,
    /// EN 1: the coin's AN for this RAIDA.
    Coin { coin: CoinId, an: Key16 },
    /// EN 2: a locker AN (its first 5 bytes go in the header).
    Locker { an: Key16 },
    /// EN 4: a coin (key = SHA-256(AN): use [`Key32::sha256_of_an`]) or a key token's secret.
    Token { coin: CoinId, key: Key32 },
    /// EN 5: two distinct tokens, key = AN1 || AN2 ([`Key32::concat_two_tokens`]).
    TokenPair { first: CoinId, second: CoinId, key: Key32 },
    /// EN 7: RAIDA-to-RAIDA secret.
    Raida { sender: u8, key_id: u32, key: Key32 },
}

impl ClientKey {
    pub fn en(&self) -> u8 {
        match self {
            ClientKey::None => 0,
            ClientKey::Coin { .. } => 1,
            ClientKey::Locker { .. } => 2,
            ClientKey::Token { .. } => 4,
            ClientKey::TokenPair { .. } => 5,
            ClientKey::Raida { .. } => 7,
        }
    }
    fn key_bytes(&self) -> [u8; 5] {
        match self {
            ClientKey::None => [0; 5],
            ClientKey::Coin { coin, .. } | ClientKey::Token { coin, .. } => coin.wire_bytes(),
            ClientKey::Locker { an } => {
                let mut p = [0u8; 5];
                p.copy_from_slice(&an.as_bytes()[..5]);
                p
            }
            ClientKey::TokenPair { first, .. } => first.wire_bytes(),
            ClientKey::Raida { sender, key_id, .. } => {
                let k = key_id.to_be_bytes();
                [*sender, k[0], k[1], k[2], k[3]]
            }
        }
    }
}

/// What the client must remember to verify the answer to a request.
#[derive(Clone, Debug)]
pub struct PendingReply {
    echo: [u8; 2],
    mode: PendingMode,
}

#[derive(Clone, Debug)]
enum PendingMode {
    Legacy { key: Option<Key16>, iv: [u8; 16], challenge_hash: [u8; 16] },
    Modern { key: Key32, request_nonce: [u8; 12] },
}

/// Encode a legacy request (EN 0/1/2) with explicit randomness. `key` is the 16-byte
/// key for EN 1/2 (None for EN 0). Returns the packet and what verifies its answer.
pub fn encode_legacy(
    fields: &HeaderFields,
    nonce8: [u8; 8],
    challenge_random: [u8; 12],
    payload: &[u8],
    key: Option<&Key16>,
) -> (Vec<u8>, PendingReply) {
    let body_len = 16 + payload.len() + 2;
    let mut p = vec![0u8; 32 + body_len];
    fields.write(&mut p[..32]);
    p[22..24].copy_from_slice(&(body_len.min(u16::MAX as usize) as u16).to_be_bytes());
    p[24..32].copy_from_slice(&nonce8);
    let challenge = crypto::make_challenge(&challenge_random);
    p[32..48].copy_from_slice(&challenge);
    p[48..48 + payload.len()].copy_from_slice(payload);
    let iv = crypto::legacy_iv(&nonce8);
    let mut hash = challenge;
    if let Some(k) = key {
        crypto::ctr_apply(k, &iv, &mut p[32..32 + body_len - 2]);
        for (h, kb) in hash.iter_mut().zip(k.as_bytes()) {
            *h ^= kb;
        }
    }
    let n = p.len();
    p[n - 2..].copy_from_slice(&TERMINATOR);
    let echo = [nonce8[6], nonce8[7]];
    (p, PendingReply { echo, mode: PendingMode::Legacy { key: key.cloned(), iv, challenge_hash: hash } })
}

/// Encode a modern request (EN 4/5/7) with explicit nonce and time. `bytes24_29` are
/// the header bytes 24-29 (token 2 for EN 5; zero otherwise).
pub fn encode_modern(
    fields: &HeaderFields,
    bytes24_29: [u8; 6],
    echo: [u8; 2],
    nonce: [u8; 12],
    request_time: u32,
    payload: &[u8],
    key: &Key32,
) -> (Vec<u8>, PendingReply) {
    let body_len = payload.len() + TAG_SIZE + 2;
    let mut p = vec![0u8; 48 + body_len];
    fields.write(&mut p[..48]);
    p[22..24].copy_from_slice(&(body_len.min(u16::MAX as usize) as u16).to_be_bytes());
    p[24..30].copy_from_slice(&bytes24_29);
    p[30..32].copy_from_slice(&echo);
    p[32..44].copy_from_slice(&nonce);
    p[44..48].copy_from_slice(&request_time.to_be_bytes());
    p[48..48 + payload.len()].copy_from_slice(payload);
    let (head, body) = p.split_at_mut(48);
    let tag = crypto::gcm_seal(key, &nonce, head, &mut body[..payload.len()]);
    body[payload.len()..payload.len() + TAG_SIZE].copy_from_slice(&tag);
    let n = p.len();
    p[n - 2..].copy_from_slice(&TERMINATOR);
    (p, PendingReply { echo, mode: PendingMode::Modern { key: key.clone(), request_nonce: nonce } })
}

/// Build a request with fresh randomness from `rng` (the OS CSPRNG in production);
/// `now` is the request time for modern types (Unix seconds).
pub fn build_request(
    routing: &Routing,
    key: &ClientKey,
    payload: &[u8],
    now: u64,
    rng: &mut impl RngCore,
) -> (Vec<u8>, PendingReply) {
    let fields = HeaderFields::standard(routing, key.en(), key.key_bytes());
    match key {
        ClientKey::None | ClientKey::Coin { .. } | ClientKey::Locker { .. } => {
            let mut nonce8 = [0u8; 8];
            rng.fill_bytes(&mut nonce8);
            let mut random12 = [0u8; 12];
            rng.fill_bytes(&mut random12);
            let k = match key {
                ClientKey::Coin { an, .. } | ClientKey::Locker { an } => Some(an),
                _ => None,
            };
            encode_legacy(&fields, nonce8, random12, payload, k)
        }
        ClientKey::Token { key, .. } | ClientKey::Raida { key, .. } => modern(&fields, [0; 6], payload, now, key, rng),
        ClientKey::TokenPair { second, key, .. } => modern(
            &fields,
            {
                let b = second.wire_bytes();
                [b[0], b[1], b[2], b[3], b[4], 0]
            },
            payload,
            now,
            key,
            rng,
        ),
    }
}

fn modern(
    fields: &HeaderFields,
    b24: [u8; 6],
    payload: &[u8],
    now: u64,
    key: &Key32,
    rng: &mut impl RngCore,
) -> (Vec<u8>, PendingReply) {
    let mut echo = [0u8; 2];
    rng.fill_bytes(&mut echo);
    let mut nonce = [0u8; 12];
    rng.fill_bytes(&mut nonce);
    encode_modern(fields, b24, echo, nonce, now.min(u32::MAX as u64) as u32, payload, key)
}

/// A verified, successful response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub raida_id: u8,
    pub status: Status,
    pub payload: Vec<u8>,
    pub execution_us: u32,
}

/// Why a response was not a verified success.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResponseError {
    #[error("response shorter than its header or body size")]
    Truncated,
    #[error("response body does not end with 3E 3E")]
    BadTerminator,
    #[error("response echo does not match the request")]
    EchoMismatch,
    #[error("response signature (challenge hash) does not match the request")]
    BadSignature,
    #[error("response tag does not verify")]
    BadTag,
    #[error("unknown status code {0}")]
    UnknownStatus(u8),
    #[error("server answered {status}{}", if *authenticated { "" } else { " (unauthenticated)" })]
    Status { status: Status, authenticated: bool },
}

/// Size of the complete response given its first 32 bytes.
pub fn response_size(header: &[u8; 32]) -> usize {
    RESPONSE_HEADER_SIZE + u32::from_be_bytes([0, header[9], header[10], header[11]]) as usize
}

impl PendingReply {
    /// What verifies a legacy answer: the request's echo, key (None for EN 0), IV and
    /// expected challenge hash.
    pub fn legacy(echo: [u8; 2], key: Option<Key16>, iv: [u8; 16], challenge_hash: [u8; 16]) -> Self {
        PendingReply { echo, mode: PendingMode::Legacy { key, iv, challenge_hash } }
    }

    /// What verifies a modern answer: the request's echo, key and nonce.
    pub fn modern(echo: [u8; 2], key: Key32, request_nonce: [u8; 12]) -> Self {
        PendingReply { echo, mode: PendingMode::Modern { key, request_nonce } }
    }

    /// The echo bytes the answer must carry.
    pub fn echo(&self) -> [u8; 2] {
        self.echo
    }

    /// Verify and decode a response to this request.
    pub fn open(&self, response: &[u8]) -> Result<Reply, ResponseError> {
        if response.len() < RESPONSE_HEADER_SIZE {
            return Err(ResponseError::Truncated);
        }
        let mut h = [0u8; 32];
        h.copy_from_slice(&response[..32]);
        let total = response_size(&h);
        if response.len() < total {
            return Err(ResponseError::Truncated);
        }
        let body = &response[32..total];
        if h[6..8] != self.echo {
            return Err(ResponseError::EchoMismatch);
        }
        let status = Status::from_code(h[2]).ok_or(ResponseError::UnknownStatus(h[2]))?;
        let execution_us = u32::from_be_bytes([h[12], h[13], h[14], h[15]]);
        // A body is empty or ends with the terminator; a 1-byte body has neither
        // (checked with `ends_with`, which never indexes out of range).
        if !body.is_empty() && !body.ends_with(&TERMINATOR) {
            return Err(ResponseError::BadTerminator);
        }
        let payload = match &self.mode {
            PendingMode::Legacy { key, iv, challenge_hash } => {
                let signed = bool::from(subtle::ConstantTimeEq::ct_eq(&h[16..32], &challenge_hash[..]));
                if !status.is_success() {
                    return Err(ResponseError::Status { status, authenticated: signed });
                }
                if !signed {
                    return Err(ResponseError::BadSignature);
                }
                let mut payload = if body.is_empty() { Vec::new() } else { body[..body.len() - 2].to_vec() };
                if let Some(k) = key {
                    crypto::ctr_apply(k, iv, &mut payload);
                }
                payload
            }
            PendingMode::Modern { key, request_nonce } => {
                if body.is_empty() {
                    return Err(ResponseError::Status { status, authenticated: false });
                }
                if body.len() < TAG_SIZE + 2 {
                    return Err(ResponseError::Truncated);
                }
                let ct_len = body.len() - TAG_SIZE - 2;
                let mut aad = [0u8; 44];
                aad[..32].copy_from_slice(&h);
                aad[32..].copy_from_slice(request_nonce);
                let mut nonce = [0u8; 12];
                nonce.copy_from_slice(&h[16..28]);
                let mut tag = [0u8; 16];
                tag.copy_from_slice(&body[ct_len..ct_len + TAG_SIZE]);
                let mut payload = body[..ct_len].to_vec();
                if !crypto::gcm_open(key, &nonce, &aad, &mut payload, &tag) {
                    return Err(ResponseError::BadTag);
                }
                if !status.is_success() {
                    return Err(ResponseError::Status { status, authenticated: true });
                }
                payload
            }
        };
        Ok(Reply { raida_id: h[0], status, payload, execution_us })
    }
}
