//! Transports: byte streams with length-prefixed frames, and the seed's HTTP mode.

pub mod frame;
pub mod http;
pub mod stream;

use std::future::Future;
use std::time::Duration;

use tracing::warn;

use crate::error::ChannelError;

/// Runs `step` for at most `limit`; past it, logs "`what` timed out" and gives `Timeout`.
async fn within<T>(
    limit: Duration,
    what: &str,
    step: impl Future<Output = Result<T, ChannelError>>,
) -> Result<T, ChannelError> {
    match tokio::time::timeout(limit, step).await {
        Ok(r) => r,
        Err(_) => {
            warn!("{what} timed out");
            Err(ChannelError::Timeout)
        }
    }
}
