//! `-u/--user name|uid[:group|gid]`, and the `--uid`/`--gid` shortcuts.

use std::fmt;
use std::str::FromStr;

/// Why a user spec was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    /// Empty, or an empty part.
    #[error("invalid user {0:?}: expected name|uid[:group|gid]")]
    Malformed(String),
    /// A name holds a character no passwd entry may hold.
    #[error("invalid user {spec:?}: {part:?} is neither a number nor a valid name")]
    BadName {
        /// What the user typed.
        spec: String,
        /// The offending part.
        part: String,
    },
}

/// A user or group: by name (looked up in the container's /etc/passwd or /etc/group) or by
/// number.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Id {
    /// A numeric id.
    Numeric(u32),
    /// A name, resolved inside the container.
    Name(String),
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Id::Numeric(n) => write!(f, "{n}"),
            Id::Name(s) => f.write_str(s),
        }
    }
}

/// Who the container's process runs as.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct User {
    /// The user.
    pub user: Id,
    /// The group; `None` means the user's primary group.
    pub group: Option<Id>,
}

impl User {
    /// Combines `-u`, `--uid` and `--gid`: the numeric flags replace the matching part.
    /// Returns `None` when none was given (the image's user applies).
    pub fn from_flags(
        user: Option<&str>,
        uid: Option<u32>,
        gid: Option<u32>,
    ) -> Result<Option<User>, UserError> {
        let mut parsed = user.map(str::parse::<User>).transpose()?;
        if let Some(uid) = uid {
            let group = parsed.take().and_then(|u| u.group);
            parsed = Some(User {
                user: Id::Numeric(uid),
                group,
            });
        }
        if let Some(gid) = gid {
            let user = parsed.take().map_or(Id::Numeric(0), |u| u.user);
            parsed = Some(User {
                user,
                group: Some(Id::Numeric(gid)),
            });
        }
        Ok(parsed)
    }
}

fn parse_id(spec: &str, part: &str) -> Result<Id, UserError> {
    if part.is_empty() {
        return Err(UserError::Malformed(spec.to_owned()));
    }
    if part.bytes().all(|b| b.is_ascii_digit()) {
        return part
            .parse()
            .map(Id::Numeric)
            .map_err(|_| UserError::BadName {
                spec: spec.to_owned(),
                part: part.to_owned(),
            });
    }
    let valid = part
        .chars()
        .all(|c| !(c.is_whitespace() || c.is_control() || c == ':' || c == '/'));
    if valid {
        Ok(Id::Name(part.to_owned()))
    } else {
        Err(UserError::BadName {
            spec: spec.to_owned(),
            part: part.to_owned(),
        })
    }
}

impl FromStr for User {
    type Err = UserError;

    fn from_str(spec: &str) -> Result<User, UserError> {
        let (user, group) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        Ok(User {
            user: parse_id(spec, user)?,
            group: group.map(|g| parse_id(spec, g)).transpose()?,
        })
    }
}

impl fmt::Display for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.user)?;
        if let Some(g) = &self.group {
            write!(f, ":{g}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_and_numbers() {
        let u: User = "nobody:nogroup".parse().unwrap();
        assert_eq!(u.user, Id::Name("nobody".into()));
        assert_eq!(u.group, Some(Id::Name("nogroup".into())));
        let u: User = "1000:100".parse().unwrap();
        assert_eq!(
            (u.user, u.group),
            (Id::Numeric(1000), Some(Id::Numeric(100)))
        );
        assert_eq!("root".parse::<User>().unwrap().group, None);
        assert_eq!(
            ":100".parse::<User>().unwrap_err().to_string(),
            r#"invalid user ":100": expected name|uid[:group|gid]"#
        );
        assert_eq!(
            "99999999999".parse::<User>().unwrap_err().to_string(),
            r#"invalid user "99999999999": "99999999999" is neither a number nor a valid name"#
        );
        assert!("a b".parse::<User>().is_err());
        assert!("a:b:c".parse::<User>().is_err());
    }

    #[test]
    fn uid_and_gid_flags_override() {
        assert_eq!(User::from_flags(None, None, None).unwrap(), None);
        let u = User::from_flags(Some("app:staff"), Some(5), None)
            .unwrap()
            .unwrap();
        assert_eq!(u.to_string(), "5:staff");
        let u = User::from_flags(Some("app"), None, Some(7))
            .unwrap()
            .unwrap();
        assert_eq!(u.to_string(), "app:7");
        let u = User::from_flags(None, None, Some(7)).unwrap().unwrap();
        assert_eq!(u.to_string(), "0:7");
    }

    fn arb_id() -> impl Strategy<Value = Id> {
        prop_oneof![
            any::<u32>().prop_map(Id::Numeric),
            "[a-z_][a-z0-9_-]{0,12}".prop_map(Id::Name),
        ]
    }

    proptest! {
        #[test]
        fn display_round_trips(user in arb_id(), group in prop::option::of(arb_id())) {
            let u = User { user, group };
            prop_assert_eq!(u.to_string().parse::<User>().unwrap(), u);
        }
    }
}
