//! Faults are faults (issue 9 item 5): a store that cannot be read answers 194 (197 for an
//! identity coin), never "not present" (34/25/40/0x00).

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use common::*;
use raida_proto::client::{build_request, ClientKey, Routing};
use raida_proto::codec::Codec;
use raida_proto::commands::decrypt_raida_key::{self, DecryptRecord};
use raida_proto::commands::encrypt_key::{self, EncryptKey};
use raida_proto::commands::get_ticket::{self, TicketRecord};
use raida_proto::commands::key_alert::{self, AlertEntry};
use raida_proto::header::{Encryption, KeyIdentity};
use raida_proto::{CoinId, IdentityCoin};
use raida_proto::{Key16, Key32, Status};
use raida_server::cmd;
use raida_server::ledger::{FaultAt, MemoryLedger};
use raida_server::Outcome;
use raida_server::ServerBuilder;
use raida_server::{RunningServer, ServerLimits};
use rand_core::OsRng;
use tokio::net::UdpSocket;

const COIN_ID: u16 = 6;
const AN_A: [u8; 16] = [0xA1; 16];

fn peer() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 40000)
}

/// Sends one request over UDP; returns the raw answer.
async fn udp_exchange(addr: SocketAddr, packet: &[u8]) -> Vec<u8> {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    s.send_to(packet, addr).await.unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), s.recv_from(&mut buf)).await.expect("an answer").unwrap();
    buf.truncate(n);
    buf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_page_answers_194_not_34() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("r0");
    let mut opts = raida_store::InitOptions::new(0);
    opts.pages = 2;
    opts.denominations = vec![0, 1];
    opts.listen = Some("127.0.0.1:0".into());
    raida_store::init_data_dir(&data, opts).unwrap();
    {
        let store = raida_store::Store::open(&data).unwrap();
        store.set((1, 5).into(), AN_A, 30).unwrap();
        store.set((0, 5).into(), AN_A, 30).unwrap();
    }
    // DN 1's first page file is there but cannot be read as a page.
    let page = data.join(raida_store::page_rel_path(1, 0));
    std::fs::remove_file(&page).unwrap();
    std::fs::create_dir(&page).unwrap();
    let (state, _) = ServerBuilder::open(&data, &ServerLimits::default(), None).unwrap();
    let server = RunningServer::start(state, "127.0.0.1:0".parse().unwrap(), ServerLimits::default()).await.unwrap();
    let addr = server.local_addr();
    let now = raida_client::unix_now();

    // EN 1 Echo with the coin on the unreadable page: 194, header only (not 34).
    let echo = Routing::new(0, COIN_ID, 0, 0);
    let key = |dn, sn| ClientKey::Coin { coin: CoinId { dn, sn }, an: Key16::new(AN_A) };
    let (packet, _) = build_request(&echo, &key(1, 5), &[], now, &mut OsRng);
    let answer = udp_exchange(addr, &packet).await;
    assert_eq!(answer[2], Status::Filesystem.code(), "EN 1 with a coin on an unreadable page");
    assert_eq!(answer.len(), 32, "header only");
    // EN 4 likewise (not 25).
    let en4 = ClientKey::Token { coin: CoinId { dn: 1, sn: 5 }, key: Key32::sha256_of_an(&Key16::new(AN_A)) };
    let (packet, _) = build_request(&echo, &en4, &[], now, &mut OsRng);
    assert_eq!(udp_exchange(addr, &packet).await[2], Status::Filesystem.code(), "EN 4");
    // A readable page and an absent coin are unchanged: success and 34.
    let (packet, pending) = build_request(&echo, &key(0, 5), &[], now, &mut OsRng);
    assert_eq!(pending.open(&udp_exchange(addr, &packet).await).unwrap().status, Status::Success);
    let (packet, _) = build_request(&echo, &key(0, 5000), &[], now, &mut OsRng);
    assert_eq!(udp_exchange(addr, &packet).await[2], Status::InvalidEncryption.code());

    // Get Ticket naming that coin among readable ones: the whole request is 194.
    let records = [
        TicketRecord { coin: CoinId { dn: 0, sn: 5 }, an: AN_A },
        TicketRecord { coin: CoinId { dn: 1, sn: 5 }, an: AN_A },
    ];
    let ticket = Routing::new(0, COIN_ID, 2, 40);
    let (packet, _) = build_request(
        &ticket,
        &ClientKey::None,
        &get_ticket::GetTicket { records: records.to_vec() }.to_bytes(),
        now,
        &mut OsRng,
    );
    let answer = udp_exchange(addr, &packet).await;
    assert_eq!(answer[2], Status::Filesystem.code(), "Get Ticket with an unreadable page");
    assert_eq!(answer.len(), 32, "header only");
    let (packet, pending) = build_request(
        &ticket,
        &ClientKey::None,
        &get_ticket::GetTicket { records: records[..1].to_vec() }.to_bytes(),
        now,
        &mut OsRng,
    );
    assert_eq!(pending.open(&udp_exchange(addr, &packet).await).unwrap().status, Status::AllPass);

    server.shutdown().await.unwrap();
}

