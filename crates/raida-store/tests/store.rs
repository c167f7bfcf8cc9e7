//! Behaviour of the store: round trips, persistence, corrupt files, vectors.

use raida_proto::{CoinId, IdentityCoin};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use raida_store::*;

fn init(dir: &Path, pages: u32, dns: &[i8]) {
    let mut o = InitOptions::new(1);
    o.pages = pages;
    o.denominations = dns.to_vec();
    init_data_dir(dir, o).unwrap();
}

fn small_store(pages: u32, dns: &[i8]) -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("data");
    init(&d, pages, dns);
    (t, d)
}

#[test]
fn init_layout_and_config() {
    let (_t, d) = small_store(2, &[-8, 0, 6]);
    let c = Config::load(&d).unwrap();
    assert_eq!(c.raida_id, 1);
    assert_eq!(c.coin_id, 6);
    assert_eq!(c.listen, "0.0.0.0:50001");
    assert_eq!(c.admin_key.len(), 32);
    for p in ["Data/f8/00/0000.bin", "Data/00/00/0001.bin", "Data/06/00/0001.bin"] {
        assert_eq!(fs::metadata(d.join(p)).unwrap().len(), PAGE_BYTES as u64, "{p}");
    }
    assert!(!d.join("Data/ff").exists());
    let s = Store::open(&d).unwrap();
    let r = s.get((0, 5).into()).unwrap();
    assert_eq!(r.mfs, 0);
    assert_eq!(s.present_an(CoinId { dn: 0, sn: 5 }).unwrap().map(|k| *k.as_bytes()), None);
    // Random ANs differ.
    assert_ne!(s.get((0, 5).into()).unwrap().an, s.get((0, 6).into()).unwrap().an);
    // Refuses an existing non-empty directory.
    drop(s);
    let e = init_data_dir(&d, InitOptions::new(1)).unwrap_err();
    assert!(matches!(e, StoreError::DirNotEmpty(_)), "{e}");
}

#[test]
fn set_get_persist_and_errors() {
    let (_t, d) = small_store(2, &[-1, 2]);
    {
        let s = Store::open(&d).unwrap();
        s.set((-1, 7).into(), [0xAB; 16], 5).unwrap();
        s.set_many(&[
            CoinUpdate { coin: CoinId { dn: 2, sn: 1024 }, an: [1; 16], mfs: 1 },
            CoinUpdate { coin: CoinId { dn: 2, sn: 2047 }, an: [2; 16], mfs: 2 },
            CoinUpdate { coin: CoinId { dn: 2, sn: 1024 }, an: [3; 16], mfs: 3 },
        ])
        .unwrap();
        assert_eq!(s.get((-1, 7).into()).unwrap(), CoinRecord { an: [0xAB; 16], mfs: 5 });
        assert_eq!(s.present_an(CoinId { dn: 2, sn: 1024 }).unwrap().map(|k| *k.as_bytes()), Some([3; 16]));
        assert!(matches!(s.get((-9, 0).into()), Err(StoreError::BadDenomination(-9))));
        assert!(matches!(s.get((7, 0).into()), Err(StoreError::BadDenomination(7))));
        assert!(matches!(s.get((0, 1_024_000).into()), Err(StoreError::SnOutOfRange(_))));
        assert!(matches!(s.get((-1, 2048).into()), Err(StoreError::MissingPage { .. })));
        assert!(matches!(s.get((0, 0).into()), Err(StoreError::MissingPage { .. })));
        assert!(s.set((-1, 5000).into(), [0; 16], 1).is_err());
        assert_eq!(s.present_an(CoinId { dn: -1, sn: 5000 }).unwrap().map(|k| *k.as_bytes()), None);
        // The lock is held.
        assert!(matches!(Store::open(&d), Err(StoreError::Locked(_))));
        let st = s.stats();
        assert_eq!(st.updates, 4);
        assert!(st.dirty_pages >= 1);
        s.flush().unwrap();
        assert_eq!(s.stats().dirty_pages, 0);
    }
    // Clean close left an empty journal; values on disk.
    let s = Store::open(&d).unwrap();
    assert_eq!(s.get((-1, 7).into()).unwrap(), CoinRecord { an: [0xAB; 16], mfs: 5 });
    assert_eq!(s.get((2, 2047).into()).unwrap(), CoinRecord { an: [2; 16], mfs: 2 });
    let page = fs::read(d.join("Data/02/00/0001.bin")).unwrap();
    assert_eq!(&page[0..16], &[3; 16]);
    assert_eq!(page[16], 3);
}

