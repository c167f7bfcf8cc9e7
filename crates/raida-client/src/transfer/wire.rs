//! The transfer's messages inside the channel (each one channel message; see the module
//! docs of [`super`] for the flow). Big-endian integers; every parser is bounds-checked.

/// Request: a file, a stream or a folder is coming. `[1][kind 1][size 8][name len 2][name]`.
/// A name is a relative path: components separated by `/`, each one a plain name
/// ([`super::check_path`]); a folder comes before anything inside it, has size 0 and is
/// answered at once (nothing follows its offer).
pub const OFFER: u8 = 1;
/// Data: the sender starts at this offset. `[2][offset 8]`.
pub const START: u8 = 2;
/// Data: the next bytes of the item. `[3][bytes]`.
pub const CHUNK: u8 = 3;
/// Request: the item is complete. `[4][sha256 32]`: the SHA-256 of the whole item (a resumed
/// prefix included), computed by the sender as it read.
pub const DONE: u8 = 4;

/// Data, sender, first message: every item it will offer, in order.
/// `[5][count 4][entries]`, each entry `[kind 1][size 8][name len 2][name]` (an offer
/// without its tag). Nothing else is accepted before the receiver's answer.
pub const MANIFEST: u8 = 5;
/// Data, receiver: the manifest was accepted. `[6]`.
pub const ACCEPTED: u8 = 6;
/// Data, either side: the transfer ends, `[7][reason, UTF-8]` (a declined manifest, a
/// stall, a limit).
pub const ABORT: u8 = 7;

/// Largest encoded manifest (bytes): far below the channel's 16 MiB message.
pub const MAX_MANIFEST: usize = 8 << 20;
/// Longest ABORT reason kept (bytes).
pub const MAX_REASON: usize = 512;

/// Answer: accepted (`[0][have 8][sha256 of those bytes 32]` to an offer, `[0]` to done).
pub const OK: u8 = 0;
/// Answer: refused, `[1][reason, UTF-8]`; the sender stops.
pub const REFUSED: u8 = 1;

/// Kind of an offered item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Size known up front; resumable.
    File,
    /// Size unknown (stdin); not resumable.
    Stream,
    /// A folder (size 0): created on the receiver, empty or not; its contents are the
    /// items whose paths start with its path and a `/`.
    Directory,
}

/// Longest name component accepted (bytes): a file name on common file systems.
pub const MAX_NAME: usize = 255;
/// Longest path accepted (bytes, every component and `/` included): PATH_MAX on Linux.
pub const MAX_PATH: usize = 4096;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offer {
    pub kind: Kind,
    pub size: u64,
    pub name: String,
}

pub fn encode_offer(o: &Offer) -> Vec<u8> {
    let name = o.name.as_bytes();
    let mut v = Vec::with_capacity(12 + name.len());
    v.push(OFFER);
    v.push(match o.kind {
        Kind::File => 0,
        Kind::Stream => 1,
        Kind::Directory => 2,
    });
    v.extend_from_slice(&o.size.to_be_bytes());
    v.extend_from_slice(&(name.len().min(u16::MAX as usize) as u16).to_be_bytes());
    v.extend_from_slice(name);
    v
}

pub fn decode_offer(m: &[u8]) -> Result<Offer, &'static str> {
    if m.len() < 12 || m[0] != OFFER {
        return Err("malformed offer");
    }
    match decode_entry(&m[1..])? {
        (o, []) => Ok(o),
        _ => Err("malformed offer: name length"),
    }
}

/// One `[kind 1][size 8][name len 2][name]` from the front of `m`, and the rest.
fn decode_entry(m: &[u8]) -> Result<(Offer, &[u8]), &'static str> {
    if m.len() < 11 {
        return Err("malformed offer");
    }
    let kind = match m[0] {
        0 => Kind::File,
        1 => Kind::Stream,
        2 => Kind::Directory,
        _ => return Err("unknown item kind"),
    };
    let size = u64::from_be_bytes(m[1..9].try_into().map_err(|_| "malformed offer")?);
    let len = u16::from_be_bytes([m[9], m[10]]) as usize;
    if len > MAX_PATH {
        return Err("path longer than 4096 bytes");
    }
    let name = m.get(11..11 + len).ok_or("malformed offer: name length")?;
    let name = std::str::from_utf8(name).map_err(|_| "name is not UTF-8")?.to_string();
    Ok((Offer { kind, size, name }, &m[11 + len..]))
}

/// The manifest of `items`; None when it would exceed [`MAX_MANIFEST`] (too many items for
/// one transfer) or a path is longer than [`MAX_PATH`].
pub fn encode_manifest(items: &[Offer]) -> Option<Vec<u8>> {
    let mut v = vec![MANIFEST];
    v.extend_from_slice(&u32::try_from(items.len()).ok()?.to_be_bytes());
    for o in items {
        if o.name.len() > MAX_PATH {
            return None;
        }
        // an offer without its tag
        v.extend_from_slice(&encode_offer(o)[1..]);
        if v.len() > MAX_MANIFEST {
            return None;
        }
    }
    Some(v)
}

