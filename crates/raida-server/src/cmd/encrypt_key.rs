//! 4/44 Encrypt Key: a 16-byte key ticket for another RAIDA — one AES-128 block
//! encryption of `key part || target DN || target SN || 2 random || 0xFF` under the
//! recipient's AN. Encrypted requests only (EN 0 → 34, before the size check), and only
//! under the target coin's own key (6/44 amended): a ticket gives the target a new AN
//! elsewhere through 45, so anyone else asking would be taking the coin over.

use raida_proto::commands::encrypt_key::{self, EncryptKey, EncryptKeyAnswer};
use raida_proto::{Encryption, Status};
use rand_core::RngCore;

use super::{Command, Ctx};
use crate::state::{Answer, Call, ServerState};

impl Command for EncryptKey {
    fn admit(ctx: &Ctx) -> Result<(), Status> {
        if ctx.header.encryption == Encryption::None {
            return Err(Status::InvalidEncryption);
        }
        Ok(())
    }

    fn apply(self, state: &ServerState, ctx: &Ctx) -> Result<EncryptKeyAnswer, Status> {
        let mut random2 = [0u8; 2];
        state.rng().fill_bytes(&mut random2);
        ticket(state, ctx, self, random2)
    }
}

/// The ticket with its 2 random bytes given.
fn ticket(state: &ServerState, ctx: &Ctx, req: EncryptKey, random2: [u8; 2]) -> Result<EncryptKeyAnswer, Status> {
    if !super::request_coins(&ctx.header.key_identity).contains(&req.target) {
        return Err(Status::InvalidEncryption);
    }
    let an = match state.ledger.coin_an(req.recipient.0) {
        Ok(Some(an)) => an,
        Ok(None) => return Err(Status::InvalidSnOrDenomination),
        Err(_) => return Err(Status::Filesystem),
    };
    Ok(EncryptKeyAnswer(encrypt_key::make_ticket(&an, &req.key_part, req.target, random2)))
}

pub fn run(state: &ServerState, call: &Call) -> Answer {
    super::run::<EncryptKey>(state, call)
}

/// The command with its 2 random bytes given (vectors and tests).
pub fn answer(state: &ServerState, call: &Call, random2: [u8; 2]) -> Answer {
    super::run_with(call, |req: EncryptKey, ctx| ticket(state, ctx, req, random2))
}
