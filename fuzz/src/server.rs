//! Harness over the server's request engine: `ServerState::handle` with an in-memory
//! ledger (`MemoryLedger`), pending keys and inbox in a scratch directory on tmpfs, and a
//! clock the input may move. One input is a short conversation (1-8 requests) so that
//! sequences are reached: Post Key then Get Key, Get Ticket then Validate Ticket with the
//! ticket number the server handed out, tickets made under the identity coin for Decrypt
//! RAIDA Key.
//!
//! Every request is encrypted by the harness (see `proto.rs`); its plaintext is either raw
//! bytes or a well-formed payload of the command assembled from the input. Deferred
//! commands (Post Key, Get Key, Decrypt RAIDA Key: blocking pool; Key Alert: async) run on
//! a current-thread tokio runtime with a 2 s bound. Key Alert runs with no key server
//! configured, so every entry is refused before any socket is opened: its parser and
//! assembly run, no fetch leaves the process. Leave Alert and Take Alerts share the
//! state's mailbox (a Take Alerts is never held: see `run`).
//!
//! Checked: the answer to every request that the harness built validly (known key, fresh,
//! untampered) verifies on the client side: a success, or an authenticated error status.

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use raida_proto::client::ResponseError;
use raida_proto::codec::Codec;
use raida_proto::commands::decrypt_raida_key::{self, DecryptRecord};
use raida_proto::commands::encrypt_key::{self, EncryptKey};
use raida_proto::commands::ids::*;
use raida_proto::commands::key_alert::AlertEntry;
use raida_proto::commands::post_key::{self, CoinName};
use raida_proto::commands::{get_key, get_ticket, key_alert, leave_alert, validate_ticket, SPEC_COMMANDS};
use raida_proto::Key16;
use raida_proto::{CoinId, IdentityCoin};
use raida_server::ledger::MemoryLedger;
use raida_server::ServerState;
use raida_server::{Clock, Outcome};

use super::common::{clear_dir, debug, scratch_dir, Input};
use super::proto::{RequestSpec, COINS, LOCKER, NOW, RAIDA_SECRETS, SERVER, TOKENS};

/// The admin key of Show Stats.
pub const ADMIN_KEY: [u8; 16] = [0xAD; 16];
/// This server's identity coin.
pub const IDENTITY: (i8, u32) = (-1, 50);
/// A coin whose record exists with MFS 0 (not issued: absent to every command).
pub const ABSENT_COIN: (i8, u32) = (3, 300);

/// The identity coin's AN for RAIDA `r`.
pub fn identity_an(r: usize) -> [u8; 16] {
    [0x40 + (r % 25) as u8; 16]
}

fn ledger() -> MemoryLedger {
    let l = MemoryLedger::with_coins(COINS.iter().map(|&(c, an)| (c, (an, 5))));
    l.coins.write().insert(ABSENT_COIN.into(), ([0x99; 16], 0));
    l.lockers.write().push(LOCKER);
    l.tokens.write().extend(TOKENS.map(|(token, secret)| (token.into(), secret)));
    l.secrets.write().extend(RAIDA_SECRETS);
    let mut ans = [[0u8; 16]; 25];
    for (r, an) in ans.iter_mut().enumerate() {
        *an = identity_an(r);
    }
    l.identities.write().insert(IdentityCoin(IDENTITY.into()), ans);
    l
}

struct Context {
    dir: PathBuf,
    rt: tokio::runtime::Runtime,
}

thread_local! {
    static CONTEXT: Context = Context {
        dir: scratch_dir("server"),
        rt: tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime"),
    };
}

/// What the conversation learned from earlier answers.
#[derive(Default)]
struct Memory {
    tickets: Vec<u32>,
    key_ids: Vec<[u8; 16]>,
}

const PEERS: [SocketAddr; 4] = [
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 40000),
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)), 5555),
    SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 40001),
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)), 53),
];

