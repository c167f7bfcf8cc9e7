//! Attacks on a running server over loopback UDP, each bounded, each failing without its
//! defence: coin takeover through Encrypt Key (6/44), legacy encryption switched off
//! (4.2), one key flooding the replay memory (3.4), one requester draining the ticket
//! pool (6/40), Validate Ticket answering duplicate coins.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::TestState;
use raida_client::{Client, Server, Transport};
use raida_proto::client::ClientKey;
use raida_proto::codec::Codec;
use raida_proto::commands::{encrypt_key, get_ticket, validate_ticket};
use raida_proto::{CoinId, IdentityCoin};
use raida_proto::{Key16, Key32, Status};
use raida_server::ledger::MemoryLedger;
use raida_server::{RunningServer, ServerLimits, ServerStateBuilder};

const RAIDA: u8 = 2;
const COIN_ID: u16 = 6;
const VICTIM: (i8, u32) = (1, 1000);
const ATTACKER: (i8, u32) = (1, 2000);
const OTHER: (i8, u32) = (2, 3000);
const AN_VICTIM: [u8; 16] = [0x5A; 16];
const AN_ATTACKER: [u8; 16] = [0xA7; 16];
const AN_OTHER: [u8; 16] = [0x07; 16];
const SECRET: [u8; 32] = [0x33; 32];

struct Net {
    _t: TestState,
    server: RunningServer,
    addr: SocketAddr,
}

async fn start(tweak: impl FnOnce(&mut ServerStateBuilder)) -> Net {
    let ledger =
        MemoryLedger::with_coins([(VICTIM, (AN_VICTIM, 40)), (ATTACKER, (AN_ATTACKER, 40)), (OTHER, (AN_OTHER, 40))]);
    ledger.secrets.write().insert((3, 7), SECRET);
    let t = TestState::build(RAIDA, COIN_ID, ledger, raida_client::unix_now(), |s| {
        s.clock = raida_server::system_clock();
        tweak(s)
    });
    let limits = ServerLimits { udp_threads: 2, ..ServerLimits::default() };
    let server = RunningServer::start(t.state.clone(), "127.0.0.1:0".parse().unwrap(), limits).await.unwrap();
    let addr = server.local_addr();
    Net { _t: t, server, addr }
}

impl Net {
    async fn ask(&self, key: &ClientKey, group: u8, command: u8, payload: &[u8]) -> Result<Vec<u8>, Status> {
        let client = Client::new(Transport::Udp, COIN_ID, Duration::from_secs(5));
        match client.request(Server { addr: self.addr, raida_id: RAIDA }, group, command, key, payload).await {
            Ok(r) => Ok(r.payload),
            Err(e) => Err(e.status().unwrap_or_else(|| panic!("no status: {e}"))),
        }
    }
    async fn stop(self) {
        self.server.shutdown().await.unwrap();
    }
}

fn en1(coin: (i8, u32), an: [u8; 16]) -> ClientKey {
    ClientKey::Coin { coin: CoinId { dn: coin.0, sn: coin.1 }, an: Key16::new(an) }
}
fn en4(coin: (i8, u32), an: [u8; 16]) -> ClientKey {
    ClientKey::Token { coin: CoinId { dn: coin.0, sn: coin.1 }, key: Key32::sha256_of_an(&Key16::new(an)) }
}

fn encrypt_key(recipient: (i8, u32), target: (i8, u32)) -> Vec<u8> {
    let (recipient, target) = (IdentityCoin(recipient.into()), target.into());
    encrypt_key::EncryptKey { recipient, key_part: [0x42; 8], target }.to_bytes()
}

/// The takeover: the holder of any coin asks 44 for a ticket naming someone else's coin as
/// target and its own coin as recipient, then hands it to 45 to set the victim's AN.
/// 6/44 amended: only a request under the target's own key gets a ticket.
#[tokio::test]
async fn encrypt_key_refuses_a_target_that_is_not_the_requesters_own() {
    let net = start(|_| {}).await;
    let steal = encrypt_key(ATTACKER, VICTIM);
    assert_eq!(net.ask(&en4(ATTACKER, AN_ATTACKER), 4, 44, &steal).await, Err(Status::InvalidEncryption));
    assert_eq!(net.ask(&en1(ATTACKER, AN_ATTACKER), 4, 44, &steal).await, Err(Status::InvalidEncryption));
    let pair = ClientKey::TokenPair {
        first: ATTACKER.into(),
        second: OTHER.into(),
        key: Key32::concat_two_tokens(ATTACKER.into(), &Key16::new(AN_ATTACKER), OTHER.into(), &Key16::new(AN_OTHER))
            .unwrap(),
    };
    assert_eq!(net.ask(&pair, 4, 44, &steal).await, Err(Status::InvalidEncryption));
    let raida = ClientKey::Raida { sender: 3, key_id: 7, key: Key32::from_secret(SECRET) };
    assert_eq!(net.ask(&raida, 4, 44, &steal).await, Err(Status::InvalidEncryption));
    // the owner itself still gets its ticket, under EN 4, EN 1 or as either token of EN 5
    let own = encrypt_key(ATTACKER, VICTIM);
    assert_eq!(net.ask(&en4(VICTIM, AN_VICTIM), 4, 44, &own).await.map(|t| t.len()), Ok(16));
    assert_eq!(net.ask(&en1(VICTIM, AN_VICTIM), 4, 44, &own).await.map(|t| t.len()), Ok(16));
    let pair = ClientKey::TokenPair {
        first: OTHER.into(),
        second: VICTIM.into(),
        key: Key32::concat_two_tokens(OTHER.into(), &Key16::new(AN_OTHER), VICTIM.into(), &Key16::new(AN_VICTIM))
            .unwrap(),
    };
    assert_eq!(net.ask(&pair, 4, 44, &own).await.map(|t| t.len()), Ok(16));
    net.stop().await;
}

