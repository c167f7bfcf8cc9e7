//! Every command-level case of ../shared/vectors (sections 6 and 7): Get Ticket,
//! Validate Ticket, Post Key / Get Key, Key Alert, Encrypt Key, Decrypt RAIDA Key.

mod common;

use std::net::{IpAddr, Ipv4Addr};

use common::*;
use raida_proto::codec::Codec;
use raida_proto::commands::{encrypt_key, get_key, get_ticket, key_alert, post_key, validate_ticket};
use raida_proto::header::{Encryption, KeyIdentity};
use raida_proto::{CoinId, IdentityCoin};
use raida_proto::{Key16, Status};
use raida_server::ledger::MemoryLedger;
use raida_server::pending_keys::key_file_name;
use raida_server::KeyServer;
use raida_server::{cmd, dispatch};
use raida_vectors::{arr, bytes, cases, i64_, name, opt_bytes, u64_, Value};

const NOW: u64 = 1_800_000_000;

fn get_ticket_header() -> raida_proto::RequestHeader {
    header(Encryption::None, KeyIdentity::None, 2, 40)
}

#[test]
fn get_ticket_cases() {
    for c in cases("get_ticket.json", "get_ticket") {
        let (i, e) = (&c["input"], &c["expected"]);
        let n = name(&c);
        let t = TestState::new(1, 6, ledger_from(&i["store"]), NOW);
        let answer = cmd::get_ticket::run(&t.state, &call(get_ticket_header(), bytes(&i["payload"]), NOW));
        assert_eq!(answer.status.code() as u64, u64_(&e["status"]), "{n}");
        let expected = bytes(&e["response_payload"]);
        if let Some(passes) = e["passes"].as_array() {
            let passed: Vec<bool> = passes.iter().map(|p| p.as_bool().unwrap()).collect();
            if passed.iter().any(|p| *p) {
                // the server picks its own ticket number: compare the bitfield, then claim
                let cut = expected.len() - 4;
                assert_eq!(answer.payload[..cut], expected[..cut], "{n} bitfield");
                assert_eq!(answer.payload.len(), expected.len(), "{n}");
                let number = u32::from_be_bytes(answer.payload[cut..].try_into().unwrap());
                let coins = t.state.tickets().claim(number, 3, NOW).expect("ticket is live");
                let payload = bytes(&i["payload"]);
                let records = get_ticket::GetTicket::decode(&payload).unwrap().records;
                let mut want: Vec<CoinId> =
                    records.iter().zip(&passed).filter(|(_, p)| **p).map(|(r, _)| r.coin).collect();
                // a ticket holds each distinct coin once (Validate Ticket answers no more)
                let mut distinct = std::collections::HashSet::new();
                want.retain(|c| distinct.insert(*c));
                assert_eq!(coins, want, "{n} ticket coins");
                continue;
            }
        }
        assert_eq!(answer.payload, expected, "{n}");
    }
    for c in cases("get_ticket.json", "get_ticket_pool_full") {
        let (i, e) = (&c["input"], &c["expected"]);
        let t = TestState::new(1, 6, ledger_from(&i["store"]), NOW);
        for k in 0..u64_(&i["live_tickets"]) {
            t.state.tickets().insert(k as u32 + 1, vec![], NOW).expect("room");
        }
        let answer = cmd::get_ticket::run(&t.state, &call(get_ticket_header(), bytes(&i["payload"]), NOW));
        assert_eq!(answer.status.code() as u64, u64_(&e["status"]), "{}", name(&c));
        assert_eq!(answer.payload, bytes(&e["response_payload"]));
    }
}

