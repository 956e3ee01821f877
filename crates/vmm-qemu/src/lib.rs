//! The QEMU backend of the `vmm` traits, for Linux hosts: one QEMU per VM, on the machine of
//! the guest's architecture ([`machine`]: `qemu-system-x86_64 -M microvm`,
//! `qemu-system-aarch64 -M virt`; KVM only for a guest of the host's own architecture), with
//! vhost-device-vsock for vsock (hybrid Unix-socket mode) and one virtiofsd per
//! shared directory.
//!
//! Its one job is to turn a [`vmm::VmConfig`] into running processes and to make sure none of
//! them outlives the VM: every helper is a child of this process, started before QEMU, and
//! killed and reaped when the VM stops, is killed, is dropped, or when QEMU or any helper dies,
//! and the kernel kills them should this process die without cleaning up.
//! It must not know about containers, images or what the guest runs; the guest agent's
//! protocol is used only by the `testing` harness (feature `testing`, for tests only).
//!
//! Per-VM runtime directory (the config's `runtime_dir`):
//! ```text
//! qmp.sock                 QEMU's monitor; its greeting tells that QEMU has come up
//! vsock.sock               vhost-user socket between QEMU and vhost-device-vsock
//! vsock                    hybrid vsock: the host dials guest ports here (CONNECT <port>)
//! vsock_<port>             the host listens here for guest connections to <port>
//! fs<i>.sock               vhost-user socket of share i's virtiofsd
//! qemu.log, vhost-device-vsock.log, virtiofsd-<i>.log   the helpers' own output
//! ```
//! Sockets are removed when the VM ends; logs stay for the caller to read or delete.
//!
//! vsock always goes through vhost-device-vsock's hybrid Unix sockets, also on hosts with
//! `/dev/vhost-vsock` (kernel vhost-vsock with AF_VSOCK would save the helper but needs a
//! host-wide CID and port allocator; not done yet). Two defects of vhost-device-vsock 0.3 are
//! worked around in [`hybrid_vsock`] and [`qmp`]: a dial must neither reach the daemon before
//! the guest driver set up the device nor close a `CONNECT` the guest has yet to answer;
//! either kills the VM's vsock for good.
//!
//! Every VM also has a virtio-balloon, never inflated: its free page reporting hands the
//! pages the guest frees back to the host ([`cmdline::BALLOON_DEVICE`], docs/benchmarks.md).

pub mod accel;
pub mod cmdline;
pub mod hybrid_vsock;
pub mod machine;
pub mod qmp;
mod spawn;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tools;

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::process::{Child, Command};
use tokio::sync::{Notify, mpsc, watch};
use vmm::{
    BoxFuture, ConfigError, Hypervisor, VirtualMachine, VmConfig, VmError, VmExit, VsockConnector,
    VsockListener, VsockStream,
};

pub use accel::{Accel, AccelChoice};

/// The guest CID. Each VM has its own vhost-device-vsock, so every guest can use the same one.
const GUEST_CID: u32 = 3;
/// The longest runtime directory: `<dir>/vsock_4294967295` must fit a Unix socket path
/// (107 bytes).
pub const MAX_RUNTIME_DIR_LEN: usize = 107 - "/vsock_4294967295".len();

/// How the backend starts VMs.
#[derive(Debug, Clone)]
pub struct QemuOptions {
    /// Use this accelerator instead of detecting one.
    pub accel: Option<Accel>,
    /// How long a helper may take to create its socket, and QEMU to come up.
    pub start_timeout: Duration,
    /// How long QEMU may take to exit on its own after a helper died, before it is killed.
    pub helper_death_grace: Duration,
}

impl Default for QemuOptions {
    fn default() -> Self {
        Self {
            accel: None,
            start_timeout: Duration::from_secs(10),
            helper_death_grace: Duration::from_millis(300),
        }
    }
}

/// The QEMU hypervisor: the located programs and the options to run them with.
#[derive(Debug, Clone)]
pub struct Qemu {
    qemu: PathBuf,
    vhost_vsock: PathBuf,
    options: QemuOptions,
}

