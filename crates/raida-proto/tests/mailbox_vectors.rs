//! The codec, bound and derivation cases of `vectors/mailbox.json` that need no server:
//! commitments, mailbox RAIDAs, rendezvous ids, 46 payloads and checks, 47 checks and
//! answers. (The server runs `mailbox_sequence`; the client `session_key`.)

use raida_proto::codec::Codec;
use raida_proto::commands::leave_alert::{AlertBody, ConnectionHint, LeaveAlert, MailboxPart};
use raida_proto::commands::take_alerts::{TakeAlerts, TakeAlertsAnswer, WaitingAlert};
use raida_proto::header::KeyIdentity;
use raida_proto::mailbox::{commitment, mailbox_raidas, owner, rendezvous_id, COMMITMENT_DOMAIN, RENDEZVOUS_SALT};
use raida_proto::{CoinId, Status};
use raida_vectors::{arr, bytes, cases, i64_, name, u64_, Value};

fn coin(v: &Value) -> CoinId {
    let a = v.as_array().expect("[dn, sn]");
    CoinId { dn: i64_(&a[0]) as i8, sn: u64_(&a[1]) as u32 }
}

fn parts(v: &Value) -> Vec<MailboxPart> {
    let list = v.as_array().expect("parts");
    list.iter()
        .map(|p| MailboxPart {
            raida_id: u64_(&p["raida_id"]) as u8,
            key_id: arr(&p["key_id"]),
            commitment: arr(&p["commitment"]),
        })
        .collect()
}

fn hints(v: &Value) -> Vec<ConnectionHint> {
    let list = v.as_array().expect("hints");
    list.iter()
        .map(|h| {
            assert_eq!(u64_(&h["kind"]), 1);
            ConnectionHint {
                ip_version: u64_(&h["ip_version"]) as u8,
                address: arr(&h["address"]),
                port: u64_(&h["port"]) as u16,
            }
        })
        .collect()
}

/// The key identity a case's request has: EN 1 a coin, EN 4 a coin or token, EN 5 the
/// first token (the second is not given), EN 0/2/7 none that names a coin.
fn identity(en: u64, c: &Value) -> KeyIdentity {
    match en {
        1 => KeyIdentity::Coin { coin: coin(c) },
        4 => KeyIdentity::Token { coin: coin(c) },
        5 => KeyIdentity::TokenPair { first: coin(c), second: CoinId { dn: 1, sn: 1 } },
        2 => KeyIdentity::Locker { prefix: [0; 5] },
        7 => KeyIdentity::Raida { sender: 1, key_id: 1 },
        _ => KeyIdentity::None,
    }
}

fn status(v: &Value) -> u64 {
    u64_(v)
}

#[test]
fn commitments() {
    let all = cases("mailbox.json", "commitment");
    assert!(!all.is_empty());
    for c in all {
        let (key_id, part) = (arr::<16>(&c["input"]["key_id"]), bytes(&c["input"]["part"]));
        let mut hashed = COMMITMENT_DOMAIN.to_vec();
        hashed.extend_from_slice(&key_id);
        hashed.extend_from_slice(&part);
        assert_eq!(hashed, bytes(&c["expected"]["hashed"]), "{}", name(&c));
        assert_eq!(commitment(&key_id, &part), arr(&c["expected"]["commitment"]), "{}", name(&c));
    }
}

#[test]
fn mailbox_raidas_of_a_coin() {
    for c in cases("mailbox.json", "mailbox_raidas") {
        let receiver = CoinId { dn: i64_(&c["input"]["dn"]) as i8, sn: u64_(&c["input"]["sn"]) as u32 };
        let want: Vec<u8> = c["expected"]["raida_ids"].as_array().unwrap().iter().map(|v| u64_(v) as u8).collect();
        assert_eq!(mailbox_raidas(receiver).to_vec(), want, "{}", name(&c));
    }
}

#[test]
fn rendezvous_ids() {
    for c in cases("mailbox.json", "rendezvous") {
        assert_eq!(bytes(&c["expected"]["salt"]), RENDEZVOUS_SALT, "{}", name(&c));
        let got = rendezvous_id(&arr(&c["input"]["k"]), &arr(&c["input"]["info"]));
        assert_eq!(got, arr::<32>(&c["expected"]["rendezvous_id"]), "{}", name(&c));
    }
}

