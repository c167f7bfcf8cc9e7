//! The key servers a Key Alert may fetch from, from config.toml: the `[[key_servers]]`
//! tables and, with `network = "FILE"`, every other RAIDA of that network file. Host names
//! are resolved here, when the server starts (a name that does not resolve is an error
//! naming it, so a typo never silently drops a key server).

use std::path::{Path, PathBuf};

use raida_net::network::{Network, NetworkError};
use raida_net::resolve::{resolve_address_blocking, resolve_host_blocking, ResolveError};
use raida_store::Config;

use crate::state::KeyServer;

/// Why the configured key servers cannot be used; each names the config.toml entry or the
/// network file's RAIDA at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum KeyServersError {
    /// A `[[key_servers]]` host does not resolve.
    #[error("config.toml: key server {raida_id}: {source}")]
    KeyServer { raida_id: u8, source: ResolveError },
    /// The `network = "FILE"` cannot be read or is not a network file.
    #[error("config.toml: network: {0}")]
    Network(NetworkError),
    /// The network file is of another coin.
    #[error("config.toml: network {}: coin_id {network} is not this server's coin_id {server}", path.display())]
    CoinId { path: PathBuf, network: u16, server: u16 },
    /// A RAIDA of the network file does not resolve.
    #[error("{}: RAIDA {raida_id}: {source}", path.display())]
    Raida { path: PathBuf, raida_id: u8, source: ResolveError },
}

/// Every configured key server, resolved; duplicates (same RAIDA id, address and port) once.
pub(crate) fn configured_key_servers(config: &Config, dir: &Path) -> Result<Vec<KeyServer>, KeyServersError> {
    let mut out: Vec<KeyServer> = Vec::new();
    let mut push = |ks: KeyServer| {
        if !out.contains(&ks) {
            out.push(ks);
        }
    };
    for ks in &config.key_servers {
        let addr = resolve_host_blocking(&ks.address, ks.port)
            .map_err(|source| KeyServersError::KeyServer { raida_id: ks.raida_id, source })?;
        push(KeyServer::new(ks.raida_id, addr, ks.legacy));
    }
    if let Some(file) = &config.network {
        let path = dir.join(file);
        let network = Network::load(&path).map_err(KeyServersError::Network)?;
        if network.coin_id != config.coin_id {
            return Err(KeyServersError::CoinId { path, network: network.coin_id, server: config.coin_id });
        }
        for r in network.raidas.iter().filter(|r| r.id != config.raida_id) {
            let addr = resolve_address_blocking(&r.address).map_err(|source| KeyServersError::Raida {
                path: path.clone(),
                raida_id: r.id,
                source,
            })?;
            push(KeyServer::new(r.id, addr, r.legacy));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_and_a_network_file_become_key_servers() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(
            tmp.path().join("net.toml"),
            "coin_id = 6\n[[raida]]\nid = 0\naddress = \"127.0.0.1:50000\"\n[[raida]]\nid = 1\naddress = \"localhost:50001\"\nlegacy = true\n[[raida]]\nid = 2\naddress = \"127.0.0.1:50002\"\n",
        )
        .unwrap();
        let text = "raida_id = 0\nnetwork = \"net.toml\"\n[[key_servers]]\nraida_id = 5\naddress = \"localhost\"\nport = 50005\n[[key_servers]]\nraida_id = 2\naddress = \"127.0.0.1\"\nport = 50002\n";
        let config = Config::from_toml(text, &tmp.path().join("config.toml")).unwrap();
        let ks = configured_key_servers(&config, tmp.path()).unwrap();
        let ids: Vec<(u8, u16, bool)> =
            ks.iter().map(|k| (k.server.raida_id, k.server.addr.port(), k.legacy)).collect();
        // RAIDA 0 is this server; RAIDA 2 is listed twice and kept once
        assert_eq!(ids, vec![(5, 50005, false), (2, 50002, false), (1, 50001, true)]);
        assert!(ks.iter().all(|k| k.server.addr.ip().is_loopback()));

        let bad = Config::from_toml("raida_id = 0\nnetwork = \"missing.toml\"\n", &tmp.path().join("c")).unwrap();
        assert!(configured_key_servers(&bad, tmp.path()).unwrap_err().to_string().contains("missing.toml"));
        let unresolvable =
            "raida_id = 0\n[[key_servers]]\nraida_id = 5\naddress = \"no-such-host.invalid\"\nport = 1\n";
        let c = Config::from_toml(unresolvable, &tmp.path().join("c")).unwrap();
        let e = configured_key_servers(&c, tmp.path()).unwrap_err();
        assert!(matches!(e, KeyServersError::KeyServer { raida_id: 5, .. }), "{e}");
        assert!(e.to_string().contains("key server 5"), "{e}");
        assert!(Config::from_toml(
            "raida_id = 0\n[[key_servers]]\nraida_id = 5\naddress = \"a b\"\nport = 1\n",
            &tmp.path().join("c")
        )
        .is_err());
    }
}
