//! The mailbox (6/46 Leave Alert, 6/47 Take Alerts) on a real server over loopback UDP
//! and TCP, modern EN 4 requests made by raida-client: every status of both commands,
//! every bound (each test fails without its defence), the TCP long poll (woken by an
//! alert, count 0 after `wait`, never delaying another connection, cancelled at
//! shutdown), and a property test of the sans-IO core. Every wait is bounded; nothing
//! asserts a duration.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::TestState;
use raida_client::{read_response, unix_now, Client, ClientError, Server, Transport};
use raida_proto::client::{build_request, ClientKey, Routing};
use raida_proto::codec::{Codec, Request};
use raida_proto::commands::echo::Echo;
use raida_proto::commands::leave_alert::{AlertBody, ConnectionHint, LeaveAlert, MailboxPart};
use raida_proto::commands::take_alerts::{TakeAlerts, TakeAlertsAnswer};
use raida_proto::mailbox::{HELD_PER_ADDRESS, PER_RECEIVER, PER_SENDER};
use raida_proto::{CoinId, Key16, Key32, Status};
use raida_server::ledger::MemoryLedger;
use raida_server::mailbox::{Mailbox, MailboxSettings, Refusal};
use raida_server::{RunningServer, ServerLimits, ServerStateBuilder, WorkKind};
use rand_core::OsRng;

const RAIDA: u8 = 3;
const COIN_ID: u16 = 6;
/// Every client request's bound (the server's long polls are at most 30 s).
const T: Duration = Duration::from_secs(40);
/// Coins (1, 1..=COINS) are present; (1, 9999) is not.
const COINS: u32 = 200;
const ABSENT: CoinId = CoinId { dn: 1, sn: 9999 };
const RAIDA_SECRET: [u8; 32] = [0x33; 32];

fn coin(sn: u32) -> CoinId {
    CoinId { dn: 1, sn }
}
fn an(c: CoinId) -> [u8; 16] {
    let mut a = [0xA0; 16];
    a[..4].copy_from_slice(&c.sn.to_be_bytes());
    a
}
fn en4(c: CoinId) -> ClientKey {
    ClientKey::Token { coin: c, key: Key32::sha256_of_an(&Key16::new(an(c))) }
}
fn en1(c: CoinId) -> ClientKey {
    ClientKey::Coin { coin: c, an: Key16::new(an(c)) }
}

struct Net {
    t: TestState,
    server: Option<RunningServer>,
    addr: SocketAddr,
}

async fn start(tweak: impl FnOnce(&mut ServerStateBuilder)) -> Net {
    start_with(tweak, ServerLimits::default()).await
}

async fn start_with(tweak: impl FnOnce(&mut ServerStateBuilder), limits: ServerLimits) -> Net {
    let ledger = MemoryLedger::with_coins((1..=COINS).map(|sn| (coin(sn), (an(coin(sn)), 40))));
    ledger.secrets.write().insert((4, 1), RAIDA_SECRET);
    let t = TestState::build(RAIDA, COIN_ID, ledger, unix_now(), |s| {
        s.clock = raida_server::system_clock();
        tweak(s)
    });
    let limits = ServerLimits { udp_threads: 2, ..limits };
    let server = RunningServer::start(t.state.clone(), "127.0.0.1:0".parse().unwrap(), limits).await.unwrap();
    let addr = server.local_addr();
    Net { t, server: Some(server), addr }
}

fn alert(receiver: CoinId, id: u8) -> LeaveAlert {
    LeaveAlert {
        receiver,
        alert_id: [id; 16],
        body: AlertBody {
            parts: vec![MailboxPart { raida_id: 5, key_id: [id; 16], commitment: [0xC0; 16] }],
            hints: vec![ConnectionHint::new(([192, 0, 2, 7], 7000).into())],
        },
    }
}

impl Net {
    fn server(&self) -> Server {
        Server { addr: self.addr, raida_id: RAIDA }
    }

    async fn call<R: Request>(&self, tr: Transport, key: &ClientKey, req: &R) -> Result<R::Answer, Status> {
        Client::new(tr, COIN_ID, T).call(self.server(), key, req).await.map_err(status)
    }

