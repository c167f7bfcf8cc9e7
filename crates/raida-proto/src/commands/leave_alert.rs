//! 4/46 Leave Alert: a sender leaves a key alert in the mailbox of a receiver that may
//! have no open port (section 9). Payload:
//! `[receiver DN 1][receiver SN 4][alert id 16][NU 1][NH 1][NU × part 33][NH × hint 20]`,
//! answer 250 with no payload.
//!
//! Only the format checks of 6/46 live here (16); the encryption rule (34, checked first)
//! is [`crate::mailbox::owner`], and the checks that need the server's state (40, 201, 254,
//! 160) are the server's.

use std::net::{IpAddr, SocketAddr};

use super::ids;
use super::key_alert::address_bytes;
use crate::codec::{empty_payload, put_coin, Codec, Reader, Reply, Request};
use crate::coin::CoinId;
use crate::consts::TOTAL_RAIDA_SERVERS;
use crate::status::Status;

/// Bytes before the parts: receiver 5, alert id 16, NU 1, NH 1.
pub const FIXED: usize = 23;
/// Bytes of one part: `[RAIDA id 1][key id 16][commitment 16]`.
pub const PART: usize = 33;
/// Bytes of one hint: `[kind 1][IP version 1][address 16][port 2]`.
pub const HINT: usize = 20;
/// Parts of one alert, at most (as in 42).
pub const MAX_PARTS: usize = 16;
/// Connection hints of one alert, at most.
pub const MAX_HINTS: usize = 4;
/// The one hint kind section 6/46 defines: the sender listens on TCP at this address.
pub const HINT_SENDER_LISTENS: u8 = 1;

/// Where one part of the key waits, and what its bytes must hash to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MailboxPart {
    pub raida_id: u8,
    pub key_id: [u8; 16],
    /// [`crate::mailbox::commitment`] of the key id and the part's key bytes.
    pub commitment: [u8; 16],
}

impl Codec for MailboxPart {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.raida_id);
        out.extend_from_slice(&self.key_id);
        out.extend_from_slice(&self.commitment);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, Status> {
        Ok(MailboxPart { raida_id: r.u8()?, key_id: r.array()?, commitment: r.array()? })
    }
}

/// A sender hint: the sender listens on TCP at this address (kind 1, the only kind).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnectionHint {
    /// 4 or 6.
    pub ip_version: u8,
    /// IPv4 in the first 4 bytes and 12 zero bytes, or IPv6.
    pub address: [u8; 16],
    pub port: u16,
}

impl ConnectionHint {
    pub fn new(addr: SocketAddr) -> ConnectionHint {
        let (ip_version, address) = address_bytes(addr.ip());
        ConnectionHint { ip_version, address, port: addr.port() }
    }

    /// The address it names; None for an IPv4 hint whose 12 trailing bytes are not zero
    /// (such a hint is simply not used).
    pub fn addr(&self) -> Option<SocketAddr> {
        let ip = match self.ip_version {
            4 => {
                let (v4, zero) = self.address.split_first_chunk::<4>()?;
                zero.iter().all(|b| *b == 0).then_some(IpAddr::from(*v4))?
            }
            6 => IpAddr::from(self.address),
            _ => return None,
        };
        Some(SocketAddr::new(ip, self.port))
    }
}

impl Codec for ConnectionHint {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(HINT_SENDER_LISTENS);
        out.push(self.ip_version);
        out.extend_from_slice(&self.address);
        out.extend_from_slice(&self.port.to_be_bytes());
    }
    /// A hint of another kind or IP version → 16.
    fn read(r: &mut Reader<'_>) -> Result<Self, Status> {
        let kind = r.u8()?;
        let ip_version = r.u8()?;
        if kind != HINT_SENDER_LISTENS || !matches!(ip_version, 4 | 6) {
            return Err(Status::InvalidPacketLength);
        }
        Ok(ConnectionHint { ip_version, address: r.array()?, port: r.u16()? })
    }
}

/// The parts and hints of one alert, as 46 carries them and 47 hands them back.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AlertBody {
    /// In key order.
    pub parts: Vec<MailboxPart>,
    pub hints: Vec<ConnectionHint>,
}

