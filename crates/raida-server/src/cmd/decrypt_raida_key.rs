//! 4/45 Decrypt RAIDA Key: open key tickets made by other RAIDAs with this server's
//! identity coin, write the key halves into the target coins, durable before the answer.

use std::collections::HashMap;

use raida_proto::commands::key_tickets::{self, DecryptRecord};
use raida_proto::consts::mfs_for_unix_time;
use raida_proto::{Key16, Status};

use crate::ledger::Fault;
use crate::state::{Answer, Call, ServerState};

/// Why a record was rejected (for logs and tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    CoinId,
    SplitId,
    RaidaId,
    TargetNotPresent,
    NoFf,
    TargetMismatch,
}

pub fn run(state: &ServerState, call: &Call) -> Answer {
    answer(state, call).0
}

/// The answer and each record's verdict.
pub fn answer(state: &ServerState, call: &Call) -> (Answer, Vec<Verdict>) {
    let (coin, records) = match key_tickets::parse_decrypt(&call.payload) {
        Ok(r) => r,
        Err(s) => return (s.into(), Vec::new()),
    };
    // Missing, not loading or unreadable: 197 all three.
    let Ok(Some(ans)) = state.ledger.identity_coin(coin.0, coin.1) else {
        return (Status::CoinLoad.into(), Vec::new());
    };
    let mfs = mfs_for_unix_time(call.now);
    let mut pending: HashMap<(i8, u32), [u8; 16]> = HashMap::new();
    let mut order: Vec<(i8, u32)> = Vec::new();
    let mut results = Vec::with_capacity(records.len());
    let mut verdicts = Vec::with_capacity(records.len());
    for r in &records {
        let Ok(v) = judge(state, r, &ans, &mut pending, &mut order, coin_id(state)) else {
            // A target whose page cannot be read: the whole request fails before anything
            // is written (194), rather than that record reading as "not present".
            return (Status::Filesystem.into(), verdicts);
        };
        results.push(u8::from(v == Verdict::Ok));
        verdicts.push(v);
    }
    let updates: Vec<_> = order.iter().map(|t| (t.0, t.1, pending[t], mfs)).collect();
    if !updates.is_empty() {
        if let Err(e) = state.ledger.write_coins(&updates) {
            tracing::error!(error = %e, "decrypt raida key: durable write failed");
            return (Status::Filesystem.into(), verdicts);
        }
    }
    (Answer::ok(results), verdicts)
}

fn coin_id(state: &ServerState) -> u16 {
    state.identity.coin_id
}

fn judge(
    state: &ServerState,
    r: &DecryptRecord,
    ans: &[[u8; 16]; 25],
    pending: &mut HashMap<(i8, u32), [u8; 16]>,
    order: &mut Vec<(i8, u32)>,
    coin_id: u16,
) -> Result<Verdict, Fault> {
    if r.coin_id != coin_id {
        return Ok(Verdict::CoinId);
    }
    if r.split_id > 1 {
        return Ok(Verdict::SplitId);
    }
    if r.raida_id > 24 {
        return Ok(Verdict::RaidaId);
    }
    let Some(current) = state.ledger.coin_an(r.target.0, r.target.1)? else {
        return Ok(Verdict::TargetNotPresent);
    };
    let maker = Key16::new(ans[r.raida_id as usize]);
    let block = raida_proto::crypto::aes128_decrypt_block(&maker, &r.ticket);
    if block[15] != 0xFF {
        return Ok(Verdict::NoFf);
    }
    let Some(key) = key_tickets::open_ticket(&maker, &r.ticket, r.target) else {
        return Ok(Verdict::TargetMismatch);
    };
    let an = pending.entry(r.target).or_insert_with(|| {
        order.push(r.target);
        current
    });
    let at = r.split_id as usize * 8;
    an[at..at + 8].copy_from_slice(&key);
    Ok(Verdict::Ok)
}
