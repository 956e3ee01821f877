//! What a VM is made of: the strict, backend-neutral description a caller hands to
//! [`crate::Hypervisor::boot`].
//!
//! Every type rejects unknown fields when deserialised, and [`VmConfig::validate`] checks the
//! rules every backend relies on (unique disk ids that fit a virtio-blk serial, unique share
//! tags, sane sizes) so that a bad config fails before anything is spawned.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The longest disk id: virtio-blk carries the serial in a 20-byte field.
pub const MAX_DISK_ID_LEN: usize = 20;
/// The longest share tag: virtio-fs carries the tag in a 36-byte field.
pub const MAX_SHARE_TAG_LEN: usize = 36;
/// The least memory a VM may have; the guest kernel alone needs most of it.
pub const MIN_MEMORY_MIB: u64 = 64;
/// The most vCPUs a VM may have (the guest kernel is built with NR_CPUS=64).
pub const MAX_CPUS: u32 = 64;

/// A rejected [`VmConfig`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A field has a value no backend can use.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The offending field, e.g. `disks[1].id`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// The architecture of a guest: its kernel, its vminitd and the machine a backend emulates or
/// virtualises for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Arch {
    /// x86-64 (amd64).
    #[serde(rename = "x86_64")]
    X86_64,
    /// AArch64 (arm64).
    #[serde(rename = "aarch64")]
    Aarch64,
}

impl Arch {
    /// The architecture of this process: a guest of it can use hardware virtualisation.
    pub fn host() -> Arch {
        if cfg!(target_arch = "aarch64") {
            Arch::Aarch64
        } else {
            Arch::X86_64
        }
    }

    /// The name `uname -m` prints in such a guest.
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One virtual machine: how to boot it and which devices it has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmConfig {
    /// The guest's architecture; the kernel and initrd must be built for it. Defaults to the
    /// host's.
    #[serde(default = "Arch::host")]
    pub arch: Arch,
    /// The guest kernel: on x86_64 an uncompressed ELF `vmlinux` or a `bzImage`, on aarch64
    /// the boot `Image`.
    pub kernel: PathBuf,
    /// The initial ramdisk (a cpio archive holding `/init`).
    pub initrd: Option<PathBuf>,
    /// Kernel command line words appended after the backend's own (console, timers).
    #[serde(default)]
    pub cmdline: Vec<String>,
    /// Number of virtual CPUs.
    pub cpus: u32,
    /// Guest memory in MiB.
    pub memory_mib: u64,
    /// Block devices, in the order the guest enumerates them.
    #[serde(default)]
    pub disks: Vec<DiskConfig>,
    /// Network interfaces, in the order the guest enumerates them.
    #[serde(default)]
    pub nics: Vec<NicConfig>,
    /// Host directories shared into the guest.
    #[serde(default)]
    pub shares: Vec<ShareConfig>,
    /// Where the guest's console output goes; `None` discards it.
    pub console_log: Option<PathBuf>,
    /// A directory the backend owns for the VM's lifetime: sockets, helper logs. Created if
    /// missing. Keep it short: Unix socket paths are limited to 107 bytes.
    pub runtime_dir: PathBuf,
    /// Share Apple's Rosetta translator into an aarch64 guest (tag [`ROSETTA_SHARE_TAG`]) so
    /// that vminitd registers it as the binfmt_misc handler of x86_64 programs: amd64 images
    /// on Apple silicon. Only the Virtualization.framework backend has it; others refuse it.
    #[serde(default)]
    pub rosetta: bool,
}

/// The virtio-fs tag of the Rosetta share; vminitd mounts it at `/run/rosetta` (the agent
/// proto's `EnableRosetta`).
pub const ROSETTA_SHARE_TAG: &str = "rosetta";

/// A block device backed by a host file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskConfig {
    /// The name the guest sees as the device's serial (`/sys/block/vdX/serial`), so the guest
    /// can find the disk without relying on enumeration order. 1 to 20 characters of
    /// `[A-Za-z0-9._-]`.
    pub id: String,
    /// The raw disk image on the host.
    pub path: PathBuf,
    /// Attach read-only; the guest cannot write and the host file is opened read-only.
    #[serde(default)]
    pub read_only: bool,
}

/// A network interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NicConfig {
    /// The MAC address as `aa:bb:cc:dd:ee:ff`; the guest finds the interface by it.
    pub mac: String,
    /// What the interface is attached to on the host.
    pub attachment: NicAttachment,
}

/// The host side of a network interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum NicAttachment {
    /// An existing host TAP device, by name (the caller creates and bridges it).
    Tap {
        /// The TAP device's name (at most 15 bytes, as the kernel allows).
        name: String,
    },
    /// Unprivileged user-mode networking: the guest reaches the host's network through a NAT
    /// inside the VMM, and listed host ports are forwarded into the guest.
    User {
        /// Host ports forwarded to guest ports.
        #[serde(default)]
        forwards: Vec<PortForward>,
        /// Keep the guest off every network but the forwards.
        #[serde(default)]
        isolated: bool,
    },
}

