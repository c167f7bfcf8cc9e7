//! Every case of vectors/channel.json (the repository's copy of ../shared/vectors) (PROTOCOL.md section 8).

use raida_channel::chain::{next_key, SecretKey, RATCHET_SALT};
use raida_channel::handshake::{directional_keys, Psk, INFO_PREFIX};
use raida_channel::record::{self, Direction};
use raida_channel::window::RecvWindow;
use serde_json::Value;
use x25519_dalek::{PublicKey, StaticSecret};

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../vectors/channel.json");

fn load() -> Vec<Value> {
    let text = std::fs::read_to_string(VECTORS).unwrap_or_else(|e| {
        panic!("test vectors missing: cannot read {VECTORS}: {e} (they live in the repository's vectors/ folder)")
    });
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{VECTORS} is not JSON: {e}"));
    v.as_array().unwrap_or_else(|| panic!("{VECTORS} is not a JSON list")).clone()
}

fn hx(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap_or_else(|| panic!("not a hex string: {v}")))
        .unwrap_or_else(|e| panic!("bad hex {v}: {e}"))
}

fn h32(v: &Value) -> [u8; 32] {
    hx(v).try_into().unwrap_or_else(|_| panic!("not 32 bytes: {v}"))
}

fn key(v: &Value) -> SecretKey {
    SecretKey::new(h32(v))
}

fn dir(v: &Value) -> Direction {
    Direction::parse(v.as_str().unwrap_or_default()).unwrap_or_else(|| panic!("bad direction {v}"))
}

fn endpoint(v: &Value) -> &'static str {
    match v.as_str() {
        Some("stream") => record::STREAM_ENDPOINT,
        Some("/message") => record::HTTP_ENDPOINT,
        other => panic!("unknown endpoint {other:?}"),
    }
}

fn key_n(key_1: &[u8; 32], n: u64) -> SecretKey {
    let mut k = SecretKey::new(*key_1);
    for i in 1..n {
        k = next_key(&k, i);
    }
    k
}