    async fn raw(&self, tr: Transport, key: &ClientKey, command: u8, payload: &[u8]) -> Result<Vec<u8>, Status> {
        match Client::new(tr, COIN_ID, T).request(self.server(), 4, command, key, payload).await {
            Ok(r) => Ok(r.payload),
            Err(e) => Err(status(e)),
        }
    }

    async fn leave(&self, tr: Transport, sender: CoinId, a: &LeaveAlert) -> Result<(), Status> {
        self.call(tr, &en4(sender), a).await.map(drop)
    }

    async fn take(&self, tr: Transport, receiver: CoinId, wait: u8) -> Result<TakeAlertsAnswer, Status> {
        self.call(tr, &en4(receiver), &TakeAlerts { wait }).await
    }

    /// A 47 over TCP from the loopback address `from` (127.0.0.x), as a task.
    fn poll_from(
        &self,
        from: IpAddr,
        receiver: CoinId,
        wait: u8,
    ) -> tokio::task::JoinHandle<Result<TakeAlertsAnswer, Status>> {
        let addr = self.addr;
        tokio::spawn(async move {
            let routing = Routing::new(RAIDA, COIN_ID, TakeAlerts::GROUP, TakeAlerts::COMMAND);
            let payload = TakeAlerts { wait }.to_bytes();
            let (packet, pending) = build_request(&routing, &en4(receiver), &payload, unix_now(), &mut OsRng);
            let sock = tokio::net::TcpSocket::new_v4().unwrap();
            sock.bind(SocketAddr::new(from, 0)).unwrap();
            let mut s = tokio::time::timeout(T, sock.connect(addr)).await.unwrap().expect("connect");
            tokio::io::AsyncWriteExt::write_all(&mut s, &packet).await.expect("write");
            let answer = tokio::time::timeout(T, read_response(&mut s)).await.expect("answered").expect("read");
            match pending.open(&answer) {
                Ok(r) => Ok(TakeAlertsAnswer::decode(&r.payload).expect("a 47 answer")),
                Err(e) => Err(status(ClientError::Response { addr, source: e })),
            }
        })
    }

    /// Wait (bounded) until the server holds `n` polls.
    async fn until_held(&self, n: usize) {
        for _ in 0..2000 {
            if self.t.state.mailbox().held() == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("{} polls held, not {n}", self.t.state.mailbox().held());
    }

    async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await.unwrap();
        }
    }
}

fn status(e: ClientError) -> Status {
    e.status().unwrap_or_else(|| panic!("no status: {e}"))
}

fn ids(a: &TakeAlertsAnswer) -> Vec<u8> {
    a.alerts.iter().map(|w| w.alert_id[0]).collect()
}

const BOTH: [Transport; 2] = [Transport::Udp, Transport::Tcp];

