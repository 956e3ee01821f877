//! One container's life: its writable layer, its VM, its root filesystem in the guest, its
//! init process with stdio over vsock, execs, and the orderly end (exit code recorded, VM
//! shut down cleanly).
//!
//! Guest layout (all under /run/container, in the guest's own mount namespace):
//! ```text
//! lower/    the image's ext4, read-only (disk serial "rootfs")
//! rw/       the writable layer's ext4 (disk serial "rw"): upper/ and work/ of the overlay
//! rootfs/   the overlay the container pivots into
//! etc/      hostname, hosts, resolv.conf, bind-mounted over the container's /etc files
//!           (as Docker does, so they never land in the writable layer)
//! volumes/N the Nth volume's ext4 (disk serial "volN") or shared host directory (virtio-fs
//!           tag "volN"; for a single-file bind mount, the file's parent directory), bind-
//!           mounted into the container (for a file, just the file)
//! sockets/N.sock  the relay socket of the Nth volume when it is a host Unix socket
//! ```
//!
//! Socket relays (`-v HOST_SOCKET:PATH`, `--publish-socket`): see [`crate::relay`].

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agent::client::{AgentClient, ClientError, ConnectOptions};
use agent::v1 as pb;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt, WriteHalf};
use tokio::sync::{broadcast, mpsc, watch};
use vmm::{
    DiskConfig, NicConfig, ShareConfig, VirtualMachine, VmConfig, VmError, VsockListener,
    VsockStream,
};

use runtime_api::bundle::Bundle;
use runtime_api::config::{RuntimeConfig, VolumeKind};
use runtime_api::state::{
    EXIT_CANNOT_EXECUTE, EXIT_NOT_FOUND, EXIT_RUNTIME_FAILED, State, Status, one_line,
};
use runtime_api::stdio_log::{StdioLog, Stream, Utf8Carry};

pub use crate::error::ContainerError;
pub use crate::guest_layout::{GUEST_DIR, GUEST_ROOTFS};

/// The first host vsock port handed out for stdio (as Apple's runtime does).
pub const FIRST_STDIO_PORT: u32 = 0x1000_0000;
/// How long the guest agent may take to answer after the VM started (TCG boots are slow).
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(90);
/// How long the guest may take to dial a stdio port after CreateProcess.
const DIAL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a clean VM shutdown may take before the VM is killed.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(15);
/// How often the guest clock is set again.
const TIME_SYNC_INTERVAL: Duration = Duration::from_secs(30);

fn agent_err(step: impl Into<String>) -> impl FnOnce(ClientError) -> ContainerError {
    let step = step.into();
    move |source| ContainerError::Agent { step, source }
}

fn io_err(op: impl Into<String>) -> impl FnOnce(std::io::Error) -> ContainerError {
    let op = op.into();
    move |source| ContainerError::Io { op, source }
}

/// What attachers of the init process receive.
#[derive(Debug, Clone)]
pub enum Output {
    /// Bytes from stdout (with a terminal, everything).
    Stdout(Vec<u8>),
    /// Bytes from stderr.
    Stderr(Vec<u8>),
    /// The exit code; nothing follows.
    Exit(i32),
}

/// How the container ended, once it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// The exit code (see [`State::exit_code`]).
    pub exit_code: i32,
    /// RFC 3339.
    pub finished_at: String,
    /// Why it failed to boot or start, if it did.
    pub error: Option<String>,
}

/// A running container: its VM, its agent and its init process.
pub struct Container {
    bundle: Bundle,
    config: RuntimeConfig,
    /// The spec the init process was created from (root, mounts and hostname filled in).
    spec: Value,
    vm: Arc<dyn VirtualMachine>,
    agent: AgentClient,
    state: Mutex<State>,
    state_tx: watch::Sender<State>,
    output: broadcast::Sender<Output>,
    stdin: tokio::sync::Mutex<Option<WriteHalf<VsockStream>>>,
    next_port: AtomicU32,
    next_exec: AtomicU64,
    /// Set (before `Output::Exit` is broadcast) when the init process has exited.
    exited: watch::Sender<Option<i32>>,
    /// Set once the VM is down too: the container's end.
    finished: watch::Sender<Option<Finished>>,
    /// Exec ids that are running, for Kill and Resize.
    execs: Mutex<std::collections::HashSet<String>>,
    /// The userspace proxies of `-p` (bridge networking), until the container finishes.
    proxies: Mutex<Option<net::proxy::PortProxies>>,
    /// The init process's output pumps, until the watcher takes them.
    pumps: Mutex<Option<Vec<tokio::task::JoinHandle<()>>>>,
    /// The socket relays; taken (stopped) when the container has finished.
    relays: Mutex<Option<crate::relay::Relays>>,
    /// The VM's runtime dir when it had to live outside the bundle; removed with the
    /// container (declared after `vm`, so the VM is gone first).
    _vm_tmp_dir: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for Container {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Container")
            .field("id", &self.config.id)
            .finish()
    }
}

/// Boots a VM on this platform's hypervisor; returns it with the host pids of its processes.
#[cfg(target_os = "linux")]
async fn boot_vm(config: VmConfig) -> Result<(Arc<dyn VirtualMachine>, Vec<u32>), VmError> {
    let qemu = vmm_qemu::Qemu::new(vmm_qemu::QemuOptions::default())?;
    let vm = qemu.boot_vm(config).await?;
    tracing::info!(pids = ?vm.pids(), accel = ?vm.accel(), "vm started");
    let pids = vm.pids().iter().map(|(_, pid)| *pid).collect();
    Ok((Arc::new(vm), pids))
}

#[cfg(not(target_os = "linux"))]
async fn boot_vm(_config: VmConfig) -> Result<(Arc<dyn VirtualMachine>, Vec<u32>), VmError> {
    Err(VmError::MissingTool {
        program: "a hypervisor backend".into(),
        hint: "only the QEMU backend (Linux) is wired into container-runtime so far".into(),
    })
}

/// Creates the writable layer if it is missing: formatted under a temp name beside it and
/// renamed into place, so a crash never leaves a half-formatted layer behind.
pub fn ensure_writable_layer(config: &RuntimeConfig) -> Result<(), ContainerError> {
    let layer = &config.writable_layer;
    if layer.path.is_file() {
        return Ok(());
    }
    let err = |source| ContainerError::WritableLayer {
        path: layer.path.clone(),
        source,
    };
    let dir = layer
        .path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".rw-")
        .tempfile_in(dir)
        .map_err(io_err(format!("creating a temp file in {}", dir.display())))?
        .into_temp_path();
    let options = ext4::Options {
        label: "container-rw".into(),
        ..ext4::Options::default()
    };
    ext4::format_empty(&tmp, layer.size_bytes, &options).map_err(err)?;
    tmp.persist(&layer.path).map_err(|e| ContainerError::Io {
        op: format!("renaming into {}", layer.path.display()),
        source: e.error,
    })?;
    Ok(())
}

/// Binds the host side of every published port (bridge networking) and proxies it to the
/// container's first address; nothing is bound when one port cannot be.
async fn publish_ports(
    config: &RuntimeConfig,
) -> Result<Option<net::proxy::PortProxies>, ContainerError> {
    if config.published_ports.is_empty() {
        return Ok(None);
    }
    let target = config
        .networks
        .first()
        .and_then(|n| n.address.as_deref())
        .and_then(|a| a.split('/').next())
        .and_then(|a| a.parse::<std::net::IpAddr>().ok())
        .ok_or_else(|| {
            ContainerError::InvalidArgument(
                "ports are published but the container has no address".into(),
            )
        })?;
    let specs = config
        .published_ports
        .iter()
        .map(|p| p.parse::<spec::PortSpec>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ContainerError::InvalidArgument(e.to_string()))?;
    net::proxy::PortProxies::start(&specs, target, net::proxy::ProxyOptions::default())
        .await
        .map(Some)
        .map_err(|e| ContainerError::FailedPrecondition(one_line(&e.to_string())))
}

