//! `<bundle>/config.json`: everything the daemon decided about one container, written once
//! (atomically) before the runtime starts and never changed while it runs.
//!
//! Strict: unknown fields are refused, and [`RuntimeConfig::validate`] rejects what the
//! runtime could not carry out with one line naming the field, before any disk is created or
//! VM booted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The least memory a container may have (Apple's `container` refuses less, too).
pub const MIN_MEMORY_BYTES: u64 = 200 << 20;
/// Extra VM memory on top of the container's limit, for the guest kernel and vminitd.
pub const VM_MEMORY_OVERHEAD_MIB: u64 = 128;
/// Seconds between the stop signal and SIGKILL when the config does not say.
pub const DEFAULT_STOP_TIMEOUT_SECS: u32 = 10;

/// Errors of loading or checking a config.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid config.
    #[error("{path}: {detail}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// serde's words (field and position).
        detail: String,
    },
    /// A field has a value the runtime cannot use.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field, e.g. `writable_layer.size_bytes`.
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

/// One container, as the daemon hands it to its runtime.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// The container's id: 1 to 64 characters of `[A-Za-z0-9_.-]`, starting alphanumeric.
    pub id: String,
    /// The container's hostname (`--hostname`, else a short form of the id).
    pub hostname: String,
    /// The image's root filesystem (ext4), attached read-only and shared by every container
    /// of the image.
    pub rootfs: PathBuf,
    /// The container's own writable layer.
    pub writable_layer: WritableLayer,
    /// The OCI runtime spec of the init process: `process` (args, env, cwd, user,
    /// capabilities, rlimits, no_new_privileges), `mounts` (absent: Docker's default mounts),
    /// `linux.resources`, `linux.sysctl`, masked and read-only paths, seccomp. `root` and
    /// `hostname` are filled in by the runtime.
    pub spec: oci_spec::runtime::Spec,
    /// A user to resolve in the container's /etc/passwd (`-u name:group`); overrides the
    /// spec's numeric user.
    #[serde(default)]
    pub user: Option<String>,
    /// Run the program under a tiny init that reaps zombies and forwards signals (`--init`).
    #[serde(default)]
    pub init: bool,
    /// Give the init process a pseudo-terminal (`-t`).
    #[serde(default)]
    pub terminal: bool,
    /// Keep the init process's stdin open for attachers (`-i`).
    #[serde(default)]
    pub stdin_open: bool,
    /// vCPUs of the container (the VM gets this many).
    pub cpus: u32,
    /// The container's memory limit in bytes (the VM gets 128 MiB more).
    pub memory_bytes: u64,
    /// The guest kernel.
    pub kernel: PathBuf,
    /// The initramfs holding vminitd.
    pub initramfs: PathBuf,
    /// The guest's architecture, that of the image (`kernel` and `initramfs` are built for
    /// it); the host's when absent.
    #[serde(default = "vmm::Arch::host")]
    pub arch: vmm::Arch,
    /// Run the image's x86_64 programs through Rosetta in an aarch64 guest (`--rosetta`,
    /// `build.rosetta`; Virtualization.framework on Apple silicon only).
    #[serde(default)]
    pub rosetta: bool,
    /// Extra kernel command line words (`--kernel-arg`).
    #[serde(default)]
    pub kernel_args: Vec<String>,
    /// Mount the container's root filesystem read-only (`--read-only`).
    #[serde(default)]
    pub read_only: bool,
    /// tmpfs mounts (`--tmpfs`, `--mount type=tmpfs`).
    #[serde(default)]
    pub tmpfs: Vec<TmpfsMount>,
    /// Size of /dev/shm in bytes (`--shm-size`); Docker's 64 MiB when absent.
    #[serde(default)]
    pub shm_size_bytes: Option<u64>,
    /// Signal number `stop` sends first (the image's StopSignal or `--stop-signal`);
    /// SIGTERM when absent.
    #[serde(default)]
    pub stop_signal: Option<u32>,
    /// Seconds `stop` waits before SIGKILL (`--stop-timeout`).
    #[serde(default = "default_stop_timeout")]
    pub stop_timeout_secs: u32,
    /// DNS settings written to the container's /etc/resolv.conf.
    #[serde(default)]
    pub dns: Dns,
    /// Extra /etc/hosts entries (`--add-host`).
    #[serde(default)]
    pub extra_hosts: Vec<HostEntry>,
    /// Network interfaces of the VM, in order (eth0 first); none means loopback only
    /// (`--network none`).
    #[serde(default)]
    pub networks: Vec<NetworkAttachment>,
    /// Ports the runtime publishes itself with userspace proxies to the first network's
    /// address (`-p` specs as `spec::PortSpec` writes them). Empty on user-mode networking,
    /// where QEMU forwards the ports.
    #[serde(default)]
    pub published_ports: Vec<String>,
    /// Volumes and bind mounts (`-v name:/path`, `-v /host/dir:/path`): ext4 images attached
    /// as extra disks, or host directories shared with virtio-fs, mounted into the container.
    #[serde(default)]
    pub volumes: Vec<VolumeMount>,
    /// Labels (`-l`), kept for whoever reads the config; the runtime does not use them.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Sockets container processes listen on, served at host paths (`--publish-socket`).
    #[serde(default)]
    pub published_sockets: Vec<PublishedSocket>,
    /// Nothing in the VM outlives the container (`--rm`, no volumes or binds): when its
    /// process ends, the VM is killed rather than shut down cleanly, since its disks are
    /// deleted next.
    #[serde(default)]
    pub discard_on_exit: bool,
}

