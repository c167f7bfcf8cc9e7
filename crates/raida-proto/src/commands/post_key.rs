//! 4/41 Post Key (payload 167): a part of a key, kept for the receiver's Get Key (43).

use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroize;

use super::ids;
use crate::codec::{empty_payload, put_coin, Codec, Reader, Reply, Request};
use crate::status::Status;

pub const POST_KEY_SIZE: usize = 167;
pub const KEY_FIELD: usize = 128;
/// The largest KS + KL a sender uses (section 9): the field would allow 128, but deployed
/// servers refuse it. Every sender builds its Post Key with [`PostKey::for_part`], which
/// keeps to this bound.
pub const SENDER_KEY_END: usize = KEY_FIELD - 1;
pub const KEY_LENGTHS: [u8; 6] = [4, 8, 16, 24, 32, 40];
/// Bytes 25..32: reserved, zero, ignored.
const RESERVED: usize = 7;

/// A coin named in a Post Key; (0, 0) means "not set" ([`CoinId::is_set`]).
pub use crate::coin::CoinId as CoinName;

/// What a server keeps of a Post Key that passed the size, KS and KL checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostedKey {
    pub key_id: [u8; 16],
    pub receiver: CoinName,
    /// 0.0.0.0 = any address.
    pub receiver_ip: [u8; 4],
    pub sender: CoinName,
    /// The KL key bytes taken from the key field at KS.
    pub key_bytes: Vec<u8>,
}

/// The Post Key request as it is on the wire: the key part sits at KS inside 128 bytes of
/// random padding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostKey {
    pub key_id: [u8; 16],
    pub receiver: CoinName,
    pub receiver_ip: [u8; 4],
    pub sender: CoinName,
    pub key_field: [u8; KEY_FIELD],
    /// KS, key start.
    pub key_start: u8,
    /// KL, key length.
    pub key_length: u8,
}

impl PostKey {
    /// What a sender posts for one key part (section 9): a fresh random key id, the part at
    /// a random KS with KS + KL ≤ [`SENDER_KEY_END`] inside random padding. The one place a
    /// sender places a part (`raida key send`, `raida send` and `raida key send --receiver`
    /// all come here). A part longer than 40 bytes is not a valid KL: the server refuses it.
    pub fn for_part<R: RngCore + CryptoRng>(
        rng: &mut R,
        receiver: CoinName,
        receiver_ip: [u8; 4],
        sender: CoinName,
        key_part: &[u8],
    ) -> PostKey {
        let mut key_id = [0u8; 16];
        rng.fill_bytes(&mut key_id);
        let mut padding = [0u8; KEY_FIELD];
        rng.fill_bytes(&mut padding);
        let room = SENDER_KEY_END.saturating_sub(key_part.len()) as u32 + 1;
        let ks = (rng.next_u32() % room) as u8;
        let post = PostKey::with_part(key_id, receiver, receiver_ip, sender, &padding, ks, key_part);
        padding.zeroize();
        post
    }

    /// The request that carries `key_part` at `ks` inside `padding` (128 random bytes):
    /// KL is the part's length. The caller chooses KS; a part that does not fit is cut at
    /// the end of the field (and the server refuses the request for its KS or KL).
    pub fn with_part(
        key_id: [u8; 16],
        receiver: CoinName,
        receiver_ip: [u8; 4],
        sender: CoinName,
        padding: &[u8; KEY_FIELD],
        ks: u8,
        key_part: &[u8],
    ) -> PostKey {
        let mut key_field = *padding;
        let start = (ks as usize).min(KEY_FIELD);
        let end = (start + key_part.len()).min(KEY_FIELD);
        if let (Some(dst), Some(src)) = (key_field.get_mut(start..end), key_part.get(..end - start)) {
            dst.copy_from_slice(src);
        }
        PostKey {
            key_id,
            receiver,
            receiver_ip,
            sender,
            key_field,
            key_start: ks,
            key_length: key_part.len().min(255) as u8,
        }
    }

    /// Whether KS + KL keeps to the senders' bound ([`SENDER_KEY_END`]).
    pub fn within_sender_bound(&self) -> bool {
        self.key_start as usize + self.key_length as usize <= SENDER_KEY_END
    }

    /// The KL key bytes at KS (empty if they do not fit: `read` refuses such a request).
    pub fn key_bytes(&self) -> &[u8] {
        let ks = self.key_start as usize;
        self.key_field.get(ks..ks + self.key_length as usize).unwrap_or(&[])
    }

    /// What the server keeps of it.
    pub fn posted(&self) -> PostedKey {
        PostedKey {
            key_id: self.key_id,
            receiver: self.receiver,
            receiver_ip: self.receiver_ip,
            sender: self.sender,
            key_bytes: self.key_bytes().to_vec(),
        }
    }
}

/// The key field holds a key part: wiped when the request is dropped.
impl Drop for PostKey {
    fn drop(&mut self) {
        self.key_field.zeroize();
    }
}

impl Codec for PostKey {
    fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(POST_KEY_SIZE);
        out.extend_from_slice(&self.key_id);
        put_coin(out, self.receiver);
        out.extend_from_slice(&self.receiver_ip);
        out.extend_from_slice(&[0; RESERVED]);
        put_coin(out, self.sender);
        out.extend_from_slice(&self.key_field);
        out.push(self.key_start);
        out.push(self.key_length);
    }

    /// Checks in order: size (16), KS (195), KL (196).
    fn read(r: &mut Reader<'_>) -> Result<Self, Status> {
        if r.left() != POST_KEY_SIZE {
            return Err(Status::InvalidPacketLength);
        }
        let key_id = r.array()?;
        let receiver = r.coin()?;
        let receiver_ip = r.array()?;
        r.skip(RESERVED)?;
        let sender = r.coin()?;
        let key_field = r.array()?;
        let (key_start, key_length) = (r.u8()?, r.u8()?);
        if key_start as usize >= KEY_FIELD {
            return Err(Status::InvalidKeyStart);
        }
        if !KEY_LENGTHS.contains(&key_length) || key_start as usize + key_length as usize > KEY_FIELD {
            return Err(Status::InvalidKeyLength);
        }
        Ok(PostKey { key_id, receiver, receiver_ip, sender, key_field, key_start, key_length })
    }
}

impl Request for PostKey {
    const GROUP: u8 = ids::GROUP_KEY_EXCHANGE;
    const COMMAND: u8 = ids::POST_KEY;
    const NAME: &'static str = "post_key";
    type Answer = PostKeyAnswer;
}

empty_payload! {
    /// The Post Key answer: none (250).
    PostKeyAnswer
}

impl Reply for PostKeyAnswer {}

#[cfg(test)]
mod tests {
    use rand_core::OsRng;

    use super::*;

    /// Section 9: a sender's KS + KL never reaches 128, for every valid KL, and the part
    /// is where KS says.
    #[test]
    fn for_part_keeps_ks_plus_kl_within_127() {
        let none = CoinName::default();
        for &kl in &KEY_LENGTHS {
            let part: Vec<u8> = (0..kl).collect();
            let mut highest = 0;
            for _ in 0..2_000 {
                let p = PostKey::for_part(&mut OsRng, none, [0; 4], none, &part);
                assert!(p.within_sender_bound(), "KS {} + KL {kl} > {SENDER_KEY_END}", p.key_start);
                assert_eq!(p.key_bytes(), &part[..]);
                highest = highest.max(p.key_start as usize + kl as usize);
            }
            // the whole room is used (the last KS is drawn), so the bound is the real limit
            assert_eq!(highest, SENDER_KEY_END, "KL {kl}");
        }
    }
}
