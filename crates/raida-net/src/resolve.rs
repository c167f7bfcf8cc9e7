//! The one `HOST:PORT` resolver of the workspace: network files, command-line flags,
//! `[[key_servers]]` of a server's config.toml. An IP address is used as it is; a host name
//! is looked up (within a bounded time when async) and its first IPv4 address preferred.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// How long resolving one host name may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a `HOST:PORT` (or a host) gave no socket address.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// No `:PORT`, or an empty host, or port 0.
    #[error("{0:?} is not HOST:PORT")]
    NotHostPort(String),
    /// The port is not a number 1..65535.
    #[error("{0:?}: the port must be 1..65535")]
    BadPort(String),
    /// The resolver did not answer within the bound.
    #[error("cannot resolve {0:?}: no answer from the resolver")]
    Timeout(String),
    /// The resolver failed (unknown name, no network, ...).
    #[error("cannot resolve {name:?}: {source}")]
    Lookup { name: String, source: std::io::Error },
    /// The name exists but has no address.
    #[error("{0:?} resolves to no address")]
    NoAddress(String),
}

/// Split `HOST:PORT` (host may be `[v6]`), checking the port.
pub fn split_host_port(address: &str) -> Result<(&str, u16), ResolveError> {
    let not_host_port = || ResolveError::NotHostPort(address.to_string());
    let (host, port) = address.rsplit_once(':').ok_or_else(not_host_port)?;
    let port: u16 = port.parse().map_err(|_| ResolveError::BadPort(address.to_string()))?;
    if port == 0 || host.is_empty() {
        return Err(not_host_port());
    }
    Ok((host, port))
}

/// The address to use of those a name resolves to: the first IPv4 one, else the first.
fn prefer_ipv4(all: impl IntoIterator<Item = SocketAddr>) -> Option<SocketAddr> {
    let all: Vec<SocketAddr> = all.into_iter().collect();
    all.iter().find(|a| a.is_ipv4()).or(all.first()).copied()
}

/// Resolve `HOST:PORT` to one socket address (IPv4 preferred), within a bounded time.
pub async fn resolve_address(address: &str) -> Result<SocketAddr, ResolveError> {
    if let Ok(a) = address.parse::<SocketAddr>() {
        return Ok(a);
    }
    split_host_port(address)?;
    let found = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host(address))
        .await
        .map_err(|_| ResolveError::Timeout(address.to_string()))?
        .map_err(|source| ResolveError::Lookup { name: address.to_string(), source })?;
    prefer_ipv4(found).ok_or_else(|| ResolveError::NoAddress(address.to_string()))
}

/// Resolve `HOST:PORT` on the calling thread (no runtime needed): for command-line
/// flags, parsed before any runtime starts. IPv4 preferred, as [`resolve_address`].
pub fn resolve_address_blocking(address: &str) -> Result<SocketAddr, ResolveError> {
    if let Ok(a) = address.parse::<SocketAddr>() {
        return Ok(a);
    }
    let (host, port) = split_host_port(address)?;
    resolve_host_blocking(host, port)
}

/// Resolve a host (IP address, `[v6]` or host name) and a port on the calling thread,
/// IPv4 preferred: `[[key_servers]]` of config.toml give the two apart.
pub fn resolve_host_blocking(host: &str, port: u16) -> Result<SocketAddr, ResolveError> {
    if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let found =
        (host, port).to_socket_addrs().map_err(|source| ResolveError::Lookup { name: host.to_string(), source })?;
    prefer_ipv4(found).ok_or_else(|| ResolveError::NoAddress(host.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_take_host_names_as_well_as_addresses() {
        assert_eq!(resolve_address_blocking("127.0.0.1:7").unwrap(), "127.0.0.1:7".parse().unwrap());
        assert_eq!(resolve_address_blocking("[::1]:7").unwrap(), "[::1]:7".parse().unwrap());
        let local = resolve_address_blocking("localhost:7").unwrap();
        assert!(local.ip().is_loopback() && local.port() == 7, "{local}");
        assert!(
            matches!(resolve_address_blocking("localhost"), Err(ResolveError::NotHostPort(_))),
            "a port is required"
        );
        assert!(matches!(resolve_address_blocking("localhost:0"), Err(ResolveError::NotHostPort(_))));
        assert!(matches!(resolve_address_blocking("localhost:x"), Err(ResolveError::BadPort(_))));
        let unknown = resolve_address_blocking("no-such-host.invalid:7").unwrap_err();
        assert!(unknown.to_string().contains("no-such-host.invalid"), "{unknown}");
    }

    #[tokio::test]
    async fn async_resolution_names_the_address_it_could_not_resolve() {
        assert_eq!(resolve_address("[::1]:7").await.unwrap(), "[::1]:7".parse().unwrap());
        assert!(resolve_address("localhost:7").await.unwrap().ip().is_loopback());
        let e = resolve_address("no-such-host.invalid:7").await.unwrap_err();
        assert!(e.to_string().starts_with("cannot resolve \"no-such-host.invalid:7\""), "{e}");
    }
}
