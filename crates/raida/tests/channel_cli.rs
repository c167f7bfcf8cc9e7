//! `raida channel demo|listen|connect` end to end through the real binary.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

mod common;

use common::*;

fn run_demo(extra: &[&str]) {
    let mut child = Command::new(BIN)
        .args(["channel", "demo"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn demo");
    let status = wait_timeout(&mut child, Duration::from_secs(60));
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(status.success(), "demo {extra:?} failed: {status}\n{out}\n{err}");
    for step in ["[1/8]", "[4/8]", "[6/8]", "epoch 2", "[8/8]", "demo complete"] {
        assert!(out.contains(step), "missing {step:?} in:\n{out}");
    }
}

#[test]
fn demo_exits_zero() {
    run_demo(&[]);
}

#[test]
fn demo_pq_with_psk_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let psk = dir.path().join("psk.hex");
    std::fs::write(&psk, "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n").unwrap();
    run_demo(&["--pq", "--psk-file", psk.to_str().unwrap()]);
}

#[test]
fn listen_connect_pipe_both_ways_with_psk() {
    let dir = tempfile::tempdir().unwrap();
    let psk = dir.path().join("key.bin");
    std::fs::write(&psk, [0x5Au8; 32]).unwrap();
    let p = psk.to_str().unwrap();
    let a: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let b: Vec<u8> = b"hello from the connecting side\n".repeat(1000);
    let (lok, lout, cok, cout, logs) = conversation(Some(p), Some(p), a.clone(), b.clone());
    assert!(lok && cok, "{logs}");
    assert_eq!(lout, b, "listener received\n{logs}");
    assert_eq!(cout, a, "connector received\n{logs}");
}

#[test]
fn listen_connect_without_psk_and_empty_input() {
    let (lok, lout, cok, cout, logs) = conversation(None, None, Vec::new(), b"x".to_vec());
    assert!(lok && cok, "{logs}");
    assert_eq!(lout, b"x");
    assert!(cout.is_empty());
}

#[test]
fn wrong_psk_fails_on_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    let (p1, p2) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::write(&p1, [1u8; 16]).unwrap();
    std::fs::write(&p2, [2u8; 16]).unwrap();
    let (lok, lout, cok, cout, logs) = conversation(
        Some(p1.to_str().unwrap()),
        Some(p2.to_str().unwrap()),
        b"secret a".to_vec(),
        b"secret b".to_vec(),
    );
    assert!(!lok && !cok, "{logs}");
    assert!(lout.is_empty() && cout.is_empty());
    assert!(logs.contains("key confirmation"), "{logs}");
}