#[test]
fn validate_ticket_cases() {
    for c in cases("get_ticket.json", "validate_ticket") {
        let (i, e) = (&c["input"], &c["expected"]);
        let v = validate_ticket::ValidateTicket {
            claiming_raida: u64_(&i["claiming_raida_id"]) as u8,
            ticket: u64_(&i["ticket"]) as u32,
        };
        assert_eq!(v.to_bytes(), bytes(&e["payload"]), "{}", name(&c));
        assert_eq!(validate_ticket::ValidateTicket::decode(&bytes(&e["payload"])), Ok(v));
        let coins: Vec<CoinId> = coins_of(&i["coins"]).into_iter().map(CoinId::from).collect();
        let answer = validate_ticket::ValidateTicketAnswer { coins };
        assert_eq!(answer.to_bytes(), bytes(&e["response_payload"]));
    }
    for c in cases("get_ticket.json", "validate_sequence") {
        let (i, e) = (&c["input"], &c["expected"]);
        let now = u64_(&i["now"]);
        let t = TestState::new(1, 6, MemoryLedger::default(), now);
        for tk in i["tickets"].as_array().unwrap() {
            t.state
                .tickets()
                .insert(u64_(&tk["ticket"]) as u32, coins_of(&tk["coins"]).into_iter().map(CoinId::from).collect(), now)
                .unwrap();
        }
        for (step, want) in i["steps"].as_array().unwrap().iter().zip(e["steps"].as_array().unwrap()) {
            let at = now + u64_(&step["time_offset"]);
            let (enc, id) = match u64_(&step["en"]) {
                7 => {
                    (Encryption::Raida, KeyIdentity::Raida { sender: u64_(&step["sender_raida_id"]) as u8, key_id: 1 })
                }
                1 => (Encryption::Coin, KeyIdentity::Coin { coin: CoinId { dn: 1, sn: 1 } }),
                4 => (Encryption::Token, KeyIdentity::Token { coin: CoinId { dn: 1, sn: 1 } }),
                _ => (Encryption::None, KeyIdentity::None),
            };
            let a = cmd::validate_ticket::run(&t.state, &call(header(enc, id, 2, 50), bytes(&step["payload"]), at));
            let d = step["description"].as_str().unwrap_or("");
            assert_eq!(a.status.code() as u64, u64_(&want["status"]), "{d}");
            assert_eq!(a.payload, bytes(&want["payload"]), "{d}");
        }
    }
}

#[test]
fn post_key_cases() {
    for c in cases("post_key.json", "post_key") {
        let (i, e) = (&c["input"], &c["expected"]);
        let n = name(&c);
        let t = TestState::new(1, 6, MemoryLedger::default(), NOW);
        let coins = coins_of(&i["request_coins"]);
        let (enc, id) = identity_for(u64_(&i["request_en"]), &coins, &i["poster"]);
        let a = dispatch::answer(&t.state, &call(header(enc, id, 4, 41), bytes(&i["payload"]), NOW));
        assert_eq!(a.status.code() as u64, u64_(&e["status"]), "{n}");
        if a.status == Status::Success {
            // the stored key bytes come back from Get Key
            let key_id: [u8; 16] = arr(&i["fields"]["key_id"]);
            let receiver = (i64_(&i["fields"]["receiver_dn"]) as i8, u64_(&i["fields"]["receiver_sn"]) as u32);
            let get = get_key::GetKey { key_id }.to_bytes();
            let (genc, gid) = if receiver == (0, 0) {
                (Encryption::None, KeyIdentity::None)
            } else {
                (Encryption::Coin, KeyIdentity::Coin { coin: CoinId { dn: receiver.0, sn: receiver.1 } })
            };
            let mut gc = call(header(genc, gid, 4, 43), get, NOW);
            let ip: [u8; 4] = arr(&i["fields"]["receiver_ip"]);
            if ip != [0; 4] {
                gc.peer = IpAddr::V4(Ipv4Addr::from(ip));
            }
            let got = dispatch::answer(&t.state, &gc);
            assert_eq!(got.status, Status::Success, "{n}");
            let answer = get_key::GetKeyAnswer::decode(&got.payload).unwrap();
            assert_eq!(answer.key, bytes(&e["key_bytes"]), "{n}");
        }
    }
    for c in cases("post_key.json", "get_key_payload") {
        let p = get_key::GetKey { key_id: arr(&c["input"]["key_id"]) }.to_bytes();
        let mut want = bytes(&c["expected"]["payload"]);
        assert_eq!(get_key::GetKey::decode(&want), get_key::GetKey::decode(&p), "{}", name(&c));
        want[16..].fill(0);
        assert_eq!(p, want);
    }
    for c in cases("post_key.json", "get_key_response") {
        let i = &c["input"];
        let sender = post_key::CoinName { dn: i64_(&i["sender_dn"]) as i8, sn: u64_(&i["sender_sn"]) as u32 };
        let answer = get_key::GetKeyAnswer { sender, key: bytes(&i["key_bytes"]) };
        assert_eq!(answer.to_bytes(), bytes(&c["expected"]["payload"]));
    }
    for c in cases("post_key.json", "key_file") {
        let path = format!("Keys/{}", key_file_name(&arr(&c["input"]["key_id"])));
        assert_eq!(path, c["expected"]["path"].as_str().unwrap(), "{}", name(&c));
    }
}

