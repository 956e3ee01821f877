//! The one socket binder: every Unix socket the daemon and the runtime serve on is bound here.
//!
//! [`bind_socket`] creates the socket's directory (0700) when missing, refuses to start a
//! second server while one answers on the socket, removes a stale socket left by a crashed
//! one but never anything that is not a socket, and binds the new socket with mode 0600 so
//! only the owner can connect. [`bind_unix`] is the same without creating the directory and
//! with the caller's mode (published sockets: the user chose the path). Serving on the
//! listener stays the caller's business.

use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why the socket could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// Another server answers on the socket.
    #[error("another server is already listening on {}", .0.display())]
    InUse(PathBuf),
    /// The path is too long for a Unix socket address.
    #[error(transparent)]
    PathTooLong(#[from] crate::paths::SocketPathError),
    /// Something that is not a socket sits at the socket's path.
    #[error("{} exists and is not a socket: remove it or choose another app root", .0.display())]
    NotASocket(PathBuf),
    /// Creating the directory, removing the stale socket, binding or chmod failed.
    #[error("binding {}: {source}", path.display())]
    Io {
        /// The socket path.
        path: PathBuf,
        /// The failure.
        #[source]
        source: io::Error,
    },
}

/// Binds a server's socket at `path` with mode 0600 in a 0700 directory (see the module
/// doc).
pub async fn bind_socket(path: &Path) -> Result<tokio::net::UnixListener, BindError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| BindError::Io {
                path: path.to_path_buf(),
                source,
            })?;
    }
    bind_unix(path, Some(0o600))
}

/// Binds `path`, replacing a stale socket (one nobody answers on) and refusing anything
/// else; `mode`, when given, is set on the socket before it is returned. Needs a tokio
/// runtime. The directory must exist.
pub fn bind_unix(path: &Path, mode: Option<u32>) -> Result<tokio::net::UnixListener, BindError> {
    crate::paths::check_socket_path(path)?;
    let io_err = |source| BindError::Io {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(BindError::InUse(path.to_path_buf()));
            }
            // Nobody answers: a crashed server's leftover.
            std::fs::remove_file(path).map_err(io_err)?;
        }
        Ok(_) => return Err(BindError::NotASocket(path.to_path_buf())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(e)),
    }
    let listener = std::os::unix::net::UnixListener::bind(path).map_err(io_err)?;
    if let Some(mode) = mode {
        // The window between bind and chmod is closed by a 0700 directory above it.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io_err)?;
    }
    listener.set_nonblocking(true).map_err(io_err)?;
    tokio::net::UnixListener::from_std(listener).map_err(io_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[tokio::test]
    async fn binds_0600_replaces_stale_and_refuses_live_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("app-root");
        let socket = crate::socket_path(&root);
        let listener = bind_socket(&socket).await.unwrap();
        assert_eq!(std::fs::metadata(&socket).unwrap().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(&root).unwrap().mode() & 0o777, 0o700);
        // A live daemon keeps its socket.
        let err = bind_socket(&socket).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "another server is already listening on {}",
                socket.display()
            )
        );
        // A dead one's socket is replaced.
        drop(listener);
        assert!(socket.exists());
        let _again = bind_socket(&socket).await.unwrap();
    }

    #[tokio::test]
    async fn a_regular_file_in_the_way_is_not_removed() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("apiserver.sock");
        std::fs::write(&socket, "keep me").unwrap();
        let err = bind_socket(&socket).await.unwrap_err();
        assert!(matches!(err, BindError::NotASocket(_)), "{err}");
        assert_eq!(std::fs::read_to_string(&socket).unwrap(), "keep me");
    }
}