#[tokio::test]
async fn leave_alert_answers_each_status() {
    let net = start(|_| {}).await;
    let a = coin(1);
    for (k, tr) in BOTH.into_iter().enumerate() {
        let (id, b) = (10 * k as u8, coin(2 + k as u32));
        // 250, and the receiver gets it with the sender this RAIDA vouches for
        assert_eq!(net.leave(tr, a, &alert(b, id + 1)).await, Ok(()));
        let got = net.take(tr, b, 0).await.unwrap();
        assert_eq!(ids(&got), [id + 1]);
        assert_eq!(got.alerts[0].sender, a);
        assert_eq!(got.alerts[0].body, alert(b, id + 1).body);
        // EN 1 under the sender's coin is accepted too
        assert_eq!(net.call(tr, &en1(a), &alert(b, id + 2)).await.map(drop), Ok(()));
        // 34: EN 0 and EN 7 name no coin (before the size: an empty payload still gets 34)
        assert_eq!(
            net.raw(tr, &ClientKey::None, 46, &alert(b, id + 3).to_bytes()).await,
            Err(Status::InvalidEncryption)
        );
        assert_eq!(net.raw(tr, &ClientKey::None, 46, &[]).await, Err(Status::InvalidEncryption));
        let raida = ClientKey::Raida { sender: 4, key_id: 1, key: Key32::from_secret(RAIDA_SECRET) };
        assert_eq!(net.raw(tr, &raida, 46, &alert(b, id + 3).to_bytes()).await, Err(Status::InvalidEncryption));
        // 16: NU 0, a wrong size, a RAIDA id repeated
        let mut p = alert(b, id + 4).to_bytes();
        p[21] = 0;
        assert_eq!(net.raw(tr, &en4(a), 46, &p[..23]).await, Err(Status::InvalidPacketLength));
        let p = alert(b, id + 4).to_bytes();
        assert_eq!(net.raw(tr, &en4(a), 46, &p[..p.len() - 1]).await, Err(Status::InvalidPacketLength));
        let mut two = alert(b, id + 4);
        two.body.parts.push(two.body.parts[0]);
        assert_eq!(net.leave(tr, a, &two).await, Err(Status::InvalidPacketLength));
        // 40: the receiver is not a coin of this RAIDA
        assert_eq!(net.leave(tr, a, &alert(ABSENT, id + 5)).await, Err(Status::InvalidSnOrDenomination));
        // 201: that alert id waits for that receiver (from another sender too)
        assert_eq!(net.leave(tr, coin(3), &alert(b, id + 1)).await, Err(Status::FileExists));
    }
    let s = net.t.state.mailbox().stats();
    assert_eq!((s.refused(Refusal::NotPresent), s.refused(Refusal::SameAlertId)), (2, 2));
    net.stop().await;
}

#[tokio::test]
async fn take_alerts_answers_each_status() {
    let net = start(|s| s.mailbox.max_held_polls = 1).await;
    let r = coin(7);
    for tr in BOTH {
        // 250 count 0, with nothing waiting
        assert_eq!(net.take(tr, r, 0).await.unwrap().alerts.len(), 0);
        // 34: EN 0, EN 7
        assert_eq!(net.raw(tr, &ClientKey::None, 47, &[0]).await, Err(Status::InvalidEncryption));
        assert_eq!(net.raw(tr, &ClientKey::None, 47, &[0, 0, 0]).await, Err(Status::InvalidEncryption));
        let raida = ClientKey::Raida { sender: 4, key_id: 1, key: Key32::from_secret(RAIDA_SECRET) };
        assert_eq!(net.raw(tr, &raida, 47, &[0]).await, Err(Status::InvalidEncryption));
        // 16: wait above 30, a size other than 1
        assert_eq!(net.raw(tr, &en4(r), 47, &[31]).await, Err(Status::InvalidPacketLength));
        assert_eq!(net.raw(tr, &en4(r), 47, &[0, 0]).await, Err(Status::InvalidPacketLength));
        assert_eq!(net.raw(tr, &en4(r), 47, &[]).await, Err(Status::InvalidPacketLength));
    }
    // over UDP `wait` counts as 0: answered at once with nothing waiting (no poll held)
    assert_eq!(net.take(Transport::Udp, r, 30).await.unwrap().alerts.len(), 0);
    assert_eq!(net.t.state.mailbox().stats().held, 0);
    // 160: one held poll is the configured total; a second from another address is refused
    let held = net.poll_from("127.0.0.1".parse().unwrap(), r, 30);
    net.until_held(1).await;
    let refused = net.poll_from("127.0.0.2".parse().unwrap(), coin(8), 30).await.unwrap();
    assert_eq!(refused, Err(Status::RequestRate));
    // a 47 that would not be held is not refused: wait 0 over TCP is answered
    assert_eq!(net.take(Transport::Tcp, coin(8), 0).await.unwrap().alerts.len(), 0);
    net.leave(Transport::Udp, coin(9), &alert(r, 1)).await.unwrap();
    assert_eq!(ids(&held.await.unwrap().unwrap()), [1]);
    assert_eq!(net.t.state.mailbox().stats().refused(Refusal::HeldFull), 1);
    net.stop().await;
}

