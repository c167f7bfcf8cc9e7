//! Harnesses over the files of a data directory (raida-store), through the public API a
//! server uses at start: `Store::open` (journal recovery, the three tables), the identity
//! coin loader and `Config::from_toml`.
//!
//! A small data directory (2 denominations × 2 pages) is made once per process on tmpfs;
//! each input writes the files it is about, opens the store, checks what it can and closes
//! it again.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use raida_proto::IdentityCoin;
use raida_store::{
    decode_identity_coin, encode_identity_coin, identity_coin_rel_path, init_data_dir, Config, InitOptions, Store,
    StoreOptions, JOURNAL_DIR,
};

use super::common::{clear_dir, scratch_dir, Input};

/// Denominations and pages of the scratch data directory.
const DNS: [i8; 2] = [-1, 1];
const PAGES: u32 = 2;
const COIN_ID: u16 = 6;

struct Context {
    dir: PathBuf,
}

thread_local! {
    static CONTEXT: Context = {
        let base = scratch_dir("store");
        let dir = base.join("data");
        let mut opts = InitOptions::new(4);
        opts.listen = Some("127.0.0.1:1".into());
        opts.pages = PAGES;
        opts.denominations = DNS.to_vec();
        init_data_dir(&dir, opts).expect("scratch data directory");
        Context { dir }
    };
}

fn options() -> StoreOptions {
    // The smallest cache (16 pages) and journal segments: recovery evicts and rotates early.
    StoreOptions { cache_bytes: Some(1 << 20), segment_bytes: 4096, ..StoreOptions::default() }
}

/// A coin record (DN, SN) mostly inside the scratch directory's pages.
fn record_coin(inp: &mut Input) -> (i8, u32) {
    let c = inp.u8();
    if c & 0x80 == 0 {
        (DNS[c as usize % DNS.len()], inp.u16() as u32 % (PAGES * 1024))
    } else {
        (inp.u8() as i8, inp.u32())
    }
}

/// Target `journal_replay`: 1-3 journal segments written into `Journal/`, then the store is
/// opened (recovery). Batches are encoded with a correct CRC-32 unless the input says
/// otherwise, so the record decoding and the page writes behind the CRC are reached. When
/// every batch is well-formed and names coins of existing pages, recovery must succeed and
/// the last record written for each coin must be what the store reads afterwards.
pub fn journal_replay(data: &[u8]) {
    CONTEXT.with(|ctx| replay(&ctx.dir, data));
}

fn replay(dir: &Path, data: &[u8]) {
    let jdir = dir.join(JOURNAL_DIR);
    let _ = std::fs::create_dir_all(&jdir);
    clear_dir(&jdir);
    let mut inp = Input::new(data);
    let segments = inp.u8() % 3 + 1;
    let mut clean = true;
    let mut expected: Vec<((i8, u32), [u8; 16], u8)> = Vec::new();
    let mut gen = 0u64;
    for _ in 0..segments {
        let mode = inp.u8();
        gen += 1 + (mode >> 6) as u64;
        let mut seg = Vec::new();
        if mode & 1 == 1 {
            clean = false;
            seg.extend_from_slice(inp.sized(4096));
        } else {
            let batches = inp.u8() % 6 + 1;
            for _ in 0..batches {
                let flags = inp.u8();
                let count = flags as usize % 6 + 1;
                let start = seg.len();
                if flags & 0x40 != 0 {
                    clean = false;
                    seg.extend_from_slice(&inp.u32().to_be_bytes());
                } else {
                    seg.extend_from_slice(&(count as u32).to_be_bytes());
                }
                for _ in 0..count {
                    let (dn, sn) = record_coin(&mut inp);
                    let an: [u8; 16] = inp.array();
                    let mfs = inp.u8();
                    let in_range = DNS.contains(&dn) && sn < PAGES * 1024;
                    clean &= in_range;
                    expected.push(((dn, sn), an, mfs));
                    seg.push(dn as u8);
                    seg.extend_from_slice(&sn.to_be_bytes());
                    seg.extend_from_slice(&an);
                    seg.push(mfs);
                }
                let mut crc = crc32fast::hash(&seg[start..]);
                if flags & 0x80 != 0 {
                    clean = false;
                    crc ^= 1 << (inp.u8() % 32);
                }
                seg.extend_from_slice(&crc.to_be_bytes());
            }
            // The zero fill of a preallocated segment, or a torn tail.
            if mode & 2 == 2 {
                clean = false;
                seg.extend_from_slice(inp.sized(64));
            } else {
                seg.resize(seg.len() + (mode as usize >> 2 & 7) * 8, 0);
            }
        }
        let path = jdir.join(format!("{gen:016x}.wal"));
        std::fs::write(&path, &seg).expect("write journal segment");
    }
    match Store::open_with(dir, options()) {
        Ok(store) => {
            if clean {
                let mut last = std::collections::HashMap::new();
                for (coin, an, mfs) in &expected {
                    last.insert(*coin, (*an, *mfs));
                }
                for ((dn, sn), (an, mfs)) in last {
                    let rec = store.get((dn, sn).into()).expect("a replayed coin reads back");
                    assert_eq!((rec.an, rec.mfs), (an, mfs), "journal replay lost an update of {dn}.{sn}");
                }
            }
        }
        Err(e) => {
            assert!(!clean, "a well-formed journal did not replay: {e}");
        }
    }
    clear_dir(&jdir);
}

