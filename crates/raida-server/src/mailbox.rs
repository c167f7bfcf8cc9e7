//! The mailbox of 46 Leave Alert and 47 Take Alerts (PROTOCOL.md 6/46, 6/47, section 9).
//!
//! [`Mailbox`] is the sans-IO core: alerts per receiver, oldest first, with every bound of
//! 6/46; the time is passed in and nothing here reads a clock, sleeps or touches a socket.
//! [`SharedMailbox`] is what the server holds: the core under one lock, and the long polls
//! of 47 over TCP (held per address and in total, woken when an alert for their receiver
//! arrives, cancelled at shutdown).
//!
//! Memory is bounded by the configured total: an alert is at most 23 + 16 × 33 + 4 × 20 =
//! 631 bytes of payload (plus its index entries), and no more than `max_alerts` of them
//! exist at once, answered ones included.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use parking_lot::Mutex;
use raida_proto::commands::leave_alert::AlertBody;
use raida_proto::commands::take_alerts::{TakeAlertsAnswer, WaitingAlert};
use raida_proto::mailbox::{
    DEFAULT_ALERT_TTL_SECS, HELD_PER_ADDRESS, PER_PAIR, PER_RECEIVER, PER_SENDER, REPEAT_SECONDS,
};
use raida_proto::{CoinId, Status};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Default of `mailbox_max_alerts`: at most about 80 MB of alerts (631 bytes of payload
/// and some 170 of bookkeeping each).
pub const DEFAULT_MAX_ALERTS: usize = 100_000;
/// Default of `mailbox_max_held_polls`.
pub const DEFAULT_MAX_HELD_POLLS: usize = 1_000;
/// Longest `alert_ttl_seconds`: an alert's age travels in 2 bytes.
pub const MAX_ALERT_TTL_SECS: u64 = u16::MAX as u64;

/// The mailbox's settings (config.toml `alert_ttl_seconds`, `mailbox_max_alerts`,
/// `mailbox_max_held_polls`; all reloadable).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MailboxSettings {
    /// How long an alert waits (at most [`MAX_ALERT_TTL_SECS`]). A change applies to
    /// alerts left from then on.
    pub alert_ttl_secs: u64,
    /// Alerts in the mailbox at once, answered ones included (then 254).
    pub max_alerts: usize,
    /// 47s held over TCP at once, all addresses together (then 160).
    pub max_held_polls: usize,
}

impl MailboxSettings {
    /// The settings of config.toml.
    pub fn from_config(c: &raida_store::Config) -> MailboxSettings {
        MailboxSettings {
            alert_ttl_secs: c.alert_ttl_seconds,
            max_alerts: c.mailbox_max_alerts,
            max_held_polls: c.mailbox_max_held_polls,
        }
    }
}

impl Default for MailboxSettings {
    fn default() -> Self {
        MailboxSettings {
            alert_ttl_secs: DEFAULT_ALERT_TTL_SECS,
            max_alerts: DEFAULT_MAX_ALERTS,
            max_held_polls: DEFAULT_MAX_HELD_POLLS,
        }
    }
}

/// One alert as it waits.
#[derive(Debug)]
struct Alert {
    sender: CoinId,
    receiver: CoinId,
    alert_id: [u8; 16],
    body: AlertBody,
    left_at: u64,
    /// When it was first carried by an answer to 47.
    answered_at: Option<u64>,
    /// The last second it is still there: left + TTL, or earlier once answered.
    until: u64,
}

/// Why a Leave Alert was refused, or what became of one (the metrics' labels).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// 40: the receiver coin is not present here.
    NotPresent,
    /// 201: an alert with that id is waiting for that receiver.
    SameAlertId,
    /// 254: the receiver holds [`PER_RECEIVER`] alerts.
    ReceiverFull,
    /// 160: the sender coin has [`PER_SENDER`] alerts waiting.
    SenderFull,
    /// 254: the mailbox holds its configured total.
    MailboxFull,
    /// 160 to a 47: the address holds [`HELD_PER_ADDRESS`] polls, or all addresses
    /// `max_held_polls`.
    HeldFull,
}