/// The VM's runtime dir: `<bundle>/vm` when short enough for its Unix sockets, else a
/// private dir under $TMPDIR (returned so the caller removes it at the end).
fn vm_runtime_dir(
    bundle: &Bundle,
) -> Result<(std::path::PathBuf, Option<tempfile::TempDir>), ContainerError> {
    let dir = bundle.vm_dir();
    // 107 bytes of sun_path minus "/vsock_4294967295".
    if dir.as_os_str().len() <= 90 {
        return Ok((dir, None));
    }
    let tmp = tempfile::Builder::new()
        .prefix("crt-")
        .tempdir()
        .map_err(io_err("creating the vm runtime dir"))?;
    Ok((tmp.path().join("vm"), Some(tmp)))
}

/// Docker's default capabilities, for a spec that names none.
pub const DOCKER_DEFAULT_CAPS: &[&str] = &spec::capability::DOCKER_DEFAULT_CAPABILITIES;

/// The IPv6 lines Docker puts in every /etc/hosts after the localhost lines.
const DOCKER_IPV6_HOSTS: &[(&str, &str)] = &[
    ("fe00::0", "ip6-localnet"),
    ("ff00::0", "ip6-mcastprefix"),
    ("ff02::1", "ip6-allnodes"),
    ("ff02::2", "ip6-allrouters"),
];

/// Docker's default mounts, used when the spec has none.
fn default_mounts(shm_size: u64) -> Vec<Value> {
    vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
               "options": ["ro", "nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", format!("size={shm_size}")]}),
    ]
}

/// The init process's spec: the config's spec with root, hostname, mounts (defaults, tmpfs,
/// volumes, the /etc files), the memory limit and the namespaces filled in.
pub fn build_spec(config: &RuntimeConfig, write_resolv: bool) -> Result<Value, ContainerError> {
    let mut spec = serde_json::to_value(&config.spec)
        .map_err(|e| ContainerError::InvalidArgument(format!("spec: {e}")))?;
    let obj = spec
        .as_object_mut()
        .ok_or_else(|| ContainerError::InvalidArgument("spec is not an object".into()))?;
    obj.insert(
        "root".into(),
        json!({"path": GUEST_ROOTFS, "readonly": config.read_only}),
    );
    obj.insert("hostname".into(), json!(config.hostname));
    // vminitd grants every capability to a process whose spec names none; a container gets
    // Docker's defaults instead.
    if let Some(process) = obj.get_mut("process").and_then(Value::as_object_mut) {
        process.entry("capabilities").or_insert_with(|| {
            json!({"bounding": DOCKER_DEFAULT_CAPS,
                                      "effective": DOCKER_DEFAULT_CAPS,
                                      "permitted": DOCKER_DEFAULT_CAPS})
        });
    }
    let shm = config.shm_size_bytes.unwrap_or(64 << 20);
    let mut mounts = match obj.get("mounts").and_then(Value::as_array) {
        Some(m) => m.clone(),
        None => default_mounts(shm),
    };
    for t in &config.tmpfs {
        mounts.retain(|m| m["destination"] != json!(t.destination));
        mounts.push(
            json!({"destination": t.destination, "type": "tmpfs", "source": "tmpfs",
                            "options": t.options}),
        );
    }
    for (i, v) in config.volumes.iter().enumerate() {
        let mut options = vec!["rbind", "rprivate"];
        if v.read_only {
            options.push("ro");
        }
        let source = match v.kind {
            VolumeKind::Block | VolumeKind::Directory => format!("{GUEST_DIR}/volumes/{i}"),
            VolumeKind::File => {
                let name = v.path.file_name().ok_or_else(|| {
                    ContainerError::InvalidArgument(format!("{} names no file", v.path.display()))
                })?;
                format!("{GUEST_DIR}/volumes/{i}/{}", name.to_string_lossy())
            }
            VolumeKind::Socket => crate::relay::guest_socket_path(i),
        };
        mounts.push(json!({"destination": v.destination, "type": "bind",
                            "source": source, "options": options}));
    }
    let mut etc = vec!["hostname", "hosts"];
    if write_resolv {
        etc.push("resolv.conf");
    }
    for f in etc {
        let dest = format!("/etc/{f}");
        if mounts.iter().any(|m| m["destination"] == json!(dest)) {
            continue; // the user mounted their own
        }
        let mut options = vec!["rbind", "rprivate"];
        if config.read_only {
            options.push("ro");
        }
        mounts.push(json!({"destination": dest, "type": "bind",
                            "source": format!("{GUEST_DIR}/etc/{f}"), "options": options}));
    }
    obj.insert("mounts".into(), Value::Array(mounts));
    let linux = obj
        .entry("linux")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| ContainerError::InvalidArgument("spec.linux is not an object".into()))?;
    linux.entry("namespaces").or_insert_with(|| {
        json!([{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"},
               {"type": "cgroup"}])
    });
    let resources = linux
        .entry("resources")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| {
            ContainerError::InvalidArgument("spec.linux.resources is not an object".into())
        })?;
    let memory = resources
        .entry("memory")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| {
            ContainerError::InvalidArgument("spec.linux.resources.memory is not an object".into())
        })?;
    memory
        .entry("limit")
        .or_insert_with(|| json!(config.memory_bytes));
    Ok(spec)
}

/// See [`Container::guest_write_dir`].
fn guest_write_dir(config: &RuntimeConfig, path: &str) -> Result<(String, String), ContainerError> {
    let trimmed = check_container_path(path)?;
    let under = |dest: &str| {
        let dest = dest.trim_end_matches('/');
        (trimmed == dest || trimmed.starts_with(&format!("{dest}/")))
            .then(|| trimmed[dest.len()..].to_string())
    };
    for (i, v) in config.volumes.iter().enumerate() {
        let Some(rest) = under(&v.destination) else {
            continue;
        };
        match v.kind {
            VolumeKind::Block | VolumeKind::Directory => {
                let rest = if rest.is_empty() { "/".into() } else { rest };
                return Ok((format!("{GUEST_DIR}/volumes/{i}"), rest));
            }
            VolumeKind::File | VolumeKind::Socket => {
                return Err(ContainerError::FailedPrecondition(format!(
                    "{path} is a file bind-mounted from the host; copy into a directory"
                )));
            }
        }
    }
    for t in &config.tmpfs {
        if under(&t.destination).is_some() {
            return Err(ContainerError::FailedPrecondition(format!(
                "{path} is on a tmpfs of the container; copying into it is not supported"
            )));
        }
    }
    let path = if trimmed.is_empty() { "/" } else { trimmed };
    Ok((GUEST_ROOTFS.to_string(), path.to_string()))
}

/// The last lines of the VM's console, for the runtime's log.
fn console_tail(path: &std::path::Path) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Checks that `path` is absolute without `..`; returns it without a trailing slash.
pub(crate) fn check_container_path(path: &str) -> Result<&str, ContainerError> {
    if !path.starts_with('/') {
        return Err(ContainerError::InvalidArgument(format!(
            "{path:?} is not an absolute path"
        )));
    }
    if path.split('/').any(|c| c == "..") {
        return Err(ContainerError::InvalidArgument(format!(
            "{path:?} must not contain '..'"
        )));
    }
    Ok(path.trim_end_matches('/'))
}

