//! 0/1 Version: empty payload → 250 with the build date, 8 ASCII bytes `YYYYMMDD`.

use crate::codec::{Codec, Reader, Reply};
use crate::status::Status;

/// The Version request: no payload (anything else is 16).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Version;

impl Codec for Version {
    fn encode(&self, _: &mut Vec<u8>) {}
    fn read(_: &mut Reader<'_>) -> Result<Self, Status> {
        Ok(Version)
    }
}

/// The answer: the build date as sent (the server sends 8 ASCII digits).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildDate(pub Vec<u8>);

impl Codec for BuildDate {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, Status> {
        Ok(BuildDate(r.rest().to_vec()))
    }
}

impl Reply for BuildDate {}
