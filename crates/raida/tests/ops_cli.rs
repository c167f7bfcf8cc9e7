//! Operator features of the real binary: `/metrics` scraped over HTTP, JSON log lines
//! (never a key or an AN), SIGHUP reload, systemd readiness, one-line errors with hints,
//! `raida status` and `raida stats`, completions, the manual page and `--version`.
//! Every server binds 127.0.0.1 on an ephemeral port.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

mod common;

use common::*;
use raida_client::{Client, Server, Transport};
use raida_proto::client::ClientKey;
use raida_proto::keys::{Key16, Key32};

const AN_HEX: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";

/// A running `raida serve` whose stdout and stderr lines arrive on channels.
struct Served {
    child: Child,
    addr: String,
    metrics: Option<String>,
    stderr: Receiver<String>,
}

fn spawn_serve(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Served {
    spawn_serve_under(&[], dir, extra, env)
}

/// [`spawn_serve`] run by `wrapper` (a program and its arguments, then the binary's).
fn spawn_serve_under(wrapper: &[&str], dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Served {
    let mut cmd = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(BIN);
            c
        }
        None => Command::new(BIN),
    };
    cmd.args(["serve", dir.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let (err_tx, stderr) = std::sync::mpsc::channel();
    let se = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(se).lines().map_while(Result::ok) {
            let _ = err_tx.send(line);
        }
    });
    let (out_tx, out_rx) = std::sync::mpsc::channel();
    let so = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(so).lines().map_while(Result::ok) {
            let _ = out_tx.send(line);
        }
    });
    let first = out_rx.recv_timeout(Duration::from_secs(30)).expect("serve printed nothing");
    let addr = first
        .strip_prefix("listening on ")
        .and_then(|r| r.strip_suffix(" (udp, tcp)"))
        .unwrap_or_else(|| panic!("unexpected first line: {first:?}"))
        .to_string();
    let metrics = out_rx
        .recv_timeout(Duration::from_millis(500))
        .ok()
        .and_then(|l| l.strip_prefix("metrics on http://").map(|r| r.trim_end_matches("/metrics").to_string()));
    Served { child, addr, metrics, stderr }
}

impl Served {
    /// SIGTERM, then its exit status (bounded wait).
    fn stop(&mut self) -> std::process::ExitStatus {
        send_sigterm(self.child.id());
        wait_timeout(&mut self.child, Duration::from_secs(10))
    }
}

/// A failing test must not leave its server running.
impl Drop for Served {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Lines on `rx` until one contains `needle` (bounded by time); returns every line read.
fn lines_until(rx: &Receiver<String>, needle: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => {
                let hit = l.contains(needle);
                seen.push(l);
                if hit {
                    return seen;
                }
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                panic!("no line with {needle:?} in:\n{}", seen.join("\n"))
            }
        }
    }
}

fn drain(rx: &Receiver<String>) -> Vec<String> {
    let mut v = Vec::new();
    while let Ok(l) = rx.recv_timeout(Duration::from_millis(300)) {
        v.push(l);
    }
    v
}

fn init_with_coin(dir: &Path) {
    init_as(dir, "4");
    let out = Command::new(BIN).args(["coin", "set", dir.to_str().unwrap(), "0", "5", AN_HEX, "--mfs", "40"]).output();
    assert!(out.unwrap().status.success());
}

fn admin_key(dir: &Path) -> String {
    let cfg = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    cfg.lines().find_map(|l| l.strip_prefix("admin_key = \"")).unwrap().trim_end_matches('"').to_string()
}

