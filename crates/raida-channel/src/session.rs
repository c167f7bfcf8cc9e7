//! The session state machine (sans-IO; the caller supplies the clock).
//!
//! It owns one [`SendChain`] and one [`RecvWindow`] per epoch, and implements on top of
//! the records: key confirmation, application data, request-response correlation,
//! keepalive, idle timeout, automatic rekey (10,000 messages, 1 hour, or before 2^63) and
//! the graceful shutdown (encrypted `shutdown`, acknowledged, then close).
//!
//! Rekey: only the initiator starts one (the responder asks with a `RekeyRequest` when its
//! own limits are reached). The initiator sends `Rekey` (a fresh handshake hello) and
//! sends nothing else until the `RekeyAck` (the reply, the responder's last record under
//! the old keys) arrives; the responder switches both directions right after sealing the
//! ack. New epoch: new directional keys, sequence numbers restart at 1, windows cleared.
//!
//! Timers follow quinn-proto's sans-IO shape: [`Session::poll_timeout`] is the next instant
//! at which [`Session::poll`] has work (keepalive, automatic rekey, idle, rekey and shutdown
//! deadlines), so a transport sleeps exactly until then instead of waking on a fixed tick;
//! the answer changes only after a call that takes `&mut self`, so it is asked again after
//! each of them.
//!
//! Randomness (the nonces of the records, the ephemeral keys of a rekey) comes from the RNG
//! the session was built with: the OS CSPRNG with [`Session::new`], any CSPRNG with
//! [`Session::with_rng`] (tests pass a seeded one).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rand_core::{CryptoRngCore, OsRng};
use subtle::ConstantTimeEq;
use tracing::{debug, info, warn};

use crate::chain::{SendChain, SEQ_LIMIT};
use crate::error::ChannelError;
use crate::handshake::{self, Established, HandshakeConfig, Initiator, Psk, Role};
use crate::message::{self, Kind, INNER_HEADER};
use crate::record::{HTTP_ENDPOINT, STREAM_ENDPOINT};
use crate::window::RecvWindow;

/// Messages per direction and epoch before a rekey (the seed's MaxMessagesBeforeRekey).
pub const MAX_MESSAGES_BEFORE_REKEY: u64 = 10_000;
/// Epoch age before a rekey (the seed's MaxTimeBeforeRekey).
pub const MAX_TIME_BEFORE_REKEY: Duration = Duration::from_secs(3600);
/// Rekey once a sequence number comes this close to 2^63.
pub const SEQ_REKEY_MARGIN: u64 = 1 << 20;

/// The idle, rekey and shutdown timeouts fire once *more* than their duration has passed;
/// on a nanosecond clock that is this much after `start + duration`.
const STRICTLY_AFTER: Duration = Duration::from_nanos(1);

/// The source of the session's randomness (nonces, rekey key pairs).
pub type SessionRng = Box<dyn CryptoRngCore + Send>;

/// Session settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Pre-shared key and post-quantum option.
    pub handshake: HandshakeConfig,
    /// Rekey after this many messages in one direction (default 10,000).
    pub rekey_after_messages: u64,
    /// Rekey after this much time (default 1 hour).
    pub rekey_after: Duration,
    /// Send a ping after this much silence (default 15 s).
    pub keepalive_interval: Duration,
    /// Give up after this long without any valid record from the peer (default 60 s).
    pub idle_timeout: Duration,
    /// Deadline for an answer (handshake, request, rekey, shutdown; default 32 s).
    pub request_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            handshake: HandshakeConfig::default(),
            rekey_after_messages: MAX_MESSAGES_BEFORE_REKEY,
            rekey_after: MAX_TIME_BEFORE_REKEY,
            keepalive_interval: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(32),
        }
    }
}

impl Config {
    /// Default settings with an optional PSK and the post-quantum option.
    pub fn new(psk: Option<Psk>, pq: bool) -> Config {
        Config { handshake: HandshakeConfig { psk, pq }, ..Config::default() }
    }
}

/// Transport flavour: decides the endpoint string and who may speak unprompted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A byte stream: endpoint `stream`, both sides send whenever they like.
    Stream,
    /// HTTP: endpoint `/message`; the responder only answers the initiator's POSTs.
    Http,
}

impl Mode {
    /// The AAD endpoint of this mode.
    pub fn endpoint(self) -> &'static str {
        match self {
            Mode::Stream => STREAM_ENDPOINT,
            Mode::Http => HTTP_ENDPOINT,
        }
    }
}

