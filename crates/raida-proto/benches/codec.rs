//! Server-side cost of one request: validate (frame, header rules, key, decrypt,
//! CRC / tag, replay) and build the encrypted answer. Legacy EN 0, EN 1 and modern EN 4.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use rand_core::OsRng;

use raida_proto::client::{build_request, ClientKey, Routing};
use raida_proto::commands::SpecCommands;
use raida_proto::header::ServerIdentity;
use raida_proto::keys::{Key16, Key32, OneCoin};
use raida_proto::replay::NoReplay;
use raida_proto::{validate_request, CoinId, Status};

const AN: [u8; 16] = [7; 16];
const SERVER: ServerIdentity = ServerIdentity::new(1, 6);
const NOW: u64 = 1_800_000_000;

fn bench_one(c: &mut Criterion, name: &str, key: ClientKey) {
    let routing = Routing::new(SERVER.raida_id, SERVER.coin_id, 0, 0);
    let (packet, _) = build_request(&routing, &key, &[], NOW, &mut OsRng);
    let mut buf = packet.clone();
    let mut out = Vec::with_capacity(128);
    let mut group = c.benchmark_group("server");
    group.throughput(Throughput::Elements(1));
    group.bench_function(name, |b| {
        b.iter(|| {
            buf.copy_from_slice(&packet);
            let v = validate_request(
                black_box(&mut buf),
                &SERVER,
                &SpecCommands,
                &OneCoin { coin: CoinId { dn: 1, sn: 100 }, an: AN },
                &mut NoReplay,
                NOW,
            )
            .expect("valid");
            v.reply.write(Status::Success, &[], 1, &mut OsRng, &mut out);
            black_box(&out);
        })
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    bench_one(c, "legacy_en0_echo_validate_and_respond", ClientKey::None);
    bench_one(
        c,
        "legacy_en1_echo_validate_and_respond",
        ClientKey::Coin { coin: CoinId { dn: 1, sn: 100 }, an: Key16::new(AN) },
    );
    bench_one(
        c,
        "modern_en4_echo_validate_and_respond",
        ClientKey::Token { coin: CoinId { dn: 1, sn: 100 }, key: Key32::sha256_of_an(&Key16::new(AN)) },
    );
}

criterion_group!(codec, benches);
criterion_main!(codec);
