//! 0/0 Echo: empty payload → 250, no payload.

use crate::codec::{Codec, Reader};
use crate::status::Status;

/// The Echo request: no payload (anything else is 16).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Echo;

impl Codec for Echo {
    fn encode(&self, _: &mut Vec<u8>) {}
    fn read(_: &mut Reader<'_>) -> Result<Self, Status> {
        Ok(Echo)
    }
}

/// The answer: no payload.
pub use crate::codec::Empty as EchoAnswer;
