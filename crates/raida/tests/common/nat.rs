//! Real network namespaces for tests that need hosts behind NAT (tests/nat.rs): a [`Lab`]
//! guard that makes namespaces and veth pairs and removes them again (also on panic),
//! commands and child processes inside a namespace, sockets opened from inside one, and
//! [`NatNet`], the topology of docs/testing.md ("The NAT test"):
//!
//! ```text
//!   public 198.18.0.1/24 (br0): 25 RAIDAs, relay, public receivers
//!      |                                 |
//!   router1 wan 198.18.0.2           router2 wan 198.18.0.3
//!   (masquerade, drops inbound NEW)  (masquerade, drops inbound NEW)
//!   lan 198.18.1.1/24                lan 198.18.2.1/24
//!      |                                 |
//!   home1 198.18.1.2                 home2 198.18.2.2
//! ```
//!
//! Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN), iproute2 (`ip`) and nftables (`nft`);
//! without them [`Lab::new`] and [`Lab::add_ns`] panic saying so: the test fails, it never
//! skips. Every name carries this process's id and a sequence number, so parallel runs
//! and tests do not collide; namespaces left by a run that was killed (its process is gone)
//! are removed by the next [`Lab::new`].

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::BIN;

/// Every namespace a [`Lab`] makes is named `raidanat-<pid>-<seq>-<role>`.
pub(crate) const PREFIX: &str = "raidanat-";
/// Where `ip netns` keeps its named namespaces.
const NETNS_DIR: &str = "/run/netns";

/// The public segment: RAIDAs, relay and public hosts listen on this address (public ns).
pub(crate) const PUBLIC_IP: &str = "198.18.0.1";
/// Router 1's address on the public segment: what the outside sees of home 1.
pub(crate) const ROUTER1_WAN: &str = "198.18.0.2";
pub(crate) const ROUTER2_WAN: &str = "198.18.0.3";
pub(crate) const ROUTER1_LAN: &str = "198.18.1.1";
pub(crate) const ROUTER2_LAN: &str = "198.18.2.1";
pub(crate) const HOME1_IP: &str = "198.18.1.2";
pub(crate) const HOME2_IP: &str = "198.18.2.2";
/// RAIDA N listens on PUBLIC_IP:(BASE_PORT + N); a relay, when `network init` writes one,
/// on BASE_PORT + 25.
pub(crate) const BASE_PORT: u16 = 50_000;

/// A home router: masquerade what leaves by `wan`; forward only what home started (lan →
/// wan, and whatever belongs to such a connection); nothing from `wan` reaches the router
/// itself unless it answers the router.
const HOME_ROUTER_RULES: &str = r#"
table ip raida_nat {
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "wan" masquerade
    }
    chain forward {
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        ct state invalid drop
        iifname "lan" oifname "wan" accept
    }
    chain input {
        type filter hook input priority filter; policy accept;
        iifname "wan" ct state established,related accept
        iifname "wan" drop
    }
}
"#;

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Where `name` is: on PATH, else in /usr/sbin or /sbin (both tools live there, which a
/// non-login PATH may lack).
pub(crate) fn tool(name: &str) -> String {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|| name.to_string())
}

/// Run `program args`; its output, or a panic naming the command and its stderr.
pub(crate) fn run(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program).args(args).stdin(Stdio::null()).output().unwrap_or_else(|e| {
        panic!("cannot run `{program}` ({e}): the NAT test needs root, iproute2 (`ip`) and nftables (`nft`)")
    });
    assert!(
        out.status.success(),
        "`{program} {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    out
}

/// Namespaces made by this guard; dropping it kills every process left in them and
/// deletes them (their veths, bridges and nftables rules go with them).
pub(crate) struct Lab {
    tag: String,
    namespaces: Vec<String>,
}

impl Lab {
    /// Checks the tools, removes the namespaces of crashed runs, picks this lab's names.
    pub(crate) fn new() -> Lab {
        for (name, package) in [("ip", "iproute2"), ("nft", "nftables")] {
            let found = Command::new(tool(name)).arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
            assert!(found, "`{name}` not found: the NAT test needs it (apt-get install {package}; `.ci/run` does)");
        }
        clean_stale();
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        Lab { tag: format!("{PREFIX}{}-{seq}", std::process::id()), namespaces: Vec::new() }
    }

