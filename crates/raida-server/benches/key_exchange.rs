//! Key exchange command costs: Decrypt RAIDA Key records/s without and with the durable
//! write, and Post Key + Get Key pairs/s (each durable: temp file + fsync + rename).

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use raida_proto::codec::Codec;
use raida_proto::commands::decrypt_raida_key::{self, DecryptRecord};
use raida_proto::commands::encrypt_key;
use raida_proto::commands::get_key;
use raida_proto::commands::post_key::{self, CoinName};
use raida_proto::header::{Encryption, KeyIdentity, RequestHeader, ServerIdentity};
use raida_proto::Key16;
use raida_server::dispatch;
use raida_server::ledger::{Ledger, MemoryLedger, StoreLedger};
use raida_server::{Call, ServerState};

const COIN_ID: u16 = 6;
const NOW: u64 = 1_800_000_000;
const IDENT: (i8, u32) = (1, 9);

fn header(command: u8) -> RequestHeader {
    RequestHeader {
        raida_id: 0,
        shard_id: 0,
        command_group: 4,
        command,
        coin_id: COIN_ID,
        encryption: Encryption::None,
        key_identity: KeyIdentity::None,
        body_length: 0,
        echo: [0, 0],
        legacy_nonce: [0; 8],
        nonce: [0; 12],
        request_time: 0,
    }
}

fn call(command: u8, payload: Vec<u8>) -> Call {
    Call {
        header: header(command),
        payload,
        peer: "127.0.0.1".parse().unwrap(),
        now: NOW,
        transport: raida_server::Transport::Udp,
    }
}

fn state(ledger: Arc<dyn Ledger>, dir: &std::path::Path) -> Arc<ServerState> {
    Arc::new(ServerState::builder(ServerIdentity::new(0, COIN_ID), ledger, dir, Arc::new(|| NOW)).build().unwrap())
}

/// N valid records for N distinct target coins (0, sn) made by RAIDA 1 and 2.
fn payload(n: u32, ans: &[[u8; 16]; 25]) -> Vec<u8> {
    let records: Vec<DecryptRecord> = (0..n)
        .map(|i| {
            let split = (i % 2) as u8;
            let maker = 1 + split;
            let target = raida_proto::CoinId { dn: 0, sn: i / 2 };
            let ticket = encrypt_key::make_ticket(&Key16::new(ans[maker as usize]), &[i as u8; 8], target, [1, 2]);
            DecryptRecord { coin_id: COIN_ID, split_id: split, raida_id: maker, shard: 0, target, ticket }
        })
        .collect();
    decrypt_raida_key::DecryptRaidaKey { coin: raida_proto::IdentityCoin(IDENT.into()), records: records.to_vec() }
        .to_bytes()
}

fn decrypt_raida_key(c: &mut Criterion) {
    let ans: [[u8; 16]; 25] = std::array::from_fn(|i| [i as u8 + 1; 16]);
    const N: u32 = 1000;
    let dir = tempfile::tempdir().unwrap();

    let mem = MemoryLedger::with_coins((0..N / 2).map(|sn| ((0i8, sn), ([7; 16], 30))));
    mem.identities.write().insert(raida_proto::IdentityCoin(IDENT.into()), ans);
    let st = state(Arc::new(mem), dir.path());
    let p = payload(N, &ans);
    let mut g = c.benchmark_group("decrypt_raida_key");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("1000_records_in_memory", |b| {
        b.iter(|| {
            let a = dispatch::answer(&st, &call(45, p.clone()));
            assert_eq!(a.payload.len(), N as usize);
        })
    });

    // the same on a real data directory: every request ends in one group-committed write
    let data = dir.path().join("data");
    let mut opts = raida_store::InitOptions::new(0);
    opts.pages = 1;
    opts.denominations = vec![0, 1];
    raida_store::init_data_dir(&data, opts).unwrap();
    let store = raida_store::Store::open(&data).unwrap();
    for sn in 0..N / 2 {
        store.set((0, sn).into(), [7; 16], 30).unwrap();
    }
    store.write_identity_coin(raida_proto::IdentityCoin(IDENT.into()), COIN_ID, &ans).unwrap();
    let st = state(Arc::new(StoreLedger { store, coin_id: COIN_ID }), &data);
    g.bench_function("1000_records_durable", |b| {
        b.iter(|| {
            let a = dispatch::answer(&st, &call(45, p.clone()));
            assert_eq!(a.payload.len(), N as usize);
        })
    });
    g.finish();
}

fn post_and_get(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let st = state(Arc::new(MemoryLedger::default()), dir.path());
    let none = CoinName { dn: 0, sn: 0 };
    let mut g = c.benchmark_group("pending_keys");
    g.throughput(Throughput::Elements(1));
    let mut n = 0u64;
    g.bench_function("post_key_then_get_key_durable", |b| {
        b.iter_batched(
            || {
                n += 1;
                let mut id = [0u8; 16];
                id[..8].copy_from_slice(&n.to_be_bytes());
                id
            },
            |id| {
                let p = post_key::PostKey::with_part(id, none, [0; 4], none, &[9; 128], 0, &[0xFF; 16]).to_bytes();
                assert!(dispatch::answer(&st, &call(41, p)).status.is_success());
                assert!(dispatch::answer(&st, &call(43, get_key::GetKey { key_id: id }.to_bytes()))
                    .status
                    .is_success());
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// 64 clients (each its own address, EN 0) posting and fetching keys at once: the
/// pending-key store's concurrency (index lock, batched directory fsyncs).
fn post_and_get_64_clients(c: &mut Criterion) {
    const CLIENTS: u64 = 64;
    let dir = tempfile::tempdir().unwrap();
    let st = state(Arc::new(MemoryLedger::default()), dir.path());
    let none = CoinName { dn: 0, sn: 0 };
    let round = std::sync::atomic::AtomicU64::new(0);
    let mut g = c.benchmark_group("pending_keys");
    g.throughput(Throughput::Elements(1));
    g.sample_size(10);
    g.bench_function("post_key_then_get_key_durable_64_clients", |b| {
        b.iter_custom(|iters| {
            let r = round.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let per_client = iters.div_ceil(CLIENTS);
            let start = std::time::Instant::now();
            std::thread::scope(|s| {
                for client in 0..CLIENTS {
                    let st = &st;
                    s.spawn(move || {
                        let peer = std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, client as u8 + 1));
                        for i in 0..per_client {
                            let mut id = [0u8; 16];
                            id[..8].copy_from_slice(&r.to_be_bytes());
                            id[8..12].copy_from_slice(&(client as u32).to_be_bytes());
                            id[12..].copy_from_slice(&(i as u32).to_be_bytes());
                            let p = post_key::PostKey::with_part(id, none, [0; 4], none, &[9; 128], 0, &[0xFF; 16])
                                .to_bytes();
                            let mut post = call(41, p);
                            post.peer = peer;
                            assert!(dispatch::answer(st, &post).status.is_success());
                            let mut get = call(43, get_key::GetKey { key_id: id }.to_bytes());
                            get.peer = peer;
                            assert!(dispatch::answer(st, &get).status.is_success());
                        }
                    });
                }
            });
            // time per pair as criterion counts it (iters pairs asked, per_client × 64 done)
            start.elapsed().mul_f64(iters as f64 / (per_client * CLIENTS) as f64)
        })
    });
    g.finish();
}

criterion_group!(benches, decrypt_raida_key, post_and_get, post_and_get_64_clients);
criterion_main!(benches);