impl Refusal {
    pub const ALL: [Refusal; 6] = [
        Refusal::NotPresent,
        Refusal::SameAlertId,
        Refusal::ReceiverFull,
        Refusal::SenderFull,
        Refusal::MailboxFull,
        Refusal::HeldFull,
    ];

    /// The status answered.
    pub fn status(self) -> Status {
        match self {
            Refusal::NotPresent => Status::InvalidSnOrDenomination,
            Refusal::SameAlertId => Status::FileExists,
            Refusal::ReceiverFull | Refusal::MailboxFull => Status::MemoryAlloc,
            Refusal::SenderFull | Refusal::HeldFull => Status::RequestRate,
        }
    }

    /// The metrics' label.
    pub fn name(self) -> &'static str {
        match self {
            Refusal::NotPresent => "not_present",
            Refusal::SameAlertId => "same_alert_id",
            Refusal::ReceiverFull => "receiver_full",
            Refusal::SenderFull => "sender_full",
            Refusal::MailboxFull => "mailbox_full",
            Refusal::HeldFull => "held_full",
        }
    }

    fn index(self) -> usize {
        Refusal::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// The mailbox's counters (metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MailboxStats {
    /// Alerts in the mailbox now (answered ones included until they go).
    pub alerts: usize,
    /// Alerts accepted by 46.
    pub left: u64,
    /// Alerts carried by an answer to 47 for the first time.
    pub taken: u64,
    /// Alerts that went unanswered after `alert_ttl_seconds`.
    pub expired: u64,
    /// Alerts replaced by a newer one of the same (sender, receiver) pair.
    pub replaced: u64,
    /// Refusals, indexed like [`Refusal::ALL`].
    pub refused: [u64; 6],
    /// 47s held now.
    pub held: usize,
}

impl MailboxStats {
    pub fn refused(&self, why: Refusal) -> u64 {
        self.refused[why.index()]
    }
}

/// The sans-IO mailbox: every bound of 6/46 and the expiry and repeat rules of 6/47.
#[derive(Debug)]
pub struct Mailbox {
    settings: MailboxSettings,
    /// Every alert by its sequence number (the order alerts were left in).
    alerts: HashMap<u64, Alert>,
    /// A receiver's alerts, oldest first.
    by_receiver: HashMap<CoinId, VecDeque<u64>>,
    /// Alerts per sender coin, across receivers.
    per_sender: HashMap<CoinId, usize>,
    /// (last second, sequence number): what expires first comes first.
    deadlines: BTreeSet<(u64, u64)>,
    next: u64,
    stats: MailboxStats,
}

impl Mailbox {
    pub fn new(settings: MailboxSettings) -> Mailbox {
        Mailbox {
            settings,
            alerts: HashMap::new(),
            by_receiver: HashMap::new(),
            per_sender: HashMap::new(),
            deadlines: BTreeSet::new(),
            next: 0,
            stats: MailboxStats::default(),
        }
    }

    pub fn settings(&self) -> MailboxSettings {
        self.settings
    }

    /// New settings: the total applies to the next alert (alerts over a lowered total stay
    /// until they go), the TTL to alerts left from now on.
    pub fn set_settings(&mut self, settings: MailboxSettings) {
        self.settings = MailboxSettings { alert_ttl_secs: settings.alert_ttl_secs.min(MAX_ALERT_TTL_SECS), ..settings };
    }

    /// Alerts in the mailbox (answered ones included until they go), as of the last call.
    pub fn len(&self) -> usize {
        self.alerts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.alerts.is_empty()
    }

    /// Alerts of one receiver (as of the last call).
    pub fn for_receiver(&self, receiver: CoinId) -> usize {
        self.by_receiver.get(&receiver).map_or(0, VecDeque::len)
    }

