//! `/containers/...`: create (Docker's Config/HostConfig translated to our run spec, with a
//! 400 naming every field we cannot honour), start, stop, restart, kill, wait, attach (a
//! hijacked connection, parked until the container starts when it is not running yet, so
//! no early output is lost), resize, logs, inspect, list with filters, delete, prune,
//! export and the archive endpoints of `docker cp`.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use api::v1;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use bollard_stubs::models as m;
use futures::StreamExt;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use wire::v1::StdioOutput;
use wire::v1::stdio_output::Output;

use super::Ctx;
use super::create::{signal_number, translate};
use super::error::{DResult, DockerError};
use super::filters::Filters;
use super::ids::{ZERO_TIME, time_of_ms};
use super::stream::{
    Params, StdioEnd, StdioMode, json, json_body, no_content, pump, streamed, tar_body,
    upgrade_response, wants_upgrade,
};
use crate::list_filters::{self, docker_state, state_name};

/// An attach whose container has not started: its hijacked connection waits for `start`.
pub struct PendingAttach {
    upgrade: hyper::upgrade::OnUpgrade,
    mode: StdioMode,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub use spec::human_duration;

fn since_ms(ms: i64) -> Duration {
    Duration::from_millis((now_ms() - ms).max(0) as u64)
}

/// Docker's `State.Health` of our health.
fn health_of(h: &v1::ContainerHealth) -> m::Health {
    let status = match h.status.as_str() {
        "starting" => m::HealthStatusEnum::STARTING,
        "healthy" => m::HealthStatusEnum::HEALTHY,
        "unhealthy" => m::HealthStatusEnum::UNHEALTHY,
        _ => m::HealthStatusEnum::NONE,
    };
    m::Health {
        status: Some(status),
        failing_streak: Some(i64::from(h.failing_streak)),
        log: Some(
            h.log
                .iter()
                .map(|p| m::HealthcheckResult {
                    start: Some(time_of_ms(p.start_ms)),
                    end: Some(time_of_ms(p.end_ms)),
                    exit_code: Some(i64::from(p.exit_code)),
                    output: Some(p.output.clone()),
                })
                .collect(),
        ),
    }
}

fn status_text(info: &v1::ContainerInfo) -> String {
    match state_name(info) {
        "running" => {
            let up = format!("Up {}", human_duration(since_ms(info.started_ms)));
            if info.paused {
                return format!("{up} (Paused)");
            }
            match info.health.as_ref().map(|h| h.status.as_str()) {
                Some("starting") => format!("{up} (health: starting)"),
                Some(s) if !s.is_empty() => format!("{up} ({s})"),
                _ => up,
            }
        }
        "exited" => format!(
            "Exited ({}) {} ago",
            info.exit_code.max(0),
            human_duration(since_ms(info.finished_ms))
        ),
        "created" => "Created".into(),
        _ => "Dead".into(),
    }
}

/// A client's container key, with the `/` Docker names carry stripped.
fn key(id: &str) -> &str {
    id.strip_prefix('/').unwrap_or(id)
}

/// Maps a gRPC error about container `id` to Docker's, with Docker's not-found wording.
pub fn container_error(id: &str, s: tonic::Status) -> DockerError {
    if s.code() == tonic::Code::NotFound && s.message().contains("container") {
        DockerError::not_found(format!("No such container: {id}"))
    } else {
        s.into()
    }
}

/// One container's info by ID, ID prefix or name.
pub async fn info_of(ctx: &Ctx, id: &str) -> DResult<v1::ContainerInfo> {
    let id = key(id);
    ctx.client()
        .await?
        .containers()
        .inspect(v1::InspectContainerRequest { id: id.to_owned() })
        .await
        .map_err(|s| container_error(id, s))?
        .into_inner()
        .container
        .ok_or_else(|| DockerError::internal("the daemon answered inspect without a container"))
}

/// `POST /containers/create`.
pub async fn create(State(ctx): State<Ctx>, uri: Uri, body: Bytes) -> DResult<Response> {
    let q = Params::from_uri(&uri)?;
    let body: m::ContainerCreateBody = json_body(&body)?;
    let (config, mut warnings) = translate(&body, q.get("name"), q.get("platform"))?;
    let image = config.image.clone();
    let resp = ctx
        .client()
        .await?
        .containers()
        .create(v1::CreateContainerRequest {
            config: Some(config),
            pull: Some(v1::ImagePull {
                // Docker's clients pull themselves on a 404, showing their own progress.
                policy: v1::PullPolicy::Never as i32,
                ..Default::default()
            }),
        })
        .await
        .map_err(|s| {
            if s.code() == tonic::Code::NotFound && s.message().contains("image") {
                DockerError::not_found(format!("No such image: {image}"))
            } else {
                s.into()
            }
        })?
        .into_inner();
    warnings.extend(resp.warnings);
    Ok(json(
        StatusCode::CREATED,
        &m::ContainerCreateResponse {
            id: resp.id,
            warnings,
        },
    ))
}

// ---- inspect and list ----------------------------------------------------------------------

fn port_key(p: &v1::PortMapping, i: u32) -> String {
    let proto = if p.protocol == v1::Protocol::Udp as i32 {
        "udp"
    } else {
        "tcp"
    };
    format!("{}/{proto}", p.container_port + i)
}

fn port_map(config: &v1::ContainerConfig) -> m::PortMap {
    let mut map: m::PortMap = HashMap::new();
    for p in &config.ports {
        for i in 0..p.count.max(1) {
            let binding = m::PortBinding {
                host_ip: Some(if p.host_ip.is_empty() {
                    "0.0.0.0".to_owned()
                } else {
                    p.host_ip.clone()
                }),
                host_port: Some(if p.host_port == 0 {
                    String::new()
                } else {
                    (p.host_port + i).to_string()
                }),
            };
            map.entry(port_key(p, i))
                .or_insert_with(|| Some(vec![]))
                .get_or_insert_with(Vec::new)
                .push(binding);
        }
    }
    map
}

fn labels_of(config: &v1::ContainerConfig) -> HashMap<String, String> {
    config
        .labels
        .iter()
        .map(|l| (l.key.clone(), l.value.clone()))
        .collect()
}

fn network_mode(config: &v1::ContainerConfig) -> String {
    match config.networks.first() {
        None => "bridge".into(),
        Some(n) => n.name.clone(),
    }
}

fn endpoints(info: &v1::ContainerInfo) -> HashMap<String, m::EndpointSettings> {
    info.networks
        .iter()
        .map(|n| {
            let (ip, prefix) = n
                .ipv4_address
                .split_once('/')
                .map(|(a, p)| (a.to_owned(), p.parse().ok()))
                .unwrap_or((n.ipv4_address.clone(), None));
            let name = if n.network == "default" {
                "bridge".to_owned()
            } else {
                n.network.clone()
            };
            (
                name,
                m::EndpointSettings {
                    ip_address: Some(ip),
                    ip_prefix_len: prefix,
                    gateway: Some(n.ipv4_gateway.clone()),
                    mac_address: Some(n.mac_address.clone()),
                    dns_names: Some(vec![n.hostname.clone()]),
                    network_id: Some(super::ids::network_id(&n.network)),
                    ..Default::default()
                },
            )
        })
        .collect()
}

fn mount_points(config: &v1::ContainerConfig) -> Vec<m::MountPoint> {
    config
        .mounts
        .iter()
        .map(|mt| {
            let (typ, name, source) = match &mt.kind {
                Some(v1::mount::Kind::Bind(b)) => ("bind".to_owned(), None, Some(b.source.clone())),
                Some(v1::mount::Kind::Volume(v)) => {
                    ("volume".to_owned(), Some(v.name.clone()), None)
                }
                _ => ("tmpfs".to_owned(), None, None),
            };
            m::MountPoint {
                typ: Some(typ),
                name,
                source,
                destination: Some(mt.target.clone()),
                driver: None,
                mode: Some(if mt.readonly { "ro" } else { "" }.to_owned()),
                rw: Some(!mt.readonly),
                propagation: None,
            }
        })
        .collect()
}

/// Docker's inspect of a container.
pub fn inspect_of(info: &v1::ContainerInfo) -> m::ContainerInspectResponse {
    let config = info.config.clone().unwrap_or_default();
    let process = config.process.clone().unwrap_or_default();
    let res = info.resources.unwrap_or_default();
    let running = state_name(info) == "running";
    let status = match docker_state(info) {
        "paused" => m::ContainerStateStatusEnum::PAUSED,
        "running" => m::ContainerStateStatusEnum::RUNNING,
        "created" => m::ContainerStateStatusEnum::CREATED,
        "exited" => m::ContainerStateStatusEnum::EXITED,
        _ => m::ContainerStateStatusEnum::DEAD,
    };
    let restart = config.restart_policy.as_ref().map(|r| m::RestartPolicy {
        name: Some(match r.kind() {
            v1::restart_policy::Kind::No => m::RestartPolicyNameEnum::NO,
            v1::restart_policy::Kind::Always => m::RestartPolicyNameEnum::ALWAYS,
            v1::restart_policy::Kind::OnFailure => m::RestartPolicyNameEnum::ON_FAILURE,
            v1::restart_policy::Kind::UnlessStopped => m::RestartPolicyNameEnum::UNLESS_STOPPED,
        }),
        maximum_retry_count: Some(i64::from(r.max_retries)),
    });
    let binds: Vec<String> = config
        .mounts
        .iter()
        .filter_map(|mt| match &mt.kind {
            Some(v1::mount::Kind::Bind(b)) => Some(format!(
                "{}:{}{}",
                b.source,
                mt.target,
                if mt.readonly { ":ro" } else { "" }
            )),
            _ => None,
        })
        .collect();
    let hostname = if config.hostname.is_empty() {
        info.id.chars().take(12).collect()
    } else {
        config.hostname.clone()
    };
    m::ContainerInspectResponse {
        id: Some(info.id.clone()),
        created: Some(time_of_ms(info.created_ms)),
        path: info.args.first().cloned(),
        args: Some(info.args.iter().skip(1).cloned().collect()),
        state: Some(m::ContainerState {
            status: Some(status),
            running: Some(running),
            paused: Some(info.paused),
            restarting: Some(false),
            oom_killed: Some(false),
            dead: Some(false),
            pid: Some(if running { 1 } else { 0 }),
            exit_code: Some(i64::from(info.exit_code.max(0))),
            error: Some(info.error.clone()),
            started_at: Some(time_of_ms(info.started_ms)),
            finished_at: Some(time_of_ms(info.finished_ms)),
            health: info.health.as_ref().map(health_of),
        }),
        image: Some(info.image_digest.clone()),
        name: Some(format!("/{}", info.name)),
        restart_count: Some(0),
        driver: Some("ext4".into()),
        platform: Some("linux".into()),
        host_config: Some(m::HostConfig {
            binds: Some(binds),
            log_config: Some(m::HostConfigLogConfig {
                typ: Some("json-file".into()),
                config: Some(HashMap::new()),
            }),
            network_mode: Some(network_mode(&config)),
            port_bindings: Some(port_map(&config)),
            restart_policy: restart,
            auto_remove: Some(config.auto_remove),
            memory: Some(res.memory_bytes as i64),
            nano_cpus: Some(i64::from(res.cpus_millis) * 1_000_000),
            shm_size: Some(res.shm_size_bytes as i64),
            readonly_rootfs: Some(config.read_only),
            init: Some(config.init),
            cap_add: Some(process.cap_add.clone()),
            cap_drop: Some(process.cap_drop.clone()),
            privileged: Some(false),
            ..Default::default()
        }),
        mounts: Some(mount_points(&config)),
        config: Some(m::ContainerConfig {
            hostname: Some(hostname),
            user: Some(process.user.clone()),
            tty: Some(process.tty),
            open_stdin: Some(process.stdin_open),
            stdin_once: Some(process.stdin_open),
            attach_stdin: Some(false),
            attach_stdout: Some(false),
            attach_stderr: Some(false),
            env: Some(process.env.clone()),
            cmd: Some(process.command.clone()),
            entrypoint: process.entrypoint.clone().map(|e| vec![e]),
            image: Some(config.image.clone()),
            working_dir: Some(process.working_dir.clone()),
            labels: Some(labels_of(&config)),
            exposed_ports: Some(config.ports.iter().map(|p| port_key(p, 0)).collect()),
            ..Default::default()
        }),
        network_settings: Some(m::NetworkSettings {
            ports: Some(if running {
                port_map(&config)
            } else {
                HashMap::new()
            }),
            networks: Some(endpoints(info)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `GET /containers/{id}/json`.
pub async fn inspect(State(ctx): State<Ctx>, Path(id): Path<String>) -> DResult<Response> {
    let info = info_of(&ctx, &id).await?;
    let mut out = inspect_of(&info);
    // Docker lists the execs still running (a finished one stays inspectable by its ID).
    let execs = ctx.running_execs(&info.id);
    out.exec_ids = (!execs.is_empty()).then_some(execs);
    Ok(json(StatusCode::OK, &out))
}

fn summary_of(info: &v1::ContainerInfo) -> m::ContainerSummary {
    let config = info.config.clone().unwrap_or_default();
    let running = state_name(info) == "running";
    let ports = if running {
        config
            .ports
            .iter()
            .flat_map(|p| {
                (0..p.count.max(1)).map(move |i| m::PortSummary {
                    ip: Some(if p.host_ip.is_empty() {
                        "0.0.0.0".to_owned()
                    } else {
                        p.host_ip.clone()
                    }),
                    private_port: (p.container_port + i) as u16,
                    public_port: (p.host_port != 0).then(|| (p.host_port + i) as u16),
                    typ: Some(if p.protocol == v1::Protocol::Udp as i32 {
                        m::PortSummaryTypeEnum::UDP
                    } else {
                        m::PortSummaryTypeEnum::TCP
                    }),
                })
            })
            .collect()
    } else {
        vec![]
    };
    m::ContainerSummary {
        id: Some(info.id.clone()),
        names: Some(vec![format!("/{}", info.name)]),
        image: Some(config.image.clone()),
        image_id: Some(info.image_digest.clone()),
        command: Some(info.args.join(" ")),
        created: Some(info.created_ms / 1000),
        ports: Some(ports),
        labels: Some(labels_of(&config)),
        state: Some(match docker_state(info) {
            "paused" => m::ContainerSummaryStateEnum::PAUSED,
            "running" => m::ContainerSummaryStateEnum::RUNNING,
            "created" => m::ContainerSummaryStateEnum::CREATED,
            "exited" => m::ContainerSummaryStateEnum::EXITED,
            _ => m::ContainerSummaryStateEnum::DEAD,
        }),
        status: Some(status_text(info)),
        host_config: Some(m::ContainerSummaryHostConfig {
            network_mode: Some(network_mode(&config)),
            annotations: None,
        }),
        network_settings: Some(m::ContainerSummaryNetworkSettings {
            networks: Some(endpoints(info)),
        }),
        mounts: Some(mount_points(&config)),
        ..Default::default()
    }
}

/// `GET /containers/json`.
pub async fn list(State(ctx): State<Ctx>, uri: Uri) -> DResult<Response> {
    let q = Params::from_uri(&uri)?;
    // The daemon filters (crate::list_filters), as for `container ls`.
    let filters = list_filters::pairs(&Filters::parse(q.get("filters"))?.0);
    let mut infos = ctx
        .client()
        .await?
        .containers()
        .list(v1::ListContainersRequest {
            all: q.flag("all"),
            filters,
        })
        .await?
        .into_inner()
        .containers;
    if let Some(limit) = q.int("limit")?.filter(|l| *l > 0) {
        infos.truncate(limit as usize);
    }
    let out: Vec<m::ContainerSummary> = infos.iter().map(summary_of).collect();
    Ok(json(StatusCode::OK, &out))
}

// ---- lifecycle -----------------------------------------------------------------------------

/// What a failed start says, so the docker CLI exits as with Docker: 127 when the message
/// says the program was not found, 126 when it could not be executed.
fn start_failure(code: Option<i32>, message: &str) -> DockerError {
    let message = message.trim().trim_start_matches("container: ").to_owned();
    let message = match code {
        Some(127)
            if !message.contains("executable file not found")
                && !message.contains("no such file or directory") =>
        {
            format!("{message}: executable file not found in $PATH")
        }
        Some(126) if !message.contains("permission denied") => {
            format!("{message}: permission denied")
        }
        _ => message,
    };
    DockerError::new(StatusCode::BAD_REQUEST, message)
}

/// `POST /containers/{id}/start`: 304 when running. A parked attach starts the container
/// through its stream, so it sees every byte.
pub async fn start(State(ctx): State<Ctx>, Path(id): Path<String>) -> DResult<Response> {
    let info = info_of(&ctx, &id).await?;
    if state_name(&info) == "running" {
        return Err(DockerError::new(
            StatusCode::NOT_MODIFIED,
            "container already started",
        ));
    }
    let parked = ctx
        .pending_attaches
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&info.id)
        .unwrap_or_default();
    let mut parked = parked.into_iter();
    let client = ctx.client().await?;
    if let Some(first) = parked.next() {
        let (tx, rx) = mpsc::channel(16);
        let _ = tx
            .send(v1::StdioRequest {
                request: Some(v1::stdio_request::Request::Attach(v1::AttachOpen {
                    id: info.id.clone(),
                    stdin: first.mode.stdin,
                    start: true,
                    size: None,
                })),
            })
            .await;
        let mut output = client
            .containers()
            .attach(ReceiverStream::new(rx))
            .await
            .map_err(|s| container_error(&id, s))?
            .into_inner();
        use v1::stdio_response::Response as R;
        let mut said = String::new();
        loop {
            match output.message().await {
                Ok(Some(v1::StdioResponse {
                    response: Some(R::Started(_)),
                })) => break,
                Ok(Some(v1::StdioResponse {
                    response:
                        Some(R::Output(StdioOutput {
                            output: Some(Output::Stderr(d)),
                        })),
                })) => {
                    said.push_str(&String::from_utf8_lossy(&d));
                }
                Ok(Some(v1::StdioResponse {
                    response:
                        Some(R::Output(StdioOutput {
                            output: Some(Output::ExitCode(code)),
                        })),
                })) => {
                    return Err(start_failure(Some(code), &said));
                }
                Ok(Some(_)) => {}
                Ok(None) => return Err(start_failure(None, "the daemon ended the attach stream")),
                Err(s) => return Err(start_failure(None, s.message())),
            }
        }
        let ctx2 = ctx.clone();
        let cid = info.id.clone();
        tokio::spawn(async move {
            if let Ok(io) = first.upgrade.await {
                let io = hyper_util::rt::TokioIo::new(io);
                pump(io, &mut output, vec![], tx, first.mode, |end| {
                    if let StdioEnd::Exit(code) = end {
                        ctx2.record_exit(&cid, *code);
                    }
                })
                .await;
            }
        });
        for other in parked {
            tokio::spawn(attach_running(ctx.clone(), info.id.clone(), other));
        }
        return Ok(no_content());
    }
    if let Err(s) = client
        .containers()
        .start(v1::StartContainerRequest {
            id: info.id.clone(),
        })
        .await
    {
        let code = s
            .metadata()
            .get(crate::containers::EXIT_CODE_METADATA)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        if s.code() == tonic::Code::NotFound && code.is_none() {
            return Err(container_error(&id, s));
        }
        return Err(start_failure(code, s.message()));
    }
    Ok(no_content())
}

/// Attaches a hijacked connection to a running container.
async fn attach_running(ctx: Ctx, id: String, p: PendingAttach) {
    let Ok(io) = p.upgrade.await else { return };
    let Ok(client) = ctx.client().await else {
        return;
    };
    let (tx, rx) = mpsc::channel(16);
    let _ = tx
        .send(v1::StdioRequest {
            request: Some(v1::stdio_request::Request::Attach(v1::AttachOpen {
                id: id.clone(),
                stdin: p.mode.stdin,
                start: false,
                size: None,
            })),
        })
        .await;
    let Ok(output) = client.containers().attach(ReceiverStream::new(rx)).await else {
        return;
    };
    let io = hyper_util::rt::TokioIo::new(io);
    pump(io, &mut output.into_inner(), vec![], tx, p.mode, |end| {
        if let StdioEnd::Exit(code) = end {
            ctx.record_exit(&id, *code);
        }
    })
    .await;
}

/// `POST /containers/{id}/attach`: answers 101 at once; the stream is joined now when the
/// container runs, else when it starts.
pub async fn attach(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    mut req: Request,
) -> DResult<Response> {
    let q = Params::from_uri(req.uri())?;
    let info = info_of(&ctx, &id).await?;
    let process = info
        .config
        .as_ref()
        .and_then(|c| c.process.clone())
        .unwrap_or_default();
    if !wants_upgrade(req.headers()) {
        return Err(DockerError::bad_request(
            "attach needs a hijacked connection: send Connection: Upgrade and Upgrade: tcp",
        ));
    }
    if q.flag("logs") {
        return Err(DockerError::unsupported_field(
            "logs",
            "attach does not replay output; use /containers/{id}/logs",
        ));
    }
    let mode = StdioMode {
        tty: process.tty,
        stdout: q.flag("stdout"),
        stderr: q.flag("stderr"),
        stdin: q.flag("stdin") && process.stdin_open,
        settle: super::stream::settle_time(req.headers()),
        detach_keys: super::stream::detach_keys(process.tty, q.get("detachKeys"))?,
    };
    let upgrade = hyper::upgrade::on(&mut req);
    let p = PendingAttach { upgrade, mode };
    if state_name(&info) == "running" {
        tokio::spawn(attach_running(ctx.clone(), info.id.clone(), p));
    } else {
        ctx.pending_attaches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(info.id.clone())
            .or_default()
            .push(p);
    }
    Ok(upgrade_response(process.tty))
}

/// `POST /containers/{id}/stop`: 304 when not running.
pub async fn stop(State(ctx): State<Ctx>, Path(id): Path<String>, uri: Uri) -> DResult<Response> {
    let q = Params::from_uri(&uri)?;
    let info = info_of(&ctx, &id).await?;
    if state_name(&info) != "running" {
        return Err(DockerError::new(
            StatusCode::NOT_MODIFIED,
            "container already stopped",
        ));
    }
    stop_info(&ctx, &info, &q).await?;
    Ok(no_content())
}

async fn stop_info(ctx: &Ctx, info: &v1::ContainerInfo, q: &Params) -> DResult<()> {
    let signal = match q.get("signal") {
        None | Some("") => 0,
        Some(s) => signal_number(s, "signal")?,
    };
    let timeout = q.int("t")?.map(|t| if t < 0 { u32::MAX } else { t as u32 });
    ctx.client()
        .await?
        .containers()
        .stop(v1::StopContainerRequest {
            id: info.id.clone(),
            signal,
            timeout_seconds: timeout,
        })
        .await
        .map_err(|s| container_error(&info.id, s))?;
    Ok(())
}

/// `POST /containers/{id}/restart`.
pub async fn restart(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    uri: Uri,
) -> DResult<Response> {
    let q = Params::from_uri(&uri)?;
    let info = info_of(&ctx, &id).await?;
    if state_name(&info) == "running" {
        stop_info(&ctx, &info, &q).await?;
    }
    ctx.client()
        .await?
        .containers()
        .start(v1::StartContainerRequest {
            id: info.id.clone(),
        })
        .await
        .map_err(|s| container_error(&id, s))?;
    Ok(no_content())
}

/// `POST /containers/{id}/kill`.
pub async fn kill(State(ctx): State<Ctx>, Path(id): Path<String>, uri: Uri) -> DResult<Response> {
    let q = Params::from_uri(&uri)?;
    let signal = match q.get("signal") {
        None | Some("") => 9,
        Some(s) => signal_number(s, "signal")?,
    };
    let info = info_of(&ctx, &id).await?;
    if state_name(&info) != "running" {
        return Err(DockerError::conflict(format!(
            "Container {} is not running",
            info.id
        )));
    }
    ctx.client()
        .await?
        .containers()
        .kill(v1::KillContainerRequest {
            id: info.id.clone(),
            signal,
        })
        .await
        .map_err(|s| container_error(&id, s))?;
    Ok(no_content())
}

/// `POST /containers/{id}/wait`: the headers go out at once (the docker CLI sends `start`
/// only once it has them), the body `{"StatusCode":N}` when the condition is met.
pub async fn wait(State(ctx): State<Ctx>, Path(id): Path<String>, uri: Uri) -> DResult<Response> {
    let q = Params::from_uri(&uri)?;
    let condition = match q.get("condition").unwrap_or("not-running") {
        "" | "not-running" => v1::WaitCondition::NotRunning,
        "next-exit" => v1::WaitCondition::NextExit,
        "removed" => v1::WaitCondition::Removed,
        other => {
            return Err(DockerError::bad_request(format!(
                "invalid condition {other:?}: not-running, next-exit or removed"
            )));
        }
    };
    let info = info_of(&ctx, &id).await?;
    let (tx, resp) = streamed("application/json");
    tokio::spawn(async move {
        // A client that goes away (`docker run -d` after its start) ends the wait.
        let result = tokio::select! {
            r = wait_for(&ctx, &info, condition) => r,
            () = tx.closed() => return,
        };
        let body = match result {
            Ok(code) => json!({ "StatusCode": code, "Error": null }),
            Err(e) => json!({ "StatusCode": -1, "Error": { "Message": e.message } }),
        };
        tx.json(&body).await;
    });
    Ok(resp)
}

/// Waits for `condition`. The daemon's wait is registered only once its call arrives, so a
/// container that exits before then is caught by watching its state from the request on.
async fn wait_for(
    ctx: &Ctx,
    info: &v1::ContainerInfo,
    condition: v1::WaitCondition,
) -> DResult<i64> {
    let client = ctx.client().await?.clone();
    let id = info.id.clone();
    let grpc = async {
        client
            .containers()
            .wait(v1::WaitContainerRequest {
                id: id.clone(),
                condition: condition as i32,
            })
            .await
            .map(|r| i64::from(r.into_inner().exit_code))
    };
    if condition == v1::WaitCondition::NotRunning {
        return grpc.await.map_err(|s| container_error(&id, s));
    }
    let finished_before = info.finished_ms;
    let watch = async {
        let mut last_code = None;
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            match info_of(ctx, &id).await {
                Ok(i) => {
                    let exited =
                        i.state() == v1::ContainerState::Stopped && i.finished_ms > finished_before;
                    if exited {
                        last_code = Some(i64::from(i.exit_code));
                        if condition == v1::WaitCondition::NextExit {
                            return Ok(i64::from(i.exit_code));
                        }
                    }
                }
                Err(e) if e.status == StatusCode::NOT_FOUND => {
                    let code = last_code.or_else(|| ctx.last_exit(&id).map(i64::from));
                    return Ok(code.unwrap_or(0));
                }
                Err(e) => return Err(e),
            }
        }
    };
    tokio::select! {
        r = grpc => match r {
            Ok(code) => Ok(code),
            // Removed before the daemon's wait arrived.
            Err(s) if s.code() == tonic::Code::NotFound => {
                Ok(ctx.last_exit(&id).map(i64::from).unwrap_or(0))
            }
            Err(s) => Err(container_error(&id, s)),
        },
        r = watch => r,
    }
}

/// `POST /containers/{id}/resize`.
pub async fn resize(State(ctx): State<Ctx>, Path(id): Path<String>, uri: Uri) -> DResult<Response> {
    let q = Params::from_uri(&uri)?;
    let h = q.int("h")?.unwrap_or(0).clamp(0, u16::MAX.into()) as u32;
    let w = q.int("w")?.unwrap_or(0).clamp(0, u16::MAX.into()) as u32;
    ctx.client()
        .await?
        .containers()
        .resize(v1::ResizeRequest {
            id: key(&id).to_owned(),
            exec_id: String::new(),
            size: Some(wire::v1::TerminalSize { rows: h, cols: w }),
        })
        .await
        .map_err(|s| container_error(&id, s))?;
    Ok(axum::response::IntoResponse::into_response(StatusCode::OK))
}

/// `DELETE /containers/{id}`.
pub async fn delete(State(ctx): State<Ctx>, Path(id): Path<String>, uri: Uri) -> DResult<Response> {
    let q = Params::from_uri(&uri)?;
    let id = key(&id).to_owned();
    let resp = ctx
        .client()
        .await?
        .containers()
        .delete(v1::DeleteContainerRequest {
            id: id.clone(),
            force: q.flag("force"),
            remove_volumes: q.flag("v"),
        })
        .await
        .map_err(|s| container_error(&id, s))?
        .into_inner();
    ctx.pending_attaches
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&resp.id);
    Ok(no_content())
}

/// `POST /containers/prune`.
pub async fn prune(State(ctx): State<Ctx>, uri: Uri) -> DResult<Response> {
    let q = Params::from_uri(&uri)?;
    let f = Filters::parse(q.get("filters"))?;
    f.only(&[])?;
    let r = ctx
        .client()
        .await?
        .containers()
        .prune(v1::PruneContainersRequest {})
        .await?
        .into_inner();
    Ok(json(
        StatusCode::OK,
        &json!({ "ContainersDeleted": r.deleted, "SpaceReclaimed": r.reclaimed_bytes }),
    ))
}

/// `/containers/{id}/{op}` for what this daemon does not do.
pub async fn unsupported(Path((_, op)): Path<(String, String)>) -> DockerError {
    DockerError::not_implemented(format!(
        "/containers/{{id}}/{op} is not supported by this daemon"
    ))
}

// ---- logs, export, archive -----------------------------------------------------------------

fn parse_time(text: Option<&str>, field: &str) -> DResult<Option<i64>> {
    match text {
        None | Some("") | Some("0") => Ok(None),
        Some(t) => t
            .parse::<f64>()
            .map(|s| Some((s * 1000.0) as i64))
            .map_err(|_| {
                DockerError::bad_request(format!("invalid {field}: {t:?} is not a unix time"))
            }),
    }
}

/// `GET /containers/{id}/logs`.
pub async fn logs(State(ctx): State<Ctx>, Path(id): Path<String>, uri: Uri) -> DResult<Response> {
    let q = Params::from_uri(&uri)?;
    let info = info_of(&ctx, &id).await?;
    let tty = info
        .config
        .as_ref()
        .and_then(|c| c.process.as_ref())
        .is_some_and(|p| p.tty);
    let (out, err) = (q.flag("stdout"), q.flag("stderr"));
    if !out && !err {
        return Err(DockerError::bad_request(
            "you must choose at least one stream",
        ));
    }
    let tail = match q.get("tail") {
        None | Some("") | Some("all") => None,
        Some(t) => Some(t.parse::<i64>().map_err(|_| {
            DockerError::bad_request(format!("invalid tail {t:?}: a number or all"))
        })?),
    }
    .filter(|t| *t >= 0)
    .map(|t| t as u32);
    let since = parse_time(q.get("since"), "since")?;
    let until = parse_time(q.get("until"), "until")?;
    let timestamps = q.flag("timestamps");
    let follow = q.flag("follow");
    let mut stream = ctx
        .client()
        .await?
        .containers()
        .logs(v1::LogsRequest {
            id: info.id.clone(),
            follow,
            tail,
            boot: false,
        })
        .await
        .map_err(|s| container_error(&id, s))?
        .into_inner();
    let (tx, resp) = streamed(super::stream::stdio_media_type(tty));
    tokio::spawn(async move {
        loop {
            let chunk = tokio::select! {
                m = stream.message() => match m { Ok(Some(c)) => c, _ => break },
                () = tx.closed() => break,
            };
            if since.is_some_and(|s| chunk.timestamp_ms < s) {
                continue;
            }
            if until.is_some_and(|u| chunk.timestamp_ms > u) {
                break;
            }
            let stream_no = if chunk.stream == v1::OutputStream::Stderr as i32 {
                2
            } else {
                1
            };
            if (stream_no == 1 && !out) || (stream_no == 2 && !err) {
                continue;
            }
            let data = if timestamps {
                let ts = time_of_ms(chunk.timestamp_ms);
                let mut d = Vec::with_capacity(chunk.data.len() + 32);
                for line in chunk.data.split_inclusive(|b| *b == b'\n') {
                    d.extend_from_slice(ts.as_bytes());
                    d.push(b' ');
                    d.extend_from_slice(line);
                }
                d
            } else {
                chunk.data
            };
            let bytes = if tty {
                Bytes::from(data)
            } else {
                super::stream::frame(stream_no, &data)
            };
            if !tx.bytes(bytes).await {
                break;
            }
        }
    });
    Ok(resp)
}

/// `GET /containers/{id}/export`.
pub async fn export(State(ctx): State<Ctx>, Path(id): Path<String>) -> DResult<Response> {
    let stream = ctx
        .client()
        .await?
        .containers()
        .export(v1::ExportContainerRequest {
            id: key(&id).to_owned(),
        })
        .await
        .map_err(|s| container_error(&id, s))?
        .into_inner();
    Ok(tar_body(stream))
}

/// Go's `os.FileMode` bits for a Unix mode: `docker cp` decides directory or file by them.
pub fn go_file_mode(unix: u32) -> u32 {
    let perm = unix & 0o777;
    let kind = match unix & 0o170000 {
        0o040000 => 1 << 31,
        0o120000 => 1 << 27,
        0o010000 => 1 << 25,
        0o140000 => 1 << 24,
        0o060000 => 1 << 26,
        0o020000 => (1 << 26) | (1 << 21),
        _ => 0,
    };
    let mut extra = 0;
    if unix & 0o4000 != 0 {
        extra |= 1 << 23;
    }
    if unix & 0o2000 != 0 {
        extra |= 1 << 22;
    }
    if unix & 0o1000 != 0 {
        extra |= 1 << 20;
    }
    perm | kind | extra
}

fn stat_header(s: &v1::PathStat) -> String {
    use base64::Engine;
    let j = json!({
        "name": s.name,
        "size": s.size,
        "mode": go_file_mode(s.mode),
        "mtime": time_of_ms(s.mtime_ms),
        "linkTarget": s.link_target,
    });
    base64::engine::general_purpose::URL_SAFE.encode(j.to_string())
}

const STAT_HEADER: &str = "X-Docker-Container-Path-Stat";

fn archive_path(q: &Params) -> DResult<String> {
    q.get("path")
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| DockerError::bad_request("path is required"))
}

fn path_error(path: &str, s: tonic::Status) -> DockerError {
    if s.code() == tonic::Code::NotFound && !s.message().contains("container") {
        DockerError::not_found(format!("Could not find the file {path} in container"))
    } else {
        s.into()
    }
}

/// `HEAD /containers/{id}/archive`: the path's stat in a header.
pub async fn archive_head(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    uri: Uri,
) -> DResult<Response> {
    let q = Params::from_uri(&uri)?;
    let path = archive_path(&q)?;
    let info = info_of(&ctx, &id).await?;
    let stat = ctx
        .client()
        .await?
        .containers()
        .stat_path(v1::StatPathRequest {
            id: info.id,
            path: path.clone(),
        })
        .await
        .map_err(|s| path_error(&path, s))?
        .into_inner()
        .stat
        .unwrap_or_default();
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(STAT_HEADER, stat_header(&stat))
        .body(Body::empty())
        .unwrap_or_default())
}

/// `GET /containers/{id}/archive`: a tar of the path, its stat in a header.
pub async fn archive_get(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    uri: Uri,
) -> DResult<Response> {
    let q = Params::from_uri(&uri)?;
    let path = archive_path(&q)?;
    let info = info_of(&ctx, &id).await?;
    let mut stream = ctx
        .client()
        .await?
        .containers()
        .copy_out(v1::CopyOutRequest {
            id: info.id,
            path: path.clone(),
        })
        .await
        .map_err(|s| path_error(&path, s))?
        .into_inner();
    use v1::copy_out_response::Part;
    let stat = match stream.message().await.map_err(|s| path_error(&path, s))? {
        Some(v1::CopyOutResponse {
            part: Some(Part::Stat(s)),
        }) => s,
        _ => {
            return Err(DockerError::internal(
                "the daemon sent no stat before the archive",
            ));
        }
    };
    let (tx, mut resp) = streamed("application/x-tar");
    if let Ok(v) = stat_header(&stat).parse() {
        resp.headers_mut().insert(STAT_HEADER, v);
    }
    tokio::spawn(async move {
        while let Ok(Some(m)) = stream.message().await {
            if let Some(Part::Data(d)) = m.part
                && !tx.bytes(Bytes::from(d)).await
            {
                break;
            }
        }
    });
    Ok(resp)
}

/// `PUT /containers/{id}/archive`: unpacks the tar body into the directory `path`.
pub async fn archive_put(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    req: Request,
) -> DResult<Response> {
    let q = Params::from_uri(req.uri())?;
    let path = archive_path(&q)?;
    let info = info_of(&ctx, &id).await?;
    let (tx, rx) = mpsc::channel(8);
    let _ = tx
        .send(v1::CopyInRequest {
            part: Some(v1::copy_in_request::Part::Header(v1::CopyInHeader {
                id: info.id,
                path: path.clone(),
            })),
        })
        .await;
    let mut body = req.into_body().into_data_stream();
    tokio::spawn(async move {
        while let Some(Ok(chunk)) = body.next().await {
            let msg = v1::CopyInRequest {
                part: Some(v1::copy_in_request::Part::Data(chunk.to_vec())),
            };
            if tx.send(msg).await.is_err() {
                break;
            }
        }
    });
    ctx.client()
        .await?
        .containers()
        .copy_in(ReceiverStream::new(rx))
        .await
        .map_err(|s| path_error(&path, s))?;
    Ok(axum::response::IntoResponse::into_response(StatusCode::OK))
}

impl super::Docker {
    /// Remembers the exit code an attach saw, for a `wait` whose container was removed
    /// before the daemon's wait arrived.
    pub fn record_exit(&self, id: &str, code: i32) {
        let mut e = self.exits.lock().unwrap_or_else(|p| p.into_inner());
        if e.len() > 1024 {
            e.clear();
        }
        e.insert(id.to_owned(), code);
    }

