//! Section 9 as amended, in this process: a receiver named by its coin alone takes its key
//! from its mailbox RAIDAs (46/47) and the data comes through the network's relay; the
//! receiver's rules on mailbox alerts (copies are one, commitments checked, a faulty part
//! named). raida_client over raida_server::local_network (which runs the relay too).

use std::path::Path;
use std::time::Duration;

use raida_client::rke::{send_key, AlertDelivery, AlertOutcome, KeyReceiver, ReceiveOptions, Recipient, SendOptions};
use raida_client::transfer::{self, Event, Item, Receiver, Sink};
use raida_client::{Client, Transport};
use raida_net::network::Network;
use raida_proto::commands::leave_alert::{AlertBody, LeaveAlert, MailboxPart};
use raida_proto::commands::post_key::PostKey;
use raida_proto::mailbox::{commitment, mailbox_raidas};
use raida_proto::Status;
use raida_server::local_network::{init_network, user_wallet, LocalNetwork, NetworkInit};
use raida_store::wallet::Wallet;
use rand_core::OsRng;

fn init(dir: &Path, users: &[&str]) {
    let opts = NetworkInit {
        raidas: 25,
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

fn accept(who: &Wallet) -> ReceiveOptions {
    ReceiveOptions { accept: vec![who.name()], ..ReceiveOptions::default() }
}

fn by_coin(w: &Wallet) -> Recipient {
    Recipient::parse(&w.name().to_string()).unwrap()
}

/// The receiver opens no port: the key arrives through its mailbox (left on at least three
/// of its seven mailbox RAIDAs), and both sides derive the same K and rendezvous id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_reaches_a_receiver_with_no_open_port_through_its_mailbox() {
    let tmp = tempfile::tempdir().unwrap();
    init(tmp.path(), &["alice", "bob"]);
    let net = LocalNetwork::start(tmp.path(), &[], true).await.unwrap();
    let (alice, bob) = (wallet(tmp.path(), "alice"), wallet(tmp.path(), "bob"));
    let mut receiver = KeyReceiver::mailbox(net.network().clone(), bob.clone(), accept(&alice)).await.unwrap();
    assert_eq!(receiver.local_addr(), None, "no port is opened");
    let want: Vec<u8> = mailbox_raidas(bob.name()).to_vec();
    assert_eq!(receiver.mailbox_raidas(), want);
    let waiting = tokio::spawn(async move { receiver.receive(Some(Duration::from_secs(60))).await });
    let sent = send_key(net.network(), &alice, &by_coin(&bob), &SendOptions::default()).await.unwrap();
    let AlertDelivery::Mailbox { raidas, .. } = &sent.delivery else { panic!("{:?}", sent.delivery) };
    assert_eq!(raidas.len(), 7, "every mailbox RAIDA took the alert: {raidas:?}");
    let got = waiting.await.unwrap().unwrap();
    assert_eq!(got.sender, alice.name());
    assert_eq!(got.session_key.as_bytes(), sent.session_key.as_bytes());
    assert_eq!(got.rendezvous, sent.rendezvous);
    net.shutdown().await;
}

/// A sender that cannot reach three of the receiver's mailbox RAIDAs fails, saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_fails_when_fewer_than_three_mailbox_raidas_take_the_alert() {
    let tmp = tempfile::tempdir().unwrap();
    init(tmp.path(), &["alice", "bob"]);
    let bob = wallet(tmp.path(), "bob");
    // five of bob's seven mailbox RAIDAs are down
    let down: Vec<u8> = mailbox_raidas(bob.name())[..5].to_vec();
    let net = LocalNetwork::start(tmp.path(), &down, true).await.unwrap();
    let alice = wallet(tmp.path(), "alice");
    let opts = SendOptions {
        udp_timeouts: vec![Duration::from_millis(200)],
        tcp_timeout: None,
        mailbox_timeout: Duration::from_secs(1),
        ..SendOptions::default()
    };
    let err = send_key(net.network(), &alice, &by_coin(&bob), &opts).await.unwrap_err().to_string();
    assert!(err.contains("only 2 of the receiver's mailbox RAIDAs took the alert"), "{err}");
    net.shutdown().await;
}

