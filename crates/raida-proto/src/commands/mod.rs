//! Payload codecs, one file per command (named after it): request and answer types of
//! section 6, each a [`Codec`](crate::codec::Codec). Handlers in the server see these typed
//! values, never raw offsets.

use crate::codec::numbers;
use crate::header::CommandSet;

/// Command groups and numbers of section 6.
pub mod ids {
    pub const GROUP_STATUS: u8 = 0;
    pub const ECHO: u8 = 0;
    pub const VERSION: u8 = 1;
    pub const SHOW_STATS: u8 = 2;
    pub const GROUP_HEALING: u8 = 2;
    pub const GET_TICKET: u8 = 40;
    pub const VALIDATE_TICKET: u8 = 50;
    pub const GROUP_KEY_EXCHANGE: u8 = 4;
    pub const POST_KEY: u8 = 41;
    pub const KEY_ALERT: u8 = 42;
    pub const GET_KEY: u8 = 43;
    pub const ENCRYPT_KEY: u8 = 44;
    pub const DECRYPT_RAIDA_KEY: u8 = 45;
    pub const LEAVE_ALERT: u8 = 46;
    pub const TAKE_ALERTS: u8 = 47;
}

/// Every (group, command) pair PROTOCOL.md section 6 defines, from the request types, for
/// sans-IO users that have no server (this crate's tests, benches and fuzz targets). The
/// server's registry (`raida_server::dispatch::COMMANDS`) is the list; its test
/// `registry.rs` fails if this mirror differs from it or from PROTOCOL.md.
pub const SPEC_COMMANDS: &[(u8, u8)] = &[
    numbers::<echo::Echo>(),
    numbers::<version::Version>(),
    numbers::<show_stats::ShowStats>(),
    numbers::<get_ticket::GetTicket>(),
    numbers::<validate_ticket::ValidateTicket>(),
    numbers::<post_key::PostKey>(),
    numbers::<key_alert::KeyAlert>(),
    numbers::<get_key::GetKey>(),
    numbers::<encrypt_key::EncryptKey>(),
    numbers::<decrypt_raida_key::DecryptRaidaKey>(),
    numbers::<leave_alert::LeaveAlert>(),
    numbers::<take_alerts::TakeAlerts>(),
];

/// The dispatch table of section 6 as a [`CommandSet`].
#[derive(Clone, Copy, Debug, Default)]
pub struct SpecCommands;

impl CommandSet for SpecCommands {
    fn contains(&self, group: u8, command: u8) -> bool {
        SPEC_COMMANDS.contains(&(group, command))
    }
}

pub mod decrypt_raida_key;
pub mod echo;
pub mod encrypt_key;
pub mod get_key;
pub mod get_ticket;
pub mod key_alert;
pub mod leave_alert;
pub mod post_key;
pub mod show_stats;
pub mod take_alerts;
pub mod validate_ticket;
pub mod version;

#[cfg(test)]
mod tests {
    use std::fmt::Debug;

    use super::*;
    use crate::codec::{Codec, Reply};
    use crate::coin::{CoinId, IdentityCoin};
    use crate::status::Status;

    fn round_trip<T: Codec + PartialEq + Debug>(v: T) {
        let bytes = v.to_bytes();
        assert_eq!(T::decode(&bytes).as_ref(), Ok(&v), "{bytes:02x?}");
        for cut in 0..bytes.len() {
            // a truncated payload is an error or another value, never a panic
            let _ = T::decode(&bytes[..cut]);
        }
    }

