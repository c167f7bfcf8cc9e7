//! The sans-IO session: replay, reorder, tampering, truncation, PSK, PQ, rekey, keepalive,
//! timeouts, shutdown.

use std::time::{Duration, Instant};

use raida_channel::chain::{SecretKey, SendChain, SEQ_LIMIT};
use raida_channel::handshake::{respond, HandshakeConfig, Initiator};
use raida_channel::record::{Direction, STREAM_ENDPOINT};
use raida_channel::session::{Config, Event, Mode};
use raida_channel::{ChannelError, Psk, Session};

fn cfg(psk: Option<&[u8]>, pq: bool) -> Config {
    Config::new(psk.map(|p| Psk::new(p.to_vec()).expect("test psk")), pq)
}

fn pair_with(a: Config, b: Config, now: Instant) -> Result<(Session, Session), ChannelError> {
    let hs = Initiator::new(&a.handshake);
    let (reply, est_b) = respond(hs.hello(), &b.handshake)?;
    let est_a = hs.finish(&reply)?;
    let mut alice = Session::new(est_a, Mode::Stream, a, now);
    let mut bob = Session::new(est_b, Mode::Stream, b, now);
    // Key confirmation both ways.
    let ca = alice.seal_confirm(now)?;
    let cb = bob.seal_confirm(now)?;
    assert_eq!(bob.handle_record(&ca, now)?.event, Event::Confirmed);
    assert_eq!(alice.handle_record(&cb, now)?.event, Event::Confirmed);
    Ok((alice, bob))
}

fn pair() -> (Session, Session, Instant) {
    let now = Instant::now();
    let (a, b) = pair_with(Config::default(), Config::default(), now).expect("pair");
    (a, b, now)
}

fn data(ev: Event) -> Vec<u8> {
    match ev {
        Event::Data(d) => d,
        other => panic!("expected data, got {other:?}"),
    }
}

#[test]
fn data_both_ways_and_session_id() {
    let (mut a, mut b, now) = pair();
    assert_eq!(a.session_id(), b.session_id());
    for i in 0..20u32 {
        let r = a.seal_data(&i.to_be_bytes(), now).unwrap();
        assert_eq!(data(b.handle_record(&r, now).unwrap().event), i.to_be_bytes());
        let r = b.seal_data(b"pong", now).unwrap();
        assert_eq!(data(a.handle_record(&r, now).unwrap().event), b"pong");
    }
    assert!(a.check_session_id(&b.session_id()).is_ok());
    assert!(matches!(a.check_session_id(&[0u8; 16]), Err(ChannelError::WrongSession)));
}