/// 6/46: a (sender, receiver) pair holds 2; a third replaces the pair's oldest. Without the
/// rule the receiver would get 3.
#[tokio::test]
async fn a_pairs_third_alert_replaces_its_oldest() {
    let net = start(|_| {}).await;
    let (a, b) = (coin(1), coin(2));
    for id in 1..=3 {
        net.leave(Transport::Udp, a, &alert(b, id)).await.unwrap();
    }
    net.leave(Transport::Udp, coin(3), &alert(b, 4)).await.unwrap();
    assert_eq!(ids(&net.take(Transport::Tcp, b, 0).await.unwrap()), [2, 3, 4]);
    assert_eq!(net.t.state.mailbox().stats().replaced, 1);
    net.stop().await;
}

/// 6/46: 64 alerts per receiver, then 254; another receiver is still served, and a pair's
/// third still replaces its oldest at the bound.
#[tokio::test]
async fn a_receiver_holds_64_then_254() {
    let net = start(|_| {}).await;
    let r = coin(1);
    for s in 0..(PER_RECEIVER / 2) as u32 {
        for k in 0..2u8 {
            let mut a = alert(r, 0);
            a.alert_id = [s as u8, k, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1];
            net.leave(Transport::Udp, coin(10 + s), &a).await.unwrap();
        }
    }
    assert_eq!(net.leave(Transport::Tcp, coin(100), &alert(r, 200)).await, Err(Status::MemoryAlloc));
    assert_eq!(net.leave(Transport::Udp, coin(100), &alert(r, 201)).await, Err(Status::MemoryAlloc));
    assert_eq!(net.leave(Transport::Udp, coin(100), &alert(coin(2), 200)).await, Ok(()));
    assert_eq!(net.leave(Transport::Udp, coin(10), &alert(r, 202)).await, Ok(()), "the pair rule first");
    assert_eq!(net.t.state.mailbox().core().for_receiver(r), PER_RECEIVER);
    // TCP carries 16, UDP what fits in 1,200 bytes
    assert_eq!(net.take(Transport::Tcp, r, 0).await.unwrap().alerts.len(), 16);
    let udp = net.take(Transport::Udp, r, 0).await.unwrap();
    assert_eq!(udp.alerts.len(), TakeAlertsAnswer::fits(&udp.alerts, true));
    assert!(udp.to_bytes().len() <= 1200 && udp.alerts.len() > 1);
    assert_eq!(net.t.state.mailbox().stats().refused(Refusal::ReceiverFull), 2);
    net.stop().await;
}

/// 6/46: one sender coin has 64 alerts waiting across receivers, then 160, while another
/// sender still gets 250 for the same receiver.
#[tokio::test]
async fn a_sender_leaves_64_then_160_and_others_are_served() {
    let net = start(|_| {}).await;
    let s = coin(1);
    for r in 0..(PER_SENDER / 2) as u32 {
        for id in 1..=2 {
            net.leave(Transport::Udp, s, &alert(coin(10 + r), id)).await.unwrap();
        }
    }
    let fresh = coin(100);
    for tr in BOTH {
        assert_eq!(net.leave(tr, s, &alert(fresh, 1)).await, Err(Status::RequestRate));
    }
    assert_eq!(net.leave(Transport::Udp, coin(2), &alert(fresh, 1)).await, Ok(()));
    // the pair rule still lets the sender replace its own
    assert_eq!(net.leave(Transport::Udp, s, &alert(coin(10), 3)).await, Ok(()));
    assert_eq!(net.t.state.mailbox().core().from_sender(s), PER_SENDER);
    assert_eq!(net.t.state.mailbox().stats().refused(Refusal::SenderFull), 2);
    net.stop().await;
}

/// 6/46: the configured total, then 254 for everybody.
#[tokio::test]
async fn the_mailbox_holds_its_total_then_254() {
    let net = start(|s| s.mailbox.max_alerts = 3).await;
    for k in 1..=3 {
        net.leave(Transport::Udp, coin(k), &alert(coin(10 + k), 1)).await.unwrap();
    }
    for tr in BOTH {
        assert_eq!(net.leave(tr, coin(20), &alert(coin(21), 1)).await, Err(Status::MemoryAlloc));
    }
    assert_eq!(net.t.state.mailbox().stats().refused(Refusal::MailboxFull), 2);
    assert_eq!(net.t.state.mailbox().stats().alerts, 3);
    net.stop().await;
}

