//! 4/41 Post Key: park one part of a key for a receiver (durable before the answer).
//! Anonymous (EN 0) posts are counted per source address (`ctx.peer`) and in total.

use raida_proto::commands::post_key::{PostKeyAnswer, PostKeyRequest};
use raida_proto::{KeyIdentity, Status};

use super::{Command, Ctx};
use crate::pending_keys::Poster;
use crate::state::{Answer, Call, ServerState};

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

impl Command for PostKeyRequest {
    type Answer = PostKeyAnswer;

    fn apply(self, state: &ServerState, ctx: &Ctx) -> Result<PostKeyAnswer, Status> {
        state.pending_keys.post(&self.post(), poster(&ctx.header.key_identity), ctx.peer, ctx.now)?;
        Ok(PostKeyAnswer)
    }
}

pub fn run(state: &ServerState, call: &Call) -> Answer {
    super::run::<PostKeyRequest>(state, call)
}
