//! 4/47 Take Alerts: the receiver takes the alerts waiting for it. Payload `[wait 1]`
//! (seconds, 0..30); answer `[count 1]` then `count` records `[sender DN 1][sender SN 4]
//! [age 2][alert id 16][NU 1][NH 1][parts 33 × NU][hints 20 × NH]`, oldest first.

use super::ids;
use super::leave_alert::{AlertBody, PART};
use crate::codec::{put_coin, Codec, Reader, Reply, Request};
use crate::coin::CoinId;
use crate::status::Status;

/// The longest a request may be held over TCP, in seconds (above → 16).
pub const MAX_WAIT: u8 = 30;
/// Over UDP an answer carries as many alerts as fit in this many payload bytes (the count
/// byte included), at least one.
pub const UDP_PAYLOAD_BUDGET: usize = 1200;
/// Over TCP an answer carries up to this many alerts.
pub const TCP_MAX_ALERTS: usize = 16;
/// A record's bytes before its `[NU][NH]`: sender 5, age 2, alert id 16.
pub const RECORD_FIXED: usize = 23;
/// The smallest record: one part, no hint.
const MIN_RECORD: usize = RECORD_FIXED + 2 + PART;

/// The Take Alerts request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TakeAlerts {
    /// Seconds to hold the request over TCP while nothing is waiting (0 over UDP).
    pub wait: u8,
}

impl Codec for TakeAlerts {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.wait);
    }
    /// A size other than 1, or a wait above 30 → 16.
    fn read(r: &mut Reader<'_>) -> Result<Self, Status> {
        let wait = r.u8()?;
        if wait > MAX_WAIT {
            return Err(Status::InvalidPacketLength);
        }
        Ok(TakeAlerts { wait })
    }
}

impl Request for TakeAlerts {
    const GROUP: u8 = ids::GROUP_KEY_EXCHANGE;
    const COMMAND: u8 = ids::TAKE_ALERTS;
    const NAME: &'static str = "take_alerts";
    type Answer = TakeAlertsAnswer;
}

/// One alert as the receiver gets it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WaitingAlert {
    /// The coin the mailbox RAIDA vouches for: the Leave Alert's key identity.
    pub sender: CoinId,
    /// Seconds since it was left (saturating).
    pub age: u16,
    pub alert_id: [u8; 16],
    pub body: AlertBody,
}

impl WaitingAlert {
    /// Its bytes in an answer.
    pub fn len(&self) -> usize {
        RECORD_FIXED + self.body.len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

impl Codec for WaitingAlert {
    fn encode(&self, out: &mut Vec<u8>) {
        put_coin(out, self.sender);
        out.extend_from_slice(&self.age.to_be_bytes());
        out.extend_from_slice(&self.alert_id);
        self.body.encode(out);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, Status> {
        let sender = r.coin()?;
        let age = r.u16()?;
        let alert_id = r.array()?;
        Ok(WaitingAlert { sender, age, alert_id, body: AlertBody::read(r, false)? })
    }
}

/// The answer: the alerts, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TakeAlertsAnswer {
    pub alerts: Vec<WaitingAlert>,
}

impl TakeAlertsAnswer {
    /// How many of `waiting` (oldest first) one answer carries: over UDP the longest prefix
    /// whose payload, count byte included, is at most [`UDP_PAYLOAD_BUDGET`] bytes (at least
    /// one, if any wait); over TCP up to [`TCP_MAX_ALERTS`].
    pub fn fits<'a>(waiting: impl IntoIterator<Item = &'a WaitingAlert>, udp: bool) -> usize {
        let mut n = 0;
        let mut size = 1;
        for a in waiting {
            if udp {
                size += a.len();
                if n > 0 && size > UDP_PAYLOAD_BUDGET {
                    break;
                }
            } else if n == TCP_MAX_ALERTS {
                break;
            }
            n += 1;
        }
        n
    }
}

impl Codec for TakeAlertsAnswer {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.alerts.len().min(255) as u8);
        self.alerts.iter().for_each(|a| a.encode(out));
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, Status> {
        let count = r.u8()? as usize;
        // a count beyond what the bytes left can hold is 16 before any allocation
        if count * MIN_RECORD > r.left() {
            return Err(Status::InvalidPacketLength);
        }
        Ok(TakeAlertsAnswer { alerts: r.records(count)? })
    }
}

impl Reply for TakeAlertsAnswer {}
