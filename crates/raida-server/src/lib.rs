//! # raida-server
//!
//! The RAIDA server: a thin shell of sockets (`udp.rs`, `tcp.rs`) around the sans-IO
//! protocol core (`raida-proto`) and the data directory (`raida-store`). One request's
//! path: socket → [`ServerState::handle`] (framing, header rules, key, body, replay)
//! → [`dispatch::DispatchTable`] → `cmd/<command>.rs` → answer → socket.

mod blocking;
pub mod cmd;
pub mod dispatch;
pub mod inbox;
mod key_servers;
pub mod ledger;
mod limits;
pub mod local_network;
pub mod mailbox;
mod metrics;
pub mod pending_keys;
pub mod relay;
pub mod reload;
mod server;
mod state;
mod stats;
mod tcp;
mod tickets;
mod udp;

// The curated surface: the modules above that are not `pub` are the server's own, and
// what other crates (the CLI, tests, benches, fuzz) need of them is named here.
pub use limits::{descriptor_reserve, WorkKind};
pub use server::{RunningServer, ServerBuilder, ServerError, ServerLimits, ShutdownError};
pub use state::{
    system_clock, Answer, Call, Clock, KeyAlertSettings, KeyServer, Outcome, Reply, ServerState, ServerStateBuilder,
    Transport,
};
pub use stats::Stats;
pub use tickets::TicketPool;