/// Docker's exit code for a process that could not be started, from the guest's message.
fn start_failure_code(message: &str) -> i32 {
    let m = message.to_ascii_lowercase();
    if m.contains("not found") || m.contains("no such file") {
        EXIT_NOT_FOUND
    } else if m.contains("permission denied") || m.contains("exec format") || m.contains("exec ") {
        EXIT_CANNOT_EXECUTE
    } else {
        EXIT_RUNTIME_FAILED
    }
}

/// The streams of one process, accepted from the guest.
struct Stdio {
    stdin: Option<VsockStream>,
    stdout: Option<VsockStream>,
    stderr: Option<VsockStream>,
}

/// Host listeners for one process's streams, before the guest dials them.
struct StdioListeners {
    ports: pb::StdioPorts,
    stdin: Option<VsockListener>,
    stdout: Option<VsockListener>,
    stderr: Option<VsockListener>,
}

async fn accept(
    listener: Option<VsockListener>,
    what: &str,
) -> Result<Option<VsockStream>, ContainerError> {
    let Some(mut l) = listener else {
        return Ok(None);
    };
    match tokio::time::timeout(DIAL_TIMEOUT, l.accept()).await {
        Ok(Ok(s)) => Ok(Some(s)),
        Ok(Err(e)) => Err(io_err(format!("accepting the guest's {what} stream"))(e)),
        Err(_) => Err(ContainerError::Io {
            op: format!("waiting for the guest to connect {what}"),
            source: std::io::Error::from(std::io::ErrorKind::TimedOut),
        }),
    }
}

impl StdioListeners {
    async fn accept_all(self) -> Result<Stdio, ContainerError> {
        Ok(Stdio {
            stdin: accept(self.stdin, "stdin").await?,
            stdout: accept(self.stdout, "stdout").await?,
            stderr: accept(self.stderr, "stderr").await?,
        })
    }
}

/// A VM booted with a stopped container's disks and its root filesystem mounted read-only,
/// no process and no network: what `export` and `cp` of a stopped container read from.
pub struct MaintenanceVm {
    /// The VM.
    pub vm: Arc<dyn VirtualMachine>,
    /// Its guest agent.
    pub agent: AgentClient,
    _vm_tmp_dir: Option<tempfile::TempDir>,
}

impl MaintenanceVm {
    /// Boots the VM with the image's rootfs and the container's writable layer, and joins
    /// them read-only at [`GUEST_ROOTFS`] (the writable layer's upper directory as the top
    /// lower layer), so nothing of the container changes.
    pub async fn boot(bundle: &Bundle, config: &RuntimeConfig) -> Result<Self, ContainerError> {
        let layer_config = config.clone();
        tokio::task::spawn_blocking(move || ensure_writable_layer(&layer_config))
            .await
            .map_err(|e| ContainerError::Io {
                op: "creating the writable layer".into(),
                source: std::io::Error::other(e.to_string()),
            })??;
        let (runtime_dir, tmp_dir) = vm_runtime_dir(bundle)?;
        let vm_config = VmConfig {
            kernel: config.kernel.clone(),
            initrd: Some(config.initramfs.clone()),
            cmdline: config.kernel_args.clone(),
            cpus: 1,
            memory_mib: config.vm_memory_mib(),
            disks: vec![
                DiskConfig {
                    id: "rootfs".into(),
                    path: config.rootfs.clone(),
                    read_only: true,
                },
                DiskConfig {
                    id: "rw".into(),
                    path: config.writable_layer.path.clone(),
                    read_only: false,
                },
            ],
            nics: Vec::new(),
            shares: Vec::new(),
            console_log: Some(bundle.boot_log()),
            runtime_dir,
        };
        let (vm, _) = boot_vm(vm_config).await?;
        let connector = vm.connector(agent::AGENT_VSOCK_PORT, Duration::from_secs(2));
        let mounted = async {
            let agent = AgentClient::connect(
                move || {
                    let connector = connector.clone();
                    async move { connector.connect().await.map_err(std::io::Error::other) }
                },
                ConnectOptions {
                    boot_timeout: BOOT_TIMEOUT,
                    ..ConnectOptions::default()
                },
            )
            .await
            .map_err(agent_err("connecting to the guest agent"))?;
            set_time(&agent)
                .await
                .map_err(agent_err("setting the guest clock"))?;
            let mount = |source: String, target: String, fstype: &str, options: Vec<String>| {
                let agent = agent.clone();
                let fstype = fstype.to_string();
                async move {
                    let step = format!("mounting {source} at {target}");
                    agent
                        .mount(pb::MountRequest {
                            source,
                            target,
                            fstype,
                            options,
                            create_target: true,
                        })
                        .await
                        .map_err(agent_err(step))
                }
            };
            mount(
                "block-serial:rootfs".into(),
                format!("{GUEST_DIR}/lower"),
                "ext4",
                vec!["ro".into()],
            )
            .await?;
            mount(
                "block-serial:rw".into(),
                format!("{GUEST_DIR}/rw"),
                "ext4",
                vec![],
            )
            .await?;
            // A layer that never ran has no upper directory yet.
            agent
                .mkdir(pb::MkdirRequest {
                    path: format!("{GUEST_DIR}/rw/upper"),
                    mode: 0o755,
                    parents: true,
                    uid: 0,
                    gid: 0,
                })
                .await
                .map_err(agent_err("creating the upper directory"))?;
            mount(
                "overlay".into(),
                GUEST_ROOTFS.into(),
                "overlay",
                vec![
                    "ro".into(),
                    format!("lowerdir={GUEST_DIR}/rw/upper:{GUEST_DIR}/lower"),
                ],
            )
            .await?;
            Ok::<_, ContainerError>(agent)
        };
        match mounted.await {
            Ok(agent) => Ok(MaintenanceVm {
                vm,
                agent,
                _vm_tmp_dir: tmp_dir,
            }),
            Err(e) => {
                vm.kill().await;
                tracing::error!(
                    "maintenance vm: {e}; console tail:\n{}",
                    console_tail(&bundle.boot_log())
                );
                Err(e)
            }
        }
    }

    /// Syncs and powers the VM off (killed when it does not stop in time).
    pub async fn shutdown(&self) {
        let agent = self.agent.clone();
        let graceful = Box::pin(async move {
            let _ = agent.sync(pb::Empty {}).await;
            let _ = agent
                .shutdown(pb::ShutdownRequest { grace_seconds: 1 })
                .await;
        });
        let stopped = self.vm.stop(graceful, SHUTDOWN_TIMEOUT).await;
        tracing::info!(exit = %stopped.exit, forced = stopped.forced, "maintenance vm stopped");
    }
}

/// Sets the guest's wall clock to the host's.
async fn set_time(agent: &AgentClient) -> Result<(), ClientError> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as i64;
    agent
        .set_time(pb::SetTimeRequest { unix_nanos: nanos })
        .await
        .map(|_| ())
}

