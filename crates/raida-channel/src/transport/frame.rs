//! 4-byte big-endian length-prefixed frames, bounded in size.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::warn;

use crate::error::ChannelError;
use crate::record::MAX_RECORD;

/// Largest frame accepted or sent (a 16 MiB record plus overhead).
pub const MAX_FRAME: usize = MAX_RECORD;

/// Largest handshake frame accepted (a post-quantum hello is 1,222 bytes).
pub const MAX_HANDSHAKE_FRAME: usize = 2048;

/// Writes one frame (not flushed).
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, data: &[u8]) -> Result<(), ChannelError> {
    if data.len() > MAX_FRAME {
        return Err(ChannelError::FrameTooLarge(data.len()));
    }
    // The length fits: MAX_FRAME < 2^32.
    let len = (data.len() as u32).to_be_bytes();
    w.write_all(&len).await?;
    w.write_all(data).await?;
    Ok(())
}

/// Reads one frame of at most `max` bytes. `Ok(None)` on a clean end of stream before a
/// frame starts; a truncated frame or an oversized length is an error.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R, max: usize) -> Result<Option<Vec<u8>>, ChannelError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r.read(&mut len[got..]).await?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            warn!("stream ended inside a frame header");
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
        got += n;
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        warn!(len, max, "frame rejected: too large");
        return Err(ChannelError::FrameTooLarge(len));
    }
    let mut buf = vec![0u8; len];
    if let Err(e) = r.read_exact(&mut buf).await {
        warn!(len, "stream ended inside a frame");
        return Err(e.into());
    }
    Ok(Some(buf))
}
