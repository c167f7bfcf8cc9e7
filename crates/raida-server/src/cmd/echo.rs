//! 0/0 Echo: empty payload → 250.

use raida_proto::commands::status_group;

use crate::state::{Answer, Call, ServerState};

pub fn run(_state: &ServerState, call: &Call) -> Answer {
    match status_group::parse_empty(&call.payload) {
        Ok(()) => Answer::ok(Vec::new()),
        Err(s) => s.into(),
    }
}