/// A transport protocol of a port forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// One host port forwarded to a guest port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortForward {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The host address to listen on, e.g. 127.0.0.1.
    pub host_addr: IpAddr,
    /// The host port to listen on.
    pub host_port: u16,
    /// The guest port connections are forwarded to.
    pub guest_port: u16,
}

/// A host directory shared into the guest (virtio-fs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareConfig {
    /// The tag the guest mounts (`mount -t virtiofs TAG /dir`); 1 to 36 bytes.
    pub tag: String,
    /// The host directory.
    pub host_path: PathBuf,
    /// Refuse every write from the guest.
    #[serde(default)]
    pub read_only: bool,
}

fn valid_disk_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_DISK_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Parses `aa:bb:cc:dd:ee:ff` into bytes.
pub fn parse_mac(mac: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = mac.split(':');
    for byte in &mut out {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

impl VmConfig {
    /// Checks the rules every backend relies on. Does not touch the file system except to
    /// check that the kernel, initrd, disks and shared directories exist.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.kernel.is_file() {
            return Err(invalid(
                "kernel",
                format!("{} is not a file", self.kernel.display()),
            ));
        }
        if let Some(initrd) = &self.initrd
            && !initrd.is_file()
        {
            return Err(invalid(
                "initrd",
                format!("{} is not a file", initrd.display()),
            ));
        }
        for (i, word) in self.cmdline.iter().enumerate() {
            if word.is_empty() || word.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(invalid(
                    format!("cmdline[{i}]"),
                    format!("{word:?} must be one non-empty word without whitespace"),
                ));
            }
        }
        if self.rosetta && self.arch != Arch::Aarch64 {
            return Err(invalid(
                "rosetta",
                format!(
                    "rosetta translates x86_64 programs in an aarch64 guest, not an {} one",
                    self.arch
                ),
            ));
        }
        if self.cpus == 0 || self.cpus > MAX_CPUS {
            return Err(invalid(
                "cpus",
                format!("{} is outside 1..={MAX_CPUS}", self.cpus),
            ));
        }
        if self.memory_mib < MIN_MEMORY_MIB {
            return Err(invalid(
                "memory_mib",
                format!("{} MiB is less than {MIN_MEMORY_MIB} MiB", self.memory_mib),
            ));
        }
        let mut ids = HashSet::new();
        for (i, disk) in self.disks.iter().enumerate() {
            if !valid_disk_id(&disk.id) {
                return Err(invalid(
                    format!("disks[{i}].id"),
                    format!(
                        "{:?} must be 1 to {MAX_DISK_ID_LEN} characters of A-Z a-z 0-9 . _ -",
                        disk.id
                    ),
                ));
            }
            if !ids.insert(disk.id.as_str()) {
                return Err(invalid(
                    format!("disks[{i}].id"),
                    format!("{:?} is used by another disk", disk.id),
                ));
            }
            if !disk.path.is_file() {
                return Err(invalid(
                    format!("disks[{i}].path"),
                    format!("{} is not a file", disk.path.display()),
                ));
            }
        }
        let mut macs = HashSet::new();
        for (i, nic) in self.nics.iter().enumerate() {
            let Some(mac) = parse_mac(&nic.mac) else {
                return Err(invalid(
                    format!("nics[{i}].mac"),
                    format!("{:?} is not of the form aa:bb:cc:dd:ee:ff", nic.mac),
                ));
            };
            if mac[0] & 1 == 1 {
                return Err(invalid(
                    format!("nics[{i}].mac"),
                    format!("{} is a multicast address", nic.mac),
                ));
            }
            if !macs.insert(mac) {
                return Err(invalid(
                    format!("nics[{i}].mac"),
                    format!("{} is used by another interface", nic.mac),
                ));
            }
            match &nic.attachment {
                NicAttachment::Tap { name } => {
                    if name.is_empty()
                        || name.len() > 15
                        || name.contains(['/', ',', ' ', '\0', ':'])
                    {
                        return Err(invalid(
                            format!("nics[{i}].attachment.tap.name"),
                            format!("{name:?} is not a valid interface name"),
                        ));
                    }
                }
                NicAttachment::User { forwards, .. } => {
                    let mut seen = HashSet::new();
                    for (j, fwd) in forwards.iter().enumerate() {
                        if fwd.host_port == 0 || fwd.guest_port == 0 {
                            return Err(invalid(
                                format!("nics[{i}].attachment.user.forwards[{j}]"),
                                "ports must not be 0",
                            ));
                        }
                        if !seen.insert((fwd.protocol, fwd.host_addr, fwd.host_port)) {
                            return Err(invalid(
                                format!("nics[{i}].attachment.user.forwards[{j}]"),
                                format!(
                                    "host {}:{} is forwarded twice",
                                    fwd.host_addr, fwd.host_port
                                ),
                            ));
                        }
                    }
                }
            }
        }
        let mut tags = HashSet::new();
        for (i, share) in self.shares.iter().enumerate() {
            if share.tag.is_empty()
                || share.tag.len() > MAX_SHARE_TAG_LEN
                || share
                    .tag
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(invalid(
                    format!("shares[{i}].tag"),
                    format!(
                        "{:?} must be 1 to {MAX_SHARE_TAG_LEN} bytes without whitespace",
                        share.tag
                    ),
                ));
            }
            if !tags.insert(share.tag.as_str()) {
                return Err(invalid(
                    format!("shares[{i}].tag"),
                    format!("{:?} is used by another share", share.tag),
                ));
            }
            if !share.host_path.is_dir() {
                return Err(invalid(
                    format!("shares[{i}].host_path"),
                    format!("{} is not a directory", share.host_path.display()),
                ));
            }
        }
        if self.runtime_dir.as_os_str().is_empty() {
            return Err(invalid("runtime_dir", "must not be empty"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(dir: &std::path::Path) -> VmConfig {
        let kernel = dir.join("kernel");
        std::fs::write(&kernel, b"k").unwrap();
        VmConfig {
            arch: Arch::host(),
            kernel,
            initrd: None,
            cmdline: vec![],
            cpus: 1,
            memory_mib: 256,
            disks: vec![],
            nics: vec![],
            shares: vec![],
            console_log: None,
            runtime_dir: dir.join("run"),
            rosetta: false,
        }
    }

    fn tempdir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "vmm-config-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn rejects_bad_fields_with_their_name() {
        let dir = tempdir();
        let disk = dir.join("disk.img");
        std::fs::write(&disk, b"").unwrap();
        let ok = base(&dir);
        assert_eq!(ok.validate(), Ok(()));

        let mut c = ok.clone();
        c.cpus = 0;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .starts_with("invalid cpus")
        );

        let mut c = ok.clone();
        c.memory_mib = 16;
        assert!(c.validate().unwrap_err().to_string().contains("memory_mib"));

        let mut c = ok.clone();
        c.disks = vec![DiskConfig {
            id: "a-very-long-serial-number-x".into(),
            path: disk.clone(),
            read_only: false,
        }];
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("disks[0].id")
        );

        let mut c = ok.clone();
        let d = DiskConfig {
            id: "rootfs".into(),
            path: disk.clone(),
            read_only: true,
        };
        c.disks = vec![d.clone(), d];
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "invalid disks[1].id: \"rootfs\" is used by another disk"
        );

        let mut c = ok.clone();
        c.nics = vec![NicConfig {
            mac: "02:00:00:00:00".into(),
            attachment: NicAttachment::User {
                forwards: vec![],
                isolated: true,
            },
        }];
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("nics[0].mac")
        );

        let mut c = ok.clone();
        c.shares = vec![ShareConfig {
            tag: "s".into(),
            host_path: dir.join("missing"),
            read_only: true,
        }];
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("shares[0].host_path")
        );

        let mut c = ok.clone();
        c.cmdline = vec!["a b".into()];
        assert!(c.validate().unwrap_err().to_string().contains("cmdline[0]"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn unknown_fields_are_refused() {
        let json = r#"{"id":"a","path":"/x","read_only":true,"cache":"unsafe"}"#;
        let err = serde_json::from_str::<DiskConfig>(json).unwrap_err();
        assert!(err.to_string().contains("unknown field `cache`"), "{err}");
    }

    #[test]
    fn the_arch_defaults_to_the_hosts_and_is_named_as_uname_names_it() {
        let json = r#"{"kernel":"/k","initrd":null,"cpus":1,"memory_mib":64,"console_log":null,"runtime_dir":"/r"}"#;
        let config: VmConfig = serde_json::from_str(json).unwrap();
        assert_eq!(config.arch, Arch::host());
        let json = json.replace('{', r#"{"arch":"aarch64","#);
        let config: VmConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(config.arch, Arch::Aarch64);
        assert_eq!(serde_json::to_string(&Arch::X86_64).unwrap(), r#""x86_64""#);
        let err = serde_json::from_str::<Arch>(r#""arm64""#).unwrap_err();
        assert!(err.to_string().contains("unknown variant `arm64`"), "{err}");
    }

    #[test]
    fn macs_parse() {
        assert_eq!(
            parse_mac("02:aB:00:00:00:ff"),
            Some([2, 0xab, 0, 0, 0, 0xff])
        );
        assert_eq!(parse_mac("02:ab:00:00:00:ff:00"), None);
        assert_eq!(parse_mac("2:ab:00:00:00:ff"), None);
        assert_eq!(parse_mac("zz:ab:00:00:00:ff"), None);
    }
}
