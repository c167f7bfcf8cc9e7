//! `GET /metrics` in the Prometheus text format (config.toml `metrics_listen`, off by
//! default). The request path only bumps the relaxed atomic counters it always had
//! ([`crate::stats::Stats`], the store's, the pending keys'); this module reads them when
//! a scrape comes (a prometheus-client [`Collector`]), so metrics cost no lock and no
//! allocation per request.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use raida_proto::Status;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;

use crate::dispatch::COMMANDS;
use crate::state::ServerState;
use crate::stats::LATENCY_BUCKETS_US;
use raida_net::ConnectionTable;

/// Reads a server's counters at scrape time.
pub(crate) struct ServerCollector {
    state: Arc<ServerState>,
    connections: Option<Arc<ConnectionTable>>,
}

impl std::fmt::Debug for ServerCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerCollector")
    }
}

pub(crate) fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

pub(crate) fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

impl Collector for ServerCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.state;
        let stats = &s.stats;
        {
            let mut family =
                e.encode_descriptor("raida_requests", "Requests answered, by command", None, MetricType::Counter)?;
            for c in COMMANDS {
                let n = stats.requests_for(c.group, c.command);
                let labels = [("command", c.name)];
                ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
            }
        }
        {
            let mut family = e.encode_descriptor(
                "raida_request_errors",
                "Requests answered with an error status, by command",
                None,
                MetricType::Counter,
            )?;
            for c in COMMANDS {
                let n = stats.errors_for(c.group, c.command);
                let labels = [("command", c.name)];
                ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
            }
        }
        {
            let mut family =
                e.encode_descriptor("raida_answers", "Answers sent, by status code", None, MetricType::Counter)?;
            for status in Status::ALL {
                let n = stats.status_count(status);
                if n > 0 {
                    let code = status.code().to_string();
                    let labels = [("status", code.as_str())];
                    ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        {
            let (counts, sum_us) = stats.latency();
            let buckets: Vec<(f64, u64)> = LATENCY_BUCKETS_US
                .iter()
                .map(|&b| b as f64 / 1e6)
                .chain(std::iter::once(f64::MAX))
                .zip(counts)
                .collect();
            let total = counts.iter().sum();
            let mut m = e.encode_descriptor(
                "raida_request_duration_seconds",
                "Time from receipt to the answer built (deferred commands included)",
                None,
                MetricType::Histogram,
            )?;
            m.encode_histogram::<prometheus_client::encoding::NoLabelSet>(sum_us as f64 / 1e6, total, &buckets, None)?;
        }
        counter(&mut e, "raida_received_bytes", "Request bytes of answered requests", stats.bytes_in.load(Relaxed))?;
        counter(&mut e, "raida_sent_bytes", "Answer bytes", stats.bytes_out.load(Relaxed))?;
        counter(&mut e, "raida_dropped", "Requests dropped without an answer", stats.dropped.load(Relaxed))?;
        counter(
            &mut e,
            "raida_rate_limited",
            "UDP error answers not sent: source address over udp_error_rate_per_addr",
            stats.rate_limited.load(Relaxed),
        )?;
        if let Some(st) = s.ledger.store_stats() {
            counter(&mut e, "raida_cache_hits", "Coin reads answered from a cached page", st.cache_hits)?;
            counter(&mut e, "raida_cache_misses", "Pages read from disk", st.page_loads)?;
            counter(&mut e, "raida_cache_evictions", "Pages dropped from the cache", st.evictions)?;
            gauge(&mut e, "raida_cache_pages", "Pages in the cache", st.cached_pages as u64)?;
            gauge(
                &mut e,
                "raida_cache_dirty_pages",
                "Cached pages not yet written to their file",
                st.dirty_pages as u64,
            )?;
            gauge(
                &mut e,
                "raida_cache_capacity_pages",
                "Most pages the cache keeps (cache_mib)",
                st.capacity_pages as u64,
            )?;
            counter(
                &mut e,
                "raida_journal_fsyncs",
                "Journal fdatasync calls (one per group-commit batch)",
                st.journal_syncs,
            )?;
            counter(
                &mut e,
                "raida_journal_records",
                "Coin records written through the journal (divided by fsyncs: the mean batch size)",
                st.updates,
            )?;
            counter(&mut e, "raida_journal_bytes", "Journal bytes written", st.journal_bytes)?;
            {
                // per bucket, not cumulative: the encoder sums them up
                let buckets: Vec<(f64, u64)> = raida_store::BATCH_SIZE_BUCKETS
                    .iter()
                    .map(|&b| b as f64)
                    .chain(std::iter::once(f64::MAX))
                    .zip(st.journal_batch_sizes)
                    .collect();
                let mut m = e.encode_descriptor(
                    "raida_journal_batch_size",
                    "Batches (one per writing request) made durable by one journal fsync: the group commit size",
                    None,
                    MetricType::Histogram,
                )?;
                m.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                    st.journal_batches as f64,
                    st.journal_batch_sizes.iter().sum(),
                    &buckets,
                    None,
                )?;
            }
            counter(&mut e, "raida_checkpoints", "Checkpoints completed", st.checkpoints)?;
        }
        let pk = s.pending_keys.stats();
        gauge(&mut e, "raida_pending_keys", "Posted key parts waiting in Keys/", pk.keys as u64)?;
        gauge(&mut e, "raida_pending_keys_anonymous", "Of them, posted with EN 0", pk.anonymous as u64)?;
        counter(&mut e, "raida_pending_keys_dir_fsyncs", "fsyncs of Keys/ (group commit)", pk.dir_fsyncs)?;
        counter(
            &mut e,
            "raida_pending_keys_posts_resent",
            "Retransmitted Post Keys (41) answered as their first copy",
            pk.posts_resent,
        )?;
        counter(
            &mut e,
            "raida_pending_keys_takes_repeated",
            "Repeated Get Keys (43) answered again from the kept answers",
            pk.takes_repeated,
        )?;
        gauge(
            &mut e,
            "raida_pending_keys_kept_answers",
            "Answers of handed-out keys kept for a repeated Get Key (30 s)",
            pk.kept_answers as u64,
        )?;
        gauge(&mut e, "raida_inbox_keys", "Assembled keys waiting in Inbox/", s.inbox.indexed() as u64)?;
        let mb = s.mailbox.stats();
        gauge(
            &mut e,
            "raida_mailbox_alerts",
            "Alerts in the mailbox (46), answered ones included until they go",
            mb.alerts as u64,
        )?;
        gauge(
            &mut e,
            "raida_mailbox_held_polls",
            "Take Alerts (47) held over TCP waiting for an alert",
            mb.held as u64,
        )?;
        counter(&mut e, "raida_mailbox_alerts_left", "Alerts accepted by Leave Alert (46)", mb.left)?;
        counter(
            &mut e,
            "raida_mailbox_alerts_taken",
            "Alerts carried by a Take Alerts (47) answer for the first time",
            mb.taken,
        )?;
        counter(&mut e, "raida_mailbox_alerts_expired", "Alerts gone unanswered after alert_ttl_seconds", mb.expired)?;
        counter(
            &mut e,
            "raida_mailbox_alerts_replaced",
            "Alerts replaced by a (sender, receiver) pair's third",
            mb.replaced,
        )?;
        {
            let mut family = e.encode_descriptor(
                "raida_mailbox_refused",
                "Leave Alerts (46) and Take Alerts (47) refused by the mailbox, by reason and status",
                None,
                MetricType::Counter,
            )?;
            for why in crate::mailbox::Refusal::ALL {
                let code = why.status().code().to_string();
                let labels = [("reason", why.name()), ("status", code.as_str())];
                ConstCounter::new(mb.refused(why)).encode(family.encode_family(&labels)?)?;
            }
        }
        let now = (s.clock)();
        let live = raida_proto::consts::TICKET_POOL_SIZE.saturating_sub(s.tickets.free_slots(now));
        gauge(&mut e, "raida_live_tickets", "Healing tickets in the pool", live as u64)?;
        let (entries, capacity) = {
            let r = s.replay.lock();
            (r.len(), r.capacity())
        };
        gauge(
            &mut e,
            "raida_replay_entries",
            "Modern nonces remembered against replay (about 40 bytes each)",
            entries as u64,
        )?;
        gauge(
            &mut e,
            "raida_replay_capacity",
            "Most nonces the replay memory holds (replay_capacity)",
            capacity as u64,
        )?;
        if let Some(t) = &self.connections {
            gauge(&mut e, "raida_tcp_connections", "Open TCP connections", t.live() as u64)?;
        }
        gauge(&mut e, "raida_uptime_seconds", "Seconds since the server started", stats.uptime_secs())?;
        Ok(())
    }
}

