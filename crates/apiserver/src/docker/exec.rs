//! `/containers/{id}/exec` and `/exec/{id}/...`: Docker's exec instances. Our service runs an
//! exec in one stream, so an instance lives here between create and start, and keeps its
//! exit code for `exec inspect` afterwards.

use api::v1;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use bollard_stubs::models as m;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use wire::v1::StdioOutput;
use wire::v1::stdio_output::Output;

use super::Ctx;
use super::containers::{container_error, info_of};
use super::error::{DResult, DockerError};
use super::stream::{
    Params, StdioEnd, StdioMode, json, json_body, pump, upgrade_response, wants_upgrade,
};

/// One exec instance.
#[derive(Debug, Clone)]
pub struct ExecEntry {
    /// The container's full ID.
    container: String,
    config: m::ExecConfig,
    /// The runtime's exec ID once started (for resizes).
    runtime_id: Option<String>,
    running: bool,
    exit_code: Option<i32>,
}

impl ExecEntry {
    /// It runs in container `id` (its full ID).
    pub fn runs_in(&self, id: &str) -> bool {
        self.running && self.container == id
    }
}

/// Most exec instances kept; the oldest finished ones go first.
const MAX_EXECS: usize = 256;

/// `POST /containers/{id}/exec`.
pub async fn create(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    body: Bytes,
) -> DResult<Response> {
    let config: m::ExecConfig = json_body(&body)?;
    if config.privileged == Some(true) {
        return Err(DockerError::unsupported_field(
            "Privileged",
            "containers run in their own VM without host devices",
        ));
    }
    if config.cmd.as_ref().is_none_or(|c| c.is_empty()) {
        return Err(DockerError::bad_request("No exec command specified"));
    }
    let info = info_of(&ctx, &id).await?;
    if info.state() != v1::ContainerState::Running {
        return Err(DockerError::conflict(format!(
            "container {} is not running",
            info.id
        )));
    }
    let exec_id = crate::names::new_id()
        .map_err(|e| DockerError::internal(format!("making an exec ID: {e}")))?;
    let mut execs = ctx.execs.lock().unwrap_or_else(|p| p.into_inner());
    if execs.len() >= MAX_EXECS {
        let done: Vec<String> = execs
            .iter()
            .filter(|(_, e)| e.exit_code.is_some())
            .map(|(k, _)| k.clone())
            .collect();
        for k in done {
            execs.remove(&k);
        }
    }
    execs.insert(
        exec_id.clone(),
        ExecEntry {
            container: info.id,
            config,
            runtime_id: None,
            running: false,
            exit_code: None,
        },
    );
    Ok(json(
        StatusCode::CREATED,
        &serde_json::json!({ "Id": exec_id }),
    ))
}

fn entry(ctx: &Ctx, id: &str) -> DResult<ExecEntry> {
    ctx.execs
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(id)
        .cloned()
        .ok_or_else(|| DockerError::not_found(format!("No such exec instance: {id}")))
}

fn update(ctx: &Ctx, id: &str, f: impl FnOnce(&mut ExecEntry)) {
    if let Some(e) = ctx
        .execs
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_mut(id)
    {
        f(e);
    }
}

