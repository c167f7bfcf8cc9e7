//! The server on a real loopback socket: every status code of sections 3-4 and of
//! command groups 0, 2 and 4, over UDP and over TCP; TCP pipelining; a garbage flood;
//! shutdown with a request in flight.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::Harness;
use raida_client::{read_response, Client, Server, Transport};
use raida_proto::client::{build_request, ClientKey, PendingReply, Routing};
use raida_proto::codec::Codec;
use raida_proto::commands::post_key::{self, CoinName};
use raida_proto::commands::{decrypt_raida_key, encrypt_key, get_key, get_ticket, validate_ticket};
use raida_proto::{CoinId, IdentityCoin};
use raida_proto::{Key16, Key32, Status};
use raida_server::dispatch::Handler;
use raida_server::ledger::MemoryLedger;
use raida_server::WorkKind;
use raida_server::{Answer, ServerLimits, ServerStateBuilder};
use rand_core::OsRng;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};

const RAIDA: u8 = 5;
const COIN_ID: u16 = 6;
const AN_A: [u8; 16] = [0xA1; 16];
const AN_B: [u8; 16] = [0xB2; 16];
const SECRET: [u8; 32] = [0x77; 32];
const ADMIN: [u8; 16] = [0xAD; 16];

fn now() -> u64 {
    raida_client::unix_now()
}

fn ledger() -> MemoryLedger {
    let l = MemoryLedger::with_coins([((1, 100), (AN_A, 40)), ((1, 101), (AN_B, 0)), ((2, 200), (AN_B, 41))]);
    l.secrets.write().insert((3, 42), SECRET);
    l.identities.write().insert(IdentityCoin(CoinId { dn: 1, sn: 500 }), [[0x11; 16]; 25]);
    l
}

impl Harness {
    async fn start(tweak: impl FnOnce(&mut ServerStateBuilder)) -> Harness {
        Self::start_with(tweak, ServerLimits { udp_threads: 2, ..ServerLimits::default() }).await
    }

    async fn start_with(tweak: impl FnOnce(&mut ServerStateBuilder), limits: ServerLimits) -> Harness {
        let admin = |s: &mut ServerStateBuilder| {
            s.admin_key = Some(ADMIN);
            tweak(s)
        };
        Harness::launch(RAIDA, COIN_ID, ledger(), admin, limits).await
    }

    fn server(&self) -> Server {
        Server { addr: self.addr, raida_id: RAIDA }
    }
}

async fn exchange(addr: SocketAddr, transport: Transport, packet: &[u8]) -> Option<Vec<u8>> {
    match transport {
        Transport::Udp => {
            let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            s.send_to(packet, addr).await.unwrap();
            let mut buf = vec![0u8; 70_000];
            match tokio::time::timeout(Duration::from_secs(3), s.recv(&mut buf)).await {
                Ok(Ok(n)) => Some(buf[..n].to_vec()),
                _ => None,
            }
        }
        Transport::Tcp => {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(packet).await.unwrap();
            tokio::time::timeout(Duration::from_secs(3), read_response(&mut s)).await.ok()?.ok()
        }
    }
}

fn echo_packet() -> (Vec<u8>, PendingReply) {
    build_request(&Routing::new(RAIDA, COIN_ID, 0, 0), &ClientKey::None, &[], now(), &mut OsRng)
}

fn coin_a() -> ClientKey {
    ClientKey::Coin { coin: CoinId { dn: 1, sn: 100 }, an: Key16::new(AN_A) }
}

fn token_a() -> ClientKey {
    ClientKey::Token { coin: CoinId { dn: 1, sn: 100 }, key: Key32::sha256_of_an(&Key16::new(AN_A)) }
}

fn raida3() -> ClientKey {
    ClientKey::Raida { sender: 3, key_id: 42, key: Key32::from_secret(SECRET) }
}

