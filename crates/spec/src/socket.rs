//! Unix sockets crossing the VM boundary, and the options of `volume create`.
//!
//! `--publish-socket HOST_PATH:CONTAINER_PATH` serves a socket a container process listens on
//! at a host path; a host socket passed with `-v` goes the other way and is an ordinary
//! [`crate::Mount::Bind`] (the daemon sees that its source is a socket).

use std::fmt;
use std::str::FromStr;

use crate::size::ByteSize;

/// The smallest volume: room for ext4's metadata and journal with space to spare.
pub const MIN_VOLUME_BYTES: u64 = 16 << 20;
/// The largest volume the ext4 writer formats (1 TiB; sparse, so it costs what is written).
pub const MAX_VOLUME_BYTES: u64 = 1 << 40;

/// Why a socket or volume option was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SocketError {
    /// A `--publish-socket` value is wrong.
    #[error("invalid socket spec {spec:?}: {reason}")]
    Publish {
        /// What the user typed.
        spec: String,
        /// What was wrong.
        reason: String,
    },
    /// A `volume create --opt` value or size is wrong.
    #[error("invalid volume option {spec:?}: {reason}")]
    VolumeOption {
        /// What the user typed.
        spec: String,
        /// What was wrong.
        reason: String,
    },
}

/// `--publish-socket HOST_PATH:CONTAINER_PATH`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PublishSocket {
    /// Where the host listens, as typed (a relative path is resolved by the caller).
    pub host_path: String,
    /// The socket a container process listens on (absolute).
    pub container_path: String,
}

impl FromStr for PublishSocket {
    type Err = SocketError;

    fn from_str(spec: &str) -> Result<PublishSocket, SocketError> {
        let fail = |reason: &str| SocketError::Publish {
            spec: spec.to_owned(),
            reason: reason.to_owned(),
        };
        let (host, container) = spec
            .split_once(':')
            .ok_or_else(|| fail("expected HOST_PATH:CONTAINER_PATH"))?;
        if host.is_empty() {
            return Err(fail("no host path"));
        }
        if container.contains(':') {
            return Err(fail("too many ':' (expected HOST_PATH:CONTAINER_PATH)"));
        }
        if !container.starts_with('/') {
            return Err(fail(&format!(
                "container path {container:?} is not absolute"
            )));
        }
        if container.ends_with('/') || host.ends_with('/') {
            return Err(fail("a socket path names a file, not a directory"));
        }
        if container.split('/').any(|c| c == "..") {
            return Err(fail("the container path may not contain '..'"));
        }
        Ok(PublishSocket {
            host_path: host.to_owned(),
            container_path: container.to_owned(),
        })
    }
}

impl fmt::Display for PublishSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host_path, self.container_path)
    }
}

/// Checks a volume size: between [`MIN_VOLUME_BYTES`] and [`MAX_VOLUME_BYTES`].
pub fn check_volume_size(spec: &str, size: ByteSize) -> Result<ByteSize, SocketError> {
    let fail = |reason: String| SocketError::VolumeOption {
        spec: spec.to_owned(),
        reason,
    };
    if size.bytes() < MIN_VOLUME_BYTES {
        return Err(fail(format!(
            "{size} is below the minimum volume size of {}",
            ByteSize(MIN_VOLUME_BYTES)
        )));
    }
    if size.bytes() > MAX_VOLUME_BYTES {
        return Err(fail(format!(
            "{size} is above the maximum volume size of {}",
            ByteSize(MAX_VOLUME_BYTES)
        )));
    }
    Ok(size)
}

/// Parses `volume create --opt KEY=VALUE` values. The only key is `size` (as `-s`); the
/// last one given wins. Returns the size, if any.
pub fn parse_volume_opts(opts: &[String]) -> Result<Option<ByteSize>, SocketError> {
    let mut size = None;
    for spec in opts {
        let fail = |reason: String| SocketError::VolumeOption {
            spec: spec.clone(),
            reason,
        };
        let (key, value) = spec
            .split_once('=')
            .ok_or_else(|| fail("expected KEY=VALUE".into()))?;
        match key {
            "size" => {
                let s = value.parse::<ByteSize>().map_err(|e| fail(e.to_string()))?;
                size = Some(check_volume_size(spec, s)?);
            }
            other => return Err(fail(format!("unknown option {other:?} (expected size)"))),
        }
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn publish_socket_forms_and_errors() {
        let p: PublishSocket = "/tmp/app.sock:/run/app.sock".parse().unwrap();
        assert_eq!(p.host_path, "/tmp/app.sock");
        assert_eq!(p.container_path, "/run/app.sock");
        assert_eq!(p.to_string(), "/tmp/app.sock:/run/app.sock");
        assert!("./rel.sock:/run/a".parse::<PublishSocket>().is_ok());
        let e = |s: &str| s.parse::<PublishSocket>().unwrap_err().to_string();
        assert_eq!(
            e("/tmp/a.sock"),
            r#"invalid socket spec "/tmp/a.sock": expected HOST_PATH:CONTAINER_PATH"#
        );
        assert_eq!(
            e("/tmp/a.sock:run/a"),
            r#"invalid socket spec "/tmp/a.sock:run/a": container path "run/a" is not absolute"#
        );
        assert!(e(":/run/a").contains("no host path"));
        assert!(e("/a:/b:/c").contains("too many ':'"));
        assert!(e("/a:/run/").contains("not a directory"));
        assert!(e("/a:/run/../etc/x").contains("'..'"));
    }

    #[test]
    fn volume_options() {
        assert_eq!(parse_volume_opts(&[]).unwrap(), None);
        assert_eq!(
            parse_volume_opts(&["size=1g".into(), "size=2g".into()]).unwrap(),
            Some(ByteSize(2 << 30))
        );
        let e = |s: &str| parse_volume_opts(&[s.to_owned()]).unwrap_err().to_string();
        assert_eq!(
            e("color=red"),
            r#"invalid volume option "color=red": unknown option "color" (expected size)"#
        );
        assert!(e("size").contains("expected KEY=VALUE"));
        assert!(e("size=1k").contains("below the minimum volume size"));
        assert!(e("size=2t").contains("above the maximum volume size"));
        assert!(e("size=lots").starts_with(r#"invalid volume option "size=lots": "#));
    }

    proptest! {
        #[test]
        fn publish_socket_round_trips(host in "(/[a-z0-9_.-]{1,8}){1,3}", c in "(/[a-z0-9_-]{1,8}){1,3}") {
            let p: PublishSocket = format!("{host}:{c}").parse().unwrap();
            prop_assert_eq!(p.to_string().parse::<PublishSocket>().unwrap(), p);
        }

        #[test]
        fn never_panics(text in "(?s).{0,40}") {
            if let Err(e) = text.parse::<PublishSocket>() {
                prop_assert!(!e.to_string().contains('\n'));
            }
            if let Err(e) = parse_volume_opts(&[text]) {
                prop_assert!(!e.to_string().contains('\n'));
            }
        }
    }
}
