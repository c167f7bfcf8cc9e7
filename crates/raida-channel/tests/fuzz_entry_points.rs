//! The fuzzing entry points of `raida_channel::fuzz`: they reach the parsers they name
//! (genuine input is accepted, broken input refused) and never panic on arbitrary bytes.

use proptest::prelude::*;
use raida_channel::fuzz;
use raida_channel::handshake::{respond, HandshakeConfig, Initiator};
use raida_channel::message::{header, Kind};
use raida_channel::pq::EK_LEN;
use raida_channel::ChannelError;

fn pq() -> HandshakeConfig {
    HandshakeConfig { psk: None, pq: true }
}

/// `[length 2][plaintext]`, the framing `fuzz::session_messages` reads.
fn chunk(pt: &[u8]) -> Vec<u8> {
    let mut v = u16::try_from(pt.len()).expect("short").to_be_bytes().to_vec();
    v.extend_from_slice(pt);
    v
}

#[test]
fn handshake_entry_points_reach_the_ml_kem_checks() {
    let hs = Initiator::new(&pq());
    let hello = hs.hello().to_vec();
    assert!(fuzz::handshake_hello(&hello).is_ok());
    // A coefficient of 4095 (>= q) in the encapsulation key: refused by the modulus check.
    let mut bad = hello.clone();
    bad[38] = 0xFF;
    bad[39] |= 0x0F;
    assert!(matches!(fuzz::handshake_hello(&bad), Err(ChannelError::BadHandshake(_))));
    // A reply to another hello parses and decapsulates (to other keys: implicit rejection).
    let (reply, _) = respond(&hello, &pq()).expect("genuine");
    assert!(fuzz::handshake_reply(&reply).is_ok());
    assert!(matches!(fuzz::handshake_reply(&reply[..reply.len() - 1]), Err(ChannelError::BadHandshake(_))));
    // Classic and PSK hellos follow their flags.
    for cfg in
        [HandshakeConfig::default(), HandshakeConfig { psk: raida_channel::Psk::new(vec![1; 16]).ok(), pq: false }]
    {
        assert!(fuzz::handshake_hello(Initiator::new(&cfg).hello()).is_ok());
    }
}

#[test]
fn record_and_message_entry_points_parse() {
    assert!(matches!(fuzz::record(&[0u8; 35]), Err(ChannelError::Truncated(35))));
    assert!(matches!(fuzz::record(&[0u8; 64]), Err(ChannelError::ZeroSeq)));
    assert!(fuzz::message(&header(Kind::Data, 0)).is_ok());
    assert!(matches!(fuzz::message(&[0xEE; 9]), Err(ChannelError::Malformed(_))));
}

#[test]
fn session_entry_point_delivers_sealed_plaintexts() {
    // Responder, stream: two data messages and a ping are accepted.
    let mut input = vec![0u8];
    input.extend(chunk(&[&header(Kind::Data, 0)[..], b"one"].concat()));
    input.extend(chunk(&header(Kind::Ping, 9)));
    input.extend(chunk(&[&header(Kind::Data, 0)[..], b"two"].concat()));
    assert_eq!(fuzz::session_messages(&input), 3);
    // Responder, post-quantum: a rekey whose key fails the modulus check is refused, a
    // genuine one is accepted.
    let mut bad = Initiator::new(&pq()).hello().to_vec();
    bad[38] = 0xFF;
    bad[39] |= 0x0F;
    let mut input = vec![2u8];
    input.extend(chunk(&[&header(Kind::Rekey, 0)[..], &bad].concat()));
    assert_eq!(fuzz::session_messages(&input), 0);
    let good = Initiator::new(&pq()).hello().to_vec();
    assert_eq!(good.len(), 38 + EK_LEN);
    let mut input = vec![2u8];
    input.extend(chunk(&[&header(Kind::Rekey, 0)[..], &good].concat()));
    assert_eq!(fuzz::session_messages(&input), 1);
    // Initiator with a rekey pending: a rekey acknowledgement reaches the reply parser.
    let (reply, _) = respond(&good, &pq()).expect("genuine");
    let mut input = vec![3u8];
    input.extend(chunk(&[&header(Kind::RekeyAck, 0)[..], &reply].concat()));
    assert_eq!(fuzz::session_messages(&input), 1);
    let mut input = vec![3u8];
    input.extend(chunk(&[&header(Kind::RekeyAck, 0)[..], &reply[..100]].concat()));
    assert_eq!(fuzz::session_messages(&input), 0);
    assert_eq!(fuzz::session_messages(&[]), 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..1400)) {
        let _ = fuzz::handshake_hello(&data);
        let _ = fuzz::handshake_reply(&data);
        let _ = fuzz::record(&data);
        let _ = fuzz::message(&data);
        let _ = fuzz::session_messages(&data);
    }

    #[test]
    fn mutated_post_quantum_hellos_never_panic(at in 0usize..1222, byte in any::<u8>(), cut in 0usize..1300) {
        let mut hello = Initiator::new(&pq()).hello().to_vec();
        hello[at] = byte;
        hello.truncate(cut.max(1));
        let _ = fuzz::handshake_hello(&hello);
        let mut input = vec![2u8];
        input.extend(chunk(&[&header(Kind::Rekey, 0)[..], &hello].concat()));
        let _ = fuzz::session_messages(&input);
    }
}
