//! `raida serve [DIR] [--listen ADDR:PORT]`: run a RAIDA server in the foreground.
//!
//! Settings: a flag wins over a `RAIDA_<SETTING>` environment variable, which wins over
//! config.toml, which wins over the default. Under systemd (`NOTIFY_SOCKET` set) it says
//! READY=1 once both sockets listen and STOPPING=1 when it begins to stop. SIGHUP re-reads
//! config.toml (see `raida_server::reload`); SIGINT and SIGTERM stop it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use raida_server::ServerBuilder;
use raida_server::{RunningServer, ServerLimits};
use raida_store::Config;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

/// Folder used when no DIR is given; created with defaults on first start.
pub(crate) const DEFAULT_DIR: &str = "raida-data";

/// Log filter when neither `--log` nor config.toml's `log` gives one.
const DEFAULT_LOG: &str = "info";

#[derive(clap::Args)]
pub(crate) struct ServeArgs {
    /// Data directory (default ./raida-data, created with defaults on first start:
    /// raida id 0, listen 127.0.0.1:50000, 16 pages per denomination).
    #[arg(env = "RAIDA_DATA_DIR")]
    pub dir: Option<PathBuf>,
    /// Listen address, overriding config.toml and RAIDA_LISTEN.
    #[arg(long, value_name = "HOST:PORT", value_parser = crate::cli::host_port)]
    pub listen: Option<SocketAddr>,
    /// Threads reading the UDP socket (default: number of CPUs, at least 2).
    #[arg(long, env = "RAIDA_UDP_THREADS")]
    pub udp_threads: Option<usize>,
    /// Log filter (tracing EnvFilter syntax), overriding config.toml's `log` and RAIDA_LOG
    /// (default info); `debug` logs one line per request.
    #[arg(long)]
    pub log: Option<String>,
    /// Log lines as text or as one JSON object per line.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "RAIDA_LOG_FORMAT")]
    pub log_format: LogFormat,
}

/// `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines; colours only when stderr is a terminal.
    Text,
    /// One JSON object per line (timestamp, level, target, fields), never coloured.
    Json,
}

/// Changes the log filter of a running process (SIGHUP).
pub(crate) type LogHandle = reload::Handle<EnvFilter, Registry>;

/// Log to stderr with `filter` in `format`; the handle changes the filter later.
pub(crate) fn init_logging(filter: &str, format: LogFormat) -> anyhow::Result<LogHandle> {
    let filter = EnvFilter::try_new(filter).with_context(|| format!("bad log filter {filter:?}"))?;
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Text => {
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
            registry.with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi)).init()
        }
        LogFormat::Json => {
            registry.with(tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr).with_ansi(false)).init()
        }
    }
    Ok(handle)
}

pub(crate) fn run(args: ServeArgs) -> anyhow::Result<()> {
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
    let config = Config::load_with_env(&dir)?;
    let log = init_logging(&log_filter(&args, &config), args.log_format)?;
    let mut limits = ServerLimits::default();
    if let Some(n) = args.udp_threads {
        limits.udp_threads = n.max(1);
    }
    let runtime = super::server_runtime()?;
    runtime.block_on(async move {
        let (state, configured, limits) = ServerBuilder::open_with_config(&dir, config.clone(), &limits, None)
            .with_context(|| format!("cannot open {}", dir.display()))?;
        let listen = args.listen.unwrap_or(configured);
        let server = RunningServer::start(state, listen, limits).await?;
        println!("listening on {} (udp, tcp)", server.local_addr());
        if let Some(m) = server.metrics_addr() {
            println!("metrics on http://{m}/metrics");
        }
        let relay = start_relay(&config).await?;
        tracing::info!(dir = %dir.display(), addr = %server.local_addr(), "server started");
        notify(&[sd_notify::NotifyState::Ready]);
        serve_until_signal(&server, relay.as_ref(), &dir, config, &args, &log).await;
        tracing::info!("shutting down");
        notify(&[sd_notify::NotifyState::Stopping]);
        if let Some(r) = relay {
            r.shutdown().await;
        }
        server.shutdown().await.map_err(|e| anyhow::anyhow!("flushing the store: {e}"))?;
        tracing::info!("stopped");
        Ok(())
    })
}

