//! Every case of ../shared/vectors that covers PROTOCOL.md sections 1-5.

use std::collections::HashMap;

use raida_proto::client::{encode_legacy, encode_modern, HeaderFields, PendingReply};
use raida_proto::commands::SpecCommands;
use raida_proto::crypto;
use raida_proto::header::{KeyIdentity, ServerIdentity};
use raida_proto::keys::{resolve_key, Key16, Key32, KeyLookup, RequestKey};
use raida_proto::replay::ReplayMemory;
use raida_proto::response::{ReplyContext, ReplySecurity};
use raida_proto::{validate_request, CoinId, Rejection, Status};
use raida_vectors::{arr, bytes, cases, i64_, name, opt_bytes, u64_, Value};

/// An in-memory key store built from a vector's `server` object.
#[derive(Default)]
struct MemKeys {
    coins: HashMap<(i8, u32), ([u8; 16], u8)>,
    lockers: Vec<[u8; 16]>,
    tokens: HashMap<(i8, u32), [u8; 32]>,
    secrets: HashMap<(u8, u32), [u8; 32]>,
}

impl KeyLookup for MemKeys {
    fn coin_an(&self, CoinId { dn, sn }: CoinId) -> Option<[u8; 16]> {
        self.coins.get(&(dn, sn)).filter(|(_, mfs)| *mfs != 0).map(|(an, _)| *an)
    }
    fn locker_an(&self, prefix: &[u8; 5]) -> Option<[u8; 16]> {
        self.lockers.iter().find(|a| a[..5] == prefix[..]).copied()
    }
    fn token_secret(&self, CoinId { dn, sn }: CoinId) -> Option<[u8; 32]> {
        self.tokens.get(&(dn, sn)).copied()
    }
    fn raida_secret(&self, sender: u8, key_id: u32) -> Option<[u8; 32]> {
        self.secrets.get(&(sender, key_id)).copied()
    }
}

fn coin_store(list: &Value) -> HashMap<(i8, u32), ([u8; 16], u8)> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|c| ((i64_(&c["dn"]) as i8, u64_(&c["sn"]) as u32), (arr(&c["an"]), u64_(&c["mfs"]) as u8)))
        .collect()
}

