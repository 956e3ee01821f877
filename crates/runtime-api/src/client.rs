//! The daemon's typed client of one runtime's API over `<bundle>/runtime.sock`.
//!
//! [`RuntimeClient::connect`] dials the socket, asks `State` and refuses a runtime speaking
//! another API version. Streaming calls hand back a sender for what goes up and a stream of
//! what comes down; dropping them ends the call without touching the container.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint, Uri};
use wire::v1::{ContainerStats, DataChunk, StdioOutput, TerminalSize};

use crate::RUNTIME_API_VERSION;
use crate::pb;
use crate::pb::runtime_client::RuntimeClient as Raw;

/// Errors of the runtime client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answers on the socket.
    #[error("cannot reach the container runtime at {}: {reason}", socket.display())]
    Unreachable {
        /// The socket.
        socket: PathBuf,
        /// Why.
        reason: String,
    },
    /// The runtime speaks another API version.
    #[error("the container runtime speaks api version {runtime}, this client speaks {client}")]
    VersionMismatch {
        /// This client's version.
        client: u32,
        /// The runtime's.
        runtime: u32,
    },
    /// A call failed.
    #[error("{rpc}: {}", status.message())]
    Rpc {
        /// The rpc.
        rpc: &'static str,
        /// The runtime's status.
        status: tonic::Status,
    },
}

impl ClientError {
    /// The gRPC code behind the error, if any.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            ClientError::Rpc { status, .. } => Some(status.code()),
            _ => None,
        }
    }
}

fn rpc(name: &'static str) -> impl FnOnce(tonic::Status) -> ClientError {
    move |status| ClientError::Rpc { rpc: name, status }
}

/// Dials the gRPC server on the Unix socket `socket` (`authority` names it in requests) and
/// runs `handshake` on the channel: the first call, answering with the client and the API
/// version the server reports. A version other than `api_version` is refused; all of it
/// must happen within `timeout`. The runtime's and the builder's clients connect this way.
pub(crate) async fn connect_unix<T, F, Fut>(
    socket: &Path,
    authority: &'static str,
    api_version: u32,
    timeout: Duration,
    handshake: F,
) -> Result<T, ClientError>
where
    F: FnOnce(Channel) -> Fut,
    Fut: std::future::Future<Output = Result<(T, u32), String>>,
{
    let unreachable = |reason: String| ClientError::Unreachable {
        socket: socket.to_path_buf(),
        reason,
    };
    let path = socket.to_path_buf();
    let connector = tower::service_fn(move |_: Uri| {
        let path = path.clone();
        async move {
            tokio::net::UnixStream::connect(path)
                .await
                .map(TokioIo::new)
        }
    });
    let attempt = async {
        let channel = Endpoint::from_static(authority)
            .connect_timeout(timeout)
            .connect_with_connector(connector)
            .await
            .map_err(|e| unreachable(spec::error_chain(&e)))?;
        let (client, version) = handshake(channel).await.map_err(unreachable)?;
        if version != api_version {
            return Err(ClientError::VersionMismatch {
                client: api_version,
                runtime: version,
            });
        }
        Ok(client)
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(unreachable(format!("no answer within {timeout:?}"))),
    }
}

/// The largest data message a copy sends (gRPC's default limit is 4 MiB).
const COPY_PIECE: usize = 1 << 20;

/// A connected client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RuntimeClient {
    raw: Raw<Channel>,
}

/// What comes down an attach or exec stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StdioEvent {
    /// An exec started (exec streams only; the first event).
    Started {
        /// The exec's id.
        exec_id: String,
        /// Its pid in the guest.
        pid: u32,
    },
    /// Output, and finally the exit code; the stream ends after the exit code.
    Output(Output),
}

/// The output frames of a process (crates/wire): stdout, stderr, exit code.
pub use wire::v1::stdio_output::Output;

/// The frames that go up a stdio stream (crates/wire): stdin bytes, end of input, resizes,
/// signals; build them with `StdioInput::stdin`, `close_stdin`, `resize` and `signal`.
pub use wire::v1::StdioInput;

enum Downstream {
    Attach(tonic::Streaming<StdioOutput>),
    Exec(tonic::Streaming<pb::ExecResponse>),
}

/// One attach or exec: send input frames up, read events down. Dropping it ends the call
/// without touching the container or the process.
pub struct StdioSession {
    /// Send stdin bytes, end of input, resizes and signals.
    pub input: mpsc::Sender<StdioInput>,
    output: Downstream,
}

impl std::fmt::Debug for StdioSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdioSession").finish_non_exhaustive()
    }
}

