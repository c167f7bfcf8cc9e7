//! What the key exchange tells a person, kept out of `rke.rs` (the exchange itself): the
//! one-line summary of posts that failed on many RAIDAs ([`not_enough_text`]), per-part
//! reasons collapsed so that one cause is said once ([`collapse_part_reasons`]), and the
//! progress of the posts ([`KeyProgress`], [`ProgressHook`]).

use std::sync::Arc;

use raida_proto::commands::post_key::CoinName;
use raida_proto::Status;

use crate::rke::PostFailure;

/// How far the posts of key parts are (reported after each attempt round, so a person
/// waiting on RAIDAs that are down sees who is missing).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyProgress {
    /// `answered` of `total` posts have an answer (taken or refused); `waiting` are the
    /// RAIDA ids still silent.
    Posting { answered: usize, total: usize, waiting: Vec<u8> },
    /// Every part is posted; the Key Alert goes to the receiver, who fetches the parts.
    Alerting,
}

impl std::fmt::Display for KeyProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyProgress::Posting { answered, total, waiting } if waiting.is_empty() => {
                write!(f, "posting key parts: {answered}/{total} RAIDAs answered")
            }
            KeyProgress::Posting { answered, total, waiting } => {
                let ids: Vec<String> = waiting.iter().map(|i| i.to_string()).collect();
                write!(
                    f,
                    "posting key parts: {answered}/{total} RAIDAs answered, waiting for {} (ids {})",
                    waiting.len(),
                    ids.join(", ")
                )
            }
            KeyProgress::Alerting => write!(f, "key parts posted; the receiver is fetching them"),
        }
    }
}

/// A callback for [`KeyProgress`] (`rke::SendOptions::progress`); cheap to clone.
#[derive(Clone)]
pub struct ProgressHook(pub Arc<dyn Fn(&KeyProgress) + Send + Sync>);

impl ProgressHook {
    pub fn new(f: impl Fn(&KeyProgress) + Send + Sync + 'static) -> ProgressHook {
        ProgressHook(Arc::new(f))
    }
    pub(crate) fn report(&self, p: &KeyProgress) {
        (self.0)(p)
    }
}

impl std::fmt::Debug for ProgressHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressHook")
    }
}

/// What a failed post says, by cause: the texts come from `rke::failure_reason` (checked
/// by the test below against the real texts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cause {
    NoAnswer,
    NotRegistered,
    WrongAn,
    Other,
}

fn cause(reason: &str) -> Cause {
    if reason.starts_with("no answer") {
        Cause::NoAnswer
    } else if reason.starts_with(&Status::EncryptionCoinNotFound.to_string()) {
        Cause::NotRegistered
    } else if reason.starts_with(&Status::InvalidEncryption.to_string()) {
        Cause::WrongAn
    } else {
        Cause::Other
    }
}

fn ids(f: &[&PostFailure]) -> String {
    let v: Vec<String> = f.iter().map(|x| x.raida_id.to_string()).collect();
    v.join(", ")
}

/// The headline of `RkeError::NotEnoughServers`: what happened, once, and what to do; the
/// per-RAIDA answers stay in the error's `failures` (the CLI lists them with `-v`). `took`:
/// how many RAIDAs took a part; each failure is one other RAIDA asked.
pub(crate) fn not_enough_text(needed: usize, took: usize, coin: CoinName, failures: &[PostFailure]) -> String {
    let all = failures.len();
    if all == 0 {
        return format!(
            "{needed} key servers are needed but network.toml lists fewer RAIDAs that speak EN 4 \
             (give --parts with at most that many, and at least a majority)"
        );
    }
    let by = |c: Cause| failures.iter().filter(|f| cause(&f.reason) == c).collect::<Vec<_>>();
    let (silent, unregistered, wrong_an) = (by(Cause::NoAnswer), by(Cause::NotRegistered), by(Cause::WrongAn));
    if took == 0 && unregistered.len() == all {
        return format!(
            "this wallet's coin {coin} is not registered on this network (all {all} RAIDAs asked answered {}): \
             register it (`raida network add-user`, or the `raida coin set` lines `raida wallet new` printed), or \
             use a wallet of this network",
            Status::EncryptionCoinNotFound
        );
    }
    if took == 0 && silent.len() == all {
        return format!(
            "no RAIDA answered (all {all} asked were silent over UDP and TCP): is the network up? \
             (`raida network up`), and is --network the right network.toml?"
        );
    }
    if took == 0 && wrong_an.len() == all {
        return format!(
            "every RAIDA asked ({all}) refused this wallet's AN ({}): is --wallet a coin of this network, with its \
             current ANs?",
            Status::InvalidEncryption
        );
    }
    // a mix: one clause per cause, each with its RAIDA ids
    let mut parts = Vec::new();
    if !silent.is_empty() {
        parts.push(format!("{} did not answer (ids {})", silent.len(), ids(&silent)));
    }
    if !unregistered.is_empty() {
        parts.push(format!("{} do not know coin {coin} (ids {})", unregistered.len(), ids(&unregistered)));
    }
    if !wrong_an.is_empty() {
        parts.push(format!("{} refused the wallet's AN (ids {})", wrong_an.len(), ids(&wrong_an)));
    }
    let other = by(Cause::Other);
    if !other.is_empty() {
        parts.push(format!("{} refused the post (ids {})", other.len(), ids(&other)));
    }
    format!(
        "{needed} RAIDAs must each take a key part, but only {took} of the {} asked did: {} (-v lists each \
         RAIDA's answer)",
        took + all,
        parts.join("; ")
    )
}

