//! Many UDP requests to many servers over one socket (one per address family in use),
//! within one timeout for all of them.
//!
//! Why not `raida_client::Client::request` in parallel: that opens a socket and
//! a 64 KiB buffer per request, so a server fetching the parts of many Key Alerts at once
//! held one descriptor per part (16 per alert). Here a batch holds one socket and one small
//! buffer however many requests it carries.
//!
//! Answers are matched to requests by the server's address and the echo bytes (distinct
//! among the requests to one server), then verified by `raida_proto::client`: a modern
//! answer is bound to its request's nonce by the GCM tag, a legacy one by the challenge
//! hash. A datagram that does not verify is ignored (it may be forged), so it cannot end a
//! request; an unauthenticated error answer (header only) does end it, as it would for a
//! single request.

use std::net::SocketAddr;
use std::time::Duration;

use raida_proto::client::{build_request, ClientKey, PendingReply, Reply, ResponseError, Routing};
use rand_core::{OsRng, RngCore};
use tokio::net::UdpSocket;
use tokio::time::Instant;

use crate::{unix_now, ClientError, Server};

/// One request of a batch.
#[derive(Clone, Debug)]
pub struct BatchRequest {
    pub server: Server,
    pub group: u8,
    pub command: u8,
    pub key: ClientKey,
    pub payload: Vec<u8>,
}

/// How many times a request is rebuilt (fresh randomness) to get an echo no other request
/// of the batch to the same server uses; with 2 random bytes a clash is already rare.
const ECHO_ATTEMPTS: usize = 16;

/// Receive errors tolerated before a socket is given up (a persistent error must not
/// spin until the deadline).
const MAX_RECV_ERRORS: usize = 64;

/// The wait before an unanswered request is first sent again. Each further wait doubles
/// (with ±25 % jitter, so that many clients behind one lossy link do not resend in step)
/// up to [`MAX_RETRANSMIT_WAIT`], and is never shorter than twice the slowest round trip
/// this batch has seen (a far RAIDA is not flooded with copies it is about to answer).
pub const FIRST_RETRANSMIT_WAIT: Duration = Duration::from_millis(250);
/// The longest wait between two copies of one request.
pub const MAX_RETRANSMIT_WAIT: Duration = Duration::from_secs(2);
/// Copies of one request at most (the first included): bounds the traffic a silent
/// server draws, and the replies kept to verify late answers.
pub const MAX_SENDS: usize = 8;

/// One request in flight: every copy sent so far (an answer to any of them is the
/// answer: a late answer to the first copy counts), and when the next copy goes out.
struct InFlight {
    addr: SocketAddr,
    /// Each copy and when it was sent.
    copies: Vec<(PendingReply, Instant)>,
    next_send: Instant,
    backoff: Backoff,
}

/// The waits between the copies of one unanswered request: exactly
/// [`FIRST_RETRANSMIT_WAIT`] after the first, then doubling (never below twice the slowest
/// round trip seen) up to [`MAX_RETRANSMIT_WAIT`], each of those ±25 %. The one schedule of
/// `udp_batch` and of `raida_client::Client::request`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Backoff {
    /// The last wait handed out (zero before the first).
    wait: Duration,
}

impl Backoff {
    /// The wait before the next copy; the one after it grows.
    pub fn next(&mut self, slowest: Duration) -> Duration {
        if self.wait.is_zero() {
            self.wait = FIRST_RETRANSMIT_WAIT;
            return FIRST_RETRANSMIT_WAIT;
        }
        self.wait = next_wait(self.wait, slowest);
        jittered(self.wait)
    }
}

