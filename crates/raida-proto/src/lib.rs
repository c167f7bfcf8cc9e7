//! # raida-proto
//!
//! The RAIDA X protocol core, sans-IO: no sockets, threads, clock reads or file access.
//! It turns bytes into typed values and back for both sides:
//!
//! * a server frames a request ([`header::frame`]), checks the header rules of 3.1
//!   ([`header::parse_request_header`]), resolves the key ([`keys::resolve_key`]),
//!   checks and decrypts the body ([`validate::validate_request`]) and answers
//!   ([`response::ReplyContext::write`]);
//! * a client builds any request ([`client::build_request`]) and verifies + decodes
//!   its answer ([`client::PendingReply::open`]).
//!
//! Time and randomness come in through parameters, so every path is deterministic
//! under test and uses the system clock and the OS CSPRNG in production.

pub mod client;
pub mod codec;
pub mod coin;
pub mod commands;
pub mod consts;
pub mod crypto;
pub mod header;
pub mod keys;
pub mod mailbox;
pub mod relay;
pub mod replay;
pub mod response;
pub mod status;
pub mod time;
pub mod validate;
mod wire_enum;

pub use coin::{CoinId, IdentityCoin};
pub use header::{CommandSet, Encryption, KeyIdentity, RequestHeader, ServerIdentity};
pub use keys::{FallibleKeyLookup, Key16, Key32, KeyLookup, LookupFault, RequestKey};
pub use response::{ReplyContext, ReplySecurity};
pub use status::Status;
pub use validate::{validate_request, Rejection, Validated};
