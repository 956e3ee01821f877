//! Platforms (`os/arch[/variant]`) and choosing a manifest from an index by platform.

use std::fmt;
use std::str::FromStr;

/// Why a platform string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlatformError {
    #[error("invalid platform {0:?}: expected os/arch[/variant], e.g. linux/arm64")]
    Malformed(String),
}

impl PlatformError {
    pub fn kind(&self) -> crate::ErrorKind {
        crate::ErrorKind::InvalidArgument
    }
}

/// An image platform. Architecture names are normalised to the OCI/Go spelling
/// (`x86_64` → `amd64`, `aarch64` → `arm64`), and `arm64/v8` is the same as `arm64`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// Builds a platform, normalising the architecture and variant.
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        let architecture = match architecture {
            "x86_64" | "x86-64" => "amd64",
            "aarch64" => "arm64",
            "armhf" | "armel" => "arm",
            "i386" | "i686" => "386",
            a => a,
        };
        let variant = match (architecture, variant) {
            ("arm64", Some("v8")) | (_, Some("")) => None,
            (_, v) => v,
        };
        Platform {
            os: os.to_owned(),
            architecture: architecture.to_owned(),
            variant: variant.map(str::to_owned),
        }
    }

    /// The platform images for this host are built for: Linux on the host's CPU
    /// architecture (containers are Linux guests on every host).
    pub fn host() -> Platform {
        Platform::new("linux", std::env::consts::ARCH, None)
    }

    /// Whether an image built for `other` satisfies a request for `self`. A request
    /// without variant accepts any variant.
    pub fn matches(&self, other: &Platform) -> bool {
        self.os == other.os
            && self.architecture == other.architecture
            && (self.variant.is_none() || self.variant == other.variant)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl FromStr for Platform {
    type Err = PlatformError;

    fn from_str(s: &str) -> Result<Platform, PlatformError> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        };
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => Ok(Platform::new(
                &os.to_ascii_lowercase(),
                &arch.to_ascii_lowercase(),
                None,
            )),
            [os, arch, variant] if ok(os) && ok(arch) && ok(variant) => Ok(Platform::new(
                &os.to_ascii_lowercase(),
                &arch.to_ascii_lowercase(),
                Some(&variant.to_ascii_lowercase()),
            )),
            _ => Err(PlatformError::Malformed(s.to_owned())),
        }
    }
}

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
    use proptest::prelude::*;

    #[test]
    fn parses_and_normalises() {
        assert_eq!(
            "linux/amd64".parse::<Platform>().unwrap(),
            Platform::new("linux", "amd64", None)
        );
        assert_eq!(
            "linux/aarch64/v8".parse::<Platform>().unwrap().to_string(),
            "linux/arm64"
        );
        assert_eq!(
            "linux/arm/v7".parse::<Platform>().unwrap().to_string(),
            "linux/arm/v7"
        );
        assert_eq!(
            "amd64".parse::<Platform>().unwrap_err().to_string(),
            "invalid platform \"amd64\": expected os/arch[/variant], e.g. linux/arm64"
        );
        assert!("linux//v7".parse::<Platform>().is_err());
        assert!("a/b/c/d".parse::<Platform>().is_err());
    }

    #[test]
    fn host_is_linux_on_this_cpu() {
        let h = Platform::host();
        assert_eq!(h.os, "linux");
        #[cfg(target_arch = "x86_64")]
        assert_eq!(h.architecture, "amd64");
        #[cfg(target_arch = "aarch64")]
        assert_eq!(h.architecture, "arm64");
    }

    #[test]
    fn request_without_variant_matches_any_variant() {
        let want: Platform = "linux/arm".parse().unwrap();
        assert!(want.matches(&"linux/arm/v7".parse().unwrap()));
        let want7: Platform = "linux/arm/v7".parse().unwrap();
        assert!(!want7.matches(&"linux/arm/v6".parse().unwrap()));
        assert!(!want.matches(&"linux/amd64".parse().unwrap()));
    }

    proptest! {
        #[test]
        fn display_then_parse_round_trips(os in "[a-z]{1,8}", arch in "[a-z0-9]{1,8}", v in proptest::option::of("v[0-9]")) {
            let p = Platform::new(&os, &arch, v.as_deref());
            prop_assert_eq!(p.to_string().parse::<Platform>().unwrap(), p);
        }
    }
}
