//! A builder runtime process (`container-runtime --builder DIR`) as the daemon holds it:
//! spawning it with its config, waiting for its API, and closing its stdin to stop it. It
//! knows nothing of the daemon's state (crate::builder does), so the daemon can own one.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use api::ApiError;
use runtime_api::builder::{BuilderClient, BuilderConfig, BuilderDir};

use crate::errors::one_line;

/// How long a builder VM may take to boot (TCG is slow, and builds run while others do).
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the daemon looks for the booting builder's socket.
const READY_POLL: Duration = Duration::from_millis(10);
/// The sparse scratch disk: it costs what the steps write.
const SCRATCH_BYTES: u64 = 64 << 30;
pub(crate) const DEFAULT_CPUS: u32 = 2;
pub(crate) const DEFAULT_MEMORY: u64 = 2 << 30;
/// The builder's NIC (user-mode networking: the address is the slirp default).
const BUILDER_MAC: &str = "02:42:ac:11:00:b1";

pub(crate) fn builder_root(app_root: &Path) -> PathBuf {
    app_root.join("builder")
}

pub(crate) fn cache_mounts_dir(app_root: &Path) -> PathBuf {
    builder_root(app_root).join("cache-mounts")
}

/// A running builder runtime. Dropping it closes the runtime's stdin (its signal to power
/// the VM off) and, for a build's own builder, removes its directory once it exited.
pub struct BuilderProcess {
    pub(crate) child: Option<tokio::process::Child>,
    pub(crate) client: BuilderClient,
    dir: PathBuf,
    remove_dir: bool,
    pub(crate) arch: vmm::Arch,
    pub(crate) cpus: u32,
    pub(crate) memory: u64,
}

impl BuilderProcess {
    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().and_then(|c| c.id()).unwrap_or(0)
    }

    /// Closes the runtime's stdin and waits for it to exit (killed after 30 s).
    pub(crate) async fn stop(mut self) {
        if let Some(child) = self.child.take() {
            finish(child, self.remove_dir.then(|| self.dir.clone())).await;
        }
    }
}

async fn finish(mut child: tokio::process::Child, remove: Option<PathBuf>) {
    drop(child.stdin.take());
    if tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .is_err()
    {
        tracing::warn!("the builder runtime did not exit in 30s; killing it");
        let _ = child.kill().await;
    }
    if let Some(dir) = remove {
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
    }
}

impl Drop for BuilderProcess {
    fn drop(&mut self) {
        let Some(child) = self.child.take() else {
            return;
        };
        let remove = self.remove_dir.then(|| self.dir.clone());
        // Without a runtime (the daemon is exiting) kill_on_drop ends the child.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(finish(child, remove));
        }
    }
}

/// Boots a builder VM in `dir` for guests of `arch`.
pub(crate) async fn spawn(
    app_root: &Path,
    runtime_binary: &Path,
    dir: PathBuf,
    remove_dir: bool,
    arch: vmm::Arch,
    cpus: u32,
    memory: u64,
) -> Result<BuilderProcess, ApiError> {
    let (kernel, initramfs) = crate::kernel::guest_files(app_root, arch)
        .map_err(|e| ApiError::failed_precondition(e.to_string()))?;
    for d in [builder_root(app_root), dir.clone()] {
        statefs::create_private_dir(&d)
            .map_err(|e| ApiError::internal(format!("creating {}: {e}", d.display())))?;
    }
    let bdir = BuilderDir::new(&dir);
    let config = BuilderConfig {
        kernel,
        initramfs,
        arch,
        kernel_args: Vec::new(),
        cpus,
        memory_bytes: memory,
        scratch_size_bytes: SCRATCH_BYTES,
        networks: vec![runtime_api::config::NetworkAttachment {
            mac: BUILDER_MAC.into(),
            attachment: vmm::NicAttachment::User {
                forwards: Vec::new(),
                isolated: false,
            },
            address: Some(crate::networks::USER_NET_ADDRESS.into()),
            gateway: Some(crate::networks::USER_NET_GATEWAY.into()),
            mtu: None,
        }],
        dns: runtime_api::config::Dns {
            nameservers: vec![crate::networks::USER_NET_DNS.into()],
            ..Default::default()
        },
        cache_dir: cache_mounts_dir(app_root),
    };
    config
        .save(&bdir.config())
        .map_err(|e| ApiError::internal(format!("writing the builder config: {e}")))?;
    let _ = std::fs::remove_file(bdir.socket());
    let mut child = tokio::process::Command::new(runtime_binary)
        .arg("--builder")
        .arg(&dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            ApiError::failed_precondition(format!(
                "cannot run the container runtime {}: {e}",
                runtime_binary.display()
            ))
        })?;
    tracing::info!(pid = child.id(), dir = %dir.display(), "builder runtime spawned");
    let deadline = Instant::now() + BOOT_TIMEOUT;
    let client = loop {
        if bdir.socket().exists()
            && let Ok(client) = BuilderClient::connect(&bdir.socket(), CONNECT_TIMEOUT).await
        {
            break client;
        }
        let failed = match child.try_wait() {
            Ok(Some(_)) => Some("the builder runtime exited".to_string()),
            Ok(None) if Instant::now() >= deadline => Some(format!(
                "the builder vm did not boot within {}s",
                BOOT_TIMEOUT.as_secs()
            )),
            Ok(None) => None,
            Err(e) => Some(e.to_string()),
        };
        if let Some(why) = failed {
            let log = std::fs::read_to_string(bdir.bundle().runtime_log()).unwrap_or_default();
            let reason = log
                .lines()
                .rev()
                .find(|l| l.contains("ERROR"))
                .map(str::to_owned)
                .unwrap_or(why);
            let _ = child.start_kill();
            return Err(ApiError::unavailable(format!(
                "cannot boot the builder vm: {}",
                one_line(&reason)
            )));
        }
        // A stat every 10 ms is nothing to the host, and the first step waits for it.
        tokio::time::sleep(READY_POLL).await;
    };
    Ok(BuilderProcess {
        child: Some(child),
        client,
        dir,
        remove_dir,
        arch,
        cpus,
        memory,
    })
}