/// Send every request over UDP and wait, at most `timeout` in all, for their answers;
/// a request still unanswered is sent again, rebuilt (a fresh nonce and echo: a
/// byte-identical modern copy would be refused as a replay, 177), with exponential
/// backoff ([`FIRST_RETRANSMIT_WAIT`], [`MAX_RETRANSMIT_WAIT`], [`MAX_SENDS`]). Servers
/// answer a copy of a request they already carried out as they answered the first
/// (PROTOCOL.md 6/41, 6/43, 6/47). One result per request, in order. `max_answer` bounds
/// the receive buffer: a longer datagram is truncated and therefore fails verification
/// (ignored).
pub async fn udp_batch(
    coin_id: u16,
    requests: &[BatchRequest],
    timeout: Duration,
    max_answer: usize,
) -> Vec<Result<Reply, ClientError>> {
    let mut results: Vec<Option<Result<Reply, ClientError>>> = (0..requests.len()).map(|_| None).collect();
    let started = Instant::now();
    let deadline = raida_proto::time::deadline_from(started, timeout);
    let mut in_flight: Vec<Option<InFlight>> = Vec::with_capacity(requests.len());

    // one socket per address family in use, bound to an ephemeral port
    let v4 = Socket::bind_if(requests.iter().any(|r| r.server.addr.is_ipv4()), ([0, 0, 0, 0], 0).into()).await;
    let v6 = Socket::bind_if(requests.iter().any(|r| r.server.addr.is_ipv6()), ([0u16; 8], 0).into()).await;
    for (i, r) in requests.iter().enumerate() {
        let (packet, pending) = build_distinct(coin_id, r, &in_flight);
        let mut backoff = Backoff::default();
        let flight = InFlight {
            addr: r.server.addr,
            copies: vec![(pending, started)],
            next_send: started + backoff.next(Duration::ZERO),
            backoff,
        };
        match send(&v4, &v6, &packet, r.server.addr).await {
            Ok(()) => in_flight.push(Some(flight)),
            Err(source) => {
                results[i] = Some(Err(ClientError::Io { addr: r.server.addr, source }));
                in_flight.push(None);
            }
        }
    }

    let mut buf4 = vec![0u8; if v4.bound().is_some() { max_answer + 1 } else { 0 }];
    let mut buf6 = vec![0u8; if v6.bound().is_some() { max_answer + 1 } else { 0 }];
    let mut errors = 0usize;
    let mut slowest = Duration::ZERO;
    while in_flight.iter().any(Option::is_some) && errors < MAX_RECV_ERRORS {
        let next_copy = in_flight
            .iter()
            .flatten()
            .filter(|f| f.copies.len() < MAX_SENDS)
            .map(|f| f.next_send)
            .min()
            .map_or(deadline, |t| t.min(deadline));
        let received = tokio::select! {
            r = recv(v4.bound(), &mut buf4) => r.map(|(n, from)| Some((n, from, true))),
            r = recv(v6.bound(), &mut buf6) => r.map(|(n, from)| Some((n, from, false))),
            _ = tokio::time::sleep_until(next_copy) => Ok(None),
        };
        let now = Instant::now();
        match received {
            Ok(Some((n, from, is_v4))) => {
                let datagram = if is_v4 { &buf4[..n] } else { &buf6[..n] };
                if let Some((i, sent, result)) = match_answer(&in_flight, from, datagram) {
                    // the round trip of the copy answered (not of the first copy: a late
                    // request must not make every other one wait longer)
                    slowest = slowest.max(now.saturating_duration_since(sent));
                    results[i] = Some(result);
                    in_flight[i] = None;
                }
            }
            Ok(None) if now >= deadline => break,
            Ok(None) => {
                for i in 0..in_flight.len() {
                    let due = matches!(&in_flight[i], Some(f) if f.next_send <= now && f.copies.len() < MAX_SENDS);
                    if !due {
                        continue;
                    }
                    let (packet, pending) = build_distinct(coin_id, &requests[i], &in_flight);
                    // a copy that cannot be sent is not fatal: the earlier copies may
                    // still be answered, and the next copy is tried after the next wait
                    let _ = send(&v4, &v6, &packet, requests[i].server.addr).await;
                    if let Some(f) = in_flight[i].as_mut() {
                        f.copies.push((pending, now));
                        f.next_send = now + f.backoff.next(slowest);
                    }
                }
            }
            Err(_) => errors += 1,
        }
    }
    results.into_iter().zip(requests).map(|(r, req)| r.unwrap_or(Err(ClientError::Timeout(req.server.addr)))).collect()
}

/// Build `r` with an echo that no copy in flight to the same server uses, so that an
/// answer names its request.
fn build_distinct(coin_id: u16, r: &BatchRequest, in_flight: &[Option<InFlight>]) -> (Vec<u8>, PendingReply) {
    let routing = Routing::new(r.server.raida_id, coin_id, r.group, r.command);
    let now = unix_now();
    let mut built = build_request(&routing, &r.key, &r.payload, now, &mut OsRng);
    for _ in 1..ECHO_ATTEMPTS {
        let clash = in_flight
            .iter()
            .flatten()
            .any(|f| f.addr == r.server.addr && f.copies.iter().any(|(c, _)| c.echo() == built.1.echo()));
        if !clash {
            break;
        }
        built = build_request(&routing, &r.key, &r.payload, now, &mut OsRng);
    }
    built
}

/// The wait after `wait`: doubled, at least twice the slowest round trip seen, at most
/// [`MAX_RETRANSMIT_WAIT`].
fn next_wait(wait: Duration, slowest: Duration) -> Duration {
    wait.saturating_mul(2).max(slowest.saturating_mul(2)).min(MAX_RETRANSMIT_WAIT)
}

