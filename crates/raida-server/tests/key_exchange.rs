//! End-to-end key exchange on loopback: two key servers and one receiver (Post Key ×2 →
//! Key Alert → the assembled key in the receiver's inbox), and the fix flow (Encrypt Key
//! on two RAIDAs → Decrypt RAIDA Key on a third → EN 1 with the new AN), the third RAIDA
//! running on a real data directory.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use common::TestState;
use raida_client::exchange::{self, KeyServerTarget};
use raida_client::{Client, Server, Transport};
use raida_proto::client::ClientKey;
use raida_proto::commands::get_key::GetKey;
use raida_proto::commands::key_alert::{AlertEntry, KeyAlert};
use raida_proto::commands::post_key::{CoinName, PostKey};
use raida_proto::{CoinId, IdentityCoin};
use raida_proto::{Key16, Status};
use raida_server::ledger::MemoryLedger;
use raida_server::ServerBuilder;
use raida_server::{KeyServer, RunningServer, ServerLimits, ServerStateBuilder};
use rand_core::{OsRng, RngCore};

const COIN_ID: u16 = 6;
const T: Duration = Duration::from_secs(5);

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    OsRng.fill_bytes(&mut b);
    b
}

async fn start(t: &TestState) -> RunningServer {
    RunningServer::start(t.state.clone(), "127.0.0.1:0".parse().unwrap(), ServerLimits::default()).await.unwrap()
}

