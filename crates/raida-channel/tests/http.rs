//! HTTP mode in-process: the child side runs on tokio pipes instead of real stdio.

use std::time::Duration;

use raida_channel::session::Config;
use raida_channel::transport::http::{serve_child, HttpClient};
use raida_channel::{ChannelError, Psk};
use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

fn cfg(psk: Option<&[u8]>, pq: bool) -> Config {
    let mut c = Config::new(psk.map(|p| Psk::new(p.to_vec()).unwrap()), pq);
    c.request_timeout = Duration::from_secs(10);
    c
}

async fn start(ca: Config, cb: Config) -> (Result<HttpClient, ChannelError>, JoinHandle<Result<(), ChannelError>>) {
    let (to_child, child_in) = duplex(1 << 16);
    let (child_out, from_child) = duplex(1 << 16);
    let child = tokio::spawn(serve_child(child_in, child_out, cb, |req: &[u8]| [b"echo: ".as_slice(), req].concat()));
    let client = HttpClient::over_pipes(from_child, to_child, ca).await;
    (client, child)
}

#[tokio::test]
async fn request_ping_rekey_shutdown() {
    for (psk, pq) in [(None, false), (Some(&[6u8; 16][..]), false), (None, true)] {
        let (client, child) = start(cfg(psk, pq), cfg(psk, pq)).await;
        let mut c = client.unwrap();
        let r = c.request(b"hello bob").await.unwrap();
        assert_eq!(r.data, b"echo: hello bob");
        assert_eq!(r.ratchet_seq, 1);
        let r = c.request(b"again").await.unwrap();
        assert_eq!(r.ratchet_seq, 2);
        c.ping().await.unwrap();
        assert_eq!(c.send(b"one-way").await.unwrap(), 4);
        assert_eq!(c.rekey().await.unwrap(), 2);
        let r = c.request(b"after rekey").await.unwrap();
        assert_eq!((r.data.as_slice(), r.ratchet_seq), (&b"echo: after rekey"[..], 1));
        assert!(c.shutdown().await.unwrap());
        child.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn replay_and_wrong_session_are_rejected_with_json() {
    let (client, child) = start(cfg(None, false), cfg(None, false)).await;
    let mut c = client.unwrap();
    let rec = c.seal_request_raw(b"x").unwrap();
    let ok = c.post_raw(rec.clone()).await.unwrap();
    assert!(ok.ack);
    match c.post_raw(rec.clone()).await {
        Err(ChannelError::PeerRejected(r)) => assert_eq!(r, "replay"),
        other => panic!("{other:?}"),
    }
    let mut bad = c.seal_request_raw(b"y").unwrap();
    bad[30] ^= 1;
    match c.post_raw(bad).await {
        Err(ChannelError::PeerRejected(r)) => assert_eq!(r, "auth"),
        other => panic!("{other:?}"),
    }
    match c.post_raw(vec![1, 2, 3]).await {
        Err(ChannelError::PeerRejected(r)) => assert_eq!(r, "truncated"),
        other => panic!("{other:?}"),
    }
    // Wrong session header: a raw HTTP/1.1 request.
    let mut s = tokio::net::TcpStream::connect(c.addr()).await.unwrap();
    let head = format!(
        "POST /message HTTP/1.1\r\nHost: x\r\nx-raida-session: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        "00".repeat(16),
        rec.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&rec).await.unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    assert!(resp.contains(r#""error":"wrong_session""#), "{resp}");
    // The session still works.
    assert_eq!(c.request(b"fine").await.unwrap().data, b"echo: fine");
    assert!(c.shutdown().await.unwrap());
    child.await.unwrap().unwrap();
}

#[tokio::test]
async fn automatic_rekey_in_http_mode() {
    let mut ca = cfg(None, false);
    ca.rekey_after_messages = 20;
    let (client, child) = start(ca, cfg(None, false)).await;
    let mut c = client.unwrap();
    for i in 0..50u32 {
        let r = c.request(&i.to_be_bytes()).await.unwrap();
        assert_eq!(r.data, [b"echo: ".as_slice(), &i.to_be_bytes()].concat());
    }
    assert!(c.session().epoch() >= 3, "epoch {}", c.session().epoch());
    assert!(c.shutdown().await.unwrap());
    child.await.unwrap().unwrap();
}

#[tokio::test]
async fn mismatched_options_and_dead_parent() {
    let (client, child) = start(cfg(None, true), cfg(None, false)).await;
    assert!(client.is_err());
    assert!(child.await.unwrap().is_err());
    // Parent goes away without a shutdown: the child stops with an error.
    let (client, child) = start(cfg(None, false), cfg(None, false)).await;
    drop(client.unwrap());
    let r = tokio::time::timeout(Duration::from_secs(5), child).await.unwrap().unwrap();
    assert!(matches!(r, Err(ChannelError::Closed)), "{r:?}");
}

/// The child sleeps until its session's `poll_timeout` (the idle timeout) and stops on its
/// own when the parent stays silent.
#[tokio::test]
async fn the_child_gives_up_on_a_silent_parent() {
    let impatient = Config { idle_timeout: Duration::from_millis(100), ..cfg(None, false) };
    let (client, child) = start(cfg(None, false), impatient).await;
    let _parent = client.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(10), child).await.expect("the child stopped").unwrap();
    assert!(matches!(r, Err(ChannelError::Timeout)), "{r:?}");
}