impl AlertBody {
    /// `[NU][NH]` then the parts and the hints.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.parts.len().min(255) as u8);
        out.push(self.hints.len().min(255) as u8);
        self.parts.iter().for_each(|p| p.encode(out));
        self.hints.iter().for_each(|h| h.encode(out));
    }

    /// Wire bytes of `[NU][NH][parts][hints]`.
    pub fn len(&self) -> usize {
        2 + PART * self.parts.len() + HINT * self.hints.len()
    }

    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// `[NU][NH]`, then exactly NU parts and NH hints, every check of 6/46 on them: NU not
    /// 1..16, NH above 4, a RAIDA id above 24 or repeated, a hint of another kind or IP
    /// version → 16. `exact`: nothing may follow (46); within a 47 answer records follow.
    pub fn read(r: &mut Reader<'_>, exact: bool) -> Result<AlertBody, Status> {
        let nu = r.u8()? as usize;
        let nh = r.u8()? as usize;
        if nu == 0 || nu > MAX_PARTS || nh > MAX_HINTS {
            return Err(Status::InvalidPacketLength);
        }
        let size = PART * nu + HINT * nh;
        if (exact && r.left() != size) || r.left() < size {
            return Err(Status::InvalidPacketLength);
        }
        let parts: Vec<MailboxPart> = r.records(nu)?;
        let mut seen = 0u32;
        for p in &parts {
            if p.raida_id >= TOTAL_RAIDA_SERVERS || seen & (1 << p.raida_id) != 0 {
                return Err(Status::InvalidPacketLength);
            }
            seen |= 1 << p.raida_id;
        }
        let hints = r.records(nh)?;
        Ok(AlertBody { parts, hints })
    }
}

/// The Leave Alert request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaveAlert {
    pub receiver: CoinId,
    /// Random, chosen by the sender; one alert left on several mailbox RAIDAs has one id,
    /// so that the receiver takes copies of it as one.
    pub alert_id: [u8; 16],
    pub body: AlertBody,
}

impl Codec for LeaveAlert {
    fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(FIXED - 2 + self.body.len());
        put_coin(out, self.receiver);
        out.extend_from_slice(&self.alert_id);
        self.body.encode(out);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, Status> {
        let receiver = r.coin()?;
        let alert_id = r.array()?;
        Ok(LeaveAlert { receiver, alert_id, body: AlertBody::read(r, true)? })
    }
}

impl Request for LeaveAlert {
    const GROUP: u8 = ids::GROUP_KEY_EXCHANGE;
    const COMMAND: u8 = ids::LEAVE_ALERT;
    const NAME: &'static str = "leave_alert";
    type Answer = LeaveAlertAnswer;
}

empty_payload!(
    /// 250, no payload.
    LeaveAlertAnswer
);
impl Reply for LeaveAlertAnswer {}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(nu: usize, nh: usize) -> LeaveAlert {
        LeaveAlert {
            receiver: CoinId { dn: 1, sn: 2 },
            alert_id: [7; 16],
            body: AlertBody {
                parts: (0..nu)
                    .map(|i| MailboxPart { raida_id: i as u8, key_id: [i as u8; 16], commitment: [9; 16] })
                    .collect(),
                hints: (0..nh).map(|i| ConnectionHint::new(([10, 0, 0, i as u8], 7000).into())).collect(),
            },
        }
    }

    #[test]
    fn sizes_are_23_plus_33_nu_plus_20_nh() {
        for (nu, nh) in [(1, 0), (16, 4), (13, 1)] {
            let b = alert(nu, nh).to_bytes();
            assert_eq!(b.len(), FIXED + PART * nu + HINT * nh);
            assert_eq!(LeaveAlert::decode(&b), Ok(alert(nu, nh)));
        }
    }

    #[test]
    fn hints_give_their_address_back() {
        let a: SocketAddr = "[2001:db8::1]:9".parse().unwrap();
        assert_eq!(ConnectionHint::new(a).addr(), Some(a));
        let mut h = ConnectionHint::new(([1, 2, 3, 4], 5).into());
        assert_eq!(h.addr(), Some(([1, 2, 3, 4], 5).into()));
        h.address[9] = 1;
        assert_eq!(h.addr(), None);
    }
}