    /// Make namespace `<tag>-<role>` with its loopback up; panics with the reason when it
    /// cannot be made (not root, no `ip`).
    pub(crate) fn add_ns(&mut self, role: &str) -> String {
        let name = format!("{}-{role}", self.tag);
        let out = Command::new(tool("ip"))
            .args(["netns", "add", &name])
            .output()
            .unwrap_or_else(|e| panic!("cannot run `ip netns add` ({e}): the NAT test needs iproute2 (`ip`) and root"));
        assert!(
            out.status.success(),
            "cannot make network namespace {name}: {} (the NAT test needs root: CAP_SYS_ADMIN and CAP_NET_ADMIN; \
             CI runs as root)",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        self.namespaces.push(name.clone());
        self.ip(&name, &["link", "set", "lo", "up"]);
        name
    }

    /// `ip -n NS ARGS...`, checked.
    pub(crate) fn ip(&self, ns: &str, args: &[&str]) {
        run(&tool("ip"), &[&["-n", ns][..], args].concat());
    }

    /// A veth pair: `a_if` in `a_ns`, `b_if` in `b_ns`, both up. The names only have to be
    /// unique inside each namespace (the pair is made inside `a_ns`, never in the host's).
    pub(crate) fn veth(&self, a_ns: &str, a_if: &str, b_ns: &str, b_if: &str) {
        self.ip(a_ns, &["link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", b_ns]);
        self.ip(a_ns, &["link", "set", a_if, "up"]);
        self.ip(b_ns, &["link", "set", b_if, "up"]);
    }

    /// Let `ns` route between its interfaces (net.ipv4.ip_forward is per namespace).
    pub(crate) fn forwarding(&self, ns: &str) {
        in_ns(ns, || std::fs::write("/proc/sys/net/ipv4/ip_forward", "1"))
            .unwrap_or_else(|e| panic!("{ns}: net.ipv4.ip_forward: {e}"));
    }

    /// Load an nftables ruleset (`nft -f -`) into `ns`.
    pub(crate) fn nft(&self, ns: &str, rules: &str) {
        let mut child = Command::new(tool("ip"))
            .args(["netns", "exec", ns, &tool("nft"), "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `ip netns exec {ns} nft` ({e})"));
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(rules.as_bytes()).expect("nft stdin");
        drop(stdin);
        let out = child.wait_with_output().expect("nft");
        assert!(out.status.success(), "nft in {ns}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }

    /// `ip netns exec NS program args...` to the end (not checked: the caller looks at it).
    pub(crate) fn exec(&self, ns: &str, program: &str, args: &[&str]) -> Output {
        Command::new(tool("ip"))
            .args(["netns", "exec", ns, program])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run `ip netns exec {ns} {program}` ({e})"))
    }

    /// `raida ARGS...` in `ns`, to the end within `limit` (killed and a panic after it).
    pub(crate) fn raida(&self, ns: &str, args: &[&str], limit: Duration) -> Finished {
        self.spawn(ns, BIN, args).wait(limit)
    }

    /// `program args...` running in `ns`; its stdout and stderr are collected, line by line.
    /// The child gets SIGKILL when the thread that spawned it ends (PR_SET_PDEATHSIG), so a
    /// test process that dies leaves nothing running; spawn from the test's own thread.
    pub(crate) fn spawn(&self, ns: &str, program: &str, args: &[&str]) -> Proc {
        let mut cmd = Command::new(tool("ip"));
        cmd.args(["netns", "exec", ns, program]).args(args);
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        // SAFETY: prctl is async-signal-safe and touches only the child being made.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run `ip netns exec {ns} {program}` ({e})"));
        let (tx, lines) = mpsc::channel();
        let out = collect(child.stdout.take().expect("stdout"), tx.clone());
        let err = collect(child.stderr.take().expect("stderr"), tx);
        let name = format!("{} in {ns}", args.first().map(|a| format!("{program} {a}")).unwrap_or(program.into()));
        Proc { name, child: Some(child), lines, out: Some(out), err: Some(err) }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            remove_ns(ns);
        }
    }
}

/// Kill whatever still runs in `ns` (only the processes of a test's own namespaces), then
/// delete it. Errors are ignored: another run may be removing the same stale namespace.
fn remove_ns(ns: &str) {
    if let Ok(out) = Command::new(tool("ip")).args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
            // SAFETY: kill(2) on a pid read from the namespace; no memory involved.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
    let _ = Command::new(tool("ip")).args(["netns", "del", ns]).stderr(Stdio::null()).status();
}

/// Namespaces named by a process that no longer exists: left by a run that was killed
/// (SIGKILL, a crash: no Drop ran).
fn clean_stale() {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(PREFIX).and_then(|r| r.split('-').next()).and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            remove_ns(&name);
        }
    }
}

