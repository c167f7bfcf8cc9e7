//! The link model, without sockets: what happens to each datagram ([`Link::datagram`]) and
//! when each TCP chunk arrives ([`Pacer::schedule`]). Every decision comes from a ChaCha8
//! generator seeded with (seed, link id), so one seed replays the same decisions for the
//! same sequence of datagrams.

use std::time::{Duration, Instant};

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

use crate::SimError;

/// How a reordered datagram is held back at least: long enough for the next datagrams of
/// an exchange to overtake it even on a link without delay.
pub const MIN_REORDER_HOLD: Duration = Duration::from_millis(10);

/// One direction of a link (the proxy uses one per direction: client to RAIDA, RAIDA to
/// client). Probabilities are 0..=1; delays are one way, so a round trip through a link
/// with `delay` 50 ms takes 100 ms plus the server's time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkConfig {
    /// Probability that a UDP datagram is lost.
    pub loss: f64,
    /// Probability that a delivered UDP datagram is delivered a second time (the copy
    /// with a delay of its own, so it may come first).
    pub duplicate: f64,
    /// Probability that a UDP datagram is held back an extra one-way delay plus jitter
    /// (at least [`MIN_REORDER_HOLD`]), so that later datagrams overtake it.
    pub reorder: f64,
    /// One-way delay of every UDP datagram and every TCP chunk.
    pub delay: Duration,
    /// A UDP datagram's delay is `delay` plus a uniform draw in `0..=jitter` (TCP keeps
    /// the byte order, so TCP gets `delay` alone).
    pub jitter: Duration,
    /// TCP bytes per second through this direction, shared by all its connections (None:
    /// no cap). UDP is not capped.
    pub tcp_rate: Option<u64>,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig::PERFECT
    }
}

impl LinkConfig {
    /// No loss, no delay, no cap: the loopback as it is.
    pub const PERFECT: LinkConfig = LinkConfig {
        loss: 0.0,
        duplicate: 0.0,
        reorder: 0.0,
        delay: Duration::ZERO,
        jitter: Duration::ZERO,
        tcp_rate: None,
    };

    /// A link with `delay` each way and nothing else.
    pub fn with_delay(delay: Duration) -> LinkConfig {
        LinkConfig { delay, ..LinkConfig::PERFECT }
    }

    /// Probabilities in 0..=1 and a rate above 0, or which is not.
    pub fn check(&self) -> Result<(), SimError> {
        for (name, p) in [("loss", self.loss), ("duplicate", self.duplicate), ("reorder", self.reorder)] {
            if !(0.0..=1.0).contains(&p) {
                return Err(SimError(format!("{name} must be 0..100%, not {}%", p * 100.0)));
            }
        }
        if self.tcp_rate == Some(0) {
            return Err(SimError("a bandwidth of 0 would stop every TCP byte: leave it out for no cap".into()));
        }
        Ok(())
    }

    /// Whether this link changes nothing.
    pub fn is_perfect(&self) -> bool {
        *self == LinkConfig::PERFECT
    }
}

impl std::fmt::Display for LinkConfig {
    /// `loss 5% delay 50ms jitter 10ms rate 12500000 B/s`, the settings that are not off.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_perfect() {
            return f.write_str("perfect");
        }
        let mut parts = Vec::new();
        for (name, p) in [("loss", self.loss), ("duplicate", self.duplicate), ("reorder", self.reorder)] {
            if p > 0.0 {
                parts.push(format!("{name} {}%", p * 100.0));
            }
        }
        if !self.delay.is_zero() {
            parts.push(format!("delay {}ms", self.delay.as_millis()));
        }
        if !self.jitter.is_zero() {
            parts.push(format!("jitter {}ms", self.jitter.as_millis()));
        }
        if let Some(r) = self.tcp_rate {
            parts.push(format!("bandwidth {}", crate::format_rate(r)));
        }
        f.write_str(&parts.join(" "))
    }
}

/// What the link does with one datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    Dropped,
    /// Delivered `after` from now; `copy_after`: a duplicate, delivered that long from now.
    Delivered {
        after: Duration,
        copy_after: Option<Duration>,
    },
}

/// One direction of a link: a [`LinkConfig`] and its seeded generator.
#[derive(Clone, Debug)]
pub struct Link {
    config: LinkConfig,
    rng: ChaCha8Rng,
}

impl Link {
    /// The link `link_id` of a simulation seeded with `seed`: links with different ids draw
    /// independent streams from the same seed.
    pub fn new(config: LinkConfig, seed: u64, link_id: u64) -> Link {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(link_id);
        Link { config, rng }
    }

    pub fn config(&self) -> &LinkConfig {
        &self.config
    }

    /// A uniform draw in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    fn jittered(&mut self) -> Duration {
        let j = self.unit();
        self.config.delay + self.config.jitter.mul_f64(j)
    }

    /// The fate of the next datagram. Every call draws the same number of values, so a
    /// datagram's fate depends only on the seed, the link and its place in the sequence.
    pub fn datagram(&mut self) -> Fate {
        let lost = self.unit() < self.config.loss;
        let mut after = self.jittered();
        let reordered = self.unit() < self.config.reorder;
        let duplicated = self.unit() < self.config.duplicate;
        let copy_after = self.jittered();
        if lost {
            return Fate::Dropped;
        }
        if reordered {
            after += (self.config.delay + self.config.jitter).max(MIN_REORDER_HOLD);
        }
        Fate::Delivered { after, copy_after: duplicated.then_some(copy_after) }
    }
}

/// One direction of TCP through a link: chunks leave one after another at the link's rate
/// (shared by every connection through it) and arrive `delay` later.
#[derive(Clone, Debug)]
pub struct Pacer {
    rate: Option<u64>,
    delay: Duration,
    /// When the link has sent everything scheduled so far.
    free_at: Option<Instant>,
}

