//! The receiving side: the key, then the channel on the same port, then each item into a
//! directory (partial file, hash check, rename) or one writer (stdout).

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Instant;

use raida_channel::{Channel, Incoming};
use raida_proto::commands::post_key::CoinName;
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::wire::{self, Kind, Offer};
use super::{
    channel_config, check_name, coin_text, connected, io_err, partial_name, Event, ReceiveOptions, Summary,
    TransferError, MAX_CHUNK, MAX_HANDSHAKE_FAILURES, PARTIAL_PREFIX, QUEUE,
};
use crate::network::Network;
use crate::rke::{AlertOutcome, KeyReceiver, Received, RkeError};
use crate::wallet::Wallet;

/// Where received items go.
pub enum Sink {
    /// Each item as `DIR/NAME` (must exist), through a partial file; resumable.
    Directory(PathBuf),
    /// Every item's bytes, in order, to one writer (stdout); not resumable.
    Writer(Box<dyn Write + Send>),
}

/// The receiver: bound to its port (UDP and TCP) until [`Receiver::receive`] is done.
pub struct Receiver {
    keys: KeyReceiver,
    coin: CoinName,
    opts: ReceiveOptions,
}

impl Receiver {
    /// Listen on `listen` (`HOST:PORT`; port 0 picks one) for the key, then the channel.
    pub async fn bind(
        listen: &str,
        network: Network,
        wallet: Wallet,
        opts: ReceiveOptions,
    ) -> Result<Receiver, TransferError> {
        let coin = wallet.name();
        let rke_opts = crate::rke::ReceiveOptions { accept: opts.accept.clone(), ..opts.rke.clone() };
        let keys = KeyReceiver::bind(listen, network, wallet, rke_opts).await?;
        Ok(Receiver { keys, coin, opts })
    }

    /// The bound address (UDP and TCP).
    pub fn local_addr(&self) -> SocketAddr {
        self.keys.local_addr()
    }

    /// This receiver's coin.
    pub fn coin(&self) -> CoinName {
        self.coin
    }

    /// Wait for a key from an accepted sender, accept its channel, receive every item.
    pub async fn receive<F: FnMut(&Event) + Send>(
        mut self,
        sink: Sink,
        events: &mut F,
    ) -> Result<Summary, TransferError> {
        if let Sink::Directory(dir) = &sink {
            if !dir.is_dir() {
                return Err(TransferError::Io(format!("{}: not a directory", dir.display())));
            }
        }
        events(&Event::Listening { coin: coin_text(self.coin), address: self.local_addr().to_string() });
        let received = self.wait_for_key(events).await?;
        events(&Event::KeyExchanged { peer: coin_text(received.sender) });
        let cfg = channel_config(&received.session_key, self.opts.pq)?;
        let listener = self.keys.into_listener();
        let (ch, from) = accept_channel(&listener, received.from.ip(), cfg, self.opts.connect_timeout).await?;
        drop(listener);
        events(&connected(&ch, received.sender, from));
        receive_over(ch, sink, self.opts.overwrite, events).await
    }

    async fn wait_for_key<F: FnMut(&Event) + Send>(&mut self, events: &mut F) -> Result<Received, TransferError> {
        let deadline = self.opts.key_timeout.map(|t| raida_proto::time::deadline_from(tokio::time::Instant::now(), t));
        let mut last = None;
        loop {
            let next = self.keys.next_alert();
            let outcome = match deadline {
                Some(d) => match tokio::time::timeout_at(d, next).await {
                    Ok(o) => o,
                    Err(_) => return Err(RkeError::Timeout(self.opts.key_timeout.unwrap_or_default(), last).into()),
                },
                None => next.await,
            };
            match outcome {
                AlertOutcome::Accepted(r) => return Ok(r),
                AlertOutcome::Refused { from, status, reason } => {
                    let reason = format!("{status}: {reason}");
                    events(&Event::KeyRefused { from: from.to_string(), reason: reason.clone() });
                    last = Some(reason);
                }
            }
        }
    }
}

