//! Test support for booting real VMs: finds the guest artifacts, boots a VM in its own temp
//! dir and connects the guest agent.
//!
//! Artifacts: `$CONTAINER_KERNEL` and `$CONTAINER_INITRD`, else `target/guest/vmlinux` and
//! `target/guest/initramfs.cpio` of the workspace (built by `cargo xtask kernel` and
//! `cargo xtask guest`); for an aarch64 guest `$CONTAINER_KERNEL_ARM64` and
//! `$CONTAINER_INITRD_ARM64`, else the same names in `target/guest/arm64/` (built by
//! `cargo xtask guest --arch arm64`). When they are missing a VM test prints why and skips, unless
//! `CONTAINER_REQUIRE_VM=1` (CI), where it fails. Meant for tests: failures panic with the
//! guest console's last lines in the message.

use std::path::{Path, PathBuf};
use std::time::Duration;

use agent::client::{AgentClient, ConnectOptions};
use agent::v1::ShutdownRequest;
use vmm::{Arch, DiskConfig, NicConfig, ShareConfig, Stopped, VirtualMachine, VmConfig};

use crate::{Qemu, QemuOptions, QemuVm};

/// Set to `1` to make missing guest artifacts fail VM tests instead of skipping them.
pub const REQUIRE_VM_ENV: &str = "CONTAINER_REQUIRE_VM";

/// The guest kernel and initramfs to boot.
#[derive(Debug, Clone)]
pub struct GuestArtifacts {
    /// The architecture they are built for.
    pub arch: Arch,
    /// The kernel (`vmlinux` or `bzImage`).
    pub kernel: PathBuf,
    /// The initramfs holding vminitd as `/init`.
    pub initrd: PathBuf,
}

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Finds the guest artifacts of the host's architecture, or says why they are missing.
pub fn guest_artifacts() -> Result<GuestArtifacts, String> {
    guest_artifacts_for(Arch::host())
}

/// Where `cargo xtask guest` publishes a guest of `arch`, and the variables that override it:
/// (subdirectory of `target/guest/`, kernel variable, initrd variable, the xtask command).
fn artifact_lookup(arch: Arch) -> (&'static str, &'static str, &'static str, &'static str) {
    match arch {
        Arch::X86_64 => (
            "",
            "CONTAINER_KERNEL",
            "CONTAINER_INITRD",
            "`cargo xtask guest`",
        ),
        Arch::Aarch64 => (
            "arm64",
            "CONTAINER_KERNEL_ARM64",
            "CONTAINER_INITRD_ARM64",
            "`cargo xtask guest --arch arm64`",
        ),
    }
}

/// Finds the guest artifacts of `arch`, or says why they are missing.
pub fn guest_artifacts_for(arch: Arch) -> Result<GuestArtifacts, String> {
    let (subdir, kernel_env, initrd_env, xtask) = artifact_lookup(arch);
    let guest_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
        .join("guest")
        .join(subdir);
    let pick = |env: &str, default: &str| -> Result<PathBuf, String> {
        let path = std::env::var_os(env)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| guest_dir.join(default));
        if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "the {arch} guest's {} not found (set ${env}, or run {xtask})",
                path.display()
            ))
        }
    };
    Ok(GuestArtifacts {
        arch,
        kernel: pick(kernel_env, "vmlinux")?,
        initrd: pick(initrd_env, "initramfs.cpio")?,
    })
}

/// The guest artifacts, or `None` after printing why `test` skips. Panics instead when
/// `CONTAINER_REQUIRE_VM=1`.
pub fn guest_artifacts_or_skip(test: &str) -> Option<GuestArtifacts> {
    guest_artifacts_or_skip_for(Arch::host(), test)
}

/// [`guest_artifacts_or_skip`] for a guest of `arch`.
pub fn guest_artifacts_or_skip_for(arch: Arch, test: &str) -> Option<GuestArtifacts> {
    match guest_artifacts_for(arch) {
        Ok(artifacts) => Some(artifacts),
        Err(why) if std::env::var(REQUIRE_VM_ENV).as_deref() == Ok("1") => {
            panic!("{test}: {why}, and {REQUIRE_VM_ENV}=1 forbids skipping")
        }
        Err(why) => {
            eprintln!("skipping {test}: {why}");
            None
        }
    }
}

/// What a test VM gets besides the defaults (1 vCPU, 256 MiB, the agent connected).
#[derive(Debug, Clone)]
pub struct TestVmOptions {
    /// Block devices.
    pub disks: Vec<DiskConfig>,
    /// Shared directories.
    pub shares: Vec<ShareConfig>,
    /// Network interfaces.
    pub nics: Vec<NicConfig>,
    /// Extra kernel command line words.
    pub cmdline: Vec<String>,
    /// vCPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// How long to wait for the agent to answer.
    pub boot_timeout: Duration,
}

