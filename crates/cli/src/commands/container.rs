//! Container commands: run, create, start, stop, kill, delete, list, inspect, logs, exec,
//! stats, export, copy, prune (the other Docker verbs are in [`super::verbs`]).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use api::v1::{self, stdio_request::Request};
use tokio::io::AsyncWriteExt;

use crate::Context;
use crate::args::*;
use crate::commands::each::{inspect_each, now_nanos, time_flag};
use crate::commands::stream::write_stream;
use crate::error::{CliError, CliResult};
use crate::listing::{self, ListFormat};
use crate::output;
use crate::stdio::{self, Ended, Rpc, StdioOptions};

/// Reads the files and environment the flags name, and turns `create`/`run` flags into the
/// configuration the daemon gets. Every flag value is checked here, before the daemon is
/// contacted.
pub fn build_config(
    flags: &ContainerFlags,
    image: &str,
    args: &[String],
    env_lookup: &dyn Fn(&str) -> Option<String>,
    read_file: &dyn Fn(&Path) -> std::io::Result<String>,
    cwd: &Path,
) -> Result<v1::ContainerConfig, CliError> {
    let (p, r, m) = (&flags.process, &flags.resources, &flags.management);
    if let Some(name) = &m.name {
        spec::validate_container_name(name).map_err(CliError::usage)?;
    }

    let mut env = Vec::new();
    for file in &p.env_file {
        let text = read_file(file)
            .map_err(|e| CliError::io(format!("reading env file {}", file.display()), e))?;
        let vars = spec::parse_env_file(&text, env_lookup)
            .map_err(|e| CliError::Usage(format!("{}: {e}", file.display())))?;
        env.extend(vars);
    }
    for text in &p.env {
        if let Some(var) = spec::parse_env(text, env_lookup).map_err(CliError::usage)? {
            env.push(var);
        }
    }
    let env = spec::env::merge(env);

    let user = spec::User::from_flags(p.user.as_deref(), p.uid, p.gid).map_err(CliError::usage)?;
    let ulimits = p
        .ulimit
        .iter()
        .map(|u| u.parse::<spec::Ulimit>().map(|u| v1::Ulimit::from(&u)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(CliError::usage)?;
    let caps = |list: &[String]| {
        list.iter()
            .map(|c| spec::parse_capability(c))
            .collect::<Result<Vec<_>, _>>()
            .map_err(CliError::usage)
    };

    let cpus_millis = r
        .cpus
        .as_deref()
        .map(|c| c.parse::<spec::Cpus>().map(spec::Cpus::millis))
        .transpose()
        .map_err(CliError::usage)?
        .unwrap_or(0);
    let size = |text: &Option<String>, what: &str| -> Result<u64, CliError> {
        text.as_deref()
            .map(|t| t.parse::<spec::ByteSize>().map(spec::ByteSize::bytes))
            .transpose()
            .map_err(|e| CliError::Usage(format!("{what}: {e}")))
            .map(|v| v.unwrap_or(0))
    };
    let memory_bytes = size(&r.memory, "--memory")?;
    if r.memory.is_some() && memory_bytes < 200 << 20 {
        return Err(CliError::Usage(format!(
            "--memory: {} is below the minimum of 200 MiB",
            r.memory.as_deref().unwrap_or_default()
        )));
    }
    let shm_size_bytes = size(&m.shm_size, "--shm-size")?;

    let mut mounts = Vec::new();
    for text in &m.volume {
        mounts.push(spec::parse_volume(text).map_err(CliError::usage)?);
    }
    for text in &m.mount {
        mounts.push(spec::parse_mount(text).map_err(CliError::usage)?);
    }
    for text in &m.tmpfs {
        mounts.push(spec::parse_tmpfs(text).map_err(CliError::usage)?);
    }
    // --ssh: the host's agent socket, relayed, at Apple's path, with SSH_AUTH_SOCK set.
    let mut env = env;
    if m.ssh {
        let sock = env_lookup("SSH_AUTH_SOCK")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                CliError::Usage("--ssh: SSH_AUTH_SOCK is not set: start an ssh agent first".into())
            })?;
        mounts.push(spec::Mount::Bind {
            source: sock,
            target: SSH_AUTH_SOCK_PATH.into(),
            readonly: false,
        });
        // An explicit -e SSH_AUTH_SOCK wins, as any -e does.
        if !env.iter().any(|v: &spec::EnvVar| v.key == "SSH_AUTH_SOCK") {
            env.push(spec::EnvVar {
                key: "SSH_AUTH_SOCK".into(),
                value: SSH_AUTH_SOCK_PATH.into(),
            });
        }
    }
    let mut published_sockets = Vec::new();
    for text in &m.publish_socket {
        let p = text
            .parse::<spec::PublishSocket>()
            .map_err(CliError::usage)?;
        published_sockets.push(v1::PublishedSocket {
            host_path: resolve_host_path(&p.host_path, cwd, env_lookup),
            container_path: p.container_path,
        });
    }
    let mut targets = std::collections::HashSet::new();
    for mount in &mut mounts {
        if !targets.insert(mount.target().trim_end_matches('/').to_owned()) {
            return Err(CliError::Usage(format!(
                "duplicate mount point {}",
                mount.target()
            )));
        }
        // The daemon runs elsewhere: relative and ~ host paths are resolved here.
        if let spec::Mount::Bind { source, .. } = mount {
            *source = resolve_host_path(source, cwd, env_lookup);
        }
    }

    let ports = spec::parse_ports(&m.publish).map_err(CliError::usage)?;
    let networks = m
        .network
        .iter()
        .map(|n| n.parse::<spec::NetworkSpec>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(CliError::usage)?;
    if networks.len() > 1 && networks.iter().any(spec::NetworkSpec::is_none) {
        return Err(CliError::Usage(
            "--network none cannot be combined with other networks".into(),
        ));
    }
    let labels = m
        .label
        .iter()
        .map(|l| l.parse::<spec::Label>().map(|l| v1::Label::from(&l)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(CliError::usage)?;
    let restart = m
        .restart
        .parse::<spec::RestartPolicy>()
        .map_err(CliError::usage)?;
    if m.rm && restart != spec::RestartPolicy::No {
        return Err(CliError::Usage(
            "--rm and --restart cannot be combined".into(),
        ));
    }
    if let Some(h) = &m.hostname {
        spec::validate_hostname(h).map_err(|e| CliError::Usage(format!("--hostname: {e}")))?;
    }
    let mut extra_hosts = Vec::new();
    for text in &m.add_host {
        let host = text.parse::<spec::ExtraHost>().map_err(CliError::usage)?;
        // Stored as NAME:IP whichever separator was typed; IPv6 without brackets (the daemon
        // splits at the first colon).
        extra_hosts.push(match host.ip {
            spec::HostIp::Ip(ip) => format!("{}:{ip}", host.name),
            spec::HostIp::HostGateway => format!("{}:{}", host.name, spec::HOST_GATEWAY),
        });
    }
    for text in &m.expose {
        spec::parse_expose(text).map_err(CliError::usage)?;
    }
    let pf = &flags.platform;
    let platform =
        spec::Platform::from_flags(pf.platform.as_deref(), pf.os.as_deref(), pf.arch.as_deref())
            .map_err(CliError::usage)?;

    Ok(v1::ContainerConfig {
        id: m.name.clone().unwrap_or_default(),
        image: image.to_owned(),
        platform: platform.map(|p| p.to_string()).unwrap_or_default(),
        process: Some(v1::ProcessConfig {
            entrypoint: m.entrypoint.clone(),
            command: args.to_vec(),
            env: env.iter().map(ToString::to_string).collect(),
            working_dir: p.workdir.clone().unwrap_or_default(),
            user: user.map(|u| u.to_string()).unwrap_or_default(),
            tty: p.tty,
            stdin_open: p.interactive,
            ulimits,
            cap_add: caps(&m.cap_add)?,
            cap_drop: caps(&m.cap_drop)?,
        }),
        resources: Some(v1::Resources {
            cpus_millis,
            memory_bytes,
            shm_size_bytes,
        }),
        mounts: mounts.iter().map(v1::Mount::from).collect(),
        ports: ports.iter().map(v1::PortMapping::from).collect(),
        networks: networks.iter().map(v1::NetworkRequest::from).collect(),
        dns: Some(v1::DnsConfig {
            disabled: m.no_dns,
            nameservers: m.dns.clone(),
            domain: m.dns_domain.clone().unwrap_or_default(),
            search: m.dns_search.clone(),
            options: m.dns_option.clone(),
        }),
        labels,
        read_only: m.read_only,
        init: m.init,
        kernel: m
            .kernel
            .as_ref()
            .map(|k| resolve_host_path(&k.to_string_lossy(), cwd, env_lookup))
            .unwrap_or_default(),
        kernel_args: m.kernel_arg.clone(),
        auto_remove: m.rm,
        restart_policy: Some(restart.into()),
        stop_signal: m
            .stop_signal
            .as_deref()
            .map(|s| signal_number(s).map_err(|e| CliError::Usage(format!("--stop-signal: {e}"))))
            .transpose()?
            .unwrap_or(0),
        stop_timeout_seconds: m.stop_timeout,
        hostname: m.hostname.clone().unwrap_or_default(),
        published_sockets,
        healthcheck: healthcheck(&flags.health)?,
        extra_hosts,
        publish_all: m.publish_all,
        expose: m.expose.clone(),
        rosetta: m.rosetta,
    })
}

/// The user's healthcheck fields, or none when no `--health-*` flag was given (the image's
/// then applies unchanged).
fn healthcheck(h: &crate::args::HealthFlags) -> Result<Option<v1::Healthcheck>, CliError> {
    if h.no_healthcheck {
        return Ok(Some(v1::Healthcheck {
            test: vec!["NONE".into()],
            ..Default::default()
        }));
    }
    let ms = |flag: &str, v: &Option<String>| -> Result<u64, CliError> {
        match v {
            None => Ok(0),
            Some(text) => {
                let d = spec::parse_precise(text)
                    .map_err(|e| CliError::Usage(format!("--{flag}: {e}")))?;
                if d.is_zero() {
                    return Err(CliError::Usage(format!("--{flag}: must be more than 0")));
                }
                Ok(u64::try_from(d.as_millis().max(1)).unwrap_or(u64::MAX))
            }
        }
    };
    let out = v1::Healthcheck {
        test: match &h.health_cmd {
            Some(cmd) if cmd.trim().is_empty() => {
                return Err(CliError::Usage("--health-cmd: no command given".into()));
            }
            Some(cmd) => vec!["CMD-SHELL".into(), cmd.clone()],
            None => Vec::new(),
        },
        interval_ms: ms("health-interval", &h.health_interval)?,
        timeout_ms: ms("health-timeout", &h.health_timeout)?,
        start_period_ms: ms("health-start-period", &h.health_start_period)?,
        retries: h.health_retries.unwrap_or(0),
    };
    Ok((out != v1::Healthcheck::default()).then_some(out))
}

/// Where `--ssh` puts the host's SSH agent socket in the container (as Apple's does).
pub const SSH_AUTH_SOCK_PATH: &str = "/run/host-services/ssh-auth.sock";

/// Makes a host path absolute: `~/x` against HOME, relative paths against `cwd`, and `.`
/// and `..` components folded (the path need not exist yet).
fn resolve_host_path(
    path: &str,
    cwd: &Path,
    env_lookup: &dyn Fn(&str) -> Option<String>,
) -> String {
    let expanded: PathBuf = match path.strip_prefix('~') {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => {
            let home = env_lookup("HOME").unwrap_or_default();
            PathBuf::from(format!("{home}{rest}"))
        }
        _ => PathBuf::from(path),
    };
    let joined = if expanded.is_absolute() {
        expanded
    } else {
        cwd.join(expanded)
    };
    let mut out = PathBuf::from("/");
    for part in joined.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::Normal(p) => out.push(p),
            _ => {}
        }
    }
    out.to_string_lossy().into_owned()
}

fn real_env(key: &str) -> Option<String> {
    std::env::var(key).ok()
}

fn config_from_flags(
    flags: &ContainerFlags,
    image: &str,
    args: &[String],
) -> Result<v1::ContainerConfig, CliError> {
    let cwd =
        std::env::current_dir().map_err(|e| CliError::io("reading the working directory", e))?;
    build_config(
        flags,
        image,
        args,
        &real_env,
        &|p| std::fs::read_to_string(p),
        &cwd,
    )
}

/// Refuses an existing --cidfile before anything is created (Docker's rule).
fn check_cidfile(path: Option<&Path>) -> Result<(), CliError> {
    match path {
        Some(p) if p.exists() => Err(CliError::Usage(format!(
            "container ID file {} already exists: make sure no other container uses it, or delete it",
            p.display()
        ))),
        _ => Ok(()),
    }
}

/// Writes the container's ID to --cidfile, mode 0644, refusing to replace a file.
fn write_cidfile(path: &Path, id: &str) -> Result<(), CliError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)
        .map_err(|e| CliError::io(format!("writing container ID file {}", path.display()), e))?;
    file.write_all(id.as_bytes())
        .map_err(|e| CliError::io(format!("writing container ID file {}", path.display()), e))
}

