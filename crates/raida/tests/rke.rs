//! The key exchange between two machines (PROTOCOL.md section 9) across a local network of
//! RAIDAs running in this process: raida_client::rke over raida_server::local_network.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raida_client::rke::{
    send_assembled_key, send_key, AlertOutcome, KeyReceiver, ReceiveOptions, Recipient, RkeError, SendOptions,
};
use raida_client::{Client, Server, Transport};
use raida_net::network::Network;
use raida_proto::codec::{Codec, Request};
use raida_proto::commands::key_alert::{self, AlertEntry, KeyAlert};
use raida_proto::commands::post_key::{CoinName, PostKey};
use raida_proto::Status;
use raida_server::local_network::{init_network, user_wallet, LocalNetwork, NetworkInit};
use raida_store::wallet::Wallet;
use tokio::net::UdpSocket;

fn init(dir: &Path, raidas: u8, users: &[&str]) {
    let opts = NetworkInit {
        raidas,
        users: users.iter().map(|u| u.to_string()).collect(),
        base_port: 40_000, // not used: the tests start every RAIDA on a free port
        pages: 1,
        denominations: vec![1],
        ..NetworkInit::default()
    };
    init_network(dir, &opts).unwrap();
}

fn wallet(dir: &Path, user: &str) -> Wallet {
    Wallet::load(&user_wallet(dir, user).unwrap()).unwrap()
}

fn quick() -> SendOptions {
    SendOptions {
        udp_timeouts: vec![Duration::from_millis(300), Duration::from_millis(600), Duration::from_millis(1200)],
        tcp_timeout: Some(Duration::from_secs(2)),
        alert_timeout: Duration::from_secs(20),
        ..SendOptions::default()
    }
}

fn accept(who: &Wallet) -> ReceiveOptions {
    ReceiveOptions { accept: vec![who.name()], ..ReceiveOptions::default() }
}

/// A port nothing listens on (bound, then released).
fn dead_address() -> String {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().to_string()
}

