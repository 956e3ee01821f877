//! The client side: a gRPC channel to the daemon over its Unix socket.
//!
//! [`Client::connect`] dials the socket, speaks HTTP/2, asks `System.Version` and refuses a
//! daemon of another API version, all within one timeout. The channel then redials the same
//! socket by itself if the connection drops. Calls are made on the generated clients it
//! hands out; streaming calls last as long as the caller reads them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::API_VERSION;
use crate::v1::containers_client::ContainersClient;
use crate::v1::images_client::ImagesClient;
use crate::v1::networks_client::NetworksClient;
use crate::v1::registry_client::RegistryClient;
use crate::v1::system_client::SystemClient;
use crate::v1::{VersionRequest, VersionResponse};

/// How long [`Client::connect`] waits by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the daemon could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Nothing answers on the socket (no file, refused, or not a gRPC server).
    #[error("cannot reach the container daemon at {}: {reason}", socket.display())]
    Unreachable {
        /// The socket dialled.
        socket: PathBuf,
        /// What failed, one line.
        reason: String,
    },
    /// The socket accepted but the daemon did not answer in time.
    #[error("the container daemon at {} did not answer within {timeout:?}", socket.display())]
    Timeout {
        /// The socket dialled.
        socket: PathBuf,
        /// The time allowed.
        timeout: Duration,
    },
    /// The socket path cannot be dialled at all.
    #[error(transparent)]
    SocketPath(#[from] crate::paths::SocketPathError),
    /// The daemon speaks another API version.
    #[error(
        "the container daemon {daemon_version} speaks API version {daemon}, this client speaks {client}: restart it with `container system stop` and `container system start`"
    )]
    VersionMismatch {
        /// This client's API version.
        client: u32,
        /// The daemon's.
        daemon: u32,
        /// The daemon's release.
        daemon_version: String,
    },
}

impl ConnectError {
    /// The socket this error is about, when it is about reaching one.
    pub fn socket(&self) -> Option<&Path> {
        match self {
            ConnectError::Unreachable { socket, .. } | ConnectError::Timeout { socket, .. } => {
                Some(socket)
            }
            ConnectError::SocketPath(e) => Some(&e.socket),
            ConnectError::VersionMismatch { .. } => None,
        }
    }
}

/// A connected, version-checked client of the daemon. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    channel: Channel,
    socket: PathBuf,
    version: VersionResponse,
}

impl Client {
    /// Connects to the daemon at `socket` and checks its API version, giving up after
    /// `timeout`.
    pub async fn connect(socket: &Path, timeout: Duration) -> Result<Client, ConnectError> {
        crate::paths::check_socket_path(socket)?;
        let socket = socket.to_path_buf();
        match tokio::time::timeout(timeout, Self::attempt(socket.clone(), timeout)).await {
            Ok(result) => result,
            Err(_) => Err(ConnectError::Timeout { socket, timeout }),
        }
    }

