//! UDP: one datagram is one request. A few OS threads, each with its own socket of one
//! SO_REUSEPORT group (the kernel spreads clients over them by address and port, so a
//! thread never wakes for another's datagram), take datagrams and send answers in
//! batches (recvmmsg / sendmmsg, [`raida_net::mmsg`]) and run the request path inline (no
//! task hop, no allocation and no lock per datagram on the Echo path);
//! deferred commands (durable writes, heavy reads, Key Alert) go where TCP's go
//! ([`DeferredWork::route`]: bounded per kind, 160 REQUEST_RATE when a kind is full), and
//! the thread that finishes one sends its answer (a durable write's, with no task hop).
//! What may not be answered over UDP at all (reflection, section 2) is decided by
//! [`ServerState::handle_from`], the rate of deferred error answers by the route.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::dispatch::{DeferredWork, Routed};
use crate::state::{Outcome, ServerState, Transport};
use raida_net::mmsg::{RecvBatch, SendBatch, BATCH, MAX_DATAGRAM};

/// Shared by the UDP worker threads.
pub(crate) struct UdpContext {
    pub socket: Arc<UdpSocket>,
    /// Further sockets bound to the same port (SO_REUSEPORT), one per worker after the
    /// first; workers beyond them share `socket`.
    pub more_sockets: Vec<Arc<UdpSocket>>,
    pub state: Arc<ServerState>,
    /// Shared with TCP.
    pub deferred: Arc<DeferredWork>,
    pub stop: Arc<AtomicBool>,
}

/// Poll interval for the stop flag.
const STOP_POLL: Duration = Duration::from_millis(100);

/// Start `threads` worker threads: worker `i` reads socket `i` of the group (the first
/// socket once the group is used up).
pub(crate) fn spawn_workers(ctx: Arc<UdpContext>, threads: usize) -> std::io::Result<Vec<std::thread::JoinHandle<()>>> {
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
        Ok(Outcome::Deferred(d)) => {
            let socket = socket.clone();
            let out = tx.next_buf();
            let sent = move |answer: Vec<u8>| send(&socket, &answer, peer);
            if ctx.deferred.route(&ctx.state, Transport::Udp, peer, d, out, sent) == Routed::Answered {
                tx.commit(peer);
            }
        }
        Err(_) => {
            if ctx.state.peer_logs.allow(peer.ip()) {
                tracing::error!(client = %peer, "request handler panicked; request dropped");
            }
        }
    }
}

fn send(socket: &UdpSocket, out: &[u8], peer: SocketAddr) {
    if let Err(e) = socket.send_to(out, peer) {
        tracing::debug!(client = %peer, error = %e, "udp send failed");
    }
}
