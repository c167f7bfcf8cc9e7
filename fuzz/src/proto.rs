//! Harnesses over the protocol core (raida-proto): requests the harness encrypts itself (so
//! that CRC, CTR key, GCM tag, freshness and replay are passed and the command parsers
//! behind them are reached), raw requests, TCP framing, command payloads and the client's
//! response verification.
//!
//! The fuzzer's input does not carry packets but *choices*: encryption type, which of a
//! few fixed keys (or an unknown one), header fields, nonce and time, command, plaintext,
//! and tampering applied to the encrypted bytes. A request built without tampering from a
//! known key at a fresh time must validate and decrypt to its plaintext (checked: a
//! harness that silently stopped at the key lookup would otherwise look fine).

#![allow(dead_code)]

use raida_proto::client::{dn_sn_bytes, encode_legacy, encode_modern, HeaderFields, PendingReply, ResponseError};
use raida_proto::codec::{Codec, Reply};
use raida_proto::commands::{
    decrypt_raida_key, echo, encrypt_key, get_key, get_ticket, key_alert, leave_alert, post_key, show_stats,
    take_alerts, validate_ticket, SpecCommands, SPEC_COMMANDS,
};
use raida_proto::consts::{MAX_REQUEST_SIZE, RESPONSE_HEADER_SIZE};
use raida_proto::header::{frame, header_size_for, request_len, Framing, ServerIdentity};
use raida_proto::keys::{Key16, Key32, KeyLookup};
use raida_proto::replay::ReplayMemory;
use raida_proto::response::ReplyContext;
use raida_proto::{validate_request, CoinId, Rejection, Status};

use super::common::{tamper, Input};

/// The server every harness talks to.
pub const SERVER: ServerIdentity = ServerIdentity::new(4, 6);
/// Server time of every harness (Unix seconds).
pub const NOW: u64 = 1_800_000_000;