/// A Unix socket inside the container served on the host: the runtime listens on
/// `host_path` and relays each connection over vsock to the container's socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishedSocket {
    /// Absolute host path to listen on; a stale socket there is replaced, anything else is
    /// refused.
    pub host_path: PathBuf,
    /// Absolute path of the socket in the container.
    pub container_path: String,
}

fn default_stop_timeout() -> u32 {
    DEFAULT_STOP_TIMEOUT_SECS
}

/// The per-container writable layer: an ext4 image created empty when missing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WritableLayer {
    /// The image file (sparse).
    pub path: PathBuf,
    /// Its size in bytes when it has to be created.
    pub size_bytes: u64,
    /// Where formatted templates of empty layers are kept (`<app root>/templates`): a
    /// missing layer is cloned from the one of its size (made there first if need be)
    /// instead of formatted. None: formatted each time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_dir: Option<PathBuf>,
}

/// A tmpfs inside the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TmpfsMount {
    /// Absolute path inside the container.
    pub destination: String,
    /// mount(8) options, e.g. `size=64m`, `mode=1777`, `noexec`.
    #[serde(default)]
    pub options: Vec<String>,
}

/// resolv.conf content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dns {
    /// `--no-dns`: leave the image's /etc/resolv.conf alone.
    #[serde(default)]
    pub disabled: bool,
    /// `--dns`; the first network's gateway is used when empty.
    #[serde(default)]
    pub nameservers: Vec<String>,
    /// `--dns-search` (and `--dns-domain` first).
    #[serde(default)]
    pub search: Vec<String>,
    /// `--dns-option`.
    #[serde(default)]
    pub options: Vec<String>,
}

/// One extra /etc/hosts line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostEntry {
    /// The address.
    pub ip: String,
    /// The names it answers to.
    pub names: Vec<String>,
}

/// One network interface of the VM and its guest-side address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkAttachment {
    /// The interface's MAC address (`aa:bb:cc:dd:ee:ff`).
    pub mac: String,
    /// What it is attached to on the host.
    pub attachment: vmm::NicAttachment,
    /// The address with prefix length, e.g. `192.168.64.2/24`; none leaves the link
    /// unconfigured (user-mode networking hands out addresses by DHCP, which vminitd does not
    /// run: give one).
    #[serde(default)]
    pub address: Option<String>,
    /// The default gateway (only the first network's is used).
    #[serde(default)]
    pub gateway: Option<String>,
    /// The MTU; the link's default when absent.
    #[serde(default)]
    pub mtu: Option<u32>,
}

