//! Mailbox delivery (PROTOCOL.md section 9, commands 6/46 and 6/47): a receiver with no open
//! port is named by its coin alone. The sender leaves its alert with 46 Leave Alert on the
//! receiver's seven mailbox RAIDAs ([`leave_alert`]); the receiver long-polls all seven with
//! 47 Take Alerts over TCP ([`MailboxPoller`]), so an alert reaches it within one round
//! trip, and treats copies of one alert id as one.
//!
//! Every request is EN 4 under the caller's own coin: a mailbox RAIDA vouches for the
//! sender (the coin the Leave Alert was encrypted with), and only the receiver can take
//! its alerts.

use std::collections::HashSet;
use std::time::Duration;

use raida_net::network::ResolvedRaida;
use raida_proto::client::ClientKey;
use raida_proto::commands::leave_alert::LeaveAlert;
use raida_proto::commands::take_alerts::{TakeAlerts, WaitingAlert, MAX_WAIT};
use raida_proto::mailbox::mailbox_raidas;
use raida_proto::{CoinId, Status};
use raida_store::wallet::Wallet;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::rke::{status_hint, PostFailure};
use crate::{Client, ClientError, Transport};

/// The receiver's mailbox RAIDAs that `raidas` (the network file's, resolved) hold and
/// that speak EN 4, in the order of section 9.
pub fn mailbox_servers(receiver: CoinId, raidas: &[ResolvedRaida]) -> Vec<ResolvedRaida> {
    mailbox_raidas(receiver)
        .iter()
        .filter_map(|id| raidas.iter().find(|r| r.server.raida_id == *id && !r.legacy).copied())
        .collect()
}

/// Where one alert was left.
#[derive(Debug, Default)]
pub struct Delivery {
    /// Mailbox RAIDAs that took it, by id.
    pub accepted: Vec<u8>,
    /// Those that did not, and why.
    pub failures: Vec<PostFailure>,
}

/// 46 Leave Alert on every mailbox RAIDA of `alert.receiver`, in parallel: over TCP, then
/// once over UDP when TCP failed before any answer. A 201 (this alert id already waits
/// there: an earlier copy of ours arrived) counts as taken.
pub async fn leave_alert(
    coin_id: u16,
    raidas: &[ResolvedRaida],
    wallet: &Wallet,
    alert: &LeaveAlert,
    timeout: Duration,
) -> Delivery {
    let servers = mailbox_servers(alert.receiver, raidas);
    let tries = servers.iter().map(|r| async move {
        let id = r.server.raida_id;
        let Some(key) = wallet.en4_key(id) else {
            return (r, Err("the wallet has no AN for this RAIDA id".to_string()));
        };
        let mut result = Client::new(Transport::Tcp, coin_id, timeout).call(r.server, &key, alert).await;
        if matches!(&result, Err(e) if e.status().is_none()) {
            result = Client::new(Transport::Udp, coin_id, timeout).call(r.server, &key, alert).await;
        }
        let outcome = match result {
            Ok(_) => Ok(()),
            Err(e) if e.status() == Some(Status::FileExists) => Ok(()),
            Err(e) => Err(match e.status() {
                Some(Status::InvalidSnOrDenomination) => {
                    format!("the receiver's coin {} is not registered on RAIDA {id} (check its DN:SN)", alert.receiver)
                }
                Some(Status::MemoryAlloc) => format!("RAIDA {id}: the receiver's mailbox is full"),
                Some(s) => status_hint(s, id, wallet.name()),
                None => e.to_string(),
            }),
        };
        (r, outcome)
    });
    let mut delivery = Delivery::default();
    for (r, outcome) in futures_util::future::join_all(tries).await {
        match outcome {
            Ok(()) => delivery.accepted.push(r.server.raida_id),
            Err(reason) => {
                delivery.failures.push(PostFailure { raida_id: r.server.raida_id, addr: r.server.addr, reason })
            }
        }
    }
    delivery
}

/// What the poller of one mailbox RAIDA reports.
#[derive(Debug)]
pub enum MailboxEvent {
    /// An alert, as that RAIDA handed it out (copies come from several RAIDAs, and again
    /// from one RAIDA for 30 s after it first handed it out).
    Alert { raida_id: u8, alert: WaitingAlert },
    /// A poll failed; the poller waits and tries again.
    Failed { raida_id: u8, reason: String },
}

/// Long polls of the receiver's mailbox RAIDAs, one task each, until dropped.
pub struct MailboxPoller {
    rx: mpsc::Receiver<MailboxEvent>,
    _tasks: JoinSet<()>,
    /// The mailbox RAIDAs polled.
    pub raida_ids: Vec<u8>,
}

/// The longest pause between two polls of one RAIDA after failures.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

impl MailboxPoller {
    /// Start polling every mailbox RAIDA of the wallet's coin found in `raidas`.
    pub fn start(coin_id: u16, raidas: &[ResolvedRaida], wallet: &Wallet) -> MailboxPoller {
        let servers = mailbox_servers(wallet.name(), raidas);
        let (tx, rx) = mpsc::channel(64);
        let mut tasks = JoinSet::new();
        let mut raida_ids = Vec::new();
        for r in servers {
            let Some(key) = wallet.en4_key(r.server.raida_id) else { continue };
            raida_ids.push(r.server.raida_id);
            tasks.spawn(poll(coin_id, r, key, tx.clone()));
        }
        MailboxPoller { rx, _tasks: tasks, raida_ids }
    }

    /// The next event (pending forever when no RAIDA is polled).
    pub async fn next(&mut self) -> MailboxEvent {
        match self.rx.recv().await {
            Some(e) => e,
            None => std::future::pending().await,
        }
    }
}

/// Poll one RAIDA: 47 with the longest wait over TCP; alerts go to `tx`. An answer whose
/// alerts were all seen already (the RAIDA hands an alert out again for 30 s) is followed
/// by a short pause, so that repeats cannot turn the long poll into a busy loop.
async fn poll(coin_id: u16, r: ResolvedRaida, key: ClientKey, tx: mpsc::Sender<MailboxEvent>) {
    let raida_id = r.server.raida_id;
    // the RAIDA holds the request up to MAX_WAIT seconds: allow for that and a round trip
    let client = Client::new(Transport::Tcp, coin_id, Duration::from_secs(u64::from(MAX_WAIT) + 10));
    let mut seen: HashSet<[u8; 16]> = HashSet::new();
    let mut backoff = Duration::from_millis(500);
    loop {
        match client.call(r.server, &key, &TakeAlerts { wait: MAX_WAIT }).await {
            Ok(answer) => {
                backoff = Duration::from_millis(500);
                let mut fresh = false;
                for alert in answer.alerts {
                    fresh |= seen.insert(alert.alert_id);
                    if tx.send(MailboxEvent::Alert { raida_id, alert }).await.is_err() {
                        return;
                    }
                }
                if seen.len() > 4096 {
                    seen.clear();
                }
                // a RAIDA holds the poll until something new arrives; one that answers at
                // once with copies only (another implementation) must not make this a
                // busy loop
                if !fresh && !seen.is_empty() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            Err(e) => {
                let reason = match &e {
                    ClientError::Response { .. } => e.status().map(|s| s.to_string()).unwrap_or_else(|| e.to_string()),
                    _ => e.to_string(),
                };
                if tx.send(MailboxEvent::Failed { raida_id, reason }).await.is_err() {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}
