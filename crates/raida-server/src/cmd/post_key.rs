//! 4/41 Post Key: park one part of a key for a receiver (durable before the answer).
//! Anonymous (EN 0) posts are counted per source address (`ctx.peer`) and in total.

use std::sync::Arc;

use raida_proto::commands::post_key::{PostKey, PostKeyAnswer};
use raida_proto::{KeyIdentity, Status};

use super::{admit_and_decode, reply, Command, Ctx};
use crate::pending_keys::{post_then, Poster};
use crate::state::{Answer, Call, Reply, ServerState};

/// The poster: the request's key identity (first token for EN 5; anonymous for EN 0).
pub fn poster(id: &KeyIdentity) -> Poster {
    match *id {
        KeyIdentity::None => Poster::Anonymous,
        KeyIdentity::Coin { coin } | KeyIdentity::Token { coin } => Poster::Coin(coin),
        KeyIdentity::TokenPair { first, .. } => Poster::Coin(first),
        KeyIdentity::Locker { prefix } => Poster::Locker(prefix),
        KeyIdentity::Raida { sender, key_id } => Poster::Raida(sender, key_id),
    }
}

impl Command for PostKey {
    fn apply(self, state: &ServerState, ctx: &Ctx) -> Result<PostKeyAnswer, Status> {
        state.pending_keys.post(&self.posted(), poster(&ctx.header.key_identity), ctx.peer, ctx.now)?;
        Ok(PostKeyAnswer)
    }
}

pub fn run(state: &ServerState, call: &Call) -> Answer {
    super::run::<PostKey>(state, call)
}

/// [`run`] without waiting: answered through `answer` once the key is durable.
pub fn run_durable(state: Arc<ServerState>, call: &Call, answer: Reply) {
    let (req, ctx) = match admit_and_decode::<PostKey>(call) {
        Ok(r) => r,
        Err(a) => return answer.send(a),
    };
    let poster = poster(&ctx.header.key_identity);
    post_then(
        state,
        |s| &s.pending_keys,
        &req.posted(),
        poster,
        ctx.peer,
        ctx.now,
        move |r| {
            answer.send(match r {
                Ok(()) => reply(PostKeyAnswer),
                Err(s) => s.into(),
            })
        },
    );
}