impl Default for TestVmOptions {
    fn default() -> Self {
        Self {
            disks: vec![],
            shares: vec![],
            nics: vec![],
            cmdline: vec![],
            cpus: 1,
            memory_mib: 256,
            boot_timeout: Duration::from_secs(60),
        }
    }
}

/// A booted VM with its agent connected, living in its own temp dir.
///
/// Field order matters: the agent goes first, then the VM (killed on drop), then the dir.
#[derive(Debug)]
pub struct TestVm {
    /// The connected, version-checked agent client.
    pub agent: AgentClient,
    /// The VM.
    pub vm: QemuVm,
    /// The guest console log.
    pub console_log: PathBuf,
    /// The test's temp dir: the runtime dir is `run/` inside it. Put disk images here too.
    pub dir: tempfile::TempDir,
}

/// Boots a VM with `disks` and the agent connected; `None` when the test must skip.
pub async fn boot_test_vm(disks: Vec<DiskConfig>) -> Option<TestVm> {
    TestVm::boot(TestVmOptions {
        disks,
        ..TestVmOptions::default()
    })
    .await
}

impl TestVm {
    /// Boots a VM with `options` and connects the agent; `None` when the test must skip.
    /// Panics (with the console's last lines) if the VM does not come up.
    pub async fn boot(options: TestVmOptions) -> Option<TestVm> {
        // The test harness names each test's thread after the test.
        let test = std::thread::current()
            .name()
            .unwrap_or("vm test")
            .to_owned();
        let artifacts = guest_artifacts_or_skip(&test)?;
        let dir = new_temp_dir();
        Some(Self::boot_in(dir, &artifacts, options).await)
    }

    /// Like [`TestVm::boot`], in a temp dir the caller made (e.g. holding disk images).
    pub async fn boot_in(
        dir: tempfile::TempDir,
        artifacts: &GuestArtifacts,
        options: TestVmOptions,
    ) -> TestVm {
        let console_log = dir.path().join("console.log");
        let config = VmConfig {
            arch: artifacts.arch,
            kernel: artifacts.kernel.clone(),
            initrd: Some(artifacts.initrd.clone()),
            cmdline: options.cmdline,
            cpus: options.cpus,
            memory_mib: options.memory_mib,
            disks: options.disks,
            nics: options.nics,
            shares: options.shares,
            console_log: Some(console_log.clone()),
            runtime_dir: dir.path().join("run"),
            rosetta: false,
        };
        let qemu = match Qemu::new(QemuOptions::default()) {
            Ok(qemu) => qemu,
            Err(e) => panic!("{e}"),
        };
        let vm = match qemu.boot_vm(config).await {
            Ok(vm) => vm,
            Err(e) => panic!("booting the test vm: {e}"),
        };
        let agent = match connect_agent(&vm, options.boot_timeout).await {
            Ok(agent) => agent,
            Err(e) => panic!(
                "guest agent: {e}; vm exit: {:?}; console: {}; vhost-device-vsock: {}",
                vm.exit(),
                console_tail(&console_log),
                console_tail(&dir.path().join("run/vhost-device-vsock.log"))
            ),
        };
        TestVm {
            agent,
            vm,
            console_log,
            dir,
        }
    }

    /// The guest console output so far.
    pub fn console(&self) -> String {
        std::fs::read_to_string(&self.console_log).unwrap_or_default()
    }

    /// Asks the agent to shut the guest down and waits up to 20 s for the VM to end, then
    /// kills it.
    pub async fn shutdown(&self) -> Stopped {
        let agent = self.agent.clone();
        let graceful = Box::pin(async move {
            let _ = agent.shutdown(ShutdownRequest { grace_seconds: 1 }).await;
        });
        self.vm.stop(graceful, Duration::from_secs(20)).await
    }
}

/// Connects the agent on its vsock port, retrying until `boot_timeout`.
pub async fn connect_agent(
    vm: &QemuVm,
    boot_timeout: Duration,
) -> Result<AgentClient, agent::client::ClientError> {
    let connector = vm.connector(agent::AGENT_VSOCK_PORT, Duration::from_secs(2));
    AgentClient::connect(
        move || {
            let connector = connector.clone();
            async move { connector.connect().await.map_err(std::io::Error::other) }
        },
        ConnectOptions {
            boot_timeout,
            ..ConnectOptions::default()
        },
    )
    .await
}

/// A fresh temp dir with a short path (Unix socket paths are limited).
pub fn new_temp_dir() -> tempfile::TempDir {
    match tempfile::Builder::new().prefix("vm").tempdir_in("/tmp") {
        Ok(dir) => dir,
        Err(e) => panic!("creating a temp dir in /tmp: {e}"),
    }
}

/// The last lines of a console log, for failure messages.
pub fn console_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// The processes among `pids` that still exist (zombies included: a zombie was not reaped).
pub fn surviving(pids: &[(String, u32)]) -> Vec<(String, u32)> {
    pids.iter()
        .filter(|(_, pid)| Path::new(&format!("/proc/{pid}")).exists())
        .cloned()
        .collect()
}
