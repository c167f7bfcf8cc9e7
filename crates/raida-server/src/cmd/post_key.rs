//! 4/41 Post Key: park one part of a key for a receiver (durable before the answer).
//! Anonymous (EN 0) posts are counted per source address (`call.peer`) and in total.

use raida_proto::commands::post_key;
use raida_proto::KeyIdentity;

use crate::pending_keys::Poster;
use crate::state::{Answer, Call, ServerState};

/// The poster: the request's key identity (first token for EN 5; anonymous for EN 0).
pub fn poster(id: &KeyIdentity) -> Poster {
    match *id {
        KeyIdentity::None => Poster::Anonymous,
        KeyIdentity::Coin { dn, sn } | KeyIdentity::Token { dn, sn } => Poster::Coin(dn, sn),
        KeyIdentity::TokenPair { first, .. } => Poster::Coin(first.0, first.1),
        KeyIdentity::Locker { prefix } => Poster::Locker(prefix),
        KeyIdentity::Raida { sender, key_id } => Poster::Raida(sender, key_id),
    }
}

pub fn run(state: &ServerState, call: &Call) -> Answer {
    let post = match post_key::parse_post(&call.payload) {
        Ok(p) => p,
        Err(s) => return s.into(),
    };
    match state.pending_keys.post(&post, poster(&call.header.key_identity), call.peer, call.now) {
        Ok(()) => Answer::ok(Vec::new()),
        Err(s) => s.into(),
    }
}
