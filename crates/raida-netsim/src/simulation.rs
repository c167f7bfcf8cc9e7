//! A simulation of a whole local network: one seed, a link for every RAIDA (a default and
//! per-RAIDA overrides) and per-RAIDA faults. [`SimulationSettings`] is the form of
//! network.toml's `[simulation]` section and of `raida network up`'s flags; it resolves to
//! a [`Simulation`].
//!
//! ```toml
//! [simulation]
//! seed = 42              # every decision of every link; left out: a random one (printed)
//! loss = 5.0             # percent of UDP datagrams lost, each direction
//! duplicate = 1.0        # percent delivered twice
//! reorder = 1.0          # percent held back so that later ones overtake them
//! delay = 50             # ms one way (a round trip: twice this plus the server's time)
//! jitter = 10            # ms added to a datagram's delay, uniform in 0..=jitter
//! bandwidth = "100Mbit"  # TCP cap each direction (kbit, Mbit, Gbit, kB, MB, GB; /s optional)
//!
//! [[simulation.raida]]   # per RAIDA: link settings replacing the ones above, and a fault
//! id = 3
//! loss = 20.0
//! fault = "slow:2000"    # down, refusing, overloaded, slow:MS, dishonest:wrong-key, dishonest:other-sender
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::{Fault, LinkConfig, SimError};

/// What happens to one RAIDA beyond the simulation's default link.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RaidaSimulation {
    /// Its link instead of the default one.
    pub link: Option<LinkConfig>,
    pub fault: Option<Fault>,
}

/// A simulated network: every RAIDA behind a link, some with a fault.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Simulation {
    /// Every link's decisions derive from it ([`Simulation::raida_seed`]).
    pub seed: u64,
    /// The link of every RAIDA without one of its own.
    pub link: LinkConfig,
    /// Per-RAIDA links and faults, by RAIDA id.
    pub raidas: BTreeMap<u8, RaidaSimulation>,
}

impl Simulation {
    /// Perfect links everywhere, no faults.
    pub fn new(seed: u64) -> Simulation {
        Simulation { seed, ..Simulation::default() }
    }

    /// Every RAIDA without a link of its own gets `link`.
    pub fn with_link(mut self, link: LinkConfig) -> Simulation {
        self.link = link;
        self
    }

    /// RAIDA `id` gets `link` instead of the default one.
    pub fn with_raida_link(mut self, id: u8, link: LinkConfig) -> Simulation {
        self.raidas.entry(id).or_default().link = Some(link);
        self
    }

    /// RAIDA `id` has `fault`.
    pub fn with_fault(mut self, id: u8, fault: Fault) -> Simulation {
        self.raidas.entry(id).or_default().fault = Some(fault);
        self
    }

    /// The link of RAIDA `id`.
    pub fn link_of(&self, id: u8) -> LinkConfig {
        self.raidas.get(&id).and_then(|r| r.link).unwrap_or(self.link)
    }

    /// The fault of RAIDA `id`, if any.
    pub fn fault_of(&self, id: u8) -> Option<Fault> {
        self.raidas.get(&id).and_then(|r| r.fault)
    }

    /// The seed of RAIDA `id`'s proxy: distinct per RAIDA, a function of the seed alone.
    pub fn raida_seed(&self, id: u8) -> u64 {
        // splitmix64 of (seed, id): neighbouring seeds and ids give unrelated streams
        let mut z = self.seed ^ (u64::from(id) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Every link's settings in range, every id 0..24.
    pub fn check(&self) -> Result<(), SimError> {
        self.link.check()?;
        for (id, r) in &self.raidas {
            if *id > 24 {
                return Err(SimError(format!("RAIDA id {id} is not 0..24")));
            }
            if let Some(l) = &r.link {
                l.check().map_err(|e| SimError(format!("RAIDA {id}: {e}")))?;
            }
        }
        Ok(())
    }
}

impl std::fmt::Display for Simulation {
    /// One line: `seed 42; every link: loss 5% delay 50ms; RAIDA 3: down; RAIDA 4: loss 20%`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "seed {}; every link: {}", self.seed, self.link)?;
        for (id, r) in &self.raidas {
            let mut what = Vec::new();
            if let Some(l) = &r.link {
                what.push(format!("link {l}"));
            }
            if let Some(fault) = &r.fault {
                what.push(fault.to_string());
            }
            if !what.is_empty() {
                write!(f, "; RAIDA {id}: {}", what.join(", "))?;
            }
        }
        Ok(())
    }
}

/// The link settings of the section and of flags, each optional (percent and ms).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSettings {
    pub loss: Option<f64>,
    pub duplicate: Option<f64>,
    pub reorder: Option<f64>,
    pub delay: Option<u64>,
    pub jitter: Option<u64>,
    pub bandwidth: Option<String>,
}

