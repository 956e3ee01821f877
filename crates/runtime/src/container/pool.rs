//! A pooled VM: booted before any container exists, with placeholder disks in the places of
//! the rootfs and the writable layer, its NICs under the slot's own MACs, and the agent
//! answering. Claimed, it takes one container's disks and MACs and becomes that
//! container's VM through the same set-up as a VM booted for it.

use runtime_api::pool::{PLACEHOLDER_DISK_BYTES, PoolSlot, PoolSlotConfig};

use super::boot::{boot_vm, connect_agent, console_tail, ensure_writable_layer, vm_runtime_dir};
use super::*;

/// A booted guest waiting for a container.
pub struct PooledVm {
    vm: Arc<dyn VirtualMachine>,
    pids: Vec<u32>,
    agent: AgentClient,
    slot: PoolSlot,
    config: PoolSlotConfig,
    vm_tmp_dir: Option<tempfile::TempDir>,
}

impl PooledVm {
    /// Boots the slot's VM and waits until its agent answers.
    pub async fn boot(slot: PoolSlot, config: PoolSlotConfig) -> Result<Self, ContainerError> {
        if config.macs.len() != config.shape.nics.len() {
            return Err(ContainerError::InvalidArgument(
                "pool.json names a different number of macs and nics".into(),
            ));
        }
        let mut disks = Vec::new();
        for (id, read_only) in [("rootfs", true), ("rw", false)] {
            let path = slot.placeholder(id);
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .open(&path)
                .map_err(io_err(format!("creating {}", path.display())))?;
            file.set_len(PLACEHOLDER_DISK_BYTES)
                .map_err(io_err(format!("sizing {}", path.display())))?;
            disks.push(DiskConfig {
                id: id.into(),
                path,
                read_only,
            });
        }
        let bundle = slot.bundle();
        let (runtime_dir, vm_tmp_dir) = vm_runtime_dir(&bundle)?;
        let vm_config = VmConfig {
            arch: config.shape.arch,
            kernel: config.shape.kernel.clone(),
            initrd: Some(config.shape.initramfs.clone()),
            cmdline: config.shape.kernel_args.clone(),
            cpus: config.shape.cpus,
            memory_mib: config.shape.memory_mib,
            disks,
            nics: config
                .shape
                .nics
                .iter()
                .zip(&config.macs)
                .map(|(attachment, mac)| NicConfig {
                    mac: mac.clone(),
                    attachment: attachment.clone(),
                })
                .collect(),
            shares: Vec::new(),
            console_log: Some(bundle.boot_log()),
            runtime_dir,
            // A pooled guest is a native one: a container that asks for Rosetta never
            // matches the pool's shape.
            rosetta: false,
        };
        let (vm, pids) = boot_vm(vm_config).await?;
        match connect_agent(vm.as_ref()).await {
            Ok(agent) => Ok(PooledVm {
                vm,
                pids,
                agent,
                slot,
                config,
                vm_tmp_dir,
            }),
            Err(e) => {
                vm.kill().await;
                tracing::error!(
                    "pooled vm: {e}; console tail:\n{}",
                    console_tail(&bundle.boot_log())
                );
                Err(e)
            }
        }
    }

    /// The slot's config.
    pub fn config(&self) -> &PoolSlotConfig {
        &self.config
    }

    /// The VM.
    pub fn vm(&self) -> &Arc<dyn VirtualMachine> {
        &self.vm
    }

    /// Powers the VM off at once (nothing of a container is in it).
    pub async fn discard(self) {
        self.vm.kill().await;
    }

    /// Gives the VM to the container of `bundle`: its writable layer is made, both disks
    /// swapped in before the guest mounts anything, then the container is set up as a
    /// freshly booted one would be, with the NICs taking the container's MACs first. On failure the VM is
    /// killed.
    pub async fn into_container(
        self,
        bundle: Bundle,
        config: RuntimeConfig,
    ) -> Result<Arc<Container>, ContainerError> {
        let PooledVm {
            vm,
            pids,
            agent,
            slot,
            config: slot_config,
            vm_tmp_dir,
        } = self;
        let boot_log = slot.bundle().boot_log();
        let prepared = async {
            let layer_config = config.clone();
            tokio::task::spawn_blocking(move || ensure_writable_layer(&layer_config))
                .await
                .map_err(|e| ContainerError::Io {
                    op: "creating the writable layer".into(),
                    source: std::io::Error::other(e.to_string()),
                })??;
            vm.replace_disk("rootfs", &config.rootfs, true).await?;
            vm.replace_disk("rw", &config.writable_layer.path, false)
                .await?;
            for id in ["rootfs", "rw"] {
                let _ = std::fs::remove_file(slot.placeholder(id));
            }
            Ok::<_, ContainerError>(())
        };
        if let Err(e) = prepared.await {
            vm.kill().await;
            tracing::error!("taking over the pooled vm failed: {e}");
            return Err(e);
        }
        // The set-up's first steps give the NICs, found by the slot's MACs, the container's.
        Container::set_up_or_kill(
            bundle,
            config,
            vm,
            pids,
            vm_tmp_dir,
            Some(agent),
            Some(&slot_config.macs),
            &boot_log,
        )
        .await
    }
}
