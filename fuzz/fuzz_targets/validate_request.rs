//! Fuzz the server's request path: framing, header rules, key resolution, body checks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use raida_proto::commands::SpecCommands;
use raida_proto::header::ServerIdentity;
use raida_proto::keys::KeyLookup;
use raida_proto::replay::ReplayMemory;
use raida_proto::validate_request;

struct Keys;
impl KeyLookup for Keys {
    fn coin_an(&self, dn: i8, _sn: u32) -> Option<[u8; 16]> {
        (dn == 1).then_some([7; 16])
    }
    fn locker_an(&self, prefix: &[u8; 5]) -> Option<[u8; 16]> {
        (prefix == &[9; 5]).then_some([9; 16])
    }
    fn token_secret(&self, dn: i8, _sn: u32) -> Option<[u8; 32]> {
        (dn == 7).then_some([3; 32])
    }
    fn raida_secret(&self, sender: u8, _key_id: u32) -> Option<[u8; 32]> {
        (sender == 3).then_some([3; 32])
    }
}

fuzz_target!(|data: &[u8]| {
    let mut packet = data.to_vec();
    let server = ServerIdentity::new(1, 6);
    let mut replay = ReplayMemory::new(8);
    let _ = validate_request(&mut packet, &server, &SpecCommands, &Keys, &mut replay, 1_800_000_000);
});