#[test]
fn leave_alert_payloads() {
    for c in cases("mailbox.json", "leave_alert_payload") {
        let i = &c["input"];
        let alert = LeaveAlert {
            receiver: CoinId { dn: i64_(&i["receiver_dn"]) as i8, sn: u64_(&i["receiver_sn"]) as u32 },
            alert_id: arr(&i["alert_id"]),
            body: AlertBody { parts: parts(&i["parts"]), hints: hints(&i["hints"]) },
        };
        let want = bytes(&c["expected"]["payload"]);
        assert_eq!(alert.to_bytes(), want, "{}", name(&c));
        assert_eq!(want.len() as u64, u64_(&c["expected"]["length"]), "{}", name(&c));
        assert_eq!(LeaveAlert::decode(&want), Ok(alert), "{}", name(&c));
    }
}

#[test]
fn leave_alert_checks() {
    let all = cases("mailbox.json", "leave_alert_check");
    assert!(all.len() > 20);
    for c in all {
        let i = &c["input"];
        // 34 first (before the size), then every format fault is 16
        let got = owner(&identity(u64_(&i["request_en"]), &i["request_coin"]))
            .and_then(|sender| LeaveAlert::decode(&bytes(&i["payload"])).map(|_| sender));
        match got {
            Ok(sender) => {
                assert_eq!(status(&c["expected"]["status"]), 0, "{}", name(&c));
                assert_eq!(sender, coin(&c["expected"]["sender"]), "{}", name(&c));
            }
            Err(s) => assert_eq!(s.code() as u64, status(&c["expected"]["status"]), "{}", name(&c)),
        }
    }
}

#[test]
fn take_alerts_checks() {
    for c in cases("mailbox.json", "take_alerts_check") {
        let i = &c["input"];
        let got = owner(&identity(u64_(&i["request_en"]), &i["request_coin"]))
            .and_then(|r| TakeAlerts::decode(&bytes(&i["payload"])).map(|t| (r, t)));
        match got {
            Ok((receiver, take)) => {
                assert_eq!(status(&c["expected"]["status"]), 0, "{}", name(&c));
                assert_eq!(receiver, coin(&c["expected"]["receiver"]), "{}", name(&c));
                assert_eq!(take.wait as u64, u64_(&c["expected"]["wait"]), "{}", name(&c));
            }
            Err(s) => assert_eq!(s.code() as u64, status(&c["expected"]["status"]), "{}", name(&c)),
        }
    }
}

#[test]
fn take_alerts_answers() {
    for c in cases("mailbox.json", "take_alerts_answer") {
        let i = &c["input"];
        let waiting: Vec<WaitingAlert> = i["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| WaitingAlert {
                sender: CoinId { dn: i64_(&a["sender_dn"]) as i8, sn: u64_(&a["sender_sn"]) as u32 },
                age: u64_(&a["age"]) as u16,
                alert_id: arr(&a["alert_id"]),
                body: AlertBody { parts: parts(&a["parts"]), hints: hints(&a["hints"]) },
            })
            .collect();
        let udp = i["transport"].as_str() == Some("udp");
        let n = TakeAlertsAnswer::fits(&waiting, udp);
        assert_eq!(n as u64, u64_(&c["expected"]["count"]), "{}", name(&c));
        let answer = TakeAlertsAnswer { alerts: waiting[..n].to_vec() };
        let want = bytes(&c["expected"]["payload"]);
        assert_eq!(answer.to_bytes(), want, "{}", name(&c));
        assert_eq!(want.len() as u64, u64_(&c["expected"]["payload_length"]), "{}", name(&c));
        assert_eq!(TakeAlertsAnswer::decode(&want), Ok(answer), "{}", name(&c));
    }
}

#[test]
fn a_short_answer_is_16_not_a_panic() {
    assert_eq!(TakeAlertsAnswer::decode(&[200]), Err(Status::InvalidPacketLength));
}
