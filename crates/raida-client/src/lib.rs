//! # raida-client
//!
//! Async client for RAIDA servers: one request to one server over UDP or TCP, the same
//! request to many servers in parallel, and the key exchange flows built on them.
//! Requests are built and answers verified by `raida_proto::client`; this crate only
//! moves bytes and keeps time.

use std::net::SocketAddr;
use std::time::Duration;

use raida_proto::client::{build_request, ClientKey, Reply, Routing};
use raida_proto::codec::{Reply as _, Request};
use raida_proto::header::response_len;
use rand_core::OsRng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use zeroize::{Zeroize, Zeroizing};

pub mod exchange;
pub mod mailbox;
pub mod rke;
mod rke_report;
pub mod transfer;

// The peer and the error of a request live in raida-net with the request batches that
// share them; every caller of the client names them through here.
use raida_net::batch::{Backoff, MAX_SENDS};
pub use raida_net::{unix_now, ClientError, Server};

/// Default per-request timeout (RAIDA_SERVER_RCV_TIMEOUT).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(32);

/// UDP or TCP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// How to talk to RAIDA servers: transport, the network's coin id, per-request timeout,
/// and whether an unanswered UDP request is sent again (yes unless a probe measures loss).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Client {
    pub transport: Transport,
    pub coin_id: u16,
    pub timeout: Duration,
    pub retransmit: bool,
}

impl Client {
    pub fn new(transport: Transport, coin_id: u16, timeout: Duration) -> Client {
        Client { transport, coin_id, timeout, retransmit: true }
    }

    /// The same client, sending each UDP request once (a probe that measures loss).
    pub fn single_copy(self) -> Client {
        Client { retransmit: false, ..self }
    }

    /// UDP with the default timeout (RAIDA_SERVER_RCV_TIMEOUT).
    pub fn udp(coin_id: u16) -> Client {
        Client::new(Transport::Udp, coin_id, DEFAULT_TIMEOUT)
    }

    /// Send one typed request and decode its typed answer: [`Client::request`] with the
    /// request's group and command. A non-success status is [`ClientError::Response`], a
    /// payload that is not the command's answer [`ClientError::Malformed`]. Both the
    /// request bytes and the answer bytes are erased once used (a Post Key carries a key
    /// part, a Get Key answer a key).
    pub async fn call<R: Request>(
        &self,
        server: Server,
        key: &ClientKey,
        request: &R,
    ) -> Result<R::Answer, ClientError> {
        let payload = Zeroizing::new(request.to_bytes());
        let mut reply = self.request(server, R::GROUP, R::COMMAND, key, &payload).await?;
        let answer = R::Answer::decode_reply(reply.status, &reply.payload);
        reply.payload.zeroize();
        answer.map_err(|_| ClientError::Malformed { addr: server.addr, command: R::NAME })
    }

    /// Send one request and return the verified answer (success statuses only;
    /// an error status is [`ClientError::Response`]). Over UDP an unanswered request is
    /// sent again, rebuilt, with the backoff of [`raida_net::batch::udp_batch`], until the
    /// timeout.
    pub async fn request(
        &self,
        server: Server,
        group: u8,
        command: u8,
        key: &ClientKey,
        payload: &[u8],
    ) -> Result<Reply, ClientError> {
        let routing = Routing::new(server.raida_id, self.coin_id, group, command);
        let addr = server.addr;
        let io = |source| ClientError::Io { addr, source };
        let fut = async {
            match self.transport {
                Transport::Udp => {
                    let bind: SocketAddr =
                        if addr.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
                    let sock = UdpSocket::bind(bind).await.map_err(io)?;
                    sock.connect(addr).await.map_err(io)?;
                    // every copy sent so far: an answer to any of them is the answer
                    let mut copies = Vec::with_capacity(MAX_SENDS);
                    let mut backoff = Backoff::default();
                    let mut buf = vec![0u8; 65_536];
                    loop {
                        if copies.len() < MAX_SENDS && (self.retransmit || copies.is_empty()) {
                            // each copy built afresh (a fresh nonce: an identical modern
                            // copy would be a replay, 177); servers answer a copy of what
                            // they already did as they answered the first (6/41, 6/43)
                            let (packet, pending) = build_request(&routing, key, payload, unix_now(), &mut OsRng);
                            sock.send(&packet).await.map_err(io)?;
                            copies.push(pending);
                        }
                        let next_copy = tokio::time::sleep(backoff.next(Duration::ZERO));
                        tokio::pin!(next_copy);
                        loop {
                            let n = tokio::select! {
                                n = sock.recv(&mut buf) => n.map_err(io)?,
                                () = &mut next_copy => break,
                            };
                            // ignore stray datagrams that are not the answer to a copy
                            if let Some(copy) = copies.iter().find(|c| n >= 8 && buf[6..8] == c.echo()) {
                                return copy.open(&buf[..n]).map_err(|source| ClientError::Response { addr, source });
                            }
                        }
                    }
                }
                Transport::Tcp => {
                    let (packet, pending) = build_request(&routing, key, payload, unix_now(), &mut OsRng);
                    let mut s = TcpStream::connect(addr).await.map_err(io)?;
                    let _ = s.set_nodelay(true);
                    s.write_all(&packet).await.map_err(io)?;
                    let answer = read_response(&mut s).await.map_err(io)?;
                    pending.open(&answer).map_err(|source| ClientError::Response { addr, source })
                }
            }
        };
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout(addr)),
        }
    }

    /// Send the same command to many servers (e.g. all 25) in parallel; one result per
    /// server, in order. `key_for` gives the key for each server (a coin's AN for that
    /// RAIDA id, say).
    pub async fn request_all<F>(
        &self,
        servers: &[Server],
        group: u8,
        command: u8,
        key_for: F,
        payload: &[u8],
    ) -> Vec<Result<Reply, ClientError>>
    where
        F: Fn(&Server) -> ClientKey,
    {
        let futs = servers.iter().map(|s| {
            let key = key_for(s);
            let s = *s;
            async move { self.request(s, group, command, &key, payload).await }
        });
        futures_util::future::join_all(futs).await
    }
}

/// Read one complete response (header + body size) from a stream.
pub async fn read_response<R: tokio::io::AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Vec<u8>> {
    let mut head = [0u8; 32];
    r.read_exact(&mut head).await?;
    let total = response_len(&head);
    let mut out = vec![0u8; total];
    out[..32].copy_from_slice(&head);
    r.read_exact(&mut out[32..]).await?;
    Ok(out)
}
