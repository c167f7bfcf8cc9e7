//! 42 Key Alert: [NU 1][NU × 36-byte entries] → 16-byte part map.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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
            4 if self.address[4..] == [0u8; 12] => {
                Some(IpAddr::V4(Ipv4Addr::new(self.address[0], self.address[1], self.address[2], self.address[3])))
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

/// NU of 0 or above 16, or a payload that is not 1 + 36 × NU → 16.
pub fn parse(payload: &[u8]) -> Result<Vec<AlertEntry>, Status> {
    let nu = *payload.first().ok_or(Status::InvalidPacketLength)? as usize;
    if nu == 0 || nu > MAX_PARTS || payload.len() != 1 + ENTRY * nu {
        return Err(Status::InvalidPacketLength);
    }
    Ok(payload[1..]
        .chunks_exact(ENTRY)
        .map(|e| {
            let mut key_id = [0u8; 16];
            key_id.copy_from_slice(&e[1..17]);
            let mut address = [0u8; 16];
            address.copy_from_slice(&e[17..33]);
            AlertEntry { ip_version: e[0], key_id, address, port: u16::from_be_bytes([e[33], e[34]]), raida_id: e[35] }
        })
        .collect())
}

pub fn encode(entries: &[AlertEntry]) -> Vec<u8> {
    let mut p = Vec::with_capacity(1 + entries.len() * ENTRY);
    p.push(entries.len().min(255) as u8);
    for e in entries {
        p.push(e.ip_version);
        p.extend_from_slice(&e.key_id);
        p.extend_from_slice(&e.address);
        p.extend_from_slice(&e.port.to_be_bytes());
        p.push(e.raida_id);
    }
    p
}

/// Assemble fetched parts (None = not fetched): (status, 16-byte part map, key).
/// 250 when every part came and the key ends in 0xFF; 242 when none came; else 243.
pub fn assemble(parts: &[Option<Vec<u8>>]) -> (Status, [u8; 16], Option<Vec<u8>>) {
    let mut map = [0u8; 16];
    let mut fetched = 0;
    for (i, p) in parts.iter().enumerate().take(MAX_PARTS) {
        if p.is_some() {
            map[i] = 0xFF;
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
