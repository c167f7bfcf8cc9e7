//! 4/45 Decrypt RAIDA Key: open key tickets made by other RAIDAs with this server's
//! identity coin, write the key halves into the target coins, durable before the answer.

use std::collections::HashMap;
use std::sync::Arc;

use raida_proto::commands::decrypt_raida_key::{DecryptRaidaKey, DecryptRaidaKeyAnswer, DecryptRecord, RecordFault};
use raida_proto::commands::encrypt_key::{open_ticket_checked, TicketFault};
use raida_proto::consts::{mfs_for_unix_time, AnsPerRaida};
use raida_proto::{CoinId, Key16, Status};

use super::{Command, Ctx};
use crate::ledger::{CoinUpdate, Fault};
use crate::state::{Answer, Call, Reply, ServerState};

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

impl From<RecordFault> for Verdict {
    fn from(f: RecordFault) -> Verdict {
        match f {
            RecordFault::CoinId => Verdict::CoinId,
            RecordFault::SplitId => Verdict::SplitId,
            RecordFault::RaidaId => Verdict::RaidaId,
        }
    }
}

impl From<TicketFault> for Verdict {
    fn from(f: TicketFault) -> Verdict {
        match f {
            TicketFault::NoFf => Verdict::NoFf,
            TicketFault::TargetMismatch => Verdict::TargetMismatch,
        }
    }
}

impl Command for DecryptRaidaKey {
    fn apply(self, state: &ServerState, ctx: &Ctx) -> Result<DecryptRaidaKeyAnswer, Status> {
        judge_all(state, ctx, self, &mut Vec::new())
    }
}

/// A durable write (answered once the coins are written), run off the receiving thread.
pub fn run(state: Arc<ServerState>, call: Call, answer: Reply) {
    answer.send(super::run::<DecryptRaidaKey>(&state, &call))
}

/// The answer and each record's verdict.
pub fn answer(state: &ServerState, call: &Call) -> (Answer, Vec<Verdict>) {
    let mut verdicts = Vec::new();
    let answer = super::run_with(call, |req: DecryptRaidaKey, ctx| judge_all(state, ctx, req, &mut verdicts));
    (answer, verdicts)
}

fn judge_all(
    state: &ServerState,
    ctx: &Ctx,
    req: DecryptRaidaKey,
    verdicts: &mut Vec<Verdict>,
) -> Result<DecryptRaidaKeyAnswer, Status> {
    // Missing, not loading or unreadable: 197 all three.
    let Ok(Some(ans)) = state.ledger.identity_coin(req.coin) else {
        return Err(Status::CoinLoad);
    };
    let mfs = mfs_for_unix_time(ctx.now);
    let mut pending: HashMap<CoinId, [u8; 16]> = HashMap::new();
    let mut order: Vec<CoinId> = Vec::new();
    verdicts.reserve(req.records.len());
    for r in &req.records {
        // A target whose page cannot be read: the whole request fails before anything
        // is written (194), rather than that record reading as "not present".
        let v = judge(state, r, &ans, &mut pending, &mut order).map_err(|_| Status::Filesystem)?;
        verdicts.push(v);
    }
    let updates: Vec<_> =
        order.iter().filter_map(|&coin| Some(CoinUpdate { coin, an: *pending.get(&coin)?, mfs })).collect();
    if !updates.is_empty() {
        if let Err(e) = state.ledger.write_coins(&updates) {
            tracing::error!(error = %e, "decrypt raida key: durable write failed");
            return Err(Status::Filesystem);
        }
    }
    Ok(DecryptRaidaKeyAnswer(verdicts.iter().map(|v| *v == Verdict::Ok).collect()))
}

fn judge(
    state: &ServerState,
    r: &DecryptRecord,
    ans: &AnsPerRaida,
    pending: &mut HashMap<CoinId, [u8; 16]>,
    order: &mut Vec<CoinId>,
) -> Result<Verdict, Fault> {
    if let Err(f) = r.check(state.identity.coin_id) {
        return Ok(f.into());
    }
    let Some(current) = state.ledger.coin_an(r.target)? else {
        return Ok(Verdict::TargetNotPresent);
    };
    // check() bounds the RAIDA id below 25
    let Some(maker) = ans.get(r.raida_id as usize).map(|an| Key16::new(*an)) else {
        return Ok(Verdict::RaidaId);
    };
    let key = match open_ticket_checked(&maker, &r.ticket, r.target) {
        Ok(k) => k,
        Err(f) => return Ok(f.into()),
    };
    let an = pending.entry(r.target).or_insert_with(|| {
        order.push(r.target);
        *current.as_bytes()
    });
    if let Some(half) = an.get_mut(r.half()) {
        half.copy_from_slice(&key);
    }
    Ok(Verdict::Ok)
}
