//! UDP: one datagram is one request. A few OS threads, each with its own socket of one
//! SO_REUSEPORT group (the kernel spreads clients over them by address and port, so a
//! thread never wakes for another's datagram), take datagrams and send answers in
//! batches (recvmmsg / sendmmsg, [`raida_net::mmsg`]) and run the request path inline (no
//! task hop, no allocation and no lock per datagram on the Echo path);
//! durable writes run on the blocking threads ([`crate::blocking`], which also send their
//! answers), commands that wait for the network or may touch thousands of pages on the
//! tokio runtime; all bounded per kind (160 REQUEST_RATE when a kind is full).
//! What may not be answered over UDP at all (reflection, section 2) is decided by
//! [`ServerState::handle_from`]; error answers of deferred commands are rate-limited here.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use raida_proto::Status;
use tokio_util::task::TaskTracker;

use crate::limits::DeferredLimits;
use crate::state::{Outcome, ServerState, Transport};
use raida_net::mmsg::{RecvBatch, SendBatch, BATCH, MAX_DATAGRAM};

/// Shared by the UDP worker threads.
pub struct UdpContext {
    pub socket: Arc<UdpSocket>,
    /// Further sockets bound to the same port (SO_REUSEPORT), one per worker after the
    /// first; workers beyond them share `socket`.
    pub more_sockets: Vec<Arc<UdpSocket>>,
    pub state: Arc<ServerState>,
    pub runtime: tokio::runtime::Handle,
    /// Shared with TCP.
    pub deferred: Arc<DeferredLimits>,
    pub tracker: TaskTracker,
    pub stop: Arc<AtomicBool>,
}

/// Poll interval for the stop flag.
const STOP_POLL: Duration = Duration::from_millis(100);

/// Start `threads` worker threads: worker `i` reads socket `i` of the group (the first
/// socket once the group is used up).
pub fn spawn_workers(ctx: Arc<UdpContext>, threads: usize) -> std::io::Result<Vec<std::thread::JoinHandle<()>>> {
    ctx.socket.set_read_timeout(Some(STOP_POLL))?;
    for s in &ctx.more_sockets {
        s.set_read_timeout(Some(STOP_POLL))?;
    }
    (0..threads.max(1))
        .map(|i| {
            let ctx = ctx.clone();
            let socket = i.checked_sub(1).and_then(|j| ctx.more_sockets.get(j)).unwrap_or(&ctx.socket).clone();
            std::thread::Builder::new().name(format!("raida-udp-{i}")).spawn(move || worker(&ctx, &socket))
        })
        .collect()
}

fn worker(ctx: &UdpContext, socket: &Arc<UdpSocket>) {
    // Datagrams come in and answers go out BATCH at a time (recvmmsg / sendmmsg): one
    // syscall each way per batch instead of per datagram.
    let mut rx = RecvBatch::new(BATCH, MAX_DATAGRAM);
    let mut tx = SendBatch::new(BATCH);
    while !ctx.stop.load(Ordering::Relaxed) {
        let n = match rx.recv(socket) {
            Ok(n) => n,
            Err(e) if raida_net::mmsg::is_transient(&e) => continue,
            Err(e) => {
                // e.g. ICMP port unreachable reported on Linux: not fatal
                tracing::trace!(error = %e, "udp recv");
                continue;
            }
        };
        for i in 0..n {
            let Some(peer) = rx.addr(i) else { continue };
            if tx.is_full() {
                tx.flush(socket);
            }
            handle_datagram(ctx, socket, rx.datagram_mut(i), peer, &mut tx);
        }
        tx.flush(socket);
    }
}

/// Run one request; an inline answer is queued in `tx`.
fn handle_datagram(ctx: &UdpContext, socket: &Arc<UdpSocket>, packet: &mut [u8], peer: SocketAddr, tx: &mut SendBatch) {
    let out = tx.next_buf();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ctx.state.handle_from(Transport::Udp, packet, peer, out)
    }));
    match result {
        Ok(Outcome::Reply) => tx.commit(peer),
        Ok(Outcome::Drop) => {}
        Ok(Outcome::Deferred(d)) => match ctx.deferred.try_acquire(d.kind(), d.peer()) {
            Some(permit) if d.is_durable_write() => {
                // run on a durable-write thread, answered from the thread that makes it
                // durable: no task hop (crate::blocking)
                let state = ctx.state.clone();
                let socket = socket.clone();
                let in_flight = ctx.tracker.token(); // shutdown waits for it
                ctx.state.blocking.execute(move || {
                    let st = state.clone();
                    d.run_durable(state, move |status, out| {
                        drop(permit);
                        answer(&st, &socket, &out, peer, status);
                        drop(in_flight);
                    });
                });
            }
            Some(permit) => {
                let state = ctx.state.clone();
                let socket = socket.clone();
                ctx.tracker.spawn_on(
                    async move {
                        let mut out = Vec::new();
                        let status = d.run(state.clone(), &mut out).await;
                        drop(permit);
                        answer(&state, &socket, &out, peer, status);
                    },
                    &ctx.runtime,
                );
            }
            None => {
                if ctx.state.may_answer(Transport::Udp, peer, Status::RequestRate) {
                    let out = tx.next_buf();
                    d.reject(&ctx.state, Status::RequestRate, out);
                    tx.commit(peer);
                } else {
                    ctx.state.stats.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        },
        Err(_) => {
            if ctx.state.peer_logs.allow(peer.ip()) {
                tracing::error!(client = %peer, "request handler panicked; request dropped");
            }
        }
    }
}

/// Send a deferred command's answer unless its error status is beyond the address's rate.
fn answer(state: &ServerState, socket: &UdpSocket, out: &[u8], peer: SocketAddr, status: Status) {
    if state.may_answer(Transport::Udp, peer, status) {
        send(socket, out, peer);
    } else {
        state.stats.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

fn send(socket: &UdpSocket, out: &[u8], peer: SocketAddr) {
    if let Err(e) = socket.send_to(out, peer) {
        tracing::debug!(client = %peer, error = %e, "udp send failed");
    }
}
