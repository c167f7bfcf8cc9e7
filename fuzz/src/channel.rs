//! Harnesses over the secure channel (raida-channel), through its public API only:
//!
//! * `channel_handshake`: hello and reply parsing (`handshake::respond`,
//!   `Initiator::finish`) in all four modes (PSK on/off × ML-KEM on/off), with raw bytes
//!   or messages assembled from real keys and then tampered; and the stream framing
//!   (`transport::frame::read_frame`).
//! * `channel_session`: a `Session` (the victim) against a peer the harness plays with the
//!   public key-chain types (`SendChain`, `RecvWindow`): the peer seals any inner message
//!   (any kind byte, id, payload) so that the record layer is passed and the message
//!   decoder and the state machine are reached; it also delivers raw, tampered, replayed,
//!   reordered and skipped records, runs rekeys both ways (with honest or tampered
//!   handshake messages inside), requests, pings, shutdowns and the timers.
//!
//! Checked: an honest handshake agrees on the keys; while peer and victim share keys,
//! every record the victim emits opens at the peer and no freshly sealed record of the
//! peer is refused by the record layer.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use raida_channel::chain::{SecretKey, SendChain};
use raida_channel::handshake::{self, Established, HandshakeConfig, Initiator, SessionKeys, MAGIC, VERSION};
use raida_channel::message::{self, Kind, INNER_HEADER};
use raida_channel::pq;
use raida_channel::session::Mode;
use raida_channel::transport::frame::{read_frame, MAX_HANDSHAKE_FRAME};
use raida_channel::window::RecvWindow;
use raida_channel::{ChannelError, Config, Psk, Role, Session};

use super::common::{debug, Input};

const PSK: [u8; 32] = [0x50; 32];

fn handshake_config(flags: u8) -> HandshakeConfig {
    HandshakeConfig { psk: (flags & 1 != 0).then(|| Psk::new(PSK.to_vec()).expect("psk")), pq: flags & 2 != 0 }
}

fn secret(b: [u8; 32]) -> SecretKey {
    SecretKey::new(b)
}

thread_local! {
    static RT: tokio::runtime::Runtime =
        tokio::runtime::Builder::new_current_thread().build().expect("tokio runtime");
}

/// Hello / reply bytes: raw, or `"RCH1" | version | flags | public | extra` with each
/// field chosen by the input (real keys by default).
fn handshake_message(inp: &mut Input, real: &[u8], extra_len: usize) -> Vec<u8> {
    let mode = inp.u8();
    if mode & 3 == 3 {
        return inp.sized(1400).to_vec();
    }
    let mut m = real.to_vec();
    if mode & 4 != 0 && m.len() > 5 {
        m[5] = inp.u8();
    }
    if mode & 8 != 0 && m.len() >= 38 {
        // Another X25519 public key (low-order points included when the input says so).
        let p: [u8; 32] = inp.array();
        m[6..38].copy_from_slice(&p);
    }
    if mode & 16 != 0 && m.len() >= 38 + extra_len && extra_len > 0 {
        // Another ML-KEM encapsulation key / ciphertext: any bytes of the right length.
        let fill = inp.u8();
        for (i, b) in m[38..38 + extra_len].iter_mut().enumerate() {
            *b = fill.wrapping_add(i as u8).wrapping_mul(0x1d) ^ inp.u8();
        }
    }
    if mode & 32 != 0 {
        super::common::tamper(&mut m, inp);
    }
    if mode & 64 != 0 && m.len() > 4 {
        m[..4].copy_from_slice(MAGIC);
        m[4] = VERSION;
    }
    m
}

fn same_keys(a: &SessionKeys, b: &SessionKeys) -> bool {
    a.alice_to_bob[..] == b.alice_to_bob[..] && a.bob_to_alice[..] == b.bob_to_alice[..]
}