#[test]
fn post_key_get_key_sequence() {
    for c in cases("post_key.json", "key_sequence") {
        let (i, e) = (&c["input"], &c["expected"]);
        let now = u64_(&i["now"]);
        let t = TestState::new(1, 6, MemoryLedger::default(), now);
        assert_eq!(u64_(&i["key_ttl"]), 3600);
        for (step, want) in i["steps"].as_array().unwrap().iter().zip(e["steps"].as_array().unwrap()) {
            let d = step["description"].as_str().unwrap_or("");
            let coins = coins_of(&step["request_coins"]);
            let (enc, id) = identity_for(u64_(&step["en"]), &coins, &step["poster"]);
            let at = now + u64_(&step["time_offset"]);
            let command = if step["op"] == "post" { 41 } else { 43 };
            let mut cl = call(header(enc, id, 4, command), bytes(&step["payload"]), at);
            let ip: [u8; 4] = arr(&step["requester_ip"]);
            cl.peer = IpAddr::V4(Ipv4Addr::from(ip));
            let a = dispatch::answer(&t.state, &cl);
            assert_eq!(a.status.code() as u64, u64_(&want["status"]), "{d}");
            assert_eq!(a.payload, bytes(&want["payload"]), "{d}");
        }
    }
}

fn entry(v: &Value) -> key_alert::AlertEntry {
    key_alert::AlertEntry {
        ip_version: u64_(&v["ip_version"]) as u8,
        key_id: arr(&v["key_id"]),
        address: arr(&v["address"]),
        port: u64_(&v["port"]) as u16,
        raida_id: u64_(&v["raida_id"]) as u8,
    }
}

#[test]
fn key_alert_cases() {
    for c in cases("key_alert.json", "payload") {
        let entries: Vec<_> = c["input"]["entries"].as_array().unwrap().iter().map(entry).collect();
        let alert = key_alert::KeyAlert { entries };
        let p = alert.to_bytes();
        assert_eq!(p, bytes(&c["expected"]["payload"]), "{}", name(&c));
        assert_eq!(key_alert::KeyAlert::decode(&p).unwrap(), alert);
    }
    for c in cases("key_alert.json", "payload_check") {
        let got =
            key_alert::KeyAlert::decode(&bytes(&c["input"]["payload"])).err().map(|s| s.code() as u64).unwrap_or(0);
        assert_eq!(got, u64_(&c["expected"]["status"]), "{}", name(&c));
    }
    for c in cases("key_alert.json", "result") {
        let parts: Vec<Option<Vec<u8>>> = c["input"]["parts"].as_array().unwrap().iter().map(opt_bytes).collect();
        let (status, map, key) = key_alert::assemble(&parts);
        assert_eq!(status.code() as u64, u64_(&c["expected"]["status"]), "{}", name(&c));
        assert_eq!(map.to_vec(), bytes(&c["expected"]["response_payload"]));
        assert_eq!(key, opt_bytes(&c["expected"]["key"]));
    }
    for c in cases("key_alert.json", "contact") {
        let servers: Vec<KeyServer> = c["input"]["key_servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let e = entry(&serde_json::json!({"ip_version": s["ip_version"], "key_id": "00000000000000000000000000000000", "address": s["address"], "port": s["port"], "raida_id": s["raida_id"]}));
                KeyServer::new(e.raida_id, (e.ip().expect("configured address"), e.port).into(), false)
            })
            .collect();
        let got: Vec<bool> = c["input"]["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| cmd::key_alert::may_contact(&servers, &entry(v)).is_some())
            .collect();
        let want: Vec<bool> =
            c["expected"]["contact"].as_array().unwrap().iter().map(|b| b.as_bool().unwrap()).collect();
        assert_eq!(got, want, "{}", name(&c));
    }
}

