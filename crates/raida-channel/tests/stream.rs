//! The channel over byte streams (tokio duplex pipes and TCP).

use std::time::Duration;

use raida_channel::session::Config;
use raida_channel::transport::frame::{read_frame, write_frame, MAX_FRAME};
use raida_channel::{Channel, ChannelError, Incoming, Psk};
use tokio::io::{duplex, AsyncWriteExt};

fn cfg(psk: Option<&[u8]>, pq: bool) -> Config {
    let mut c = Config::new(psk.map(|p| Psk::new(p.to_vec()).unwrap()), pq);
    c.request_timeout = Duration::from_secs(10);
    c
}

async fn pair(ca: Config, cb: Config) -> (Result<Channel, ChannelError>, Result<Channel, ChannelError>) {
    let (x, y) = duplex(1 << 20);
    tokio::join!(Channel::connect(x, ca), Channel::accept(y, cb))
}

async fn ok_pair(c: Config) -> (Channel, Channel) {
    let (a, b) = pair(c.clone(), c).await;
    (a.unwrap(), b.unwrap())
}

#[tokio::test]
async fn data_request_rekey_shutdown() {
    for (psk, pq) in [(None, false), (Some(&[3u8; 32][..]), false), (Some(&[4u8; 16][..]), true)] {
        let (a, mut b) = ok_pair(cfg(psk, pq)).await;
        assert_eq!(a.session_id(), b.session_id());
        a.send(b"hello bob".to_vec()).await.unwrap();
        assert_eq!(b.recv().await.unwrap().unwrap(), Incoming::Data(b"hello bob".to_vec()));
        // Bob answers requests in a task.
        let bs = b.sender();
        let server = tokio::spawn(async move {
            let mut n = 0;
            while let Some(item) = b.recv().await {
                match item.unwrap() {
                    Incoming::Request { id, data } => {
                        n += 1;
                        bs.respond(id, [b"re: ".as_slice(), &data].concat()).await.unwrap();
                    }
                    other => panic!("{other:?}"),
                }
            }
            (n, b)
        });
        let (r1, r2) = tokio::join!(a.request(b"one".to_vec()), a.request(b"two".to_vec()));
        assert_eq!(r1.unwrap(), b"re: one");
        assert_eq!(r2.unwrap(), b"re: two");
        assert_eq!(a.rekey().await.unwrap(), 2);
        assert_eq!(a.epoch(), 2);
        assert_eq!(a.request(b"three".to_vec()).await.unwrap(), b"re: three");
        a.shutdown().await.unwrap();
        let (n, b) = server.await.unwrap();
        assert_eq!(n, 3);
        assert_eq!(b.epoch(), 2);
        assert_eq!(b.rejected(), 0);
        b.closed().await.unwrap();
    }
}

#[tokio::test]
async fn rekey_after_10000_messages_over_a_stream() {
    let (a, mut b) = ok_pair(cfg(None, false)).await;
    let total = 10_500u32;
    let reader = tokio::spawn(async move {
        for i in 0..total {
            match b.recv().await {
                Some(Ok(Incoming::Data(d))) => assert_eq!(d, i.to_be_bytes()),
                other => panic!("message {i}: {other:?}"),
            }
        }
        b
    });
    for i in 0..total {
        a.send(i.to_be_bytes().to_vec()).await.unwrap();
    }
    let b = reader.await.unwrap();
    assert_eq!(a.epoch(), 2);
    assert_eq!(b.epoch(), 2);
    a.shutdown().await.unwrap();
    b.closed().await.unwrap();
}

#[tokio::test]
async fn wrong_psk_fails_key_confirmation() {
    let (a, b) = pair(cfg(Some(&[1u8; 16]), false), cfg(Some(&[2u8; 16]), false)).await;
    assert!(matches!(a, Err(ChannelError::KeyConfirmation)), "{:?}", a.err());
    assert!(matches!(b, Err(ChannelError::KeyConfirmation)), "{:?}", b.err());
    let (a, b) = pair(cfg(None, true), cfg(None, false)).await;
    assert!(a.is_err() && b.is_err());
}

#[tokio::test]
async fn peer_shutdown_ends_recv_and_send_fails_after() {
    let (a, mut b) = ok_pair(cfg(None, false)).await;
    a.send(b"last".to_vec()).await.unwrap();
    let s = a.sender();
    a.shutdown().await.unwrap();
    assert_eq!(b.recv().await.unwrap().unwrap(), Incoming::Data(b"last".to_vec()));
    assert!(b.recv().await.is_none());
    assert!(s.send(b"late".to_vec()).await.is_err());
    assert!(b.send(b"late".to_vec()).await.is_err());
}

#[tokio::test]
async fn vanished_peer_is_an_error() {
    let (a, mut b) = ok_pair(cfg(None, false)).await;
    drop(a);
    // The dropped channel's driver ends when its handles are gone... the stream closes
    // without a shutdown message, which the peer reports as an error.
    match tokio::time::timeout(Duration::from_secs(5), b.recv()).await {
        Ok(Some(Err(_))) | Ok(None) => {}
        other => panic!("{other:?}"),
    }
}