/// A raw packet and the status its answer must carry.
fn header_cases() -> Vec<(&'static str, Vec<u8>, Status)> {
    let mutate = |f: &dyn Fn(&mut Vec<u8>)| {
        let (mut p, _) = echo_packet();
        f(&mut p);
        p
    };
    let modern = |key: ClientKey| build_request(&Routing::new(RAIDA, COIN_ID, 0, 0), &key, &[], now(), &mut OsRng).0;
    vec![
        ("version", mutate(&|p| p[0] = 2), Status::InvalidRouting),
        ("split id", mutate(&|p| p[1] = 1), Status::InvalidSplitId),
        ("raida id", mutate(&|p| p[2] = RAIDA + 1), Status::InvalidRaidaId),
        ("group", mutate(&|p| p[4] = 14), Status::InvalidCommandGroup),
        ("shard", mutate(&|p| p[3] = 4), Status::InvalidShardId),
        ("command", mutate(&|p| p[5] = 99), Status::InvalidCommand),
        ("coin id", mutate(&|p| p[7] = 7), Status::InvalidCoinId),
        ("encryption code", mutate(&|p| p[16] = 3), Status::InvalidEncryptionCode),
        (
            "body too short",
            mutate(&|p| {
                p.truncate(32);
                p[22] = 0;
                p[23] = 2;
                p.extend_from_slice(&[0x3E, 0x3E]);
            }),
            Status::InvalidPacketLength,
        ),
        (
            "terminator",
            mutate(&|p| {
                let n = p.len();
                p[n - 1] = 0xE3;
            }),
            Status::InvalidEof,
        ),
        ("crc", mutate(&|p| p[32] ^= 1), Status::InvalidCrc),
        (
            "EN 1 unknown coin",
            build_request(
                &Routing::new(RAIDA, COIN_ID, 0, 0),
                &ClientKey::Coin { coin: CoinId { dn: 1, sn: 101 }, an: Key16::new(AN_B) },
                &[],
                now(),
                &mut OsRng,
            )
            .0,
            Status::InvalidEncryption,
        ),
        (
            "EN 4 unknown coin",
            modern(ClientKey::Token { coin: CoinId { dn: 3, sn: 9 }, key: Key32::from_secret([1; 32]) }),
            Status::EncryptionCoinNotFound,
        ),
        (
            "EN 4 bad tag",
            {
                let mut p = modern(token_a());
                let n = p.len();
                p[n - 3] ^= 1;
                p
            },
            Status::InvalidEncryption,
        ),
        (
            "EN 4 stale",
            build_request(&Routing::new(RAIDA, COIN_ID, 0, 0), &token_a(), &[], now() - 400, &mut OsRng).0,
            Status::TxnProcessed,
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_and_body_statuses_over_udp_and_tcp() {
    let h = Harness::start(|_| {}).await;
    for transport in [Transport::Udp, Transport::Tcp] {
        for (name, packet, want) in header_cases() {
            let answer = exchange(h.addr, transport, &packet).await;
            // section 2: over UDP a 255/2/3 failure is dropped (reflection), over TCP answered
            if transport == Transport::Udp
                && matches!(want, Status::InvalidRouting | Status::InvalidSplitId | Status::InvalidRaidaId)
            {
                assert!(answer.is_none(), "{name} over UDP must not be answered");
                continue;
            }
            let answer = answer.unwrap_or_else(|| panic!("{name}: no answer"));
            assert_eq!(answer[2], want.code(), "{name} over {transport:?}");
            assert_eq!(answer[0], RAIDA);
            assert_eq!(answer[6..8], packet[30..32], "{name}: echo");
        }
        // UDP-only framing: a datagram longer than header + body length
        if transport == Transport::Udp {
            let (mut p, _) = echo_packet();
            p.push(0);
            assert_eq!(exchange(h.addr, transport, &p).await.unwrap()[2], Status::InvalidPacketLength.code());
            // shorter than 32 bytes: dropped without an answer
            assert!(exchange(h.addr, transport, &p[..31]).await.is_none());
        }
    }
    h.stop().await;
}

async fn call(
    h: &Harness,
    t: Transport,
    key: &ClientKey,
    group: u8,
    command: u8,
    payload: &[u8],
) -> Result<Vec<u8>, Status> {
    match Client::new(t, COIN_ID, Duration::from_secs(5)).request(h.server(), group, command, key, payload).await {
        Ok(r) => {
            if r.status == Status::Success {
                Ok(r.payload)
            } else {
                // 241/242/243 are successes with their own status: encode as Err for matching
                Err(r.status)
            }
        }
        Err(e) => Err(e.status().unwrap_or_else(|| panic!("no status: {e}"))),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_statuses_over_udp_and_tcp() {
    let h = Harness::start(|s| {
        s.dispatch.insert(13, 200, Handler::Now(|_, _| panic!("test: handler answered now panics")));
        s.dispatch.insert(13, 201, Handler::Deferred(WorkKind::Heavy, |_, _, _| panic!("test: heavy handler panics")));
        s.dispatch.insert(
            13,
            202,
            Handler::Deferred(WorkKind::Durable, |_, _, _| panic!("test: durable handler panics")),
        );
        // hands its reply on to a continuation that is lost without answering
        s.dispatch.insert(
            13,
            203,
            Handler::Deferred(WorkKind::Durable, |_, _, reply| {
                std::thread::spawn(move || drop(reply));
            }),
        );
    })
    .await;
    for t in [Transport::Udp, Transport::Tcp] {
        // group 0
        assert_eq!(call(&h, t, &ClientKey::None, 0, 0, &[]).await, Ok(vec![]));
        assert_eq!(call(&h, t, &coin_a(), 0, 0, &[]).await, Ok(vec![]));
        assert_eq!(call(&h, t, &token_a(), 0, 0, &[]).await, Ok(vec![]));
        assert_eq!(call(&h, t, &ClientKey::None, 0, 0, &[1]).await, Err(Status::InvalidPacketLength));
        let v = call(&h, t, &ClientKey::None, 0, 1, &[]).await.unwrap();
        assert_eq!(v.len(), 8);
        assert_eq!(call(&h, t, &ClientKey::None, 0, 2, &[0; 16]).await, Err(Status::AdminAuth));
        assert_eq!(call(&h, t, &coin_a(), 0, 2, &[0; 15]).await, Err(Status::InvalidPacketLength));
        let stats = String::from_utf8(call(&h, t, &coin_a(), 0, 2, &ADMIN).await.unwrap()).unwrap();
        assert!(stats.contains("requests.0.0="), "{stats}");
        assert!(stats.contains("free_ticket_slots="));

        // group 2: Get Ticket 241 / 242 / 243 / 39 / 16, Validate Ticket 250 / 44 / 43 / 18 / 34
        let good = get_ticket::TicketRecord { coin: CoinId { dn: 1, sn: 100 }, an: AN_A };
        let bad = get_ticket::TicketRecord { coin: CoinId { dn: 1, sn: 100 }, an: AN_B };
        let r = Client::new(t, COIN_ID, Duration::from_secs(5))
            .request(h.server(), 2, 40, &ClientKey::None, &get_ticket::GetTicket { records: vec![good] }.to_bytes())
            .await
            .unwrap();
        assert_eq!(r.status, Status::AllPass);
        let ticket = u32::from_be_bytes(r.payload[..4].try_into().unwrap());
        assert_eq!(
            call(&h, t, &ClientKey::None, 2, 40, &get_ticket::GetTicket { records: vec![bad] }.to_bytes()).await,
            Err(Status::AllFail)
        );
        assert_eq!(
            call(&h, t, &ClientKey::None, 2, 40, &get_ticket::GetTicket { records: vec![good, bad] }.to_bytes()).await,
            Err(Status::Mixed)
        );
        assert_eq!(call(&h, t, &ClientKey::None, 2, 40, &[0; 22]).await, Err(Status::CoinsNotDiv));
        assert_eq!(call(&h, t, &ClientKey::None, 2, 40, &[]).await, Err(Status::InvalidPacketLength));
        let claim = validate_ticket::ValidateTicket { claiming_raida: 3, ticket }.to_bytes();
        assert_eq!(call(&h, t, &raida3(), 2, 50, &claim).await, Ok(vec![1, 0, 0, 0, 100]));
        assert_eq!(call(&h, t, &raida3(), 2, 50, &claim).await, Err(Status::TicketClaimedAlready));
        assert_eq!(call(&h, t, &coin_a(), 2, 50, &claim).await, Err(Status::InvalidEncryption));
        let unknown = validate_ticket::ValidateTicket { claiming_raida: 3, ticket: ticket ^ 1 }.to_bytes();
        assert_eq!(call(&h, t, &raida3(), 2, 50, &unknown).await, Err(Status::NoTicketFound));
        assert_eq!(call(&h, t, &raida3(), 2, 50, &[25, 0, 0, 0, 1]).await, Err(Status::WrongRaida));

        // group 4: Encrypt Key 250 / 34 (EN 0, not the target's owner) / 40 / 16,
        // Decrypt RAIDA Key 197 / 39
        let ek = encrypt_key::EncryptKey {
            recipient: IdentityCoin(CoinId { dn: 2, sn: 200 }),
            key_part: [9; 8],
            target: CoinId { dn: 1, sn: 100 },
        }
        .to_bytes();
        assert_eq!(call(&h, t, &coin_a(), 4, 44, &ek).await.map(|p| p.len()), Ok(16));
        assert_eq!(call(&h, t, &ClientKey::None, 4, 44, &ek).await, Err(Status::InvalidEncryption));
        let not_owner = encrypt_key::EncryptKey {
            recipient: IdentityCoin(CoinId { dn: 1, sn: 100 }),
            key_part: [9; 8],
            target: CoinId { dn: 2, sn: 200 },
        }
        .to_bytes();
        assert_eq!(call(&h, t, &coin_a(), 4, 44, &not_owner).await, Err(Status::InvalidEncryption));
        let ek_missing = encrypt_key::EncryptKey {
            recipient: IdentityCoin(CoinId { dn: 1, sn: 101 }),
            key_part: [9; 8],
            target: CoinId { dn: 1, sn: 100 },
        }
        .to_bytes();
        assert_eq!(call(&h, t, &coin_a(), 4, 44, &ek_missing).await, Err(Status::InvalidSnOrDenomination));
        assert_eq!(call(&h, t, &coin_a(), 4, 44, &ek[..17]).await, Err(Status::InvalidPacketLength));
        let rec = decrypt_raida_key::DecryptRecord {
            coin_id: COIN_ID,
            split_id: 0,
            raida_id: 1,
            shard: 0,
            target: CoinId { dn: 2, sn: 200 },
            ticket: [0; 16],
        };
        assert_eq!(
            call(
                &h,
                t,
                &ClientKey::None,
                4,
                45,
                &decrypt_raida_key::DecryptRaidaKey {
                    coin: IdentityCoin(CoinId { dn: 1, sn: 501 }),
                    records: vec![rec]
                }
                .to_bytes()
            )
            .await,
            Err(Status::CoinLoad)
        );
        let mut odd =
            decrypt_raida_key::DecryptRaidaKey { coin: IdentityCoin(CoinId { dn: 1, sn: 500 }), records: vec![rec] }
                .to_bytes();
        odd.push(0);
        assert_eq!(call(&h, t, &ClientKey::None, 4, 45, &odd).await, Err(Status::CoinsNotDiv));
        assert_eq!(
            call(
                &h,
                t,
                &ClientKey::None,
                4,
                45,
                &decrypt_raida_key::DecryptRaidaKey {
                    coin: IdentityCoin(CoinId { dn: 1, sn: 500 }),
                    records: vec![rec]
                }
                .to_bytes()
            )
            .await,
            Ok(vec![0])
        );

        // Post Key / Get Key: 250, 195, 196, 217, 201, 216, 217, 218
        let mut id = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut OsRng, &mut id);
        let none = CoinName { dn: 0, sn: 0 };
        let post = |key_id: &[u8; 16], receiver: CoinName, ip: [u8; 4], sender: CoinName, ks: u8, kl: usize| {
            post_key::PostKey::with_part(*key_id, receiver, ip, sender, &[0x5A; 128], ks, &vec![0xFF; kl]).to_bytes()
        };
        assert_eq!(
            call(&h, t, &coin_a(), 4, 41, &post(&id, none, [0; 4], CoinName { dn: 1, sn: 100 }, 0, 8)).await,
            Ok(vec![])
        );
        let mut p = post(&id, none, [0; 4], none, 0, 8);
        p[165] = 128;
        assert_eq!(call(&h, t, &ClientKey::None, 4, 41, &p).await, Err(Status::InvalidKeyStart));
        assert_eq!(
            call(&h, t, &ClientKey::None, 4, 41, &post(&id, none, [0; 4], none, 0, 5)).await,
            Err(Status::InvalidKeyLength)
        );
        assert_eq!(
            call(&h, t, &ClientKey::None, 4, 41, &post(&id, none, [0; 4], CoinName { dn: 1, sn: 100 }, 0, 8)).await,
            Err(Status::ReceiverAuth)
        );
        assert_eq!(
            call(&h, t, &ClientKey::None, 4, 41, &post(&id, none, [0; 4], none, 0, 8)).await,
            Err(Status::FileExists)
        );
        assert_eq!(call(&h, t, &ClientKey::None, 4, 41, &p[..166]).await, Err(Status::InvalidPacketLength));
        let got = call(&h, t, &ClientKey::None, 4, 43, &get_key::GetKey { key_id: id }.to_bytes()).await.unwrap();
        assert_eq!(got, [vec![1, 0, 0, 0, 100], vec![0xFF; 8]].concat());
        // handed out once: the same requester (EN 0: the same address) asking again within
        // 30 s gets the same bytes, another requester (coin A) 216
        let again = call(&h, t, &ClientKey::None, 4, 43, &get_key::GetKey { key_id: id }.to_bytes()).await;
        assert_eq!(again, Ok(got));
        assert_eq!(
            call(&h, t, &coin_a(), 4, 43, &get_key::GetKey { key_id: id }.to_bytes()).await,
            Err(Status::KeyNotFound)
        );
        // receiver coin B: only a request made with coin B may fetch
        let mut id2 = id;
        id2[0] ^= 0x55;
        assert_eq!(
            call(&h, t, &ClientKey::None, 4, 41, &post(&id2, CoinName { dn: 2, sn: 200 }, [0; 4], none, 0, 8)).await,
            Ok(vec![])
        );
        assert_eq!(
            call(&h, t, &coin_a(), 4, 43, &get_key::GetKey { key_id: id2 }.to_bytes()).await,
            Err(Status::ReceiverAuth)
        );
        let coin_b = ClientKey::Coin { coin: CoinId { dn: 2, sn: 200 }, an: Key16::new(AN_B) };
        assert!(call(&h, t, &coin_b, 4, 43, &get_key::GetKey { key_id: id2 }.to_bytes()).await.is_ok());
        // receiver address 192.0.2.7: we come from 127.0.0.1
        id2[1] ^= 0x55;
        assert_eq!(
            call(&h, t, &ClientKey::None, 4, 41, &post(&id2, none, [192, 0, 2, 7], none, 0, 8)).await,
            Ok(vec![])
        );
        assert_eq!(
            call(&h, t, &ClientKey::None, 4, 43, &get_key::GetKey { key_id: id2 }.to_bytes()).await,
            Err(Status::ReceiverAddress)
        );
        assert_eq!(call(&h, t, &ClientKey::None, 4, 42, &[0]).await, Err(Status::InvalidPacketLength));

        // 252: a handler that panics answers INTERNAL and the server keeps serving
        assert_eq!(call(&h, t, &ClientKey::None, 13, 200, &[]).await, Err(Status::Internal));
        assert_eq!(call(&h, t, &ClientKey::None, 13, 201, &[]).await, Err(Status::Internal));
        assert_eq!(call(&h, t, &ClientKey::None, 13, 202, &[]).await, Err(Status::Internal));
        if t == Transport::Tcp {
            // a TCP client gets an answer for every request, even one whose answer was lost
            assert_eq!(call(&h, t, &ClientKey::None, 13, 203, &[]).await, Err(Status::Internal));
        }
        assert_eq!(call(&h, t, &ClientKey::None, 0, 0, &[]).await, Ok(vec![]));
    }
    // 42: every ticket slot taken
    for k in 0..600u32 {
        let _ = h.state.tickets().insert(k + 1, vec![], now());
    }
    let good = get_ticket::TicketRecord { coin: CoinId { dn: 1, sn: 100 }, an: AN_A };
    for t in [Transport::Udp, Transport::Tcp] {
        assert_eq!(
            call(&h, t, &ClientKey::None, 2, 40, &get_ticket::GetTicket { records: vec![good] }.to_bytes()).await,
            Err(Status::NoTicketSlot)
        );
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_memory_statuses() {
    // capacity 1: the first modern request fills it, a new one gets 160, a replay 177
    let h = Harness::start(|s| {
        s.replay_capacity = 1;
        s.replay_share = 1;
    })
    .await;
    let (p1, _) = build_request(&Routing::new(RAIDA, COIN_ID, 0, 0), &token_a(), &[], now(), &mut OsRng);
    for t in [Transport::Udp, Transport::Tcp] {
        let first = exchange(h.addr, t, &p1).await.unwrap();
        let want = if t == Transport::Udp { Status::Success } else { Status::TxnProcessed };
        assert_eq!(first[2], want.code(), "{t:?}");
        assert_eq!(call(&h, t, &token_a(), 0, 0, &[]).await, Err(Status::RequestRate));
        assert_eq!(call(&h, t, &raida3(), 0, 0, &[]).await, Err(Status::RequestRate));
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filesystem_and_memory_statuses() {
    // 254: the pending-key store is bounded
    let h = Harness::start(|s| s.pending_key_limits.max_keys = 1).await;
    let none = CoinName { dn: 0, sn: 0 };
    for t in [Transport::Udp, Transport::Tcp] {
        let mut id = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut OsRng, &mut id);
        let p = post_key::PostKey::with_part(id, none, [0; 4], none, &[1; 128], 0, &[0xFF; 4]).to_bytes();
        let first = call(&h, t, &ClientKey::None, 4, 41, &p).await;
        if t == Transport::Udp {
            assert_eq!(first, Ok(vec![]));
        } else {
            assert_eq!(first, Err(Status::MemoryAlloc));
        }
        id[0] ^= 1;
        let p = post_key::PostKey::with_part(id, none, [0; 4], none, &[1; 128], 0, &[0xFF; 4]).to_bytes();
        assert_eq!(call(&h, t, &ClientKey::None, 4, 41, &p).await, Err(Status::MemoryAlloc));
    }
    h.stop().await;

    // 194: the Keys folder cannot be written
    let h = Harness::start(|_| {}).await;
    let keys = h.t.dir.path().join("Keys");
    std::fs::remove_dir_all(&keys).unwrap();
    std::fs::write(&keys, b"not a folder").unwrap();
    let p = post_key::PostKey::with_part([3; 16], none, [0; 4], none, &[1; 128], 0, &[0xFF; 4]).to_bytes();
    for t in [Transport::Udp, Transport::Tcp] {
        assert_eq!(call(&h, t, &ClientKey::None, 4, 41, &p).await, Err(Status::Filesystem));
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_pipelined_requests_answer_in_order() {
    let h = Harness::start(|_| {}).await;
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    let reqs: Vec<(Vec<u8>, PendingReply)> = (0..5).map(|_| echo_packet()).collect();
    let mut all = Vec::new();
    for (p, _) in &reqs {
        all.extend_from_slice(p);
    }
    // a modern request in the middle
    let (m, mp) = build_request(&Routing::new(RAIDA, COIN_ID, 0, 1), &token_a(), &[], now(), &mut OsRng);
    all.extend_from_slice(&m);
    s.write_all(&all).await.unwrap();
    for (_, pending) in &reqs {
        let r = read_response(&mut s).await.unwrap();
        assert_eq!(pending.open(&r).unwrap().status, Status::Success);
    }
    let r = read_response(&mut s).await.unwrap();
    assert_eq!(mp.open(&r).unwrap().payload.len(), 8);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_flood_then_echo_still_answers() {
    use rand_core::RngCore;
    let h = Harness::start(|_| {}).await;
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut buf = vec![0u8; 2000];
    for i in 0..3000usize {
        let n = (OsRng.next_u32() as usize) % 1500;
        OsRng.fill_bytes(&mut buf[..n]);
        if i % 3 == 0 && n > 20 {
            // look like a request so deeper paths run
            buf[0] = 1;
            buf[1] = 0;
            buf[2] = RAIDA;
            buf[16] = [0u8, 1, 2, 4, 5, 7][i % 6];
        }
        let _ = sock.send_to(&buf[..n], h.addr).await;
    }
    for _ in 0..20 {
        let n = (OsRng.next_u32() as usize) % 3000;
        let mut junk = vec![0u8; n];
        OsRng.fill_bytes(&mut junk);
        if let Ok(mut s) = TcpStream::connect(h.addr).await {
            let _ = s.write_all(&junk).await;
        }
    }
    for t in [Transport::Udp, Transport::Tcp] {
        assert_eq!(call(&h, t, &ClientKey::None, 0, 0, &[]).await, Ok(vec![]));
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_a_request_in_flight() {
    let h = Harness::start(|s| {
        s.dispatch.insert(
            13,
            202,
            Handler::Deferred(WorkKind::Durable, |_, _, reply| {
                std::thread::sleep(Duration::from_millis(500));
                reply.send(Answer::ok(b"done".to_vec()))
            }),
        );
    })
    .await;
    let server = h.server();
    let slow = tokio::spawn(async move {
        Client::new(Transport::Tcp, COIN_ID, Duration::from_secs(5))
            .request(server, 13, 202, &ClientKey::None, &[])
            .await
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    h.stop().await;
    let reply = slow.await.unwrap().expect("the request in flight is answered");
    assert_eq!(reply.payload, b"done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_address_are_bounded() {
    let limits = ServerLimits { udp_threads: 1, max_connections_per_ip: 2, ..ServerLimits::default() };
    let h = Harness::start_with(|_| {}, limits).await;
    let mut a = TcpStream::connect(h.addr).await.unwrap();
    let mut b = TcpStream::connect(h.addr).await.unwrap();
    // both admitted connections are served
    for s in [&mut a, &mut b] {
        let (p, pending) = echo_packet();
        s.write_all(&p).await.unwrap();
        let r = read_response(s).await.unwrap();
        assert_eq!(pending.open(&r).unwrap().status, Status::Success);
    }
    // a third from the same address is closed without an answer
    let mut c = TcpStream::connect(h.addr).await.unwrap();
    let (p, _) = echo_packet();
    let _ = c.write_all(&p).await;
    let third = tokio::time::timeout(Duration::from_secs(3), read_response(&mut c)).await.unwrap();
    assert!(third.is_err(), "third connection must be closed");
    // once one closes, a new one is admitted again
    drop(a);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(call(&h, Transport::Tcp, &ClientKey::None, 0, 0, &[]).await, Ok(vec![]));
    drop(b);
    h.stop().await;
}
