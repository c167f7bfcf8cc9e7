//! 2/50 Validate Ticket: [claiming RAIDA id 1][ticket 4] → N × [DN 1][SN 4].

use super::ids;
use crate::codec::{put_coin, Codec, Reader, Reply, Request};
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

impl Request for ValidateTicket {
    const GROUP: u8 = ids::GROUP_HEALING;
    const COMMAND: u8 = ids::VALIDATE_TICKET;
    const NAME: &'static str = "validate_ticket";
    type Answer = ValidateTicketAnswer;
}

/// The answer: the claimed coins, N × [DN][SN].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidateTicketAnswer {
    pub coins: Vec<CoinId>,
}

impl Codec for ValidateTicketAnswer {
    fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(self.coins.len() * 5);
        self.coins.iter().for_each(|c| put_coin(out, *c));
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, Status> {
        let mut coins = Vec::with_capacity(r.left() / 5);
        while !r.is_empty() {
            coins.push(r.coin()?);
        }
        Ok(ValidateTicketAnswer { coins })
    }
}

impl Reply for ValidateTicketAnswer {}