impl StdioSession {
    /// The next event; `None` once the stream has ended.
    pub async fn next(&mut self) -> Result<Option<StdioEvent>, ClientError> {
        loop {
            let event = match &mut self.output {
                Downstream::Attach(s) => match s.message().await.map_err(rpc("Attach"))? {
                    None => return Ok(None),
                    Some(frame) => frame.output.map(StdioEvent::Output),
                },
                Downstream::Exec(s) => {
                    use pb::exec_response::Msg;
                    match s.message().await.map_err(rpc("Exec"))? {
                        None => return Ok(None),
                        Some(m) => match m.msg {
                            Some(Msg::Started(s)) => Some(StdioEvent::Started {
                                exec_id: s.exec_id,
                                pid: s.pid,
                            }),
                            Some(Msg::Output(frame)) => frame.output.map(StdioEvent::Output),
                            None => None,
                        },
                    }
                }
            };
            if let Some(event) = event {
                return Ok(Some(event));
            }
        }
    }

    /// Reads to the end: (stdout, stderr, exit code).
    pub async fn collect(mut self) -> Result<(Vec<u8>, Vec<u8>, Option<i32>), ClientError> {
        let (mut out, mut err, mut code) = (Vec::new(), Vec::new(), None);
        while let Some(e) = self.next().await? {
            match e {
                StdioEvent::Output(Output::Stdout(d)) => out.extend(d),
                StdioEvent::Output(Output::Stderr(d)) => err.extend(d),
                StdioEvent::Output(Output::ExitCode(c)) => code = Some(c),
                StdioEvent::Started { .. } => {}
            }
        }
        Ok((out, err, code))
    }
}

/// What to run with [`RuntimeClient::exec`].
pub type ExecSpec = pb::ExecStart;

impl RuntimeClient {
    /// Connects to the runtime at `socket` and checks its API version, within `timeout`.
    pub async fn connect(socket: &Path, timeout: Duration) -> Result<Self, ClientError> {
        let handshake = |channel| async move {
            let mut raw = Raw::new(channel);
            let state = raw
                .state(pb::StateRequest {})
                .await
                .map_err(|s| format!("state: {}", s.message()))?
                .into_inner();
            Ok((RuntimeClient { raw }, state.api_version))
        };
        connect_unix(
            socket,
            "http://container-runtime",
            RUNTIME_API_VERSION,
            timeout,
            handshake,
        )
        .await
    }

    /// The container's state.
    pub async fn state(&self) -> Result<pb::StateResponse, ClientError> {
        let mut raw = self.raw.clone();
        Ok(raw
            .state(pb::StateRequest {})
            .await
            .map_err(rpc("State"))?
            .into_inner())
    }

    /// Starts the init process; returns its pid in the guest.
    pub async fn start(&self) -> Result<u32, ClientError> {
        let mut raw = self.raw.clone();
        Ok(raw
            .start(pb::StartRequest {})
            .await
            .map_err(rpc("Start"))?
            .into_inner()
            .pid)
    }

    /// Attaches to the init process.
    pub async fn attach(&self) -> Result<StdioSession, ClientError> {
        let (input, rx) = mpsc::channel::<StdioInput>(16);
        let mut raw = self.raw.clone();
        let output = raw
            .attach(ReceiverStream::new(rx))
            .await
            .map_err(rpc("Attach"))?
            .into_inner();
        Ok(StdioSession {
            input,
            output: Downstream::Attach(output),
        })
    }

    /// Runs a process in the container. Its first event is `Started`, or its failure to
    /// start.
    pub async fn exec(&self, spec: ExecSpec) -> Result<StdioSession, ClientError> {
        use pb::exec_request::Msg;
        let (input, rx) = mpsc::channel::<StdioInput>(16);
        let start = pb::ExecRequest {
            msg: Some(Msg::Start(spec)),
        };
        let up =
            tokio_stream::once(start).chain(ReceiverStream::new(rx).map(|frame| pb::ExecRequest {
                msg: Some(Msg::Input(frame)),
            }));
        let mut raw = self.raw.clone();
        let output = raw.exec(up).await.map_err(rpc("Exec"))?.into_inner();
        Ok(StdioSession {
            input,
            output: Downstream::Exec(output),
        })
    }

    /// Sends a signal (0 = SIGKILL) to the init process, an exec, or with `all` every process.
    pub async fn kill(&self, signal: u32, all: bool, exec_id: &str) -> Result<(), ClientError> {
        let mut raw = self.raw.clone();
        raw.kill(pb::KillRequest {
            signal,
            all,
            exec_id: exec_id.to_string(),
        })
        .await
        .map_err(rpc("Kill"))?;
        Ok(())
    }