/// The relay of config.toml's `relay_listen`, beside the RAIDA (same process), if set.
async fn start_relay(config: &Config) -> anyhow::Result<Option<raida_relay::RunningRelay>> {
    let Some(listen) = &config.relay_listen else { return Ok(None) };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (relay_listen)"))?;
    let relay = raida_relay::Relay::start(listener, raida_server::relay::limits(config))?;
    println!("relay on {} (tcp)", relay.local_addr());
    Ok(Some(relay))
}

/// `--log`, else config.toml's `log` (or RAIDA_LOG), else info.
fn log_filter(args: &ServeArgs, config: &Config) -> String {
    args.log.clone().or_else(|| config.log.clone()).unwrap_or_else(|| DEFAULT_LOG.into())
}

/// Tell systemd (a no-op without NOTIFY_SOCKET); a failure is logged, never fatal.
pub(crate) fn notify(state: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(false, state) {
        tracing::warn!(error = %e, "sd_notify");
    }
}

/// Serve until SIGINT or SIGTERM, reloading config.toml on every SIGHUP.
async fn serve_until_signal(
    server: &RunningServer,
    relay: Option<&raida_relay::RunningRelay>,
    dir: &Path,
    mut config: Config,
    args: &ServeArgs,
    log: &LogHandle,
) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot catch SIGHUP: no reload");
            super::network::wait_for_signal().await;
            return;
        };
        let stop = super::network::wait_for_signal();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = hup.recv() => {
                    if let Some(new) = reload(server, dir, &config, args, log).await {
                        if let Some(r) = relay {
                            r.set_limits(raida_server::relay::limits(&new));
                        }
                        config = new;
                    }
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (server, relay, dir, &mut config, args, log);
        super::network::wait_for_signal().await;
    }
}

/// Re-read config.toml (with the RAIDA_* environment) and apply what can change while
/// running. Returns the new settings, or `None` (logged) when the file was refused and the
/// old settings stay.
async fn reload(server: &RunningServer, dir: &Path, old: &Config, args: &ServeArgs, log: &LogHandle) -> Option<Config> {
    let state = server.state().clone();
    let (dir, old_config) = (dir.to_path_buf(), old.clone());
    // reading files and resolving host names block: off the async workers
    let result = tokio::task::spawn_blocking(move || -> Result<(Config, Vec<String>), String> {
        let new = Config::load_with_env(&dir).map_err(|e| e.to_string())?;
        // check the log filter before anything changes
        if let Some(f) = &new.log {
            EnvFilter::try_new(f).map_err(|e| format!("log = {f:?}: {e}"))?;
        }
        let restart = raida_server::reload::apply(&state, &old_config, &new, &dir)?;
        Ok((new, restart))
    })
    .await;
    match result {
        Ok(Ok((new, restart))) => {
            if args.log.is_none() {
                let filter = log_filter(args, &new);
                if let Ok(f) = EnvFilter::try_new(&filter) {
                    if let Err(e) = log.reload(f) {
                        tracing::warn!(error = %e, "reload: log filter unchanged");
                    }
                }
            }
            if restart.is_empty() {
                tracing::info!("config.toml reloaded");
            } else {
                tracing::warn!(settings = %restart.join(", "), "config.toml reloaded; these changes take effect at the next start");
            }
            Some(new)
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "config.toml refused: the old settings stay");
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "config.toml reload failed: the old settings stay");
            None
        }
    }
}

fn create_default(dir: &std::path::Path) -> anyhow::Result<()> {
    let mut opts = raida_store::InitOptions::new(0);
    opts.listen = Some("127.0.0.1:50000".into());
    opts.pages = 16;
    eprintln!("creating {} (raida id 0, 127.0.0.1:50000, 16 pages per denomination)", dir.display());
    raida_store::init_data_dir(dir, opts).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(())
}
