//! `--platform os/arch[/variant]`, and `--os`/`--arch` that it overrides.
//!
//! Architecture names are normalised to the OCI spelling (`x86_64` → `amd64`, `aarch64` →
//! `arm64`, `arm64/v8` → `arm64`), so `--arch` takes what `uname -m` prints too.

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

/// The OCI spelling of an architecture name.
pub fn normalize_arch(arch: &str) -> String {
    match arch.to_ascii_lowercase().as_str() {
        "x86_64" | "x86-64" => "amd64".to_owned(),
        "aarch64" => "arm64".to_owned(),
        "armhf" | "armel" => "arm".to_owned(),
        "i386" | "i686" => "386".to_owned(),
        other => other.to_owned(),
    }
}

impl Platform {
    /// Builds a normalised platform.
    pub fn new(os: &str, arch: &str, variant: Option<&str>) -> Platform {
        let architecture = normalize_arch(arch);
        let variant = variant
            .map(str::to_ascii_lowercase)
            .filter(|v| !(v.is_empty() || (architecture == "arm64" && v == "v8")));
        Platform {
            os: os.to_ascii_lowercase(),
            architecture,
            variant,
        }
    }

    /// Linux on the host's CPU: what a run without platform flags asks for.
    pub fn host_linux() -> Platform {
        Platform::new("linux", std::env::consts::ARCH, None)
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

    proptest! {
        #[test]
        fn display_round_trips(os in "[a-z]{1,8}", arch in "[a-z0-9]{1,8}", variant in prop::option::of("v[0-9]")) {
            let p = Platform::new(&os, &arch, variant.as_deref());
            prop_assert_eq!(p.to_string().parse::<Platform>().unwrap(), p);
        }
    }
}