async fn create(
    ctx: &Context,
    flags: &ContainerFlags,
    config: v1::ContainerConfig,
) -> Result<(api::Client, String), CliError> {
    check_cidfile(flags.management.cidfile.as_deref())?;
    let client = ctx.client().await?;
    let pulled = ensure_image(&client, flags, &config).await?;
    // The daemon honours the policy itself (for every client); after the pull above it
    // need not pull again.
    let policy = match flags.management.pull {
        PullPolicy::Never => v1::PullPolicy::Never,
        PullPolicy::Always if !pulled => v1::PullPolicy::Always,
        _ => v1::PullPolicy::Missing,
    };
    let response = client
        .containers()
        .create(v1::CreateContainerRequest {
            config: Some(config),
            pull: Some(v1::ImagePull {
                policy: policy as i32,
                scheme: crate::commands::progress::scheme(flags.registry.scheme),
                max_concurrent_downloads: flags.fetch.max_concurrent_downloads,
            }),
        })
        .await?
        .into_inner();
    for warning in &response.warnings {
        eprintln!("warning: {warning}");
    }
    if let Some(path) = &flags.management.cidfile {
        write_cidfile(path, &response.id)?;
    }
    Ok((client, response.id))
}

/// Pulls the image first per `--pull`, so the user sees progress (the daemon would pull
/// it silently). Returns whether it pulled. Image IDs are left to the daemon, which never
/// pulls them, and so is a daemon without the Images service.
async fn ensure_image(
    client: &api::Client,
    flags: &ContainerFlags,
    config: &v1::ContainerConfig,
) -> Result<bool, CliError> {
    let policy = flags.management.pull;
    if policy == PullPolicy::Never || config.image.starts_with("sha256:") {
        return Ok(false);
    }
    if policy == PullPolicy::Missing {
        let found = client
            .images()
            .inspect(v1::InspectImageRequest {
                reference: config.image.clone(),
            })
            .await;
        match found {
            Ok(_) => return Ok(false),
            Err(status) if status.code() == tonic::Code::NotFound => {}
            Err(status) if status.code() == tonic::Code::Unimplemented => return Ok(false),
            Err(status) => return Err(status.into()),
        }
    }
    let request = v1::PullImageRequest {
        reference: config.image.clone(),
        platform: config.platform.clone(),
        all_platforms: false,
        scheme: crate::commands::progress::scheme(flags.registry.scheme),
        max_concurrent_downloads: flags.fetch.max_concurrent_downloads,
        credentials: None,
    };
    crate::commands::progress::pull_with_progress(client, request)
        .await
        .map(|_| true)
}