    async fn attempt(socket: PathBuf, timeout: Duration) -> Result<Client, ConnectError> {
        let unreachable = |reason: String| ConnectError::Unreachable {
            socket: socket.clone(),
            reason,
        };
        // The URI only names the HTTP/2 authority; the connector decides where bytes go.
        let endpoint = Endpoint::from_static("http://container-apiserver").connect_timeout(timeout);
        let path = socket.clone();
        let connector = tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                tokio::net::UnixStream::connect(path)
                    .await
                    .map(TokioIo::new)
            }
        });
        let channel = endpoint
            .connect_with_connector(connector)
            .await
            .map_err(|e| unreachable(spec::error_chain(&e)))?;
        let version = SystemClient::new(channel.clone())
            .version(VersionRequest {})
            .await
            .map_err(|status| unreachable(format!("version check failed: {}", status.message())))?
            .into_inner();
        if version.api_version != API_VERSION {
            return Err(ConnectError::VersionMismatch {
                client: API_VERSION,
                daemon: version.api_version,
                daemon_version: version.version,
            });
        }
        Ok(Client {
            channel,
            socket,
            version,
        })
    }

    /// The socket this client talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// What the daemon answered when the client connected.
    pub fn daemon_version(&self) -> &VersionResponse {
        &self.version
    }

    /// The underlying channel, for services added later.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// The Builds service.
    pub fn builds(&self) -> crate::v1::builds_client::BuildsClient<Channel> {
        crate::v1::builds_client::BuildsClient::new(self.channel.clone())
    }

    /// The Containers service.
    pub fn containers(&self) -> ContainersClient<Channel> {
        ContainersClient::new(self.channel.clone())
    }

    /// The Images service.
    pub fn images(&self) -> ImagesClient<Channel> {
        ImagesClient::new(self.channel.clone())
    }

    /// The Networks service.
    pub fn networks(&self) -> NetworksClient<Channel> {
        NetworksClient::new(self.channel.clone())
    }

    /// The Registry service.
    pub fn registry(&self) -> RegistryClient<Channel> {
        RegistryClient::new(self.channel.clone())
    }

    /// The System service.
    pub fn system(&self) -> SystemClient<Channel> {
        SystemClient::new(self.channel.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::system_server::{System, SystemServer};
    use std::time::Instant;
    use tokio_stream::wrappers::UnixListenerStream;

    /// A daemon that implements only Version, as a real tonic server on a Unix socket.
    struct VersionOnly {
        api_version: u32,
    }

    #[tonic::async_trait]
    impl System for VersionOnly {
        async fn version(
            &self,
            _: tonic::Request<VersionRequest>,
        ) -> Result<tonic::Response<VersionResponse>, tonic::Status> {
            Ok(tonic::Response::new(VersionResponse {
                version: "9.9.9".into(),
                commit: "abc".into(),
                build: "debug".into(),
                api_version: self.api_version,
                app_name: "container-apiserver".into(),
            }))
        }
    }

    fn serve(socket: &Path, api_version: u32) -> tokio::task::JoinHandle<()> {
        let listener = tokio::net::UnixListener::bind(socket).unwrap();
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(SystemServer::new(VersionOnly { api_version }))
                .serve_with_incoming(UnixListenerStream::new(listener))
                .await
                .unwrap();
        })
    }

    #[tokio::test]
    async fn connects_and_reads_the_version() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("apiserver.sock");
        let server = serve(&socket, API_VERSION);
        let client = Client::connect(&socket, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(client.daemon_version().version, "9.9.9");
        assert_eq!(client.socket(), socket);
        // An rpc the daemon does not implement yet answers UNIMPLEMENTED, not a hang.
        let status = client
            .system()
            .status(crate::v1::StatusRequest {})
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unimplemented);
        server.abort();
    }

    #[tokio::test]
    async fn a_missing_socket_is_unreachable() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("apiserver.sock");
        let err = Client::connect(&socket, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, ConnectError::Unreachable { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.starts_with(&format!(
                "cannot reach the container daemon at {}: ",
                socket.display()
            )),
            "{text}"
        );
        assert_eq!(err.socket(), Some(socket.as_path()));
    }

    #[tokio::test]
    async fn an_undialable_socket_path_says_why() {
        let socket = PathBuf::from("/tmp")
            .join("x".repeat(200))
            .join("apiserver.sock");
        let err = Client::connect(&socket, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, ConnectError::SocketPath(_)), "{err:?}");
        assert!(err.to_string().contains("longer than the"), "{err}");
    }

    #[tokio::test]
    async fn a_silent_socket_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("apiserver.sock");
        // Bound but never served: the kernel accepts into the backlog, nobody speaks HTTP/2.
        let _listener = tokio::net::UnixListener::bind(&socket).unwrap();
        let start = Instant::now();
        let err = Client::connect(&socket, Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(matches!(err, ConnectError::Timeout { .. }), "{err:?}");
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn another_api_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("apiserver.sock");
        let server = serve(&socket, API_VERSION + 1);
        let err = Client::connect(&socket, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "the container daemon 9.9.9 speaks API version {}, this client speaks {}: restart it with `container system stop` and `container system start`",
                API_VERSION + 1,
                API_VERSION
            )
        );
        server.abort();
    }
}