/// The Prometheus text of one server's counters now.
pub(crate) fn render(state: &Arc<ServerState>, connections: Option<Arc<ConnectionTable>>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(ServerCollector { state: state.clone(), connections }));
    let mut out = String::new();
    // writing to a String cannot fail
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

/// Bounds of the metrics endpoint (config.toml `metrics_max_connections`,
/// `metrics_timeout_seconds`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct MetricsLimits {
    /// Connections open at once; one beyond it is closed as soon as it is accepted.
    pub max_connections: usize,
    /// A connection is closed this long after it was accepted, busy or idle.
    pub timeout: Duration,
}

/// Descriptors the metrics endpoint may hold beyond the listening socket: its connections
/// and the one accepted only to be closed when they are all taken.
pub(crate) fn metrics_descriptors(limits: &MetricsLimits) -> usize {
    limits.max_connections.saturating_add(1)
}

/// The metrics port's listener for axum: at most `max_connections` accepted connections
/// alive, each ending at its deadline. Without it, 1,100 idle connections at a 1,024
/// descriptor limit took the store's descriptors (Post Key answered 194).
struct BoundedListener {
    inner: tokio::net::TcpListener,
    open: Arc<AtomicUsize>,
    limits: MetricsLimits,
}

/// One open metrics connection's place in the count; freed on drop.
struct MetricsSlot(Arc<AtomicUsize>);

