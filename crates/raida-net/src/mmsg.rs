//! Batched UDP syscalls: `recvmmsg` and `sendmmsg` (Linux). One syscall moves up to
//! [`BATCH`] datagrams each way, where `recv_from` / `send_to` cost one syscall per
//! datagram — at small datagrams almost all of a UDP server's CPU is spent in the kernel,
//! per syscall, so batching is what brings a server to the machine's limit.
//!
//! Neither `std` nor `socket2` offers these calls; this is the one place with `unsafe`
//! around them. Every buffer, `iovec`, address and header lives in vectors owned by the
//! batch and sized once, so a call allocates nothing; the raw pointers handed to the
//! kernel are rebuilt right before each call and never outlive it.
//! Other platforms fall back to one `recv_from` / `send_to` per datagram.

use std::io;
use std::net::{SocketAddr, UdpSocket};

/// Datagrams per syscall. At 64 requests in flight a worker rarely finds more than a few
/// dozen waiting; 32 keeps the per-thread buffers (32 × 64 KiB, touched only as far as
/// datagrams reach) small.
pub const BATCH: usize = 32;

/// An error of a batch receive that only means "nothing this time" (timeout, signal).
pub fn is_transient(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted)
}

/// The largest UDP payload.
pub const MAX_DATAGRAM: usize = 65_536;

/// Received datagrams: `len(i)` bytes of `buf_mut(i)` came from `addr(i)`.
pub struct RecvBatch {
    bufs: Vec<Vec<u8>>,
    lens: Vec<usize>,
    addrs: Vec<Option<SocketAddr>>,
    #[cfg(target_os = "linux")]
    raw: RawRecv,
}

#[cfg(target_os = "linux")]
struct RawRecv {
    names: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

impl RecvBatch {
    /// `slots` buffers of `buf_size` bytes each.
    pub fn new(slots: usize, buf_size: usize) -> RecvBatch {
        let slots = slots.max(1);
        RecvBatch {
            bufs: (0..slots).map(|_| vec![0u8; buf_size]).collect(),
            lens: vec![0; slots],
            addrs: vec![None; slots],
            #[cfg(target_os = "linux")]
            raw: RawRecv {
                // SAFETY: all-zero bytes are a valid sockaddr_storage, iovec and mmsghdr
                // (integers and null pointers).
                names: (0..slots).map(|_| unsafe { std::mem::zeroed() }).collect(),
                iovs: (0..slots).map(|_| unsafe { std::mem::zeroed() }).collect(),
                hdrs: (0..slots).map(|_| unsafe { std::mem::zeroed() }).collect(),
            },
        }
    }

    /// Bytes of datagram `i` of the last `recv`.
    pub fn len(&self, i: usize) -> usize {
        self.lens.get(i).copied().unwrap_or(0)
    }

    /// Source of datagram `i` of the last `recv` (None: not an IP address).
    pub fn addr(&self, i: usize) -> Option<SocketAddr> {
        self.addrs.get(i).copied().flatten()
    }

    /// Datagram `i` of the last `recv`, mutable (requests are validated in place).
    pub fn datagram_mut(&mut self, i: usize) -> &mut [u8] {
        let n = self.len(i);
        match self.bufs.get_mut(i) {
            Some(b) => {
                let n = n.min(b.len());
                &mut b[..n]
            }
            None => &mut [],
        }
    }