impl Pacer {
    pub fn new(config: &LinkConfig) -> Pacer {
        Pacer { rate: config.tcp_rate, delay: config.delay, free_at: None }
    }

    /// When a chunk of `len` bytes read at `now` is to be written on the other side.
    pub fn schedule(&mut self, now: Instant, len: usize) -> Instant {
        let Some(rate) = self.rate.filter(|&r| r > 0) else { return now + self.delay };
        let start = self.free_at.map_or(now, |f| f.max(now));
        let sent = start + Duration::from_secs_f64(len as f64 / rate as f64);
        self.free_at = Some(sent);
        sent + self.delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lossy(loss: f64) -> LinkConfig {
        LinkConfig { loss, ..LinkConfig::PERFECT }
    }

    #[test]
    fn loss_rate_over_10k_datagrams_is_near_the_setting() {
        for (loss, seed) in [(0.05, 1), (0.2, 2), (0.6, 3)] {
            let mut link = Link::new(lossy(loss), seed, 0);
            let dropped = (0..10_000).filter(|_| link.datagram() == Fate::Dropped).count();
            let rate = dropped as f64 / 10_000.0;
            assert!((rate - loss).abs() < 0.02, "loss {loss}: {rate}");
        }
    }

    #[test]
    fn same_seed_same_decisions_other_link_other_decisions() {
        let config = LinkConfig {
            loss: 0.3,
            duplicate: 0.1,
            reorder: 0.1,
            delay: Duration::from_millis(50),
            jitter: Duration::from_millis(20),
            tcp_rate: None,
        };
        let run = |seed, id| {
            let mut l = Link::new(config, seed, id);
            (0..1000).map(|_| l.datagram()).collect::<Vec<_>>()
        };
        assert_eq!(run(7, 1), run(7, 1));
        assert_ne!(run(7, 1), run(7, 2));
        assert_ne!(run(7, 1), run(8, 1));
    }

    #[test]
    fn perfect_link_delivers_everything_at_once() {
        let mut l = Link::new(LinkConfig::PERFECT, 1, 0);
        for _ in 0..1000 {
            assert_eq!(l.datagram(), Fate::Delivered { after: Duration::ZERO, copy_after: None });
        }
    }

    #[test]
    fn delays_stay_within_delay_plus_jitter_and_reorder_holds_back() {
        let delay = Duration::from_millis(40);
        let jitter = Duration::from_millis(10);
        let mut l = Link::new(LinkConfig { delay, jitter, reorder: 0.5, duplicate: 0.5, ..LinkConfig::PERFECT }, 9, 0);
        let (mut held, mut copies) = (0, 0);
        for _ in 0..2000 {
            let Fate::Delivered { after, copy_after } = l.datagram() else { panic!("no loss configured") };
            if after > delay + jitter {
                held += 1;
                assert!(after >= delay + delay + jitter && after <= 2 * (delay + jitter));
            } else {
                assert!(after >= delay);
            }
            if let Some(c) = copy_after {
                copies += 1;
                assert!(c >= delay && c <= delay + jitter);
            }
        }
        assert!((800..1200).contains(&held), "{held}");
        assert!((800..1200).contains(&copies), "{copies}");
    }

    #[test]
    fn pacer_spaces_chunks_at_the_rate_and_adds_the_delay() {
        let config = LinkConfig { delay: Duration::from_millis(50), tcp_rate: Some(1_000_000), ..LinkConfig::PERFECT };
        let mut p = Pacer::new(&config);
        let t0 = Instant::now();
        // 10 chunks of 100 kB read at once: 100 ms each on the link
        let times: Vec<_> = (0..10).map(|_| p.schedule(t0, 100_000)).collect();
        for (i, t) in times.iter().enumerate() {
            let want = Duration::from_millis(100 * (i as u64 + 1) + 50);
            assert_eq!(t.duration_since(t0), want);
        }
        // after an idle second the link is free again
        let later = t0 + Duration::from_secs(3);
        assert_eq!(p.schedule(later, 100_000).duration_since(later), Duration::from_millis(150));
        let mut uncapped = Pacer::new(&LinkConfig::with_delay(Duration::from_millis(5)));
        assert_eq!(uncapped.schedule(t0, 1 << 20).duration_since(t0), Duration::from_millis(5));
    }

    #[test]
    fn check_refuses_out_of_range_settings() {
        assert!(lossy(1.5).check().is_err());
        assert!(lossy(-0.1).check().is_err());
        assert!(LinkConfig { tcp_rate: Some(0), ..LinkConfig::PERFECT }.check().is_err());
        assert!(lossy(1.0).check().is_ok());
    }

    proptest::proptest! {
        /// Whatever the settings, a delivered datagram's delay stays within its bounds.
        #[test]
        fn fates_are_bounded(seed: u64, loss in 0.0f64..=1.0, dup in 0.0f64..=1.0, re in 0.0f64..=1.0,
                             delay_ms in 0u64..500, jitter_ms in 0u64..500) {
            let delay = Duration::from_millis(delay_ms);
            let jitter = Duration::from_millis(jitter_ms);
            let config = LinkConfig { loss, duplicate: dup, reorder: re, delay, jitter, tcp_rate: None };
            let mut l = Link::new(config, seed, 0);
            let most = delay + jitter + (delay + jitter).max(MIN_REORDER_HOLD);
            for _ in 0..100 {
                if let Fate::Delivered { after, copy_after } = l.datagram() {
                    proptest::prop_assert!(after >= delay && after <= most);
                    if let Some(c) = copy_after {
                        proptest::prop_assert!(c >= delay && c <= delay + jitter);
                    }
                }
            }
        }
    }
}