    /// Alerts of one sender across receivers (as of the last call).
    pub fn from_sender(&self, sender: CoinId) -> usize {
        self.per_sender.get(&sender).copied().unwrap_or(0)
    }

    /// Alerts of one (sender, receiver) pair (as of the last call).
    pub fn pair(&self, sender: CoinId, receiver: CoinId) -> usize {
        self.by_receiver
            .get(&receiver)
            .map_or(0, |q| q.iter().filter(|s| self.alerts.get(s).is_some_and(|a| a.sender == sender)).count())
    }

    pub fn stats(&self) -> MailboxStats {
        MailboxStats { alerts: self.alerts.len(), ..self.stats }
    }

    /// Count a refusal decided outside the core (40, held polls).
    pub fn count_refusal(&mut self, why: Refusal) {
        self.stats.refused[why.index()] += 1;
    }

    /// 46 once the receiver is known to be present: 201 for an alert id already waiting
    /// for that receiver; then the bounds in the order of 6/46: a pair's third alert
    /// replaces that pair's oldest; else 254 at [`PER_RECEIVER`], 160 at [`PER_SENDER`],
    /// 254 at the configured total.
    pub fn leave(
        &mut self,
        sender: CoinId,
        receiver: CoinId,
        alert_id: [u8; 16],
        body: AlertBody,
        now: u64,
    ) -> Result<(), Refusal> {
        self.expire(now);
        let r = self.refusal(sender, receiver, &alert_id);
        if let Err(why) = r {
            self.count_refusal(why);
            return Err(why);
        }
        let same_pair: Vec<u64> = self
            .by_receiver
            .get(&receiver)
            .map(|q| q.iter().copied().filter(|s| self.alerts.get(s).is_some_and(|a| a.sender == sender)).collect())
            .unwrap_or_default();
        if same_pair.len() >= PER_PAIR {
            // the pair's oldest goes: the counts stay as they are
            self.remove(same_pair[0]);
            self.stats.replaced += 1;
        }
        let seq = self.next;
        self.next += 1;
        let until = now.saturating_add(self.settings.alert_ttl_secs);
        self.alerts.insert(seq, Alert { sender, receiver, alert_id, body, left_at: now, answered_at: None, until });
        self.by_receiver.entry(receiver).or_default().push_back(seq);
        *self.per_sender.entry(sender).or_insert(0) += 1;
        self.deadlines.insert((until, seq));
        self.stats.left += 1;
        Ok(())
    }

    /// The rule that refuses this alert, if one does (the pair rule never refuses).
    fn refusal(&self, sender: CoinId, receiver: CoinId, alert_id: &[u8; 16]) -> Result<(), Refusal> {
        let mine = self.by_receiver.get(&receiver);
        let mut pair = 0;
        for a in mine.into_iter().flatten().filter_map(|s| self.alerts.get(s)) {
            if a.alert_id == *alert_id {
                return Err(Refusal::SameAlertId);
            }
            pair += usize::from(a.sender == sender);
        }
        if pair >= PER_PAIR {
            return Ok(());
        }
        if mine.map_or(0, VecDeque::len) >= PER_RECEIVER {
            return Err(Refusal::ReceiverFull);
        }
        if self.from_sender(sender) >= PER_SENDER {
            return Err(Refusal::SenderFull);
        }
        if self.alerts.len() >= self.settings.max_alerts {
            return Err(Refusal::MailboxFull);
        }
        Ok(())
    }

    /// Whether an alert no answer has carried yet waits for `receiver` at `now` (what ends
    /// a long poll: copies kept for a repeat do not, or a receiver polling again at once
    /// would get the same alerts in a loop for 30 s; they come along with the next answer).
    pub fn has_new_alerts(&mut self, receiver: CoinId, now: u64) -> bool {
        self.expire(now);
        self.by_receiver
            .get(&receiver)
            .is_some_and(|q| q.iter().any(|s| self.alerts.get(s).is_some_and(|a| a.answered_at.is_none())))
    }