/// Run `f` on a fresh thread that has entered `ns`'s network namespace: every socket `f`
/// opens belongs to `ns` (and keeps belonging to it when used from any other thread).
pub(crate) fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = PathBuf::from(NETNS_DIR).join(ns);
    let entered = std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // SAFETY: setns(2) with a valid descriptor; it changes only this thread's network
        // namespace, and the thread ends with `f`.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {}: {}", path.display(), std::io::Error::last_os_error());
        f()
    });
    entered.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// One TCP connection attempt from inside `ns`, given up after `limit`.
pub(crate) fn tcp_connect(ns: &str, addr: SocketAddr, limit: Duration) -> std::io::Result<()> {
    in_ns(ns, move || TcpStream::connect_timeout(&addr, limit).map(drop))
}

/// Poll until `addr` accepts a TCP connection from inside `ns`; panics after `limit`.
pub(crate) fn wait_for_port(ns: &str, addr: SocketAddr, limit: Duration) {
    let ns_name = ns.to_string();
    let last = in_ns(ns, move || {
        let start = Instant::now();
        loop {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
                Ok(_) => return None,
                Err(e) if start.elapsed() > limit => return Some(e),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    });
    if let Some(e) = last {
        panic!("{addr} did not accept a TCP connection from {ns_name} within {limit:?}: {e}");
    }
}

/// A TCP listener bound inside `ns` that accepts in the background and counts connections;
/// dropping it closes the socket (which would otherwise keep the namespace alive).
pub(crate) struct CountingListener {
    pub(crate) addr: SocketAddr,
    accepted: Arc<AtomicU32>,
    peers: Arc<std::sync::Mutex<Vec<SocketAddr>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl CountingListener {
    pub(crate) fn bind(ns: &str, ip: &str) -> CountingListener {
        let at: SocketAddr = format!("{ip}:0").parse().expect("ip");
        let listener = in_ns(ns, move || TcpListener::bind(at)).unwrap_or_else(|e| panic!("bind {at} in {ns}: {e}"));
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local_addr");
        let (accepted, stop) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicBool::new(false)));
        let peers = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (count, seen, stopped) = (accepted.clone(), peers.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((_, peer)) => {
                        seen.lock().expect("peers").push(peer);
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        CountingListener { addr, accepted, peers, stop, thread: Some(thread) }
    }

    /// Connections accepted so far.
    pub(crate) fn accepted(&self) -> u32 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// The source addresses of the connections accepted so far (what NAT made of them).
    pub(crate) fn peers(&self) -> Vec<SocketAddr> {
        self.peers.lock().expect("peers").clone()
    }

    /// Poll until at least `n` connections were accepted; panics after `limit`.
    pub(crate) fn wait_accepted(&self, n: u32, limit: Duration) {
        let start = Instant::now();
        while self.accepted() < n {
            assert!(
                start.elapsed() < limit,
                "{}: {} of {n} connections accepted within {limit:?}",
                self.addr,
                self.accepted()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for CountingListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn collect<R: Read + Send + 'static>(r: R, tx: mpsc::Sender<String>) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            all.push_str(&line);
            all.push('\n');
            let _ = tx.send(line);
        }
        all
    })
}

/// How a [`Proc`] ended.
#[derive(Debug)]
pub(crate) struct Finished {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Finished {
    /// The JSON objects among the stdout lines (`--json` events).
    pub(crate) fn events(&self) -> Vec<serde_json::Value> {
        self.stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }
}

/// A child running in a namespace; killed (SIGTERM, then SIGKILL) when dropped unfinished.
pub(crate) struct Proc {
    name: String,
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
    out: Option<JoinHandle<String>>,
    err: Option<JoinHandle<String>>,
}

impl Proc {
    /// The first line (stdout or stderr) for which `want` holds; panics when the process
    /// ends or `limit` passes first.
    pub(crate) fn wait_line(&mut self, limit: Duration, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if want(&line) => return line,
                Ok(line) => seen.push(line),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("{}: no expected line within {limit:?}; lines so far: {seen:#?}", self.name)
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.as_mut().and_then(|c| c.wait().ok());
                    panic!("{} ended ({status:?}) without the expected line; lines: {seen:#?}", self.name)
                }
            }
        }
    }

    /// Whether it is still running.
    pub(crate) fn running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Wait for the end, at most `limit`; after it, kill it and panic with its output.
    pub(crate) fn wait(mut self, limit: Duration) -> Finished {
        let mut child = self.child.take().expect("child");
        let start = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().expect("try_wait") {
                break s;
            }
            if start.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                let (o, e) = self.output();
                panic!("{} did not finish within {limit:?}\nstdout:\n{o}\nstderr:\n{e}", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let (stdout, stderr) = self.output();
        Finished { status, stdout, stderr }
    }

    /// SIGTERM, then SIGKILL after 5 s; the output so far.
    pub(crate) fn stop(mut self) -> Finished {
        let mut child = self.child.take().expect("child");
        let status = terminate(&mut child);
        let (stdout, stderr) = self.output();
        Finished { status, stdout, stderr }
    }

    fn output(&mut self) -> (String, String) {
        let o = self.out.take().and_then(|h| h.join().ok()).unwrap_or_default();
        let e = self.err.take().and_then(|h| h.join().ok()).unwrap_or_default();
        (o, e)
    }
}

fn terminate(child: &mut Child) -> ExitStatus {
    if let Ok(Some(s)) = child.try_wait() {
        return s;
    }
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) on our own child's pid (not yet reaped, so not reused).
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if let Ok(Some(s)) = child.try_wait() {
            return s;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait().expect("wait")
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child);
        }
    }
}