/// What a received record meant.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// Handled internally (keepalive, ignored control message).
    None,
    /// The peer's key confirmation.
    Confirmed,
    /// One-way application data.
    Data(Vec<u8>),
    /// An application request to answer with [`Session::seal_response`].
    Request {
        /// Correlation id.
        id: u64,
        /// Request body.
        data: Vec<u8>,
    },
    /// The answer to one of our requests.
    Response {
        /// Correlation id (that of our request).
        id: u64,
        /// Response body.
        data: Vec<u8>,
    },
    /// The peer will send no more application data.
    End,
    /// A rekey completed; the new epoch number.
    Rekeyed(u32),
    /// The peer shut down; the acknowledgement is in the output's replies. Closed now.
    PeerShutdown,
    /// Our shutdown was acknowledged. Closed now.
    Closed,
}

/// The result of handling one record.
#[derive(Debug)]
pub struct Output {
    /// What it meant.
    pub event: Event,
    /// Records to send back, in order (pong, rekey ack, shutdown ack, ...).
    pub replies: Vec<Vec<u8>>,
    /// Sequence number of the accepted record.
    pub seq: u64,
}

enum Rekey {
    Idle,
    Sent { hs: Box<Initiator>, since: Instant },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    ShutdownSent(Instant),
    Closed,
}

/// One end of a secure channel.
pub struct Session {
    role: Role,
    mode: Mode,
    cfg: Config,
    session_id: [u8; 16],
    epoch: u32,
    send: SendChain,
    recv: RecvWindow,
    epoch_start: Instant,
    last_sent: Instant,
    last_recv: Instant,
    rekey: Rekey,
    rekey_requested: bool,
    state: State,
    next_request_id: u64,
    outstanding: HashSet<u64>,
    rejected: u64,
    rng: SessionRng,
}

impl Session {
    /// A session from a completed handshake, at time `now`; randomness from the OS CSPRNG.
    pub fn new(est: Established, mode: Mode, cfg: Config, now: Instant) -> Session {
        Session::with_rng(est, mode, cfg, now, Box::new(OsRng))
    }

    /// [`Session::new`] drawing its randomness (record nonces, rekey key pairs) from `rng`.
    pub fn with_rng(est: Established, mode: Mode, cfg: Config, now: Instant, rng: SessionRng) -> Session {
        let endpoint = mode.endpoint();
        let role = est.role;
        let (send_key, recv_key) = match role {
            Role::Initiator => (est.keys.alice_to_bob, est.keys.bob_to_alice),
            Role::Responder => (est.keys.bob_to_alice, est.keys.alice_to_bob),
        };
        info!(
            session = %hex::encode(est.session_id),
            role = ?role,
            pq = est.pq,
            psk = cfg.handshake.psk.is_some(),
            "secure channel established"
        );
        Session {
            role,
            mode,
            session_id: est.session_id,
            epoch: 1,
            send: SendChain::new(send_key, role.send_direction(), endpoint),
            recv: RecvWindow::new(recv_key, role.recv_direction(), endpoint),
            epoch_start: now,
            last_sent: now,
            last_recv: now,
            rekey: Rekey::Idle,
            rekey_requested: false,
            state: State::Open,
            next_request_id: 1,
            outstanding: HashSet::new(),
            rejected: 0,
            cfg,
            rng,
        }
    }

    /// The session id (public, stable across rekeys).
    pub fn session_id(&self) -> [u8; 16] {
        self.session_id
    }

    /// The session id in hex.
    pub fn session_id_hex(&self) -> String {
        hex::encode(self.session_id)
    }

    /// Checks a session id received out of band (e.g. an HTTP header).
    pub fn check_session_id(&self, id: &[u8]) -> Result<(), ChannelError> {
        if id.len() == self.session_id.len() && bool::from(id.ct_eq(&self.session_id)) {
            Ok(())
        } else {
            self.log_reject(&ChannelError::WrongSession);
            Err(ChannelError::WrongSession)
        }
    }

    /// This side's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The current epoch (1 after the handshake, +1 per rekey).
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// Sequence number our next record gets.
    pub fn next_send_seq(&self) -> u64 {
        self.send.next_seq()
    }

    /// Highest sequence number accepted from the peer in this epoch.
    pub fn recv_highest(&self) -> u64 {
        self.recv.highest()
    }

    /// Records rejected so far.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Whether the session is closed.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Whether a rekey we started is waiting for its acknowledgement.
    pub fn rekey_pending(&self) -> bool {
        matches!(self.rekey, Rekey::Sent { .. })
    }

