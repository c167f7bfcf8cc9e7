//! The sending side: check the items, exchange the key, connect, send the manifest, wait
//! for the receiver's answer, send each item.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Instant;

use futures_util::FutureExt;
use raida_channel::{Channel, Incoming};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::path::{relays_of, sender_channel, Paths};
use super::wire::{self, Kind, Offer};
use super::{
    channel_config, connected, deadline_after, escape, io_err, Event, SendOptions, Summary, TransferError,
    DECISION_WAIT, MAX_CHUNK, QUEUE,
};
use crate::rke::{send_key, Recipient};
use raida_net::network::Network;
use raida_net::resolve::resolve_address;
use raida_store::wallet::Wallet;

/// One thing to send.
pub enum Item {
    /// A file: its size and SHA-256 are offered up front; resumable.
    File { path: PathBuf, name: String },
    /// A stream of unknown length (stdin): hashed as it goes, not resumable.
    Stream { name: String, reader: Box<dyn Read + Send> },
    /// A folder (`name` a relative path): created on the receiver, empty or not. Made by
    /// [`Item::directory`] before the items inside it.
    Directory { name: String },
}

/// Something [`Item::directory`] left out of a tree, and why (shown as a warning).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

impl std::fmt::Debug for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Item::File { path, name } => write!(f, "File({}, {name:?})", path.display()),
            Item::Stream { name, .. } => write!(f, "Stream({name:?})"),
            Item::Directory { name } => write!(f, "Directory({name:?})"),
        }
    }
}

impl Item {
    /// A regular file, offered under its own file name. Fails now (before any exchange)
    /// if it cannot be read.
    pub fn file(path: &Path) -> Result<Item, TransferError> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| TransferError::Io(format!("{}: no usable file name", path.display())))?;
        Item::file_named(path, name)
    }

    /// A regular file offered under another name.
    pub fn file_named(path: &Path, name: &str) -> Result<Item, TransferError> {
        let meta = std::fs::metadata(path).map_err(|e| io_err(path.display(), e))?;
        if !meta.is_file() {
            return Err(TransferError::Io(format!("{}: not a regular file", path.display())));
        }
        std::fs::File::open(path).map_err(|e| io_err(path.display(), e))?;
        Ok(Item::File { path: path.to_path_buf(), name: name.to_string() })
    }

    /// The name offered for this item.
    pub fn name(&self) -> &str {
        match self {
            Item::File { name, .. } | Item::Stream { name, .. } | Item::Directory { name } => name,
        }
    }

    /// A folder and everything in it, under the folder's own name: one
    /// [`Item::Directory`] per folder (empty ones included), before its contents, and one
    /// [`Item::File`] per regular file, each named by its path from the top (`top/sub/f`),
    /// in name order. Never follows a symbolic link inside the tree: links are skipped (as
    /// are sockets, FIFOs and devices, names that are not UTF-8, and names a receiver
    /// refuses by [`super::check_name`], such as hidden ones), each listed in the second
    /// value so the caller can warn. The folder named here may itself be a link.
    pub fn directory(path: &Path) -> Result<(Vec<Item>, Vec<Skipped>), TransferError> {
        let canonical = std::fs::canonicalize(path).map_err(|e| io_err(path.display(), e))?;
        let name = canonical
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| TransferError::Io(format!("{}: no usable folder name", path.display())))?;
        Item::directory_named(path, name)
    }

    /// [`Item::directory`] with the top folder offered under another name.
    pub fn directory_named(path: &Path, name: &str) -> Result<(Vec<Item>, Vec<Skipped>), TransferError> {
        super::check_name(name).map_err(|why| TransferError::Io(format!("{}: {why}", path.display())))?;
        let meta = std::fs::metadata(path).map_err(|e| io_err(path.display(), e))?;
        if !meta.is_dir() {
            return Err(TransferError::Io(format!("{}: not a folder", path.display())));
        }
        let mut items = Vec::new();
        let mut skipped = Vec::new();
        // depth first, parents before children; a stack of (path on disk, offered path)
        let mut stack = vec![(path.to_path_buf(), name.to_string())];
        while let Some((dir, rel)) = stack.pop() {
            items.push(Item::Directory { name: rel.clone() });
            let mut entries: Vec<(String, PathBuf)> = Vec::new();
            for entry in std::fs::read_dir(&dir).map_err(|e| io_err(dir.display(), e))? {
                let entry = entry.map_err(|e| io_err(dir.display(), e))?;
                let p = entry.path();
                match entry.file_name().into_string() {
                    Ok(n) => entries.push((n, p)),
                    Err(_) => skipped.push(Skipped { path: p, reason: "the name is not UTF-8".into() }),
                }
            }
            entries.sort();
            let mut subdirs = Vec::new();
            for (n, p) in entries {
                if let Err(why) = super::check_name(&n) {
                    skipped.push(Skipped { path: p, reason: format!("a receiver refuses the name: {why}") });
                    continue;
                }
                let child = format!("{rel}/{n}");
                if child.len() > super::wire::MAX_PATH {
                    skipped.push(Skipped { path: p, reason: "the path is longer than 4096 bytes".into() });
                    continue;
                }
                // lstat: a link is never followed (it could lead out of the tree, or loop)
                let t = std::fs::symlink_metadata(&p).map_err(|e| io_err(p.display(), e))?.file_type();
                if t.is_symlink() {
                    skipped.push(Skipped { path: p, reason: "a symbolic link (links are not followed)".into() });
                } else if t.is_dir() {
                    subdirs.push((p, child));
                } else if t.is_file() {
                    std::fs::File::open(&p).map_err(|e| io_err(p.display(), e))?;
                    items.push(Item::File { path: p, name: child });
                } else {
                    skipped.push(Skipped { path: p, reason: "not a regular file or folder".into() });
                }
            }
            // popped in name order
            stack.extend(subdirs.into_iter().rev());
        }
        Ok((items, skipped))
    }
}