/// `container create`.
pub async fn create_cmd(ctx: &Context, a: &CreateArgs) -> CliResult {
    let config = config_from_flags(&a.container, &a.image, &a.args)?;
    let (_, id) = create(ctx, &a.container, config).await?;
    outln!("{id}");
    Ok(0)
}

/// How long `run --rm` waits for the daemon to remove the container after it exited.
const RM_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// `container run`.
pub async fn run_cmd(ctx: &Context, a: &RunArgs) -> CliResult {
    let detach_keys = stdio::detach_keys(a.detach_keys.as_deref())?;
    let config = config_from_flags(&a.container, &a.image, &a.args)?;
    let (client, id) = create(ctx, &a.container, config).await?;
    let outcome = if a.detach {
        client
            .containers()
            .start(v1::StartContainerRequest { id: id.clone() })
            .await
            .map(|_| Ended::Exit(0))
            .map_err(CliError::from)
    } else {
        let p = &a.container.process;
        let options = StdioOptions {
            stdin: p.interactive,
            tty: p.tty,
            detach: false,
            detach_keys,
        };
        stdio::attach(&client, id.clone(), true, options).await
    };
    if outcome.is_ok() && a.detach {
        outln!("{id}");
    }
    // After a detach (the detach keys) the container runs on, as with Docker's `run --rm`.
    let exited = matches!(outcome, Ok(Ended::Exit(_)));
    let outcome = outcome.map(Ended::code);
    if exited && !a.detach && a.container.management.rm {
        // Docker's `run --rm` returns once the container is gone, so what follows (a new
        // run on the same volume, `volume ls`) never sees it: the daemon removes it (and its
        // anonymous volumes) once its VM has shut down.
        let mut containers = client.containers();
        let wait = containers.wait(v1::WaitContainerRequest {
            id: id.clone(),
            condition: v1::WaitCondition::Removed as i32,
        });
        let _ = tokio::time::timeout(RM_WAIT, wait).await;
    }
    if outcome.is_err() {
        // A container that failed to start is not left behind (Apple's run deletes on any
        // failure); one that runs, and only lost its attached client, is left alone.
        let state = client
            .containers()
            .inspect(v1::InspectContainerRequest { id: id.clone() })
            .await
            .ok()
            .and_then(|r| r.into_inner().container)
            .map(|c| c.state_enum());
        if !matches!(state, Some(v1::ContainerState::Running) | None) {
            let _ = client
                .containers()
                .delete(v1::DeleteContainerRequest {
                    id,
                    force: true,
                    remove_volumes: true,
                })
                .await;
        }
    }
    outcome
}

