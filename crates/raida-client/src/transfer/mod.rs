//! `raida send` / `raida receive` as a library: a key from the RAIDA exchange (PROTOCOL.md
//! section 9), then the secure channel of section 8 over TCP with that key as PSK plus
//! X25519 and ML-KEM-768, then files (or a stream) with resume.
//!
//! * The receiver ([`Receiver`]) listens on one port, UDP and TCP: first for the Key Alert
//!   ([`crate::rke::KeyReceiver`]), then, once a key from an accepted sender arrived, it
//!   takes over the same TCP listener and accepts the channel, only from the address the
//!   alert came from, at most [`MAX_HANDSHAKE_FAILURES`] failed handshakes.
//! * The sender ([`send`]) checks every file first, runs the exchange, connects to the
//!   receiver's address and sends each item. Both print the peer's coin and a verification
//!   phrase ([`verification_phrase`]) that two people can compare.
//! * Per item (messages in `wire.rs`, each one channel message): the sender *requests*
//!   an OFFER (kind, name, size); the receiver answers how many bytes it already holds in
//!   its partial file for that name and size and the SHA-256 of those bytes (or refuses: a
//!   bad name, an existing file without `overwrite`). The sender checks that hash against
//!   its own file's prefix and sends START (where it begins: that length or 0), CHUNKs,
//!   then *requests* DONE with the SHA-256 of the whole item, which it computed while
//!   reading (the file is read once: the first byte leaves at once whatever the size); the
//!   receiver answers only after its own hash of every byte (the resumed prefix included)
//!   and the size matched and the file was renamed into place. A stream (stdin) has no size.
//! * Safety on the receiver: a name is one plain file-name component (no `/`, `\`, `..`,
//!   NUL or control characters, not empty, at most 255 bytes); nothing is overwritten unless
//!   asked; data goes to `DIR/.raida-partial-<hash>` (mode 0600) and becomes `DIR/NAME`
//!   only once the hash matched (a hard link when not overwriting, so a file that appeared
//!   meanwhile is not replaced); memory is bounded by a few chunks whatever the size; any
//!   record the channel rejects (tampered, replayed, out of order) ends the transfer.
//!
//! ```no_run
//! use std::path::{Path, PathBuf};
//! use raida_client::network::Network;
//! use raida_client::wallet::Wallet;
//! use raida_client::rke::Recipient;
//! use raida_client::transfer::{self, Item, Receiver, ReceiveOptions, SendOptions, Sink};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let network = Network::load(Path::new("raida-network/network.toml"))?;
//! // bob, on his machine: wait for a file from alice (coin 1:1) into ./inbox
//! let bob = Wallet::load(Path::new("raida-network/wallets/bob/01.2.bin"))?;
//! let opts = ReceiveOptions { accept: vec![alice_coin()], ..ReceiveOptions::default() };
//! let receiver = Receiver::bind("127.0.0.1:7100", network.clone(), bob, opts).await?;
//! let waiting = tokio::spawn(async move {
//!     receiver.receive(Sink::Directory(PathBuf::from("inbox")), &mut |e| println!("bob: {e:?}")).await
//! });
//! // alice, on hers
//! let alice = Wallet::load(Path::new("raida-network/wallets/alice/01.1.bin"))?;
//! let to = Recipient::parse("1:2@127.0.0.1:7100")?;
//! let items = vec![Item::file(Path::new("photo.jpg"))?];
//! let sent = transfer::send(&network, &alice, &to, items, &SendOptions::default(), &mut |e| {
//!     if let transfer::Event::Connected { phrase, .. } = e { println!("compare: {phrase}") }
//! }).await?;
//! let got = waiting.await??;
//! assert_eq!(sent.bytes, got.bytes);
//! # Ok(()) }
//! # fn alice_coin() -> raida_proto::commands::post_key::CoinName { raida_proto::commands::post_key::CoinName { dn: 1, sn: 1 } }
//! ```

mod phrase;
mod receive;
mod send;
pub mod wire;

use std::net::SocketAddr;
use std::time::Duration;

use raida_channel::{ChannelError, Config, Psk};
use raida_proto::commands::post_key::CoinName;
use serde::Serialize;

pub use phrase::{verification_phrase, PHRASE_WORDS};
pub use receive::{receive_over, Receiver, Sink};
pub use send::{send, send_over, Item};

use crate::rke::{self, RkeError, SessionKey};

/// Bytes of file data per channel message by default.
pub const DEFAULT_CHUNK: usize = 256 * 1024;
/// Largest chunk a receiver accepts (a bigger one ends the transfer).
pub const MAX_CHUNK: usize = 1024 * 1024;
/// Failed channel handshakes (from the alert's address) after which the receiver gives up.
pub const MAX_HANDSHAKE_FAILURES: u32 = 3;
/// Chunks queued between the network and the disk, each way.
const QUEUE: usize = 4;

/// How the sender behaves.
#[derive(Clone, Debug)]
pub struct SendOptions {
    /// The key exchange.
    pub rke: rke::SendOptions,
    /// ML-KEM-768 in the handshake besides X25519 and the PSK (both sides must agree).
    pub pq: bool,
    /// Bytes per chunk (1..=[`MAX_CHUNK`]).
    pub chunk_size: usize,
    /// At most this many bytes per second (None: as fast as it goes).
    pub rate_limit: Option<u64>,
}

impl Default for SendOptions {
    fn default() -> Self {
        SendOptions { rke: rke::SendOptions::default(), pq: true, chunk_size: DEFAULT_CHUNK, rate_limit: None }
    }
}

