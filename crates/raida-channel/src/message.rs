//! The plaintext inside every record: `[kind 1][id 8, big-endian][payload]`.

use crate::error::ChannelError;

/// Bytes before the payload.
pub const INNER_HEADER: usize = 9;

/// What a record carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// One-way application data (id 0).
    Data = 0x01,
    /// Application request; id = correlation id chosen by the sender.
    Request = 0x02,
    /// Response to the request with the same id.
    Response = 0x03,
    /// Keepalive; id echoed by the pong.
    Ping = 0x04,
    /// Keepalive answer.
    Pong = 0x05,
    /// Rekey (initiator only): payload = a handshake hello.
    Rekey = 0x06,
    /// Rekey answer: payload = a handshake reply; the last record under the old keys.
    RekeyAck = 0x07,
    /// The responder asks the initiator to rekey.
    RekeyRequest = 0x08,
    /// Graceful shutdown.
    Shutdown = 0x09,
    /// Acknowledges a shutdown; the sender closes after it.
    ShutdownAck = 0x0A,
    /// Key confirmation (first record each way on a byte stream): payload = session id.
    Confirm = 0x0B,
    /// The sender has no more application data (half-close).
    End = 0x0C,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            0x01 => Kind::Data,
            0x02 => Kind::Request,
            0x03 => Kind::Response,
            0x04 => Kind::Ping,
            0x05 => Kind::Pong,
            0x06 => Kind::Rekey,
            0x07 => Kind::RekeyAck,
            0x08 => Kind::RekeyRequest,
            0x09 => Kind::Shutdown,
            0x0A => Kind::ShutdownAck,
            0x0B => Kind::Confirm,
            0x0C => Kind::End,
            _ => return None,
        })
    }
}

/// The 9-byte header of an inner message.
pub fn header(kind: Kind, id: u64) -> [u8; INNER_HEADER] {
    let mut h = [0u8; INNER_HEADER];
    h[0] = kind as u8;
    h[1..].copy_from_slice(&id.to_be_bytes());
    h
}

/// Splits an inner message into kind, id and payload.
pub fn decode(pt: &[u8]) -> Result<(Kind, u64), ChannelError> {
    if pt.len() < INNER_HEADER {
        return Err(ChannelError::Malformed("inner message shorter than 9 bytes"));
    }
    let kind = Kind::from_u8(pt[0]).ok_or(ChannelError::Malformed("unknown message kind"))?;
    let mut id = [0u8; 8];
    id.copy_from_slice(&pt[1..INNER_HEADER]);
    Ok((kind, u64::from_be_bytes(id)))
}