impl Qemu {
    /// Finds QEMU and vhost-device-vsock (see [`tools::find`]); virtiofsd is looked up when a
    /// VM has shares.
    pub fn new(options: QemuOptions) -> Result<Self, VmError> {
        Ok(Self {
            qemu: tools::find(tools::QEMU)?,
            vhost_vsock: tools::find(tools::VHOST_VSOCK)?,
            options,
        })
    }

    /// The QEMU binary this backend runs for guests of the host's architecture.
    pub fn qemu_path(&self) -> &Path {
        &self.qemu
    }

    /// The QEMU binary for a guest of `arch`: the host's, found at construction, or the
    /// other architecture's emulator, looked up when such a guest boots.
    pub fn qemu_for(&self, arch: vmm::Arch) -> Result<PathBuf, VmError> {
        if arch == vmm::Arch::host() {
            Ok(self.qemu.clone())
        } else {
            tools::find(machine::for_arch(arch).qemu)
        }
    }

    /// Validates `config`, starts the helpers and QEMU, and returns once QEMU has come up
    /// (the guest then boots on its own). Nothing is left running when this fails.
    pub async fn boot_vm(&self, config: VmConfig) -> Result<QemuVm, VmError> {
        config.validate()?;
        if config.rosetta {
            return Err(ConfigError::Invalid {
                field: "rosetta".into(),
                reason:
                    "rosetta is only available through Virtualization.framework on Apple silicon"
                        .into(),
            }
            .into());
        }
        let dir = config.runtime_dir.clone();
        if dir.as_os_str().len() > MAX_RUNTIME_DIR_LEN {
            return Err(ConfigError::Invalid {
                field: "runtime_dir".into(),
                reason: format!(
                    "{} is longer than {MAX_RUNTIME_DIR_LEN} bytes, too long for its Unix sockets",
                    dir.display()
                ),
            }
            .into());
        }
        create_private_dir(&dir)?;
        let virtiofsd = if config.shares.is_empty() {
            None
        } else {
            if !nix::unistd::geteuid().is_root() {
                sandbox_possible_unprivileged(&sysctls())?;
            }
            Some(tools::find(tools::VIRTIOFSD)?)
        };
        let machine = machine::for_arch(config.arch);
        let qemu = self.qemu_for(config.arch)?;
        let accel = match self.options.accel {
            // KVM cannot run another architecture's guest, whatever the caller asked.
            Some(_) if !machine.native() => accel::detect(machine, &qemu, &config.kernel).await,
            Some(accel) => AccelChoice {
                accel,
                reason: "chosen by the caller".into(),
            },
            None => accel::detect(machine, &qemu, &config.kernel).await,
        };
        let paths = RuntimePaths::new(&dir, config.shares.len());
        paths.remove_sockets();

        let mut started: Vec<Helper> = Vec::new();
        match self
            .start_all(
                &config,
                &qemu,
                &paths,
                &accel,
                virtiofsd.as_deref(),
                &mut started,
            )
            .await
        {
            Ok(qemu) => {
                let (exit_tx, exit_rx) = watch::channel(None);
                let (ready_tx, ready_rx) = watch::channel(false);
                let qmp_socket = paths.qmp.clone();
                let exit_for_ready = exit_rx.clone();
                tokio::spawn(async move {
                    qmp::watch_vsock_ready(&qmp_socket, ready_tx, exit_for_ready).await;
                });
                let shared = Arc::new(Shared {
                    uds_path: paths.uds.clone(),
                    vsock_ready: ready_rx,
                    exit: exit_rx,
                    kill: Notify::new(),
                    kill_requested: AtomicBool::new(false),
                    listening: Mutex::new(HashSet::new()),
                });
                let disks = config
                    .disks
                    .iter()
                    .map(|d| BootDisk {
                        id: d.id.clone(),
                        size: std::fs::metadata(&d.path).map(|m| m.len()).unwrap_or(0),
                    })
                    .collect();
                let qmp_path = paths.qmp.clone();
                let mut pids = vec![(qemu.name.clone(), qemu.pid)];
                pids.extend(started.iter().map(|h| (h.name.clone(), h.pid)));
                tokio::spawn(supervise(
                    qemu,
                    started,
                    Arc::clone(&shared),
                    exit_tx,
                    paths,
                    self.options.helper_death_grace,
                ));
                Ok(QemuVm {
                    shared,
                    pids,
                    qmp: qmp_path,
                    disks,
                    replaced: std::sync::atomic::AtomicU32::new(0),
                    accel,
                })
            }
            Err(e) => {
                for helper in started {
                    helper.kill_and_reap().await;
                }
                paths.remove_sockets();
                Err(e)
            }
        }
    }