    /// The exit code an attach saw last.
    pub fn last_exit(&self, id: &str) -> Option<i32> {
        self.exits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .copied()
    }
}

// ---- stats ---------------------------------------------------------------------------------

/// One sample as Docker's stats JSON. A VM's vCPUs are all the container's, so the "system"
/// CPU time is wall time times the vCPUs: the CLI's CPU % is then the container's share.
fn stats_json(
    info: &v1::ContainerInfo,
    cur: &v1::ContainerStats,
    pre: Option<&v1::ContainerStats>,
) -> serde_json::Value {
    let usage = |s: &v1::ContainerStats| s.usage.clone().unwrap_or_default();
    let now = usage(cur);
    let cpus = if now.online_cpus > 0 {
        now.online_cpus
    } else {
        info.resources
            .map(|r| r.cpus_millis.div_ceil(1000).max(1))
            .unwrap_or(1)
    };
    let cpu = |s: Option<&v1::ContainerStats>| match s {
        Some(s) => json!({
            "cpu_usage": {
                "total_usage": usage(s).cpu_usage_usec * 1000,
                "usage_in_kernelmode": 0,
                "usage_in_usermode": 0,
            },
            "system_cpu_usage": (s.timestamp_ms.max(0) as u64) * 1_000_000 * u64::from(cpus),
            "online_cpus": cpus,
            "throttling_data": { "periods": 0, "throttled_periods": 0, "throttled_time": 0 },
        }),
        None => json!({
            "cpu_usage": { "total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0 },
            "throttling_data": { "periods": 0, "throttled_periods": 0, "throttled_time": 0 },
        }),
    };
    // Without a limit the guest's memory is the ceiling.
    let limit = if now.memory_limit_bytes > 0 {
        now.memory_limit_bytes
    } else {
        now.guest_memory_bytes
    };
    let networks: serde_json::Map<String, serde_json::Value> = now
        .networks
        .iter()
        .filter(|n| n.link != "lo")
        .map(|n| {
            (
                n.link.clone(),
                json!({
                    "rx_bytes": n.rx_bytes, "rx_packets": n.rx_packets, "rx_errors": 0, "rx_dropped": 0,
                    "tx_bytes": n.tx_bytes, "tx_packets": n.tx_packets, "tx_errors": 0, "tx_dropped": 0,
                }),
            )
        })
        .collect();
    json!({
        "read": time_of_ms(cur.timestamp_ms),
        "preread": pre.map(|p| time_of_ms(p.timestamp_ms)).unwrap_or_else(|| ZERO_TIME.to_owned()),
        "pids_stats": { "current": now.pids },
        "num_procs": 0,
        "cpu_stats": cpu(Some(cur)),
        "precpu_stats": cpu(pre),
        "memory_stats": {
            "usage": now.memory_usage_bytes,
            "limit": limit,
            "stats": {},
        },
        "networks": networks,
        "blkio_stats": {
            "io_service_bytes_recursive": [
                { "major": 0, "minor": 0, "op": "read", "value": now.block_read_bytes },
                { "major": 0, "minor": 0, "op": "write", "value": now.block_write_bytes },
            ],
        },
        "storage_stats": {},
        "name": format!("/{}", info.name),
        "id": info.id,
    })
}

/// `GET /containers/{id}/stats`: a sample a second (`stream`, the default), or one sample
/// with the previous one a second before it (`stream=0`); `one-shot` skips that second.
pub async fn stats(State(ctx): State<Ctx>, Path(id): Path<String>, uri: Uri) -> DResult<Response> {
    let q = Params::from_uri(&uri)?;
    let stream = q.flag_or("stream", true);
    let one_shot = q.flag("one-shot") && !stream;
    let info = info_of(&ctx, &id).await?;
    let (tx, resp) = streamed("application/json");
    if state_name(&info) != "running" {
        // Docker answers a stopped container with one empty sample.
        let empty = v1::ContainerStats::default();
        tx.json(&stats_json(&info, &empty, None)).await;
        return Ok(resp);
    }
    let mut samples = ctx
        .client()
        .await?
        .containers()
        .stats(v1::StatsRequest {
            ids: vec![info.id.clone()],
            stream: !one_shot,
            interval_ms: 1000,
        })
        .await
        .map_err(|s| container_error(&id, s))?
        .into_inner();
    tokio::spawn(async move {
        let mut pre: Option<v1::ContainerStats> = None;
        loop {
            let next = tokio::select! {
                m = samples.message() => m,
                () = tx.closed() => break,
            };
            let Ok(Some(r)) = next else { break };
            let Some(cur) = r.stats.into_iter().find(|s| s.id == info.id) else {
                continue;
            };
            if !stream && !one_shot && pre.is_none() {
                pre = Some(cur);
                continue;
            }
            if !tx.json(&stats_json(&info, &cur, pre.as_ref())).await || !stream {
                break;
            }
            pre = Some(cur);
        }
    });
    Ok(resp)
}

// ---- top -----------------------------------------------------------------------------------

/// `ps` output as Docker's top: the titles, then each row with the last column whole.
pub fn parse_ps(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let titles: Vec<String> = lines
        .next()
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    let n = titles.len().max(1);
    let rows = lines
        .map(|l| {
            let mut row: Vec<String> = Vec::with_capacity(n);
            let mut rest = l.trim_start();
            while row.len() + 1 < n {
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                row.push(rest[..end].to_owned());
                rest = rest[end..].trim_start();
            }
            row.push(rest.trim_end().to_owned());
            row
        })
        .collect();
    (titles, rows)
}

/// `GET /containers/{id}/top`: the container's processes, listed by its own `ps` (run as an
/// exec: the processes live in the VM, out of the host's sight), so the image needs a `ps`.
pub async fn top(State(ctx): State<Ctx>, Path(id): Path<String>, uri: Uri) -> DResult<Response> {
    let q = Params::from_uri(&uri)?;
    let info = info_of(&ctx, &id).await?;
    if state_name(&info) != "running" {
        return Err(DockerError::conflict(format!(
            "container {} is not running",
            info.id
        )));
    }
    let mut args = vec!["ps".to_owned()];
    match q.get("ps_args").filter(|a| !a.trim().is_empty()) {
        Some(a) => args.extend(a.split_whitespace().map(str::to_owned)),
        None => args.extend(["-o", "pid,ppid,user,args"].map(str::to_owned)),
    }
    let (tx, rx) = mpsc::channel(4);
    let _ = tx
        .send(v1::StdioRequest {
            request: Some(v1::stdio_request::Request::Exec(v1::ExecOpen {
                id: info.id.clone(),
                args: args.clone(),
                ..Default::default()
            })),
        })
        .await;
    let mut output = ctx
        .client()
        .await?
        .containers()
        .exec(ReceiverStream::new(rx))
        .await
        .map_err(|s| container_error(&id, s))?
        .into_inner();
    use v1::stdio_response::Response as R;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = loop {
        match output.message().await {
            Ok(Some(v1::StdioResponse {
                response: Some(R::Output(StdioOutput { output: Some(o) })),
            })) => match o {
                Output::Stdout(d) => out.extend(d),
                Output::Stderr(d) => err.extend(d),
                Output::ExitCode(code) => break code,
            },
            Ok(Some(_)) => {}
            Ok(None) => break -1,
            Err(s) => return Err(container_error(&id, s)),
        }
    };
    drop(tx);
    if code != 0 {
        return Err(DockerError::internal(format!(
            "running ps in container {}: exit code {code}: {}",
            info.name,
            String::from_utf8_lossy(&err).trim()
        )));
    }
    let (titles, mut processes) = parse_ps(&String::from_utf8_lossy(&out));
    // Our own ps is not one of the container's processes.
    let ours = args.join(" ");
    processes.retain(|row| row.last() != Some(&ours));
    Ok(json(
        StatusCode::OK,
        &json!({ "Titles": titles, "Processes": processes }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn ps_output_keeps_the_command_whole() {
        let (t, rows) =
            parse_ps("PID   USER     TIME  COMMAND\n    1 root      0:00 httpd -f -p 80\n");
        assert_eq!(t, ["PID", "USER", "TIME", "COMMAND"]);
        assert_eq!(rows, [["1", "root", "0:00", "httpd -f -p 80"]]);
    }

    #[test]
    fn file_modes_become_gos() {
        assert_eq!(go_file_mode(0o040755), (1 << 31) | 0o755);
        assert_eq!(go_file_mode(0o100644), 0o644);
        assert_eq!(go_file_mode(0o120777), (1 << 27) | 0o777);
    }

    #[test]
    fn durations_read_like_docker_ps() {
        assert_eq!(human_duration(Duration::from_secs(0)), "Less than a second");
        assert_eq!(human_duration(Duration::from_secs(5)), "5 seconds");
        assert_eq!(human_duration(Duration::from_secs(90)), "About a minute");
        assert_eq!(human_duration(Duration::from_secs(600)), "10 minutes");
        assert_eq!(human_duration(Duration::from_secs(7200)), "2 hours");
    }

    #[test]
    fn times_are_rfc3339_and_zero_is_dockers_zero() {
        assert_eq!(time_of_ms(0), ZERO_TIME);
        assert_eq!(time_of_ms(1000), "1970-01-01T00:00:01.000000000Z");
    }
}
