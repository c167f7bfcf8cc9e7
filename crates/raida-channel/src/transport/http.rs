//! The seed's HTTP mode. The parent ("alice", initiator) spawns the child ("bob",
//! responder); they swap the handshake over the child's stdio (length-prefixed frames:
//! hello to the child, reply and then a 2-byte big-endian port back); the child serves
//! encrypted `POST /message` on 127.0.0.1 and answers with JSON
//! `{"ack", "ratchet_seq", "session_id", "encrypted_data"[, "error"]}`.
//!
//! A POST body is one alice-to-bob record (endpoint `/message`), with the header
//! `X-Raida-Session: <session id, hex>`. `encrypted_data` is one bob-to-alice record in
//! standard base64 (or `null` when the message needs no answer). A rejection is
//! `{"ack": false, "error": "<reason>"}` with status 400 (403 for a wrong session).

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use super::frame::{read_frame, write_frame, MAX_FRAME, MAX_HANDSHAKE_FRAME};
use super::within;
use crate::error::ChannelError;
use crate::handshake::{respond, Initiator};
use crate::record::HTTP_ENDPOINT;
use crate::session::{Config, Event, Mode, Session};

/// The HTTP header carrying the session id (hex).
pub const SESSION_HEADER: &str = "x-raida-session";
/// Largest JSON answer the client reads.
const MAX_JSON: usize = MAX_FRAME * 2;

/// The JSON answer of the child.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct HttpReply {
    /// Whether the record was accepted.
    pub ack: bool,
    /// Sequence number of the accepted alice-to-bob record (the chain position the child
    /// ratcheted past); `null` on rejection.
    pub ratchet_seq: Option<u64>,
    /// Session id (hex).
    pub session_id: Option<String>,
    /// One bob-to-alice record, standard base64, or `null`.
    pub encrypted_data: Option<String>,
    /// Rejection reason (`replay`, `too_old`, `gap`, `auth`, `wrong_session`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

type Handler = Box<dyn Fn(&[u8]) -> Vec<u8> + Send + Sync>;

struct Shared {
    session: Mutex<Session>,
    handler: Handler,
    closed: Notify,
}

fn reject(status: StatusCode, e: &ChannelError) -> (StatusCode, Json<HttpReply>) {
    (
        status,
        Json(HttpReply {
            ack: false,
            ratchet_seq: None,
            session_id: None,
            encrypted_data: None,
            error: Some(e.reason().to_string()),
        }),
    )
}

async fn handle_message(
    State(st): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, Json<HttpReply>) {
    let Ok(mut session) = st.session.lock() else {
        return reject(StatusCode::INTERNAL_SERVER_ERROR, &ChannelError::Closed);
    };
    let sid =
        headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok()).and_then(|v| hex::decode(v).ok()).unwrap_or_default();
    if let Err(e) = session.check_session_id(&sid) {
        return reject(StatusCode::FORBIDDEN, &e);
    }
    let now = Instant::now();
    let out = match session.handle_record(&body, now) {
        Ok(o) => o,
        Err(e) => return reject(StatusCode::BAD_REQUEST, &e),
    };
    let mut answer = out.replies.into_iter().next();
    match out.event {
        Event::Request { id, data } => {
            let resp = (st.handler)(&data);
            match session.seal_response(id, &resp, now) {
                Ok(r) => answer = Some(r),
                Err(e) => return reject(StatusCode::INTERNAL_SERVER_ERROR, &e),
            }
        }
        Event::PeerShutdown => st.closed.notify_one(),
        Event::Data(d) => {
            // One-way data goes to the handler too; its answer has nowhere to go.
            debug!(len = d.len(), "one-way data received");
            let _ = (st.handler)(&d);
        }
        _ => {}
    }
    (
        StatusCode::OK,
        Json(HttpReply {
            ack: true,
            ratchet_seq: Some(out.seq),
            session_id: Some(session.session_id_hex()),
            encrypted_data: answer.map(|a| B64.encode(a)),
            error: None,
        }),
    )
}

