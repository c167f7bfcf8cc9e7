//! Moving bytes between the two connections of a pair, both ways, until one side closes,
//! the pair is idle in both directions for the configured time, or the relay stops.
//!
//! The relay never looks at these bytes: the two ends run the channel of PROTOCOL.md
//! section 8 through it, so all it could see is ciphertext, and not reading it keeps it
//! out of user space altogether on Linux. There each direction is splice(2) from the
//! source socket into a pipe and from the pipe into the destination socket (zero copy
//! through user space), driven by tokio's readiness with nonblocking splice. Where splice
//! is not available (other systems, or a kernel that refuses it for these descriptors)
//! the same loop moves the bytes through a user-space buffer without inspecting them.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// Bytes read per step through the user-space buffer.
const BUFFER: usize = 64 * 1024;

/// How a pair ended.
#[derive(Debug)]
pub(crate) enum End {
    /// One side closed (or failed); the other was closed after it.
    Closed,
    /// No byte either way for the idle time.
    Idle,
    /// The relay is stopping.
    Stopped,
}

/// The activity clock of a pair, shared by both directions: the time of the last byte
/// moved either way, in milliseconds since the pair started.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        self.start.elapsed().saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// The optional bytes-per-second bound of a pair: one token bucket for both directions
/// (the bound is per pair), holding at most one second's worth.
pub(crate) struct Bucket {
    rate: u64,
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    pub(crate) fn new(rate: u64) -> Bucket {
        let rate = rate.max(1);
        Bucket { rate, state: Mutex::new((rate as f64, Instant::now())) }
    }

    /// Waits until at least one byte may move, and takes up to `want`.
    async fn take(&self, want: usize) -> usize {
        loop {
            let wait = {
                let mut s = self.state.lock();
                let now = Instant::now();
                let refill = now.duration_since(s.1).as_secs_f64() * self.rate as f64;
                s.0 = (s.0 + refill).min(self.rate as f64);
                s.1 = now;
                if s.0 >= 1.0 {
                    let n = (s.0 as usize).min(want).max(1);
                    s.0 -= n as f64;
                    return n;
                }
                Duration::from_secs_f64((1.0 - s.0) / self.rate as f64)
            };
            tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
        }
    }

    /// Gives back what was taken and not moved.
    fn refund(&self, n: usize) {
        let mut s = self.state.lock();
        s.0 = (s.0 + n as f64).min(self.rate as f64);
    }
}

/// Copies both ways until one side closes (then the other is closed after what was in
/// flight was delivered), the pair is idle for `idle`, or `stop` fires.
pub(crate) async fn run_pair(
    a: &TcpStream,
    b: &TcpStream,
    idle: Duration,
    bucket: Option<&Bucket>,
    stop: &CancellationToken,
    counters: &crate::Counters,
) -> End {
    let bytes = &counters.bytes_relayed;
    let fallbacks = &counters.copy_fallbacks;
    let activity = Activity { start: Instant::now(), last_ms: AtomicU64::new(0) };
    let idle_watch = async {
        loop {
            let since = activity.idle_for();
            if since >= idle {
                return;
            }
            tokio::time::sleep(idle - since).await;
        }
    };
    let end = tokio::select! {
        r = direction(a, b, bucket, &activity, bytes, fallbacks) => { finish(r, b); End::Closed }
        r = direction(b, a, bucket, &activity, bytes, fallbacks) => { finish(r, a); End::Closed }
        () = idle_watch => End::Idle,
        () = stop.cancelled() => End::Stopped,
    };
    end
}

/// One side closed: a FIN to the other (so that it reads everything that was relayed and
/// then end of stream); both sockets are closed when the caller drops them.
fn finish(r: io::Result<()>, other: &TcpStream) {
    if let Err(e) = r {
        tracing::debug!(error = %e, "relay: a side failed");
    }
    let _ = socket2::SockRef::from(other).shutdown(std::net::Shutdown::Write);
}

/// One direction, `from` → `to`, until `from` reaches end of stream.
async fn direction(
    from: &TcpStream,
    to: &TcpStream,
    bucket: Option<&Bucket>,
    activity: &Activity,
    bytes: &AtomicU64,
    fallbacks: &AtomicU64,
) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        if let Ok(pipe) = splice::Pipe::new() {
            match splice::run(from, to, &pipe, bucket, activity, bytes).await {
                Err(splice::Unsupported) => {}
                Ok(r) => return r,
            }
        }
    }
    fallbacks.fetch_add(1, Ordering::Relaxed);
    buffered(from, to, bucket, activity, bytes).await
}

