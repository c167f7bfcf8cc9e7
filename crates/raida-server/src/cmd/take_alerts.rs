//! 4/47 Take Alerts: the receiver takes the alerts waiting for it in this RAIDA's mailbox
//! ([`crate::mailbox`]), under its own coin (EN 1, EN 4 naming a coin, EN 5's first token;
//! else 34, before the size). Over UDP the answer carries what fits in 1,200 payload bytes
//! and `wait` counts as 0. Over TCP with `wait` > 0 and nothing new waiting (no alert
//! that no answer carried yet: copies kept for a repeat would otherwise answer a receiver
//! that polls again at once, in a loop, for 30 s), the request is held (bounded per address and in total, else 160) until an alert for the receiver
//! arrives, `wait` seconds pass or the server shuts down; the held request is a task of
//! its own, so it delays nothing but its own connection.

use std::sync::Arc;
use std::time::Duration;

use raida_proto::codec::Codec;
use raida_proto::commands::take_alerts::{TakeAlerts, TakeAlertsAnswer};
use raida_proto::mailbox::owner;
use raida_proto::{CoinId, Status};

use super::reply;
use crate::mailbox::Held;
use crate::state::{Answer, Call, Reply, ServerState, Transport};

/// The checks of 6/47 in order: the request's coin (34), then the payload (16).
fn admit(call: &Call) -> Result<(CoinId, TakeAlerts), Status> {
    let receiver = owner(&call.header.key_identity)?;
    Ok((receiver, TakeAlerts::decode(&call.payload)?))
}

/// Answered at once, except a 47 over TCP with `wait` > 0 for a receiver with nothing
/// new waiting: that one is held by a task on the current runtime (without a runtime, e.g. a
/// caller of [`crate::dispatch::answer`], it is answered as if `wait` had passed).
pub fn run(state: Arc<ServerState>, call: Call, answer: Reply) {
    let (receiver, req) = match admit(&call) {
        Ok(r) => r,
        Err(s) => return answer.send(Answer::status(s)),
    };
    let udp = call.transport == Transport::Udp;
    let mailbox = &state.mailbox;
    if udp || req.wait == 0 || mailbox.is_shut_down() || mailbox.has_new_alerts(receiver, call.now) {
        return answer.send(reply(mailbox.take(receiver, call.now, udp)));
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return answer.send(reply(mailbox.take(receiver, call.now, false)));
    };
    let held = match mailbox.hold(call.peer, receiver) {
        Ok(h) => h,
        Err(why) => return answer.send(Answer::status(why.status())),
    };
    let wait = Duration::from_secs(req.wait.into());
    runtime.spawn(async move {
        let taken = long_poll(&state, receiver, &held, wait).await;
        drop(held);
        answer.send(reply(taken));
    });
}

/// Wait for a new alert for `receiver`, at most `wait` (or until shutdown), then take what
/// is there (count 0 if nothing came, unless copies kept for a repeat are still there).
async fn long_poll(state: &ServerState, receiver: CoinId, held: &Held, wait: Duration) -> TakeAlertsAnswer {
    // enabled before the mailbox is read: an alert left in between still wakes it
    let notified = held.notify().notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    if !state.mailbox.has_new_alerts(receiver, (state.clock)()) {
        // woken only by an alert left for this receiver; every poll held for it answers
        // (one of them taking the alert first does not send the others back to waiting)
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep(wait) => {}
            _ = held.shutdown().cancelled() => {}
        }
    }
    state.mailbox.take(receiver, (state.clock)(), false)
}
