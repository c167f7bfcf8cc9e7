//! Helpers shared by the CLI tests: run the real `raida` binary as a server or as a
//! channel endpoint.

#![allow(dead_code)]

pub(crate) mod nat;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_raida");

/// `raida init DIR --raida-id ID` with one page of denomination 0.
pub(crate) fn init_as(dir: &Path, id: &str) {
    let out = Command::new(BIN)
        .args(["init", dir.to_str().unwrap(), "--raida-id", id, "--pages", "1", "--denominations", "0"])
        .output()
        .unwrap();
    assert!(out.status.success(), "init: {}", String::from_utf8_lossy(&out.stderr));
}

/// Start `raida serve DIR --listen 127.0.0.1:0`; returns the child and the bound address.
pub(crate) fn serve(dir: &Path) -> (Child, String) {
    let mut child = Command::new(BIN)
        .args(["serve", dir.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let addr = line
        .strip_prefix("listening on ")
        .and_then(|r| r.strip_suffix(" (udp, tcp)\n"))
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_string();
    (child, addr)
}

pub(crate) fn terminate(mut child: Child) -> std::process::ExitStatus {
    send_sigterm(child.id());
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "server did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(crate) fn send_sigterm(pid: u32) {
    let status = Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    assert!(status.success());
}

pub(crate) fn wait_timeout(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            return s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("process did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub(crate) struct Side {
    child: Child,
    pub out: std::thread::JoinHandle<Vec<u8>>,
    pub err: std::thread::JoinHandle<String>,
}

pub(crate) fn start(args: &[&str], input: Vec<u8>, addr_tx: Option<std::sync::mpsc::Sender<String>>) -> Side {
    let mut child = Command::new(BIN)
        .arg("channel")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().unwrap();
    std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut so = child.stdout.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let se = child.stderr.take().unwrap();
    let err = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(se).lines().map_while(Result::ok) {
            if let (Some(tx), Some(rest)) = (&addr_tx, line.strip_prefix("raida channel: listening on ")) {
                let _ = tx.send(rest.trim().to_string());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    Side { child, out, err }
}

pub(crate) fn conversation(
    psk_l: Option<&str>,
    psk_c: Option<&str>,
    a: Vec<u8>,
    b: Vec<u8>,
) -> (bool, Vec<u8>, bool, Vec<u8>, String) {
    let mut largs = vec!["listen", "127.0.0.1:0"];
    let mut cargs = vec!["connect"];
    if let Some(p) = psk_l {
        largs.extend(["--psk-file", p]);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let mut l = start(&largs, a, Some(tx));
    let addr = rx.recv_timeout(Duration::from_secs(30)).expect("listener address");
    cargs.push(&addr);
    if let Some(p) = psk_c {
        cargs.extend(["--psk-file", p]);
    }
    let mut c = start(&cargs, b, None);
    let sc = wait_timeout(&mut c.child, Duration::from_secs(60));
    let sl = wait_timeout(&mut l.child, Duration::from_secs(60));
    let (lo, co) = (l.out.join().unwrap(), c.out.join().unwrap());
    let logs = format!("listener:\n{}\nconnector:\n{}", l.err.join().unwrap(), c.err.join().unwrap());
    (sl.success(), lo, sc.success(), co, logs)
}