    /// Whether application messages can be sealed now.
    pub fn can_send(&self) -> bool {
        self.state == State::Open && !self.rekey_pending()
    }

    /// Requests still waiting for a response.
    pub fn outstanding_requests(&self) -> usize {
        self.outstanding.len()
    }

    fn log_reject(&self, e: &ChannelError) {
        warn!(
            session = %hex::encode(self.session_id),
            epoch = self.epoch,
            reason = e.reason(),
            "secure channel rejected a message: {e}"
        );
    }

    fn seal(&mut self, kind: Kind, id: u64, payload: &[u8], now: Instant) -> Result<Vec<u8>, ChannelError> {
        if self.state == State::Closed {
            return Err(ChannelError::Closed);
        }
        let h = message::header(kind, id);
        let rec = self.send.seal_parts_with_rng(&[&h, payload], &mut *self.rng)?;
        self.last_sent = now;
        Ok(rec)
    }

    fn check_app_send(&self) -> Result<(), ChannelError> {
        match self.state {
            State::Open if self.rekey_pending() => Err(ChannelError::RekeyPending),
            State::Open => Ok(()),
            _ => Err(ChannelError::Closed),
        }
    }

    /// The key-confirmation record (the first record each way on a byte stream).
    pub fn seal_confirm(&mut self, now: Instant) -> Result<Vec<u8>, ChannelError> {
        let id = self.session_id;
        self.seal(Kind::Confirm, 0, &id, now)
    }

    /// Seals one-way application data.
    pub fn seal_data(&mut self, data: &[u8], now: Instant) -> Result<Vec<u8>, ChannelError> {
        self.check_app_send()?;
        self.seal(Kind::Data, 0, data, now)
    }

    /// Seals a request; returns its correlation id and the record.
    pub fn seal_request(&mut self, data: &[u8], now: Instant) -> Result<(u64, Vec<u8>), ChannelError> {
        self.check_app_send()?;
        let id = self.next_request_id;
        let rec = self.seal(Kind::Request, id, data, now)?;
        self.next_request_id += 1;
        self.outstanding.insert(id);
        Ok((id, rec))
    }

    /// Forgets an outstanding request (after its deadline passed).
    pub fn cancel_request(&mut self, id: u64) {
        self.outstanding.remove(&id);
    }

    /// Seals the response to the peer's request `id`. Allowed while our own rekey is
    /// pending only in HTTP mode, where the responder never starts one.
    pub fn seal_response(&mut self, id: u64, data: &[u8], now: Instant) -> Result<Vec<u8>, ChannelError> {
        self.check_app_send()?;
        self.seal(Kind::Response, id, data, now)
    }

    /// Seals the end-of-data marker (half-close).
    pub fn seal_end(&mut self, now: Instant) -> Result<Vec<u8>, ChannelError> {
        self.check_app_send()?;
        self.seal(Kind::End, 0, &[], now)
    }

    /// Seals a keepalive ping.
    pub fn seal_ping(&mut self, now: Instant) -> Result<Vec<u8>, ChannelError> {
        self.check_app_send()?;
        self.seal(Kind::Ping, 0, &[], now)
    }

    /// Whether a rekey is due (message count, epoch age, or sequence numbers near 2^63).
    pub fn rekey_due(&self, now: Instant) -> bool {
        self.rekey_due_by_count() || now.saturating_duration_since(self.epoch_start) >= self.cfg.rekey_after
    }

    fn rekey_due_by_count(&self) -> bool {
        let limit = self.cfg.rekey_after_messages;
        self.send.sent() >= limit
            || self.recv.highest() >= limit
            || self.send.next_seq() >= SEQ_LIMIT - SEQ_REKEY_MARGIN
            || self.recv.highest() >= SEQ_LIMIT - SEQ_REKEY_MARGIN
    }

    /// Starts a rekey now (initiator), or asks the initiator for one (responder, stream
    /// mode). Returns the record to send.
    pub fn start_rekey(&mut self, now: Instant) -> Result<Vec<u8>, ChannelError> {
        self.check_app_send()?;
        match self.role {
            Role::Initiator => {
                let hs = Initiator::with_rng(&self.cfg.handshake, &mut *self.rng);
                let rec = self.seal(Kind::Rekey, 0, hs.hello(), now)?;
                info!(session = %self.session_id_hex(), epoch = self.epoch, "rekey started");
                self.rekey = Rekey::Sent { hs: Box::new(hs), since: now };
                Ok(rec)
            }
            Role::Responder => {
                if self.mode == Mode::Http {
                    return Err(ChannelError::Unexpected("the HTTP responder cannot start a rekey"));
                }
                let rec = self.seal(Kind::RekeyRequest, 0, &[], now)?;
                self.rekey_requested = true;
                info!(session = %self.session_id_hex(), epoch = self.epoch, "rekey requested");
                Ok(rec)
            }
        }
    }