impl LinkSettings {
    /// `base` with the settings given here.
    pub fn apply(&self, base: LinkConfig) -> Result<LinkConfig, SimError> {
        let pct = |name: &str, v: Option<f64>, old: f64| -> Result<f64, SimError> {
            match v {
                None => Ok(old),
                Some(p) if (0.0..=100.0).contains(&p) => Ok(p / 100.0),
                Some(p) => Err(SimError(format!("{name} {p}: a percentage is 0..100"))),
            }
        };
        Ok(LinkConfig {
            loss: pct("loss", self.loss, base.loss)?,
            duplicate: pct("duplicate", self.duplicate, base.duplicate)?,
            reorder: pct("reorder", self.reorder, base.reorder)?,
            delay: self.delay.map_or(base.delay, Duration::from_millis),
            jitter: self.jitter.map_or(base.jitter, Duration::from_millis),
            tcp_rate: match &self.bandwidth {
                Some(b) => Some(crate::parse_rate(b)?),
                None => base.tcp_rate,
            },
        })
    }

    fn is_empty(&self) -> bool {
        *self == LinkSettings::default()
    }

    /// The settings of `over` where it has them, else these.
    fn overlay(&mut self, over: LinkSettings) {
        self.loss = over.loss.or(self.loss);
        self.duplicate = over.duplicate.or(self.duplicate);
        self.reorder = over.reorder.or(self.reorder);
        self.delay = over.delay.or(self.delay);
        self.jitter = over.jitter.or(self.jitter);
        self.bandwidth = over.bandwidth.or(self.bandwidth.take());
    }
}

/// One `[[simulation.raida]]` entry.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RaidaSettings {
    pub id: u8,
    #[serde(flatten)]
    pub link: LinkSettings,
    /// [`Fault`] syntax.
    pub fault: Option<String>,
}

/// network.toml's `[simulation]` section, or the flags of `raida network up`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulationSettings {
    pub seed: Option<u64>,
    #[serde(flatten)]
    pub link: LinkSettings,
    #[serde(default, rename = "raida")]
    pub raidas: Vec<RaidaSettings>,
}

impl SimulationSettings {
    /// The `[simulation]` section of a network file, if it has one.
    pub fn from_network_file(path: &Path) -> Result<Option<SimulationSettings>, SimError> {
        let text = std::fs::read_to_string(path).map_err(|e| SimError(format!("{}: {e}", path.display())))?;
        SimulationSettings::from_network_toml(&text).map_err(|e| SimError(format!("{}: {e}", path.display())))
    }