/// Target `channel_handshake`.
pub fn channel_handshake(data: &[u8]) {
    let mut inp = Input::new(data);
    let sel = inp.u8();
    let cfg = handshake_config(sel >> 2);
    match sel % 4 {
        // The responder parses a hello.
        0 => {
            let other = handshake_config(inp.u8());
            let init = Initiator::new(&other);
            let hello = handshake_message(&mut inp, init.hello(), pq::EK_LEN);
            let honest = hello == init.hello() && other.psk.is_some() == cfg.psk.is_some() && other.pq == cfg.pq;
            match handshake::respond(&hello, &cfg) {
                Ok((reply, est)) => {
                    assert_eq!(est.role, Role::Responder);
                    assert_eq!(reply.len(), 38 + if cfg.pq { pq::CT_LEN } else { 0 });
                    if honest {
                        let mine = init.finish(&reply).expect("honest handshake completes");
                        assert!(same_keys(&mine.keys, &est.keys), "honest handshake disagrees on keys");
                        assert_eq!(mine.session_id, est.session_id);
                    }
                }
                Err(e) => assert!(!honest, "honest hello refused: {e}"),
            }
        }
        // The initiator parses a reply.
        1 => {
            let init = Initiator::new(&cfg);
            let responder_cfg = if inp.bool() { cfg.clone() } else { handshake_config(inp.u8()) };
            let real = match handshake::respond(init.hello(), &responder_cfg) {
                Ok((reply, _)) => reply,
                Err(_) => Vec::new(),
            };
            let reply = handshake_message(&mut inp, &real, pq::CT_LEN);
            let _ = init.finish(&reply);
        }
        // Stream frames (handshake bound, then record bound).
        2 => {
            let max = if inp.bool() { MAX_HANDSHAKE_FRAME } else { inp.u16() as usize * 64 };
            let mut stream = inp.rest();
            RT.with(|rt| {
                rt.block_on(async {
                    for _ in 0..64 {
                        let before = stream.len();
                        match read_frame(&mut stream, max).await {
                            Ok(Some(frame)) => {
                                assert!(frame.len() <= max);
                                assert_eq!(before - stream.len(), 4 + frame.len());
                            }
                            Ok(None) => break,
                            Err(_) => break,
                        }
                    }
                })
            });
        }
        // Raw bytes to both parsers, and the record / message decoders.
        _ => {
            let bytes = inp.rest();
            let _ = handshake::respond(bytes, &cfg);
            let _ = Initiator::new(&cfg).finish(bytes);
            let _ = raida_channel::record::record_seq(bytes);
            let _ = raida_channel::record::open(&[7; 32], bytes, raida_channel::Direction::AliceToBob, "stream");
            let _ = message::decode(bytes);
        }
    }
}

/// The peer the harness plays: it seals with the chain of its send direction and opens
/// the victim's records with the window of its receive direction.
struct Peer {
    role: Role,
    endpoint: &'static str,
    send: SendChain,
    recv: RecvWindow,
    /// Peer and victim hold the same keys (no tampered handshake was accepted).
    synced: bool,
    /// The epoch of the peer's keys (1 after the handshake, +1 per rekey).
    epoch: u32,
}

impl Peer {
    fn new(role: Role, keys: &SessionKeys, endpoint: &'static str) -> Peer {
        let (send, recv) = match role {
            Role::Initiator => (&keys.alice_to_bob, &keys.bob_to_alice),
            Role::Responder => (&keys.bob_to_alice, &keys.alice_to_bob),
        };
        Peer {
            role,
            endpoint,
            send: SendChain::new(secret(**send), role.send_direction(), endpoint),
            recv: RecvWindow::new(secret(**recv), role.recv_direction(), endpoint),
            synced: true,
            epoch: 1,
        }
    }

    fn install(&mut self, est: &Established) {
        let keys = Peer::new(self.role, &est.keys, self.endpoint);
        self.send = keys.send;
        self.recv = keys.recv;
        self.epoch += 1;
    }

    fn seal(&mut self, kind: u8, id: u64, payload: &[u8]) -> Option<Vec<u8>> {
        let mut h = [0u8; INNER_HEADER];
        h[0] = kind;
        h[1..].copy_from_slice(&id.to_be_bytes());
        self.send.seal_parts(&[&h, payload]).ok()
    }

    /// Opens a record of the victim; while in sync it must open.
    fn open(&mut self, rec: &[u8]) -> Option<(Kind, u64, Vec<u8>)> {
        match self.recv.open(rec) {
            Ok((_, pt)) => {
                let (kind, id) = message::decode(&pt).expect("the victim seals well-formed messages");
                Some((kind, id, pt[INNER_HEADER..].to_vec()))
            }
            Err(e) => {
                assert!(!self.synced, "a record of the victim does not open at the peer: {e}");
                None
            }
        }
    }
}

