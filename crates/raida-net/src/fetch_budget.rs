//! A budget of Get Key fetches per minute, in total and per source address.
//!
//! A Key Alert is anonymous (EN 0) and one datagram; the Get Keys it causes are not: a
//! receiver fetches every part under its own coin (PROTOCOL.md section 9), and every RAIDA
//! lets one coin hold only a bounded share of its replay memory (160 for ten minutes beyond
//! it). Without a bound, a flood of forged alerts makes the receiver spend that share on
//! every RAIDA and its real exchange then fails. The budget is the bound: an alert whose
//! fetches do not fit is refused before anything is fetched (160), both by `raida key
//! receive` (`raida_client::rke::KeyReceiver`) and by a RAIDA server's 42.
//!
//! The window is a fixed minute: simple, and at most twice the budget in any 60 s. One
//! source address may take a quarter of the total by default, so one peer cannot take it
//! all; the table of addresses is emptied with each window and holds at most one entry per
//! alert admitted in it (bounded by the budget itself).

use std::collections::HashMap;
use std::net::IpAddr;

/// The window of the budget, in seconds.
pub const WINDOW_SECS: u64 = 60;

/// Get Keys per minute, in total and per source address.
#[derive(Debug)]
pub struct FetchBudget {
    per_minute: u32,
    per_source: u32,
    window_start: Option<u64>,
    used: u32,
    by_source: HashMap<IpAddr, u32>,
}

/// Why fetches were not granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverBudget {
    /// The total of this minute is spent.
    Total { per_minute: u32 },
    /// This source's share of this minute is spent.
    Source { per_source: u32 },
}

impl std::fmt::Display for OverBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OverBudget::Total { per_minute } => {
                write!(f, "the budget of {per_minute} Get Keys per minute is spent (a flood of alerts?)")
            }
            OverBudget::Source { per_source } => {
                write!(f, "this address's share of {per_source} Get Keys per minute is spent")
            }
        }
    }
}

impl FetchBudget {
    /// `per_minute` Get Keys in total, a quarter of them (at least 1) per source address.
    pub fn new(per_minute: u32) -> FetchBudget {
        FetchBudget::with_share(per_minute, (per_minute / 4).max(1))
    }

    /// `per_minute` in total and `per_source` per source address.
    pub fn with_share(per_minute: u32, per_source: u32) -> FetchBudget {
        FetchBudget { per_minute, per_source, window_start: None, used: 0, by_source: HashMap::new() }
    }

    /// Change the limits (a reload); what this minute used stays counted.
    pub fn set_limits(&mut self, per_minute: u32, per_source: u32) {
        self.per_minute = per_minute;
        self.per_source = per_source;
    }

    pub fn per_minute(&self) -> u32 {
        self.per_minute
    }

    /// Take `n` fetches for `source` at `now` (seconds on any clock that the caller keeps:
    /// monotonic for a receiver, the server's clock for a RAIDA), all or nothing. A clock
    /// that went back starts a new window.
    pub fn take(&mut self, now: u64, source: IpAddr, n: u32) -> Result<(), OverBudget> {
        let expired = match self.window_start {
            None => true,
            Some(start) => now.checked_sub(start).is_none_or(|d| d >= WINDOW_SECS),
        };
        if expired {
            self.window_start = Some(now);
            self.used = 0;
            self.by_source.clear();
        }
        if self.used.saturating_add(n) > self.per_minute {
            return Err(OverBudget::Total { per_minute: self.per_minute });
        }
        let mine = self.by_source.get(&source).copied().unwrap_or(0);
        if mine.saturating_add(n) > self.per_source {
            return Err(OverBudget::Source { per_source: self.per_source });
        }
        self.used += n;
        self.by_source.insert(source, mine + n);
        Ok(())
    }

    /// [`FetchBudget::take`] against a total only (a RAIDA server's 42: the limit read
    /// from its settings at each alert, so a reload applies at once).
    pub fn take_with_limit(&mut self, now: u64, per_minute: u32, n: u32) -> Result<(), OverBudget> {
        self.set_limits(per_minute, per_minute);
        self.take(now, IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), n)
    }

    /// Fetches taken in the current window.
    pub fn used(&self) -> u32 {
        self.used
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn a_source_gets_a_quarter_and_the_total_is_a_bound() {
        let t = 1000;
        let mut b = FetchBudget::new(64);
        assert_eq!(b.take(t, A, 16), Ok(()));
        assert_eq!(b.take(t, A, 1), Err(OverBudget::Source { per_source: 16 }));
        for i in 0..3u8 {
            assert_eq!(b.take(t, IpAddr::V4([10, 0, 1, i].into()), 16), Ok(()));
        }
        assert_eq!(b.take(t, B, 1), Err(OverBudget::Total { per_minute: 64 }));
        assert_eq!(b.used(), 64);
        // the next minute starts afresh
        assert_eq!(b.take(t + WINDOW_SECS, B, 16), Ok(()));
        assert_eq!(b.used(), 16);
    }

    #[test]
    fn a_refused_take_takes_nothing() {
        let t = 5;
        let mut b = FetchBudget::with_share(20, 20);
        assert_eq!(b.take(t, A, 13), Ok(()));
        assert!(b.take(t, B, 13).is_err());
        assert_eq!(b.take(t, B, 7), Ok(()));
        assert_eq!(b.used(), 20);
    }
}
