//! Names users give things: container names (`--name`) and volume names.

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// A container name outside `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, or longer than 63.
    #[error(
        "invalid container name {0:?}: use 1 to 63 letters, digits, '_', '.' or '-', starting with a letter or digit"
    )]
    Container(String),
    /// A volume name outside `[A-Za-z0-9][A-Za-z0-9_.-]*`, or longer than 255.
    #[error(
        "invalid volume name {0:?}: use 1 to 255 letters, digits, '_', '.' or '-', starting with a letter or digit"
    )]
    Volume(String),
}

fn valid(name: &str, max: usize) -> bool {
    let mut bytes = name.bytes();
    name.len() <= max
        && bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Checks a container name. The name becomes the container's ID and its hostname, hence
/// the 63-character limit of a DNS label.
pub fn validate_container_name(name: &str) -> Result<(), NameError> {
    if valid(name, 63) {
        Ok(())
    } else {
        Err(NameError::Container(name.to_owned()))
    }
}

/// Checks a volume name.
pub fn validate_volume_name(name: &str) -> Result<(), NameError> {
    if valid(name, 255) {
        Ok(())
    } else {
        Err(NameError::Volume(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_names() {
        for good in ["web", "a", "web-1.prod_x", &"a".repeat(63)] {
            assert!(validate_container_name(good).is_ok(), "{good}");
        }
        for bad in ["", "-web", "web/1", "we b", "ü", &"a".repeat(64)] {
            assert!(validate_container_name(bad).is_err(), "{bad}");
        }
        assert_eq!(
            validate_container_name("_x").unwrap_err().to_string(),
            r#"invalid container name "_x": use 1 to 63 letters, digits, '_', '.' or '-', starting with a letter or digit"#
        );
    }

    #[test]
    fn volume_names() {
        assert!(validate_volume_name("data.v1").is_ok());
        assert!(validate_volume_name("a/b").is_err());
        assert!(validate_volume_name(&"v".repeat(256)).is_err());
    }
}