    /// Wait for at least one datagram (the socket's read timeout applies), then take every
    /// one already queued, up to the batch size. Returns how many arrived.
    #[cfg(target_os = "linux")]
    pub fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        let slots = self.bufs.len();
        for i in 0..slots {
            self.raw.iovs[i] = libc::iovec { iov_base: self.bufs[i].as_mut_ptr().cast(), iov_len: self.bufs[i].len() };
            let h = &mut self.raw.hdrs[i];
            h.msg_hdr.msg_name = (&mut self.raw.names[i] as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_iov = &mut self.raw.iovs[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = std::ptr::null_mut();
            h.msg_hdr.msg_controllen = 0;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        // SAFETY: every header points at a live buffer, iovec and address of this batch,
        // sized as declared; none is moved or freed during the call.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                self.raw.hdrs.as_mut_ptr(),
                slots as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = (n as usize).min(slots);
        for i in 0..n {
            let h = &self.raw.hdrs[i];
            // a datagram longer than the buffer was cut (MSG_TRUNC): never a valid request
            self.lens[i] = if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 { 0 } else { h.msg_len as usize };
            // SAFETY: the kernel wrote a socket address of `msg_namelen` bytes into the
            // sockaddr_storage this header points to.
            let addr = unsafe { socket2::SockAddr::new(self.raw.names[i], h.msg_hdr.msg_namelen) };
            self.addrs[i] = addr.as_socket();
        }
        Ok(n)
    }

    #[cfg(not(target_os = "linux"))]
    pub fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        let (n, peer) = socket.recv_from(&mut self.bufs[0])?;
        self.lens[0] = n;
        self.addrs[0] = Some(peer);
        Ok(1)
    }
}

/// Datagrams to send, each to its own address: fill with [`SendBatch::push`], send with
/// [`SendBatch::flush`]. The buffers are reused from one flush to the next.
pub struct SendBatch {
    bufs: Vec<Vec<u8>>,
    addrs: Vec<socket2::SockAddr>,
    used: usize,
    #[cfg(target_os = "linux")]
    raw: RawSend,
}

#[cfg(target_os = "linux")]
struct RawSend {
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

impl SendBatch {
    /// Room for `slots` datagrams per flush.
    pub fn new(slots: usize) -> SendBatch {
        let slots = slots.max(1);
        let any: socket2::SockAddr = SocketAddr::from(([0, 0, 0, 0], 0)).into();
        SendBatch {
            bufs: (0..slots).map(|_| Vec::with_capacity(1024)).collect(),
            addrs: vec![any; slots],
            used: 0,
            #[cfg(target_os = "linux")]
            raw: RawSend {
                // SAFETY: all-zero bytes are a valid iovec and mmsghdr.
                iovs: (0..slots).map(|_| unsafe { std::mem::zeroed() }).collect(),
                hdrs: (0..slots).map(|_| unsafe { std::mem::zeroed() }).collect(),
            },
        }
    }

    /// Whether every slot is taken (flush before the next push).
    pub fn is_full(&self) -> bool {
        self.used >= self.bufs.len()
    }

    /// Datagrams waiting.
    pub fn pending(&self) -> usize {
        self.used
    }

    /// The next free buffer (cleared by the caller's writer); commit it with
    /// [`SendBatch::commit`], or leave it to be reused.
    pub fn next_buf(&mut self) -> &mut Vec<u8> {
        let i = self.used.min(self.bufs.len() - 1);
        &mut self.bufs[i]
    }

    /// Queue the buffer last returned by [`SendBatch::next_buf`] for `to`.
    pub fn commit(&mut self, to: SocketAddr) {
        if self.used < self.bufs.len() {
            self.addrs[self.used] = to.into();
            self.used += 1;
        }
    }

    /// Queue a copy of `data` for `to` (flushing first when full).
    pub fn push(&mut self, socket: &UdpSocket, data: &[u8], to: SocketAddr) {
        if self.is_full() {
            self.flush(socket);
        }
        let b = self.next_buf();
        b.clear();
        b.extend_from_slice(data);
        self.commit(to);
    }

    /// Send every queued datagram (a datagram the kernel refuses is skipped, as a failed
    /// `send_to` would be) and empty the batch.
    #[cfg(target_os = "linux")]
    pub fn flush(&mut self, socket: &UdpSocket) {
        use std::os::fd::AsRawFd;
        let used = self.used;
        self.used = 0;
        for i in 0..used {
            self.raw.iovs[i] = libc::iovec { iov_base: self.bufs[i].as_mut_ptr().cast(), iov_len: self.bufs[i].len() };
            let h = &mut self.raw.hdrs[i];
            h.msg_hdr.msg_name = self.addrs[i].as_ptr() as *mut libc::c_void;
            h.msg_hdr.msg_namelen = self.addrs[i].len();
            h.msg_hdr.msg_iov = &mut self.raw.iovs[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = std::ptr::null_mut();
            h.msg_hdr.msg_controllen = 0;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        let mut sent = 0;
        while sent < used {
            // SAFETY: headers sent..used point at live buffers, iovecs and addresses of
            // this batch, sized as declared; none is moved or freed during the call.
            let n = unsafe {
                libc::sendmmsg(
                    socket.as_raw_fd(),
                    self.raw.hdrs[sent..used].as_mut_ptr(),
                    (used - sent) as libc::c_uint,
                    0,
                )
            };
            if n > 0 {
                sent += n as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            // the first datagram of the rest failed (unreachable, buffer full): skip it
            tracing::debug!(error = %e, "udp send failed");
            sent += 1;
        }
    }

    #[cfg(not(target_os = "linux"))]
    pub fn flush(&mut self, socket: &UdpSocket) {
        let used = self.used;
        self.used = 0;
        for i in 0..used {
            if let Some(to) = self.addrs[i].as_socket() {
                if let Err(e) = socket.send_to(&self.bufs[i], to) {
                    tracing::debug!(error = %e, "udp send failed");
                }
            }
        }
    }
}