/// `legacy_encryption = false`: EN 1 and EN 2 get 27; EN 0 and the modern types still work.
#[tokio::test]
async fn legacy_encryption_off_answers_27() {
    let net = start(|s| s.identity.legacy_encryption = false).await;
    assert_eq!(net.ask(&en1(OTHER, AN_OTHER), 0, 0, &[]).await, Err(Status::InvalidEncryptionCode));
    let locker = ClientKey::Locker { an: Key16::new([9; 16]) };
    assert_eq!(net.ask(&locker, 0, 0, &[]).await, Err(Status::InvalidEncryptionCode));
    assert_eq!(net.ask(&en4(OTHER, AN_OTHER), 0, 0, &[]).await, Ok(vec![]));
    assert_eq!(net.ask(&ClientKey::None, 0, 0, &[]).await, Ok(vec![]));
    net.stop().await;

    let net = start(|_| {}).await;
    assert_eq!(net.ask(&en1(OTHER, AN_OTHER), 0, 0, &[]).await, Ok(vec![]));
    net.stop().await;
}

/// One coin floods modern requests: beyond its share of the replay memory it gets 160,
/// and another coin is still served. Without the share the flood fills the memory
/// (capacity 60 here) and the other coin gets 160 too.
#[tokio::test]
async fn one_key_cannot_fill_the_replay_memory() {
    let net = start(|s| {
        s.replay_capacity = 60;
        s.replay_share = 40;
    })
    .await;
    let mut refused = 0;
    for _ in 0..60 {
        match net.ask(&en4(ATTACKER, AN_ATTACKER), 0, 0, &[]).await {
            Ok(_) => {}
            Err(Status::RequestRate) => refused += 1,
            Err(s) => panic!("unexpected {s}"),
        }
    }
    assert_eq!(refused, 20, "the flooding key is held to its share");
    for _ in 0..10 {
        assert_eq!(net.ask(&en4(OTHER, AN_OTHER), 0, 0, &[]).await, Ok(vec![]), "another key is still served");
    }
    net.stop().await;
}

/// One requester asks for tickets as fast as it can: it holds at most its share (16) of
/// the 512 slots, and another requester still gets a ticket. Without the share the first
/// one takes all 512 slots for 300 s and everybody else gets 42.
#[tokio::test]
async fn one_requester_cannot_drain_the_ticket_pool() {
    let net = start(|_| {}).await;
    let record = |coin: (i8, u32), an| {
        get_ticket::GetTicket {
            records: vec![get_ticket::TicketRecord { coin: CoinId { dn: coin.0, sn: coin.1 }, an }],
        }
        .to_bytes()
    };
    let (mut issued, mut refused) = (0, 0);
    for _ in 0..520 {
        match net.ask(&ClientKey::None, 2, 40, &record(ATTACKER, AN_ATTACKER)).await {
            Ok(_) => issued += 1,
            Err(Status::RequestRate) => refused += 1,
            Err(s) => panic!("unexpected {s}"),
        }
    }
    assert_eq!((issued, refused), (16, 504));
    // the same coin under its own key is another requester; so is any other key
    assert!(net.ask(&en4(OTHER, AN_OTHER), 2, 40, &record(OTHER, AN_OTHER)).await.is_ok());
    net.stop().await;
}

/// A ticket for 4 records of one coin answers Validate Ticket with that coin once.
#[tokio::test]
async fn validate_ticket_answers_each_coin_once() {
    let net = start(|_| {}).await;
    let r = get_ticket::TicketRecord { coin: CoinId { dn: OTHER.0, sn: OTHER.1 }, an: AN_OTHER };
    let answer = net
        .ask(&ClientKey::None, 2, 40, &get_ticket::GetTicket { records: vec![r, r, r, r] }.to_bytes())
        .await
        .unwrap();
    let ticket = u32::from_be_bytes(answer[..4].try_into().unwrap());
    let claim = validate_ticket::ValidateTicket { claiming_raida: 3, ticket }.to_bytes();
    let raida3 = ClientKey::Raida { sender: 3, key_id: 7, key: Key32::from_secret(SECRET) };
    assert_eq!(net.ask(&raida3, 2, 50, &claim).await, Ok(vec![2, 0, 0, 0x0B, 0xB8]));
    net.stop().await;
}
