//! FIPS 203 input checks on what the peer sends in a post-quantum handshake (issue 9 item 9).
//!
//! * The responder checks alice's ML-KEM-768 encapsulation key (FIPS 203 section 7.2: length
//!   and modulus check, every 12-bit coefficient below q = 3329) before encapsulating to it;
//!   a bad key ends the handshake with `BadHandshake`, no reply is sent, no session exists.
//! * The initiator checks the ciphertext's length (section 7.3) before decapsulating; a
//!   well-formed but tampered ciphertext decapsulates to an unrelated secret (implicit
//!   rejection), so the two sides derive different keys and the key confirmation fails.
//! * The same checks guard the in-session rekey, whose records carry handshake messages.

use std::time::{Duration, Instant};

use raida_channel::chain::{SecretKey, SendChain};
use raida_channel::handshake::{
    respond, Established, HandshakeConfig, Initiator, Role, SessionKeys, FLAG_PQ, MAGIC, VERSION,
};
use raida_channel::message::{header, Kind};
use raida_channel::pq::{CT_LEN, EK_LEN};
use raida_channel::record::{Direction, STREAM_ENDPOINT};
use raida_channel::session::{Config, Event, Mode};
use raida_channel::transport::frame::{read_frame, write_frame, MAX_HANDSHAKE_FRAME};
use raida_channel::{Channel, ChannelError, Psk, Session};
use tokio::io::{duplex, AsyncWriteExt};

/// ML-KEM's modulus.
const Q: u16 = 3329;
/// Bytes before the ML-KEM part of a handshake message: magic, version, flags, X25519 key.
const KEM_OFFSET: usize = 6 + 32;
/// Coefficients in the encoded vector t-hat of an ML-KEM-768 key (k = 3, 256 each); the last
/// 32 bytes of the key are the seed rho, which has no range to check.
const EK_COEFFS: usize = 3 * 256;

fn pq() -> HandshakeConfig {
    HandshakeConfig { psk: None, pq: true }
}

fn pq_psk() -> HandshakeConfig {
    HandshakeConfig { psk: Some(Psk::new(vec![0x5A; 32]).expect("test psk")), pq: true }
}

/// Writes `value` (12 bits) as coefficient `i` of a ByteEncode_12 encoding: two coefficients
/// per three bytes, little-endian.
fn set_coefficient(enc: &mut [u8], i: usize, value: u16) {
    let at = 3 * (i / 2);
    if i & 1 == 0 {
        enc[at] = (value & 0xFF) as u8;
        enc[at + 1] = (enc[at + 1] & 0xF0) | (value >> 8) as u8;
    } else {
        enc[at + 1] = (enc[at + 1] & 0x0F) | ((value & 0x0F) << 4) as u8;
        enc[at + 2] = (value >> 4) as u8;
    }
}

fn coefficient(enc: &[u8], i: usize) -> u16 {
    let at = 3 * (i / 2);
    if i & 1 == 0 {
        u16::from(enc[at]) | (u16::from(enc[at + 1] & 0x0F) << 8)
    } else {
        u16::from(enc[at + 1] >> 4) | (u16::from(enc[at + 2]) << 4)
    }
}

/// A genuine post-quantum hello with coefficient `i` of its encapsulation key set to `value`.
fn hello_with_coefficient(cfg: &HandshakeConfig, i: usize, value: u16) -> Vec<u8> {
    let mut hello = Initiator::new(cfg).hello().to_vec();
    set_coefficient(&mut hello[KEM_OFFSET..], i, value);
    assert_eq!(coefficient(&hello[KEM_OFFSET..], i), value);
    hello
}

fn is_bad_handshake<T>(r: &Result<T, ChannelError>) -> bool {
    matches!(r, Err(ChannelError::BadHandshake(_)))
}

#[test]
fn coefficient_encoding_helper_matches_genuine_keys() {
    // Every coefficient of a genuine key is below q: the helper reads the encoding right.
    let hello = Initiator::new(&pq()).hello().to_vec();
    let ek = &hello[KEM_OFFSET..];
    assert_eq!(ek.len(), EK_LEN);
    assert!((0..EK_COEFFS).all(|i| coefficient(ek, i) < Q));
}

#[test]
fn encapsulation_key_with_a_coefficient_at_or_above_q_is_refused() {
    for cfg in [pq(), pq_psk()] {
        for i in [0, 1, 2, 255, 256, 511, 512, EK_COEFFS - 2, EK_COEFFS - 1] {
            for value in [Q, Q + 1, 4095] {
                let hello = hello_with_coefficient(&cfg, i, value);
                let r = respond(&hello, &cfg);
                assert!(is_bad_handshake(&r), "coefficient {i} = {value} accepted: {:?}", r.map(|_| ()));
            }
        }
    }
}