/// `POST /exec/{id}/start`: hijacks the connection unless detached.
pub async fn start(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    mut req: Request,
) -> DResult<Response> {
    let body = axum::body::to_bytes(std::mem::take(req.body_mut()), 1 << 20)
        .await
        .map_err(|e| DockerError::bad_request(format!("reading the body: {e}")))?;
    let start: m::ExecStartConfig = json_body(&body)?;
    let e = entry(&ctx, &id)?;
    if e.running || e.exit_code.is_some() {
        return Err(DockerError::conflict(format!(
            "exec {id} has already been started"
        )));
    }
    let detach = start.detach.unwrap_or(false);
    let tty = start.tty.or(e.config.tty).unwrap_or(false);
    let size = start
        .console_size
        .as_ref()
        .or(e.config.console_size.as_ref())
        .filter(|s| s.len() == 2)
        .map(|s| wire::v1::TerminalSize {
            rows: s[0] as u32,
            cols: s[1] as u32,
        });
    let mode = StdioMode {
        tty,
        stdout: e.config.attach_stdout.unwrap_or(true),
        stderr: e.config.attach_stderr.unwrap_or(true),
        stdin: e.config.attach_stdin.unwrap_or(false) && !detach,
        settle: super::stream::settle_time(req.headers()),
        detach_keys: super::stream::detach_keys(tty, e.config.detach_keys.as_deref())?,
    };
    let (tx, rx) = mpsc::channel(16);
    let _ = tx
        .send(v1::StdioRequest {
            request: Some(v1::stdio_request::Request::Exec(v1::ExecOpen {
                id: e.container.clone(),
                args: e.config.cmd.clone().unwrap_or_default(),
                env: e.config.env.clone().unwrap_or_default(),
                working_dir: e.config.working_dir.clone().unwrap_or_default(),
                user: e.config.user.clone().unwrap_or_default(),
                tty,
                stdin: mode.stdin,
                detach: false,
                size,
            })),
        })
        .await;
    let mut output = ctx
        .client()
        .await?
        .containers()
        .exec(ReceiverStream::new(rx))
        .await
        .map_err(|s| container_error(&e.container, s))?
        .into_inner();
    // The first message says whether it runs; a program that cannot run still answers with
    // its reason on stderr and an exit code, which the client reads from the stream.
    use v1::stdio_response::Response as R;
    let mut first = vec![];
    loop {
        match output.message().await {
            Ok(Some(v1::StdioResponse {
                response: Some(R::Started(s)),
            })) => {
                update(&ctx, &id, |x| {
                    x.runtime_id = Some(s.exec_id.clone());
                    x.running = true;
                });
                break;
            }
            Ok(Some(
                msg @ v1::StdioResponse {
                    response:
                        Some(R::Output(StdioOutput {
                            output: Some(Output::ExitCode(_)),
                        })),
                },
            )) => {
                first.push(msg);
                break;
            }
            Ok(Some(msg)) => first.push(msg),
            Ok(None) => return Err(DockerError::internal("the daemon ended the exec stream")),
            Err(s) => return Err(container_error(&e.container, s)),
        }
    }
    let upgrade = (!detach && wants_upgrade(req.headers())).then(|| hyper::upgrade::on(&mut req));
    if !detach && upgrade.is_none() {
        return Err(DockerError::bad_request(
            "exec start needs a hijacked connection: send Connection: Upgrade and Upgrade: tcp, or Detach",
        ));
    }
    let ctx2 = ctx.clone();
    let exec_id = id.clone();
    tokio::spawn(async move {
        let finish = |end: &StdioEnd| {
            let code = match end {
                StdioEnd::Exit(c) => *c,
                StdioEnd::Lost(_) => 255,
                // The process runs on: its end is recorded when it comes (below).
                StdioEnd::Detached => return,
            };
            update(&ctx2, &exec_id, |x| {
                x.running = false;
                x.exit_code = Some(code);
            });
        };
        match upgrade {
            Some(up) => match up.await {
                Ok(io) => {
                    let io = hyper_util::rt::TokioIo::new(io);
                    let end = pump(io, &mut output, first, tx, mode, &finish).await;
                    // The detach keys: the process runs on without a reader. Its end is
                    // still recorded, so `GET /exec/{id}/json` tells Running false and the
                    // exit code once it exits, as with Docker.
                    if matches!(end, StdioEnd::Detached) {
                        finish(&drain(output, Vec::new()).await);
                    }
                }
                Err(_) => finish(&drain(output, first).await),
            },
            None => finish(&drain(output, first).await),
        }
    });
    if detach {
        return Ok(axum::response::IntoResponse::into_response(StatusCode::OK));
    }
    Ok(upgrade_response(tty))
}

/// Runs a detached exec to its end, its output dropped.
async fn drain(
    mut output: tonic::Streaming<v1::StdioResponse>,
    first: Vec<v1::StdioResponse>,
) -> StdioEnd {
    use v1::stdio_response::Response as R;
    for m in first {
        if let Some(R::Output(StdioOutput {
            output: Some(Output::ExitCode(code)),
        })) = m.response
        {
            return StdioEnd::Exit(code);
        }
    }
    loop {
        match output.message().await {
            Ok(Some(v1::StdioResponse {
                response:
                    Some(R::Output(StdioOutput {
                        output: Some(Output::ExitCode(code)),
                    })),
            })) => {
                return StdioEnd::Exit(code);
            }
            Ok(Some(_)) => {}
            Ok(None) => return StdioEnd::Lost("stream ended".into()),
            Err(s) => return StdioEnd::Lost(s.message().to_owned()),
        }
    }
}

/// `POST /exec/{id}/resize`.
pub async fn resize(State(ctx): State<Ctx>, Path(id): Path<String>, uri: Uri) -> DResult<Response> {
    let q = Params::from_uri(&uri)?;
    let e = entry(&ctx, &id)?;
    let Some(runtime_id) = e.runtime_id.filter(|_| e.running) else {
        return Err(DockerError::conflict(format!("exec {id} is not running")));
    };
    let h = q.int("h")?.unwrap_or(0).clamp(0, u16::MAX.into()) as u32;
    let w = q.int("w")?.unwrap_or(0).clamp(0, u16::MAX.into()) as u32;
    ctx.client()
        .await?
        .containers()
        .resize(v1::ResizeRequest {
            id: e.container.clone(),
            exec_id: runtime_id,
            size: Some(wire::v1::TerminalSize { rows: h, cols: w }),
        })
        .await
        .map_err(|s| container_error(&e.container, s))?;
    Ok(axum::response::IntoResponse::into_response(StatusCode::OK))
}

/// `GET /exec/{id}/json`.
pub async fn inspect(State(ctx): State<Ctx>, Path(id): Path<String>) -> DResult<Response> {
    let e = entry(&ctx, &id)?;
    let args = e.config.cmd.clone().unwrap_or_default();
    let out = m::ExecInspectResponse {
        can_remove: Some(false),
        id: Some(id),
        running: Some(e.running),
        exit_code: e.exit_code.map(i64::from),
        process_config: Some(m::ProcessConfig {
            privileged: Some(false),
            user: e.config.user.clone(),
            tty: e.config.tty,
            entrypoint: args.first().cloned(),
            arguments: Some(args.iter().skip(1).cloned().collect()),
        }),
        open_stdin: e.config.attach_stdin,
        open_stderr: e.config.attach_stderr,
        open_stdout: e.config.attach_stdout,
        container_id: Some(e.container.clone()),
        pid: Some(0),
        ..Default::default()
    };
    Ok(json(StatusCode::OK, &out))
}
