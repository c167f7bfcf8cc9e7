//! 0/1 Version: → 250 with the build date as 8 ASCII bytes YYYYMMDD.

use raida_proto::commands::version::{Version, VersionAnswer};
use raida_proto::Status;

use super::{Command, Ctx};
use crate::state::{Answer, Call, ServerState};

/// The build date (UTC) recorded by build.rs.
pub const BUILD_DATE: &str = env!("RAIDA_BUILD_DATE");

impl Command for Version {
    fn apply(self, _: &ServerState, _: &Ctx) -> Result<VersionAnswer, Status> {
        Ok(VersionAnswer(BUILD_DATE.as_bytes().to_vec()))
    }
}

pub fn run(state: &ServerState, call: &Call) -> Answer {
    super::run::<Version>(state, call)
}
