//! The bundle directory: one per container, made by the daemon, owned by its runtime.
//!
//! ```text
//! <bundle>/
//!   config.json     RuntimeConfig, written by the daemon (atomically) before the runtime starts
//!   state.json      State, rewritten atomically by the runtime at every change ("created"
//!                   with the runtime's pid as soon as it starts; ready once runtime.sock
//!                   answers; "stopped" with exit_code and error when it ends or fails)
//!   stdio.log       the init process's output, JSON lines (see stdio_log), appended across
//!                   runs of the same bundle
//!   rw.ext4         (or wherever config.writable_layer.path says) created when missing
//!   boot.log        the VM's console
//!   runtime.log     the runtime's own log
//!   runtime.sock    the runtime's gRPC API (mode 0600), present while it serves
//!   vm/             the VM's runtime dir (QEMU's sockets and helper logs) when its path is
//!                   short enough for Unix sockets; otherwise a private dir under $TMPDIR
//! ```

use std::path::{Path, PathBuf};

/// The paths of one bundle.
#[derive(Debug, Clone)]
pub struct Bundle {
    dir: PathBuf,
}

impl Bundle {
    /// The bundle at `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The bundle directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `config.json`.
    pub fn config(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    /// `state.json`.
    pub fn state(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// `stdio.log`.
    pub fn stdio_log(&self) -> PathBuf {
        self.dir.join("stdio.log")
    }

    /// `boot.log`.
    pub fn boot_log(&self) -> PathBuf {
        self.dir.join("boot.log")
    }

    /// `runtime.log`.
    pub fn runtime_log(&self) -> PathBuf {
        self.dir.join("runtime.log")
    }

    /// `runtime.sock`.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("runtime.sock")
    }

    /// `maintenance.json`: the config a maintenance runtime boots from.
    pub fn maintenance_config(&self) -> PathBuf {
        self.dir.join("maintenance.json")
    }

    /// The socket a maintenance runtime (`--maintenance`: a stopped container's files,
    /// read-only) serves on.
    pub fn maintenance_socket(&self) -> PathBuf {
        self.dir.join("maint.sock")
    }

    /// `vm/`.
    pub fn vm_dir(&self) -> PathBuf {
        self.dir.join("vm")
    }
}