    async fn start_all(
        &self,
        config: &VmConfig,
        qemu: &Path,
        paths: &RuntimePaths,
        accel: &AccelChoice,
        virtiofsd: Option<&Path>,
        started: &mut Vec<Helper>,
    ) -> Result<Helper, VmError> {
        let timeout = self.options.start_timeout;
        let mut vsock = Command::new(&self.vhost_vsock);
        vsock
            .arg("--guest-cid")
            .arg(GUEST_CID.to_string())
            .arg("--socket")
            .arg(&paths.vhost_vsock)
            .arg("--uds-path")
            .arg(&paths.uds);
        let helper = Helper::spawn(
            "vhost-device-vsock",
            vsock,
            &paths.log("vhost-device-vsock"),
        )
        .await?;
        started.push(helper);
        wait_for_socket(started.last_mut(), &paths.vhost_vsock, timeout, &paths.dir).await?;

        if let Some(virtiofsd) = virtiofsd {
            for (i, share) in config.shares.iter().enumerate() {
                let mut fs = Command::new(virtiofsd);
                fs.arg("--socket-path")
                    .arg(&paths.shares[i])
                    .arg("--shared-dir")
                    .arg(&share.host_path)
                    .arg("--cache=auto");
                if share.read_only {
                    fs.arg("--readonly");
                }
                // Never `--sandbox=none`: a guest that escapes virtiofsd's file handling must
                // find itself in a namespace holding only the shared directory. As root that
                // is a mount/pid/net namespace; for anyone else virtiofsd adds a user
                // namespace, which the host must allow (checked before any helper starts).
                fs.arg("--sandbox=namespace");
                let name = format!("virtiofsd for share {:?}", share.tag);
                let helper =
                    Helper::spawn(&name, fs, &paths.log(&format!("virtiofsd-{i}"))).await?;
                started.push(helper);
                wait_for_socket(started.last_mut(), &paths.shares[i], timeout, &paths.dir).await?;
            }
        }

        let launch = cmdline::Launch {
            accel: accel.accel,
            tsc_khz: host_tsc_khz(),
            vsock_socket: paths.vhost_vsock.clone(),
            share_sockets: paths.shares.clone(),
            qmp_socket: paths.qmp.clone(),
        };
        let args = cmdline::qemu_args(config, &launch)?;
        let mut qemu = Command::new(qemu);
        qemu.args(&args);
        let mut qemu = Helper::spawn("qemu", qemu, &paths.log("qemu")).await?;
        if let Err(e) = wait_for_qmp(&mut qemu, &paths.qmp, timeout, &paths.log("qemu")).await {
            qemu.kill_and_reap().await;
            return Err(e);
        }
        Ok(qemu)
    }
}

impl Hypervisor for Qemu {
    type Vm = QemuVm;

    fn boot(&self, config: VmConfig) -> BoxFuture<'_, Result<QemuVm, VmError>> {
        Box::pin(self.boot_vm(config))
    }
}

/// The file names inside a VM's runtime directory.
#[derive(Debug, Clone)]
struct RuntimePaths {
    dir: PathBuf,
    qmp: PathBuf,
    vhost_vsock: PathBuf,
    uds: PathBuf,
    shares: Vec<PathBuf>,
}

impl RuntimePaths {
    fn new(dir: &Path, shares: usize) -> Self {
        Self {
            dir: dir.to_owned(),
            qmp: dir.join("qmp.sock"),
            vhost_vsock: dir.join("vsock.sock"),
            uds: dir.join("vsock"),
            shares: (0..shares)
                .map(|i| dir.join(format!("fs{i}.sock")))
                .collect(),
        }
    }

