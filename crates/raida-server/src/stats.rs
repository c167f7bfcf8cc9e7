//! Server statistics: lock-free counters, rendered by Show Stats as `name=value` lines.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use raida_proto::Status;

/// Counters shared by every worker (relaxed atomics: approximate under races, never blocking).
pub struct Stats {
    started: Instant,
    requests: Vec<AtomicU64>,
    /// Of `requests`, those answered with an error status (per group × command).
    errors: Vec<AtomicU64>,
    statuses: Vec<AtomicU64>,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub dropped: AtomicU64,
    /// UDP error answers not sent because the source address was over
    /// `udp_error_rate_per_addr` (also counted in `dropped`).
    pub rate_limited: AtomicU64,
    /// Request latency (receipt to answer built), [`LATENCY_BUCKETS_US`]: one counter per
    /// bucket (not cumulative), the last one for everything slower.
    latency: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    latency_sum_us: AtomicU64,
}

/// Upper bounds (µs) of the latency histogram's buckets: powers of 4 from 4 µs to 4.2 s.
pub(crate) const LATENCY_BUCKETS_US: [u64; 11] =
    [4, 16, 64, 256, 1_024, 4_096, 16_384, 65_536, 262_144, 1_048_576, 4_194_304];

impl Default for Stats {
    fn default() -> Self {
        Stats {
            started: Instant::now(),
            requests: (0..14 * 256).map(|_| AtomicU64::new(0)).collect(),
            errors: (0..14 * 256).map(|_| AtomicU64::new(0)).collect(),
            statuses: (0..256).map(|_| AtomicU64::new(0)).collect(),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            latency: Default::default(),
            latency_sum_us: AtomicU64::new(0),
        }
    }
}

impl Stats {
    /// Count one answered request.
    pub fn record(&self, group: u8, command: u8, status: Status, bytes_in: usize, bytes_out: usize) {
        if group <= 13 {
            self.requests[group as usize * 256 + command as usize].fetch_add(1, Relaxed);
            if !status.is_success() {
                self.errors[group as usize * 256 + command as usize].fetch_add(1, Relaxed);
            }
        }
        self.statuses[status.code() as usize].fetch_add(1, Relaxed);
        self.bytes_in.fetch_add(bytes_in as u64, Relaxed);
        self.bytes_out.fetch_add(bytes_out as u64, Relaxed);
    }

    /// Count one request's latency: two relaxed increments, no lock.
    pub fn observe_latency(&self, us: u32) {
        let us = u64::from(us);
        let bucket = LATENCY_BUCKETS_US.iter().position(|&b| us <= b).unwrap_or(LATENCY_BUCKETS_US.len());
        if let Some(c) = self.latency.get(bucket) {
            c.fetch_add(1, Relaxed);
        }
        self.latency_sum_us.fetch_add(us, Relaxed);
    }

    /// The latency histogram: (count per bucket, the last beyond every bound; sum in µs).
    pub fn latency(&self) -> ([u64; LATENCY_BUCKETS_US.len() + 1], u64) {
        let mut counts = [0u64; LATENCY_BUCKETS_US.len() + 1];
        for (c, a) in counts.iter_mut().zip(&self.latency) {
            *c = a.load(Relaxed);
        }
        (counts, self.latency_sum_us.load(Relaxed))
    }

    pub fn uptime_secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    pub fn requests_for(&self, group: u8, command: u8) -> u64 {
        if group > 13 {
            return 0;
        }
        self.requests[group as usize * 256 + command as usize].load(Relaxed)
    }

    /// Requests of one command answered with an error status.
    pub fn errors_for(&self, group: u8, command: u8) -> u64 {
        if group > 13 {
            return 0;
        }
        self.errors[group as usize * 256 + command as usize].load(Relaxed)
    }

    pub fn status_count(&self, status: Status) -> u64 {
        self.statuses[status.code() as usize].load(Relaxed)
    }

    /// The Show Stats text; `commands` are the (group, command) pairs of the dispatch table.
    pub fn render(
        &self,
        commands: impl Iterator<Item = (u8, u8)>,
        free_ticket_slots: usize,
        cached_pages: u64,
        dirty_pages: u64,
    ) -> String {
        let mut s = String::new();
        for (g, c) in commands {
            let _ = writeln!(s, "requests.{g}.{c}={}", self.requests_for(g, c));
        }
        for status in Status::ALL {
            let n = self.status_count(status);
            if n > 0 {
                let _ = writeln!(s, "status.{}={n}", status.code());
            }
        }
        let _ = writeln!(s, "bytes_in={}", self.bytes_in.load(Relaxed));
        let _ = writeln!(s, "bytes_out={}", self.bytes_out.load(Relaxed));
        let _ = writeln!(s, "dropped={}", self.dropped.load(Relaxed));
        let _ = writeln!(s, "free_ticket_slots={free_ticket_slots}");
        let _ = writeln!(s, "cached_pages={cached_pages}");
        let _ = writeln!(s, "dirty_pages={dirty_pages}");
        let _ = writeln!(s, "uptime_seconds={}", self.uptime_secs());
        s
    }
}
