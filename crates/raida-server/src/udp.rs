//! UDP: one datagram is one request. A few OS threads share one socket and run the
//! request path inline (no task hop, no allocation per datagram on the Echo path);
//! commands that wait for the disk or the network, or may touch thousands of pages, are
//! handed to the tokio runtime, bounded per kind (160 REQUEST_RATE when a kind is full).
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

/// Shared by the UDP worker threads.
pub struct UdpContext {
    pub socket: Arc<UdpSocket>,
    pub state: Arc<ServerState>,
    pub runtime: tokio::runtime::Handle,
    /// Shared with TCP.
    pub deferred: Arc<DeferredLimits>,
    pub tracker: TaskTracker,
    pub stop: Arc<AtomicBool>,
}

/// Poll interval for the stop flag.
const STOP_POLL: Duration = Duration::from_millis(100);

/// Start `threads` worker threads on the socket.
pub fn spawn_workers(ctx: Arc<UdpContext>, threads: usize) -> std::io::Result<Vec<std::thread::JoinHandle<()>>> {
    ctx.socket.set_read_timeout(Some(STOP_POLL))?;
    (0..threads.max(1))
        .map(|i| {
            let ctx = ctx.clone();
            std::thread::Builder::new().name(format!("raida-udp-{i}")).spawn(move || worker(&ctx))
        })
        .collect()
}

fn worker(ctx: &UdpContext) {
    let mut buf = vec![0u8; 65_536];
    let mut out = Vec::with_capacity(1024);
    while !ctx.stop.load(Ordering::Relaxed) {
        let (n, peer) = match ctx.socket.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => {
                // e.g. ICMP port unreachable reported on Linux: not fatal
                tracing::trace!(error = %e, "udp recv");
                continue;
            }
        };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            ctx.state.handle_from(Transport::Udp, &mut buf[..n], peer, &mut out)
        }));
        match result {
            Ok(Outcome::Reply) => send(&ctx.socket, &out, peer),
            Ok(Outcome::Drop) => {}
            Ok(Outcome::Deferred(d)) => match ctx.deferred.try_acquire(d.kind(), d.peer()) {
                Some(permit) => {
                    let state = ctx.state.clone();
                    let socket = ctx.socket.clone();
                    ctx.tracker.spawn_on(
                        async move {
                            let mut out = Vec::new();
                            let status = d.run(state.clone(), &mut out).await;
                            drop(permit);
                            if state.may_answer(Transport::Udp, peer, status) {
                                send(&socket, &out, peer);
                            } else {
                                state.stats.dropped.fetch_add(1, Ordering::Relaxed);
                            }
                        },
                        &ctx.runtime,
                    );
                }
                None => {
                    if ctx.state.may_answer(Transport::Udp, peer, Status::RequestRate) {
                        d.reject(&ctx.state, Status::RequestRate, &mut out);
                        send(&ctx.socket, &out, peer);
                    } else {
                        ctx.state.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            },
            Err(_) => tracing::error!(client = %peer, "request handler panicked; request dropped"),
        }
    }
}

fn send(socket: &UdpSocket, out: &[u8], peer: SocketAddr) {
    if let Err(e) = socket.send_to(out, peer) {
        tracing::debug!(client = %peer, error = %e, "udp send failed");
    }
}
