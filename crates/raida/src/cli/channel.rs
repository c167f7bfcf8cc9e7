//! `raida channel ...`: the secure channel of PROTOCOL.md section 8 (crate raida-channel).
//!
//! * `demo` runs the seed's whole flow (spawn, exchange, send, receive, ratchet, a forced
//!   rekey, shutdown) with this binary as the child, printing each step without secrets.
//! * `listen ADDR` / `connect ADDR` pipe stdin/stdout through the channel over TCP, like
//!   an encrypted netcat; `--psk-file` mixes in a key (e.g. one assembled by the RAIDA
//!   key exchange).
//! * `child` (hidden) is the demo's child process (HTTP mode).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use raida_channel::session::Config;
use raida_channel::transport::http::{serve_child, HttpClient};
use raida_channel::{Channel, Incoming, Psk};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zeroize::Zeroizing;

#[derive(clap::Subcommand)]
pub(crate) enum ChannelCommand {
    /// Run the seed's whole flow in one command: spawn a child, swap keys over stdio,
    /// encrypted HTTP messages, ratchet, a forced rekey, graceful shutdown.
    Demo(KeyArgs),
    /// Listen on ADDR (e.g. 127.0.0.1:7000), accept one peer, pipe stdin/stdout through
    /// the channel. Prints "listening on <addr>" on stderr.
    Listen(NetArgs),
    /// Connect to ADDR and pipe stdin/stdout through the channel.
    Connect(NetArgs),
    /// The demo's child process (HTTP mode; handshake over stdin/stdout).
    #[command(hide = true)]
    Child(KeyArgs),
}

#[derive(clap::Args, Clone)]
pub(crate) struct KeyArgs {
    /// File holding a pre-shared key (>= 16 bytes): raw bytes, or hex if the file is
    /// only hex digits (surrounding whitespace ignored).
    #[arg(long, value_name = "F")]
    pub psk_file: Option<PathBuf>,
    /// Post-quantum hybrid: ML-KEM-768 mixed with X25519 (both sides must use it).
    #[arg(long)]
    pub pq: bool,
}

#[derive(clap::Args)]
pub(crate) struct NetArgs {
    /// Address to listen on or connect to (host:port).
    pub addr: String,
    #[command(flatten)]
    pub keys: KeyArgs,
}

pub(crate) fn run(cmd: ChannelCommand) -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let r = rt.block_on(async move {
        match cmd {
            ChannelCommand::Demo(k) => demo(k).await,
            ChannelCommand::Listen(a) => listen(a).await,
            ChannelCommand::Connect(a) => connect(a).await,
            ChannelCommand::Child(k) => child(k).await,
        }
    });
    // A pending stdin read must not keep the process alive.
    rt.shutdown_background();
    r
}