fn mem_keys(server: &Value) -> MemKeys {
    MemKeys {
        coins: coin_store(&server["coins"]),
        lockers: server["lockers"].as_array().unwrap().iter().map(arr::<16>).collect(),
        tokens: server["key_tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| ((i64_(&t["dn"]) as i8, u64_(&t["sn"]) as u32), arr(&t["secret"])))
            .collect(),
        secrets: server["raida_secrets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| ((u64_(&t["sender"]) as u8, u64_(&t["key_id"]) as u32), arr(&t["secret"])))
            .collect(),
    }
}

/// An RNG that replays fixed bytes (for response nonces).
struct FixedRng(Vec<u8>);
impl rand_core::RngCore for FixedRng {
    fn next_u32(&mut self) -> u32 {
        unimplemented_rng()
    }
    fn next_u64(&mut self) -> u64 {
        unimplemented_rng() as u64
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        let n = dest.len();
        dest.copy_from_slice(&self.0[..n]);
        self.0.drain(..n);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}
fn unimplemented_rng() -> u32 {
    panic!("FixedRng only fills bytes")
}

#[test]
fn crc32() {
    for c in cases("crc32.json", "crc32") {
        let got = crypto::crc32(&bytes(&c["input"]["data"]));
        assert_eq!(got as u64, u64_(&c["expected"]["crc32_int"]), "{}", name(&c));
        assert_eq!(hex::encode(got.to_be_bytes()), c["expected"]["crc32"].as_str().unwrap());
    }
}

#[test]
fn challenge() {
    for c in cases("challenge.json", "make") {
        let got = crypto::make_challenge(&arr(&c["input"]["random12"]));
        assert_eq!(got.to_vec(), bytes(&c["expected"]["challenge"]), "{}", name(&c));
    }
    for c in cases("challenge.json", "check") {
        let ch: [u8; 16] = arr(&c["input"]["challenge"]);
        let valid = c["expected"]["valid"].as_bool().unwrap();
        assert_eq!(crypto::check_challenge(&ch), valid, "{}", name(&c));
        assert_eq!(u64_(&c["expected"]["status"]), if valid { 0 } else { 37 });
    }
}

#[test]
fn ctr() {
    for c in cases("ctr.json", "legacy_body") {
        let i = &c["input"];
        let iv = crypto::legacy_iv(&arr(&i["header_nonce"]));
        assert_eq!(iv.to_vec(), bytes(&c["expected"]["iv"]), "{}", name(&c));
        let mut buf = bytes(&i["plaintext"]);
        crypto::ctr_apply(&Key16::new(arr(&i["key"])), &iv, &mut buf);
        assert_eq!(buf, bytes(&c["expected"]["ciphertext"]), "{}", name(&c));
    }
    for c in cases("ctr.json", "counter_carry") {
        let i = &c["input"];
        let mut buf = bytes(&i["plaintext"]);
        crypto::ctr_apply(&Key16::new(arr(&i["key"])), &arr(&i["iv"]), &mut buf);
        assert_eq!(buf, bytes(&c["expected"]["ciphertext"]), "{}", name(&c));
    }
}

fn header_fields(i: &Value, key_bytes: [u8; 5]) -> HeaderFields {
    HeaderFields {
        version: u64_(&i["version"]) as u8,
        split_id: u64_(&i["split_id"]) as u8,
        raida_id: u64_(&i["raida_id"]) as u8,
        shard_id: u64_(&i["shard_id"]) as u8,
        command_group: u64_(&i["command_group"]) as u8,
        command: u64_(&i["command"]) as u8,
        coin_id: u64_(&i["coin_id"]) as u16,
        bitfield: u64_(&i["bitfield"]) as u8,
        reserved: arr(&i["reserved"]),
        en: u64_(&i["en"]) as u8,
        key_bytes,
    }
}

fn dn_sn(dn: &Value, sn: &Value) -> [u8; 5] {
    raida_proto::client::dn_sn_bytes(i64_(dn) as i8, u64_(sn) as u32)
}

#[test]
fn legacy_requests() {
    for c in cases("legacy_requests.json", "request") {
        let (i, e) = (&c["input"], &c["expected"]);
        let en = u64_(&i["en"]);
        let key_bytes = match en {
            1 => dn_sn(&i["key_dn"], &i["key_sn"]),
            2 => arr(&i["locker_prefix"]),
            _ => dn_sn(&i["key_dn"], &i["key_sn"]),
        };
        let key = opt_bytes(&i["key"]).map(|k| Key16::new(k.try_into().unwrap()));
        let (packet, _) = encode_legacy(
            &header_fields(i, key_bytes),
            arr(&i["nonce"]),
            arr(&i["challenge_random"]),
            &bytes(&i["payload"]),
            key.as_ref(),
        );
        let n = name(&c);
        assert_eq!(hex::encode(&packet[..32]), e["header"].as_str().unwrap(), "{n} header");
        assert_eq!(hex::encode(&packet), e["packet"].as_str().unwrap(), "{n} packet");
        assert_eq!(packet.len() - 32, u64_(&e["body_length"]) as usize, "{n}");
        let iv = crypto::legacy_iv(&arr(&i["nonce"]));
        assert_eq!(iv.to_vec(), bytes(&e["iv"]), "{n}");
        let challenge = crypto::make_challenge(&arr(&i["challenge_random"]));
        assert_eq!(challenge.to_vec(), bytes(&e["challenge"]), "{n}");
        assert_eq!(packet[30..32].to_vec(), bytes(&e["echo"]), "{n}");
    }
}

fn modern_key(i: &Value) -> Key32 {
    match u64_(&i["en"]) {
        4 => match opt_bytes(&i["token_secret"]) {
            Some(s) => Key32::from_secret(s.try_into().unwrap()),
            None => Key32::sha256_of_an(&Key16::new(arr(&i["an"]))),
        },
        5 => Key32::concat_two_tokens(
            (i64_(&i["token_dn"]) as i8, u64_(&i["token_sn"]) as u32).into(),
            &Key16::new(arr(&i["an1"])),
            (i64_(&i["token2_dn"]) as i8, u64_(&i["token2_sn"]) as u32).into(),
            &Key16::new(arr(&i["an2"])),
        )
        .unwrap(),
        7 => Key32::from_secret(arr(&i["raida_secret"])),
        en => panic!("not modern: {en}"),
    }
}

#[test]
fn modern_requests() {
    for c in cases("modern_requests.json", "request") {
        let (i, e) = (&c["input"], &c["expected"]);
        let n = name(&c);
        let en = u64_(&i["en"]);
        let key = modern_key(i);
        assert_eq!(key.as_bytes().to_vec(), bytes(&e["key"]), "{n} key");
        let (key_bytes, b24) = match en {
            7 => {
                let k = (u64_(&i["key_id"]) as u32).to_be_bytes();
                ([u64_(&i["sender_raida_id"]) as u8, k[0], k[1], k[2], k[3]], [0u8; 6])
            }
            5 => {
                let t2 = dn_sn(&i["token2_dn"], &i["token2_sn"]);
                (dn_sn(&i["token_dn"], &i["token_sn"]), [t2[0], t2[1], t2[2], t2[3], t2[4], 0])
            }
            _ => (dn_sn(&i["token_dn"], &i["token_sn"]), [0u8; 6]),
        };
        let b24 = opt_bytes(&i["bytes24_29"]).map(|b| b.try_into().unwrap()).unwrap_or(b24);
        let (packet, _) = encode_modern(
            &header_fields(i, key_bytes),
            b24,
            arr(&i["echo"]),
            arr(&i["nonce"]),
            u64_(&i["request_time"]) as u32,
            &bytes(&i["payload"]),
            &key,
        );
        assert_eq!(hex::encode(&packet[..48]), e["header"].as_str().unwrap(), "{n} header");
        assert_eq!(hex::encode(&packet), e["packet"].as_str().unwrap(), "{n} packet");
        assert_eq!(packet.len() - 48, u64_(&e["body_length"]) as usize, "{n}");
    }
}

#[test]
fn legacy_responses() {
    for c in cases("legacy_responses.json", "response") {
        let (i, e) = (&c["input"], &c["expected"]);
        let n = name(&c);
        let key = opt_bytes(&i["key"]).map(|k| Key16::new(k.try_into().unwrap()));
        let iv: Option<[u8; 16]> = opt_bytes(&i["iv"]).map(|v| v.try_into().unwrap());
        let hash: [u8; 16] = arr(&i["challenge_hash"]);
        let security = match (&key, iv) {
            (Some(k), Some(iv)) => ReplySecurity::LegacyCtr { key: k.clone(), iv },
            _ => ReplySecurity::Plain,
        };
        let ctx = ReplyContext {
            raida_id: u64_(&i["raida_id"]) as u8,
            command_group: u64_(&i["command_group"]) as u8,
            echo: arr(&i["echo"]),
            challenge_hash: hash,
            security,
        };
        let status = Status::from_code(u64_(&i["status"]) as u8).unwrap();
        let payload = bytes(&i["payload"]);
        let mut out = Vec::new();
        ctx.write(status, &payload, u64_(&i["execution_time_us"]) as u32, &mut FixedRng(vec![]), &mut out);
        assert_eq!(hex::encode(&out), e["packet"].as_str().unwrap(), "{n} packet");
        assert_eq!(hex::encode(&out[..32]), e["header"].as_str().unwrap(), "{n}");
        assert_eq!(out.len() - 32, u64_(&e["body_size"]) as usize, "{n}");
        // client side: parse back
        let pending = PendingReply::legacy(arr(&i["echo"]), key, iv.unwrap_or([0; 16]), hash);
        match pending.open(&out) {
            Ok(reply) => {
                assert!(status.is_success(), "{n}");
                assert_eq!(reply.payload, payload, "{n}");
                assert_eq!(reply.status, status);
            }
            Err(raida_proto::client::ResponseError::Status { status: s, .. }) => {
                assert_eq!(s, status, "{n}")
            }
            Err(err) => panic!("{n}: {err}"),
        }
    }
}

#[test]
fn modern_responses() {
    for c in cases("modern_responses.json", "response") {
        let (i, e) = (&c["input"], &c["expected"]);
        let n = name(&c);
        let key = Key32::from_secret(arr(&i["key"]));
        let request_nonce: [u8; 12] = arr(&i["request_nonce"]);
        let ctx = ReplyContext {
            raida_id: u64_(&i["raida_id"]) as u8,
            command_group: u64_(&i["command_group"]) as u8,
            echo: arr(&i["echo"]),
            challenge_hash: [0; 16],
            security: ReplySecurity::Modern { key: key.clone(), request_nonce, expanded: Default::default() },
        };
        let status = Status::from_code(u64_(&i["status"]) as u8).unwrap();
        let payload = bytes(&i["payload"]);
        let mut out = Vec::new();
        let mut rng = FixedRng(bytes(&i["response_nonce"]));
        ctx.write(status, &payload, u64_(&i["execution_time_us"]) as u32, &mut rng, &mut out);
        assert_eq!(hex::encode(&out), e["packet"].as_str().unwrap(), "{n} packet");
        assert_eq!(out.len() - 32, u64_(&e["body_size"]) as usize, "{n}");
        let mut aad = out[..32].to_vec();
        aad.extend_from_slice(&request_nonce);
        assert_eq!(aad, bytes(&e["aad"]), "{n}");
        let pending = PendingReply::modern(arr(&i["echo"]), key, request_nonce);
        match pending.open(&out) {
            Ok(reply) => assert_eq!(reply.payload, payload, "{n}"),
            Err(raida_proto::client::ResponseError::Status { status: s, authenticated }) => {
                assert_eq!(s, status, "{n}");
                assert!(authenticated, "{n}");
            }
            Err(err) => panic!("{n}: {err}"),
        }
        // a flipped bit anywhere in the answer is caught
        let mut bad = out.clone();
        bad[40] ^= 1;
        assert!(pending.open(&bad).is_err(), "{n}");
    }
    for c in cases("modern_responses.json", "unauthenticated") {
        let (i, e) = (&c["input"], &c["expected"]);
        let n = name(&c);
        let req = bytes(&i["request_packet"]);
        let mut ctx = ReplyContext::unauthenticated(u64_(&i["raida_id"]) as u8, &req, true);
        assert_eq!(ctx.command_group, u64_(&i["command_group"]) as u8, "{n}");
        ctx.echo = arr(&i["echo"]);
        let status = Status::from_code(u64_(&i["status"]) as u8).unwrap();
        let mut out = Vec::new();
        ctx.write(status, &[], u64_(&i["execution_time_us"]) as u32, &mut FixedRng(vec![]), &mut out);
        assert_eq!(hex::encode(&out), e["packet"].as_str().unwrap(), "{n} packet");
    }
}

#[test]
fn request_validation() {
    for c in cases("request_validation.json", "validate") {
        let (i, e) = (&c["input"], &c["expected"]);
        let n = name(&c);
        assert_eq!(i["transport"], "udp", "{n}");
        let server = &i["server"];
        let keys = mem_keys(server);
        let ident = ServerIdentity::new(u64_(&server["raida_id"]) as u8, u64_(&server["coin_id"]) as u16);
        let mut replay = ReplayMemory::new(u64_(&i["replay_capacity"]) as usize);
        for (p, t) in i["prior_packets"].as_array().unwrap().iter().zip(i["prior_times"].as_array().unwrap()) {
            let mut pkt = bytes(p);
            let _ = validate_request(&mut pkt, &ident, &SpecCommands, &keys, &mut replay, u64_(t));
        }
        let mut pkt = bytes(&i["packet"]);
        let res = validate_request(&mut pkt, &ident, &SpecCommands, &keys, &mut replay, u64_(&i["now"]));
        match (&e["status"], res) {
            (Value::Null, Err(Rejection::Drop)) => {}
            (Value::Null, other) => panic!("{n}: expected drop, got {other:?}"),
            (s, Ok(v)) => {
                assert_eq!(u64_(s), 0, "{n}: accepted but expected {s}");
                assert_eq!(pkt[v.payload.clone()].to_vec(), bytes(&e["payload"]), "{n} payload");
                if let Some(h) = opt_bytes(&e["challenge_hash"]) {
                    assert_eq!(v.reply.challenge_hash.to_vec(), h, "{n} hash");
                }
                if let Some(a) = e["authenticated"].as_bool() {
                    assert_eq!(v.reply.is_authenticated(), a, "{n}");
                }
            }
            (s, Err(Rejection::Reply { status, reply })) => {
                assert_eq!(status.code() as u64, u64_(s), "{n}: status");
                if let Some(a) = e["authenticated"].as_bool() {
                    assert_eq!(reply.is_authenticated(), a, "{n}: authenticated");
                }
                assert_eq!(reply.challenge_hash, [0; 16], "{n}: rejected requests carry no hash");
            }
            (s, Err(Rejection::Drop)) => panic!("{n}: dropped, expected {s}"),
        }
    }
}

fn status_of(r: Result<Option<RequestKey>, Status>) -> (u64, Option<Vec<u8>>) {
    match r {
        Ok(Some(RequestKey::Legacy(k))) => (0, Some(k.as_bytes().to_vec())),
        Ok(Some(RequestKey::Modern(k))) => (0, Some(k.as_bytes().to_vec())),
        Ok(None) => (0, None),
        Err(s) => (s.code() as u64, None),
    }
}

fn check_key(c: &Value, got: (u64, Option<Vec<u8>>)) {
    let e = &c["expected"];
    let n = name(c);
    assert_eq!(got.0, u64_(&e["status"]), "{n} status");
    assert_eq!(got.1, opt_bytes(&e["key"]), "{n} key");
}

#[test]
fn keys() {
    for c in cases("keys.json", "type1") {
        let mut k = MemKeys::default();
        k.coins.insert((1, 5), (arr(&c["input"]["an"]), 3));
        check_key(&c, status_of(resolve_key(&KeyIdentity::Coin { coin: CoinId { dn: 1, sn: 5 } }, &k)));
    }
    for c in cases("keys.json", "type1_client") {
        let ans = c["input"]["ans"].as_array().unwrap();
        let an = bytes(&ans[u64_(&c["input"]["raida_id"]) as usize]);
        check_key(&c, (0, Some(an)));
    }
    for c in cases("keys.json", "type2") {
        let k = MemKeys {
            lockers: c["input"]["lockers"].as_array().unwrap().iter().map(arr::<16>).collect(),
            ..Default::default()
        };
        let prefix = arr(&c["input"]["prefix"]);
        check_key(&c, status_of(resolve_key(&KeyIdentity::Locker { prefix }, &k)));
    }
    for c in cases("keys.json", "type4") {
        let i = &c["input"];
        let dn = i64_(&i["dn"]);
        let mut k = MemKeys::default();
        if let Some(an) = opt_bytes(&i["an"]) {
            k.coins.insert((dn as i8, 77), (an.try_into().unwrap(), 1));
        }
        if let Some(s) = opt_bytes(&i["token_secret"]) {
            k.tokens.insert((dn as i8, 77), s.try_into().unwrap());
        }
        let got = if (-128..=127).contains(&dn) {
            status_of(resolve_key(&KeyIdentity::Token { coin: CoinId { dn: dn as i8, sn: 77 } }, &k))
        } else {
            (25, None)
        };
        check_key(&c, got.clone());
        if let Some(not) = opt_bytes(&c["expected"]["not_key"]) {
            assert_ne!(got.1, Some(not), "{}", name(&c));
        }
    }
    for c in cases("keys.json", "type5") {
        let i = &c["input"];
        let first = (i64_(&i["dn1"]) as i8, u64_(&i["sn1"]) as u32);
        let second = (i64_(&i["dn2"]) as i8, u64_(&i["sn2"]) as u32);
        let mut k = MemKeys::default();
        if let Some(an) = opt_bytes(&i["an1"]) {
            k.coins.insert(first, (an.try_into().unwrap(), 1));
        }
        if let Some(an) = opt_bytes(&i["an2"]) {
            k.coins.insert(second, (an.try_into().unwrap(), 1));
        }
        check_key(
            &c,
            status_of(resolve_key(&KeyIdentity::TokenPair { first: first.into(), second: second.into() }, &k)),
        );
    }
    for c in cases("keys.json", "type7") {
        let i = &c["input"];
        let receiver = u64_(&i["receiver"]);
        let mut k = MemKeys::default();
        for s in i["secrets"].as_array().unwrap() {
            if u64_(&s["receiver"]) == receiver {
                k.secrets.insert((u64_(&s["sender"]) as u8, u64_(&s["key_id"]) as u32), arr(&s["secret"]));
            }
        }
        let id = KeyIdentity::Raida { sender: u64_(&i["sender"]) as u8, key_id: u64_(&i["key_id"]) as u32 };
        check_key(&c, status_of(resolve_key(&id, &k)));
    }
}

/// Section 10: the relay hello, built and checked.
#[test]
fn relay_hello() {
    use raida_proto::relay::{RelayAnswer, RelayHello, Side, HELLO_LEN};
    for c in cases("mailbox.json", "relay_hello") {
        let i = &c["input"];
        let side = Side::from_code(u64_(&i["side"]) as u8).expect("side 1 or 2");
        let hello = RelayHello::new(arr(&i["rendezvous_id"]), side).to_bytes();
        assert_eq!(hello.len(), HELLO_LEN);
        assert_eq!(hello.to_vec(), bytes(&c["expected"]["hello"]), "{}", name(&c));
    }
    for c in cases("mailbox.json", "relay_hello_check") {
        let e = &c["expected"];
        let got = RelayHello::decode(&bytes(&c["input"]["hello"]));
        match got {
            Ok(h) => {
                assert_eq!(e["valid"], true, "{}", name(&c));
                assert!(e["answer"].is_null(), "{}", name(&c));
                assert_eq!(h.rendezvous_id, arr::<32>(&e["rendezvous_id"]), "{}", name(&c));
                assert_eq!(u64::from(h.side.code()), u64_(&e["side"]), "{}", name(&c));
            }
            Err(a) => {
                assert_eq!(e["valid"], false, "{}", name(&c));
                assert_eq!(u64::from(a.code()), u64_(&e["answer"]), "{}", name(&c));
                assert_eq!(a, RelayAnswer::Malformed);
                assert!(e["rendezvous_id"].is_null() && e["side"].is_null(), "{}", name(&c));
            }
        }
    }
}
