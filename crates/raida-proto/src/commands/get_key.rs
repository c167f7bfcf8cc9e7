//! 4/43 Get Key: [key id 16][reserved 21] → [sender DN 1][sender SN 4][key bytes KL].

use super::ids;
use crate::codec::{put_coin, Codec, Reader, Reply, Request};
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

impl Request for GetKey {
    const GROUP: u8 = ids::GROUP_KEY_EXCHANGE;
    const COMMAND: u8 = ids::GET_KEY;
    const NAME: &'static str = "get_key";
    type Answer = GetKeyAnswer;
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