/// One request through the server's request path with a faulty in-memory ledger.
fn handle_status(t: &TestState, key: &ClientKey) -> (u8, usize) {
    let (mut packet, _) = build_request(&Routing::new(0, COIN_ID, 0, 0), key, &[], t.now(), &mut OsRng);
    let mut out = Vec::new();
    assert!(matches!(t.state.handle(&mut packet, peer(), &mut out), Outcome::Reply));
    (out[2], out.len())
}

#[test]
fn key_lookup_faults_answer_194_for_every_encryption_type() {
    let l = MemoryLedger::with_coins([((1, 5), (AN_A, 30)), ((1, 6), (AN_A, 30))]);
    l.lockers.write().push([0x33; 16]);
    l.tokens.write().insert(CoinId { dn: 7, sn: 9 }, [0x44; 32]);
    l.secrets.write().insert((3, 42), [0x55; 32]);
    let t = TestState::new(0, COIN_ID, l, raida_client::unix_now());
    let an = Key16::new(AN_A);
    let pair = Key32::concat_two_tokens((1, 5).into(), &an, (1, 6).into(), &an).unwrap();
    let keys = [
        (ClientKey::Coin { coin: CoinId { dn: 1, sn: 5 }, an: an.clone() }, FaultAt::Coin(CoinId { dn: 1, sn: 5 })),
        (ClientKey::Locker { an: Key16::new([0x33; 16]) }, FaultAt::Locker([0x33; 5])),
        (
            ClientKey::Token { coin: CoinId { dn: 1, sn: 5 }, key: Key32::sha256_of_an(&an) },
            FaultAt::Coin(CoinId { dn: 1, sn: 5 }),
        ),
        (
            ClientKey::Token { coin: CoinId { dn: 7, sn: 9 }, key: Key32::from_secret([0x44; 32]) },
            FaultAt::Token(CoinId { dn: 7, sn: 9 }),
        ),
        (
            ClientKey::TokenPair { first: (1, 5).into(), second: (1, 6).into(), key: pair },
            FaultAt::Coin(CoinId { dn: 1, sn: 6 }),
        ),
        (ClientKey::Raida { sender: 3, key_id: 42, key: Key32::from_secret([0x55; 32]) }, FaultAt::RaidaSecret(3, 42)),
    ];
    for (key, _) in &keys {
        assert_eq!(handle_status(&t, key).0, Status::Success.code(), "{key:?} before the fault");
    }
    for (key, at) in keys {
        t.ledger.inject_fault(at);
        assert_eq!(handle_status(&t, &key), (Status::Filesystem.code(), 32), "{key:?}: 194, header only");
    }
}

#[test]
fn get_ticket_with_a_faulty_coin_is_194() {
    let t = TestState::new(0, COIN_ID, MemoryLedger::with_coins([((1, 5), (AN_A, 30)), ((1, 6), (AN_A, 30))]), 1000);
    let records = [
        TicketRecord { coin: CoinId { dn: 1, sn: 5 }, an: AN_A },
        TicketRecord { coin: CoinId { dn: 1, sn: 6 }, an: AN_A },
    ];
    let c = call(
        header(Encryption::None, KeyIdentity::None, 2, 40),
        get_ticket::GetTicket { records: records.to_vec() }.to_bytes(),
        1000,
    );
    assert_eq!(cmd::get_ticket::run(&t.state, &c).status, Status::AllPass);
    t.ledger.inject_fault(FaultAt::Coin(CoinId { dn: 1, sn: 6 }));
    let a = cmd::get_ticket::run(&t.state, &c);
    assert_eq!((a.status, a.payload.len()), (Status::Filesystem, 0), "not a failed record");
}