/// What the sender is told about a refused key: with the parts bound to the receiver's
/// address and nothing fetched, the likely cause is that binding (the receiver reaches the
/// RAIDAs from another address, 218), which only the sender can undo.
pub(crate) fn refusal_text(status: Status, fetched: usize, bound_address: bool, otherwise: &str) -> String {
    if bound_address && fetched == 0 && status != Status::RequestRate {
        return "it fetched nothing: the parts were bound to the receiver's address (--bind-address), and a \
                receiver that reaches the RAIDAs from another address (listening on 0.0.0.0, NAT) is refused \
                them (218): send again without --bind-address"
            .into();
    }
    otherwise.into()
}

/// Per-part reasons, each cause once: `16 parts (RAIDAs 1, 2, ...): REASON; part 3 (RAIDA
/// 7): OTHER`, in the order the causes first appear. `items` are (part, RAIDA id, reason).
pub(crate) fn collapse_part_reasons(items: &[(usize, u8, String)]) -> String {
    let mut groups: Vec<(&str, Vec<(usize, u8)>)> = Vec::new();
    for (part, id, reason) in items {
        match groups.iter_mut().find(|(r, _)| *r == reason.as_str()) {
            Some((_, v)) => v.push((*part, *id)),
            None => groups.push((reason.as_str(), vec![(*part, *id)])),
        }
    }
    let text: Vec<String> = groups
        .into_iter()
        .map(|(reason, who)| match who.as_slice() {
            [(part, id)] => format!("part {part} (RAIDA {id}): {reason}"),
            _ => {
                let ids: Vec<String> = who.iter().map(|(_, id)| id.to_string()).collect();
                format!("{} parts (RAIDAs {}): {reason}", who.len(), ids.join(", "))
            }
        })
        .collect();
    text.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rke::status_hint;

    fn failure(id: u8, reason: String) -> PostFailure {
        PostFailure { raida_id: id, addr: ([127, 0, 0, 1], 18000 + id as u16).into(), reason }
    }

    #[test]
    fn one_headline_for_one_cause() {
        let coin = CoinName { dn: 1, sn: 7 };
        let unregistered: Vec<PostFailure> =
            (0..25).map(|i| failure(i, status_hint(Status::EncryptionCoinNotFound, i, coin))).collect();
        let line = not_enough_text(16, 0, coin, &unregistered);
        assert!(line.starts_with("this wallet's coin 1:7 is not registered on this network"), "{line}");
        assert!(!line.contains("RAIDA 3"), "per-RAIDA detail in the headline: {line}");
        let silent: Vec<PostFailure> = (0..25)
            .map(|i| failure(i, format!("no answer over UDP or TCP: is RAIDA {i} running and reachable?")))
            .collect();
        let line = not_enough_text(16, 0, coin, &silent);
        assert!(line.starts_with("no RAIDA answered"), "{line}");
        assert!(line.contains("raida network up"), "{line}");
        let mut mixed = silent[..5].to_vec();
        mixed.extend(unregistered[5..10].iter().cloned());
        let line = not_enough_text(16, 10, coin, &mixed);
        assert!(line.contains("only 10 of the 20 asked did"), "{line}");
        assert!(line.contains("5 did not answer (ids 0, 1, 2, 3, 4)"), "{line}");
        assert!(line.contains("5 do not know coin 1:7 (ids 5, 6, 7, 8, 9)"), "{line}");
        assert!(line.len() < 300, "{line}");
    }

    #[test]
    fn identical_part_reasons_are_said_once() {
        let r = status_hint(Status::ReceiverAddress, 1, CoinName { dn: 1, sn: 2 });
        let mut items: Vec<(usize, u8, String)> = (0..16).map(|i| (i, i as u8 + 1, r.clone())).collect();
        items.push((16, 20, "other".into()));
        let line = collapse_part_reasons(&items);
        assert_eq!(line.matches(&r).count(), 1, "{line}");
        assert!(line.starts_with("16 parts (RAIDAs 1, 2, 3,"), "{line}");
        assert!(line.ends_with("; part 16 (RAIDA 20): other"), "{line}");
    }
}