impl Container {
    /// Creates the writable layer, boots the VM, prepares the root filesystem and the /etc
    /// files, and creates (but does not start) the init process. On failure nothing is left
    /// running (the VM is killed).
    pub async fn create(
        bundle: Bundle,
        config: RuntimeConfig,
    ) -> Result<Arc<Container>, ContainerError> {
        let layer_config = config.clone();
        tokio::task::spawn_blocking(move || ensure_writable_layer(&layer_config))
            .await
            .map_err(|e| ContainerError::Io {
                op: "creating the writable layer".into(),
                source: std::io::Error::other(e.to_string()),
            })??;

        let (runtime_dir, tmp_dir) = vm_runtime_dir(&bundle)?;
        let mut disks = vec![
            DiskConfig {
                id: "rootfs".into(),
                path: config.rootfs.clone(),
                read_only: true,
            },
            DiskConfig {
                id: "rw".into(),
                path: config.writable_layer.path.clone(),
                read_only: false,
            },
        ];
        let mut shares = Vec::new();
        for (i, v) in config.volumes.iter().enumerate() {
            match v.kind {
                VolumeKind::Block => disks.push(DiskConfig {
                    id: format!("vol{i}"),
                    path: v.path.clone(),
                    read_only: v.read_only,
                }),
                VolumeKind::Directory => shares.push(ShareConfig {
                    tag: format!("vol{i}"),
                    host_path: v.path.clone(),
                    read_only: v.read_only,
                }),
                VolumeKind::File => shares.push(ShareConfig {
                    tag: format!("vol{i}"),
                    host_path: v
                        .path
                        .parent()
                        .map(std::path::Path::to_path_buf)
                        .unwrap_or_else(|| "/".into()),
                    read_only: v.read_only,
                }),
                VolumeKind::Socket => {}
            }
        }
        let vm_config = VmConfig {
            kernel: config.kernel.clone(),
            initrd: Some(config.initramfs.clone()),
            cmdline: config.kernel_args.clone(),
            cpus: config.cpus,
            memory_mib: config.vm_memory_mib(),
            disks,
            nics: config
                .networks
                .iter()
                .map(|n| NicConfig {
                    mac: n.mac.clone(),
                    attachment: n.attachment.clone(),
                })
                .collect(),
            shares,
            console_log: Some(bundle.boot_log()),
            runtime_dir,
        };
        let (vm, vm_pids) = boot_vm(vm_config).await?;
        let boot_log = bundle.boot_log();
        let result = Self::set_up(bundle, config, Arc::clone(&vm), vm_pids, tmp_dir).await;
        if let Err(e) = &result {
            vm.kill().await;
            tracing::error!(
                "setting up the container failed: {e}; vm exit: {:?}; console tail:\n{}",
                vm.exit(),
                console_tail(&boot_log)
            );
        }
        result
    }

    async fn set_up(
        bundle: Bundle,
        config: RuntimeConfig,
        vm: Arc<dyn VirtualMachine>,
        vm_pids: Vec<u32>,
        vm_tmp_dir: Option<tempfile::TempDir>,
    ) -> Result<Arc<Container>, ContainerError> {
        let connector = vm.connector(agent::AGENT_VSOCK_PORT, Duration::from_secs(2));
        let agent = AgentClient::connect(
            move || {
                let connector = connector.clone();
                async move { connector.connect().await.map_err(std::io::Error::other) }
            },
            ConnectOptions {
                boot_timeout: BOOT_TIMEOUT,
                ..ConnectOptions::default()
            },
        )
        .await
        .map_err(agent_err("connecting to the guest agent"))?;
        tracing::info!(version = ?agent.guest_version(), "guest agent connected");
        // Independent steps go out together: each is a round trip through the VMM's vsock,
        // and the guest serves them in parallel.
        let write_resolv = !config.dns.disabled;
        let clock = async {
            set_time(&agent)
                .await
                .map_err(agent_err("setting the guest clock"))
        };
        tokio::try_join!(
            clock,
            Self::mount_rootfs(&agent, &config),
            Self::configure_network(&agent, &config),
            Self::write_etc(&agent, &config, write_resolv),
        )?;
        let spec = build_spec(&config, write_resolv)?;
        let proxies = publish_ports(&config).await?;
        let relays = crate::relay::start(&config, &vm, &agent).await?;

        let (state_tx, _) = watch::channel(State::new(&config.id));
        // At most 256 chunks of 32 KiB wait for a slow attacher; it then skips ahead.
        let (output, _) = broadcast::channel(256);
        let container = Arc::new(Container {
            state: Mutex::new(State::new(&config.id)),
            state_tx,
            bundle,
            spec,
            vm,
            agent,
            output,
            stdin: tokio::sync::Mutex::new(None),
            next_port: AtomicU32::new(FIRST_STDIO_PORT),
            next_exec: AtomicU64::new(1),
            exited: watch::channel(None).0,
            finished: watch::channel(None).0,
            execs: Mutex::new(Default::default()),
            pumps: Mutex::new(None),
            proxies: Mutex::new(proxies),
            relays: Mutex::new(Some(relays)),
            _vm_tmp_dir: vm_tmp_dir,
            config,
        });
        container.create_init().await?;
        container.update_state(|s| s.vm_pids = vm_pids)?;
        let clock = Arc::clone(&container);
        tokio::spawn(async move { clock.sync_clock().await });
        Ok(container)
    }

    async fn mount_rootfs(
        agent: &AgentClient,
        config: &RuntimeConfig,
    ) -> Result<(), ContainerError> {
        let mount = |source: String, target: String, fstype: &str, options: Vec<String>| {
            let agent = agent.clone();
            let fstype = fstype.to_string();
            async move {
                let step = format!("mounting {source} at {target}");
                agent
                    .mount(pb::MountRequest {
                        source,
                        target,
                        fstype,
                        options,
                        create_target: true,
                    })
                    .await
                    .map_err(agent_err(step))
            }
        };
        let mkdir = |path: String| {
            let agent = agent.clone();
            async move {
                agent
                    .mkdir(pb::MkdirRequest {
                        path: path.clone(),
                        mode: 0o755,
                        parents: true,
                        uid: 0,
                        gid: 0,
                    })
                    .await
                    .map_err(agent_err(format!("creating {path}")))
            }
        };
        let writable = async {
            mount(
                "block-serial:rw".into(),
                format!("{GUEST_DIR}/rw"),
                "ext4",
                vec![],
            )
            .await?;
            tokio::try_join!(
                mkdir(format!("{GUEST_DIR}/rw/upper")),
                mkdir(format!("{GUEST_DIR}/rw/work")),
            )
        };
        tokio::try_join!(
            mount(
                "block-serial:rootfs".into(),
                format!("{GUEST_DIR}/lower"),
                "ext4",
                vec!["ro".into()],
            ),
            writable,
        )?;
        mount(
            "overlay".into(),
            GUEST_ROOTFS.into(),
            "overlay",
            vec![format!(
                "lowerdir={GUEST_DIR}/lower,upperdir={GUEST_DIR}/rw/upper,workdir={GUEST_DIR}/rw/work"
            )],
        )
        .await?;
        for (i, v) in config.volumes.iter().enumerate() {
            let options = if v.read_only {
                vec!["ro".into()]
            } else {
                vec![]
            };
            let target = format!("{GUEST_DIR}/volumes/{i}");
            match v.kind {
                VolumeKind::Block => {
                    let source = format!("block-serial:vol{i}");
                    if let Err(e) = mount(source.clone(), target.clone(), "ext4", options).await {
                        if !v.read_only {
                            return Err(e);
                        }
                        // A read-only disk whose journal needs replaying (its last user was
                        // killed) cannot be mounted as is: mount it without the journal.
                        tracing::warn!("{e}; mounting {} without its journal", v.path.display());
                        let options = vec!["ro".into(), "noload".into()];
                        mount(source, target, "ext4", options).await?;
                    }
                }
                VolumeKind::Directory | VolumeKind::File => {
                    mount(format!("vol{i}"), target, "virtiofs", options).await?;
                }
                VolumeKind::Socket => {}
            }
        }
        Ok(())
    }

