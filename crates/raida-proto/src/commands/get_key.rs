//! 4/43 Get Key: [key id 16][reserved 21] → [sender DN 1][sender SN 4][key bytes KL].

use crate::codec::{put_coin, Codec, Reader, Reply};
use crate::status::Status;

use super::post_key::CoinName;

pub const GET_KEY_SIZE: usize = 37;
const RESERVED: usize = GET_KEY_SIZE - 16;

/// The Get Key request (the 21 reserved bytes are ignored).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GetKey {
    pub key_id: [u8; 16],
}

impl Codec for GetKey {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.key_id);
        out.extend_from_slice(&[0; RESERVED]);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, Status> {
        if r.left() != GET_KEY_SIZE {
            return Err(Status::InvalidPacketLength);
        }
        let key_id = r.array()?;
        r.skip(RESERVED)?;
        Ok(GetKey { key_id })
    }
}

/// The answer: who posted the key and its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GetKeyAnswer {
    pub sender: CoinName,
    pub key: Vec<u8>,
}

impl Codec for GetKeyAnswer {
    fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(5 + self.key.len());
        put_coin(out, self.sender);
        out.extend_from_slice(&self.key);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, Status> {
        Ok(GetKeyAnswer { sender: r.coin()?, key: r.rest().to_vec() })
    }
}

impl Reply for GetKeyAnswer {}

/// Get Key: the key id (the 21 reserved bytes are ignored).
pub fn parse_get(payload: &[u8]) -> Result<[u8; 16], Status> {
    GetKey::decode(payload).map(|g| g.key_id)
}

pub fn encode_get(key_id: &[u8; 16]) -> Vec<u8> {
    GetKey { key_id: *key_id }.to_bytes()
}

/// Get Key answer: [sender DN][sender SN][key bytes].
pub fn encode_get_answer(sender: CoinName, key_bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + key_bytes.len());
    put_coin(&mut out, sender);
    out.extend_from_slice(key_bytes);
    out
}

/// Client side: split a Get Key answer into the sender and the key bytes (without copying
/// the key).
pub fn decode_get_answer(payload: &[u8]) -> Option<(CoinName, &[u8])> {
    let mut r = Reader::new(payload);
    let sender = r.coin().ok()?;
    Some((sender, r.rest()))
}