/// (DN, SN) of a coin: one of the present ones, the absent one, the identity coin, a
/// key token or any.
fn pick_coin(inp: &mut Input) -> (i8, u32) {
    let c = inp.u8();
    match c % 8 {
        0..=2 => COINS[(c % 8) as usize].0,
        3 => ABSENT_COIN,
        4 => IDENTITY,
        5 => TOKENS[0].0,
        6 => (0, 0),
        _ => (inp.u8() as i8, inp.u32()),
    }
}

fn an_of(coin: (i8, u32)) -> [u8; 16] {
    COINS.iter().find(|(c, _)| *c == coin).map(|(_, an)| *an).unwrap_or([0x99; 16])
}

fn pick_key_id(inp: &mut Input, mem: &Memory) -> [u8; 16] {
    let c = inp.u8();
    if c & 1 == 0 && !mem.key_ids.is_empty() {
        mem.key_ids[c as usize / 2 % mem.key_ids.len()]
    } else if c & 2 == 0 {
        [0xA0 + c % 4; 16]
    } else {
        inp.array()
    }
}

/// A well-formed payload of (group, command), its fields chosen by the input.
fn structured_payload(group: u8, command: u8, spec: &RequestSpec, inp: &mut Input, mem: &mut Memory) -> Vec<u8> {
    match (group, command) {
        (GROUP_STATUS, SHOW_STATS) => {
            if inp.bool() {
                ADMIN_KEY.to_vec()
            } else {
                inp.array::<16>().to_vec()
            }
        }
        (GROUP_HEALING, GET_TICKET) => {
            let n = inp.u8() % 8 + 1;
            let records: Vec<_> = (0..n)
                .map(|_| {
                    let (dn, sn) = pick_coin(inp);
                    let an = if !inp.u8().is_multiple_of(4) { an_of((dn, sn)) } else { inp.array() };
                    get_ticket::TicketRecord { coin: CoinId { dn, sn }, an }
                })
                .collect();
            get_ticket::GetTicket { records: records.to_vec() }.to_bytes()
        }
        (GROUP_HEALING, VALIDATE_TICKET) => {
            let c = inp.u8();
            let claiming_raida = match c % 4 {
                // The EN 7 sender of this request (the only one allowed to claim).
                0 | 1 => spec.key_bytes()[0],
                2 => RAIDA_SECRETS[0].0 .0,
                _ => inp.u8(),
            };
            let ticket = if c & 4 == 0 && !mem.tickets.is_empty() {
                mem.tickets[c as usize / 8 % mem.tickets.len()]
            } else {
                inp.u32()
            };
            validate_ticket::ValidateTicket { claiming_raida, ticket }.to_bytes()
        }
        (GROUP_KEY_EXCHANGE, POST_KEY) => {
            let key_id = pick_key_id(inp, mem);
            let c = inp.u8();
            let receiver = if c & 1 == 0 { pick_coin(inp) } else { (0, 0) };
            let receiver_ip = match c / 2 % 4 {
                0 => [127, 0, 0, 1],
                1 => [0; 4],
                2 => [10, 1, 2, 3],
                _ => inp.array(),
            };
            let sender = match c / 8 % 4 {
                // The poster's own coin (EN 1 / 4 / 5 name it in bytes 17-21).
                0 | 1 => {
                    let b = spec.key_bytes();
                    (b[0] as i8, u32::from_be_bytes([b[1], b[2], b[3], b[4]]))
                }
                2 => (0, 0),
                _ => pick_coin(inp),
            };
            let kl = post_key::KEY_LENGTHS[inp.u8() as usize % post_key::KEY_LENGTHS.len()] as usize;
            let ks = inp.u8() % (post_key::KEY_FIELD - kl + 1) as u8;
            let padding = [0x5Au8; post_key::KEY_FIELD];
            let part = inp.bytes(kl).to_vec();
            let mut part = part;
            part.resize(kl, 0xFF);
            if !mem.key_ids.contains(&key_id) && mem.key_ids.len() < 8 {
                mem.key_ids.push(key_id);
            }
            post_key::PostKey::with_part(
                key_id,
                CoinName { dn: receiver.0, sn: receiver.1 },
                receiver_ip,
                CoinName { dn: sender.0, sn: sender.1 },
                &padding,
                ks,
                &part,
            )
            .to_bytes()
        }
        (GROUP_KEY_EXCHANGE, GET_KEY) => get_key::GetKey { key_id: pick_key_id(inp, mem) }.to_bytes(),
        (GROUP_KEY_EXCHANGE, KEY_ALERT) => {
            let n = inp.u8() % 4 + 1;
            let entries: Vec<_> = (0..n)
                .map(|_| {
                    let key_id = pick_key_id(inp, mem);
                    let c = inp.u8();
                    let ip = match c % 3 {
                        0 => IpAddr::V4(Ipv4Addr::LOCALHOST),
                        1 => IpAddr::V6(Ipv6Addr::LOCALHOST),
                        _ => IpAddr::V4(Ipv4Addr::from(inp.u32())),
                    };
                    let mut e = AlertEntry::new(key_id, ip, inp.u16(), inp.u8() % 26);
                    if c & 0x80 != 0 {
                        e.ip_version = inp.u8();
                    }
                    e
                })
                .collect();
            key_alert::KeyAlert { entries: entries.to_vec() }.to_bytes()
        }
        (GROUP_KEY_EXCHANGE, ENCRYPT_KEY) => EncryptKey {
            recipient: IdentityCoin(pick_coin(inp).into()),
            key_part: inp.array(),
            target: pick_coin(inp).into(),
        }
        .to_bytes()
        .to_vec(),
        (GROUP_KEY_EXCHANGE, DECRYPT_RAIDA_KEY) => {
            let coin = if !inp.u8().is_multiple_of(4) { IDENTITY } else { pick_coin(inp) };
            let n = inp.u8() % 4 + 1;
            let records: Vec<_> = (0..n)
                .map(|_| {
                    let c = inp.u8();
                    let raida_id = if c & 1 == 0 { inp.u8() % 25 } else { inp.u8() };
                    let target: CoinId = pick_coin(inp).into();
                    let ticket = if c & 2 == 0 {
                        // Made by RAIDA `raida_id` under our identity coin's AN for it.
                        let maker_target = if c & 4 == 0 { target } else { pick_coin(inp).into() };
                        encrypt_key::make_ticket(
                            &Key16::new(identity_an(raida_id as usize)),
                            &inp.array(),
                            maker_target,
                            inp.array(),
                        )
                    } else {
                        inp.array()
                    };
                    DecryptRecord {
                        coin_id: if c & 8 == 0 { SERVER.coin_id } else { inp.u16() },
                        split_id: if c & 16 == 0 { c >> 7 } else { inp.u8() },
                        raida_id,
                        shard: inp.u8(),
                        target,
                        ticket,
                    }
                })
                .collect();
            decrypt_raida_key::DecryptRaidaKey { coin: IdentityCoin(coin.into()), records: records.to_vec() }.to_bytes()
        }
        (GROUP_KEY_EXCHANGE, LEAVE_ALERT) => {
            let c = inp.u8();
            let receiver = match c % 4 {
                3 => ABSENT_COIN.into(),
                i => COINS[i as usize].0.into(),
            };
            // few alert ids, so that 201 and the pair rule are reached
            let alert_id = [inp.u8() % 4; 16];
            let nu = inp.u8() % 16 + 1;
            let parts = (0..nu)
                .map(|i| leave_alert::MailboxPart { raida_id: i, key_id: inp.array(), commitment: inp.array() })
                .collect();
            let hints = (0..c / 4 % 5)
                .map(|_| {
                    leave_alert::ConnectionHint::new(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(inp.u32())), inp.u16()))
                })
                .collect();
            leave_alert::LeaveAlert { receiver, alert_id, body: leave_alert::AlertBody { parts, hints } }.to_bytes()
        }
        (GROUP_KEY_EXCHANGE, TAKE_ALERTS) => vec![inp.u8() % 32],
        // Echo, Version, anything else: empty.
        _ => Vec::new(),
    }
}