    /// Resizes the terminal of the init process (empty `exec_id`) or an exec.
    pub async fn resize(&self, exec_id: &str, rows: u32, cols: u32) -> Result<(), ClientError> {
        let mut raw = self.raw.clone();
        raw.resize(pb::ResizeRequest {
            exec_id: exec_id.to_string(),
            size: Some(TerminalSize { rows, cols }),
        })
        .await
        .map_err(rpc("Resize"))?;
        Ok(())
    }

    /// Waits until the container has finished.
    pub async fn wait(&self) -> Result<pb::WaitResponse, ClientError> {
        let mut raw = self.raw.clone();
        Ok(raw
            .wait(pb::WaitRequest {})
            .await
            .map_err(rpc("Wait"))?
            .into_inner())
    }

    /// Stops the container: `signal` (None: its stop signal), then SIGKILL after `timeout`
    /// (None: its stop timeout). Returns the exit code.
    pub async fn stop(
        &self,
        signal: Option<u32>,
        timeout: Option<Duration>,
    ) -> Result<i32, ClientError> {
        let mut raw = self.raw.clone();
        Ok(raw
            .stop(pb::StopRequest {
                signal: signal.unwrap_or(0),
                timeout_seconds: timeout.map(|t| t.as_secs() as u32),
            })
            .await
            .map_err(rpc("Stop"))?
            .into_inner()
            .exit_code)
    }

    /// Resource usage.
    pub async fn stats(&self) -> Result<ContainerStats, ClientError> {
        let mut raw = self.raw.clone();
        Ok(raw
            .stats(pb::StatsRequest {})
            .await
            .map_err(rpc("Stats"))?
            .into_inner())
    }

    /// Freezes (`true`) or thaws (`false`) every process of the container.
    pub async fn freeze(&self, frozen: bool) -> Result<(), ClientError> {
        let mut raw = self.raw.clone();
        raw.freeze(pb::FreezeRequest { frozen })
            .await
            .map_err(rpc("Freeze"))?;
        Ok(())
    }

    /// Streams `path` of the container out as a tar archive.
    pub async fn copy_out(&self, path: &str) -> Result<tonic::Streaming<DataChunk>, ClientError> {
        let mut raw = self.raw.clone();
        Ok(raw
            .copy_out(pb::CopyOutRequest {
                path: path.to_string(),
                export: false,
            })
            .await
            .map_err(rpc("CopyOut"))?
            .into_inner())
    }

    /// Streams the container's changes as an uncompressed OCI layer tar (`commit`, `diff`).
    pub async fn capture_layer(
        &self,
        source_date_epoch: Option<i64>,
    ) -> Result<tonic::Streaming<DataChunk>, ClientError> {
        let mut raw = self.raw.clone();
        Ok(raw
            .capture_layer(pb::CaptureLayerRequest { source_date_epoch })
            .await
            .map_err(rpc("CaptureLayer"))?
            .into_inner())
    }

    /// Streams the container's whole root filesystem out as a tar archive (`export`).
    pub async fn export(&self) -> Result<tonic::Streaming<DataChunk>, ClientError> {
        let mut raw = self.raw.clone();
        Ok(raw
            .copy_out(pb::CopyOutRequest {
                path: "/".into(),
                export: true,
            })
            .await
            .map_err(rpc("CopyOut"))?
            .into_inner())
    }

    /// Unpacks the tar stream `chunks` (of any size) into the container directory
    /// `destination`, which must exist.
    pub async fn copy_in(
        &self,
        destination: &str,
        mut chunks: mpsc::Receiver<Vec<u8>>,
    ) -> Result<(), ClientError> {
        let (tx, rx) = mpsc::channel(8);
        use pb::copy_in_request::Part;
        let _ = tx
            .send(pb::CopyInRequest {
                part: Some(Part::Destination(destination.to_string())),
            })
            .await;
        tokio::spawn(async move {
            while let Some(data) = chunks.recv().await {
                // gRPC refuses messages over 4 MiB; send big chunks in pieces.
                for piece in data.chunks(COPY_PIECE) {
                    if tx
                        .send(pb::CopyInRequest {
                            part: Some(Part::Data(piece.to_vec())),
                        })
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        });
        let mut raw = self.raw.clone();
        raw.copy_in(ReceiverStream::new(rx))
            .await
            .map_err(rpc("CopyIn"))?;
        Ok(())
    }
}
