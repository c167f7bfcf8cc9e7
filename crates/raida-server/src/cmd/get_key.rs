//! 4/43 Get Key: hand a pending key out once (deleted durably before the answer).

use std::sync::Arc;

use raida_proto::commands::get_key::{GetKey, GetKeyAnswer};
use raida_proto::Status;

use super::{admit_and_decode, reply, request_coins, Command, Ctx};
use crate::pending_keys::take_then;
use crate::state::{Answer, Call, Reply, ServerState};

impl Command for GetKey {
    fn apply(self, state: &ServerState, ctx: &Ctx) -> Result<GetKeyAnswer, Status> {
        let coins = request_coins(&ctx.header.key_identity);
        let (sender, key) = state.pending_keys.take(&self.key_id, &coins, ctx.peer, ctx.now)?;
        Ok(GetKeyAnswer { sender, key })
    }
}

pub fn run(state: &ServerState, call: &Call) -> Answer {
    super::run::<GetKey>(state, call)
}

/// [`run`] without waiting: answered through `answer` once the deletion is durable.
pub fn run_durable(state: Arc<ServerState>, call: &Call, answer: Reply) {
    let (req, ctx) = match admit_and_decode::<GetKey>(call) {
        Ok(r) => r,
        Err(a) => return answer.send(a),
    };
    let coins = request_coins(&ctx.header.key_identity);
    // a dishonest RAIDA (tests of receivers) answers key ids it does not hold as it likes
    let forged = state.forged_get_key.load_full();
    take_then(
        state,
        |s| &s.pending_keys,
        req.key_id,
        &coins,
        ctx.peer,
        ctx.now,
        move |r| {
            answer.send(match r {
                Ok((sender, key)) => reply(GetKeyAnswer { sender, key }),
                Err(Status::KeyNotFound) if forged.is_some() => {
                    let f = forged.as_deref().map(|f| (f.sender, f.key.clone())).unwrap_or_default();
                    reply(GetKeyAnswer { sender: f.0, key: f.1 })
                }
                Err(s) => s.into(),
            })
        },
    );
}
