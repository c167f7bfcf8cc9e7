//! Reloading config.toml while the server runs (`raida serve` on SIGHUP).
//!
//! What takes effect at once: the key servers (`[[key_servers]]`, `network` and that
//! network file's contents, host names resolved again), the `[identity]` coin Key Alert
//! authenticates with, `udp_error_rate_per_addr`, the limits an operator tunes under load
//! (`tickets_per_requester`, `inbox_max_keys`, `inbox_max_age_seconds`, `max_pending_keys`,
//! `anonymous_pending_keys_percent`, `anonymous_posts_per_addr`, `durable_threads`), the mailbox's
//! (`alert_ttl_seconds` for alerts left from then on, `mailbox_max_alerts`,
//! `mailbox_max_held_polls`), `admin_key`, and (applied
//! by the caller, which owns the log subscriber) `log`. Each is swapped atomically: a request in flight finishes
//! with the settings it started with, and no request is dropped.
//!
//! So are the TCP connection caps (`tcp_max_connections`, `tcp_max_connections_per_addr`,
//! `tcp_max_connections_per_subnet`, `tcp_connection_lifetime_seconds`) and the deferred-command
//! Key Alert's budget of Get Keys (`key_alert_fetches_per_minute`) applies from the next
//! alert. So are the deferred-command
//! limits (`max_key_alerts`, `max_durable_commands`, `max_heavy_commands`, each with its
//! per-address quarter) of the [`crate::RunningServer`] serving the state ([`LiveLimits`]).
//! A lowered cap applies to new connections: those open stay (with the lifetime they opened
//! with) until they close, time out or are evicted for a newcomer as usual. A lowered
//! command limit never waits: the commands running finish, and no new one of that kind
//! starts until fewer than the new limit run. The descriptor budget stays the one computed
//! at start: `tcp_max_connections` above it gets the budget (and a WARN line), and deferred
//! limits above the descriptors kept for them at start get a WARN line. Every other setting
//! sizes something built at start (sockets, the cache, pools); a change to one is named
//! in the result so the operator knows a restart is needed. A file that does not load or
//! names a key server that does not resolve changes nothing.

use std::path::Path;
use std::sync::Arc;

use raida_store::Config;

use crate::limits::{connection_budget, descriptor_reserve, DeferredLimits};
use crate::state::{KeyAlertSettings, ServerState};
use raida_net::{ConnectionTable, TcpLimits};

/// Settings applied by [`apply`] (or by the caller, for `log`) without a restart.
pub const RELOADABLE: &[&str] = &[
    "identity",
    "network",
    "key_servers",
    "udp_error_rate_per_addr",
    "log",
    "tickets_per_requester",
    "inbox_max_keys",
    "inbox_max_age_seconds",
    "max_pending_keys",
    "anonymous_pending_keys_percent",
    "anonymous_posts_per_addr",
    "durable_threads",
    "admin_key",
    "tcp_max_connections",
    "tcp_max_connections_per_addr",
    "tcp_max_connections_per_subnet",
    "tcp_connection_lifetime_seconds",
    "max_key_alerts",
    "max_durable_commands",
    "max_heavy_commands",
    "key_alert_fetches_per_minute",
    // the relay beside the RAIDA (`raida serve` applies them; relay_listen needs a restart)
    "relay_waiting_per_addr",
    "relay_waiting_total",
    "relay_pairs_per_addr",
    "relay_pairs_total",
    "relay_pairing_wait_seconds",
    "relay_idle_seconds",
    "relay_hello_timeout_seconds",
    "relay_bytes_per_second",
    "alert_ttl_seconds",
    "mailbox_max_alerts",
    "mailbox_max_held_polls",
];

/// What a [`crate::RunningServer`] built at start that a reload changes in place: its
/// connection table and deferred-command limits, and the descriptor figures of its start
/// (the budget is not recomputed: the reserve was sized for the limits at start).
pub struct LiveLimits {
    pub table: Arc<ConnectionTable>,
    pub deferred: Arc<DeferredLimits>,
    /// RLIMIT_NOFILE in force at start.
    pub descriptors: u64,
    pub udp_threads: usize,
    /// Deferred slots of every kind at start, the descriptors kept for them.
    pub deferred_slots_at_start: usize,
    /// Descriptors kept at start for the metrics endpoint (0 when it is off).
    pub metrics_slots: usize,
}

impl LiveLimits {
    /// The connections `wanted` gets within the descriptor budget of the start, and whether
    /// that is fewer than wanted.
    pub fn tcp_total(&self, wanted: usize) -> (usize, bool) {
        let kept = self.deferred_slots_at_start.saturating_add(self.metrics_slots);
        let n = connection_budget(self.descriptors, wanted, kept, self.udp_threads);
        (n, n < wanted)
    }