#[test]
fn encrypt_key_cases() {
    for c in cases("encrypt_key.json", "ticket") {
        let (i, e) = (&c["input"], &c["expected"]);
        let req = encrypt_key::EncryptKey {
            recipient: IdentityCoin(CoinId { dn: i64_(&i["recipient_dn"]) as i8, sn: u64_(&i["recipient_sn"]) as u32 }),
            key_part: arr(&i["key_part"]),
            target: CoinId { dn: i64_(&i["target_dn"]) as i8, sn: u64_(&i["target_sn"]) as u32 },
        };
        assert_eq!(req.to_bytes(), bytes(&e["payload"]), "{}", name(&c));
        let block = encrypt_key::ticket_block(&req.key_part, req.target, arr(&i["random2"]));
        assert_eq!(block.to_vec(), bytes(&e["block"]));
        let an = Key16::new(arr(&i["recipient_an"]));
        let ticket = encrypt_key::make_ticket(&an, &req.key_part, req.target, arr(&i["random2"]));
        assert_eq!(ticket.to_vec(), bytes(&e["ticket"]));
        assert_eq!(encrypt_key::open_ticket(&an, &ticket, req.target), Some(req.key_part));
    }
    for c in cases("encrypt_key.json", "tampered") {
        let (i, e) = (&c["input"], &c["expected"]);
        let an = Key16::new(arr(&i["recipient_an"]));
        let ticket: [u8; 16] = arr(&i["ticket"]);
        let block = raida_proto::crypto::aes128_decrypt_block(&an, &ticket);
        assert_eq!(block.to_vec(), bytes(&e["block"]), "{}", name(&c));
        let target = CoinId { dn: i64_(&i["target_dn"]) as i8, sn: u64_(&i["target_sn"]) as u32 };
        assert_eq!(encrypt_key::open_ticket(&an, &ticket, target).is_some(), e["valid"].as_bool().unwrap());
    }
    for c in cases("encrypt_key.json", "command") {
        let (i, e) = (&c["input"], &c["expected"]);
        let t = TestState::new(1, 6, ledger_from(&i["store"]), NOW);
        // the request's key identity, from the coins whose ANs made its key
        let coins: Vec<(i8, u32)> = i["key_coins"]
            .as_array()
            .expect("key_coins")
            .iter()
            .map(|k| (i64_(&k["dn"]) as i8, u64_(&k["sn"]) as u32))
            .collect();
        let (enc, id) = match u64_(&i["en"]) {
            0 => (Encryption::None, KeyIdentity::None),
            1 => (Encryption::Coin, KeyIdentity::Coin { coin: CoinId { dn: coins[0].0, sn: coins[0].1 } }),
            2 => (Encryption::Locker, KeyIdentity::Locker { prefix: [1, 2, 3, 4, 5] }),
            4 => (Encryption::Token, KeyIdentity::Token { coin: CoinId { dn: coins[0].0, sn: coins[0].1 } }),
            5 => (Encryption::TokenPair, KeyIdentity::TokenPair { first: coins[0].into(), second: coins[1].into() }),
            7 => (Encryption::Raida, KeyIdentity::Raida { sender: 2, key_id: 1 }),
            en => panic!("{}: unexpected en {en}", name(&c)),
        };
        let a = cmd::encrypt_key::answer(
            &t.state,
            &call(header(enc, id, 4, 44), bytes(&i["payload"]), NOW),
            arr(&i["random2"]),
        );
        assert_eq!(a.status.code() as u64, u64_(&e["status"]), "{}", name(&c));
        assert_eq!(a.payload, bytes(&e["ticket"]), "{}", name(&c));
    }
}