/// One exchange alice -> bob; returns (sender's report, receiver's outcome).
async fn exchange(
    network: &Network,
    alice: &Wallet,
    bob: &Wallet,
    opts: ReceiveOptions,
    send: SendOptions,
    key: Option<Vec<u8>>,
) -> (Result<raida_client::rke::SendReport, RkeError>, AlertOutcome) {
    let mut receiver = KeyReceiver::bind("127.0.0.1:0", network.clone(), bob.clone(), opts).await.unwrap();
    let to = Recipient { coin: bob.name(), address: Some(receiver.local_addr().unwrap().to_string()), raida_id: None };
    let waiting = tokio::spawn(async move {
        tokio::time::timeout(Duration::from_secs(60), receiver.next_alert()).await.expect("an alert within 60 s")
    });
    let sent = match key {
        Some(k) => send_assembled_key(network, alice, &to, &k, &send).await,
        None => send_key(network, alice, &to, &send).await,
    };
    (sent, waiting.await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_parts_across_25_raidas_give_the_same_key_on_both_sides() {
    let tmp = tempfile::tempdir().unwrap();
    init(tmp.path(), 25, &["alice", "bob"]);
    let net = LocalNetwork::start(tmp.path(), &[], true).await.unwrap();
    let (alice, bob) = (wallet(tmp.path(), "alice"), wallet(tmp.path(), "bob"));
    let (sent, got) = exchange(net.network(), &alice, &bob, accept(&alice), quick(), None).await;
    let sent = sent.unwrap();
    let AlertOutcome::Accepted(got) = got else { panic!("refused: {got:?}") };
    assert_eq!(sent.session_key.as_bytes(), got.session_key.as_bytes(), "both sides derive the same K");
    assert_eq!(got.sender, alice.name());
    assert_eq!(got.parts, 16);
    assert_eq!(got.first_key_id, sent.first_key_id);
    let mut servers = sent.key_servers.clone();
    servers.sort_unstable();
    servers.dedup();
    assert_eq!(servers.len(), 16, "16 distinct key servers");
    assert!(sent.reposted.is_empty(), "{:?}", sent.reposted);
    // every part was handed out once and deleted: nothing pending anywhere
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_three_raidas_down_failed_posts_are_placed_elsewhere() {
    let tmp = tempfile::tempdir().unwrap();
    init(tmp.path(), 25, &["alice", "bob"]);
    let down = [3u8, 7, 11];
    let net = LocalNetwork::start(tmp.path(), &down, true).await.unwrap();
    let mut network = net.network().clone();
    for r in network.raidas.iter_mut().filter(|r| down.contains(&r.id)) {
        r.address = dead_address();
    }
    let (alice, bob) = (wallet(tmp.path(), "alice"), wallet(tmp.path(), "bob"));
    // 16 of 25 chosen at random miss all three down RAIDAs 3.6% of the time: repeat (bounded)
    // until one exchange had to re-post
    let mut reposted = 0;
    for _ in 0..4 {
        let (sent, got) = exchange(&network, &alice, &bob, accept(&alice), quick(), None).await;
        let sent = sent.unwrap();
        let AlertOutcome::Accepted(got) = got else { panic!("refused: {got:?}") };
        assert_eq!(sent.session_key.as_bytes(), got.session_key.as_bytes());
        assert!(sent.key_servers.iter().all(|id| !down.contains(id)), "no part left on a down RAIDA");
        assert!(sent.reposted.iter().all(|f| down.contains(&f.raida_id)), "{:?}", sent.reposted);
        reposted += sent.reposted.len();
        if reposted > 0 {
            assert!(sent.reposted[0].reason.contains("no answer"), "{}", sent.reposted[0]);
            break;
        }
    }
    assert!(reposted > 0, "no exchange chose a down RAIDA");
    net.shutdown().await;
}

/// Post one part EN 4 under `poster` (who also names itself as the sender).
async fn post(network: &Network, poster: &Wallet, raida: u8, receiver: CoinName, part: &[u8]) -> AlertEntry {
    let entry = network.raida(raida).unwrap();
    let addr: SocketAddr = entry.address.parse().unwrap();
    let key_id: [u8; 16] = std::array::from_fn(|i| i as u8 ^ raida ^ 0x5A);
    let post = PostKey::with_part(key_id, receiver, [0; 4], poster.name(), &[0x11; 128], 3, part);
    let client = Client::new(Transport::Udp, network.coin_id, Duration::from_secs(5));
    let server = Server { addr, raida_id: raida };
    client.call(server, &poster.en4_key(raida).unwrap(), &post).await.unwrap();
    AlertEntry::new(key_id, addr.ip(), addr.port(), raida)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_that_name_different_senders_are_refused_and_nothing_is_kept() {
    let tmp = tempfile::tempdir().unwrap();
    init(tmp.path(), 3, &["alice", "bob", "carol"]);
    let net = LocalNetwork::start(tmp.path(), &[], true).await.unwrap();
    let network = net.network().clone();
    let (alice, bob, carol) = (wallet(tmp.path(), "alice"), wallet(tmp.path(), "bob"), wallet(tmp.path(), "carol"));
    // key server 1 reports another sender than key server 0 (as a lying key server would);
    // the receiver accepts either sender alone
    let entries = vec![
        post(&network, &alice, 0, bob.name(), &[1; 16]).await,
        post(&network, &carol, 1, bob.name(), &[0xFF; 16]).await,
    ];
    let opts = ReceiveOptions { accept: vec![alice.name(), carol.name()], ..ReceiveOptions::default() };
    let mut receiver = KeyReceiver::bind("127.0.0.1:0", network.clone(), bob.clone(), opts).await.unwrap();
    let at = Server { addr: receiver.local_addr().unwrap(), raida_id: 0 };
    let waiting = tokio::spawn(async move { receiver.next_alert().await });
    let client = Client::new(Transport::Tcp, network.coin_id, Duration::from_secs(20));
    let answer =
        raida_client::exchange::alert(&client, at, &raida_proto::client::ClientKey::None, &entries).await.unwrap();
    assert_eq!(answer.0, Status::Mixed, "243: refused");
    match waiting.await.unwrap() {
        AlertOutcome::Refused { status, reason, .. } => {
            assert_eq!(status, Status::Mixed);
            assert!(reason.contains("different senders"), "{reason}");
        }
        AlertOutcome::Accepted(r) => panic!("accepted a key with mixed senders: {r:?}"),
        AlertOutcome::MailboxUnreachable { reason } => panic!("mailbox: {reason}"),
    }
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_not_in_the_from_list_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    init(tmp.path(), 4, &["alice", "bob", "carol"]);
    let net = LocalNetwork::start(tmp.path(), &[], true).await.unwrap();
    let (alice, bob, carol) = (wallet(tmp.path(), "alice"), wallet(tmp.path(), "bob"), wallet(tmp.path(), "carol"));
    let send = SendOptions { parts: Some(4), ..quick() };
    let (sent, got) = exchange(net.network(), &alice, &bob, accept(&carol), send, None).await;
    match sent {
        Err(RkeError::Refused { status, fetched, parts, .. }) => {
            assert_eq!((status, fetched, parts), (Status::Mixed, 4, 4))
        }
        other => panic!("the sender should see the refusal: {other:?}"),
    }
    match got {
        AlertOutcome::Refused { reason, .. } => assert!(reason.contains("--from"), "{reason}"),
        AlertOutcome::Accepted(r) => panic!("accepted a sender outside --from: {r:?}"),
        AlertOutcome::MailboxUnreachable { reason } => panic!("mailbox: {reason}"),
    }
    net.shutdown().await;
}

/// A UDP relay in front of one RAIDA that records every datagram both ways.
/// Every datagram a relay saw: (towards the RAIDA, bytes).
type Recorded = Arc<Mutex<Vec<(bool, Vec<u8>)>>>;

async fn relay(upstream: SocketAddr, log: Recorded) -> SocketAddr {
    let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = front.local_addr().unwrap();
    tokio::spawn(async move {
        let mut backs: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, client)) = front.recv_from(&mut buf).await {
            log.lock().unwrap().push((true, buf[..n].to_vec()));
            let back = match backs.get(&client) {
                Some(b) => b.clone(),
                None => {
                    let b = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
                    b.connect(upstream).await.unwrap();
                    let (b2, front2, log2) = (b.clone(), front.clone(), log.clone());
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 65_536];
                        while let Ok(n) = b2.recv(&mut buf).await {
                            log2.lock().unwrap().push((false, buf[..n].to_vec()));
                            let _ = front2.send_to(&buf[..n], client).await;
                        }
                    });
                    backs.insert(client, b.clone());
                    b
                }
            };
            let _ = back.send(&buf[..n]).await;
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_post_and_fetch_travels_as_en4_and_no_part_is_in_the_clear() {
    let tmp = tempfile::tempdir().unwrap();
    init(tmp.path(), 16, &["alice", "bob"]);
    let net = LocalNetwork::start(tmp.path(), &[], true).await.unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut network = net.network().clone();
    for r in network.raidas.iter_mut() {
        r.address = relay(r.address.parse().unwrap(), log.clone()).await.to_string();
    }
    let (alice, bob) = (wallet(tmp.path(), "alice"), wallet(tmp.path(), "bob"));
    let key = raida_client::exchange::random_key(256);
    // no UDP retries and no TCP fallback: every byte of the exchange passes the relays
    let send = SendOptions { udp_timeouts: vec![Duration::from_secs(10)], tcp_timeout: None, ..quick() };
    let (sent, got) = exchange(&network, &alice, &bob, accept(&alice), send, Some(key.clone())).await;
    let sent = sent.unwrap();
    let AlertOutcome::Accepted(got) = got else { panic!("refused: {got:?}") };
    assert_eq!(sent.session_key.as_bytes(), got.session_key.as_bytes());
    let log: Vec<(bool, Vec<u8>)> = log.lock().unwrap().clone();
    let requests: Vec<&Vec<u8>> = log.iter().filter(|(up, _)| *up).map(|(_, d)| d).collect();
    let posts = requests.iter().filter(|d| d.len() >= 48 && d[4] == 4 && d[5] == 41).count();
    let gets = requests.iter().filter(|d| d.len() >= 48 && d[4] == 4 && d[5] == 43).count();
    assert_eq!((posts, gets), (16, 16), "every post and fetch passed a relay");
    for d in &requests {
        if d.len() >= 17 && d[4] == 4 && (d[5] == 41 || d[5] == 43) {
            assert_eq!(d[16], 4, "41/43 travel as EN 4");
        }
    }
    // no 8 consecutive bytes of any part appear in any datagram, either way
    for part in key.chunks(16) {
        for w in part.windows(8) {
            for (_, d) in log.iter() {
                assert!(!d.windows(8).any(|x| x == w), "part bytes in the clear");
            }
        }
    }
    drop(log);
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receiver_answers_echo_and_refuses_other_commands() {
    let tmp = tempfile::tempdir().unwrap();
    let network = Network::from_toml("[[raida]]\nid = 0\naddress = \"127.0.0.1:9\"\n", "n").unwrap();
    let bob = Wallet::generate((1, 2).into(), 6).unwrap();
    let receiver = KeyReceiver::bind("127.0.0.1:0", network, bob, ReceiveOptions::default()).await.unwrap();
    let addr = receiver.local_addr().unwrap();
    let mut receiver = receiver;
    let serving = tokio::spawn(async move { receiver.next_alert().await });
    for transport in [Transport::Udp, Transport::Tcp] {
        let client = Client::new(transport, 6, Duration::from_secs(5));
        // any RAIDA id is answered (byte 2 comes back in byte 0)
        let server = Server { addr, raida_id: 17 };
        let echo = client.request(server, 0, 0, &raida_proto::client::ClientKey::None, &[]).await.unwrap();
        assert_eq!((echo.status, echo.raida_id), (Status::Success, 17));
        let version = client.request(server, 0, 1, &raida_proto::client::ClientKey::None, &[]).await.unwrap_err();
        assert_eq!(version.status(), Some(Status::InvalidCommand));
        let post = client.request(server, 4, 41, &raida_proto::client::ClientKey::None, &[0; 167]).await.unwrap_err();
        assert_eq!(post.status(), Some(Status::InvalidCommand));
    }
    // a malformed alert is refused with 16 and the receiver says so
    let client = Client::new(Transport::Udp, 6, Duration::from_secs(5));
    let bad = client.request(Server { addr, raida_id: 0 }, 4, 42, &raida_proto::client::ClientKey::None, &[0]).await;
    assert_eq!(bad.unwrap_err().status(), Some(Status::InvalidPacketLength));
    match serving.await.unwrap() {
        AlertOutcome::Refused { status, .. } => assert_eq!(status, Status::InvalidPacketLength),
        other => panic!("{other:?}"),
    }
    let _ = (tmp, key_alert::MAX_PARTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_every_tcp_connection_of_the_receiver() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let network = Network::from_toml("[[raida]]\nid = 0\naddress = \"127.0.0.1:9\"\n", "n").unwrap();
    let bob = Wallet::generate((1, 2).into(), 6).unwrap();
    let opts = ReceiveOptions { max_connections_per_ip: 2, ..ReceiveOptions::default() };
    let mut receiver = KeyReceiver::bind("127.0.0.1:0", network, bob, opts).await.unwrap();
    let addr = receiver.local_addr().unwrap();
    let serving = tokio::spawn(async move { receiver.next_alert().await });
    let echo = || {
        let routing = raida_proto::client::Routing::new(0, 6, 0, 0);
        raida_proto::client::build_request(
            &routing,
            &raida_proto::client::ClientKey::None,
            &[],
            0,
            &mut rand_core::OsRng,
        )
        .0
    };
    // answers Echo on a connection, or None when the receiver closed it
    async fn ask(s: &mut tokio::net::TcpStream, req: &[u8]) -> Option<u8> {
        s.write_all(req).await.ok()?;
        let mut head = [0u8; 32];
        match tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut head)).await {
            Ok(Ok(_)) => Some(head[2]),
            _ => None,
        }
    }
    let mut first = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut second = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert_eq!(ask(&mut first, &echo()).await, Some(250));
    assert_eq!(ask(&mut second, &echo()).await, Some(250));
    let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert_eq!(ask(&mut third, &echo()).await, None, "a third connection from one address is closed");
    drop(first);
    // the slot comes back once a connection ends (bounded wait)
    let mut served = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut again = tokio::net::TcpStream::connect(addr).await.unwrap();
        served = ask(&mut again, &echo()).await;
        if served.is_some() {
            break;
        }
    }
    assert_eq!(served, Some(250));
    serving.abort();
}

// ---------------------------------------------------------------------------------------
// Issue 19, items 1 and 5: posing as a sender, alert floods
// ---------------------------------------------------------------------------------------

/// A receiver answering alerts until one is accepted (or it is dropped); every outcome goes
/// to the channel.
fn serve(mut receiver: KeyReceiver) -> tokio::sync::mpsc::UnboundedReceiver<AlertOutcome> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let o = receiver.next_alert().await;
            let done = matches!(o, AlertOutcome::Accepted(_));
            if tx.send(o).is_err() || done {
                return;
            }
        }
    });
    rx
}