    /// 47: the receiver's alerts, oldest first, as many as one answer carries over UDP
    /// (1,200 payload bytes, at least one) or TCP (16). Each carried alert not answered
    /// before is now answered: it stays [`REPEAT_SECONDS`] more (never beyond its TTL), so
    /// a repeated 47 gets it again.
    pub fn take(&mut self, receiver: CoinId, now: u64, udp: bool) -> TakeAlertsAnswer {
        self.expire(now);
        let Some(queue) = self.by_receiver.get(&receiver) else { return TakeAlertsAnswer::default() };
        let seqs: Vec<u64> = queue.iter().copied().collect();
        let waiting: Vec<WaitingAlert> = seqs
            .iter()
            .filter_map(|s| self.alerts.get(s))
            .map(|a| WaitingAlert {
                sender: a.sender,
                age: now.saturating_sub(a.left_at).min(u64::from(u16::MAX)) as u16,
                alert_id: a.alert_id,
                body: a.body.clone(),
            })
            .collect();
        let n = TakeAlertsAnswer::fits(&waiting, udp);
        for seq in &seqs[..n.min(seqs.len())] {
            if let Some(a) = self.alerts.get_mut(seq) {
                if a.answered_at.is_none() {
                    a.answered_at = Some(now);
                    let until = a.until.min(now.saturating_add(REPEAT_SECONDS));
                    self.deadlines.remove(&(a.until, *seq));
                    a.until = until;
                    self.deadlines.insert((until, *seq));
                    self.stats.taken += 1;
                }
            }
        }
        let mut alerts = waiting;
        alerts.truncate(n);
        TakeAlertsAnswer { alerts }
    }

    /// Remove every alert whose last second is before `now`.
    pub fn expire(&mut self, now: u64) {
        while let Some(&(until, seq)) = self.deadlines.first() {
            if until >= now {
                break;
            }
            if self.alerts.get(&seq).is_some_and(|a| a.answered_at.is_none()) {
                self.stats.expired += 1;
            }
            self.remove(seq);
        }
    }

    fn remove(&mut self, seq: u64) {
        let Some(a) = self.alerts.remove(&seq) else { return };
        self.deadlines.remove(&(a.until, seq));
        if let Some(q) = self.by_receiver.get_mut(&a.receiver) {
            q.retain(|s| *s != seq);
            if q.is_empty() {
                self.by_receiver.remove(&a.receiver);
            }
        }
        if let Some(n) = self.per_sender.get_mut(&a.sender) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_sender.remove(&a.sender);
            }
        }
    }
}

/// The held 47s: per address, in total, and who waits for which receiver.
#[derive(Debug, Default)]
struct Holds {
    per_addr: HashMap<IpAddr, usize>,
    total: usize,
    /// A receiver's wake-up and how many polls wait on it.
    waiting: HashMap<CoinId, (Arc<Notify>, usize)>,
}

/// The server's mailbox: the [`Mailbox`] under one lock, and the long polls of 47.
pub struct SharedMailbox {
    core: Mutex<Mailbox>,
    holds: Arc<Mutex<Holds>>,
    max_held: Arc<AtomicU64>,
    /// Cancelled at shutdown: every held poll answers at once (a fresh one when a server
    /// starts on this state again).
    shutdown: Mutex<CancellationToken>,
}

impl SharedMailbox {
    pub fn new(settings: MailboxSettings) -> SharedMailbox {
        SharedMailbox {
            core: Mutex::new(Mailbox::new(settings)),
            holds: Arc::default(),
            max_held: Arc::new(AtomicU64::new(settings.max_held_polls as u64)),
            shutdown: Mutex::new(CancellationToken::new()),
        }
    }