/// Exchange a key with `to` through `network`, open the channel to its address and send
/// `items`; Ok once the receiver confirmed every one.
pub async fn send<F: FnMut(&Event) + Send>(
    network: &Network,
    wallet: &Wallet,
    to: &Recipient,
    items: Vec<Item>,
    opts: &SendOptions,
    events: &mut F,
) -> Result<Summary, TransferError> {
    if opts.chunk_size == 0 || opts.chunk_size > MAX_CHUNK {
        return Err(TransferError::Protocol(format!("chunk size must be 1..={MAX_CHUNK}")));
    }
    // a hint listener first: its address goes into the alert
    let listener = match &opts.listen {
        Some(l) => {
            let addr = resolve_address(l).await.map_err(|e| TransferError::Connect(format!("--listen {l}: {e}")))?;
            Some(TcpListener::bind(addr).await.map_err(|e| TransferError::Connect(format!("--listen {l}: {e}")))?)
        }
        None => None,
    };
    let mut rke = opts.rke.clone();
    if let Some(addr) = listener.as_ref().and_then(|l| l.local_addr().ok()) {
        // an unspecified address (0.0.0.0) tells the receiver nothing: no hint then
        if !addr.ip().is_unspecified() {
            rke.hints = vec![addr];
        }
    }
    let report = send_key(network, wallet, to, &rke).await?;
    events(&Event::KeyExchanged { peer: report.receiver.to_string() });
    let mut connect = Vec::new();
    if let Some(a) = &to.address {
        connect.push(resolve_address(a).await.map_err(|e| TransferError::Connect(e.to_string()))?);
    }
    let paths = Paths {
        connect,
        listener: listener.as_ref(),
        only_from: None,
        relays: relays_of(network),
        rendezvous: report.rendezvous,
    };
    let cfg = channel_config(&report.session_key, opts.pq)?;
    let (ch, path, addr) = sender_channel(paths, cfg, opts.connect_timeout).await?;
    drop(listener);
    events(&connected(&ch, report.receiver, addr, path));
    send_over(ch, items, opts, events).await
}

/// Send `items` over an established channel (the other end runs [`super::receive_over`]):
/// the manifest first, then, once the receiver accepted it, each item; then end and shut
/// the channel down.
pub async fn send_over<F: FnMut(&Event) + Send>(
    mut ch: Channel,
    items: Vec<Item>,
    opts: &SendOptions,
    events: &mut F,
) -> Result<Summary, TransferError> {
    let started = Instant::now();
    let r = send_all(&mut ch, items, opts, events).await;
    let r = match r {
        // the receiver said why it ended the transfer: that, not the channel's symptom
        Err(TransferError::Channel(_) | TransferError::Protocol(_) | TransferError::Stalled(_)) => {
            match pending_abort(&mut ch) {
                Some(reason) => Err(TransferError::Aborted(reason)),
                None => r,
            }
        }
        r => r,
    };
    let summary = r?;
    ch.shutdown().await?;
    events(&Event::Finished {
        items: summary.items.len(),
        bytes: summary.bytes,
        seconds: started.elapsed().as_secs_f64(),
    });
    Ok(summary)
}

/// An ABORT the receiver already sent, if one is waiting (never blocks).
fn pending_abort(ch: &mut Channel) -> Option<String> {
    while let Some(Some(Ok(i))) = ch.recv().now_or_never() {
        if let Incoming::Data(d) = i {
            if let Some(Err(reason)) = wire::decode_decision(&d) {
                return Some(escape(&reason));
            }
        }
    }
    None
}

