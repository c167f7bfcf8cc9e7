//! Command handlers called directly: rules that a loopback socket cannot provoke.

mod common;

use std::net::{IpAddr, Ipv4Addr};

use common::*;
use raida_proto::codec::Codec;
use raida_proto::commands::get_ticket;
use raida_proto::header::{Encryption, KeyIdentity};
use raida_proto::CoinId;
use raida_proto::Status;
use raida_server::ledger::MemoryLedger;
use raida_server::{cmd, dispatch};

#[test]
fn show_stats_in_clear_only_from_loopback() {
    let t = TestState::build(0, 6, MemoryLedger::default(), 1000, |s| s.admin_key = Some([1; 16]));
    let mut c = call(header(Encryption::None, KeyIdentity::None, 0, 2), vec![1; 16], 1000);
    assert_eq!(cmd::show_stats::run(&t.state, &c).status, Status::Success);
    c.peer = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    assert_eq!(cmd::show_stats::run(&t.state, &c).status, Status::InvalidEncryption);
    // encrypted, the key may come from anywhere
    c.header = header(Encryption::Coin, KeyIdentity::Coin { coin: CoinId { dn: 1, sn: 1 } }, 0, 2);
    assert_eq!(cmd::show_stats::run(&t.state, &c).status, Status::Success);
    c.payload = vec![2; 16];
    assert_eq!(cmd::show_stats::run(&t.state, &c).status, Status::AdminAuth);
}

#[test]
fn show_stats_without_admin_key_is_refused() {
    let t = TestState::new(0, 6, MemoryLedger::default(), 1000);
    let c = call(header(Encryption::None, KeyIdentity::None, 0, 2), vec![0; 16], 1000);
    assert_eq!(cmd::show_stats::run(&t.state, &c).status, Status::AdminAuth);
}

#[test]
fn get_ticket_too_many_records() {
    // 45 cannot travel in one request (16-bit body length), but the rule holds
    let t = TestState::new(0, 6, MemoryLedger::default(), 1000);
    let rec = get_ticket::TicketRecord { coin: CoinId { dn: 1, sn: 1 }, an: [0; 16] };
    let payload = get_ticket::GetTicket { records: vec![rec; 4097] }.to_bytes();
    let c = call(header(Encryption::None, KeyIdentity::None, 2, 40), payload, 1000);
    assert_eq!(cmd::get_ticket::run(&t.state, &c).status, Status::TooManyCoins);
}

#[test]
fn pending_keys_survive_a_restart_and_expire() {
    use raida_proto::commands::post_key::{self, CoinName};
    let t = TestState::new(0, 6, MemoryLedger::default(), 1000);
    let none = CoinName { dn: 0, sn: 0 };
    let p = post_key::PostKey::with_part([7; 16], none, [0; 4], none, &[3; 128], 4, &[0xFF; 8]).to_bytes();
    assert_eq!(
        dispatch::answer(&t.state, &call(header(Encryption::None, KeyIdentity::None, 4, 41), p, 1000)).status,
        Status::Success
    );
    let file = t.dir.path().join("Keys").join("07070707070707070707070707070707");
    assert!(file.exists());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o640);
    // a new server on the same folder sees the key
    let keys = raida_server::pending_keys::PendingKeys::open(&t.dir.path().join("Keys"), 3600, 2000).unwrap();
    assert_eq!(keys.len(), 1);
    // and the sweeper drops it once expired
    assert_eq!(keys.sweep(4601), 1);
    assert!(!file.exists());
}

#[test]
fn the_request_path_takes_its_randomness_from_the_state() {
    // a seeded source: every random byte is 5, so the ticket number is 0x05050505
    let seeded = |s: &mut raida_server::ServerStateBuilder| s.random = std::sync::Arc::new(|b: &mut [u8]| b.fill(5));
    let ledger = MemoryLedger::with_coins([((1, 1), ([9; 16], 40))]);
    let t = TestState::build(0, 6, ledger, 1000, seeded);
    let rec = get_ticket::TicketRecord { coin: CoinId { dn: 1, sn: 1 }, an: [9; 16] };
    let c = call(
        header(Encryption::None, KeyIdentity::None, 2, 40),
        get_ticket::GetTicket { records: vec![rec] }.to_bytes(),
        1000,
    );
    let answer = cmd::get_ticket::run(&t.state, &c);
    assert_eq!(answer.status, Status::AllPass);
    let decoded = <get_ticket::GetTicketAnswer as raida_proto::codec::Codec>::decode(&answer.payload).unwrap();
    assert_eq!(decoded.ticket, 0x0505_0505);
}
