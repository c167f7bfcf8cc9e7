//! 0/1 Version: empty payload → 250 with the build date, 8 ASCII bytes `YYYYMMDD`.

use super::ids;
use crate::codec::{empty_payload, Codec, Reader, Reply, Request};
use crate::status::Status;

empty_payload! {
    /// The Version request: no payload (anything else is 16).
    Version
}

impl Request for Version {
    const GROUP: u8 = ids::GROUP_STATUS;
    const COMMAND: u8 = ids::VERSION;
    const NAME: &'static str = "version";
    type Answer = VersionAnswer;
}

/// The answer: the build date as sent (the server sends 8 ASCII digits).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionAnswer(pub Vec<u8>);

impl Codec for VersionAnswer {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, Status> {
        Ok(VersionAnswer(r.rest().to_vec()))
    }
}

impl Reply for VersionAnswer {}