/// Target `server_handle`.
pub fn server_handle(data: &[u8]) {
    CONTEXT.with(|ctx| run(ctx, data));
}

fn run(ctx: &Context, data: &[u8]) {
    clear_dir(&ctx.dir);
    let mut inp = Input::new(data);
    let time = Arc::new(AtomicU64::new(NOW));
    let t = time.clone();
    let clock: Clock = Arc::new(move || t.load(Ordering::Relaxed));
    let ledger = Arc::new(ledger());
    let mut state = ServerState::builder(SERVER, ledger.clone(), &ctx.dir, clock);
    state.admin_key = Some(ADMIN_KEY);
    state.key_alert.identity = Some(IdentityCoin(IDENTITY.into()));
    state.key_alert.timeout = Duration::from_millis(50);
    let state = Arc::new(state.build().expect("server state opens"));
    // a held Take Alerts waits in real time (up to 30 s): answer it at once, as a server
    // shutting down does (tests/mailbox.rs covers the long poll)
    state.mailbox().cancel_holds();
    let mut mem = Memory::default();
    let mut out = Vec::new();
    let steps = inp.u8() % 8 + 1;
    for _ in 0..steps {
        if inp.is_empty() {
            break;
        }
        let op = inp.u8();
        if op & 0x0F == 0x0F {
            time.fetch_add(inp.u16() as u64, Ordering::Relaxed);
            continue;
        }
        let now = time.load(Ordering::Relaxed);
        let spec = RequestSpec::read(&mut inp, SPEC_COMMANDS, now);
        let plaintext = if op & 1 == 0 {
            structured_payload(spec.group, spec.command, &spec, &mut inp, &mut mem)
        } else {
            inp.sized(4096).to_vec()
        };
        let built = spec.build(&plaintext, &mut inp);
        let peer = PEERS[(op >> 4) as usize % PEERS.len()];
        let mut packet = built.packet.clone();
        out.clear();
        let answered = match state.handle(&mut packet, peer, &mut out) {
            Outcome::Reply => true,
            Outcome::Drop => false,
            Outcome::Deferred(d) => {
                match ctx
                    .rt
                    .block_on(async { tokio::time::timeout(Duration::from_secs(2), d.answer(state.clone())).await })
                {
                    Ok((_, answer)) => {
                        out = answer;
                        true
                    }
                    Err(_) => false,
                }
            }
        };
        if !answered {
            continue;
        }
        // Decrypt RAIDA Key may have written new ANs into the coins: put the ANs the
        // harness encrypts with back, so that later requests stay valid.
        ledger.coins.write().extend(COINS.iter().map(|&(c, an)| (c.into(), (an, 5))));
        let opened = built.pending.open(&out);
        if debug() {
            let status = match &opened {
                Ok(r) => format!("{:?} ({} bytes)", r.status, r.payload.len()),
                Err(e) => format!("{e:?}"),
            };
            eprintln!("{}/{} EN {} valid={}: {status}", built.group, built.command, spec.en, built.expect_valid);
        }
        if built.expect_valid {
            match &opened {
                Ok(reply) => learn(&built.group, built.command, &reply.payload, &mut mem),
                Err(ResponseError::Status { authenticated: true, .. }) => {}
                Err(e) => panic!("the answer to a valid request does not verify: {e:?}"),
            }
        }
    }
}

