//! 4/44 Encrypt Key: [recipient DN][recipient SN][key part 8][target DN][target SN] → a
//! 16-byte key ticket (one AES-128 block). The ticket format is shared with 45.

use super::ids;
use crate::codec::{put_coin, Codec, Reader, Reply, Request};
use crate::coin::{CoinId, IdentityCoin};
use crate::crypto;
use crate::keys::Key16;
use crate::status::Status;

pub const ENCRYPT_KEY_SIZE: usize = 18;

/// 44 request: [recipient DN][recipient SN][key part 8][target DN][target SN].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncryptKey {
    /// The identity coin whose AN (at this RAIDA) encrypts the ticket.
    pub recipient: IdentityCoin,
    pub key_part: [u8; 8],
    /// The coin the ticket gives a new AN.
    pub target: CoinId,
}

impl Codec for EncryptKey {
    fn encode(&self, out: &mut Vec<u8>) {
        put_coin(out, self.recipient.0);
        out.extend_from_slice(&self.key_part);
        put_coin(out, self.target);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, Status> {
        if r.left() != ENCRYPT_KEY_SIZE {
            return Err(Status::InvalidPacketLength);
        }
        Ok(EncryptKey { recipient: IdentityCoin(r.coin()?), key_part: r.array()?, target: r.coin()? })
    }
}

impl Request for EncryptKey {
    const GROUP: u8 = ids::GROUP_KEY_EXCHANGE;
    const COMMAND: u8 = ids::ENCRYPT_KEY;
    const NAME: &'static str = "encrypt_key";
    type Answer = EncryptKeyAnswer;
}

/// The answer: the ticket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncryptKeyAnswer(pub [u8; 16]);

impl Codec for EncryptKeyAnswer {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, Status> {
        Ok(EncryptKeyAnswer(r.array()?))
    }
}

impl Reply for EncryptKeyAnswer {}

/// The plaintext of a ticket: `key part (8) || target DN || target SN (4) || 2 random || end`,
/// where `end` is 0xFF in every ticket made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TicketBlock {
    pub key_part: [u8; 8],
    pub target: CoinId,
    pub random2: [u8; 2],
    pub end: u8,
}

impl Codec for TicketBlock {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.key_part);
        put_coin(out, self.target);
        out.extend_from_slice(&self.random2);
        out.push(self.end);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, Status> {
        Ok(TicketBlock { key_part: r.array()?, target: r.coin()?, random2: r.array()?, end: r.u8()? })
    }
}

/// `key part (8) || target DN || target SN (4) || 2 random || 0xFF`.
pub fn ticket_block(key_part: &[u8; 8], target: CoinId, random2: [u8; 2]) -> [u8; 16] {
    let mut block = [0u8; 16];
    block.copy_from_slice(&TicketBlock { key_part: *key_part, target, random2, end: 0xFF }.to_bytes());
    block
}

/// The ticket: one AES-128 block encryption of the block under the recipient's AN.
pub fn make_ticket(recipient_an: &Key16, key_part: &[u8; 8], target: CoinId, random2: [u8; 2]) -> [u8; 16] {
    crypto::aes128_encrypt_block(recipient_an, &ticket_block(key_part, target, random2))
}

/// Why a ticket does not open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TicketFault {
    /// Block byte 15 is not 0xFF: not made under this AN, or tampered with.
    NoFf,
    /// Block bytes 8-12 name another coin.
    TargetMismatch,
}

/// Open a ticket: decrypt with the maker's AN, check 0xFF, then the target.
/// Returns the 8 key bytes.
pub fn open_ticket_checked(maker_an: &Key16, ticket: &[u8; 16], target: CoinId) -> Result<[u8; 8], TicketFault> {
    let block = crypto::aes128_decrypt_block(maker_an, ticket);
    let block = TicketBlock::decode(&block).map_err(|_| TicketFault::NoFf)?;
    if block.end != 0xFF {
        return Err(TicketFault::NoFf);
    }
    if block.target != target {
        return Err(TicketFault::TargetMismatch);
    }
    Ok(block.key_part)
}

/// Open a ticket: decrypt with the maker's AN and check 0xFF and the target.
/// Returns the 8 key bytes.
pub fn open_ticket(maker_an: &Key16, ticket: &[u8; 16], target: CoinId) -> Option<[u8; 8]> {
    open_ticket_checked(maker_an, ticket, target).ok()
}
