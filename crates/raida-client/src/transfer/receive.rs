//! The receiving side: the key, then the channel on the same port, then the sender's
//! manifest (checked, then approved), then each item into a directory (a partial file in
//! `DIR/.raida-partial/`, hash check, link into place) or one writer (stdout).

use std::io::{Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use raida_channel::{Channel, Incoming};
use raida_proto::commands::post_key::CoinName;
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::partial::PartialDir;
use super::path::{receiver_channel, relays_of, Paths};
use super::wire::{self, Kind, Offer};
use super::{
    channel_config, check_path, connected, deadline_after, escape, io_err, partial_name, Approval, Event, Manifest,
    ReceiveOptions, Summary, TransferError, MAX_CHUNK, QUEUE,
};
use crate::rke::{AlertOutcome, AlertSource, KeyReceiver, Received, RkeError};
use raida_net::network::Network;
use raida_store::wallet::Wallet;

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
    /// The network file's relays (the data path's last resort).
    relays: Vec<String>,
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
        let relays = relays_of(&network);
        let rke_opts = crate::rke::ReceiveOptions { accept: opts.accept.clone(), ..opts.rke.clone() };
        let keys = KeyReceiver::bind(listen, network, wallet, rke_opts).await?;
        Ok(Receiver { keys, coin, opts, relays })
    }

    /// Take the key from the mailbox only and open no port (section 9): the data then comes
    /// through a sender hint or a relay.
    pub async fn mailbox(network: Network, wallet: Wallet, opts: ReceiveOptions) -> Result<Receiver, TransferError> {
        let coin = wallet.name();
        let relays = relays_of(&network);
        let rke_opts = crate::rke::ReceiveOptions { accept: opts.accept.clone(), ..opts.rke.clone() };
        let keys = KeyReceiver::mailbox(network, wallet, rke_opts).await?;
        Ok(Receiver { keys, coin, opts, relays })
    }

    /// The bound address (UDP and TCP), when it listens.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.keys.local_addr()
    }

    /// The mailbox RAIDAs it takes alerts from.
    pub fn mailbox_raidas(&self) -> Vec<u8> {
        self.keys.mailbox_raidas()
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
        let address = match self.local_addr() {
            Some(a) => a.to_string(),
            None => format!("mailbox (RAIDAs {:?})", self.mailbox_raidas()),
        };
        events(&Event::Listening { coin: self.coin.to_string(), address });
        let received = self.wait_for_key(events).await?;
        events(&Event::KeyExchanged { peer: received.sender.to_string() });
        let cfg = channel_config(&received.session_key, self.opts.pq)?;
        let listener = self.keys.into_listener();
        // after a direct 42, only its source may connect (the bounds are per address then)
        let only_from = match received.source {
            AlertSource::Direct(a) => Some(a.ip()),
            AlertSource::Mailbox { .. } => None,
        };
        let paths = Paths {
            connect: received.hints.clone(),
            listener: listener.as_ref(),
            only_from,
            relays: self.relays.clone(),
            rendezvous: received.rendezvous,
        };
        let (ch, path, from, first) =
            receiver_channel(paths, cfg, self.opts.connect_timeout, self.opts.stall_timeout).await?;
        drop(listener);
        events(&connected(&ch, received.sender, from, path));
        receive_session(ch, sink, &self.opts, Some(received.sender), Some(first), events).await
    }

    async fn wait_for_key<F: FnMut(&Event) + Send>(&mut self, events: &mut F) -> Result<Received, TransferError> {
        // checked: a huge timeout means no deadline, never an overflow
        let deadline = self.opts.key_timeout.and_then(deadline_after);
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
                AlertOutcome::MailboxUnreachable { reason } => {
                    events(&Event::KeyRefused { from: "mailbox".into(), reason: reason.clone() });
                    last = Some(reason);
                }
            }
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

/// SHA-256 state after the first `len` bytes of an open partial file (read from its start).
fn hash_prefix(f: &mut std::fs::File, len: u64) -> std::io::Result<Sha256> {
    f.seek(SeekFrom::Start(0))?;
    let mut r = (&*f).take(len);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        got += n as u64;
    }
    if got != len {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "partial file shorter than its size"));
    }
    Ok(h)
}

/// Keep the first `keep` bytes of an open partial file and position after them.
fn keep_prefix(f: &mut std::fs::File, keep: u64) -> std::io::Result<()> {
    f.set_len(keep)?;
    f.seek(SeekFrom::Start(keep))?;
    Ok(())
}

