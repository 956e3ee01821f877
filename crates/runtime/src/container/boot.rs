//! Creating and booting the VM: the writable layer, disk and share attachment, the maintenance VM, and the container's root filesystem in the guest.

use super::network::publish_ports;
use super::prepare::{PrepareError, maintenance_steps, setup_steps};
use super::*;

/// Boots a VM on this platform's hypervisor; returns it with the host pids of its processes.
///
/// The one place the runtime chooses its backend: QEMU on Linux, Virtualization.framework on
/// macOS (also chosen under `--cfg check_macos`, so `cargo xtask check-macos` type-checks
/// this path on Linux).
#[cfg(all(target_os = "linux", not(check_macos)))]
pub(super) async fn boot_vm(
    config: VmConfig,
) -> Result<(Arc<dyn VirtualMachine>, Vec<u32>), VmError> {
    let qemu = vmm_qemu::Qemu::new(vmm_qemu::QemuOptions::default())?;
    let vm = qemu.boot_vm(config).await?;
    tracing::info!(pids = ?vm.pids(), accel = ?vm.accel(), "vm started");
    let pids = vm.pids().iter().map(|(_, pid)| *pid).collect();
    Ok((Arc::new(vm), pids))
}

/// Boots a VM with Virtualization.framework: the VM lives inside this process, so it has no
/// helper pids of its own.
#[cfg(any(target_os = "macos", check_macos))]
pub(super) async fn boot_vm(
    config: VmConfig,
) -> Result<(Arc<dyn VirtualMachine>, Vec<u32>), VmError> {
    let vm = vmm_vz::Vz::new()?.boot_vm(config).await?;
    tracing::info!("vm started (virtualization.framework)");
    Ok((Arc::new(vm), Vec::new()))
}

#[cfg(not(any(target_os = "linux", target_os = "macos", check_macos)))]
pub(super) async fn boot_vm(
    _config: VmConfig,
) -> Result<(Arc<dyn VirtualMachine>, Vec<u32>), VmError> {
    Err(VmError::MissingTool {
        program: "a hypervisor backend".into(),
        hint: "container-runtime has backends for linux (qemu) and macOS (virtualization.framework) only".into(),
    })
}

/// Creates the writable layer if it is missing: cloned from the template of its size when
/// the config names a template directory, else formatted under a temp name beside it; in
/// both cases renamed into place, so a crash never leaves a half-written layer behind.
pub fn ensure_writable_layer(config: &RuntimeConfig) -> Result<(), ContainerError> {
    let layer = &config.writable_layer;
    if layer.path.is_file() {
        return Ok(());
    }
    let err = |source| ContainerError::WritableLayer {
        path: layer.path.clone(),
        source,
    };
    let options = ext4::Options {
        label: "container-rw".into(),
        ..ext4::Options::default()
    };
    let started = std::time::Instant::now();
    if let Some(templates) = &layer.template_dir {
        let made =
            ext4::template::empty_from_template(templates, &layer.path, layer.size_bytes, &options)
                .map_err(err)?;
        tracing::info!(elapsed = ?started.elapsed(), ?made, "writable layer made from its template");
        return Ok(());
    }
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
    ext4::format_empty(&tmp, layer.size_bytes, &options).map_err(err)?;
    tmp.persist(&layer.path).map_err(|e| ContainerError::Io {
        op: format!("renaming into {}", layer.path.display()),
        source: e.error,
    })?;
    tracing::info!(elapsed = ?started.elapsed(), "writable layer formatted");
    Ok(())
}