/// Accept the sender's channel on the key receiver's TCP listener: only connections from
/// the address the alert came from, each handshake within the channel's timeout, and at
/// most [`MAX_HANDSHAKE_FAILURES`] failures (a wrong key fails the key confirmation).
async fn accept_channel(
    listener: &TcpListener,
    sender_ip: IpAddr,
    cfg: raida_channel::Config,
    wait: std::time::Duration,
) -> Result<(Channel, SocketAddr), TransferError> {
    let deadline = raida_proto::time::deadline_from(tokio::time::Instant::now(), wait);
    let mut failures = 0;
    let mut last = String::from("no connection");
    loop {
        let accepted = tokio::time::timeout_at(deadline, listener.accept()).await.map_err(|_| {
            TransferError::Connect(format!("the sender did not open the channel within {wait:?} ({last})"))
        })?;
        let (stream, from) = match accepted {
            Ok(x) => x,
            Err(e) => {
                last = e.to_string();
                continue;
            }
        };
        if from.ip() != sender_ip {
            tracing::warn!(%from, "channel connection from another address than the Key Alert's; dropped");
            continue;
        }
        let _ = stream.set_nodelay(true);
        match tokio::time::timeout_at(deadline, Channel::accept(stream, cfg.clone())).await {
            Ok(Ok(ch)) => return Ok((ch, from)),
            Ok(Err(e)) => {
                failures += 1;
                tracing::warn!(%from, error = %e, "channel handshake failed");
                last = e.to_string();
                if failures >= MAX_HANDSHAKE_FAILURES {
                    return Err(TransferError::Channel(e));
                }
            }
            Err(_) => return Err(TransferError::Connect(format!("the handshake did not finish within {wait:?}"))),
        }
    }
}

/// Output of one item: a file (fsync'ed at the end) or the shared writer.
enum Out {
    File(std::fs::File),
    Writer(Box<dyn Write + Send>),
}

impl Out {
    fn write_all(&mut self, b: &[u8]) -> std::io::Result<()> {
        match self {
            Out::File(f) => f.write_all(b),
            Out::Writer(w) => w.write_all(b),
        }
    }
    fn finish(&mut self) -> std::io::Result<()> {
        match self {
            Out::File(f) => f.sync_all(),
            Out::Writer(w) => w.flush(),
        }
    }
}

/// What the writer hands back: the output, and the item's length and SHA-256.
type Written = (Out, std::io::Result<(u64, [u8; 32])>);

/// The disk side of one item, on a blocking thread: bytes in, written and hashed.
fn write_chunks(mut out: Out, mut hasher: Sha256, mut written: u64, mut rx: mpsc::Receiver<Vec<u8>>) -> Written {
    while let Some(buf) = rx.blocking_recv() {
        let data = buf.get(1..).unwrap_or_default();
        if let Err(e) = out.write_all(data) {
            return (out, Err(e));
        }
        hasher.update(data);
        written += data.len() as u64;
    }
    let r = out.finish().map(|()| (written, hasher.finalize().into()));
    (out, r)
}

/// SHA-256 state after the first `len` bytes of a partial file; O_NOFOLLOW: no symlink
/// swapped in after the caller's check.
fn hash_prefix(path: &Path, len: u64) -> std::io::Result<Sha256> {
    super::hash_prefix(path, len, false)
}

/// Open (or create) the partial file, keeping its first `keep` bytes. O_NOFOLLOW: a symlink
/// planted under the partial name (by another local user sharing the output directory)
/// must not make us truncate and write the file it points to.
fn open_partial(path: &Path, keep: u64) -> std::io::Result<std::fs::File> {
    use std::io::{Seek, SeekFrom};
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    f.set_len(keep)?;
    f.seek(SeekFrom::Start(keep))?;
    Ok(f)
}

/// An offered item the receiver accepted.
struct Accepted {
    offer: Offer,
    /// Partial file and final path (directory sink).
    paths: Option<(PathBuf, PathBuf)>,
    /// Bytes already in the partial file, and the hash state after them.
    have: u64,
    prefix: Sha256,
}

/// An item being written.
struct Writing {
    item: Accepted,
    tx: mpsc::Sender<Vec<u8>>,
    writer: tokio::task::JoinHandle<Written>,
    received: u64,
    start: u64,
}

enum State {
    Idle,
    Offered(Accepted),
    Writing(Writing),
}