/// `container start`.
pub async fn start_cmd(ctx: &Context, a: &StartArgs) -> CliResult {
    let detach_keys = stdio::detach_keys(a.detach_keys.as_deref())?;
    let client = ctx.client().await?;
    if a.attach || a.interactive {
        if a.ids.len() != 1 {
            return Err(CliError::Usage(
                "start --attach takes exactly one container".into(),
            ));
        }
        let id = a.ids[0].clone();
        let info = inspect_one(&client, &id).await?;
        let tty = info
            .config
            .as_ref()
            .and_then(|c| c.process.as_ref())
            .is_some_and(|p| p.tty);
        let options = StdioOptions {
            stdin: a.interactive,
            tty,
            detach: false,
            detach_keys,
        };
        return stdio::attach(&client, id, true, options)
            .await
            .map(Ended::code);
    }
    each_printed(&client, &a.ids, |client, id| async move {
        client
            .containers()
            .start(v1::StartContainerRequest { id })
            .await?;
        Ok(())
    })
    .await
}

pub(crate) async fn inspect_one(
    client: &api::Client,
    id: &str,
) -> Result<v1::ContainerInfo, CliError> {
    client
        .containers()
        .inspect(v1::InspectContainerRequest { id: id.to_owned() })
        .await?
        .into_inner()
        .container
        .ok_or_else(|| CliError::Daemon(format!("the daemon sent no container for {id}")))
}

/// Runs `f` for every ID, reporting each failure on its own line; fails at the end when any
/// did (Docker's habit for multi-container commands).
pub(crate) async fn each<F, Fut>(ids: &[String], mut f: F) -> CliResult
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<(), CliError>>,
{
    let mut failed = 0;
    let mut seen = std::collections::HashSet::new();
    for id in ids {
        if !seen.insert(id.clone()) {
            continue;
        }
        if let Err(e) = f(id.clone()).await {
            eprintln!("container: {e}");
            failed += 1;
        }
    }
    if failed == 0 {
        Ok(0)
    } else {
        Err(CliError::Partial(format!(
            "{failed} of {} failed",
            seen.len()
        )))
    }
}

/// How many containers a multi-container verb asks the daemon about at once. A stop mostly
/// waits (the grace period, then the VM's shutdown), so doing them one after another made
/// `stop --all` of 50 idle containers take minutes; the bound keeps a long list from opening
/// hundreds of connections and VM shutdowns at the same moment.
pub(crate) const PARALLEL_OPS: usize = 50;

/// For the verbs that print each container they acted on (stop, kill, rm, start, restart,
/// pause, unpause, as Docker's): runs `op` for up to [`PARALLEL_OPS`] IDs at a time, each
/// with its own client handle, and prints each ID that succeeded in the order given; each
/// failure is reported on its own line and the command fails at the end when any did, as
/// with [`each`].
pub(crate) async fn each_printed<F, Fut>(client: &api::Client, ids: &[String], op: F) -> CliResult
where
    F: Fn(api::Client, String) -> Fut,
    Fut: std::future::Future<Output = Result<(), CliError>>,
{
    use futures::StreamExt as _;
    let mut seen = std::collections::HashSet::new();
    let unique: Vec<String> = ids
        .iter()
        .filter(|id| seen.insert((*id).clone()))
        .cloned()
        .collect();
    let mut results = futures::stream::iter(unique.iter().map(|id| {
        let done = op(client.clone(), id.clone());
        async move { (id, done.await) }
    }))
    .buffered(PARALLEL_OPS);
    let mut failed = 0;
    while let Some((id, result)) = results.next().await {
        match result {
            Ok(()) => outln!("{id}"),
            Err(e) => {
                eprintln!("container: {e}");
                failed += 1;
            }
        }
    }
    if failed == 0 {
        Ok(0)
    } else {
        Err(CliError::Partial(format!(
            "{failed} of {} failed",
            unique.len()
        )))
    }
}

/// Checks the IDs-or-`--all` rule before the daemon is asked anything.
fn check_ids(ids: &[String], all: bool) -> Result<(), CliError> {
    if all && !ids.is_empty() {
        Err(CliError::Usage(
            "explicitly supplied container IDs conflict with the --all flag".into(),
        ))
    } else if !all && ids.is_empty() {
        Err(CliError::Usage(
            "no containers given: name at least one, or use --all".into(),
        ))
    } else {
        Ok(())
    }
}