    /// The core, locked (tests and metrics).
    pub fn core(&self) -> parking_lot::MutexGuard<'_, Mailbox> {
        self.core.lock()
    }

    pub fn settings(&self) -> MailboxSettings {
        self.core.lock().settings()
    }

    /// New settings (a SIGHUP reload): see [`Mailbox::set_settings`]; a lowered
    /// `max_held_polls` lets the polls held finish.
    pub fn set_settings(&self, settings: MailboxSettings) {
        self.core.lock().set_settings(settings);
        self.max_held.store(settings.max_held_polls as u64, Relaxed);
    }

    pub fn stats(&self) -> MailboxStats {
        let held = self.holds.lock().total;
        MailboxStats { held, ..self.core.lock().stats() }
    }

    /// 47s held now.
    pub fn held(&self) -> usize {
        self.holds.lock().total
    }

    /// [`Mailbox::leave`], then wake the polls held for that receiver.
    pub fn leave(
        &self,
        sender: CoinId,
        receiver: CoinId,
        alert_id: [u8; 16],
        body: AlertBody,
        now: u64,
    ) -> Result<(), Refusal> {
        self.core.lock().leave(sender, receiver, alert_id, body, now)?;
        let wake = self.holds.lock().waiting.get(&receiver).map(|(n, _)| n.clone());
        if let Some(n) = wake {
            n.notify_waiters();
        }
        Ok(())
    }

    pub fn refuse(&self, why: Refusal) {
        self.core.lock().count_refusal(why);
    }

    pub fn take(&self, receiver: CoinId, now: u64, udp: bool) -> TakeAlertsAnswer {
        self.core.lock().take(receiver, now, udp)
    }

    pub fn has_new_alerts(&self, receiver: CoinId, now: u64) -> bool {
        self.core.lock().has_new_alerts(receiver, now)
    }

    /// A slot to hold one 47 from `addr` for `receiver`: at most [`HELD_PER_ADDRESS`]
    /// per address (an IPv6 /64 counts as one) and `max_held_polls` in all, else 160
    /// (counted).
    pub fn hold(&self, addr: IpAddr, receiver: CoinId) -> Result<Held, Refusal> {
        let addr = poll_source(addr);
        let mut h = self.holds.lock();
        let mine = h.per_addr.get(&addr).copied().unwrap_or(0);
        if mine >= HELD_PER_ADDRESS || h.total as u64 >= self.max_held.load(Relaxed) {
            drop(h);
            self.refuse(Refusal::HeldFull);
            return Err(Refusal::HeldFull);
        }
        *h.per_addr.entry(addr).or_insert(0) += 1;
        h.total += 1;
        let entry = h.waiting.entry(receiver).or_insert_with(|| (Arc::new(Notify::new()), 0));
        entry.1 += 1;
        let notify = entry.0.clone();
        Ok(Held { holds: self.holds.clone(), addr, receiver, notify, shutdown: self.shutdown.lock().clone() })
    }

    /// Shutdown: every held poll answers now, and none is held from then on.
    pub fn cancel_holds(&self) {
        self.shutdown.lock().cancel();
    }

    /// Whether [`SharedMailbox::cancel_holds`] was called (and no server started since).
    pub fn is_shut_down(&self) -> bool {
        self.shutdown.lock().is_cancelled()
    }

    /// A server starts on this state: polls may be held again.
    pub fn reopen(&self) {
        let mut t = self.shutdown.lock();
        if t.is_cancelled() {
            *t = CancellationToken::new();
        }
    }
}

/// Where held polls are counted: an IPv4 address (IPv4-mapped IPv6 included), or the /64
/// of an IPv6 address (one IPv6 host commonly holds a whole /64, so single addresses would
/// bound nothing; as for anonymous posts).
fn poll_source(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mut o = v6.octets();
            o[8..].fill(0);
            IpAddr::V6(o.into())
        }
        v4 => v4,
    }
}

/// One held 47: its slot (freed on drop) and what wakes it.
pub struct Held {
    holds: Arc<Mutex<Holds>>,
    addr: IpAddr,
    receiver: CoinId,
    notify: Arc<Notify>,
    shutdown: CancellationToken,
}