    async fn configure_network(
        agent: &AgentClient,
        config: &RuntimeConfig,
    ) -> Result<(), ContainerError> {
        if config.networks.is_empty() {
            return Ok(());
        }
        let links = agent
            .list_links(pb::Empty {})
            .await
            .map_err(agent_err("listing the guest's links"))?;
        for (i, net) in config.networks.iter().enumerate() {
            let name = links
                .links
                .iter()
                .find(|l| l.mac.eq_ignore_ascii_case(&net.mac))
                .map(|l| l.name.clone())
                .ok_or_else(|| {
                    ContainerError::FailedPrecondition(format!(
                        "the guest has no link with mac {}",
                        net.mac
                    ))
                })?;
            agent
                .link_set(pb::LinkSetRequest {
                    name: name.clone(),
                    mac: String::new(),
                    up: true,
                    mtu: net.mtu.unwrap_or(0),
                    rename_to: String::new(),
                })
                .await
                .map_err(agent_err(format!("bringing up {name}")))?;
            if let Some(cidr) = &net.address {
                agent
                    .address_add(pb::AddressAddRequest {
                        link: name.clone(),
                        cidr: cidr.clone(),
                    })
                    .await
                    .map_err(agent_err(format!("adding {cidr} to {name}")))?;
            }
            if i == 0
                && let Some(gw) = &net.gateway
            {
                agent
                    .route_add(pb::RouteAddRequest {
                        link: name.clone(),
                        destination: String::new(),
                        gateway: gw.clone(),
                    })
                    .await
                    .map_err(agent_err(format!("adding the default route via {gw}")))?;
            }
        }
        Ok(())
    }

    async fn write_etc(
        agent: &AgentClient,
        config: &RuntimeConfig,
        write_resolv: bool,
    ) -> Result<(), ContainerError> {
        let etc = format!("{GUEST_DIR}/etc");
        agent
            .write_file(pb::WriteFileRequest {
                path: format!("{etc}/hostname"),
                data: format!("{}\n", config.hostname).into_bytes(),
                mode: 0o644,
                append: false,
                create_parents: true,
            })
            .await
            .map_err(agent_err("writing /etc/hostname"))?;
        let mut entries: Vec<pb::HostsEntry> = DOCKER_IPV6_HOSTS
            .iter()
            .map(|(ip, name)| pb::HostsEntry {
                ip: ip.to_string(),
                names: vec![name.to_string()],
            })
            .collect();
        if let Some(ip) = config
            .networks
            .first()
            .and_then(|n| n.address.as_deref())
            .and_then(|a| a.split('/').next())
        {
            entries.push(pb::HostsEntry {
                ip: ip.to_string(),
                names: vec![config.hostname.clone()],
            });
        }
        entries.extend(config.extra_hosts.iter().map(|h| pb::HostsEntry {
            ip: h.ip.clone(),
            names: h.names.clone(),
        }));
        agent
            .configure_hosts(pb::ConfigureHostsRequest {
                path: format!("{etc}/hosts"),
                entries,
            })
            .await
            .map_err(agent_err("writing /etc/hosts"))?;
        if write_resolv {
            let mut nameservers = config.dns.nameservers.clone();
            if nameservers.is_empty()
                && let Some(gw) = config.networks.first().and_then(|n| n.gateway.clone())
            {
                nameservers.push(gw);
            }
            agent
                .configure_dns(pb::ConfigureDnsRequest {
                    path: format!("{etc}/resolv.conf"),
                    nameservers,
                    search: config.dns.search.clone(),
                    options: config.dns.options.clone(),
                })
                .await
                .map_err(agent_err("writing /etc/resolv.conf"))?;
        }
        Ok(())
    }

    fn port(&self) -> u32 {
        self.next_port.fetch_add(1, Ordering::Relaxed)
    }

