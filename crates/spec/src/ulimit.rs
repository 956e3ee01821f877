//! `--ulimit name=soft[:hard]`: resource limits of the container's processes.

use std::fmt;
use std::str::FromStr;

/// Why a ulimit was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UlimitError {
    /// Not `name=soft[:hard]`.
    #[error("invalid ulimit {0:?}: expected name=soft[:hard], e.g. nofile=1024:2048")]
    Malformed(String),
    /// The name is not a known resource.
    #[error("invalid ulimit {spec:?}: unknown resource {name:?} (one of {})", NAMES.join(", "))]
    UnknownName {
        /// What the user typed.
        spec: String,
        /// The resource name.
        name: String,
    },
    /// A value is not a number, -1 or `unlimited`.
    #[error("invalid ulimit {spec:?}: {value:?} is not a number, -1 or unlimited")]
    BadValue {
        /// What the user typed.
        spec: String,
        /// The value.
        value: String,
    },
    /// The soft limit exceeds the hard one.
    #[error("invalid ulimit {0:?}: soft limit is greater than the hard limit")]
    SoftAboveHard(String),
}

const NAMES: [&str; 15] = [
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// A limit value: a number, or no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Limit {
    /// A finite limit.
    Value(u64),
    /// `unlimited` / `-1` (RLIM_INFINITY).
    Unlimited,
}

impl Limit {
    /// The value for setrlimit(2): `u64::MAX` is RLIM_INFINITY on Linux.
    pub fn as_raw(self) -> u64 {
        match self {
            Limit::Value(v) => v,
            Limit::Unlimited => u64::MAX,
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Value(v) => write!(f, "{v}"),
            Limit::Unlimited => f.write_str("unlimited"),
        }
    }
}

/// One `--ulimit`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ulimit {
    /// The resource, lower case without `RLIMIT_` (`nofile`).
    pub name: String,
    /// The soft limit.
    pub soft: Limit,
    /// The hard limit (equal to soft when not given).
    pub hard: Limit,
}

impl Ulimit {
    /// The OCI runtime-spec type: `RLIMIT_NOFILE`.
    pub fn rlimit_type(&self) -> String {
        format!("RLIMIT_{}", self.name.to_ascii_uppercase())
    }
}

impl FromStr for Ulimit {
    type Err = UlimitError;

    fn from_str(spec: &str) -> Result<Ulimit, UlimitError> {
        let (name, values) = spec
            .split_once('=')
            .ok_or_else(|| UlimitError::Malformed(spec.to_owned()))?;
        let name = name.to_ascii_lowercase();
        if !NAMES.contains(&name.as_str()) {
            return Err(UlimitError::UnknownName {
                spec: spec.to_owned(),
                name,
            });
        }
        let value = |v: &str| -> Result<Limit, UlimitError> {
            match v {
                "-1" | "unlimited" => Ok(Limit::Unlimited),
                _ if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => v
                    .parse()
                    .map(Limit::Value)
                    .map_err(|_| UlimitError::BadValue {
                        spec: spec.to_owned(),
                        value: v.to_owned(),
                    }),
                _ => Err(UlimitError::BadValue {
                    spec: spec.to_owned(),
                    value: v.to_owned(),
                }),
            }
        };
        let (soft, hard) = match values.split_once(':') {
            Some((s, h)) => (value(s)?, value(h)?),
            None => {
                let v = value(values)?;
                (v, v)
            }
        };
        if soft > hard {
            return Err(UlimitError::SoftAboveHard(spec.to_owned()));
        }
        Ok(Ulimit { name, soft, hard })
    }
}

impl fmt::Display for Ulimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.name, self.soft)?;
        if self.hard != self.soft {
            write!(f, ":{}", self.hard)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn soft_and_hard() {
        let u: Ulimit = "nofile=1024:2048".parse().unwrap();
        assert_eq!((u.soft, u.hard), (Limit::Value(1024), Limit::Value(2048)));
        assert_eq!(u.rlimit_type(), "RLIMIT_NOFILE");
        let u: Ulimit = "core=-1".parse().unwrap();
        assert_eq!((u.soft, u.hard), (Limit::Unlimited, Limit::Unlimited));
        assert_eq!(
            "nproc=10:unlimited".parse::<Ulimit>().unwrap().to_string(),
            "nproc=10:unlimited"
        );
    }

    #[test]
    fn errors() {
        assert_eq!(
            "nofile".parse::<Ulimit>().unwrap_err().to_string(),
            r#"invalid ulimit "nofile": expected name=soft[:hard], e.g. nofile=1024:2048"#
        );
        assert!(
            "files=1"
                .parse::<Ulimit>()
                .unwrap_err()
                .to_string()
                .starts_with(
                    r#"invalid ulimit "files=1": unknown resource "files" (one of core, cpu"#
                )
        );
        assert_eq!(
            "nofile=x".parse::<Ulimit>().unwrap_err().to_string(),
            r#"invalid ulimit "nofile=x": "x" is not a number, -1 or unlimited"#
        );
        assert_eq!(
            "nofile=10:5".parse::<Ulimit>().unwrap_err().to_string(),
            r#"invalid ulimit "nofile=10:5": soft limit is greater than the hard limit"#
        );
    }

    proptest! {
        #[test]
        fn display_round_trips(i in 0usize..NAMES.len(), a in prop::option::of(any::<u64>()), b in prop::option::of(any::<u64>())) {
            let lim = |v: Option<u64>| v.map_or(Limit::Unlimited, Limit::Value);
            let (soft, hard) = if lim(a) <= lim(b) { (lim(a), lim(b)) } else { (lim(b), lim(a)) };
            let u = Ulimit { name: NAMES[i].to_owned(), soft, hard };
            prop_assert_eq!(u.to_string().parse::<Ulimit>().unwrap(), u);
        }
    }
}