#[test]
fn decrypt_raida_key_cases() {
    for c in cases("decrypt_raida_key.json", "decrypt") {
        let (i, e) = (&c["input"], &c["expected"]);
        let n = name(&c);
        let coin_id = u64_(&i["coin_id"]) as u16;
        let now = u64_(&i["now"]);
        let ledger = ledger_from(&i["store"]);
        for f in i["identity_files"].as_array().unwrap() {
            let dn = i64_(&f["dn"]) as i8;
            let sn = u64_(&f["sn"]) as u32;
            assert_eq!(f["filename"].as_str().unwrap(), raida_store::identity_coin_rel_path(dn, sn), "{n}");
            if let Ok(ans) = raida_store::decode_identity_coin(&bytes(&f["file"]), coin_id) {
                ledger.identities.write().insert(IdentityCoin(CoinId { dn, sn }), ans);
            }
        }
        let t = TestState::new(1, coin_id, ledger, now);
        let (a, verdicts) = cmd::decrypt_raida_key::answer(
            &t.state,
            &call(header(Encryption::None, KeyIdentity::None, 4, 45), bytes(&i["payload"]), now),
        );
        assert_eq!(a.status.code() as u64, u64_(&e["status"]), "{n}");
        assert_eq!(a.payload, bytes(&e["results"]), "{n}");
        let reasons: Vec<String> = verdicts
            .iter()
            .map(|v| {
                use cmd::decrypt_raida_key::Verdict::*;
                match v {
                    Ok => "ok",
                    CoinId => "coin_id",
                    SplitId => "split_id",
                    RaidaId => "raida_id",
                    TargetNotPresent => "target_not_present",
                    NoFf => "no_ff",
                    TargetMismatch => "target_mismatch",
                }
                .to_string()
            })
            .collect();
        let want: Vec<String> =
            e["reasons"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_string()).collect();
        assert_eq!(reasons, want, "{n}");
        assert_eq!(raida_proto::consts::mfs_for_unix_time(now) as u64, u64_(&e["mfs_now"]), "{n}");
        for s in e["store_after"].as_array().unwrap() {
            let rec = t.ledger.record(CoinId { dn: i64_(&s["dn"]) as i8, sn: u64_(&s["sn"]) as u32 }).expect("record");
            assert_eq!(hex::encode(rec.0), s["an"].as_str().unwrap(), "{n}");
            assert_eq!(rec.1 as u64, u64_(&s["mfs"]), "{n}");
        }
    }
}

/// `mailbox_sequence` of mailbox.json: 46 and 47 on one fresh server, through the handlers
/// of the dispatch table (the server's path), with the vector's clock, TTL and total.
#[test]
fn mailbox_sequence_cases() {
    let all = cases("mailbox.json", "mailbox_sequence");
    assert_eq!(all.len(), 4);
    for c in all {
        let (i, e) = (&c["input"], &c["expected"]);
        let n = name(&c);
        let now = u64_(&i["now"]);
        let present = coins_of(&i["present_coins"]);
        let ledger = MemoryLedger::with_coins(present.iter().map(|&c| (c, ([0x5a; 16], 1u8))));
        let t = TestState::build(1, 6, ledger, now, |s| {
            s.mailbox.alert_ttl_secs = u64_(&i["alert_ttl"]);
            s.mailbox.max_alerts = u64_(&i["capacity"]) as usize;
        });
        let steps = i["steps"].as_array().unwrap();
        let wants = e["steps"].as_array().unwrap();
        assert_eq!(steps.len(), wants.len(), "{n}");
        for (step, want) in steps.iter().zip(wants) {
            let d = step["description"].as_str().unwrap_or("");
            let coins = coins_of(&step["request_coins"]);
            let (enc, id) = identity_for(u64_(&step["en"]), &coins, &Value::Null);
            let at = now + u64_(&step["time_offset"]);
            t.set_now(at);
            let command = if step["op"] == "leave" { 46 } else { 47 };
            let mut cl = call(header(enc, id, 4, command), bytes(&step["payload"]), at);
            cl.transport = match step["transport"].as_str() {
                Some("tcp") => raida_server::Transport::Tcp,
                _ => raida_server::Transport::Udp,
            };
            let a = dispatch::answer(&t.state, &cl);
            assert_eq!(a.status.code() as u64, u64_(&want["status"]), "{n}: {d}");
            assert_eq!(hex::encode(&a.payload), want["payload"].as_str().unwrap(), "{n}: {d}");
        }
    }
}

