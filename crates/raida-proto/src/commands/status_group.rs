//! Group 0: Echo (0), Version (1), Show Stats (2). The codecs are in `echo.rs`,
//! `version.rs` and `show_stats.rs`; these are the older entry points.

use crate::codec::Codec;
use crate::status::Status;

use super::echo::Echo;
use super::show_stats::ShowStats;

/// Echo and Version take an empty payload; anything else is 16.
pub fn parse_empty(payload: &[u8]) -> Result<(), Status> {
    Echo::decode(payload).map(|_| ())
}

/// Show Stats: the 16-byte admin key.
pub fn parse_show_stats(payload: &[u8]) -> Result<[u8; 16], Status> {
    ShowStats::decode(payload).map(|s| s.admin_key)
}