    /// Starts the graceful shutdown: returns the encrypted `shutdown` record.
    pub fn begin_shutdown(&mut self, now: Instant) -> Result<Vec<u8>, ChannelError> {
        if self.state != State::Open {
            return Err(ChannelError::Closed);
        }
        let rec = self.seal(Kind::Shutdown, 0, &[], now)?;
        self.state = State::ShutdownSent(now);
        info!(session = %self.session_id_hex(), "shutdown sent");
        Ok(rec)
    }

    /// Timers: returns records to send (keepalive ping, rekey) or `Timeout` when the
    /// peer has been silent too long or an answer is overdue. Call it at
    /// [`Session::poll_timeout`] (calling it earlier is harmless).
    pub fn poll(&mut self, now: Instant) -> Result<Vec<Vec<u8>>, ChannelError> {
        if self.state == State::Closed {
            return Ok(Vec::new());
        }
        if self.timeout_at().is_some_and(|t| now >= t) {
            let e = ChannelError::Timeout;
            self.log_reject(&e);
            return Err(e);
        }
        let mut out = Vec::new();
        if self.may_start_rekey() && self.rekey_due(now) {
            out.push(self.start_rekey(now)?);
        }
        if self.keepalive_at().is_some_and(|t| now >= t) {
            out.push(self.seal_ping(now)?);
        }
        Ok(out)
    }

