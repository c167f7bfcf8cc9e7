//! Status codes of PROTOCOL.md section 4.3, as one enum carrying the wire numbers.

use crate::wire_enum::wire_enum;

wire_enum! {
    /// A response status (byte 2 of the response header): number and protocol name
    /// (e.g. `INVALID_CRC`). A number outside this table is not a status of section 4.3
    /// (a client refuses such an answer).
    pub enum Status {
        /// 0: never sent; used inside the server for "accepted, go on".
        NoError = 0 => "NO_ERROR",
        InvalidSplitId = 2 => "INVALID_SPLIT_ID",
        InvalidRaidaId = 3 => "INVALID_RAIDA_ID",
        InvalidShardId = 4 => "INVALID_SHARD_ID",
        InvalidCommandGroup = 5 => "INVALID_COMMAND_GROUP",
        InvalidCommand = 6 => "INVALID_COMMAND",
        InvalidCoinId = 7 => "INVALID_COIN_ID",
        InvalidPacketLength = 16 => "INVALID_PACKET_LENGTH",
        WrongRaida = 18 => "WRONG_RAIDA",
        EncryptionCoinNotFound = 25 => "ENCRYPTION_COIN_NOT_FOUND",
        InvalidEncryptionCode = 27 => "INVALID_ENCRYPTION_CODE",
        InvalidEof = 33 => "INVALID_EOF",
        InvalidEncryption = 34 => "INVALID_ENCRYPTION",
        InvalidCrc = 37 => "INVALID_CRC",
        AdminAuth = 38 => "ADMIN_AUTH",
        CoinsNotDiv = 39 => "COINS_NOT_DIV",
        InvalidSnOrDenomination = 40 => "INVALID_SN_OR_DENOMINATION",
        NoTicketSlot = 42 => "NO_TICKET_SLOT",
        NoTicketFound = 43 => "NO_TICKET_FOUND",
        TicketClaimedAlready = 44 => "TICKET_CLAIMED_ALREADY",
        TooManyCoins = 45 => "TOO_MANY_COINS",
        RequestRate = 160 => "REQUEST_RATE",
        TxnProcessed = 177 => "TXN_PROCESSED",
        Filesystem = 194 => "FILESYSTEM",
        InvalidKeyStart = 195 => "INVALID_KEY_START",
        InvalidKeyLength = 196 => "INVALID_KEY_LENGTH",
        CoinLoad = 197 => "COIN_LOAD",
        FileExists = 201 => "FILE_EXISTS",
        KeyNotFound = 216 => "KEY_NOT_FOUND",
        ReceiverAuth = 217 => "RECEIVER_AUTH",
        ReceiverAddress = 218 => "RECEIVER_ADDRESS",
        AllPass = 241 => "ALL_PASS",
        AllFail = 242 => "ALL_FAIL",
        Mixed = 243 => "MIXED",
        Success = 250 => "SUCCESS",
        Internal = 252 => "INTERNAL",
        MemoryAlloc = 254 => "MEMORY_ALLOC",
        InvalidRouting = 255 => "INVALID_ROUTING",
    }
}

impl Status {
    /// Success statuses (250, 241, 242, 243).
    pub const fn is_success(self) -> bool {
        matches!(self, Status::Success | Status::AllPass | Status::AllFail | Status::Mixed)
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
        assert_eq!(Status::try_from(250), Ok(Status::Success));
        assert_eq!(Status::try_from(1), Err(1));
        assert_eq!(u8::from(Status::InvalidCrc), 37);
    }

    #[test]
    fn the_table_lists_section_4_3_in_numeric_order() {
        assert_eq!(Status::ALL.len(), 38);
        assert!(Status::ALL.windows(2).all(|w| w[0].code() < w[1].code()));
        assert_eq!(Status::InvalidCrc.to_string(), "37 INVALID_CRC");
    }
}