/// Wait for the receiver's answer to the manifest.
async fn decision(ch: &mut Channel) -> Result<(), TransferError> {
    let got = match deadline_after(DECISION_WAIT) {
        Some(d) => tokio::time::timeout_at(d, ch.recv()).await.map_err(|_| {
            TransferError::Protocol(format!("the receiver did not answer within {} s", DECISION_WAIT.as_secs()))
        })?,
        None => ch.recv().await,
    };
    match got {
        Some(Ok(Incoming::Data(d))) => match wire::decode_decision(&d) {
            Some(Ok(())) => Ok(()),
            Some(Err(reason)) => Err(TransferError::Declined(escape(&reason))),
            None => Err(TransferError::Protocol("the receiver broke the protocol: no answer to the manifest".into())),
        },
        Some(Ok(_)) => {
            Err(TransferError::Protocol("the receiver broke the protocol: no answer to the manifest".into()))
        }
        Some(Err(e)) => Err(TransferError::Channel(e)),
        None => Err(TransferError::Protocol("the receiver closed the channel without answering".into())),
    }
}

async fn send_all<F: FnMut(&Event) + Send>(
    ch: &mut Channel,
    items: Vec<Item>,
    opts: &SendOptions,
    events: &mut F,
) -> Result<Summary, TransferError> {
    // sizes now: the manifest announces them, and each offer must say the same
    let mut prepared = Vec::with_capacity(items.len());
    for item in items {
        prepared.push(match item {
            Item::File { path, name } => {
                let size = std::fs::metadata(&path).map_err(|e| io_err(path.display(), e))?.len();
                (Offer { kind: Kind::File, size, name }, Source::File(path))
            }
            Item::Stream { name, reader } => (Offer { kind: Kind::Stream, size: 0, name }, Source::Stream(reader)),
            Item::Directory { name } => (Offer { kind: Kind::Directory, size: 0, name }, Source::Folder),
        });
    }
    let offers: Vec<Offer> = prepared.iter().map(|(o, _)| o.clone()).collect();
    let manifest = wire::encode_manifest(&offers).ok_or_else(|| {
        TransferError::Protocol("too many items (or too long a name) for one transfer; send them in parts".into())
    })?;
    ch.send(manifest).await?;
    decision(ch).await?;
    let mut summary = Summary::default();
    for (offer, source) in prepared {
        if let Source::Folder = source {
            send_folder(ch, offer, events).await?;
            continue;
        }
        let name = offer.name.clone();
        let (hash, bytes) = send_item(ch, offer, source, opts, events).await?;
        summary.items.push((name, hash));
        summary.bytes += bytes;
    }
    ch.sender().finish().await?;
    Ok(summary)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, TransferError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| TransferError::Io(format!("worker: {e}")))
}

/// Read `r` in chunks of `chunk` bytes, each prefixed with the CHUNK tag, into `tx`;
/// returns the bytes read and the SHA-256 of `h`'s prefix followed by them.
fn read_chunks(
    mut r: Box<dyn Read + Send>,
    mut h: Sha256,
    chunk: usize,
    tx: mpsc::Sender<std::io::Result<Vec<u8>>>,
) -> (u64, [u8; 32]) {
    let mut total = 0u64;
    loop {
        // not zero-filled: read_to_end fills the spare capacity (and retries short reads
        // from pipes and interrupted reads) up to exactly `chunk` bytes
        let mut buf = Vec::with_capacity(1 + chunk);
        buf.push(wire::CHUNK);
        if let Err(e) = (&mut r).take(chunk as u64).read_to_end(&mut buf) {
            let _ = tx.blocking_send(Err(e));
            break;
        }
        let filled = buf.len();
        if filled == 1 {
            break;
        }
        h.update(&buf[1..]);
        total += (filled - 1) as u64;
        if tx.blocking_send(Ok(buf)).is_err() {
            break;
        }
    }
    (total, h.finalize().into())
}

