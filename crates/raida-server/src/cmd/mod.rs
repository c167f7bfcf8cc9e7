//! One file per command, named after it, whose `run` is its handler in the dispatch table
//! ([`crate::dispatch::Handler`]): the one path the server, the tests and the benches take
//! (they drive it with [`crate::dispatch::answer`]).
//!
//! A command answered at once implements [`Command`] for the request type of its codec
//! (`raida_proto::commands::<command>`): it receives the decoded request and a [`Ctx`]
//! (header, peer, time; never the payload bytes) and returns its typed answer or a status;
//! [`run`] is its path from a [`Call`] to an [`Answer`]: header checks, decode, apply,
//! encode. A command answered later (Post Key and Get Key once durable, Key Alert once its
//! parts are fetched) decodes with [`decode`] and answers through its [`crate::state::Reply`].

pub mod decrypt_raida_key;
pub mod echo;
pub mod encrypt_key;
pub mod get_key;
pub mod get_ticket;
pub mod key_alert;
pub mod leave_alert;
pub mod post_key;
pub mod show_stats;
pub mod take_alerts;
pub mod validate_ticket;
pub mod version;

use std::net::IpAddr;

use raida_proto::codec::{Reply, Request};
use raida_proto::header::RequestHeader;
use raida_proto::{CoinId, Encryption, KeyIdentity, Status};

use crate::state::{Answer, Call, ServerState};

/// What a handler knows of its call besides the decoded request.
#[derive(Clone, Copy, Debug)]
pub struct Ctx {
    pub header: RequestHeader,
    pub peer: IpAddr,
    pub now: u64,
}

impl Ctx {
    pub fn of(call: &Call) -> Ctx {
        Ctx { header: call.header, peer: call.peer, now: call.now }
    }
}

/// A command as this server applies it: its request type, which names its answer.
pub trait Command: Request {
    /// Checks on the header that section 6 puts before the payload's (44: EN 0 → 34 before
    /// the size; Show Stats: EN 0 only from loopback).
    fn admit(_ctx: &Ctx) -> Result<(), Status> {
        Ok(())
    }

    fn apply(self, state: &ServerState, ctx: &Ctx) -> Result<Self::Answer, Status>;
}

/// Header checks, decode, [`Command::apply`], encode.
pub fn run<C: Command>(state: &ServerState, call: &Call) -> Answer {
    run_with(call, |req: C, ctx| req.apply(state, ctx))
}

/// [`run`] with another way to apply the request (tests fix the randomness of 44).
pub fn run_with<C: Command>(call: &Call, apply: impl FnOnce(C, &Ctx) -> Result<C::Answer, Status>) -> Answer {
    match admit_and_decode::<C>(call) {
        Ok((req, ctx)) => apply(req, &ctx).map_or_else(Answer::from, reply),
        Err(answer) => answer,
    }
}

/// Header checks and decode: the request, or the answer to send now.
fn admit_and_decode<C: Command>(call: &Call) -> Result<(C, Ctx), Answer> {
    let ctx = Ctx::of(call);
    match C::admit(&ctx).and_then(|()| C::decode(&call.payload)) {
        Ok(req) => Ok((req, ctx)),
        Err(s) => Err(s.into()),
    }
}

/// Decode, for a command that answers later ([`crate::dispatch::Handler::Deferred`]; none
/// has header checks of its own): the request, or the answer to send now.
pub fn decode<C: Request>(call: &Call) -> Result<(C, Ctx), Answer> {
    match C::decode(&call.payload) {
        Ok(req) => Ok((req, Ctx::of(call))),
        Err(s) => Err(s.into()),
    }
}

/// The answer's status and bytes.
pub fn reply(a: impl Reply) -> Answer {
    Answer { status: a.status(), payload: a.to_bytes() }
}

/// The coins whose keys encrypted a request (EN 1, EN 4, both tokens of EN 5).
/// EN 2 (a locker) and EN 7 (a RAIDA secret) name no coin.
pub fn request_coins(id: &KeyIdentity) -> Vec<CoinId> {
    match *id {
        KeyIdentity::Coin { coin } | KeyIdentity::Token { coin } => vec![coin],
        KeyIdentity::TokenPair { first, second } => vec![first, second],
        _ => Vec::new(),
    }
}

/// Whether the request was encrypted at all.
pub fn encrypted(en: Encryption) -> bool {
    en != Encryption::None
}
