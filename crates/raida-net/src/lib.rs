//! # raida-net
//!
//! The networking the RAIDA server and the client share, so that neither carries its own
//! copy and the server does not depend on the client library:
//!
//! * the TCP connection table ([`ConnectionTable`]): caps per address, per /24 or /64 and
//!   in all, with fair longest-idle eviction (the server and the key receiver);
//! * batched UDP syscalls ([`mmsg`]: recvmmsg / sendmmsg) and many verified requests over
//!   one socket ([`batch`]: a server's Key Alert fetches, the client's receivers);
//! * the one `HOST:PORT` resolver ([`resolve`]) and the network file `network.toml`
//!   ([`network`]);
//! * the budget of Get Key fetches per minute ([`fetch_budget`]) and the limit of error
//!   answers per source address ([`ErrorRateLimiter`]);
//! * fetching and assembling the parts of a Key Alert ([`key_fetch`]): the one receiver
//!   core of a RAIDA's 42 and of `raida key receive`;
//! * pairing through a relay of the network file ([`relay::connect`], section 10).

pub mod batch;
mod connections;
mod error_rate;
pub mod fetch_budget;
pub mod key_fetch;
pub mod mmsg;
pub mod network;
pub mod relay;
mod request;
pub mod resolve;

pub use connections::{subnet_of, ConnectionSlot, ConnectionTable, Refusal, Subnet, TcpLimits};
pub use error_rate::ErrorRateLimiter;
pub use request::{unix_now, ClientError, Server};