/// `wait` ± 25 %.
fn jittered(wait: Duration) -> Duration {
    let quarter = wait / 4;
    let span = u64::try_from(quarter.as_micros()).unwrap_or(u64::MAX).saturating_mul(2).max(1);
    let offset = Duration::from_micros(OsRng.next_u64() % span);
    (wait - quarter) + offset
}

/// Send one copy to `addr` on the socket of its address family.
async fn send(v4: &Socket, v6: &Socket, packet: &[u8], addr: SocketAddr) -> std::io::Result<()> {
    match if addr.is_ipv4() { v4 } else { v6 } {
        Socket::Bound(s) => s.send_to(packet, addr).await.map(|_| ()),
        Socket::Failed(kind, why) => Err(std::io::Error::new(*kind, why.clone())),
        Socket::Unused => Err(std::io::Error::other("no socket")),
    }
}

/// The socket of one address family: bound, not needed, or why it could not be bound.
enum Socket {
    Bound(UdpSocket),
    Unused,
    Failed(std::io::ErrorKind, String),
}

impl Socket {
    async fn bind_if(needed: bool, addr: SocketAddr) -> Socket {
        if !needed {
            return Socket::Unused;
        }
        match UdpSocket::bind(addr).await {
            Ok(s) => Socket::Bound(s),
            Err(e) => Socket::Failed(e.kind(), e.to_string()),
        }
    }

    fn bound(&self) -> Option<&UdpSocket> {
        match self {
            Socket::Bound(s) => Some(s),
            _ => None,
        }
    }
}

