//! 4/43 Get Key: hand a pending key out once (deleted durably before the answer); the same
//! requester (key identity, or address for EN 0) asking again within 30 s gets the same
//! bytes, sealed afresh by the response path.

use std::sync::Arc;

use raida_proto::commands::get_key::{GetKey, GetKeyAnswer};
use raida_proto::Status;

use super::{decode, reply, request_coins};
use crate::pending_keys::{take_then, Requester, Taker};
use crate::state::{Call, Reply, ServerState};

/// Answered through `answer` once the deletion is durable, from the thread whose directory
/// fsync made it so (this one returns at once when another thread leads that fsync).
pub fn run(state: Arc<ServerState>, call: Call, answer: Reply) {
    let (req, ctx) = match decode::<GetKey>(&call) {
        Ok(r) => r,
        Err(a) => return answer.send(a),
    };
    let coins = request_coins(&ctx.header.key_identity);
    let requester = Requester::of(super::post_key::poster(&ctx.header.key_identity), ctx.peer);
    // a dishonest RAIDA (tests of receivers) answers key ids it does not hold as it likes
    let forged = state.forged_get_key.load_full();
    take_then(
        state,
        |s| &s.pending_keys,
        req.key_id,
        Taker { coins: &coins, requester, ip: ctx.peer },
        ctx.now,
        move |r| {
            answer.send(match r {
                Ok((sender, key)) => {
                    let (sender, key) = match forged.as_deref() {
                        Some(f) => f.lie(sender, key),
                        None => (sender, key),
                    };
                    reply(GetKeyAnswer { sender, key })
                }
                Err(Status::KeyNotFound) if forged.as_ref().is_some_and(|f| f.unheld.is_some()) => {
                    let (sender, key) = forged.as_deref().and_then(|f| f.unheld.clone()).unwrap_or_default();
                    reply(GetKeyAnswer { sender, key })
                }
                Err(s) => s.into(),
            })
        },
    );
}
