//! Payload codecs, one file per command (named after it): request and answer types of
//! section 6, each a [`Codec`](crate::codec::Codec). Handlers in the server see these typed
//! values, never raw offsets.

use crate::header::CommandSet;

/// Command groups and numbers of section 6.
pub mod ids {
    pub const GROUP_STATUS: u8 = 0;
    pub const ECHO: u8 = 0;
    pub const VERSION: u8 = 1;
    pub const SHOW_STATS: u8 = 2;
    pub const GROUP_HEALING: u8 = 2;
    pub const GET_TICKET: u8 = 40;
    pub const VALIDATE_TICKET: u8 = 50;
    pub const GROUP_KEY_EXCHANGE: u8 = 4;
    pub const POST_KEY: u8 = 41;
    pub const KEY_ALERT: u8 = 42;
    pub const GET_KEY: u8 = 43;
    pub const ENCRYPT_KEY: u8 = 44;
    pub const DECRYPT_RAIDA_KEY: u8 = 45;
}

/// Every (group, command) pair PROTOCOL.md section 6 defines, for sans-IO users that have
/// no server (this crate's tests, benches and fuzz targets). The server's registry
/// (`raida_server::dispatch::COMMANDS`) is the list; its test `registry.rs` fails if this
/// mirror differs from it or from PROTOCOL.md.
pub const SPEC_COMMANDS: [(u8, u8); 10] = [
    (ids::GROUP_STATUS, ids::ECHO),
    (ids::GROUP_STATUS, ids::VERSION),
    (ids::GROUP_STATUS, ids::SHOW_STATS),
    (ids::GROUP_HEALING, ids::GET_TICKET),
    (ids::GROUP_HEALING, ids::VALIDATE_TICKET),
    (ids::GROUP_KEY_EXCHANGE, ids::POST_KEY),
    (ids::GROUP_KEY_EXCHANGE, ids::KEY_ALERT),
    (ids::GROUP_KEY_EXCHANGE, ids::GET_KEY),
    (ids::GROUP_KEY_EXCHANGE, ids::ENCRYPT_KEY),
    (ids::GROUP_KEY_EXCHANGE, ids::DECRYPT_RAIDA_KEY),
];

/// The dispatch table of section 6 as a [`CommandSet`].
#[derive(Clone, Copy, Debug, Default)]
pub struct SpecCommands;

impl CommandSet for SpecCommands {
    fn contains(&self, group: u8, command: u8) -> bool {
        SPEC_COMMANDS.contains(&(group, command))
    }
}

pub mod decrypt_raida_key;
pub mod echo;
pub mod encrypt_key;
pub mod get_key;
pub mod get_ticket;
pub mod key_alert;
pub mod key_tickets;
pub mod post_key;
pub mod show_stats;
pub mod status_group;
pub mod validate_ticket;
pub mod version;
