//! # raida-server
//!
//! The RAIDA server: a thin shell of sockets (`udp.rs`, `tcp.rs`) around the sans-IO
//! protocol core (`raida-proto`) and the data directory (`raida-store`). One request's
//! path: socket → [`ServerState::handle`] (framing, header rules, key, body, replay)
//! → [`dispatch::DispatchTable`] → `cmd/<command>.rs` → answer → socket.

pub mod blocking;
pub mod cmd;
pub mod dispatch;
pub mod inbox;
pub mod key_servers;
pub mod ledger;
pub mod limits;
pub mod local_network;
pub mod metrics;
pub mod pending_keys;
pub mod reload;
pub mod server;
pub mod state;
pub mod stats;
pub mod tcp;
pub mod tickets;
pub mod udp;

pub use server::{RunningServer, ServerBuilder, ServerLimits, ShutdownError};
pub use state::{Answer, Call, KeyAlertSettings, KeyServer, ServerState, ServerStateBuilder};