#[test]
fn encapsulation_key_with_coefficients_just_below_q_is_accepted() {
    // The check is exactly the FIPS 203 range [0, q-1]: q-1 everywhere still works.
    let cfg = pq();
    let hs = Initiator::new(&cfg);
    let mut hello = hs.hello().to_vec();
    for i in 0..EK_COEFFS {
        set_coefficient(&mut hello[KEM_OFFSET..], i, Q - 1);
    }
    let (reply, _) = respond(&hello, &cfg).expect("a key of in-range coefficients is valid");
    assert_eq!(reply.len(), KEM_OFFSET + CT_LEN);
}

#[test]
fn encapsulation_key_of_the_wrong_length_is_refused() {
    let cfg = pq();
    let hello = Initiator::new(&cfg).hello().to_vec();
    assert_eq!(hello.len(), KEM_OFFSET + EK_LEN);
    for len in [0, 1, EK_LEN - 32, EK_LEN - 1, EK_LEN + 1, EK_LEN + 32, 2 * EK_LEN] {
        let mut m = hello[..KEM_OFFSET].to_vec();
        m.extend((0..len).map(|i| (i % 251) as u8));
        assert!(is_bad_handshake(&respond(&m, &cfg)), "ek of {len} bytes accepted");
    }
    // The post-quantum flag without any key, and a key without the flag.
    let mut head = MAGIC.to_vec();
    head.extend_from_slice(&[VERSION, FLAG_PQ]);
    head.extend_from_slice(&hello[6..KEM_OFFSET]);
    assert!(is_bad_handshake(&respond(&head, &cfg)));
    let mut no_flag = hello.clone();
    no_flag[5] = 0;
    assert!(is_bad_handshake(&respond(&no_flag, &HandshakeConfig::default())));
}

#[test]
fn ciphertext_of_the_wrong_length_is_refused() {
    let cfg = pq();
    for len in [0, 1, CT_LEN - 1, CT_LEN + 1, 2 * CT_LEN] {
        let hs = Initiator::new(&cfg);
        let (reply, _) = respond(hs.hello(), &cfg).expect("genuine hello");
        let mut m = reply[..KEM_OFFSET].to_vec();
        m.extend(reply[KEM_OFFSET..].iter().copied().cycle().take(len));
        assert!(is_bad_handshake(&hs.finish(&m)), "ct of {len} bytes accepted");
    }
}

/// The sessions both sides would run after a handshake whose reply was changed on the way.
fn sessions_after_tampered_reply(tamper: impl Fn(&mut Vec<u8>)) -> (Session, Session, Instant) {
    let now = Instant::now();
    let c = Config::new(None, true);
    let hs = Initiator::new(&c.handshake);
    let (mut reply, est_b) = respond(hs.hello(), &c.handshake).expect("genuine hello");
    tamper(&mut reply);
    // Implicit rejection: decapsulation of a well-formed ciphertext never fails...
    let est_a = hs.finish(&reply).expect("a well-formed ciphertext decapsulates");
    (Session::new(est_a, Mode::Stream, c.clone(), now), Session::new(est_b, Mode::Stream, c, now), now)
}

#[test]
fn tampered_ciphertext_yields_other_keys_and_no_record_opens() {
    for pos in [0, 1, CT_LEN / 2, CT_LEN - 1] {
        for bit in [0x01u8, 0x80] {
            let (mut a, mut b, now) = sessions_after_tampered_reply(|r| r[KEM_OFFSET + pos] ^= bit);
            // ...but the secret is unrelated, so neither side's records open at the other.
            let ca = a.seal_confirm(now).expect("seal");
            let cb = b.seal_confirm(now).expect("seal");
            assert!(matches!(b.handle_record(&ca, now), Err(ChannelError::Auth { .. })));
            assert!(matches!(a.handle_record(&cb, now), Err(ChannelError::Auth { .. })));
            let d = a.seal_data(b"secret", now).expect("seal");
            assert!(b.handle_record(&d, now).is_err());
        }
    }
    // Control: the untouched reply gives matching keys.
    let (mut a, mut b, now) = sessions_after_tampered_reply(|_| {});
    let ca = a.seal_confirm(now).expect("seal");
    assert_eq!(b.handle_record(&ca, now).expect("genuine").event, Event::Confirmed);
}

