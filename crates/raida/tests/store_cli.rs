//! The data directory subcommands through the real binary.

use raida_proto::CoinId;
use std::path::Path;
use std::process::{Command, Output};

fn raida(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_raida")).args(args).output().expect("run raida")
}

fn ok(args: &[&str]) -> String {
    let o = raida(args);
    assert!(o.status.success(), "raida {args:?} failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).expect("utf-8 output")
}

/// Runs a command that must fail with exactly one `error: ...` line on stderr.
fn fails(args: &[&str], needle: &str) {
    let o = raida(args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "raida {args:?} succeeded");
    assert_eq!(o.status.code(), Some(1), "raida {args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(err.starts_with("error: "), "{err:?}");
    assert!(!err.contains("panicked"), "{err:?}");
    assert!(err.contains(needle), "raida {args:?}: {err:?} should mention {needle:?}");
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn init_get_set_round_trip() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("data");
    let dir = s(&d);
    let out = ok(&["init", dir, "--raida-id", "7", "--coin-id", "300", "--pages", "2", "--denominations", "-1,0,1"]);
    assert!(out.contains("raida id 7"), "{out}");
    let cfg = std::fs::read_to_string(d.join("config.toml")).unwrap();
    assert!(cfg.contains("raida_id = 7") && cfg.contains("coin_id = 300"), "{cfg}");
    assert!(cfg.contains("listen = \"0.0.0.0:50007\""), "{cfg}");
    for p in ["Data/ff/00/0000.bin", "Data/00/00/0001.bin", "Data/01/00/0001.bin"] {
        assert_eq!(std::fs::metadata(d.join(p)).unwrap().len(), 17408, "{p}");
    }
    assert!(!d.join("Data/02").exists());

    // Fresh records: random AN, MFS 0.
    let line = ok(&["coin", "get", dir, "-1", "7"]);
    let parts: Vec<&str> = line.trim_end().split(' ').collect();
    assert_eq!(parts.len(), 2, "{line:?}");
    assert_eq!(parts[0].len(), 32);
    assert!(parts[0].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    assert_eq!(parts[1], "0");

    ok(&["coin", "set", dir, "-1", "7", "00112233445566778899AABBCCDDEEFF", "--mfs", "9"]);
    assert_eq!(ok(&["coin", "get", dir, "-1", "7"]), "00112233445566778899aabbccddeeff 9\n");
    ok(&["coin", "set", dir, "1", "2047", "ffeeddccbbaa99887766554433221100", "--mfs", "0"]);
    assert_eq!(ok(&["coin", "get", dir, "1", "2047"]), "ffeeddccbbaa99887766554433221100 0\n");
    // Default MFS: the current month (>= 1).
    ok(&["coin", "set", dir, "0", "3", "0000000000000000000000000000000a"]);
    let line = ok(&["coin", "get", dir, "0", "3"]);
    let mfs: u32 = line.trim_end().split(' ').nth(1).unwrap().parse().unwrap();
    assert!(mfs >= 1, "{line}");
    // The page file on disk has the new record at SN 7 of page 0.
    let page = std::fs::read(d.join("Data/ff/00/0000.bin")).unwrap();
    assert_eq!(hex::encode(&page[7 * 17..7 * 17 + 16]), "00112233445566778899aabbccddeeff");
    assert_eq!(page[7 * 17 + 16], 9);

    // Errors: one line, non-zero exit.
    fails(&["coin", "get", dir, "2", "7"], "missing");
    fails(&["coin", "get", dir, "-1", "1024000"], "out of range");
    fails(&["coin", "get", dir, "-1", "4096"], "missing");
    fails(&["coin", "get", dir, "-9", "1"], "-8..6");
    fails(&["coin", "get", dir, "x", "1"], "denomination");
    fails(&["coin", "set", dir, "0", "1", "abcd"], "32 hex digits");
    fails(&["coin", "set", dir, "0", "1", "zz112233445566778899aabbccddeeff"], "hex");
    fails(&["coin", "set", dir, "0", "1", "00112233445566778899aabbccddeeff", "--mfs", "300"], "MFS");
    fails(&["coin", "get", s(&t.path().join("nope")), "0", "1"], "no such data directory");
    fails(&["coin", "get", s(t.path()), "0", "1"], "not a RAIDA data directory");
    fails(&["init", dir, "--raida-id", "1"], "not an empty directory");
    fails(&["init", s(&t.path().join("x")), "--raida-id", "25"], "above 24");
    fails(&["init", s(&t.path().join("y")), "--raida-id", "1", "--pages", "1001"], "pages");
    fails(&["init", s(&t.path().join("z")), "--raida-id", "1", "--denominations", "0,9"], "-8..6");

    // Corrupt page files.
    std::fs::write(d.join("Data/00/00/0001.bin"), [0u8; 17407]).unwrap();
    fails(&["coin", "get", dir, "0", "1024"], "17407 bytes, expected 17408");
    std::fs::remove_file(d.join("Data/00/00/0000.bin")).unwrap();
    fails(&["coin", "set", dir, "0", "5", "00112233445566778899aabbccddeeff"], "0000.bin is missing");
}

#[test]
fn identity_secret_token_locker() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("data");
    let dir = s(&d);
    ok(&["init", dir, "--raida-id", "2", "--pages", "1", "--denominations", "-8"]);

    let out = ok(&["identity", "new", dir, "-8", "220197"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 25);
    let file = std::fs::read(d.join("coins/f8.220197.bin")).unwrap();
    assert_eq!(file.len(), 440);
    assert_eq!(&file[0..4], &[0, 0, 0, 6]);
    assert!(file[4..40].iter().all(|&b| b == 0));
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(hex::encode(&file[40 + 16 * i..56 + 16 * i]), *l);
    }
    fails(&["identity", "new", dir, "-8", "220197"], "already exists");
    let cfg = std::fs::read_to_string(d.join("config.toml")).unwrap();
    assert!(cfg.contains("[identity]") && cfg.contains("sn = 220197"), "{cfg}");

    let h64 = "ab".repeat(32);
    ok(&["secret", "set", dir, "24", "4294967295", &h64]);
    fails(&["secret", "set", dir, "25", "1", &h64], "above 24");
    fails(&["secret", "set", dir, "1", "1", "abcd"], "64 hex digits");
    ok(&["token", "set", dir, "7", "12", &h64]);
    ok(&["token", "set", dir, "11", "13", &"cd".repeat(32)]);
    fails(&["token", "set", dir, "6", "12", &h64], "7..11");
    ok(&["locker", "add", dir, "0102030405aaaaaaaaaaaaaaaaaaaaaa"]);
    fails(&["locker", "add", dir, "0102030405bbbbbbbbbbbbbbbbbbbbbb"], "prefix 0102030405");
    ok(&["locker", "add", dir, "0102030406bbbbbbbbbbbbbbbbbbbbbb"]);

    let store = raida_store::Store::open(&d).unwrap();
    assert_eq!(store.raida_secret(24, u32::MAX).map(|k| *k.as_bytes()), Some([0xab; 32]));
    assert_eq!(store.token_secret(CoinId { dn: 11, sn: 13 }).map(|k| *k.as_bytes()), Some([0xcd; 32]));
    assert_eq!(store.token_secret(CoinId { dn: 7, sn: 12 }).map(|k| *k.as_bytes()), Some([0xab; 32]));
    let mut an = [0xaa; 16];
    an[..5].copy_from_slice(&[1, 2, 3, 4, 5]);
    assert_eq!(store.locker_by_prefix(&[1, 2, 3, 4, 5]).map(|k| *k.as_bytes()), Some(an));
    assert_eq!(store.identity_coin(raida_proto::IdentityCoin((-8, 220197).into()), 6).unwrap().len(), 25);

    // While the directory is held (as by a running server) every command refuses it.
    fails(&["coin", "set", dir, "-8", "1", "00112233445566778899aabbccddeeff"], "in use");
    fails(&["coin", "get", dir, "-8", "1"], "in use");
    fails(&["locker", "add", dir, "0902030406bbbbbbbbbbbbbbbbbbbbbb"], "in use");
    drop(store);
    ok(&["coin", "set", dir, "-8", "1", "00112233445566778899aabbccddeeff"]);
}