/// One Key Alert datagram (EN 0) from `source` (any 127.0.0.0/8 address) to the receiver at
/// `to`; the status it answered.
async fn forge_alert(source: [u8; 4], to: SocketAddr, entries: &[AlertEntry]) -> Status {
    let s = UdpSocket::bind(SocketAddr::from((source, 0))).await.unwrap();
    let routing = raida_proto::client::Routing::new(0, 6, KeyAlert::GROUP, KeyAlert::COMMAND);
    let (req, _) = raida_proto::client::build_request(
        &routing,
        &raida_proto::client::ClientKey::None,
        &KeyAlert { entries: entries.to_vec() }.to_bytes(),
        raida_client::unix_now(),
        &mut rand_core::OsRng,
    );
    s.send_to(&req, to).await.unwrap();
    let mut buf = [0u8; 256];
    let (n, _) =
        tokio::time::timeout(Duration::from_secs(20), s.recv_from(&mut buf)).await.expect("an answer").unwrap();
    assert!(n >= 32);
    Status::from_code(buf[2]).unwrap()
}

/// Entries naming `ids` of `network` with made-up key ids.
fn made_up(network: &Network, ids: impl IntoIterator<Item = u8>) -> Vec<AlertEntry> {
    ids.into_iter()
        .map(|id| {
            let addr: SocketAddr = network.raida(id).unwrap().address.parse().unwrap();
            let key_id: [u8; 16] = std::array::from_fn(|i| (i as u8) ^ id ^ 0xC3);
            AlertEntry::new(key_id, addr.ip(), addr.port(), id)
        })
        .collect()
}

