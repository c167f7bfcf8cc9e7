//! 4/42 Key Alert: fetch each part of a key with Get Key from the configured key
//! servers only (never anywhere else), all in parallel over one socket within one timeout,
//! assemble in entry order, require the final 0xFF (the receiver core shared with `raida
//! key receive`, [`raida_net::key_fetch`]), store in the inbox.
//!
//! Hops are modern: with an identity coin configured, every Get Key is EN 4 under
//! SHA-256 of the coin's AN for that RAIDA (EN 1 with the AN only for a key server marked
//! legacy), and the part comes back under AES-256-GCM bound to the request's nonce. A
//! configured identity that does not load answers 197 and fetches nothing: never a reason
//! to fetch unauthenticated. With no identity configured, parts are fetched with EN 0.
//!
//! Cost of one alert, whatever its entries: one UDP socket per address family, one small
//! receive buffer, one request per distinct (key server, key id). Every check that needs
//! no fetch comes first: the inbox (201, 254), the identity (197), an entry naming a key
//! server the configuration does not list (242: the whole alert, nothing fetched), and the
//! budget of Get Keys per minute (`key_alert_fetches_per_minute`, 160 beyond it: each fetch
//! is made under the identity coin, whose replay share on every other RAIDA a flood of
//! alerts would otherwise spend). Log lines are rate-limited per kind.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use raida_net::key_fetch::{fetch_and_assemble, Assembled, PartSource};
use raida_proto::client::ClientKey;
use raida_proto::commands::key_alert::{AlertEntry, KeyAlert, KeyAlertAnswer};
use raida_proto::consts::AnsPerRaida;
use raida_proto::{CoinId, IdentityCoin};
use raida_proto::{Key16, Key32, Status};
use zeroize::Zeroizing;

use super::{decode, Ctx};
use crate::inbox::{InboxError, InboxKey, Refusal};
use crate::state::{Answer, Call, KeyServer, Reply, ServerState};

/// Whether an entry names a configured key server (same IP version, address, port, RAIDA id).
pub fn may_contact(servers: &[KeyServer], e: &AlertEntry) -> Option<KeyServer> {
    let ip = e.ip()?;
    servers.iter().copied().find(|s| s.server.addr == (ip, e.port).into() && s.server.raida_id == e.raida_id)
}

/// It waits for other servers: it runs as an async task of its own, started here (in the
/// runtime's context, [`crate::state::Deferred::start`]), answered through `reply` when done.
pub fn run(state: Arc<ServerState>, call: Call, reply: Reply) {
    tokio::spawn(async move { reply.send(answer(state, call).await) });
}

/// The answer to one alert.
pub async fn answer(state: Arc<ServerState>, call: Call) -> Answer {
    let (req, ctx) = match decode::<KeyAlert>(&call) {
        Ok(r) => r,
        Err(a) => return a,
    };
    drop(call);
    match alert(state, ctx, req).await {
        Ok(map) => super::reply(map),
        Err(s) => s.into(),
    }
}

/// How this server authenticates its Get Key requests.
enum Auth {
    /// No identity configured: EN 0.
    Anonymous,
    /// The identity coin's 25 ANs (wiped when the alert is done).
    Coin { identity: IdentityCoin, ans: Box<Zeroizing<AnsPerRaida>> },
}

impl Auth {
    /// The key for one key server; None when the identity has no AN for its RAIDA id (the
    /// part then fails: never a fallback to EN 0).
    fn key_for(&self, ks: &KeyServer) -> Option<ClientKey> {
        match self {
            Auth::Anonymous => Some(ClientKey::None),
            Auth::Coin { identity: IdentityCoin(coin), ans } => {
                let an = Key16::new(*ans.get(ks.server.raida_id as usize)?);
                Some(if ks.legacy {
                    ClientKey::Coin { coin: *coin, an }
                } else {
                    ClientKey::Token { coin: *coin, key: Key32::sha256_of_an(&an) }
                })
            }
        }
    }
}

async fn load_identity(state: &Arc<ServerState>) -> Result<Auth, Status> {
    let Some(identity) = state.key_alert_settings().identity else { return Ok(Auth::Anonymous) };
    let CoinId { dn, sn } = identity.0;
    let st = state.clone();
    // reading coins/<dn>.<sn>.bin is disk I/O: off the async workers
    match tokio::task::spawn_blocking(move || st.ledger.identity_coin(identity)).await {
        Ok(Ok(Some(ans))) => Ok(Auth::Coin { identity, ans: Box::new(Zeroizing::new(ans)) }),
        // missing, malformed or unreadable: 197 either way, never an unauthenticated fetch
        Ok(Ok(None) | Err(_)) => {
            if let Some(suppressed) = LOG_IDENTITY.pass() {
                tracing::warn!(dn, sn, suppressed, "key alert: the configured identity coin does not load: 197");
            }
            Err(Status::CoinLoad)
        }
        Err(e) => {
            tracing::error!(error = %e, "key alert: identity task failed");
            Err(Status::Internal)
        }
    }
}

