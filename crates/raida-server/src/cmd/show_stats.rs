//! 0/2 Show Stats: payload = the 16-byte admin key. EN 0 only from loopback (34),
//! constant-time compare (38) → 250 with `name=value` lines.

use raida_proto::commands::status_group;
use raida_proto::{Encryption, Status};
use subtle::ConstantTimeEq;

use crate::state::{Answer, Call, ServerState};

pub fn run(state: &ServerState, call: &Call) -> Answer {
    if call.header.encryption == Encryption::None && !call.peer.is_loopback() {
        return Status::InvalidEncryption.into();
    }
    let given = match status_group::parse_show_stats(&call.payload) {
        Ok(k) => k,
        Err(s) => return s.into(),
    };
    let Some(admin) = state.admin_key else {
        return Status::AdminAuth.into();
    };
    if !bool::from(admin.ct_eq(&given)) {
        return Status::AdminAuth.into();
    }
    let (cached, dirty) = state.ledger.page_stats();
    let mut text = state.stats.render(state.tickets.free_slots(call.now), cached, dirty);
    text.push_str(&state.pending_keys.stats().render());
    Answer::ok(text.into_bytes())
}