fn load_psk(path: &Path) -> anyhow::Result<Psk> {
    let raw = Zeroizing::new(std::fs::read(path).with_context(|| format!("reading the PSK file {}", path.display()))?);
    let trimmed = raw.trim_ascii();
    let is_hex = !trimmed.is_empty() && trimmed.iter().all(u8::is_ascii_hexdigit);
    let bytes = if is_hex {
        let s = std::str::from_utf8(trimmed).context("PSK file")?;
        hex::decode(s).context("PSK file: bad hex (odd number of digits?)")?
    } else {
        raw.to_vec()
    };
    Psk::new(bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

fn config(k: &KeyArgs) -> anyhow::Result<Config> {
    let psk = k.psk_file.as_deref().map(load_psk).transpose()?;
    Ok(Config::new(psk, k.pq))
}

async fn demo(k: KeyArgs) -> anyhow::Result<()> {
    let cfg = config(&k)?;
    let exe = std::env::current_exe().context("locating this executable")?;
    let mut cmd = tokio::process::Command::new(&exe);
    cmd.arg("channel").arg("child");
    if k.pq {
        cmd.arg("--pq");
    }
    if let Some(p) = &k.psk_file {
        cmd.arg("--psk-file").arg(p);
    }
    let mode = match (cfg.handshake.psk.is_some(), k.pq) {
        (false, false) => "X25519",
        (true, false) => "X25519 + pre-shared key",
        (false, true) => "X25519 + ML-KEM-768",
        (true, true) => "X25519 + ML-KEM-768 + pre-shared key",
    };
    println!("[1/8] alice: fresh ephemeral keys ({mode}); spawning bob: {} channel child", exe.display());
    let mut alice = HttpClient::spawn(cmd, cfg).await.context("spawning bob and exchanging keys")?;
    println!("[2/8] keys swapped over bob's stdin/stdout; bob serves encrypted HTTP on {}", alice.addr());
    println!("[3/8] both derived the directional keys (HKDF-SHA256); session id {}", alice.session().session_id_hex());
    let msg = b"hello bob, this is alice";
    let r = alice.request(msg).await.context("first message")?;
    println!("[4/8] alice -> bob: POST /message, record seq 1 ({} bytes of plaintext)", msg.len());
    println!("      bob -> alice: ack, ratchet_seq {}, response {:?}", r.ratchet_seq, String::from_utf8_lossy(&r.data));
    for i in 2..=4u32 {
        let text = format!("message {i}");
        let r = alice.request(text.as_bytes()).await.with_context(|| format!("message {i}"))?;
        println!(
            "[5/8] ratchet: record seq {} sealed under K_{}; K_{} erased; reply {:?}",
            r.ratchet_seq,
            r.ratchet_seq,
            r.ratchet_seq,
            String::from_utf8_lossy(&r.data)
        );
    }
    alice.ping().await.context("keepalive")?;
    println!("      keepalive: ping answered");
    let epoch = alice.rekey().await.context("forced rekey")?;
    println!(
        "[6/8] forced rekey over the channel: fresh key pairs, epoch {epoch}, sequence numbers reset to {}",
        alice.session().next_send_seq()
    );
    let r = alice.request(b"first message under the new keys").await.context("after rekey")?;
    println!(
        "[7/8] alice -> bob under the new keys: ratchet_seq {}, response {:?}",
        r.ratchet_seq,
        String::from_utf8_lossy(&r.data)
    );
    let ok = alice.shutdown().await.context("shutdown")?;
    if !ok {
        bail!("bob exited with a failure status");
    }
    println!("[8/8] encrypted shutdown acknowledged; bob exited with status 0");
    println!("demo complete");
    Ok(())
}

async fn child(k: KeyArgs) -> anyhow::Result<()> {
    let cfg = config(&k)?;
    serve_child(tokio::io::stdin(), tokio::io::stdout(), cfg, |req: &[u8]| {
        format!("bob received {} bytes: {:?}", req.len(), String::from_utf8_lossy(req)).into_bytes()
    })
    .await
    .context("bob")?;
    Ok(())
}

async fn listen(a: NetArgs) -> anyhow::Result<()> {
    let cfg = config(&a.keys)?;
    let l = tokio::net::TcpListener::bind(&a.addr).await.with_context(|| format!("listening on {}", a.addr))?;
    eprintln!("raida channel: listening on {}", l.local_addr()?);
    let (s, peer) = l.accept().await.context("accepting")?;
    let _ = s.set_nodelay(true);
    let ch = Channel::accept(s, cfg).await.with_context(|| format!("handshake with {peer}"))?;
    eprintln!("raida channel: connected to {peer}, session {}", hex::encode(ch.session_id()));
    pipe(ch).await
}

async fn connect(a: NetArgs) -> anyhow::Result<()> {
    let cfg = config(&a.keys)?;
    let s = tokio::net::TcpStream::connect(&a.addr).await.with_context(|| format!("connecting to {}", a.addr))?;
    let _ = s.set_nodelay(true);
    let ch = Channel::connect(s, cfg).await.with_context(|| format!("handshake with {}", a.addr))?;
    eprintln!("raida channel: connected to {}, session {}", a.addr, hex::encode(ch.session_id()));
    pipe(ch).await
}

/// stdin -> channel, channel -> stdout. At stdin's end we send an end-of-data marker;
/// once both sides have ended we shut down gracefully. A rejected record aborts (a byte
/// stream with a hole in it is not what the user sent).
async fn pipe(mut ch: Channel) -> anyhow::Result<()> {
    let sender = ch.sender();
    let mut reader = tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = stdin.read(&mut buf).await?;
            if n == 0 {
                sender.finish().await?;
                return Ok::<_, anyhow::Error>(());
            }
            sender.send(buf[..n].to_vec()).await?;
        }
    });
    let mut stdout = tokio::io::stdout();
    let (mut sent_end, mut got_end) = (false, false);
    loop {
        if sent_end && got_end {
            ch.shutdown().await.context("shutdown")?;
            return Ok(());
        }
        tokio::select! {
            item = ch.recv() => match item {
                Some(Ok(Incoming::Data(d))) => {
                    stdout.write_all(&d).await?;
                    stdout.flush().await?;
                }
                Some(Ok(Incoming::End)) => got_end = true,
                Some(Ok(Incoming::Request { id, .. })) => ch.respond(id, Vec::new()).await?,
                Some(Err(e)) => bail!("secure channel: {e}"),
                None => {
                    stdout.flush().await?;
                    if !got_end {
                        eprintln!("raida channel: peer shut down");
                    }
                    return Ok(());
                }
            },
            r = &mut reader, if !sent_end => {
                r.context("stdin task")??;
                sent_end = true;
            }
        }
    }
}
