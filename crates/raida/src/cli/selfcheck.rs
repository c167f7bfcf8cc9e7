//! `raida selfcheck`: a quick known-answer test of the protocol codec on this machine.

use raida_proto::client::{build_request, ClientKey, Routing};
use raida_proto::header::ServerIdentity;
use raida_proto::keys::{Key16, Key32, OneCoin};
use raida_proto::replay::ReplayMemory;
use raida_proto::{crypto, validate_request, CoinId, Status};
use raida_server::dispatch::{DispatchTable, COMMANDS};
use rand_core::OsRng;

pub(crate) fn run() -> anyhow::Result<()> {
    anyhow::ensure!(crypto::crc32(&[0u8; 12]) == 0x7bd5c66f, "CRC32 known answer failed");
    let mut an = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut OsRng, &mut an);
    let keys = OneCoin { coin: CoinId { dn: 1, sn: 1 }, an };
    let server = ServerIdentity::new(0, 6);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let mut replay = ReplayMemory::new(16);
    // the server's own dispatch table: the commands this build answers
    let commands = DispatchTable::standard();
    let cases = [
        ("EN 0", ClientKey::None),
        ("EN 1", ClientKey::Coin { coin: CoinId { dn: 1, sn: 1 }, an: Key16::new(an) }),
        ("EN 4", ClientKey::Token { coin: CoinId { dn: 1, sn: 1 }, key: Key32::sha256_of_an(&Key16::new(an)) }),
    ];
    for (name, key) in cases {
        let (mut packet, pending) = build_request(&Routing::new(0, 6, 0, 0), &key, b"ping", now, &mut OsRng);
        let v = validate_request(&mut packet, &server, &commands, &keys, &mut replay, now)
            .map_err(|r| anyhow::anyhow!("{name}: request rejected: {:?}", r.status()))?;
        anyhow::ensure!(&packet[v.payload.clone()] == b"ping", "{name}: payload mismatch");
        let mut out = Vec::new();
        v.reply.write(Status::Success, b"pong", 0, &mut OsRng, &mut out);
        let reply = pending.open(&out)?;
        anyhow::ensure!(reply.payload == b"pong", "{name}: answer mismatch");
        println!("{name}: request -> validate -> answer -> verify: ok");
    }
    let names: Vec<String> = COMMANDS.iter().map(|c| format!("{}/{} {}", c.group, c.command, c.name)).collect();
    println!("commands: {}", names.join(", "));
    println!("selfcheck passed");
    Ok(())
}
