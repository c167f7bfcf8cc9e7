//! Status codes of PROTOCOL.md section 4.3, as one enum carrying the wire numbers.

/// A response status (byte 2 of the response header).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Status {
    /// 0: never sent; used inside the server for "accepted, go on".
    NoError = 0,
    InvalidSplitId = 2,
    InvalidRaidaId = 3,
    InvalidShardId = 4,
    InvalidCommandGroup = 5,
    InvalidCommand = 6,
    InvalidCoinId = 7,
    InvalidPacketLength = 16,
    WrongRaida = 18,
    EncryptionCoinNotFound = 25,
    InvalidEncryptionCode = 27,
    InvalidEof = 33,
    InvalidEncryption = 34,
    InvalidCrc = 37,
    AdminAuth = 38,
    CoinsNotDiv = 39,
    InvalidSnOrDenomination = 40,
    NoTicketSlot = 42,
    NoTicketFound = 43,
    TicketClaimedAlready = 44,
    TooManyCoins = 45,
    RequestRate = 160,
    TxnProcessed = 177,
    Filesystem = 194,
    InvalidKeyStart = 195,
    InvalidKeyLength = 196,
    CoinLoad = 197,
    FileExists = 201,
    KeyNotFound = 216,
    ReceiverAuth = 217,
    ReceiverAddress = 218,
    AllPass = 241,
    AllFail = 242,
    Mixed = 243,
    Success = 250,
    Internal = 252,
    MemoryAlloc = 254,
    InvalidRouting = 255,
}

impl Status {
    /// Every status this implementation knows, in numeric order.
    pub const ALL: [Status; 38] = [
        Status::NoError,
        Status::InvalidSplitId,
        Status::InvalidRaidaId,
        Status::InvalidShardId,
        Status::InvalidCommandGroup,
        Status::InvalidCommand,
        Status::InvalidCoinId,
        Status::InvalidPacketLength,
        Status::WrongRaida,
        Status::EncryptionCoinNotFound,
        Status::InvalidEncryptionCode,
        Status::InvalidEof,
        Status::InvalidEncryption,
        Status::InvalidCrc,
        Status::AdminAuth,
        Status::CoinsNotDiv,
        Status::InvalidSnOrDenomination,
        Status::NoTicketSlot,
        Status::NoTicketFound,
        Status::TicketClaimedAlready,
        Status::TooManyCoins,
        Status::RequestRate,
        Status::TxnProcessed,
        Status::Filesystem,
        Status::InvalidKeyStart,
        Status::InvalidKeyLength,
        Status::CoinLoad,
        Status::FileExists,
        Status::KeyNotFound,
        Status::ReceiverAuth,
        Status::ReceiverAddress,
        Status::AllPass,
        Status::AllFail,
        Status::Mixed,
        Status::Success,
        Status::Internal,
        Status::MemoryAlloc,
        Status::InvalidRouting,
    ];

    /// The wire number.
    #[inline]
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The status for a wire number, if it is one of section 4.3.
    pub fn from_code(code: u8) -> Option<Status> {
        Status::ALL.iter().copied().find(|s| s.code() == code)
    }

    /// Success statuses (250, 241, 242, 243).
    pub const fn is_success(self) -> bool {
        matches!(self, Status::Success | Status::AllPass | Status::AllFail | Status::Mixed)
    }

    /// The protocol's name for the status, e.g. `INVALID_CRC`.
    pub const fn name(self) -> &'static str {
        match self {
            Status::NoError => "NO_ERROR",
            Status::InvalidSplitId => "INVALID_SPLIT_ID",
            Status::InvalidRaidaId => "INVALID_RAIDA_ID",
            Status::InvalidShardId => "INVALID_SHARD_ID",
            Status::InvalidCommandGroup => "INVALID_COMMAND_GROUP",
            Status::InvalidCommand => "INVALID_COMMAND",
            Status::InvalidCoinId => "INVALID_COIN_ID",
            Status::InvalidPacketLength => "INVALID_PACKET_LENGTH",
            Status::WrongRaida => "WRONG_RAIDA",
            Status::EncryptionCoinNotFound => "ENCRYPTION_COIN_NOT_FOUND",
            Status::InvalidEncryptionCode => "INVALID_ENCRYPTION_CODE",
            Status::InvalidEof => "INVALID_EOF",
            Status::InvalidEncryption => "INVALID_ENCRYPTION",
            Status::InvalidCrc => "INVALID_CRC",
            Status::AdminAuth => "ADMIN_AUTH",
            Status::CoinsNotDiv => "COINS_NOT_DIV",
            Status::InvalidSnOrDenomination => "INVALID_SN_OR_DENOMINATION",
            Status::NoTicketSlot => "NO_TICKET_SLOT",
            Status::NoTicketFound => "NO_TICKET_FOUND",
            Status::TicketClaimedAlready => "TICKET_CLAIMED_ALREADY",
            Status::TooManyCoins => "TOO_MANY_COINS",
            Status::RequestRate => "REQUEST_RATE",
            Status::TxnProcessed => "TXN_PROCESSED",
            Status::Filesystem => "FILESYSTEM",
            Status::InvalidKeyStart => "INVALID_KEY_START",
            Status::InvalidKeyLength => "INVALID_KEY_LENGTH",
            Status::CoinLoad => "COIN_LOAD",
            Status::FileExists => "FILE_EXISTS",
            Status::KeyNotFound => "KEY_NOT_FOUND",
            Status::ReceiverAuth => "RECEIVER_AUTH",
            Status::ReceiverAddress => "RECEIVER_ADDRESS",
            Status::AllPass => "ALL_PASS",
            Status::AllFail => "ALL_FAIL",
            Status::Mixed => "MIXED",
            Status::Success => "SUCCESS",
            Status::Internal => "INTERNAL",
            Status::MemoryAlloc => "MEMORY_ALLOC",
            Status::InvalidRouting => "INVALID_ROUTING",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code(), self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for s in Status::ALL {
            assert_eq!(Status::from_code(s.code()), Some(s));
        }
        assert_eq!(Status::from_code(1), None);
    }
}
