//! The host's typed client of the guest agent (feature `client`).
//!
//! [`AgentClient::connect`] opens a gRPC channel through a caller-supplied connector (any
//! function returning a fresh byte stream to the guest, e.g. a VM's vsock dial), retries until
//! the guest answers `Version` or a deadline passes, and refuses a guest whose protocol
//! version differs from [`crate::PROTOCOL_VERSION`]. Every unary call then runs under a
//! per-call timeout; calls that last as long as the guest wants (`WaitProcess`, the copy
//! streams) take none. The transport stays the caller's business: this module never names a
//! VMM.

use std::future::Future;
use std::io;
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tonic::transport::{Channel, Endpoint, Uri};

use crate::PROTOCOL_VERSION;
use crate::v1::agent_client::AgentClient as RawClient;
use crate::v1::*;
use wire::v1::{ContainerStats, DataChunk};

/// Errors of the agent client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The guest agent did not answer `Version` before the boot deadline.
    #[error("guest agent did not answer within {waited:?}: {last_error}")]
    Unavailable {
        /// How long the client tried.
        waited: Duration,
        /// Why the last attempt failed.
        last_error: String,
    },
    /// The guest speaks another protocol version; nothing else was called.
    #[error(
        "guest agent {agent_version} speaks protocol version {guest}, this host speaks {host}: use a guest image built from the same release"
    )]
    VersionMismatch {
        /// The version this host speaks.
        host: u32,
        /// The version the guest reported.
        guest: u32,
        /// The guest's vminitd build.
        agent_version: String,
    },
    /// A call got no answer within its timeout.
    #[error("{rpc} timed out after {timeout:?}")]
    Timeout {
        /// The rpc's name.
        rpc: &'static str,
        /// The timeout that passed.
        timeout: Duration,
    },
    /// The guest answered a call with an error status.
    #[error("{rpc} failed: {}: {}", status.code(), status.message())]
    Rpc {
        /// The rpc's name.
        rpc: &'static str,
        /// The status the guest (or the transport) returned.
        status: tonic::Status,
    },
}

impl ClientError {
    /// The gRPC status code behind this error, where there is one.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            ClientError::Rpc { status, .. } => Some(status.code()),
            _ => None,
        }
    }
}

/// How [`AgentClient::connect`] behaves.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// How long to keep trying until the guest answers `Version` (the guest may still be
    /// booting).
    pub boot_timeout: Duration,
    /// The pause between two connection attempts.
    pub retry_interval: Duration,
    /// The limit on each unary call once connected.
    pub call_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            boot_timeout: Duration::from_secs(30),
            retry_interval: Duration::from_millis(50),
            call_timeout: Duration::from_secs(30),
        }
    }
}

/// A connected, version-checked client of one guest's agent. Cheap to clone; clones share the
/// connection.
#[derive(Debug, Clone)]
pub struct AgentClient {
    raw: RawClient<Channel>,
    call_timeout: Duration,
    version: VersionResponse,
}

