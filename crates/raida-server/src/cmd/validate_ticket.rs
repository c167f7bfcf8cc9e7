//! 2/50 Validate Ticket: only an EN 7 request from the claiming RAIDA itself may claim.

use raida_proto::commands::validate_ticket;
use raida_proto::{KeyIdentity, Status};

use crate::state::{Answer, Call, ServerState};

pub fn run(state: &ServerState, call: &Call) -> Answer {
    let v = match validate_ticket::parse(&call.payload) {
        Ok(v) => v,
        Err(s) => return s.into(),
    };
    match call.header.key_identity {
        KeyIdentity::Raida { sender, .. } if sender == v.claiming_raida => {}
        _ => return Status::InvalidEncryption.into(),
    }
    match state.tickets.claim(v.ticket, v.claiming_raida, call.now) {
        Ok(coins) => Answer::ok(validate_ticket::answer(&coins)),
        Err(s) => s.into(),
    }
}