/// Item 1. RAIDAs 0..11 are dishonest: they answer any key id with "sender = alice" and
/// key bytes they chose. A one-part and a twelve-part forged alert to `--from alice` are
/// refused (243) before any Get Key is sent; a real 16-part exchange still works.
///
/// Seen failing with the majority rule of `plan_alert` removed: the one-part alert was
/// answered 250 and accepted as "sender 1:1" (the attack of issue 19).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_dishonest_raida_cannot_pose_as_a_sender() {
    let tmp = tempfile::tempdir().unwrap();
    init(tmp.path(), 25, &["alice", "bob"]);
    let net = LocalNetwork::start(tmp.path(), &[], true).await.unwrap();
    let network = net.network().clone();
    let (alice, bob) = (wallet(tmp.path(), "alice"), wallet(tmp.path(), "bob"));
    let forged_key = [&[0x42; 15][..], &[0xFF]].concat();
    for id in 0..12 {
        assert!(net.make_dishonest(id, alice.name(), &forged_key));
    }
    let receiver = KeyReceiver::bind("127.0.0.1:0", network.clone(), bob.clone(), accept(&alice)).await.unwrap();
    let at = receiver.local_addr().unwrap();
    let mut outcomes = serve(receiver);
    for ids in [vec![3u8], (0..12).collect::<Vec<u8>>()] {
        let before = net.get_keys_seen();
        let status = forge_alert([127, 0, 0, 1], at, &made_up(&network, ids.clone())).await;
        assert_eq!(status, Status::Mixed, "{} forged parts: refused", ids.len());
        match outcomes.recv().await.unwrap() {
            AlertOutcome::Refused { reason, .. } => assert!(reason.contains("fewer than the 13"), "{reason}"),
            AlertOutcome::Accepted(r) => panic!("a forged {}-part alert was accepted: {r:?}", ids.len()),
            AlertOutcome::MailboxUnreachable { reason } => panic!("mailbox: {reason}"),
        }
        assert_eq!(net.get_keys_seen(), before, "nothing fetched for a {}-part alert", ids.len());
    }
    // the same receiver still takes a real key (the dishonest RAIDAs hand out the parts
    // they hold honestly)
    let to = Recipient { coin: bob.name(), address: Some(at.to_string()), raida_id: None };
    let sent = send_key(&network, &alice, &to, &quick()).await.unwrap();
    let AlertOutcome::Accepted(got) = outcomes.recv().await.unwrap() else { panic!("the real key was refused") };
    assert_eq!((got.sender, got.parts), (alice.name(), 16));
    assert_eq!(got.session_key.as_bytes(), sent.session_key.as_bytes());
    net.shutdown().await;
}