    async fn listen(
        &self,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> Result<StdioListeners, ContainerError> {
        let mut ports = pb::StdioPorts::default();
        let open = |want: bool, port: &mut u32| {
            if want {
                *port = self.port();
            }
            want.then_some(*port)
        };
        let stdin_port = open(stdin, &mut ports.stdin_port);
        let stdout_port = open(stdout, &mut ports.stdout_port);
        let stderr_port = open(stderr, &mut ports.stderr_port);
        let listen = |p: Option<u32>| async move {
            match p {
                Some(p) => self.vm.listen(p).await.map(Some),
                None => Ok(None),
            }
        };
        Ok(StdioListeners {
            ports,
            stdin: listen(stdin_port).await?,
            stdout: listen(stdout_port).await?,
            stderr: listen(stderr_port).await?,
        })
    }

    async fn create_init(self: &Arc<Self>) -> Result<(), ContainerError> {
        let c = &self.config;
        let listeners = self.listen(c.stdin_open, true, !c.terminal).await?;
        let spec = serde_json::to_vec(&self.spec)
            .map_err(|e| ContainerError::InvalidArgument(format!("spec: {e}")))?;
        let request = pb::CreateProcessRequest {
            id: c.id.clone(),
            container_id: c.id.clone(),
            oci_spec: spec,
            stdio: Some(listeners.ports),
            terminal: c.terminal,
            user: c.user.clone().unwrap_or_default(),
            init: c.init,
        };
        let agent = self.agent.clone();
        let (created, stdio) = tokio::join!(
            async move { agent.create_process(request).await },
            listeners.accept_all()
        );
        created.map_err(|e| self.start_error("creating the init process", e))?;
        let stdio = stdio?;
        let log = Arc::new(
            StdioLog::open(&self.bundle.stdio_log()).map_err(io_err(format!(
                "creating {}",
                self.bundle.stdio_log().display()
            )))?,
        );
        let mut pumps = Vec::new();
        for (stream, kind) in [
            (stdio.stdout, Stream::Stdout),
            (stdio.stderr, Stream::Stderr),
        ] {
            if let Some(s) = stream {
                pumps.push(tokio::spawn(pump_init_output(
                    s,
                    kind,
                    Arc::clone(&log),
                    self.output.clone(),
                )));
            }
        }
        if let Some(s) = stdio.stdin {
            let (_, write) = tokio::io::split(s);
            *self.stdin.lock().await = Some(write);
        }
        *self.pumps.lock().unwrap_or_else(|e| e.into_inner()) = Some(pumps);
        Ok(())
    }

    /// Starts watching the init process for its exit, once. Called after StartProcess (or
    /// before killing a never-started process): vminitd answers a StartProcess only after
    /// the process exits while a WaitProcess for it is pending, so the wait must not come
    /// first.
    fn watch(self: &Arc<Self>) {
        let pumps = self.pumps.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(pumps) = pumps {
            let me = Arc::clone(self);
            tokio::spawn(async move { me.watch_init(pumps).await });
        }
    }

    /// Turns a failed CreateProcess/StartProcess into a start error with Docker's exit code.
    fn start_error(&self, step: &str, e: ClientError) -> ContainerError {
        match &e {
            ClientError::Rpc { status, .. } => {
                let message = one_line(status.message());
                ContainerError::Start {
                    code: start_failure_code(&message),
                    message,
                }
            }
            _ => ContainerError::Agent {
                step: step.to_string(),
                source: e,
            },
        }
    }

    /// Waits for the init process to exit (or the VM to die), records the end, shuts the VM
    /// down and marks the container finished.
    async fn watch_init(self: Arc<Self>, pumps: Vec<tokio::task::JoinHandle<()>>) {
        let waited = tokio::select! {
            w = self.agent.wait_process(pb::ProcessRef { id: self.config.id.clone() }) => {
                w.map(|w| w.exit_code).map_err(|e| format!("waiting for the init process: {e}"))
            }
            exit = self.vm.wait() => Err(format!("the vm ended unexpectedly ({exit})")),
        };
        // vminitd answers WaitProcess of an init process only once its output is drained; the
        // pumps end right after. Bound the wait anyway.
        for p in pumps {
            let _ = tokio::time::timeout(Duration::from_secs(5), p).await;
        }
        let (code, error) = match waited {
            Ok(code) => (code, None),
            Err(e) => (255, Some(e)),
        };
        self.record_exit(code, error.clone());
        tracing::info!(code, ?error, "init process ended");
        self.shutdown_vm().await;
        // Stops the relays and removes published sockets from the host.
        drop(self.relays.lock().unwrap_or_else(|e| e.into_inner()).take());
        // The pids are gone (and may be reused): nobody must signal them any more.
        if let Err(e) = self.update_state(|s| s.vm_pids.clear()) {
            tracing::error!("recording the vm's end: {e}");
        }
        self.mark_finished();
    }

    fn record_exit(&self, code: i32, error: Option<String>) {
        let now = runtime_api::fsutil::now_rfc3339();
        if let Err(e) = self.update_state(|s| {
            s.status = Status::Stopped;
            s.exit_code = Some(code);
            s.finished_at = Some(now.clone());
            if error.is_some() {
                s.error = error.clone();
            }
        }) {
            tracing::error!("recording the exit: {e}");
        }
        self.exited.send_replace(Some(code));
        let _ = self.output.send(Output::Exit(code));
    }

    fn mark_finished(&self) {
        // Published ports close with the container.
        drop(
            self.proxies
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        );
        let s = self.state();
        self.finished.send_replace(Some(Finished {
            exit_code: s.exit_code.unwrap_or(EXIT_RUNTIME_FAILED),
            finished_at: s.finished_at.unwrap_or_default(),
            error: s.error,
        }));
    }

    /// Asks the guest to shut down cleanly; kills the VM if that takes too long.
    async fn shutdown_vm(&self) {
        if self.vm.exit().is_some() {
            return;
        }
        if self.config.discard_on_exit && self.exited.borrow().is_some() {
            // Its writable layer is deleted next and it has no volumes: nothing to flush.
            self.vm.kill().await;
            tracing::info!("vm discarded");
            return;
        }
        let agent = self.agent.clone();
        let graceful = Box::pin(async move {
            let _ = agent.sync(pb::Empty {}).await;
            if let Err(e) = agent
                .shutdown(pb::ShutdownRequest { grace_seconds: 1 })
                .await
            {
                tracing::warn!("guest shutdown: {e}");
            }
        });
        let stopped = self.vm.stop(graceful, SHUTDOWN_TIMEOUT).await;
        tracing::info!(exit = %stopped.exit, forced = stopped.forced, "vm stopped");
    }

    async fn sync_clock(self: Arc<Self>) {
        let mut finished = self.finished.subscribe();
        loop {
            tokio::select! {
                () = tokio::time::sleep(TIME_SYNC_INTERVAL) => {
                    if let Err(e) = set_time(&self.agent).await {
                        tracing::debug!("time sync: {e}");
                    }
                }
                () = async { let _ = finished.wait_for(Option::is_some).await; } => return,
            }
        }
    }

    /// Applies `change` to the state and writes state.json.
    fn update_state(&self, change: impl FnOnce(&mut State)) -> Result<(), ContainerError> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        change(&mut s);
        let result = s
            .save(&self.bundle.state())
            .map_err(io_err(format!("writing {}", self.bundle.state().display())));
        self.state_tx.send_replace(s.clone());
        result
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Starts the init process. Returns its pid in the guest.
    pub async fn start(self: &Arc<Self>) -> Result<u32, ContainerError> {
        if self.state().status != Status::Created {
            return Err(ContainerError::FailedPrecondition(format!(
                "container {} is not in the created state",
                self.config.id
            )));
        }
        match self
            .agent
            .start_process(pb::ProcessRef {
                id: self.config.id.clone(),
            })
            .await
        {
            Ok(r) => {
                let now = runtime_api::fsutil::now_rfc3339();
                let saved = self.update_state(|s| {
                    s.status = Status::Running;
                    s.init_pid = Some(r.pid);
                    s.started_at = Some(now);
                });
                self.watch();
                saved.map(|()| r.pid)
            }
            Err(e) => {
                let err = self.start_error("starting the init process", e);
                // The setup helper exits with the precise code; prefer it.
                let code = match tokio::time::timeout(
                    Duration::from_secs(5),
                    self.agent.wait_process(pb::ProcessRef {
                        id: self.config.id.clone(),
                    }),
                )
                .await
                {
                    Ok(Ok(w)) if w.exit_code != 0 => w.exit_code,
                    _ => err.exit_code(),
                };
                let message = one_line(&err.to_string());
                let _ = self.update_state(|s| {
                    s.error = Some(message.clone());
                    s.exit_code = Some(code);
                });
                self.watch();
                Err(ContainerError::Start { message, code })
            }
        }
    }

    /// Records a one-line error in state.json (the container is ended by the caller).
    pub fn fail(&self, error: &str) {
        let line = one_line(error);
        if let Err(e) = self.update_state(|s| s.error = Some(line)) {
            tracing::error!("recording the failure: {e}");
        }
    }

    /// Records a failure that happened before the container could run (used by the caller
    /// when [`Container::create`] fails).
    pub fn record_failure(
        bundle: &Bundle,
        id: &str,
        error: &ContainerError,
    ) -> std::io::Result<()> {
        let mut s = State::new(id);
        s.status = Status::Stopped;
        s.exit_code = Some(error.exit_code());
        s.finished_at = Some(runtime_api::fsutil::now_rfc3339());
        s.error = Some(one_line(&error.to_string()));
        s.save(&bundle.state())
    }

    /// Live output of the init process, and whether it has already exited (then nothing more
    /// comes and the code is returned instead).
    pub fn subscribe(&self) -> (broadcast::Receiver<Output>, Option<i32>) {
        let rx = self.output.subscribe();
        (rx, *self.exited.borrow())
    }

    /// Writes to the init process's stdin.
    pub async fn write_stdin(&self, data: &[u8]) -> Result<(), ContainerError> {
        let mut stdin = self.stdin.lock().await;
        let Some(w) = stdin.as_mut() else {
            return Err(ContainerError::FailedPrecondition(
                "the container's stdin is not open".into(),
            ));
        };
        w.write_all(data)
            .await
            .map_err(io_err("writing to stdin"))?;
        w.flush().await.map_err(io_err("writing to stdin"))
    }

    /// Closes the init process's stdin so it reads end of file.
    pub async fn close_stdin(&self) -> Result<(), ContainerError> {
        if let Some(mut w) = self.stdin.lock().await.take() {
            let _ = w.shutdown().await;
        }
        Ok(())
    }

    fn process_id(&self, exec_id: &str) -> Result<String, ContainerError> {
        if exec_id.is_empty() {
            return Ok(self.config.id.clone());
        }
        let execs = self.execs.lock().unwrap_or_else(|e| e.into_inner());
        if execs.contains(exec_id) {
            Ok(exec_id.to_string())
        } else {
            Err(ContainerError::NotFound(format!(
                "no running exec {exec_id}"
            )))
        }
    }

    /// Sends `signal` to the init process (or an exec; or, with `all`, every process).
    pub async fn kill(&self, exec_id: &str, signal: u32, all: bool) -> Result<(), ContainerError> {
        let id = self.process_id(exec_id)?;
        if exec_id.is_empty() && self.exited.borrow().is_some() {
            return Err(ContainerError::FailedPrecondition(format!(
                "container {} is not running",
                self.config.id
            )));
        }
        let signal = if signal == 0 {
            libc::SIGKILL as u32
        } else {
            signal
        };
        self.agent
            .kill_process(pb::KillProcessRequest { id, signal, all })
            .await
            .map(|_| ())
            .map_err(agent_err(format!("sending signal {signal}")))
    }

    /// Resizes the terminal of the init process or an exec.
    pub async fn resize(&self, exec_id: &str, rows: u32, cols: u32) -> Result<(), ContainerError> {
        let id = self.process_id(exec_id)?;
        self.agent
            .resize_process(pb::ResizeProcessRequest { id, rows, cols })
            .await
            .map(|_| ())
            .map_err(agent_err("resizing the terminal"))
    }

    /// Waits until the container has finished (init exited and VM down).
    pub async fn wait(&self) -> Finished {
        let mut rx = self.finished.subscribe();
        let result = match rx.wait_for(Option::is_some).await {
            Ok(f) => f.clone(),
            Err(_) => None,
        };
        result.unwrap_or(Finished {
            exit_code: EXIT_RUNTIME_FAILED,
            finished_at: String::new(),
            error: Some("the runtime is shutting down".into()),
        })
    }

    /// Sends the stop signal, waits up to `timeout`, then SIGKILLs every process of the
    /// container; returns the exit code once the init process has exited.
    pub async fn stop(
        self: &Arc<Self>,
        signal: Option<u32>,
        timeout: Option<Duration>,
    ) -> Result<i32, ContainerError> {
        let signal = signal.unwrap_or_else(|| self.config.stop_signal());
        let timeout = timeout.unwrap_or(Duration::from_secs(self.config.stop_timeout_secs.into()));
        let mut exited = self.exited.subscribe();
        if let Some(code) = *exited.borrow() {
            return Ok(code);
        }
        tracing::info!(signal, ?timeout, "stopping");
        if self.state().status == Status::Created {
            // Never started: nothing to be graceful with.
            let _ = self.kill("", libc::SIGKILL as u32, true).await;
            self.watch();
        } else if let Err(e) = self.kill("", signal, false).await {
            tracing::warn!("stop signal: {e}");
        }
        if tokio::time::timeout(timeout, exited.wait_for(Option::is_some))
            .await
            .is_err()
        {
            tracing::info!("stop timeout passed; killing");
            if let Err(e) = self.kill("", libc::SIGKILL as u32, true).await {
                tracing::warn!("kill: {e}");
            }
        }
        let code = exited
            .wait_for(Option::is_some)
            .await
            .map(|c| c.unwrap_or(EXIT_RUNTIME_FAILED))
            .unwrap_or(EXIT_RUNTIME_FAILED);
        Ok(code)
    }

    /// Resource usage from the guest.
    pub async fn stats(&self) -> Result<pb::StatsResponse, ContainerError> {
        self.agent
            .stats(pb::StatsRequest {
                container_id: self.config.id.clone(),
            })
            .await
            .map_err(agent_err("reading stats"))
    }

    /// The guest directory a container path resolves in, and the path inside it: the init
    /// process's root while it runs (so the container's own mounts are seen), else the
    /// overlay. The guest resolves the path with that directory as `/`, so the container's
    /// symlinks never reach the VM's own files.
    pub fn guest_path(&self, path: &str) -> Result<(String, String), ContainerError> {
        let trimmed = check_container_path(path)?;
        let path = if trimmed.is_empty() { "/" } else { trimmed };
        let s = self.state();
        let root = match (s.status, s.init_pid) {
            (Status::Running, Some(pid)) => format!("/proc/{pid}/root"),
            _ => GUEST_ROOTFS.to_string(),
        };
        Ok((root, path.to_string()))
    }

    /// Where to unpack for the container directory `path`: the guest directory that is `/`
    /// while the path resolves, and the path inside it. Not through /proc/<pid>/root: the
    /// agent's tar unpacking resolves that magic link to the guest's own root. So: a volume's
    /// own directory, else the overlay (the container's root).
    pub fn guest_write_dir(&self, path: &str) -> Result<(String, String), ContainerError> {
        guest_write_dir(&self.config, path)
    }

    /// The guest agent (for streaming calls the server relays).
    pub fn agent(&self) -> &AgentClient {
        &self.agent
    }

    /// Runs a new process in the container. `events` receives its output and, last, its
    /// exit; the returned [`ExecHandle`] feeds its stdin.
    pub async fn exec(
        self: &Arc<Self>,
        request: ExecRequest,
        events: mpsc::Sender<ExecEvent>,
    ) -> Result<ExecHandle, ContainerError> {
        if request.args.is_empty() {
            return Err(ContainerError::InvalidArgument(
                "exec: no command given".into(),
            ));
        }
        if self.state().status != Status::Running {
            return Err(ContainerError::FailedPrecondition(format!(
                "container {} is not running",
                self.config.id
            )));
        }
        let exec_id = format!("exec-{}", self.next_exec.fetch_add(1, Ordering::Relaxed));
        let mut spec = self.spec.clone();
        let process = spec
            .get_mut("process")
            .and_then(Value::as_object_mut)
            .ok_or_else(|| ContainerError::InvalidArgument("spec has no process".into()))?;
        process.insert("args".into(), json!(request.args));
        let mut env: Vec<String> = process
            .get("env")
            .and_then(|e| serde_json::from_value(e.clone()).ok())
            .unwrap_or_default();
        for kv in &request.env {
            let key = kv.split('=').next().unwrap_or_default();
            env.retain(|e| e.split('=').next() != Some(key));
            env.push(kv.clone());
        }
        process.insert("env".into(), json!(env));
        if !request.cwd.is_empty() {
            process.insert("cwd".into(), json!(request.cwd));
        }
        process.insert("terminal".into(), json!(request.terminal));
        if request.rows > 0 && request.cols > 0 {
            process.insert(
                "consoleSize".into(),
                json!({"height": request.rows, "width": request.cols}),
            );
        } else {
            process.remove("consoleSize");
        }
        let user = if request.user.is_empty() {
            self.config.user.clone().unwrap_or_default()
        } else {
            request.user.clone()
        };
        let listeners = self.listen(request.stdin, true, !request.terminal).await?;
        let create = pb::CreateProcessRequest {
            id: exec_id.clone(),
            container_id: self.config.id.clone(),
            oci_spec: serde_json::to_vec(&spec)
                .map_err(|e| ContainerError::InvalidArgument(format!("spec: {e}")))?,
            stdio: Some(listeners.ports),
            terminal: request.terminal,
            user,
            init: false,
        };
        let agent = self.agent.clone();
        let (created, stdio) = tokio::join!(
            async move { agent.create_process(create).await },
            listeners.accept_all()
        );
        created.map_err(|e| self.start_error("creating the exec", e))?;
        let stdio = stdio?;
        let pid = match self
            .agent
            .start_process(pb::ProcessRef {
                id: exec_id.clone(),
            })
            .await
        {
            Ok(r) => r.pid,
            Err(e) => {
                let err = self.start_error("starting the exec", e);
                let _ = self
                    .agent
                    .delete_process(pb::ProcessRef {
                        id: exec_id.clone(),
                    })
                    .await;
                return Err(err);
            }
        };
        self.execs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(exec_id.clone());
        let _ = events
            .send(ExecEvent::Started {
                exec_id: exec_id.clone(),
                pid,
            })
            .await;
        // Output is forwarded only after `Started`: clients take the first event to say
        // whether the exec started, and a fast program's output would otherwise overtake it.
        // Nothing is lost meanwhile; it waits in the vsock streams.
        let mut pumps = Vec::new();
        for (stream, stderr) in [(stdio.stdout, false), (stdio.stderr, true)] {
            if let Some(s) = stream {
                pumps.push(tokio::spawn(pump_exec_output(s, stderr, events.clone())));
            }
        }
        let me = Arc::clone(self);
        let id = exec_id.clone();
        tokio::spawn(async move {
            let code = match me
                .agent
                .wait_process(pb::ProcessRef { id: id.clone() })
                .await
            {
                Ok(w) => w.exit_code,
                Err(e) => {
                    tracing::warn!("waiting for {id}: {e}");
                    255
                }
            };
            for p in pumps {
                let _ = tokio::time::timeout(Duration::from_secs(2), p).await;
            }
            me.execs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            let _ = me.agent.delete_process(pb::ProcessRef { id }).await;
            let _ = events.send(ExecEvent::Exit(code)).await;
        });
        Ok(ExecHandle {
            exec_id,
            stdin: stdio.stdin.map(|s| tokio::io::split(s).1),
        })
    }

    /// Stops the container if it runs and waits for the end (used on SIGTERM to the runtime).
    pub async fn shutdown(self: &Arc<Self>) -> Finished {
        if self.exited.borrow().is_none() {
            let _ = self.stop(None, None).await;
        }
        self.wait().await
    }
}

/// What to run with [`Container::exec`].
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    /// The program and its arguments.
    pub args: Vec<String>,
    /// KEY=VALUE pairs over the container's environment.
    pub env: Vec<String>,
    /// Working directory; empty keeps the container's.
    pub cwd: String,
    /// User; empty keeps the container's.
    pub user: String,
    /// Allocate a terminal.
    pub terminal: bool,
    /// Attach stdin.
    pub stdin: bool,
    /// Initial terminal size.
    pub rows: u32,
    /// Initial terminal size.
    pub cols: u32,
}

