//! Channel throughput and handshake rate, with raw AES-256-GCM as the baseline.
//!
//! `CARGO_TARGET_DIR=/work/targets/channel cargo bench -p raida-channel --bench channel`

use std::hint::black_box;
use std::time::{Duration, Instant};

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use raida_channel::chain::{SecretKey, SendChain};
use raida_channel::handshake::{respond, HandshakeConfig, Initiator};
use raida_channel::record::{Direction, STREAM_ENDPOINT};
use raida_channel::session::{Config, Mode};
use raida_channel::window::RecvWindow;
use raida_channel::{Psk, Session};

const SIZES: [usize; 3] = [64, 1024, 16 * 1024];
const CHUNK: u64 = 512;

fn records(c: &mut Criterion) {
    let mut g = c.benchmark_group("records");
    g.sample_size(20).warm_up_time(Duration::from_millis(700)).measurement_time(Duration::from_secs(2));
    for size in SIZES {
        g.throughput(Throughput::Bytes(size as u64));
        let payload = vec![0xA5u8; size];

        // Baseline: AES-256-GCM alone, one fixed key, in place, no allocation.
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&[7u8; 32]));
        let nonce = [9u8; 12];
        let aad = b"seq:1:alice-to-bob:stream";
        g.bench_with_input(BenchmarkId::new("raw_aes256gcm_encrypt", size), &size, |b, _| {
            let mut buf = payload.clone();
            b.iter(|| {
                let tag =
                    cipher.encrypt_in_place_detached(Nonce::from_slice(&nonce), aad, black_box(&mut buf)).unwrap();
                black_box(tag);
            })
        });
        let mut ct = payload.clone();
        let tag = cipher.encrypt_in_place_detached(Nonce::from_slice(&nonce), aad, &mut ct).unwrap();
        g.bench_with_input(BenchmarkId::new("raw_aes256gcm_decrypt", size), &size, |b, _| {
            b.iter(|| {
                let mut buf = ct.clone();
                cipher.decrypt_in_place_detached(Nonce::from_slice(&nonce), aad, &mut buf, &tag).unwrap();
                black_box(buf);
            })
        });

        // Channel records: fresh nonce (OS CSPRNG), per-record key (ratchet), AAD, framing.
        g.bench_with_input(BenchmarkId::new("channel_seal", size), &size, |b, _| {
            let mut tx = SendChain::new(SecretKey::new([1u8; 32]), Direction::AliceToBob, STREAM_ENDPOINT);
            b.iter(|| black_box(tx.seal(black_box(&payload)).unwrap()))
        });
        g.bench_with_input(BenchmarkId::new("channel_open", size), &size, |b, _| {
            let mut tx = SendChain::new(SecretKey::new([1u8; 32]), Direction::AliceToBob, STREAM_ENDPOINT);
            let mut rx = RecvWindow::new(SecretKey::new([1u8; 32]), Direction::AliceToBob, STREAM_ENDPOINT);
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let n = left.min(CHUNK);
                    let recs: Vec<Vec<u8>> = (0..n).map(|_| tx.seal(&payload).unwrap()).collect();
                    let t = Instant::now();
                    for r in &recs {
                        black_box(rx.open(r).unwrap());
                    }
                    total += t.elapsed();
                    left -= n;
                }
                total
            })
        });
        // Full session path (inner message header, state checks) sealed and opened.
        g.bench_with_input(BenchmarkId::new("session_seal_and_open", size), &size, |b, _| {
            let (mut a, mut bob, now) = session_pair();
            b.iter(|| {
                let r = a.seal_data(&payload, now).unwrap();
                black_box(bob.handle_record(&r, now).unwrap());
            })
        });
    }
    g.finish();
}

fn session_pair() -> (Session, Session, Instant) {
    let now = Instant::now();
    let cfg = Config { rekey_after_messages: u64::MAX, ..Config::default() };
    let hs = Initiator::new(&cfg.handshake);
    let (reply, eb) = respond(hs.hello(), &cfg.handshake).unwrap();
    let ea = hs.finish(&reply).unwrap();
    (Session::new(ea, Mode::Stream, cfg.clone(), now), Session::new(eb, Mode::Stream, cfg, now), now)
}