/// `key_repeat_sequence` of mailbox.json: retransmitted 41s and repeated 43s (6/41, 6/43
/// as amended) on one fresh server, through the handlers of the dispatch table, with the
/// vector's clock, key identity (EN and coin) and source address per step.
#[test]
fn key_repeat_sequence_cases() {
    let all = cases("mailbox.json", "key_repeat_sequence");
    for c in all {
        let (i, e) = (&c["input"], &c["expected"]);
        let n = name(&c);
        let now = u64_(&i["now"]);
        assert_eq!(u64_(&i["repeat_seconds"]), raida_server::pending_keys::REPEAT_SECS, "{n}");
        let t = TestState::build(1, 6, MemoryLedger::default(), now, |s| s.key_ttl_secs = u64_(&i["key_ttl"]));
        let steps = i["steps"].as_array().unwrap();
        let wants = e["steps"].as_array().unwrap();
        assert_eq!(steps.len(), wants.len(), "{n}");
        for (step, want) in steps.iter().zip(wants) {
            let d = step["description"].as_str().unwrap_or("");
            let coins = coins_of(&step["request_coins"]);
            let (enc, id) = identity_for(u64_(&step["en"]), &coins, &Value::Null);
            let at = now + u64_(&step["time_offset"]);
            t.set_now(at);
            let command = if step["op"] == "post" { 41 } else { 43 };
            let mut cl = call(header(enc, id, 4, command), bytes(&step["payload"]), at);
            let ip: [u8; 4] = arr(&step["requester_ip"]);
            cl.peer = IpAddr::V4(Ipv4Addr::from(ip));
            let a = dispatch::answer(&t.state, &cl);
            assert_eq!(a.status.code() as u64, u64_(&want["status"]), "{n}: {d}");
            assert_eq!(hex::encode(&a.payload), want["payload"].as_str().unwrap(), "{n}: {d}");
        }
    }
}

/// `leave_alert_check` and `take_alerts_check` of mailbox.json through the server's
/// handlers: 34 (before the size) and 16 as the vectors say; a request that passes them is
/// served (250), and a left alert reaches its receiver with the vouched-for sender.
#[test]
fn mailbox_check_cases() {
    use raida_proto::commands::leave_alert::LeaveAlert;
    use raida_proto::commands::take_alerts::TakeAlertsAnswer;
    let identity = |en: u64, c: &Value| -> (Encryption, KeyIdentity) {
        let coin = || CoinId { dn: i64_(&c[0]) as i8, sn: u64_(&c[1]) as u32 };
        match en {
            0 => (Encryption::None, KeyIdentity::None),
            1 => (Encryption::Coin, KeyIdentity::Coin { coin: coin() }),
            2 => (Encryption::Locker, KeyIdentity::Locker { prefix: [1; 5] }),
            4 => (Encryption::Token, KeyIdentity::Token { coin: coin() }),
            5 => (Encryption::TokenPair, KeyIdentity::TokenPair { first: coin(), second: CoinId { dn: 1, sn: 1 } }),
            7 => (Encryption::Raida, KeyIdentity::Raida { sender: 1, key_id: 1 }),
            other => panic!("EN {other}"),
        }
    };
    let leave = cases("mailbox.json", "leave_alert_check");
    let take = cases("mailbox.json", "take_alerts_check");
    assert!(leave.len() >= 30 && take.len() >= 13);
    for (c, command) in leave.iter().map(|c| (c, 46)).chain(take.iter().map(|c| (c, 47))) {
        let (i, e) = (&c["input"], &c["expected"]);
        let n = name(c);
        let payload = bytes(&i["payload"]);
        // the receiver of a well-formed alert is present here
        let receiver = LeaveAlert::decode(&payload).ok().map(|a| a.receiver);
        let ledger = MemoryLedger::with_coins(receiver.map(|r| ((r.dn, r.sn), ([1; 16], 1u8))));
        let t = TestState::new(1, 6, ledger, NOW);
        let (enc, id) = identity(u64_(&i["request_en"]), &i["request_coin"]);
        let a = dispatch::answer(&t.state, &call(header(enc, id, 4, command), payload, NOW));
        let want = match u64_(&e["status"]) {
            0 => 250,
            s => s,
        };
        assert_eq!(a.status.code() as u64, want, "{n}");
        if command == 46 && want == 250 {
            let r = receiver.expect("a receiver");
            let taker = header(Encryption::Token, KeyIdentity::Token { coin: r }, 4, 47);
            let got =
                TakeAlertsAnswer::decode(&dispatch::answer(&t.state, &call(taker, vec![0], NOW)).payload).unwrap();
            let s = &e["sender"];
            assert_eq!(got.alerts[0].sender, CoinId { dn: i64_(&s[0]) as i8, sn: u64_(&s[1]) as u32 }, "{n}");
        }
    }
}
