//! Key Alert (6/42 amended) under attack and as specified: modern hops (EN 4 under the
//! identity coin, EN 1 only for a legacy key server, 197 and no fetch when the identity
//! does not load), each distinct entry fetched once, an inbox key never replaced (201), a
//! bounded inbox (254), rate-limited log lines. Real servers and fake key servers on
//! loopback; every wait is bounded.

mod common;

use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::TestState;
use parking_lot::Mutex;
use raida_client::{Client, ClientError, Server, Transport};
use raida_proto::client::{ClientKey, Reply};
use raida_proto::codec::Codec;
use raida_proto::commands::get_key::GetKey;
use raida_proto::commands::key_alert::{self, AlertEntry};
use raida_proto::commands::post_key::{self, CoinName};
use raida_proto::header::{Encryption, KeyIdentity};
use raida_proto::{CoinId, IdentityCoin, Status};
use raida_server::inbox::{InboxKey, InboxLimits};
use raida_server::ledger::MemoryLedger;
use raida_server::{KeyServer, RunningServer, ServerLimits, ServerStateBuilder};
use rand_core::{OsRng, RngCore};

const COIN_ID: u16 = 6;
const T: Duration = Duration::from_secs(5);
const IDENTITY: (i8, u32) = (1, 777);
const NONE: CoinName = CoinName { dn: 0, sn: 0 };

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    OsRng.fill_bytes(&mut b);
    b
}

fn state(raida_id: u8, ledger: MemoryLedger, tweak: impl FnOnce(&mut ServerStateBuilder)) -> TestState {
    TestState::build(raida_id, COIN_ID, ledger, raida_client::unix_now(), |s| {
        s.clock = raida_server::system_clock();
        tweak(s);
    })
}

async fn start(t: &TestState) -> RunningServer {
    RunningServer::start(t.state.clone(), "127.0.0.1:0".parse().unwrap(), ServerLimits::default()).await.unwrap()
}

fn key_server(addr: SocketAddr, raida_id: u8, legacy: bool) -> KeyServer {
    KeyServer::new(raida_id, addr, legacy)
}

/// A key server that never answers; [`Silent::requests`] drains what it received.
struct Silent(UdpSocket);

impl Silent {
    fn new() -> Silent {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_nonblocking(true).unwrap();
        Silent(s)
    }
    fn addr(&self) -> SocketAddr {
        self.0.local_addr().unwrap()
    }
    /// Every request received so far, copies included (a request is sent before the alert
    /// answers, and loopback delivers it at once: no wait needed).
    fn requests(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = [0u8; 1024];
        while let Ok((n, _)) = self.0.recv_from(&mut buf) {
            out.push(buf[..n].to_vec());
        }
        out
    }
}

/// One request and the copies of it sent while it had no answer: at least one, at most
/// `MAX_SENDS` (sixteen requests would be at least sixteen datagrams).
fn one_request(seen: &[Vec<u8>]) -> bool {
    (1..=raida_net::batch::MAX_SENDS).contains(&seen.len())
}

/// A UDP relay in front of a real key server that passes only requests of encryption type
/// `only_en` and records the type of every request it sees.
struct Proxy {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    fn new(target: SocketAddr, only_en: u8) -> Proxy {
        let front = UdpSocket::bind("127.0.0.1:0").unwrap();
        front.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let back = UdpSocket::bind("127.0.0.1:0").unwrap();
        back.connect(target).unwrap();
        back.set_read_timeout(Some(T)).unwrap();
        let (seen, stop) = (Arc::new(Mutex::new(Vec::new())), Arc::new(AtomicBool::new(false)));
        let (s, st) = (seen.clone(), stop.clone());
        let addr = front.local_addr().unwrap();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !st.load(Ordering::Relaxed) {
                let Ok((n, from)) = front.recv_from(&mut buf) else { continue };
                let en = buf.get(16).copied().unwrap_or(255);
                s.lock().push(en);
                if en != only_en || back.send(&buf[..n]).is_err() {
                    continue;
                }
                if let Ok(m) = back.recv(&mut buf) {
                    let _ = front.send_to(&buf[..m], from);
                }
            }
        });
        Proxy { addr, seen, stop, thread: Some(thread) }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn post(ks: SocketAddr, raida_id: u8, key_id: [u8; 16], receiver: CoinName, part: &[u8]) {
    let p = post_key::PostKey::with_part(key_id, receiver, [0; 4], NONE, &random::<128>(), 3, part).to_bytes();
    Client::new(Transport::Udp, COIN_ID, T)
        .request(Server { addr: ks, raida_id }, 4, 41, &ClientKey::None, &p)
        .await
        .unwrap();
}

