//! The relay of PROTOCOL.md section 10 as a RAIDA operator runs it: its bounds from
//! config.toml (or `raida relay --config FILE`), and its counters on a `/metrics`
//! endpoint. The relay itself is `raida_relay`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Registry;
use raida_relay::{RelayAnswer, RelayLimits, RelayStats, StatsHandle};
use raida_store::Config;
use tokio_util::sync::CancellationToken;

use crate::metrics::{counter, gauge, MetricsLimits};

/// The relay bounds of `config` (the `relay_*` settings).
pub fn limits(config: &Config) -> RelayLimits {
    RelayLimits {
        waiting_per_address: config.relay_waiting_per_addr,
        waiting_total: config.relay_waiting_total,
        pairs_per_address: config.relay_pairs_per_addr,
        pairs_total: config.relay_pairs_total,
        pairing_wait: Duration::from_secs(config.relay_pairing_wait_seconds),
        idle: Duration::from_secs(config.relay_idle_seconds),
        hello_timeout: Duration::from_secs(config.relay_hello_timeout_seconds),
        bytes_per_second: (config.relay_bytes_per_second > 0).then_some(config.relay_bytes_per_second),
    }
}

struct RelayCollector(RelayStats);

impl std::fmt::Debug for RelayCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RelayCollector")
    }
}

impl Collector for RelayCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::MetricType;
        let s = &self.0;
        counter(&mut e, "raida_relay_connections", "Connections accepted by the relay", s.connections)?;
        {
            let mut family = e.encode_descriptor(
                "raida_relay_answers",
                "Answer bytes sent to hellos (1 paired, 2 malformed, 3 side taken, 4 busy, 5 no peer)",
                None,
                MetricType::Counter,
            )?;
            for a in RelayAnswer::ALL {
                let n = s.answers.get(usize::from(a.code())).copied().unwrap_or(0);
                let labels = [("answer", a.name())];
                ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
            }
        }
        counter(
            &mut e,
            "raida_relay_hello_timeouts",
            "Clients closed without a complete hello in time",
            s.hello_timeouts,
        )?;
        counter(&mut e, "raida_relay_idle_closed", "Pairs closed because idle both ways", s.idle_closed)?;
        counter(
            &mut e,
            "raida_relay_bytes",
            "Bytes relayed, both directions (never read by the relay)",
            s.bytes_relayed,
        )?;
        counter(
            &mut e,
            "raida_relay_copy_fallbacks",
            "Directions copied through a user-space buffer because splice(2) was unavailable",
            s.copy_fallbacks,
        )?;
        gauge(&mut e, "raida_relay_waiting", "Connections waiting for their hello or a peer", s.waiting_now)?;
        gauge(&mut e, "raida_relay_pairs", "Pairs being spliced", s.pairs_now)?;
        Ok(())
    }
}

/// The Prometheus text of a relay's counters.
pub fn render(stats: RelayStats) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(RelayCollector(stats)));
    let mut out = String::new();
    // writing to a String cannot fail
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

/// A running `/metrics` endpoint of a relay.
#[derive(Debug)]
pub struct RelayMetrics {
    addr: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl RelayMetrics {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the endpoint and waits for it.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// Serves `GET /metrics` with `relay`'s counters on `listen`, with the bounds of
/// config.toml's `metrics_max_connections` and `metrics_timeout_seconds`.
pub async fn serve_metrics(listen: SocketAddr, relay: StatsHandle, config: &Config) -> std::io::Result<RelayMetrics> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let limits = MetricsLimits {
        max_connections: config.metrics_max_connections,
        timeout: Duration::from_secs(config.metrics_timeout_seconds),
    };
    let text = Arc::new(move || render(relay.stats()));
    let stop = CancellationToken::new();
    let task = tokio::spawn(crate::metrics::serve_text(listener, text, limits, stop.clone()));
    Ok(RelayMetrics { addr, stop, task })
}
