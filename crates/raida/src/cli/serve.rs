//! `raida serve [DIR] [--listen ADDR:PORT]`: run a RAIDA server in the foreground.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use raida_server::server::ServerBuilder;
use raida_server::{RunningServer, ServerLimits};

/// Folder used when no DIR is given; created with defaults on first start.
pub const DEFAULT_DIR: &str = "raida-data";

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Data directory (default ./raida-data, created with defaults on first start:
    /// raida id 0, listen 127.0.0.1:50000, 16 pages per denomination).
    pub dir: Option<PathBuf>,
    /// Listen address, overriding config.toml.
    #[arg(long, value_name = "HOST:PORT", value_parser = crate::cli::host_port)]
    pub listen: Option<SocketAddr>,
    /// Threads reading the UDP socket (default: number of CPUs, at least 2).
    #[arg(long)]
    pub udp_threads: Option<usize>,
    /// Log filter (tracing EnvFilter syntax); `debug` logs one line per request.
    #[arg(long, default_value = "info")]
    pub log: String,
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&args.log).context("bad --log filter")?)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let dir = match &args.dir {
        Some(d) => {
            anyhow::ensure!(d.is_dir(), "{}: no such data directory (create one with `raida init`)", d.display());
            d.clone()
        }
        None => {
            let d = PathBuf::from(DEFAULT_DIR);
            if !d.join(raida_store::CONFIG_FILE).exists() {
                create_default(&d)?;
            }
            d
        }
    };
    let mut limits = ServerLimits::default();
    if let Some(n) = args.udp_threads {
        limits.udp_threads = n.max(1);
    }
    let runtime = super::server_runtime()?;
    runtime.block_on(async move {
        let (state, configured, limits) = ServerBuilder::open_configured(&dir, &limits, None)
            .with_context(|| format!("cannot open {}", dir.display()))?;
        let listen = args.listen.unwrap_or(configured);
        let server = RunningServer::start(state, listen, limits).await?;
        println!("listening on {} (udp, tcp)", server.local_addr());
        tracing::info!(dir = %dir.display(), addr = %server.local_addr(), "server started");
        super::network::wait_for_signal().await;
        tracing::info!("shutting down");
        server.shutdown().await.map_err(|e| anyhow::anyhow!("flushing the store: {e}"))?;
        tracing::info!("stopped");
        Ok(())
    })
}

fn create_default(dir: &std::path::Path) -> anyhow::Result<()> {
    let mut opts = raida_store::InitOptions::new(0);
    opts.listen = Some("127.0.0.1:50000".into());
    opts.pages = 16;
    eprintln!("creating {} (raida id 0, 127.0.0.1:50000, 16 pages per denomination)", dir.display());
    raida_store::init_data_dir(dir, opts).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(())
}