/// Receive items over an established channel (the other end runs [`super::send_over`])
/// until the sender ends it. Any rejected record, any protocol violation and any refused
/// item end the transfer with an error.
pub async fn receive_over<F: FnMut(&Event) + Send>(
    mut ch: Channel,
    sink: Sink,
    overwrite: bool,
    events: &mut F,
) -> Result<Summary, TransferError> {
    let started = Instant::now();
    let (dir, mut shared) = match sink {
        Sink::Directory(d) => (Some(d), None),
        Sink::Writer(w) => (None, Some(w)),
    };
    let mut summary = Summary::default();
    let mut state = State::Idle;
    let r = receive_items(&mut ch, dir.as_deref(), &mut shared, overwrite, &mut state, &mut summary, events).await;
    if let State::Writing(w) = std::mem::replace(&mut state, State::Idle) {
        // an interrupted item: its partial file is complete and closed before we return
        let _ = finish_writer(w, &mut shared).await;
    }
    r?;
    // the sender shuts down next; acknowledging it ends the driver
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), ch.closed()).await;
    events(&Event::Finished {
        items: summary.items.len(),
        bytes: summary.bytes,
        seconds: started.elapsed().as_secs_f64(),
    });
    Ok(summary)
}

/// The message loop of [`receive_over`], until the sender's end of data.
async fn receive_items<F: FnMut(&Event) + Send>(
    ch: &mut Channel,
    dir: Option<&Path>,
    shared: &mut Option<Box<dyn Write + Send>>,
    overwrite: bool,
    state: &mut State,
    summary: &mut Summary,
    events: &mut F,
) -> Result<(), TransferError> {
    let protocol = |what: &str| TransferError::Protocol(format!("the sender broke the protocol: {what}"));
    loop {
        let incoming = match ch.recv().await {
            None => {
                return Err(TransferError::Protocol("the channel closed before the sender finished".into()));
            }
            // fail closed: a tampered, replayed or misordered record ends the transfer
            Some(Err(e)) => return Err(TransferError::Channel(e)),
            Some(Ok(i)) => i,
        };
        match incoming {
            Incoming::End => {
                if matches!(state, State::Writing(_)) {
                    return Err(TransferError::Protocol("the sender ended in the middle of an item".into()));
                }
                if matches!(state, State::Offered(_)) {
                    return Err(protocol("ended after an offer"));
                }
                break;
            }
            Incoming::Request { id, data } => match data.first() {
                Some(&wire::OFFER) if matches!(state, State::Idle) => {
                    let offer = wire::decode_offer(&data).map_err(protocol)?;
                    match accept_offer(offer, dir, overwrite, shared.is_some()).await {
                        Ok(acc) => {
                            let prefix: [u8; 32] = acc.prefix.clone().finalize().into();
                            ch.respond(id, wire::encode_accept(acc.have, &prefix)).await?;
                            *state = State::Offered(acc);
                        }
                        Err((name, reason)) => {
                            ch.respond(id, wire::encode_refused(&reason)).await?;
                            events(&Event::Refused { name: name.clone(), reason: reason.clone() });
                            return Err(TransferError::Refused { name, reason });
                        }
                    }
                }
                Some(&wire::DONE) => {
                    let State::Writing(w) = std::mem::replace(state, State::Idle) else {
                        return Err(protocol("done without an item"));
                    };
                    let claimed = wire::decode_done(&data).ok_or_else(|| protocol("malformed done"))?;
                    match complete(w, claimed, shared, overwrite).await {
                        Ok((name, bytes, hash, path, moved)) => {
                            ch.respond(id, vec![wire::OK]).await?;
                            events(&Event::Completed {
                                name: name.clone(),
                                bytes,
                                sha256: hex::encode(hash),
                                path: path.map(|p| p.display().to_string()),
                            });
                            summary.items.push((name, hash));
                            summary.bytes += moved;
                        }
                        Err((name, reason)) => {
                            let _ = ch.respond(id, wire::encode_refused(&reason)).await;
                            events(&Event::Refused { name: name.clone(), reason: reason.clone() });
                            return Err(TransferError::Refused { name, reason });
                        }
                    }
                }
                _ => return Err(protocol("unexpected request")),
            },
            Incoming::Data(data) => match data.first() {
                Some(&wire::START) => {
                    let State::Offered(item) = std::mem::replace(state, State::Idle) else {
                        return Err(protocol("start without an offer"));
                    };
                    let offset = wire::decode_start(&data).ok_or_else(|| protocol("malformed start"))?;
                    if offset != 0 && offset != item.have {
                        return Err(protocol("start at an offset the receiver did not offer"));
                    }
                    let w = start_writer(item, offset, shared).await?;
                    let size = (w.item.offer.kind == Kind::File).then_some(w.item.offer.size);
                    events(&Event::Started { name: w.item.offer.name.clone(), size, resume_from: offset });
                    *state = State::Writing(w);
                }
                Some(&wire::CHUNK) => {
                    let State::Writing(w) = state else {
                        return Err(protocol("data without an item"));
                    };
                    let n = (data.len() - 1) as u64;
                    if data.len() - 1 > MAX_CHUNK {
                        return Err(protocol("chunk larger than 1 MiB"));
                    }
                    let total = w.start + w.received + n;
                    if w.item.offer.kind == Kind::File && total > w.item.offer.size {
                        return Err(protocol("more bytes than offered"));
                    }
                    if w.tx.send(data).await.is_err() {
                        // the writer stopped on an error: take it out and report it
                        let State::Writing(w) = std::mem::replace(state, State::Idle) else {
                            return Err(TransferError::Io("writer stopped".into()));
                        };
                        let (_, r) = finish_writer(w, shared).await;
                        return Err(r.err().unwrap_or_else(|| TransferError::Io("writer stopped".into())));
                    }
                    w.received += n;
                    let size = (w.item.offer.kind == Kind::File).then_some(w.item.offer.size);
                    events(&Event::Progress { name: w.item.offer.name.clone(), bytes: total, size });
                }
                _ => return Err(protocol("unexpected message")),
            },
        }
    }
    Ok(())
}