/// Where an accepted item goes in a directory sink.
struct Placement {
    partials: Arc<PartialDir>,
    /// The partial file's name in [`super::PARTIAL_DIR`], and the file, open.
    partial: String,
    file: Option<std::fs::File>,
    /// The output name in the directory.
    dest: String,
}

/// An offered item the receiver accepted.
struct Accepted {
    offer: Offer,
    /// Partial file and final name (directory sink).
    place: Option<Placement>,
    /// Bytes already in the partial file, and the hash state after them.
    have: u64,
    prefix: Sha256,
    /// The file is already in place with the offered size (a rerun of an interrupted
    /// folder): `have` is its size, `prefix` its hash; it is kept when the sender's hash
    /// is the same, and the transfer ends when it is not (no --overwrite).
    existing: bool,
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
    /// An item already in place: only its DONE (same hash) may follow.
    Existing(Accepted),
}

/// Receive items over an established channel (the other end runs [`super::send_over`])
/// until the sender ends it: first the manifest (checked against the names and limits of
/// `opts`, then approved by `opts.approval`), then each item. Any rejected record, any
/// protocol violation, any refused item, a stall and an exceeded limit end the transfer
/// with an error.
pub async fn receive_over<F: FnMut(&Event) + Send>(
    ch: Channel,
    sink: Sink,
    opts: &ReceiveOptions,
    events: &mut F,
) -> Result<Summary, TransferError> {
    receive_session(ch, sink, opts, None, None, events).await
}

/// End the transfer: tell the sender why (best effort), then return `err`.
async fn abort(ch: &Channel, reason: &str, err: TransferError) -> TransferError {
    let _ = tokio::time::timeout(Duration::from_secs(5), ch.send(wire::encode_abort(reason))).await;
    err
}

/// One channel message, or [`TransferError::Stalled`] when none came within `stall` (the
/// channel's keepalives are answered inside the channel and never arrive here, so they do
/// not count as progress).
async fn next(ch: &mut Channel, stall: Duration) -> Result<Incoming, TransferError> {
    let got = match deadline_after(stall) {
        Some(d) => tokio::time::timeout_at(d, ch.recv()).await.map_err(|_| TransferError::Stalled(stall))?,
        None => ch.recv().await,
    };
    match got {
        None => Err(TransferError::Protocol("the channel closed before the sender finished".into())),
        // fail closed: a tampered, replayed or misordered record ends the transfer
        Some(Err(e)) => Err(TransferError::Channel(e)),
        Some(Ok(Incoming::Data(d))) if d.first() == Some(&wire::ABORT) => {
            let reason = match wire::decode_decision(&d) {
                Some(Err(r)) => r,
                _ => String::from("no reason given"),
            };
            Err(TransferError::Aborted(escape(&reason)))
        }
        Some(Ok(i)) => Ok(i),
    }
}

/// Check a manifest against the names and limits; Err(reason) to decline.
fn check_manifest(m: &Manifest, to_directory: bool, opts: &ReceiveOptions) -> Result<(), String> {
    let count = m.items.len() as u64;
    if count > opts.max_files {
        return Err(format!(
            "{count} items is more than this receiver accepts at once (--max-files {})",
            opts.max_files
        ));
    }
    if m.bytes() > opts.max_bytes {
        return Err(format!(
            "{} bytes is more than this receiver accepts at once (--max-bytes {})",
            m.bytes(),
            opts.max_bytes
        ));
    }
    for o in &m.items {
        if o.kind == Kind::Directory {
            if !to_directory {
                return Err("folders cannot go to one stream (--stdout): receive them into a folder (-o DIR)".into());
            }
            if o.size != 0 {
                return Err(format!("folder {} announced with a size", escape(&o.name)));
            }
        }
        if to_directory {
            // every path of the manifest, before anything is written
            check_path(&o.name)?;
        }
    }
    Ok(())
}

