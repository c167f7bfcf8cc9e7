//! `raida relay` through the real binary: it listens, pairs two clients, counts on its
//! metrics endpoint, takes new bounds on SIGHUP, refuses a file out of range at start and
//! at reload (the old bounds stay), and stops on SIGTERM. And `raida serve` with
//! `relay_listen` runs the same relay beside the RAIDA.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use common::{init_as, send_sigterm, terminate, BIN};

fn hello(relay: &str, id: u8, side: u8) -> TcpStream {
    let mut s = TcpStream::connect(relay).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut h = b"RLY1".to_vec();
    h.extend_from_slice(&[id; 32]);
    h.extend_from_slice(&[side, 0, 0, 0]);
    s.write_all(&h).unwrap();
    s
}

fn answer(s: &mut TcpStream) -> u8 {
    let mut b = [0u8; 1];
    s.read_exact(&mut b).unwrap();
    b[0]
}

fn scrape(addr: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn lines(child: &mut std::process::Child) -> Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let se = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(se).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

fn line_with(rx: &Receiver<String>, needle: &str) -> String {
    loop {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(l) if l.contains(needle) => return l,
            Ok(_) => {}
            Err(_) => panic!("no line with {needle:?}"),
        }
    }
}

fn hup(pid: u32) {
    assert!(Command::new("kill").args(["-HUP", &pid.to_string()]).status().unwrap().success());
}

#[test]
fn relay_pairs_counts_reloads_and_stops() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("relay.toml");
    std::fs::write(&file, "metrics_listen = \"127.0.0.1:0\"\n").unwrap();
    let mut child = Command::new(BIN)
        .args(["relay", "--listen", "127.0.0.1:0", "--config", file.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = lines(&mut child);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    let relay = first.trim().strip_prefix("relay listening on ").and_then(|r| r.strip_suffix(" (tcp)")).unwrap();
    let relay = relay.to_string();
    let mut second = String::new();
    out.read_line(&mut second).unwrap();
    let metrics =
        second.trim().strip_prefix("metrics on http://").and_then(|r| r.strip_suffix("/metrics")).unwrap().to_string();
    line_with(&rx, "relay started");

    let mut s = hello(&relay, 1, 1);
    let mut r = hello(&relay, 1, 2);
    assert_eq!((answer(&mut s), answer(&mut r)), (1, 1));
    s.write_all(b"abc").unwrap();
    let mut b = [0u8; 3];
    r.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"abc");
    let text = scrape(&metrics);
    assert!(text.contains("raida_relay_answers_total{answer=\"PAIRED\"} 2"), "{text}");
    assert!(text.contains("raida_relay_pairs 1"), "{text}");

    // SIGHUP: a file out of range is refused and the old bounds stay
    std::fs::write(&file, "metrics_listen = \"127.0.0.1:0\"\nrelay_waiting_per_addr = 0\n").unwrap();
    hup(child.id());
    let l = line_with(&rx, "relay settings");
    assert!(l.contains("refused") && l.contains("relay_waiting_per_addr"), "{l}");
    let mut w = hello(&relay, 2, 1);
    // new bounds: one waiting connection per address; the second is busy
    std::fs::write(&file, "metrics_listen = \"127.0.0.1:0\"\nrelay_waiting_per_addr = 1\n").unwrap();
    hup(child.id());
    line_with(&rx, "relay settings reloaded");
    let mut over = hello(&relay, 3, 1);
    assert_eq!(answer(&mut over), 4);
    let mut w2 = hello(&relay, 2, 2);
    // w holds the address's one slot: its peer from the same address is refused too
    assert_eq!(answer(&mut w2), 4);
    drop((s, r));
    assert!(terminate(child).success());
    // the relay closed the waiting client when it stopped
    let mut rest = Vec::new();
    let _ = w.read_to_end(&mut rest);
}

#[test]
fn relay_file_out_of_range_is_refused_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("relay.toml");
    std::fs::write(&file, "relay_idle_seconds = 0\n").unwrap();
    let out = Command::new(BIN)
        .args(["relay", "--listen", "127.0.0.1:0", "--config", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("relay_idle_seconds = 0 is out of range"), "{err}");
    let out = Command::new(BIN).args(["relay"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--listen"));
}

#[test]
fn serve_runs_the_relay_beside_the_raida() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    init_as(&dir, "3");
    let cfg = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    std::fs::write(dir.join("config.toml"), format!("relay_listen = \"127.0.0.1:0\"\n{cfg}")).unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", dir.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let relay = loop {
        let mut l = String::new();
        assert!(out.read_line(&mut l).unwrap() > 0, "no relay line");
        if let Some(a) = l.trim().strip_prefix("relay on ").and_then(|r| r.strip_suffix(" (tcp)")) {
            break a.to_string();
        }
    };
    let mut s = hello(&relay, 9, 1);
    let mut r = hello(&relay, 9, 2);
    assert_eq!((answer(&mut s), answer(&mut r)), (1, 1));
    r.write_all(b"xy").unwrap();
    let mut b = [0u8; 2];
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"xy");
    send_sigterm(child.id());
    assert!(common::wait_timeout(&mut child, Duration::from_secs(20)).success());
}