/// The child's side: reads the hello from `input`, writes the reply and the port to
/// `output`, then serves `POST /message` on 127.0.0.1 (ephemeral port), answering each
/// request with `handler(body)` (one-way data is passed to `handler` too; that answer is
/// dropped). Returns after the graceful shutdown, when `input` ends
/// (the parent is gone), or with `Timeout` when the parent stays silent too long.
pub async fn serve_child<R, W, H>(mut input: R, mut output: W, cfg: Config, handler: H) -> Result<(), ChannelError>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin,
    H: Fn(&[u8]) -> Vec<u8> + Send + Sync + 'static,
{
    let hello = tokio::time::timeout(cfg.request_timeout, read_frame(&mut input, MAX_HANDSHAKE_FRAME))
        .await
        .map_err(|_| ChannelError::Timeout)??
        .ok_or(ChannelError::Closed)?;
    let (reply, est) = respond(&hello, &cfg.handshake)?;
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let port = listener.local_addr()?.port();
    write_frame(&mut output, &reply).await?;
    write_frame(&mut output, &port.to_be_bytes()).await?;
    output.flush().await?;
    let session = Session::new(est, Mode::Http, cfg.clone(), Instant::now());
    info!(port, session = %session.session_id_hex(), "child serving encrypted HTTP on 127.0.0.1");
    let shared = Arc::new(Shared { session: Mutex::new(session), handler: Box::new(handler), closed: Notify::new() });
    let app = Router::new()
        .route(HTTP_ENDPOINT, post(handle_message))
        .layer(DefaultBodyLimit::max(MAX_FRAME))
        .with_state(shared.clone());
    let outcome = Arc::new(Mutex::new(Ok(())));
    let (st, oc) = (shared.clone(), outcome.clone());
    let stop = async move {
        let mut buf = [0u8; 64];
        let set = |r: Result<(), ChannelError>| {
            if let Ok(mut o) = oc.lock() {
                *o = r;
            }
        };
        loop {
            // Sleep until the session's next deadline. Requests handled meanwhile only move
            // it later (the HTTP responder has just the idle timeout; it never starts a rekey
            // or a shutdown), so waking at a stale deadline costs one extra poll, no more.
            let next = st.session.lock().ok().and_then(|s| s.poll_timeout());
            tokio::select! {
                biased;
                _ = st.closed.notified() => break,
                n = input.read(&mut buf) => {
                    if matches!(n, Ok(0) | Err(_)) {
                        let closed = st.session.lock().map(|s| s.is_closed()).unwrap_or(false);
                        if !closed {
                            warn!("parent closed stdin without a shutdown; stopping");
                            set(Err(ChannelError::Closed));
                        }
                        break;
                    }
                }
                _ = sleep_until(next) => {
                    let polled = st.session.lock().map(|mut s| s.poll(Instant::now()));
                    if let Ok(Err(e)) = polled {
                        set(Err(e));
                        break;
                    }
                }
            }
        }
    };
    axum::serve(listener, app).with_graceful_shutdown(stop).await?;
    let r = outcome.lock().map(|o| o.clone()).unwrap_or(Err(ChannelError::Closed));
    r
}

/// Sleeps until `at`; never returns for `None` (no deadline).
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

/// The parent's side of HTTP mode: owns the child, its stdin (closing it stops the
/// child) and the alice session.
pub struct HttpClient {
    session: Session,
    addr: SocketAddr,
    sender: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
    child: Option<Child>,
    to_child: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    timeout: Duration,
}

/// A decrypted answer.
#[derive(Debug)]
pub struct HttpResponse {
    /// Response body.
    pub data: Vec<u8>,
    /// The child's `ratchet_seq` (our record's sequence number).
    pub ratchet_seq: u64,
}

