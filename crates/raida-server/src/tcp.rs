//! TCP: a connection carries any number of requests; answers go out in request order.
//! Every read of a complete request is bounded by RAIDA_SERVER_RCV_TIMEOUT, every
//! request by the 16-bit body length, and the number of connections by a semaphore.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use raida_proto::header::header_size_for;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::state::{Outcome, ServerState};

/// How many connections may be open: in all, and from one IP address.
pub struct ConnectionLimits {
    total: Arc<Semaphore>,
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
    max_per_ip: usize,
}

impl ConnectionLimits {
    pub fn new(total: usize, per_ip: usize) -> ConnectionLimits {
        ConnectionLimits { total: Arc::new(Semaphore::new(total)), per_ip: Arc::default(), max_per_ip: per_ip }
    }

    /// Count a connection from `ip`; None when that address has too many open.
    fn admit(&self, ip: IpAddr) -> Option<PeerSlot> {
        let mut m = self.per_ip.lock();
        let n = m.entry(ip).or_insert(0);
        if *n >= self.max_per_ip {
            return None;
        }
        *n += 1;
        Some(PeerSlot { ip, per_ip: self.per_ip.clone() })
    }
}

/// One admitted connection; released on drop.
struct PeerSlot {
    ip: IpAddr,
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut m = self.per_ip.lock();
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// Accept connections until `stop` is cancelled.
pub async fn accept_loop(
    listener: TcpListener,
    state: Arc<ServerState>,
    limits: ConnectionLimits,
    idle_timeout: Duration,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let permit = tokio::select! {
            _ = stop.cancelled() => return,
            p = limits.total.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
        };
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "tcp accept");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let Some(slot) = limits.admit(peer.ip()) else {
            tracing::debug!(client = %peer, "too many connections from this address: closed");
            drop(stream);
            continue;
        };
        let state = state.clone();
        let stop = stop.clone();
        tracker.spawn(async move {
            connection(stream, peer, state, idle_timeout, stop).await;
            drop(slot);
            drop(permit);
        });
    }
}

/// Read one whole request into `buf`: 32 bytes, 16 more for EN 4/5/7, then the body.
async fn read_request<R: tokio::io::AsyncRead + Unpin>(r: &mut R, buf: &mut Vec<u8>) -> std::io::Result<()> {
    buf.resize(32, 0);
    r.read_exact(&mut buf[..32]).await?;
    let header = header_size_for(buf[16]);
    let body_at = if header > 32 {
        buf.resize(header, 0);
        r.read_exact(&mut buf[32..header]).await?;
        header
    } else {
        32
    };
    let body = u16::from_be_bytes([buf[22], buf[23]]) as usize;
    buf.resize(body_at + body, 0);
    r.read_exact(&mut buf[body_at..]).await?;
    Ok(())
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    state: Arc<ServerState>,
    idle: Duration,
    stop: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let (r, w) = stream.into_split();
    let mut reader = BufReader::with_capacity(16 * 1024, r);
    let mut writer = BufWriter::with_capacity(16 * 1024, w);
    let mut buf = Vec::with_capacity(1024);
    let mut out = Vec::with_capacity(1024);
    loop {
        let read = tokio::select! {
            _ = stop.cancelled() => break,
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
        match state.handle(&mut buf, peer, &mut out) {
            Outcome::Reply => {}
            Outcome::Drop => continue,
            Outcome::Deferred(d) => d.run(state.clone(), &mut out).await,
        }
        let write = async {
            writer.write_all(&out).await?;
            if reader.buffer().is_empty() {
                writer.flush().await?;
            }
            Ok::<(), std::io::Error>(())
        };
        match tokio::time::timeout(idle, write).await {
            Ok(Ok(())) => {}
            _ => break,
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), writer.flush()).await;
}
