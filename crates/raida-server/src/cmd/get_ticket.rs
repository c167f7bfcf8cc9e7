//! 2/40 Get Ticket: judge each [DN][SN][AN] record; passed coins go into one ticket.

use raida_proto::commands::get_ticket::{GetTicket, GetTicketAnswer};
use raida_proto::Status;

use super::{Command, Ctx};
use crate::state::{Answer, Call, ServerState};
use crate::tickets::Requester;

impl Command for GetTicket {
    fn apply(self, state: &ServerState, ctx: &Ctx) -> Result<GetTicketAnswer, Status> {
        let mut passes = Vec::with_capacity(self.records.len());
        let mut coins = Vec::new();
        for r in &self.records {
            // A page that cannot be read fails the whole request (194), not just this record.
            let an = state.ledger.coin_an(r.coin).map_err(|_| Status::Filesystem)?;
            let ok = an.is_some_and(|an| an.ct_eq(&r.an));
            if ok {
                coins.push(r.coin);
            }
            passes.push(ok);
        }
        if coins.is_empty() {
            return Ok(GetTicketAnswer { passes, ticket: 0 });
        }
        let requester = Requester::of(&ctx.header.key_identity, ctx.peer);
        let ticket = state.tickets.issue(coins, &requester, ctx.now, &mut state.rng())?;
        Ok(GetTicketAnswer { passes, ticket })
    }
}

pub fn run(state: &ServerState, call: &Call) -> Answer {
    super::run::<GetTicket>(state, call)
}
