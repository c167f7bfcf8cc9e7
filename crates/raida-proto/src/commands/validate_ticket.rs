//! 2/50 Validate Ticket: [claiming RAIDA id 1][ticket 4] → N × [DN 1][SN 4].

use crate::codec::{put_coin, Codec, Reader, Reply};
use crate::coin::CoinId;
use crate::consts::TOTAL_RAIDA_SERVERS;
use crate::status::Status;

pub const SIZE: usize = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValidateTicket {
    pub claiming_raida: u8,
    pub ticket: u32,
}

impl Codec for ValidateTicket {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.claiming_raida);
        out.extend_from_slice(&self.ticket.to_be_bytes());
    }
    /// Size (16) and RAIDA id (18) checks.
    fn read(r: &mut Reader<'_>) -> Result<Self, Status> {
        if r.left() != SIZE {
            return Err(Status::InvalidPacketLength);
        }
        let claiming_raida = r.u8()?;
        if claiming_raida >= TOTAL_RAIDA_SERVERS {
            return Err(Status::WrongRaida);
        }
        Ok(ValidateTicket { claiming_raida, ticket: r.u32()? })
    }
}

/// Size (16) and RAIDA id (18) checks.
pub fn parse(payload: &[u8]) -> Result<ValidateTicket, Status> {
    ValidateTicket::decode(payload)
}

pub fn encode(v: &ValidateTicket) -> [u8; SIZE] {
    let mut out = [0u8; SIZE];
    out.copy_from_slice(&v.to_bytes());
    out
}

/// The answer: the claimed coins, N × [DN][SN].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimedCoins {
    pub coins: Vec<CoinId>,
}

impl Codec for ClaimedCoins {
    fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(self.coins.len() * 5);
        self.coins.iter().for_each(|c| put_coin(out, *c));
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, Status> {
        let mut coins = Vec::with_capacity(r.left() / 5);
        while !r.is_empty() {
            coins.push(r.coin()?);
        }
        Ok(ClaimedCoins { coins })
    }
}

impl Reply for ClaimedCoins {}

/// The answer: N × [DN][SN].
pub fn answer(coins: &[CoinId]) -> Vec<u8> {
    ClaimedCoins { coins: coins.to_vec() }.to_bytes()
}
