//! `raida send` / `raida receive` as a library: a key from the RAIDA exchange (PROTOCOL.md
//! section 9), then the secure channel of section 8 over TCP with that key as PSK plus
//! X25519 and ML-KEM-768, then files (or a stream) with resume.
//!
//! * The receiver ([`Receiver`]) listens on one port, UDP and TCP: first for the Key Alert
//!   ([`crate::rke::KeyReceiver`]), then, once a key from an accepted sender arrived, it
//!   takes over the same TCP listener and accepts the channel, only from the address the
//!   alert came from: up to [`MAX_HANDSHAKES`] handshakes at a time, each within
//!   [`HANDSHAKE_LIMIT`]; a failed handshake (garbage, a wrong key) never ends the receive,
//!   only the deadline does.
//! * The sender ([`send`]) checks every file first, runs the exchange, connects to the
//!   receiver's address and first sends a MANIFEST (every name, kind and size). The
//!   receiver checks every name and its limits ([`ReceiveOptions::max_files`],
//!   [`ReceiveOptions::max_bytes`]) and asks ([`Approval`]) before anything is written, then
//!   answers ACCEPTED or ABORT (the sender ends with "the receiver declined"). Both print the
//!   peer's coin and a verification phrase ([`verification_phrase`]) that two people can
//!   compare.
//! * Per item (messages in `wire.rs`, each one channel message): the sender *requests*
//!   an OFFER (kind, name, size; it must be the manifest's next entry); the receiver answers
//!   how many bytes it already holds in its partial file for that name and size and the
//!   SHA-256 of those bytes (or refuses: a bad name, an existing file without `overwrite`).
//!   The sender checks that hash against its own file's prefix and sends START (where it
//!   begins: that length or 0), CHUNKs, then *requests* DONE with the SHA-256 of the whole
//!   item, which it computed while reading (the file is read once: the first byte leaves at
//!   once whatever the size); the receiver answers only after its own hash of every byte
//!   (the resumed prefix included) and the size matched and the file was moved into place.
//!   A stream (stdin) has no size. Either side may send ABORT (a reason) to end the
//!   transfer with a clear error on both sides (a stall, a limit).
//! * Folders ([`Item::directory`]): the sender walks the tree (symbolic links and names a
//!   receiver would refuse are skipped and listed, never followed) and offers a
//!   [`wire::Kind::Directory`] entry for each folder, before its contents, and each file
//!   under its relative path (`top/sub/file`, `/`-separated). Every item counts against the
//!   receiver's limits.
//! * Safety on the receiver: a name is a relative path of plain components ([`check_path`],
//!   each component [`check_name`]: no `/`, `\`, `..`, no leading `.` or `-`, no character
//!   of Unicode categories Cc, Cf, Zl, Zp, not empty, at most 255 bytes; no leading `/`,
//!   at most 4096 bytes in all), checked for the whole manifest before anything is written;
//!   folders are created and walked one component at a time relative to the output
//!   directory's descriptor, never following a symbolic link (O_NOFOLLOW), so nothing is
//!   written outside it; nothing is overwritten unless asked; data goes to
//!   `DIR/.raida-partial/` (a directory of ours with mode 0700; files created O_EXCL |
//!   O_NOFOLLOW, mode 0600, resumed only when still ours, 0600, regular and unlinked
//!   elsewhere) and becomes `DIR/NAME` only once the hash matched (a hard link when not
//!   overwriting, so a file that appeared meanwhile is not replaced); memory is bounded by a
//!   few chunks whatever the size; no payload progress for [`ReceiveOptions::stall_timeout`]
//!   ends the transfer (the channel's keepalives do not count); any record the channel
//!   rejects (tampered, replayed, out of order) ends the transfer. Every peer-chosen string
//!   is shown through [`escape`].
//!
//! ```no_run
//! use std::path::{Path, PathBuf};
//! use raida_net::network::Network;
//! use raida_store::wallet::Wallet;
//! use raida_client::rke::Recipient;
//! use raida_client::transfer::{self, Item, Receiver, ReceiveOptions, SendOptions, Sink};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let network = Network::load(Path::new("raida-network/network.toml"))?;
//! // bob, on his machine: wait for a file from alice (coin 1:1) into ./inbox
//! let bob = Wallet::load(Path::new("raida-network/wallets/bob/01.2.bin"))?;
//! // naming the sender is enough to accept its files (Approval::Listed, the default)
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