#[test]
fn all_channel_vectors() {
    let cases = load();
    assert!(!cases.is_empty(), "no cases in {VECTORS}");
    let mut counts = std::collections::BTreeMap::new();
    for c in &cases {
        let name = c["name"].as_str().unwrap_or("?");
        let kind = c["kind"].as_str().unwrap_or("?");
        let (i, e) = (&c["input"], &c["expected"]);
        match kind {
            "keys" => {
                let a = StaticSecret::from(h32(&i["initiator_private"]));
                let b = StaticSecret::from(h32(&i["responder_private"]));
                let (pa, pb) = (PublicKey::from(&a), PublicKey::from(&b));
                assert_eq!(pa.as_bytes().to_vec(), hx(&e["initiator_public"]), "{name}");
                assert_eq!(pb.as_bytes().to_vec(), hx(&e["responder_public"]), "{name}");
                let shared = a.diffie_hellman(&pb);
                assert_eq!(shared.as_bytes().to_vec(), hx(&e["shared_secret"]), "{name}");
                assert_eq!(b.diffie_hellman(&pa).as_bytes(), shared.as_bytes(), "{name}");
                let psk = if i["psk"].is_null() {
                    None
                } else {
                    Some(Psk::new(hx(&i["psk"])).unwrap_or_else(|e| panic!("{name}: {e}")))
                };
                let mut ikm = shared.as_bytes().to_vec();
                if let Some(p) = &psk {
                    ikm.extend_from_slice(p.as_bytes());
                }
                assert_eq!(ikm, hx(&e["ikm"]), "{name}");
                let mut salt = pa.as_bytes().to_vec();
                salt.extend_from_slice(pb.as_bytes());
                assert_eq!(salt, hx(&e["salt"]), "{name}");
                assert_eq!(format!("{INFO_PREFIX}alice-to-bob").into_bytes(), hx(&e["info_alice_to_bob"]), "{name}");
                assert_eq!(format!("{INFO_PREFIX}bob-to-alice").into_bytes(), hx(&e["info_bob_to_alice"]), "{name}");
                let keys = directional_keys(shared.as_bytes(), psk.as_ref(), pa.as_bytes(), pb.as_bytes());
                assert_eq!(keys.alice_to_bob.to_vec(), hx(&e["key_alice_to_bob"]), "{name}");
                assert_eq!(keys.bob_to_alice.to_vec(), hx(&e["key_bob_to_alice"]), "{name}");
            }
            "psk_reject" => {
                assert_eq!(e["ok"], Value::Bool(false), "{name}");
                assert!(Psk::new(hx(&i["psk"])).is_err(), "{name}: short PSK accepted");
            }
            "chain" => {
                assert_eq!(hx(&i["salt"]), RATCHET_SALT, "{name}");
                let keys = e["keys"].as_array().unwrap_or_else(|| panic!("{name}: keys"));
                let infos = e["infos"].as_array().unwrap_or_else(|| panic!("{name}: infos"));
                let mut k = key(&i["key_1"]);
                assert_eq!(k.to_vec(), hx(&keys[0]), "{name} K_1");
                for n in 1..keys.len() {
                    assert_eq!(Some(format!("ratchet:{n}").as_str()), infos[n - 1].as_str(), "{name}");
                    k = next_key(&k, n as u64);
                    assert_eq!(k.to_vec(), hx(&keys[n]), "{name} K_{}", n + 1);
                }
            }
            "seal" => {
                let seq = i["seq"].as_u64().unwrap_or_else(|| panic!("{name}: seq"));
                let kn = key_n(&h32(&i["key_1"]), seq);
                assert_eq!(kn.to_vec(), hx(&e["key_n"]), "{name} K_seq");
                let (d, ep) = (dir(&i["direction"]), endpoint(&i["endpoint"]));
                let aad = record::aad(seq, d, ep);
                assert_eq!(Some(std::str::from_utf8(&aad).unwrap_or("")), e["aad"].as_str(), "{name}");
                assert_eq!(aad, hx(&e["aad_hex"]), "{name}");
                let nonce: [u8; 12] = hx(&i["nonce"]).try_into().unwrap_or_else(|_| panic!("{name}: nonce"));
                let pt = hx(&i["plaintext"]);
                let msg =
                    record::seal_with_nonce(&kn, seq, &nonce, d, ep, &pt).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(hex::encode(&msg), e["message"].as_str().unwrap_or(""), "{name}");
                assert_eq!(record::open(&kn, &msg, d, ep).unwrap_or_else(|e| panic!("{name}: {e}")), pt, "{name}");
                // A fresh receiver derives K_seq itself (seq <= 1,000 steps).
                let mut w = RecvWindow::new(key(&i["key_1"]), d, ep);
                let (s, got) = w.open(&msg).unwrap_or_else(|e| panic!("{name}: receiver: {e}"));
                assert_eq!((s, got), (seq, pt), "{name}");
            }
            "open_reject" => {
                assert_eq!(e["ok"], Value::Bool(false), "{name}");
                let r =
                    record::open(&h32(&i["key"]), &hx(&i["message"]), dir(&i["direction"]), endpoint(&i["endpoint"]));
                assert!(r.is_err(), "{name}: opened");
            }
            "receive_sequence" => {
                let mut w = RecvWindow::new(key(&i["key_1"]), dir(&i["direction"]), endpoint(&i["endpoint"]));
                let msgs = i["messages"].as_array().unwrap_or_else(|| panic!("{name}: messages"));
                let acc = e["accepted"].as_array().unwrap_or_else(|| panic!("{name}: accepted"));
                let reasons = e["reasons"].as_array().unwrap_or_else(|| panic!("{name}: reasons"));
                assert_eq!(msgs.len(), acc.len(), "{name}");
                for (k, m) in msgs.iter().enumerate() {
                    let r = w.open(&hx(m));
                    let reason = match &r {
                        Ok(_) => "ok",
                        Err(err) => err.reason(),
                    };
                    assert_eq!(Some(r.is_ok()), acc[k].as_bool(), "{name} message {k}: {reason}");
                    assert_eq!(Some(reason), reasons[k].as_str(), "{name} message {k}");
                    assert!(w.keys_held() <= 3, "{name}: key window holds {} keys", w.keys_held());
                }
            }
            other => panic!("{name}: unknown kind {other}"),
        }
        *counts.entry(kind.to_string()).or_insert(0) += 1;
    }
    eprintln!("channel vectors passed: {counts:?}");
    assert_eq!(counts.values().sum::<usize>(), cases.len());
}