impl AgentClient {
    /// Connects through `connector`, retrying until the guest answers `Version` or
    /// `options.boot_timeout` passes, and checks the protocol version.
    ///
    /// `connector` is called for every (re)connection and must return a fresh stream to the
    /// agent's port; it should bound its own waiting (e.g. a vsock dial with a timeout).
    pub async fn connect<C, F, S>(
        connector: C,
        options: ConnectOptions,
    ) -> Result<Self, ClientError>
    where
        C: Fn() -> F + Clone + Send + Sync + 'static,
        F: Future<Output = io::Result<S>> + Send + 'static,
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let start = Instant::now();
        let deadline = start + options.boot_timeout;
        let mut last_error = String::from("no attempt finished");
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let attempt = Self::attempt(connector.clone(), options.call_timeout);
            match tokio::time::timeout(remaining, attempt).await {
                Ok(Ok(client)) => {
                    check_version(&client.version)?;
                    return Ok(client);
                }
                Ok(Err(e)) => last_error = e,
                Err(_) => {}
            }
            if Instant::now() + options.retry_interval >= deadline {
                return Err(ClientError::Unavailable {
                    waited: start.elapsed(),
                    last_error,
                });
            }
            tokio::time::sleep(options.retry_interval).await;
        }
    }

    async fn attempt<C, F, S>(connector: C, call_timeout: Duration) -> Result<Self, String>
    where
        C: Fn() -> F + Clone + Send + Sync + 'static,
        F: Future<Output = io::Result<S>> + Send + 'static,
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        // The URI only names the HTTP/2 authority; the connector decides where bytes go.
        let endpoint = Endpoint::from_static("http://guest-agent");
        let service = tower::service_fn(move |_: Uri| {
            let connect = connector.clone();
            async move { connect().await.map(TokioIo::new) }
        });
        let channel = endpoint
            .connect_with_connector(service)
            .await
            .map_err(|e| format!("connecting: {}", spec::error_chain(&e)))?;
        let mut raw = RawClient::new(channel);
        let version = match tokio::time::timeout(call_timeout, raw.version(VersionRequest {})).await
        {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) => {
                return Err(format!(
                    "Version failed: {}: {}",
                    status.code(),
                    status.message()
                ));
            }
            Err(_) => return Err(format!("Version timed out after {call_timeout:?}")),
        };
        Ok(Self {
            raw,
            call_timeout,
            version,
        })
    }

    /// What the guest reported when the client connected.
    pub fn guest_version(&self) -> &VersionResponse {
        &self.version
    }

    /// The limit on each unary call.
    pub fn call_timeout(&self) -> Duration {
        self.call_timeout
    }

    /// A copy of this client whose unary calls use `timeout`.
    pub fn with_call_timeout(&self, timeout: Duration) -> Self {
        Self {
            call_timeout: timeout,
            ..self.clone()
        }
    }

    /// The generated client, for calls this wrapper does not cover.
    pub fn raw(&self) -> RawClient<Channel> {
        self.raw.clone()
    }

    async fn timed<T>(
        &self,
        rpc: &'static str,
        call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, ClientError> {
        match tokio::time::timeout(self.call_timeout, call).await {
            Ok(result) => result
                .map(tonic::Response::into_inner)
                .map_err(|status| ClientError::Rpc { rpc, status }),
            Err(_) => Err(ClientError::Timeout {
                rpc,
                timeout: self.call_timeout,
            }),
        }
    }
}