/// The VM's runtime dir: `<bundle>/vm` when short enough for its Unix sockets, else a
/// private dir under $TMPDIR (returned so the caller removes it at the end).
pub(super) fn vm_runtime_dir(
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

/// The last lines of the VM's console, for the runtime's log.
pub(super) fn console_tail(path: &std::path::Path) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// A VM booted with a stopped container's image and writable layer and its root filesystem
/// mounted, no process, no network and no volumes: what `export`, `diff` and `cp` out of a
/// stopped container read from (read-only), and `cp` into it writes to (writable).
pub struct MaintenanceVm {
    /// The VM.
    pub vm: Arc<dyn VirtualMachine>,
    /// Its guest agent.
    pub agent: AgentClient,
    _vm_tmp_dir: Option<tempfile::TempDir>,
}

impl MaintenanceVm {
    /// Boots the VM with the image's rootfs and the container's writable layer, and joins
    /// them at [`GUEST_ROOTFS`]: see [`maintenance_steps`] for `writable`.
    pub async fn boot(
        bundle: &Bundle,
        config: &RuntimeConfig,
        writable: bool,
    ) -> Result<Self, ContainerError> {
        let layer_config = config.clone();
        tokio::task::spawn_blocking(move || ensure_writable_layer(&layer_config))
            .await
            .map_err(|e| ContainerError::Io {
                op: "creating the writable layer".into(),
                source: std::io::Error::other(e.to_string()),
            })??;
        let (runtime_dir, tmp_dir) = vm_runtime_dir(bundle)?;
        let vm_config = VmConfig {
            // The image's architecture, as the daemon chose the guest by it.
            arch: config.arch,
            kernel: config.kernel.clone(),
            initrd: Some(config.initramfs.clone()),
            cmdline: config.kernel_args.clone(),
            cpus: 1,
            memory_mib: config.vm_memory_mib(),
            disks: container_disks(config),
            nics: Vec::new(),
            shares: Vec::new(),
            console_log: Some(bundle.boot_log()),
            runtime_dir,
            rosetta: config.rosetta,
        };
        let (vm, _) = boot_vm(vm_config).await?;
        let mounted = async {
            let agent = connect_agent(vm.as_ref()).await?;
            maintenance_steps(writable)
                .send(&agent)
                .await
                .map_err(PrepareError::into_container_error)?;
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
        let mut disks = container_disks(&config);
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
            // The image's architecture, as the daemon chose the guest by it.
            arch: config.arch,
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
            rosetta: config.rosetta,
        };
        let (vm, vm_pids) = boot_vm(vm_config).await?;
        let console_log = bundle.boot_log();
        Self::set_up_or_kill(
            bundle,
            config,
            vm,
            vm_pids,
            tmp_dir,
            None,
            None,
            &console_log,
        )
        .await
    }

    /// [`Container::set_up`] of a booted VM (cold or taken from the pool, whose NICs still
    /// carry the pool's `slot_macs`), which is killed, with the last lines of its console
    /// (`console_log`) logged, when that fails.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn set_up_or_kill(
        bundle: Bundle,
        config: RuntimeConfig,
        vm: Arc<dyn VirtualMachine>,
        vm_pids: Vec<u32>,
        vm_tmp_dir: Option<tempfile::TempDir>,
        agent: Option<AgentClient>,
        slot_macs: Option<&[String]>,
        console_log: &std::path::Path,
    ) -> Result<Arc<Container>, ContainerError> {
        let result = Self::set_up(
            bundle,
            config,
            Arc::clone(&vm),
            vm_pids,
            vm_tmp_dir,
            agent,
            slot_macs,
        )
        .await;
        if let Err(e) = &result {
            vm.kill().await;
            tracing::error!(
                "setting up the container failed: {e}; vm exit: {:?}; console tail:\n{}",
                vm.exit(),
                console_tail(console_log)
            );
        }
        result
    }

    /// Connects to the agent (unless the pool did), binds the published ports and socket
    /// relays, then sends the whole guest set-up and the init process's creation in one
    /// batch ([`super::prepare`]).
    async fn set_up(
        bundle: Bundle,
        config: RuntimeConfig,
        vm: Arc<dyn VirtualMachine>,
        vm_pids: Vec<u32>,
        vm_tmp_dir: Option<tempfile::TempDir>,
        agent: Option<AgentClient>,
        slot_macs: Option<&[String]>,
    ) -> Result<Arc<Container>, ContainerError> {
        let agent = match agent {
            Some(agent) => agent,
            None => connect_agent(vm.as_ref()).await?,
        };
        tracing::info!(version = ?agent.guest_version(), "guest agent connected");
        let write_resolv = !config.dns.disabled;
        let steps = setup_steps(&config, write_resolv, slot_macs);
        let spec = build_spec(&config, write_resolv)?;
        let proxies = publish_ports(&config).await?;
        // The relays' guest sockets live outside the rootfs, so they need no mount first;
        // the init process's bind mounts of them (in the batch) need them in place.
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
            frozen: std::sync::atomic::AtomicBool::new(false),
            exited: watch::channel(None).0,
            finished: watch::channel(None).0,
            execs: Mutex::new(Default::default()),
            pumps: Mutex::new(None),
            proxies: Mutex::new(proxies),
            relays: Mutex::new(Some(relays)),
            _vm_tmp_dir: vm_tmp_dir,
            config,
        });
        container.create_init(steps).await?;
        container.update_state(|s| s.vm_pids = vm_pids)?;
        let clock = Arc::clone(&container);
        tokio::spawn(async move { clock.sync_clock().await });
        Ok(container)
    }
}

/// Dials the guest agent on its vsock port, waiting up to [`BOOT_TIMEOUT`] for the guest to
/// boot: the container's VM and a maintenance VM connect the same way.
pub(super) async fn connect_agent(vm: &dyn VirtualMachine) -> Result<AgentClient, ContainerError> {
    let connector = vm.connector(agent::AGENT_VSOCK_PORT, Duration::from_secs(2));
    AgentClient::connect(
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
    .map_err(agent_err("connecting to the guest agent"))
}

/// Mounts `source` at `target` in the guest, creating the target.
pub(super) async fn guest_mount(
    agent: &AgentClient,
    source: String,
    target: String,
    fstype: &str,
    options: Vec<String>,
) -> Result<(), ContainerError> {
    let step = format!("mounting {source} at {target}");
    agent
        .mount(pb::MountRequest {
            source,
            target,
            fstype: fstype.to_string(),
            options,
            create_target: true,
        })
        .await
        .map(|_| ())
        .map_err(agent_err(step))
}

/// The image's read-only rootfs and the container's writable layer, by the serials the guest
/// mounts them by (`block-serial:rootfs`, `block-serial:rw`): every VM of a container has
/// these two first.
fn container_disks(config: &RuntimeConfig) -> Vec<DiskConfig> {
    vec![
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
    ]
}