/// An alert whose commitments do not match the parts the key servers return is refused,
/// and the RAIDAs whose parts do not match are named; copies of one alert from the seven
/// mailbox RAIDAs are handled once; the real key that follows is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_that_does_not_match_its_commitment_is_named_and_the_key_refused() {
    let tmp = tempfile::tempdir().unwrap();
    init(tmp.path(), &["alice", "bob"]);
    let net = LocalNetwork::start(tmp.path(), &[], true).await.unwrap();
    let (alice, bob) = (wallet(tmp.path(), "alice"), wallet(tmp.path(), "bob"));
    let network: Network = net.network().clone();
    let raidas = network.resolve().await.unwrap();
    // alice posts 13 real parts for bob, then leaves an alert whose commitment of part 4
    // is for other bytes (as if that key server returned bytes other than the sender's)
    let client = Client::new(Transport::Udp, network.coin_id, Duration::from_secs(5));
    let mut parts = Vec::new();
    for id in 0..13u8 {
        let mut part = [id; 16];
        if id == 12 {
            part[15] = 0xFF;
        }
        let post = PostKey::for_part(&mut OsRng, bob.name(), [0; 4], alice.name(), &part);
        let server = raidas[id as usize].server;
        client.call(server, &alice.en4_key(id).unwrap(), &post).await.unwrap();
        let c = if id == 4 { commitment(&post.key_id, &[0xEE; 16]) } else { commitment(&post.key_id, &part) };
        parts.push(MailboxPart { raida_id: id, key_id: post.key_id, commitment: c });
    }
    let alert = LeaveAlert { receiver: bob.name(), alert_id: [7; 16], body: AlertBody { parts, hints: Vec::new() } };
    let delivery =
        raida_client::mailbox::leave_alert(network.coin_id, &raidas, &alice, &alert, Duration::from_secs(5)).await;
    assert_eq!(delivery.accepted.len(), 7);
    let mut receiver = KeyReceiver::mailbox(network.clone(), bob.clone(), accept(&alice)).await.unwrap();
    match tokio::time::timeout(Duration::from_secs(60), receiver.next_alert()).await.unwrap() {
        AlertOutcome::Refused { status, reason, .. } => {
            assert_eq!(status, Status::Mixed);
            assert!(reason.contains("faulty RAIDA: RAIDA 4 ("), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // the six other copies of the same alert are not handled again; a real key is accepted
    let waiting = tokio::spawn(async move { receiver.receive(Some(Duration::from_secs(60))).await });
    let sent = send_key(&network, &alice, &by_coin(&bob), &SendOptions::default()).await.unwrap();
    let got = waiting.await.unwrap().unwrap();
    assert_eq!(got.session_key.as_bytes(), sent.session_key.as_bytes());
    net.shutdown().await;
}

/// `raida send FILE --to 1:2` as a library call: the receiver opens no port, so the data
/// goes through the relay of the network file, and both sides say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_goes_through_the_relay_when_neither_side_listens() {
    let tmp = tempfile::tempdir().unwrap();
    init(tmp.path(), &["alice", "bob"]);
    let net = LocalNetwork::start(tmp.path(), &[], true).await.unwrap();
    assert!(!net.network().relays.is_empty(), "the local network lists its relay");
    let (alice, bob) = (wallet(tmp.path(), "alice"), wallet(tmp.path(), "bob"));
    let file = tmp.path().join("photo.bin");
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&file, &body).unwrap();
    let out = tmp.path().join("inbox");
    std::fs::create_dir(&out).unwrap();
    let opts = transfer::ReceiveOptions { accept: vec![alice.name()], ..transfer::ReceiveOptions::default() };
    let receiver = Receiver::mailbox(net.network().clone(), bob.clone(), opts).await.unwrap();
    let sink = Sink::Directory(out.clone());
    let waiting = tokio::spawn(async move {
        let mut paths = Vec::new();
        let r = receiver
            .receive(sink, &mut |e| {
                if let Event::Connected { path, .. } = e {
                    paths.push(path.clone())
                }
            })
            .await;
        (r, paths)
    });
    let mut sent_paths = Vec::new();
    let items = vec![Item::file(&file).unwrap()];
    let sent =
        transfer::send(net.network(), &alice, &by_coin(&bob), items, &transfer::SendOptions::default(), &mut |e| {
            if let Event::Connected { path, .. } = e {
                sent_paths.push(path.clone())
            }
        })
        .await
        .unwrap();
    let (got, paths) = waiting.await.unwrap();
    assert_eq!(got.unwrap().bytes, sent.bytes);
    assert_eq!(std::fs::read(out.join("photo.bin")).unwrap(), body);
    assert_eq!((sent_paths, paths), (vec!["relay".to_string()], vec!["relay".to_string()]));
    net.shutdown().await;
}