fn append_config(dir: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new().append(true).open(dir.join("config.toml")).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn signal(child: &Child, sig: &str) {
    assert!(Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap().success());
}

/// Echo to `addr` (RAIDA 4) `n` times with `key`; how many were answered.
fn echoes(addr: &str, transport: Transport, key: &ClientKey, n: usize) -> usize {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let client = Client::new(transport, 6, Duration::from_secs(5));
    let server = Server { addr: addr.parse().unwrap(), raida_id: 4 };
    rt.block_on(async {
        let mut ok = 0;
        for _ in 0..n {
            if client.request(server, 0, 0, key, &[]).await.is_ok() {
                ok += 1;
            }
        }
        ok
    })
}

fn coin_keys() -> Vec<ClientKey> {
    let mut an = [0u8; 16];
    hex::decode_to_slice(AN_HEX, &mut an).unwrap();
    vec![
        ClientKey::Coin { coin: (0, 5).into(), an: Key16::new(an) },
        ClientKey::Token { coin: (0, 5).into(), key: Key32::sha256_of_an(&Key16::new(an)) },
    ]
}

fn http_get(addr: &str, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn metrics_are_scraped_over_http() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    init_with_coin(&dir);
    // off by default
    let mut s = spawn_serve(&dir, &[], &[]);
    assert!(s.metrics.is_none());
    assert!(s.stop().success());
    // on through the environment (RAIDA_<SETTING> over config.toml)
    let mut s = spawn_serve(&dir, &[], &[("RAIDA_METRICS_LISTEN", "127.0.0.1:0")]);
    let m = s.metrics.clone().expect("metrics address");
    assert_eq!(echoes(&s.addr, Transport::Udp, &ClientKey::None, 7), 7);
    assert_eq!(echoes(&s.addr, Transport::Tcp, &coin_keys()[0], 3), 3);
    let answer = http_get(&m, "/metrics");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let body = answer.split("\r\n\r\n").nth(1).unwrap();
    assert_eq!(metric(body, "raida_requests_total{command=\"echo\"}"), 10);
    assert_eq!(metric(body, "raida_answers_total{status=\"250\"}"), 10);
    assert_eq!(metric(body, "raida_request_errors_total{command=\"echo\"}"), 0);
    // Show Stats with a wrong admin key: an error answer (38) of command show_stats
    let out = Command::new(BIN).args(["stats", &s.addr, "--admin-key", &"ab".repeat(16), "--raida-id", "4"]).output();
    assert!(!out.unwrap().status.success());
    let after = http_get(&m, "/metrics");
    assert_eq!(metric(&after, "raida_request_errors_total{command=\"show_stats\"}"), 1);
    assert_eq!(metric(&after, "raida_answers_total{status=\"38\"}"), 1);
    assert_eq!(metric(body, "raida_request_duration_seconds_count"), 10);
    assert_eq!(metric(body, "raida_request_duration_seconds_bucket{le=\"+Inf\"}"), 10);
    assert!(metric(body, "raida_received_bytes_total") >= 10 * 32);
    assert!(metric(body, "raida_cache_hits_total") + metric(body, "raida_cache_misses_total") >= 3, "{body}");
    for name in [
        "raida_cache_dirty_pages",
        "raida_journal_fsyncs_total",
        "raida_journal_records_total",
        "raida_journal_batch_size_count",
        "raida_journal_batch_size_bucket{le=\"1.0\"}",
        "raida_journal_batch_size_bucket{le=\"+Inf\"}",
        "raida_pending_keys",
        "raida_inbox_keys",
        "raida_live_tickets",
        "raida_replay_entries",
        "raida_rate_limited_total",
        "raida_dropped_total",
        "raida_tcp_connections",
    ] {
        metric(body, name);
    }
    assert!(http_get(&m, "/other").starts_with("HTTP/1.1 404"));
    assert!(s.stop().success());
}

#[test]
fn json_log_lines_parse_and_carry_no_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    init_with_coin(&dir);
    let admin = admin_key(&dir);
    let mut s = spawn_serve(&dir, &["--log-format", "json", "--log", "trace"], &[]);
    for key in coin_keys() {
        assert_eq!(echoes(&s.addr, Transport::Udp, &key, 2), 2);
    }
    let out = Command::new(BIN).args(["stats", &s.addr, "--admin-key", &admin, "--raida-id", "4"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("requests.0.0=4"));
    let mut lines = lines_until(&s.stderr, "\"request\"");
    assert!(s.stop().success());
    lines.extend(drain(&s.stderr));
    let mut an = [0u8; 16];
    hex::decode_to_slice(AN_HEX, &mut an).unwrap();
    let sha = hex::encode(Key32::sha256_of_an(&Key16::new(an)).as_bytes());
    let mut requests = 0;
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["timestamp"].is_string(), "{line}");
        assert!(!line.contains('\u{1b}'), "ANSI colour on a pipe: {line}");
        let lower = line.to_lowercase();
        for secret in [AN_HEX, admin.as_str(), sha.as_str()] {
            assert!(!lower.contains(secret), "a key in a log line: {line}");
        }
        if v["fields"]["message"] == "request" {
            requests += 1;
        }
    }
    assert!(requests >= 5, "one line per request at debug: {lines:#?}");
}

