//! The sans-IO session's `poll_timeout` (the next instant its timers need a `poll`) and
//! randomness as a parameter (a seeded RNG makes a handshake and its records reproducible).

use std::time::{Duration, Instant};

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

use raida_channel::handshake::{respond, respond_with_rng, Initiator};
use raida_channel::session::{Config, Event, Mode};
use raida_channel::{ChannelError, Psk, Session};

const NS: Duration = Duration::from_nanos(1);

fn sessions(mode: Mode, c: Config, now: Instant) -> (Session, Session) {
    let hs = Initiator::new(&c.handshake);
    let (reply, est_b) = respond(hs.hello(), &c.handshake).expect("genuine hello");
    let est_a = hs.finish(&reply).expect("genuine reply");
    (Session::new(est_a, mode, c.clone(), now), Session::new(est_b, mode, c, now))
}

#[test]
fn poll_timeout_names_the_next_keepalive_and_idle_deadline() {
    let now = Instant::now();
    let (mut a, mut b) = sessions(Mode::Stream, Config::default(), now);
    // Nothing sent yet: the keepalive (15 s) comes before the idle timeout (60 s).
    let ka = now + Duration::from_secs(15);
    assert_eq!(a.poll_timeout(), Some(ka));
    assert!(a.poll(ka - NS).unwrap().is_empty());
    let ping = a.poll(ka).unwrap();
    assert_eq!(ping.len(), 1);
    assert_eq!(b.handle_record(&ping[0], ka).unwrap().event, Event::None);
    // The ping re-armed the keepalive; the idle deadline is unchanged (nothing received).
    assert_eq!(a.poll_timeout(), Some(ka + Duration::from_secs(15)));
    let (_c, mut d) =
        sessions(Mode::Stream, Config { keepalive_interval: Duration::from_secs(3600), ..Config::default() }, now);
    let idle = now + Duration::from_secs(60) + NS;
    assert_eq!(d.poll_timeout(), Some(idle));
    assert!(d.poll(idle - NS).unwrap().is_empty());
    assert!(matches!(d.poll(idle), Err(ChannelError::Timeout)));
}

#[test]
fn poll_timeout_of_a_pending_rekey_and_of_a_closed_session() {
    let now = Instant::now();
    let (mut a, mut b) = sessions(Mode::Stream, Config::default(), now);
    a.start_rekey(now).unwrap();
    // No keepalive while the rekey is pending: only the 32 s answer deadline.
    let overdue = now + Duration::from_secs(32) + NS;
    assert_eq!(a.poll_timeout(), Some(overdue));
    assert!(a.poll(overdue - NS).unwrap().is_empty());
    assert!(matches!(a.poll(overdue), Err(ChannelError::Timeout)));
    // A shutdown waits at most 32 s for its acknowledgement; closed, no timer is left.
    b.begin_shutdown(now).unwrap();
    assert_eq!(b.poll_timeout(), Some(overdue));
    let (mut e, mut f) = sessions(Mode::Stream, Config::default(), now);
    let s = e.begin_shutdown(now).unwrap();
    let ack = f.handle_record(&s, now).unwrap().replies.remove(0);
    assert_eq!(f.poll_timeout(), None);
    e.handle_record(&ack, now).unwrap();
    assert_eq!(e.poll_timeout(), None);
}

#[test]
fn poll_timeout_is_due_at_once_when_the_message_count_calls_for_a_rekey() {
    let now = Instant::now();
    let c = Config { rekey_after_messages: 3, ..Config::default() };
    let (mut a, mut b) = sessions(Mode::Stream, c, now);
    for _ in 0..3 {
        let r = a.seal_data(b"x", now).unwrap();
        b.handle_record(&r, now).unwrap();
    }
    assert!(a.poll_timeout().is_some_and(|t| t <= now));
    let rk = a.poll(now).unwrap();
    assert_eq!(rk.len(), 1);
    let out = b.handle_record(&rk[0], now).unwrap();
    assert_eq!(out.event, Event::Rekeyed(2));
    assert_eq!(a.handle_record(&out.replies[0], now).unwrap().event, Event::Rekeyed(2));
    assert!(a.poll_timeout().is_some_and(|t| t > now));
}

#[test]
fn the_http_responder_only_waits_for_its_idle_timeout() {
    let now = Instant::now();
    let (_a, mut b) = sessions(Mode::Http, Config::default(), now);
    let idle = now + Duration::from_secs(60) + NS;
    assert_eq!(b.poll_timeout(), Some(idle));
    assert!(b.poll(idle - NS).unwrap().is_empty());
}

/// Everything both sides put on the wire for one seed: hello, reply, key confirmations,
/// data both ways, a rekey and data under the new keys.
fn transcript(seed: u64, psk: Option<&[u8]>) -> Vec<Vec<u8>> {
    let now = Instant::now();
    let c = Config::new(psk.map(|p| Psk::new(p.to_vec()).expect("test psk")), false);
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let hs = Initiator::with_rng(&c.handshake, &mut rng);
    let hello = hs.hello().to_vec();
    let (reply, est_b) = respond_with_rng(&hello, &c.handshake, &mut rng).expect("genuine hello");
    let est_a = hs.finish(&reply).expect("genuine reply");
    let seeded = |n: u64| Box::new(ChaCha20Rng::seed_from_u64(seed ^ n));
    let mut a = Session::with_rng(est_a, Mode::Stream, c.clone(), now, seeded(1));
    let mut b = Session::with_rng(est_b, Mode::Stream, c, now, seeded(2));
    let mut wire = vec![hello, reply, a.session_id().to_vec()];
    wire.push(a.seal_confirm(now).unwrap());
    wire.push(b.seal_confirm(now).unwrap());
    wire.push(a.seal_data(b"to bob", now).unwrap());
    wire.push(b.seal_data(b"to alice", now).unwrap());
    let rekey = a.start_rekey(now).unwrap();
    let out = b.handle_record(&rekey, now).unwrap();
    assert_eq!(out.event, Event::Rekeyed(2));
    assert_eq!(a.handle_record(&out.replies[0], now).unwrap().event, Event::Rekeyed(2));
    wire.push(rekey);
    wire.extend(out.replies);
    let after = a.seal_data(b"epoch 2", now).unwrap();
    assert_eq!(b.handle_record(&after, now).unwrap().event, Event::Data(b"epoch 2".to_vec()));
    wire.push(after);
    wire
}

#[test]
fn a_seeded_handshake_and_its_records_are_deterministic() {
    for psk in [None, Some(&[7u8; 32][..])] {
        let first = transcript(42, psk);
        assert_eq!(first, transcript(42, psk), "same seed, same bytes");
        let other = transcript(43, psk);
        for (x, y) in first.iter().zip(&other) {
            assert_ne!(x, y, "another seed changes every message");
        }
    }
}
