//! 0/0 Echo: empty payload → 250, no payload.

use super::ids;
use crate::codec::{empty_payload, Reply, Request};

empty_payload! {
    /// The Echo request: no payload (anything else is 16).
    Echo
}

empty_payload! {
    /// The answer: no payload.
    EchoAnswer
}

impl Reply for EchoAnswer {}

impl Request for Echo {
    const GROUP: u8 = ids::GROUP_STATUS;
    const COMMAND: u8 = ids::ECHO;
    const NAME: &'static str = "echo";
    type Answer = EchoAnswer;
}
