//! UDP: one datagram is one request. A few OS threads share one socket and run the
//! request path inline (no task hop, no allocation per datagram on the Echo path);
//! commands that wait for the disk or the network are handed to the tokio runtime,
//! bounded by a semaphore (160 REQUEST_RATE when it is exhausted).

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use raida_proto::Status;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::state::{Outcome, ServerState};

/// Shared by the UDP worker threads.
pub struct UdpContext {
    pub socket: Arc<UdpSocket>,
    pub state: Arc<ServerState>,
    pub runtime: tokio::runtime::Handle,
    pub deferred: Arc<Semaphore>,
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
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ctx.state.handle(&mut buf[..n], peer, &mut out)));
        match result {
            Ok(Outcome::Reply) => send(&ctx.socket, &out, peer),
            Ok(Outcome::Drop) => {}
            Ok(Outcome::Deferred(d)) => match ctx.deferred.clone().try_acquire_owned() {
                Ok(permit) => {
                    let state = ctx.state.clone();
                    let socket = ctx.socket.clone();
                    ctx.tracker.spawn_on(
                        async move {
                            let mut out = Vec::new();
                            d.run(state, &mut out).await;
                            send(&socket, &out, peer);
                            drop(permit);
                        },
                        &ctx.runtime,
                    );
                }
                Err(_) => {
                    d.reject(&ctx.state, Status::RequestRate, &mut out);
                    send(&ctx.socket, &out, peer);
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