async fn ids_or_all(
    client: &api::Client,
    ids: &[String],
    all: bool,
    include_stopped: bool,
) -> Result<Vec<String>, CliError> {
    if !all {
        return Ok(ids.to_vec());
    }
    let list = client
        .containers()
        .list(v1::ListContainersRequest {
            all: include_stopped,
            ..Default::default()
        })
        .await?
        .into_inner();
    Ok(list.containers.into_iter().map(|c| c.id).collect())
}

pub(crate) fn signal_number(text: &str) -> Result<i32, CliError> {
    text.parse::<spec::Signal>()
        .map(spec::Signal::number)
        .map_err(CliError::usage)
}

/// `container stop`.
pub async fn stop_cmd(ctx: &Context, a: &StopArgs) -> CliResult {
    let signal = a
        .signal
        .as_deref()
        .map(signal_number)
        .transpose()?
        .unwrap_or(0);
    check_ids(&a.ids, a.all)?;
    let client = ctx.client().await?;
    let ids = ids_or_all(&client, &a.ids, a.all, false).await?;
    each_printed(&client, &ids, |client, id| async move {
        client
            .containers()
            .stop(v1::StopContainerRequest {
                id,
                signal,
                timeout_seconds: Some(a.time),
            })
            .await?;
        Ok(())
    })
    .await
}

/// `container kill`.
pub async fn kill_cmd(ctx: &Context, a: &KillArgs) -> CliResult {
    let signal = signal_number(&a.signal)?;
    check_ids(&a.ids, a.all)?;
    let client = ctx.client().await?;
    let ids = ids_or_all(&client, &a.ids, a.all, false).await?;
    each_printed(&client, &ids, |client, id| async move {
        client
            .containers()
            .kill(v1::KillContainerRequest { id, signal })
            .await?;
        Ok(())
    })
    .await
}

/// `container delete`.
pub async fn delete_cmd(ctx: &Context, a: &DeleteArgs) -> CliResult {
    check_ids(&a.ids, a.all)?;
    let client = ctx.client().await?;
    let ids = if a.all {
        let list = client
            .containers()
            .list(v1::ListContainersRequest {
                all: true,
                ..Default::default()
            })
            .await?
            .into_inner();
        // --all leaves running containers alone unless --force.
        list.containers
            .into_iter()
            .filter(|c| a.force || c.state_enum() != v1::ContainerState::Running)
            .map(|c| c.id)
            .collect()
    } else {
        a.ids.clone()
    };
    // Each prints the name the user gave, as Docker's.
    each_printed(&client, &ids, |client, id| async move {
        client
            .containers()
            .delete(v1::DeleteContainerRequest {
                id,
                force: a.force,
                remove_volumes: a.volumes,
            })
            .await?;
        Ok(())
    })
    .await
}

/// `container list`.
pub async fn list_cmd(ctx: &Context, a: &ListArgs) -> CliResult {
    let template = a
        .format
        .template::<listing::ContainerFields>()
        .map_err(CliError::usage)?;
    let client = ctx.client().await?;
    // The daemon filters (and refuses a bad filter in one line), as for `docker ps`.
    let containers = client
        .containers()
        .list(v1::ListContainersRequest {
            all: a.all,
            filters: a.filters.clone(),
        })
        .await?
        .into_inner()
        .containers;
    if a.quiet {
        for c in &containers {
            if a.no_trunc {
                outln!("{}", c.id);
            } else {
                outln!("{}", output::short_id(&c.id));
            }
        }
    } else if let Some(t) = template {
        let fields: Vec<_> = containers
            .iter()
            .map(|c| listing::ContainerFields {
                c,
                no_trunc: a.no_trunc,
            })
            .collect();
        out!("{}", t.render(&fields));
    } else if a.format == ListFormat::Json {
        let all: Vec<_> = containers.iter().map(output::container_json).collect();
        outln!("{}", output::json_line(&serde_json::Value::Array(all)));
    } else {
        let mut rows: Vec<_> = containers.iter().map(output::container_row).collect();
        if a.no_trunc {
            for (row, c) in rows.iter_mut().zip(&containers) {
                if c.name.is_empty() {
                    row[0] = c.id.clone();
                }
            }
        }
        out!("{}", output::table(&output::CONTAINER_HEADERS, &rows));
    }
    Ok(0)
}

/// `container inspect`: a JSON array, one entry per container found.
pub async fn inspect_cmd(ctx: &Context, a: &InspectArgs) -> CliResult {
    let client = ctx.client().await?;
    inspect_each(&a.ids, |id| {
        let client = client.clone();
        async move { Ok(output::container_json(&inspect_one(&client, &id).await?)) }
    })
    .await
}

/// `container logs`. `--since` and `--until` select by the time each chunk was written
/// (the runtime's stdio log records it); `--timestamps` prefixes every line with it.
pub async fn logs_cmd(ctx: &Context, a: &LogsArgs) -> CliResult {
    let now = now_nanos();
    let since = time_flag("since", a.since.as_deref(), now)?;
    let until = time_flag("until", a.until.as_deref(), now)?;
    let client = ctx.client().await?;
    let mut stream = client
        .containers()
        .logs(v1::LogsRequest {
            id: a.id.clone(),
            follow: a.follow,
            tail: a.lines,
            boot: a.boot,
        })
        .await?
        .into_inner();
    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    // Whether the last chunk of each stream ended its line, so a timestamp starts the next.
    let mut at_line_start = [true, true];
    while let Some(chunk) = stream.message().await? {
        let nanos = chunk.timestamp_ms.saturating_mul(1_000_000);
        if since.is_some_and(|s| nanos < s) {
            continue;
        }
        if until.is_some_and(|u| nanos > u) {
            break;
        }
        let which = usize::from(chunk.stream == v1::OutputStream::Stderr as i32);
        let data = if a.timestamps {
            stamp_lines(&chunk.data, nanos, &mut at_line_start[which])
        } else {
            chunk.data
        };
        let result = if which == 1 {
            stderr.write_all(&data).await
        } else {
            stdout.write_all(&data).await
        };
        result.map_err(|e| CliError::io("writing logs", e))?;
    }
    stdout
        .flush()
        .await
        .map_err(|e| CliError::io("writing logs", e))?;
    Ok(0)
}