/// Item 1. Thirteen parts (a majority) pass the rules before fetching; then parts that name
/// different senders, or no sender (0:0), are refused and nothing is kept.
///
/// Seen failing with the anonymous check removed: the 0:0 key was accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_majority_of_parts_naming_different_or_no_senders_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    init(tmp.path(), 25, &["alice", "bob", "carol"]);
    let net = LocalNetwork::start(tmp.path(), &[], true).await.unwrap();
    let network = net.network().clone();
    let (alice, bob, carol) = (wallet(tmp.path(), "alice"), wallet(tmp.path(), "bob"), wallet(tmp.path(), "carol"));
    let forged_key = [&[0x42; 15][..], &[0xFF]].concat();
    let opts = ReceiveOptions { accept: Vec::new(), ..ReceiveOptions::default() };
    let receiver = KeyReceiver::bind("127.0.0.1:0", network.clone(), bob.clone(), opts).await.unwrap();
    let at = receiver.local_addr().unwrap();
    let mut outcomes = serve(receiver);
    let cases: [(Vec<CoinName>, &str); 2] = [
        ([vec![alice.name(); 12], vec![carol.name()]].concat(), "different senders"),
        (vec![CoinName { dn: 0, sn: 0 }; 13], "anonymous"),
    ];
    for (senders, why) in cases {
        for (id, s) in senders.iter().enumerate() {
            assert!(net.make_dishonest(id as u8, *s, &forged_key));
        }
        let before = net.get_keys_seen();
        let status = forge_alert([127, 0, 0, 1], at, &made_up(&network, 0..13)).await;
        assert_eq!(status, Status::Mixed, "{why}: refused");
        match outcomes.recv().await.unwrap() {
            AlertOutcome::Refused { reason, .. } => assert!(reason.contains(why), "{reason}"),
            AlertOutcome::Accepted(r) => panic!("{why}: accepted {r:?}"),
            AlertOutcome::MailboxUnreachable { reason } => panic!("mailbox: {reason}"),
        }
        assert_eq!(net.get_keys_seen() - before, 13, "13 parts fetched");
    }
    net.shutdown().await;
}

