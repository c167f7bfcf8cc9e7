pub mod bench;
pub mod channel;
pub mod coin;
pub mod errors;
pub mod identity;
pub mod inbox;
pub mod init;
pub mod key;
pub mod locker;
pub mod network;
pub mod progress;
pub mod receive;
pub mod secret;
pub mod selfcheck;
pub mod send;
pub mod serve;
pub mod stats;
pub mod status;
pub mod token;
pub mod wallet;

/// A `HOST:PORT` flag: an IP address or a host name (resolved once, here; IPv4 preferred).
pub fn host_port(s: &str) -> Result<std::net::SocketAddr, String> {
    raida_client::network::resolve_address_blocking(s)
}

/// The tokio runtime `raida serve` and `raida network up` run their servers on (2 workers:
/// UDP has its own threads, the runtime carries TCP and deferred commands).
pub fn server_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("raida-worker")
        .build()
        .context("cannot start the runtime")
}
