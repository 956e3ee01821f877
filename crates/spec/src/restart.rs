//! `--restart no|always|on-failure[:N]|unless-stopped`.

use std::fmt;
use std::str::FromStr;

/// Why a restart policy was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestartError {
    /// Not one of the four policies.
    #[error(
        "invalid restart policy {0:?}: expected no, always, on-failure[:max-retries] or unless-stopped"
    )]
    Unknown(String),
    /// A retry count on a policy other than on-failure, or not a number.
    #[error(
        "invalid restart policy {0:?}: only on-failure takes a maximum retry count, a whole number"
    )]
    BadRetries(String),
}

/// When the daemon restarts a container whose process exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RestartPolicy {
    /// Never (the default).
    #[default]
    No,
    /// Always, until stopped by the user; also when the daemon starts.
    Always,
    /// When the exit code is not 0, at most `max_retries` times when given.
    OnFailure {
        /// The retry limit; `None` means no limit.
        max_retries: Option<u32>,
    },
    /// Like always, except after the user stopped it.
    UnlessStopped,
}

impl FromStr for RestartPolicy {
    type Err = RestartError;

    fn from_str(text: &str) -> Result<RestartPolicy, RestartError> {
        let (name, count) = match text.split_once(':') {
            Some((n, c)) => (n, Some(c)),
            None => (text, None),
        };
        let policy = match name {
            "no" | "" => RestartPolicy::No,
            "always" => RestartPolicy::Always,
            "unless-stopped" => RestartPolicy::UnlessStopped,
            "on-failure" => {
                let max_retries = count
                    .map(|c| {
                        c.parse::<u32>()
                            .ok()
                            .filter(|_| c.bytes().all(|b| b.is_ascii_digit()))
                            .ok_or_else(|| RestartError::BadRetries(text.to_owned()))
                    })
                    .transpose()?;
                return Ok(RestartPolicy::OnFailure { max_retries });
            }
            _ => return Err(RestartError::Unknown(text.to_owned())),
        };
        if count.is_some() {
            return Err(RestartError::BadRetries(text.to_owned()));
        }
        Ok(policy)
    }
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestartPolicy::No => f.write_str("no"),
            RestartPolicy::Always => f.write_str("always"),
            RestartPolicy::UnlessStopped => f.write_str("unless-stopped"),
            RestartPolicy::OnFailure { max_retries: None } => f.write_str("on-failure"),
            RestartPolicy::OnFailure {
                max_retries: Some(n),
            } => write!(f, "on-failure:{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_four_policies() {
        assert_eq!("no".parse::<RestartPolicy>().unwrap(), RestartPolicy::No);
        assert_eq!(
            "always".parse::<RestartPolicy>().unwrap(),
            RestartPolicy::Always
        );
        assert_eq!(
            "on-failure:3".parse::<RestartPolicy>().unwrap(),
            RestartPolicy::OnFailure {
                max_retries: Some(3)
            }
        );
        assert_eq!(
            "unless-stopped".parse::<RestartPolicy>().unwrap(),
            RestartPolicy::UnlessStopped
        );
        assert_eq!(
            "sometimes"
                .parse::<RestartPolicy>()
                .unwrap_err()
                .to_string(),
            r#"invalid restart policy "sometimes": expected no, always, on-failure[:max-retries] or unless-stopped"#
        );
        assert_eq!(
            "always:3".parse::<RestartPolicy>().unwrap_err().to_string(),
            r#"invalid restart policy "always:3": only on-failure takes a maximum retry count, a whole number"#
        );
        assert!("on-failure:-1".parse::<RestartPolicy>().is_err());
    }

    proptest! {
        #[test]
        fn display_round_trips(n in prop::option::of(any::<u32>()), which in 0..4) {
            let p = match which {
                0 => RestartPolicy::No,
                1 => RestartPolicy::Always,
                2 => RestartPolicy::UnlessStopped,
                _ => RestartPolicy::OnFailure { max_retries: n },
            };
            prop_assert_eq!(p.to_string().parse::<RestartPolicy>().unwrap(), p);
        }
    }
}
