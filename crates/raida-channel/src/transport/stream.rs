//! The channel over any `AsyncRead + AsyncWrite` byte stream (TCP, a child's stdio):
//! every handshake message and record is one length-prefixed frame.
//!
//! Flow: initiator sends the hello frame, responder answers with the reply frame and its
//! key-confirmation record, the initiator checks it and sends its own confirmation; then
//! records flow both ways. A driver task owns the [`Session`]; [`Channel`] and
//! [`ChannelSender`] talk to it. The driver sleeps until the session's
//! [`Session::poll_timeout`] or the deadline of the oldest unanswered request, whichever
//! comes first (no periodic wake-up).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufWriter, WriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::frame::{read_frame, write_frame, MAX_FRAME, MAX_HANDSHAKE_FRAME};
use super::within;
use crate::error::ChannelError;
use crate::handshake::{respond, Initiator, Role};
use crate::session::{Config, Event, Mode, Session};

/// Consecutive rejected records after which the driver gives up on the stream.
pub const MAX_CONSECUTIVE_REJECTIONS: u32 = 16;

/// Something the peer sent to the application.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// One-way data.
    Data(Vec<u8>),
    /// A request; answer it with [`ChannelSender::respond`].
    Request {
        /// Correlation id.
        id: u64,
        /// Body.
        data: Vec<u8>,
    },
    /// The peer will send no more data.
    End,
}

type Reply<T> = oneshot::Sender<Result<T, ChannelError>>;

enum Cmd {
    Data(Vec<u8>, Reply<()>),
    Request(Vec<u8>, Reply<Vec<u8>>),
    Respond(u64, Vec<u8>, Reply<()>),
    End(Reply<()>),
    Rekey(Reply<u32>),
    Shutdown(Reply<()>),
}

#[derive(Default)]
struct Stats {
    epoch: AtomicU32,
    rejected: AtomicU64,
    sent: AtomicU64,
}

/// The sending side of a channel (cheap to clone).
#[derive(Clone)]
pub struct ChannelSender {
    tx: mpsc::Sender<Cmd>,
    request_timeout: Duration,
}

impl ChannelSender {
    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Cmd) -> Result<T, ChannelError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).await.map_err(|_| ChannelError::Closed)?;
        rx.await.map_err(|_| ChannelError::Closed)?
    }

    /// Sends one-way data (returns once the record is written).
    pub async fn send(&self, data: Vec<u8>) -> Result<(), ChannelError> {
        self.call(|r| Cmd::Data(data, r)).await
    }

    /// Sends a request and waits for its response (correlated by id), at most the
    /// configured request timeout.
    pub async fn request(&self, data: Vec<u8>) -> Result<Vec<u8>, ChannelError> {
        within(self.request_timeout, "request", self.call(|r| Cmd::Request(data, r))).await
    }

    /// Answers the peer's request `id`.
    pub async fn respond(&self, id: u64, data: Vec<u8>) -> Result<(), ChannelError> {
        self.call(|r| Cmd::Respond(id, data, r)).await
    }

    /// Tells the peer no more data follows (half-close).
    pub async fn finish(&self) -> Result<(), ChannelError> {
        self.call(Cmd::End).await
    }

    /// Forces a rekey now; returns the new epoch once both sides switched.
    pub async fn rekey(&self) -> Result<u32, ChannelError> {
        match tokio::time::timeout(self.request_timeout, self.call(Cmd::Rekey)).await {
            Ok(r) => r,
            Err(_) => Err(ChannelError::Timeout),
        }
    }

    /// Graceful shutdown: encrypted `shutdown`, wait for the acknowledgement, close.
    pub async fn shutdown(&self) -> Result<(), ChannelError> {
        match tokio::time::timeout(self.request_timeout, self.call(Cmd::Shutdown)).await {
            Ok(r) => r,
            Err(_) => Err(ChannelError::Timeout),
        }
    }
}

/// An established secure channel over a byte stream.
pub struct Channel {
    sender: ChannelSender,
    rx: mpsc::Receiver<Result<Incoming, ChannelError>>,
    session_id: [u8; 16],
    transcript: [u8; 32],
    stats: Arc<Stats>,
    driver: JoinHandle<Result<(), ChannelError>>,
}

