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
use rand_core::OsRng;
use tokio::net::UdpSocket;

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

struct InFlight {
    addr: SocketAddr,
    pending: PendingReply,
}

/// Send every request over UDP and wait, at most `timeout` in all, for their answers.
/// One result per request, in order. `max_answer` bounds the receive buffer: a longer
/// datagram is truncated and therefore fails verification (ignored).
pub async fn udp_batch(
    coin_id: u16,
    requests: &[BatchRequest],
    timeout: Duration,
    max_answer: usize,
) -> Vec<Result<Reply, ClientError>> {
    let mut results: Vec<Option<Result<Reply, ClientError>>> = (0..requests.len()).map(|_| None).collect();
    let deadline = raida_proto::time::deadline_from(tokio::time::Instant::now(), timeout);
    let now = unix_now();

    // build: echoes distinct per server, so an answer names its request
    let mut in_flight: Vec<Option<InFlight>> = Vec::with_capacity(requests.len());
    let mut packets: Vec<Vec<u8>> = Vec::with_capacity(requests.len());
    for r in requests {
        let routing = Routing::new(r.server.raida_id, coin_id, r.group, r.command);
        let mut built = build_request(&routing, &r.key, &r.payload, now, &mut OsRng);
        for _ in 1..ECHO_ATTEMPTS {
            let clash = in_flight
                .iter()
                .flatten()
                .any(|f: &InFlight| f.addr == r.server.addr && f.pending.echo() == built.1.echo());
            if !clash {
                break;
            }
            built = build_request(&routing, &r.key, &r.payload, now, &mut OsRng);
        }
        packets.push(built.0);
        in_flight.push(Some(InFlight { addr: r.server.addr, pending: built.1 }));
    }

    // one socket per address family in use, bound to an ephemeral port
    let v4 = bind_if(requests.iter().any(|r| r.server.addr.is_ipv4()), ([0, 0, 0, 0], 0).into()).await;
    let v6 = bind_if(requests.iter().any(|r| r.server.addr.is_ipv6()), ([0u16; 8], 0).into()).await;
    for (i, packet) in packets.iter().enumerate() {
        let addr = requests[i].server.addr;
        let sock = if addr.is_ipv4() { &v4 } else { &v6 };
        let sent = match sock {
            Some(Ok(s)) => s.send_to(packet, addr).await.map(|_| ()),
            Some(Err(e)) => Err(std::io::Error::new(e.kind(), e.to_string())),
            None => Err(std::io::Error::other("no socket")),
        };
        if let Err(source) = sent {
            results[i] = Some(Err(ClientError::Io { addr, source }));
            in_flight[i] = None;
        }
    }
    drop(packets);

    let (v4, v6) = (v4.and_then(Result::ok), v6.and_then(Result::ok));
    let mut buf4 = vec![0u8; if v4.is_some() { max_answer + 1 } else { 0 }];
    let mut buf6 = vec![0u8; if v6.is_some() { max_answer + 1 } else { 0 }];
    let mut errors = 0usize;
    while in_flight.iter().any(Option::is_some) && errors < MAX_RECV_ERRORS {
        let received = tokio::select! {
            r = recv(&v4, &mut buf4) => r.map(|(n, from)| (n, from, true)),
            r = recv(&v6, &mut buf6) => r.map(|(n, from)| (n, from, false)),
            _ = tokio::time::sleep_until(deadline) => break,
        };
        let (n, from, is_v4) = match received {
            Ok(x) => x,
            Err(_) => {
                errors += 1;
                continue;
            }
        };
        let datagram = if is_v4 { &buf4[..n] } else { &buf6[..n] };
        if let Some((i, result)) = match_answer(&in_flight, from, datagram) {
            results[i] = Some(result);
            in_flight[i] = None;
        }
    }
    results.into_iter().zip(requests).map(|(r, req)| r.unwrap_or(Err(ClientError::Timeout(req.server.addr)))).collect()
}

async fn bind_if(needed: bool, addr: SocketAddr) -> Option<std::io::Result<UdpSocket>> {
    if needed {
        Some(UdpSocket::bind(addr).await)
    } else {
        None
    }
}

/// Receive on `sock`, or wait forever when there is none (the other branch or the
/// deadline ends the select).
async fn recv(sock: &Option<UdpSocket>, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
    match sock {
        Some(s) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

/// Which request a datagram answers, and its verified result; None for a datagram that
/// answers nothing (wrong sender, unknown echo, does not verify).
fn match_answer(
    in_flight: &[Option<InFlight>],
    from: SocketAddr,
    datagram: &[u8],
) -> Option<(usize, Result<Reply, ClientError>)> {
    let echo = datagram.get(6..8)?;
    for (i, f) in in_flight.iter().enumerate() {
        let Some(f) = f else { continue };
        if f.addr != from || f.pending.echo() != echo {
            continue;
        }
        match f.pending.open(datagram) {
            Ok(reply) => return Some((i, Ok(reply))),
            Err(source @ ResponseError::Status { .. }) => {
                return Some((i, Err(ClientError::Response { addr: from, source })))
            }
            // does not verify under this request's key: not its answer
            Err(_) => continue,
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
}