mod partial;
mod path;
mod phrase;
mod receive;
mod send;
pub mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use raida_channel::{ChannelError, Config, Psk};
use raida_proto::commands::post_key::CoinName;
use serde::Serialize;

pub use partial::PARTIAL_DIR;
pub use path::DataPath;
pub use phrase::{verification_phrase, PHRASE_WORDS};
pub use receive::{receive_over, Receiver, Sink};
pub use send::{send, send_over, Item, Skipped};

use crate::rke::{self, RkeError, SessionKey};

/// Bytes of file data per channel message by default.
pub const DEFAULT_CHUNK: usize = 256 * 1024;
/// Largest chunk a receiver accepts (a bigger one ends the transfer).
pub const MAX_CHUNK: usize = 1024 * 1024;
/// Channel handshakes the receiver runs at a time (all from the alert's address, the only
/// one admitted): more connections wait in the listen queue, so garbage connections cannot
/// take more than this many slots, and a failed handshake frees its slot.
pub const MAX_HANDSHAKES: usize = 4;
/// Longest one channel handshake may take on the receiver.
pub const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);
/// Files (and streams) per session by default (`raida receive --max-files`).
pub const DEFAULT_MAX_FILES: u64 = 10_000;
/// Bytes per session by default, streams included (`raida receive --max-bytes`): 100 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 100 << 30;
/// No payload progress for this long ends a transfer by default (`--stall-timeout`).
pub const DEFAULT_STALL: Duration = Duration::from_secs(60);
/// How long a sender waits for the receiver's answer to its manifest (a person may be
/// reading the prompt).
pub const DECISION_WAIT: Duration = Duration::from_secs(600);
/// How long a sender waits for a path to the receiver by default: the mailbox's alert TTL,
/// since a receiver may take its alert until then.
pub const DEFAULT_SENDER_WAIT: Duration = Duration::from_secs(raida_proto::mailbox::DEFAULT_ALERT_TTL_SECS);
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
    /// A chunk the receiver does not take within this long ends the transfer.
    pub stall_timeout: Duration,
    /// Listen here (`HOST:PORT`) and offer it to the receiver as a hint (section 9): a
    /// receiver behind NAT can then connect to this sender directly.
    pub listen: Option<String>,
    /// How long to wait for a path to the receiver once the key is sent (a receiver that
    /// takes its alert from the mailbox may come online later, within the alert's TTL).
    pub connect_timeout: Duration,
}

impl Default for SendOptions {
    fn default() -> Self {
        SendOptions {
            rke: rke::SendOptions::default(),
            pq: true,
            chunk_size: DEFAULT_CHUNK,
            rate_limit: None,
            listen: None,
            connect_timeout: DEFAULT_SENDER_WAIT,
            stall_timeout: DEFAULT_STALL,
        }
    }
}

/// What the sender announced before any data: every item, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// The sender's coin, when known (the key exchange's).
    pub peer: Option<CoinName>,
    /// Every item (name, kind and size; a stream's size is unknown, 0).
    pub items: Vec<wire::Offer>,
}

impl Manifest {
    /// Sum of the announced file sizes (streams: unknown, not included).
    pub fn bytes(&self) -> u64 {
        self.items.iter().filter(|o| o.kind == wire::Kind::File).fold(0u64, |a, o| a.saturating_add(o.size))
    }
    /// How many items are streams of unknown size.
    pub fn streams(&self) -> usize {
        self.items.iter().filter(|o| o.kind == wire::Kind::Stream).count()
    }
}

/// Who decides to accept a manifest once its names and sizes passed the checks.
#[derive(Clone, Default)]
pub enum Approval {
    /// Accept only when senders were named ([`ReceiveOptions::accept`] not empty: the key
    /// exchange already refused every other sender); with no list, decline. The default:
    /// nobody's files arrive unasked.
    #[default]
    Listed,
    /// Accept every manifest that passed the checks (`raida receive --yes`).
    Always,
    /// Ask (a person at a terminal): true accepts. Runs on a blocking thread.
    Ask(Arc<dyn Fn(&Manifest) -> bool + Send + Sync>),
}