    /// Whether `deferred_slots` (all kinds together) with the connection table's total need
    /// more descriptors than there are: more slots than were kept for at start.
    pub fn deferred_beyond_reserve(&self, deferred_slots: usize, tcp_total: usize) -> bool {
        deferred_slots > self.deferred_slots_at_start
            && descriptor_reserve(deferred_slots.saturating_add(self.metrics_slots), self.udp_threads)
                .saturating_add(tcp_total as u64)
                > self.descriptors
    }

    /// Apply the connection caps and deferred limits of `new`; never waits.
    pub fn apply(&self, new: &Config) {
        let (total, capped) = self.tcp_total(new.tcp_max_connections);
        if capped {
            tracing::warn!(
                descriptors = self.descriptors,
                wanted = new.tcp_max_connections,
                tcp_connections = total,
                "reload: not enough descriptors for tcp_max_connections: raise the hard RLIMIT_NOFILE and restart"
            );
        }
        let old = self.table.limits();
        self.table.set_limits(TcpLimits {
            total,
            per_addr: new.tcp_max_connections_per_addr.max(1),
            per_subnet: new.tcp_max_connections_per_subnet.max(1),
            // validated to at most a year, and capped again where it is added to an Instant
            lifetime: std::time::Duration::from_secs(new.tcp_connection_lifetime_seconds),
            ..old
        });
        let slots = new.max_key_alerts.saturating_add(new.max_durable_commands).saturating_add(new.max_heavy_commands);
        if self.deferred_beyond_reserve(slots, total) {
            tracing::warn!(
                descriptors = self.descriptors,
                deferred_slots = slots,
                kept_at_start = self.deferred_slots_at_start,
                "reload: more deferred-command slots than descriptors kept for them: raise the hard RLIMIT_NOFILE and restart"
            );
        }
        self.deferred.set_limits(new.max_key_alerts, new.max_durable_commands, new.max_heavy_commands);
    }
}

/// Apply `new` to a running server whose settings were `old`. Returns the names of the
/// settings that changed but need a restart. On `Err` nothing was changed. The connection
/// caps and deferred limits reach the [`crate::RunningServer`] started with `state`
/// ([`ServerState::live_limits`]); a state no server runs has none to change.
pub fn apply(state: &ServerState, old: &Config, new: &Config, dir: &Path) -> Result<Vec<String>, String> {
    // everything that can fail first (resolving host names, reading the network file)
    let key_servers = crate::key_servers::configured_key_servers(new, dir).map_err(|e| e.to_string())?;
    let timeout = state.key_alert_settings().timeout;
    state.key_alert_reloaded.store(Some(Arc::new(KeyAlertSettings {
        key_servers,
        identity: new.identity.as_ref().map(|i| raida_proto::IdentityCoin((i.dn, i.sn).into())),
        timeout,
        fetches_per_minute: new.key_alert_fetches_per_minute,
    })));
    state.udp_errors.set_per_second(new.udp_error_rate_per_addr);
    state.tickets.set_per_requester(new.tickets_per_requester);
    state.inbox.set_limits(crate::inbox::InboxLimits {
        max_keys: new.inbox_max_keys,
        max_age_secs: new.inbox_max_age_seconds,
    });
    state.pending_keys.set_limits(crate::pending_keys::PendingKeyLimits::from_config(new));
    state.blocking.set_max_threads(new.durable_threads);
    state.mailbox.set_settings(crate::mailbox::MailboxSettings::from_config(new));
    if new.admin_key != old.admin_key {
        let key = new.admin_key_bytes();
        if key.is_none() {
            tracing::warn!("config.toml has no valid admin_key (32 hex digits): Show Stats is disabled");
        }
        state.set_admin_key(key);
    }
    if let Some(live) = state.live_limits.load_full() {
        live.apply(new);
    }
    Ok(restart_needed(old, new))
}