/// The session on the receiver: manifest, approval, items.
pub(super) async fn receive_session<F: FnMut(&Event) + Send>(
    mut ch: Channel,
    sink: Sink,
    opts: &ReceiveOptions,
    peer: Option<CoinName>,
    first: Option<Incoming>,
    events: &mut F,
) -> Result<Summary, TransferError> {
    let started = Instant::now();
    let (dir, mut shared) = match sink {
        Sink::Directory(d) => (Some(d), None),
        Sink::Writer(w) => (None, Some(w)),
    };
    // the manifest, before anything else (already read when the data path chose the stream)
    let first = match first {
        Some(Incoming::Data(d)) if d.first() == Some(&wire::ABORT) => {
            let reason = match wire::decode_decision(&d) {
                Some(Err(r)) => r,
                _ => String::from("no reason given"),
            };
            return Err(TransferError::Aborted(escape(&reason)));
        }
        Some(i) => i,
        None => match next(&mut ch, opts.stall_timeout).await {
            Ok(i) => i,
            Err(e @ TransferError::Stalled(_)) => return Err(abort(&ch, "no manifest from the sender", e).await),
            Err(e) => return Err(e),
        },
    };
    let items = match first {
        Incoming::Data(d) => wire::decode_manifest(&d).map_err(|e| format!("the sender broke the protocol: {e}")),
        _ => Err("the sender broke the protocol: no manifest first".to_string()),
    };
    let items = match items {
        Ok(i) => i,
        Err(reason) => return Err(abort(&ch, &reason, TransferError::Protocol(reason.clone())).await),
    };
    let manifest = Manifest { peer, items };
    events(&Event::Manifest {
        names: manifest.items.iter().map(|o| o.name.clone()).collect(),
        count: manifest.items.len(),
        bytes: manifest.bytes(),
        streams: manifest.streams(),
    });
    if let Err(reason) = check_manifest(&manifest, dir.is_some(), opts) {
        return Err(abort(&ch, &reason, TransferError::Declined(reason.clone())).await);
    }
    let approved = match &opts.approval {
        Approval::Always => Ok(()),
        Approval::Listed if !opts.accept.is_empty() => Ok(()),
        Approval::Listed => Err("the receiver named no sender (--from) and did not say --yes".to_string()),
        Approval::Ask(ask) => {
            let (ask, m) = (ask.clone(), manifest.clone());
            match tokio::task::spawn_blocking(move || ask(&m)).await {
                Ok(true) => Ok(()),
                _ => Err("the person at the receiver said no".to_string()),
            }
        }
    };
    if let Err(reason) = approved {
        return Err(abort(&ch, &reason, TransferError::Declined(reason.clone())).await);
    }
    let partials = match &dir {
        Some(d) => match PartialDir::open(d) {
            Ok(p) => Some(Arc::new(p)),
            Err(e) => return Err(abort(&ch, "the receiver cannot write its partial files", e).await),
        },
        None => None,
    };
    ch.send(vec![wire::ACCEPTED]).await?;
    events(&Event::Accepted { count: manifest.items.len() });
    let mut summary = Summary::default();
    let mut state = State::Idle;
    let mut session = Session { manifest: &manifest, next: 0, bytes: 0, opts };
    let r =
        receive_items(&mut ch, partials.as_ref(), &mut shared, &mut session, &mut state, &mut summary, events).await;
    if let State::Writing(w) = std::mem::replace(&mut state, State::Idle) {
        // an interrupted item: its partial file is complete and closed before we return
        let _ = finish_writer(w, &mut shared).await;
    }
    let r = match r {
        Err(e @ (TransferError::Stalled(_) | TransferError::Limit(_))) => {
            let reason = e.to_string();
            Err(abort(&ch, &reason, e).await)
        }
        r => r,
    };
    if let Some(p) = &partials {
        // removed when nothing is left to resume
        p.finish();
    }
    r?;
    // the sender shuts down next; acknowledging it ends the driver
    let _ = tokio::time::timeout(Duration::from_secs(10), ch.closed()).await;
    events(&Event::Finished {
        items: summary.items.len(),
        bytes: summary.bytes,
        seconds: started.elapsed().as_secs_f64(),
    });
    Ok(summary)
}

/// What the session has seen against what the manifest announced.
struct Session<'a> {
    manifest: &'a Manifest,
    /// Index of the next offer in the manifest.
    next: usize,
    /// Payload bytes received in this session (every item, streams included).
    bytes: u64,
    opts: &'a ReceiveOptions,
}

