//! TCP: a connection carries any number of requests; answers go out in request order.
//! Every read of a complete request is bounded by RAIDA_SERVER_RCV_TIMEOUT, every
//! request by the 16-bit body length, a connection's life by a lifetime cap, and the
//! connections by a table ([`raida_net::ConnectionTable`]): per address, per /24 (IPv4) or
//! /64 (IPv6), and in all, where a new connection closes the longest-idle one of the
//! address holding the most instead of being refused (so clients that connect and say
//! nothing cannot lock everybody out, and a newcomer of a full subnet still gets in).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use raida_proto::header::request_len;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::dispatch::{DeferredWork, Routed};
use crate::state::{Outcome, ServerState, Transport};

// One table for the server and the key receiver (raida-client), in a crate of its own so
// that neither carries a second set of rules.
use raida_net::{ConnectionSlot, ConnectionTable, TcpLimits};

/// Accept connections until `stop` is cancelled.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    state: Arc<ServerState>,
    table: Arc<ConnectionTable>,
    deferred: Arc<DeferredWork>,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // e.g. EMFILE: wait for descriptors to come back rather than spin
                    tracing::warn!(error = %e, "tcp accept");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let slot = match table.admit(peer.ip()) {
            Ok(s) => s,
            Err(why) => {
                tracing::debug!(client = %peer, ?why, "tcp: too many connections: closed");
                drop(stream);
                continue;
            }
        };
        let state = state.clone();
        let stop = stop.clone();
        let deferred = deferred.clone();
        let limits = table.limits();
        tracker.spawn(async move {
            connection(stream, peer, state, &slot, &deferred, limits, stop).await;
            drop(slot);
        });
    }
}

/// Read one whole request into `buf`: 32 bytes, then the rest of the size they give
/// ([`request_len`]: 16 more header bytes for EN 4/5/7, then the body).
async fn read_request<R: tokio::io::AsyncRead + Unpin>(r: &mut R, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let mut first32 = [0u8; 32];
    r.read_exact(&mut first32).await?;
    buf.clear();
    buf.extend_from_slice(&first32);
    buf.resize(request_len(&first32), 0);
    r.read_exact(&mut buf[32..]).await?;
    Ok(())
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    state: Arc<ServerState>,
    slot: &ConnectionSlot,
    deferred: &DeferredWork,
    limits: TcpLimits,
    stop: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let (r, w) = stream.into_split();
    let mut reader = BufReader::with_capacity(16 * 1024, r);
    let mut writer = BufWriter::with_capacity(16 * 1024, w);
    let mut buf = Vec::with_capacity(1024);
    let mut out = Vec::with_capacity(1024);
    // capped: a configured lifetime near 2^63 s would overflow the Instant and panic
    let end_of_life = raida_proto::time::deadline_from(tokio::time::Instant::now(), limits.lifetime);
    let idle = limits.idle_timeout;
    loop {
        let read = tokio::select! {
            _ = stop.cancelled() => break,
            _ = slot.evicted().cancelled() => return, // its descriptor is wanted now: no flush
            _ = tokio::time::sleep_until(end_of_life) => {
                tracing::debug!(client = %peer, "tcp: connection lifetime reached");
                break;
            }
            r = tokio::time::timeout(idle, read_request(&mut reader, &mut buf)) => r,
        };
        match read {
            Ok(Ok(())) => {}
            Ok(Err(_)) => break, // peer closed or i/o error
            Err(_) => {
                tracing::debug!(client = %peer, "tcp idle timeout");
                break;
            }
        }
        slot.busy();
        match state.handle(&mut buf, peer, &mut out) {
            Outcome::Reply => {}
            Outcome::Drop => {
                slot.touch();
                continue;
            }
            // the route of UDP's deferred commands, its answer awaited here
            Outcome::Deferred(d) => {
                let lost = d.lost_answer();
                let (tx, rx) = tokio::sync::oneshot::channel();
                let sent = move |answer| {
                    let _ = tx.send(answer);
                };
                match deferred.route(&state, Transport::Tcp, peer, d, &mut out, sent) {
                    Routed::Started => match rx.await {
                        Ok(answer) => out = answer,
                        Err(_) => lost.write(&state, &mut out),
                    },
                    Routed::Answered => {}
                    Routed::Dropped => {
                        // never over TCP (every error is answered); as a dropped request
                        slot.touch();
                        continue;
                    }
                }
            }
        }
        let write = async {
            writer.write_all(&out).await?;
            if reader.buffer().is_empty() {
                writer.flush().await?;
            }
            Ok::<(), std::io::Error>(())
        };
        let written = tokio::time::timeout(idle, write).await;
        match written {
            Ok(Ok(())) => slot.touch(),
            _ => break,
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), writer.flush()).await;
}