    #[test]
    fn every_request_and_answer_round_trips() {
        let coin = CoinId { dn: -3, sn: 1_023_999 };
        let identity = IdentityCoin(coin);
        round_trip(echo::Echo);
        round_trip(echo::EchoAnswer);
        round_trip(version::Version);
        round_trip(version::VersionAnswer(b"20261128".to_vec()));
        round_trip(show_stats::ShowStats { admin_key: [7; 16] });
        round_trip(show_stats::ShowStatsAnswer("requests.0.0=1\n".into()));
        let record = get_ticket::TicketRecord { coin: CoinId { dn: 1, sn: 9 }, an: [3; 16] };
        round_trip(get_ticket::GetTicket { records: vec![record; 3] });
        round_trip(get_ticket::GetTicketAnswer {
            passes: vec![true, false, true, true, false, false, false, false],
            ticket: 77,
        });
        round_trip(validate_ticket::ValidateTicket { claiming_raida: 24, ticket: 5 });
        round_trip(validate_ticket::ValidateTicketAnswer { coins: vec![coin, CoinId { dn: 6, sn: 0 }] });
        let name = post_key::CoinName { dn: 2, sn: 4 };
        round_trip(post_key::PostKey {
            key_id: [1; 16],
            receiver: name,
            receiver_ip: [10, 0, 0, 1],
            sender: name,
            key_field: [9; 128],
            key_start: 88,
            key_length: 40,
        });
        round_trip(post_key::PostKeyAnswer);
        round_trip(get_key::GetKey { key_id: [4; 16] });
        round_trip(post_key::PostKeyAnswer);
        round_trip(get_key::GetKeyAnswer { sender: name, key: vec![0xAA, 0xFF] });
        let entry = key_alert::AlertEntry::new([5; 16], [127, 0, 0, 1].into(), 50001, 1);
        round_trip(key_alert::KeyAlert { entries: vec![entry; 16] });
        round_trip(key_alert::KeyAlertAnswer { status: Status::Success, map: [0xFF; 16] });
        round_trip(encrypt_key::EncryptKey { recipient: identity, key_part: [8; 8], target: CoinId { dn: 1, sn: 2 } });
        round_trip(encrypt_key::EncryptKeyAnswer([6; 16]));
        round_trip(encrypt_key::TicketBlock { key_part: [8; 8], target: coin, random2: [1, 2], end: 0xFF });
        let r = decrypt_raida_key::DecryptRecord {
            coin_id: 6,
            split_id: 1,
            raida_id: 24,
            shard: 0,
            target: coin,
            ticket: [2; 16],
        };
        round_trip(decrypt_raida_key::DecryptRaidaKey { coin: identity, records: vec![r; 2] });
        round_trip(decrypt_raida_key::DecryptRaidaKeyAnswer(vec![true, false]));
        let body = leave_alert::AlertBody {
            parts: vec![leave_alert::MailboxPart { raida_id: 24, key_id: [3; 16], commitment: [4; 16] }],
            hints: vec![leave_alert::ConnectionHint::new(([127, 0, 0, 1], 9).into())],
        };
        round_trip(leave_alert::LeaveAlert { receiver: coin, alert_id: [5; 16], body: body.clone() });
        round_trip(leave_alert::LeaveAlertAnswer);
        round_trip(take_alerts::TakeAlerts { wait: 30 });
        let waiting = take_alerts::WaitingAlert { sender: coin, age: 599, alert_id: [6; 16], body };
        round_trip(take_alerts::TakeAlertsAnswer { alerts: vec![waiting; 2] });
    }

    #[test]
    fn every_request_names_its_command_once() {
        let mut seen = SPEC_COMMANDS.to_vec();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), SPEC_COMMANDS.len(), "two request types send the same command");
    }

    #[test]
    fn answers_carry_their_status() {
        let a = |passes: Vec<bool>| get_ticket::GetTicketAnswer { passes, ticket: 1 }.status();
        assert_eq!(a(vec![true, true]), Status::AllPass);
        assert_eq!(a(vec![false, false]), Status::AllFail);
        assert_eq!(a(vec![true, false]), Status::Mixed);
        assert_eq!(encrypt_key::EncryptKeyAnswer([0; 16]).status(), Status::Success);
        let map = key_alert::KeyAlertAnswer::decode_reply(Status::Mixed, &[0xFF; 16]);
        assert_eq!(map, Ok(key_alert::KeyAlertAnswer { status: Status::Mixed, map: [0xFF; 16] }));
    }

    #[test]
    fn the_checks_of_45_are_in_order() {
        use decrypt_raida_key::{DecryptRecord, RecordFault};
        let ok = DecryptRecord {
            coin_id: 6,
            split_id: 0,
            raida_id: 0,
            shard: 0,
            target: CoinId { dn: 1, sn: 1 },
            ticket: [0; 16],
        };
        assert_eq!(ok.check(6), Ok(()));
        assert_eq!(DecryptRecord { coin_id: 5, split_id: 2, ..ok }.check(6), Err(RecordFault::CoinId));
        assert_eq!(DecryptRecord { split_id: 2, raida_id: 25, ..ok }.check(6), Err(RecordFault::SplitId));
        assert_eq!(DecryptRecord { raida_id: 25, ..ok }.check(6), Err(RecordFault::RaidaId));
        assert!(!DecryptRecord { raida_id: 25, ..ok }.shape_ok(6));
    }
}
