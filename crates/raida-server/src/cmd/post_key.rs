//! 4/41 Post Key: park one part of a key for a receiver (durable before the answer).
//! Anonymous (EN 0) posts are counted per source address (`ctx.peer`) and in total.

use std::sync::Arc;

use raida_proto::commands::post_key::{PostKey, PostKeyAnswer};
use raida_proto::KeyIdentity;

use super::{decode, reply};
use crate::pending_keys::{post_then, Poster};
use crate::state::{Call, Reply, ServerState};

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

/// Answered through `answer` once the key is durable, from the thread whose directory
/// fsync made it so (this one returns at once when another thread leads that fsync). A
/// retransmission (same poster, key id, key field, KS and KL) gets the first copy's answer,
/// once that one is durable.
pub fn run(state: Arc<ServerState>, call: Call, answer: Reply) {
    let (req, ctx) = match decode::<PostKey>(&call) {
        Ok(r) => r,
        Err(a) => return answer.send(a),
    };
    let poster = poster(&ctx.header.key_identity);
    post_then(
        state,
        |s| &s.pending_keys,
        &req,
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