/// Item 5. One address sends 20 forged 13-part alerts (made-up key ids on real RAIDAs): the
/// receiver sends at most its per-address share of Get Keys (a quarter of 240 a minute),
/// answers the rest 160 without fetching, and a real exchange from another address then
/// succeeds.
///
/// Seen failing with the fetch budget removed: 260 Get Keys for the 20 alerts, all answered
/// 242.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_forged_alerts_spends_at_most_the_fetch_budget() {
    let tmp = tempfile::tempdir().unwrap();
    init(tmp.path(), 25, &["alice", "bob"]);
    let net = LocalNetwork::start(tmp.path(), &[], true).await.unwrap();
    let network = net.network().clone();
    let (alice, bob) = (wallet(tmp.path(), "alice"), wallet(tmp.path(), "bob"));
    let opts = accept(&alice);
    let share = (opts.fetches_per_minute / 4) as u64;
    let receiver = KeyReceiver::bind("127.0.0.1:0", network.clone(), bob.clone(), opts).await.unwrap();
    let at = receiver.local_addr().unwrap();
    let mut outcomes = serve(receiver);
    let before = net.get_keys_seen();
    let mut statuses = Vec::new();
    for _ in 0..20 {
        statuses.push(forge_alert([127, 0, 0, 2], at, &made_up(&network, 0..13)).await);
        assert!(matches!(outcomes.recv().await.unwrap(), AlertOutcome::Refused { .. }));
    }
    let fetched = net.get_keys_seen() - before;
    let limited = statuses.iter().filter(|s| **s == Status::RequestRate).count();
    assert!(fetched <= share, "{fetched} Get Keys for 20 forged alerts from one address (share {share})");
    assert_eq!(fetched, 13 * (20 - limited as u64), "an alert over the budget fetches nothing");
    assert!(limited >= 15, "{statuses:?}");
    let to = Recipient { coin: bob.name(), address: Some(at.to_string()), raida_id: None };
    let sent = send_key(&network, &alice, &to, &quick()).await.unwrap();
    let AlertOutcome::Accepted(got) = outcomes.recv().await.unwrap() else { panic!("the real key was refused") };
    assert_eq!(got.session_key.as_bytes(), sent.session_key.as_bytes());
    net.shutdown().await;
}