async fn send_alert(rx: SocketAddr, entries: &[AlertEntry]) -> Result<Reply, ClientError> {
    Client::new(Transport::Udp, COIN_ID, T)
        .request(
            Server { addr: rx, raida_id: 3 },
            4,
            42,
            &ClientKey::None,
            &key_alert::KeyAlert { entries: entries.to_vec() }.to_bytes(),
        )
        .await
}

fn entry(key_id: [u8; 16], addr: SocketAddr, raida_id: u8) -> AlertEntry {
    AlertEntry::new(key_id, addr.ip(), addr.port(), raida_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_that_does_not_load_answers_197_and_fetches_nothing() {
    let silent = Silent::new();
    // the identity is configured, but the ledger has no such coin file
    let rx = state(3, MemoryLedger::default(), |s| {
        s.key_alert.identity = Some(IdentityCoin(IDENTITY.into()));
        s.key_alert.key_servers = vec![key_server(silent.addr(), 1, false)];
        s.key_alert.timeout = Duration::from_secs(1);
    });
    let r = start(&rx).await;
    let err = send_alert(r.local_addr(), &[entry(random(), silent.addr(), 1)]).await.unwrap_err();
    assert_eq!(err.status(), Some(Status::CoinLoad));
    assert_eq!(silent.requests().len(), 0, "no unauthenticated fetch");
    r.shutdown().await.unwrap();
}

/// The receiver's identity coin is present on key server 1; the part is posted for it
/// (receiver identity = the identity coin). The key server sits behind a proxy that lets
/// only `only_en` through.
async fn fetch_through_proxy(legacy: bool, only_en: u8) {
    let ans: [[u8; 16]; 25] = std::array::from_fn(|_| random::<16>());
    let ks = state(1, MemoryLedger::with_coins([(IDENTITY, (ans[1], 40))]), |_| {});
    let ks_server = start(&ks).await;
    let proxy = Proxy::new(ks_server.local_addr(), only_en);
    let ledger = MemoryLedger::default();
    ledger.identities.write().insert(IdentityCoin(IDENTITY.into()), ans);
    let rx = state(3, ledger, |s| {
        s.key_alert.identity = Some(IdentityCoin(IDENTITY.into()));
        s.key_alert.key_servers = vec![key_server(proxy.addr, 1, legacy)];
        s.key_alert.timeout = T;
    });
    let r = start(&rx).await;

    let (key_id, part) = (random::<16>(), [&random::<15>()[..], &[0xFF]].concat());
    post(ks_server.local_addr(), 1, key_id, CoinName { dn: IDENTITY.0, sn: IDENTITY.1 }, &part).await;
    let reply = send_alert(r.local_addr(), &[entry(key_id, proxy.addr, 1)]).await.unwrap();
    assert_eq!(reply.status, Status::Success);
    assert_eq!(reply.payload, [&[0xFF][..], &[0; 15]].concat());
    let inbox = rx.state.inbox().list().unwrap();
    assert_eq!((inbox.len(), &inbox[0].key), (1, &part));
    assert_eq!(*proxy.seen.lock(), vec![only_en], "one Get Key, with EN {only_en}");
    drop(proxy);
    for s in [ks_server, r] {
        s.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_server_that_only_accepts_en4_delivers_the_key() {
    fetch_through_proxy(false, 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_key_server_is_fetched_with_en1() {
    fetch_through_proxy(true, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_identical_entries_make_one_get_key_request() {
    let silent = Silent::new();
    let ks = state(1, MemoryLedger::default(), |_| {});
    let ks_server = start(&ks).await;
    let a1 = ks_server.local_addr();
    let rx = state(3, MemoryLedger::default(), |s| {
        s.key_alert.key_servers = vec![key_server(silent.addr(), 1, false), key_server(a1, 1, false)];
        s.key_alert.timeout = Duration::from_secs(1);
    });
    let r = start(&rx).await;

    // a key server that never answers: one request (sent again while unanswered, at most
    // MAX_SENDS copies in all), not sixteen
    let same = entry(random(), silent.addr(), 1);
    let reply = send_alert(r.local_addr(), &[same; 16]).await.unwrap();
    assert_eq!(reply.status, Status::AllFail);
    assert!(one_request(&silent.requests()), "one request and its copies");

    // a real key server: the one part fetched serves all sixteen entries
    let (key_id, part) = (random::<16>(), [&random::<3>()[..], &[0xFF]].concat());
    post(a1, 1, key_id, NONE, &part).await;
    let reply = send_alert(r.local_addr(), &[entry(key_id, a1, 1); 16]).await.unwrap();
    assert_eq!(reply.status, Status::Success);
    assert_eq!(reply.payload, vec![0xFF; 16]);
    let inbox = rx.state.inbox().list().unwrap();
    assert_eq!(inbox[0].key, part.repeat(16));
    assert_eq!(inbox[0].senders.len(), 16);
    for s in [ks_server, r] {
        s.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_alert_with_the_same_first_key_id_gets_201_and_fetches_nothing() {
    let silent = Silent::new();
    let ks = state(1, MemoryLedger::default(), |_| {});
    let ks_server = start(&ks).await;
    let a1 = ks_server.local_addr();
    let rx = state(3, MemoryLedger::default(), |s| {
        s.key_alert.key_servers = vec![key_server(a1, 1, false), key_server(silent.addr(), 1, false)];
        s.key_alert.timeout = T;
    });
    let r = start(&rx).await;

    let (k1, part) = (random::<16>(), [&random::<15>()[..], &[0xFF]].concat());
    post(a1, 1, k1, NONE, &part).await;
    assert_eq!(send_alert(r.local_addr(), &[entry(k1, a1, 1)]).await.unwrap().status, Status::Success);
    let before = rx.state.inbox().list().unwrap();
    assert_eq!(before[0].key, part);

    // the same key id is pending again (another part): a second alert must not replace the key
    let other = [&random::<15>()[..], &[0xFF]].concat();
    post(a1, 1, k1, NONE, &other).await;
    let err = send_alert(r.local_addr(), &[entry(k1, a1, 1), entry(random(), silent.addr(), 1)]).await.unwrap_err();
    assert_eq!(err.status(), Some(Status::FileExists));
    assert_eq!(silent.requests().len(), 0, "nothing fetched");
    assert_eq!(rx.state.inbox().list().unwrap(), before, "inbox unchanged");
    // the part is still pending on the key server: the alert did not fetch it
    let got = Client::new(Transport::Udp, COIN_ID, T)
        .call(Server { addr: a1, raida_id: 1 }, &ClientKey::None, &GetKey { key_id: k1 })
        .await
        .unwrap();
    assert_eq!(got.key, other);
    for s in [ks_server, r] {
        s.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_inbox_answers_254_until_a_key_expires() {
    let silent = Silent::new();
    let now = raida_client::unix_now();
    // the receiver's clock is the test's (its alerts are EN 0: no freshness involved)
    let rx = TestState::build(3, COIN_ID, MemoryLedger::default(), now, |s| {
        s.key_alert.key_servers = vec![key_server(silent.addr(), 1, false)];
        s.key_alert.timeout = Duration::from_millis(300);
        s.inbox_limits = InboxLimits { max_keys: 1, max_age_secs: 100 };
    });
    let r = start(&rx).await;
    let held = InboxKey { key_id: random(), created: now, senders: vec![CoinId::default()], key: vec![1, 0xFF] };
    rx.state.inbox().store(&held).unwrap();

    let err = send_alert(r.local_addr(), &[entry(random(), silent.addr(), 1)]).await.unwrap_err();
    assert_eq!(err.status(), Some(Status::MemoryAlloc));
    assert_eq!(silent.requests().len(), 0, "nothing fetched");

    // once the held key is older than inbox_max_age_seconds, its slot is free again
    rx.set_now(now + 100);
    let reply = send_alert(r.local_addr(), &[entry(random(), silent.addr(), 1)]).await.unwrap();
    assert_eq!(reply.status, Status::AllFail);
    assert!(one_request(&silent.requests()), "one request and its copies");
    // the server's own sweep (every 5 s, the first at start) may run after set_now and take
    // it first (seen: 2 runs in 4); either way one sweep removes the expired key
    assert!(rx.state.inbox().sweep(now + 100).unwrap() <= 1, "the sweep removes the expired key");
    assert!(rx.state.inbox().list().unwrap().is_empty());
    r.shutdown().await.unwrap();
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_flood_of_alerts_writes_a_few_log_lines() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
    let rx = TestState::build(3, COIN_ID, MemoryLedger::default(), 1_800_000_000, |s| {
        s.key_alert.identity = Some(IdentityCoin(IDENTITY.into())); // does not load: every alert logs a warning
    });
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    const ALERTS: usize = 500;
    let started = Instant::now();
    tracing::subscriber::with_default(subscriber, || {
        for _ in 0..ALERTS {
            let payload = key_alert::KeyAlert { entries: vec![AlertEntry::new(random(), [127, 0, 0, 1].into(), 9, 1)] }
                .to_bytes();
            let call = common::call(common::header(Encryption::None, KeyIdentity::None, 4, 42), payload, 1_800_000_000);
            let answer = runtime.block_on(raida_server::cmd::key_alert::answer(rx.state.clone(), call));
            assert_eq!(answer.status, Status::CoinLoad);
        }
    });
    let seconds = started.elapsed().as_secs() as usize;
    let log = String::from_utf8_lossy(&captured.0.lock()).to_string();
    let lines = log.lines().filter(|l| l.contains("identity coin does not load")).count();
    assert!(lines <= seconds + 2, "{lines} log lines for {ALERTS} alerts in {seconds} s:\n{log}");
}

/// Issue 19 item 5: an alert naming a key server the configuration does not list is
/// refused whole (242) before any fetch, even when its other entries are listed.
///
/// Seen failing with the check removed: the listed key server got 1 Get Key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_naming_an_unlisted_key_server_gets_242_and_fetches_nothing() {
    let listed = Silent::new();
    let unlisted = Silent::new();
    let rx = state(3, MemoryLedger::default(), |s| {
        s.key_alert.key_servers = vec![key_server(listed.addr(), 1, false)];
        s.key_alert.timeout = Duration::from_millis(300);
    });
    let r = start(&rx).await;
    let entries = [entry(random(), listed.addr(), 1), entry(random(), unlisted.addr(), 2)];
    let reply = send_alert(r.local_addr(), &entries).await.unwrap();
    assert_eq!((reply.status, reply.payload), (Status::AllFail, vec![0; 16]));
    assert_eq!((listed.requests().len(), unlisted.requests().len()), (0, 0), "nothing fetched");
    // the listed entry alone is fetched as before
    let reply = send_alert(r.local_addr(), &entries[..1]).await.unwrap();
    assert_eq!(reply.status, Status::AllFail);
    assert!(one_request(&listed.requests()), "one request and its copies");
    r.shutdown().await.unwrap();
}

/// Issue 19 item 5: a flood of alerts with 16 made-up key ids makes the server send at most
/// `key_alert_fetches_per_minute` Get Keys (under its identity coin) in a minute; beyond,
/// alerts get 160 without fetching. The next minute (the server's clock), a real alert
/// delivers its key.
///
/// Seen failing with the budget removed: 160 Get Keys for the 10 alerts, all answered 242.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_alerts_sends_at_most_the_budget_of_get_keys() {
    const BUDGET: u32 = 64;
    let silent = Silent::new();
    let ks = state(1, MemoryLedger::default(), |_| {});
    let ks_server = start(&ks).await;
    let a1 = ks_server.local_addr();
    let now = raida_client::unix_now();
    let rx = TestState::build(3, COIN_ID, MemoryLedger::default(), now, |s| {
        s.key_alert.key_servers =
            (0..16).map(|id| key_server(silent.addr(), id, false)).chain([key_server(a1, 1, false)]).collect();
        s.key_alert.timeout = Duration::from_millis(200);
        s.key_alert.fetches_per_minute = BUDGET;
    });
    let r = start(&rx).await;
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let entries: Vec<AlertEntry> = (0..16).map(|id| entry(random(), silent.addr(), id)).collect();
        statuses.push(match send_alert(r.local_addr(), &entries).await {
            Ok(reply) => reply.status,
            Err(e) => e.status().unwrap(),
        });
    }
    assert_eq!(silent.requests().len(), BUDGET as usize, "{statuses:?}");
    assert_eq!(statuses[..4], [Status::AllFail; 4]);
    assert_eq!(statuses[4..], [Status::RequestRate; 6]);
    // still spent within the minute, also for a real key
    let (key_id, part) = (random::<16>(), [&random::<15>()[..], &[0xFF]].concat());
    post(a1, 1, key_id, NONE, &part).await;
    let err = send_alert(r.local_addr(), &[entry(key_id, a1, 1)]).await.unwrap_err();
    assert_eq!(err.status(), Some(Status::RequestRate));
    rx.set_now(now + 60);
    let reply = send_alert(r.local_addr(), &[entry(key_id, a1, 1)]).await.unwrap();
    assert_eq!(reply.status, Status::Success);
    assert_eq!(rx.state.inbox().list().unwrap()[0].key, part);
    for s in [ks_server, r] {
        s.shutdown().await.unwrap();
    }
}