/// The topology of the module doc: names of its five namespaces, under one [`Lab`].
pub(crate) struct NatNet {
    pub(crate) public: String,
    pub(crate) router1: String,
    pub(crate) home1: String,
    pub(crate) router2: String,
    pub(crate) home2: String,
    pub(crate) lab: Lab,
}

impl NatNet {
    pub(crate) fn new() -> NatNet {
        let mut lab = Lab::new();
        let public = lab.add_ns("pub");
        let router1 = lab.add_ns("r1");
        let home1 = lab.add_ns("h1");
        let router2 = lab.add_ns("r2");
        let home2 = lab.add_ns("h2");
        // the public segment: a bridge in the public namespace, every router's wan on it
        lab.ip(&public, &["link", "add", "br0", "type", "bridge"]);
        lab.ip(&public, &["addr", "add", &format!("{PUBLIC_IP}/24"), "dev", "br0"]);
        lab.ip(&public, &["link", "set", "br0", "up"]);
        lab.forwarding(&public);
        for (router, home, wan, lan, home_ip, port) in [
            (&router1, &home1, ROUTER1_WAN, ROUTER1_LAN, HOME1_IP, "r1"),
            (&router2, &home2, ROUTER2_WAN, ROUTER2_LAN, HOME2_IP, "r2"),
        ] {
            lab.veth(&public, port, router, "wan");
            lab.ip(&public, &["link", "set", port, "master", "br0"]);
            lab.ip(router, &["addr", "add", &format!("{wan}/24"), "dev", "wan"]);
            lab.ip(router, &["route", "add", "default", "via", PUBLIC_IP]);
            lab.veth(router, "lan", home, "eth0");
            lab.ip(router, &["addr", "add", &format!("{lan}/24"), "dev", "lan"]);
            lab.ip(home, &["addr", "add", &format!("{home_ip}/24"), "dev", "eth0"]);
            lab.ip(home, &["route", "add", "default", "via", lan]);
            lab.forwarding(router);
            lab.nft(router, HOME_ROUTER_RULES);
            // the "internet" routes even the home prefixes to their router: what keeps a
            // home host unreachable is the router's forward chain, not a missing route
            let prefix = format!("{}.0/24", &home_ip[..home_ip.rfind('.').expect("dotted")]);
            lab.ip(&public, &["route", "add", &prefix, "via", wan]);
        }
        NatNet { public, router1, home1, router2, home2, lab }
    }
}

