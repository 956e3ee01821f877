//! Stdio streams: `attach` (optionally starting the container) and `exec`, terminal resizes,
//! and the pump that moves a client's input to the runtime and its output back.

use std::sync::Arc;

use api::ApiError;
use api::v1;
use runtime_api::client::{Output, RuntimeClient, StdioEvent, StdioInput, StdioSession};
use tokio::sync::mpsc;
use tonic::codegen::BoxStream;
use tonic::{Request, Status, Streaming};

use super::{Res, boxed, ok, runtime_error};
use crate::daemon::Daemon;
use crate::errors::one_line;
use crate::record::Phase;

pub(super) async fn attach(
    daemon: &Arc<Daemon>,
    req: Request<Streaming<v1::StdioRequest>>,
) -> Res<BoxStream<v1::StdioResponse>> {
    let mut input = req.into_inner();
    let first = input
        .message()
        .await?
        .and_then(|m| m.request)
        .ok_or_else(|| ApiError::invalid_argument("attach: the stream ended before `attach`"))?;
    let v1::stdio_request::Request::Attach(open) = first else {
        return Err(
            ApiError::invalid_argument("attach: the first message must be `attach`").into(),
        );
    };
    let daemon = Arc::clone(daemon);
    let id = daemon.lookup(&open.id)?;
    let (tx, rx) = mpsc::channel(64);
    let record = daemon.record(&id)?;
    let (client, session) = if open.start && record.phase != Phase::Running {
        let lock = daemon.op_lock(&id)?;
        let _guard = lock.lock().await;
        let client = match daemon.spawn_runtime(&id).await {
            Ok(c) => c,
            Err(e) => {
                daemon.disconnect(&id).await;
                // A program that cannot run is the container's exit (126/127), reported
                // like any other exit; anything else is the daemon's error.
                let code = daemon
                    .record(&id)
                    .ok()
                    .filter(|r| r.phase == Phase::Stopped)
                    .and_then(|r| r.exit_code)
                    .filter(|c| matches!(c, 126 | 127));
                let Some(code) = code else {
                    return Err(e.into());
                };
                send_failure(&tx, &e.message, code).await;
                drop(_guard);
                daemon.after_exit(&id).await;
                return ok(boxed(rx));
            }
        };
        let session = client.attach().await.map_err(runtime_error)?;
        if let Some(size) = &open.size {
            let _ = session
                .input
                .send(StdioInput::resize(size.rows, size.cols))
                .await;
        }
        if let Err((e, code)) = daemon.start_init(&id, &client).await {
            send_failure(&tx, &e.message, code).await;
            return ok(boxed(rx));
        }
        (client, session)
    } else {
        let client = daemon.connect(&id).await?;
        let session = client.attach().await.map_err(runtime_error)?;
        (client, session)
    };
    let _ = tx
        .send(Ok(v1::StdioResponse {
            response: Some(v1::stdio_response::Response::Started(v1::Started {
                exec_id: String::new(),
            })),
        }))
        .await;
    let started = daemon.record(&id)?.started_ms;
    pump_stdio(
        client,
        open.stdin,
        input,
        session,
        tx,
        Some((daemon, id, started)),
    );
    ok(boxed(rx))
}

pub(super) async fn exec(
    daemon: &Arc<Daemon>,
    req: Request<Streaming<v1::StdioRequest>>,
) -> Res<BoxStream<v1::StdioResponse>> {
    let mut input = req.into_inner();
    let first = input
        .message()
        .await?
        .and_then(|m| m.request)
        .ok_or_else(|| ApiError::invalid_argument("exec: the stream ended before `exec`"))?;
    let v1::stdio_request::Request::Exec(open) = first else {
        return Err(ApiError::invalid_argument("exec: the first message must be `exec`").into());
    };
    if open.args.is_empty() {
        return Err(ApiError::invalid_argument("exec: no command given").into());
    }
    let id = daemon.lookup(&open.id)?;
    // A new process in a frozen cgroup would freeze before it printed anything.
    if let Ok(r) = daemon.record(&id)
        && r.paused
    {
        return Err(ApiError::failed_precondition(format!(
            "container {} is paused: unpause it before exec",
            r.name
        ))
        .into());
    }
    let client = daemon.connect(&id).await?;
    let mut session = client
        .exec(runtime_api::client::ExecSpec {
            args: open.args.clone(),
            env: open.env.clone(),
            cwd: open.working_dir.clone(),
            user: open.user.clone(),
            terminal: open.tty,
            stdin: open.stdin && !open.detach,
            size: open.size,
        })
        .await
        .map_err(runtime_error)?;
    let (tx, rx) = mpsc::channel(64);
    // The first event is `started` or a failure to start (exit code, reason on stderr).
    let exec_id = match session.next().await {
        Ok(Some(StdioEvent::Started { exec_id, .. })) => exec_id,
        Ok(other) => {
            let code = match other {
                Some(StdioEvent::Output(Output::ExitCode(c))) => c,
                _ => 126,
            };
            let _ = tx.send(Ok(output(Output::ExitCode(code)))).await;
            return ok(boxed(rx));
        }
        Err(e) => {
            let code = match e.code() {
                Some(tonic::Code::NotFound) => 127,
                Some(tonic::Code::FailedPrecondition) | Some(tonic::Code::InvalidArgument) => 126,
                _ => return Err(runtime_error(e).into()),
            };
            let message = match &e {
                runtime_api::client::ClientError::Rpc { status, .. } => status.message().to_owned(),
                other => other.to_string(),
            };
            send_failure(&tx, &message, code).await;
            return ok(boxed(rx));
        }
    };
    if let Ok(r) = daemon.record(&id) {
        let command = open.args.join(" ");
        for action in ["exec_create", "exec_start"] {
            daemon.container_event(
                &r,
                &format!("{action}: {command}"),
                &[("execID", exec_id.clone())],
            );
        }
    }
    let _ = tx
        .send(Ok(v1::StdioResponse {
            response: Some(v1::stdio_response::Response::Started(v1::Started {
                exec_id: exec_id.clone(),
            })),
        }))
        .await;
    if open.detach {
        // Keep draining so the exec runs to its end without a reader.
        tokio::spawn(async move { while let Ok(Some(_)) = session.next().await {} });
        return ok(boxed(rx));
    }
    pump_stdio(client, open.stdin, input, session, tx, None);
    ok(boxed(rx))
}