/// One table file: absent, records assembled by the harness (duplicates and bad keys
/// possible), or raw bytes.
fn table_file(inp: &mut Input, record: impl Fn(&mut Input) -> Vec<u8>) -> (Option<Vec<u8>>, bool) {
    let mode = inp.u8();
    match mode % 4 {
        0 => (None, true),
        1 | 2 => {
            let n = inp.u8() % 6;
            let mut bytes = Vec::new();
            for _ in 0..n {
                bytes.extend_from_slice(&record(inp));
            }
            (Some(bytes), false)
        }
        _ => (Some(inp.sized(400).to_vec()), false),
    }
}

fn token_record(inp: &mut Input) -> Vec<u8> {
    let mut r = Vec::with_capacity(37);
    let c = inp.u8();
    r.push(if c & 0x80 == 0 { 7 + c % 5 } else { inp.u8() });
    r.extend_from_slice(&(inp.u8() as u32 % 4).to_be_bytes());
    r.extend_from_slice(&inp.array::<32>());
    r
}

fn secret_record(inp: &mut Input) -> Vec<u8> {
    let mut r = Vec::with_capacity(37);
    let c = inp.u8();
    r.push(if c & 0x80 == 0 { c % 25 } else { inp.u8() });
    r.extend_from_slice(&(inp.u8() as u32 % 4).to_be_bytes());
    r.extend_from_slice(&inp.array::<32>());
    r
}

fn locker_record(inp: &mut Input) -> Vec<u8> {
    let mut an: [u8; 16] = inp.array();
    // Few distinct prefixes, so that duplicates happen.
    an[..4].fill(0x4c);
    an.to_vec()
}

/// Decodes a table as the loader must: fixed-size records, valid keys, no key twice.
fn expect_table<K: Eq + std::hash::Hash>(
    bytes: &[u8],
    rec: usize,
    key: impl Fn(&[u8]) -> Option<K>,
) -> Option<Vec<(K, Vec<u8>)>> {
    if !bytes.len().is_multiple_of(rec) {
        return None;
    }
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for r in bytes.chunks_exact(rec) {
        let k = key(r)?;
        if !seen.insert(key(r)?) {
            return None;
        }
        out.push((k, r.to_vec()));
    }
    Some(out)
}

/// Target `store_tables`: `lockers.bin`, `tokens.bin`, `raida_secrets.bin` and an identity
/// coin file, then `Store::open`. The store must open exactly when every table is
/// well-formed (else refuse with an error), find every record of a loaded table, and load
/// the identity coin exactly as `decode_identity_coin` judges its bytes.
pub fn store_tables(data: &[u8]) {
    CONTEXT.with(|ctx| tables(&ctx.dir, data));
}