/// 6/47: 4 held 47s per address, then 160 from that address, while a poll from another
/// address is still held and answered.
#[tokio::test]
async fn held_polls_are_bounded_per_address() {
    let net = start(|_| {}).await;
    let r = coin(5);
    let one: IpAddr = "127.0.0.1".parse().unwrap();
    let polls: Vec<_> = (0..HELD_PER_ADDRESS).map(|_| net.poll_from(one, r, 30)).collect();
    net.until_held(HELD_PER_ADDRESS).await;
    assert_eq!(net.poll_from(one, coin(6), 30).await.unwrap(), Err(Status::RequestRate));
    let other = net.poll_from("127.0.0.2".parse().unwrap(), r, 30);
    net.until_held(HELD_PER_ADDRESS + 1).await;
    net.leave(Transport::Udp, coin(1), &alert(r, 9)).await.unwrap();
    assert_eq!(ids(&other.await.unwrap().unwrap()), [9]);
    for p in polls {
        assert_eq!(ids(&p.await.unwrap().unwrap()), [9]);
    }
    assert_eq!(net.t.state.mailbox().held(), 0);
    net.stop().await;
}

/// A held 47 answers as soon as an alert for its receiver arrives (an alert for another
/// receiver does not answer it), and with count 0 once `wait` passed.
#[tokio::test]
async fn a_long_poll_answers_when_an_alert_arrives_or_after_wait() {
    let net = start(|_| {}).await;
    let r = coin(5);
    let poll = {
        let (addr, key) = (net.server(), en4(r));
        tokio::spawn(
            async move { Client::new(Transport::Tcp, COIN_ID, T).call(addr, &key, &TakeAlerts { wait: 30 }).await },
        )
    };
    net.until_held(1).await;
    net.leave(Transport::Udp, coin(1), &alert(coin(6), 1)).await.unwrap();
    assert_eq!(net.t.state.mailbox().held(), 1, "another receiver's alert does not answer it");
    net.leave(Transport::Udp, coin(1), &alert(r, 2)).await.unwrap();
    // woken by the alert, not by its `wait` of 30 s (a generous bound, not a measurement)
    let got = tokio::time::timeout(Duration::from_secs(20), poll).await.expect("woken by the alert").unwrap().unwrap();
    assert_eq!(ids(&got), [2]);
    assert_eq!(got.alerts[0].sender, coin(1));
    // polling again at once is held, not answered with the copy kept for a repeat; the
    // next alert ends it, the copy comes along
    let again = net.poll_from("127.0.0.1".parse().unwrap(), r, 30);
    net.until_held(1).await;
    net.leave(Transport::Udp, coin(1), &alert(r, 3)).await.unwrap();
    assert_eq!(ids(&again.await.unwrap().unwrap()), [2, 3]);
    // nothing comes: count 0 after `wait` (1 s)
    assert_eq!(net.take(Transport::Tcp, coin(7), 1).await.unwrap().alerts.len(), 0);
    assert_eq!(net.t.state.mailbox().held(), 0);
    net.stop().await;
}

/// A held 47 holds its own connection only: an Echo on another connection is answered
/// while it is still held.
#[tokio::test]
async fn a_held_poll_does_not_delay_another_connection() {
    let net = start(|_| {}).await;
    let poll = net.poll_from("127.0.0.1".parse().unwrap(), coin(5), 30);
    net.until_held(1).await;
    for tr in BOTH {
        net.call(tr, &en4(coin(9)), &Echo).await.unwrap();
    }
    assert_eq!(net.t.state.mailbox().held(), 1, "the Echos came back while the poll was held");
    // and it holds no slot of a deferred kind
    let limits = net.server.as_ref().unwrap().deferred_limits();
    for kind in [WorkKind::KeyAlert, WorkKind::Durable, WorkKind::Heavy] {
        assert_eq!(limits.running(kind), 0, "{kind:?}");
    }
    net.leave(Transport::Udp, coin(1), &alert(coin(5), 1)).await.unwrap();
    assert_eq!(ids(&poll.await.unwrap().unwrap()), [1]);
    net.stop().await;
}