#[test]
fn journal_replay_without_flush() {
    let (_t, d) = small_store(1, &[0]);
    let s = Store::open(&d).unwrap();
    s.set((0, 3).into(), [9; 16], 7).unwrap();
    // Simulate a crash: the page file still has the old content, the journal has the update.
    // (Leak the store so that Drop does not flush; the lock goes with a forked copy of the fd
    // only at process exit, so copy the directory instead.)
    let copy = _t.path().join("copy");
    copy_dir(&d, &copy);
    drop(s);
    let page = fs::read(copy.join("Data/00/00/0000.bin")).unwrap();
    assert_ne!(&page[3 * 17..3 * 17 + 16], &[9; 16], "page not yet written");
    let s2 = Store::open(&copy).unwrap();
    assert_eq!(s2.get((0, 3).into()).unwrap(), CoinRecord { an: [9; 16], mfs: 7 });
    drop(s2);
    let page = fs::read(copy.join("Data/00/00/0000.bin")).unwrap();
    assert_eq!(&page[3 * 17..3 * 17 + 16], &[9; 16]);
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &p);
        } else if e.file_name() != ".lock" {
            fs::copy(e.path(), p).unwrap();
        }
    }
}

#[test]
fn corrupt_files_give_clear_errors() {
    let (_t, d) = small_store(3, &[1]);
    fs::remove_file(d.join("Data/01/00/0001.bin")).unwrap();
    fs::write(d.join("Data/01/00/0002.bin"), [0u8; 100]).unwrap();
    let s = Store::open(&d).unwrap();
    let e = s.get((1, 1024).into()).unwrap_err();
    assert!(e.to_string().contains("Data/01/00/0001.bin is missing"), "{e}");
    let e = s.get((1, 2048).into()).unwrap_err();
    assert!(e.to_string().contains("100 bytes, expected 17408"), "{e}");
    assert!(s.set((1, 2048).into(), [0; 16], 1).is_err());
    assert!(s.get((1, 1).into()).is_ok());
    // Identity coin files.
    let e = s.identity_coin(IdentityCoin((1, 5).into()), 6).unwrap_err();
    assert!(matches!(e, StoreError::MissingCoinFile(_)), "{e}");
    fs::write(d.join("coins/01.5.bin"), [0u8; 439]).unwrap();
    let e = s.identity_coin(IdentityCoin((1, 5).into()), 6).unwrap_err();
    assert!(e.to_string().contains("439 bytes"), "{e}");
    fs::write(d.join("coins/01.5.bin"), [0u8; 441]).unwrap();
    assert!(s.identity_coin(IdentityCoin((1, 5).into()), 6).is_err());
    let mut good = encode_identity_coin(6, &[[7; 16]; 25]);
    fs::write(d.join("coins/01.5.bin"), good).unwrap();
    assert_eq!(s.identity_coin(IdentityCoin((1, 5).into()), 6).unwrap()[24], [7; 16]);
    assert!(s.identity_coin(IdentityCoin((1, 5).into()), 7).is_err(), "wrong coin id");
    good[10] = 1;
    fs::write(d.join("coins/01.5.bin"), good).unwrap();
    assert!(s.identity_coin(IdentityCoin((1, 5).into()), 6).is_err(), "bytes 4-39 not zero");
    good[10] = 0;
    good[0] = 1;
    fs::write(d.join("coins/01.5.bin"), good).unwrap();
    assert!(s.identity_coin(IdentityCoin((1, 5).into()), 6).is_err(), "bytes 0-1 not zero");
    drop(s);
    // Corrupt tables and config refuse to open.
    fs::write(d.join("lockers.bin"), [0u8; 17]).unwrap();
    let e = Store::open(&d).err().unwrap();
    assert!(e.to_string().contains("lockers.bin"), "{e}");
    fs::remove_file(d.join("lockers.bin")).unwrap();
    fs::write(d.join("config.toml"), "raida_id = \"x\"").unwrap();
    let e = Store::open(&d).err().unwrap();
    assert!(e.to_string().contains("config.toml"), "{e}");
    fs::remove_file(d.join("config.toml")).unwrap();
    assert!(matches!(Store::open(&d), Err(StoreError::NotADataDir(_))));
    assert!(matches!(Store::open(&d.join("nope")), Err(StoreError::NoSuchDir(_))));
}