    /// The `[simulation]` section of a network file's text, if it has one.
    pub fn from_network_toml(text: &str) -> Result<Option<SimulationSettings>, SimError> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| SimError(e.message().to_string()))?;
        let Some(section) = table.remove("simulation") else { return Ok(None) };
        let settings: SimulationSettings =
            section.try_into().map_err(|e: toml::de::Error| SimError(format!("[simulation]: {}", e.message())))?;
        Ok(Some(settings))
    }

    /// Whether these settings simulate nothing (no seed, no link setting, no RAIDA entry).
    pub fn is_empty(&self) -> bool {
        self.seed.is_none() && self.link.is_empty() && self.raidas.is_empty()
    }

    /// These settings with `over`'s laid over them (flags over the file): its seed and
    /// link settings where it has them, its RAIDA entries merged by id.
    pub fn overlay(&mut self, over: SimulationSettings) {
        self.seed = over.seed.or(self.seed);
        self.link.overlay(over.link);
        for r in over.raidas {
            match self.raidas.iter_mut().find(|m| m.id == r.id) {
                Some(mine) => {
                    mine.link.overlay(r.link);
                    mine.fault = r.fault.or(mine.fault.take());
                }
                None => self.raidas.push(r),
            }
        }
    }

    /// The entry of RAIDA `id` (made if missing), for flags that set one RAIDA.
    pub fn raida_mut(&mut self, id: u8) -> &mut RaidaSettings {
        if let Some(i) = self.raidas.iter().position(|r| r.id == id) {
            return &mut self.raidas[i];
        }
        self.raidas.push(RaidaSettings { id, ..RaidaSettings::default() });
        let last = self.raidas.len() - 1;
        &mut self.raidas[last]
    }

    /// The simulation these settings describe; without a seed, `random_seed()`'s.
    pub fn resolve(&self, random_seed: impl FnOnce() -> u64) -> Result<Simulation, SimError> {
        let link = self.link.apply(LinkConfig::PERFECT)?;
        let mut sim = Simulation::new(self.seed.unwrap_or_else(random_seed)).with_link(link);
        for r in &self.raidas {
            let err = |e: SimError| SimError(format!("RAIDA {}: {e}", r.id));
            let entry = sim.raidas.entry(r.id).or_default();
            if !r.link.is_empty() {
                entry.link = Some(r.link.apply(link).map_err(err)?);
            }
            if let Some(f) = &r.fault {
                entry.fault = Some(f.parse().map_err(err)?);
            }
        }
        sim.check()?;
        Ok(sim)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Dishonesty;

    const FILE: &str = r#"
coin_id = 6

[[raida]]
id = 0
address = "127.0.0.1:50000"

[simulation]
seed = 42
loss = 5.0
delay = 50
bandwidth = "100Mbit/s"

[[simulation.raida]]
id = 3
fault = "down"

[[simulation.raida]]
id = 4
loss = 20
fault = "slow:2000"
"#;

    #[test]
    fn the_section_of_a_network_file_resolves() {
        let s = SimulationSettings::from_network_toml(FILE).unwrap().unwrap();
        let sim = s.resolve(|| unreachable!("the file has a seed")).unwrap();
        assert_eq!(sim.seed, 42);
        assert_eq!(sim.link.loss, 0.05);
        assert_eq!(sim.link.delay, Duration::from_millis(50));
        assert_eq!(sim.link.tcp_rate, Some(12_500_000));
        assert_eq!(sim.fault_of(3), Some(Fault::Down));
        assert_eq!(sim.link_of(3), sim.link);
        assert_eq!(sim.fault_of(4), Some(Fault::Slow(Duration::from_millis(2000))));
        // RAIDA 4's own loss over the default link's other settings
        assert_eq!(sim.link_of(4), LinkConfig { loss: 0.2, ..sim.link });
        assert_eq!(sim.to_string(), "seed 42; every link: loss 5% delay 50ms bandwidth 100Mbit/s; RAIDA 3: down; RAIDA 4: link loss 20% delay 50ms bandwidth 100Mbit/s, slow:2000");
        assert_eq!(SimulationSettings::from_network_toml("coin_id = 6\n").unwrap(), None);
    }

    #[test]
    fn flags_lay_over_the_file() {
        let mut s = SimulationSettings::from_network_toml(FILE).unwrap().unwrap();
        let mut flags = SimulationSettings { seed: Some(7), ..Default::default() };
        flags.link.delay = Some(10);
        flags.raida_mut(3).fault = Some("dishonest:wrong-key".into());
        flags.raida_mut(9).fault = Some("overloaded".into());
        s.overlay(flags);
        let sim = s.resolve(|| 0).unwrap();
        assert_eq!(sim.seed, 7);
        assert_eq!(sim.link.delay, Duration::from_millis(10));
        assert_eq!(sim.link.loss, 0.05);
        assert_eq!(sim.fault_of(3), Some(Fault::Dishonest(Dishonesty::WrongKey)));
        assert_eq!(sim.fault_of(9), Some(Fault::Overloaded));
    }

    #[test]
    fn bad_settings_say_what_is_wrong() {
        let bad = |t: &str| {
            SimulationSettings::from_network_toml(t).and_then(|s| s.unwrap().resolve(|| 0)).unwrap_err().to_string()
        };
        assert!(bad("[simulation]\nloss = 150\n").contains("0..100"));
        assert!(bad("[simulation]\nlos = 5\n").contains("los"));
        assert!(bad("[simulation]\n[[simulation.raida]]\nid = 30\n").contains("0..24"));
        assert!(bad("[simulation]\n[[simulation.raida]]\nid = 2\nfault = \"asleep\"\n").contains("RAIDA 2"));
        assert!(bad("[simulation]\nbandwidth = \"fast\"\n").contains("fast"));
    }

    #[test]
    fn raida_seeds_differ_and_repeat() {
        let a = Simulation::new(1);
        assert_ne!(a.raida_seed(0), a.raida_seed(1));
        assert_ne!(a.raida_seed(0), Simulation::new(2).raida_seed(0));
        assert_eq!(a.raida_seed(5), Simulation::new(1).raida_seed(5));
    }
}