async fn alert(state: Arc<ServerState>, ctx: Ctx, req: KeyAlert) -> Result<KeyAlertAnswer, Status> {
    let entries = req.entries;
    let Some(first) = entries.first().map(|e| e.key_id) else { return Err(Status::InvalidPacketLength) };
    // an inbox key is never replaced, and the inbox is bounded: refuse before fetching
    if let Err(refusal) = state.inbox.admit(&first, ctx.now) {
        log_refusal(refusal);
        return Err(refusal.status());
    }
    let auth = load_identity(&state).await?;
    let settings = state.key_alert_settings();

    // an entry naming an unlisted key server fails the whole alert before any fetch: an
    // honest sender names only the network's RAIDAs
    if let Some(i) = entries.iter().position(|e| may_contact(&settings.key_servers, e).is_none()) {
        if let Some(suppressed) = LOG_UNLISTED.pass() {
            tracing::info!(part = i, suppressed, "key alert: an entry names an unlisted key server: 242");
        }
        return Ok(KeyAlertAnswer { status: Status::AllFail, map: [0; 16] });
    }
    // each distinct (key server, key id) is fetched once; duplicates share its result
    let mut distinct: Vec<(KeyServer, [u8; 16])> = Vec::new();
    let mut sources: Vec<PartSource> = Vec::new();
    let slots: Vec<Option<usize>> = entries
        .iter()
        .map(|e| {
            let ks = may_contact(&settings.key_servers, e)?;
            if let Some(i) = distinct.iter().position(|d| d.0 == ks && d.1 == e.key_id) {
                return Some(i);
            }
            let key = auth.key_for(&ks)?;
            distinct.push((ks, e.key_id));
            sources.push(PartSource { server: ks.server, key, key_id: e.key_id });
            Some(sources.len() - 1)
        })
        .collect();
    drop(auth);
    let granted =
        state.key_alert_fetches.lock().take_with_limit(ctx.now, settings.fetches_per_minute, sources.len() as u32);
    if let Err(over) = granted {
        if let Some(suppressed) = LOG_BUDGET.pass() {
            tracing::warn!(%over, suppressed, "key alert: Get Key budget spent (key_alert_fetches_per_minute): 160");
        }
        return Err(Status::RequestRate);
    }
    let Assembled { status, map, key, senders, failures, .. } =
        fetch_and_assemble(state.identity.coin_id, sources, &slots, settings.timeout).await;
    for (_, error) in &failures {
        if let Some(suppressed) = LOG_PART.pass() {
            tracing::info!(%error, suppressed, "key alert: part not fetched");
        }
    }
    if let Some(mut key) = key {
        let stored = InboxKey {
            key_id: first,
            created: ctx.now,
            senders: senders.into_iter().flatten().collect(),
            // moved, not copied: the one buffer is wiped when the InboxKey drops
            key: std::mem::take(&mut *key),
        };
        let st = state.clone();
        let result = tokio::task::spawn_blocking(move || st.inbox.store(&stored)).await;
        match result {
            Ok(Ok(())) => {}
            // another alert stored this key id, or filled the inbox, while this one fetched
            Ok(Err(InboxError::Exists)) => return Err(refused(Refusal::Exists)),
            Ok(Err(InboxError::Full)) => return Err(refused(Refusal::Full)),
            Ok(Err(e)) => {
                if let Some(suppressed) = LOG_STORE.pass() {
                    tracing::error!(error = %e, suppressed, "key alert: cannot store the assembled key");
                }
                return Err(Status::Filesystem);
            }
            Err(e) => {
                tracing::error!(error = %e, "key alert: store task failed");
                return Err(Status::Internal);
            }
        }
    }
    Ok(KeyAlertAnswer { status, map })
}

fn refused(refusal: Refusal) -> Status {
    log_refusal(refusal);
    refusal.status()
}

fn log_refusal(refusal: Refusal) {
    match refusal {
        Refusal::Exists => {
            if let Some(suppressed) = LOG_EXISTS.pass() {
                tracing::info!(suppressed, "key alert: the first key id is already in the inbox: 201");
            }
        }
        Refusal::Full => {
            if let Some(suppressed) = LOG_FULL.pass() {
                tracing::warn!(suppressed, "key alert: the inbox is full (inbox_max_keys): 254");
            }
        }
    }
}

static LOG_IDENTITY: LogGate = LogGate::new();
static LOG_PART: LogGate = LogGate::new();
static LOG_STORE: LogGate = LogGate::new();
static LOG_EXISTS: LogGate = LogGate::new();
static LOG_FULL: LogGate = LogGate::new();
static LOG_UNLISTED: LogGate = LogGate::new();
static LOG_BUDGET: LogGate = LogGate::new();

/// At most one log line per second for one kind of event: alerts come from anyone (EN 0),
/// so a flood of them must not flood the log. The line that passes reports how many were
/// suppressed since the previous one.
pub struct LogGate {
    /// Milliseconds since [`log_clock_start`] before which nothing passes.
    next_ms: AtomicU64,
    suppressed: AtomicU64,
}

fn log_clock_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis().min(u64::MAX as u128) as u64
}

impl LogGate {
    pub const INTERVAL_MS: u64 = 1000;

    pub const fn new() -> LogGate {
        LogGate { next_ms: AtomicU64::new(0), suppressed: AtomicU64::new(0) }
    }

    /// Some(events suppressed since the last line) if a line may be written now.
    pub fn pass(&self) -> Option<u64> {
        let now = log_clock_ms();
        let next = self.next_ms.load(Ordering::Relaxed);
        if now >= next
            && self
                .next_ms
                .compare_exchange(next, now + Self::INTERVAL_MS, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

impl Default for LogGate {
    fn default() -> Self {
        LogGate::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_gate_passes_one_line_per_interval_and_counts_the_rest() {
        let gate = LogGate::new();
        let started = Instant::now();
        let mut passed = Vec::new();
        for _ in 0..100_000 {
            if let Some(s) = gate.pass() {
                passed.push(s);
            }
        }
        let intervals = started.elapsed().as_millis() as u64 / LogGate::INTERVAL_MS;
        assert!(!passed.is_empty() && passed.len() as u64 <= intervals + 1, "{} lines", passed.len());
        let suppressed = gate.suppressed.load(Ordering::Relaxed) + passed.iter().sum::<u64>();
        assert_eq!(suppressed + passed.len() as u64, 100_000, "every event is a line or counted");
    }
}