/// Unary calls under the per-call timeout.
macro_rules! unary {
    ($($(#[$doc:meta])* $name:ident($req:ty) -> $resp:ty, $rpc:literal;)*) => {
        impl AgentClient {
            $(
                $(#[$doc])*
                pub async fn $name(&self, request: $req) -> Result<$resp, ClientError> {
                    let mut raw = self.raw.clone();
                    self.timed($rpc, raw.$name(request)).await
                }
            )*
        }
    };
}

unary! {
    /// The guest's protocol and build version (asked again, not the cached answer).
    version(VersionRequest) -> VersionResponse, "Version";
    /// mount(2) in the guest's own mount namespace.
    mount(MountRequest) -> Empty, "Mount";
    /// umount2(2) in the guest's own mount namespace.
    umount(UmountRequest) -> Empty, "Umount";
    /// Creates a directory in the guest.
    mkdir(MkdirRequest) -> Empty, "Mkdir";
    /// Writes (or appends to) a guest file.
    write_file(WriteFileRequest) -> Empty, "WriteFile";
    /// lstat(2) of a guest path.
    stat(StatRequest) -> StatResponse, "Stat";
    /// The guest's network links.
    list_links(Empty) -> ListLinksResponse, "ListLinks";
    /// Sets a link's state, MTU or name.
    link_set(LinkSetRequest) -> Empty, "LinkSet";
    /// Adds an address to a link.
    address_add(AddressAddRequest) -> Empty, "AddressAdd";
    /// Adds a route.
    route_add(RouteAddRequest) -> Empty, "RouteAdd";
    /// Renders a resolv.conf.
    configure_dns(ConfigureDnsRequest) -> Empty, "ConfigureDns";
    /// Renders a hosts file.
    configure_hosts(ConfigureHostsRequest) -> Empty, "ConfigureHosts";
    /// Prepares a process from an OCI spec.
    create_process(CreateProcessRequest) -> CreateProcessResponse, "CreateProcess";
    /// Starts a created process.
    start_process(ProcessRef) -> StartProcessResponse, "StartProcess";
    /// Signals a process (or its whole container).
    kill_process(KillProcessRequest) -> Empty, "KillProcess";
    /// Resizes a process's terminal.
    resize_process(ResizeProcessRequest) -> Empty, "ResizeProcess";
    /// Closes a process's stdin.
    close_stdin(ProcessRef) -> Empty, "CloseStdin";
    /// Forgets an exited process.
    delete_process(ProcessRef) -> Empty, "DeleteProcess";
    /// A container's resource usage.
    stats(StatsRequest) -> ContainerStats, "Stats";
    /// Sets the guest's wall clock.
    set_time(SetTimeRequest) -> Empty, "SetTime";
    /// Flushes every guest filesystem.
    sync(Empty) -> Empty, "Sync";
    /// Stops every process, syncs, unmounts and powers the VM off; answers first.
    shutdown(ShutdownRequest) -> Empty, "Shutdown";
}

unary! {
    /// Listens on a guest Unix socket and relays each connection to a host vsock port.
    serve_socket(ServeSocketRequest) -> Empty, "ServeSocket";
    /// Connects to a container's Unix socket and relays it to a host vsock port.
    dial_socket(DialSocketRequest) -> Empty, "DialSocket";
    /// Freezes or thaws every process of a container (cgroup v2 freezer).
    freeze(FreezeRequest) -> Empty, "Freeze";
}

unary! {
    /// Registers a binfmt_misc handler for another architecture's executables (Rosetta).
    register_binfmt(RegisterBinfmtRequest) -> Empty, "RegisterBinfmt";
}

unary! {
    /// Carries out a container's set-up steps in order, in one round trip; a failed step is
    /// reported in the answer.
    prepare_container(PrepareContainerRequest) -> PrepareContainerResponse, "PrepareContainer";
}

unary! {
    /// Mounts a build step's root: the overlay of its layers, with the mount points they
    /// lack in a stub lower of its own.
    mount_step_root(StepRootRequest) -> Empty, "MountStepRoot";
}

impl AgentClient {
    /// Waits until a started process exits. No timeout: a process may run for ever; cancel by
    /// dropping the future.
    pub async fn wait_process(
        &self,
        request: ProcessRef,
    ) -> Result<WaitProcessResponse, ClientError> {
        let mut raw = self.raw.clone();
        raw.wait_process(request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| ClientError::Rpc {
                rpc: "WaitProcess",
                status,
            })
    }

    /// Streams a guest path out as a tar archive. Only opening the stream is timed; reading it
    /// is the caller's pace.
    pub async fn copy_out(
        &self,
        request: CopyOutRequest,
    ) -> Result<tonic::Streaming<DataChunk>, ClientError> {
        let mut raw = self.raw.clone();
        self.timed("CopyOut", raw.copy_out(request)).await
    }

    /// Streams an overlay upper directory as an uncompressed OCI layer tar.
    pub async fn capture_layer(
        &self,
        request: CaptureLayerRequest,
    ) -> Result<tonic::Streaming<DataChunk>, ClientError> {
        let mut raw = self.raw.clone();
        self.timed("CaptureLayer", raw.capture_layer(request)).await
    }

    /// Unpacks a tar stream into a guest directory: `parts` yields the header first, then data.
    /// Not timed: the stream lasts as long as the caller feeds it.
    pub async fn copy_in(
        &self,
        parts: impl tonic::IntoStreamingRequest<Message = CopyInRequest>,
    ) -> Result<Empty, ClientError> {
        let mut raw = self.raw.clone();
        raw.copy_in(parts)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| ClientError::Rpc {
                rpc: "CopyIn",
                status,
            })
    }
}

/// Refuses a guest whose protocol version is not this build's.
fn check_version(version: &VersionResponse) -> Result<(), ClientError> {
    if version.protocol_version == PROTOCOL_VERSION {
        Ok(())
    } else {
        Err(ClientError::VersionMismatch {
            host: PROTOCOL_VERSION,
            guest: version.protocol_version,
            agent_version: version.agent_version.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_different_protocol_version_is_refused() {
        let mut version = VersionResponse {
            protocol_version: PROTOCOL_VERSION,
            agent_version: "0.1.0".into(),
            kernel_release: "6.1.0".into(),
        };
        assert!(check_version(&version).is_ok());
        version.protocol_version = PROTOCOL_VERSION + 1;
        let err = check_version(&version).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "guest agent 0.1.0 speaks protocol version {}, this host speaks {}: use a guest image built from the same release",
                PROTOCOL_VERSION + 1,
                PROTOCOL_VERSION
            )
        );
    }

    // A guest that never answers: every dial fails, so connect must give up at the deadline
    // with the connector's error in the message.
    #[tokio::test]
    async fn connect_gives_up_at_the_deadline_with_the_last_error() {
        let options = ConnectOptions {
            boot_timeout: Duration::from_millis(300),
            retry_interval: Duration::from_millis(20),
            call_timeout: Duration::from_millis(100),
        };
        let start = Instant::now();
        let err = AgentClient::connect(
            || async {
                Err::<tokio::io::DuplexStream, _>(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    "guest not listening",
                ))
            },
            options,
        )
        .await
        .unwrap_err();
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(250), "{waited:?}");
        assert!(waited < Duration::from_secs(2), "{waited:?}");
        let text = err.to_string();
        assert!(
            text.starts_with("guest agent did not answer within"),
            "{text}"
        );
        assert!(text.contains("guest not listening"), "{text}");
    }
}