#[test]
fn lockers_tokens_secrets_persist() {
    let (_t, d) = small_store(1, &[0]);
    {
        let s = Store::open(&d).unwrap();
        let mut an = [5u8; 16];
        s.add_locker(an).unwrap();
        an[15] = 6;
        assert!(matches!(s.add_locker(an), Err(StoreError::DuplicateLocker(_))));
        s.add_locker([6u8; 16]).unwrap();
        assert_eq!(s.locker_by_prefix(&[5; 5]).map(|k| *k.as_bytes()), Some([5; 16]));
        assert_eq!(s.locker_by_prefix(&[7; 5]).map(|k| *k.as_bytes()), None);
        s.set_token_secret((7, 99).into(), &[1; 32]).unwrap();
        s.set_token_secret((11, 1).into(), &[2; 32]).unwrap();
        assert!(s.set_token_secret((6, 1).into(), &[2; 32]).is_err());
        assert!(s.set_token_secret((12, 1).into(), &[2; 32]).is_err());
        s.set_raida_secret(24, 7, &[3; 32]).unwrap();
        s.set_raida_secret(24, 7, &[4; 32]).unwrap();
        assert!(s.set_raida_secret(25, 7, &[3; 32]).is_err());
    }
    let s = Store::open(&d).unwrap();
    assert_eq!(s.locker_count(), 2);
    assert_eq!(s.locker_by_prefix(&[6; 5]).map(|k| *k.as_bytes()), Some([6; 16]));
    assert_eq!(s.token_secret(CoinId { dn: 7, sn: 99 }).map(|k| *k.as_bytes()), Some([1; 32]));
    assert_eq!(s.token_secret(CoinId { dn: 11, sn: 1 }).map(|k| *k.as_bytes()), Some([2; 32]));
    assert_eq!(s.token_secret(CoinId { dn: 0, sn: 99 }).map(|k| *k.as_bytes()), None);
    assert_eq!(s.raida_secret(24, 7).map(|k| *k.as_bytes()), Some([4; 32]));
    assert_eq!(s.raida_secret(24, 8).map(|k| *k.as_bytes()), None);
    assert!(s.remove_locker(&[6; 5]).unwrap());
    assert_eq!(fs::metadata(d.join("lockers.bin")).unwrap().len(), 16);
    assert_eq!(fs::metadata(d.join("tokens.bin")).unwrap().len(), 74);
    assert_eq!(fs::metadata(d.join("raida_secrets.bin")).unwrap().len(), 37);
}

