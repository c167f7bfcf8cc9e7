//! The RAIDA secure channel (PROTOCOL.md section 8, seed 004).
//!
//! A sans-IO core — [`handshake`] (X25519, optional pre-shared key, optional ML-KEM-768
//! hybrid), [`chain`] (the per-direction HKDF key chain), [`record`] (the
//! `[seq 8][nonce 12][AES-256-GCM ciphertext || tag]` records), [`window`] (the receive
//! window of 3 with its key window) and [`session`] (the session state machine: rekey,
//! keepalive, timeouts, request-response correlation, graceful shutdown, all driven by a
//! caller-supplied clock, with [`Session::poll_timeout`] telling when it next needs
//! [`Session::poll`]) — and, behind the default cargo feature `transport`, two tokio
//! transports: `transport::stream` (4-byte length-prefixed frames over any
//! `AsyncRead + AsyncWrite`) and `transport::http` (the seed's mode: a parent spawns a
//! child, they swap handshake messages over stdio and the child serves encrypted HTTP
//! POSTs on a loopback port). `default-features = false` gives the core alone, without
//! tokio, axum or hyper.
//!
//! Randomness is a parameter: the `*_with_rng` constructors take any
//! `rand_core::CryptoRngCore` (tests pass a seeded one); the plain ones and the transports
//! use the OS CSPRNG. The ML-KEM-768 part always draws from the OS CSPRNG (see [`pq`]).
//!
//! The wire format is documented in `docs/channel.md`.
#![cfg_attr(
    feature = "transport",
    doc = r#"
```no_run
use raida_channel::{Channel, Config, Incoming, Psk};

# async fn example() -> Result<(), raida_channel::ChannelError> {
// Optional: a pre-shared key (>= 16 bytes), e.g. one assembled by the RAIDA exchange.
let psk = Psk::new(std::fs::read("key.bin")?)?;
let cfg = Config::new(Some(psk), false); // `true` = ML-KEM-768 hybrid
let tcp = tokio::net::TcpStream::connect("127.0.0.1:7000").await?;
let mut ch = Channel::connect(tcp, cfg).await?; // the other side: Channel::accept
ch.send(b"hello".to_vec()).await?;
let answer = ch.request(b"what time is it?".to_vec()).await?; // correlated response
# let _ = answer;
while let Some(item) = ch.recv().await {
    match item? {
        Incoming::Data(d) => println!("{} bytes", d.len()),
        Incoming::Request { id, data } => ch.respond(id, data).await?,
        Incoming::End => break,
    }
}
ch.shutdown().await?; // encrypted shutdown, acknowledged, closed
# Ok(())
# }
```
"#
)]

pub mod chain;
pub mod error;
/// Built only for fuzzing (cargo-fuzz sets `--cfg fuzzing`) and for its own tests: no
/// application calls it.
#[cfg(any(fuzzing, test))]
pub mod fuzz;
pub mod handshake;
pub mod message;
pub mod pq;
pub mod record;
pub mod session;
#[cfg(feature = "transport")]
pub mod transport;
pub mod window;

pub use error::ChannelError;
pub use handshake::{Psk, Role};
pub use record::Direction;
pub use session::{Config, Event, Session};
#[cfg(feature = "transport")]
pub use transport::stream::{Channel, Incoming};

/// Result type of this crate.
pub type Result<T, E = ChannelError> = std::result::Result<T, E>;
