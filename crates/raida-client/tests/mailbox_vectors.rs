//! `vectors/mailbox.json` cases of the client side: the session key K of section 9, and the
//! receiver's rules for a mailbox alert before any fetch.

use raida_client::rke::{derive_session_key, plan_mailbox_alert, AlertRefusal, ReceiveOptions};
use raida_net::network::ResolvedRaida;
use raida_proto::commands::leave_alert::{AlertBody, MailboxPart};
use raida_proto::commands::take_alerts::WaitingAlert;
use raida_proto::mailbox::rendezvous_id;
use raida_proto::CoinId;
use raida_vectors::{arr, bytes, cases, i64_, name, u64_};

#[test]
fn session_keys() {
    let all = cases("mailbox.json", "session_key");
    assert!(!all.is_empty());
    for c in all {
        let i = &c["input"];
        let coin = |dn: &str, sn: &str| CoinId { dn: i64_(&i[dn]) as i8, sn: u64_(&i[sn]) as u32 };
        let k = derive_session_key(
            &bytes(&i["assembled"]),
            coin("sender_dn", "sender_sn"),
            coin("receiver_dn", "receiver_sn"),
            &arr(&i["first_key_id"]),
        );
        assert_eq!(k.as_bytes(), &arr::<32>(&c["expected"]["k"]), "{}", name(&c));
    }
}

/// K of a session_key case feeds the rendezvous case that names it (same K).
#[test]
fn the_rendezvous_id_follows_from_k() {
    let k = cases("mailbox.json", "session_key").into_iter().map(|c| arr::<32>(&c["expected"]["k"])).next().unwrap();
    let r = cases("mailbox.json", "rendezvous").into_iter().find(|c| arr::<32>(&c["input"]["k"]) == k).unwrap();
    assert_eq!(rendezvous_id(&k, &arr(&r["input"]["info"])), arr::<32>(&r["expected"]["rendezvous_id"]));
}

fn raidas(n: u8) -> Vec<ResolvedRaida> {
    (0..n).map(|id| ResolvedRaida::new(id, ([127, 0, 0, 1], 50_000 + u16::from(id)).into(), false)).collect()
}

fn alert(sender: CoinId, ids: impl IntoIterator<Item = u8>) -> WaitingAlert {
    let parts = ids.into_iter().map(|raida_id| MailboxPart { raida_id, key_id: [raida_id; 16], commitment: [0; 16] });
    WaitingAlert { sender, age: 0, alert_id: [1; 16], body: AlertBody { parts: parts.collect(), hints: Vec::new() } }
}

#[test]
fn mailbox_alerts_are_checked_before_any_fetch() {
    let alice = CoinId { dn: 1, sn: 1 };
    let net = raidas(25);
    let opts = ReceiveOptions::default();
    let plan = plan_mailbox_alert(&alert(alice, 0..13), &net, &opts).unwrap();
    assert_eq!(plan.len(), 13);
    assert_eq!(plan[3].raida.server.addr, net[3].server.addr, "addresses come from the network file");
    assert!(matches!(plan_mailbox_alert(&alert(alice, 0..12), &net, &opts), Err(AlertRefusal::TooFewParts { .. })));
    let anonymous = CoinId { dn: 0, sn: 0 };
    assert_eq!(plan_mailbox_alert(&alert(anonymous, 0..16), &net, &opts).err(), Some(AlertRefusal::Anonymous));
    let only_bob = ReceiveOptions { accept: vec![CoinId { dn: 1, sn: 2 }], ..ReceiveOptions::default() };
    assert_eq!(
        plan_mailbox_alert(&alert(alice, 0..16), &net, &only_bob).err(),
        Some(AlertRefusal::NotAccepted { sender: alice })
    );
    // a part on a RAIDA id the network file does not have
    assert!(matches!(
        plan_mailbox_alert(&alert(alice, 0..13), &raidas(12), &opts),
        Err(AlertRefusal::NotInNetwork { part: 12, .. })
    ));
}