#[test]
fn cache_stays_bounded_and_concurrent_writers_agree() {
    let (_t, d) = small_store(40, &[-2, 3]);
    let opts = StoreOptions {
        cache_bytes: Some(1 << 20),
        segment_bytes: 64 << 10,
        checkpoint_bytes: 32 << 10,
        ..Default::default()
    };
    let s = Store::open_with(&d, opts.clone()).unwrap();
    let cap = s.stats().capacity_pages;
    assert!(cap < 80, "capacity {cap}");
    let threads: Vec<_> = (0..4u32)
        .map(|t| {
            let s: Arc<Store> = s.clone();
            std::thread::spawn(move || {
                for i in 0..300u32 {
                    let sn = (i * 4 + t) * 131 % (40 * 1024);
                    let dn = if i % 2 == 0 { -2 } else { 3 };
                    s.set((dn, sn).into(), [(t + 1) as u8; 16], (i % 200 + 1) as u8).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let st = s.stats();
    assert!(st.cached_pages <= cap + 2, "{st:?}");
    assert!(st.journal_syncs <= 1200, "{st:?}");
    let mut expect = std::collections::HashMap::new();
    for t in 0..4u32 {
        for i in 0..300u32 {
            let sn = (i * 4 + t) * 131 % (40 * 1024);
            let dn: i8 = if i % 2 == 0 { -2 } else { 3 };
            expect.insert((dn, sn), ([(t + 1) as u8; 16], (i % 200 + 1) as u8));
        }
    }
    for ((dn, sn), (an, mfs)) in &expect {
        assert_eq!(s.get((*dn, *sn).into()).unwrap(), CoinRecord { an: *an, mfs: *mfs });
    }
    drop(s);
    let s = Store::open_with(&d, opts).unwrap();
    for ((dn, sn), (an, mfs)) in &expect {
        assert_eq!(s.get((*dn, *sn).into()).unwrap(), CoinRecord { an: *an, mfs: *mfs });
    }
    assert!(fs::read_dir(d.join("Journal")).unwrap().next().is_none());
}

fn vectors_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let v = root.join("vectors");
    assert!(
        v.join("identity_coin.json").is_file(),
        "test vectors missing: {} (the repository's copy of ../shared/vectors)",
        v.display()
    );
    v
}

fn hex16(s: &serde_json::Value) -> [u8; 16] {
    hex::decode(s.as_str().unwrap()).unwrap().try_into().unwrap()
}

#[test]
fn identity_coin_vectors() {
    let text = fs::read_to_string(vectors_dir().join("identity_coin.json")).unwrap();
    let cases: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    let (_t, d) = small_store(1, &[0]);
    let s = Store::open(&d).unwrap();
    let mut counts = [0; 3];
    for c in &cases {
        let name = c["name"].as_str().unwrap();
        let i = &c["input"];
        let e = &c["expected"];
        let dn = i["dn"].as_i64().unwrap() as i8;
        let sn = i["sn"].as_u64().unwrap() as u32;
        match c["kind"].as_str().unwrap() {
            "file" => {
                counts[0] += 1;
                let coin_id = i["coin_id"].as_u64().unwrap() as u16;
                let ans: Vec<[u8; 16]> = i["ans"].as_array().unwrap().iter().map(hex16).collect();
                let ans: [[u8; 16]; 25] = ans.try_into().unwrap();
                let file = encode_identity_coin(coin_id, &ans);
                assert_eq!(hex::encode(file), e["file"].as_str().unwrap(), "{name}");
                assert_eq!(identity_coin_rel_path(dn, sn), e["filename"].as_str().unwrap(), "{name}");
                s.write_identity_coin(IdentityCoin((dn, sn).into()), coin_id, &ans).unwrap();
                let on_disk = fs::read(d.join(e["filename"].as_str().unwrap())).unwrap();
                assert_eq!(hex::encode(on_disk), e["file"].as_str().unwrap(), "{name}");
                let loads = s.identity_coin(IdentityCoin((dn, sn).into()), coin_id).is_ok();
                assert_eq!(loads, e["loads"].as_bool().unwrap(), "{name}");
                assert_eq!(s.identity_coin(IdentityCoin((dn, sn).into()), coin_id).unwrap(), ans, "{name}");
                assert!(s.identity_coin(IdentityCoin((dn, sn).into()), coin_id.wrapping_add(1)).is_err(), "{name}");
                assert!(s.write_identity_coin(IdentityCoin((dn, sn).into()), coin_id, &ans).is_err(), "no overwrite");
            }
            "filename" => {
                counts[1] += 1;
                assert_eq!(identity_coin_rel_path(dn, sn), e["filename"].as_str().unwrap(), "{name}");
            }
            "page_path" => {
                counts[2] += 1;
                let (p, idx) = page_path_for_sn(dn, sn);
                assert_eq!(p, e["path"].as_str().unwrap(), "{name}");
                assert_eq!(idx as u64, e["index"].as_u64().unwrap(), "{name}");
            }
            k => panic!("unknown kind {k} in {name}"),
        }
    }
    assert!(counts.iter().all(|&n| n > 0), "every kind covered: {counts:?}");
}

#[test]
fn page_path_vectors_against_real_files() {
    // A store with page files exactly where the vectors say: set a record through the store,
    // read the page file at the vector's path.
    let text = fs::read_to_string(vectors_dir().join("identity_coin.json")).unwrap();
    let cases: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("data");
    let mut o = InitOptions::new(0);
    o.pages = 1;
    o.denominations = vec![0];
    init_data_dir(&d, o).unwrap();
    let page = vec![0u8; PAGE_BYTES];
    for c in cases.iter().filter(|c| c["kind"] == "page_path") {
        let p = d.join(c["expected"]["path"].as_str().unwrap());
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, &page).unwrap();
    }
    let s = Store::open(&d).unwrap();
    for c in cases.iter().filter(|c| c["kind"] == "page_path") {
        let dn = c["input"]["dn"].as_i64().unwrap() as i8;
        let sn = c["input"]["sn"].as_u64().unwrap() as u32;
        s.set((dn, sn).into(), [0xEE; 16], 9).unwrap();
    }
    s.flush().unwrap();
    for c in cases.iter().filter(|c| c["kind"] == "page_path") {
        let p = d.join(c["expected"]["path"].as_str().unwrap());
        let idx = c["expected"]["index"].as_u64().unwrap() as usize;
        let bytes = fs::read(&p).unwrap();
        assert_eq!(&bytes[idx * 17..idx * 17 + 16], &[0xEE; 16], "{}", c["name"]);
        assert_eq!(bytes[idx * 17 + 16], 9);
    }
}

#[test]
fn churn_with_tiny_cache_and_constant_checkpoints() {
    // 48 pages through a 16-page cache: dirty pages go to the overlay, checkpoints run every
    // few milliseconds; every thread must read back what it wrote, and so must a reopen.
    let (_t, d) = small_store(24, &[-4, 5]);
    let opts = StoreOptions {
        cache_bytes: Some(1 << 20),
        segment_bytes: 16 << 10,
        checkpoint_bytes: 16 << 10,
        checkpoint_interval: std::time::Duration::from_millis(5),
    };
    let s = Store::open_with(&d, opts.clone()).unwrap();
    let threads: Vec<_> = (0..4u32)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                let mut mine = std::collections::HashMap::new();
                let mut x = 0x1234_5678u32 ^ (t * 7919);
                for i in 0..1500u32 {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    let dn: i8 = if x & 1 == 0 { -4 } else { 5 };
                    let sn = (x % (24 * 1024 / 4)) * 4 + t;
                    let an = [(i % 251) as u8 ^ t as u8; 16];
                    let mfs = (i % 250 + 1) as u8;
                    if i % 5 == 0 {
                        let other: i8 = if dn == -4 { 5 } else { -4 };
                        s.set_many(&[
                            CoinUpdate { coin: CoinId { dn: other, sn }, an, mfs },
                            CoinUpdate { coin: CoinId { dn, sn }, an, mfs },
                        ])
                        .unwrap();
                        mine.insert((other, sn), (an, mfs));
                    } else {
                        s.set((dn, sn).into(), an, mfs).unwrap();
                    }
                    mine.insert((dn, sn), (an, mfs));
                    assert_eq!(s.get((dn, sn).into()).unwrap(), CoinRecord { an, mfs });
                    if i % 7 == 0 {
                        // Re-read an older coin of this thread.
                        let (&(odn, osn), &(oan, omfs)) = mine.iter().next().unwrap();
                        assert_eq!(s.get((odn, osn).into()).unwrap(), CoinRecord { an: oan, mfs: omfs });
                    }
                }
                mine
            })
        })
        .collect();
    let mut all = std::collections::HashMap::new();
    for t in threads {
        all.extend(t.join().unwrap());
    }
    let st = s.stats();
    assert!(st.cached_pages <= st.capacity_pages + 4, "{st:?}");
    assert!(st.checkpoints > 0 && st.evictions > 0, "{st:?}");
    for ((dn, sn), (an, mfs)) in &all {
        assert_eq!(s.get((*dn, *sn).into()).unwrap(), CoinRecord { an: *an, mfs: *mfs });
    }
    drop(s);
    let s = Store::open_with(&d, opts).unwrap();
    for ((dn, sn), (an, mfs)) in &all {
        assert_eq!(s.get((*dn, *sn).into()).unwrap(), CoinRecord { an: *an, mfs: *mfs }, "{dn}/{sn}");
    }
}
