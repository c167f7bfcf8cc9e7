//! The two-level dispatch table: group (0..=13) × command (0..=255), resolved in O(1).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use raida_proto::commands::ids::*;
use raida_proto::header::CommandSet;

use crate::cmd;
use crate::state::{Answer, Call, ServerState};

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

/// group × command → handler.
pub struct DispatchTable {
    table: Vec<[Option<Handler>; 256]>,
}

impl DispatchTable {
    pub fn empty() -> Self {
        DispatchTable { table: vec![[None; 256]; 14] }
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
        t
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
