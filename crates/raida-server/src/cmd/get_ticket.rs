//! 2/40 Get Ticket: judge each [DN][SN][AN] record; passed coins go into one ticket.

use raida_proto::commands::get_ticket;
use raida_proto::Status;
use rand_core::OsRng;
use subtle::ConstantTimeEq;

use crate::state::{Answer, Call, ServerState};
use crate::tickets::Requester;

pub fn run(state: &ServerState, call: &Call) -> Answer {
    let records = match get_ticket::parse(&call.payload) {
        Ok(r) => r,
        Err(s) => return s.into(),
    };
    let mut passes = Vec::new();
    let mut coins = Vec::new();
    for r in records {
        // A page that cannot be read fails the whole request (194), not just this record.
        let Ok(an) = state.ledger.coin_an(r.dn, r.sn) else { return Status::Filesystem.into() };
        let ok = an.is_some_and(|an| bool::from(an.ct_eq(&r.an)));
        if ok {
            coins.push((r.dn, r.sn));
        }
        passes.push(ok);
    }
    if coins.is_empty() {
        return get_ticket::answer(&passes, 0).into_answer();
    }
    let requester = Requester::of(&call.header.key_identity, call.peer);
    match state.tickets.issue(coins, &requester, call.now, &mut OsRng) {
        Ok(ticket) => get_ticket::answer(&passes, ticket).into_answer(),
        Err(s) => s.into(),
    }
}

trait IntoAnswer {
    fn into_answer(self) -> Answer;
}

impl IntoAnswer for (Status, Vec<u8>) {
    fn into_answer(self) -> Answer {
        Answer { status: self.0, payload: self.1 }
    }
}
