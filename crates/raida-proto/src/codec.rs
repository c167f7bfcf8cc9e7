//! One way to turn a command payload into a type and back (after rustls `msgs/codec.rs`):
//! every request and answer of section 6 implements [`Codec`], and reads its fields from a
//! bounds-checked [`Reader`], so no payload offset is written outside these impls and no
//! byte string, however short, can make a decoder index out of range.

use crate::coin::CoinId;
use crate::status::Status;

/// A big-endian u32 from the first 4 bytes of `b` (0 if `b` is shorter: callers pass
/// slices whose length they checked; this never panics either way).
pub fn be32(b: &[u8]) -> u32 {
    b.first_chunk::<4>().map_or(0, |c| u32::from_be_bytes(*c))
}

/// A cursor over a payload. Every read checks the remaining length first and fails with
/// `Status::InvalidPacketLength` (16) when the payload is too short.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes not read yet.
    pub fn left(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.left() == 0
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], Status> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len()).ok_or(Status::InvalidPacketLength)?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], Status> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub fn u8(&mut self) -> Result<u8, Status> {
        Ok(self.array::<1>()?[0])
    }

    /// A DN: the wire byte as a signed value.
    pub fn i8(&mut self) -> Result<i8, Status> {
        Ok(self.u8()? as i8)
    }

    pub fn u16(&mut self) -> Result<u16, Status> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub fn u32(&mut self) -> Result<u32, Status> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// `[DN 1][SN 4]`, the way every command names a coin.
    pub fn coin(&mut self) -> Result<CoinId, Status> {
        Ok(CoinId { dn: self.i8()?, sn: self.u32()? })
    }

    /// Skip `n` bytes (reserved fields).
    pub fn skip(&mut self, n: usize) -> Result<(), Status> {
        self.take(n).map(|_| ())
    }

    /// Fail with 16 unless everything was read.
    pub fn finish(&self) -> Result<(), Status> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(Status::InvalidPacketLength)
        }
    }

    /// `n` records, each decoded with `T::read`.
    pub fn records<T: Codec>(&mut self, n: usize) -> Result<Vec<T>, Status> {
        (0..n).map(|_| T::read(self)).collect()
    }
}

/// The writing side: `[DN 1][SN 4]`.
pub fn put_coin(out: &mut Vec<u8>, coin: CoinId) {
    out.push(coin.dn as u8);
    out.extend_from_slice(&coin.sn.to_be_bytes());
}

/// A request payload or an answer of section 6.
pub trait Codec: Sized {
    /// Append the wire bytes.
    fn encode(&self, out: &mut Vec<u8>);

    /// Read one value; the checks run in the order section 6 writes them and fail with its
    /// status.
    fn read(r: &mut Reader<'_>) -> Result<Self, Status>;

    /// A whole payload: `read`, then nothing may be left (16).
    fn decode(payload: &[u8]) -> Result<Self, Status> {
        let mut r = Reader::new(payload);
        let v = Self::read(&mut r)?;
        r.finish()?;
        Ok(v)
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

/// An answer payload with the status it is sent under (250 unless the answer says
/// otherwise: 241/242/243 for Get Ticket, 242/243 for Key Alert).
pub trait Reply: Codec {
    fn status(&self) -> Status {
        Status::Success
    }

    /// The answer as a client receives it: the payload under the status of the response
    /// header. Most answers are their payload alone; Key Alert's part map keeps the status.
    fn decode_reply(_status: Status, payload: &[u8]) -> Result<Self, Status> {
        Self::decode(payload)
    }
}

/// A request of section 6: the command it is sent as and the answer it gets. A command is
/// its request type: the server's registry, the client's typed call and the lists of
/// commands all start from it.
pub trait Request: Codec {
    const GROUP: u8;
    const COMMAND: u8;
    /// The command in snake case, e.g. `post_key`: the name of its codec file
    /// (`commands/<name>.rs`), of its handler file in the server and of its metrics.
    const NAME: &'static str;
    type Answer: Reply;
}

/// `(group, command)` of a request type, for lists of commands built in const context.
pub const fn numbers<R: Request>() -> (u8, u8) {
    (R::GROUP, R::COMMAND)
}

/// A unit type whose payload is empty (Echo and Version requests; Echo and Post Key
/// answers): decoding anything else as a whole payload is 16.
macro_rules! empty_payload {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct $name;

        impl $crate::codec::Codec for $name {
            fn encode(&self, _: &mut Vec<u8>) {}
            fn read(_: &mut $crate::codec::Reader<'_>) -> Result<Self, $crate::status::Status> {
                Ok($name)
            }
        }
    };
}
pub(crate) use empty_payload;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_never_pass_the_end() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u16(), Ok(0x0102));
        assert_eq!(r.u16(), Err(Status::InvalidPacketLength));
        assert_eq!(r.take(usize::MAX), Err(Status::InvalidPacketLength));
        assert_eq!(r.u8(), Ok(3));
        assert_eq!(r.finish(), Ok(()));
        assert_eq!(be32(&[0, 0, 1]), 0);
        assert_eq!(be32(&[0, 0, 1, 2, 9]), 0x102);
    }
}
