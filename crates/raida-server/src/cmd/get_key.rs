//! 4/43 Get Key: hand a pending key out once (deleted durably before the answer).

use raida_proto::commands::post_key;

use crate::cmd::request_coins;
use crate::state::{Answer, Call, ServerState};

pub fn run(state: &ServerState, call: &Call) -> Answer {
    let key_id = match post_key::parse_get(&call.payload) {
        Ok(id) => id,
        Err(s) => return s.into(),
    };
    let coins = request_coins(&call.header.key_identity);
    match state.pending_keys.take(&key_id, &coins, call.peer, call.now) {
        Ok((sender, key)) => Answer::ok(post_key::encode_get_answer(sender, &key)),
        Err(s) => s.into(),
    }
}