/// How the receiver behaves.
#[derive(Clone, Debug)]
pub struct ReceiveOptions {
    /// Senders accepted (empty: any); checked at the key exchange, before any data.
    pub accept: Vec<CoinName>,
    /// The key exchange's other settings (its `accept` is replaced by the one above).
    pub rke: rke::ReceiveOptions,
    /// ML-KEM-768 in the handshake besides X25519 and the PSK (both sides must agree).
    pub pq: bool,
    /// Replace existing files.
    pub overwrite: bool,
    /// How long to wait for a key (None: until one comes).
    pub key_timeout: Option<Duration>,
    /// How long to wait, after the key, for the sender's channel.
    pub connect_timeout: Duration,
}

impl Default for ReceiveOptions {
    fn default() -> Self {
        ReceiveOptions {
            accept: Vec::new(),
            rke: rke::ReceiveOptions::default(),
            pq: true,
            overwrite: false,
            key_timeout: None,
            connect_timeout: Duration::from_secs(30),
        }
    }
}

/// What happened, for progress bars and `--json` (one object per event, tagged `event`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The receiver is listening.
    Listening { coin: String, address: String },
    /// A Key Alert was refused (wrong or mixed senders); the receiver keeps waiting.
    KeyRefused { from: String, reason: String },
    /// The key exchange completed with this peer coin.
    KeyExchanged { peer: String },
    /// The channel is up: the peer's coin, its address and the verification phrase.
    Connected { peer: String, address: String, phrase: String, session: String },
    /// An item starts (`resume_from` > 0: that many bytes were already there).
    Started { name: String, size: Option<u64>, resume_from: u64 },
    /// Bytes of the item moved so far (the resumed part included).
    Progress { name: String, bytes: u64, size: Option<u64> },
    /// The receiver confirmed the item (hash matched; `path` where it was written).
    Completed { name: String, bytes: u64, sha256: String, path: Option<String> },
    /// The receiver refused the item.
    Refused { name: String, reason: String },
    /// Every item done.
    Finished { items: usize, bytes: u64, seconds: f64 },
}

/// What a finished transfer moved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Items confirmed, in order: name and SHA-256.
    pub items: Vec<(String, [u8; 32])>,
    /// Bytes moved over the channel in this run (a resumed prefix not counted).
    pub bytes: u64,
}

/// Why a transfer did not complete.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(transparent)]
    Key(#[from] RkeError),
    #[error("secure channel: {0}")]
    Channel(#[from] ChannelError),
    #[error("{0}")]
    Io(String),
    #[error("the receiver refused {name:?}: {reason}")]
    Refused { name: String, reason: String },
    #[error("{0}")]
    Protocol(String),
    #[error("the channel was not set up: {0}")]
    Connect(String),
}

fn io_err(what: impl std::fmt::Display, e: std::io::Error) -> TransferError {
    TransferError::Io(format!("{what}: {e}"))
}

/// The channel settings both sides use: K as PSK, X25519, ML-KEM-768 when `pq`.
pub fn channel_config(key: &SessionKey, pq: bool) -> Result<Config, TransferError> {
    Ok(Config::new(Some(Psk::new(key.as_bytes().to_vec())?), pq))
}

/// `DN:SN`.
pub fn coin_text(c: CoinName) -> String {
    format!("{}:{}", c.dn, c.sn)
}

fn connected(ch: &raida_channel::Channel, peer: CoinName, address: SocketAddr) -> Event {
    Event::Connected {
        peer: coin_text(peer),
        address: address.to_string(),
        phrase: verification_phrase(&ch.transcript_hash()),
        session: hex::encode(ch.session_id()),
    }
}

/// Is `name` one plain file-name component a receiver may create in its directory?
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty name".into());
    }
    if name.len() > wire::MAX_NAME {
        return Err("name longer than 255 bytes".into());
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} is not a file name"));
    }
    if name.contains(['/', '\\']) {
        return Err(format!("{name:?} has a path separator (only a plain file name is accepted)"));
    }
    if name.chars().any(|c| c.is_control()) {
        return Err("name has control characters".into());
    }
    if name.starts_with(PARTIAL_PREFIX) {
        return Err("name is reserved for partial files".into());
    }
    Ok(())
}

/// Partial files: `DIR/.raida-partial-<32 hex>`.
pub const PARTIAL_PREFIX: &str = ".raida-partial-";

/// Where the partial file of an offered file lives: the same name and size map to the same
/// partial file, so sending the same file again resumes it (after the sender checked the
/// partial bytes against its own by hash).
fn partial_name(offer: &wire::Offer) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"raida-transfer partial v1");
    h.update((offer.name.len() as u64).to_be_bytes());
    h.update(offer.name.as_bytes());
    h.update(offer.size.to_be_bytes());
    format!("{PARTIAL_PREFIX}{}", hex::encode(&h.finalize()[..16]))
}

/// SHA-256 state after the first `limit` bytes of `path`, read through a bounded buffer.
/// `follow_symlinks = false` opens with O_NOFOLLOW (the receiver's partial files: a link
/// planted in the output directory is never followed); the sender's own files, named on
/// its command line, may be links.
fn hash_prefix(path: &std::path::Path, limit: u64, follow_symlinks: bool) -> std::io::Result<sha2::Sha256> {
    use sha2::Digest;
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let flags = if follow_symlinks { 0 } else { libc::O_NOFOLLOW };
    let mut r = std::fs::OpenOptions::new().read(true).custom_flags(flags).open(path)?.take(limit);
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_are_refused() {
        for bad in
            ["", ".", "..", "../x", "/etc/x", "a/b", "a\\b", "x\u{0}y", "x\ny", ".raida-partial-00", &"a".repeat(256)]
        {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["a.txt", "..a", "photo 1.jpg", ".bashrc", "ünïcode", &"a".repeat(255)] {
            assert!(check_name(good).is_ok(), "{good:?} refused");
        }
    }
}