#[test]
fn text_logs_have_no_colour_on_a_pipe() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    init_as(&dir, "4");
    let mut s = spawn_serve(&dir, &[], &[]);
    let lines = lines_until(&s.stderr, "server started");
    assert!(s.stop().success());
    assert!(lines.iter().all(|l| !l.contains('\u{1b}')), "{lines:#?}");
}

#[test]
fn sighup_reloads_the_config_and_an_invalid_file_keeps_the_old() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    init_as(&dir, "4");
    append_config(&dir, "log = \"info\"\n");
    let mut s = spawn_serve(&dir, &[], &[]);
    lines_until(&s.stderr, "server started");
    // at info, a request logs nothing
    assert_eq!(echoes(&s.addr, Transport::Udp, &ClientKey::None, 1), 1);
    // requests keep flowing while the file is reloaded
    let addr = s.addr.clone();
    let load = std::thread::spawn(move || echoes(&addr, Transport::Tcp, &ClientKey::None, 300));
    let cfg = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    assert!(cfg.contains("cache_mib = 64"), "{cfg}");
    std::fs::write(dir.join("config.toml"), cfg.replace("log = \"info\"", "log = \"debug\"")).unwrap();
    signal(&s.child, "-HUP");
    // (no assertion on the lines before "reloaded": the new level takes effect a moment before
    // that line is written, so a request of the concurrent load may already log there)
    lines_until(&s.stderr, "config.toml reloaded");
    assert_eq!(echoes(&s.addr, Transport::Udp, &ClientKey::None, 1), 1);
    lines_until(&s.stderr, "request");
    // a broken file: refused with a log line, the old settings (debug) stay
    std::fs::write(dir.join("config.toml"), "raida_id = = 4\n").unwrap();
    signal(&s.child, "-HUP");
    lines_until(&s.stderr, "config.toml refused");
    // a value that parses but is invalid is refused the same way
    std::fs::write(dir.join("config.toml"), cfg.replace("cache_mib = 64", "cache_mib = 0")).unwrap();
    signal(&s.child, "-HUP");
    lines_until(&s.stderr, "cache_mib = 0 is out of range");
    drain(&s.stderr);
    assert_eq!(echoes(&s.addr, Transport::Udp, &ClientKey::None, 1), 1);
    lines_until(&s.stderr, "request");
    assert_eq!(load.join().unwrap(), 300, "no request dropped during the reloads");
    // a setting that needs a restart is named
    std::fs::write(dir.join("config.toml"), cfg.replace("cache_mib = 64", "cache_mib = 8")).unwrap();
    signal(&s.child, "-HUP");
    let l = lines_until(&s.stderr, "next start");
    assert!(l.last().unwrap().contains("cache_mib"), "{l:#?}");
    // a limit an operator tunes under load takes effect at once: a new admin key for Show
    // Stats (the old one is refused from then on)
    let stats = |key: &str| {
        Command::new(BIN).args(["stats", &s.addr, "--admin-key", key, "--raida-id", "4"]).output().unwrap().status
    };
    let (old_key, new_key) = (admin_key(&dir), "5a".repeat(16));
    assert!(stats(&old_key).success() && !stats(&new_key).success());
    std::fs::write(dir.join("config.toml"), cfg.replace(&old_key, &new_key)).unwrap();
    signal(&s.child, "-HUP");
    let l = lines_until(&s.stderr, "config.toml reloaded");
    assert!(!l.last().unwrap().contains("admin_key"), "admin_key needs no restart: {l:#?}");
    assert!(stats(&new_key).success() && !stats(&old_key).success());
    assert!(s.stop().success());
}