/// Present coins (DN, SN) and their ANs for this RAIDA.
pub const COINS: [((i8, u32), [u8; 16]); 3] = [((1, 100), [0x11; 16]), ((2, 200), [0x22; 16]), ((-1, 7), [0x33; 16])];
/// The one locker.
pub const LOCKER: [u8; 16] = [0x4c, 0x4f, 0x43, 0x4b, 0x01, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
/// Key tokens (DN 7..11, SN) and their secrets.
pub const TOKENS: [((i8, u32), [u8; 32]); 2] = [((7, 1), [0x77; 32]), ((11, 99), [0x7b; 32])];
/// Pre-shared RAIDA secrets (sender, key id) -> secret.
pub const RAIDA_SECRETS: [((u8, u32), [u8; 32]); 2] = [((3, 42), [0x03; 32]), ((0, 0), [0x00; 32])];

/// The key lookup of [`COINS`], [`LOCKER`], [`TOKENS`] and [`RAIDA_SECRETS`].
pub struct FixedKeys;

impl KeyLookup for FixedKeys {
    fn coin_an(&self, CoinId { dn, sn }: CoinId) -> Option<[u8; 16]> {
        COINS.iter().find(|(c, _)| *c == (dn, sn)).map(|(_, an)| *an)
    }
    fn locker_an(&self, prefix: &[u8; 5]) -> Option<[u8; 16]> {
        (LOCKER[..5] == prefix[..]).then_some(LOCKER)
    }
    fn token_secret(&self, CoinId { dn, sn }: CoinId) -> Option<[u8; 32]> {
        TOKENS.iter().find(|(t, _)| *t == (dn, sn)).map(|(_, s)| *s)
    }
    fn raida_secret(&self, sender: u8, key_id: u32) -> Option<[u8; 32]> {
        RAIDA_SECRETS.iter().find(|(r, _)| *r == (sender, key_id)).map(|(_, s)| *s)
    }
}

/// A deterministic byte source for response nonces (a crash must reproduce).
pub struct CountingRng(pub u64);

impl rand_core::RngCore for CountingRng {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let v = self.next_u64().to_be_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

/// The encryption types a server knows, as the input's low 3 bits choose them (6, 7:
/// any byte from the input).
const ENS: [u8; 6] = [0, 1, 2, 4, 5, 7];

/// Largest plaintext whose body length still fits the 16-bit field (legacy: 16-byte
/// challenge + 2-byte terminator; modern: tag + terminator).
pub const MAX_PLAINTEXT: usize = u16::MAX as usize - 18;

/// The key a request is encrypted with, and how the header names it.
#[derive(Clone)]
enum Chosen {
    None,
    Legacy { key_bytes: [u8; 5], key: Key16 },
    Modern { key_bytes: [u8; 5], second: [u8; 5], key: Key32 },
}

/// Everything about one request except its plaintext: read from the input.
pub struct RequestSpec {
    pub en: u8,
    fields: HeaderFields,
    chosen: Chosen,
    /// Legacy: IV half and challenge randomness.
    nonce8: [u8; 8],
    random12: [u8; 12],
    bad_crc: bool,
    /// Modern: echo, nonce, time.
    echo: [u8; 2],
    nonce: [u8; 12],
    time: u32,
    /// Overwrite the body length field after building.
    length_override: Option<u16>,
    /// Tamper with the built bytes (ops read after the plaintext).
    pub tamper: bool,
    /// A request built as specified must pass validation.
    pub expect_valid: bool,
    pub group: u8,
    pub command: u8,
}

impl RequestSpec {
    /// Header bytes 17-21 as the request names its key (coin, locker prefix, sender + key id).
    pub fn key_bytes(&self) -> [u8; 5] {
        match &self.chosen {
            Chosen::None => [0; 5],
            Chosen::Legacy { key_bytes, .. } | Chosen::Modern { key_bytes, .. } => *key_bytes,
        }
    }
}

/// A built request and what verifies its answer.
pub struct Built {
    pub packet: Vec<u8>,
    pub pending: PendingReply,
    pub plaintext: Vec<u8>,
    /// Untampered, known key, fresh: validation must pass and decrypt to `plaintext`.
    pub expect_valid: bool,
    pub group: u8,
    pub command: u8,
}

fn coin_key16(i: usize) -> ((i8, u32), Key16) {
    let (c, an) = COINS[i % COINS.len()];
    (c, Key16::new(an))
}

impl RequestSpec {
    /// Reads a request's choices. `commands`: the (group, command) pairs to choose from.
    pub fn read(inp: &mut Input, commands: &[(u8, u8)], now: u64) -> RequestSpec {
        let mode = inp.u8();
        let raw_en = mode & 7 >= 6;
        let en = if raw_en { inp.u8() } else { ENS[(mode & 7) as usize] };
        let fuzz_header = mode & 0x08 != 0;
        let tamper = mode & 0x10 != 0;
        let skew = mode & 0x20 != 0;
        let raw_command = mode & 0x40 != 0;
        let override_len = mode & 0x80 != 0;
        let key_choice = inp.u8();
        let (group, command) = if raw_command { (inp.u8(), inp.u8()) } else { inp.pick(commands) };
        let routing = raida_proto::client::Routing::new(SERVER.raida_id, SERVER.coin_id, group, command);
        let mut known = true;
        let chosen = match en {
            1 => {
                if key_choice < 0xF0 {
                    let ((dn, sn), key) = coin_key16(key_choice as usize);
                    Chosen::Legacy { key_bytes: dn_sn_bytes(dn, sn), key }
                } else {
                    known = false;
                    Chosen::Legacy { key_bytes: inp.array(), key: Key16::new(inp.array()) }
                }
            }
            2 => {
                if key_choice < 0xF0 {
                    let mut p = [0u8; 5];
                    p.copy_from_slice(&LOCKER[..5]);
                    Chosen::Legacy { key_bytes: p, key: Key16::new(LOCKER) }
                } else {
                    known = false;
                    let an: [u8; 16] = inp.array();
                    let mut p = [0u8; 5];
                    p.copy_from_slice(&an[..5]);
                    Chosen::Legacy { key_bytes: p, key: Key16::new(an) }
                }
            }
            4 => match key_choice % 6 {
                i @ 0..=2 => {
                    let ((dn, sn), an) = coin_key16(i as usize);
                    Chosen::Modern { key_bytes: dn_sn_bytes(dn, sn), second: [0; 5], key: Key32::sha256_of_an(&an) }
                }
                i @ 3..=4 => {
                    let ((dn, sn), secret) = TOKENS[i as usize - 3];
                    Chosen::Modern { key_bytes: dn_sn_bytes(dn, sn), second: [0; 5], key: Key32::from_secret(secret) }
                }
                _ => {
                    known = false;
                    Chosen::Modern { key_bytes: inp.array(), second: [0; 5], key: Key32::from_secret(inp.array()) }
                }
            },
            5 => {
                let a = key_choice as usize % 4;
                let b = (key_choice as usize / 4) % 4;
                if a < 3 && b < 3 {
                    let (c1, an1) = coin_key16(a);
                    let (c2, an2) = coin_key16(b);
                    match Key32::concat_two_tokens(c1.into(), &an1, c2.into(), &an2) {
                        Ok(key) => {
                            Chosen::Modern { key_bytes: dn_sn_bytes(c1.0, c1.1), second: dn_sn_bytes(c2.0, c2.1), key }
                        }
                        // One coin named twice: the server must refuse it (34).
                        Err(_) => {
                            known = false;
                            let mut k = [0u8; 32];
                            k[..16].copy_from_slice(an1.as_bytes());
                            k[16..].copy_from_slice(an2.as_bytes());
                            Chosen::Modern {
                                key_bytes: dn_sn_bytes(c1.0, c1.1),
                                second: dn_sn_bytes(c2.0, c2.1),
                                key: Key32::from_secret(k),
                            }
                        }
                    }
                } else {
                    known = false;
                    Chosen::Modern { key_bytes: inp.array(), second: inp.array(), key: Key32::from_secret(inp.array()) }
                }
            }
            7 => {
                if key_choice < 0xF0 {
                    let ((sender, key_id), secret) = RAIDA_SECRETS[key_choice as usize % RAIDA_SECRETS.len()];
                    let k = key_id.to_be_bytes();
                    Chosen::Modern {
                        key_bytes: [sender, k[0], k[1], k[2], k[3]],
                        second: [0; 5],
                        key: Key32::from_secret(secret),
                    }
                } else {
                    known = false;
                    Chosen::Modern { key_bytes: inp.array(), second: [0; 5], key: Key32::from_secret(inp.array()) }
                }
            }
            0 => Chosen::None,
            // Unknown EN byte: a legacy or modern layout as byte 16 implies.
            other if header_size_for(other) > 32 => {
                Chosen::Modern { key_bytes: inp.array(), second: inp.array(), key: Key32::from_secret([0; 32]) }
            }
            _ => Chosen::Legacy { key_bytes: inp.array(), key: Key16::new([0; 16]) },
        };
        let key_bytes = match &chosen {
            Chosen::None => [0; 5],
            Chosen::Legacy { key_bytes, .. } | Chosen::Modern { key_bytes, .. } => *key_bytes,
        };
        let mut fields = HeaderFields::standard(&routing, en, key_bytes);
        if fuzz_header {
            fields.version = inp.u8();
            fields.split_id = inp.u8();
            fields.raida_id = inp.u8();
            fields.shard_id = inp.u8();
            fields.coin_id = inp.u16();
            fields.bitfield = inp.u8();
            fields.reserved = inp.array();
        }
        let modern = header_size_for(en) > 32;
        let (mut nonce8, mut random12, mut echo, mut nonce) = ([0u8; 8], [0u8; 12], [0u8; 2], [0u8; 12]);
        let mut bad_crc = false;
        let mut time = now.min(u32::MAX as u64) as u32;
        if modern {
            echo = inp.array();
            nonce = inp.array();
            if skew {
                let delta = inp.u16() as i16 as i64 * if inp.bool() { 1 } else { 7 };
                time = (now as i64 + delta).clamp(0, u32::MAX as i64) as u32;
            }
        } else {
            nonce8 = inp.array();
            random12 = inp.array();
            bad_crc = skew;
        }
        let length_override = override_len.then(|| inp.u16());
        let fresh = (time as u64).abs_diff(now) <= raida_proto::consts::FRESHNESS_WINDOW_SECS;
        let standard_header = !fuzz_header
            || (fields.version == 1
                && fields.split_id == 0
                && fields.raida_id == SERVER.raida_id
                && fields.shard_id <= 3
                && fields.coin_id == SERVER.coin_id);
        let command_known = SPEC_COMMANDS.contains(&(group, command));
        let expect_valid = !raw_en
            && known
            && standard_header
            && command_known
            && !tamper
            && !bad_crc
            && length_override.is_none()
            && (!modern || fresh);
        RequestSpec {
            en,
            fields,
            chosen,
            nonce8,
            random12,
            bad_crc,
            echo,
            nonce,
            time,
            length_override,
            tamper,
            expect_valid,
            group,
            command,
        }
    }

    /// Builds the encrypted request around `plaintext` (cut to what fits the 16-bit body
    /// length), then applies the spec's tampering, whose operations are read from `inp`.
    pub fn build(&self, plaintext: &[u8], inp: &mut Input) -> Built {
        let plaintext = &plaintext[..plaintext.len().min(MAX_PLAINTEXT)];
        let (mut packet, pending) = match &self.chosen {
            Chosen::Modern { second, key, .. } => {
                // Bytes 24-29: the second token for EN 5 (zero for 4 and 7, as clients send).
                let b24 = [second[0], second[1], second[2], second[3], second[4], 0];
                encode_modern(&self.fields, b24, self.echo, self.nonce, self.time, plaintext, key)
            }
            Chosen::Legacy { key, .. } if self.en != 0 => {
                encode_legacy(&self.fields, self.nonce8, self.random12, plaintext, Some(key))
            }
            _ => encode_legacy(&self.fields, self.nonce8, self.random12, plaintext, None),
        };
        if self.bad_crc && packet.len() > 47 {
            // The challenge's CRC (bytes 44-47) no longer matches: the server must answer 37.
            packet[47] ^= 0x5A;
        }
        if let Some(len) = self.length_override {
            packet[22..24].copy_from_slice(&len.to_be_bytes());
        }
        if self.tamper {
            tamper(&mut packet, inp);
        }
        Built {
            packet,
            pending,
            plaintext: plaintext.to_vec(),
            expect_valid: self.expect_valid,
            group: self.group,
            command: self.command,
        }
    }
}

/// Runs the command payload parser of (group, command) on a decrypted payload and checks
/// the codecs' round trips (what parses re-encodes to the same bytes).
pub fn parse_command(group: u8, command: u8, p: &[u8]) {
    use raida_proto::commands::ids::*;
    match (group, command) {
        (GROUP_STATUS, ECHO) | (GROUP_STATUS, VERSION) => {
            let _ = echo::Echo::decode(p);
        }
        (GROUP_STATUS, SHOW_STATS) => {
            let _ = show_stats::ShowStats::decode(p);
        }
        (GROUP_HEALING, GET_TICKET) => {
            if let Ok(request) = get_ticket::GetTicket::decode(p) {
                assert_eq!(request.to_bytes(), p, "get ticket round trip");
                let passes: Vec<bool> = request.records.iter().map(|r| r.an[0] & 1 == 1).collect();
                let answer = get_ticket::GetTicketAnswer { passes, ticket: 0x0102_0304 };
                assert!(answer.status().is_success());
                assert!(answer.to_bytes().len() <= answer.passes.len().div_ceil(8) + 4);
            }
        }
        (GROUP_HEALING, VALIDATE_TICKET) => {
            if let Ok(v) = validate_ticket::ValidateTicket::decode(p) {
                assert_eq!(v.to_bytes(), p, "validate ticket round trip");
            }
        }
        (GROUP_KEY_EXCHANGE, POST_KEY) => {
            if let Ok(request) = post_key::PostKey::decode(p) {
                let post = request.posted();
                assert!(post_key::KEY_LENGTHS.contains(&(post.key_bytes.len() as u8)));
                let again = post_key::PostKey::with_part(
                    post.key_id,
                    post.receiver,
                    post.receiver_ip,
                    post.sender,
                    &request.key_field,
                    request.key_start,
                    &post.key_bytes,
                );
                assert_eq!(again, request, "the part placed where it was read");
                let again = again.to_bytes();
                // Bytes 25..32 are reserved and not kept; everything else must come back.
                assert_eq!(again[..25], p[..25]);
                assert_eq!(again[32..], p[32..], "post key round trip");
            }
        }
        (GROUP_KEY_EXCHANGE, GET_KEY) => {
            let _ = get_key::GetKey::decode(p);
            if let Ok(answer) = get_key::GetKeyAnswer::decode(p) {
                assert_eq!(answer.to_bytes(), p, "get key answer round trip");
            }
        }
        (GROUP_KEY_EXCHANGE, KEY_ALERT) => {
            if let Ok(alert) = key_alert::KeyAlert::decode(p) {
                assert_eq!(alert.to_bytes(), p, "key alert round trip");
                let entries = alert.entries;
                let _ = entries.iter().filter_map(|e| e.ip()).count();
                let parts: Vec<Option<Vec<u8>>> = entries
                    .iter()
                    .map(|e| (!e.port.is_multiple_of(3)).then(|| e.key_id[..e.raida_id as usize % 17].to_vec()))
                    .collect();
                let _ = key_alert::assemble(&parts);
            }
        }
        (GROUP_KEY_EXCHANGE, ENCRYPT_KEY) => {
            if let Ok(r) = encrypt_key::EncryptKey::decode(p) {
                assert_eq!(r.to_bytes(), p, "encrypt key round trip");
                let an = Key16::new([0x11; 16]);
                let t = encrypt_key::make_ticket(&an, &r.key_part, r.target, [p[0], p[17]]);
                assert_eq!(encrypt_key::open_ticket(&an, &t, r.target), Some(r.key_part));
            }
        }
        (GROUP_KEY_EXCHANGE, DECRYPT_RAIDA_KEY) => {
            if let Ok(request) = decrypt_raida_key::DecryptRaidaKey::decode(p) {
                assert_eq!(request.to_bytes(), p, "decrypt raida key round trip");
                for r in &request.records {
                    let _ = r.shape_ok(SERVER.coin_id);
                    let _ = encrypt_key::open_ticket(&Key16::new([0x22; 16]), &r.ticket, r.target);
                }
            }
        }
        (GROUP_KEY_EXCHANGE, LEAVE_ALERT) | (GROUP_KEY_EXCHANGE, TAKE_ALERTS) => mailbox_payloads(p),
        _ => {}
    }
}

/// Target `mailbox_payloads`: the decoders of 46 Leave Alert and 47 Take Alerts (request
/// and answer) on the same bytes: whatever decodes has the size 6/46 and 6/47 give it and
/// encodes back to the same bytes, and an answer's UDP share stays within 1,200 bytes.
pub fn mailbox_payloads(p: &[u8]) {
    use take_alerts::{TakeAlertsAnswer, WaitingAlert};
    if let Ok(a) = leave_alert::LeaveAlert::decode(p) {
        assert_eq!(a.to_bytes(), p, "leave alert round trip");
        let (nu, nh) = (a.body.parts.len(), a.body.hints.len());
        assert!((1..=leave_alert::MAX_PARTS).contains(&nu) && nh <= leave_alert::MAX_HINTS);
        assert_eq!(p.len(), leave_alert::FIXED + leave_alert::PART * nu + leave_alert::HINT * nh);
        for h in &a.body.hints {
            let _ = h.addr();
        }
        // what a mailbox answers for it decodes back to the same alerts
        let w = WaitingAlert { sender: a.receiver, age: p.len() as u16, alert_id: a.alert_id, body: a.body };
        let answer = TakeAlertsAnswer { alerts: vec![w; 3] };
        assert_eq!(TakeAlertsAnswer::decode(&answer.to_bytes()).as_ref(), Ok(&answer), "answer of an alert");
    }
    if let Ok(t) = take_alerts::TakeAlerts::decode(p) {
        assert!(p.len() == 1 && t.wait <= take_alerts::MAX_WAIT);
    }
    if let Ok(answer) = TakeAlertsAnswer::decode(p) {
        assert_eq!(answer.to_bytes(), p, "take alerts answer round trip");
        for udp in [false, true] {
            let n = TakeAlertsAnswer::fits(&answer.alerts, udp);
            assert!(n <= answer.alerts.len() && (answer.alerts.is_empty() || n >= 1));
            let carried = TakeAlertsAnswer { alerts: answer.alerts[..n].to_vec() };
            if udp && n > 1 {
                assert!(carried.to_bytes().len() <= take_alerts::UDP_PAYLOAD_BUDGET);
            }
            if !udp {
                assert!(n <= take_alerts::TCP_MAX_ALERTS);
            }
        }
    }
}

/// Every command parser on the same bytes (the classic "no payload panics" target).
pub fn all_command_parsers(p: &[u8]) {
    for &(group, command) in SPEC_COMMANDS {
        parse_command(group, command, p);
    }
}

fn validate(packet: &mut [u8], replay: &mut ReplayMemory) -> Result<raida_proto::Validated, Rejection> {
    validate_request(packet, &SERVER, &SpecCommands, &FixedKeys, replay, NOW)
}

/// Target `request_encrypted`: one or two harness-encrypted requests through
/// `validate_request`; a valid one's payload goes to its command parser, and its answer
/// must verify on the client side. A modern request sent twice must be refused (177).
pub fn request_encrypted(data: &[u8]) {
    let mut inp = Input::new(data);
    let flags = inp.u8();
    let spec = RequestSpec::read(&mut inp, SPEC_COMMANDS, NOW);
    let plaintext = inp.sized(MAX_PLAINTEXT);
    let built = spec.build(plaintext, &mut inp);
    let mut replay = ReplayMemory::new(8);
    let mut packet = built.packet.clone();
    let result = validate(&mut packet, &mut replay);
    match result {
        Ok(v) => {
            let payload = &packet[v.payload.clone()];
            if built.expect_valid {
                assert_eq!(payload, &built.plaintext[..], "decrypted payload differs from the plaintext");
            }
            parse_command(v.header.command_group, v.header.command, payload);
            let answer = inp.sized(2048);
            let mut out = Vec::new();
            v.reply.write(Status::Success, answer, 7, &mut CountingRng(flags as u64), &mut out);
            if built.expect_valid {
                let reply = built.pending.open(&out).expect("the answer to a valid request verifies");
                assert_eq!(reply.payload, answer);
            } else {
                let _ = built.pending.open(&out);
            }
            if flags & 1 == 1 {
                let mut again = built.packet.clone();
                let second = validate(&mut again, &mut replay);
                if built.expect_valid && header_size_for(spec.en) > 32 {
                    assert_eq!(second.err().and_then(|r| r.status()), Some(Status::TxnProcessed), "replay accepted");
                }
            }
        }
        Err(rejection) => {
            assert!(!built.expect_valid, "valid request refused: {:?}", rejection.status());
            if let Rejection::Reply { reply, status } = rejection {
                let mut out = Vec::new();
                reply.write(status, &[], 7, &mut CountingRng(0), &mut out);
                let _ = built.pending.open(&out);
            }
        }
    }
}

/// Target `validate_request`: raw bytes (with the first bytes steered to this server so
/// the rules past routing are reached).
pub fn validate_raw(data: &[u8]) {
    let mut packet = data.to_vec();
    if packet.len() > 16 && data[0] & 0x80 != 0 {
        packet[0] = 1;
        packet[1] = 0;
        packet[2] = SERVER.raida_id;
        packet[6..8].copy_from_slice(&SERVER.coin_id.to_be_bytes());
    }
    let mut replay = ReplayMemory::new(8);
    if let Ok(v) = validate(&mut packet, &mut replay) {
        let payload = packet[v.payload.clone()].to_vec();
        parse_command(v.header.command_group, v.header.command, &payload);
    }
}

/// Splits a TCP byte stream into requests as `crates/raida-server/src/tcp.rs` reads them
/// (32 bytes, 16 more for a modern header, then the body): the sizes come from
/// [`request_len`]. Returns the requests and the unread tail.
pub fn split_stream(mut stream: &[u8]) -> (Vec<&[u8]>, &[u8]) {
    let mut out = Vec::new();
    while stream.len() >= 32 {
        let mut first = [0u8; 32];
        first.copy_from_slice(&stream[..32]);
        let len = request_len(&first);
        assert!(len <= MAX_REQUEST_SIZE, "request length {len} above the maximum");
        if stream.len() < len {
            break;
        }
        let (req, rest) = stream.split_at(len);
        out.push(req);
        stream = rest;
    }
    (out, stream)
}

/// Target `tcp_framing`: a byte stream made of harness-encrypted requests and raw chunks,
/// split as the TCP reader does. Every request the reader assembles frames cleanly; when
/// the stream holds only built requests the reader recovers exactly them, and each
/// untampered one validates.
pub fn tcp_framing(data: &[u8]) {
    let mut inp = Input::new(data);
    let mut stream = Vec::new();
    let mut built = Vec::new();
    let mut only_built = true;
    let chunks = inp.u8() % 6 + 1;
    for _ in 0..chunks {
        if inp.u8() & 3 == 0 {
            only_built = false;
            stream.extend_from_slice(inp.sized(512));
        } else {
            let spec = RequestSpec::read(&mut inp, SPEC_COMMANDS, NOW);
            let plaintext = inp.sized(1024);
            let b = spec.build(plaintext, &mut inp);
            // A tampered or mis-sized request may no longer be as long as its length field says.
            only_built &= !spec.tamper
                && b.packet.len() == {
                    let mut first = [0u8; 32];
                    first.copy_from_slice(&b.packet[..32]);
                    request_len(&first)
                };
            stream.extend_from_slice(&b.packet);
            built.push(b);
        }
    }
    let (requests, _tail) = split_stream(&stream);
    if only_built {
        assert_eq!(requests.len(), built.len(), "TCP reader lost the request boundaries");
    }
    let mut replay = ReplayMemory::new(16);
    for (i, req) in requests.iter().enumerate() {
        assert!(matches!(frame(req), Framing::Ok { .. }), "a request assembled from TCP does not frame");
        let mut packet = req.to_vec();
        let result = validate(&mut packet, &mut replay);
        if only_built && built[i].expect_valid {
            assert_eq!(built[i].packet, *req);
            // The same nonce may legitimately come twice in one stream (replay: 177).
            if let Err(r) = &result {
                assert_eq!(r.status(), Some(Status::TxnProcessed), "valid request refused over TCP");
            }
        }
        if let Ok(v) = result {
            parse_command(v.header.command_group, v.header.command, &packet[v.payload.clone()]);
        }
    }
}

/// Target `open_response`: the client's verification of an answer, for every EN. A real
/// request is built and validated, the server's answer (any status, any payload) is
/// written, then either checked exactly or mutated (body size field, status, bytes,
/// length) or replaced by raw bytes before `PendingReply::open`.
pub fn open_response(data: &[u8]) {
    let mut inp = Input::new(data);
    let mutation = inp.u8();
    let spec = RequestSpec::read(&mut inp, SPEC_COMMANDS, NOW);
    let built = spec.build(inp.sized(256), &mut inp);
    let mut packet = built.packet.clone();
    let mut replay = ReplayMemory::new(8);
    let (reply, validated): (ReplyContext, bool) = match validate(&mut packet, &mut replay) {
        Ok(v) => (v.reply, true),
        Err(Rejection::Reply { reply, .. }) => (reply, false),
        Err(Rejection::Drop) => {
            (ReplyContext::unauthenticated(SERVER.raida_id, &packet, header_size_for(spec.en) > 32), false)
        }
    };
    let status = inp.pick(&Status::ALL);
    let answer = inp.sized(4096);
    let mut out = Vec::new();
    reply.write(status, answer, inp.u32(), &mut CountingRng(mutation as u64), &mut out);
    match mutation % 8 {
        0 | 1 => {
            let got = built.pending.open(&out);
            // A tampered request may still validate (EN 0/1/2 have no integrity): its echo
            // or challenge then differ from what the client remembers.
            if validated && !spec.tamper {
                check_exact(status, answer, &got);
            }
        }
        2 => {
            // The body size field (bytes 9-11): small values most of the time.
            let size = if inp.bool() { inp.u8() as u32 % 40 } else { inp.u32() & 0x00FF_FFFF };
            out[9..12].copy_from_slice(&size.to_be_bytes()[1..]);
            let _ = built.pending.open(&out);
        }
        3 => {
            out[2] = inp.u8();
            let _ = built.pending.open(&out);
        }
        4 => {
            let cut = inp.u16() as usize % (out.len() + 1);
            out.truncate(cut);
            let _ = built.pending.open(&out);
        }
        5 => {
            let raw = inp.rest();
            let _ = built.pending.open(raw);
        }
        _ => {
            tamper(&mut out, &mut inp);
            let _ = built.pending.open(&out);
        }
    }
}

/// An untouched answer to a validated request opens to exactly what the server wrote.
fn check_exact(status: Status, answer: &[u8], got: &Result<raida_proto::client::Reply, ResponseError>) {
    if status.is_success() {
        let reply = got.as_ref().expect("a success answer verifies");
        assert_eq!(reply.status, status);
        assert_eq!(reply.payload, answer);
    } else {
        assert_eq!(
            got.as_ref().err(),
            Some(&ResponseError::Status { status, authenticated: true }),
            "an error answer is reported as the server's authenticated status"
        );
    }
    let _ = RESPONSE_HEADER_SIZE;
}

/// The relay hello (section 10): any bytes decode or are Malformed, never panic; what
/// decodes encodes back to the same 40 bytes.
pub fn relay_hello(data: &[u8]) {
    use raida_proto::relay::{RelayAnswer, RelayHello};
    match RelayHello::decode(data) {
        Ok(h) => assert_eq!(&h.to_bytes()[..], data, "relay hello did not round-trip"),
        Err(a) => assert_eq!(a, RelayAnswer::Malformed),
    }
}
