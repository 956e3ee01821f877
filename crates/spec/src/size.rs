//! Memory and disk sizes: `512m`, `1g`, `1024`, `2GiB`, `1.5g`, Docker's units.
//!
//! As in Docker (go-units `RAMInBytes`), every unit is binary (`k` = 1024), the case of the
//! unit does not matter, `b`, `ib` or nothing may follow it, and a bare number means bytes.

use std::fmt;
use std::str::FromStr;

/// Why a size was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// Not a number with an optional unit.
    #[error(
        "invalid size {0:?}: expected a number with an optional unit (b, k, m, g, t, p), e.g. 512m"
    )]
    Malformed(String),
    /// Does not fit in 64 bits of bytes.
    #[error("invalid size {0:?}: too large")]
    TooLarge(String),
}

/// A size in bytes, as the user wrote it with a binary unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

const UNITS: [(char, u32); 5] = [('p', 50), ('t', 40), ('g', 30), ('m', 20), ('k', 10)];

impl ByteSize {
    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }

    /// The size in whole MiB, rounded down.
    pub fn mib(self) -> u64 {
        self.0 >> 20
    }
}

impl FromStr for ByteSize {
    type Err = SizeError;

    fn from_str(text: &str) -> Result<ByteSize, SizeError> {
        let malformed = || SizeError::Malformed(text.to_owned());
        let number_end = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(number_end);
        let unit = unit.strip_prefix(' ').unwrap_or(unit).to_ascii_lowercase();
        let shift = match unit.as_str() {
            "" | "b" => 0,
            _ => {
                let mut chars = unit.chars();
                let letter = chars.next().ok_or_else(malformed)?;
                let tail = chars.as_str();
                if !matches!(tail, "" | "b" | "i" | "ib") {
                    return Err(malformed());
                }
                UNITS
                    .iter()
                    .find(|(l, _)| *l == letter)
                    .map(|(_, s)| *s)
                    .ok_or_else(malformed)?
            }
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty()
            || fraction.contains('.')
            || (number.contains('.') && fraction.is_empty())
        {
            return Err(malformed());
        }
        let whole: u128 = whole
            .parse()
            .map_err(|_| SizeError::TooLarge(text.to_owned()))?;
        let mut bytes = whole << shift;
        if !fraction.is_empty() {
            // Exact decimal arithmetic: fraction / 10^len of the unit, rounded down.
            let digits = &fraction[..fraction.len().min(18)];
            let numerator: u128 = digits.parse().map_err(|_| malformed())?;
            let denominator = 10u128.pow(digits.len() as u32);
            bytes += (numerator << shift) / denominator;
        }
        if whole >= 1 << 64 || bytes > u64::MAX as u128 {
            return Err(SizeError::TooLarge(text.to_owned()));
        }
        Ok(ByteSize(bytes as u64))
    }
}

impl fmt::Display for ByteSize {
    /// The largest unit that divides the size exactly, e.g. `1g`, `1536m`, `1000`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (letter, shift) in UNITS {
            if self.0 != 0 && self.0.is_multiple_of(1u64 << shift) {
                return write!(f, "{}{letter}", self.0 >> shift);
            }
        }
        write!(f, "{}", self.0)
    }
}

/// Renders bytes for people, in binary units with one decimal: `512 B`, `1.5 KiB`, `2.0 GiB`.
pub fn human_bytes(bytes: u64) -> String {
    const NAMES: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < NAMES.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", NAMES[unit])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn b(s: &str) -> u64 {
        s.parse::<ByteSize>().unwrap().0
    }

    #[test]
    fn docker_units() {
        assert_eq!(b("1024"), 1024);
        assert_eq!(b("512m"), 512 << 20);
        assert_eq!(b("512M"), 512 << 20);
        assert_eq!(b("1g"), 1 << 30);
        assert_eq!(b("2GiB"), 2 << 30);
        assert_eq!(b("2gb"), 2 << 30);
        assert_eq!(b("2 GB"), 2 << 30);
        assert_eq!(b("64k"), 64 << 10);
        assert_eq!(b("1.5g"), 1536 << 20);
        assert_eq!(b("10b"), 10);
        assert_eq!(b("1t"), 1 << 40);
    }

    #[test]
    fn refuses_junk() {
        for bad in ["", "m", "-1", "1x", "1.5.5g", "1.g", "1gg", "g1", "1 0"] {
            assert_eq!(
                bad.parse::<ByteSize>().unwrap_err().to_string(),
                format!(
                    "invalid size {bad:?}: expected a number with an optional unit (b, k, m, g, t, p), e.g. 512m"
                ),
                "{bad}"
            );
        }
        assert_eq!(
            "100000000p".parse::<ByteSize>().unwrap_err().to_string(),
            r#"invalid size "100000000p": too large"#
        );
    }

    #[test]
    fn display_picks_the_largest_exact_unit() {
        assert_eq!(ByteSize(1 << 30).to_string(), "1g");
        assert_eq!(ByteSize(1536 << 20).to_string(), "1536m");
        assert_eq!(ByteSize(1000).to_string(), "1000");
        assert_eq!(ByteSize(0).to_string(), "0");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(1 << 30), "1.0 GiB");
    }

    proptest! {
        #[test]
        fn display_round_trips(n in any::<u64>()) {
            prop_assert_eq!(ByteSize(n).to_string().parse::<ByteSize>().unwrap(), ByteSize(n));
        }

        #[test]
        fn never_panics(text in "[0-9a-zA-Z. ]{0,30}") {
            let _ = text.parse::<ByteSize>();
        }
    }
}
