//! Periods users type: `30s`, `5m`, `2h`, `1h30m`, `1d`, or bare seconds.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Why a period was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not numbers each followed by s, m, h or d.
    #[error("invalid duration {0:?}: expected e.g. 30s, 5m, 2h or 1h30m")]
    Malformed(String),
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
