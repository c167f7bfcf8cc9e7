//! Reloading config.toml while the server runs (`raida serve` on SIGHUP).
//!
//! What takes effect at once: the key servers (`[[key_servers]]`, `network` and that
//! network file's contents, host names resolved again), the `[identity]` coin Key Alert
//! authenticates with, `udp_error_rate_per_addr`, the limits an operator tunes under load
//! (`tickets_per_requester`, `inbox_max_keys`, `inbox_max_age_seconds`, `max_pending_keys`,
//! `anonymous_pending_keys_percent`, `anonymous_posts_per_addr`, `durable_threads`), `admin_key`, and (applied
//! by the caller, which owns the log subscriber) `log`. Each is swapped atomically: a request in flight finishes
//! with the settings it started with, and no request is dropped. Every other setting
//! sizes something built at start (sockets, the cache, pools); a change to one is named
//! in the result so the operator knows a restart is needed. A file that does not load or
//! names a key server that does not resolve changes nothing.

use std::path::Path;
use std::sync::Arc;

use raida_store::Config;

use crate::state::{KeyAlertSettings, ServerState};

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
];

/// Apply `new` to a running server whose settings were `old`. Returns the names of the
/// settings that changed but need a restart. On `Err` nothing was changed.
pub fn apply(state: &ServerState, old: &Config, new: &Config, dir: &Path) -> Result<Vec<String>, String> {
    // everything that can fail first (resolving host names, reading the network file)
    let key_servers = crate::key_servers::configured_key_servers(new, dir)?;
    let timeout = state.key_alert_settings().timeout;
    state.key_alert_reloaded.store(Some(Arc::new(KeyAlertSettings {
        key_servers,
        identity: new.identity.as_ref().map(|i| raida_proto::IdentityCoin((i.dn, i.sn).into())),
        timeout,
    })));
    state.udp_errors.set_per_second(new.udp_error_rate_per_addr);
    state.tickets.set_per_requester(new.tickets_per_requester);
    state.inbox.set_limits(crate::inbox::InboxLimits {
        max_keys: new.inbox_max_keys,
        max_age_secs: new.inbox_max_age_seconds,
    });
    state.pending_keys.set_limits(crate::pending_keys::PendingKeyLimits::from_config(new));
    state.blocking.set_max_threads(new.durable_threads);
    if new.admin_key != old.admin_key {
        let key = new.admin_key_bytes();
        if key.is_none() {
            tracing::warn!("config.toml has no valid admin_key (32 hex digits): Show Stats is disabled");
        }
        state.set_admin_key(key);
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
        let new = Config::from_toml("raida_id = 1\ncache_mib = 8\nudp_error_rate_per_addr = 5\nlog = \"debug\"\n", p)
            .unwrap();
        assert_eq!(restart_needed(&old, &new), vec!["cache_mib".to_string()]);
        assert!(restart_needed(&old, &old).is_empty());
    }

    #[test]
    fn key_servers_identity_and_rate_change_and_a_bad_file_changes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let state = ServerState::new(
            raida_proto::header::ServerIdentity::new(1, 6),
            Arc::new(crate::ledger::MemoryLedger::default()),
            tmp.path(),
            3600,
            1000,
            crate::state::system_clock(),
        )
        .unwrap();
        let p = tmp.path().join("config.toml");
        let old = Config::from_toml("raida_id = 1\n", &p).unwrap();
        assert!(state.key_alert_settings().key_servers.is_empty());
        let new = Config::from_toml(
            "raida_id = 1\nudp_error_rate_per_addr = 9\ntickets_per_requester = 3\ninbox_max_keys = 7\n\
             max_pending_keys = 11\nanonymous_posts_per_addr = 2\ndurable_threads = 5\n\
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
        assert_eq!(state.udp_errors.per_second(), 9);
        assert_eq!(state.tickets.per_requester(), 3);
        assert_eq!(state.inbox.limits().max_keys, 7);
        assert_eq!((state.pending_keys.limits().max_keys, state.pending_keys.limits().anonymous_per_addr), (11, 2));
        assert_eq!(state.admin_key.load_full().map(|k| k[15]), Some(15));
        assert_eq!(state.blocking.max_threads(), 5);
        // a network file that does not exist: refused, the settings stay
        let bad =
            Config::from_toml("raida_id = 1\nnetwork = \"missing.toml\"\nudp_error_rate_per_addr = 3\n", &p).unwrap();
        assert!(apply(&state, &new, &bad, tmp.path()).unwrap_err().contains("missing.toml"));
        assert_eq!(state.key_alert_settings().key_servers.len(), 1);
        assert_eq!(state.udp_errors.per_second(), 9);
        assert_eq!(state.tickets.per_requester(), 3);
    }
}
