//! Request headers: the framing of section 2, the rules of 3.1 in their exact order,
//! the legacy 32-byte header (3.2) and the modern 48-byte header (3.4).

use crate::codec::be32;
use crate::coin::CoinId;
use crate::consts::{LEGACY_HEADER_SIZE, MAX_COMMAND_GROUP, MAX_SHARD, MODERN_HEADER_SIZE};
use crate::status::Status;
use crate::wire_enum::wire_enum;

wire_enum! {
    /// Encryption type (byte 16), named as PROTOCOL.md 3.1 does. A number outside this
    /// table is refused with 27 INVALID_ENCRYPTION_CODE.
    pub enum Encryption {
        /// EN 0: no encryption.
        None = 0 => "EN 0 (none)",
        /// EN 1: AES-128-CTR under a coin's AN.
        Coin = 1 => "EN 1 (coin AN)",
        /// EN 2: AES-128-CTR under a locker's AN.
        Locker = 2 => "EN 2 (locker AN)",
        /// EN 4: AES-256-GCM, one token.
        Token = 4 => "EN 4 (token)",
        /// EN 5: AES-256-GCM, two tokens.
        TokenPair = 5 => "EN 5 (token pair)",
        /// EN 7: AES-256-GCM, RAIDA-to-RAIDA secret.
        Raida = 7 => "EN 7 (RAIDA secret)",
    }
}

impl Encryption {
    /// Types 4, 5 and 7 use the 48-byte header and AES-256-GCM.
    pub const fn is_modern(self) -> bool {
        matches!(self, Encryption::Token | Encryption::TokenPair | Encryption::Raida)
    }
}

/// Header size implied by byte 16 (section 2): 48 for 4, 5, 7, else 32.
#[inline]
pub fn header_size_for(en_byte: u8) -> usize {
    // An unknown type frames as legacy; the header rules answer it with 27.
    if matches!(Encryption::from_code(en_byte), Some(en) if en.is_modern()) {
        MODERN_HEADER_SIZE
    } else {
        LEGACY_HEADER_SIZE
    }
}

/// Body length field (bytes 22-23).
#[inline]
pub fn body_length(header: &[u8]) -> usize {
    u16::from_be_bytes([header[22], header[23]]) as usize
}

/// TCP framing (section 2): the size of a whole request given its first 32 bytes: the
/// header size byte 16 implies plus the body length of bytes 22-23. Never more than
/// [`MAX_REQUEST_SIZE`](crate::consts::MAX_REQUEST_SIZE), and [`frame`] accepts the
/// request assembled to this size. A stream reader reads 32 bytes, then the rest.
pub fn request_len(first32: &[u8; 32]) -> usize {
    header_size_for(first32[16]) + body_length(first32)
}

/// Outcome of UDP framing (section 2), checked before anything else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// Shorter than 32 bytes: drop without an answer.
    Drop,
    /// Answer 16 INVALID_PACKET_LENGTH.
    BadLength,
    /// Framing fine; the header is this many bytes.
    Ok { header_size: usize },
}

/// Frame one UDP datagram (or one request assembled from a TCP stream).
pub fn frame(packet: &[u8]) -> Framing {
    if packet.len() < LEGACY_HEADER_SIZE {
        return Framing::Drop;
    }
    let header_size = header_size_for(packet[16]);
    if packet.len() < header_size || packet.len() != header_size + body_length(packet) {
        return Framing::BadLength;
    }
    Framing::Ok { header_size }
}

/// Which (group, command) pairs a server dispatches (rule 5 of 3.1).
pub trait CommandSet {
    fn contains(&self, group: u8, command: u8) -> bool;
}

/// Whom the request's key belongs to, as the header names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyIdentity {
    /// EN 0.
    None,
    /// EN 1: coin (DN, SN).
    Coin { coin: CoinId },
    /// EN 2: the locker whose AN starts with these 5 bytes.
    Locker { prefix: [u8; 5] },
    /// EN 4: coin or key token (DN, SN).
    Token { coin: CoinId },
    /// EN 5: two tokens, header order.
    TokenPair { first: CoinId, second: CoinId },
    /// EN 7: (sender RAIDA, key id).
    Raida { sender: u8, key_id: u32 },
}

/// A request header that passed the rules of 3.1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestHeader {
    pub raida_id: u8,
    pub shard_id: u8,
    pub command_group: u8,
    pub command: u8,
    pub coin_id: u16,
    pub encryption: Encryption,
    pub key_identity: KeyIdentity,
    pub body_length: usize,
    /// Bytes 30-31.
    pub echo: [u8; 2],
    /// Legacy: bytes 24-31 (the CTR IV's first half). Modern: zero.
    pub legacy_nonce: [u8; 8],
    /// Modern: bytes 32-43. Legacy: zero.
    pub nonce: [u8; 12],
    /// Modern: bytes 44-47. Legacy: 0.
    pub request_time: u32,
}