/// Runs a stream handshake through a relay that applies `tamper_hello` to the first frame
/// from alice and `tamper_reply` to the first frame from bob, then relays the rest untouched.
async fn relayed_handshake(
    tamper_hello: fn(&mut Vec<u8>),
    tamper_reply: fn(&mut Vec<u8>),
) -> (Result<Channel, ChannelError>, Result<Channel, ChannelError>) {
    let mut cfg = Config::new(None, true);
    cfg.request_timeout = Duration::from_secs(10);
    let (alice, relay_a) = duplex(1 << 16);
    let (relay_b, bob) = duplex(1 << 16);
    let relay = tokio::spawn(async move {
        let (mut from_a, mut to_a) = tokio::io::split(relay_a);
        let (mut from_b, mut to_b) = tokio::io::split(relay_b);
        let a_to_b = async move {
            let mut first = true;
            while let Ok(Some(mut f)) = read_frame(&mut from_a, MAX_HANDSHAKE_FRAME).await {
                if std::mem::take(&mut first) {
                    tamper_hello(&mut f);
                }
                if write_frame(&mut to_b, &f).await.is_err() || to_b.flush().await.is_err() {
                    break;
                }
            }
            let _ = to_b.shutdown().await;
        };
        let b_to_a = async move {
            let mut first = true;
            while let Ok(Some(mut f)) = read_frame(&mut from_b, MAX_HANDSHAKE_FRAME).await {
                if std::mem::take(&mut first) {
                    tamper_reply(&mut f);
                }
                if write_frame(&mut to_a, &f).await.is_err() || to_a.flush().await.is_err() {
                    break;
                }
            }
            let _ = to_a.shutdown().await;
        };
        tokio::join!(a_to_b, b_to_a);
    });
    let r = tokio::time::timeout(Duration::from_secs(20), async {
        tokio::join!(Channel::connect(alice, cfg.clone()), Channel::accept(bob, cfg))
    })
    .await
    .expect("the handshake ends, one way or the other");
    relay.abort();
    r
}

#[tokio::test]
async fn stream_handshake_with_out_of_range_key_fails_without_a_session() {
    let (a, b) = relayed_handshake(|hello| set_coefficient(&mut hello[KEM_OFFSET..], 7, 4095), |_| {}).await;
    // Bob refuses the hello and never answers; alice sees the stream end.
    assert!(matches!(b, Err(ChannelError::BadHandshake(_))), "bob: {:?}", b.map(|_| ()));
    assert!(a.is_err(), "alice got a channel");
}

#[tokio::test]
async fn stream_handshake_with_tampered_ciphertext_fails_key_confirmation() {
    let (a, b) = relayed_handshake(|_| {}, |reply| reply[KEM_OFFSET + 100] ^= 0x04).await;
    assert!(matches!(a, Err(ChannelError::KeyConfirmation)), "alice: {:?}", a.map(|_| ()));
    assert!(matches!(b, Err(ChannelError::KeyConfirmation)), "bob: {:?}", b.map(|_| ()));
}

#[tokio::test]
async fn stream_handshake_with_truncated_ciphertext_fails_without_a_session() {
    let (a, b) = relayed_handshake(|_| {}, |reply| reply.truncate(KEM_OFFSET + CT_LEN - 1)).await;
    assert!(matches!(a, Err(ChannelError::BadHandshake(_))), "alice: {:?}", a.map(|_| ()));
    assert!(b.is_err(), "bob got a channel");
}

#[tokio::test]
async fn stream_handshake_untampered_through_the_relay_succeeds() {
    // Control for the three tests above: the relay itself changes nothing.
    let (a, b) = relayed_handshake(|_| {}, |_| {}).await;
    let (a, b) = (a.expect("alice"), b.expect("bob"));
    assert_eq!(a.session_id(), b.session_id());
}

#[test]
fn rekey_carrying_an_out_of_range_key_is_refused_and_the_session_goes_on() {
    // Bob's session under known keys, so the test can seal records as alice.
    let now = Instant::now();
    let (k_ab, k_ba) = ([0x11u8; 32], [0x22u8; 32]);
    let est = Established {
        keys: SessionKeys { alice_to_bob: SecretKey::new(k_ab), bob_to_alice: SecretKey::new(k_ba) },
        session_id: [7; 16],
        role: Role::Responder,
        pq: true,
    };
    let mut bob = Session::new(est, Mode::Stream, Config::new(None, true), now);
    let mut alice = SendChain::new(SecretKey::new(k_ab), Direction::AliceToBob, STREAM_ENDPOINT);

    let bad_hello = hello_with_coefficient(&pq(), 300, Q);
    let rec = alice.seal_parts(&[&header(Kind::Rekey, 0), &bad_hello]).expect("seal");
    let r = bob.handle_record(&rec, now);
    assert!(is_bad_handshake(&r), "rekey with a bad key: {:?}", r.map(|o| o.event));
    assert_eq!(bob.epoch(), 1, "no new keys installed");

    // The old keys still work.
    let rec = alice.seal_parts(&[&header(Kind::Data, 0), b"still here"]).expect("seal");
    assert_eq!(bob.handle_record(&rec, now).expect("data").event, Event::Data(b"still here".to_vec()));
}
