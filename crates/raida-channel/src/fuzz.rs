//! Entry points for fuzz targets: each feeds arbitrary bytes to one parser of input that a
//! peer controls, the way the channel itself does, and must never panic (every rejection is
//! an error value). They are public only so that a fuzz harness (cargo-fuzz, libFuzzer) in
//! another crate can call them; applications have no use for them.
//!
//! Keys and pre-shared keys here are fixed test values, never secrets. Where a check in front
//! of a parser would stop a fuzzer (a mode mismatch, an AES-GCM tag it cannot forge), the
//! entry point arranges for the check to pass, so the fuzzed bytes reach the parser behind it:
//! the handshake configuration follows the flags byte of the message, and the session entry
//! point seals the fuzzed plaintexts itself.
//!
//! * [`handshake_hello`]: the responder's parser of a hello (`handshake::respond`), including
//!   the FIPS 203 check of the ML-KEM encapsulation key.
//! * [`handshake_reply`]: the initiator's parser of a reply (`handshake::Initiator::finish`),
//!   including the ML-KEM ciphertext check and decapsulation.
//! * [`record()`]: the record parser (`record::record_seq`, `window::RecvWindow::open`).
//! * [`message()`]: the inner message parser (`message::decode`).
//! * [`session_messages`]: a sequence of decrypted messages through
//!   `session::Session::handle_record` (message parser, state machine, rekey handshakes).

use std::time::Instant;

use crate::chain::{SecretKey, SendChain};
use crate::error::ChannelError;
use crate::handshake::{self, Established, HandshakeConfig, Initiator, Psk, Role, SessionKeys, FLAG_PQ, FLAG_PSK};
use crate::message;
use crate::record::{self, Direction};
use crate::session::{Config, Mode, Session};
use crate::window::RecvWindow;

/// Offset of the flags byte in a handshake message (after `"RCH1"` and the version).
const FLAGS_AT: usize = 5;
/// Most messages [`session_messages`] delivers from one input.
pub const MAX_SESSION_MESSAGES: usize = 64;

const FUZZ_PSK: [u8; 32] = [0x46; 32];
const FUZZ_KEY_ALICE_TO_BOB: [u8; 32] = [0xA1; 32];
const FUZZ_KEY_BOB_TO_ALICE: [u8; 32] = [0xB2; 32];

/// The handshake configuration a handshake message's flags byte asks for (none: classic).
fn config_for(msg: &[u8]) -> HandshakeConfig {
    let flags = msg.get(FLAGS_AT).copied().unwrap_or(0);
    HandshakeConfig {
        psk: (flags & FLAG_PSK != 0).then(|| Psk::new(FUZZ_PSK.to_vec())).and_then(Result::ok),
        pq: flags & FLAG_PQ != 0,
    }
}

/// Parses `data` as a hello, as the responder does (with the configuration its flags ask
/// for), and on success builds the reply and the session keys.
pub fn handshake_hello(data: &[u8]) -> Result<(), ChannelError> {
    handshake::respond(data, &config_for(data)).map(|_| ())
}

/// Parses `data` as the reply to a fresh hello (with the configuration its flags ask for), as
/// the initiator does.
pub fn handshake_reply(data: &[u8]) -> Result<(), ChannelError> {
    Initiator::new(&config_for(data)).finish(data).map(|_| ())
}

/// Parses `data` as a record on a byte stream: sequence number, then the window's checks and
/// AES-GCM (whose tag a fuzzer will not forge; see [`session_messages`] for what lies behind).
pub fn record(data: &[u8]) -> Result<(), ChannelError> {
    record::record_seq(data)?;
    let mut w = RecvWindow::new(SecretKey::new(FUZZ_KEY_ALICE_TO_BOB), Direction::AliceToBob, record::STREAM_ENDPOINT);
    w.open(data).map(|_| ())
}

/// Parses `data` as a decrypted inner message (`[kind 1][id 8][payload]`).
pub fn message(data: &[u8]) -> Result<(), ChannelError> {
    message::decode(data).map(|_| ())
}

/// Feeds a sequence of plaintexts, each sealed as the peer's next record, to one session.
///
/// `data[0]` picks the session: bit 0 = this side is the initiator (else the responder),
/// bit 1 = post-quantum hybrid, bit 2 = HTTP mode (else stream), bit 3 = a PSK. The rest is
/// up to [`MAX_SESSION_MESSAGES`] plaintexts, each `[length 2, big-endian][plaintext]` (a
/// short tail is taken as one last plaintext). An initiator starts a rekey first, so a
/// `RekeyAck` from the fuzzer reaches the reply parser. Returns how many plaintexts the
/// session accepted.
pub fn session_messages(data: &[u8]) -> usize {
    let Some((&mode, mut rest)) = data.split_first() else {
        return 0;
    };
    let role = if mode & 1 != 0 { Role::Initiator } else { Role::Responder };
    let pq = mode & 2 != 0;
    let mode_kind = if mode & 4 != 0 { Mode::Http } else { Mode::Stream };
    let psk = if mode & 8 != 0 { Psk::new(FUZZ_PSK.to_vec()).ok() } else { None };
    let now = Instant::now();
    let est = Established {
        keys: SessionKeys {
            alice_to_bob: SecretKey::new(FUZZ_KEY_ALICE_TO_BOB),
            bob_to_alice: SecretKey::new(FUZZ_KEY_BOB_TO_ALICE),
        },
        session_id: [0x5E; 16],
        role,
        pq,
    };
    let mut session = Session::new(est, mode_kind, Config::new(psk, pq), now);
    let peer_key = match role {
        Role::Initiator => FUZZ_KEY_BOB_TO_ALICE,
        Role::Responder => FUZZ_KEY_ALICE_TO_BOB,
    };
    let mut peer = SendChain::new(SecretKey::new(peer_key), role.recv_direction(), mode_kind.endpoint());
    if role == Role::Initiator {
        // The rekey record itself goes nowhere: only the state (a pending rekey) matters.
        let _ = session.start_rekey(now);
    }
    let mut accepted = 0;
    for _ in 0..MAX_SESSION_MESSAGES {
        if rest.is_empty() {
            break;
        }
        let (pt, tail) = match rest {
            [hi, lo, tail @ ..] => {
                let len = usize::from(u16::from_be_bytes([*hi, *lo]));
                tail.split_at(len.min(tail.len()))
            }
            short => (short, &[][..]),
        };
        rest = tail;
        let Ok(rec) = peer.seal(pt) else {
            break;
        };
        if session.handle_record(&rec, now).is_ok() {
            accepted += 1;
        }
    }
    accepted
}

/// The entry points reach the parsers they name (genuine input is accepted, broken input
/// refused) and never panic on arbitrary bytes.
#[cfg(test)]
mod tests {
    use crate::fuzz;
    use crate::handshake::{respond, HandshakeConfig, Initiator};
    use crate::message::{header, Kind};
    use crate::pq::EK_LEN;
    use crate::ChannelError;
    use proptest::prelude::*;

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
        for cfg in [HandshakeConfig::default(), HandshakeConfig { psk: crate::Psk::new(vec![1; 16]).ok(), pq: false }] {
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
}