/// Label of [`Channel::transcript_hash`].
pub const TRANSCRIPT_LABEL: &[u8] = b"raida-channel v1 transcript";

/// SHA-256(label || hello || reply): the same on both ends of one handshake.
fn transcript_hash(hello: &[u8], reply: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(TRANSCRIPT_LABEL);
    h.update(hello);
    h.update(reply);
    h.finalize().into()
}

impl Channel {
    /// Handshake as the initiator ("alice") over `stream`, then start the channel.
    pub async fn connect<S>(stream: S, cfg: Config) -> Result<Channel, ChannelError>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        Self::open(stream, cfg, Role::Initiator).await
    }

    /// Handshake as the responder ("bob") over `stream`, then start the channel.
    pub async fn accept<S>(stream: S, cfg: Config) -> Result<Channel, ChannelError>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        Self::open(stream, cfg, Role::Responder).await
    }

    /// The one code path of [`Channel::connect`] and [`Channel::accept`]: the handshake of
    /// `role` within the request timeout, then the driver.
    async fn open<S>(stream: S, cfg: Config, role: Role) -> Result<Channel, ChannelError>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        within(cfg.request_timeout, "handshake", Self::handshake(stream, cfg, role)).await
    }

    async fn handshake<S>(stream: S, cfg: Config, role: Role) -> Result<Channel, ChannelError>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (mut r, w) = tokio::io::split(stream);
        let mut w = BufWriter::new(w);
        let (mut session, transcript) = match role {
            Role::Initiator => {
                let hs = Initiator::new(&cfg.handshake);
                write_frame(&mut w, hs.hello()).await?;
                w.flush().await?;
                let reply = read_frame(&mut r, MAX_HANDSHAKE_FRAME).await?.ok_or(ChannelError::Closed)?;
                let transcript = transcript_hash(hs.hello(), &reply);
                let est = hs.finish(&reply)?;
                (Session::new(est, Mode::Stream, cfg.clone(), Instant::now()), transcript)
            }
            Role::Responder => {
                let hello = read_frame(&mut r, MAX_HANDSHAKE_FRAME).await?.ok_or(ChannelError::Closed)?;
                let (reply, est) = respond(&hello, &cfg.handshake)?;
                write_frame(&mut w, &reply).await?;
                let transcript = transcript_hash(&hello, &reply);
                (Session::new(est, Mode::Stream, cfg.clone(), Instant::now()), transcript)
            }
        };
        let confirm = session.seal_confirm(Instant::now())?;
        write_frame(&mut w, &confirm).await?;
        w.flush().await?;
        let peer = read_frame(&mut r, MAX_HANDSHAKE_FRAME).await?.ok_or(ChannelError::Closed)?;
        match session.handle_record(&peer, Instant::now()) {
            Ok(out) if out.event == Event::Confirmed => {}
            Ok(_) => {
                warn!("first record was not a key confirmation");
                return Err(ChannelError::KeyConfirmation);
            }
            Err(e) => {
                warn!(reason = e.reason(), "key confirmation failed");
                return Err(ChannelError::KeyConfirmation);
            }
        }
        let session_id = session.session_id();
        let stats = Arc::new(Stats::default());
        stats.epoch.store(session.epoch(), Ordering::Relaxed);
        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        let (in_tx, in_rx) = mpsc::channel(64);
        let (frame_tx, frame_rx) = mpsc::channel(64);
        let reader = tokio::spawn(async move {
            loop {
                let f = read_frame(&mut r, MAX_FRAME).await;
                let stop = !matches!(f, Ok(Some(_)));
                if frame_tx.send(f).await.is_err() || stop {
                    break;
                }
            }
        });
        let driver = Driver {
            session,
            w,
            in_tx,
            stats: stats.clone(),
            request_timeout: cfg.request_timeout,
            pending: BTreeMap::new(),
            deferred: VecDeque::new(),
            rekey_waiters: Vec::new(),
            shutdown_waiters: Vec::new(),
            consecutive_rejections: 0,
        };
        let driver = tokio::spawn(async move {
            let r = driver.run(cmd_rx, frame_rx).await;
            reader.abort();
            r
        });
        Ok(Channel {
            sender: ChannelSender { tx: cmd_tx, request_timeout: cfg.request_timeout },
            rx: in_rx,
            session_id,
            transcript,
            stats,
            driver,
        })
    }

    /// The session id (public).
    pub fn session_id(&self) -> [u8; 16] {
        self.session_id
    }

    /// SHA-256("raida-channel v1 transcript" || hello || reply): both ends of one handshake
    /// get the same 32 bytes, two different handshakes (a man in the middle runs two) get
    /// different ones. Not secret; for a verification phrase that two people compare.
    pub fn transcript_hash(&self) -> [u8; 32] {
        self.transcript
    }

    /// The current epoch (1 + number of rekeys).
    pub fn epoch(&self) -> u32 {
        self.stats.epoch.load(Ordering::Relaxed)
    }

    /// Records rejected so far (each was also returned by [`Channel::recv`] and logged).
    pub fn rejected(&self) -> u64 {
        self.stats.rejected.load(Ordering::Relaxed)
    }

    /// Records sent so far (all epochs).
    pub fn records_sent(&self) -> u64 {
        self.stats.sent.load(Ordering::Relaxed)
    }

    /// A clonable handle for sending (usable while another task waits in `recv`).
    pub fn sender(&self) -> ChannelSender {
        self.sender.clone()
    }

    /// The next thing from the peer; `Some(Err(_))` for a rejected record (the channel
    /// goes on), `None` once the channel is closed.
    pub async fn recv(&mut self) -> Option<Result<Incoming, ChannelError>> {
        self.rx.recv().await
    }

    /// See [`ChannelSender::send`].
    pub async fn send(&self, data: Vec<u8>) -> Result<(), ChannelError> {
        self.sender.send(data).await
    }

    /// See [`ChannelSender::request`].
    pub async fn request(&self, data: Vec<u8>) -> Result<Vec<u8>, ChannelError> {
        self.sender.request(data).await
    }

    /// See [`ChannelSender::respond`].
    pub async fn respond(&self, id: u64, data: Vec<u8>) -> Result<(), ChannelError> {
        self.sender.respond(id, data).await
    }

    /// See [`ChannelSender::rekey`].
    pub async fn rekey(&self) -> Result<u32, ChannelError> {
        self.sender.rekey().await
    }

    /// Graceful shutdown, then waits for the driver to finish. If the peer shut down
    /// first (its shutdown was acknowledged), that counts as success too.
    pub async fn shutdown(self) -> Result<(), ChannelError> {
        let r = self.sender.shutdown().await;
        drop(self.sender);
        let d = match self.driver.await {
            Ok(d) => d,
            Err(_) => Err(ChannelError::Closed),
        };
        match (r, d) {
            (Ok(()), d) => d,
            (Err(ChannelError::Closed), Ok(())) => Ok(()),
            (Err(e), _) => Err(e),
        }
    }

    /// Waits until the peer ends the channel (discarding anything still incoming).
    /// Dropping a [`Channel`] and all its [`ChannelSender`]s instead closes the stream
    /// at once, without a shutdown message.
    pub async fn closed(mut self) -> Result<(), ChannelError> {
        while self.rx.recv().await.is_some() {}
        drop(self.sender);
        match self.driver.await {
            Ok(r) => r,
            Err(_) => Err(ChannelError::Closed),
        }
    }
}

