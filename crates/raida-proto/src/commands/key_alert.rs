//! 4/42 Key Alert: [NU 1][NU × 36-byte entries] → 16-byte part map.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::ids;
use crate::codec::{Codec, Reader, Reply, Request};
use crate::status::Status;

pub const ENTRY: usize = 36;
pub const MAX_PARTS: usize = 16;

/// Where one part of a key waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AlertEntry {
    /// 4 or 6 as sent (other values are kept and simply fail).
    pub ip_version: u8,
    pub key_id: [u8; 16],
    pub address: [u8; 16],
    pub port: u16,
    pub raida_id: u8,
}

impl AlertEntry {
    /// The IP address the entry names, if its IP version is 4 or 6 (IPv4 needs the
    /// 12 trailing zero bytes).
    pub fn ip(&self) -> Option<IpAddr> {
        match self.ip_version {
            4 => {
                let (v4, zero) = self.address.split_first_chunk::<4>()?;
                zero.iter().all(|b| *b == 0).then(|| IpAddr::V4(Ipv4Addr::from(*v4)))
            }
            6 => Some(IpAddr::V6(Ipv6Addr::from(self.address))),
            _ => None,
        }
    }

    /// Build an entry from an address.
    pub fn new(key_id: [u8; 16], ip: IpAddr, port: u16, raida_id: u8) -> Self {
        let (ip_version, address) = address_bytes(ip);
        AlertEntry { ip_version, key_id, address, port, raida_id }
    }
}

impl Codec for AlertEntry {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.ip_version);
        out.extend_from_slice(&self.key_id);
        out.extend_from_slice(&self.address);
        out.extend_from_slice(&self.port.to_be_bytes());
        out.push(self.raida_id);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, Status> {
        Ok(AlertEntry {
            ip_version: r.u8()?,
            key_id: r.array()?,
            address: r.array()?,
            port: r.u16()?,
            raida_id: r.u8()?,
        })
    }
}

/// (IP version, 16 address bytes) of an address as Key Alert writes it.
pub fn address_bytes(ip: IpAddr) -> (u8, [u8; 16]) {
    let mut address = [0u8; 16];
    match ip {
        IpAddr::V4(v4) => {
            address[..4].copy_from_slice(&v4.octets());
            (4, address)
        }
        IpAddr::V6(v6) => (6, v6.octets()),
    }
}

/// The Key Alert request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyAlert {
    pub entries: Vec<AlertEntry>,
}

impl Codec for KeyAlert {
    fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(1 + self.entries.len() * ENTRY);
        out.push(self.entries.len().min(255) as u8);
        self.entries.iter().for_each(|e| e.encode(out));
    }
    /// NU of 0 or above 16, or a payload that is not 1 + 36 × NU → 16.
    fn read(r: &mut Reader<'_>) -> Result<Self, Status> {
        let nu = r.u8()? as usize;
        if nu == 0 || nu > MAX_PARTS || r.left() != ENTRY * nu {
            return Err(Status::InvalidPacketLength);
        }
        Ok(KeyAlert { entries: r.records(nu)? })
    }
}

impl Request for KeyAlert {
    const GROUP: u8 = ids::GROUP_KEY_EXCHANGE;
    const COMMAND: u8 = ids::KEY_ALERT;
    const NAME: &'static str = "key_alert";
    type Answer = KeyAlertAnswer;
}

/// The answer: byte i = 0xFF if part i was fetched. Its status (250, 242, 243) travels in
/// the response header; [`Codec::read`] leaves it at 250, [`Reply::decode_reply`] takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyAlertAnswer {
    pub status: Status,
    pub map: [u8; MAX_PARTS],
}

impl Codec for KeyAlertAnswer {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.map);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, Status> {
        Ok(KeyAlertAnswer { status: Status::Success, map: r.array()? })
    }
}

impl Reply for KeyAlertAnswer {
    fn status(&self) -> Status {
        self.status
    }

    fn decode_reply(status: Status, payload: &[u8]) -> Result<Self, Status> {
        Ok(KeyAlertAnswer { status, ..Self::decode(payload)? })
    }
}

/// Assemble fetched parts (None = not fetched): (status, 16-byte part map, key).
/// 250 when every part came and the key ends in 0xFF; 242 when none came; else 243.
pub fn assemble(parts: &[Option<Vec<u8>>]) -> (Status, [u8; 16], Option<Vec<u8>>) {
    let mut map = [0u8; MAX_PARTS];
    let mut fetched = 0;
    for (slot, p) in map.iter_mut().zip(parts) {
        if p.is_some() {
            *slot = 0xFF;
            fetched += 1;
        }
    }
    if fetched == 0 {
        return (Status::AllFail, map, None);
    }
    if fetched < parts.len() {
        return (Status::Mixed, map, None);
    }
    let key: Vec<u8> = parts.iter().flatten().flat_map(|p| p.iter().copied()).collect();
    if key.last() != Some(&0xFF) {
        return (Status::Mixed, map, None);
    }
    (Status::Success, map, Some(key))
}