struct Conversation {
    victim: Session,
    peer: Peer,
    cfg: HandshakeConfig,
    start: Instant,
    now: Duration,
    /// Records sealed by the peer, kept for replays and out-of-order delivery.
    kept: Vec<Vec<u8>>,
    /// Request ids the victim sent (the peer may answer them).
    requests: Vec<u64>,
    /// A rekey the peer started (peer = initiator): its handshake state.
    peer_rekey: Option<Initiator>,
    /// The victim asked for a rekey (responder) or started one (initiator) with this hello.
    victim_hello: Option<Vec<u8>>,
}

impl Conversation {
    fn at(&self) -> Instant {
        self.start + self.now
    }

    /// Delivers one record to the victim and handles what comes back.
    fn deliver(&mut self, rec: &[u8], fresh: bool) -> Result<(), ChannelError> {
        let was_closed = self.victim.is_closed();
        let at = self.at();
        let r = match self.victim.handle_record(rec, at) {
            Ok(out) => {
                if debug() {
                    eprintln!("victim: {:?}, {} replies, epoch {}", out.event, out.replies.len(), self.victim.epoch());
                }
                for r in &out.replies {
                    self.victim_record(r);
                }
                Ok(())
            }
            Err(e) => {
                if debug() {
                    eprintln!("victim refused: {e}");
                }
                if fresh && self.peer.synced && !was_closed {
                    assert!(!e.is_record_rejection(), "a fresh record of the peer was refused: {e}");
                }
                Err(e)
            }
        };
        self.check_epochs();
        r
    }

    /// A rekey the harness did not follow (e.g. a handshake message the fuzzer crafted
    /// inside an ordinary record) leaves the peer behind: stop expecting records to open.
    fn check_epochs(&mut self) {
        if self.victim.epoch() != self.peer.epoch {
            self.peer.synced = false;
        }
    }

    /// A record the victim sent: the peer opens it and reacts to rekey traffic.
    fn victim_record(&mut self, rec: &[u8]) {
        let Some((kind, _id, payload)) = self.peer.open(rec) else { return };
        match kind {
            Kind::RekeyAck => {
                if let Some(hs) = self.peer_rekey.take() {
                    match hs.finish(&payload) {
                        Ok(est) => self.peer.install(&est),
                        Err(_) => self.peer.synced = false,
                    }
                }
            }
            Kind::Rekey => self.victim_hello = Some(payload),
            _ => {}
        }
    }
}