impl std::fmt::Debug for Approval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Approval::Listed => "Listed",
            Approval::Always => "Always",
            Approval::Ask(_) => "Ask",
        })
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
    /// Who accepts the sender's manifest.
    pub approval: Approval,
    /// At most this many items per session (files and streams).
    pub max_files: u64,
    /// At most this many bytes per session: the manifest's sizes and the bytes that arrive
    /// (streams included).
    pub max_bytes: u64,
    /// No payload from the sender for this long ends the transfer (keepalives do not count).
    pub stall_timeout: Duration,
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
            approval: Approval::default(),
            max_files: DEFAULT_MAX_FILES,
            max_bytes: DEFAULT_MAX_BYTES,
            stall_timeout: DEFAULT_STALL,
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
    /// The channel is up: the peer's coin, its address, the verification phrase, and the
    /// path that carries the data (`direct`, `hint` or `relay`, section 9).
    Connected { peer: String, address: String, phrase: String, session: String, path: String },
    /// The sender's manifest (receiver): every name, how many items and bytes, how many
    /// streams of unknown size. Names are the peer's: show them through [`escape`].
    Manifest { names: Vec<String>, count: usize, bytes: u64, streams: usize },
    /// The receiver accepted the manifest.
    Accepted { count: usize },
    /// An item starts (`resume_from` > 0: that many bytes were already there).
    Started { name: String, size: Option<u64>, resume_from: u64 },
    /// Bytes of the item moved so far (the resumed part included).
    Progress { name: String, bytes: u64, size: Option<u64> },
    /// The receiver confirmed the item (hash matched; `path` where it was written).
    Completed { name: String, bytes: u64, sha256: String, path: Option<String> },
    /// The receiver refused the item.
    Refused { name: String, reason: String },
    /// A folder was created (receiver: `path` where) or confirmed by the receiver (sender).
    Folder { name: String, path: Option<String> },
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
#[non_exhaustive]
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
    #[error("the receiver declined: {0}")]
    Declined(String),
    #[error("the other side ended the transfer: {0}")]
    Aborted(String),
    #[error("no progress for {} s (stall timeout); the transfer was ended", .0.as_secs())]
    Stalled(Duration),
    #[error("{0}")]
    Limit(String),
}

fn io_err(what: impl std::fmt::Display, e: std::io::Error) -> TransferError {
    TransferError::Io(format!("{what}: {e}"))
}

/// The channel settings both sides use: K as PSK, X25519, ML-KEM-768 when `pq`.
pub fn channel_config(key: &SessionKey, pq: bool) -> Result<Config, TransferError> {
    Ok(Config::new(Some(Psk::new(key.as_bytes().to_vec())?), pq))
}

fn connected(ch: &raida_channel::Channel, peer: CoinName, address: SocketAddr, path: DataPath) -> Event {
    Event::Connected {
        peer: peer.to_string(),
        address: address.to_string(),
        phrase: verification_phrase(&ch.transcript_hash()),
        session: hex::encode(ch.session_id()),
        path: path.to_string(),
    }
}

/// A character no peer-chosen name may hold and [`escape`] never lets through: Unicode
/// general categories Cc (control), Cf (format: bidirectional overrides such as U+202E,
/// zero-width characters such as U+200B), Zl and Zp (line and paragraph separators).
pub fn is_forbidden_char(c: char) -> bool {
    use unicode_properties::{GeneralCategory as G, UnicodeGeneralCategory};
    matches!(c.general_category(), G::Control | G::Format | G::LineSeparator | G::ParagraphSeparator)
}

/// Is `name` one plain file-name component a receiver may create in its directory? Not
/// empty, at most 255 bytes, no `/` or `\`, not starting with `.` (dot-files such as
/// `.bash_profile`, and `.`/`..`) or `-` (read as an option by other tools), and no
/// character for which [`is_forbidden_char`] holds.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty name".into());
    }
    if name.len() > wire::MAX_NAME {
        return Err("name longer than 255 bytes".into());
    }
    if name.contains(['/', '\\']) {
        return Err(format!("{} has a path separator (only a plain file name is accepted)", escape(name)));
    }
    if name.starts_with('.') {
        return Err(format!("{} starts with a dot (hidden files are not accepted)", escape(name)));
    }
    if name.starts_with('-') {
        return Err(format!("{} starts with a dash (it would read as an option)", escape(name)));
    }
    if name.chars().any(is_forbidden_char) {
        return Err(format!("{} has control, format or separator characters", escape(name)));
    }
    Ok(())
}