fn tables(dir: &Path, data: &[u8]) {
    let mut inp = Input::new(data);
    let files = ["lockers.bin", "tokens.bin", "raida_secrets.bin"];
    for f in files {
        let _ = std::fs::remove_file(dir.join(f));
    }
    clear_dir(&dir.join("coins"));
    let (lockers, _) = table_file(&mut inp, locker_record);
    let (tokens, _) = table_file(&mut inp, token_record);
    let (secrets, _) = table_file(&mut inp, secret_record);
    for (name, bytes) in files.iter().zip([&lockers, &tokens, &secrets]) {
        if let Some(b) = bytes {
            std::fs::write(dir.join(name), b).expect("write table");
        }
    }
    let want_lockers = match &lockers {
        None => Some(Vec::new()),
        Some(b) => expect_table(b, 16, |r| Some([r[0], r[1], r[2], r[3], r[4]])),
    };
    let be32 = |r: &[u8]| u32::from_be_bytes([r[1], r[2], r[3], r[4]]);
    let want_tokens = match &tokens {
        None => Some(Vec::new()),
        Some(b) => expect_table(b, 37, |r| (7..=11).contains(&(r[0] as i8)).then(|| (r[0] as i8, be32(r)))),
    };
    let want_secrets = match &secrets {
        None => Some(Vec::new()),
        Some(b) => expect_table(b, 37, |r| (r[0] <= 24).then(|| (r[0], be32(r)))),
    };
    // The identity coin file.
    let coin = (DNS[inp.u8() as usize % DNS.len()], inp.u8() as u32);
    let mode = inp.u8();
    let coin_bytes = match mode % 4 {
        0 => None,
        1 | 2 => {
            let mut ans = [[0u8; 16]; 25];
            for an in ans.iter_mut() {
                *an = inp.array();
            }
            let mut b = encode_identity_coin(if mode & 4 == 0 { COIN_ID } else { inp.u16() }, &ans).to_vec();
            if mode & 8 != 0 {
                super::common::tamper(&mut b, &mut inp);
            }
            Some(b)
        }
        _ => Some(inp.sized(600).to_vec()),
    };
    if let Some(b) = &coin_bytes {
        let path = dir.join(identity_coin_rel_path(coin.0, coin.1));
        std::fs::write(path, b).expect("write identity coin");
    }
    let all_ok = want_lockers.is_some() && want_tokens.is_some() && want_secrets.is_some();
    match Store::open_with(dir, options()) {
        Ok(store) => {
            assert!(all_ok, "a malformed table file was accepted");
            for (prefix, r) in want_lockers.iter().flatten() {
                assert_eq!(store.locker_by_prefix(prefix).map(|a| a.as_bytes().to_vec()), Some(r.clone()));
            }
            for ((dn, sn), r) in want_tokens.iter().flatten() {
                assert_eq!(
                    store.token_secret(raida_proto::CoinId { dn: *dn, sn: *sn }).map(|s| s.as_bytes().to_vec()),
                    Some(r[5..].to_vec())
                );
            }
            for ((sender, key_id), r) in want_secrets.iter().flatten() {
                assert_eq!(store.raida_secret(*sender, *key_id).map(|s| s.as_bytes().to_vec()), Some(r[5..].to_vec()));
            }
            let loaded = store.identity_coin(IdentityCoin((coin.0, coin.1).into()), COIN_ID);
            match &coin_bytes {
                None => assert!(loaded.is_err()),
                Some(b) => {
                    // The loader reads at most 441 bytes: anything longer is refused as well.
                    let judged = decode_identity_coin(b, COIN_ID);
                    assert_eq!(loaded.ok(), judged.ok(), "identity coin loader and decoder disagree");
                }
            }
            // A table change goes through the same writer and reads back after reopening.
            if inp.bool() {
                let an: [u8; 16] = inp.array();
                let added = store.add_locker(an);
                drop(store);
                if added.is_ok() {
                    let again = Store::open_with(dir, options()).expect("reopen after adding a locker");
                    let p = [an[0], an[1], an[2], an[3], an[4]];
                    assert_eq!(again.locker_by_prefix(&p).map(|k| *k.as_bytes()), Some(an));
                }
            }
        }
        Err(e) => assert!(!all_ok, "well-formed tables refused: {e}"),
    }
}

/// Target `config_toml`: any text as `config.toml`. What parses must be valid by the
/// rules of `from_toml`, and survive `save` + `load` unchanged.
pub fn config_toml(data: &[u8]) {
    CONTEXT.with(|ctx| config(&ctx.dir, data));
}

fn config(dir: &Path, data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(c) = Config::from_toml(&text, Path::new("config.toml")) else { return };
    assert!(c.raida_id <= 24);
    assert!(c.listen.parse::<std::net::SocketAddr>().is_ok());
    assert!(c.admin_key.is_empty() || c.admin_key_bytes().is_some());
    let cfg_dir = dir.parent().map(|p| p.join("config")).unwrap_or_else(|| dir.join("config"));
    let _ = std::fs::create_dir_all(&cfg_dir);
    c.save(&cfg_dir).expect("a parsed config saves");
    let back = Config::load(&cfg_dir).expect("a saved config loads");
    assert_eq!(back, c, "config.toml round trip");
}