/// A volume or bind mount of the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeMount {
    /// The ext4 image (a block volume) or the directory (a bind mount) on the host.
    pub path: PathBuf,
    /// Absolute path inside the container.
    pub destination: String,
    /// Mount it read-only.
    #[serde(default)]
    pub read_only: bool,
    /// What `path` is; a block volume when absent.
    #[serde(default)]
    pub kind: VolumeKind,
}

/// How a volume reaches the guest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VolumeKind {
    /// An ext4 image attached as a virtio-blk disk.
    #[default]
    Block,
    /// A host directory shared with virtio-fs (one virtiofsd per directory).
    Directory,
    /// A single host file: virtio-fs shares directories only, so its parent directory is
    /// shared into a private guest directory and just the file is bind-mounted into the
    /// container.
    File,
    /// A host Unix socket: the guest listens on a socket bind-mounted at the destination and
    /// relays each connection over vsock to the runtime, which connects to `path`.
    Socket,
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id.as_bytes()[0].is_ascii_alphanumeric()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

impl RuntimeConfig {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let config: RuntimeConfig =
            serde_json::from_slice(&bytes).map_err(|e| ConfigError::Parse {
                path: path.to_path_buf(),
                detail: e.to_string(),
            })?;
        config.validate()?;
        Ok(config)
    }

    /// Writes the config to `path` atomically (temp file, fsync, rename, fsync the dir).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        statefs::write_atomic(path, &bytes)
    }

    /// Checks what the runtime relies on; touches the file system only to check that the
    /// kernel, initramfs, rootfs and volumes exist.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !valid_id(&self.id) {
            return Err(invalid(
                "id",
                format!(
                    "{:?} must be 1 to 64 characters of A-Z a-z 0-9 _ . - starting with a letter or digit",
                    self.id
                ),
            ));
        }
        if self.hostname.is_empty()
            || self.hostname.len() > 253
            || !self
                .hostname
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        {
            return Err(invalid(
                "hostname",
                format!("{:?} is not a valid host name", self.hostname),
            ));
        }
        for (field, path) in [
            ("rootfs", &self.rootfs),
            ("kernel", &self.kernel),
            ("initramfs", &self.initramfs),
        ] {
            if !path.is_file() {
                return Err(invalid(field, format!("{} is not a file", path.display())));
            }
        }
        if self.writable_layer.size_bytes < 16 << 20 && !self.writable_layer.path.is_file() {
            return Err(invalid(
                "writable_layer.size_bytes",
                format!("{} is less than 16 MiB", self.writable_layer.size_bytes),
            ));
        }
        let process = self
            .spec
            .process()
            .as_ref()
            .ok_or_else(|| invalid("spec.process", "is missing"))?;
        if process.args().as_ref().is_none_or(|a| a.is_empty()) {
            return Err(invalid("spec.process.args", "no command given"));
        }
        if !process.cwd().is_absolute() {
            return Err(invalid(
                "spec.process.cwd",
                format!("{} is not absolute", process.cwd().display()),
            ));
        }
        if self.cpus == 0 || self.cpus > vmm::config::MAX_CPUS {
            return Err(invalid(
                "cpus",
                format!("{} is outside 1..={}", self.cpus, vmm::config::MAX_CPUS),
            ));
        }
        if self.memory_bytes < MIN_MEMORY_BYTES {
            return Err(invalid(
                "memory_bytes",
                format!("{} is less than 200 MiB", self.memory_bytes),
            ));
        }
        for (i, word) in self.kernel_args.iter().enumerate() {
            if word.is_empty() || word.chars().any(char::is_whitespace) {
                return Err(invalid(
                    format!("kernel_args[{i}]"),
                    format!("{word:?} must be one word"),
                ));
            }
        }
        for (i, t) in self.tmpfs.iter().enumerate() {
            if !t.destination.starts_with('/') {
                return Err(invalid(
                    format!("tmpfs[{i}].destination"),
                    format!("{:?} is not absolute", t.destination),
                ));
            }
        }
        if let Some(sig) = self.stop_signal
            && !(1..=64).contains(&sig)
        {
            return Err(invalid("stop_signal", format!("{sig} is not a signal")));
        }
        for (i, n) in self.networks.iter().enumerate() {
            if vmm::config::parse_mac(&n.mac).is_none() {
                return Err(invalid(
                    format!("networks[{i}].mac"),
                    format!("{:?} is not of the form aa:bb:cc:dd:ee:ff", n.mac),
                ));
            }
            if let Some(a) = &n.address
                && !a.contains('/')
            {
                return Err(invalid(
                    format!("networks[{i}].address"),
                    format!("{a:?} has no prefix length"),
                ));
            }
        }
        for (i, v) in self.volumes.iter().enumerate() {
            let (ok, what) = match v.kind {
                VolumeKind::Block => (v.path.is_file(), "an ext4 image file"),
                VolumeKind::Directory => (v.path.is_dir(), "a directory"),
                VolumeKind::File => (
                    v.path.is_file() && v.path.is_absolute() && v.path.file_name().is_some(),
                    "an absolute path of a regular file",
                ),
                VolumeKind::Socket => (
                    std::fs::metadata(&v.path).is_ok_and(|m| {
                        use std::os::unix::fs::FileTypeExt;
                        m.file_type().is_socket()
                    }),
                    "a Unix socket",
                ),
            };
            if !ok {
                return Err(invalid(
                    format!("volumes[{i}].path"),
                    format!("{} is not {what}", v.path.display()),
                ));
            }
            if !v.destination.starts_with('/') {
                return Err(invalid(
                    format!("volumes[{i}].destination"),
                    format!("{:?} is not absolute", v.destination),
                ));
            }
        }
        let mut hosts = std::collections::HashSet::new();
        for (i, p) in self.published_sockets.iter().enumerate() {
            if !p.host_path.is_absolute() || p.host_path.file_name().is_none() {
                return Err(invalid(
                    format!("published_sockets[{i}].host_path"),
                    format!("{} is not an absolute file path", p.host_path.display()),
                ));
            }
            // sun_path holds 107 bytes and a NUL.
            if p.host_path.as_os_str().len() > 107 {
                return Err(invalid(
                    format!("published_sockets[{i}].host_path"),
                    format!(
                        "{} is longer than a Unix socket path may be (107 bytes)",
                        p.host_path.display()
                    ),
                ));
            }
            if !hosts.insert(&p.host_path) {
                return Err(invalid(
                    format!("published_sockets[{i}].host_path"),
                    format!("{} is published twice", p.host_path.display()),
                ));
            }
            if !p.container_path.starts_with('/') || p.container_path.ends_with('/') {
                return Err(invalid(
                    format!("published_sockets[{i}].container_path"),
                    format!("{:?} is not an absolute file path", p.container_path),
                ));
            }
        }
        Ok(())
    }

    /// The VM's memory in MiB: the container's limit plus the guest's own overhead.
    pub fn vm_memory_mib(&self) -> u64 {
        self.memory_bytes.div_ceil(1 << 20) + VM_MEMORY_OVERHEAD_MIB
    }

    /// The signal `stop` sends first.
    pub fn stop_signal(&self) -> u32 {
        self.stop_signal.unwrap_or(libc::SIGTERM as u32)
    }
}

