//! A RAIDA network as a client sees it: the coin id and up to 25 RAIDAs (`network.toml`).
//!
//! ```toml
//! coin_id = 6
//!
//! [[raida]]
//! id = 0
//! address = "127.0.0.1:50000"    # host:port; a host name is resolved each time it is used
//!
//! [[raida]]
//! id = 1
//! address = "raida1.example.net:50001"
//! legacy = true                  # speaks no modern encryption type: never used as a key server
//!
//! [[relays]]                     # optional: relays (PROTOCOL.md section 10) its users may use,
//! address = "127.0.0.1:50025"    # tried in this order when neither side can be reached directly
//!
//! [simulation]                   # optional: `raida network up`'s simulated links (raida_netsim);
//! loss = 5.0                     # clients ignore it
//! ```
//!
//! Ids are 0..24 and unique; addresses (of RAIDAs and relays) are `HOST:PORT` (`[v6]:PORT`
//! for IPv6 literals).
//! Host names are resolved at use ([`Network::resolve`]), so a network file stays valid when
//! a server's address changes.

use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::resolve::{resolve_address, split_host_port, ResolveError};
use crate::Server;

/// File name of a network description in a `raida network init` folder.
pub const NETWORK_FILE: &str = "network.toml";

/// The section of a network file that `raida network up` reads (its simulated links,
/// raida_netsim); clients ignore it.
pub const SIMULATION_SECTION: &str = "simulation";

/// One RAIDA of a network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RaidaEntry {
    /// RAIDA id, 0..24.
    pub id: u8,
    /// `HOST:PORT`; host names are resolved at use.
    pub address: String,
    /// A deployed server that speaks no modern encryption type (EN 4): section 9 requires
    /// EN 4 on every hop, so such a server is never chosen as a key server.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub legacy: bool,
}

/// A relay of a network (PROTOCOL.md section 10).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayEntry {
    /// `HOST:PORT`; host names are resolved at use.
    pub address: String,
}

/// A RAIDA network: its coin id, its RAIDAs and its relays.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// Coin id of the network (request bytes 6-7), default 6.
    #[serde(default = "default_coin_id")]
    pub coin_id: u16,
    /// The RAIDAs, by id.
    #[serde(default, rename = "raida")]
    pub raidas: Vec<RaidaEntry>,
    /// The relays its users may use, in the order they are tried (none: no relay).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relays: Vec<RelayEntry>,
}

fn default_coin_id() -> u16 {
    6
}

/// A network file that cannot be used, or a host name that does not resolve.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetworkError {
    #[error("{path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
    #[error("RAIDA {id}: {source} (check the name, or use an IP address)")]
    Resolve { id: u8, source: ResolveError },
}

/// A majority of `n` RAIDAs: more than half.
pub fn majority_of(n: usize) -> usize {
    n / 2 + 1
}

impl Network {
    /// Parse and check a network description; `path` names it in errors.
    pub fn from_toml(text: &str, path: &str) -> Result<Network, NetworkError> {
        let invalid = |reason: String| NetworkError::Invalid { path: path.to_string(), reason };
        let mut table: toml::Table = toml::from_str(text).map_err(|e| invalid(e.message().to_string()))?;
        // `raida network up`'s simulated links (raida_netsim): not the client's business
        table.remove(SIMULATION_SECTION);
        let net: Network =
            toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| invalid(e.message().to_string()))?;
        if net.raidas.is_empty() {
            return Err(invalid("no [[raida]] entries".into()));
        }
        let mut seen = [false; 25];
        for r in &net.raidas {
            let slot = seen.get_mut(r.id as usize).ok_or_else(|| invalid(format!("RAIDA id {} is not 0..24", r.id)))?;
            if *slot {
                return Err(invalid(format!("RAIDA id {} is listed twice", r.id)));
            }
            *slot = true;
            split_host_port(&r.address).map_err(|e| invalid(format!("RAIDA {}: {e}", r.id)))?;
        }
        for r in &net.relays {
            split_host_port(&r.address).map_err(|e| invalid(format!("relay {}: {e}", r.address)))?;
        }
        Ok(net)
    }

    /// Read `network.toml` (or any file of that format).
    pub fn load(path: &Path) -> Result<Network, NetworkError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| NetworkError::Read { path: path.display().to_string(), source })?;
        Network::from_toml(&text, &path.display().to_string())
    }

    /// The description as TOML (what [`Network::load`] reads).
    pub fn to_toml(&self) -> String {
        let mut out = format!("# RAIDA network: coin id and the RAIDAs (id, HOST:PORT)\ncoin_id = {}\n", self.coin_id);
        for r in &self.raidas {
            out.push_str(&format!("\n[[raida]]\nid = {}\naddress = \"{}\"\n", r.id, r.address));
            if r.legacy {
                out.push_str("legacy = true\n");
            }
        }
        for r in &self.relays {
            out.push_str(&format!("\n[[relays]]\naddress = \"{}\"\n", r.address));
        }
        out
    }

    /// A majority of the network file's RAIDAs (13 of 25): the fewest parts a key may have
    /// (PROTOCOL.md section 9). With fewer, one dishonest RAIDA answering Get Key for a
    /// forged one-part alert could pose as any sender.
    pub fn majority(&self) -> usize {
        majority_of(self.raidas.len())
    }

    /// The relays' addresses, in the order they are tried.
    pub fn relay_addresses(&self) -> Vec<String> {
        self.relays.iter().map(|r| r.address.clone()).collect()
    }

    /// The entry of RAIDA `id`.
    pub fn raida(&self, id: u8) -> Option<&RaidaEntry> {
        self.raidas.iter().find(|r| r.id == id)
    }

    /// Resolve every RAIDA's address now (host names looked up at use). A name that does
    /// not resolve is an error naming that RAIDA.
    pub async fn resolve(&self) -> Result<Vec<ResolvedRaida>, NetworkError> {
        let lookups = self.raidas.iter().map(|r| async move {
            resolve_address(&r.address)
                .await
                .map(|addr| ResolvedRaida::new(r.id, addr, r.legacy))
                .map_err(|source| NetworkError::Resolve { id: r.id, source })
        });
        futures_util::future::join_all(lookups).await.into_iter().collect()
    }
}

