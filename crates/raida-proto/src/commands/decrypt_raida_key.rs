//! 4/45 Decrypt RAIDA Key: [decryption coin DN][SN] then N × 26-byte records → one byte
//! per record (0x01 accepted, 0x00 rejected).

use super::ids;
use crate::codec::{put_coin, Codec, Reader, Reply, Request};
use crate::coin::{CoinId, IdentityCoin};
use crate::consts::TOTAL_RAIDA_SERVERS;
use crate::status::Status;

pub const DECRYPT_RECORD: usize = 26;
/// The decryption coin before the records.
const COIN: usize = 5;

/// One 26-byte record of 45.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecryptRecord {
    pub coin_id: u16,
    pub split_id: u8,
    pub raida_id: u8,
    pub shard: u8,
    pub target: CoinId,
    pub ticket: [u8; 16],
}

/// Why a record fails the checks that need no store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordFault {
    CoinId,
    SplitId,
    RaidaId,
}

impl DecryptRecord {
    /// The per-record checks that need no store, in the order of 6/45: coin id, split id,
    /// RAIDA id. The only place they are written.
    pub fn check(&self, coin_id: u16) -> Result<(), RecordFault> {
        if self.coin_id != coin_id {
            return Err(RecordFault::CoinId);
        }
        if self.split_id > 1 {
            return Err(RecordFault::SplitId);
        }
        if self.raida_id >= TOTAL_RAIDA_SERVERS {
            return Err(RecordFault::RaidaId);
        }
        Ok(())
    }

    /// Whether [`DecryptRecord::check`] passes.
    pub fn shape_ok(&self, coin_id: u16) -> bool {
        self.check(coin_id).is_ok()
    }

    /// Where the 8 key bytes go in the target's AN: bytes `split*8 .. split*8+8`.
    pub fn half(&self) -> std::ops::Range<usize> {
        let at = self.split_id as usize * 8;
        at..at + 8
    }
}

impl Codec for DecryptRecord {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.coin_id.to_be_bytes());
        out.push(self.split_id);
        out.push(self.raida_id);
        out.push(self.shard);
        put_coin(out, self.target);
        out.extend_from_slice(&self.ticket);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, Status> {
        Ok(DecryptRecord {
            coin_id: r.u16()?,
            split_id: r.u8()?,
            raida_id: r.u8()?,
            shard: r.u8()?,
            target: r.coin()?,
            ticket: r.array()?,
        })
    }
}

/// The 45 request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecryptRaidaKey {
    /// The identity coin whose ANs open the tickets.
    pub coin: IdentityCoin,
    pub records: Vec<DecryptRecord>,
}

impl Codec for DecryptRaidaKey {
    fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(COIN + self.records.len() * DECRYPT_RECORD);
        put_coin(out, self.coin.0);
        self.records.iter().for_each(|r| r.encode(out));
    }
    /// 16 if shorter than 31; 39 if not whole records.
    fn read(r: &mut Reader<'_>) -> Result<Self, Status> {
        if r.left() < COIN + DECRYPT_RECORD {
            return Err(Status::InvalidPacketLength);
        }
        if !(r.left() - COIN).is_multiple_of(DECRYPT_RECORD) {
            return Err(Status::CoinsNotDiv);
        }
        let coin = IdentityCoin(r.coin()?);
        let n = r.left() / DECRYPT_RECORD;
        Ok(DecryptRaidaKey { coin, records: r.records(n)? })
    }
}

impl Request for DecryptRaidaKey {
    const GROUP: u8 = ids::GROUP_KEY_EXCHANGE;
    const COMMAND: u8 = ids::DECRYPT_RAIDA_KEY;
    const NAME: &'static str = "decrypt_raida_key";
    type Answer = DecryptRaidaKeyAnswer;
}

/// The answer: one result per record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecryptRaidaKeyAnswer(pub Vec<bool>);

impl Codec for DecryptRaidaKeyAnswer {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend(self.0.iter().map(|a| u8::from(*a)));
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, Status> {
        Ok(DecryptRaidaKeyAnswer(r.rest().iter().map(|b| *b == 1).collect()))
    }
}

impl Reply for DecryptRaidaKeyAnswer {}
