//! Serving: one daemon per app root (a flocked lock file, the pid beside it), the socket (mode 0600), the four
//! services, and an orderly stop.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use api::v1::containers_server::ContainersServer;
use api::v1::images_server::ImagesServer;
use api::v1::networks_server::NetworksServer;
use api::v1::registry_server::RegistryServer;
use api::v1::system_server::SystemServer;
use api::v1::volumes_server::VolumesServer;
use tokio_stream::wrappers::UnixListenerStream;

use crate::containers::ContainersService;
use crate::daemon::{Daemon, DaemonOptions};
use crate::images::{ImagesService, RegistryService};
use crate::network_service::NetworksService;
use crate::system::SystemService;
use crate::volume_service::VolumesService;

/// How long calls in flight may continue once the daemon is asked to stop.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// The pid file under the app root.
pub const PID_NAME: &str = "apiserver.pid";
/// The lock file under the app root: flocked for as long as a daemon serves the root.
pub const LOCK_NAME: &str = "apiserver.lock";

/// Why the daemon could not serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Another daemon owns the app root.
    #[error("another container-apiserver{} is already serving {}", pid.map(|p| format!(" (pid {p})")).unwrap_or_default(), root.display())]
    AlreadyRunning {
        /// Its pid, if readable.
        pid: Option<u32>,
        /// The app root.
        root: PathBuf,
    },
    /// A file of the app root could not be used.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The API socket could not be bound.
    #[error(transparent)]
    Bind(api::server::BindError),
    /// The state could not be opened.
    #[error(transparent)]
    Open(#[from] crate::daemon::OpenError),
    /// The gRPC server failed.
    #[error("serving the api: {0}")]
    Transport(String),
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ServeError {
    let path = path.to_path_buf();
    move |source| ServeError::Io { op, path, source }
}

/// The exclusive claim on an app root: the flocked pid file. Dropping it releases it.
#[derive(Debug)]
pub struct RootLock {
    _file: std::fs::File,
}

impl RootLock {
    /// Claims `app_root` for this process, or says which daemon has it.
    pub fn acquire(app_root: &Path) -> Result<RootLock, ServeError> {
        crate::fsutil::secure_app_root(app_root).map_err(io("creating", app_root))?;
        let lock_path = app_root.join(LOCK_NAME);
        let pid_path = app_root.join(PID_NAME);
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .mode(0o600)
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io("opening", &lock_path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let pid = std::fs::read_to_string(&pid_path)
                    .ok()
                    .and_then(|s| s.trim().parse().ok());
                return Err(ServeError::AlreadyRunning {
                    pid,
                    root: app_root.to_path_buf(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io("locking", &lock_path)(e)),
        }
        // The pid goes into its own file, replaced atomically: the lock stays on the lock
        // file's inode, which a rename would not keep.
        statefs::write_atomic(&pid_path, format!("{}\n", std::process::id()).as_bytes())
            .map_err(io("writing", &pid_path))?;
        Ok(RootLock { _file: file })
    }
}

/// Binds the API socket through the one binder (`api::server::bind_socket`: mode 0600 in a
/// 0700 directory, refusing a live daemon's socket and anything that is not a socket).
pub async fn bind(app_root: &Path) -> Result<tokio::net::UnixListener, ServeError> {
    api::server::bind_socket(&api::socket_path(app_root))
        .await
        .map_err(ServeError::Bind)
}

/// Serves `daemon` on `listener` until `stop` resolves or a client asks for shutdown.
pub async fn serve_on(
    daemon: Arc<Daemon>,
    listener: tokio::net::UnixListener,
    stop: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let socket = api::socket_path(daemon.app_root());
    // The Docker API beside the gRPC API, on the same services (it calls them through the
    // gRPC socket, so both see one state).
    let docker_socket = daemon.docker_socket();
    let docker_listener = match &docker_socket {
        Some(path) => Some(
            api::server::bind_socket(path)
                .await
                .map_err(ServeError::Bind)?,
        ),
        None => None,
    };
    let d = Arc::clone(&daemon);
    let (stopping_tx, mut stopping) = tokio::sync::watch::channel(false);
    let mut stop_docker = stopping.clone();
    let signal = async move {
        tokio::select! {
            () = stop => {}
            () = d.shutdown_requested() => {}
        }
        let _ = stopping_tx.send(true);
    };
    // Clients holding streams open (`logs -f`, attach) must not keep the daemon up for ever:
    // in-flight calls get a grace period, then the server is dropped.
    let grace = async move {
        let _ = stopping.wait_for(|s| *s).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    if let (Some(listener), Some(path)) = (docker_listener, docker_socket.clone()) {
        let ctx = crate::docker::Docker::new(daemon.app_root(), socket.clone());
        tokio::spawn(async move {
            tracing::info!(socket = %path.display(), "serving the docker api");
            let stop = async move {
                let _ = stop_docker.wait_for(|s| *s).await;
            };
            if let Err(e) = crate::docker::serve(ctx, listener, stop).await {
                tracing::error!("serving the docker api: {e}");
            }
        });
    }
    let server = tonic::transport::Server::builder()
        .add_service(SystemServer::new(SystemService(Arc::clone(&daemon))))
        .add_service(ContainersServer::new(ContainersService(Arc::clone(
            &daemon,
        ))))
        .add_service(ImagesServer::new(ImagesService(Arc::clone(&daemon))))
        .add_service(RegistryServer::new(RegistryService(Arc::clone(&daemon))))
        .add_service(NetworksServer::new(NetworksService(Arc::clone(&daemon))))
        .add_service(VolumesServer::new(VolumesService(Arc::clone(&daemon))))
        .add_service(api::v1::builds_server::BuildsServer::new(
            crate::builds::BuildsService(Arc::clone(&daemon)),
        ))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), signal);
    let result = tokio::select! {
        r = server => r.map_err(|e| ServeError::Transport(e.to_string())),
        () = grace => {
            tracing::warn!("clients kept calls open past the shutdown grace period");
            Ok(())
        }
    };
    let _ = std::fs::remove_file(&socket);
    if let Some(path) = docker_socket {
        let _ = std::fs::remove_file(path);
    }
    tracing::info!("stopped serving");
    result
}

/// Claims the app root, opens (reconciles) it, and serves until `stop` or a shutdown request.
pub async fn serve(
    options: DaemonOptions,
    stop: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let _lock = RootLock::acquire(&options.app_root)?;
    let daemon = Daemon::open(options).await?;
    let listener = bind(daemon.app_root()).await?;
    tracing::info!(socket = %api::socket_path(daemon.app_root()).display(), "serving");
    serve_on(daemon, listener, stop).await
}
