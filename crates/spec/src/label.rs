//! `-l/--label KEY[=VALUE]`: metadata on containers, images, volumes and networks.

use std::fmt;
use std::str::FromStr;

/// Why a label was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    /// No key before `=`.
    #[error("invalid label {0:?}: no key")]
    NoKey(String),
    /// The key holds whitespace.
    #[error("invalid label {0:?}: key contains whitespace")]
    Whitespace(String),
}

/// One label. A bare `KEY` has an empty value, as in Docker.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label {
    /// The key.
    pub key: String,
    /// The value.
    pub value: String,
}

impl FromStr for Label {
    type Err = LabelError;

    fn from_str(text: &str) -> Result<Label, LabelError> {
        let (key, value) = text.split_once('=').unwrap_or((text, ""));
        if key.is_empty() {
            return Err(LabelError::NoKey(text.to_owned()));
        }
        if key.chars().any(char::is_whitespace) {
            return Err(LabelError::Whitespace(text.to_owned()));
        }
        Ok(Label {
            key: key.to_owned(),
            value: value.to_owned(),
        })
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.key, self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keys_and_values() {
        let l: Label = "com.example.team=infra=core".parse().unwrap();
        assert_eq!(
            (l.key.as_str(), l.value.as_str()),
            ("com.example.team", "infra=core")
        );
        assert_eq!("flag".parse::<Label>().unwrap().value, "");
        assert_eq!(
            "=x".parse::<Label>().unwrap_err().to_string(),
            r#"invalid label "=x": no key"#
        );
        assert_eq!(
            "a b=x".parse::<Label>().unwrap_err().to_string(),
            r#"invalid label "a b=x": key contains whitespace"#
        );
    }

    proptest! {
        #[test]
        fn display_round_trips(key in "[a-z][a-z0-9.-]{0,12}", value in ".{0,12}") {
            let l = Label { key, value };
            prop_assert_eq!(l.to_string().parse::<Label>().unwrap(), l);
        }
    }
}
