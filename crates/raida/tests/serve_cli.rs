//! The real binary: `raida serve` on an ephemeral loopback port, `raida bench` against
//! it, a clean SIGTERM shutdown, and `raida inbox list/take`.

use std::path::Path;
use std::process::Command;

mod common;

use common::*;

const RAIDA: &str = BIN;

fn init(dir: &Path) {
    let out = Command::new(RAIDA)
        .args(["init", dir.to_str().unwrap(), "--raida-id", "4", "--pages", "1", "--denominations", "0,1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "init: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn serve_bench_and_stop() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    init(&dir);
    let (child, addr) = serve(&dir);
    for extra in [&[][..], &["--tcp", "--concurrency", "4"][..]] {
        let out = Command::new(RAIDA)
            .args(["bench", &addr, "--raida-id", "4", "--duration", "0.5"])
            .args(extra)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "bench: {text} {}", String::from_utf8_lossy(&out.stderr));
        assert!(text.contains("requests/s:"), "{text}");
        assert!(text.contains("p99"), "{text}");
    }
    // the wrong RAIDA id: a clear error, non-zero exit (over TCP: over UDP the server drops
    // a wrong RAIDA id without an answer, PROTOCOL.md section 2)
    let out =
        Command::new(RAIDA).args(["bench", &addr, "--raida-id", "5", "--duration", "0.5", "--tcp"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("INVALID_RAIDA_ID"));
    // a second server cannot take the same directory
    let out = Command::new(RAIDA).args(["serve", dir.to_str().unwrap(), "--listen", "127.0.0.1:0"]).output().unwrap();
    assert!(!out.status.success());
    assert!(terminate(child).success(), "SIGTERM exits 0");
}

#[test]
fn serve_missing_directory_is_a_clear_error() {
    let out = Command::new(RAIDA).args(["serve", "/nonexistent/raida-dir"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no such data directory"), "{err}");
}

#[test]
fn inbox_list_and_take() {
    let tmp = tempfile::tempdir().unwrap();
    let inbox = raida_server::inbox::Inbox::new(tmp.path());
    let key = raida_server::inbox::InboxKey {
        key_id: [0xAB; 16],
        created: 1_795_305_600,
        senders: vec![(-1, 7).into(), (0, 0).into()],
        key: vec![1, 2, 3, 0xFF],
    };
    inbox.store(&key).unwrap();
    let d = tmp.path().to_str().unwrap();
    let out = Command::new(RAIDA).args(["inbox", "list", d]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{} parts=2 senders=-1.7,0.0 time=2026-11-22T00:00:00Z\n", "ab".repeat(16))
    );
    let out = Command::new(RAIDA).args(["inbox", "take", d, &"ab".repeat(16)]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "010203ff\n");
    let out = Command::new(RAIDA).args(["inbox", "take", d, &"ab".repeat(16)]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no key"));
    let out = Command::new(RAIDA).args(["inbox", "take", d, "xyz"]).output().unwrap();
    assert!(!out.status.success());
    let out = Command::new(RAIDA).args(["inbox", "list", d]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
}

#[test]
fn key_exchange_through_the_raida_then_a_secure_channel_with_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let (d1, d2, d3) = (tmp.path().join("ks1"), tmp.path().join("ks2"), tmp.path().join("rx"));
    init_as(&d1, "1");
    init_as(&d2, "2");
    init_as(&d3, "3");
    let (c1, a1) = serve(&d1);
    let (c2, a2) = serve(&d2);
    // the receiver fetches only from the key servers its config.toml lists
    let mut cfg = std::fs::read_to_string(d3.join("config.toml")).unwrap();
    for (id, a) in [(1, &a1), (2, &a2)] {
        let (ip, port) = a.rsplit_once(':').unwrap();
        cfg.push_str(&format!("\n[[key_servers]]\nraida_id = {id}\naddress = \"{ip}\"\nport = {port}\n"));
    }
    std::fs::write(d3.join("config.toml"), cfg).unwrap();
    let (c3, a3) = serve(&d3);

    let key_file = tmp.path().join("key.hex");
    let out = Command::new(RAIDA)
        .args([
            "key",
            "send",
            "--receiver",
            &format!("3@{a3}"),
            "--via",
            &format!("1@{a1}"),
            "--via",
            &format!("2@{a2}"),
        ])
        .args(["--out", key_file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "key send: {}", String::from_utf8_lossy(&out.stderr));
    let sent = std::fs::read_to_string(&key_file).unwrap().trim().to_string();
    assert_eq!(sent.len(), 64);

    let out = Command::new(RAIDA).args(["inbox", "list", d3.to_str().unwrap()]).output().unwrap();
    let list = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(list.lines().count(), 1, "{list}");
    let id = list.split_whitespace().next().unwrap().to_string();
    assert!(list.contains("parts=2"), "{list}");
    let out = Command::new(RAIDA).args(["inbox", "take", d3.to_str().unwrap(), &id]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), sent);

    // both sides now share the key: it keys a secure channel between them
    let rx_key = tmp.path().join("rx.hex");
    std::fs::write(&rx_key, &out.stdout).unwrap();
    let (lok, lout, cok, cout, logs) = conversation(
        Some(rx_key.to_str().unwrap()),
        Some(key_file.to_str().unwrap()),
        b"receiver says hi\n".to_vec(),
        b"sender says hi\n".to_vec(),
    );
    assert!(lok && cok, "{logs}");
    assert_eq!(lout, b"sender says hi\n");
    assert_eq!(cout, b"receiver says hi\n");

    // a receiver that does not list the key servers never fetches: the send fails clearly
    let out = Command::new(RAIDA)
        .args(["key", "send", "--receiver", &format!("1@{a1}"), "--via", &format!("2@{a2}")])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ALL_FAIL"), "{}", String::from_utf8_lossy(&out.stderr));

    for c in [c1, c2, c3] {
        assert!(terminate(c).success());
    }
}

fn raida_ok(args: &[&str]) -> String {
    let out = Command::new(RAIDA).args(args).output().unwrap();
    assert!(out.status.success(), "raida {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn key_fix_gives_a_raida_a_new_an() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs: Vec<_> = (1..=3).map(|i| tmp.path().join(format!("r{i}"))).collect();
    let d: Vec<&str> = dirs.iter().map(|p| p.to_str().unwrap()).collect();
    for (i, dir) in dirs.iter().enumerate() {
        init_as(dir, &(i + 1).to_string());
    }
    // RAIDA 3's identity coin 0:5; RAIDAs 1 and 2 hold its AN for their ids
    let ans: Vec<String> = raida_ok(&["identity", "new", d[2], "0", "5"]).lines().map(str::to_string).collect();
    assert_eq!(ans.len(), 25);
    raida_ok(&["coin", "set", d[0], "0", "5", &ans[1], "--mfs", "40"]);
    raida_ok(&["coin", "set", d[1], "0", "5", &ans[2], "--mfs", "40"]);
    // coin 0:7 with known ANs on RAIDAs 1 and 2; RAIDA 3's AN is lost
    let (c1, c2) = ("11".repeat(16), "22".repeat(16));
    raida_ok(&["coin", "set", d[0], "0", "7", &c1, "--mfs", "40"]);
    raida_ok(&["coin", "set", d[1], "0", "7", &c2, "--mfs", "40"]);
    raida_ok(&["coin", "set", d[2], "0", "7", &"33".repeat(16), "--mfs", "40"]);
    let servers: Vec<(std::process::Child, String)> = dirs.iter().map(|p| serve(p)).collect();
    let (a1, a2, a3) = (&servers[0].1, &servers[1].1, &servers[2].1);
    let new_an = raida_ok(&[
        "key",
        "fix",
        "--target",
        &format!("3@{a3}"),
        "--identity",
        "0:5",
        "--coin",
        "0:7",
        "--helper",
        &format!("1@{a1}={c1}"),
        "--helper",
        &format!("2@{a2}={c2}"),
    ]);
    let new_an = new_an.trim().to_string();
    assert_eq!(new_an.len(), 32);
    // RAIDA 3 now answers EN 1 requests made with the new AN
    let out = raida_ok(&[
        "bench",
        a3,
        "--raida-id",
        "3",
        "--duration",
        "0.3",
        "--encryption",
        "1",
        "--coin",
        &format!("0:7:{new_an}"),
    ]);
    assert!(out.contains(" 0 errors"), "{out}");
    for (c, _) in servers {
        assert!(terminate(c).success());
    }
    // and the AN is in its page file
    assert_eq!(raida_ok(&["coin", "get", d[2], "0", "7"]).split_whitespace().next().unwrap(), new_an);
}

/// `raida selfcheck` passes on this machine: each encryption type's request is validated,
/// answered and verified, and the command list is the server's dispatch table.
///
/// Seen failing with the EN 4 case's key naming another coin than the one the check's
/// server knows: 3 of 3 runs (exit 1 after the EN 0 and EN 1 lines).
#[test]
fn selfcheck_passes() {
    let out = Command::new(RAIDA).arg("selfcheck").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "selfcheck failed ({}):\n{stdout}\n{stderr}", out.status);
    for en in ["EN 0", "EN 1", "EN 4"] {
        assert!(stdout.contains(&format!("{en}: request -> validate -> answer -> verify: ok")), "{en}:\n{stdout}");
    }
    let commands = stdout.lines().find_map(|l| l.strip_prefix("commands: ")).unwrap_or_default();
    for c in raida_server::dispatch::COMMANDS.iter() {
        assert!(commands.contains(&format!("{}/{} {}", c.group, c.command, c.name)), "{} missing:\n{stdout}", c.name);
    }
    assert_eq!(stdout.lines().last(), Some("selfcheck passed"), "{stdout}");
    assert!(stderr.is_empty(), "{stderr}");
}
