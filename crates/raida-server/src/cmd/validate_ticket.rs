//! 2/50 Validate Ticket: only an EN 7 request from the claiming RAIDA itself may claim.

use raida_proto::commands::validate_ticket::{ValidateTicket, ValidateTicketAnswer};
use raida_proto::{KeyIdentity, Status};

use super::{Command, Ctx};
use crate::state::{Answer, Call, ServerState};

impl Command for ValidateTicket {
    fn apply(self, state: &ServerState, ctx: &Ctx) -> Result<ValidateTicketAnswer, Status> {
        match ctx.header.key_identity {
            KeyIdentity::Raida { sender, .. } if sender == self.claiming_raida => {}
            _ => return Err(Status::InvalidEncryption),
        }
        let coins = state.tickets.claim(self.ticket, self.claiming_raida, ctx.now)?;
        Ok(ValidateTicketAnswer { coins })
    }
}

pub fn run(state: &ServerState, call: &Call) -> Answer {
    super::run::<ValidateTicket>(state, call)
}
