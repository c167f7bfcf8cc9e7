//! 4/46 Leave Alert: a sender leaves a key alert for a receiver in this RAIDA's mailbox
//! ([`crate::mailbox`]). Only under the sender's own coin (EN 1, EN 4 naming a coin, EN 5's
//! first token; else 34, before the size): the sender shown to the receiver is the coin
//! this RAIDA vouches for, never anything the payload says.

use raida_proto::commands::leave_alert::{LeaveAlert, LeaveAlertAnswer};
use raida_proto::mailbox::owner;
use raida_proto::Status;

use super::{Command, Ctx};
use crate::mailbox::Refusal;
use crate::state::{Answer, Call, ServerState};

impl Command for LeaveAlert {
    fn admit(ctx: &Ctx) -> Result<(), Status> {
        owner(&ctx.header.key_identity).map(drop)
    }

    fn apply(self, state: &ServerState, ctx: &Ctx) -> Result<LeaveAlertAnswer, Status> {
        let sender = owner(&ctx.header.key_identity)?;
        // 40 before 201: the ledger says whether the receiver is a coin of this RAIDA
        match state.ledger.coin_an(self.receiver) {
            Ok(Some(_)) => {}
            Ok(None) => {
                state.mailbox.refuse(Refusal::NotPresent);
                return Err(Status::InvalidSnOrDenomination);
            }
            Err(_) => return Err(Status::Filesystem),
        }
        state.mailbox.leave(sender, self.receiver, self.alert_id, self.body, ctx.now).map_err(Refusal::status)?;
        Ok(LeaveAlertAnswer)
    }
}

pub fn run(state: &ServerState, call: &Call) -> Answer {
    super::run::<LeaveAlert>(state, call)
}