/// Item 1, the sender: fewer parts than a majority of the network's RAIDAs are refused
/// before anything is sent; the default is 16, or every RAIDA of a smaller network.
#[tokio::test]
async fn the_sender_refuses_fewer_parts_than_a_majority() {
    let toml = |n: u8| {
        (0..n)
            .map(|i| format!("[[raida]]\nid = {i}\naddress = \"127.0.0.1:{}\"\n", 9000 + i as u16))
            .collect::<String>()
    };
    let big = Network::from_toml(&toml(25), "n").unwrap();
    let small = Network::from_toml(&toml(5), "n").unwrap();
    assert_eq!(SendOptions::default().parts_for(&big).unwrap(), 16);
    assert_eq!(SendOptions::default().parts_for(&small).unwrap(), 5);
    assert_eq!(SendOptions { parts: Some(13), ..SendOptions::default() }.parts_for(&big).unwrap(), 13);
    let alice = Wallet::generate((1, 1).into(), 6).unwrap();
    let to = Recipient::parse("1:2@127.0.0.1:9").unwrap();
    for parts in [1, 12] {
        let err = send_key(&big, &alice, &to, &SendOptions { parts: Some(parts), ..quick() }).await.unwrap_err();
        assert!(err.to_string().contains("fewer than a majority of the network's 25 RAIDAs (13)"), "{err}");
    }
    let err = send_key(&big, &alice, &to, &SendOptions { parts: Some(17), ..quick() }).await.unwrap_err();
    assert!(err.to_string().contains("at most 16"), "{err}");
}
