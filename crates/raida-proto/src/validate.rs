//! The server's request path, sans-IO: framing (2), header rules (3.1), key resolution
//! (3.2, 3.4, 5), body checks (3.3, 3.4), freshness and replay. Decrypts in place.

use std::ops::Range;

use crate::consts::{CHALLENGE_SIZE, TAG_SIZE, TERMINATOR};
use crate::crypto;
use crate::header::{frame, parse_request_header, CommandSet, Framing, RequestHeader, ServerIdentity};
use crate::keys::{resolve_key, FallibleKeyLookup, RequestKey};
use crate::replay::{check_freshness, replay_key, ReplayCheck};
use crate::response::{ExpandedKey, ReplyContext, ReplySecurity};
use crate::status::Status;

/// A request that passed every check of sections 2-3 and goes on to its command.
#[derive(Debug)]
pub struct Validated {
    pub header: RequestHeader,
    /// The request's key, if it has one.
    pub key: Option<RequestKey>,
    /// Where the decrypted command payload sits in the packet buffer.
    pub payload: Range<usize>,
    /// How to answer (challenge hash / keys / nonce already filled in).
    pub reply: ReplyContext,
}

/// A request that did not pass.
#[derive(Debug)]
pub enum Rejection {
    /// Shorter than 32 bytes: no answer at all.
    Drop,
    /// Answer with this status and no payload.
    Reply { status: Status, reply: ReplyContext },
}

impl Rejection {
    pub fn status(&self) -> Option<Status> {
        match self {
            Rejection::Drop => None,
            Rejection::Reply { status, .. } => Some(*status),
        }
    }
}

/// Validate one whole request (a UDP datagram, or header + body read from TCP) at
/// server time `now` (Unix seconds). The body is decrypted in place.
pub fn validate_request(
    packet: &mut [u8],
    server: &ServerIdentity,
    commands: &impl CommandSet,
    keys: &impl FallibleKeyLookup,
    replay: &mut impl ReplayCheck,
    now: u64,
) -> Result<Validated, Rejection> {
    let header_size = match frame(packet) {
        Framing::Drop => return Err(Rejection::Drop),
        Framing::BadLength => {
            let modern = crate::header::header_size_for(packet[16]) > 32;
            return Err(reject(server, packet, modern, Status::InvalidPacketLength));
        }
        Framing::Ok { header_size } => header_size,
    };
    let modern = header_size > 32;
    let header = parse_request_header(&packet[..header_size], server, commands)
        .map_err(|s| reject(server, packet, modern, s))?;
    let key = resolve_key(&header.key_identity, keys).map_err(|s| reject(server, packet, modern, s))?;
    let (head, body) = packet.split_at_mut(header_size);
    let body_len = body.len();
    if modern {
        let Some(RequestKey::Modern(key)) = key else {
            return Err(reject(server, head, true, Status::Internal));
        };
        if body_len < TAG_SIZE + 2 {
            return Err(reject(server, head, true, Status::InvalidPacketLength));
        }
        if body[body_len - 2..] != TERMINATOR {
            return Err(reject(server, head, true, Status::InvalidEof));
        }
        let ct_len = body_len - TAG_SIZE - 2;
        let mut tag = [0u8; 16];
        tag.copy_from_slice(&body[ct_len..ct_len + TAG_SIZE]);
        let expanded = crypto::GcmKey::new(&key);
        if !expanded.as_ref().is_some_and(|k| k.open(&header.nonce, head, &mut body[..ct_len], &tag)) {
            return Err(reject(server, head, true, Status::InvalidEncryption));
        }
        let reply = ReplyContext {
            raida_id: server.raida_id,
            command_group: header.command_group,
            echo: header.echo,
            challenge_hash: [0; 16],
            security: ReplySecurity::Modern {
                key: key.clone(),
                request_nonce: header.nonce,
                expanded: ExpandedKey(expanded),
            },
        };
        let checked =
            check_freshness(header.request_time, now).and_then(|()| replay.check_and_insert(&replay_key(head), now));
        if let Err(status) = checked {
            return Err(Rejection::Reply { status, reply });
        }
        Ok(Validated { header, key: Some(RequestKey::Modern(key)), payload: header_size..header_size + ct_len, reply })
    } else {
        if body_len < 2 {
            return Err(reject(server, head, false, Status::InvalidPacketLength));
        }
        if body[body_len - 2..] != TERMINATOR {
            return Err(reject(server, head, false, Status::InvalidEof));
        }
        let iv = crypto::legacy_iv(&header.legacy_nonce);
        let legacy_key = match &key {
            Some(RequestKey::Legacy(k)) => Some(k.clone()),
            Some(RequestKey::Modern(_)) => return Err(reject(server, head, false, Status::Internal)),
            None => None,
        };
        if let Some(k) = &legacy_key {
            crypto::ctr_apply(k, &iv, &mut body[..body_len - 2]);
        }
        if body_len < CHALLENGE_SIZE + 2 {
            return Err(reject(server, head, false, Status::InvalidPacketLength));
        }
        let mut challenge = [0u8; 16];
        challenge.copy_from_slice(&body[..16]);
        if !crypto::check_challenge(&challenge) {
            return Err(reject(server, head, false, Status::InvalidCrc));
        }
        let mut hash = challenge;
        if let Some(k) = &legacy_key {
            for (h, kb) in hash.iter_mut().zip(k.as_bytes()) {
                *h ^= kb;
            }
        }
        let security = match legacy_key {
            Some(key) => ReplySecurity::LegacyCtr { key, iv },
            None => ReplySecurity::Plain,
        };
        let reply = ReplyContext {
            raida_id: server.raida_id,
            command_group: header.command_group,
            echo: header.echo,
            challenge_hash: hash,
            security,
        };
        Ok(Validated { header, key, payload: header_size + CHALLENGE_SIZE..header_size + body_len - 2, reply })
    }
}

fn reject(server: &ServerIdentity, packet: &[u8], modern: bool, status: Status) -> Rejection {
    Rejection::Reply { status, reply: ReplyContext::unauthenticated(server.raida_id, packet, modern) }
}
