//! 0/2 Show Stats: payload = the 16-byte admin key. EN 0 only from loopback (34),
//! constant-time compare (38) → 250 with `name=value` lines.

use raida_proto::commands::show_stats::{ShowStats, ShowStatsAnswer};
use raida_proto::{Encryption, Status};
use subtle::ConstantTimeEq;

use super::{Command, Ctx};
use crate::state::{Answer, Call, ServerState};

impl Command for ShowStats {
    /// The key must not cross a network in clear: before the size check.
    fn admit(ctx: &Ctx) -> Result<(), Status> {
        if ctx.header.encryption == Encryption::None && !ctx.peer.is_loopback() {
            return Err(Status::InvalidEncryption);
        }
        Ok(())
    }

    fn apply(self, state: &ServerState, ctx: &Ctx) -> Result<ShowStatsAnswer, Status> {
        let admin = state.admin_key.load_full().ok_or(Status::AdminAuth)?;
        if !bool::from(admin.ct_eq(&self.admin_key)) {
            return Err(Status::AdminAuth);
        }
        let (cached, dirty) = state.ledger.page_stats();
        let mut text = state.stats.render(state.dispatch.commands(), state.tickets.free_slots(ctx.now), cached, dirty);
        text.push_str(&state.pending_keys.stats().render());
        Ok(ShowStatsAnswer(text))
    }
}

pub fn run(state: &ServerState, call: &Call) -> Answer {
    super::run::<ShowStats>(state, call)
}
