//! 41 Post Key (payload 167) and 43 Get Key (payload 37).

use crate::status::Status;

pub const POST_KEY_SIZE: usize = 167;
pub const GET_KEY_SIZE: usize = 37;
pub const KEY_FIELD: usize = 128;
pub const KEY_LENGTHS: [u8; 6] = [4, 8, 16, 24, 32, 40];

/// A coin named in a Post Key; (0, 0) means "not set".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CoinName {
    pub dn: i8,
    pub sn: u32,
}

impl CoinName {
    pub fn is_set(&self) -> bool {
        !(self.dn == 0 && self.sn == 0)
    }
}

/// A Post Key request that passed the size, KS and KL checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostKey {
    pub key_id: [u8; 16],
    pub receiver: CoinName,
    /// 0.0.0.0 = any address.
    pub receiver_ip: [u8; 4],
    pub sender: CoinName,
    /// The KL key bytes taken from the key field at KS.
    pub key_bytes: Vec<u8>,
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Checks in order: size (16), KS (195), KL (196).
pub fn parse_post(payload: &[u8]) -> Result<PostKey, Status> {
    if payload.len() != POST_KEY_SIZE {
        return Err(Status::InvalidPacketLength);
    }
    let ks = payload[165] as usize;
    let kl = payload[166];
    if ks > 127 {
        return Err(Status::InvalidKeyStart);
    }
    if !KEY_LENGTHS.contains(&kl) || ks + kl as usize > KEY_FIELD {
        return Err(Status::InvalidKeyLength);
    }
    let mut key_id = [0u8; 16];
    key_id.copy_from_slice(&payload[..16]);
    let mut receiver_ip = [0u8; 4];
    receiver_ip.copy_from_slice(&payload[21..25]);
    let field = &payload[37..37 + KEY_FIELD];
    Ok(PostKey {
        key_id,
        receiver: CoinName { dn: payload[16] as i8, sn: be32(&payload[17..21]) },
        receiver_ip,
        sender: CoinName { dn: payload[32] as i8, sn: be32(&payload[33..37]) },
        key_bytes: field[ks..ks + kl as usize].to_vec(),
    })
}

/// Build a Post Key payload: the key part is placed at `ks` inside `padding` (128 random bytes).
pub fn encode_post(
    key_id: &[u8; 16],
    receiver: CoinName,
    receiver_ip: [u8; 4],
    sender: CoinName,
    padding: &[u8; KEY_FIELD],
    ks: u8,
    key_part: &[u8],
) -> Vec<u8> {
    let mut p = vec![0u8; POST_KEY_SIZE];
    p[..16].copy_from_slice(key_id);
    p[16] = receiver.dn as u8;
    p[17..21].copy_from_slice(&receiver.sn.to_be_bytes());
    p[21..25].copy_from_slice(&receiver_ip);
    p[32] = sender.dn as u8;
    p[33..37].copy_from_slice(&sender.sn.to_be_bytes());
    p[37..165].copy_from_slice(padding);
    let ks_us = (ks as usize).min(KEY_FIELD);
    let end = (ks_us + key_part.len()).min(KEY_FIELD);
    p[37 + ks_us..37 + end].copy_from_slice(&key_part[..end - ks_us]);
    p[165] = ks;
    p[166] = key_part.len().min(255) as u8;
    p
}

/// Get Key: the key id (the 21 reserved bytes are ignored).
pub fn parse_get(payload: &[u8]) -> Result<[u8; 16], Status> {
    if payload.len() != GET_KEY_SIZE {
        return Err(Status::InvalidPacketLength);
    }
    let mut id = [0u8; 16];
    id.copy_from_slice(&payload[..16]);
    Ok(id)
}

pub fn encode_get(key_id: &[u8; 16]) -> Vec<u8> {
    let mut p = vec![0u8; GET_KEY_SIZE];
    p[..16].copy_from_slice(key_id);
    p
}

/// Get Key answer: [sender DN][sender SN][key bytes].
pub fn encode_get_answer(sender: CoinName, key_bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + key_bytes.len());
    out.push(sender.dn as u8);
    out.extend_from_slice(&sender.sn.to_be_bytes());
    out.extend_from_slice(key_bytes);
    out
}

/// Client side: split a Get Key answer into the sender and the key bytes.
pub fn decode_get_answer(payload: &[u8]) -> Option<(CoinName, &[u8])> {
    if payload.len() < 5 {
        return None;
    }
    Some((CoinName { dn: payload[0] as i8, sn: be32(&payload[1..5]) }, &payload[5..]))
}
