//! # raida-netsim
//!
//! A seeded network simulator for the local RAIDA network (`raida network up`,
//! `raida_server::local_network`) and the tests: each RAIDA sits behind a [`Proxy`] on its
//! public address that forwards UDP and TCP to the server through a simulated link
//! ([`LinkConfig`]: loss, duplication, reordering, delay with jitter for UDP; delay and a
//! bandwidth cap for TCP), or plays a [`Fault`] (down, refusing, slow, overloaded;
//! dishonest is played by the server).
//!
//! The model is sans-IO ([`Link`], [`Pacer`]): every decision comes from a generator seeded
//! with the simulation's seed and the link, so a failing case replays with the same seed
//! (as far as the order of datagrams through a link repeats: concurrent clients interleave
//! as the scheduler lets them). The proxy is the thin tokio shell around it.

mod fault;
mod link;
mod proxy;
mod simulation;

pub use fault::{Dishonesty, Fault};
pub use link::{Fate, Link, LinkConfig, Pacer, MIN_REORDER_HOLD};
pub use proxy::{overloaded_answer, Proxy, FLOW_IDLE, MAX_FLOWS, MAX_IN_FLIGHT, MAX_TCP_CONNECTIONS};
pub use simulation::{LinkSettings, RaidaSettings, RaidaSimulation, Simulation, SimulationSettings};

/// A setting that cannot be used; one line saying why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SimError(pub String);

/// Milliseconds: `2000` or `2000ms`.
pub fn parse_ms(s: &str) -> Result<u64, SimError> {
    let t = s.trim();
    let t = t.strip_suffix("ms").unwrap_or(t);
    t.trim().parse().map_err(|_| SimError(format!("{s:?} is not a number of milliseconds")))
}

/// A rate in bytes per second: `100Mbit`, `100Mbit/s`, `12.5MB/s`, `800kbit`, `1Gbit`, or
/// `100Mbps`, or a bare number of bytes per second. Prefixes are decimal (k = 1000) and any case; `bit`
/// is bits, `B` bytes.
pub fn parse_rate(s: &str) -> Result<u64, SimError> {
    let bad = || SimError(format!("bandwidth {s:?}: use e.g. 100Mbit, 800kbit or 12.5MB (per second)"));
    let t = s.trim();
    let t = t.strip_suffix("/s").unwrap_or(t);
    // 100Mbps = 100Mbit
    let t = &match t.strip_suffix("bps") {
        Some(p) => format!("{p}bit"),
        None => t.to_string(),
    };
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| bad())?;
    let unit = unit.trim();
    let (prefix, per_unit) = if let Some(p) = unit.strip_suffix("bit") {
        (p, 1.0 / 8.0)
    } else if let Some(p) = unit.strip_suffix('B') {
        (p, 1.0)
    } else if unit.is_empty() {
        ("", 1.0)
    } else {
        return Err(bad());
    };
    let scale = match prefix.to_ascii_lowercase().as_str() {
        "" => 1.0,
        "k" => 1e3,
        "m" => 1e6,
        "g" => 1e9,
        _ => return Err(bad()),
    };
    let rate = (n * scale * per_unit).round();
    if !(1.0..=1e12).contains(&rate) {
        return Err(SimError(format!("bandwidth {s:?}: must be between 1 B/s and 8 Tbit/s")));
    }
    Ok(rate as u64)
}

/// A rate for people: `100Mbit/s`, `12.345Mbit/s`, `800kbit/s`.
pub fn format_rate(bytes_per_second: u64) -> String {
    let bits = bytes_per_second as f64 * 8.0;
    let (v, unit) = if bits >= 1e9 {
        (bits / 1e9, "Gbit/s")
    } else if bits >= 1e6 {
        (bits / 1e6, "Mbit/s")
    } else {
        (bits / 1e3, "kbit/s")
    };
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}{unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_print() {
        assert_eq!(parse_rate("100Mbit").unwrap(), 12_500_000);
        assert_eq!(parse_rate("100mbit/s").unwrap(), 12_500_000);
        assert_eq!(parse_rate("100Mbps").unwrap(), 12_500_000);
        assert_eq!(parse_rate("12.5MB/s").unwrap(), 12_500_000);
        assert_eq!(parse_rate("800kbit").unwrap(), 100_000);
        assert_eq!(parse_rate("1Gbit").unwrap(), 125_000_000);
        assert_eq!(parse_rate("4096").unwrap(), 4096);
        for bad in ["", "fast", "10Xbit", "0", "-5MB", "1e30B"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
        assert_eq!(format_rate(12_500_000), "100Mbit/s");
        assert_eq!(format_rate(100_000), "800kbit/s");
        assert_eq!(parse_rate(&format_rate(125_000_000)).unwrap(), 125_000_000);
        assert_eq!(parse_ms("2000ms").unwrap(), 2000);
        assert!(parse_ms("soon").is_err());
    }
}
