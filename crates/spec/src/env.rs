//! Environment variables: `-e KEY=VALUE`, `-e KEY` and `--env-file` lines.
//!
//! As in Docker: a bare `KEY` takes its value from the caller's environment and is dropped
//! when unset there; an env file holds one `KEY=VALUE` or `KEY` per line, `#` starts a
//! comment line, blank lines are skipped, and values are taken verbatim (no quotes, no
//! expansion). The environment lookup is a function the caller passes, so this stays pure.

use std::fmt;

/// Why an environment variable was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    /// `=VALUE` without a name.
    #[error("invalid environment variable {0:?}: no variable name")]
    NoName(String),
    /// The name holds whitespace or a NUL.
    #[error("invalid environment variable {0:?}: name contains whitespace")]
    Whitespace(String),
    /// A line of an env file is wrong; `reason` says how.
    #[error("env file line {line}: {reason}")]
    FileLine {
        /// 1-based line number.
        line: usize,
        /// What was wrong with it.
        reason: Box<EnvError>,
    },
}

/// One environment variable.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EnvVar {
    /// The name.
    pub key: String,
    /// The value (may be empty).
    pub value: String,
}

impl fmt::Display for EnvVar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.key, self.value)
    }
}

/// Parses one `-e` value. `lookup` answers a bare `KEY` from the caller's environment;
/// `Ok(None)` means the variable is unset there and is left out.
pub fn parse_env(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Option<EnvVar>, EnvError> {
    let (key, value) = match text.split_once('=') {
        Some((key, value)) => (key, Some(value)),
        None => (text, None),
    };
    if key.is_empty() {
        return Err(EnvError::NoName(text.to_owned()));
    }
    if key.chars().any(|c| c.is_whitespace() || c == '\0') {
        return Err(EnvError::Whitespace(text.to_owned()));
    }
    let value = match value {
        Some(v) => v.to_owned(),
        None => match lookup(key) {
            Some(v) => v,
            None => return Ok(None),
        },
    };
    Ok(Some(EnvVar {
        key: key.to_owned(),
        value,
    }))
}

/// Parses the text of an `--env-file`.
pub fn parse_env_file(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Vec<EnvVar>, EnvError> {
    let mut vars = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        match parse_env(trimmed, &lookup) {
            Ok(Some(var)) => vars.push(var),
            Ok(None) => {}
            Err(e) => {
                return Err(EnvError::FileLine {
                    line: i + 1,
                    reason: Box::new(e),
                });
            }
        }
    }
    Ok(vars)
}

/// Merges variables so that a later one replaces an earlier one of the same name, keeping
/// first-seen order (image env, then env files, then `-e`).
pub fn merge(vars: impl IntoIterator<Item = EnvVar>) -> Vec<EnvVar> {
    let mut out: Vec<EnvVar> = Vec::new();
    for var in vars {
        match out.iter_mut().find(|v| v.key == var.key) {
            Some(existing) => existing.value = var.value,
            None => out.push(var),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn host(key: &str) -> Option<String> {
        (key == "HOME").then(|| "/home/me".to_owned())
    }

    #[test]
    fn key_value_and_bare_keys() {
        let v = parse_env("A=b=c", host).unwrap().unwrap();
        assert_eq!((v.key.as_str(), v.value.as_str()), ("A", "b=c"));
        assert_eq!(parse_env("A=", host).unwrap().unwrap().value, "");
        assert_eq!(
            parse_env("HOME", host).unwrap().unwrap().to_string(),
            "HOME=/home/me"
        );
        assert_eq!(parse_env("UNSET", host).unwrap(), None);
        assert_eq!(
            parse_env("=x", host).unwrap_err().to_string(),
            r#"invalid environment variable "=x": no variable name"#
        );
        assert_eq!(
            parse_env("A B=x", host).unwrap_err().to_string(),
            r#"invalid environment variable "A B=x": name contains whitespace"#
        );
    }

    #[test]
    fn env_file_lines() {
        let text = "# comment\n\nA=1\n  B=two words \r\nHOME\nUNSET\nC=\"quoted\"\n";
        let vars = parse_env_file(text, host).unwrap();
        let shown: Vec<String> = vars.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            ["A=1", "B=two words ", "HOME=/home/me", "C=\"quoted\""]
        );
        assert_eq!(
            parse_env_file("A=1\n=2\n", host).unwrap_err().to_string(),
            r#"env file line 2: invalid environment variable "=2": no variable name"#
        );
    }

    #[test]
    fn later_values_win() {
        let vars = merge([
            EnvVar {
                key: "A".into(),
                value: "1".into(),
            },
            EnvVar {
                key: "B".into(),
                value: "2".into(),
            },
            EnvVar {
                key: "A".into(),
                value: "3".into(),
            },
        ]);
        assert_eq!(
            vars.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["A=3", "B=2"]
        );
    }

    proptest! {
        #[test]
        fn display_round_trips(key in "[A-Za-z_][A-Za-z0-9_]{0,10}", value in "[^\n\r]{0,20}") {
            let var = EnvVar { key, value };
            prop_assert_eq!(parse_env(&var.to_string(), |_| None).unwrap(), Some(var));
        }
    }
}
