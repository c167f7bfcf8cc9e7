//! Constants of PROTOCOL.md section 1.

pub const TOTAL_RAIDA_SERVERS: u8 = 25;
/// [`TOTAL_RAIDA_SERVERS`] as an array length.
pub const RAIDA_COUNT: usize = TOTAL_RAIDA_SERVERS as usize;
/// One AN per RAIDA (0..24): an identity coin's ANs.
pub type AnsPerRaida = [[u8; 16]; RAIDA_COUNT];
pub const DEFAULT_PORT_BASE: u16 = 50000;
pub const MAX_COMMAND_GROUP: u8 = 13;
pub const MAX_SHARD: u8 = 3;
pub const TICKET_POOL_SIZE: usize = 512;
pub const MAX_COINS_PER_TICKET: usize = 4096;
pub const TICKET_RELEASE_SECONDS: u64 = 300;
pub const RAIDA_SERVER_RCV_TIMEOUT_SECS: u64 = 32;
pub const RECORDS_PER_PAGE: u32 = 1024;
pub const TOTAL_PAGES: u32 = 1000;
/// Serial numbers are below this.
pub const MAX_SN: u32 = RECORDS_PER_PAGE * TOTAL_PAGES;
pub const RECORD_SIZE: usize = 17;
pub const TERMINATOR: [u8; 2] = [0x3E, 0x3E];
pub const NONCE_SIZE: usize = 12;
pub const FRESHNESS_WINDOW_SECS: u64 = 300;
/// Replay memory entries live this long.
pub const REPLAY_WINDOW_SECS: u64 = 2 * FRESHNESS_WINDOW_SECS;
pub const DEFAULT_REPLAY_CAPACITY: usize = 1_000_000;
pub const LEGACY_HEADER_SIZE: usize = 32;
pub const MODERN_HEADER_SIZE: usize = 48;
pub const RESPONSE_HEADER_SIZE: usize = 32;
pub const CHALLENGE_SIZE: usize = 16;
pub const TAG_SIZE: usize = 16;
/// Largest request on either transport: 48-byte header + 65,535-byte body.
pub const MAX_REQUEST_SIZE: usize = MODERN_HEADER_SIZE + u16::MAX as usize;

/// Coin denominations are -8..=6.
pub fn is_coin_dn(dn: i8) -> bool {
    (-8..=6).contains(&dn)
}

/// Key-token denominations are 7..=11.
pub fn is_key_token_dn(dn: i8) -> bool {
    (7..=11).contains(&dn)
}

/// MFS ("months from start") for a Unix time: months since January 2023 UTC
/// (February 2023 = 1), never less than 1, saturating at 255.
pub fn mfs_for_unix_time(secs: u64) -> u8 {
    let days = (secs / 86_400) as i64;
    let (year, month) = civil_year_month(days);
    let months = (year - 2023) * 12 + (month as i64 - 1);
    months.clamp(1, 255) as u8
}

fn civil_year_month(days: i64) -> (i64, u32) {
    let (y, m, _) = civil_date(days);
    (y, m)
}

/// Year, month (1..=12) and day (1..=31) of a day count since 1970-01-01, UTC
/// (Howard Hinnant's `civil_from_days`).
pub fn civil_date(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a Unix time.
pub fn utc_timestamp(secs: u64) -> String {
    let (y, m, d) = civil_date((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mfs_examples() {
        // 2023-01-15 -> 0 months, clamped to 1
        assert_eq!(mfs_for_unix_time(1_673_740_800), 1);
        // 2023-02-01 00:00:00 UTC -> 1
        assert_eq!(mfs_for_unix_time(1_675_209_600), 1);
        // 2023-03-01 -> 2
        assert_eq!(mfs_for_unix_time(1_677_628_800), 2);
        // 2026-11-22 -> (2026-2023)*12 + 10 = 46
        assert_eq!(mfs_for_unix_time(1_795_305_600), 46);
        assert_eq!(mfs_for_unix_time(0), 1);
        // 2024-01-31 23:59:59 -> 12, 2024-02-01 -> 13
        assert_eq!(mfs_for_unix_time(1_706_745_599), 12);
        assert_eq!(mfs_for_unix_time(1_706_745_600), 13);
        assert_eq!(mfs_for_unix_time(u64::MAX / 2), 255);
    }
}
