//! `container system ...`: start and stop the daemon, and ask it about itself.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use api::v1;
use serde_json::json;

use crate::Context;
use crate::args::*;
use crate::commands::each::{now_nanos, time_flag};
use crate::error::{CliError, CliResult};
use crate::output;

/// The daemon's program name.
pub const APISERVER: &str = "container-apiserver";

/// This CLI's build: debug or release.
fn build_kind() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

/// The daemon program: the flag, else beside this executable, else on PATH.
fn find_apiserver(flag: Option<&Path>) -> Result<PathBuf, CliError> {
    if let Some(path) = flag {
        return Ok(path.to_path_buf());
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(APISERVER)))
        .filter(|p| p.is_file());
    let on_path = || {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(APISERVER))
                .find(|p| p.is_file())
        })
    };
    beside.or_else(on_path).ok_or_else(|| {
        CliError::Daemon(format!(
            "cannot find {APISERVER} beside this program or on PATH: install it, or pass --apiserver"
        ))
    })
}

/// The daemon's variable for where it serves the Docker API (its `docker.socket` property
/// otherwise).
const DOCKER_SOCKET_ENV: &str = "CONTAINER_DOCKER_SOCKET";

/// `--docker-socket` as the daemon takes it: an absolute path, or `none`.
fn docker_socket_setting(a: &SystemStartArgs) -> Result<Option<String>, CliError> {
    let Some(path) = &a.docker_socket else {
        return Ok(None);
    };
    if path.as_os_str() == "none" {
        return Ok(Some("none".to_owned()));
    }
    let abs = std::path::absolute(path)
        .map_err(|e| CliError::io(format!("resolving {}", path.display()), e))?;
    abs.into_os_string()
        .into_string()
        .map(Some)
        .map_err(|_| CliError::Usage("--docker-socket must be valid UTF-8".into()))
}