/// What an exec reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecEvent {
    /// It runs.
    Started {
        /// Its id.
        exec_id: String,
        /// Its pid in the guest.
        pid: u32,
    },
    /// Output.
    Stdout(Vec<u8>),
    /// Output.
    Stderr(Vec<u8>),
    /// Its exit code; nothing follows.
    Exit(i32),
}

/// A running exec's stdin.
pub struct ExecHandle {
    /// The exec's id.
    pub exec_id: String,
    /// Its stdin, when it was asked for.
    pub stdin: Option<WriteHalf<VsockStream>>,
}

async fn pump_init_output(
    mut stream: VsockStream,
    kind: Stream,
    log: Arc<StdioLog>,
    output: broadcast::Sender<Output>,
) {
    let mut buf = vec![0u8; 32 * 1024];
    let mut carry = Utf8Carry::default();
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                tracing::warn!("reading {kind:?}: {e}");
                break;
            }
        };
        let chunk = &buf[..n];
        let data = carry.take(chunk);
        if !data.is_empty()
            && let Err(e) = log.write(kind, &data)
        {
            tracing::error!("writing stdio.log: {e}");
        }
        let msg = match kind {
            Stream::Stdout => Output::Stdout(chunk.to_vec()),
            Stream::Stderr => Output::Stderr(chunk.to_vec()),
        };
        // No receiver is fine: nobody is attached.
        let _ = output.send(msg);
    }
    let rest = carry.finish();
    if !rest.is_empty()
        && let Err(e) = log.write(kind, &rest)
    {
        tracing::error!("writing stdio.log: {e}");
    }
}