impl RequestHeader {
    pub fn header_size(&self) -> usize {
        if self.encryption.is_modern() {
            MODERN_HEADER_SIZE
        } else {
            LEGACY_HEADER_SIZE
        }
    }
}

/// What the server checks the header against.
#[derive(Clone, Copy, Debug)]
pub struct ServerIdentity {
    pub raida_id: u8,
    pub coin_id: u16,
    /// Whether EN 1 and EN 2 are accepted (4.2: `legacy_encryption = false` makes them 27).
    /// Their answers reuse the request's keystream, so an operator whose clients all speak
    /// the modern types switches them off.
    pub legacy_encryption: bool,
}

impl ServerIdentity {
    /// A server that accepts every encryption type (legacy included).
    pub const fn new(raida_id: u8, coin_id: u16) -> ServerIdentity {
        ServerIdentity { raida_id, coin_id, legacy_encryption: true }
    }
}

/// Apply the rules of section 3.1 in order and decode the header.
/// `bytes` must hold the whole header (32 or 48 bytes as byte 16 implies): use [`frame`] first.
pub fn parse_request_header(
    bytes: &[u8],
    server: &ServerIdentity,
    commands: &impl CommandSet,
) -> Result<RequestHeader, Status> {
    if bytes.len() < LEGACY_HEADER_SIZE {
        return Err(Status::InvalidPacketLength);
    }
    if bytes[0] != 1 {
        return Err(Status::InvalidRouting);
    }
    if bytes[1] != 0 {
        return Err(Status::InvalidSplitId);
    }
    if bytes[2] != server.raida_id {
        return Err(Status::InvalidRaidaId);
    }
    let group = bytes[4];
    if group > MAX_COMMAND_GROUP {
        return Err(Status::InvalidCommandGroup);
    }
    let shard = bytes[3];
    if shard > MAX_SHARD {
        return Err(Status::InvalidShardId);
    }
    let command = bytes[5];
    if !commands.contains(group, command) {
        return Err(Status::InvalidCommand);
    }
    let coin_id = u16::from_be_bytes([bytes[6], bytes[7]]);
    if coin_id != server.coin_id {
        return Err(Status::InvalidCoinId);
    }
    let encryption = Encryption::from_code(bytes[16]).ok_or(Status::InvalidEncryptionCode)?;
    if !server.legacy_encryption && matches!(encryption, Encryption::Coin | Encryption::Locker) {
        return Err(Status::InvalidEncryptionCode);
    }
    if encryption.is_modern() && bytes.len() < MODERN_HEADER_SIZE {
        return Err(Status::InvalidPacketLength);
    }
    let key_identity = match encryption {
        Encryption::None => KeyIdentity::None,
        Encryption::Coin => KeyIdentity::Coin { coin: CoinId { dn: bytes[17] as i8, sn: be32(&bytes[18..22]) } },
        Encryption::Locker => {
            let mut prefix = [0u8; 5];
            prefix.copy_from_slice(&bytes[17..22]);
            KeyIdentity::Locker { prefix }
        }
        Encryption::Token => KeyIdentity::Token { coin: CoinId { dn: bytes[17] as i8, sn: be32(&bytes[18..22]) } },
        Encryption::TokenPair => KeyIdentity::TokenPair {
            first: CoinId { dn: bytes[17] as i8, sn: be32(&bytes[18..22]) },
            second: CoinId { dn: bytes[24] as i8, sn: be32(&bytes[25..29]) },
        },
        Encryption::Raida => KeyIdentity::Raida { sender: bytes[17], key_id: be32(&bytes[18..22]) },
    };
    let mut legacy_nonce = [0u8; 8];
    let mut nonce = [0u8; 12];
    let mut request_time = 0;
    if encryption.is_modern() {
        nonce.copy_from_slice(&bytes[32..44]);
        request_time = be32(&bytes[44..48]);
    } else {
        legacy_nonce.copy_from_slice(&bytes[24..32]);
    }
    Ok(RequestHeader {
        raida_id: bytes[2],
        shard_id: shard,
        command_group: group,
        command,
        coin_id,
        encryption,
        key_identity,
        body_length: body_length(bytes),
        echo: [bytes[30], bytes[31]],
        legacy_nonce,
        nonce,
        request_time,
    })
}
