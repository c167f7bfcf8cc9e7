//! 40 Get Ticket: N × [DN 1][SN 4][AN 16] → 241 ticket / 242 / 243 bitfield || ticket.

use crate::consts::MAX_COINS_PER_TICKET;
use crate::status::Status;

pub const RECORD: usize = 21;

/// One record of a Get Ticket request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TicketRecord {
    pub dn: i8,
    pub sn: u32,
    pub an: [u8; 16],
}

/// Check the payload's shape (16 for N = 0, 39 not a multiple of 21, 45 above 4096)
/// and return an iterator over the records.
pub fn parse(payload: &[u8]) -> Result<impl Iterator<Item = TicketRecord> + '_, Status> {
    if payload.is_empty() {
        return Err(Status::InvalidPacketLength);
    }
    if !payload.len().is_multiple_of(RECORD) {
        return Err(Status::CoinsNotDiv);
    }
    if payload.len() / RECORD > MAX_COINS_PER_TICKET {
        return Err(Status::TooManyCoins);
    }
    Ok(payload.chunks_exact(RECORD).map(|r| {
        let mut an = [0u8; 16];
        an.copy_from_slice(&r[5..21]);
        TicketRecord { dn: r[0] as i8, sn: u32::from_be_bytes([r[1], r[2], r[3], r[4]]), an }
    }))
}

/// Encode records (client side).
pub fn encode(records: &[TicketRecord]) -> Vec<u8> {
    let mut out = Vec::with_capacity(records.len() * RECORD);
    for r in records {
        out.push(r.dn as u8);
        out.extend_from_slice(&r.sn.to_be_bytes());
        out.extend_from_slice(&r.an);
    }
    out
}

/// The answer for per-record results: (status, payload). `ticket` is only used when
/// at least one record passed.
pub fn answer(passes: &[bool], ticket: u32) -> (Status, Vec<u8>) {
    let n_pass = passes.iter().filter(|p| **p).count();
    if n_pass == 0 {
        (Status::AllFail, Vec::new())
    } else if n_pass == passes.len() {
        (Status::AllPass, ticket.to_be_bytes().to_vec())
    } else {
        let mut out = vec![0u8; passes.len().div_ceil(8)];
        for (i, p) in passes.iter().enumerate() {
            if *p {
                out[i / 8] |= 1 << (i % 8);
            }
        }
        out.extend_from_slice(&ticket.to_be_bytes());
        (Status::Mixed, out)
    }
}