/// `container system start`: spawns the daemon in its own process group and waits until it
/// answers on its socket.
pub async fn start(ctx: &Context, a: &SystemStartArgs) -> CliResult {
    let app_root = match &a.app_root {
        Some(root) if root.is_absolute() => root.clone(),
        Some(root) => std::env::current_dir()
            .map_err(|e| CliError::io("reading the working directory", e))?
            .join(root),
        None => ctx.app_root()?,
    };
    let socket = api::socket_path(&app_root);
    if api::Client::connect(&socket, Duration::from_secs(2))
        .await
        .is_ok()
    {
        outln!("container daemon already running at {}", socket.display());
        return Ok(0);
    }
    let program = find_apiserver(a.apiserver.as_deref())?;
    // The app root and the daemon's log are the owner's alone (the daemon also enforces it).
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&app_root)
        .map_err(|e| CliError::io(format!("creating {}", app_root.display()), e))?;
    if a.systemd || cfg!(any(target_os = "macos", check_macos)) {
        return start_as_service(a, &program, &app_root, &socket).await;
    }
    let log_path = app_root.join("apiserver.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log_path)
        .map_err(|e| CliError::io(format!("opening {}", log_path.display()), e))?;
    let log_err = log
        .try_clone()
        .map_err(|e| CliError::io(format!("opening {}", log_path.display()), e))?;
    let mut child = std::process::Command::new(&program);
    child
        .env(api::APP_ROOT_ENV, &app_root)
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log_err);
    // Its own process group: a Ctrl-C meant for this CLI must not reach the daemon.
    std::os::unix::process::CommandExt::process_group(&mut child, 0);
    if ctx.debug {
        child.env("CONTAINER_DEBUG", "1");
    }
    if let Some(path) = docker_socket_setting(a)? {
        child.env(DOCKER_SOCKET_ENV, path);
    }
    let mut child = child
        .spawn()
        .map_err(|e| CliError::io(format!("starting {}", program.display()), e))?;
    let deadline = Instant::now() + Duration::from_secs(a.timeout);
    loop {
        if api::Client::connect(&socket, Duration::from_millis(500))
            .await
            .is_ok()
        {
            outln!("container daemon started at {}", socket.display());
            return Ok(0);
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(CliError::Daemon(format!(
                "{} exited ({status}) before answering: see {}",
                program.display(),
                log_path.display()
            )));
        }
        if Instant::now() >= deadline {
            return Err(CliError::Daemon(format!(
                "{} did not answer on {} within {}s: see {}",
                program.display(),
                socket.display(),
                a.timeout,
                log_path.display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Variables the daemon inherits from this CLI, kept when a service manager starts it.
/// (The guest kernel is not among them: the daemon boots only its app root's kernel or its
/// installation's, see `system kernel set`.)
const SERVICE_ENV: &[&str] = &["CONTAINER_REGISTRY_MIRROR", "CONTAINER_RUNTIME_BINARY"];

/// `system start --systemd` (and every `system start` on macOS): register the daemon with
/// the service manager, which starts it, then wait until it answers.
async fn start_as_service(
    a: &SystemStartArgs,
    program: &Path,
    app_root: &Path,
    socket: &Path,
) -> CliResult {
    let program = std::path::absolute(program)
        .map_err(|e| CliError::io(format!("resolving {}", program.display()), e))?;
    let service = crate::service::DaemonService {
        program,
        app_root: app_root.to_path_buf(),
        env: SERVICE_ENV
            .iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| ((*k).to_owned(), v)))
            .chain(docker_socket_setting(a)?.map(|p| (DOCKER_SOCKET_ENV.to_owned(), p)))
            .collect(),
    };
    // macOS, and `cargo xtask check-macos` type-checking that path on Linux.
    #[cfg(any(target_os = "macos", check_macos))]
    let installed = if a.systemd {
        return Err(CliError::Usage(
            "--systemd is for Linux: on macOS the daemon runs as a launchd agent".into(),
        ));
    } else {
        crate::service::install_launchd(&service)
    };
    #[cfg(not(any(target_os = "macos", check_macos)))]
    let installed = crate::service::install_systemd(&service);
    let installed = installed.map_err(CliError::Daemon)?;
    outln!("registered {}", installed.display());
    let deadline = Instant::now() + Duration::from_secs(a.timeout);
    while Instant::now() < deadline {
        if api::Client::connect(socket, Duration::from_millis(500))
            .await
            .is_ok()
        {
            outln!("container daemon started at {}", socket.display());
            return Ok(0);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(CliError::Daemon(format!(
        "the service manager started no daemon answering on {} within {}s: see {}",
        socket.display(),
        a.timeout,
        app_root.join("apiserver.log").display()
    )))
}

/// `container system stop`.
pub async fn stop(ctx: &Context, _: &SystemStopArgs) -> CliResult {
    let socket = ctx.socket()?;
    let Ok(client) = api::Client::connect(&socket, Duration::from_secs(2)).await else {
        outln!("container daemon is not running");
        return Ok(0);
    };
    // Stopped means the process is gone (its lock and socket released), not only silent.
    let pid: Option<i32> = ctx
        .app_root()
        .ok()
        .and_then(|root| std::fs::read_to_string(root.join("apiserver.pid")).ok())
        .and_then(|text| text.trim().parse().ok());
    client.system().shutdown(v1::ShutdownRequest {}).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if !pid.is_some_and(process_alive)
            && api::Client::connect(&socket, Duration::from_millis(300))
                .await
                .is_err()
        {
            outln!("container daemon stopped");
            return Ok(0);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(CliError::Daemon(
        "the container daemon is still answering 10s after it was asked to stop".into(),
    ))
}

/// Whether process `pid` exists and has not exited (a zombie has). The one /proc reader
/// for liveness in the product (the daemon tells runtimes' liveness by their bundle lock).
#[cfg(target_os = "linux")]
fn process_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !matches!(
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim().chars().next()),
            Some('Z' | 'X') | None
        )
    })
}

/// Whether process `pid` exists (no procfs here: signal 0 tells).
#[cfg(not(target_os = "linux"))]
fn process_alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks the pid; it sends nothing.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// `container system status`: exits 1 when the daemon is not running (Apple's rule).
pub async fn status(ctx: &Context, a: &SystemStatusArgs) -> CliResult {
    let socket = ctx.socket()?;
    let app_root = ctx.app_root()?;
    let reply = match api::Client::connect(&socket, Duration::from_secs(3)).await {
        Ok(client) => Some(
            client
                .system()
                .status(v1::StatusRequest {})
                .await?
                .into_inner(),
        ),
        Err(api::ConnectError::VersionMismatch { .. }) | Err(_) => None,
    };
    let Some(s) = reply else {
        if a.format == Format::Json {
            outln!(
                "{}",
                output::json_line(&json!({"status": "not running", "appRoot": app_root}))
            );
        } else {
            let rows = vec![
                vec!["status".to_owned(), "not running".to_owned()],
                vec!["appRoot".to_owned(), app_root.display().to_string()],
            ];
            out!("{}", output::table(&["FIELD", "VALUE"], &rows));
        }
        return Ok(1);
    };
    let v = s.version.clone().unwrap_or_default();
    if a.format == Format::Json {
        outln!(
            "{}",
            output::json_line(&json!({
                "status": s.status, "appRoot": s.app_root, "dockerSocket": s.docker_socket,
                "installRoot": s.install_root,
                "logRoot": s.log_root, "vmm": s.vmm, "containersRunning": s.containers_running,
                "apiServerVersion": v.version, "apiServerCommit": v.commit,
                "apiServerBuild": v.build, "apiServerAppName": v.app_name,
                "kernel": kernel_summary(s.kernel.as_ref()),
                "pool": s.pool.as_ref().map(|p| json!({
                    "size": p.size, "ready": p.ready, "booting": p.booting,
                    "memoryMiB": p.memory_mib, "residentBytes": p.resident_bytes,
                })),
            }))
        );
    } else {
        let rows: Vec<Vec<String>> = [
            ("status", s.status.clone()),
            ("appRoot", s.app_root.clone()),
            ("dockerSocket", s.docker_socket.clone()),
            ("installRoot", s.install_root.clone()),
            ("logRoot", s.log_root.clone()),
            ("vmm", s.vmm.clone()),
            ("containersRunning", s.containers_running.to_string()),
            ("apiserver.version", v.version.clone()),
            ("apiserver.commit", v.commit.clone()),
            ("apiserver.build", v.build.clone()),
            ("apiserver.appName", v.app_name.clone()),
            ("kernel", kernel_summary(s.kernel.as_ref())),
            ("pool", pool_summary(s.pool.as_ref())),
        ]
        .into_iter()
        .map(|(k, v)| vec![k.to_owned(), v])
        .collect();
        out!("{}", output::table(&["FIELD", "VALUE"], &rows));
    }
    Ok(0)
}

/// One line for the warm pool: how full it is and what it holds in memory.
fn pool_summary(p: Option<&v1::WarmPool>) -> String {
    match p {
        None => "unknown".to_owned(),
        Some(p) if p.size == 0 && p.ready + p.booting == 0 => {
            "off (container.pool.size 0)".to_owned()
        }
        Some(p) => format!(
            "{} ready, {} booting of {}; {} MiB guest memory each, {} MiB resident in all",
            p.ready,
            p.booting,
            p.size,
            p.memory_mib,
            p.resident_bytes >> 20
        ),
    }
}

/// One line for the guest kernel: its path and what it was built from, or why there is none.
fn kernel_summary(k: Option<&v1::GuestKernel>) -> String {
    let Some(k) = k else {
        return "unknown".to_owned();
    };
    if k.path.is_empty() {
        return k.error.clone();
    }
    match &k.build {
        Some(b) => format!(
            "{} ({} {}, recipe {})",
            k.path, b.source_package, b.package_version, b.recipe
        ),
        None if !k.error.is_empty() => format!("{} ({})", k.path, k.error),
        None => format!("{} (no build info)", k.path),
    }
}

/// `container system version`: the CLI's row always; the daemon's when it answers.
pub async fn version(ctx: &Context, a: &SystemVersionArgs) -> CliResult {
    let cli_row = vec![
        "container".to_owned(),
        env!("CARGO_PKG_VERSION").to_owned(),
        build_kind().to_owned(),
        option_env!("CONTAINER_GIT_COMMIT")
            .unwrap_or("unknown")
            .to_owned(),
    ];
    let daemon = ctx.client().await;
    let mut rows = vec![cli_row];
    let mut kernel = None;
    if let Ok(client) = &daemon {
        let v = client.daemon_version();
        rows.push(vec![
            v.app_name.clone(),
            v.version.clone(),
            v.build.clone(),
            v.commit.clone(),
        ]);
        kernel = client
            .system()
            .status(v1::StatusRequest {})
            .await
            .ok()
            .and_then(|r| r.into_inner().kernel);
    }
    // The guest kernel's row: its package version, the source package it came from, and
    // the source tarball's digest standing in for a commit.
    if let Some(k) = &kernel {
        let b = k.build.clone().unwrap_or_default();
        let or_unknown = |s: &str| {
            if s.is_empty() {
                "unknown".to_owned()
            } else {
                s.to_owned()
            }
        };
        rows.push(vec![
            "guest-kernel".to_owned(),
            if k.path.is_empty() {
                "none found".to_owned()
            } else {
                or_unknown(&b.package_version)
            },
            or_unknown(&b.source_package),
            or_unknown(b.tarball_sha256.get(..12).unwrap_or(&b.tarball_sha256)),
        ]);
    }
    if a.format == Format::Json {
        let mut all: Vec<_> = rows
            .iter()
            .map(|r| json!({"appName": r[0], "version": r[1], "buildType": r[2], "commit": r[3]}))
            .collect();
        if let (Some(k), Some(last)) = (&kernel, all.last_mut()) {
            let b = k.build.clone().unwrap_or_default();
            *last = json!({
                "appName": "guest-kernel", "version": b.package_version,
                "buildType": b.source_package, "commit": b.tarball_sha256,
                "path": k.path, "initramfs": k.initramfs, "error": k.error,
                "sourcePackage": b.source_package, "packageVersion": b.package_version,
                "tarballSha256": b.tarball_sha256, "configSha256": b.config_sha256,
                "recipe": b.recipe,
            });
        }
        outln!("{}", output::json_line(&serde_json::Value::Array(all)));
    } else {
        out!(
            "{}",
            output::table(&["COMPONENT", "VERSION", "BUILD", "COMMIT"], &rows)
        );
    }
    daemon.map(|_| 0)
}

/// `container system logs`.
pub async fn logs(ctx: &Context, a: &SystemLogsArgs) -> CliResult {
    let last_seconds = a
        .last
        .as_deref()
        .map(|t| t.parse::<spec::Period>().map_err(CliError::usage))
        .transpose()?
        .map_or(0, |p| u32::try_from(p.0).unwrap_or(u32::MAX));
    let client = ctx.client().await?;
    let mut stream = client
        .system()
        .logs(v1::SystemLogsRequest {
            follow: a.follow,
            last_seconds,
        })
        .await?
        .into_inner();
    while let Some(line) = stream.message().await? {
        outln!("{}", line.line);
    }
    Ok(0)
}

/// `container events`: the recorded events from `--since`, then live ones until `--until`
/// (or until interrupted), one per line.
pub async fn events(ctx: &Context, a: &EventsArgs) -> CliResult {
    let now = now_nanos();
    let since_nanos = time_flag("since", a.since.as_deref(), now)?;
    let until_nanos = time_flag("until", a.until.as_deref(), now)?;
    let filters = a
        .filter
        .iter()
        .map(|f| {
            f.split_once('=')
                .map(|(k, v)| v1::EventFilter {
                    key: k.trim().to_ascii_lowercase(),
                    value: v.to_owned(),
                })
                .ok_or_else(|| CliError::Usage(format!("--filter {f:?}: expected KEY=VALUE")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let client = ctx.client().await?;
    let mut stream = client
        .system()
        .events(v1::EventsRequest {
            since_nanos,
            until_nanos,
            filters,
        })
        .await?
        .into_inner();
    while let Some(e) = stream.message().await? {
        match a.format {
            Format::Json => outln!("{}", output::json_line(&output::event_json(&e))),
            Format::Table => outln!("{}", output::event_line(&e)),
        }
    }
    Ok(0)
}

/// `container system df`.
pub async fn df(ctx: &Context, a: &SystemDfArgs) -> CliResult {
    let client = ctx.client().await?;
    let usage = client
        .system()
        .disk_usage(v1::DiskUsageRequest {})
        .await?
        .into_inner();
    let kinds = [
        ("Images", usage.images.unwrap_or_default()),
        ("Containers", usage.containers.unwrap_or_default()),
        ("Local Volumes", usage.volumes.unwrap_or_default()),
    ];
    let pool = usage.pool.unwrap_or_default();
    if a.format == Format::Json {
        let mut value: serde_json::Map<String, serde_json::Value> = kinds
            .iter()
            .map(|(name, u)| {
                let key = name.split(' ').next_back().unwrap_or(name).to_ascii_lowercase();
                (key, json!({"total": u.total, "active": u.active, "sizeInBytes": u.size_bytes, "reclaimable": u.reclaimable_bytes}))
            })
            .collect();
        let mut pool_json = json!({
            "size": pool.size, "ready": pool.ready, "booting": pool.booting,
            "memoryMiB": pool.memory_mib, "residentBytes": pool.resident_bytes,
        });
        if a.verbose
            && let Some(o) = pool_json.as_object_mut()
        {
            let guests: Vec<_> = usage
                .pool_guests
                .iter()
                .map(|g| {
                    json!({
                        "slot": g.slot, "ready": g.ready, "pid": g.pid, "cpus": g.cpus,
                        "memoryMiB": g.memory_mib, "residentBytes": g.resident_bytes,
                        "ageSeconds": g.age_seconds,
                    })
                })
                .collect();
            o.insert("guests".into(), guests.into());
        }
        value.insert("pool".into(), pool_json);
        outln!("{}", output::json_line(&serde_json::Value::Object(value)));
    } else {
        let mut rows: Vec<Vec<String>> = kinds
            .iter()
            .map(|(name, u)| {
                let percent = (u.reclaimable_bytes * 100)
                    .checked_div(u.size_bytes)
                    .unwrap_or(0);
                vec![
                    (*name).to_owned(),
                    u.total.to_string(),
                    u.active.to_string(),
                    spec::human_bytes(u.size_bytes),
                    format!("{} ({percent}%)", spec::human_bytes(u.reclaimable_bytes)),
                ]
            })
            .collect();
        rows.push(pool_row(&pool));
        out!(
            "{}",
            output::table(&["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"], &rows)
        );
        if pool.size > 0 || pool.ready + pool.booting > 0 {
            let memory = if pool.memory_mib == 0 {
                // The pool boots nothing until a start has shown it the shape to boot.
                "no shape learned yet".to_owned()
            } else {
                format!("{} MiB guest memory each", pool.memory_mib)
            };
            outln!(
                "\nPool: {} ready, {} booting of {} (container.pool.size); {memory}; its SIZE is resident host memory, freed by `container system property set container.pool.size 0`",
                pool.ready,
                pool.booting,
                pool.size,
            );
        }
        if a.verbose && !usage.pool_guests.is_empty() {
            let rows: Vec<Vec<String>> = usage
                .pool_guests
                .iter()
                .map(|g| {
                    vec![
                        g.slot.clone(),
                        if g.ready { "ready" } else { "booting" }.to_owned(),
                        g.pid.to_string(),
                        g.cpus.to_string(),
                        format!("{} MiB", g.memory_mib),
                        spec::human_bytes(g.resident_bytes),
                        format!("{}s", g.age_seconds),
                    ]
                })
                .collect();
            outln!();
            out!(
                "{}",
                output::table(
                    &[
                        "POOLED GUEST",
                        "STATE",
                        "PID",
                        "CPUS",
                        "GUEST MEMORY",
                        "RESIDENT",
                        "AGE"
                    ],
                    &rows
                )
            );
        }
    }
    Ok(0)
}

/// The `Pool` row of `system df`: its guests, none active (a pooled guest serves no
/// container until claimed, and then it leaves the pool), and the host memory they hold,
/// all of it given back when the pool is turned off.
fn pool_row(pool: &v1::WarmPool) -> Vec<String> {
    let total = pool.ready + pool.booting;
    vec![
        "Pool".to_owned(),
        total.to_string(),
        "0".to_owned(),
        spec::human_bytes(pool.resident_bytes),
        format!(
            "{} ({}%)",
            spec::human_bytes(pool.resident_bytes),
            if pool.resident_bytes > 0 { 100 } else { 0 }
        ),
    ]
}

fn property_json(p: &v1::Property) -> serde_json::Value {
    json!({"key": p.key, "value": p.value, "default": p.default_value, "isSet": p.is_set, "type": p.r#type, "description": p.description})
}

/// `container system property ...`.
pub async fn property(ctx: &Context, command: &PropertyCommand) -> CliResult {
    let client = ctx.client().await?;
    let mut system = client.system();
    match command {
        PropertyCommand::List(a) => {
            let list = system
                .property_list(v1::PropertyListRequest {})
                .await?
                .into_inner()
                .properties;
            if a.format == Format::Json {
                let all: Vec<_> = list.iter().map(property_json).collect();
                outln!("{}", output::json_line(&serde_json::Value::Array(all)));
            } else {
                let rows: Vec<_> = list
                    .iter()
                    .map(|p| {
                        vec![
                            p.key.clone(),
                            p.r#type.clone(),
                            p.value.clone(),
                            p.description.clone(),
                        ]
                    })
                    .collect();
                out!(
                    "{}",
                    output::table(&["ID", "TYPE", "VALUE", "DESCRIPTION"], &rows)
                );
            }
        }
        PropertyCommand::Get(a) => {
            let p = system
                .property_get(v1::PropertyGetRequest { key: a.key.clone() })
                .await?
                .into_inner();
            outln!("{}", p.value);
        }
        PropertyCommand::Set(a) => {
            system
                .property_set(v1::PropertySetRequest {
                    key: a.key.clone(),
                    value: a.value.clone(),
                })
                .await?;
        }
        PropertyCommand::Clear(a) => {
            system
                .property_clear(v1::PropertyClearRequest { key: a.key.clone() })
                .await?;
        }
    }
    Ok(0)
}

/// `container system kernel set`.
pub async fn kernel_set(ctx: &Context, a: &KernelSetArgs) -> CliResult {
    // Local paths are resolved here: the daemon's working directory is not the user's.
    let absolute = |p: &str| -> Result<String, CliError> {
        if p.contains("://") || Path::new(p).is_absolute() {
            Ok(p.to_owned())
        } else {
            std::env::current_dir()
                .map(|d| d.join(p).to_string_lossy().into_owned())
                .map_err(|e| CliError::io("reading the working directory", e))
        }
    };
    let tar = a
        .tar
        .as_deref()
        .map(absolute)
        .transpose()?
        .unwrap_or_default();
    // Inside a tar the binary is a member path, not a host path.
    let binary = match (&a.binary, a.tar.is_some()) {
        (Some(b), false) => absolute(b)?,
        (Some(b), true) => b.clone(),
        (None, _) => String::new(),
    };
    let arch = a
        .arch
        .as_deref()
        .map(spec::platform::normalize_arch)
        .unwrap_or_default();
    let client = ctx.client().await?;
    let installed = client
        .system()
        .kernel_set(v1::KernelSetRequest {
            arch,
            binary,
            tar,
            digest: a.digest.clone().unwrap_or_default(),
            force: a.force,
            recommended: a.recommended,
        })
        .await?
        .into_inner();
    outln!("{}", installed.path);
    Ok(0)
}