fn learn(group: &u8, command: u8, payload: &[u8], mem: &mut Memory) {
    if (*group, command) == (GROUP_HEALING, GET_TICKET) && payload.len() >= 4 {
        let t = &payload[payload.len() - 4..];
        mem.tickets.push(u32::from_be_bytes([t[0], t[1], t[2], t[3]]));
    }
}

thread_local! {
    static FILES_DIR: PathBuf = scratch_dir("files");
}

/// A `Keys/` file name: a key id in lowercase hex (usually), else something the loader
/// must skip.
fn key_file_name(inp: &mut Input) -> (String, Option<[u8; 16]>) {
    let c = inp.u8();
    let id: [u8; 16] = if c & 1 == 0 { [0xA0 + c % 4; 16] } else { inp.array() };
    match c / 2 % 8 {
        0..=4 => (hex::encode(id), Some(id)),
        5 => (hex::encode_upper(id), None),
        6 => (format!(".{}.1.2.tmp", hex::encode(id)), None),
        _ => (String::from_utf8_lossy(inp.bytes(40)).replace(['/', '\0'], "_"), None),
    }
}

/// A pending-key file in the documented version-1 layout, fields from the input (then
/// maybe tampered), or raw bytes.
fn pending_key_bytes(inp: &mut Input) -> Vec<u8> {
    let mode = inp.u8();
    if mode & 3 == 3 {
        return inp.sized(300).to_vec();
    }
    let mut b = vec![if mode & 4 == 0 { 1 } else { inp.u8() }];
    let created = if mode & 8 == 0 { NOW - inp.u16() as u64 } else { inp.u64() };
    b.extend_from_slice(&created.to_be_bytes());
    let mut poster: [u8; 10] = inp.array();
    poster[0] %= if mode & 16 == 0 { 4 } else { 255 };
    b.extend_from_slice(&poster);
    b.extend_from_slice(&inp.array::<13>()); // receiver DN, SN, IP; sender DN, SN
    let kl =
        if mode & 32 == 0 { post_key::KEY_LENGTHS[inp.u8() as usize % post_key::KEY_LENGTHS.len()] } else { inp.u8() };
    b.push(kl);
    let key = inp.bytes(kl as usize);
    b.extend_from_slice(key);
    b.resize(34 + kl as usize, 0);
    if mode & 64 != 0 {
        super::common::tamper(&mut b, inp);
    }
    b
}

