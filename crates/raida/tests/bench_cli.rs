//! `raida bench`: exit status, JSON output, the server's CPU from /proc, other commands,
//! fixed-rate mode and the `--vs` comparison, against the real binary on loopback.

use std::net::UdpSocket;
use std::process::Command;

mod common;

use common::*;

fn bench(args: &[&str]) -> std::process::Output {
    Command::new(BIN).arg("bench").args(args).output().unwrap()
}

fn json(out: &std::process::Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "bench: {text} {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn bench_against_a_silent_port_exits_1() {
    // bound but never read: every request is lost
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let out = bench(&[&addr, "--raida-id", "0", "--duration", "0.3", "--concurrency", "4"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no request was answered"));
}

#[test]
fn bench_json_commands_rate_and_vs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    init_as(&dir, "4");
    let (child, addr) = serve(&dir);
    let pid = child.id().to_string();

    // JSON, the server's CPU per request, p90, and --vs against the same server
    let doc = json(&bench(&[
        &addr,
        "--raida-id",
        "4",
        "--duration",
        "0.3",
        "--command",
        "version",
        "--json",
        "--server-pid",
        &pid,
        "--vs",
        &addr,
        "--vs-pid",
        &pid,
    ]));
    assert_eq!(doc["command"], "version");
    let runs = doc["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    for r in runs {
        assert!(r["ok"].as_u64().unwrap() > 0, "{r}");
        assert_eq!(r["errors"].as_u64(), Some(0), "{r}");
        assert!(r["server_cpu_us_per_request"].as_f64().is_some(), "{r}");
        assert!(r["latency_us"]["p90"].as_f64().unwrap() > 0.0, "{r}");
    }
    assert!(doc["ratios"][0].as_f64().unwrap() > 0.0);

    // Post Key + Get Key pairs: every request answered successfully, Posts and Gets alike
    let doc = json(&bench(&[
        &addr,
        "--raida-id",
        "4",
        "--duration",
        "0.3",
        "--command",
        "post-get-key",
        "--concurrency",
        "4",
        "--json",
    ]));
    let r = &doc["runs"][0];
    assert!(r["ok"].as_u64().unwrap() >= 2, "{r}");
    assert_eq!(r["errors"].as_u64(), Some(0), "{r}");

    // fixed rate: never more requests than the schedule (500/s for 0.4 s) allows
    let doc = json(&bench(&[&addr, "--raida-id", "4", "--duration", "0.4", "--rate", "500", "--json"]));
    let ok = doc["runs"][0]["ok"].as_u64().unwrap();
    assert!(ok > 0 && ok <= 201 + 64, "{ok}");

    // TCP, pipelined
    let doc = json(&bench(&[
        &addr,
        "--raida-id",
        "4",
        "--duration",
        "0.3",
        "--tcp",
        "--concurrency",
        "2",
        "--pipeline",
        "8",
        "--json",
    ]));
    assert!(doc["runs"][0]["ok"].as_u64().unwrap() > 0);
    assert!(terminate(child).success());
}