/// Receive on `sock`, or wait forever when there is none (the other branch or the
/// deadline ends the select).
async fn recv(sock: Option<&UdpSocket>, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
    match sock {
        Some(s) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

/// Which request a datagram answers, when the copy it answers was sent, and its verified
/// result; None for a datagram that answers nothing (wrong sender, unknown echo, does not
/// verify).
fn match_answer(
    in_flight: &[Option<InFlight>],
    from: SocketAddr,
    datagram: &[u8],
) -> Option<(usize, Instant, Result<Reply, ClientError>)> {
    let echo = datagram.get(6..8)?;
    for (i, f) in in_flight.iter().enumerate() {
        let Some(f) = f else { continue };
        if f.addr != from {
            continue;
        }
        for (copy, sent) in f.copies.iter().filter(|(c, _)| c.echo() == echo) {
            match copy.open(datagram) {
                Ok(reply) => return Some((i, *sent, Ok(reply))),
                Err(source @ ResponseError::Status { .. }) => {
                    return Some((i, *sent, Err(ClientError::Response { addr: from, source })))
                }
                // does not verify under this copy's key: not its answer
                Err(_) => continue,
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_are_matched_and_unanswered_requests_time_out() {
        // a tiny EN 0 echo server that answers every other request, in reverse order
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        let requests: Vec<BatchRequest> = (0..6)
            .map(|i| BatchRequest {
                server: Server { addr, raida_id: 0 },
                group: 0,
                command: 0,
                key: ClientKey::None,
                payload: vec![i as u8],
            })
            .collect();
        let answering = std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut buf = [0u8; 256];
            for _ in 0..6 {
                let (n, from) = server.recv_from(&mut buf).unwrap();
                got.push((buf[..n].to_vec(), from));
            }
            for (req, from) in got.iter().rev() {
                let payload = req[48];
                if payload % 2 == 1 {
                    continue;
                }
                // header: status 250, echo, body = [payload][3E 3E], challenge hash = plain challenge
                let mut a = vec![0u8; 32];
                a[2] = 250;
                a[6..8].copy_from_slice(&req[30..32]);
                a[11] = 3;
                a[16..32].copy_from_slice(&req[32..48]);
                a.extend_from_slice(&[payload, 0x3E, 0x3E]);
                // a stray datagram with the same echo but a wrong signature is ignored
                let mut forged = a.clone();
                forged[16] ^= 1;
                forged[32] = 0xEE;
                server.send_to(&forged, from).unwrap();
                server.send_to(&a, from).unwrap();
            }
        });
        let results = udp_batch(6, &requests, Duration::from_millis(1500), 64).await;
        answering.join().unwrap();
        for (i, r) in results.iter().enumerate() {
            if i % 2 == 0 {
                assert_eq!(r.as_ref().unwrap().payload, vec![i as u8], "request {i}");
            } else {
                assert!(matches!(r, Err(ClientError::Timeout(_))), "request {i}: {r:?}");
            }
        }
    }

    /// An EN 0 answer to request datagram `req`: status 250, its echo, body
    /// `[payload byte][3E 3E]`, the challenge hash (for EN 0 the plain challenge).
    fn answer_to(req: &[u8]) -> Vec<u8> {
        let mut a = vec![0u8; 32];
        a[2] = 250;
        a[6..8].copy_from_slice(&req[30..32]);
        a[11] = 3;
        a[16..32].copy_from_slice(&req[32..48]);
        a.extend_from_slice(&[req[48], 0x3E, 0x3E]);
        a
    }

    fn echo_requests(addr: SocketAddr, n: u8) -> Vec<BatchRequest> {
        (0..n)
            .map(|i| BatchRequest {
                server: Server { addr, raida_id: 0 },
                group: 0,
                command: 0,
                key: ClientKey::None,
                payload: vec![i],
            })
            .collect()
    }

    /// A lost datagram is sent again: a server that ignores the first copy of every
    /// request answers every second copy, and each request gets its answer. Seen failing
    /// (every request timed out) with the copies taken out.
    #[tokio::test]
    async fn an_unanswered_request_is_sent_again_and_its_copy_answered() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        server.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let addr = server.local_addr().unwrap();
        let answering = std::thread::spawn(move || {
            let mut seen = std::collections::HashMap::new();
            let mut buf = [0u8; 256];
            let mut answered = 0;
            let mut copies = Vec::new();
            while answered < 4 {
                let Ok((n, from)) = server.recv_from(&mut buf) else { break };
                let req = buf[..n].to_vec();
                copies.push(req[30..48].to_vec());
                let count = seen.entry(req[48]).or_insert(0);
                *count += 1;
                if *count == 2 {
                    server.send_to(&answer_to(&req), from).unwrap();
                    answered += 1;
                }
            }
            copies
        });
        let results = udp_batch(6, &echo_requests(addr, 4), Duration::from_secs(10), 64).await;
        let copies = answering.join().unwrap();
        for (i, r) in results.iter().enumerate() {
            assert_eq!(r.as_ref().unwrap().payload, vec![i as u8], "request {i}");
        }
        // each copy is built afresh: no two copies share their echo and challenge
        let distinct: std::collections::HashSet<_> = copies.iter().collect();
        assert_eq!(distinct.len(), copies.len());
    }

    /// A late answer to an earlier copy is still the answer: the server answers only the
    /// first copy, after it has seen the second.
    #[tokio::test]
    async fn a_late_answer_to_the_first_copy_counts() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        server.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let addr = server.local_addr().unwrap();
        let answering = std::thread::spawn(move || {
            let mut buf = [0u8; 256];
            let (n, from) = server.recv_from(&mut buf).unwrap();
            let first = buf[..n].to_vec();
            let (n, _) = server.recv_from(&mut buf).unwrap();
            assert_ne!(&buf[30..48], &first[30..48], "the second copy is built afresh");
            let _ = n;
            server.send_to(&answer_to(&first), from).unwrap();
        });
        let results = udp_batch(6, &echo_requests(addr, 1), Duration::from_secs(10), 64).await;
        answering.join().unwrap();
        assert_eq!(results[0].as_ref().unwrap().payload, vec![0]);
    }

    /// A silent server draws at most [`MAX_SENDS`] copies of a request, however long the
    /// timeout, and the request times out.
    #[tokio::test(start_paused = true)]
    async fn a_silent_server_draws_a_bounded_number_of_copies() {
        let server = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        let results = udp_batch(6, &echo_requests(addr, 1), Duration::from_secs(600), 64).await;
        assert!(matches!(results[0], Err(ClientError::Timeout(_))));
        let mut buf = [0u8; 256];
        let mut copies = 0;
        while let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(50), server.recv_from(&mut buf)).await {
            copies += 1;
        }
        assert_eq!(copies, MAX_SENDS);
    }

    #[test]
    fn the_backoff_waits_exactly_the_first_wait_then_doubles() {
        let mut b = Backoff::default();
        assert_eq!(b.next(Duration::ZERO), FIRST_RETRANSMIT_WAIT);
        let second = b.next(Duration::ZERO);
        assert!(second >= Duration::from_millis(375) && second < Duration::from_millis(625), "{second:?}");
    }

    #[test]
    fn the_wait_doubles_up_to_its_bound_and_follows_slow_round_trips() {
        assert_eq!(next_wait(FIRST_RETRANSMIT_WAIT, Duration::ZERO), FIRST_RETRANSMIT_WAIT * 2);
        assert_eq!(next_wait(MAX_RETRANSMIT_WAIT, Duration::ZERO), MAX_RETRANSMIT_WAIT);
        assert_eq!(next_wait(FIRST_RETRANSMIT_WAIT, Duration::from_millis(400)), Duration::from_millis(800));
        for _ in 0..1000 {
            let w = jittered(Duration::from_millis(1000));
            assert!(w >= Duration::from_millis(750) && w < Duration::from_millis(1250), "{w:?}");
        }
    }
}
