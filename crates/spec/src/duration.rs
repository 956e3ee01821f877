//! Periods users type: `30s`, `5m`, `2h`, `1h30m`, `1d`, or bare seconds; and Go-style
//! durations with fractions and sub-second units (`500ms`, `1.5s`) for Docker's flags that
//! take them.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Go's `units.HumanDuration`: how `docker ps` words an age in its STATUS and CREATED
/// columns (`Up 5 seconds`, `About an hour ago`).
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (m, h) = (s / 60, s / 3600);
    match s {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        _ if s < 60 => format!("{s} seconds"),
        _ if m == 1 => "About a minute".into(),
        _ if m < 60 => format!("{m} minutes"),
        _ if h == 1 => "About an hour".into(),
        _ if h < 48 => format!("{h} hours"),
        _ if h < 24 * 7 * 2 => format!("{} days", h / 24),
        _ if h < 24 * 30 * 2 => format!("{} weeks", h / 24 / 7),
        _ if h < 24 * 365 * 2 => format!("{} months", h / 24 / 30),
        _ => format!("{} years", h / 24 / 365),
    }
}

/// Why a period was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not numbers each followed by s, m, h or d.
    #[error("invalid duration {0:?}: expected e.g. 30s, 5m, 2h or 1h30m")]
    Malformed(String),
    /// Not a Go-style duration (numbers, fractions allowed, each with ns, us, ms, s, m, h).
    #[error("invalid duration {0:?}: expected e.g. 500ms, 1s, 1.5s or 1m30s")]
    Precise(String),
}

/// A period in whole seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Period(pub u64);

impl Period {
    /// As a `Duration`.
    pub fn duration(self) -> Duration {
        Duration::from_secs(self.0)
    }
}

impl FromStr for Period {
    type Err = DurationError;

    fn from_str(text: &str) -> Result<Period, DurationError> {
        let bad = || DurationError::Malformed(text.to_owned());
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            return text.parse().map(Period).map_err(|_| bad());
        }
        let (mut total, mut number) = (0u64, String::new());
        for c in text.chars() {
            if c.is_ascii_digit() {
                number.push(c);
                continue;
            }
            let unit = match c {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                _ => return Err(bad()),
            };
            let n: u64 = number.parse().map_err(|_| bad())?;
            total = n
                .checked_mul(unit)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(bad)?;
            number.clear();
        }
        if !number.is_empty() || text.is_empty() {
            return Err(bad());
        }
        Ok(Period(total))
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}s", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn units_and_sums() {
        assert_eq!("30s".parse::<Period>().unwrap(), Period(30));
        assert_eq!("5m".parse::<Period>().unwrap(), Period(300));
        assert_eq!("1h30m".parse::<Period>().unwrap(), Period(5400));
        assert_eq!("2d".parse::<Period>().unwrap(), Period(172_800));
        assert_eq!("45".parse::<Period>().unwrap(), Period(45));
        for bad in ["", "m", "5x", "5m3", "-5s", "1.5h"] {
            assert_eq!(
                bad.parse::<Period>().unwrap_err().to_string(),
                format!("invalid duration {bad:?}: expected e.g. 30s, 5m, 2h or 1h30m")
            );
        }
    }

    proptest! {
        #[test]
        fn display_round_trips(n in any::<u64>()) {
            prop_assert_eq!(Period(n).to_string().parse::<Period>().unwrap(), Period(n));
        }
    }
}

/// Parses a Go-style duration as Docker's `--health-*` flags take it: numbers (fractions
/// allowed) each followed by ns, us, ms, s, m or h (`500ms`, `1.5s`, `1m30s`); `0` alone
/// is zero.
pub fn parse_precise(text: &str) -> Result<Duration, DurationError> {
    let bad = || DurationError::Precise(text.to_owned());
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = text;
    let mut total: u128 = 0;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (number, tail) = rest.split_at(digits);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(bad()),
        };
        let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && frac.is_empty()) || frac.contains('.') {
            return Err(bad());
        }
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| bad())?
        };
        let mut part = whole.checked_mul(scale).ok_or_else(bad)?;
        let mut place = scale;
        for d in frac.bytes() {
            place /= 10;
            part += u128::from(d - b'0') * place;
        }
        total = total.checked_add(part).ok_or_else(bad)?;
        rest = next;
    }
    let nanos = u64::try_from(total).map_err(|_| bad())?;
    Ok(Duration::from_nanos(nanos))
}

#[cfg(test)]
mod precise_tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn go_durations() {
        let ms = |t: &str| parse_precise(t).unwrap().as_millis();
        assert_eq!(ms("1s"), 1000);
        assert_eq!(ms("500ms"), 500);
        assert_eq!(ms("1.5s"), 1500);
        assert_eq!(ms("1m30s"), 90_000);
        assert_eq!(ms("2h"), 7_200_000);
        assert_eq!(ms("0"), 0);
        assert_eq!(parse_precise("250us").unwrap().as_micros(), 250);
        for bad in ["", "5", "1x", "s", ".s", "1..5s", "-1s"] {
            assert_eq!(
                parse_precise(bad).unwrap_err().to_string(),
                format!("invalid duration {bad:?}: expected e.g. 500ms, 1s, 1.5s or 1m30s")
            );
        }
    }

    proptest! {
        #[test]
        fn whole_milliseconds_round_trip(n in 0u64..1_000_000_000) {
            prop_assert_eq!(parse_precise(&format!("{n}ms")).unwrap().as_millis(), u128::from(n));
        }
    }
}