/// `data` with `time` (RFC 3339, nanoseconds) and a space before every line that starts in
/// it, as `docker logs -t` prints; `at_line_start` carries over between chunks.
pub fn stamp_lines(data: &[u8], nanos: i64, at_line_start: &mut bool) -> Vec<u8> {
    let stamp = spec::format_time(nanos, false);
    let mut out = Vec::with_capacity(data.len() + 32);
    for piece in data.split_inclusive(|b| *b == b'\n') {
        if *at_line_start {
            out.extend_from_slice(stamp.as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(piece);
        *at_line_start = piece.ends_with(b"\n");
    }
    out
}

/// `container exec`.
pub async fn exec_cmd(ctx: &Context, a: &ExecArgs) -> CliResult {
    let detach_keys = stdio::detach_keys(a.detach_keys.as_deref())?;
    let mut env = Vec::new();
    for file in &a.env_file {
        let text = std::fs::read_to_string(file)
            .map_err(|e| CliError::io(format!("reading env file {}", file.display()), e))?;
        env.extend(
            spec::parse_env_file(&text, real_env)
                .map_err(|e| CliError::Usage(format!("{}: {e}", file.display())))?,
        );
    }
    for text in &a.env {
        env.extend(spec::parse_env(text, real_env).map_err(CliError::usage)?);
    }
    let user = spec::User::from_flags(a.user.as_deref(), None, None).map_err(CliError::usage)?;
    let client = ctx.client().await?;
    let open = Request::Exec(v1::ExecOpen {
        id: a.id.clone(),
        args: a.command.clone(),
        env: spec::env::merge(env)
            .iter()
            .map(ToString::to_string)
            .collect(),
        working_dir: a.workdir.clone().unwrap_or_default(),
        user: user.map(|u| u.to_string()).unwrap_or_default(),
        tty: a.tty,
        stdin: a.interactive,
        detach: a.detach,
        size: if a.tty {
            stdio::local_terminal_size()
        } else {
            None
        },
    });
    let options = StdioOptions {
        stdin: a.interactive,
        tty: a.tty,
        detach: a.detach,
        detach_keys,
    };
    stdio::drive(&client, Rpc::Exec, open, options)
        .await
        .map(Ended::code)
}

/// `container stats`.
pub async fn stats_cmd(ctx: &Context, a: &StatsArgs) -> CliResult {
    let client = ctx.client().await?;
    let mut stream = client
        .containers()
        .stats(v1::StatsRequest {
            ids: a.ids.clone(),
            stream: true,
            interval_ms: 0,
        })
        .await?
        .into_inner();
    let mut previous: HashMap<String, v1::ContainerStats> = HashMap::new();
    let mut samples = 0;
    while let Some(batch) = stream.message().await? {
        samples += 1;
        // --no-stream prints once, after the second sample so CPU % has a base (Apple's two
        // samples); JSON carries raw counters and needs only one.
        let ready = a.format == Format::Json || samples >= 2;
        if ready {
            if a.format == Format::Json {
                let all: Vec<_> = batch.stats.iter().map(output::stats_json).collect();
                outln!("{}", output::json_line(&serde_json::Value::Array(all)));
            } else {
                let rows: Vec<_> = batch
                    .stats
                    .iter()
                    .map(|s| output::stats_row(previous.get(&s.id), s))
                    .collect();
                if !a.no_stream && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                    // Clear the screen and redraw, like `docker stats`; into a pipe or a
                    // file the tables simply follow each other.
                    out!("\x1b[2J\x1b[H");
                }
                out!("{}", output::table(&output::STATS_HEADERS, &rows));
            }
            std::io::stdout()
                .flush()
                .map_err(|e| CliError::io("writing stats", e))?;
            if a.no_stream {
                return Ok(0);
            }
        }
        previous = batch.stats.into_iter().map(|s| (s.id.clone(), s)).collect();
    }
    Ok(0)
}

/// `container export`.
pub async fn export_cmd(ctx: &Context, a: &ExportArgs) -> CliResult {
    let client = ctx.client().await?;
    let stream = client
        .containers()
        .export(v1::ExportContainerRequest { id: a.id.clone() })
        .await?
        .into_inner();
    write_stream(a.output.as_deref(), stream).await?;
    Ok(0)
}

/// `container commit`.
pub async fn commit_cmd(ctx: &Context, a: &CommitArgs) -> CliResult {
    let client = ctx.client().await?;
    let r = client
        .containers()
        .commit(v1::CommitContainerRequest {
            id: a.id.clone(),
            reference: a.image.clone().unwrap_or_default(),
            changes: a.change.clone(),
            message: a.message.clone().unwrap_or_default(),
            author: a.author.clone().unwrap_or_default(),
            no_pause: !a.pause,
        })
        .await?
        .into_inner();
    outln!("{}", r.image_id);
    Ok(0)
}

/// `container diff`.
pub async fn diff_cmd(ctx: &Context, a: &DiffArgs) -> CliResult {
    let client = ctx.client().await?;
    let r = client
        .containers()
        .diff(v1::DiffContainerRequest { id: a.id.clone() })
        .await?
        .into_inner();
    for c in r.changes {
        outln!("{} {}", c.kind, c.path);
    }
    Ok(0)
}

/// `container prune`.
pub async fn prune_cmd(ctx: &Context, _: &PruneArgs) -> CliResult {
    let client = ctx.client().await?;
    let pruned = client
        .containers()
        .prune(v1::PruneContainersRequest {})
        .await?
        .into_inner();
    out!("{}", output::pruned(&pruned));
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn flags(args: &[&str]) -> (ContainerFlags, String, Vec<String>) {
        let mut argv = vec!["container", "create"];
        argv.extend_from_slice(args);
        let cli = crate::args::Cli::try_parse_from(argv).unwrap();
        match cli.command {
            Some(Command::Create(c)) => (c.container, c.image, c.args),
            other => panic!("{other:?}"),
        }
    }

    fn config(args: &[&str]) -> Result<v1::ContainerConfig, CliError> {
        let (f, image, rest) = flags(args);
        let env = |k: &str| match k {
            "HOME" => Some("/home/me".to_owned()),
            "TOKEN" => Some("s3cret".to_owned()),
            _ => None,
        };
        let files = |p: &Path| -> std::io::Result<String> {
            if p == Path::new("app.env") {
                Ok("# app\nMODE=prod\nTOKEN\nMISSING\n".to_owned())
            } else {
                Err(std::io::Error::from(std::io::ErrorKind::NotFound))
            }
        };
        build_config(&f, &image, &rest, &env, &files, Path::new("/work/proj"))
    }

    #[test]
    fn sockets_ssh_and_relative_binds() {
        let (f, image, rest) = flags(&[
            "--ssh",
            "--publish-socket",
            "run/app.sock:/run/app.sock",
            "-v",
            "./src:/src:ro",
            "busybox",
        ]);
        let env = |k: &str| (k == "SSH_AUTH_SOCK").then(|| "/tmp/ssh-x/agent.1".to_owned());
        let files =
            |_: &Path| -> std::io::Result<String> { Err(std::io::ErrorKind::NotFound.into()) };
        let c = build_config(&f, &image, &rest, &env, &files, Path::new("/work/proj")).unwrap();
        assert_eq!(
            c.published_sockets,
            [v1::PublishedSocket {
                host_path: "/work/proj/run/app.sock".into(),
                container_path: "/run/app.sock".into(),
            }]
        );
        let binds: Vec<(String, String, bool)> = c
            .mounts
            .iter()
            .filter_map(|m| match &m.kind {
                Some(v1::mount::Kind::Bind(b)) => {
                    Some((b.source.clone(), m.target.clone(), m.readonly))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            binds,
            [
                ("/work/proj/src".to_string(), "/src".to_string(), true),
                (
                    "/tmp/ssh-x/agent.1".to_string(),
                    SSH_AUTH_SOCK_PATH.to_string(),
                    false
                ),
            ]
        );
        let env = &c.process.unwrap().env;
        assert!(
            env.contains(&format!("SSH_AUTH_SOCK={SSH_AUTH_SOCK_PATH}")),
            "{env:?}"
        );
        // --ssh without an agent, and a bad socket spec, fail before the daemon.
        let e = config(&["--ssh", "busybox"]).unwrap_err().to_string();
        assert!(e.starts_with("--ssh: SSH_AUTH_SOCK is not set"), "{e}");
        let e = config(&["--publish-socket", "/a.sock:rel", "busybox"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not absolute"), "{e}");
    }

    #[test]
    fn docker_verbs_flags_reach_the_config() {
        let c = config(&[
            "--hostname",
            "box-1",
            "--add-host",
            "db=10.0.0.5",
            "--add-host",
            "gw:host-gateway",
            "--stop-signal",
            "SIGQUIT",
            "--stop-timeout",
            "3",
            "-P",
            "--expose",
            "8080/udp",
            "busybox",
        ])
        .unwrap();
        assert_eq!(c.hostname, "box-1");
        assert_eq!(c.extra_hosts, ["db:10.0.0.5", "gw:host-gateway"]);
        assert_eq!(c.stop_signal, 3);
        assert_eq!(c.stop_timeout_seconds, Some(3));
        assert!(c.publish_all);
        assert_eq!(c.expose, ["8080/udp"]);
        for (bad, says) in [
            (
                &["--hostname", "a_b", "busybox"][..],
                "--hostname: invalid hostname",
            ),
            (&["--add-host", "db", "busybox"][..], "invalid extra host"),
            (&["--stop-signal", "NOPE", "busybox"][..], "--stop-signal:"),
            (
                &["--expose", "80/sctp", "busybox"][..],
                "invalid exposed port",
            ),
        ] {
            let e = config(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }

    #[test]
    fn timestamps_start_every_line_across_chunks() {
        let mut start = true;
        let t = 1_764_867_600_000_000_000;
        let a = stamp_lines(b"one\ntw", t, &mut start);
        let b = stamp_lines(b"o\nthree\n", t, &mut start);
        let text = String::from_utf8(a.into_iter().chain(b).collect()).unwrap();
        assert_eq!(
            text,
            "2025-12-04T17:00:00.000000000Z one\n2025-12-04T17:00:00.000000000Z two\n2025-12-04T17:00:00.000000000Z three\n"
        );
        assert!(start);
    }

    #[test]
    fn flags_become_the_daemon_config() {
        let c = config(&[
            "--name",
            "web",
            "-e",
            "A=1",
            "--env-file",
            "app.env",
            "-e",
            "MODE=dev",
            "-u",
            "app:staff",
            "-c",
            "1.5",
            "-m",
            "512m",
            "-p",
            "8080:80",
            "-v",
            "./site:/srv:ro",
            "-v",
            "data:/data",
            "--tmpfs",
            "/run:size=64m",
            "--mount",
            "type=bind,src=~/cfg,dst=/etc/app",
            "-l",
            "tier=front",
            "--ulimit",
            "nofile=1024:2048",
            "--cap-add",
            "net_admin",
            "--restart",
            "on-failure:3",
            "--platform",
            "linux/arm64",
            "--dns",
            "1.1.1.1",
            "nginx:1.27",
            "nginx",
            "-g",
            "daemon off;",
        ])
        .unwrap();
        assert_eq!(c.id, "web");
        assert_eq!(c.image, "nginx:1.27");
        assert_eq!(c.platform, "linux/arm64");
        let p = c.process.unwrap();
        assert_eq!(p.command, ["nginx", "-g", "daemon off;"]);
        // Env files first, then -e: a later value replaces an earlier one in place.
        assert_eq!(p.env, ["MODE=dev", "TOKEN=s3cret", "A=1"]);
        assert_eq!(p.user, "app:staff");
        assert_eq!(p.cap_add, ["CAP_NET_ADMIN"]);
        assert_eq!(p.ulimits[0].soft, 1024);
        let r = c.resources.unwrap();
        assert_eq!((r.cpus_millis, r.memory_bytes), (1500, 512 << 20));
        assert_eq!(c.ports[0].host_port, 8080);
        let binds: Vec<_> = c
            .mounts
            .iter()
            .filter_map(|m| match &m.kind {
                Some(v1::mount::Kind::Bind(b)) => Some(b.source.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(binds, ["/work/proj/site", "/home/me/cfg"]);
        assert_eq!(c.mounts.len(), 4);
        assert_eq!(c.labels[0].key, "tier");
        assert_eq!(c.restart_policy.unwrap().max_retries, 3);
        assert_eq!(c.dns.unwrap().nameservers, ["1.1.1.1"]);
    }

    #[test]
    fn health_flags_become_the_healthcheck() {
        assert_eq!(config(&["alpine"]).unwrap().healthcheck, None);
        let h = config(&[
            "--health-cmd",
            "test -f /tmp/ok",
            "--health-interval",
            "1s",
            "--health-timeout",
            "500ms",
            "--health-retries",
            "2",
            "--health-start-period",
            "1.5s",
            "alpine",
        ])
        .unwrap()
        .healthcheck
        .unwrap();
        assert_eq!(h.test, ["CMD-SHELL", "test -f /tmp/ok"]);
        assert_eq!(
            (h.interval_ms, h.timeout_ms, h.start_period_ms, h.retries),
            (1000, 500, 1500, 2)
        );
        let only = config(&["--health-interval", "2s", "alpine"])
            .unwrap()
            .healthcheck
            .unwrap();
        assert!(only.test.is_empty(), "the image's test is kept");
        let none = config(&["--no-healthcheck", "alpine"])
            .unwrap()
            .healthcheck
            .unwrap();
        assert_eq!(none.test, ["NONE"]);
        assert_eq!(
            config(&["--health-interval", "1x", "alpine"])
                .unwrap_err()
                .to_string(),
            r#"--health-interval: invalid duration "1x": expected e.g. 500ms, 1s, 1.5s or 1m30s"#
        );
        assert_eq!(
            config(&["--health-cmd", " ", "alpine"])
                .unwrap_err()
                .to_string(),
            "--health-cmd: no command given"
        );
    }

    #[test]
    fn bad_values_fail_before_the_daemon_with_one_line() {
        let e = |args: &[&str]| config(args).unwrap_err().to_string();
        assert_eq!(
            e(&["-p", "80:x", "alpine"]),
            r#"invalid port spec "80:x": container port "x" is not a number"#
        );
        assert_eq!(
            e(&["-m", "100m", "alpine"]),
            "--memory: 100m is below the minimum of 200 MiB"
        );
        assert_eq!(
            e(&["-m", "lots", "alpine"]),
            r#"--memory: invalid size "lots": expected a number with an optional unit (b, k, m, g, t, p), e.g. 512m"#
        );
        assert_eq!(
            e(&["-v", "/a:/x", "-v", "b:/x/", "alpine"]),
            "duplicate mount point /x/"
        );
        assert_eq!(
            e(&["--env-file", "nope.env", "alpine"]),
            "reading env file nope.env: entity not found"
        );
        assert_eq!(
            e(&["--rm", "--restart", "always", "alpine"]),
            "--rm and --restart cannot be combined"
        );
        assert!(e(&["--name", "bad/name", "alpine"]).starts_with("invalid container name"));
        assert!(
            e(&["--network", "none", "--network", "default", "alpine"])
                .contains("cannot be combined")
        );
    }

    #[test]
    fn host_paths_are_resolved_lexically() {
        let env = |_: &str| Some("/home/me".to_owned());
        let cwd = Path::new("/work/proj");
        assert_eq!(resolve_host_path("./a/../b", cwd, &env), "/work/proj/b");
        assert_eq!(resolve_host_path("..", cwd, &env), "/work");
        assert_eq!(resolve_host_path("~", cwd, &env), "/home/me");
        assert_eq!(resolve_host_path("/abs/./x", cwd, &env), "/abs/x");
    }

    #[test]
    fn cidfile_is_written_once_with_mode_0644() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cid");
        check_cidfile(Some(&path)).unwrap();
        write_cidfile(&path, "web").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "web");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & !0o022, 0o644 & !0o022);
        assert!(
            check_cidfile(Some(&path))
                .unwrap_err()
                .to_string()
                .contains("already exists")
        );
    }
}