/// A RAIDA whose address was resolved: a RAIDA of a network file, or a key server of a
/// server's config.toml (`raida_server::KeyServer`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResolvedRaida {
    pub server: Server,
    /// Speaks no modern type: fetch with EN 1 under the identity coin's AN, not EN 4.
    pub legacy: bool,
}

impl ResolvedRaida {
    pub fn new(raida_id: u8, addr: SocketAddr, legacy: bool) -> ResolvedRaida {
        ResolvedRaida { server: Server { addr, raida_id }, legacy }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_checks() {
        let net = Network {
            coin_id: 6,
            raidas: vec![
                RaidaEntry { id: 0, address: "127.0.0.1:50000".into(), legacy: false },
                RaidaEntry { id: 3, address: "localhost:50003".into(), legacy: true },
            ],
            relays: vec![RelayEntry { address: "relay.example.net:50025".into() }],
        };
        assert_eq!(Network::from_toml(&net.to_toml(), "n").unwrap(), net);
        let bad = |t: &str| Network::from_toml(t, "n").unwrap_err().to_string();
        assert!(bad("coin_id = 6\n").contains("no [[raida]]"));
        assert!(bad("[[raida]]\nid = 25\naddress = \"a:1\"\n").contains("0..24"));
        assert!(bad("[[raida]]\nid = 1\naddress = \"a:1\"\n[[raida]]\nid = 1\naddress = \"b:2\"\n").contains("twice"));
        assert!(bad("[[raida]]\nid = 1\naddress = \"nohost\"\n").contains("HOST:PORT"));
        assert!(bad("[[raida]]\nid = 1\naddress = \"a:1\"\nport = 3\n").contains("unknown field"));
        assert!(
            bad("[[raida]]\nid = 1\naddress = \"a:1\"\n[[relays]]\naddress = \"norelay\"\n").contains("relay norelay")
        );
        // a file with `raida network up`'s simulation section is a network file all the same
        let with_sim =
            format!("{}\n[simulation]\nloss = 5.0\n[[simulation.raida]]\nid = 3\nfault = \"down\"\n", net.to_toml());
        assert_eq!(Network::from_toml(&with_sim, "n").unwrap(), net);
        assert!(bad("[[raida]]\nid = 1\naddress = \"a:1\"\n[simulations]\n").contains("simulations"));
        // a file without relays has none
        assert!(Network::from_toml("[[raida]]\nid = 1\naddress = \"a:1\"\n", "n").unwrap().relays.is_empty());
    }

    #[tokio::test]
    async fn host_names_resolve_at_use() {
        let net = Network::from_toml("[[raida]]\nid = 2\naddress = \"localhost:50002\"\n", "n").unwrap();
        let r = net.resolve().await.unwrap();
        assert_eq!(r[0].server.raida_id, 2);
        assert!(r[0].server.addr.ip().is_loopback());
        assert_eq!(r[0].server.addr.port(), 50002);
    }
}