#[test]
fn sighup_lowers_the_tcp_cap_per_address_and_keeps_the_open_connections() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    init_as(&dir, "4");
    let cfg = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    assert!(cfg.contains("tcp_max_connections_per_addr = 64"), "{cfg}");
    std::fs::write(dir.join("config.toml"), cfg.replace("per_addr = 64", "per_addr = 3")).unwrap();
    let mut s = spawn_serve(&dir, &[], &[]);
    lines_until(&s.stderr, "server started");
    let addr: std::net::SocketAddr = s.addr.parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // Echo's status on a connection, or None when the server closed it
    async fn echo(c: &mut tokio::net::TcpStream) -> Option<u8> {
        let routing = raida_proto::client::Routing::new(4, 6, 0, 0);
        let (p, _) = raida_proto::client::build_request(&routing, &ClientKey::None, &[], 0, &mut rand_core::OsRng);
        c.write_all(&p).await.ok()?;
        let mut head = [0u8; 32];
        match tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut head)).await {
            Ok(Ok(_)) => Some(head[2]),
            _ => None,
        }
    }
    let connect = || async { tokio::net::TcpStream::connect(addr).await.unwrap() };
    let mut open = rt.block_on(async {
        let mut open = Vec::new();
        for _ in 0..2 {
            let mut c = connect().await;
            assert_eq!(echo(&mut c).await, Some(raida_proto::Status::Success.code()));
            open.push(c);
        }
        open
    });
    std::fs::write(dir.join("config.toml"), cfg.replace("per_addr = 64", "per_addr = 1")).unwrap();
    signal(&s.child, "-HUP");
    let l = lines_until(&s.stderr, "config.toml reloaded");
    assert!(!l.last().unwrap().contains("next start"), "no restart needed: {l:#?}");
    rt.block_on(async {
        assert_eq!(echo(&mut connect().await).await, None, "a third connection from 127.0.0.1");
        for c in &mut open {
            assert_eq!(echo(c).await, Some(raida_proto::Status::Success.code()), "an open connection is not cut");
        }
    });
    drop(open);
    assert!(s.stop().success());
}

#[test]
fn sighup_keeps_tcp_max_connections_within_the_descriptors_of_the_start() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    init_as(&dir, "4");
    let cfg = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    assert!(cfg.contains("tcp_max_connections = 4096"), "{cfg}");
    // a hard limit of 1,024 descriptors: 1,024 - 256 - 516 deferred slots - UDP threads
    // leaves about 250 connections
    let mut s = spawn_serve_under(&["sh", "-c", "ulimit -n 1024 && exec \"$@\"", "sh"], &dir, &[], &[]);
    lines_until(&s.stderr, "server started");
    std::fs::write(dir.join("config.toml"), cfg.replace("tcp_max_connections = 4096", "tcp_max_connections = 2000"))
        .unwrap();
    signal(&s.child, "-HUP");
    let l = lines_until(&s.stderr, "config.toml reloaded");
    let warn: Vec<_> = l.iter().filter(|l| l.contains("tcp_max_connections")).collect();
    assert_eq!(warn.len(), 1, "{l:#?}");
    assert!(warn[0].contains("WARN") && warn[0].contains("raise the hard RLIMIT_NOFILE and restart"), "{warn:?}");
    assert!(warn[0].contains("wanted=2000") && warn[0].contains("descriptors=1024"), "{warn:?}");
    assert!(!l.last().unwrap().contains("next start"), "{l:#?}");
    assert_eq!(echoes(&s.addr, Transport::Tcp, &ClientKey::None, 1), 1);
    assert!(s.stop().success());
}

