//! The floor a UDP RAIDA server is measured against: it answers every datagram of at
//! least 48 bytes with a valid 32-byte EN 0 Echo answer (status 250, the request's echo
//! bytes and challenge) and does nothing else — no validation, no state, no logging —
//! with the same batched syscalls and sockets as `raida serve` (recvmmsg / sendmmsg, 32
//! a call; one socket per thread in one SO_REUSEPORT group).
//! Whatever `raida bench` measures against it is the cost of the kernel, the loopback
//! path and the load generator: the most any server on this machine could do.
//!
//! ```sh
//! cargo run --release -p raida-server --example udp_floor -- 127.0.0.1:50100 [THREADS]
//! raida bench 127.0.0.1:50100 --raida-id 0
//! ```
//! THREADS defaults to what `raida serve` uses (one per CPU, 2 to 16).

use std::net::{SocketAddr, UdpSocket};

use raida_net::mmsg::{RecvBatch, SendBatch, BATCH, MAX_DATAGRAM};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:50100".into())
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("address: {e}")))?;
    let threads = match args.next() {
        Some(t) => {
            t.parse().map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("threads: {e}")))?
        }
        None => raida_server::ServerLimits::default().udp_threads,
    };
    let first = bind(addr)?;
    let addr = first.local_addr()?;
    eprintln!("udp floor on {addr} ({threads} threads)");
    let mut sockets = vec![first];
    for _ in 1..threads {
        sockets.push(bind(addr)?);
    }
    let workers: Vec<_> = sockets.into_iter().map(|s| std::thread::spawn(move || answer_forever(&s))).collect();
    for w in workers {
        let _ = w.join();
    }
    Ok(())
}

fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    let _ = s.set_recv_buffer_size(4 << 20);
    let _ = s.set_send_buffer_size(4 << 20);
    s.set_reuse_port(true)?;
    s.bind(&addr.into())?;
    Ok(s.into())
}

fn answer_forever(socket: &UdpSocket) {
    let mut rx = RecvBatch::new(BATCH, MAX_DATAGRAM);
    let mut tx = SendBatch::new(BATCH);
    loop {
        let Ok(n) = rx.recv(socket) else { continue };
        for i in 0..n {
            let (Some(peer), request) = (rx.addr(i), rx.datagram_mut(i)) else { continue };
            if request.len() < 48 {
                continue;
            }
            // PROTOCOL.md 4.1: an EN 0 answer whose signature is the request's challenge
            let mut answer = [0u8; 32];
            answer[0] = request[2];
            answer[2] = 250;
            answer[3] = request[4];
            answer[5] = 1;
            answer[6..8].copy_from_slice(&request[30..32]);
            answer[16..32].copy_from_slice(&request[32..48]);
            tx.push(socket, &answer, peer);
        }
        tx.flush(socket);
    }
}