impl Drop for MetricsSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

impl axum::serve::Listener for BoundedListener {
    type Io = TimedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TimedStream, SocketAddr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, peer)) => {
                    let max = self.limits.max_connections;
                    if self.open.fetch_update(Relaxed, Relaxed, |n| (n < max).then_some(n + 1)).is_err() {
                        // full: close it now rather than let it wait holding a descriptor
                        tracing::debug!(client = %peer, "metrics: metrics_max_connections reached, connection closed");
                        drop(stream);
                        continue;
                    }
                    let slot = MetricsSlot(self.open.clone());
                    let deadline = raida_proto::time::deadline_from(tokio::time::Instant::now(), self.limits.timeout);
                    let io =
                        TimedStream { stream, deadline: Box::pin(tokio::time::sleep_until(deadline)), _slot: slot };
                    return (io, peer);
                }
                // out of descriptors or a connection reset before it was accepted: wait a
                // moment instead of spinning (what axum's own listener does)
                Err(e) => {
                    tracing::debug!(error = %e, "metrics: accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// A metrics connection that fails every read and write once its deadline has passed, so
/// hyper drops it (and its descriptor) even when the peer never sends a byte.
struct TimedStream {
    stream: tokio::net::TcpStream,
    deadline: Pin<Box<tokio::time::Sleep>>,
    _slot: MetricsSlot,
}

impl TimedStream {
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.deadline.as_mut().poll(cx).is_ready()
    }
}

fn timed_out() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "metrics_timeout_seconds reached")
}

impl AsyncRead for TimedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if self.expired(cx) {
            return Poll::Ready(Err(timed_out()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TimedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        if self.expired(cx) {
            return Poll::Ready(Err(timed_out()));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.expired(cx) {
            return Poll::Ready(Err(timed_out()));
        }
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Serve `GET /metrics` on `listener` until `stop` (plain HTTP/1.1, axum), within `limits`.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<ServerState>,
    connections: Option<Arc<ConnectionTable>>,
    limits: MetricsLimits,
    stop: CancellationToken,
) {
    serve_text(listener, Arc::new(move || render(&state, connections.clone())), limits, stop).await
}

/// Serve `GET /metrics` with what `text` renders at each scrape (a RAIDA's counters, or a
/// relay's), until `stop`, within `limits`.
pub(crate) async fn serve_text(
    listener: tokio::net::TcpListener,
    text: Arc<dyn Fn() -> String + Send + Sync>,
    limits: MetricsLimits,
    stop: CancellationToken,
) {
    use axum::http::header::CONTENT_TYPE;
    let router = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let text = text();
            async move { ([(CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text) }
        }),
    );
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    let listener = BoundedListener { inner: listener, open: Arc::new(AtomicUsize::new(0)), limits };
    if let Err(e) = axum::serve(listener, router).with_graceful_shutdown(stop.cancelled_owned()).await {
        tracing::warn!(error = %e, addr = ?addr, "metrics endpoint stopped");
    }
}
