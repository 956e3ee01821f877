//! Where the daemon keeps its state and listens.
//!
//! The app root is `$CONTAINER_APP_ROOT` when set; otherwise `/var/lib/container` for root
//! and `$XDG_DATA_HOME/container` (default `~/.local/share/container`) for anyone else on
//! Linux, and `~/Library/Application Support/dev.container` on macOS. The daemon's
//! socket is `<app root>/apiserver.sock`.
//!
//! [`app_root_with`] takes the environment and the effective uid as arguments, so the rules
//! are testable without touching the process's environment.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The variable that overrides the app root.
pub const APP_ROOT_ENV: &str = "CONTAINER_APP_ROOT";

/// The daemon's socket, relative to the app root.
pub const SOCKET_NAME: &str = "apiserver.sock";

/// The macOS bundle-style directory name under Application Support: the project's
/// reverse-DNS identifier, shared with the launchd label (`dev.container.apiserver`) and
/// distinct from Apple's `com.apple.container`.
pub const MACOS_APP_DIR: &str = "dev.container";

/// Why the app root could not be found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathsError {
    /// `CONTAINER_APP_ROOT` is set to a relative path.
    #[error("{APP_ROOT_ENV} must be an absolute path, not {0:?}")]
    RelativeOverride(PathBuf),
    /// Neither the override, nor `XDG_DATA_HOME`, nor `HOME` is usable.
    #[error("cannot find a home for the app root: set {APP_ROOT_ENV} or HOME")]
    NoHome,
}

/// Which rules apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostOs {
    /// Linux and other Unix hosts.
    Linux,
    /// macOS.
    MacOs,
}

impl HostOs {
    /// The OS this program was built for.
    pub fn current() -> HostOs {
        if cfg!(target_os = "macos") {
            HostOs::MacOs
        } else {
            HostOs::Linux
        }
    }
}

/// The app root for an environment (`env` returns a variable's value; empty counts as
/// unset), an effective uid and a host OS.
pub fn app_root_with(
    env: impl Fn(&str) -> Option<OsString>,
    euid: u32,
    os: HostOs,
) -> Result<PathBuf, PathsError> {
    let var = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(root) = var(APP_ROOT_ENV) {
        return if root.is_absolute() {
            Ok(root)
        } else {
            Err(PathsError::RelativeOverride(root))
        };
    }
    let home = var("HOME").filter(|h| h.is_absolute());
    match os {
        HostOs::MacOs => home
            .map(|h| h.join("Library/Application Support").join(MACOS_APP_DIR))
            .ok_or(PathsError::NoHome),
        HostOs::Linux if euid == 0 => Ok(PathBuf::from("/var/lib/container")),
        HostOs::Linux => {
            // The XDG spec says a relative XDG_DATA_HOME is invalid and must be ignored.
            let data = var("XDG_DATA_HOME")
                .filter(|d| d.is_absolute())
                .or_else(|| home.map(|h| h.join(".local/share")))
                .ok_or(PathsError::NoHome)?;
            Ok(data.join("container"))
        }
    }
}

/// The app root of this process: its environment and effective uid.
pub fn app_root() -> Result<PathBuf, PathsError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    app_root_with(|name| std::env::var_os(name), euid, HostOs::current())
}

/// The longest socket path a Unix socket address holds (`sun_path` is 108 bytes on Linux,
/// 104 on macOS, with a terminating NUL).
pub const MAX_SOCKET_PATH: usize = if cfg!(target_os = "macos") { 103 } else { 107 };

/// Refuses a socket path too long to bind or dial, naming the limit.
pub fn check_socket_path(socket: &Path) -> Result<(), SocketPathError> {
    let len = socket.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        Err(SocketPathError {
            socket: socket.to_path_buf(),
            len,
        })
    } else {
        Ok(())
    }
}

/// A socket path longer than a Unix socket address holds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the socket path {} is {len} bytes, longer than the {MAX_SOCKET_PATH} a Unix socket allows: choose a shorter {APP_ROOT_ENV}",
    socket.display()
)]
pub struct SocketPathError {
    /// The path.
    pub socket: PathBuf,
    /// Its length in bytes.
    pub len: usize,
}

/// The daemon's socket under an app root.
pub fn socket_path(app_root: &Path) -> PathBuf {
    app_root.join(SOCKET_NAME)
}

/// The daemon's socket for this process's environment.
pub fn default_socket_path() -> Result<PathBuf, PathsError> {
    app_root().map(|root| socket_path(&root))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn the_override_wins_everywhere() {
        let vars = [(APP_ROOT_ENV, "/srv/ctr"), ("HOME", "/home/me")];
        for os in [HostOs::Linux, HostOs::MacOs] {
            for uid in [0, 1000] {
                assert_eq!(
                    app_root_with(env(&vars), uid, os).unwrap(),
                    Path::new("/srv/ctr")
                );
            }
        }
        assert_eq!(
            app_root_with(env(&[(APP_ROOT_ENV, "rel")]), 0, HostOs::Linux)
                .unwrap_err()
                .to_string(),
            r#"CONTAINER_APP_ROOT must be an absolute path, not "rel""#
        );
    }

    #[test]
    fn linux_root_and_users() {
        let vars = [("HOME", "/home/me")];
        assert_eq!(
            app_root_with(env(&vars), 0, HostOs::Linux).unwrap(),
            Path::new("/var/lib/container")
        );
        assert_eq!(
            app_root_with(env(&vars), 1000, HostOs::Linux).unwrap(),
            Path::new("/home/me/.local/share/container")
        );
        let vars = [("HOME", "/home/me"), ("XDG_DATA_HOME", "/data")];
        assert_eq!(
            app_root_with(env(&vars), 1000, HostOs::Linux).unwrap(),
            Path::new("/data/container")
        );
        let vars = [("HOME", "/home/me"), ("XDG_DATA_HOME", "relative")];
        assert_eq!(
            app_root_with(env(&vars), 1000, HostOs::Linux).unwrap(),
            Path::new("/home/me/.local/share/container")
        );
        assert_eq!(
            app_root_with(env(&[("HOME", "")]), 1000, HostOs::Linux).unwrap_err(),
            PathsError::NoHome
        );
    }

    #[test]
    fn socket_paths_longer_than_sun_path_are_refused() {
        let ok = PathBuf::from("/").join("a".repeat(MAX_SOCKET_PATH - 1));
        assert!(check_socket_path(&ok).is_ok());
        let long = PathBuf::from("/").join("a".repeat(MAX_SOCKET_PATH));
        let err = check_socket_path(&long).unwrap_err();
        assert_eq!(err.len, MAX_SOCKET_PATH + 1);
        assert!(
            err.to_string()
                .ends_with("choose a shorter CONTAINER_APP_ROOT"),
            "{err}"
        );
    }

    #[test]
    fn macos_uses_application_support() {
        let vars = [("HOME", "/Users/me")];
        let root = app_root_with(env(&vars), 501, HostOs::MacOs).unwrap();
        assert_eq!(
            root,
            Path::new("/Users/me/Library/Application Support/dev.container")
        );
        assert_eq!(
            socket_path(&root),
            Path::new("/Users/me/Library/Application Support/dev.container/apiserver.sock")
        );
    }
}