#[test]
fn encrypt_key_recipient_fault_is_194_not_40() {
    let t = TestState::new(0, COIN_ID, MemoryLedger::with_coins([((1, 5), (AN_A, 30)), ((1, 7), (AN_A, 30))]), 1000);
    let req = EncryptKey {
        recipient: IdentityCoin(CoinId { dn: 1, sn: 7 }),
        key_part: [9; 8],
        target: CoinId { dn: 1, sn: 5 },
    };
    let c = call(
        header(Encryption::Coin, KeyIdentity::Coin { coin: CoinId { dn: 1, sn: 5 } }, 4, 44),
        req.to_bytes(),
        1000,
    );
    assert_eq!(cmd::encrypt_key::answer(&t.state, &c, [0, 0]).status, Status::Success);
    t.ledger.inject_fault(FaultAt::Coin(CoinId { dn: 1, sn: 7 }));
    assert_eq!(cmd::encrypt_key::answer(&t.state, &c, [0, 0]).status, Status::Filesystem);
}

#[test]
fn decrypt_raida_key_faults_are_197_and_194() {
    let identity = (1i8, 500u32);
    let maker_ans = [[0x11; 16]; 25];
    let target = (1i8, 5u32);
    let l = MemoryLedger::with_coins([(target, (AN_A, 30))]);
    l.identities.write().insert(IdentityCoin(identity.into()), maker_ans);
    let t = TestState::new(0, COIN_ID, l, 1000);
    let ticket = encrypt_key::make_ticket(&Key16::new(maker_ans[2]), &[7; 8], target.into(), [1, 2]);
    let rec = DecryptRecord { coin_id: COIN_ID, split_id: 0, raida_id: 2, shard: 0, target: target.into(), ticket };
    let c = call(
        header(Encryption::None, KeyIdentity::None, 4, 45),
        decrypt_raida_key::DecryptRaidaKey { coin: IdentityCoin(identity.into()), records: vec![rec] }.to_bytes(),
        1000,
    );
    // The target's page cannot be read: 194 and nothing written (not a 0x00 record).
    t.ledger.inject_fault(FaultAt::Coin(target.into()));
    let (a, _) = cmd::decrypt_raida_key::answer(&t.state, &c);
    assert_eq!((a.status, a.payload.len()), (Status::Filesystem, 0));
    assert_eq!(t.ledger.record(target.into()), Some((AN_A, 30)));
    t.ledger.faults.write().clear();
    assert_eq!(cmd::decrypt_raida_key::answer(&t.state, &c).0.status, Status::Success);
    // The identity coin cannot be read: 197.
    t.ledger.inject_fault(FaultAt::Identity(IdentityCoin(identity.into())));
    assert_eq!(cmd::decrypt_raida_key::answer(&t.state, &c).0.status, Status::CoinLoad);
}

#[tokio::test]
async fn key_alert_identity_fault_is_197() {
    let identity = (1i8, 500u32);
    let l = MemoryLedger::default();
    l.identities.write().insert(IdentityCoin(identity.into()), [[0x11; 16]; 25]);
    let t = TestState::build(0, COIN_ID, l, 1000, |s| {
        s.key_alert.identity = Some(IdentityCoin(identity.into()));
        s.key_alert.timeout = Duration::from_secs(1);
    });
    // No configured key server: nothing is fetched either way.
    let entries = [AlertEntry::new([5; 16], IpAddr::V4(Ipv4Addr::LOCALHOST), 9, 1)];
    let c = call(
        header(Encryption::None, KeyIdentity::None, 4, 42),
        key_alert::KeyAlert { entries: entries.to_vec() }.to_bytes(),
        1000,
    );
    assert_eq!(cmd::key_alert::answer(t.state.clone(), c.clone()).await.status, Status::AllFail);
    t.ledger.inject_fault(FaultAt::Identity(IdentityCoin(identity.into())));
    assert_eq!(cmd::key_alert::answer(t.state.clone(), c).await.status, Status::CoinLoad);
}