/// Shutdown does not wait for held polls: they answer count 0 (or their connection
/// closes) and shutdown finishes well within the drain timeout of 60 s.
#[tokio::test]
async fn shutdown_cancels_held_polls() {
    let limits = ServerLimits { drain_timeout: Duration::from_secs(60), ..ServerLimits::default() };
    let mut net = start_with(|_| {}, limits).await;
    let poll = net.poll_from("127.0.0.1".parse().unwrap(), coin(5), 30);
    net.until_held(1).await;
    let server = net.server.take().unwrap();
    tokio::time::timeout(Duration::from_secs(20), server.shutdown())
        .await
        .expect("shutdown waited for the held poll")
        .unwrap();
    // answered count 0, not after its 30 s
    assert_eq!(poll.await.unwrap().map(|a| a.alerts.len()), Ok(0));
    assert_eq!(net.t.state.mailbox().held(), 0);
    // a server started again on the same state holds polls again
    let again = RunningServer::start(net.t.state.clone(), "127.0.0.1:0".parse().unwrap(), ServerLimits::default());
    net.server = Some(again.await.unwrap());
    net.addr = net.server.as_ref().unwrap().local_addr();
    let poll = net.poll_from("127.0.0.1".parse().unwrap(), coin(5), 30);
    net.until_held(1).await;
    net.leave(Transport::Udp, coin(1), &alert(coin(5), 1)).await.unwrap();
    assert_eq!(ids(&poll.await.unwrap().unwrap()), [1]);
    net.stop().await;
}

/// The mailbox's metrics: alerts waiting, left, taken, expired, replaced, refused by
/// reason and status, polls held.
#[tokio::test]
async fn the_mailbox_is_counted_in_metrics() {
    let limits = ServerLimits { metrics_listen: Some("127.0.0.1:0".parse().unwrap()), ..ServerLimits::default() };
    let net = start_with(|_| {}, limits).await;
    let (a, b) = (coin(1), coin(2));
    for id in 1..=3 {
        net.leave(Transport::Udp, a, &alert(b, id)).await.unwrap();
    }
    assert_eq!(net.leave(Transport::Udp, a, &alert(b, 3)).await, Err(Status::FileExists));
    assert_eq!(net.leave(Transport::Udp, a, &alert(ABSENT, 1)).await, Err(Status::InvalidSnOrDenomination));
    assert_eq!(net.take(Transport::Udp, b, 0).await.unwrap().alerts.len(), 2);
    let poll = net.poll_from("127.0.0.1".parse().unwrap(), coin(9), 30);
    net.until_held(1).await;
    let at = net.server.as_ref().unwrap().metrics_addr().unwrap();
    let text = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(at).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(s, "GET /metrics HTTP/1.1\r\nHost: {at}\r\nConnection: close\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text
    })
    .await
    .unwrap();
    for line in [
        "raida_mailbox_alerts 2",
        "raida_mailbox_held_polls 1",
        "raida_mailbox_alerts_left_total 3",
        "raida_mailbox_alerts_taken_total 2",
        "raida_mailbox_alerts_expired_total 0",
        "raida_mailbox_alerts_replaced_total 1",
        "raida_mailbox_refused_total{reason=\"same_alert_id\",status=\"201\"} 1",
        "raida_mailbox_refused_total{reason=\"not_present\",status=\"40\"} 1",
        "raida_mailbox_refused_total{reason=\"sender_full\",status=\"160\"} 0",
        "raida_requests_total{command=\"leave_alert\"} 5",
    ] {
        assert!(text.lines().any(|l| l == line), "no line {line:?} in\n{text}");
    }
    net.leave(Transport::Udp, a, &alert(coin(9), 1)).await.unwrap();
    assert_eq!(ids(&poll.await.unwrap().unwrap()), [1]);
    net.stop().await;
}

