//! `raida relay --listen HOST:PORT [--config FILE]`: run a relay (PROTOCOL.md section 10)
//! in the foreground.
//!
//! The settings file uses config.toml's keys (`relay_listen`, `relay_*` bounds,
//! `metrics_listen`, `metrics_*`, `log`; others are ignored), checked with the same ranges.
//! Under systemd it says READY=1 once it listens and STOPPING=1 when it stops, like `raida
//! serve`. SIGHUP re-reads the file: the bounds and the log filter change at once (for new
//! connections), the listen addresses at the next start; SIGINT and SIGTERM stop it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use raida_relay::{Relay, RunningRelay};
use raida_store::Config;
use tracing_subscriber::EnvFilter;

use super::serve::{init_logging, notify, LogFormat, LogHandle};

/// Log filter when neither `--log` nor the file's `log` gives one.
const DEFAULT_LOG: &str = "info";

#[derive(clap::Args)]
pub(crate) struct RelayArgs {
    /// Listen address (TCP), overriding the file's `relay_listen`.
    #[arg(long, value_name = "HOST:PORT", value_parser = crate::cli::host_port)]
    pub listen: Option<SocketAddr>,
    /// Settings file (config.toml's keys: relay_listen, relay_*, metrics_listen, metrics_*,
    /// log); re-read on SIGHUP. Default: none (section 10's bounds).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log filter (tracing EnvFilter syntax), overriding the file's `log` (default info;
    /// `debug` logs one line per pair: addresses and byte counts, never data or ids).
    #[arg(long)]
    pub log: Option<String>,
    /// Log lines as text or as one JSON object per line.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "RAIDA_LOG_FORMAT")]
    pub log_format: LogFormat,
}

fn load(path: Option<&Path>) -> anyhow::Result<Config> {
    let Some(path) = path else { return Ok(Config::relay_file("", Path::new("(defaults)"))?) };
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(Config::relay_file(&text, path)?)
}

fn log_filter(args: &RelayArgs, config: &Config) -> String {
    args.log.clone().or_else(|| config.log.clone()).unwrap_or_else(|| DEFAULT_LOG.into())
}

pub(crate) fn run(args: RelayArgs) -> anyhow::Result<()> {
    let config = load(args.config.as_deref())?;
    let listen = match (args.listen, &config.relay_listen) {
        (Some(a), _) => a,
        // checked ADDR:PORT by the file's validation
        (None, Some(a)) => a.parse().with_context(|| format!("relay_listen {a:?}"))?,
        (None, None) => anyhow::bail!("no address to listen on: give --listen HOST:PORT (or relay_listen in --config)"),
    };
    let log = init_logging(&log_filter(&args, &config), args.log_format)?;
    let runtime = super::server_runtime()?;
    runtime.block_on(async move {
        let listener =
            tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
        let relay = Relay::start(listener, raida_server::relay::limits(&config))?;
        println!("relay listening on {} (tcp)", relay.local_addr());
        let mut metrics = None;
        if let Some(m) = &config.metrics_listen {
            let m: SocketAddr = m.parse().with_context(|| format!("metrics_listen {m:?}"))?;
            let served = raida_server::relay::serve_metrics(m, relay.stats_handle(), &config)
                .await
                .with_context(|| format!("cannot listen on {m} (metrics_listen)"))?;
            println!("metrics on http://{}/metrics", served.local_addr());
            metrics = Some(served);
        }
        tracing::info!(addr = %relay.local_addr(), "relay started");
        notify(&[sd_notify::NotifyState::Ready]);
        until_signal(&relay, config, &args, &log).await;
        tracing::info!("shutting down");
        notify(&[sd_notify::NotifyState::Stopping]);
        if let Some(m) = metrics {
            m.shutdown().await;
        }
        relay.shutdown().await;
        tracing::info!("stopped");
        Ok(())
    })
}

/// Until SIGINT or SIGTERM, re-reading the settings file on every SIGHUP.
async fn until_signal(relay: &RunningRelay, mut config: Config, args: &RelayArgs, log: &LogHandle) {
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
                    if let Some(new) = reload(relay, &config, args, log).await {
                        config = new;
                    }
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (relay, &mut config, args, log);
        super::network::wait_for_signal().await;
    }
}

/// Re-reads the file; applies the bounds and the log filter. `None` (logged) when the file
/// is refused: the old settings stay.
async fn reload(relay: &RunningRelay, old: &Config, args: &RelayArgs, log: &LogHandle) -> Option<Config> {
    let Some(path) = args.config.clone() else {
        tracing::info!("SIGHUP: no --config file to re-read");
        return None;
    };
    let loaded = tokio::task::spawn_blocking(move || load(Some(&path))).await;
    let new = match loaded {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::error!(error = %super::errors::one_line(&e), "relay settings refused: the old settings stay");
            return None;
        }
        Err(e) => {
            tracing::error!(error = %e, "relay settings reload failed: the old settings stay");
            return None;
        }
    };
    if let Some(f) = &new.log {
        if let Err(e) = EnvFilter::try_new(f) {
            tracing::error!(error = %e, "relay settings refused (log): the old settings stay");
            return None;
        }
    }
    relay.set_limits(raida_server::relay::limits(&new));
    if args.log.is_none() {
        if let Ok(f) = EnvFilter::try_new(log_filter(args, &new)) {
            let _ = log.reload(f);
        }
    }
    if new.relay_listen != old.relay_listen || new.metrics_listen != old.metrics_listen {
        tracing::warn!("relay settings reloaded; relay_listen and metrics_listen take effect at the next start");
    } else {
        tracing::info!("relay settings reloaded");
    }
    Some(new)
}
