//! The two-level dispatch table: group (0..=13) × command (0..=255), resolved in O(1).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use raida_proto::codec::Request;
use raida_proto::commands::decrypt_raida_key::{DecryptRaidaKey, DECRYPT_RECORD};
use raida_proto::commands::echo::Echo;
use raida_proto::commands::encrypt_key::EncryptKey;
use raida_proto::commands::get_key::GetKey;
use raida_proto::commands::get_ticket::{self, GetTicket};
use raida_proto::commands::key_alert::KeyAlert;
use raida_proto::commands::post_key::PostKey;
use raida_proto::commands::show_stats::ShowStats;
use raida_proto::commands::validate_ticket::ValidateTicket;
use raida_proto::commands::version::Version;
use raida_proto::header::CommandSet;

use crate::cmd;
use crate::limits::WorkKind;
use crate::state::{Answer, Call, Reply, ServerState};

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
    /// Waits for the disk (fsync): runs on the durable-write threads ([`crate::blocking`]),
    /// or on tokio's blocking pool when heavy.
    Blocking(fn(&ServerState, &Call) -> Answer),
    /// A durable write that answers through its [`Reply`] once durable, from whichever
    /// thread leads the fsync that covers it (its own thread is free at once): runs on the
    /// durable-write threads ([`crate::blocking`]).
    Durable(fn(Arc<ServerState>, &Call, Reply)),
    /// Talks to the network: runs as an async task.
    Async(fn(Arc<ServerState>, Call) -> AnswerFuture),
}

impl Handler {
    /// The limit a deferred handler counts against (inline ones only when heavy).
    pub fn work_kind(&self) -> WorkKind {
        match self {
            Handler::Async(_) => WorkKind::KeyAlert,
            Handler::Blocking(_) | Handler::Inline(_) | Handler::Durable(_) => WorkKind::Durable,
        }
    }
}

/// One command of PROTOCOL.md section 6: its numbers, its name (the name of its codec file
/// `raida-proto/src/commands/<name>.rs` and of its handler file `cmd/<name>.rs`), how it
/// runs, and from which payload size it is heavy work.
#[derive(Clone, Copy)]
pub struct CommandSpec {
    pub group: u8,
    pub command: u8,
    pub name: &'static str,
    pub handler: Handler,
    /// Payload bytes above which the command runs on the blocking pool as heavy work.
    pub heavy_above: Option<usize>,
}

/// The registry line of the command whose request type is `R`: its numbers and name come
/// from the request type.
const fn command<R: Request>(handler: Handler) -> CommandSpec {
    CommandSpec { group: R::GROUP, command: R::COMMAND, name: R::NAME, handler, heavy_above: None }
}

const fn heavy_above(mut c: CommandSpec, bytes: usize) -> CommandSpec {
    c.heavy_above = Some(bytes);
    c
}

/// THE list of commands: the dispatch table, Show Stats, `raida selfcheck`, the tests and
/// the README derive from it, and `tests/registry.rs` fails if it differs from PROTOCOL.md
/// section 6. Adding a command is one line here (plus its codec type and handler file).
pub const COMMANDS: &[CommandSpec] = &[
    command::<Echo>(Handler::Inline(cmd::echo::run)),
    command::<Version>(Handler::Inline(cmd::version::run)),
    command::<ShowStats>(Handler::Inline(cmd::show_stats::run)),
    heavy_above(command::<GetTicket>(Handler::Inline(cmd::get_ticket::run)), HEAVY_RECORDS * get_ticket::RECORD),
    command::<ValidateTicket>(Handler::Inline(cmd::validate_ticket::run)),
    command::<PostKey>(Handler::Durable(cmd::post_key::run_durable)),
    command::<KeyAlert>(Handler::Async(cmd::key_alert::run)),
    command::<GetKey>(Handler::Durable(cmd::get_key::run_durable)),
    command::<EncryptKey>(Handler::Inline(cmd::encrypt_key::run)),
    heavy_above(
        command::<DecryptRaidaKey>(Handler::Blocking(cmd::decrypt_raida_key::run)),
        5 + HEAVY_RECORDS * DECRYPT_RECORD,
    ),
];

/// group × command → handler.
pub struct DispatchTable {
    table: Vec<[Option<Handler>; 256]>,
    /// Payload bytes above which a command runs on the blocking pool as heavy work.
    heavy_above: Vec<[Option<usize>; 256]>,
    /// (group, command) of every entry, in the order inserted (Show Stats lists them).
    listed: Vec<(u8, u8)>,
}

impl DispatchTable {
    pub fn empty() -> Self {
        DispatchTable { table: vec![[None; 256]; 14], heavy_above: vec![[None; 256]; 14], listed: Vec::new() }
    }

    /// Every command of [`COMMANDS`].
    pub fn standard() -> Self {
        let mut t = DispatchTable::empty();
        for c in COMMANDS {
            t.insert(c.group, c.command, c.handler);
            if let Some(bytes) = c.heavy_above {
                t.set_heavy_above(c.group, c.command, bytes);
            }
        }
        t
    }

    /// (group, command) of every command in the table, in registry order.
    pub fn commands(&self) -> impl Iterator<Item = (u8, u8)> + '_ {
        self.listed.iter().copied()
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
            if row[command as usize].is_none() {
                self.listed.push((group, command));
            }
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