impl HttpClient {
    /// Spawns `cmd` (stdin/stdout piped, stderr inherited), runs the handshake over its
    /// stdio and connects to the port it announces.
    pub async fn spawn(mut cmd: Command, cfg: Config) -> Result<HttpClient, ChannelError> {
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).kill_on_drop(true);
        let mut child = cmd.spawn()?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(ChannelError::Closed);
        };
        let mut c = Self::over_pipes(stdout, stdin, cfg).await?;
        c.child = Some(child);
        Ok(c)
    }

    /// Runs the parent's handshake over any pipe pair to a child that runs
    /// [`serve_child`] (`from_child` = its stdout, `to_child` = its stdin, kept open
    /// until shutdown).
    pub async fn over_pipes<R, W>(from_child: R, to_child: W, cfg: Config) -> Result<HttpClient, ChannelError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Send + Unpin + 'static,
    {
        within(cfg.request_timeout, "HTTP-mode handshake", Self::handshake_pipes(from_child, to_child, cfg)).await
    }

    async fn handshake_pipes<R, W>(mut from_child: R, mut to_child: W, cfg: Config) -> Result<HttpClient, ChannelError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Send + Unpin + 'static,
    {
        let hs = Initiator::new(&cfg.handshake);
        write_frame(&mut to_child, hs.hello()).await?;
        to_child.flush().await?;
        let reply = read_frame(&mut from_child, MAX_HANDSHAKE_FRAME).await?.ok_or(ChannelError::Closed)?;
        let est = hs.finish(&reply)?;
        let port = read_frame(&mut from_child, 2).await?.ok_or(ChannelError::Closed)?;
        let [hi, lo] = port[..] else {
            return Err(ChannelError::BadHandshake("port frame is not 2 bytes"));
        };
        let port = u16::from_be_bytes([hi, lo]);
        let timeout = cfg.request_timeout;
        Ok(HttpClient {
            session: Session::new(est, Mode::Http, cfg, Instant::now()),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            sender: None,
            child: None,
            to_child: Some(Box::new(to_child)),
            timeout,
        })
    }

    /// The session (read-only: id, epoch, sequence numbers).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The child's loopback address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    async fn post(&mut self, record: Vec<u8>) -> Result<HttpReply, ChannelError> {
        let r = tokio::time::timeout(self.timeout, self.post_inner(record)).await;
        match r {
            Ok(r) => r,
            Err(_) => {
                warn!("HTTP request timed out");
                self.sender = None;
                Err(ChannelError::Timeout)
            }
        }
    }

    async fn post_inner(&mut self, record: Vec<u8>) -> Result<HttpReply, ChannelError> {
        let http = |e: &dyn std::fmt::Display| ChannelError::Http(e.to_string());
        let need_connection = match &self.sender {
            Some(s) => s.is_closed(),
            None => true,
        };
        if need_connection {
            let stream = TcpStream::connect(self.addr).await?;
            let _ = stream.set_nodelay(true);
            let (sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| http(&e))?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    debug!("HTTP connection ended: {e}");
                }
            });
            self.sender = Some(sender);
        }
        let Some(sender) = self.sender.as_mut() else {
            return Err(ChannelError::Closed);
        };
        let req = hyper::Request::builder()
            .method("POST")
            .uri(HTTP_ENDPOINT)
            .header("host", self.addr.to_string())
            .header("content-type", "application/octet-stream")
            .header(SESSION_HEADER, self.session.session_id_hex())
            .body(Full::new(Bytes::from(record)))
            .map_err(|e| http(&e))?;
        sender.ready().await.map_err(|e| http(&e))?;
        let resp = sender.send_request(req).await.map_err(|e| http(&e))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_JSON).collect().await.map_err(|e| http(&*e))?.to_bytes();
        let reply: HttpReply = serde_json::from_slice(&body).map_err(|e| http(&e))?;
        if !reply.ack {
            let reason = reply.error.unwrap_or_else(|| format!("HTTP {status}"));
            warn!(%reason, "child rejected our record");
            return Err(ChannelError::PeerRejected(reason));
        }
        if let Some(sid) = &reply.session_id {
            let raw = hex::decode(sid).unwrap_or_default();
            self.session.check_session_id(&raw)?;
        }
        Ok(reply)
    }

    /// Posts one record and opens the answer record (if any).
    async fn exchange(&mut self, record: Vec<u8>) -> Result<(u64, Option<Event>), ChannelError> {
        let sent_seq = crate::record::record_seq(&record)?;
        let reply = self.post(record).await?;
        let seq = reply.ratchet_seq.unwrap_or(0);
        if seq != sent_seq {
            warn!(sent_seq, acked = seq, "acknowledgement for another record");
            return Err(ChannelError::Unexpected("acknowledgement for another record"));
        }
        let Some(data) = reply.encrypted_data else {
            return Ok((seq, None));
        };
        let raw = B64.decode(data.as_bytes()).map_err(|_| {
            warn!("encrypted_data is not base64");
            ChannelError::Malformed("encrypted_data is not base64")
        })?;
        let out = self.session.handle_record(&raw, Instant::now())?;
        Ok((seq, Some(out.event)))
    }

    /// Timers: automatic rekey (10,000 messages, 1 hour, 2^63) and keepalive pings. The
    /// parent has no task of its own: call this by `session().poll_timeout()` on an idle
    /// session (`request` and `send` call it first anyway).
    pub async fn tick(&mut self) -> Result<(), ChannelError> {
        let recs = self.session.poll(Instant::now())?;
        for r in recs {
            self.exchange(r).await?;
        }
        Ok(())
    }

    /// Sends a request and returns the decrypted, correlated response.
    pub async fn request(&mut self, data: &[u8]) -> Result<HttpResponse, ChannelError> {
        self.tick().await?;
        let (id, rec) = self.session.seal_request(data, Instant::now())?;
        match self.exchange(rec).await {
            Ok((seq, Some(Event::Response { id: rid, data }))) if rid == id => {
                Ok(HttpResponse { data, ratchet_seq: seq })
            }
            Ok(_) => {
                self.session.cancel_request(id);
                warn!(id, "answer is not the response to our request");
                Err(ChannelError::Unexpected("answer is not the response to our request"))
            }
            Err(e) => {
                self.session.cancel_request(id);
                Err(e)
            }
        }
    }

    /// Sends one-way data; returns the acknowledged sequence number.
    pub async fn send(&mut self, data: &[u8]) -> Result<u64, ChannelError> {
        self.tick().await?;
        let rec = self.session.seal_data(data, Instant::now())?;
        Ok(self.exchange(rec).await?.0)
    }

    /// Sends a keepalive ping and checks the pong.
    pub async fn ping(&mut self) -> Result<(), ChannelError> {
        let rec = self.session.seal_ping(Instant::now())?;
        match self.exchange(rec).await? {
            (_, Some(Event::None)) => Ok(()),
            _ => Err(ChannelError::Unexpected("no pong")),
        }
    }

    /// Forces a rekey now; returns the new epoch.
    pub async fn rekey(&mut self) -> Result<u32, ChannelError> {
        let rec = self.session.start_rekey(Instant::now())?;
        match self.exchange(rec).await? {
            (_, Some(Event::Rekeyed(e))) => Ok(e),
            _ => Err(ChannelError::Unexpected("no rekey acknowledgement")),
        }
    }

    /// Graceful shutdown: encrypted `shutdown`, wait for its acknowledgement, close the
    /// connection and wait for the child to exit. Returns the child's exit success.
    pub async fn shutdown(mut self) -> Result<bool, ChannelError> {
        let rec = self.session.begin_shutdown(Instant::now())?;
        let ev = self.exchange(rec).await?;
        if !matches!(ev, (_, Some(Event::Closed))) {
            return Err(ChannelError::Unexpected("no shutdown acknowledgement"));
        }
        self.sender = None;
        self.to_child = None;
        match self.child.take() {
            Some(mut c) => match tokio::time::timeout(self.timeout, c.wait()).await {
                Ok(Ok(status)) => Ok(status.success()),
                Ok(Err(e)) => Err(e.into()),
                Err(_) => {
                    warn!("child did not exit after shutdown; killing it");
                    let _ = c.kill().await;
                    Err(ChannelError::Timeout)
                }
            },
            None => Ok(true),
        }
    }

    /// Sends a raw, already-sealed record (tests of replay handling over HTTP).
    #[doc(hidden)]
    pub async fn post_raw(&mut self, record: Vec<u8>) -> Result<HttpReply, ChannelError> {
        self.post(record).await
    }

    /// Seals a request without sending it (tests of replay handling over HTTP).
    #[doc(hidden)]
    pub fn seal_request_raw(&mut self, data: &[u8]) -> Result<Vec<u8>, ChannelError> {
        Ok(self.session.seal_request(data, Instant::now())?.1)
    }
}