    fn log(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }

    // Sockets are recreated on every boot; a stale one would make a helper fail to bind.
    fn remove_sockets(&self) {
        for path in [&self.qmp, &self.vhost_vsock, &self.uds]
            .into_iter()
            .chain(&self.shares)
        {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn create_private_dir(dir: &Path) -> Result<(), VmError> {
    statefs::create_private_dir(dir).map_err(|source| VmError::Io {
        op: format!("creating runtime dir {}", dir.display()),
        source,
    })
}

/// The sysctls that decide whether an unprivileged process may create a user namespace:
/// (path, value) for each that exists on this host.
fn sysctls() -> Vec<(&'static str, String)> {
    USERNS_SYSCTLS
        .iter()
        .filter_map(|(path, _)| {
            std::fs::read_to_string(path)
                .ok()
                .map(|v| (*path, v.trim().to_owned()))
        })
        .collect()
}

/// Each sysctl and the value that forbids unprivileged user namespaces.
const USERNS_SYSCTLS: &[(&str, &str)] = &[
    ("/proc/sys/user/max_user_namespaces", "0"),
    ("/proc/sys/kernel/unprivileged_userns_clone", "0"),
    (
        "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
        "1",
    ),
];

/// Refuses shares for a non-root caller when the host forbids the user namespace virtiofsd's
/// sandbox needs: running virtiofsd unsandboxed instead is not an option.
fn sandbox_possible_unprivileged(sysctls: &[(&str, String)]) -> Result<(), VmError> {
    for (path, value) in sysctls {
        let forbids = USERNS_SYSCTLS
            .iter()
            .any(|(p, bad)| p == path && value == bad);
        if forbids {
            return Err(VmError::Start {
                what: "virtiofsd".into(),
                detail: format!(
                    "shared directories need virtiofsd's namespace sandbox, which a non-root daemon gets only through an unprivileged user namespace, and {path} = {value} forbids them: run the daemon as root or allow user namespaces"
                ),
            });
        }
    }
    Ok(())
}

/// The host's TSC rate in kHz, from the first `cpu MHz` line of /proc/cpuinfo.
pub fn host_tsc_khz() -> Option<u64> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    parse_cpu_khz(&cpuinfo)
}

fn parse_cpu_khz(cpuinfo: &str) -> Option<u64> {
    let line = cpuinfo.lines().find(|l| l.starts_with("cpu MHz"))?;
    let mhz: f64 = line.split(':').nth(1)?.trim().parse().ok()?;
    (mhz > 0.0).then(|| (mhz * 1000.0).round() as u64)
}

/// A child process of the VM, with its output going to a log file.
#[derive(Debug)]
struct Helper {
    name: String,
    pid: u32,
    log: PathBuf,
    child: Child,
}

impl Helper {
    async fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<Self, VmError> {
        let open_log = || {
            // The helpers' output can echo the guest's: the owner's alone.
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(log)
                .map_err(|source| VmError::Io {
                    op: format!("creating {}", log.display()),
                    source,
                })
        };
        let out = open_log()?;
        let err = out.try_clone().map_err(|source| VmError::Io {
            op: format!("duplicating {}", log.display()),
            source,
        })?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            // Should this handle be dropped without a clean stop (a panic, a cancelled task),
            // tokio kills the child and reaps it in the background.
            .kill_on_drop(true);
        let program = cmd.as_std().get_program().to_owned();
        let child = spawn::spawn(cmd).await.map_err(|e| VmError::Start {
            what: name.into(),
            detail: format!("cannot run {program:?}: {e}"),
        })?;
        // A freshly spawned, not yet awaited child always has an id.
        let pid = child.id().unwrap_or(0);
        Ok(Self {
            name: name.into(),
            pid,
            log: log.to_owned(),
            child,
        })
    }

    async fn kill_and_reap(mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.start_kill();
        }
        let _ = self.child.wait().await;
    }

    fn log_tail(&self) -> String {
        log_tail(&self.log)
    }
}

/// The last few lines of a helper's log, joined into one line.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(3)..].join(" | ");
    if tail.is_empty() {
        format!("no output in {}", path.display())
    } else {
        tail
    }
}