/// A sample config for tests of this crate and of the runtime (feature `testing`).
#[cfg(any(test, feature = "testing"))]
pub mod testing {
    use super::*;

    /// A valid config whose kernel, initramfs and rootfs are stub files in `dir`.
    pub fn sample(dir: &Path) -> RuntimeConfig {
        for f in ["rootfs.ext4", "vmlinux", "initramfs.cpio"] {
            std::fs::write(dir.join(f), b"x").unwrap();
        }
        let spec: oci_spec::runtime::Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {"user": {"uid": 0, "gid": 0}, "args": ["echo", "hi"], "cwd": "/",
                        "env": ["PATH=/bin"]}
        }))
        .unwrap();
        RuntimeConfig {
            id: "c1".into(),
            hostname: "c1".into(),
            rootfs: dir.join("rootfs.ext4"),
            writable_layer: WritableLayer {
                path: dir.join("rw.ext4"),
                size_bytes: 64 << 20,
                template_dir: None,
            },
            spec,
            user: None,
            init: false,
            terminal: false,
            stdin_open: false,
            cpus: 1,
            memory_bytes: 256 << 20,
            kernel: dir.join("vmlinux"),
            initramfs: dir.join("initramfs.cpio"),
            arch: vmm::Arch::host(),
            rosetta: false,
            kernel_args: vec![],
            read_only: false,
            tmpfs: vec![],
            shm_size_bytes: None,
            stop_signal: None,
            stop_timeout_secs: 10,
            dns: Dns::default(),
            extra_hosts: vec![],
            networks: vec![],
            published_ports: vec![],
            volumes: vec![],
            labels: BTreeMap::new(),
            published_sockets: vec![],
            discard_on_exit: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::sample;
    use super::*;

    #[test]
    fn round_trips_and_refuses_unknown_fields() {
        let dir = tempfile::tempdir().unwrap();
        let config = sample(dir.path());
        let path = dir.path().join("config.json");
        config.save(&path).unwrap();
        assert_eq!(RuntimeConfig::load(&path).unwrap(), config);

        let mut value: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        value["colour"] = "blue".into();
        std::fs::write(&path, serde_json::to_vec(&value).unwrap()).unwrap();
        let err = RuntimeConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains("unknown field `colour`"), "{err}");
    }

    #[test]
    fn bad_values_name_their_field() {
        let dir = tempfile::tempdir().unwrap();
        let base = sample(dir.path());
        let check = |f: &dyn Fn(&mut RuntimeConfig), want: &str| {
            let mut c = base.clone();
            f(&mut c);
            let err = c.validate().unwrap_err().to_string();
            assert!(err.starts_with(want), "{err} does not start with {want}");
        };
        check(&|c| c.id = "-x".into(), "invalid id:");
        check(&|c| c.hostname = "a b".into(), "invalid hostname:");
        check(&|c| c.memory_bytes = 100 << 20, "invalid memory_bytes:");
        check(&|c| c.cpus = 0, "invalid cpus:");
        check(&|c| c.kernel = dir.path().join("nope"), "invalid kernel:");
        check(
            &|c| c.kernel_args = vec!["a b".into()],
            "invalid kernel_args[0]:",
        );
        check(
            &|c| c.stop_signal = Some(99),
            "invalid stop_signal: 99 is not a signal",
        );
        check(
            &|c| {
                c.tmpfs = vec![TmpfsMount {
                    destination: "run".into(),
                    options: vec![],
                }]
            },
            "invalid tmpfs[0].destination:",
        );
        check(
            &|c| {
                c.spec
                    .process_mut()
                    .as_mut()
                    .unwrap()
                    .set_args(Some(vec![]));
            },
            "invalid spec.process.args: no command given",
        );
    }

    #[test]
    fn vm_gets_memory_overhead() {
        let dir = tempfile::tempdir().unwrap();
        let c = sample(dir.path());
        assert_eq!(c.vm_memory_mib(), 256 + 128);
        assert_eq!(c.stop_signal(), 15);
    }
}
