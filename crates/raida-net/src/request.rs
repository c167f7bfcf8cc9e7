//! One RAIDA as a peer, and why a request to it produced no verified answer: shared by
//! the client's single requests and the batches of [`crate::batch`].

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use raida_proto::client::ResponseError;

/// One server: its address and RAIDA id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Server {
    pub addr: SocketAddr,
    pub raida_id: u8,
}

/// Why a request did not produce a verified answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("i/o error talking to {addr}: {source}")]
    Io { addr: SocketAddr, source: std::io::Error },
    #[error("no answer from {0} within the timeout")]
    Timeout(SocketAddr),
    #[error("{addr}: {source}")]
    Response { addr: SocketAddr, source: ResponseError },
    /// A verified success whose payload is not the command's answer.
    #[error("{addr}: unexpected {command} answer")]
    Malformed { addr: SocketAddr, command: &'static str },
}

impl ClientError {
    /// The status a server answered, when the failure is an error status.
    pub fn status(&self) -> Option<raida_proto::Status> {
        match self {
            ClientError::Response { source: ResponseError::Status { status, .. }, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The current Unix time in seconds (for modern request times).
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