/// Target `pending_keys`: 1-4 files in `Keys/`, then `PendingKeys::open` (as at server
/// start): it must succeed whatever the files hold (an unreadable file is removed, never
/// a reason not to start). Then every key is asked for, posted over and swept.
pub fn pending_keys(data: &[u8]) {
    FILES_DIR.with(|dir| pending_keys_in(dir, data));
}

fn pending_keys_in(base: &std::path::Path, data: &[u8]) {
    use raida_server::pending_keys::{PendingKeys, Poster, Requester, Taker};
    let dir = base.join("Keys");
    let _ = std::fs::create_dir_all(&dir);
    clear_dir(&dir);
    let mut inp = Input::new(data);
    let mut ids = Vec::new();
    // Known finding: a file named in upper-case hex loads as a pending key, but take and
    // sweep delete the lower-case name; the file stays and the key is pending again after
    // a restart. The checks below skip inputs with such names until that is fixed.
    let mut upper = false;
    for _ in 0..inp.u8() % 4 + 1 {
        let (name, id) = key_file_name(&mut inp);
        upper |= name.len() == 32 && name.bytes().any(|b| b.is_ascii_uppercase());
        if name.is_empty() || name == "." || name == ".." {
            continue;
        }
        let bytes = pending_key_bytes(&mut inp);
        if std::fs::write(dir.join(&name), &bytes).is_ok() {
            // Any 32-hex-digit name is a key file to the loader, whatever made it.
            let mut any = [0u8; 16];
            ids.extend(id.or_else(|| hex::decode_to_slice(&name, &mut any).ok().map(|()| any)));
        }
    }
    let keys = PendingKeys::open(&dir, 3600, NOW).expect("pending keys open whatever the files hold");
    if !upper {
        assert!(keys.len() <= ids.len());
    }
    let peer = PEERS[inp.u8() as usize % PEERS.len()].ip();
    let mut taken = Vec::new();
    for id in &ids {
        let coins = [pick_coin(&mut inp).into()];
        let taker = Taker { coins: &coins, requester: Requester::of(Poster::Anonymous, peer), ip: peer };
        if keys.take(id, taker, NOW + inp.u8() as u64).is_ok() {
            taken.push(*id);
        }
    }
    let reposted = ids.first().copied().unwrap_or([0xA0; 16]);
    if inp.bool() {
        let none = CoinName { dn: 0, sn: 0 };
        let request =
            post_key::PostKey::with_part(reposted, none, [0; 4], none, &[0; post_key::KEY_FIELD], 0, &[0xFF; 8]);
        let post = post_key::PostKey::decode(&request.to_bytes()).expect("a well-formed post");
        let poster = if inp.bool() { Poster::Anonymous } else { Poster::Coin(CoinId { dn: 1, sn: 100 }) };
        let _ = keys.post(&post, poster, std::net::IpAddr::from([127, 0, 0, 1]), NOW);
    }
    let _ = keys.sweep(NOW + 3600 + inp.u16() as u64);
    drop(keys);
    // What is left must load again, and a key handed out is gone for good.
    let again = PendingKeys::open(&dir, 3600, NOW).expect("pending keys reopen");
    if !upper {
        for id in taken.iter().filter(|id| **id != reposted) {
            let ip = PEERS[0].ip();
            let left = again.take(id, Taker { coins: &[], requester: Requester::of(Poster::Anonymous, ip), ip }, NOW);
            assert_eq!(left.err(), Some(raida_proto::Status::KeyNotFound), "a key handed out is pending again");
        }
    }
}

