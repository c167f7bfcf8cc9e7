//! Harness over the key receiver's alert rules (`raida_client::rke::plan_alert`), what
//! `raida key receive` and `raida receive` check before sending any Get Key (PROTOCOL.md
//! section 9):
//!
//! * `receiver_alert`: byte 0 chooses the network's size (1..=25 RAIDAs, RAIDA i at
//!   127.0.0.1:(40000 + i)), byte 1 which of them are legacy (every RAIDA whose id is a
//!   multiple of it, 0 = none), byte 2 the receiver's `min_parts`; the rest is decoded as a
//!   42 payload. Checked: nothing panics; an accepted alert has at least a majority of the
//!   network's RAIDAs and `min_parts` entries, each naming a distinct, modern RAIDA of the
//!   network at its own address and port, planned in entry order with its key id; a
//!   refusal states a rule the alert really breaks.

#![allow(dead_code)]

use raida_client::rke::{plan_alert, AlertRefusal, ReceiveOptions};
use raida_net::network::{majority_of, ResolvedRaida};
use raida_proto::codec::Codec;
use raida_proto::commands::key_alert::KeyAlert;

/// The port of RAIDA `id` in the harness's network.
pub const BASE_PORT: u16 = 40_000;

pub fn receiver_alert(data: &[u8]) {
    let (head, payload) = data.split_at(data.len().min(3));
    let head: [u8; 3] = std::array::from_fn(|i| head.get(i).copied().unwrap_or(0));
    let n = (head[0] % 25) as usize + 1;
    let legacy_every = head[1];
    let raidas: Vec<ResolvedRaida> = (0..n as u8)
        .map(|id| {
            let legacy = legacy_every != 0 && id % legacy_every == 0;
            ResolvedRaida::new(id, ([127, 0, 0, 1], BASE_PORT + id as u16).into(), legacy)
        })
        .collect();
    let opts = ReceiveOptions { min_parts: head[2] as usize % 20, ..ReceiveOptions::default() };
    let Ok(KeyAlert { entries }) = KeyAlert::decode(payload) else { return };
    let needed = majority_of(n).max(opts.min_parts);
    match plan_alert(&entries, &raidas, &opts) {
        Ok(plan) => {
            assert!(plan.len() == entries.len() && plan.len() >= needed, "too few parts accepted");
            for (i, (p, e)) in plan.iter().zip(&entries).enumerate() {
                assert_eq!(p.key_id, e.key_id, "part {i}: another key id");
                assert_eq!(p.raida.server.raida_id, e.raida_id, "part {i}: another RAIDA");
                assert!(raidas.contains(&p.raida) && !p.raida.legacy, "part {i}: not a modern RAIDA of the network");
                assert_eq!(Some(p.raida.server.addr.ip()), e.ip(), "part {i}: another address");
                assert_eq!(p.raida.server.addr.port(), e.port, "part {i}: another port");
                assert!(plan[..i].iter().all(|q| q.raida.server.raida_id != e.raida_id), "part {i}: RAIDA repeated");
            }
        }
        Err(AlertRefusal::TooFewParts { parts, needed: got, raidas: r }) => {
            assert_eq!((parts, got, r), (entries.len(), needed, n));
            assert!(parts < needed);
        }
        Err(AlertRefusal::RepeatedRaida { part, raida_id }) => {
            assert_eq!(entries[part].raida_id, raida_id);
            assert!(entries[..part].iter().any(|e| e.raida_id == raida_id));
        }
        Err(AlertRefusal::NotInNetwork { part, .. }) => {
            let e = &entries[part];
            let listed = raidas.iter().any(|r| {
                r.server.raida_id == e.raida_id && Some(r.server.addr.ip()) == e.ip() && r.server.addr.port() == e.port
            });
            assert!(!listed, "part {part} names a RAIDA of the network");
        }
        Err(AlertRefusal::Legacy { part, raida_id }) => {
            assert!(raidas.iter().any(|r| r.server.raida_id == raida_id && r.legacy), "part {part}: not legacy");
        }
        // sender rules: only mailbox alerts name a sender before any fetch
        Err(other) => panic!("a Key Alert refused for a sender rule: {other}"),
    }
}