/// A RAIDA network (`raida network init --host 198.18.0.1`, then `raida network up` in the
/// public namespace) on a [`NatNet`]. Fields drop in order: the network stops before the
/// namespaces go.
pub(crate) struct NatRaidas {
    up: Option<Proc>,
    /// DIR/network.toml as `network init` wrote it (relays included, when it writes them).
    pub(crate) network: PathBuf,
    /// The same without its `[[relays]]` tables: clients with no relay to use.
    pub(crate) network_without_relays: PathBuf,
    /// Relay addresses named by `network`.
    pub(crate) relays: Vec<SocketAddr>,
    pub(crate) alice: PathBuf,
    pub(crate) bob: PathBuf,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) net: NatNet,
    /// How long each set-up step took (shown with --nocapture).
    pub(crate) timings: Vec<(&'static str, Duration)>,
}

impl NatRaidas {
    /// Namespaces, the network folder, `network up` in the public namespace, then wait
    /// until home 1 gets Echo from every RAIDA through its NAT and every relay accepts TCP.
    pub(crate) fn start() -> NatRaidas {
        let mut timings = Vec::new();
        let t = Instant::now();
        let net = NatNet::new();
        timings.push(("namespaces, veths, nftables", t.elapsed()));
        let t = Instant::now();
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().join("net");
        let ds = d.to_str().expect("utf-8 path");
        let init = Command::new(BIN)
            .args(["network", "init", ds, "--host", PUBLIC_IP, "--base-port", &BASE_PORT.to_string(), "--pages", "1"])
            .output()
            .expect("raida network init");
        assert!(init.status.success(), "network init: {}", String::from_utf8_lossy(&init.stderr));
        timings.push(("raida network init", t.elapsed()));
        let network = d.join("network.toml");
        let text = std::fs::read_to_string(&network).expect("network.toml");
        let relays = relay_addresses(&text);
        let network_without_relays = dir.path().join("network-without-relays.toml");
        std::fs::write(&network_without_relays, without_relays(&text)).expect("write");
        let t = Instant::now();
        let mut up = net.lab.spawn(&net.public, BIN, &["network", "up", ds]);
        up.wait_line(Duration::from_secs(60), |l| l.contains("RAIDAs listening on"));
        for r in &relays {
            wait_for_port(&net.public, *r, Duration::from_secs(30));
        }
        timings.push(("raida network up (listening)", t.elapsed()));
        let t = Instant::now();
        let net_file = network.to_str().expect("utf-8").to_string();
        let start = Instant::now();
        loop {
            let status = net.lab.exec(&net.home1, BIN, &["status", "--network", &net_file, "--timeout", "1"]);
            if status.status.success() {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the RAIDAs did not all answer Echo from home1 through its NAT within 30 s:\n{}{}",
                String::from_utf8_lossy(&status.stdout),
                String::from_utf8_lossy(&status.stderr)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        timings.push(("Echo from home1 through NAT", t.elapsed()));
        let alice = d.join("wallets/alice/01.1.bin");
        let bob = d.join("wallets/bob/01.2.bin");
        NatRaidas { up: Some(up), network, network_without_relays, relays, alice, bob, dir, net, timings }
    }

    /// Stop `network up` (its exit status: 0 after SIGTERM).
    pub(crate) fn stop_raidas(&mut self) -> Option<Finished> {
        self.up.take().map(Proc::stop)
    }

    pub(crate) fn print_timings(&self) {
        for (step, took) in &self.timings {
            eprintln!("nat set-up: {step}: {:.2} s", took.as_secs_f64());
        }
    }
}

/// The `address` of every `[[relays]]` table of a network file.
pub(crate) fn relay_addresses(toml: &str) -> Vec<SocketAddr> {
    let mut in_relays = false;
    let mut out = Vec::new();
    for line in toml.lines().map(str::trim) {
        if line.starts_with('[') {
            in_relays = line == "[[relays]]";
        } else if in_relays {
            if let Some(v) = line.strip_prefix("address").map(str::trim).and_then(|r| r.strip_prefix('=')) {
                if let Ok(a) = v.trim().trim_matches('"').parse() {
                    out.push(a);
                }
            }
        }
    }
    out
}

/// A network file's text without its `[[relays]]` tables.
pub(crate) fn without_relays(toml: &str) -> String {
    let mut in_relays = false;
    let mut out = String::new();
    for line in toml.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            in_relays = t == "[[relays]]";
        }
        if !in_relays {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// `len` bytes of a xorshift pattern (incompressible enough, reproducible).
pub(crate) fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