/// The fixed per-record costs: one ratchet step and one AES-256-GCM key setup.
fn components(c: &mut Criterion) {
    let mut g = c.benchmark_group("per_record");
    g.sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(1));
    let k = [3u8; 32];
    g.bench_function("ratchet_step_hkdf", |b| {
        b.iter(|| black_box(raida_channel::chain::next_key(black_box(&k), 12345)))
    });
    g.bench_function("aes256gcm_key_setup", |b| {
        b.iter(|| black_box(Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(black_box(&k)))))
    });
    let src = vec![1u8; 16 * 1024];
    g.bench_function("copy_16k_into_new_vec", |b| b.iter(|| black_box(black_box(&src).to_vec())));
    g.finish();
}

fn handshakes(c: &mut Criterion) {
    let mut g = c.benchmark_group("handshake");
    g.sample_size(20).warm_up_time(Duration::from_millis(700)).measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(1));
    let psk = Psk::new(vec![0x33; 32]).unwrap();
    for (name, cfg) in [
        ("x25519", HandshakeConfig { psk: None, pq: false }),
        ("x25519_psk", HandshakeConfig { psk: Some(psk.clone()), pq: false }),
        ("x25519_mlkem768_pq", HandshakeConfig { psk: None, pq: true }),
        ("x25519_mlkem768_psk_pq", HandshakeConfig { psk: Some(psk), pq: true }),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let hs = Initiator::new(&cfg);
                let (reply, eb) = respond(hs.hello(), &cfg).unwrap();
                let ea = hs.finish(&reply).unwrap();
                black_box((ea, eb));
            })
        });
    }
    g.finish();
}

/// Interleaved comparison at 16 KiB, robust against load from other processes: rounds of
/// raw AES-256-GCM and channel records alternate, and the totals are compared.
fn ratio_16k(_c: &mut Criterion) {
    let size = 16 * 1024;
    let payload = vec![0x5Au8; size];
    let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&[7u8; 32]));
    let nonce = [9u8; 12];
    let aad = b"seq:1:alice-to-bob:stream";
    let mut buf = payload.clone();
    let mut ct = payload.clone();
    let tag = cipher.encrypt_in_place_detached(Nonce::from_slice(&nonce), aad, &mut ct).unwrap();
    let mut tx = SendChain::new(SecretKey::new([1u8; 32]), Direction::AliceToBob, STREAM_ENDPOINT);
    let mut rx_tx = SendChain::new(SecretKey::new([2u8; 32]), Direction::AliceToBob, STREAM_ENDPOINT);
    let mut rx = RecvWindow::new(SecretKey::new([2u8; 32]), Direction::AliceToBob, STREAM_ENDPOINT);
    let (mut raw_enc, mut raw_dec, mut seal, mut open) =
        (Duration::ZERO, Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let per_round = 32;
    let rounds = 300;
    for _ in 0..rounds {
        let t = Instant::now();
        for _ in 0..per_round {
            black_box(cipher.encrypt_in_place_detached(Nonce::from_slice(&nonce), aad, black_box(&mut buf)).unwrap());
        }
        raw_enc += t.elapsed();
        let t = Instant::now();
        for _ in 0..per_round {
            black_box(tx.seal(black_box(&payload)).unwrap());
        }
        seal += t.elapsed();
        let t = Instant::now();
        for _ in 0..per_round {
            let mut b = ct.clone();
            cipher.decrypt_in_place_detached(Nonce::from_slice(&nonce), aad, &mut b, &tag).unwrap();
            black_box(b);
        }
        raw_dec += t.elapsed();
        let recs: Vec<Vec<u8>> = (0..per_round).map(|_| rx_tx.seal(&payload).unwrap()).collect();
        let t = Instant::now();
        for r in &recs {
            black_box(rx.open(r).unwrap());
        }
        open += t.elapsed();
    }
    let n = (per_round * rounds) as f64;
    let mibs = |d: Duration| size as f64 * n / d.as_secs_f64() / (1024.0 * 1024.0);
    println!("interleaved 16 KiB comparison ({} records each):", per_round * rounds);
    println!("  raw AES-256-GCM encrypt {:8.1} MiB/s", mibs(raw_enc));
    println!(
        "  channel seal            {:8.1} MiB/s = {:.1}% of raw",
        mibs(seal),
        100.0 * raw_enc.as_secs_f64() / seal.as_secs_f64()
    );
    println!("  raw AES-256-GCM decrypt {:8.1} MiB/s", mibs(raw_dec));
    println!(
        "  channel open            {:8.1} MiB/s = {:.1}% of raw",
        mibs(open),
        100.0 * raw_dec.as_secs_f64() / open.as_secs_f64()
    );
}

criterion_group!(benches, records, components, handshakes, ratio_16k);
criterion_main!(benches);