pub(super) async fn resize(
    daemon: &Arc<Daemon>,
    req: Request<v1::ResizeRequest>,
) -> Res<v1::ResizeResponse> {
    let r = req.into_inner();
    let id = daemon.lookup(&r.id)?;
    let client = daemon.connect(&id).await?;
    let size = r.size.unwrap_or_default();
    client
        .resize(&r.exec_id, size.rows, size.cols)
        .await
        .map_err(runtime_error)?;
    ok(v1::ResizeResponse {})
}

/// One frame of a process's output for a client.
fn output(frame: Output) -> v1::StdioResponse {
    v1::StdioResponse {
        response: Some(v1::stdio_response::Response::Output(frame.into())),
    }
}

/// Tells an attached client that its process could not run: the reason on stderr, then
/// the exit code.
async fn send_failure(
    tx: &mpsc::Sender<Result<v1::StdioResponse, Status>>,
    message: &str,
    code: i32,
) {
    let line = format!("container: {}\n", one_line(message));
    let _ = tx.send(Ok(output(Output::Stderr(line.into_bytes())))).await;
    let _ = tx.send(Ok(output(Output::ExitCode(code)))).await;
}

/// Moves a client's stdin, resizes and signals to the runtime, and the runtime's output and
/// exit code back to the client; the frames are the same at both hops (crates/wire). With
/// `settle` (the init process of a container: daemon, ID, start time), the exit is recorded
/// before it is passed on, so a client that lists containers right after `run` sees it
/// exited, as with Docker.
fn pump_stdio(
    client: RuntimeClient,
    forward_stdin: bool,
    mut input: Streaming<v1::StdioRequest>,
    mut session: StdioSession,
    tx: mpsc::Sender<Result<v1::StdioResponse, Status>>,
    settle: Option<(Arc<Daemon>, String, i64)>,
) {
    let up = session.input.clone();
    let upstream = tokio::spawn(async move {
        use wire::v1::stdio_input::Input;
        while let Ok(Some(m)) = input.message().await {
            let Some(v1::stdio_request::Request::Input(frame)) = m.request else {
                continue;
            };
            let is_stdin = matches!(frame.input, Some(Input::Stdin(_) | Input::CloseStdin(_)));
            if is_stdin && !forward_stdin {
                continue;
            }
            if up.send(frame).await.is_err() {
                return;
            }
        }
    });
    tokio::spawn(async move {
        loop {
            let frame = match session.next().await {
                Ok(Some(StdioEvent::Output(Output::ExitCode(code)))) => {
                    if let Some((daemon, id, started)) = &settle {
                        daemon.record_exit(id, *started, code);
                    }
                    let _ = tx.send(Ok(output(Output::ExitCode(code)))).await;
                    break;
                }
                Ok(Some(StdioEvent::Output(frame))) => frame,
                Ok(Some(StdioEvent::Started { .. })) => continue,
                Ok(None) => {
                    // The stream ended without an exit code: ask the runtime for it.
                    let code = client.wait().await.map(|w| w.exit_code).unwrap_or(255);
                    let _ = tx.send(Ok(output(Output::ExitCode(code)))).await;
                    break;
                }
                Err(e) => {
                    let _ = tx.send(Err(runtime_error(e).into())).await;
                    break;
                }
            };
            if tx.send(Ok(output(frame))).await.is_err() {
                break;
            }
        }
        upstream.abort();
    });
}