    /// The next instant at which [`Session::poll`] has something to do (an instant in the
    /// past: at once), or `None` once the session is closed. It moves only through calls
    /// that take `&mut self` (a record handled or sealed, a poll), so ask again after each.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == State::Closed {
            return None;
        }
        let rekey_at = if !self.may_start_rekey() {
            None
        } else if self.rekey_due_by_count() {
            Some(self.epoch_start)
        } else {
            self.epoch_start.checked_add(self.cfg.rekey_after)
        };
        [self.timeout_at(), rekey_at, self.keepalive_at()].into_iter().flatten().min()
    }

    /// When the session gives up: no valid record for longer than the idle timeout, or no
    /// answer to our rekey or shutdown within the request timeout.
    fn timeout_at(&self) -> Option<Instant> {
        let after = |since: Instant, d: Duration| since.checked_add(d)?.checked_add(STRICTLY_AFTER);
        let idle = after(self.last_recv, self.cfg.idle_timeout);
        let shutdown = match self.state {
            State::ShutdownSent(t) => after(t, self.cfg.request_timeout),
            _ => None,
        };
        let rekey = match &self.rekey {
            Rekey::Sent { since, .. } => after(*since, self.cfg.request_timeout),
            Rekey::Idle => None,
        };
        [idle, shutdown, rekey].into_iter().flatten().min()
    }

    /// Whether this side may send unprompted: not the HTTP responder, which only answers.
    fn speaks_unprompted(&self) -> bool {
        !(self.mode == Mode::Http && self.role == Role::Responder)
    }

    /// Whether a due rekey would be started (initiator) or asked for (responder, once).
    fn may_start_rekey(&self) -> bool {
        self.speaks_unprompted()
            && self.can_send()
            && match self.role {
                Role::Initiator => true,
                Role::Responder => !self.rekey_requested,
            }
    }

    /// When the next keepalive ping is due (after `keepalive_interval` without sending).
    fn keepalive_at(&self) -> Option<Instant> {
        if self.speaks_unprompted() && self.can_send() {
            self.last_sent.checked_add(self.cfg.keepalive_interval)
        } else {
            None
        }
    }

    fn install(&mut self, est: Established, now: Instant) {
        let endpoint = self.mode.endpoint();
        let (send_key, recv_key) = match self.role {
            Role::Initiator => (est.keys.alice_to_bob, est.keys.bob_to_alice),
            Role::Responder => (est.keys.bob_to_alice, est.keys.alice_to_bob),
        };
        // The old chains (and their keys) are dropped, i.e. zeroized, here.
        self.send = SendChain::new(send_key, self.role.send_direction(), endpoint);
        self.recv = RecvWindow::new(recv_key, self.role.recv_direction(), endpoint);
        self.epoch += 1;
        self.epoch_start = now;
        self.rekey = Rekey::Idle;
        self.rekey_requested = false;
        info!(session = %self.session_id_hex(), epoch = self.epoch, "rekey complete: new keys, sequence numbers reset");
    }

    /// Checks, opens and interprets one record from the peer. Every rejection is an
    /// error value and a `tracing` event; the session stays usable after a rejected record.
    pub fn handle_record(&mut self, record: &[u8], now: Instant) -> Result<Output, ChannelError> {
        if self.state == State::Closed {
            let e = ChannelError::Closed;
            self.log_reject(&e);
            return Err(e);
        }
        let (seq, mut pt) = match self.recv.open(record) {
            Ok(v) => v,
            Err(e) => {
                self.rejected += 1;
                return Err(e);
            }
        };
        self.last_recv = now;
        let r = self.interpret(seq, &mut pt, now);
        if let Err(e) = &r {
            self.rejected += 1;
            self.log_reject(e);
        }
        r
    }

    fn interpret(&mut self, seq: u64, pt: &mut Vec<u8>, now: Instant) -> Result<Output, ChannelError> {
        let (kind, id) = message::decode(pt)?;
        let payload = &pt[INNER_HEADER..];
        let mut replies = Vec::new();
        let event = match kind {
            Kind::Confirm => {
                if payload.len() == 16 && bool::from(payload.ct_eq(&self.session_id)) {
                    Event::Confirmed
                } else {
                    return Err(ChannelError::KeyConfirmation);
                }
            }
            Kind::Data => {
                pt.drain(..INNER_HEADER);
                Event::Data(std::mem::take(pt))
            }
            Kind::Request => {
                pt.drain(..INNER_HEADER);
                Event::Request { id, data: std::mem::take(pt) }
            }
            Kind::Response => {
                if !self.outstanding.remove(&id) {
                    return Err(ChannelError::Unexpected("response to no outstanding request"));
                }
                pt.drain(..INNER_HEADER);
                Event::Response { id, data: std::mem::take(pt) }
            }
            Kind::Ping => {
                if self.can_send() {
                    replies.push(self.seal(Kind::Pong, id, &[], now)?);
                }
                Event::None
            }
            Kind::Pong => Event::None,
            Kind::End => Event::End,
            Kind::Rekey => {
                if self.role != Role::Responder {
                    return Err(ChannelError::Unexpected("rekey sent to the initiator"));
                }
                if self.state != State::Open {
                    debug!("rekey ignored during shutdown");
                    Event::None
                } else {
                    let (reply, est) = handshake::respond_with_rng(payload, &self.cfg.handshake, &mut *self.rng)?;
                    // The ack is the last record under the old keys.
                    replies.push(self.seal(Kind::RekeyAck, 0, &reply, now)?);
                    self.install(est, now);
                    Event::Rekeyed(self.epoch)
                }
            }
            Kind::RekeyAck => {
                if !self.rekey_pending() {
                    return Err(ChannelError::Unexpected("rekey acknowledgement without a rekey"));
                }
                let Rekey::Sent { hs, .. } = std::mem::replace(&mut self.rekey, Rekey::Idle) else {
                    return Err(ChannelError::Unexpected("rekey acknowledgement without a rekey"));
                };
                let est = hs.finish(payload)?;
                self.install(est, now);
                Event::Rekeyed(self.epoch)
            }
            Kind::RekeyRequest => {
                if self.role != Role::Initiator {
                    return Err(ChannelError::Unexpected("rekey request sent to the responder"));
                }
                if self.can_send() {
                    replies.push(self.start_rekey(now)?);
                }
                Event::None
            }
            Kind::Shutdown => {
                replies.push(self.seal(Kind::ShutdownAck, 0, &[], now)?);
                match self.state {
                    // Both sides shut down at once: keep waiting for our own ack.
                    State::ShutdownSent(_) => Event::None,
                    _ => {
                        self.state = State::Closed;
                        info!(session = %self.session_id_hex(), "peer shut down; acknowledged");
                        Event::PeerShutdown
                    }
                }
            }
            Kind::ShutdownAck => {
                if !matches!(self.state, State::ShutdownSent(_)) {
                    return Err(ChannelError::Unexpected("shutdown acknowledgement without a shutdown"));
                }
                self.state = State::Closed;
                info!(session = %self.session_id_hex(), "shutdown acknowledged; closed");
                Event::Closed
            }
        };
        Ok(Output { event, replies, seq })
    }
}