/// Target `channel_session`.
pub fn channel_session(data: &[u8]) {
    let mut inp = Input::new(data);
    let sel = inp.u8();
    let victim_role = if sel & 1 == 0 { Role::Responder } else { Role::Initiator };
    let mode = if sel & 2 == 0 { Mode::Stream } else { Mode::Http };
    let hs_cfg = handshake_config(sel >> 2);
    let mut cfg = Config::new(hs_cfg.psk.clone(), hs_cfg.pq);
    cfg.rekey_after_messages = 1 + inp.u8() as u64 % 64;
    let keys = || SessionKeys { alice_to_bob: secret([0xA2; 32]), bob_to_alice: secret([0xB2; 32]) };
    let session_id = [0x51; 16];
    let est = Established { keys: keys(), session_id, role: victim_role, pq: hs_cfg.pq };
    let start = Instant::now();
    let peer_role = match victim_role {
        Role::Initiator => Role::Responder,
        Role::Responder => Role::Initiator,
    };
    let mut c = Conversation {
        victim: Session::new(est, mode, cfg, start),
        peer: Peer::new(peer_role, &keys(), mode.endpoint()),
        cfg: hs_cfg,
        start,
        now: Duration::ZERO,
        kept: Vec::new(),
        requests: Vec::new(),
        peer_rekey: None,
        victim_hello: None,
    };
    for _ in 0..48 {
        if inp.is_empty() {
            break;
        }
        let op = inp.u8();
        match op % 12 {
            // The peer seals any inner message.
            0..=2 => {
                let k = inp.u8();
                let kind = if k < 0xF0 { k % 12 + 1 } else { inp.u8() };
                let id = match inp.u8() % 4 {
                    0 if !c.requests.is_empty() => c.requests[inp.u8() as usize % c.requests.len()],
                    1 => inp.u64(),
                    _ => inp.u8() as u64,
                };
                let payload = if kind == Kind::Confirm as u8 && inp.bool() {
                    session_id.to_vec()
                } else {
                    inp.sized(256).to_vec()
                };
                if let Some(rec) = c.peer.seal(kind, id, &payload) {
                    if c.kept.len() < 16 {
                        c.kept.push(rec.clone());
                    }
                    let _ = c.deliver(&rec, true);
                }
            }
            // Raw bytes.
            3 => {
                let raw = inp.sized(300).to_vec();
                let _ = c.deliver(&raw, false);
            }
            // A sealed record, tampered.
            4 => {
                let kind = inp.u8() % 12 + 1;
                if let Some(mut rec) = c.peer.seal(kind, 0, inp.sized(64)) {
                    super::common::tamper(&mut rec, &mut inp);
                    let _ = c.deliver(&rec, false);
                }
            }
            // A replay or late delivery of a kept record.
            5 => {
                if !c.kept.is_empty() {
                    let rec = c.kept[inp.u8() as usize % c.kept.len()].clone();
                    let _ = c.deliver(&rec, false);
                }
            }
            // Records the peer seals but does not deliver (yet): a gap.
            6 => {
                for _ in 0..inp.u8() % 6 + 1 {
                    if let Some(rec) = c.peer.seal(Kind::Data as u8, 0, b"later") {
                        if c.kept.len() < 16 {
                            c.kept.push(rec);
                        }
                    }
                }
            }
            // The victim sends a request / data / ping.
            7 => {
                let at = c.at();
                let data = inp.sized(64).to_vec();
                let rec = match inp.u8() % 3 {
                    0 => c.victim.seal_request(&data, at).map(|(id, r)| {
                        c.requests.push(id);
                        r
                    }),
                    1 => c.victim.seal_data(&data, at),
                    _ => c.victim.seal_ping(at),
                };
                if let Ok(r) = rec {
                    c.victim_record(&r);
                }
            }
            // The victim starts (initiator) or asks for (responder) a rekey.
            8 => {
                let at = c.at();
                if let Ok(r) = c.victim.start_rekey(at) {
                    c.victim_record(&r);
                }
                // Peer = responder: answer the victim's hello (honestly, or tampered).
                if let Some(hello) = c.victim_hello.take() {
                    let (real, est) = match handshake::respond(&hello, &c.cfg) {
                        Ok(x) => x,
                        Err(_) => continue,
                    };
                    let reply = if !inp.u8().is_multiple_of(4) {
                        real.clone()
                    } else {
                        handshake_message(&mut inp, &real, pq::CT_LEN)
                    };
                    let Some(rec) = c.peer.seal(Kind::RekeyAck as u8, 0, &reply) else { continue };
                    let before = c.victim.epoch();
                    let _ = c.victim.handle_record(&rec, c.at());
                    if c.victim.epoch() != before {
                        c.peer.install(&est);
                        // A tampered reply the victim finished with gives it other keys.
                        if reply != real {
                            c.peer.synced = false;
                        }
                    }
                    c.check_epochs();
                }
            }
            // The peer (initiator) starts a rekey; its hello honest or tampered.
            9 => {
                if c.peer.role == Role::Initiator && c.peer_rekey.is_none() {
                    let init = Initiator::new(&c.cfg);
                    let real = init.hello().to_vec();
                    let hello = if !inp.u8().is_multiple_of(4) {
                        real.clone()
                    } else {
                        handshake_message(&mut inp, &real, pq::EK_LEN)
                    };
                    c.peer_rekey = Some(init);
                    let before = c.peer.epoch;
                    if let Some(rec) = c.peer.seal(Kind::Rekey as u8, 0, &hello) {
                        // The victim answers with RekeyAck: the peer finishes in victim_record.
                        let _ = c.deliver(&rec, true);
                    }
                    if hello != real && c.peer.epoch != before {
                        // Both switched, but the victim answered a hello the peer did not send.
                        c.peer.synced = false;
                    }
                    c.peer_rekey = None;
                }
            }
            // Time passes; the victim's timers run.
            10 => {
                c.now += Duration::from_millis(inp.u16() as u64 * 100);
                let at = c.at();
                if let Ok(recs) = c.victim.poll(at) {
                    for r in recs {
                        c.victim_record(&r);
                    }
                }
            }
            // The victim shuts down or ends its data.
            _ => {
                let at = c.at();
                let rec = if inp.bool() { c.victim.begin_shutdown(at) } else { c.victim.seal_end(at) };
                if let Ok(r) = rec {
                    c.victim_record(&r);
                }
            }
        }
    }
}