async fn wait_for_socket(
    helper: Option<&mut Helper>,
    socket: &Path,
    timeout: Duration,
    dir: &Path,
) -> Result<(), VmError> {
    let Some(helper) = helper else {
        return Ok(());
    };
    let deadline = Instant::now() + timeout;
    loop {
        if socket.exists() {
            return Ok(());
        }
        if let Ok(Some(status)) = helper.child.try_wait() {
            return Err(VmError::Start {
                what: helper.name.clone(),
                detail: format!("exited ({status}): {}", helper.log_tail()),
            });
        }
        if Instant::now() >= deadline {
            return Err(VmError::Start {
                what: helper.name.clone(),
                detail: format!(
                    "no socket {} after {timeout:?} (runtime dir {})",
                    socket.display(),
                    dir.display()
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until QEMU's monitor greets: by then QEMU has parsed its options, opened every
/// device and started the guest.
async fn wait_for_qmp(
    qemu: &mut Helper,
    socket: &Path,
    timeout: Duration,
    log: &Path,
) -> Result<(), VmError> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = qemu.child.try_wait() {
            return Err(VmError::Start {
                what: "qemu".into(),
                detail: format!("exited ({status}): {}", log_tail(log)),
            });
        }
        if let Ok(stream) = UnixStream::connect(socket).await {
            let mut line = String::new();
            let remaining = deadline.saturating_duration_since(Instant::now());
            let mut reader = BufReader::new(stream);
            let read = reader.read_line(&mut line);
            if let Ok(Ok(_)) = tokio::time::timeout(remaining, read).await
                && line.contains("\"QMP\"")
            {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            return Err(VmError::Start {
                what: "qemu".into(),
                detail: format!(
                    "its monitor did not answer within {timeout:?}: {}",
                    log_tail(log)
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// What the VM handle, its connectors and its listeners share with the supervisor task.
#[derive(Debug)]
struct Shared {
    uds_path: PathBuf,
    /// Becomes true once the guest driver has set up the vsock device (see [`qmp`]).
    vsock_ready: watch::Receiver<bool>,
    exit: watch::Receiver<Option<VmExit>>,
    kill: Notify,
    kill_requested: AtomicBool,
    listening: Mutex<HashSet<u32>>,
}

impl Shared {
    fn exit(&self) -> Option<VmExit> {
        self.exit.borrow().clone()
    }

    fn request_kill(&self) {
        self.kill_requested.store(true, Ordering::SeqCst);
        self.kill.notify_one();
    }

    async fn wait(&self) -> VmExit {
        let mut exit = self.exit.clone();
        match exit.wait_for(Option::is_some).await {
            Ok(value) => value.clone().unwrap_or_else(supervisor_gone),
            // The supervisor dropped its sender without publishing: only when the runtime
            // shuts down, which kills the children (kill_on_drop).
            Err(_) => supervisor_gone(),
        }
    }

    async fn dial(&self, port: u32, timeout: Duration) -> Result<VsockStream, VmError> {
        let deadline = Instant::now() + timeout;
        let mut ready = self.vsock_ready.clone();
        let wait_ready = async {
            // An error means the watcher gave up (QEMU is exiting): the dial below reports it.
            let _ = ready.wait_for(|ready| *ready).await;
        };
        if tokio::time::timeout_at(deadline.into(), wait_ready)
            .await
            .is_err()
        {
            return Err(VmError::DialTimeout {
                port,
                timeout,
                last_error: "the guest has not set up its vsock device yet".into(),
            });
        }
        loop {
            if let Some(exit) = self.exit() {
                return Err(VmError::Exited(exit));
            }
            let last_error = match hybrid_vsock::dial_once(&self.uds_path, port, deadline).await {
                Ok(stream) => return Ok(VsockStream::new(stream)),
                Err(e) => e.to_string(),
            };
            if Instant::now() + hybrid_vsock::RETRY_INTERVAL >= deadline {
                return Err(VmError::DialTimeout {
                    port,
                    timeout,
                    last_error,
                });
            }
            tokio::time::sleep(hybrid_vsock::RETRY_INTERVAL).await;
        }
    }
}

fn supervisor_gone() -> VmExit {
    VmExit::Failed {
        detail: "the vm's supervisor task ended without a verdict".into(),
    }
}

/// Owns every child of one VM until the VM ends, then reaps them all and publishes the exit.
async fn supervise(
    mut qemu: Helper,
    helpers: Vec<Helper>,
    shared: Arc<Shared>,
    exit_tx: watch::Sender<Option<VmExit>>,
    paths: RuntimePaths,
    grace: Duration,
) {
    let (died_tx, mut died_rx) = mpsc::channel::<String>(helpers.len().max(1));
    let (stop_tx, stop_rx) = watch::channel(false);
    let tasks: Vec<_> = helpers
        .into_iter()
        .map(|h| tokio::spawn(run_helper(h, stop_rx.clone(), died_tx.clone())))
        .collect();
    drop(died_tx);

    let mut helper_death = None;
    let status = tokio::select! {
        status = qemu.child.wait() => status,
        () = shared.kill.notified() => {
            let _ = qemu.child.start_kill();
            qemu.child.wait().await
        }
        Some(death) = died_rx.recv() => {
            // A helper that dies as QEMU exits is no failure; give QEMU a moment to go first.
            match tokio::time::timeout(grace, qemu.child.wait()).await {
                Ok(status) => status,
                Err(_) => {
                    helper_death = Some(death);
                    let _ = qemu.child.start_kill();
                    qemu.child.wait().await
                }
            }
        }
    };
    let _ = stop_tx.send(true);
    for task in tasks {
        let _ = task.await;
    }
    paths.remove_sockets();

    let exit = match (helper_death, status) {
        (Some(death), _) => VmExit::Failed { detail: death },
        (None, Ok(status)) if status.success() => VmExit::PoweredOff,
        (None, _) if shared.kill_requested.load(Ordering::SeqCst) => VmExit::Killed,
        (None, Ok(status)) => VmExit::Failed {
            detail: format!("qemu exited ({status}): {}", qemu.log_tail()),
        },
        (None, Err(e)) => VmExit::Failed {
            detail: format!("qemu could not be waited for: {e}"),
        },
    };
    exit_tx.send_replace(Some(exit));
}

async fn run_helper(
    mut helper: Helper,
    mut stop: watch::Receiver<bool>,
    died: mpsc::Sender<String>,
) {
    tokio::select! {
        status = helper.child.wait() => {
            let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
            let _ = died
                .send(format!("{} exited ({status}): {}", helper.name, helper.log_tail()))
                .await;
        }
        () = async { let _ = stop.wait_for(|stop| *stop).await; } => helper.kill_and_reap().await,
    }
}

/// A VM run by QEMU. Dropping it kills the VM and every helper (reaped in the background).
#[derive(Debug)]
pub struct QemuVm {
    shared: Arc<Shared>,
    pids: Vec<(String, u32)>,
    /// QEMU's monitor socket, for [`VirtualMachine::replace_disk`].
    qmp: PathBuf,
    /// The disks the VM booted with, in command-line order.
    disks: Vec<BootDisk>,
    /// How many disk images have been swapped in (names each new node uniquely).
    replaced: std::sync::atomic::AtomicU32,
    accel: AccelChoice,
}

impl QemuVm {
    /// The name and pid of QEMU and of every helper, QEMU first.
    pub fn pids(&self) -> &[(String, u32)] {
        &self.pids
    }

    /// The accelerator the VM runs with, and why it was chosen.
    pub fn accel(&self) -> &AccelChoice {
        &self.accel
    }
}

/// A disk as the VM booted with it: its serial and the size the guest probed.
#[derive(Debug)]
struct BootDisk {
    id: String,
    size: u64,
}

/// `value` as a JSON string literal.
fn json_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The QMP commands that open `path` as a new file node `node` and make it the file of the
/// raw format node `format`: `blockdev-reopen` swaps the child under the device, so the
/// guest reads the new image from its next request on.
fn replace_disk_commands(format: &str, node: &str, path: &str, read_only: bool) -> [String; 2] {
    let (ro, discard) = if read_only {
        ("true", "ignore")
    } else {
        ("false", "unmap")
    };
    // Writeback caching with flushes honoured, as the command line opens every disk.
    let cache = r#"{"direct":false,"no-flush":false}"#;
    [
        format!(
            r#"{{"execute":"blockdev-add","arguments":{{"driver":"file","node-name":"{node}","filename":{},"read-only":{ro},"discard":"{discard}","cache":{cache}}}}}"#,
            json_string(path)
        ),
        format!(
            r#"{{"execute":"blockdev-reopen","arguments":{{"options":[{{"driver":"raw","node-name":"{format}","file":"{node}","read-only":{ro},"discard":"{discard}","cache":{cache}}}]}}}}"#
        ),
    ]
}

impl Drop for QemuVm {
    fn drop(&mut self) {
        if self.shared.exit().is_none() {
            self.shared.request_kill();
        }
    }
}

impl VirtualMachine for QemuVm {
    fn dial(&self, port: u32, timeout: Duration) -> BoxFuture<'_, Result<VsockStream, VmError>> {
        Box::pin(self.shared.dial(port, timeout))
    }

    fn connector(&self, port: u32, timeout: Duration) -> VsockConnector {
        let shared = Arc::clone(&self.shared);
        VsockConnector::new(port, move || {
            let shared = Arc::clone(&shared);
            Box::pin(async move { shared.dial(port, timeout).await })
        })
    }

    fn listen(&self, port: u32) -> BoxFuture<'_, Result<VsockListener, VmError>> {
        Box::pin(async move { listen(&self.shared, port) })
    }

    fn wait(&self) -> BoxFuture<'_, VmExit> {
        Box::pin(self.shared.wait())
    }

    fn exit(&self) -> Option<VmExit> {
        self.shared.exit()
    }

    fn replace_disk<'a>(
        &'a self,
        id: &'a str,
        path: &'a Path,
        read_only: bool,
    ) -> BoxFuture<'a, Result<(), VmError>> {
        Box::pin(async move {
            let op = format!("replacing disk {id} with {}", path.display());
            let fail = |source: io::Error| VmError::Io {
                op: op.clone(),
                source,
            };
            let invalid =
                |reason: String| fail(io::Error::new(io::ErrorKind::InvalidInput, reason));
            let (index, disk) = self
                .disks
                .iter()
                .enumerate()
                .find(|(_, d)| d.id == id)
                .ok_or_else(|| invalid("the vm has no such disk".into()))?;
            let size = std::fs::metadata(path).map_err(fail)?.len();
            if size > disk.size {
                return Err(invalid(format!(
                    "the image ({size} bytes) is larger than the disk the guest probed ({} bytes)",
                    disk.size
                )));
            }
            let path = path
                .to_str()
                .ok_or_else(|| invalid("the path is not valid UTF-8".into()))?;
            let n = self
                .replaced
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let node = format!("swap{n}");
            let commands =
                replace_disk_commands(&cmdline::format_node(index), &node, path, read_only);
            let swap = async {
                let mut qmp = qmp::Qmp::connect(&self.qmp).await?;
                for command in &commands {
                    qmp.execute(command).await?;
                }
                Ok::<_, io::Error>(())
            };
            match tokio::time::timeout(Duration::from_secs(10), swap).await {
                Ok(result) => result.map_err(fail),
                Err(_) => Err(fail(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "qemu's monitor did not answer within 10s",
                ))),
            }
        })
    }

    fn kill(&self) -> BoxFuture<'_, VmExit> {
        Box::pin(async move {
            if self.shared.exit().is_none() {
                self.shared.request_kill();
            }
            self.shared.wait().await
        })
    }
}

/// Releases a listened-on port: stops the accept task and removes the socket file.
struct ListenGuard {
    shared: Arc<Shared>,
    port: u32,
    path: PathBuf,
    task: tokio::task::AbortHandle,
}

impl Drop for ListenGuard {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
        if let Ok(mut ports) = self.shared.listening.lock() {
            ports.remove(&self.port);
        }
    }
}

fn listen(shared: &Arc<Shared>, port: u32) -> Result<VsockListener, VmError> {
    if let Some(exit) = shared.exit() {
        return Err(VmError::Exited(exit));
    }
    {
        // The lock only guards a set of ports; a poisoned one still holds a valid set.
        let mut ports = shared.listening.lock().unwrap_or_else(|p| p.into_inner());
        if !ports.insert(port) {
            return Err(VmError::PortInUse { port });
        }
    }
    let path = hybrid_vsock::listen_path(&shared.uds_path, port);
    let _ = std::fs::remove_file(&path);
    let listener = match UnixListener::bind(&path) {
        Ok(listener) => listener,
        Err(source) => {
            if let Ok(mut ports) = shared.listening.lock() {
                ports.remove(&port);
            }
            return Err(VmError::Io {
                op: format!("listening on {}", path.display()),
                source,
            });
        }
    };
    let (tx, rx) = mpsc::channel(16);
    let mut exit = shared.exit.clone();
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let item = accepted.map(|(stream, _)| VsockStream::new(stream));
                    if tx.send(item).await.is_err() {
                        break;
                    }
                }
                () = async { let _ = exit.wait_for(Option::is_some).await; } => break,
                () = tx.closed() => break,
            }
        }
    });
    let guard = ListenGuard {
        shared: Arc::clone(shared),
        port,
        path,
        task: task.abort_handle(),
    };
    Ok(VsockListener::new(port, rx, Box::new(guard)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_refused_when_user_namespaces_are_off() {
        assert!(sandbox_possible_unprivileged(&[]).is_ok());
        let allowed = [("/proc/sys/user/max_user_namespaces", "96369".to_owned())];
        assert!(sandbox_possible_unprivileged(&allowed).is_ok());
        let err = sandbox_possible_unprivileged(&[
            ("/proc/sys/user/max_user_namespaces", "96369".into()),
            (
                "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
                "1".into(),
            ),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("apparmor_restrict_unprivileged_userns = 1 forbids them"),
            "{err}"
        );
    }

    #[test]
    fn cpu_khz_comes_from_the_first_mhz_line() {
        let info = "processor\t: 0\ncpu MHz\t\t: 2300.000\ncpu MHz\t\t: 1200.5\n";
        assert_eq!(parse_cpu_khz(info), Some(2_300_000));
        assert_eq!(parse_cpu_khz("cpu MHz : fast\n"), None);
        assert_eq!(parse_cpu_khz(""), None);
    }

    #[test]
    fn log_tail_keeps_the_last_three_lines() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("x.log");
        std::fs::write(&log, "a\nb\n\nc\nd\n").unwrap();
        assert_eq!(log_tail(&log), "b | c | d");
        assert!(log_tail(&dir.path().join("none.log")).starts_with("no output in"));
    }
}

#[cfg(test)]
mod replace_disk_tests {
    use super::*;

    #[test]
    fn json_string_escapes_what_json_requires() {
        assert_eq!(json_string(r#"/a "b"\c"#), r#""/a \"b\"\\c""#);
        assert_eq!(json_string("x\ny"), r#""x\u000ay""#);
    }

    #[test]
    fn replace_disk_reopens_the_format_node_onto_a_new_file_node() {
        let [add, reopen] = replace_disk_commands("fmt1", "swap0", "/c/rw.ext4", false);
        assert_eq!(
            add,
            r#"{"execute":"blockdev-add","arguments":{"driver":"file","node-name":"swap0","filename":"/c/rw.ext4","read-only":false,"discard":"unmap","cache":{"direct":false,"no-flush":false}}}"#
        );
        assert_eq!(
            reopen,
            r#"{"execute":"blockdev-reopen","arguments":{"options":[{"driver":"raw","node-name":"fmt1","file":"swap0","read-only":false,"discard":"unmap","cache":{"direct":false,"no-flush":false}}]}}"#
        );
        let [add, _] = replace_disk_commands("fmt0", "swap1", "/i/rootfs.ext4", true);
        assert!(add.contains(r#""read-only":true"#), "{add}");
    }
}