/// The portable path: through a user-space buffer whose content is never inspected.
async fn buffered(
    from: &TcpStream,
    to: &TcpStream,
    bucket: Option<&Bucket>,
    activity: &Activity,
    bytes: &AtomicU64,
) -> io::Result<()> {
    let mut buf = vec![0u8; BUFFER];
    loop {
        let want = match bucket {
            Some(b) => b.take(BUFFER).await,
            None => BUFFER,
        };
        let n = loop {
            from.readable().await?;
            match from.try_read(&mut buf[..want]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        };
        if let Some(b) = bucket {
            b.refund(want - n);
        }
        if n == 0 {
            return Ok(());
        }
        activity.touch();
        let mut off = 0;
        while off < n {
            to.writable().await?;
            match to.try_write(&buf[off..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(m) => {
                    off += m;
                    bytes.fetch_add(m as u64, Ordering::Relaxed);
                    activity.touch();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(target_os = "linux")]
mod splice {
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
    use std::sync::atomic::{AtomicU64, Ordering};

    use tokio::io::Interest;
    use tokio::net::TcpStream;

    use super::{Activity, Bucket};

    /// The pipe size asked for: fewer system calls per byte than the default 64 KiB
    /// (an unprivileged process may have up to /proc/sys/fs/pipe-max-size, 1 MiB by default).
    const PIPE_SIZE: libc::c_int = 1 << 20;

    /// The kernel refused splice for these descriptors (EINVAL), lacks it (ENOSYS) or a
    /// seccomp filter forbids it (EPERM), before any byte moved.
    pub(super) struct Unsupported;

    pub(super) struct Pipe {
        read: OwnedFd,
        write: OwnedFd,
        size: usize,
    }

    impl Pipe {
        pub(super) fn new() -> io::Result<Pipe> {
            let mut fds = [0 as RawFd; 2];
            // SAFETY: fds has room for the two descriptors pipe2 writes.
            if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: pipe2 succeeded, so both are open descriptors that nothing else owns.
            let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
            // SAFETY: fcntl on a descriptor we own; failure leaves the default size.
            let size = unsafe {
                libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE);
                libc::fcntl(write.as_raw_fd(), libc::F_GETPIPE_SZ)
            };
            let size = usize::try_from(size).ok().filter(|&s| s > 0).unwrap_or(64 * 1024);
            Ok(Pipe { read, write, size })
        }
    }

    fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
        // SAFETY: both descriptors are open for the duration of the call; null offsets
        // mean "the descriptors' own positions" (required for sockets and pipes).
        let r = unsafe {
            libc::splice(
                from,
                std::ptr::null_mut(),
                to,
                std::ptr::null_mut(),
                len,
                libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
            )
        };
        usize::try_from(r).map_err(|_| io::Error::last_os_error())
    }

    /// socket → pipe → socket. The pipe is emptied into `to` before the next read, so
    /// EAGAIN on the first splice means "no data in the socket" and on the second "the
    /// destination's send buffer is full": exactly the readiness tokio tracks.
    pub(super) async fn run(
        from: &TcpStream,
        to: &TcpStream,
        pipe: &Pipe,
        bucket: Option<&Bucket>,
        activity: &Activity,
        bytes: &AtomicU64,
    ) -> Result<io::Result<()>, Unsupported> {
        let mut moved_any = false;
        loop {
            let want = match bucket {
                Some(b) => b.take(pipe.size).await,
                None => pipe.size,
            };
            let n = loop {
                if let Err(e) = from.readable().await {
                    return Ok(Err(e));
                }
                match from.try_io(Interest::READABLE, || splice(from.as_raw_fd(), pipe.write.as_raw_fd(), want)) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e)
                        if !moved_any
                            && matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS | libc::EPERM)) =>
                    {
                        return Err(Unsupported)
                    }
                    Err(e) => return Ok(Err(e)),
                }
            };
            if let Some(b) = bucket {
                b.refund(want - n);
            }
            if n == 0 {
                return Ok(Ok(()));
            }
            moved_any = true;
            activity.touch();
            let mut left = n;
            while left > 0 {
                if let Err(e) = to.writable().await {
                    return Ok(Err(e));
                }
                match to.try_io(Interest::WRITABLE, || splice(pipe.read.as_raw_fd(), to.as_raw_fd(), left)) {
                    Ok(0) => return Ok(Err(io::ErrorKind::WriteZero.into())),
                    Ok(m) => {
                        left -= m;
                        bytes.fetch_add(m as u64, Ordering::Relaxed);
                        activity.touch();
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Ok(Err(e)),
                }
            }
        }
    }
}