impl Held {
    /// Wakes when an alert for the receiver arrives (create it, enable it, then look at
    /// the mailbox, then await it: an alert left in between still wakes it).
    pub fn notify(&self) -> &Arc<Notify> {
        &self.notify
    }

    /// Cancelled at shutdown.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut h = self.holds.lock();
        h.total = h.total.saturating_sub(1);
        if let Some(n) = h.per_addr.get_mut(&self.addr) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                h.per_addr.remove(&self.addr);
            }
        }
        if let Some((_, n)) = h.waiting.get_mut(&self.receiver) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                h.waiting.remove(&self.receiver);
            }
        }
    }
}

/// Bytes of one alert's payload at most: what `mailbox_max_alerts` multiplies.
pub const MAX_ALERT_BYTES: usize = raida_proto::commands::leave_alert::FIXED
    + raida_proto::commands::leave_alert::MAX_PARTS * raida_proto::commands::leave_alert::PART
    + raida_proto::commands::leave_alert::MAX_HINTS * raida_proto::commands::leave_alert::HINT;

#[cfg(test)]
mod tests {
    use super::*;
    use raida_proto::commands::leave_alert::MailboxPart;

    fn body() -> AlertBody {
        AlertBody { parts: vec![MailboxPart { raida_id: 1, key_id: [1; 16], commitment: [2; 16] }], hints: vec![] }
    }
    fn coin(sn: u32) -> CoinId {
        CoinId { dn: 1, sn }
    }

    #[test]
    fn held_polls_count_per_ipv4_address_and_per_ipv6_64() {
        let m = SharedMailbox::new(MailboxSettings::default());
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let six: Vec<_> = (0..8).filter_map(|i| m.hold(ip(&format!("2001:db8::{i}")), coin(1)).ok()).collect();
        assert_eq!(six.len(), HELD_PER_ADDRESS, "one /64");
        assert!(m.hold(ip("2001:db8:0:1::1"), coin(1)).is_ok(), "another /64");
        let v4: Vec<_> = (0..8).filter_map(|_| m.hold(ip("::ffff:192.0.2.1"), coin(2)).ok()).collect();
        assert_eq!(v4.len(), HELD_PER_ADDRESS);
        assert!(m.hold(ip("192.0.2.1"), coin(2)).is_err(), "IPv4-mapped is IPv4");
        assert!(m.hold(ip("192.0.2.2"), coin(2)).is_ok());
    }

    #[test]
    fn an_alert_is_631_bytes_at_most() {
        assert_eq!(MAX_ALERT_BYTES, 631);
    }

    #[test]
    fn answered_alerts_stay_30_s_and_never_beyond_their_ttl() {
        let mut m = Mailbox::new(MailboxSettings { alert_ttl_secs: 100, ..Default::default() });
        m.leave(coin(1), coin(2), [1; 16], body(), 1000).unwrap();
        assert_eq!(m.take(coin(2), 1010, true).alerts.len(), 1);
        assert_eq!(m.take(coin(2), 1040, true).alerts.len(), 1, "30 s after the first answer");
        assert_eq!(m.take(coin(2), 1041, true).alerts.len(), 0);
        m.leave(coin(1), coin(2), [2; 16], body(), 2000).unwrap();
        assert_eq!(m.take(coin(2), 2090, false).alerts.len(), 1);
        assert_eq!(m.take(coin(2), 2100, false).alerts.len(), 1, "its TTL");
        assert_eq!(m.take(coin(2), 2101, false).alerts.len(), 0);
        let s = m.stats();
        assert_eq!((s.left, s.taken, s.expired, s.alerts), (2, 2, 0, 0));
        m.leave(coin(1), coin(2), [3; 16], body(), 3000).unwrap();
        m.expire(3101);
        assert_eq!(m.stats().expired, 1);
        assert!(m.is_empty() && m.by_receiver.is_empty() && m.per_sender.is_empty() && m.deadlines.is_empty());
    }
}
