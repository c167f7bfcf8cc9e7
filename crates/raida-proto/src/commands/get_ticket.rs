//! 2/40 Get Ticket: N × [DN 1][SN 4][AN 16] → 241 ticket / 242 / 243 bitfield || ticket.

use super::ids;
use crate::codec::{put_coin, Codec, Reader, Reply, Request};
use crate::coin::CoinId;
use crate::consts::MAX_COINS_PER_TICKET;
use crate::status::Status;

pub const RECORD: usize = 21;

/// One record of a Get Ticket request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TicketRecord {
    pub coin: CoinId,
    pub an: [u8; 16],
}

impl Codec for TicketRecord {
    fn encode(&self, out: &mut Vec<u8>) {
        put_coin(out, self.coin);
        out.extend_from_slice(&self.an);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, Status> {
        Ok(TicketRecord { coin: r.coin()?, an: r.array()? })
    }
}

/// The Get Ticket request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GetTicket {
    pub records: Vec<TicketRecord>,
}

impl Codec for GetTicket {
    fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(self.records.len() * RECORD);
        self.records.iter().for_each(|r| r.encode(out));
    }
    /// 16 for N = 0, 39 not a multiple of 21, 45 above 4096.
    fn read(r: &mut Reader<'_>) -> Result<Self, Status> {
        if r.is_empty() {
            return Err(Status::InvalidPacketLength);
        }
        if !r.left().is_multiple_of(RECORD) {
            return Err(Status::CoinsNotDiv);
        }
        let n = r.left() / RECORD;
        if n > MAX_COINS_PER_TICKET {
            return Err(Status::TooManyCoins);
        }
        Ok(GetTicket { records: r.records(n)? })
    }
}

impl Request for GetTicket {
    const GROUP: u8 = ids::GROUP_HEALING;
    const COMMAND: u8 = ids::GET_TICKET;
    const NAME: &'static str = "get_ticket";
    type Answer = GetTicketAnswer;
}

/// The answer: each record's result and the ticket (used when at least one passed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GetTicketAnswer {
    pub passes: Vec<bool>,
    pub ticket: u32,
}

impl Codec for GetTicketAnswer {
    fn encode(&self, out: &mut Vec<u8>) {
        match self.status() {
            Status::AllFail => {}
            Status::AllPass => out.extend_from_slice(&self.ticket.to_be_bytes()),
            _ => {
                let at = out.len();
                out.resize(at + self.passes.len().div_ceil(8), 0);
                for (i, p) in self.passes.iter().enumerate() {
                    if let Some(byte) = out.get_mut(at + i / 8).filter(|_| *p) {
                        *byte |= 1 << (i % 8);
                    }
                }
                out.extend_from_slice(&self.ticket.to_be_bytes());
            }
        }
    }
    /// Client side. N is not on the wire: an empty payload (242) reads as no passes, 4
    /// bytes (241) as the ticket alone, a longer one (243) as 8 results per bitfield byte.
    fn read(r: &mut Reader<'_>) -> Result<Self, Status> {
        if r.is_empty() {
            return Ok(GetTicketAnswer { passes: Vec::new(), ticket: 0 });
        }
        let bitfield = r.take(r.left().saturating_sub(4))?;
        let ticket = r.u32()?;
        let passes = bitfield.iter().flat_map(|b| (0..8).map(move |i| b & (1 << i) != 0)).collect();
        Ok(GetTicketAnswer { passes, ticket })
    }
}

impl Reply for GetTicketAnswer {
    /// 241 all passed, 242 none, 243 some.
    fn status(&self) -> Status {
        let n_pass = self.passes.iter().filter(|p| **p).count();
        if n_pass == 0 {
            Status::AllFail
        } else if n_pass == self.passes.len() {
            Status::AllPass
        } else {
            Status::Mixed
        }
    }
}