async fn send_item<F: FnMut(&Event) + Send>(
    ch: &mut Channel,
    offer: Offer,
    source: Source,
    opts: &SendOptions,
    events: &mut F,
) -> Result<([u8; 32], u64), TransferError> {
    let name = offer.name.clone();
    let refused = |reason: String| TransferError::Refused { name: name.clone(), reason };
    let answer = ch.request(wire::encode_offer(&offer)).await?;
    let rest = match wire::decode_answer(&answer) {
        Ok(r) => r,
        Err(reason) => {
            let reason = escape(&reason);
            events(&Event::Refused { name: name.clone(), reason: reason.clone() });
            return Err(refused(reason));
        }
    };
    let (have, their_prefix) =
        wire::decode_accept(rest).ok_or_else(|| TransferError::Protocol("malformed answer to the offer".into()))?;
    // resume only where the receiver's bytes are ours (checked by hash)
    let mut offset = 0;
    let mut hasher = Sha256::new();
    if let Source::File(path) = &source {
        if have > 0 && have <= offer.size {
            let p = path.clone();
            let ours =
                blocking(move || super::hash_prefix(&p, have, true)).await?.map_err(|e| io_err(path.display(), e))?;
            let digest: [u8; 32] = ours.clone().finalize().into();
            if digest == their_prefix {
                offset = have;
                hasher = ours;
            }
        }
    }
    let size = (offer.kind == Kind::File).then_some(offer.size);
    events(&Event::Started { name: name.clone(), size, resume_from: offset });
    ch.send(wire::encode_start(offset)).await?;
    let reader: Box<dyn Read + Send> = match source {
        Source::File(path) => {
            let mut f = std::fs::File::open(&path).map_err(|e| io_err(path.display(), e))?;
            f.seek(SeekFrom::Start(offset)).map_err(|e| io_err(path.display(), e))?;
            Box::new(f)
        }
        Source::Stream(r) => r,
        Source::Folder => return Err(TransferError::Protocol("a folder has no data".into())),
    };
    let (tx, mut rx) = mpsc::channel(QUEUE);
    let chunk = opts.chunk_size;
    let reading = tokio::task::spawn_blocking(move || read_chunks(reader, hasher, chunk, tx));
    let started = Instant::now();
    let mut sent = 0u64;
    let stall = opts.stall_timeout;
    loop {
        // the next chunk, or the receiver's ABORT (a stalled input here ends there)
        let buf = tokio::select! {
            b = rx.recv() => match b {
                Some(b) => b,
                None => break,
            },
            i = ch.recv() => return Err(match i {
                Some(Ok(Incoming::Data(d))) => match wire::decode_decision(&d) {
                    Some(Err(reason)) => TransferError::Aborted(escape(&reason)),
                    _ => TransferError::Protocol("the receiver broke the protocol: data during a transfer".into()),
                },
                Some(Ok(_)) => TransferError::Protocol("the receiver broke the protocol: a message during a transfer".into()),
                Some(Err(e)) => TransferError::Channel(e),
                None => TransferError::Protocol("the receiver closed the channel".into()),
            }),
        };
        let buf = buf.map_err(|e| io_err(&name, e))?;
        let n = (buf.len() - 1) as u64;
        // a receiver that takes nothing for this long (a full window) ends the transfer
        match deadline_after(stall) {
            Some(d) => tokio::time::timeout_at(d, ch.send(buf)).await.map_err(|_| TransferError::Stalled(stall))??,
            None => ch.send(buf).await?,
        }
        sent += n;
        events(&Event::Progress { name: name.clone(), bytes: offset + sent, size });
        if let Some(rate) = opts.rate_limit.filter(|r| *r > 0) {
            // checked: a due time that does not fit means no wait, never an overflow panic
            let wait = std::time::Duration::try_from_secs_f64(sent as f64 / rate as f64).ok();
            if let Some(due) = wait.and_then(|w| started.checked_add(w)) {
                tokio::time::sleep_until(due.into()).await;
            }
        }
    }
    let (read, hash) = reading.await.map_err(|e| TransferError::Io(format!("reader: {e}")))?;
    if offer.kind == Kind::File && offset + read != offer.size {
        return Err(TransferError::Io(format!("{name}: the file changed size while it was being sent")));
    }
    let answer = ch.request(wire::encode_done(&hash)).await?;
    if let Err(reason) = wire::decode_answer(&answer) {
        let reason = escape(&reason);
        events(&Event::Refused { name: name.clone(), reason: reason.clone() });
        return Err(refused(reason));
    }
    events(&Event::Completed { name: name.clone(), bytes: offset + read, sha256: hex::encode(hash), path: None });
    Ok((hash, read))
}

enum Source {
    File(PathBuf),
    Stream(Box<dyn Read + Send>),
    Folder,
}

/// Offer a folder: the receiver creates it and answers; nothing follows.
async fn send_folder<F: FnMut(&Event) + Send>(
    ch: &mut Channel,
    offer: Offer,
    events: &mut F,
) -> Result<(), TransferError> {
    let answer = ch.request(wire::encode_offer(&offer)).await?;
    match wire::decode_answer(&answer) {
        Ok(_) => {
            events(&Event::Folder { name: offer.name, path: None });
            Ok(())
        }
        Err(reason) => {
            let reason = escape(&reason);
            events(&Event::Refused { name: offer.name.clone(), reason: reason.clone() });
            Err(TransferError::Refused { name: offer.name, reason })
        }
    }
}