#[test]
fn request_response_correlation() {
    let (mut a, mut b, now) = pair();
    let (id1, r1) = a.seal_request(b"one", now).unwrap();
    let (id2, r2) = a.seal_request(b"two", now).unwrap();
    assert_ne!(id1, id2);
    // Answer in the opposite order; each response matches its request.
    let mut reqs = vec![];
    for r in [r1, r2] {
        match b.handle_record(&r, now).unwrap().event {
            Event::Request { id, data } => reqs.push((id, data)),
            other => panic!("{other:?}"),
        }
    }
    for (id, d) in reqs.into_iter().rev() {
        let resp = b.seal_response(id, &[d.as_slice(), b"!"].concat(), now).unwrap();
        match a.handle_record(&resp, now).unwrap().event {
            Event::Response { id: rid, data } => {
                assert_eq!(rid, id);
                assert_eq!(data, if id == id1 { b"one!".to_vec() } else { b"two!".to_vec() });
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(a.outstanding_requests(), 0);
    // A response nobody asked for is rejected (error value, session goes on).
    let bogus = b.seal_response(999, b"x", now).unwrap();
    assert!(matches!(a.handle_record(&bogus, now), Err(ChannelError::Unexpected(_))));
    let r = b.seal_data(b"still fine", now).unwrap();
    assert_eq!(data(a.handle_record(&r, now).unwrap().event), b"still fine");
}

#[test]
fn replay_is_rejected_and_harmless() {
    let (mut a, mut b, now) = pair();
    let r = a.seal_data(b"once", now).unwrap();
    assert_eq!(data(b.handle_record(&r, now).unwrap().event), b"once");
    let before = b.rejected();
    assert!(matches!(b.handle_record(&r, now), Err(ChannelError::Replay { .. })));
    assert_eq!(b.rejected(), before + 1);
    let r2 = a.seal_data(b"twice", now).unwrap();
    assert_eq!(data(b.handle_record(&r2, now).unwrap().event), b"twice");
    assert!(matches!(b.handle_record(&r2, now), Err(ChannelError::Replay { .. })));
}

#[test]
fn reorder_within_and_beyond_the_window() {
    let (mut a, mut b, now) = pair();
    // Record 1 was the confirmation; data records are 2..=9.
    let recs: Vec<Vec<u8>> = (0..8u8).map(|i| a.seal_data(&[i], now).unwrap()).collect();
    // Within the window: 2, 4, 3 (reordered), 6, 5.
    for i in [0usize, 2, 1, 4, 3] {
        assert_eq!(data(b.handle_record(&recs[i], now).unwrap().event), [i as u8]);
    }
    // Jump to 9 (index 7): 7 and 8 are within the window, 6 (index 4) already accepted.
    assert_eq!(data(b.handle_record(&recs[7], now).unwrap().event), [7]);
    assert_eq!(data(b.handle_record(&recs[5], now).unwrap().event), [5]);
    assert!(matches!(b.handle_record(&recs[4], now), Err(ChannelError::TooOld { .. })));
    assert_eq!(data(b.handle_record(&recs[6], now).unwrap().event), [6]);
    assert!(matches!(b.handle_record(&recs[6], now), Err(ChannelError::Replay { .. })));
    // Beyond the window: a record more than 3 behind is refused.
    let more: Vec<Vec<u8>> = (0..5u8).map(|i| a.seal_data(&[100 + i], now).unwrap()).collect();
    assert_eq!(data(b.handle_record(&more[4], now).unwrap().event), [104]);
    assert!(matches!(b.handle_record(&more[0], now), Err(ChannelError::TooOld { .. })));
    assert!(matches!(b.handle_record(&more[1], now), Err(ChannelError::TooOld { .. })));
    assert_eq!(data(b.handle_record(&more[2], now).unwrap().event), [102]);
}

#[test]
fn gap_over_1000_is_refused() {
    let (mut a, mut b, now) = pair();
    let mut last = Vec::new();
    for _ in 0..1002 {
        last = a.seal_data(b"x", now).unwrap();
    }
    // Highest accepted is 1 (confirmation): record 1003 needs 1,001 steps.
    assert!(matches!(b.handle_record(&last, now), Err(ChannelError::Gap { .. })));
    let next = a.seal_data(b"y", now).unwrap();
    assert!(matches!(b.handle_record(&next, now), Err(ChannelError::Gap { .. })));
}

/// Every bit of a sealed record (all 8 of every byte), flipped alone, makes the record
/// rejected.
///
/// Seen failing with a tag check blind to one bit (bit 0x04 of the tag's last byte, which
/// the earlier 0x01 / 0x80 flips never touched): 3 of 3 runs ("byte 70 bit 0x4 accepted").
#[test]
fn tampering_anywhere_is_rejected() {
    let (mut a, mut b, now) = pair();
    let r = a.seal_data(b"tamper with me, if you can", now).unwrap();
    for pos in 0..r.len() {
        for bit in (0..8).map(|i| 1u8 << i) {
            let mut t = r.clone();
            t[pos] ^= bit;
            let res = b.handle_record(&t, now);
            assert!(res.is_err(), "byte {pos} bit {bit:#x} accepted");
            assert!(res.unwrap_err().is_record_rejection());
        }
    }
    // The genuine record still opens: rejections changed nothing.
    assert_eq!(data(b.handle_record(&r, now).unwrap().event), b"tamper with me, if you can");
}

#[test]
fn truncation_is_rejected() {
    let (mut a, mut b, now) = pair();
    let r = a.seal_data(b"0123456789", now).unwrap();
    for len in 0..r.len() {
        let res = b.handle_record(&r[..len], now);
        match res {
            Err(ChannelError::Truncated(n)) => assert!(n < 36 && n == len),
            Err(ChannelError::Auth { .. }) => assert!(len >= 36),
            other => panic!("length {len}: {other:?}"),
        }
    }
    let mut longer = r.clone();
    longer.push(0);
    assert!(b.handle_record(&longer, now).is_err());
    assert_eq!(data(b.handle_record(&r, now).unwrap().event), b"0123456789");
}

#[test]
fn records_from_another_session_are_rejected() {
    let (mut a, _b, now) = pair();
    let (_a2, mut b2, _) = pair();
    let r = a.seal_data(b"wrong session", now).unwrap();
    assert!(matches!(b2.handle_record(&r, now), Err(ChannelError::Auth { .. })));
}

#[test]
fn psk_good_wrong_short_and_mismatched() {
    let now = Instant::now();
    let k = [7u8; 32];
    let (mut a, mut b) = pair_with(cfg(Some(&k), false), cfg(Some(&k), false), now).unwrap();
    let r = a.seal_data(b"with psk", now).unwrap();
    assert_eq!(data(b.handle_record(&r, now).unwrap().event), b"with psk");
    // Wrong PSK: the confirmation does not open.
    let hs = Initiator::new(&cfg(Some(&[1u8; 16]), false).handshake);
    let bcfg = cfg(Some(&[2u8; 16]), false);
    let (reply, est_b) = respond(hs.hello(), &bcfg.handshake).unwrap();
    let est_a = hs.finish(&reply).unwrap();
    let mut a = Session::new(est_a, Mode::Stream, Config::default(), now);
    let mut b = Session::new(est_b, Mode::Stream, bcfg, now);
    let c = a.seal_confirm(now).unwrap();
    assert!(matches!(b.handle_record(&c, now), Err(ChannelError::Auth { .. })));
    // Too short.
    assert!(matches!(Psk::new(vec![0u8; 15]), Err(ChannelError::PskTooShort(15))));
    assert!(Psk::new(vec![]).is_err());
    // One side with, one without: refused in the handshake.
    assert!(matches!(pair_with(cfg(Some(&k), false), cfg(None, false), now), Err(ChannelError::ModeMismatch(_))));
    assert!(matches!(pair_with(cfg(None, false), cfg(Some(&k), false), now), Err(ChannelError::ModeMismatch(_))));
    // Never printed.
    let p = Psk::new(vec![0xAB; 20]).unwrap();
    assert!(!format!("{p:?}").contains("ab"));
}

#[test]
fn handshake_rejects_garbage_and_low_order_points() {
    let c = HandshakeConfig::default();
    assert!(respond(b"", &c).is_err());
    assert!(respond(b"RCH1\x02\x00", &c).is_err());
    let hs = Initiator::new(&c);
    let mut hello = hs.hello().to_vec();
    hello.push(0);
    assert!(matches!(respond(&hello, &c), Err(ChannelError::BadHandshake(_))));
    let mut zero = hs.hello().to_vec();
    zero[6..38].fill(0);
    assert!(matches!(respond(&zero, &c), Err(ChannelError::NonContributory)));
    // A tampered reply leads to different keys: the confirmation fails.
    let (mut reply, _) = respond(hs.hello(), &c).unwrap();
    reply[10] ^= 1;
    let now = Instant::now();
    let est = hs.finish(&reply);
    if let Ok(est) = est {
        let mut a = Session::new(est, Mode::Stream, Config::default(), now);
        let hs2 = Initiator::new(&c);
        let (_, est_b) = respond(hs2.hello(), &c).unwrap();
        let mut b = Session::new(est_b, Mode::Stream, Config::default(), now);
        let rec = a.seal_confirm(now).unwrap();
        assert!(b.handle_record(&rec, now).is_err());
    }
}

#[test]
fn post_quantum_hybrid() {
    let now = Instant::now();
    let k = [9u8; 16];
    for psk in [None, Some(&k[..])] {
        let (mut a, mut b) = pair_with(cfg(psk, true), cfg(psk, true), now).unwrap();
        let r = a.seal_data(b"pq", now).unwrap();
        assert_eq!(data(b.handle_record(&r, now).unwrap().event), b"pq");
        // Rekey keeps the hybrid.
        let rk = a.start_rekey(now).unwrap();
        let out = b.handle_record(&rk, now).unwrap();
        assert_eq!(out.event, Event::Rekeyed(2));
        assert_eq!(a.handle_record(&out.replies[0], now).unwrap().event, Event::Rekeyed(2));
        let r = b.seal_data(b"pq2", now).unwrap();
        assert_eq!(data(a.handle_record(&r, now).unwrap().event), b"pq2");
    }
    assert!(matches!(pair_with(cfg(None, true), cfg(None, false), now), Err(ChannelError::ModeMismatch(_))));
    assert!(matches!(pair_with(cfg(None, false), cfg(None, true), now), Err(ChannelError::ModeMismatch(_))));
    // A corrupted ML-KEM ciphertext gives other keys (implicit rejection): confirmation fails.
    let c = cfg(None, true);
    let hs = Initiator::new(&c.handshake);
    let (mut reply, est_b) = respond(hs.hello(), &c.handshake).unwrap();
    let last = reply.len() - 1;
    reply[last] ^= 1;
    let est_a = hs.finish(&reply).unwrap();
    let mut a = Session::new(est_a, Mode::Stream, c.clone(), now);
    let mut b = Session::new(est_b, Mode::Stream, c, now);
    let rec = a.seal_confirm(now).unwrap();
    assert!(b.handle_record(&rec, now).is_err());
}

/// Delivers everything `from` must send (timers) to `to` and back, until quiet.
fn pump(from: &mut Session, to: &mut Session, recs: Vec<Vec<u8>>, now: Instant) -> Vec<Event> {
    let mut events = vec![];
    let mut queue: Vec<(bool, Vec<u8>)> = recs.into_iter().map(|r| (true, r)).collect();
    while !queue.is_empty() {
        let (fwd, r) = queue.remove(0);
        let out = if fwd { to.handle_record(&r, now) } else { from.handle_record(&r, now) }.unwrap();
        events.push(out.event);
        queue.extend(out.replies.into_iter().map(|x| (!fwd, x)));
    }
    events
}

#[test]
fn automatic_rekey_across_more_than_10000_messages() {
    let (mut a, mut b, now) = pair();
    let mut epochs = vec![1u32];
    let total = 25_000u32;
    for i in 0..total {
        let t = a.poll(now).unwrap();
        let ev = pump(&mut a, &mut b, t, now);
        for e in ev {
            if let Event::Rekeyed(n) = e {
                epochs.push(n);
            }
        }
        let r = a.seal_data(&i.to_be_bytes(), now).unwrap();
        assert_eq!(data(b.handle_record(&r, now).unwrap().event), i.to_be_bytes());
        assert!(a.next_send_seq() <= 10_001);
        if i % 3 == 0 {
            let t = b.poll(now).unwrap();
            pump(&mut b, &mut a, t, now);
            let r = b.seal_data(b"back", now).unwrap();
            assert_eq!(data(a.handle_record(&r, now).unwrap().event), b"back");
        }
    }
    // Rekeys happened on each side at the same epochs; sequence numbers restarted.
    assert_eq!(a.epoch(), b.epoch());
    assert!(a.epoch() >= 3, "epoch {}", a.epoch());
    assert!(a.next_send_seq() < 10_001);
    assert_eq!(b.rejected(), 0);
    assert_eq!(a.rejected(), 0);
    // Old-epoch records do not open any more.
    let (mut a2, mut b2, now2) = pair();
    let old = a2.seal_data(b"old epoch", now2).unwrap();
    let rk = a2.start_rekey(now2).unwrap();
    pump(&mut a2, &mut b2, vec![rk], now2);
    assert_eq!(b2.epoch(), 2);
    assert!(b2.handle_record(&old, now2).is_err());
}

#[test]
fn responder_asks_for_rekey_at_its_limit() {
    let now = Instant::now();
    let c = Config { rekey_after_messages: 50, ..Config::default() };
    let (mut a, mut b) = pair_with(c.clone(), c, now).unwrap();
    for _ in 0..60 {
        let t = b.poll(now).unwrap();
        pump(&mut b, &mut a, t, now);
        let r = b.seal_data(b"from bob", now).unwrap();
        a.handle_record(&r, now).unwrap();
    }
    assert_eq!(a.epoch(), 2);
    assert_eq!(b.epoch(), 2);
}

#[test]
fn time_based_rekey_keepalive_and_idle_timeout() {
    let now = Instant::now();
    let c = Config { idle_timeout: Duration::from_secs(7200), ..Config::default() };
    let (mut a, mut b) = pair_with(c.clone(), c, now).unwrap();
    // Keepalive after 15 s of silence.
    let t1 = now + Duration::from_secs(16);
    let recs = a.poll(t1).unwrap();
    assert_eq!(recs.len(), 1);
    let ev = pump(&mut a, &mut b, recs, t1);
    assert_eq!(ev, vec![Event::None, Event::None]); // ping, pong
    assert!(a.poll(t1).unwrap().is_empty());
    // One hour: rekey (and a ping, since nothing was sent for a while).
    let t2 = now + Duration::from_secs(3601);
    let recs = a.poll(t2).unwrap();
    assert!(!recs.is_empty());
    pump(&mut a, &mut b, recs, t2);
    assert_eq!((a.epoch(), b.epoch()), (2, 2));
    // Idle timeout with the default 60 s.
    let (mut a, _b) = pair_with(Config::default(), Config::default(), now).unwrap();
    assert!(matches!(a.poll(now + Duration::from_secs(61)), Err(ChannelError::Timeout)));
    // A rekey that is never acknowledged times out.
    let (mut a, _b) = pair_with(Config::default(), Config::default(), now).unwrap();
    a.start_rekey(now).unwrap();
    assert!(matches!(a.seal_data(b"x", now), Err(ChannelError::RekeyPending)));
    assert!(matches!(a.poll(now + Duration::from_secs(40)), Err(ChannelError::Timeout)));
}

#[test]
fn sequence_numbers_stop_before_2_pow_63() {
    let k = SecretKey::new([5u8; 32]);
    let mut c = SendChain::starting_at(k, SEQ_LIMIT - 2, Direction::AliceToBob, STREAM_ENDPOINT);
    assert!(c.seal(b"a").is_ok());
    assert!(c.seal(b"b").is_ok());
    assert!(matches!(c.seal(b"c"), Err(ChannelError::SeqExhausted)));
}

#[test]
fn graceful_shutdown() {
    let (mut a, mut b, now) = pair();
    let s = a.begin_shutdown(now).unwrap();
    assert!(matches!(a.seal_data(b"x", now), Err(ChannelError::Closed)));
    let out = b.handle_record(&s, now).unwrap();
    assert_eq!(out.event, Event::PeerShutdown);
    assert!(b.is_closed());
    assert_eq!(a.handle_record(&out.replies[0], now).unwrap().event, Event::Closed);
    assert!(a.is_closed());
    assert!(matches!(b.seal_data(b"x", now), Err(ChannelError::Closed)));
    // Both at once.
    let (mut a, mut b, now) = pair();
    let sa = a.begin_shutdown(now).unwrap();
    let sb = b.begin_shutdown(now).unwrap();
    let oa = b.handle_record(&sa, now).unwrap();
    let ob = a.handle_record(&sb, now).unwrap();
    assert_eq!(a.handle_record(&oa.replies[0], now).unwrap().event, Event::Closed);
    assert_eq!(b.handle_record(&ob.replies[0], now).unwrap().event, Event::Closed);
    // An acknowledgement without a shutdown is refused.
    let (mut a, mut b, now) = pair();
    let (mut a2, mut b2, _) = pair();
    let s = a2.begin_shutdown(now).unwrap();
    let ack = b2.handle_record(&s, now).unwrap().replies.remove(0);
    assert!(a.handle_record(&ack, now).is_err());
    let _ = b.seal_data(b"", now).unwrap();
}
