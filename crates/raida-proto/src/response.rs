//! Responses (section 4): the 32-byte header and the legacy / modern bodies, as the
//! server builds them. The client side of the same bytes is in [`crate::client`].

use rand_core::RngCore;

use crate::consts::{RESPONSE_HEADER_SIZE, TAG_SIZE, TERMINATOR};
use crate::crypto;
use crate::keys::{Key16, Key32};
use crate::status::Status;

/// How a response body is protected.
#[derive(Clone, Debug)]
pub enum ReplySecurity {
    /// Legacy EN 0, or any legacy answer without a payload.
    Plain,
    /// Legacy EN 1/2: AES-128-CTR under the request's key and the request's IV.
    LegacyCtr { key: Key16, iv: [u8; 16] },
    /// Modern EN 4/5/7 once the key is known and the tag verified. `expanded`: the key as
    /// the request was opened with, so that the answer is sealed without expanding it again.
    Modern { key: Key32, request_nonce: [u8; 12], expanded: ExpandedKey },
    /// Modern request rejected before its key was known or its tag verified:
    /// header only, nonce field zero.
    HeaderOnly,
}

/// An expanded AES-256-GCM key carried from opening a request to sealing its answer. A
/// clone does not copy it (the clone expands the key again when it seals).
#[derive(Debug, Default)]
pub struct ExpandedKey(pub Option<crypto::GcmKey>);

impl Clone for ExpandedKey {
    fn clone(&self) -> Self {
        ExpandedKey(None)
    }
}

/// Everything needed to answer one request.
#[derive(Clone, Debug)]
pub struct ReplyContext {
    pub raida_id: u8,
    /// Request byte 4 as received.
    pub command_group: u8,
    /// Request bytes 30-31.
    pub echo: [u8; 2],
    /// Legacy: the challenge hash once the body passed 3.3, else zeros.
    pub challenge_hash: [u8; 16],
    pub security: ReplySecurity,
}

impl ReplyContext {
    /// A context for a request rejected before its body was checked (legacy or modern).
    pub fn unauthenticated(raida_id: u8, request: &[u8], modern: bool) -> Self {
        let group = request.get(4).copied().unwrap_or(0);
        let echo = [request.get(30).copied().unwrap_or(0), request.get(31).copied().unwrap_or(0)];
        ReplyContext {
            raida_id,
            command_group: group,
            echo,
            challenge_hash: [0; 16],
            security: if modern { ReplySecurity::HeaderOnly } else { ReplySecurity::Plain },
        }
    }

    /// Whether the answer carries an authenticated body (modern) or a signature (legacy).
    pub fn is_authenticated(&self) -> bool {
        matches!(self.security, ReplySecurity::Modern { .. })
    }

    /// Write the response to `out` (cleared first). Errors carry no payload: pass `&[]`.
    /// `rng` supplies the response nonce of modern answers (OS CSPRNG in production).
    pub fn write(&self, status: Status, payload: &[u8], execution_us: u32, rng: &mut impl RngCore, out: &mut Vec<u8>) {
        out.clear();
        let body_size = match &self.security {
            ReplySecurity::HeaderOnly => 0,
            ReplySecurity::Modern { .. } => payload.len() + TAG_SIZE + 2,
            ReplySecurity::Plain | ReplySecurity::LegacyCtr { .. } => {
                if payload.is_empty() {
                    0
                } else {
                    payload.len() + 2
                }
            }
        };
        let mut header = [0u8; RESPONSE_HEADER_SIZE];
        header[0] = self.raida_id;
        header[1] = 0;
        header[2] = status.code();
        header[3] = self.command_group;
        header[4] = 0x00;
        header[5] = 0x01;
        header[6] = self.echo[0];
        header[7] = self.echo[1];
        header[8] = 0;
        let size = (body_size as u32).min(0x00FF_FFFF).to_be_bytes();
        header[9..12].copy_from_slice(&size[1..4]);
        header[12..16].copy_from_slice(&execution_us.to_be_bytes());
        match &self.security {
            ReplySecurity::Plain | ReplySecurity::LegacyCtr { .. } => {
                header[16..32].copy_from_slice(&self.challenge_hash);
            }
            ReplySecurity::HeaderOnly => {}
            ReplySecurity::Modern { .. } => {
                let mut nonce = [0u8; 12];
                rng.fill_bytes(&mut nonce);
                header[16..28].copy_from_slice(&nonce);
            }
        }
        out.reserve(RESPONSE_HEADER_SIZE + body_size);
        out.extend_from_slice(&header);
        match &self.security {
            ReplySecurity::HeaderOnly => {}
            ReplySecurity::Plain => {
                if !payload.is_empty() {
                    out.extend_from_slice(payload);
                    out.extend_from_slice(&TERMINATOR);
                }
            }
            ReplySecurity::LegacyCtr { key, iv } => {
                if !payload.is_empty() {
                    out.extend_from_slice(payload);
                    crypto::ctr_apply(key, iv, &mut out[RESPONSE_HEADER_SIZE..]);
                    out.extend_from_slice(&TERMINATOR);
                }
            }
            ReplySecurity::Modern { key, request_nonce, expanded } => {
                let mut aad = [0u8; RESPONSE_HEADER_SIZE + 12];
                aad[..32].copy_from_slice(&header);
                aad[32..].copy_from_slice(request_nonce);
                let mut nonce = [0u8; 12];
                nonce.copy_from_slice(&header[16..28]);
                out.extend_from_slice(payload);
                let body = &mut out[RESPONSE_HEADER_SIZE..];
                let tag = match &expanded.0 {
                    Some(k) => k.seal(&nonce, &aad, body),
                    None => crypto::gcm_seal(key, &nonce, &aad, body),
                };
                out.extend_from_slice(&tag);
                out.extend_from_slice(&TERMINATOR);
            }
        }
    }
}
