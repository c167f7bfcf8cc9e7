//! 0/0 Echo: empty payload → 250.

use raida_proto::commands::echo::{Echo, EchoAnswer};
use raida_proto::Status;

use super::{Command, Ctx};
use crate::state::{Answer, Call, ServerState};

impl Command for Echo {
    fn apply(self, _: &ServerState, _: &Ctx) -> Result<EchoAnswer, Status> {
        Ok(EchoAnswer)
    }
}

pub fn run(state: &ServerState, call: &Call) -> Answer {
    super::run::<Echo>(state, call)
}
