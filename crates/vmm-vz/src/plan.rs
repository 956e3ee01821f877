//! What the VM's Virtualization.framework configuration holds, decided from a [`VmConfig`]
//! before any framework object exists: a pure function, so every rule of this backend is
//! tested on any host, and the macOS layer ([`crate::vz`]) only turns each entry into its
//! one framework object.

use std::path::PathBuf;

use vmm::{Arch, ConfigError, NicAttachment, ShareConfig, VmConfig};

/// The guest kernel's name for the virtio console the boot log goes to.
pub const CONSOLE: &str = "hvc0";

/// How every disk is opened: through the host's page cache, with the guest's flushes turned
/// into `fsync` on the image. Apple's `container` corrupted volumes (its #614) with anything
/// less; QEMU's backend opens disks the same way (`cache=writeback`, flushes honoured).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskCaching {
    /// `VZDiskImageCachingMode.cached` with `VZDiskImageSynchronizationMode.fsync`.
    CachedFsync,
}

/// One virtio-blk device over a raw image file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedDisk {
    /// The block device identifier, which the guest reads as the disk's serial.
    pub id: String,
    /// The image on the host.
    pub path: PathBuf,
    /// Attach read-only.
    pub read_only: bool,
    /// How the image is opened.
    pub caching: DiskCaching,
}

/// One virtio-net device on VZ's NAT (the vmnet shared network every VM of the user shares).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedNic {
    /// `aa:bb:cc:dd:ee:ff`, as the guest finds the interface by it.
    pub mac: String,
}

