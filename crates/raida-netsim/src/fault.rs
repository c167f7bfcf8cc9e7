//! Fault modes of one RAIDA, and their one-word syntax (flags and network.toml).

use std::time::Duration;

use crate::SimError;

/// What is wrong with one RAIDA. The proxy in front of it carries out every mode but
/// [`Fault::Dishonest`], which the server itself plays (`LocalNetwork`; the proxy forwards
/// as for a healthy RAIDA).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Silent: UDP requests are dropped; TCP connections are accepted and read but nothing
    /// is forwarded or answered.
    Down,
    /// Nothing is bound on the RAIDA's address: the kernel answers UDP with port
    /// unreachable and TCP with connection refused.
    Refusing,
    /// Every answer comes this much later (on top of the link's delay).
    Slow(Duration),
    /// Every request is answered with 160 REQUEST_RATE by the proxy itself (a header-only
    /// error answer, as the server sends for a request it does not run).
    Overloaded,
    /// Get Key answers lie (the server plays this).
    Dishonest(Dishonesty),
}

/// How a dishonest RAIDA lies about the key parts it holds (Get Key, 4/43).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dishonesty {
    /// The true sender, but other key bytes (each byte flipped).
    WrongKey,
    /// The true key bytes, but another sender identity.
    OtherSender,
}

impl std::fmt::Display for Dishonesty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Dishonesty::WrongKey => "wrong-key",
            Dishonesty::OtherSender => "other-sender",
        })
    }
}

impl std::str::FromStr for Dishonesty {
    type Err = SimError;
    fn from_str(s: &str) -> Result<Self, SimError> {
        match s.trim() {
            "wrong-key" => Ok(Dishonesty::WrongKey),
            "other-sender" => Ok(Dishonesty::OtherSender),
            o => Err(SimError(format!("dishonesty {o:?}: use wrong-key or other-sender"))),
        }
    }
}

impl std::fmt::Display for Fault {
    /// The syntax [`Fault::from_str`] reads: `down`, `refusing`, `overloaded`,
    /// `slow:2000` (ms), `dishonest:wrong-key`, `dishonest:other-sender`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Down => f.write_str("down"),
            Fault::Refusing => f.write_str("refusing"),
            Fault::Slow(d) => write!(f, "slow:{}", d.as_millis()),
            Fault::Overloaded => f.write_str("overloaded"),
            Fault::Dishonest(k) => write!(f, "dishonest:{k}"),
        }
    }
}

impl std::str::FromStr for Fault {
    type Err = SimError;
    fn from_str(s: &str) -> Result<Self, SimError> {
        let s = s.trim();
        let (word, arg) = match s.split_once(':') {
            Some((w, a)) => (w, Some(a)),
            None => (s, None),
        };
        match (word, arg) {
            ("down", None) => Ok(Fault::Down),
            ("refusing", None) => Ok(Fault::Refusing),
            ("overloaded", None) => Ok(Fault::Overloaded),
            ("slow", Some(ms)) => Ok(Fault::Slow(Duration::from_millis(crate::parse_ms(ms)?))),
            ("dishonest", Some(k)) => Ok(Fault::Dishonest(k.parse()?)),
            _ => Err(SimError(format!(
                "fault {s:?}: use down, refusing, overloaded, slow:MS, dishonest:wrong-key or dishonest:other-sender"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_round_trips() {
        for f in [
            Fault::Down,
            Fault::Refusing,
            Fault::Overloaded,
            Fault::Slow(Duration::from_millis(2000)),
            Fault::Dishonest(Dishonesty::WrongKey),
            Fault::Dishonest(Dishonesty::OtherSender),
        ] {
            assert_eq!(f.to_string().parse::<Fault>().unwrap(), f);
        }
        assert_eq!("slow:250ms".parse::<Fault>().unwrap(), Fault::Slow(Duration::from_millis(250)));
        for bad in ["", "slow", "slow:x", "dishonest:maybe", "up", "down:1"] {
            assert!(bad.parse::<Fault>().is_err(), "{bad}");
        }
    }
}
