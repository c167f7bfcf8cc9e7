//! Group 0: Echo (0), Version (1), Show Stats (2).

use crate::status::Status;

/// Echo and Version take an empty payload; anything else is 16.
pub fn parse_empty(payload: &[u8]) -> Result<(), Status> {
    if payload.is_empty() {
        Ok(())
    } else {
        Err(Status::InvalidPacketLength)
    }
}

/// Show Stats: the 16-byte admin key.
pub fn parse_show_stats(payload: &[u8]) -> Result<[u8; 16], Status> {
    payload.try_into().map_err(|_| Status::InvalidPacketLength)
}
