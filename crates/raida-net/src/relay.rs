//! The client side of a relay (PROTOCOL.md section 10): connect out to a relay of the
//! network file, send the 40-byte hello, wait for the one-byte answer; on `0x04` (busy),
//! `0x05` (no peer), a connect failure or a timeout, try the next relay of the list.
//!
//! Both sides of an exchange walk the same list in the same order, so they meet on the
//! first relay that has room for both.

use std::fmt;
use std::time::Duration;

use raida_proto::relay::{RelayAnswer, RelayHello, Side};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::resolve::{resolve_address, ResolveError};

/// How long a TCP connect to one relay may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why one relay did not pair us.
#[derive(Debug)]
#[non_exhaustive]
pub enum RelayFailure {
    Resolve(ResolveError),
    Connect(std::io::Error),
    /// No answer within the wait (or the connect bound).
    Timeout,
    /// The relay closed (or failed) before it answered.
    Closed(std::io::Error),
    /// An error answer (0x02-0x05).
    Answer(RelayAnswer),
    /// A byte that is no answer of section 10.
    UnknownAnswer(u8),
}

impl fmt::Display for RelayFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RelayFailure::Resolve(e) => write!(f, "{e}"),
            RelayFailure::Connect(e) => write!(f, "connect: {e}"),
            RelayFailure::Timeout => write!(f, "no answer in time"),
            RelayFailure::Closed(e) => write!(f, "closed before answering ({e})"),
            RelayFailure::Answer(RelayAnswer::Malformed) => write!(f, "malformed hello (0x02)"),
            RelayFailure::Answer(RelayAnswer::SideTaken) => {
                write!(f, "this side of the rendezvous is already waiting (0x03)")
            }
            RelayFailure::Answer(RelayAnswer::Busy) => write!(f, "busy (0x04)"),
            RelayFailure::Answer(RelayAnswer::NoPeer) => write!(f, "no peer within its pairing wait (0x05)"),
            RelayFailure::Answer(a) => write!(f, "answer 0x{:02x}", a.code()),
            RelayFailure::UnknownAnswer(b) => write!(f, "unknown answer 0x{b:02x}"),
        }
    }
}

impl RelayFailure {
    /// Whether the next relay is worth trying (section 10: after 0x04, 0x05, a failed
    /// connect). 0x02 and 0x03 say something is wrong with this client or its rendezvous
    /// itself, which another relay does not mend.
    fn try_next(&self) -> bool {
        !matches!(self, RelayFailure::Answer(RelayAnswer::Malformed | RelayAnswer::SideTaken))
    }
}

/// No relay paired us; each relay tried, with its failure, in one line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    #[error("the network file lists no relay")]
    NoRelays,
    #[error("no relay paired: {}", list(.tried))]
    Failed { tried: Vec<(String, RelayFailure)> },
}

fn list(tried: &[(String, RelayFailure)]) -> String {
    tried.iter().map(|(r, f)| format!("{r}: {f}")).collect::<Vec<_>>().join("; ")
}

/// Pairs through the first relay of `relays` (`HOST:PORT`) that answers `0x01` to a hello
/// of `rendezvous_id` and `side`, waiting at most `wait` for each relay's answer. Returns
/// the stream (the relay copies both ways from now on) and the relay that paired.
pub async fn connect(
    relays: &[String],
    rendezvous_id: &[u8; 32],
    side: Side,
    wait: Duration,
) -> Result<(TcpStream, String), RelayError> {
    if relays.is_empty() {
        return Err(RelayError::NoRelays);
    }
    let hello = RelayHello::new(*rendezvous_id, side).to_bytes();
    let mut tried = Vec::new();
    for relay in relays {
        match try_one(relay, &hello, wait).await {
            Ok(stream) => return Ok((stream, relay.clone())),
            Err(f) => {
                tracing::debug!(%relay, failure = %f, "relay did not pair");
                let next = f.try_next();
                tried.push((relay.clone(), f));
                if !next {
                    break;
                }
            }
        }
    }
    Err(RelayError::Failed { tried })
}

async fn try_one(relay: &str, hello: &[u8], wait: Duration) -> Result<TcpStream, RelayFailure> {
    let addr = resolve_address(relay).await.map_err(RelayFailure::Resolve)?;
    let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| RelayFailure::Timeout)?
        .map_err(RelayFailure::Connect)?;
    let _ = stream.set_nodelay(true);
    let mut answer = [0u8; 1];
    tokio::time::timeout(wait, async {
        stream.write_all(hello).await?;
        stream.read_exact(&mut answer).await.map(|_| ())
    })
    .await
    .map_err(|_| RelayFailure::Timeout)?
    .map_err(RelayFailure::Closed)?;
    match RelayAnswer::from_code(answer[0]) {
        Some(RelayAnswer::Paired) => Ok(stream),
        Some(a) => Err(RelayFailure::Answer(a)),
        None => Err(RelayFailure::UnknownAnswer(answer[0])),
    }
}