async fn pump_exec_output(mut stream: VsockStream, stderr: bool, events: mpsc::Sender<ExecEvent>) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let data = buf[..n].to_vec();
                let event = if stderr {
                    ExecEvent::Stderr(data)
                } else {
                    ExecEvent::Stdout(data)
                };
                if events.send(event).await.is_err() {
                    // The client went away; keep draining so the process never blocks.
                    continue;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_in_lands_in_volumes_or_the_overlay() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = runtime_api::config::testing::sample(dir.path());
        config.volumes = vec![runtime_api::config::VolumeMount {
            path: dir.path().join("vol.ext4"),
            destination: "/data".into(),
            read_only: false,
            kind: runtime_api::config::VolumeKind::Block,
        }];
        config.tmpfs = vec![runtime_api::config::TmpfsMount {
            destination: "/scratch".into(),
            options: vec![],
        }];
        let dir_of = |p: &str| guest_write_dir(&config, p).map_err(|e| e.to_string());
        let pair = |root: &str, path: &str| (root.to_string(), path.to_string());
        assert_eq!(
            dir_of("/data").unwrap(),
            pair("/run/container/volumes/0", "/")
        );
        assert_eq!(
            dir_of("/data/sub/").unwrap(),
            pair("/run/container/volumes/0", "/sub")
        );
        assert_eq!(
            dir_of("/database").unwrap(),
            pair("/run/container/rootfs", "/database")
        );
        assert_eq!(dir_of("/").unwrap(), pair("/run/container/rootfs", "/"));
        assert!(dir_of("/scratch/x").unwrap_err().contains("tmpfs"));
        assert!(dir_of("tmp").unwrap_err().contains("not an absolute path"));
        assert!(dir_of("/tmp/../etc").unwrap_err().contains("'..'"));
    }

    #[test]
    fn start_failures_get_dockers_codes() {
        assert_eq!(
            start_failure_code("exec: \"nope\": executable file not found in $PATH"),
            127
        );
        assert_eq!(
            start_failure_code("exec /etc/passwd: Permission denied (os error 13)"),
            126
        );
        assert_eq!(start_failure_code("cgroup setup failed"), 125);
    }

    #[test]
    fn spec_gets_root_mounts_and_limits() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = runtime_api::config::testing::sample(dir.path());
        config.read_only = true;
        config.tmpfs = vec![runtime_api::config::TmpfsMount {
            destination: "/dev/shm".into(),
            options: vec!["size=1m".into()],
        }];
        let spec = build_spec(&config, true).unwrap();
        assert_eq!(
            spec["root"],
            json!({"path": GUEST_ROOTFS, "readonly": true})
        );
        assert_eq!(spec["hostname"], json!("c1"));
        let mounts = spec["mounts"].as_array().unwrap();
        let dests: Vec<&str> = mounts
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        for d in [
            "/proc",
            "/dev",
            "/dev/pts",
            "/sys",
            "/etc/hostname",
            "/etc/hosts",
            "/etc/resolv.conf",
        ] {
            assert!(dests.contains(&d), "{d} missing from {dests:?}");
        }
        // The tmpfs replaced the default /dev/shm.
        let shm: Vec<&Value> = mounts
            .iter()
            .filter(|m| m["destination"] == "/dev/shm")
            .collect();
        assert_eq!(shm.len(), 1);
        assert_eq!(shm[0]["options"], json!(["size=1m"]));
        assert_eq!(
            spec["linux"]["resources"]["memory"]["limit"],
            json!(256u64 << 20)
        );
        // The result is still a valid OCI spec.
        let _: oci_spec::runtime::Spec = serde_json::from_value(spec.clone()).unwrap();

        let no_dns = build_spec(&config, false).unwrap();
        assert!(
            !no_dns["mounts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["destination"] == "/etc/resolv.conf")
        );
    }
}
