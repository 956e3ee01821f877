//! `-c/--cpus`: how many virtual CPUs a container's VM gets.
//!
//! Docker takes a decimal (`--cpus 1.5`) as a CFS quota. A VM has whole vCPUs, so a fraction
//! is kept (the guest may cap the container's cgroup with it) and rounded up for the VM.

use std::fmt;
use std::str::FromStr;

/// The most vCPUs one VM may ask for.
pub const MAX_CPUS: u32 = 512;

/// Why a CPU count was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CpusError {
    /// Not a positive decimal with at most three fraction digits.
    #[error("invalid cpus {0:?}: expected a positive number such as 2 or 1.5")]
    Malformed(String),
    /// Zero, or more than [`MAX_CPUS`].
    #[error("invalid cpus {0:?}: must be more than 0 and at most {MAX_CPUS}")]
    OutOfRange(String),
}

/// A CPU count in thousandths of a CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cpus {
    millis: u32,
}

impl Cpus {
    /// Whole CPUs.
    pub fn whole(n: u32) -> Cpus {
        Cpus {
            millis: n.saturating_mul(1000),
        }
    }

    /// Thousandths of a CPU.
    pub fn millis(self) -> u32 {
        self.millis
    }

    /// The vCPUs the VM gets: the count rounded up.
    pub fn vcpus(self) -> u32 {
        self.millis.div_ceil(1000)
    }

    /// Docker's NanoCPUs (1e9 per CPU).
    pub fn nano_cpus(self) -> u64 {
        u64::from(self.millis) * 1_000_000
    }
}

impl FromStr for Cpus {
    type Err = CpusError;

    fn from_str(text: &str) -> Result<Cpus, CpusError> {
        let malformed = || CpusError::Malformed(text.to_owned());
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty()
            || !digits(whole)
            || !digits(fraction)
            || fraction.len() > 3
            || (text.contains('.') && fraction.is_empty())
        {
            return Err(malformed());
        }
        let whole: u64 = whole
            .parse()
            .map_err(|_| CpusError::OutOfRange(text.to_owned()))?;
        let fraction: u64 = format!("{fraction:0<3}").parse().map_err(|_| malformed())?;
        let millis = whole.saturating_mul(1000).saturating_add(fraction);
        if millis == 0 || millis > u64::from(MAX_CPUS) * 1000 {
            return Err(CpusError::OutOfRange(text.to_owned()));
        }
        Ok(Cpus {
            millis: millis as u32,
        })
    }
}

impl fmt::Display for Cpus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, fraction) = (self.millis / 1000, self.millis % 1000);
        if fraction == 0 {
            write!(f, "{whole}")
        } else {
            let fraction = format!("{fraction:03}");
            write!(f, "{whole}.{}", fraction.trim_end_matches('0'))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_whole_and_fractional_counts() {
        let c: Cpus = "2".parse().unwrap();
        assert_eq!((c.millis(), c.vcpus()), (2000, 2));
        let c: Cpus = "1.5".parse().unwrap();
        assert_eq!(
            (c.millis(), c.vcpus(), c.nano_cpus()),
            (1500, 2, 1_500_000_000)
        );
        assert_eq!("0.25".parse::<Cpus>().unwrap().vcpus(), 1);
    }

    #[test]
    fn refuses_zero_negative_and_junk() {
        assert_eq!(
            "0".parse::<Cpus>().unwrap_err().to_string(),
            r#"invalid cpus "0": must be more than 0 and at most 512"#
        );
        assert_eq!(
            "-1".parse::<Cpus>().unwrap_err().to_string(),
            r#"invalid cpus "-1": expected a positive number such as 2 or 1.5"#
        );
        for bad in ["", "two", "1.", ".5", "1.2345", "1e3", "513"] {
            assert!(bad.parse::<Cpus>().is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn display_round_trips(millis in 1u32..=MAX_CPUS * 1000) {
            let c = Cpus { millis };
            prop_assert_eq!(c.to_string().parse::<Cpus>().unwrap(), c);
        }
    }
}
