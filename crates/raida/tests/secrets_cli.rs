//! Secrets off the command line (issue 19, item 10): `raida coin set`, `locker add`,
//! `token set`, `secret set`, `key fix` and `bench` take their ANs and secrets from a file
//! (`--an-file PATH`, `--secret-file PATH`) or standard input (`-`), so that no other local
//! user reads them in /proc; a file others may read is refused like ssh refuses such a
//! private key, and every bad file gets one clear line. Servers bind 127.0.0.1 on an
//! ephemeral port.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

mod common;

use common::*;

/// A file holding `text` with `mode`.
fn secret_file(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

/// `raida ARGS` with `stdin` written to its standard input.
fn run(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // a command refused before it reads its input closes the pipe: not an error here
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

fn ok(args: &[&str], stdin: &str) -> String {
    let out = run(args, stdin);
    assert!(out.status.success(), "raida {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The one error line of a refused command (a `hint:` line may follow).
fn refused(args: &[&str], stdin: &str) -> String {
    let out = run(args, stdin);
    assert!(!out.status.success(), "raida {args:?} succeeded");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    let lines: Vec<&str> = err.lines().filter(|l| !l.starts_with("hint:")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    lines[0].to_string()
}

const AN1: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";
const AN2: &str = "00112233445566778899aabbccddeeff";

#[test]
fn coin_locker_token_and_secret_set_read_from_a_file_or_stdin() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    init_as(&dir, "4");
    let d = dir.to_str().unwrap();
    let f = secret_file(tmp.path(), "an", &format!("# coin 0:1\n{AN1}\n"), 0o600);
    ok(&["coin", "set", d, "0", "1", "--an-file", f.to_str().unwrap(), "--mfs", "40"], "");
    assert_eq!(ok(&["coin", "get", d, "0", "1"], ""), format!("{AN1} 40\n"));
    ok(&["coin", "set", d, "0", "1", "--an-file", "-", "--mfs", "41"], &format!("{AN2}\n"));
    assert_eq!(ok(&["coin", "get", d, "0", "1"], ""), format!("{AN2} 41\n"));
    // the argument form still works (tests, single-user machines)
    ok(&["coin", "set", d, "0", "1", AN1, "--mfs", "40"], "");
    ok(&["locker", "add", d, "--an-file", f.to_str().unwrap()], "");
    ok(&["locker", "add", d, "--an-file", "-"], AN2);
    let secret = secret_file(tmp.path(), "secret", &"ab".repeat(32), 0o400);
    ok(&["secret", "set", d, "3", "7", "--secret-file", secret.to_str().unwrap()], "");
    ok(&["secret", "set", d, "3", "8", "--secret-file", "-"], &"cd".repeat(32));
    ok(&["token", "set", d, "7", "1", "--secret-file", secret.to_str().unwrap()], "");
    ok(&["token", "set", d, "7", "2", "--secret-file", "-"], &"cd".repeat(32));
}

/// Bad files: one line each, never the contents. Seen failing with `check_private`
/// reduced to `Ok(())`: the mode-0644 file and the group-readable one were accepted.
#[test]
fn bad_secret_files_give_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    init_as(&dir, "4");
    let d = dir.to_str().unwrap();
    let coin_set = |file: &str, stdin: &str| refused(&["coin", "set", d, "0", "1", "--an-file", file], stdin);
    let open = secret_file(tmp.path(), "open", AN1, 0o644);
    let l = coin_set(open.to_str().unwrap(), "");
    assert!(l.contains("mode 0644") && l.contains("chmod 600"), "{l}");
    let group = secret_file(tmp.path(), "group", AN1, 0o640);
    assert!(coin_set(group.to_str().unwrap(), "").contains("mode 0640"));
    let l = coin_set(tmp.path().join("missing").to_str().unwrap(), "");
    assert!(l.contains("cannot open") && l.contains("missing"), "{l}");
    let two = secret_file(tmp.path(), "two", &format!("{AN1}\n{AN2}\n"), 0o600);
    let l = coin_set(two.to_str().unwrap(), "");
    assert!(l.contains("expected 1 line") && l.contains("found 2") && !l.contains(AN1), "{l}");
    let bad = secret_file(tmp.path(), "bad", &format!("{}\n", "zq".repeat(16)), 0o600);
    let l = coin_set(bad.to_str().unwrap(), "");
    assert!(l.contains("not valid hex") && !l.contains("zqzq"), "{l}");
    assert!(coin_set("-", "").contains("found 0"));
    assert!(coin_set(d, "").contains("not a regular file"));
    // both forms at once: clap's usage error
    let out = run(&["coin", "set", d, "0", "1", AN1, "--an-file", "-"], "");
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("cannot be used with"));
    let l = refused(
        &[
            "bench",
            "127.0.0.1:9",
            "--raida-id",
            "4",
            "--encryption",
            "4",
            "--coin",
            &format!("0:1:{AN1}"),
            "--an-file",
            "-",
        ],
        AN1,
    );
    assert!(l.contains("DN:SN"), "{l}");
    let l = refused(
        &[
            "key",
            "fix",
            "--target",
            "3@127.0.0.1:9",
            "--identity",
            "0:5",
            "--coin",
            "0:7",
            "--helper",
            "1@127.0.0.1:9",
            "--helper",
            "2@127.0.0.1:9",
            "--an-file",
            "-",
        ],
        AN1,
    );
    assert!(l.contains("expected 2 lines") && l.contains("found 1"), "{l}");
}

/// `raida key fix` with the helpers' ANs (and the new AN) in --an-file, then from stdin,
/// and `raida bench --coin DN:SN --an-file`: the RAIDA takes the new AN each time.
#[test]
fn key_fix_and_bench_read_their_ans_from_a_file_or_stdin() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs: Vec<_> = (1..=3).map(|i| tmp.path().join(format!("r{i}"))).collect();
    let d: Vec<&str> = dirs.iter().map(|p| p.to_str().unwrap()).collect();
    for (i, dir) in dirs.iter().enumerate() {
        init_as(dir, &(i + 1).to_string());
    }
    // RAIDA 3's identity coin 0:5; RAIDAs 1 and 2 hold its AN for their ids
    let ans: Vec<String> = ok(&["identity", "new", d[2], "0", "5"], "").lines().map(str::to_string).collect();
    ok(&["coin", "set", d[0], "0", "5", "--an-file", "-", "--mfs", "40"], &ans[1]);
    ok(&["coin", "set", d[1], "0", "5", "--an-file", "-", "--mfs", "40"], &ans[2]);
    let (c1, c2) = ("11".repeat(16), "22".repeat(16));
    ok(&["coin", "set", d[0], "0", "7", "--an-file", "-", "--mfs", "40"], &c1);
    ok(&["coin", "set", d[1], "0", "7", "--an-file", "-", "--mfs", "40"], &c2);
    ok(&["coin", "set", d[2], "0", "7", "--an-file", "-", "--mfs", "40"], &"33".repeat(16));
    let servers: Vec<(std::process::Child, String)> = dirs.iter().map(|p| serve(p)).collect();
    let (a1, a2, a3) = (&servers[0].1, &servers[1].1, &servers[2].1);
    let (h1, h2, t) = (format!("1@{a1}"), format!("2@{a2}"), format!("3@{a3}"));
    let fix = |an_file: &str, stdin: &str| {
        ok(
            &[
                "key",
                "fix",
                "--target",
                &t,
                "--identity",
                "0:5",
                "--coin",
                "0:7",
                "--helper",
                &h1,
                "--helper",
                &h2,
                "--an-file",
                an_file,
            ],
            stdin,
        )
    };
    // the file names the new AN too (third line)
    let wanted = "44".repeat(16);
    let f = secret_file(tmp.path(), "helpers", &format!("{c1}\n{c2}\n{wanted}\n"), 0o600);
    assert_eq!(fix(f.to_str().unwrap(), "").trim(), wanted);
    let bench = |an_file: &str, stdin: &str| {
        ok(
            &[
                "bench",
                a3,
                "--raida-id",
                "3",
                "--duration",
                "0.3",
                "--encryption",
                "1",
                "--coin",
                "0:7",
                "--an-file",
                an_file,
            ],
            stdin,
        )
    };
    let anf = secret_file(tmp.path(), "an", &wanted, 0o600);
    let out = bench(anf.to_str().unwrap(), "");
    assert!(out.contains(" 0 errors"), "{out}");
    // from standard input, a fresh AN from the CSPRNG
    let new_an = fix("-", &format!("{c1}\n{c2}\n")).trim().to_string();
    assert_eq!(new_an.len(), 32);
    assert_ne!(new_an, wanted);
    let out = bench("-", &new_an);
    assert!(out.contains(" 0 errors"), "{out}");
    for (c, _) in servers {
        assert!(terminate(c).success());
    }
    assert_eq!(ok(&["coin", "get", d[2], "0", "7"], "").split_whitespace().next().unwrap(), new_an);
}
