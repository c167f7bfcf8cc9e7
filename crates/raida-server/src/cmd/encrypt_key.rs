//! 4/44 Encrypt Key: a 16-byte key ticket for another RAIDA — one AES-128 block
//! encryption of `key part || target DN || target SN || 2 random || 0xFF` under the
//! recipient's AN. Encrypted requests only (EN 0 → 34, before the size check), and only
//! under the target coin's own key (6/44 amended): a ticket gives the target a new AN
//! elsewhere through 45, so anyone else asking would be taking the coin over.

use raida_proto::commands::key_tickets;
use raida_proto::{Encryption, Key16, Status};
use rand_core::{OsRng, RngCore};

use crate::state::{Answer, Call, ServerState};

pub fn run(state: &ServerState, call: &Call) -> Answer {
    let mut random2 = [0u8; 2];
    OsRng.fill_bytes(&mut random2);
    answer(state, call, random2)
}

/// The command with its 2 random bytes given (vectors and tests).
pub fn answer(state: &ServerState, call: &Call, random2: [u8; 2]) -> Answer {
    if call.header.encryption == Encryption::None {
        return Status::InvalidEncryption.into();
    }
    let req = match key_tickets::parse_encrypt(&call.payload) {
        Ok(r) => r,
        Err(s) => return s.into(),
    };
    if !super::request_coins(&call.header.key_identity).contains(&req.target) {
        return Status::InvalidEncryption.into();
    }
    let an = match state.ledger.coin_an(req.recipient.0, req.recipient.1) {
        Ok(Some(an)) => an,
        Ok(None) => return Status::InvalidSnOrDenomination.into(),
        Err(_) => return Status::Filesystem.into(),
    };
    let ticket = key_tickets::make_ticket(&Key16::new(an), &req.key_part, req.target, random2);
    Answer::ok(ticket.to_vec())
}
