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
pub use crate::guest_layout::{GUEST_DIR, GUEST_ROOTFS, GUEST_UPPER};

mod boot;
pub mod builder;
mod copy;
mod exec;
mod network;
mod oci;
mod pool;
mod prepare;
mod stdio;

pub use boot::MaintenanceVm;
pub(crate) use copy::{check_container_path, stopped_write_dir};
pub use exec::{ExecEvent, ExecRequest};
use oci::build_spec;
pub use pool::PooledVm;
use stdio::pump_init_output;

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

/// What attachers of the init process (and an exec's client) receive: output, then the exit
/// code, framed as every protocol frames it (crates/wire).
pub use wire::v1::stdio_output::Output;

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
    /// Set (before `Output::ExitCode` is broadcast) when the init process has exited.
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
    /// Its processes are frozen (`pause`); kill and stop thaw them first.
    frozen: std::sync::atomic::AtomicBool,
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
    /// Creates the init process as the last of the set-up `steps`, sent to the guest in one
    /// batch while the host accepts the process's stdio connections.
    async fn create_init(
        self: &Arc<Self>,
        mut steps: prepare::Steps,
    ) -> Result<(), ContainerError> {
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
        steps.push(
            "creating the init process",
            "CreateProcess",
            pb::prepare_step::Step::CreateProcess(request),
        );
        let prepare = steps.send(&self.agent);
        let accept = listeners.accept_all();
        tokio::pin!(prepare, accept);
        // The guest dials the stdio ports only once every step before CreateProcess has
        // succeeded: a failed batch ends the wait for them.
        let mut stdio = None;
        let prepared = loop {
            tokio::select! {
                prepared = &mut prepare => break prepared,
                accepted = &mut accept, if stdio.is_none() => stdio = Some(accepted),
            }
        };
        prepared.map_err(|e| match e {
            prepare::PrepareError::Step {
                create_process: true,
                what,
                status,
                ..
            } => self.start_error(
                &what,
                ClientError::Rpc {
                    rpc: "CreateProcess",
                    status,
                },
            ),
            e => e.into_container_error(),
        })?;
        let stdio = match stdio {
            Some(stdio) => stdio?,
            None => accept.await?,
        };
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
        let _ = self.output.send(Output::ExitCode(code));
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
    pub async fn stats(&self) -> Result<wire::v1::ContainerStats, ContainerError> {
        self.agent
            .stats(pb::StatsRequest {
                container_id: self.config.id.clone(),
            })
            .await
            .map_err(agent_err("reading stats"))
    }

    /// Freezes or thaws every process of the running container through the guest's cgroup
    /// freezer.
    pub async fn freeze(&self, frozen: bool) -> Result<(), ContainerError> {
        if self.exited.borrow().is_some() || self.state().status != Status::Running {
            return Err(ContainerError::FailedPrecondition(format!(
                "container {} is not running",
                self.config.id
            )));
        }
        self.agent
            .freeze(pb::FreezeRequest {
                container_id: self.config.id.clone(),
                frozen,
            })
            .await
            .map_err(agent_err(if frozen { "freezing" } else { "thawing" }))?;
        self.frozen
            .store(frozen, std::sync::atomic::Ordering::SeqCst);
        tracing::info!(frozen, "freezer changed");
        Ok(())
    }

    /// Thaws a frozen container, so a signal reaches its processes (stop and kill of a paused
    /// container, as Docker does).
    pub(crate) async fn thaw_if_frozen(&self) {
        if self.frozen.load(std::sync::atomic::Ordering::SeqCst)
            && let Err(e) = self.freeze(false).await
        {
            tracing::warn!("thawing before a signal: {e}");
        }
    }

    /// The guest agent (for streaming calls the server relays).
    pub fn agent(&self) -> &AgentClient {
        &self.agent
    }

    /// Stops the container if it runs and waits for the end (used on SIGTERM to the runtime).
    pub async fn shutdown(self: &Arc<Self>) -> Finished {
        if self.exited.borrow().is_none() {
            let _ = self.stop(None, None).await;
        }
        self.wait().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
