//! Deadlines from configured durations that cannot overflow.
//!
//! `Instant + Duration` panics when the sum does not fit; a duration read from a
//! configuration file or a flag (a connection lifetime of 2^63 seconds, say) added to
//! "now" must therefore be capped first. No clock is read here: the caller passes "now".

use std::time::Duration;

/// Thirty years: later than any deadline anyone waits for, and small enough to add to any
/// `Instant` of a running system (the monotonic clock counts from boot).
pub const FAR_FUTURE: Duration = Duration::from_secs(30 * 365 * 86_400);

/// `d`, at most [`FAR_FUTURE`]: safe to add to an `Instant` of now.
pub fn capped(d: Duration) -> Duration {
    d.min(FAR_FUTURE)
}

/// `start + d`, saturating at [`FAR_FUTURE`] after `start` instead of panicking. Works for
/// `std::time::Instant` and `tokio::time::Instant` alike.
pub fn deadline_from<I: std::ops::Add<Duration, Output = I>>(start: I, d: Duration) -> I {
    start + capped(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_duration_saturates_instead_of_panicking() {
        let now = std::time::Instant::now();
        let far = deadline_from(now, Duration::from_secs(u64::MAX));
        assert_eq!(far - now, FAR_FUTURE);
        assert_eq!(deadline_from(now, Duration::from_secs(5)) - now, Duration::from_secs(5));
    }
}