struct Driver<S> {
    session: Session,
    w: BufWriter<WriteHalf<S>>,
    in_tx: mpsc::Sender<Result<Incoming, ChannelError>>,
    stats: Arc<Stats>,
    request_timeout: Duration,
    /// Our requests awaiting a response, by id with their deadline (`None`: a timeout too
    /// long for the clock). Ids grow with time and every request gets the same timeout, so
    /// the first entry has the earliest deadline.
    pending: BTreeMap<u64, (Reply<Vec<u8>>, Option<Instant>)>,
    deferred: VecDeque<Cmd>,
    rekey_waiters: Vec<Reply<u32>>,
    shutdown_waiters: Vec<Reply<()>>,
    consecutive_rejections: u32,
}

enum Flow {
    Continue,
    Done,
}

impl<S: AsyncRead + AsyncWrite + Send + 'static> Driver<S> {
    async fn run(
        mut self,
        mut cmd_rx: mpsc::Receiver<Cmd>,
        mut frame_rx: mpsc::Receiver<Result<Option<Vec<u8>>, ChannelError>>,
    ) -> Result<(), ChannelError> {
        let wake = tokio::time::sleep_until(Instant::now().into());
        tokio::pin!(wake);
        let r = loop {
            let next = self.next_timeout();
            if let Some(t) = next {
                if wake.deadline() != t.into() {
                    wake.as_mut().reset(t.into());
                }
            }
            let step = tokio::select! {
                biased;
                f = frame_rx.recv() => self.on_frame(f).await,
                c = cmd_rx.recv() => match c {
                    Some(c) => self.on_cmd(c).await,
                    None => {
                        // Every handle was dropped without a shutdown: close the stream.
                        if !self.session.is_closed() {
                            warn!("channel dropped without a shutdown; closing the stream");
                        }
                        Ok(Flow::Done)
                    }
                },
                _ = &mut wake, if next.is_some() => self.on_timeout().await,
            };
            match step {
                Ok(Flow::Continue) => {}
                Ok(Flow::Done) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        let _ = self.w.flush().await;
        let _ = self.w.shutdown().await;
        let err = || match &r {
            Ok(()) => ChannelError::Closed,
            Err(e) => clone_err(e),
        };
        for (_, (p, _)) in std::mem::take(&mut self.pending) {
            let _ = p.send(Err(err()));
        }
        for w in self.rekey_waiters.drain(..) {
            let _ = w.send(Err(err()));
        }
        for w in self.shutdown_waiters.drain(..) {
            let _ = w.send(if r.is_ok() { Ok(()) } else { Err(err()) });
        }
        for c in self.deferred.drain(..) {
            fail_cmd(c, err());
        }
        if let Err(e) = &r {
            // Never block on an application that stopped reading.
            let _ = self.in_tx.try_send(Err(clone_err(e)));
        }
        r
    }

    async fn write_all(&mut self, recs: &[Vec<u8>]) -> Result<(), ChannelError> {
        for r in recs {
            write_frame(&mut self.w, r).await?;
            self.stats.sent.fetch_add(1, Ordering::Relaxed);
        }
        self.w.flush().await?;
        Ok(())
    }

    /// When the driver must act next without a frame or a command: the session's timers or
    /// the deadline of the oldest unanswered request.
    fn next_timeout(&self) -> Option<Instant> {
        let oldest_request = self.pending.first_key_value().and_then(|(_, (_, deadline))| *deadline);
        [self.session.poll_timeout(), oldest_request].into_iter().flatten().min()
    }

    async fn on_timeout(&mut self) -> Result<Flow, ChannelError> {
        let now = Instant::now();
        let recs = self.session.poll(now)?;
        self.write_all(&recs).await?;
        // The caller's own timeout (the same duration, started earlier) has given up on
        // these; a response that still comes is refused as unexpected.
        while let Some(entry) = self.pending.first_entry() {
            if entry.get().1.is_none_or(|deadline| deadline > now) {
                break;
            }
            let (id, (p, _)) = entry.remove_entry();
            self.session.cancel_request(id);
            let _ = p.send(Err(ChannelError::Timeout));
        }
        Ok(Flow::Continue)
    }

    async fn on_frame(&mut self, f: Option<Result<Option<Vec<u8>>, ChannelError>>) -> Result<Flow, ChannelError> {
        let frame = match f {
            Some(Ok(Some(frame))) => frame,
            Some(Ok(None)) | None => {
                if self.session.is_closed() {
                    return Ok(Flow::Done);
                }
                warn!("peer closed the stream without a shutdown");
                return Err(ChannelError::Closed);
            }
            Some(Err(e)) => return Err(e),
        };
        let out = match self.session.handle_record(&frame, Instant::now()) {
            Ok(out) => out,
            Err(e) => {
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                self.consecutive_rejections += 1;
                if self.consecutive_rejections >= MAX_CONSECUTIVE_REJECTIONS {
                    warn!("too many rejected records in a row; closing");
                    return Err(e);
                }
                let _ = self.in_tx.send(Err(e)).await;
                return Ok(Flow::Continue);
            }
        };
        self.consecutive_rejections = 0;
        self.write_all(&out.replies).await?;
        match out.event {
            Event::None | Event::Confirmed => {}
            Event::Data(d) => {
                let _ = self.in_tx.send(Ok(Incoming::Data(d))).await;
            }
            Event::Request { id, data } => {
                let _ = self.in_tx.send(Ok(Incoming::Request { id, data })).await;
            }
            Event::End => {
                let _ = self.in_tx.send(Ok(Incoming::End)).await;
            }
            Event::Response { id, data } => match self.pending.remove(&id) {
                Some((p, _)) => {
                    let _ = p.send(Ok(data));
                }
                None => debug!(id, "response to an abandoned request"),
            },
            Event::Rekeyed(epoch) => {
                self.stats.epoch.store(epoch, Ordering::Relaxed);
                for w in self.rekey_waiters.drain(..) {
                    let _ = w.send(Ok(epoch));
                }
                while self.session.can_send() {
                    let Some(c) = self.deferred.pop_front() else {
                        break;
                    };
                    if let Flow::Done = self.on_cmd(c).await? {
                        return Ok(Flow::Done);
                    }
                }
            }
            Event::PeerShutdown => return Ok(Flow::Done),
            Event::Closed => return Ok(Flow::Done),
        }
        Ok(Flow::Continue)
    }

    fn on_cmd<'a>(
        &'a mut self,
        c: Cmd,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Flow, ChannelError>> + Send + 'a>> {
        Box::pin(async move {
            if self.session.is_closed() {
                fail_cmd(c, ChannelError::Closed);
                return Ok(Flow::Continue);
            }
            if self.session.rekey_pending() {
                self.deferred.push_back(c);
                return Ok(Flow::Continue);
            }
            let now = Instant::now();
            // Automatic rekey (count, age, 2^63) before any application record.
            let timers = self.session.poll(now)?;
            self.write_all(&timers).await?;
            if self.session.rekey_pending() {
                self.deferred.push_back(c);
                return Ok(Flow::Continue);
            }
            match c {
                Cmd::Data(d, r) => {
                    let res = self.session.seal_data(&d, now);
                    self.finish_simple(res, r).await?;
                }
                Cmd::Respond(id, d, r) => {
                    let res = self.session.seal_response(id, &d, now);
                    self.finish_simple(res, r).await?;
                }
                Cmd::End(r) => {
                    let res = self.session.seal_end(now);
                    self.finish_simple(res, r).await?;
                }
                Cmd::Request(d, r) => match self.session.seal_request(&d, now) {
                    Ok((id, rec)) => {
                        self.write_all(&[rec]).await?;
                        self.pending.insert(id, (r, now.checked_add(self.request_timeout)));
                    }
                    Err(e) => {
                        let _ = r.send(Err(e));
                    }
                },
                Cmd::Rekey(r) => match self.session.start_rekey(now) {
                    Ok(rec) => {
                        self.write_all(&[rec]).await?;
                        self.rekey_waiters.push(r);
                    }
                    Err(e) => {
                        let _ = r.send(Err(e));
                    }
                },
                Cmd::Shutdown(r) => match self.session.begin_shutdown(now) {
                    Ok(rec) => {
                        self.write_all(&[rec]).await?;
                        self.shutdown_waiters.push(r);
                    }
                    Err(e) => {
                        let _ = r.send(Err(e));
                    }
                },
            }
            Ok(Flow::Continue)
        })
    }

    async fn finish_simple(&mut self, res: Result<Vec<u8>, ChannelError>, r: Reply<()>) -> Result<(), ChannelError> {
        match res {
            Ok(rec) => {
                self.write_all(&[rec]).await?;
                let _ = r.send(Ok(()));
            }
            Err(e) => {
                let _ = r.send(Err(e));
            }
        }
        Ok(())
    }
}

fn fail_cmd(c: Cmd, e: ChannelError) {
    match c {
        Cmd::Data(_, r) | Cmd::Respond(_, _, r) | Cmd::End(r) | Cmd::Shutdown(r) => {
            let _ = r.send(Err(e));
        }
        Cmd::Request(_, r) => {
            let _ = r.send(Err(e));
        }
        Cmd::Rekey(r) => {
            let _ = r.send(Err(e));
        }
    }
}

fn clone_err(e: &ChannelError) -> ChannelError {
    e.clone()
}
