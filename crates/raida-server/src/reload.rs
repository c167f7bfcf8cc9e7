//! Reloading config.toml while the server runs (`raida serve` on SIGHUP).
//!
//! What takes effect at once: the key servers (`[[key_servers]]`, `network` and that
//! network file's contents, host names resolved again), the `[identity]` coin Key Alert
//! authenticates with, `udp_error_rate_per_addr`, and (applied by the caller, which owns
//! the log subscriber) `log`. Each is swapped atomically: a request in flight finishes
//! with the settings it started with, and no request is dropped. Every other setting
//! sizes something built at start (sockets, the cache, pools); a change to one is named
//! in the result so the operator knows a restart is needed. A file that does not load or
//! names a key server that does not resolve changes nothing.

use std::path::Path;
use std::sync::Arc;

use raida_store::Config;

use crate::state::{KeyAlertSettings, ServerState};

/// Settings applied by [`apply`] (or by the caller, for `log`) without a restart.
pub const RELOADABLE: &[&str] = &["identity", "network", "key_servers", "udp_error_rate_per_addr", "log"];

/// Apply `new` to a running server whose settings were `old`. Returns the names of the
/// settings that changed but need a restart. On `Err` nothing was changed.
pub fn apply(state: &ServerState, old: &Config, new: &Config, dir: &Path) -> Result<Vec<String>, String> {
    // everything that can fail first (resolving host names, reading the network file)
    let key_servers = crate::key_servers::configured_key_servers(new, dir)?;
    let timeout = state.key_alert_settings().timeout;
    state.key_alert_reloaded.store(Some(Arc::new(KeyAlertSettings {
        key_servers,
        identity: new.identity.as_ref().map(|i| (i.dn, i.sn)),
        timeout,
    })));
    state.udp_errors.set_per_second(new.udp_error_rate_per_addr);
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
}
