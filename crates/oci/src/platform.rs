//! Platforms as the image store uses them. The type and its normalisation are the `spec`
//! crate's ([`spec::Platform`]), so a platform a user types, one in an index and one in an
//! image config compare the same way everywhere.

pub use spec::{Platform, PlatformError};

/// Lists platforms as `linux/amd64, linux/arm64/v8` for error messages.
pub(crate) fn list(platforms: &[Platform]) -> String {
    if platforms.is_empty() {
        return "none".to_owned();
    }
    platforms
        .iter()
        .map(Platform::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_platforms_for_messages() {
        assert_eq!(list(&[]), "none");
        let ps = [Platform::host(), "linux/arm/v7".parse().unwrap()];
        assert_eq!(list(&ps), format!("{}, linux/arm/v7", Platform::host()));
    }
}
