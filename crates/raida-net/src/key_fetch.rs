//! The receiver core of a Key Alert (PROTOCOL.md 6/42 and section 9): fetch every part with
//! Get Key, all in parallel over one socket within one timeout, and assemble them in entry
//! order. A RAIDA server's 42 (`raida-server`'s `cmd/key_alert.rs`) and `raida key receive`
//! (`raida_client::rke::KeyReceiver`) both come here; what each does before (which
//! servers it may contact, its budget) and after (the inbox, the sender rules) is theirs.

use std::time::Duration;

use raida_proto::client::ClientKey;
use raida_proto::codec::Codec;
use raida_proto::commands::get_key::{GetKey, GetKeyAnswer};
use raida_proto::commands::ids::{GET_KEY, GROUP_KEY_EXCHANGE};
use raida_proto::commands::key_alert;
use raida_proto::commands::post_key::KEY_LENGTHS;
use raida_proto::mailbox::commitment;
use raida_proto::{CoinId, Status};
use zeroize::{Zeroize, Zeroizing};

use crate::batch::{udp_batch, BatchRequest};
use crate::{ClientError, Server};

/// The largest Get Key answer: header 32, then [sender DN 1][sender SN 4][key ≤ 40],
/// a GCM tag 16 (modern) and the terminator 2. The receive buffer is this size, not 64 KiB.
pub const MAX_GET_KEY_ANSWER: usize = 32 + 5 + max_key_length() + 16 + 2;

const fn max_key_length() -> usize {
    let mut max = 0;
    let mut i = 0;
    while i < KEY_LENGTHS.len() {
        if KEY_LENGTHS[i] as usize > max {
            max = KEY_LENGTHS[i] as usize;
        }
        i += 1;
    }
    max
}

/// Where one part is fetched from and how the Get Key is authenticated.
pub struct PartSource {
    pub server: Server,
    pub key: ClientKey,
    pub key_id: [u8; 16],
}

/// Why the part of a source was not fetched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PartFailure {
    #[error(transparent)]
    Request(#[from] ClientError),
    /// A verified success whose payload is not a Get Key answer.
    #[error("Get Key answer too short")]
    Malformed,
}

/// What the fetches of one alert came to.
pub struct Assembled {
    /// 250 when every part came and the key ends in 0xFF; 242 when none came; else 243.
    pub status: Status,
    /// The part map of the Key Alert answer (0xFF for each part fetched).
    pub map: [u8; 16],
    /// The key, in entry order, when `status` is 250 (wiped when dropped).
    pub key: Option<Zeroizing<Vec<u8>>>,
    /// Per entry: the sender its part named, when it was fetched.
    pub senders: Vec<Option<CoinId>>,
    /// Per source that failed: its index in the sources and why.
    pub failures: Vec<(usize, PartFailure)>,
    /// Per entry: the commitment of the part it got ([`raida_proto::mailbox::commitment`]
    /// of its key id and bytes), for a receiver that checks a mailbox alert's commitments
    /// and names the RAIDA whose part does not match.
    pub commitments: Vec<Option<[u8; 16]>>,
}

/// Fetch every source once and assemble the alert's entries: `slots[i]` is the source of
/// entry i (None: the entry cannot be fetched, its part fails). Entries that share a
/// source share its part. Every answer and part is wiped once used.
pub async fn fetch_and_assemble(
    coin_id: u16,
    sources: Vec<PartSource>,
    slots: &[Option<usize>],
    timeout: Duration,
) -> Assembled {
    let key_ids: Vec<[u8; 16]> = sources.iter().map(|s| s.key_id).collect();
    let requests: Vec<BatchRequest> = sources
        .into_iter()
        .map(|s| BatchRequest {
            server: s.server,
            group: GROUP_KEY_EXCHANGE,
            command: GET_KEY,
            key: s.key,
            payload: GetKey { key_id: s.key_id }.to_bytes(),
        })
        .collect();
    let results =
        if requests.is_empty() { Vec::new() } else { udp_batch(coin_id, &requests, timeout, MAX_GET_KEY_ANSWER).await };
    drop(requests);
    let mut failures = Vec::new();
    let fetched: Vec<Option<(CoinId, Zeroizing<Vec<u8>>)>> = results
        .into_iter()
        .enumerate()
        .map(|(i, r)| match r {
            Ok(mut reply) => {
                let part = GetKeyAnswer::decode(&reply.payload).ok().map(|a| (a.sender, Zeroizing::new(a.key)));
                reply.payload.zeroize();
                if part.is_none() {
                    failures.push((i, PartFailure::Malformed));
                }
                part
            }
            Err(e) => {
                failures.push((i, PartFailure::Request(e)));
                None
            }
        })
        .collect();
    let of_entry = |slot: &Option<usize>| fetched.get((*slot)?)?.as_ref();
    let mut parts: Vec<Option<Vec<u8>>> = slots.iter().map(|s| of_entry(s).map(|(_, k)| k.to_vec())).collect();
    let commitments = slots
        .iter()
        .zip(&parts)
        .map(|(slot, part)| Some(commitment(key_ids.get((*slot)?)?, part.as_deref()?)))
        .collect();
    let (status, map, key) = key_alert::assemble(&parts);
    for p in parts.iter_mut().flatten() {
        p.zeroize();
    }
    Assembled {
        status,
        map,
        key: key.map(Zeroizing::new),
        senders: slots.iter().map(|s| of_entry(s).map(|(sender, _)| *sender)).collect(),
        failures,
        commitments,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_buffer_fits_the_largest_part() {
        assert_eq!(max_key_length(), 40);
        assert_eq!(MAX_GET_KEY_ANSWER, 95);
    }

    /// With no source at all nothing is sent, and every entry fails.
    #[tokio::test]
    async fn entries_without_a_source_fail_without_a_request() {
        let a = fetch_and_assemble(1, Vec::new(), &[None, None], Duration::from_millis(10)).await;
        assert_eq!((a.status, a.key.is_none(), a.senders), (Status::AllFail, true, vec![None, None]));
        assert!(a.failures.is_empty());
    }
}
