//! 0/2 Show Stats: payload = the 16-byte admin key → 250 with `name=value\n` lines.

use super::ids;
use crate::codec::{Codec, Reader, Reply, Request};
use crate::status::Status;

/// The Show Stats request: exactly the 16-byte admin key (else 16).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ShowStats {
    pub admin_key: [u8; 16],
}

impl std::fmt::Debug for ShowStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShowStats(..)") // the admin key is never printed
    }
}

impl Codec for ShowStats {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.admin_key);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, Status> {
        Ok(ShowStats { admin_key: r.array()? })
    }
}

impl Request for ShowStats {
    const GROUP: u8 = ids::GROUP_STATUS;
    const COMMAND: u8 = ids::SHOW_STATS;
    const NAME: &'static str = "show_stats";
    type Answer = ShowStatsAnswer;
}

/// The answer: the counters as ASCII `name=value` lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShowStatsAnswer(pub String);

impl Codec for ShowStatsAnswer {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.0.as_bytes());
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, Status> {
        Ok(ShowStatsAnswer(String::from_utf8_lossy(r.rest()).into_owned()))
    }
}

impl Reply for ShowStatsAnswer {}
