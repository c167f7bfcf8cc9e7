//! 4/43 Get Key: hand a pending key out once (deleted durably before the answer).

use raida_proto::commands::get_key::{GetKey, GetKeyAnswer};
use raida_proto::Status;

use super::{request_coins, Command, Ctx};
use crate::state::{Answer, Call, ServerState};

impl Command for GetKey {
    type Answer = GetKeyAnswer;

    fn apply(self, state: &ServerState, ctx: &Ctx) -> Result<GetKeyAnswer, Status> {
        let coins = request_coins(&ctx.header.key_identity);
        let (sender, key) = state.pending_keys.take(&self.key_id, &coins, ctx.peer, ctx.now)?;
        Ok(GetKeyAnswer { sender, key })
    }
}

pub fn run(state: &ServerState, call: &Call) -> Answer {
    super::run::<GetKey>(state, call)
}