/// Check an offer and find what we already hold of it. Err: (name, reason) to refuse.
async fn accept_offer(
    offer: Offer,
    dir: Option<&Path>,
    overwrite: bool,
    to_writer: bool,
) -> Result<Accepted, (String, String)> {
    let name = offer.name.clone();
    let refuse = |reason: String| (name.clone(), reason);
    if to_writer {
        return Ok(Accepted { offer, paths: None, have: 0, prefix: Sha256::new() });
    }
    check_name(&offer.name).map_err(refuse)?;
    let Some(dir) = dir else { return Err(refuse("no output".into())) };
    let dest = dir.join(&offer.name);
    if !overwrite && std::fs::symlink_metadata(&dest).is_ok() {
        return Err(refuse(format!("{} exists (the receiver did not allow --overwrite)", dest.display())));
    }
    let partial = match offer.kind {
        Kind::File => dir.join(partial_name(&offer)),
        Kind::Stream => {
            let mut r = [0u8; 16];
            OsRng.fill_bytes(&mut r);
            dir.join(format!("{PARTIAL_PREFIX}{}", hex::encode(r)))
        }
    };
    let mut have = 0;
    let mut prefix = Sha256::new();
    if offer.kind == Kind::File {
        if let Ok(meta) = std::fs::symlink_metadata(&partial) {
            if meta.is_file() && meta.len() <= offer.size {
                let p = partial.clone();
                let len = meta.len();
                if let Ok(Ok(h)) = tokio::task::spawn_blocking(move || hash_prefix(&p, len)).await {
                    have = len;
                    prefix = h;
                }
            }
        }
    }
    Ok(Accepted { offer, paths: Some((partial, dest)), have, prefix })
}

async fn start_writer(
    item: Accepted,
    offset: u64,
    shared: &mut Option<Box<dyn Write + Send>>,
) -> Result<Writing, TransferError> {
    let (out, hasher) = match &item.paths {
        Some((partial, _)) => {
            let p = partial.clone();
            let f = tokio::task::spawn_blocking(move || open_partial(&p, offset))
                .await
                .map_err(|e| TransferError::Io(e.to_string()))?
                .map_err(|e| io_err(partial.display(), e))?;
            let hasher = if offset == 0 { Sha256::new() } else { item.prefix.clone() };
            (Out::File(f), hasher)
        }
        None => (Out::Writer(shared.take().ok_or_else(|| TransferError::Io("no output".into()))?), Sha256::new()),
    };
    let (tx, rx) = mpsc::channel(QUEUE);
    let writer = tokio::task::spawn_blocking(move || write_chunks(out, hasher, offset, rx));
    Ok(Writing { item, tx, writer, received: 0, start: offset })
}

/// Stop the writer: hand a shared writer back; the bytes in the item and their hash.
async fn finish_writer(
    w: Writing,
    shared: &mut Option<Box<dyn Write + Send>>,
) -> (Accepted, Result<(u64, [u8; 32]), TransferError>) {
    drop(w.tx);
    let item = w.item;
    match w.writer.await {
        Ok((out, r)) => {
            if let Out::Writer(o) = out {
                *shared = Some(o);
            }
            let r = r.map_err(|e| io_err(&item.offer.name, e));
            (item, r)
        }
        Err(e) => (item, Err(TransferError::Io(format!("writer: {e}")))),
    }
}

