//! Durations written the way Prometheus writes them (`500ms`, `15s`, `5m`, `1h30m`): in the
//! config (timeouts, backoff, staleness) and in PromQL (`[{{interval}}]`). One syntax for both, so
//! a value copied from a Prometheus config means the same here.
//!
//! Deliberately not a general duration library: no fractions, no `y`/`w`/`d` (nobody configures a
//! request timeout in weeks), no negative values.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A non-negative duration in whole milliseconds, parsed from and printed as `1h2m3s4ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PromDuration(Duration);

impl PromDuration {
    pub const fn from_millis(ms: u64) -> Self {
        PromDuration(Duration::from_millis(ms))
    }

    pub const fn from_secs(s: u64) -> Self {
        PromDuration(Duration::from_secs(s))
    }

    pub fn as_duration(self) -> Duration {
        self.0
    }

    pub fn as_millis(self) -> u64 {
        u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX)
    }

    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

/// Units from largest to smallest, as Prometheus orders them when it prints a duration.
const UNITS: [(&str, u64); 4] = [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)];

impl FromStr for PromDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let text = s.trim();
        if text.is_empty() {
            return Err("empty duration (expected e.g. 30s, 5m, 1h)".into());
        }
        if text == "0" {
            return Ok(PromDuration::from_millis(0));
        }
        let mut rest = text;
        let mut total: u64 = 0;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(format!(
                    "{text:?} is not a duration (expected e.g. 500ms, 30s, 5m, 1h)"
                ));
            }
            let number: u64 = rest[..digits]
                .parse()
                .map_err(|_| format!("{text:?}: number too large"))?;
            rest = &rest[digits..];
            // "ms" must be tried before "m", or "5ms" would read as 5 minutes followed by "s".
            let (unit, factor) = [("ms", 1), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)]
                .into_iter()
                .find(|(u, _)| rest.starts_with(u))
                .ok_or_else(|| format!("{text:?}: missing or unknown unit (use ms, s, m or h)"))?;
            rest = &rest[unit.len()..];
            total = number
                .checked_mul(factor)
                .and_then(|ms| total.checked_add(ms))
                .ok_or_else(|| format!("{text:?}: duration too large"))?;
        }
        Ok(PromDuration::from_millis(total))
    }
}

impl fmt::Display for PromDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, factor) in UNITS {
            if ms >= factor {
                write!(f, "{}{unit}", ms / factor)?;
                ms %= factor;
            }
        }
        Ok(())
    }
}

impl Serialize for PromDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PromDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<u64, String> {
        s.parse::<PromDuration>().map(PromDuration::as_millis)
    }

    #[test]
    fn parses_prometheus_units_and_compounds() {
        assert_eq!(p("500ms"), Ok(500));
        assert_eq!(p("15s"), Ok(15_000));
        assert_eq!(p("5m"), Ok(300_000));
        assert_eq!(p("1h30m"), Ok(5_400_000));
        assert_eq!(p("1m500ms"), Ok(60_500));
        assert_eq!(p("0"), Ok(0));
    }

    #[test]
    fn rejects_what_prometheus_rejects() {
        for bad in ["", "5", "m", "1.5s", "-1s", "5x", "5 m", "1d"] {
            assert!(p(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn prints_in_promql_syntax_and_round_trips() {
        for (ms, text) in [(60_000, "1m"), (90_000, "1m30s"), (250, "250ms"), (0, "0s")] {
            let d = PromDuration::from_millis(ms);
            assert_eq!(d.to_string(), text);
            assert_eq!(text.parse::<PromDuration>().unwrap(), d);
        }
    }
}
