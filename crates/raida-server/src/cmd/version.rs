//! 0/1 Version: → 250 with the build date as 8 ASCII bytes YYYYMMDD.

use raida_proto::commands::status_group;

use crate::state::{Answer, Call, ServerState};

/// The build date (UTC) recorded by build.rs.
pub const BUILD_DATE: &str = env!("RAIDA_BUILD_DATE");

pub fn run(_state: &ServerState, call: &Call) -> Answer {
    match status_group::parse_empty(&call.payload) {
        Ok(()) => Answer::ok(BUILD_DATE.as_bytes().to_vec()),
        Err(s) => s.into(),
    }
}
