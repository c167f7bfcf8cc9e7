//! The two-level dispatch table: group (0..=13) × command (0..=255), resolved in O(1).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use raida_proto::commands::ids::*;
use raida_proto::header::CommandSet;

use crate::cmd;
use crate::limits::WorkKind;
use crate::state::{Answer, Call, ServerState};

/// Records beyond which Get Ticket and Decrypt RAIDA Key run on the blocking pool under
/// the heavy-command limit: each record may load a page from disk, and thousands of them
/// (64 ms for 3,000) on a receiving thread delay every other client's answers.
pub const HEAVY_RECORDS: usize = 64;

/// A boxed future answering one call.
pub type AnswerFuture = Pin<Box<dyn Future<Output = Answer> + Send>>;

/// How a command runs.
#[derive(Clone, Copy)]
pub enum Handler {
    /// Cheap and non-blocking: runs on the receiving thread.
    Inline(fn(&ServerState, &Call) -> Answer),
    /// Waits for the disk (fsync): runs on the blocking pool.
    Blocking(fn(&ServerState, &Call) -> Answer),
    /// Talks to the network: runs as an async task.
    Async(fn(Arc<ServerState>, Call) -> AnswerFuture),
}

impl Handler {
    /// The limit a deferred handler counts against (inline ones only when heavy).
    pub fn work_kind(&self) -> WorkKind {
        match self {
            Handler::Async(_) => WorkKind::KeyAlert,
            Handler::Blocking(_) | Handler::Inline(_) => WorkKind::Durable,
        }
    }
}

/// group × command → handler.
pub struct DispatchTable {
    table: Vec<[Option<Handler>; 256]>,
    /// Payload bytes above which a command runs on the blocking pool as heavy work.
    heavy_above: Vec<[Option<usize>; 256]>,
}

impl DispatchTable {
    pub fn empty() -> Self {
        DispatchTable { table: vec![[None; 256]; 14], heavy_above: vec![[None; 256]; 14] }
    }

    /// Every command of PROTOCOL.md section 6.
    pub fn standard() -> Self {
        let mut t = DispatchTable::empty();
        t.insert(GROUP_STATUS, ECHO, Handler::Inline(cmd::echo::run));
        t.insert(GROUP_STATUS, VERSION, Handler::Inline(cmd::version::run));
        t.insert(GROUP_STATUS, SHOW_STATS, Handler::Inline(cmd::show_stats::run));
        t.insert(GROUP_HEALING, GET_TICKET, Handler::Inline(cmd::get_ticket::run));
        t.insert(GROUP_HEALING, VALIDATE_TICKET, Handler::Inline(cmd::validate_ticket::run));
        t.insert(GROUP_KEY_EXCHANGE, POST_KEY, Handler::Blocking(cmd::post_key::run));
        t.insert(GROUP_KEY_EXCHANGE, KEY_ALERT, Handler::Async(cmd::key_alert::run));
        t.insert(GROUP_KEY_EXCHANGE, GET_KEY, Handler::Blocking(cmd::get_key::run));
        t.insert(GROUP_KEY_EXCHANGE, ENCRYPT_KEY, Handler::Inline(cmd::encrypt_key::run));
        t.insert(GROUP_KEY_EXCHANGE, DECRYPT_RAIDA_KEY, Handler::Blocking(cmd::decrypt_raida_key::run));
        t.set_heavy_above(GROUP_HEALING, GET_TICKET, HEAVY_RECORDS * raida_proto::commands::get_ticket::RECORD);
        t.set_heavy_above(
            GROUP_KEY_EXCHANGE,
            DECRYPT_RAIDA_KEY,
            5 + HEAVY_RECORDS * raida_proto::commands::key_tickets::DECRYPT_RECORD,
        );
        t
    }

    /// A payload longer than `bytes` makes this command heavy work: it runs on the
    /// blocking pool, counted against the heavy-command limit.
    pub fn set_heavy_above(&mut self, group: u8, command: u8, bytes: usize) {
        if let Some(row) = self.heavy_above.get_mut(group as usize) {
            row[command as usize] = Some(bytes);
        }
    }

    /// Whether a call with `payload_len` bytes is heavy work.
    #[inline]
    pub fn is_heavy(&self, group: u8, command: u8, payload_len: usize) -> bool {
        self.heavy_above.get(group as usize).and_then(|row| row[command as usize]).is_some_and(|b| payload_len > b)
    }

    pub fn insert(&mut self, group: u8, command: u8, handler: Handler) {
        if let Some(row) = self.table.get_mut(group as usize) {
            row[command as usize] = Some(handler);
        }
    }

    #[inline]
    pub fn get(&self, group: u8, command: u8) -> Option<Handler> {
        self.table.get(group as usize).and_then(|row| row[command as usize])
    }
}

impl CommandSet for DispatchTable {
    #[inline]
    fn contains(&self, group: u8, command: u8) -> bool {
        self.get(group, command).is_some()
    }
}
