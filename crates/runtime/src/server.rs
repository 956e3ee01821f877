//! The runtime's gRPC service over `<bundle>/runtime.sock`: relays the daemon's requests to
//! the [`Container`] and streams stdio both ways.

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};
use tonic::{Request, Response, Status, Streaming};

use crate::container::{Container, ContainerError, ExecEvent, ExecRequest, Output};
use runtime_api::pb;
use runtime_api::pb::runtime_server::{Runtime, RuntimeServer};
use runtime_api::state::Status as LifeStatus;
use wire::v1::stdio_input::Input;
use wire::v1::{ContainerStats, DataChunk, StdioInput, StdioOutput};

/// Errors of serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The socket could not be bound.
    #[error(transparent)]
    Bind(#[from] api::server::BindError),
    /// The gRPC server failed.
    #[error("serving the runtime api: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// Maps a container error onto a status with one of the shared kinds.
pub fn to_status(e: ContainerError) -> Status {
    let msg = e.to_string();
    match e {
        ContainerError::InvalidArgument(_) | ContainerError::Config(_) => {
            Status::invalid_argument(msg)
        }
        ContainerError::FailedPrecondition(_) | ContainerError::Start { .. } => {
            Status::failed_precondition(msg)
        }
        ContainerError::NotFound(_) => Status::not_found(msg),
        // The guest's own verdict (not found, invalid argument, ...) passes through.
        ContainerError::Agent {
            source: agent::client::ClientError::Rpc { status, .. },
            ..
        } if status.code() != tonic::Code::Unavailable => Status::new(status.code(), msg),
        ContainerError::Agent { .. } | ContainerError::Vm(_) => Status::unavailable(msg),
        ContainerError::Io { .. } | ContainerError::WritableLayer { .. } => Status::internal(msg),
    }
}

pub(crate) type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The service.
#[derive(Debug, Clone)]
pub struct Service {
    container: Arc<Container>,
    /// Notified when a client asks a finished container to stop: the runtime stops
    /// lingering and exits (the daemon's way to end it without a signal).
    release: Arc<tokio::sync::Notify>,
}

impl Service {
    /// Serves `container`; a Stop of the finished container notifies `release`.
    pub fn new(container: Arc<Container>, release: Arc<tokio::sync::Notify>) -> Self {
        Self { container, release }
    }
}

fn state_response(c: &Container) -> pb::StateResponse {
    let s = c.state();
    pb::StateResponse {
        api_version: runtime_api::RUNTIME_API_VERSION,
        id: s.id,
        status: match s.status {
            LifeStatus::Created => pb::Status::Created,
            LifeStatus::Running => pb::Status::Running,
            LifeStatus::Stopped => pb::Status::Stopped,
        } as i32,
        runtime_pid: s.runtime_pid,
        init_pid: s.init_pid.unwrap_or(0),
        started_at: s.started_at.unwrap_or_default(),
        finished_at: s.finished_at.unwrap_or_default(),
        exit_code: s.exit_code,
        error: s.error.unwrap_or_default(),
    }
}

#[tonic::async_trait]
impl Runtime for Service {
    async fn state(
        &self,
        _: Request<pb::StateRequest>,
    ) -> Result<Response<pb::StateResponse>, Status> {
        Ok(Response::new(state_response(&self.container)))
    }

    async fn start(
        &self,
        _: Request<pb::StartRequest>,
    ) -> Result<Response<pb::StartResponse>, Status> {
        let pid = self.container.start().await.map_err(to_status)?;
        Ok(Response::new(pb::StartResponse { pid }))
    }

    type AttachStream = BoxStream<StdioOutput>;

    async fn attach(
        &self,
        request: Request<Streaming<StdioInput>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        let (mut output, exited) = self.container.subscribe();
        let (tx, rx) = mpsc::channel::<Result<StdioOutput, Status>>(64);
        if let Some(code) = exited {
            let _ = tx.send(Ok(Output::ExitCode(code).into())).await;
        } else {
            tokio::spawn(async move {
                loop {
                    let frame = match output.recv().await {
                        Ok(frame) => frame,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!(
                                "an attacher fell {n} chunks behind; they are in stdio.log"
                            );
                            continue;
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    };
                    let last = matches!(frame, Output::ExitCode(_));
                    if tx.send(Ok(frame.into())).await.is_err() || last {
                        return; // the attacher went away (the container goes on), or it ended
                    }
                }
            });
        }
        let container = Arc::clone(&self.container);
        let mut input = request.into_inner();
        tokio::spawn(async move {
            // An error here is the attacher going away: the container goes on.
            while let Ok(Some(frame)) = input.message().await {
                let result = match frame.input {
                    Some(Input::Stdin(data)) => container.write_stdin(&data).await,
                    Some(Input::Resize(r)) => container.resize("", r.rows, r.cols).await,
                    Some(Input::CloseStdin(_)) => container.close_stdin().await,
                    Some(Input::Signal(signal)) => signal_process(&container, "", signal).await,
                    None => Ok(()),
                };
                if let Err(e) = result {
                    tracing::debug!("attach input: {e}");
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type ExecStream = BoxStream<pb::ExecResponse>;

    async fn exec(
        &self,
        request: Request<Streaming<pb::ExecRequest>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        let mut input = request.into_inner();
        let first = input
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("exec: the stream ended before `start`"))?;
        let Some(pb::exec_request::Msg::Start(start)) = first.msg else {
            return Err(Status::invalid_argument(
                "exec: the first message must be `start`",
            ));
        };
        let size = start.size.unwrap_or_default();
        let (events_tx, mut events_rx) = mpsc::channel(64);
        let handle = self
            .container
            .exec(
                ExecRequest {
                    args: start.args,
                    env: start.env,
                    cwd: start.cwd,
                    user: start.user,
                    terminal: start.terminal,
                    stdin: start.stdin,
                    rows: size.rows,
                    cols: size.cols,
                },
                events_tx,
            )
            .await
            .map_err(to_status)?;
        let (tx, rx) = mpsc::channel::<Result<pb::ExecResponse, Status>>(64);
        tokio::spawn(async move {
            use pb::exec_response::Msg;
            while let Some(event) = events_rx.recv().await {
                let (msg, last) = match event {
                    ExecEvent::Started { exec_id, pid } => {
                        (Msg::Started(pb::ExecStarted { exec_id, pid }), false)
                    }
                    ExecEvent::Output(frame) => {
                        let last = matches!(frame, Output::ExitCode(_));
                        (Msg::Output(frame.into()), last)
                    }
                };
                // On a vanished client keep draining so the exec's output never blocks.
                let _ = tx.send(Ok(pb::ExecResponse { msg: Some(msg) })).await;
                if last {
                    return;
                }
            }
        });
        let container = Arc::clone(&self.container);
        let exec_id = handle.exec_id.clone();
        let mut stdin = handle.stdin;
        tokio::spawn(async move {
            use pb::exec_request::Msg;
            while let Ok(Some(req)) = input.message().await {
                let Some(Msg::Input(frame)) = req.msg else {
                    continue;
                };
                match frame.input {
                    Some(Input::Stdin(data)) => {
                        if let Some(w) = stdin.as_mut()
                            && (w.write_all(&data).await.is_err() || w.flush().await.is_err())
                        {
                            stdin = None;
                        }
                    }
                    Some(Input::Resize(r)) => {
                        let _ = container.resize(&exec_id, r.rows, r.cols).await;
                    }
                    Some(Input::CloseStdin(_)) => {
                        if let Some(mut w) = stdin.take() {
                            let _ = w.shutdown().await;
                        }
                    }
                    Some(Input::Signal(signal)) => {
                        if let Err(e) = signal_process(&container, &exec_id, signal).await {
                            tracing::debug!("exec input: {e}");
                        }
                    }
                    None => {}
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn freeze(
        &self,
        request: Request<pb::FreezeRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        self.container
            .freeze(request.into_inner().frozen)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn kill(&self, request: Request<pb::KillRequest>) -> Result<Response<pb::Empty>, Status> {
        let r = request.into_inner();
        self.container
            .kill(&r.exec_id, r.signal, r.all)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn resize(
        &self,
        request: Request<pb::ResizeRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let r = request.into_inner();
        let size = r.size.unwrap_or_default();
        self.container
            .resize(&r.exec_id, size.rows, size.cols)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn wait(
        &self,
        _: Request<pb::WaitRequest>,
    ) -> Result<Response<pb::WaitResponse>, Status> {
        let f = self.container.wait().await;
        Ok(Response::new(pb::WaitResponse {
            exit_code: f.exit_code,
            finished_at: f.finished_at,
            error: f.error.unwrap_or_default(),
        }))
    }

    async fn stop(
        &self,
        request: Request<pb::StopRequest>,
    ) -> Result<Response<pb::StopResponse>, Status> {
        let r = request.into_inner();
        let signal = (r.signal != 0).then_some(r.signal);
        let timeout = r.timeout_seconds.map(|s| Duration::from_secs(s.into()));
        let finished = self.container.state().status == LifeStatus::Stopped;
        let exit_code = self
            .container
            .stop(signal, timeout)
            .await
            .map_err(to_status)?;
        if finished {
            self.release.notify_one();
        }
        Ok(Response::new(pb::StopResponse { exit_code }))
    }

    async fn stats(
        &self,
        _: Request<pb::StatsRequest>,
    ) -> Result<Response<ContainerStats>, Status> {
        let stats = self.container.stats().await.map_err(to_status)?;
        Ok(Response::new(stats))
    }

    type CopyOutStream = BoxStream<DataChunk>;

    async fn copy_out(
        &self,
        request: Request<pb::CopyOutRequest>,
    ) -> Result<Response<Self::CopyOutStream>, Status> {
        let r = request.into_inner();
        // Export reads the overlay in the VM's namespace: the image plus the container's
        // changes, with none of the container's own mounts on top.
        let (root, path) = if r.export {
            (crate::container::GUEST_ROOTFS.to_string(), "/".to_string())
        } else {
            self.container.guest_path(&r.path).map_err(to_status)?
        };
        relay_copy_out(
            self.container.agent(),
            agent::v1::CopyOutRequest {
                path,
                root,
                export: r.export,
            },
        )
        .await
    }

    type CaptureLayerStream = BoxStream<DataChunk>;

    async fn capture_layer(
        &self,
        request: Request<pb::CaptureLayerRequest>,
    ) -> Result<Response<Self::CaptureLayerStream>, Status> {
        relay_capture_layer(self.container.agent(), request.into_inner()).await
    }

    async fn copy_in(
        &self,
        request: Request<Streaming<pb::CopyInRequest>>,
    ) -> Result<Response<pb::Empty>, Status> {
        let mut input = request.into_inner();
        let dest = copy_in_destination(&mut input).await?;
        let (root, destination) = self.container.guest_write_dir(&dest).map_err(to_status)?;
        relay_copy_in(self.container.agent(), root, destination, input).await
    }
}

/// The container path a copy in names in its first message.
pub(crate) async fn copy_in_destination(
    input: &mut Streaming<pb::CopyInRequest>,
) -> Result<String, Status> {
    let first = input
        .message()
        .await?
        .ok_or_else(|| Status::invalid_argument("copy in: the stream ended before the header"))?;
    match first.part {
        Some(pb::copy_in_request::Part::Destination(dest)) => Ok(dest),
        _ => Err(Status::invalid_argument(
            "copy in: the first message must be the destination",
        )),
    }
}

/// Relays a copy's tar stream (what follows the destination on `input`) to the guest, to
/// unpack at `destination` under the guest directory `root`.
pub(crate) async fn relay_copy_in(
    agent: &agent::client::AgentClient,
    root: String,
    destination: String,
    mut input: Streaming<pb::CopyInRequest>,
) -> Result<Response<pb::Empty>, Status> {
    use agent::v1::copy_in_request::Part;
    let (tx, rx) = mpsc::channel(8);
    let _ = tx
        .send(agent::v1::CopyInRequest {
            part: Some(Part::Header(agent::v1::CopyInHeader {
                destination,
                root,
                ..Default::default()
            })),
        })
        .await;
    tokio::spawn(async move {
        while let Ok(Some(m)) = input.message().await {
            if let Some(pb::copy_in_request::Part::Data(data)) = m.part
                && tx
                    .send(agent::v1::CopyInRequest {
                        part: Some(Part::Data(data)),
                    })
                    .await
                    .is_err()
            {
                return;
            }
        }
    });
    agent.copy_in(ReceiverStream::new(rx)).await.map_err(|e| {
        to_status(ContainerError::Agent {
            step: "copy in".into(),
            source: e,
        })
    })?;
    Ok(Response::new(pb::Empty {}))
}

/// Relays the guest's tar stream of `request` to a runtime client.
pub(crate) async fn relay_copy_out(
    agent: &agent::client::AgentClient,
    request: agent::v1::CopyOutRequest,
) -> Result<Response<BoxStream<DataChunk>>, Status> {
    let chunks = agent.copy_out(request).await.map_err(|e| {
        to_status(ContainerError::Agent {
            step: "copy out".into(),
            source: e,
        })
    })?;
    // The guest frames the archive as every protocol does; the frames go up as they are.
    Ok(Response::new(Box::pin(chunks)))
}

/// Streams the writable layer's upper directory (the same path in a running container's VM
/// and in a maintenance VM) as the guest's layer tar, frames unchanged.
pub(crate) async fn relay_capture_layer(
    agent: &agent::client::AgentClient,
    request: pb::CaptureLayerRequest,
) -> Result<Response<BoxStream<DataChunk>>, Status> {
    let chunks = agent
        .capture_layer(agent::v1::CaptureLayerRequest {
            upper_dir: crate::container::GUEST_UPPER.into(),
            source_date_epoch: request.source_date_epoch,
            // The mount points of the runtime's own bind mounts, as Docker keeps them in a
            // layer of its own that commit and diff never see.
            exclude: ["etc/hostname", "etc/hosts", "etc/resolv.conf"]
                .map(String::from)
                .to_vec(),
        })
        .await
        .map_err(|e| {
            to_status(ContainerError::Agent {
                step: "capturing the layer".into(),
                source: e,
            })
        })?;
    Ok(Response::new(Box::pin(chunks)))
}

/// Delivers a signal an attached client forwarded to the init process (empty `exec_id`) or
/// an exec. A number that is no signal is refused by the guest.
async fn signal_process(
    container: &Container,
    exec_id: &str,
    signal: i32,
) -> Result<(), ContainerError> {
    let signal = u32::try_from(signal)
        .map_err(|_| ContainerError::InvalidArgument(format!("{signal} is not a signal number")))?;
    container.kill(exec_id, signal, false).await
}

/// Binds `socket` (mode 0600, replacing a stale one, through crates/api's binder) and serves `container` until
/// `shutdown` resolves.
pub async fn serve(
    socket: &Path,
    container: Arc<Container>,
    release: Arc<tokio::sync::Notify>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    // The one binder (crates/api): 0600 in a 0700 directory; a stale socket is replaced,
    // anything that is not a socket is refused.
    let listener = api::server::bind_socket(socket).await?;
    tonic::transport::Server::builder()
        .add_service(RuntimeServer::new(Service::new(container, release)))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await?;
    let _ = std::fs::remove_file(socket);
    Ok(())
}
