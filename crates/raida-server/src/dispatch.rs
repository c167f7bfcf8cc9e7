//! The two-level dispatch table: group (0..=13) × command (0..=255), resolved in O(1).

use std::net::SocketAddr;
use std::sync::Arc;

use raida_proto::codec::Request;
use raida_proto::commands::decrypt_raida_key::{DecryptRaidaKey, DECRYPT_RECORD};
use raida_proto::commands::echo::Echo;
use raida_proto::commands::encrypt_key::EncryptKey;
use raida_proto::commands::get_key::GetKey;
use raida_proto::commands::get_ticket::{self, GetTicket};
use raida_proto::commands::key_alert::KeyAlert;
use raida_proto::commands::leave_alert::LeaveAlert;
use raida_proto::commands::post_key::PostKey;
use raida_proto::commands::show_stats::ShowStats;
use raida_proto::commands::take_alerts::TakeAlerts;
use raida_proto::commands::validate_ticket::ValidateTicket;
use raida_proto::commands::version::Version;
use raida_proto::header::CommandSet;
use raida_proto::Status;
use tokio_util::task::TaskTracker;

use crate::cmd;
use crate::limits::{DeferredLimits, WorkKind};
use crate::state::{Answer, Call, Deferred, Reply, ServerState, Transport};

/// Records beyond which Get Ticket and Decrypt RAIDA Key run on the blocking pool under
/// the heavy-command limit: each record may load a page from disk, and thousands of them
/// (64 ms for 3,000) on a receiving thread delay every other client's answers.
pub const HEAVY_RECORDS: usize = 64;

/// How a command runs: answered now, on the thread that received it, or later, through a
/// [`Reply`]. Whatever its kind, a call whose payload is above its command's `heavy_above`
/// is deferred as [`WorkKind::Heavy`].
#[derive(Clone, Copy)]
pub enum Handler {
    /// Cheap and non-blocking: answered on the receiving thread.
    Now(fn(&ServerState, &Call) -> Answer),
    /// Answered through its [`Reply`], exactly once, from whichever thread finishes the
    /// work (e.g. the one leading the fsync that makes it durable). The [`WorkKind`] is the
    /// limit it counts against, and says where it starts ([`Deferred::start`]).
    Deferred(WorkKind, fn(Arc<ServerState>, Call, Reply)),
}

impl Handler {
    /// Run the handler; its answer goes to `reply` (at once for [`Handler::Now`]).
    pub fn start(self, state: Arc<ServerState>, call: Call, reply: Reply) {
        match self {
            Handler::Now(f) => reply.send(f(&state, &call)),
            Handler::Deferred(_, f) => f(state, call, reply),
        }
    }
}

/// The answer to one decoded call, from the handler the state's table holds for its
/// command (a deferred one waited for on this thread): the function the server runs,
/// without sockets, limits, heavy routing or encryption (what the vector tests and the
/// benches drive). A command not in the table: 2 (as validation answers). Not for Key
/// Alert, whose task needs a runtime this call would block: await
/// [`cmd::key_alert::answer`] instead; and Take Alerts over TCP with `wait` > 0 only
/// outside a runtime (there it is answered as if `wait` had passed; inside one its held
/// task would wait for the thread this call blocks).
pub fn answer(state: &Arc<ServerState>, call: &Call) -> Answer {
    let Some(handler) = state.dispatch.get(call.header.command_group, call.header.command) else {
        return Answer::status(Status::InvalidCommand);
    };
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let reply = Reply::new(move |answer| {
        let _ = tx.send(answer);
    });
    handler.start(state.clone(), call.clone(), reply);
    // a reply dropped unsent (its continuation panicked) is what the server answers 252
    rx.recv().unwrap_or_else(|_| Answer::status(Status::Internal))
}

/// Where deferred commands run and what bounds them; one for UDP and TCP together.
pub struct DeferredWork {
    /// Per-kind limits (each with its per-address share).
    pub limits: Arc<DeferredLimits>,
    /// Runs Key Alert's tasks and the heavy commands (its blocking pool).
    pub runtime: tokio::runtime::Handle,
    /// Shutdown waits for every deferred command started.
    pub tracker: TaskTracker,
}

/// What [`DeferredWork::route`] did with a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routed {
    /// Started: its answer goes to `send` when done.
    Started,
    /// Its kind (or the address's share of it) is full: the 160 answer is in `out`.
    Answered,
    /// Its kind is full and the 160 answer is beyond the address's error rate (UDP): nothing.
    Dropped,
}

impl DeferredWork {
    /// THE path of a deferred command, for UDP and TCP alike: a slot of its kind's limit
    /// (within the address's share), else 160 into `out` now; then started where its kind
    /// runs ([`Deferred::start`]). `send` gets the finished answer once it may go to the
    /// peer (over UDP an error answer beyond the address's rate is dropped and counted);
    /// the slot is free by then, and shutdown waits until then.
    pub fn route(
        &self,
        state: &Arc<ServerState>,
        transport: Transport,
        peer: SocketAddr,
        deferred: Box<Deferred>,
        out: &mut Vec<u8>,
        send: impl FnOnce(Vec<u8>) + Send + 'static,
    ) -> Routed {
        let Some(permit) = self.limits.try_acquire(deferred.kind(), peer.ip()) else {
            if !state.may_answer(transport, peer, Status::RequestRate) {
                state.stats.dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Routed::Dropped;
            }
            deferred.reject(state, Status::RequestRate, out);
            return Routed::Answered;
        };
        let in_flight = self.tracker.token();
        let st = state.clone();
        deferred.start(state.clone(), &self.runtime, move |status, answer| {
            drop(permit);
            if st.may_answer(transport, peer, status) {
                send(answer);
            } else {
                st.stats.dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            drop(in_flight);
        });
        Routed::Started
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
/// docs/operating.md derive from it, and `tests/registry.rs` fails if it differs from PROTOCOL.md
/// section 6. Adding a command is one line here (plus its codec type and handler file).
pub const COMMANDS: &[CommandSpec] = &[
    command::<Echo>(Handler::Now(cmd::echo::run)),
    command::<Version>(Handler::Now(cmd::version::run)),
    command::<ShowStats>(Handler::Now(cmd::show_stats::run)),
    heavy_above(command::<GetTicket>(Handler::Now(cmd::get_ticket::run)), HEAVY_RECORDS * get_ticket::RECORD),
    command::<ValidateTicket>(Handler::Now(cmd::validate_ticket::run)),
    command::<PostKey>(Handler::Deferred(WorkKind::Durable, cmd::post_key::run)),
    command::<KeyAlert>(Handler::Deferred(WorkKind::KeyAlert, cmd::key_alert::run)),
    command::<GetKey>(Handler::Deferred(WorkKind::Durable, cmd::get_key::run)),
    command::<EncryptKey>(Handler::Now(cmd::encrypt_key::run)),
    heavy_above(
        command::<DecryptRaidaKey>(Handler::Deferred(WorkKind::Durable, cmd::decrypt_raida_key::run)),
        5 + HEAVY_RECORDS * DECRYPT_RECORD,
    ),
    command::<LeaveAlert>(Handler::Now(cmd::leave_alert::run)),
    command::<TakeAlerts>(Handler::Deferred(WorkKind::LongPoll, cmd::take_alerts::run)),
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