/// An `Inbox/` file in the documented version-1 layout (fields from the input, maybe
/// tampered), or raw bytes.
fn inbox_bytes(inp: &mut Input) -> Vec<u8> {
    let mode = inp.u8();
    if mode & 3 == 3 {
        return inp.sized(400).to_vec();
    }
    let mut b = vec![if mode & 4 == 0 { 1 } else { inp.u8() }];
    b.extend_from_slice(&inp.u64().to_be_bytes());
    let parts = if mode & 8 == 0 { inp.u8() % 17 } else { inp.u8() };
    b.push(parts);
    for _ in 0..parts.min(40) {
        b.extend_from_slice(&inp.array::<5>());
    }
    let key = inp.sized(200);
    let len = if mode & 16 == 0 { key.len() as u16 } else { inp.u16() };
    b.extend_from_slice(&len.to_be_bytes());
    b.extend_from_slice(key);
    if mode & 32 != 0 {
        super::common::tamper(&mut b, inp);
    }
    b
}

/// Target `inbox_files`: 1-3 files in `Inbox/`, then `Inbox::list` and `Inbox::take` (the
/// CLI's `raida inbox` path). A listed key is taken back unchanged.
pub fn inbox_files(data: &[u8]) {
    FILES_DIR.with(|dir| inbox_in(dir, data));
}

fn inbox_in(base: &std::path::Path, data: &[u8]) {
    use raida_server::inbox::Inbox;
    let inbox = Inbox::new(base);
    let dir = base.join("Inbox");
    let _ = std::fs::create_dir_all(&dir);
    clear_dir(&dir);
    let mut inp = Input::new(data);
    let mut names = Vec::new();
    // Known finding (see `pending_keys_in`): upper-case hex names are listed but not taken.
    let mut upper = false;
    for _ in 0..inp.u8() % 3 + 1 {
        let (name, _) = key_file_name(&mut inp);
        upper |= name.len() == 32 && name.bytes().any(|b| b.is_ascii_uppercase());
        if name.is_empty() || name == "." || name == ".." {
            continue;
        }
        let bytes = inbox_bytes(&mut inp);
        if std::fs::write(dir.join(&name), &bytes).is_ok() {
            names.push(name);
        }
    }
    match inbox.list() {
        Ok(listed) => {
            for k in listed {
                let lower = hex::encode(k.key_id);
                if upper {
                    let _ = inbox.take(&lower);
                    continue;
                }
                let taken = inbox.take(&lower).expect("a listed key can be taken");
                assert_eq!(taken, k, "inbox key changed between list and take");
            }
        }
        Err(_) => {
            for n in &names {
                let _ = inbox.take(n);
            }
        }
    }
}
