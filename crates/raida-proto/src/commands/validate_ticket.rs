//! 50 Validate Ticket: [claiming RAIDA id 1][ticket 4] → N × [DN 1][SN 4].

use crate::consts::TOTAL_RAIDA_SERVERS;
use crate::status::Status;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValidateTicket {
    pub claiming_raida: u8,
    pub ticket: u32,
}

/// Size (16) and RAIDA id (18) checks.
pub fn parse(payload: &[u8]) -> Result<ValidateTicket, Status> {
    if payload.len() != 5 {
        return Err(Status::InvalidPacketLength);
    }
    if payload[0] >= TOTAL_RAIDA_SERVERS {
        return Err(Status::WrongRaida);
    }
    Ok(ValidateTicket {
        claiming_raida: payload[0],
        ticket: u32::from_be_bytes([payload[1], payload[2], payload[3], payload[4]]),
    })
}

pub fn encode(v: &ValidateTicket) -> [u8; 5] {
    let t = v.ticket.to_be_bytes();
    [v.claiming_raida, t[0], t[1], t[2], t[3]]
}

/// The answer: N × [DN][SN].
pub fn answer(coins: &[(i8, u32)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(coins.len() * 5);
    for (dn, sn) in coins {
        out.push(*dn as u8);
        out.extend_from_slice(&sn.to_be_bytes());
    }
    out
}