mod property {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Leave { sender: u32, receiver: u32, id: u8, parts: u8, later: u64 },
        Take { receiver: u32, udp: bool, later: u64 },
    }

    fn op() -> impl Strategy<Value = Op> {
        // few receivers and many senders (and the reverse) so that every bound is reached
        prop_oneof![
            (0..90u32, 0..4u32, any::<u8>(), 1..=16u8, 0..20u64)
                .prop_map(|(sender, receiver, id, parts, later)| { Op::Leave { sender, receiver, id, parts, later } }),
            (0..4u32, 0..90u32, any::<u8>(), 1..=16u8, 0..20u64)
                .prop_map(|(sender, receiver, id, parts, later)| { Op::Leave { sender, receiver, id, parts, later } }),
            (0..90u32, any::<bool>(), 0..40u64).prop_map(|(receiver, udp, later)| Op::Take { receiver, udp, later }),
        ]
    }

    fn body(parts: u8) -> AlertBody {
        AlertBody {
            parts: (0..parts).map(|i| MailboxPart { raida_id: i, key_id: [i; 16], commitment: [i; 16] }).collect(),
            hints: vec![ConnectionHint::new(([10, 0, 0, 1], 1).into()); (parts % 5) as usize],
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Random leaves, takes and time steps never exceed a bound, never panic, and
        /// answers come oldest first within their transport's size.
        #[test]
        fn the_mailbox_keeps_its_bounds(
            ops in proptest::collection::vec(op(), 1..600),
            max_alerts in 1..300usize,
            ttl in 1..200u64,
        ) {
            let mut m = Mailbox::new(MailboxSettings { alert_ttl_secs: ttl, max_alerts, max_held_polls: 1 });
            let mut now = 1_000_000u64;
            for op in ops {
                match op {
                    Op::Leave { sender, receiver, id, parts, later } => {
                        now += later;
                        let (s, r) = (coin(sender), coin(1000 + receiver));
                        if m.leave(s, r, [id; 16], body(parts), now).is_ok() {
                            let mine = m.take(r, now, false);
                            prop_assert!(mine.alerts.iter().any(|w| w.alert_id == [id; 16] && w.sender == s) || m.for_receiver(r) > 16);
                        }
                        prop_assert!(m.pair(s, r) <= 2);
                        prop_assert!(m.for_receiver(r) <= PER_RECEIVER);
                        prop_assert!(m.from_sender(s) <= PER_SENDER);
                    }
                    Op::Take { receiver, udp, later } => {
                        now += later;
                        let a = m.take(coin(1000 + receiver), now, udp);
                        let ages: Vec<u16> = a.alerts.iter().map(|w| w.age).collect();
                        prop_assert!(ages.windows(2).all(|w| w[0] >= w[1]), "oldest first");
                        prop_assert!(ages.iter().all(|&age| u64::from(age) <= ttl));
                        if udp {
                            prop_assert!(a.alerts.len() <= 1 || a.to_bytes().len() <= 1200);
                        } else {
                            prop_assert!(a.alerts.len() <= 16);
                        }
                    }
                }
                prop_assert!(m.len() <= max_alerts);
                let s = m.stats();
                prop_assert!(s.alerts as u64 + s.expired + s.replaced <= s.left);
            }
            m.expire(now + ttl + 1);
            prop_assert!(m.is_empty());
        }
    }

    #[test]
    fn held_polls_share_per_address_and_total() {
        let m = raida_server::mailbox::SharedMailbox::new(MailboxSettings { max_held_polls: 6, ..Default::default() });
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let mut held: Vec<_> = (0..10).filter_map(|_| m.hold(a, coin(1)).ok()).collect();
        assert_eq!(held.len(), HELD_PER_ADDRESS);
        held.extend((0..10).filter_map(|_| m.hold(b, coin(2)).ok()));
        assert_eq!(held.len(), 6, "the total");
        drop(held);
        assert_eq!(m.held(), 0);
    }
}
