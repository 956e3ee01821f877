//! Image platforms: `--platform os/arch[/variant]`, the `--os`/`--arch` it overrides, the
//! platforms in image indexes and configs, and which of them satisfies a request.
//!
//! One normalisation for all of them, Docker's (containerd's `platforms.Normalize`):
//! everything lower case; `x86_64`/`x86-64` → `amd64` (variant `v1` is the baseline, so
//! dropped); `aarch64` → `arm64` (variant `8`, `v8`, `v8.0` is the default, so dropped);
//! `armhf` → `arm/v7`, `armel` → `arm/v6`; `i386`/`i686` → `386`; a bare numeric variant
//! gains its `v` (`arm/7` → `arm/v7`); `macos` → `darwin`. So `--arch` takes what `uname -m`
//! prints too, and `linux/arm64/v8` in an index is the same platform as `linux/arm64`.
//! Where Docker would read a bare `arm` as `arm/v7`, this leaves the variant open: a request
//! for `linux/arm` takes any arm variant an index offers.

use std::fmt;
use std::str::FromStr;

/// Why a platform was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlatformError {
    /// Not `os/arch[/variant]` of plain names.
    #[error("invalid platform {0:?}: expected os/arch[/variant], e.g. linux/arm64")]
    Malformed(String),
    /// An `--os` or `--arch` value that is not a plain name.
    #[error("invalid {flag} {value:?}: expected a name such as {example}")]
    BadPart {
        /// `os` or `arch`.
        flag: &'static str,
        /// What the user typed.
        value: String,
        /// A valid example.
        example: &'static str,
    },
}

/// An image platform.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Platform {
    /// The operating system (`linux`).
    pub os: String,
    /// The OCI architecture (`amd64`, `arm64`).
    pub architecture: String,
    /// The variant (`v7`), if any.
    pub variant: Option<String>,
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// The OCI spelling of an architecture name, without its variant (`x86_64` → `amd64`).
pub fn normalize_arch(arch: &str) -> String {
    normalize_arch_variant(arch, None).0
}

/// Docker's spelling of an architecture and its variant; see the module doc.
fn normalize_arch_variant(arch: &str, variant: Option<&str>) -> (String, Option<String>) {
    let arch = arch.to_ascii_lowercase();
    let variant = variant
        .map(str::to_ascii_lowercase)
        .filter(|v| !v.is_empty());
    // A bare number is a version: `7` is `v7`.
    let variant = variant.map(|v| {
        if v.starts_with(|c: char| c.is_ascii_digit()) {
            format!("v{v}")
        } else {
            v
        }
    });
    let (arch, variant) = match arch.as_str() {
        "x86_64" | "x86-64" | "amd64" => ("amd64", variant.filter(|v| v != "v1")),
        "aarch64" | "arm64" => ("arm64", variant.filter(|v| v != "v8" && v != "v8.0")),
        "armhf" => ("arm", Some("v7".to_owned())),
        "armel" => ("arm", Some("v6".to_owned())),
        "i386" | "i686" => ("386", variant),
        other => (other, variant),
    };
    (arch.to_owned(), variant)
}

impl Platform {
    /// Builds a normalised platform.
    pub fn new(os: &str, arch: &str, variant: Option<&str>) -> Platform {
        let (architecture, variant) = normalize_arch_variant(arch, variant);
        let os = match os.to_ascii_lowercase().as_str() {
            "macos" => "darwin".to_owned(),
            other => other.to_owned(),
        };
        Platform {
            os,
            architecture,
            variant,
        }
    }

    /// Linux on the host's CPU: what a run or pull without platform flags asks for
    /// (containers are Linux guests on every host).
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

    /// Resolves `--platform`, `--os` and `--arch`: `--platform` wins over both; an absent
    /// `--os` means linux and an absent `--arch` the host's. `None` when no flag was given.
    pub fn from_flags(
        platform: Option<&str>,
        os: Option<&str>,
        arch: Option<&str>,
    ) -> Result<Option<Platform>, PlatformError> {
        if let Some(p) = platform {
            return p.parse().map(Some);
        }
        if os.is_none() && arch.is_none() {
            return Ok(None);
        }
        let os = os.unwrap_or("linux");
        if !is_name(os) {
            return Err(PlatformError::BadPart {
                flag: "os",
                value: os.to_owned(),
                example: "linux",
            });
        }
        let arch = arch.unwrap_or(std::env::consts::ARCH);
        // `--arch arm/v7` carries a variant.
        let (arch_name, variant) = match arch.split_once('/') {
            Some((a, v)) => (a, Some(v)),
            None => (arch, None),
        };
        if !is_name(arch_name) || variant.is_some_and(|v| !is_name(v)) {
            return Err(PlatformError::BadPart {
                flag: "arch",
                value: arch.to_owned(),
                example: "arm64 or amd64",
            });
        }
        Ok(Some(Platform::new(os, arch_name, variant)))
    }
}

