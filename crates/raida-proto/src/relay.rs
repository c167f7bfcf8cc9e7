//! The relay hello of PROTOCOL.md section 10 and the relay's one-byte answer.
//!
//! A client that wants to be paired sends 40 bytes: `"RLY1"`, the 32-byte rendezvous id,
//! the side (1 = sender, 2 = receiver) and three zero bytes. The relay answers one byte
//! ([`RelayAnswer`]). Nonzero reserved bytes are malformed: section 10 says "reserved 3,
//! zero" and, unlike 6/41 and 6/43, never says they are ignored (vectors/README.md).

use crate::wire_enum::wire_enum;

/// Length of a hello.
pub const HELLO_LEN: usize = 40;

/// The four ASCII bytes a hello starts with.
pub const MAGIC: [u8; 4] = *b"RLY1";

wire_enum! {
    /// Which end of the exchange a client is; two clients with the same rendezvous id
    /// are paired only when their sides differ.
    #[non_exhaustive]
    pub enum Side {
        Sender = 1 => "SENDER",
        Receiver = 2 => "RECEIVER",
    }
}

impl Side {
    /// The other side (the one a client waits for).
    pub const fn peer(self) -> Side {
        match self {
            Side::Sender => Side::Receiver,
            Side::Receiver => Side::Sender,
        }
    }
}

wire_enum! {
    /// The relay's one-byte answer to a hello.
    #[non_exhaustive]
    pub enum RelayAnswer {
        /// The other side is there: bytes are copied from now on.
        Paired = 1 => "PAIRED",
        /// The hello was not 40 well-formed bytes.
        Malformed = 2 => "MALFORMED",
        /// That side of that rendezvous id is already waiting.
        SideTaken = 3 => "SIDE_TAKEN",
        /// A bound of the relay is reached: try another relay.
        Busy = 4 => "BUSY",
        /// No peer came within the pairing wait: try another relay.
        NoPeer = 5 => "NO_PEER",
    }
}

/// A well-formed hello.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RelayHello {
    pub rendezvous_id: [u8; 32],
    pub side: Side,
}

impl RelayHello {
    pub const fn new(rendezvous_id: [u8; 32], side: Side) -> RelayHello {
        RelayHello { rendezvous_id, side }
    }

    /// The 40 bytes on the wire.
    pub fn to_bytes(&self) -> [u8; HELLO_LEN] {
        let mut out = [0u8; HELLO_LEN];
        out[..4].copy_from_slice(&MAGIC);
        out[4..36].copy_from_slice(&self.rendezvous_id);
        out[36] = self.side.code();
        out
    }

    /// Parses a hello; anything but exactly 40 well-formed bytes (magic, side 1 or 2,
    /// zero reserved bytes) is [`RelayAnswer::Malformed`], the answer the relay sends.
    pub fn decode(bytes: &[u8]) -> Result<RelayHello, RelayAnswer> {
        let bytes: &[u8; HELLO_LEN] = bytes.try_into().map_err(|_| RelayAnswer::Malformed)?;
        if bytes[..4] != MAGIC || bytes[37..] != [0, 0, 0] {
            return Err(RelayAnswer::Malformed);
        }
        let side = Side::from_code(bytes[36]).ok_or(RelayAnswer::Malformed)?;
        let mut rendezvous_id = [0u8; 32];
        rendezvous_id.copy_from_slice(&bytes[4..36]);
        Ok(RelayHello { rendezvous_id, side })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_peer() {
        let h = RelayHello::new([9; 32], Side::Receiver);
        assert_eq!(RelayHello::decode(&h.to_bytes()), Ok(h));
        assert_eq!(Side::Sender.peer(), Side::Receiver);
        assert_eq!(RelayHello::decode(&h.to_bytes()[..39]), Err(RelayAnswer::Malformed));
    }
}