fn state(raida_id: u8, ledger: MemoryLedger, tweak: impl FnOnce(&mut ServerStateBuilder)) -> TestState {
    TestState::build(raida_id, COIN_ID, ledger, raida_client::unix_now(), |s| {
        s.clock = raida_server::system_clock();
        tweak(s);
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_key_servers_and_a_receiver() {
    // the receiver's identity coin: one AN per RAIDA; each key server knows its own
    let identity = (1i8, 777u32);
    let ans: [[u8; 16]; 25] = std::array::from_fn(|_| random::<16>());
    let ks_ledger = |id: u8| MemoryLedger::with_coins([(identity, (ans[id as usize], 40))]);
    let ks1 = state(1, ks_ledger(1), |_| {});
    let ks2 = state(2, ks_ledger(2), |_| {});
    let (s1, s2) = (start(&ks1).await, start(&ks2).await);
    let receiver_ledger = MemoryLedger::default();
    receiver_ledger.identities.write().insert(IdentityCoin(identity.into()), ans);
    let (a1, a2) = (s1.local_addr(), s2.local_addr());
    let rx = state(3, receiver_ledger, |s| {
        s.key_alert.identity = Some(IdentityCoin(identity.into()));
        s.key_alert.key_servers = vec![KeyServer::new(1, a1, false), KeyServer::new(2, a2, false)];
        s.key_alert.timeout = T;
    });
    let r = start(&rx).await;

    // the sender splits a 32-byte key (ending 0xFF) into two parts, one per key server
    let key = exchange::random_key(32);
    let receiver = CoinName { dn: identity.0, sn: identity.1 };
    let none = CoinName { dn: 0, sn: 0 };
    let targets = [
        KeyServerTarget { server: Server { addr: a1, raida_id: 1 }, auth: ClientKey::None },
        KeyServerTarget { server: Server { addr: a2, raida_id: 2 }, auth: ClientKey::None },
    ];
    let entries =
        exchange::post_parts(&Client::new(Transport::Udp, COIN_ID, T), &targets, &key, receiver, [0; 4], none)
            .await
            .unwrap();
    let k1 = entries[0].key_id;
    // nobody else can fetch a part reserved for the receiver's coin
    let steal = Client::new(Transport::Udp, COIN_ID, T)
        .call(Server { addr: a1, raida_id: 1 }, &ClientKey::None, &GetKey { key_id: k1 })
        .await;
    assert_eq!(steal.unwrap_err().status(), Some(Status::ReceiverAuth));

    // alert the receiver
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let alert = KeyAlert { entries: entries.clone() };
    let rserver = Server { addr: r.local_addr(), raida_id: 3 };
    let (status, map) =
        exchange::alert(&Client::new(Transport::Tcp, COIN_ID, T), rserver, &ClientKey::None, &entries).await.unwrap();
    assert_eq!(status, Status::Success);
    assert_eq!(map.to_vec(), [&[0xFF, 0xFF][..], &[0; 14]].concat());
    let inbox = rx.state.inbox().list().unwrap();
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].key_id, k1);
    assert_eq!(inbox[0].key, key);
    assert_eq!(inbox[0].senders, vec![CoinId::default(); 2]);
    let taken = rx.state.inbox().take(&hex::encode(k1)).unwrap();
    assert_eq!(taken.key, key);
    assert!(rx.state.inbox().list().unwrap().is_empty());

    // the parts were handed out once, to the receiver's server: anyone else gets 216 ...
    let steal = Client::new(Transport::Udp, COIN_ID, T)
        .call(Server { addr: a1, raida_id: 1 }, &ClientKey::None, &GetKey { key_id: k1 })
        .await;
    assert_eq!(steal.unwrap_err().status(), Some(Status::KeyNotFound));
    // ... while that server asking again within 30 s (its answer lost, 6/43) gets the same parts
    let answer = Client::new(Transport::Udp, COIN_ID, T)
        .call(Server { addr: r.local_addr(), raida_id: 3 }, &ClientKey::None, &alert)
        .await;
    assert_eq!(answer.unwrap().status, Status::Success);
    assert_eq!(rx.state.inbox().take(&hex::encode(k1)).unwrap().key, key);
    // an unlisted key server is never contacted: 242 although the part exists
    let k3 = random::<16>();
    let p = PostKey::with_part(k3, none, [0; 4], none, &random::<128>(), 0, &[0xFF; 8]);
    Client::new(Transport::Udp, COIN_ID, T).call(Server { addr: a1, raida_id: 1 }, &ClientKey::None, &p).await.unwrap();
    let wrong_id = KeyAlert { entries: vec![AlertEntry::new(k3, lo, a1.port(), 9)] };
    let answer = Client::new(Transport::Udp, COIN_ID, T)
        .call(Server { addr: r.local_addr(), raida_id: 3 }, &ClientKey::None, &wrong_id)
        .await;
    assert_eq!(answer.unwrap().status, Status::AllFail);
    // one part fetched, one not (never posted): 243 and nothing stored
    let mixed = KeyAlert {
        entries: vec![AlertEntry::new(k3, lo, a1.port(), 1), AlertEntry::new(random::<16>(), lo, a2.port(), 2)],
    };
    let answer = Client::new(Transport::Udp, COIN_ID, T)
        .call(Server { addr: r.local_addr(), raida_id: 3 }, &ClientKey::None, &mixed)
        .await;
    let answer = answer.unwrap();
    assert_eq!(answer.status, Status::Mixed);
    assert_eq!(answer.map[..2], [0xFF, 0x00]);
    assert!(rx.state.inbox().list().unwrap().is_empty());

    for s in [s1, s2, r] {
        s.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fix_a_lost_an_with_tickets_from_two_raidas() {
    // RAIDA 3's identity coin I; RAIDAs 1 and 2 know I's AN for their id.
    let ident = (2i8, 4242u32);
    let ident_ans: [[u8; 16]; 25] = std::array::from_fn(|_| random::<16>());
    // the client's coin C, with a known AN on RAIDAs 1 and 2
    let c = (0i8, 1234u32);
    let (c1, c2) = (random::<16>(), random::<16>());
    let r1 = state(1, MemoryLedger::with_coins([(ident, (ident_ans[1], 30)), (c, (c1, 30))]), |_| {});
    let r2 = state(2, MemoryLedger::with_coins([(ident, (ident_ans[2], 30)), (c, (c2, 30))]), |_| {});
    let (s1, s2) = (start(&r1).await, start(&r2).await);

    // RAIDA 3 on a real data directory: C is present but its AN is lost to the client
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("r3");
    let mut opts = raida_store::InitOptions::new(3);
    opts.pages = 2;
    opts.denominations = vec![0, 2];
    opts.listen = Some("127.0.0.1:0".into());
    raida_store::init_data_dir(&data, opts).unwrap();
    {
        let store = raida_store::Store::open(&data).unwrap();
        store.set(c.into(), random::<16>(), 30).unwrap();
        store.write_identity_coin(IdentityCoin(ident.into()), COIN_ID, &ident_ans).unwrap();
    }
    let (st3, _) = ServerBuilder::open(&data, &ServerLimits::default(), None).unwrap();
    let s3 = RunningServer::start(st3, "127.0.0.1:0".parse().unwrap(), ServerLimits::default()).await.unwrap();

    let new_an = random::<16>();
    let three = Server { addr: s3.local_addr(), raida_id: 3 };
    // before: EN 1 with the new AN does not decrypt (the challenge's CRC fails)
    let before = Client::new(Transport::Udp, COIN_ID, T)
        .request(three, 0, 0, &ClientKey::Coin { coin: CoinId { dn: c.0, sn: c.1 }, an: Key16::new(new_an) }, &[])
        .await;
    assert_eq!(before.unwrap_err().status(), Some(Status::InvalidCrc));
    // one half from each helper RAIDA's key ticket (44), both opened by RAIDA 3 (45)
    let helpers = [
        (
            Server { addr: s1.local_addr(), raida_id: 1 },
            ClientKey::Coin { coin: CoinId { dn: c.0, sn: c.1 }, an: Key16::new(c1) },
        ),
        (
            Server { addr: s2.local_addr(), raida_id: 2 },
            ClientKey::Coin { coin: CoinId { dn: c.0, sn: c.1 }, an: Key16::new(c2) },
        ),
    ];
    let results = exchange::fix_an(
        &Client::new(Transport::Tcp, COIN_ID, T),
        helpers,
        three,
        IdentityCoin(ident.into()),
        c.into(),
        new_an,
    )
    .await
    .unwrap();
    assert_eq!(results.0, vec![true, true]);
    // after: RAIDA 3 answers EN 1 under the new AN
    let after = Client::new(Transport::Udp, COIN_ID, T)
        .request(three, 0, 0, &ClientKey::Coin { coin: CoinId { dn: c.0, sn: c.1 }, an: Key16::new(new_an) }, &[])
        .await;
    assert_eq!(after.unwrap().status, Status::Success);

    // durable: after a restart the new AN is still there
    s3.shutdown().await.unwrap();
    let store = raida_store::Store::open(&data).unwrap();
    assert_eq!(store.get(c.into()).unwrap().an, new_an);
    drop(store);
    for s in [s1, s2] {
        s.shutdown().await.unwrap();
    }
}
