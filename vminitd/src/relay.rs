//! Unix socket relays between containers and the host, over vsock.
//!
//! - [`serve_socket`]: a host socket made usable in a container (`-v $SSH_AUTH_SOCK:/x`). The
//!   guest listens on a Unix socket (which the runtime bind-mounts into the container); each
//!   connection to it dials a host vsock port, where the runtime connects to the host socket.
//! - [`dial_socket`]: a container socket served on the host (`--publish-socket`). For each
//!   connection to the host path the runtime asks the guest to connect to the container's
//!   socket and dial back a host vsock port it listens on.
//!
//! Either way the guest copies bytes both ways until both sides are done, carrying a
//! half-close across (a request, then EOF): the vsock leg is framed ([`agent::relay`]),
//! since the Linux host's vsock transport drops half-closes.

use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use crate::process::{HostStream, Manager, ProcessError};

/// How long connecting to a container's socket may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Errors of the relays.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The path is not absolute, or otherwise unusable.
    #[error("{0}")]
    Invalid(String),
    /// No such container.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// Nothing listens at the container's path (or it does not exist).
    #[error("connecting to {path} in container {container}")]
    Unavailable {
        /// The container.
        container: String,
        /// The socket's path in the container.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A local operation failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RelayError {
    let what = what.into();
    move |source| RelayError::Io { what, source }
}

/// Copies both ways until both directions are done; errors end the relay quietly (a peer
/// going away is the normal end).
async fn splice<A, B>(local: A, host: B)
where
    A: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    B: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if let Err(e) = agent::relay::splice(local, host).await {
        crate::debug!("socket relay ended: {e}");
    }
}

/// Listens on `path` and relays every connection to host vsock `port`. Returns once the
/// socket exists; the relay lives as long as the agent.
pub async fn serve_socket(procs: &Manager, path: &str, port: u32) -> Result<(), RelayError> {
    if !path.starts_with('/') || path.ends_with('/') {
        return Err(RelayError::Invalid(format!(
            "{path:?} is not an absolute file path"
        )));
    }
    let p = Path::new(path);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent)
            .map_err(io_err(format!("creating {}", parent.display())))?;
    }
    match std::fs::symlink_metadata(p) {
        Ok(md) if md.is_dir() => {
            return Err(RelayError::Invalid(format!("{path} is a directory")));
        }
        Ok(_) => std::fs::remove_file(p).map_err(io_err(format!("removing stale {path}")))?,
        Err(_) => {}
    }
    let listener =
        tokio::net::UnixListener::bind(p).map_err(io_err(format!("listening on {path}")))?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o666))
        .map_err(io_err(format!("chmod {path}")))?;
    let procs = procs.clone();
    let path = path.to_owned();
    tokio::spawn(async move {
        loop {
            let conn = match listener.accept().await {
                Ok((conn, _)) => conn,
                Err(e) => {
                    crate::warn!("socket relay {path}: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let procs = procs.clone();
            let path = path.clone();
            tokio::spawn(async move {
                match procs.dial_host(port).await {
                    Ok(host) => splice(conn, host).await,
                    Err(e) => crate::warn!("socket relay {path}: {e}"),
                }
            });
        }
    });
    Ok(())
}

/// Opens the socket at `path` inside the container whose first process is `pid`, resolving
/// the path (and any symlink on it) inside the container's root, never outside it.
fn open_in_container(pid: u32, path: &str) -> std::io::Result<std::os::fd::OwnedFd> {
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag, open, openat2};
    use nix::sys::stat::Mode;
    let root = open(
        format!("/proc/{pid}/root").as_str(),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    Ok(openat2(&root, path.trim_start_matches('/'), how)?)
}

/// Connects to the socket at `path` in `container_id`, dials host vsock `port`, and relays
/// between them in the background.
pub async fn dial_socket(
    procs: &Manager,
    container_id: &str,
    path: &str,
    port: u32,
) -> Result<(), RelayError> {
    if !path.starts_with('/') {
        return Err(RelayError::Invalid(format!(
            "{path:?} is not an absolute path"
        )));
    }
    let pid = procs.init_pid_of(container_id)?;
    let unavailable = |source: std::io::Error| RelayError::Unavailable {
        container: container_id.to_owned(),
        path: path.to_owned(),
        source,
    };
    let fd = open_in_container(pid, path).map_err(unavailable)?;
    // connect(2) through the O_PATH descriptor: the path may be longer than sun_path, and
    // it was resolved inside the container's root.
    let via = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let conn = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::UnixStream::connect(&via))
        .await
        .map_err(|_| unavailable(std::io::ErrorKind::TimedOut.into()))?
        .map_err(unavailable)?;
    drop(fd);
    let host: Box<dyn HostStream> = procs.dial_host(port).await?;
    tokio::spawn(splice(conn, host));
    Ok(())
}
