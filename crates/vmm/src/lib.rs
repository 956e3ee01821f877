//! The backend-neutral virtual machine interface: boot a Linux VM from a kernel and initramfs
//! with block devices, vsock, network interfaces and shared directories; talk to it over
//! vsock; stop it.
//!
//! This crate holds only the contract: the [`Hypervisor`] and [`VirtualMachine`] traits, the
//! strict [`VmConfig`] types and the vsock stream and listener types. It must not spawn
//! processes, name a hypervisor's options or know about containers, images or the guest
//! agent's protocol: QEMU lives in `vmm-qemu`, Virtualization.framework in `vmm-vz`.

pub mod cmdline;
pub mod config;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod vsock;

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::time::Duration;

pub use config::{
    Arch, ConfigError, DiskConfig, NicAttachment, NicConfig, PortForward, Protocol,
    ROSETTA_SHARE_TAG, ShareConfig, VmConfig,
};
pub use vsock::{VsockConnector, VsockListener, VsockStream};

/// A boxed, sendable future, so that [`VirtualMachine`] stays usable as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How a VM ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmExit {
    /// The guest powered itself off (or rebooted, which ends the VM too).
    PoweredOff,
    /// The host killed it ([`VirtualMachine::kill`], a stop timeout, or the VM being dropped).
    Killed,
    /// The VMM failed or died on its own; `detail` says what it reported.
    Failed {
        /// The VMM's own words, e.g. the last lines of its error output.
        detail: String,
    },
}

impl std::fmt::Display for VmExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VmExit::PoweredOff => f.write_str("powered off"),
            VmExit::Killed => f.write_str("killed"),
            VmExit::Failed { detail } => write!(f, "failed: {detail}"),
        }
    }
}

/// What [`VirtualMachine::stop`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    /// How the VM ended.
    pub exit: VmExit,
    /// True when the graceful path did not finish in time and the VM was killed.
    pub forced: bool,
}

/// The small set of error kinds that crosses process boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The caller asked for something malformed.
    InvalidArgument,
    /// Something of that name already exists.
    AlreadyExists,
    /// The VM is not in a state that allows the call (e.g. it has exited).
    FailedPrecondition,
    /// A part is missing or did not answer in time; retrying may help.
    Unavailable,
    /// Anything else.
    Internal,
}

/// Errors of every VMM backend.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// The config was rejected before anything started.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A program the backend needs is not installed.
    #[error("{program} not found: {hint}")]
    MissingTool {
        /// The program, e.g. `qemu-system-x86_64`.
        program: String,
        /// Where it was looked for and how to get it.
        hint: String,
    },
    /// A helper process or the VMM could not be started or did not come up.
    #[error("{what} did not start: {detail}")]
    Start {
        /// Which part failed, e.g. `virtiofsd for share "data"`.
        what: String,
        /// Why.
        detail: String,
    },
    /// The VM has ended, so the call cannot be served.
    #[error("the vm has exited ({0})")]
    Exited(VmExit),
    /// Nothing in the guest accepted a connection to the port before the deadline.
    #[error("vsock port {port} did not accept a connection within {timeout:?}: {last_error}")]
    DialTimeout {
        /// The guest port.
        port: u32,
        /// How long the dial tried.
        timeout: Duration,
        /// The last reason a connection attempt failed.
        last_error: String,
    },
    /// The host port is already being listened on for this VM.
    #[error("vsock port {port} is already being listened on")]
    PortInUse {
        /// The host port.
        port: u32,
    },
    /// An I/O operation of the backend failed.
    #[error("{op}")]
    Io {
        /// What was being done, e.g. `creating runtime dir /run/x`.
        op: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl VmError {
    /// The coarse kind of this error, for mapping onto gRPC or HTTP status codes.
    pub fn kind(&self) -> ErrorKind {
        match self {
            VmError::Config(_) => ErrorKind::InvalidArgument,
            VmError::MissingTool { .. } => ErrorKind::FailedPrecondition,
            VmError::Start { .. } | VmError::Io { .. } => ErrorKind::Internal,
            VmError::Exited(_) => ErrorKind::FailedPrecondition,
            VmError::DialTimeout { .. } => ErrorKind::Unavailable,
            VmError::PortInUse { .. } => ErrorKind::AlreadyExists,
        }
    }
}

/// A hypervisor backend: turns a [`VmConfig`] into a running VM.
pub trait Hypervisor: Send + Sync {
    /// The VM handle this backend returns.
    type Vm: VirtualMachine;

    /// Validates `config`, starts every helper the VM needs and boots it. Returns as soon as
    /// the guest has started booting; use [`VirtualMachine::dial`] (which retries) to wait for
    /// a guest service. Nothing is left running when this fails.
    fn boot(&self, config: VmConfig) -> BoxFuture<'_, Result<Self::Vm, VmError>>;
}

/// A running (or ended) VM. Dropping the handle kills the VM and every helper it has.
pub trait VirtualMachine: Send + Sync {
    /// Opens a stream to `port` in the guest, retrying until something in the guest listens
    /// there or `timeout` passes. Fails at once if the VM has exited.
    fn dial(&self, port: u32, timeout: Duration) -> BoxFuture<'_, Result<VsockStream, VmError>>;

    /// A cloneable `'static` handle that dials guest `port`, retrying each dial for up to
    /// `timeout`. It does not keep the VM alive: once the VM has ended, dials fail.
    fn connector(&self, port: u32, timeout: Duration) -> VsockConnector;

    /// Starts listening on host `port` for connections the guest opens to the host (CID 2).
    fn listen(&self, port: u32) -> BoxFuture<'_, Result<VsockListener, VmError>>;

    /// Waits until the VM has ended and every helper is reaped.
    fn wait(&self) -> BoxFuture<'_, VmExit>;

    /// How the VM ended, or `None` while it still runs.
    fn exit(&self) -> Option<VmExit>;

    /// Kills the VM at once (no guest cooperation) and waits until every helper is reaped.
    fn kill(&self) -> BoxFuture<'_, VmExit>;

    /// Points the disk `id` (a [`DiskConfig::id`] the VM booted with) at the image `path`
    /// while the guest runs, before the guest has mounted it: how a pre-booted guest takes a
    /// container's disks (the guest finds disks by serial, so it sees the same device with
    /// new contents). The guest keeps the capacity it probed at boot, so the image must not
    /// be larger than the disk it replaces. Backends that cannot do this say so.
    fn replace_disk<'a>(
        &'a self,
        id: &'a str,
        path: &'a std::path::Path,
        read_only: bool,
    ) -> BoxFuture<'a, Result<(), VmError>> {
        let _ = (path, read_only);
        Box::pin(async move {
            Err(VmError::Io {
                op: format!("replacing disk {id}"),
                source: io::Error::new(
                    io::ErrorKind::Unsupported,
                    "this backend cannot replace a disk of a running vm",
                ),
            })
        })
    }

    /// Stops the VM: runs `graceful` (typically the guest agent's Shutdown call) and waits for
    /// the VM to end; if that takes longer than `timeout`, kills it.
    fn stop<'a>(
        &'a self,
        graceful: BoxFuture<'a, ()>,
        timeout: Duration,
    ) -> BoxFuture<'a, Stopped> {
        Box::pin(async move {
            let ended = async {
                tokio::select! {
                    exit = self.wait() => exit,
                    () = graceful => self.wait().await,
                }
            };
            match tokio::time::timeout(timeout, ended).await {
                Ok(exit) => Stopped {
                    exit,
                    forced: false,
                },
                Err(_) => Stopped {
                    exit: self.kill().await,
                    forced: true,
                },
            }
        })
    }
}
