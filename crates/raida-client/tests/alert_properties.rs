//! Property tests of the key receiver's rules before any fetch (`rke::plan_alert`,
//! PROTOCOL.md section 9), against a model written from the section's words: an alert is
//! planned exactly when it has at least a majority of the network's RAIDAs (and at least
//! `min_parts`) entries, each naming a modern RAIDA of the network at its own address and
//! port, no RAIDA twice; the plan is one fetch per entry, in entry order.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use proptest::prelude::*;
use raida_client::rke::{plan_alert, ReceiveOptions};
use raida_net::network::ResolvedRaida;
use raida_proto::commands::key_alert::AlertEntry;

/// How one entry is made from a RAIDA id: right, or wrong in one way.
#[derive(Clone, Copy, Debug)]
enum Flaw {
    None,
    WrongPort,
    WrongAddress,
    Ipv6,
    UnknownId,
}

fn flaw() -> impl Strategy<Value = Flaw> {
    // mostly right entries, so that accepted alerts are common
    prop_oneof![
        12 => Just(Flaw::None),
        1 => Just(Flaw::WrongPort),
        1 => Just(Flaw::WrongAddress),
        1 => Just(Flaw::Ipv6),
        1 => Just(Flaw::UnknownId),
    ]
}

fn network(n: u8, legacy: &[bool]) -> Vec<ResolvedRaida> {
    (0..n).map(|id| ResolvedRaida::new(id, ([127, 0, 0, 1], 7000 + id as u16).into(), legacy[id as usize])).collect()
}

fn entry(id: u8, flaw: Flaw, key_id: [u8; 16]) -> AlertEntry {
    let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
    match flaw {
        Flaw::None => AlertEntry::new(key_id, ip, 7000 + id as u16, id),
        Flaw::WrongPort => AlertEntry::new(key_id, ip, 6999, id),
        Flaw::WrongAddress => AlertEntry::new(key_id, [127, 0, 0, 2].into(), 7000 + id as u16, id),
        Flaw::Ipv6 => AlertEntry::new(key_id, "::1".parse().unwrap(), 7000 + id as u16, id),
        Flaw::UnknownId => AlertEntry::new(key_id, ip, 7000 + id as u16, 24u8.saturating_add(id % 2)),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn planned_exactly_when_the_rules_hold(
        n in 1u8..=25,
        legacy in proptest::collection::vec(proptest::bool::weighted(0.05), 25),
        picks in proptest::collection::vec((0u8..25, flaw(), any::<[u8; 16]>()), 1..=16),
        min_parts in 0usize..=17,
    ) {
        let raidas = network(n, &legacy);
        let entries: Vec<AlertEntry> = picks.iter().map(|(id, f, k)| entry(id % n, *f, *k)).collect();
        let opts = ReceiveOptions { min_parts, ..ReceiveOptions::default() };
        let needed = (n as usize / 2 + 1).max(min_parts);
        let valid = |e: &AlertEntry| raidas.iter().any(|r| {
            r.server.raida_id == e.raida_id && !r.legacy && r.server.addr == SocketAddr::new(e.ip().unwrap(), e.port)
        });
        let mut ids: Vec<u8> = entries.iter().map(|e| e.raida_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let model = entries.len() >= needed && entries.iter().all(valid) && ids.len() == entries.len();
        let got = plan_alert(&entries, &raidas, &opts);
        prop_assert_eq!(got.is_ok(), model, "{:?}", got);
        if let Ok(plan) = got {
            prop_assert_eq!(plan.len(), entries.len());
            for (p, e) in plan.iter().zip(&entries) {
                prop_assert_eq!(p.key_id, e.key_id);
                prop_assert_eq!(p.raida.server.raida_id, e.raida_id);
            }
        }
    }

    /// Fewer entries than a majority are refused whatever they name, however low
    /// `min_parts` is set: a receiver may demand more, never fewer.
    #[test]
    fn fewer_than_a_majority_is_never_planned(n in 1u8..=25, k in 0usize..13, min_parts in 0usize..=16) {
        let raidas = network(n, &[false; 25]);
        let k = k.min(n as usize / 2);
        let entries: Vec<AlertEntry> = (0..k as u8).map(|id| entry(id, Flaw::None, [id; 16])).collect();
        let opts = ReceiveOptions { min_parts, ..ReceiveOptions::default() };
        prop_assert!(plan_alert(&entries, &raidas, &opts).is_err());
    }
}