type Completed = (String, u64, [u8; 32], Option<PathBuf>, u64);

/// DONE: the size must match the offer and our hash of every byte the one in DONE, then
/// the partial file becomes the named file. Err: (name, reason) to refuse; the partial file is removed
/// on a mismatch (its bytes are not the offered ones).
async fn complete(
    w: Writing,
    claimed: [u8; 32],
    shared: &mut Option<Box<dyn Write + Send>>,
    overwrite: bool,
) -> Result<Completed, (String, String)> {
    let moved = w.received;
    let (item, r) = finish_writer(w, shared).await;
    let name = item.offer.name.clone();
    let (bytes, hash) = r.map_err(|e| (name.clone(), e.to_string()))?;
    let size_ok = item.offer.kind == Kind::Stream || bytes == item.offer.size;
    // hashes of data the peer sent: no secret to time
    let ok = size_ok && hash == claimed;
    let Some((partial, dest)) = item.paths else {
        return if ok { Ok((name, bytes, hash, None, moved)) } else { Err((name, "SHA-256 mismatch".into())) };
    };
    if !ok {
        let _ = std::fs::remove_file(&partial);
        return Err((name, format!("SHA-256 or size mismatch ({bytes} bytes); the partial file was removed")));
    }
    let placed = if overwrite {
        std::fs::rename(&partial, &dest)
    } else {
        // a hard link never replaces a file that appeared meanwhile
        std::fs::hard_link(&partial, &dest).and_then(|()| std::fs::remove_file(&partial))
    };
    placed.map_err(|e| (name.clone(), format!("cannot create {}: {e}", dest.display())))?;
    if let Some(parent) = dest.parent() {
        // the rename survives a crash once the directory is on disk
        if let Ok(d) = std::fs::File::open(parent) {
            let _ = d.sync_all();
        }
    }
    Ok((name, bytes, hash, Some(dest), moved))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symlink_planted_as_the_partial_file_is_not_followed() {
        let out = tempfile::tempdir().expect("tempdir");
        let elsewhere = tempfile::tempdir().expect("tempdir");
        let victim = elsewhere.path().join("victim");
        std::fs::write(&victim, b"precious").expect("write");
        let partial = out.path().join(format!("{PARTIAL_PREFIX}00"));
        std::os::unix::fs::symlink(&victim, &partial).expect("symlink");
        for keep in [0, 3] {
            let r = open_partial(&partial, keep);
            assert!(r.is_err(), "the symlink was followed (keep {keep})");
        }
        assert!(hash_prefix(&partial, 3).is_err());
        assert_eq!(std::fs::read(&victim).expect("read"), b"precious");
        // a regular partial file still opens and keeps its prefix
        let real = out.path().join(format!("{PARTIAL_PREFIX}01"));
        std::fs::write(&real, b"abcdef").expect("write");
        drop(open_partial(&real, 3).expect("open"));
        assert_eq!(std::fs::read(&real).expect("read"), b"abc");
    }
    fn psk_config(k: u8) -> raida_channel::Config {
        raida_channel::Config::new(Some(raida_channel::Psk::new(vec![k; 32]).expect("psk")), false)
    }

    #[tokio::test]
    async fn the_channel_is_refused_after_three_failed_handshakes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let wait = std::time::Duration::from_secs(20);
        let accepting =
            tokio::spawn(async move { accept_channel(&listener, addr.ip(), psk_config(1), wait).await.map(|_| ()) });
        // three senders with a wrong key, then one with the right key: the limit was
        // reached before it, so the receiver has already given up
        let mut right = None;
        for k in [2u8, 3, 4, 1] {
            let Ok(tcp) = tokio::net::TcpStream::connect(addr).await else { break };
            let r = tokio::time::timeout(wait, Channel::connect(tcp, psk_config(k))).await;
            if k == 1 {
                right = Some(matches!(r, Ok(Ok(_))));
            } else {
                assert!(!matches!(r, Ok(Ok(_))), "a wrong key got a channel");
            }
        }
        let r = tokio::time::timeout(wait, accepting).await.expect("accept_channel ended").expect("join");
        assert!(matches!(r, Err(TransferError::Channel(_))), "{r:?}");
        assert_ne!(right, Some(true), "a fourth handshake was accepted after three failures");
    }
}