/// The message loop of [`receive_over`], until the sender's end of data.
async fn receive_items<F: FnMut(&Event) + Send>(
    ch: &mut Channel,
    partials: Option<&Arc<PartialDir>>,
    shared: &mut Option<Box<dyn Write + Send>>,
    session: &mut Session<'_>,
    state: &mut State,
    summary: &mut Summary,
    events: &mut F,
) -> Result<(), TransferError> {
    let protocol = |what: &str| TransferError::Protocol(format!("the sender broke the protocol: {what}"));
    let overwrite = session.opts.overwrite;
    loop {
        let incoming = next(ch, session.opts.stall_timeout).await?;
        match incoming {
            Incoming::End => {
                if matches!(state, State::Writing(_)) {
                    return Err(TransferError::Protocol("the sender ended in the middle of an item".into()));
                }
                if matches!(state, State::Offered(_)) {
                    return Err(protocol("ended after an offer"));
                }
                if session.next != session.manifest.items.len() {
                    return Err(protocol("ended before every item of its manifest"));
                }
                break;
            }
            Incoming::Request { id, data } => match data.first() {
                Some(&wire::OFFER) if matches!(state, State::Idle) => {
                    let offer = wire::decode_offer(&data).map_err(protocol)?;
                    // only what was announced (and approved), in its order
                    if session.manifest.items.get(session.next) != Some(&offer) {
                        return Err(protocol("an offer that is not the manifest's next item"));
                    }
                    session.next += 1;
                    if offer.kind == Kind::Directory {
                        // a folder: created now, nothing follows its offer
                        match make_folder(&offer.name, partials).await {
                            Ok(path) => {
                                ch.respond(id, wire::encode_accept(0, &[0; 32])).await?;
                                events(&Event::Folder { name: offer.name.clone(), path });
                                continue;
                            }
                            Err(reason) => {
                                ch.respond(id, wire::encode_refused(&reason)).await?;
                                let name = escape(&offer.name);
                                events(&Event::Refused { name: name.clone(), reason: reason.clone() });
                                return Err(TransferError::Refused { name, reason });
                            }
                        }
                    }
                    match accept_offer(offer, partials, overwrite).await {
                        Ok(acc) => {
                            let prefix: [u8; 32] = acc.prefix.clone().finalize().into();
                            ch.respond(id, wire::encode_accept(acc.have, &prefix)).await?;
                            *state = State::Offered(acc);
                        }
                        Err((name, reason)) => {
                            ch.respond(id, wire::encode_refused(&reason)).await?;
                            let name = escape(&name);
                            events(&Event::Refused { name: name.clone(), reason: reason.clone() });
                            return Err(TransferError::Refused { name, reason });
                        }
                    }
                }
                Some(&wire::DONE) => {
                    let w = match std::mem::replace(state, State::Idle) {
                        State::Writing(w) => w,
                        State::Existing(item) => {
                            let claimed = wire::decode_done(&data).ok_or_else(|| protocol("malformed done"))?;
                            let name = item.offer.name.clone();
                            let hash: [u8; 32] = item.prefix.finalize().into();
                            if hash != claimed {
                                let reason = format!("{} exists with other content", escape(&name));
                                let _ = ch.respond(id, wire::encode_refused(&reason)).await;
                                return Err(TransferError::Refused { name: escape(&name), reason });
                            }
                            ch.respond(id, vec![wire::OK]).await?;
                            let path = partials.map(|p| p.out_path().join(&name).display().to_string());
                            events(&Event::Completed {
                                name: name.clone(),
                                bytes: item.offer.size,
                                sha256: hex::encode(hash),
                                path,
                            });
                            summary.items.push((name, hash));
                            continue;
                        }
                        _ => return Err(protocol("done without an item")),
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
                            let name = escape(&name);
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
                    if item.existing {
                        if offset != item.have {
                            // the sender's bytes differ from the file in place: keep it
                            let name = escape(&item.offer.name);
                            let reason =
                                format!("{name} exists with other content (the receiver did not allow --overwrite)");
                            let err = TransferError::Refused { name, reason: reason.clone() };
                            return Err(abort(ch, &reason, err).await);
                        }
                        events(&Event::Started {
                            name: item.offer.name.clone(),
                            size: Some(item.offer.size),
                            resume_from: offset,
                        });
                        *state = State::Existing(item);
                        continue;
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
                    // an empty chunk is no progress: it must not hold the stall deadline off
                    if n == 0 {
                        return Err(protocol("empty chunk"));
                    }
                    let total = w.start + w.received + n;
                    if w.item.offer.kind == Kind::File && total > w.item.offer.size {
                        return Err(protocol("more bytes than offered"));
                    }
                    // the actual data against the session's limit (a stream announces no size)
                    session.bytes = session.bytes.saturating_add(n);
                    if session.bytes > session.opts.max_bytes {
                        return Err(TransferError::Limit(format!(
                            "more than {} bytes arrived, the receiver's limit for one session (--max-bytes)",
                            session.opts.max_bytes
                        )));
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
    partials: Option<&Arc<PartialDir>>,
    overwrite: bool,
) -> Result<Accepted, (String, String)> {
    let name = offer.name.clone();
    let refuse = |reason: String| (name.clone(), reason);
    let Some(partials) = partials else {
        return Ok(Accepted { offer, place: None, have: 0, prefix: Sha256::new(), existing: false });
    };
    check_path(&offer.name).map_err(refuse)?;
    let exists = partials.dest_exists(&offer.name).map_err(|e| refuse(format!("{}: {e}", escape(&offer.name))))?;
    if !overwrite && exists {
        // the same name and size may be the same file, placed by an interrupted run: the
        // sender checks the hash and, when equal, sends nothing more for it
        if offer.kind == Kind::File {
            let (p, n, size) = (partials.clone(), offer.name.clone(), offer.size);
            let same_size = tokio::task::spawn_blocking(move || -> std::io::Result<Option<Sha256>> {
                match p.open_existing(&n, size)? {
                    Some(mut f) => hash_prefix(&mut f, size).map(Some),
                    None => Ok(None),
                }
            })
            .await
            .map_err(|e| refuse(format!("worker: {e}")))?;
            if let Ok(Some(prefix)) = same_size {
                return Ok(Accepted { offer, place: None, have: size, prefix, existing: true });
            }
        }
        return Err(refuse(format!("{} exists (the receiver did not allow --overwrite)", escape(&offer.name))));
    }
    let pname = match offer.kind {
        Kind::File => partial_name(&offer),
        Kind::Stream | Kind::Directory => {
            let mut r = [0u8; 16];
            OsRng.fill_bytes(&mut r);
            format!("stream-{}", hex::encode(r))
        }
    };
    let (p, n, size, kind) = (partials.clone(), pname.clone(), offer.size, offer.kind);
    // a partial file of ours from an earlier run is resumed; anything else is replaced by
    // a file created here (O_EXCL)
    let opened = tokio::task::spawn_blocking(move || -> std::io::Result<(std::fs::File, u64, Sha256)> {
        if kind == Kind::File {
            if let Some(mut f) = p.adopt(&n, size) {
                let len = f.metadata()?.len();
                if let Ok(h) = hash_prefix(&mut f, len) {
                    return Ok((f, len, h));
                }
                drop(f);
                p.remove(&n);
            }
        }
        Ok((p.create(&n)?, 0, Sha256::new()))
    })
    .await
    .map_err(|e| refuse(format!("worker: {e}")))?
    .map_err(|e| refuse(format!("{}: {e}", partials.path_of(&pname).display())))?;
    let (file, have, prefix) = opened;
    let place = Placement { partials: partials.clone(), partial: pname, file: Some(file), dest: offer.name.clone() };
    Ok(Accepted { offer, place: Some(place), have, prefix, existing: false })
}

/// Create the offered folder `name` (and the folders above it) in the output directory,
/// never through a link; its path for the event. Err: the reason to refuse.
async fn make_folder(name: &str, partials: Option<&Arc<PartialDir>>) -> Result<Option<String>, String> {
    let Some(partials) = partials else {
        return Err("folders cannot go to one stream (--stdout)".into());
    };
    check_path(name)?;
    let (p, n) = (partials.clone(), name.to_string());
    tokio::task::spawn_blocking(move || p.make_dir(&n))
        .await
        .map_err(|e| format!("worker: {e}"))?
        .map_err(|e| format!("cannot create folder {}: {e}", escape(name)))?;
    Ok(Some(partials.out_path().join(name).display().to_string()))
}

async fn start_writer(
    mut item: Accepted,
    offset: u64,
    shared: &mut Option<Box<dyn Write + Send>>,
) -> Result<Writing, TransferError> {
    let (out, hasher) = match item.place.as_mut() {
        Some(place) => {
            let mut f = place.file.take().ok_or_else(|| TransferError::Io("partial file not open".into()))?;
            let shown = place.partials.path_of(&place.partial);
            let f = tokio::task::spawn_blocking(move || keep_prefix(&mut f, offset).map(|()| f))
                .await
                .map_err(|e| TransferError::Io(e.to_string()))?
                .map_err(|e| io_err(shown.display(), e))?;
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
            let r = r.map_err(|e| io_err(escape(&item.offer.name), e));
            (item, r)
        }
        Err(e) => (item, Err(TransferError::Io(format!("writer: {e}")))),
    }
}

type Completed = (String, u64, [u8; 32], Option<PathBuf>, u64);

/// DONE: the size must match the offer and our hash of every byte the one in DONE, then
/// the partial file becomes the named file. Err: (name, reason) to refuse; the partial file
/// is removed on a mismatch (its bytes are not the offered ones).
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
    let Some(place) = item.place else {
        return if ok { Ok((name, bytes, hash, None, moved)) } else { Err((name, "SHA-256 mismatch".into())) };
    };
    if !ok {
        place.partials.remove(&place.partial);
        return Err((name, format!("SHA-256 or size mismatch ({bytes} bytes); the partial file was removed")));
    }
    let (p, partial, dest) = (place.partials.clone(), place.partial.clone(), place.dest.clone());
    let placed = tokio::task::spawn_blocking(move || p.place(&partial, &dest, overwrite))
        .await
        .map_err(|e| (name.clone(), format!("worker: {e}")))?;
    let shown = place.partials.out_path().join(&place.dest);
    placed.map_err(|e| (name.clone(), format!("cannot create {}: {e}", escape(&shown.display().to_string()))))?;
    Ok((name, bytes, hash, Some(shown), moved))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Seen failing with the O_NOFOLLOW | O_DIRECTORY open and the owner/mode check of
    /// `PartialDir::open` removed: the symlinked directory and the 0755 one were used.
    #[test]
    fn a_partial_directory_that_is_a_symlink_or_has_another_mode_is_refused() {
        let out = tempfile::tempdir().expect("tempdir");
        let elsewhere = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink(elsewhere.path(), out.path().join(super::super::PARTIAL_DIR)).expect("symlink");
        let e = PartialDir::open(out.path()).err().expect("a symlinked partial directory was used");
        assert!(e.to_string().contains("not a directory"), "{e}");
        let out = tempfile::tempdir().expect("tempdir");
        let d = out.path().join(super::super::PARTIAL_DIR);
        std::fs::create_dir(&d).expect("mkdir");
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let e = PartialDir::open(out.path()).err().expect("a 0755 partial directory was used");
        assert!(e.to_string().contains("mode is 755"), "{e}");
        // a fresh one is created 0700 whatever the umask
        let out = tempfile::tempdir().expect("tempdir");
        drop(PartialDir::open(out.path()).expect("created"));
        let mode = std::fs::metadata(out.path().join(super::super::PARTIAL_DIR)).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    /// Seen failing with the owner/mode/link-count check of `PartialDir::adopt` removed: the
    /// 0644 file and the second link were adopted for a resume.
    #[test]
    fn planted_files_in_the_partial_directory_are_not_adopted() {
        let out = tempfile::tempdir().expect("tempdir");
        let elsewhere = tempfile::tempdir().expect("tempdir");
        let p = PartialDir::open(out.path()).expect("open");
        let d = out.path().join(super::super::PARTIAL_DIR);
        // a file with a mode we never give, a second link, a symlink to a victim
        std::fs::write(d.join("loose"), b"abc").expect("write");
        std::fs::set_permissions(d.join("loose"), std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let outside = elsewhere.path().join("outside");
        std::fs::write(&outside, b"abc").expect("write");
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        std::fs::hard_link(&outside, d.join("linked")).expect("link");
        let victim = elsewhere.path().join("victim");
        std::fs::write(&victim, b"precious").expect("write");
        std::os::unix::fs::symlink(&victim, d.join("sym")).expect("symlink");
        for name in ["loose", "linked", "sym"] {
            assert!(p.adopt(name, 100).is_none(), "{name} was adopted");
            assert!(std::fs::symlink_metadata(d.join(name)).is_err(), "{name} was left in place");
            // and a new one is ours alone
            let f = p.create(name).expect("create");
            let m = f.metadata().expect("stat");
            assert_eq!(m.permissions().mode() & 0o777, 0o600);
            p.remove(name);
        }
        assert_eq!(std::fs::read(&victim).expect("read"), b"precious");
        assert_eq!(std::fs::read(&outside).expect("read"), b"abc");
        // O_EXCL: create never opens an existing name
        drop(p.create("x").expect("create"));
        assert!(p.create("x").is_err(), "create opened an existing file");
        // our own partial file is adopted
        assert!(p.adopt("x", 100).is_some());
    }
}