impl FromStr for Platform {
    type Err = PlatformError;

    fn from_str(s: &str) -> Result<Platform, PlatformError> {
        match s.split('/').collect::<Vec<_>>().as_slice() {
            [os, arch] if is_name(os) && is_name(arch) => Ok(Platform::new(os, arch, None)),
            [os, arch, variant] if is_name(os) && is_name(arch) && is_name(variant) => {
                Ok(Platform::new(os, arch, Some(variant)))
            }
            _ => Err(PlatformError::Malformed(s.to_owned())),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_normalises() {
        assert_eq!(
            "linux/x86_64".parse::<Platform>().unwrap().to_string(),
            "linux/amd64"
        );
        assert_eq!(
            "linux/arm64/v8".parse::<Platform>().unwrap().to_string(),
            "linux/arm64"
        );
        assert_eq!(
            "Linux/ARM/v7".parse::<Platform>().unwrap().to_string(),
            "linux/arm/v7"
        );
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d", "linux/am d64"] {
            assert_eq!(
                bad.parse::<Platform>().unwrap_err().to_string(),
                format!("invalid platform {bad:?}: expected os/arch[/variant], e.g. linux/arm64")
            );
        }
    }

    #[test]
    fn platform_flag_overrides_os_and_arch() {
        assert_eq!(Platform::from_flags(None, None, None).unwrap(), None);
        let p = Platform::from_flags(Some("linux/arm64"), Some("x"), Some("amd64")).unwrap();
        assert_eq!(p.unwrap().to_string(), "linux/arm64");
        let p = Platform::from_flags(None, None, Some("aarch64"))
            .unwrap()
            .unwrap();
        assert_eq!(p.to_string(), "linux/arm64");
        let p = Platform::from_flags(None, None, Some("arm/v7"))
            .unwrap()
            .unwrap();
        assert_eq!(p.to_string(), "linux/arm/v7");
        assert_eq!(
            Platform::from_flags(None, None, Some("a b"))
                .unwrap_err()
                .to_string(),
            r#"invalid arch "a b": expected a name such as arm64 or amd64"#
        );
    }

    #[test]
    fn docker_spellings_are_one_platform() {
        let same = |a: &str, b: &str| {
            assert_eq!(
                a.parse::<Platform>().unwrap(),
                b.parse::<Platform>().unwrap(),
                "{a} and {b}"
            )
        };
        same("linux/x86-64", "linux/amd64");
        same("linux/amd64/v1", "linux/amd64");
        same("linux/aarch64/8", "linux/arm64");
        same("linux/arm64/v8.0", "linux/arm64");
        same("linux/armhf", "linux/arm/v7");
        same("linux/armel", "linux/arm/v6");
        same("linux/arm/7", "linux/arm/v7");
        same("linux/i686", "linux/386");
        same("macos/arm64", "darwin/arm64");
        assert_eq!(
            Platform::new("linux", "amd64", Some("v3")).to_string(),
            "linux/amd64/v3"
        );
        assert_eq!(
            Platform::new("linux", "arm64", Some("v9")).to_string(),
            "linux/arm64/v9"
        );
    }

    #[test]
    fn host_is_linux_on_this_cpu() {
        let h = Platform::host();
        assert_eq!(h.os, "linux");
        #[cfg(target_arch = "x86_64")]
        assert_eq!(h.to_string(), "linux/amd64");
        #[cfg(target_arch = "aarch64")]
        assert_eq!(h.to_string(), "linux/arm64");
    }

    #[test]
    fn request_without_variant_matches_any_variant() {
        let want: Platform = "linux/arm".parse().unwrap();
        assert!(want.matches(&"linux/arm/v7".parse().unwrap()));
        let want7: Platform = "linux/arm/v7".parse().unwrap();
        assert!(!want7.matches(&"linux/arm/v6".parse().unwrap()));
        assert!(!want.matches(&"linux/amd64".parse().unwrap()));
        let index_entry = Platform::new("linux", "arm64", Some("v8"));
        assert!(Platform::new("linux", "aarch64", None).matches(&index_entry));
    }

    proptest! {
        #[test]
        fn normalising_twice_changes_nothing(os in "[A-Za-z]{1,8}", arch in "[A-Za-z0-9_-]{1,8}", variant in prop::option::of("v?[0-9](\\.[0-9])?")) {
            let p = Platform::new(&os, &arch, variant.as_deref());
            prop_assert_eq!(Platform::new(&p.os, &p.architecture, p.variant.as_deref()), p);
        }

        #[test]
        fn display_round_trips(os in "[a-z]{1,8}", arch in "[a-z0-9]{1,8}", variant in prop::option::of("v[0-9]")) {
            let p = Platform::new(&os, &arch, variant.as_deref());
            prop_assert_eq!(p.to_string().parse::<Platform>().unwrap(), p);
        }
    }
}
