//! Unix sockets across the VM boundary, relayed over vsock (the host's half; vminitd holds
//! the guest's).
//!
//! - A host socket mounted with `-v HOST_SOCKET:PATH` ([`VolumeKind::Socket`]): the runtime
//!   listens on host vsock port `HOST_SOCKET_PORTS + i` and asks vminitd (ServeSocket) to
//!   listen on `/run/container/sockets/<i>.sock`, which the container gets bind-mounted at
//!   PATH. Each connection a container process makes there is dialed by the guest to that
//!   port; the runtime connects it to the host socket.
//! - A container socket published with `--publish-socket HOST_PATH:PATH`: the runtime
//!   listens on HOST_PATH. For each connection it listens on a fresh vsock port and asks
//!   vminitd (DialSocket) to connect to PATH in the container and dial that port back.
//!
//! Bytes are copied both ways until both sides are done; one side's end of file shuts the
//! other's write half, so request-then-EOF protocols work. The vsock leg is framed
//! ([`agent::relay`]): the Linux vsock transport cannot carry a half-close itself.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use agent::client::AgentClient;
use agent::v1 as pb;
use tokio::task::JoinHandle;
use vmm::VirtualMachine;

use crate::error::ContainerError;
use crate::guest_layout::GUEST_DIR;
use runtime_api::config::{RuntimeConfig, VolumeKind};

/// The first host vsock port of the relays of host sockets (one per socket volume).
pub const HOST_SOCKET_PORTS: u32 = 0x2000_0000;
/// The first host vsock port of published sockets' connections (one per connection).
pub const PUBLISHED_SOCKET_PORTS: u32 = 0x3000_0000;
/// How long the guest may take to dial back a published socket's connection.
const DIAL_BACK_TIMEOUT: Duration = Duration::from_secs(10);

/// The guest path of the relay socket of the `i`th volume.
pub fn guest_socket_path(i: usize) -> String {
    format!("{GUEST_DIR}/sockets/{i}.sock")
}

/// The running relays of one container. Dropping it stops them and removes the sockets it
/// made on the host.
#[derive(Debug, Default)]
pub struct Relays {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Relays {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Removes a published socket from the host when its listener goes.
struct HostSocket {
    path: PathBuf,
}

impl Drop for HostSocket {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.file_type().is_socket());
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Relays a host connection and its vsock stream (framed: see [`agent::relay`]).
async fn splice<A, B>(local: A, vsock: B)
where
    A: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    B: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if let Err(e) = agent::relay::splice(local, vsock).await {
        tracing::debug!("socket relay ended: {e}");
    }
}

/// Binds a published socket's host path, replacing a stale socket (one nobody answers on)
/// and refusing anything else.
fn bind_host(path: &Path) -> Result<tokio::net::UnixListener, ContainerError> {
    let refuse = |why: &str| {
        ContainerError::FailedPrecondition(format!(
            "cannot publish a socket at {}: {why}",
            path.display()
        ))
    };
    // The one binder (crates/api); the user chose the path, so its directory and the
    // socket's mode stay as the user's umask makes them.
    api::server::bind_unix(path, None).map_err(|e| match e {
        api::server::BindError::InUse(_) => refuse("something already listens there"),
        api::server::BindError::NotASocket(_) => refuse("it exists and is not a socket"),
        other => refuse(&other.to_string()),
    })
}

/// Starts every relay the config asks for. The guest's sockets exist when this returns, so
/// the container's mounts can bind them.
pub async fn start(
    config: &RuntimeConfig,
    vm: &Arc<dyn VirtualMachine>,
    agent: &AgentClient,
) -> Result<Relays, ContainerError> {
    let mut relays = Relays::default();
    for (i, v) in config.volumes.iter().enumerate() {
        if v.kind != VolumeKind::Socket {
            continue;
        }
        let port = HOST_SOCKET_PORTS + i as u32;
        let mut listener = vm.listen(port).await?;
        let guest_path = guest_socket_path(i);
        agent
            .serve_socket(pb::ServeSocketRequest {
                path: guest_path.clone(),
                port,
            })
            .await
            .map_err(|source| ContainerError::Agent {
                step: format!("relaying {} to {guest_path}", v.path.display()),
                source,
            })?;
        let host_path = v.path.clone();
        relays.tasks.push(tokio::spawn(async move {
            // Ends when the VM is gone (the listener closes).
            while let Ok(stream) = listener.accept().await {
                let host_path = host_path.clone();
                tokio::spawn(async move {
                    match tokio::net::UnixStream::connect(&host_path).await {
                        Ok(host) => splice(host, stream).await,
                        Err(e) => tracing::warn!("connecting to {}: {e}", host_path.display()),
                    }
                });
            }
        }));
    }
    let next_port = Arc::new(AtomicU32::new(PUBLISHED_SOCKET_PORTS));
    for p in &config.published_sockets {
        let listener = bind_host(&p.host_path)?;
        let guard = HostSocket {
            path: p.host_path.clone(),
        };
        let vm = Arc::clone(vm);
        let agent = agent.clone();
        let next_port = Arc::clone(&next_port);
        let id = config.id.clone();
        let container_path = p.container_path.clone();
        relays.tasks.push(tokio::spawn(async move {
            let _guard = guard;
            loop {
                let conn = match listener.accept().await {
                    Ok((conn, _)) => conn,
                    Err(e) => {
                        tracing::warn!("published socket {container_path}: accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let port = next_port.fetch_add(1, Ordering::Relaxed);
                let (vm, agent) = (Arc::clone(&vm), agent.clone());
                let (id, path) = (id.clone(), container_path.clone());
                tokio::spawn(async move {
                    if let Err(e) =
                        relay_published(conn, &*vm, &agent, id, path.clone(), port).await
                    {
                        tracing::info!("published socket {path}: {e}");
                    }
                });
            }
        }));
    }
    Ok(relays)
}

/// Relays one host connection to a published socket in the container.
async fn relay_published(
    conn: tokio::net::UnixStream,
    vm: &dyn VirtualMachine,
    agent: &AgentClient,
    container_id: String,
    path: String,
    port: u32,
) -> Result<(), String> {
    let mut listener = vm.listen(port).await.map_err(|e| e.to_string())?;
    let accept =
        tokio::spawn(
            async move { tokio::time::timeout(DIAL_BACK_TIMEOUT, listener.accept()).await },
        );
    let dialed = agent
        .dial_socket(pb::DialSocketRequest {
            container_id,
            path,
            port,
        })
        .await;
    if let Err(e) = dialed {
        accept.abort();
        return Err(e.to_string());
    }
    let stream = accept
        .await
        .map_err(|e| e.to_string())?
        .map_err(|_| "the guest did not dial back".to_string())?
        .map_err(|e| e.to_string())?;
    splice(conn, stream).await;
    Ok(())
}