#[test]
fn readiness_and_stopping_are_notified() {
    use std::os::unix::net::UnixDatagram;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    init_as(&dir, "4");
    let sock_path = tmp.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut s = spawn_serve(&dir, &[], &[("NOTIFY_SOCKET", sock_path.to_str().unwrap())]);
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).expect("READY=1 within 20 s");
    assert_eq!(String::from_utf8_lossy(&buf[..n]).trim(), "READY=1");
    // ready means answering
    assert_eq!(echoes(&s.addr, Transport::Udp, &ClientKey::None, 1), 1);
    signal(&s.child, "-TERM");
    let n = sock.recv(&mut buf).expect("STOPPING=1");
    assert_eq!(String::from_utf8_lossy(&buf[..n]).trim(), "STOPPING=1");
    assert!(wait_timeout(&mut s.child, Duration::from_secs(10)).success());
}

#[test]
fn errors_are_one_line_with_the_cause_once_and_a_hint() {
    // nothing listens on the port of a listener just closed
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = Command::new(BIN)
        .args(["stats", &format!("127.0.0.1:{port}"), "--admin-key", &"00".repeat(16)])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: "), "{err}");
    assert_eq!(err.matches("Connection refused").count(), 1, "{err}");

    // a busy port: the hint names --listen
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    init_as(&dir, "4");
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap().to_string();
    let out = Command::new(BIN).args(["serve", dir.to_str().unwrap(), "--listen", &busy]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ") || l.starts_with("hint: ")).collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert_eq!(lines[0].matches("in use").count(), 1, "{err}");
    assert!(lines[1].contains("--listen"), "{err}");

    // an environment value of the wrong type: one line naming the setting
    let out = Command::new(BIN)
        .args(["serve", dir.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .env("RAIDA_CACHE_MIB", "lots")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.to_lowercase().contains("cache_mib"), "{err}");
    // the offline tools read the file alone: the environment does not reach them
    let out = Command::new(BIN)
        .args(["coin", "get", dir.to_str().unwrap(), "0", "5"])
        .env("RAIDA_CACHE_MIB", "lots")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn status_of_a_network_with_some_raidas_down() {
    let tmp = tempfile::tempdir().unwrap();
    let (d0, d1) = (tmp.path().join("r0"), tmp.path().join("r1"));
    init_as(&d0, "0");
    init_as(&d1, "1");
    let (c0, a0) = serve(&d0);
    let (c1, a1) = serve(&d1);
    let down = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let net = tmp.path().join("network.toml");
    let mut text = String::from("coin_id = 6\n");
    for (id, a) in [(0, &a0), (1, &a1), (2, &down)] {
        text.push_str(&format!("[[raida]]\nid = {id}\naddress = \"{a}\"\n"));
    }
    std::fs::write(&net, text).unwrap();
    let out =
        Command::new(BIN).args(["status", "--network", net.to_str().unwrap(), "--timeout", "1"]).output().unwrap();
    assert!(!out.status.success(), "some RAIDAs down: exit status 1");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("2 of 3 up"), "{table}");
    let out = Command::new(BIN)
        .args(["status", "--network", net.to_str().unwrap(), "--timeout", "1", "--json"])
        .output()
        .unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 3);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r["id"], i as u64);
        assert_eq!(r["up"], i < 2, "{r}");
        if i < 2 {
            assert_eq!(r["version"].as_str().unwrap().len(), 8, "{r}");
            assert!(r["echo_ms"].as_f64().unwrap() >= 0.0);
        } else {
            assert!(r["version"].is_null() && r["error"].is_string(), "{r}");
        }
    }
    assert!(terminate(c0).success());
    // all up: exit 0
    std::fs::write(&net, format!("coin_id = 6\n[[raida]]\nid = 1\naddress = \"{a1}\"\n")).unwrap();
    let out = Command::new(BIN).args(["status", "--network", net.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(terminate(c1).success());
}

#[test]
fn stats_over_loopback_and_refused_in_clear_elsewhere() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    init_as(&dir, "4");
    let key = admin_key(&dir);
    let (c, addr) = serve(&dir);
    let out = Command::new(BIN).args(["stats", &addr, "--admin-key", &key, "--raida-id", "4"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("requests.0.0=") && text.contains("uptime_seconds="), "{text}");
    // a wrong admin key: the server's status, one line, and a hint saying where the key is
    let out =
        Command::new(BIN).args(["stats", &addr, "--admin-key", &"ab".repeat(16), "--raida-id", "4"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(lines[0].starts_with("error: ") && lines[0].contains("38"), "{err}");
    assert!(lines[1].starts_with("hint: 38: the admin key is not this RAIDA's"), "{err}");
    assert!(lines[1].contains("DIR/raida-NN/config.toml"), "{err}");
    // no key at all: where to find one
    let out =
        Command::new(BIN).args(["stats", &addr, "--raida-id", "4"]).env_remove("RAIDA_ADMIN_KEY").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("`admin_key` in its own config.toml"));
    // not loopback and no wallet: refused before anything is sent
    let out = Command::new(BIN).args(["stats", "192.0.2.1:50000", "--admin-key", &key]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--wallet"));
    assert!(terminate(c).success());
}

#[test]
fn completions_man_page_and_version() {
    let run = |args: &[&str]| {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(run(&["completions", "bash"]).contains("_raida()"));
    assert!(run(&["completions", "zsh"]).starts_with("#compdef raida"));
    assert!(run(&["completions", "fish"]).contains("complete -c raida"));
    let man = run(&["man"]);
    assert!(man.contains(".TH raida") && man.contains("serve"), "{man}");
    let v = run(&["--version"]);
    assert!(v.starts_with("raida 0.") && v.contains("(commit ") && v.contains(", built 20"), "{v}");
}

/// `raida ... | head -1`: the reader is gone before the first write. The command ends
/// quietly (killed by SIGPIPE, like `cat`, or exit 0) with nothing on stderr: no panic,
/// no "Broken pipe" error line.
#[test]
fn a_closed_stdout_pipe_ends_commands_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let tmp = tempfile::tempdir().unwrap();
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent = silent.local_addr().unwrap().to_string();
    let net = tmp.path().join("network.toml");
    std::fs::write(&net, format!("coin_id = 6\n[[raida]]\nid = 0\naddress = \"{silent}\"\n")).unwrap();
    let net = net.to_str().unwrap();
    let commands: &[&[&str]] = &[
        &["man"],
        &["completions", "bash"],
        &["--help"],
        &["selfcheck"],
        &["status", "--network", net, "--timeout", "0.2"],
        &["status", "--network", net, "--timeout", "0.2", "--json"],
        &["bench", &silent, "--raida-id", "0", "--duration", "0.2", "--concurrency", "2", "--json"],
    ];
    for args in commands {
        // the read end is closed before the command starts: its first write meets EPIPE
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(BIN).args(*args).stdout(writer).stderr(Stdio::piped()).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
        assert!(out.status.signal() == Some(libc::SIGPIPE) || out.status.success(), "{args:?}: {:?}", out.status);
    }
}

/// Load over UDP and TCP runs across a burst of 20 SIGHUPs 2 ms apart (a signal that
/// arrives while a reload is being applied queues one more), each with a changed file (the
/// TCP cap per address, written whole): every request is answered, and the load
/// demonstrably ran between the first signal and the last reload.
///
/// Seen failing with the TCP cap swap made two-step (cap 0, 50 ms, then the new cap) in
/// `reload::apply`: 3 of 3 runs (1,200-1,500 TCP requests refused; the signals then
/// overlapped the slow reloads and coalesced into 2). Measured with the real swap: 0 of
/// about 5,000 requests failed across 20 reloads.
#[test]
fn sighup_burst_under_load_answers_every_request() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    const SIGNALS: usize = 20;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    init_as(&dir, "4");
    append_config(&dir, "log = \"info\"\n");
    let cfg = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    assert!(cfg.contains("tcp_max_connections_per_addr = 64"), "{cfg}");
    let mut s = spawn_serve(&dir, &[], &[]);
    lines_until(&s.stderr, "server started");
    let stop = Arc::new(AtomicBool::new(false));
    // one load thread per transport: the instant of every answer, and every failure
    let load = |transport: Transport| {
        let (addr, stop) = (s.addr.clone(), stop.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let client = Client::new(transport, 6, Duration::from_secs(5));
            let server = Server { addr: addr.parse().unwrap(), raida_id: 4 };
            let (mut answered, mut failed) = (Vec::new(), Vec::new());
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(60) {
                match rt.block_on(client.request(server, 0, 0, &ClientKey::None, &[])) {
                    Ok(_) => answered.push(Instant::now()),
                    Err(e) => failed.push(format!("{transport:?}: {e}")),
                }
            }
            (answered, failed)
        })
    };
    let loads = [load(Transport::Udp), load(Transport::Tcp)];
    // the load is running before the first signal
    assert_eq!(echoes(&s.addr, Transport::Udp, &ClientKey::None, 20), 20);
    let first_signal = Instant::now();
    let pid = s.child.id() as libc::pid_t;
    for i in 0..SIGNALS {
        let cap = if i % 2 == 0 { "63" } else { "64" };
        let text = cfg.replace("tcp_max_connections_per_addr = 64", &format!("tcp_max_connections_per_addr = {cap}"));
        // whole files only (a reload must see this file or the previous one, not half)
        let tmp_file = dir.join("config.toml.new");
        std::fs::write(&tmp_file, text).unwrap();
        std::fs::rename(&tmp_file, dir.join("config.toml")).unwrap();
        // SAFETY: kill(2) on our own child's pid, which is alive (stopped only below).
        assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
        std::thread::sleep(Duration::from_millis(2));
    }
    lines_until(&s.stderr, "config.toml reloaded");
    let mut last_reload = Instant::now();
    // the reloads still queued (SIGHUPs that arrived during one coalesce into one more),
    // until the log is quiet for 300 ms
    let mut reloads = 1;
    while let Ok(l) = s.stderr.recv_timeout(Duration::from_millis(300)) {
        assert!(!l.contains("refused"), "{l}");
        if l.contains("config.toml reloaded") {
            reloads += 1;
            last_reload = Instant::now();
        }
    }
    assert_eq!(echoes(&s.addr, Transport::Tcp, &ClientKey::None, 20), 20);
    stop.store(true, Ordering::Relaxed);
    for (name, l) in ["udp", "tcp"].into_iter().zip(loads) {
        let (answered, failed) = l.join().unwrap();
        let during = answered.iter().filter(|t| **t >= first_signal && **t <= last_reload).count();
        eprintln!(
            "{name}: {} answered ({during} between the first SIGHUP and the last reload), {} failed; {reloads} reloads",
            answered.len(),
            failed.len()
        );
        assert!(
            failed.is_empty(),
            "{name}: {} requests failed during the reloads: {:?}",
            failed.len(),
            &failed[..failed.len().min(5)]
        );
        assert!(during > 0, "{name}: the load did not overlap the reloads");
    }
    assert!(reloads >= 2, "{reloads} reloads for {SIGNALS} signals");
    assert!(s.stop().success());
}