/// The whole VM as the framework will be told it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VzPlan {
    /// The kernel image (`VZLinuxBootLoader`).
    pub kernel: PathBuf,
    /// The initramfs.
    pub initrd: Option<PathBuf>,
    /// The full kernel command line.
    pub cmdline: String,
    /// vCPUs.
    pub cpus: u32,
    /// Guest memory in bytes.
    pub memory_bytes: u64,
    /// Block devices in the guest's order.
    pub disks: Vec<PlannedDisk>,
    /// Network devices in the guest's order.
    pub nics: Vec<PlannedNic>,
    /// virtio-fs devices, one per share, with the tag the guest mounts.
    pub shares: Vec<ShareConfig>,
    /// Share Apple's Rosetta translator under [`vmm::ROSETTA_SHARE_TAG`].
    pub rosetta: bool,
    /// The file the virtio console writes to, if any.
    pub console_log: Option<PathBuf>,
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Checks `config` against the shared rules and this backend's own limits, and lays out the
/// devices. `host` is the architecture the framework virtualises (the Mac's).
pub fn plan(config: &VmConfig, host: Arch) -> Result<VzPlan, ConfigError> {
    config.validate()?;
    if config.arch != host {
        return Err(invalid(
            "arch",
            format!(
                "virtualization.framework runs only {host} guests on this mac, not {}; amd64 images run through rosetta in an {host} guest",
                config.arch
            ),
        ));
    }
    let mut nics = Vec::new();
    for (i, nic) in config.nics.iter().enumerate() {
        match &nic.attachment {
            NicAttachment::Tap { .. } => {
                return Err(invalid(
                    format!("nics[{i}].attachment"),
                    "tap devices exist only on linux; on macOS every vm uses vz's nat",
                ));
            }
            NicAttachment::User { forwards, isolated } => {
                if !forwards.is_empty() {
                    return Err(invalid(
                        format!("nics[{i}].attachment.user.forwards"),
                        "vz's nat forwards no host ports; publishing ports is not supported by the vz backend yet",
                    ));
                }
                if *isolated {
                    return Err(invalid(
                        format!("nics[{i}].attachment.user.isolated"),
                        "vz's nat cannot isolate a vm; leave the interface out instead",
                    ));
                }
                nics.push(PlannedNic {
                    mac: nic.mac.clone(),
                });
            }
        }
    }
    let mut words = vmm::cmdline::base_cmdline(CONSOLE, &[]);
    words.extend(config.cmdline.iter().cloned());
    Ok(VzPlan {
        kernel: config.kernel.clone(),
        initrd: config.initrd.clone(),
        cmdline: words.join(" "),
        cpus: config.cpus,
        memory_bytes: config.memory_mib * 1024 * 1024,
        disks: config
            .disks
            .iter()
            .map(|d| PlannedDisk {
                id: d.id.clone(),
                path: d.path.clone(),
                read_only: d.read_only,
                caching: DiskCaching::CachedFsync,
            })
            .collect(),
        nics,
        shares: config.shares.clone(),
        rosetta: config.rosetta,
        console_log: config.console_log.clone(),
    })
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use vmm::{DiskConfig, NicConfig, PortForward, Protocol};

    use super::*;

    struct Files {
        dir: tempfile::TempDir,
    }

    impl Files {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            for f in ["vmlinux", "initrd", "rootfs.ext4", "rw.ext4"] {
                std::fs::write(dir.path().join(f), b"x").unwrap();
            }
            Self { dir }
        }

        fn config(&self) -> VmConfig {
            let p = |f: &str| self.dir.path().join(f);
            VmConfig {
                arch: Arch::Aarch64,
                kernel: p("vmlinux"),
                initrd: Some(p("initrd")),
                cmdline: vec!["init=/init".into()],
                cpus: 2,
                memory_mib: 512,
                disks: vec![
                    DiskConfig {
                        id: "rootfs".into(),
                        path: p("rootfs.ext4"),
                        read_only: true,
                    },
                    DiskConfig {
                        id: "rw".into(),
                        path: p("rw.ext4"),
                        read_only: false,
                    },
                ],
                nics: vec![NicConfig {
                    mac: "02:00:00:00:00:01".into(),
                    attachment: NicAttachment::User {
                        forwards: vec![],
                        isolated: false,
                    },
                }],
                shares: vec![ShareConfig {
                    tag: "data".into(),
                    host_path: self.dir.path().to_owned(),
                    read_only: true,
                }],
                console_log: Some(p("console.log")),
                runtime_dir: p("run"),
                rosetta: false,
            }
        }
    }

    #[test]
    fn lays_out_every_device_in_the_guest_order() {
        let files = Files::new();
        let config = files.config();
        let plan = plan(&config, Arch::Aarch64).unwrap();
        assert_eq!(
            plan.cmdline,
            "console=hvc0 quiet reboot=t panic=-1 mitigations=off init=/init"
        );
        assert_eq!(plan.memory_bytes, 512 << 20);
        assert_eq!(plan.cpus, 2);
        let disks: Vec<_> = plan
            .disks
            .iter()
            .map(|d| (d.id.as_str(), d.read_only, d.caching))
            .collect();
        assert_eq!(
            disks,
            [
                ("rootfs", true, DiskCaching::CachedFsync),
                ("rw", false, DiskCaching::CachedFsync)
            ]
        );
        assert_eq!(
            plan.nics,
            [PlannedNic {
                mac: "02:00:00:00:00:01".into()
            }]
        );
        assert_eq!(plan.shares[0].tag, "data");
        assert_eq!(plan.console_log, config.console_log);
    }

    #[test]
    fn refuses_a_guest_of_another_architecture() {
        let files = Files::new();
        let mut config = files.config();
        config.arch = Arch::X86_64;
        assert_eq!(
            plan(&config, Arch::Aarch64).unwrap_err().to_string(),
            "invalid arch: virtualization.framework runs only aarch64 guests on this mac, not x86_64; amd64 images run through rosetta in an aarch64 guest"
        );
    }

    #[test]
    fn rosetta_is_planned_for_an_aarch64_guest_only() {
        let files = Files::new();
        let mut config = files.config();
        assert!(!plan(&config, Arch::Aarch64).unwrap().rosetta);
        config.rosetta = true;
        assert!(plan(&config, Arch::Aarch64).unwrap().rosetta);
        config.arch = Arch::X86_64;
        assert_eq!(
            plan(&config, Arch::X86_64).unwrap_err().to_string(),
            "invalid rosetta: rosetta translates x86_64 programs in an aarch64 guest, not an x86_64 one"
        );
    }

    #[test]
    fn refuses_what_vz_nat_cannot_do() {
        let files = Files::new();
        let mut config = files.config();
        config.nics[0].attachment = NicAttachment::Tap {
            name: "tap0".into(),
        };
        assert_eq!(
            plan(&config, Arch::Aarch64).unwrap_err().to_string(),
            "invalid nics[0].attachment: tap devices exist only on linux; on macOS every vm uses vz's nat"
        );
        config.nics[0].attachment = NicAttachment::User {
            forwards: vec![PortForward {
                protocol: Protocol::Tcp,
                host_addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
                host_port: 8080,
                guest_port: 80,
            }],
            isolated: false,
        };
        let err = plan(&config, Arch::Aarch64).unwrap_err().to_string();
        assert!(
            err.starts_with(
                "invalid nics[0].attachment.user.forwards: vz's nat forwards no host ports"
            ),
            "{err}"
        );
    }

    #[test]
    fn the_shared_rules_apply_first() {
        let files = Files::new();
        let mut config = files.config();
        config.disks[1].id = "rootfs".into();
        assert_eq!(
            plan(&config, Arch::Aarch64).unwrap_err().to_string(),
            "invalid disks[1].id: \"rootfs\" is used by another disk"
        );
    }
}
