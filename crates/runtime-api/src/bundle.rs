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
//!   runtime.lock    empty; the runtime holds an exclusive flock on it for its whole life,
//!                   taken before it writes anything else (see Bundle::runtime_alive)
//!   vm/             the VM's runtime dir (QEMU's sockets and helper logs) when its path is
//!                   short enough for Unix sockets; otherwise a private dir under $TMPDIR
//! ```

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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

    /// `runtime.lock`: held (flock, exclusive) by the bundle's runtime while it lives.
    pub fn lock(&self) -> PathBuf {
        self.dir.join("runtime.lock")
    }

    /// Takes the runtime's lock on this bundle, to be held for the runtime's whole life (drop
    /// the returned guard, or exit, to release it). The file is opened close-on-exec, so no
    /// process the runtime spawns (QEMU, its helpers) keeps the lock after the runtime dies.
    /// A concurrent [`Bundle::runtime_alive`] probe holds a shared lock for an instant, so
    /// this retries briefly before deciding that another runtime owns the bundle.
    pub fn hold_runtime_lock(&self) -> Result<RuntimeLock, LockError> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.lock();
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        // std opens every file with O_CLOEXEC; saying it again documents the contract.
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
            .map_err(io)?;
        let deadline = Instant::now() + LOCK_CONTENTION;
        loop {
            match flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
                Ok(()) => return Ok(RuntimeLock { _file: file }),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        return Err(LockError::Held(path));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(io(e)),
            }
        }
    }

    /// Whether a runtime lives for this bundle: some process holds `runtime.lock`. This is
    /// the daemon's only liveness test; it needs no pid, so a reused pid or a renamed binary
    /// cannot fool it, and a runtime killed with SIGKILL reads as dead at once (the kernel
    /// drops its lock with its last file descriptor). A bundle without the file never had a
    /// runtime.
    pub fn runtime_alive(&self) -> bool {
        let Ok(file) = File::open(self.lock()) else {
            return false;
        };
        // A shared lock conflicts only with the runtime's exclusive one; it is released when
        // `file` drops at the end of this call.
        match flock(&file, libc::LOCK_SH | libc::LOCK_NB) {
            Ok(()) => false,
            Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
        }
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

/// How long [`Bundle::hold_runtime_lock`] waits out a liveness probe's shared lock.
const LOCK_CONTENTION: Duration = Duration::from_secs(2);

/// A runtime's exclusive lock on its bundle; released when dropped or when the process ends.
#[derive(Debug)]
pub struct RuntimeLock {
    _file: File,
}

/// Why a runtime could not take its bundle's lock.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another live runtime holds it.
    #[error("another container-runtime holds {0}")]
    Held(PathBuf),
    /// The lock file could not be opened or locked.
    #[error("locking {path}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
}

fn flock(file: &File, operation: libc::c_int) -> std::io::Result<()> {
    loop {
        // SAFETY: flock(2) on a descriptor `file` owns for the duration of the call; no
        // memory is passed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), operation) };
        if rc == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_reads_alive_and_a_dropped_one_dead() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = Bundle::new(dir.path());
        assert!(!bundle.runtime_alive(), "no lock file yet");
        let lock = bundle.hold_runtime_lock().unwrap();
        assert!(bundle.runtime_alive());
        // A probe does not steal or keep the lock.
        assert!(bundle.runtime_alive());
        let second = bundle.hold_runtime_lock();
        assert!(
            matches!(second, Err(LockError::Held(_))),
            "a second runtime must be refused: {second:?}"
        );
        drop(lock);
        assert!(!bundle.runtime_alive());
        assert!(bundle.lock().exists(), "the file stays; only the lock goes");
    }

    #[test]
    fn a_spawned_child_does_not_keep_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = Bundle::new(dir.path());
        let lock = bundle.hold_runtime_lock().unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        drop(lock);
        let alive = bundle.runtime_alive();
        let _ = child.kill();
        let _ = child.wait();
        assert!(!alive, "a child spawned while the lock was held kept it");
    }

    #[test]
    fn a_probe_racing_the_runtime_does_not_stop_it_locking() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = Bundle::new(dir.path());
        std::fs::write(bundle.lock(), b"").unwrap();
        // Hold a prober's shared lock for a moment, as the daemon's probe does.
        let probe = File::open(bundle.lock()).unwrap();
        flock(&probe, libc::LOCK_SH).unwrap();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            drop(probe);
        });
        let lock = bundle.hold_runtime_lock();
        releaser.join().unwrap();
        assert!(lock.is_ok(), "{lock:?}");
        assert!(bundle.runtime_alive());
    }
}
