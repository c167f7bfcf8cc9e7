//! 44 Encrypt Key and 45 Decrypt RAIDA Key: key tickets (one AES-128 block).

use crate::consts::TOTAL_RAIDA_SERVERS;
use crate::crypto;
use crate::keys::Key16;
use crate::status::Status;

pub const ENCRYPT_KEY_SIZE: usize = 18;
pub const DECRYPT_RECORD: usize = 26;

/// 44 request: [recipient DN][recipient SN][key part 8][target DN][target SN].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncryptKey {
    pub recipient: (i8, u32),
    pub key_part: [u8; 8],
    pub target: (i8, u32),
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

pub fn parse_encrypt(payload: &[u8]) -> Result<EncryptKey, Status> {
    if payload.len() != ENCRYPT_KEY_SIZE {
        return Err(Status::InvalidPacketLength);
    }
    let mut key_part = [0u8; 8];
    key_part.copy_from_slice(&payload[5..13]);
    Ok(EncryptKey {
        recipient: (payload[0] as i8, be32(&payload[1..5])),
        key_part,
        target: (payload[13] as i8, be32(&payload[14..18])),
    })
}

pub fn encode_encrypt(r: &EncryptKey) -> [u8; ENCRYPT_KEY_SIZE] {
    let mut p = [0u8; ENCRYPT_KEY_SIZE];
    p[0] = r.recipient.0 as u8;
    p[1..5].copy_from_slice(&r.recipient.1.to_be_bytes());
    p[5..13].copy_from_slice(&r.key_part);
    p[13] = r.target.0 as u8;
    p[14..18].copy_from_slice(&r.target.1.to_be_bytes());
    p
}

/// `key part (8) || target DN || target SN (4) || 2 random || 0xFF`.
pub fn ticket_block(key_part: &[u8; 8], target: (i8, u32), random2: [u8; 2]) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(key_part);
    b[8] = target.0 as u8;
    b[9..13].copy_from_slice(&target.1.to_be_bytes());
    b[13..15].copy_from_slice(&random2);
    b[15] = 0xFF;
    b
}

/// The ticket: one AES-128 block encryption of the block under the recipient's AN.
pub fn make_ticket(recipient_an: &Key16, key_part: &[u8; 8], target: (i8, u32), random2: [u8; 2]) -> [u8; 16] {
    crypto::aes128_encrypt_block(recipient_an, &ticket_block(key_part, target, random2))
}

/// Open a ticket: decrypt with the maker's AN and check 0xFF and the target.
/// Returns the 8 key bytes.
pub fn open_ticket(maker_an: &Key16, ticket: &[u8; 16], target: (i8, u32)) -> Option<[u8; 8]> {
    let b = crypto::aes128_decrypt_block(maker_an, ticket);
    let mut t = [0u8; 5];
    t[0] = target.0 as u8;
    t[1..].copy_from_slice(&target.1.to_be_bytes());
    if b[15] != 0xFF || b[8..13] != t {
        return None;
    }
    let mut k = [0u8; 8];
    k.copy_from_slice(&b[..8]);
    Some(k)
}

/// One 26-byte record of 45.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecryptRecord {
    pub coin_id: u16,
    pub split_id: u8,
    pub raida_id: u8,
    pub shard: u8,
    pub target: (i8, u32),
    pub ticket: [u8; 16],
}

impl DecryptRecord {
    /// The per-record checks that need no store: coin id, split id, RAIDA id.
    pub fn shape_ok(&self, coin_id: u16) -> bool {
        self.coin_id == coin_id && self.split_id <= 1 && self.raida_id < TOTAL_RAIDA_SERVERS
    }
}

/// 45 request: decryption coin and records. 16 if shorter than 31; 39 if not whole records.
pub fn parse_decrypt(payload: &[u8]) -> Result<((i8, u32), Vec<DecryptRecord>), Status> {
    if payload.len() < 5 + DECRYPT_RECORD {
        return Err(Status::InvalidPacketLength);
    }
    if !(payload.len() - 5).is_multiple_of(DECRYPT_RECORD) {
        return Err(Status::CoinsNotDiv);
    }
    let coin = (payload[0] as i8, be32(&payload[1..5]));
    let records = payload[5..]
        .chunks_exact(DECRYPT_RECORD)
        .map(|r| {
            let mut ticket = [0u8; 16];
            ticket.copy_from_slice(&r[10..26]);
            DecryptRecord {
                coin_id: u16::from_be_bytes([r[0], r[1]]),
                split_id: r[2],
                raida_id: r[3],
                shard: r[4],
                target: (r[5] as i8, be32(&r[6..10])),
                ticket,
            }
        })
        .collect();
    Ok((coin, records))
}

pub fn encode_decrypt(coin: (i8, u32), records: &[DecryptRecord]) -> Vec<u8> {
    let mut p = Vec::with_capacity(5 + records.len() * DECRYPT_RECORD);
    p.push(coin.0 as u8);
    p.extend_from_slice(&coin.1.to_be_bytes());
    for r in records {
        p.extend_from_slice(&r.coin_id.to_be_bytes());
        p.push(r.split_id);
        p.push(r.raida_id);
        p.push(r.shard);
        p.push(r.target.0 as u8);
        p.extend_from_slice(&r.target.1.to_be_bytes());
        p.extend_from_slice(&r.ticket);
    }
    p
}