/// Is `path` a relative path a receiver may create under its directory? Not empty, at
/// most [`wire::MAX_PATH`] bytes, not starting with `/` (absolute), and every
/// `/`-separated component passing [`check_name`] (so no empty component, no `.` or `..`,
/// no `\`, no hidden component).
pub fn check_path(path: &str) -> Result<(), String> {
    if path.len() > wire::MAX_PATH {
        return Err("path longer than 4096 bytes".into());
    }
    if path.starts_with('/') {
        return Err(format!("{} is an absolute path (only paths inside the folder are accepted)", escape(path)));
    }
    for component in path.split('/') {
        check_name(component).map_err(
            |why| {
                if path.contains('/') {
                    format!("{}: {why}", escape(path))
                } else {
                    why
                }
            },
        )?;
    }
    Ok(())
}

/// A peer-chosen string made safe to show on a terminal: every character for which
/// [`is_forbidden_char`] holds becomes `\u{XXXX}` and a backslash becomes `\\`, so the
/// output has none of them and still tells the original apart.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '\\' {
            out.push_str("\\\\");
        } else if is_forbidden_char(c) {
            out.push_str(&format!("\\u{{{:04X}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// Where the partial file of an offered file lives, inside [`PARTIAL_DIR`]: the same name
/// and size map to the same partial file, so sending the same file again resumes it (after
/// the sender checked the partial bytes against its own by hash).
fn partial_name(offer: &wire::Offer) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"raida-transfer partial v1");
    h.update((offer.name.len() as u64).to_be_bytes());
    h.update(offer.name.as_bytes());
    h.update(offer.size.to_be_bytes());
    format!("file-{}", hex::encode(&h.finalize()[..16]))
}

/// `now + d`, capped far in the future (a huge timeout is no deadline in practice); Some
/// always, so that an optional timeout (`key_timeout`) and a set one share the callers.
fn deadline_after(d: Duration) -> Option<tokio::time::Instant> {
    // the one capped deadline of the workspace (raida_proto::time): never an overflow
    Some(raida_proto::time::deadline_from(tokio::time::Instant::now(), d))
}

/// Sleep until `deadline`; forever when there is none.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
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
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "/etc/x",
            "a/b",
            "a\\b",
            "x\u{0}y",
            "x\ny",
            ".raida-partial",
            ".bashrc",
            "..a",
            "-rf",
            "evil\u{202E}gpj.exe",
            "zero\u{200B}width",
            "line\u{2028}sep",
            "para\u{2029}sep",
            "tag\u{E0001}",
            &"a".repeat(256),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["a.txt", "a..b", "photo 1.jpg", "ünïcode", "x-y", "日本語.txt", &"a".repeat(255)] {
            assert!(check_name(good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn hostile_paths_are_refused_and_plain_ones_accepted() {
        for bad in [
            "",
            "/etc/passwd",
            "/",
            "a/../b",
            "../a",
            "a/..",
            "a/./b",
            "a//b",
            "a/",
            "a/.ssh/authorized_keys",
            "a\\b/c",
            "a/-rf",
            "a/x\u{202E}y",
            &format!("a/{}", "b".repeat(256)),
            &"a/".repeat(2049),
        ] {
            assert!(check_path(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["a", "a/b", "top/sub dir/ünï.txt", "a..b/c", &format!("{}/x", "d".repeat(255))] {
            assert!(check_path(good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn escape_removes_every_forbidden_character_and_keeps_the_rest() {
        assert_eq!(escape("a\u{202E}b\nc\\d"), "a\\u{202E}b\\u{000A}c\\\\d");
        assert_eq!(escape("plain name.txt"), "plain name.txt");
        assert!(!escape("\u{1b}[31mred\u{7}").chars().any(is_forbidden_char));
    }
}