/// The settings that differ between `old` and `new` and are not [`RELOADABLE`].
pub fn restart_needed(old: &Config, new: &Config) -> Vec<String> {
    let table = |c: &Config| match toml::Value::try_from(c) {
        Ok(toml::Value::Table(t)) => t,
        _ => toml::Table::new(),
    };
    let (a, b) = (table(old), table(new));
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter().filter(|k| !RELOADABLE.contains(&k.as_str()) && a.get(*k) != b.get(*k)).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_only_settings_are_named() {
        let p = Path::new("config.toml");
        let old = Config::from_toml("raida_id = 1\n", p).unwrap();
        let new = Config::from_toml(
            "raida_id = 1\ncache_mib = 8\nudp_error_rate_per_addr = 5\nlog = \"debug\"\n\
             tcp_max_connections = 10\ntcp_max_connections_per_addr = 2\ntcp_max_connections_per_subnet = 3\n\
             tcp_connection_lifetime_seconds = 60\nmax_key_alerts = 4\nmax_durable_commands = 5\n\
             max_heavy_commands = 6\nkey_alert_fetches_per_minute = 100\n",
            p,
        )
        .unwrap();
        assert_eq!(restart_needed(&old, &new), vec!["cache_mib".to_string()]);
        assert!(restart_needed(&old, &old).is_empty());
    }

    #[test]
    fn connection_and_command_limits_stay_within_the_descriptors_of_the_start() {
        let live = LiveLimits {
            table: ConnectionTable::new(TcpLimits {
                total: 100,
                per_addr: 64,
                per_subnet: 256,
                idle_timeout: std::time::Duration::from_secs(32),
                lifetime: std::time::Duration::from_secs(600),
            }),
            deferred: Arc::new(DeferredLimits::new(8, 8, 4)),
            descriptors: 1024,
            udp_threads: 2,
            deferred_slots_at_start: 20,
            metrics_slots: 0,
        };
        // 1,024 - 256 - 20 - 2 = 746 connections fit
        assert_eq!(live.tcp_total(500), (500, false));
        assert_eq!(live.tcp_total(4096), (746, true));
        assert!(!live.deferred_beyond_reserve(20, 746) && !live.deferred_beyond_reserve(400, 100));
        assert!(live.deferred_beyond_reserve(21, 746));
        let new = Config::from_toml(
            "raida_id = 1\ntcp_max_connections = 4096\ntcp_max_connections_per_addr = 2\n\
             tcp_max_connections_per_subnet = 3\ntcp_connection_lifetime_seconds = 60\nmax_key_alerts = 4\n\
             max_durable_commands = 12\nmax_heavy_commands = 1\n",
            Path::new("config.toml"),
        )
        .unwrap();
        live.apply(&new);
        let l = live.table.limits();
        assert_eq!((l.total, l.per_addr, l.per_subnet, l.lifetime.as_secs()), (746, 2, 3, 60));
        assert_eq!(l.idle_timeout.as_secs(), 32, "not a setting: kept");
        use crate::limits::WorkKind;
        let d = &live.deferred;
        assert_eq!([WorkKind::KeyAlert, WorkKind::Durable, WorkKind::Heavy].map(|k| d.limit(k)), [4, 12, 1]);
    }

    #[test]
    fn key_servers_identity_and_rate_change_and_a_bad_file_changes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let state = ServerState::builder(
            raida_proto::header::ServerIdentity::new(1, 6),
            Arc::new(crate::ledger::MemoryLedger::default()),
            tmp.path(),
            crate::state::system_clock(),
        )
        .build()
        .unwrap();
        let p = tmp.path().join("config.toml");
        let old = Config::from_toml("raida_id = 1\n", &p).unwrap();
        assert!(state.key_alert_settings().key_servers.is_empty());
        let new = Config::from_toml(
            "raida_id = 1\nudp_error_rate_per_addr = 9\ntickets_per_requester = 3\ninbox_max_keys = 7\n\
             max_pending_keys = 11\nanonymous_posts_per_addr = 2\ndurable_threads = 5\n\
             key_alert_fetches_per_minute = 64\n\
             alert_ttl_seconds = 60\nmailbox_max_alerts = 12\nmailbox_max_held_polls = 13\n\
             admin_key = \"000102030405060708090a0b0c0d0e0f\"\n[identity]\ndn = 0\nsn = 5\n\
             [[key_servers]]\nraida_id = 2\naddress = \"127.0.0.1\"\nport = 50002\n",
            &p,
        )
        .unwrap();
        assert!(apply(&state, &old, &new, tmp.path()).unwrap().is_empty());
        let ks = state.key_alert_settings();
        assert_eq!(
            ks.key_servers.iter().map(|k| (k.server.raida_id, k.server.addr.port())).collect::<Vec<_>>(),
            vec![(2, 50002)]
        );
        assert_eq!(ks.identity, Some(raida_proto::IdentityCoin((0, 5).into())));
        assert_eq!(ks.timeout, state.key_alert.timeout, "the timeout is kept");
        assert_eq!(ks.fetches_per_minute, 64);
        assert_eq!(state.udp_errors.per_second(), 9);
        assert_eq!(state.tickets.per_requester(), 3);
        assert_eq!(state.inbox.limits().max_keys, 7);
        assert_eq!((state.pending_keys.limits().max_keys, state.pending_keys.limits().anonymous_per_addr), (11, 2));
        assert_eq!(state.admin_key.load_full().map(|k| k[15]), Some(15));
        assert_eq!(state.blocking.max_threads(), 5);
        let mb = state.mailbox.settings();
        assert_eq!((mb.alert_ttl_secs, mb.max_alerts, mb.max_held_polls), (60, 12, 13));
        // a network file that does not exist: refused, the settings stay
        let bad =
            Config::from_toml("raida_id = 1\nnetwork = \"missing.toml\"\nudp_error_rate_per_addr = 3\n", &p).unwrap();
        assert!(apply(&state, &new, &bad, tmp.path()).unwrap_err().contains("missing.toml"));
        assert_eq!(state.key_alert_settings().key_servers.len(), 1);
        assert_eq!(state.udp_errors.per_second(), 9);
        assert_eq!(state.tickets.per_requester(), 3);
    }
}