/// Every entry of a manifest; the count must match the entries exactly.
pub fn decode_manifest(m: &[u8]) -> Result<Vec<Offer>, &'static str> {
    if m.len() < 5 || m[0] != MANIFEST {
        return Err("malformed manifest");
    }
    if m.len() > MAX_MANIFEST {
        return Err("manifest too large");
    }
    let count = u32::from_be_bytes([m[1], m[2], m[3], m[4]]) as usize;
    // the count is the peer's: entries are at least 11 bytes, so no more than that fit
    let mut items = Vec::with_capacity(count.min(m.len() / 11));
    let mut rest = &m[5..];
    while !rest.is_empty() {
        let (o, r) = decode_entry(rest)?;
        items.push(o);
        rest = r;
    }
    if items.len() != count {
        return Err("malformed manifest: count");
    }
    Ok(items)
}

pub fn encode_abort(reason: &str) -> Vec<u8> {
    let mut v = vec![ABORT];
    let mut end = reason.len().min(MAX_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    v.extend_from_slice(&reason.as_bytes()[..end]);
    v
}

/// The receiver's answer to a manifest (or an ABORT later): `Some(Ok)` for ACCEPTED,
/// `Some(Err(reason))` for ABORT, None for anything else.
pub fn decode_decision(m: &[u8]) -> Option<Result<(), String>> {
    match m.split_first() {
        Some((&ACCEPTED, [])) => Some(Ok(())),
        Some((&ABORT, reason)) => {
            Some(Err(String::from_utf8_lossy(&reason[..reason.len().min(MAX_REASON)]).into_owned()))
        }
        _ => None,
    }
}

pub fn encode_start(offset: u64) -> Vec<u8> {
    let mut v = vec![START];
    v.extend_from_slice(&offset.to_be_bytes());
    v
}

pub fn decode_start(m: &[u8]) -> Option<u64> {
    (m.len() == 9 && m[0] == START).then(|| u64::from_be_bytes(m[1..9].try_into().unwrap_or_default()))
}

pub fn encode_done(sha256: &[u8; 32]) -> Vec<u8> {
    let mut v = vec![DONE];
    v.extend_from_slice(sha256);
    v
}

pub fn decode_done(m: &[u8]) -> Option<[u8; 32]> {
    (m.len() == 33 && m[0] == DONE).then(|| m[1..33].try_into().ok()).flatten()
}

pub fn encode_accept(have: u64, prefix: &[u8; 32]) -> Vec<u8> {
    let mut v = vec![OK];
    v.extend_from_slice(&have.to_be_bytes());
    v.extend_from_slice(prefix);
    v
}

pub fn encode_refused(reason: &str) -> Vec<u8> {
    let mut v = vec![REFUSED];
    v.extend_from_slice(reason.as_bytes());
    v
}

/// An answer: `Ok(rest)` after `OK`, `Err(reason)` for `REFUSED` or garbage.
pub fn decode_answer(m: &[u8]) -> Result<&[u8], String> {
    match m.split_first() {
        Some((&OK, rest)) => Ok(rest),
        Some((&REFUSED, reason)) => Err(String::from_utf8_lossy(&reason[..reason.len().min(512)]).into_owned()),
        _ => Err("malformed answer".into()),
    }
}

/// `have` and the prefix hash from an accepted offer.
pub fn decode_accept(rest: &[u8]) -> Option<(u64, [u8; 32])> {
    if rest.len() != 40 {
        return None;
    }
    Some((u64::from_be_bytes(rest[..8].try_into().ok()?), rest[8..40].try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_garbage_is_refused() {
        let o = Offer { kind: Kind::File, size: 5, name: "a.txt".into() };
        assert_eq!(decode_offer(&encode_offer(&o)), Ok(o.clone()));
        let enc = encode_offer(&o);
        for cut in 0..enc.len() {
            assert!(decode_offer(&enc[..cut]).is_err(), "truncated at {cut}");
        }
        let mut long = enc.clone();
        long.push(b'x');
        assert!(decode_offer(&long).is_err());
        assert_eq!(decode_start(&encode_start(9)), Some(9));
        assert_eq!(decode_start(&[START, 1]), None);
        assert_eq!(decode_done(&encode_done(&[3; 32])), Some([3; 32]));
        assert_eq!(decode_accept(decode_answer(&encode_accept(4, &[1; 32])).unwrap()), Some((4, [1; 32])));
        assert_eq!(decode_answer(&encode_refused("no")), Err("no".to_string()));
        assert!(decode_answer(&[]).is_err());
        let items = vec![
            o.clone(),
            Offer { kind: Kind::Stream, size: 0, name: "s".into() },
            Offer { kind: Kind::Directory, size: 0, name: "d/e".into() },
        ];
        let m = encode_manifest(&items).unwrap();
        assert_eq!(decode_manifest(&m), Ok(items));
        for cut in 0..m.len() {
            assert!(decode_manifest(&m[..cut]).is_err(), "manifest truncated at {cut}");
        }
        let mut wrong_count = m.clone();
        wrong_count[4] = 4;
        assert!(decode_manifest(&wrong_count).is_err());
        assert_eq!(decode_decision(&[ACCEPTED]), Some(Ok(())));
        assert_eq!(decode_decision(&encode_abort("stalled")), Some(Err("stalled".into())));
        assert_eq!(decode_decision(&[ACCEPTED, 0]), None);
        let mut bad_kind = encode_offer(&o);
        bad_kind[1] = 3;
        assert_eq!(decode_offer(&bad_kind), Err("unknown item kind"));
        let long = Offer { kind: Kind::File, size: 1, name: "a/".repeat(MAX_PATH / 2) + "b" };
        assert!(encode_manifest(std::slice::from_ref(&long)).is_none());
        assert_eq!(decode_offer(&encode_offer(&long)), Err("path longer than 4096 bytes"));
    }
}