/// The driver sleeps until the session's `poll_timeout`: with no command and no frame it
/// still sends its keepalives and notices a silent peer.
#[tokio::test]
async fn the_driver_wakes_for_keepalive_and_idle_timeout_on_its_own() {
    let hour = Duration::from_secs(3600);
    let chatty = Config { keepalive_interval: Duration::from_millis(20), ..cfg(None, false) };
    let (a, _b) = ok_pair(chatty).await;
    let mut pings = false;
    for _ in 0..500 {
        if a.records_sent() >= 3 {
            pings = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(pings, "no keepalive from an idle channel");
    let impatient = Config { idle_timeout: Duration::from_millis(100), keepalive_interval: hour, ..cfg(None, false) };
    let silent = Config { keepalive_interval: hour, ..cfg(None, false) };
    let (a, b) = pair(impatient, silent).await;
    let (mut a, _b) = (a.unwrap(), b.unwrap());
    match tokio::time::timeout(Duration::from_secs(10), a.recv()).await {
        Ok(Some(Err(ChannelError::Timeout))) => {}
        other => panic!("expected the idle timeout, got {other:?}"),
    }
}

#[tokio::test]
async fn tampered_record_on_the_wire_is_reported_and_skipped() {
    let (a_end, p_in) = duplex(1 << 16);
    let (p_out, b_end) = duplex(1 << 16);
    let (pa_r, pa_w) = tokio::io::split(p_in);
    let (pb_r, pb_w) = tokio::io::split(p_out);
    // alice -> bob: frames 0 hello, 1 confirm, 2 first data, 3 second data (tampered).
    let fwd = tokio::spawn(async move {
        let mut r = pa_r;
        let mut w = pb_w;
        let mut n = 0;
        while let Ok(Some(mut f)) = read_frame(&mut r, MAX_FRAME).await {
            if n == 3 {
                let last = f.len() - 1;
                f[last] ^= 1;
            }
            n += 1;
            if write_frame(&mut w, &f).await.is_err() || w.flush().await.is_err() {
                break;
            }
        }
    });
    let back = tokio::spawn(async move {
        let mut r = pb_r;
        let mut w = pa_w;
        while let Ok(Some(f)) = read_frame(&mut r, MAX_FRAME).await {
            if write_frame(&mut w, &f).await.is_err() || w.flush().await.is_err() {
                break;
            }
        }
    });
    let c = cfg(None, false);
    let (a, b) = tokio::join!(Channel::connect(a_end, c.clone()), Channel::accept(b_end, c));
    let (a, mut b) = (a.unwrap(), b.unwrap());
    for m in [&b"one"[..], b"two", b"three"] {
        a.send(m.to_vec()).await.unwrap();
    }
    assert_eq!(b.recv().await.unwrap().unwrap(), Incoming::Data(b"one".to_vec()));
    assert!(matches!(b.recv().await.unwrap(), Err(ChannelError::Auth { .. })));
    assert_eq!(b.recv().await.unwrap().unwrap(), Incoming::Data(b"three".to_vec()));
    assert_eq!(b.rejected(), 1);
    a.shutdown().await.unwrap();
    let _ = (fwd.await, back.await);
}

#[tokio::test]
async fn frames_are_bounded() {
    let mut big = (MAX_FRAME as u32 + 1).to_be_bytes().to_vec();
    big.extend_from_slice(&[0u8; 16]);
    let mut r = &big[..];
    assert!(matches!(read_frame(&mut r, MAX_FRAME).await, Err(ChannelError::FrameTooLarge(_))));
    let trunc = [0u8, 0, 0, 10, 1, 2, 3];
    let mut r = &trunc[..];
    assert!(matches!(read_frame(&mut r, MAX_FRAME).await, Err(ChannelError::Io(_))));
    let mut r = &[0u8, 0][..];
    assert!(read_frame(&mut r, MAX_FRAME).await.is_err());
    let mut r = &[][..];
    assert!(read_frame(&mut r, MAX_FRAME).await.unwrap().is_none());
    // An oversized payload is refused before sealing.
    let (a, _b) = ok_pair(cfg(None, false)).await;
    let r = a.send(vec![0u8; raida_channel::record::MAX_PLAINTEXT + 1]).await;
    assert!(matches!(r, Err(ChannelError::PayloadTooLarge(_))));
    // A garbage hello is refused by the responder.
    let (mut x, y) = duplex(4096);
    write_frame(&mut x, b"not a hello").await.unwrap();
    x.flush().await.unwrap();
    assert!(matches!(Channel::accept(y, cfg(None, false)).await, Err(ChannelError::BadHandshake(_))));
}

#[tokio::test]
async fn over_tcp() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let srv = tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let mut ch = Channel::accept(s, cfg(Some(&[8u8; 20]), false)).await.unwrap();
        let got = ch.recv().await.unwrap().unwrap();
        ch.send(match got {
            Incoming::Data(d) => d,
            other => panic!("{other:?}"),
        })
        .await
        .unwrap();
        assert!(ch.recv().await.is_none());
    });
    let s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut ch = Channel::connect(s, cfg(Some(&[8u8; 20]), false)).await.unwrap();
    ch.send(vec![0xEE; 100_000]).await.unwrap();
    assert_eq!(ch.recv().await.unwrap().unwrap(), Incoming::Data(vec![0xEE; 100_000]));
    ch.shutdown().await.unwrap();
    srv.await.unwrap();
}
