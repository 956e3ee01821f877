//! The warm pool's contract: a pooled runtime boots a VM with no container (placeholder
//! disks, the agent answering) and waits to be claimed for one container's bundle.
//!
//! A pool slot is laid out like a bundle (its own `runtime.lock`, `runtime.log`, `boot.log`,
//! `vm/`), so [`PoolSlot::bundle`] names those files:
//! ```text
//! <app root>/pool/<slot>/
//!   pool.json      PoolSlotConfig, written by the daemon before it spawns the runtime
//!   runtime.lock   held by the runtime for its whole life, claimed or not
//!   runtime.log    the runtime's log until it is claimed (then the container's bundle's)
//!   boot.log, vm/  the VM's console and runtime dir; they live as long as the VM
//!   disk-rootfs, disk-rw   sparse placeholders the VM boots with (removed once claimed)
//!   claim.sock     bound once the guest agent answers; serves exactly one claim
//! ```
//! The claim protocol on `claim.sock` is one line each way: the daemon writes the bundle
//! directory, the runtime answers `ok` once it holds the bundle's `runtime.lock` and has
//! checked the config against the slot's shape (from then on it is that container's runtime
//! and reports through the bundle's `state.json`, exactly like a runtime spawned for it), or
//! `error <reason>` after releasing everything it took, and then exits. A slot whose stdin
//! (a pipe from the daemon) closes before a claim powers its VM off and exits, so a daemon
//! that dies or stops drains its pool.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::bundle::Bundle;
use crate::config::RuntimeConfig;

/// The size of each placeholder disk: the capacity the guest probes at boot, so the most a
/// claimed container's rootfs or writable layer may hold. Sparse: it costs no disk space.
pub const PLACEHOLDER_DISK_BYTES: u64 = 64 << 30;

/// What a VM must look like to serve a container without a reboot: everything fixed when
/// QEMU starts. Containers of another shape (volumes, shares, TAP devices, published ports
/// in user mode, another size) take the cold path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolShape {
    /// The guest's architecture (a foreign-architecture image needs its own guest).
    pub arch: vmm::Arch,
    /// The guest kernel.
    pub kernel: PathBuf,
    /// The initramfs holding vminitd.
    pub initramfs: PathBuf,
    /// Extra kernel command line words.
    pub kernel_args: Vec<String>,
    /// vCPUs.
    pub cpus: u32,
    /// Guest memory in MiB (the container's limit plus the guest's overhead).
    pub memory_mib: u64,
    /// The NICs' attachments, in order (their MACs are set per container once claimed).
    pub nics: Vec<vmm::NicAttachment>,
}

impl PoolShape {
    /// The shape of the VM `config` needs, or `None` when a pooled VM cannot serve it:
    /// volumes and bind mounts (disks and shares are fixed at boot), TAP devices (bridge
    /// networking), forwarded ports, images larger than a placeholder disk.
    pub fn of(config: &RuntimeConfig) -> Option<PoolShape> {
        // Rosetta is a share and a binfmt registration fixed at boot.
        if !config.volumes.is_empty() || config.rosetta {
            return None;
        }
        let mut nics = Vec::with_capacity(config.networks.len());
        for n in &config.networks {
            match &n.attachment {
                vmm::NicAttachment::User { forwards, .. } if forwards.is_empty() => {
                    nics.push(n.attachment.clone());
                }
                _ => return None,
            }
        }
        if config.writable_layer.size_bytes > PLACEHOLDER_DISK_BYTES {
            return None;
        }
        Some(PoolShape {
            arch: config.arch,
            kernel: config.kernel.clone(),
            initramfs: config.initramfs.clone(),
            kernel_args: config.kernel_args.clone(),
            cpus: config.cpus,
            memory_mib: config.vm_memory_mib(),
            nics,
        })
    }
}

/// `pool.json`: what the daemon asks of one pooled runtime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSlotConfig {
    /// The VM to boot.
    pub shape: PoolShape,
    /// A MAC per NIC until the container's own replaces it.
    pub macs: Vec<String>,
}

/// One pool slot's directory.
#[derive(Debug, Clone)]
pub struct PoolSlot {
    dir: PathBuf,
}

impl PoolSlot {
    /// The slot at `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The slot seen as a bundle: the lock, log, console and VM dir have the same names.
    pub fn bundle(&self) -> Bundle {
        Bundle::new(&self.dir)
    }

    /// `pool.json`.
    pub fn config(&self) -> PathBuf {
        self.dir.join("pool.json")
    }

    /// `claim.sock`: present once the slot's guest is ready.
    pub fn claim_socket(&self) -> PathBuf {
        self.dir.join("claim.sock")
    }

    /// The placeholder disk with serial `id`.
    pub fn placeholder(&self, id: &str) -> PathBuf {
        self.dir.join(format!("disk-{id}"))
    }

    /// Loads `pool.json`.
    pub fn load_config(&self) -> Result<PoolSlotConfig, ClaimError> {
        let text = std::fs::read(self.config()).map_err(|e| ClaimError::Io {
            op: format!("reading {}", self.config().display()),
            source: e,
        })?;
        serde_json::from_slice(&text).map_err(|e| ClaimError::Refused(format!("pool.json: {e}")))
    }

    /// Writes `pool.json` crash-safely.
    pub fn save_config(&self, config: &PoolSlotConfig) -> Result<(), ClaimError> {
        let json = serde_json::to_vec_pretty(config)
            .map_err(|e| ClaimError::Refused(format!("pool.json: {e}")))?;
        statefs::write_atomic(&self.config(), &json).map_err(|e| ClaimError::Io {
            op: format!("writing {}", self.config().display()),
            source: e,
        })
    }
}

/// Why a claim did not hand the slot's VM to the container.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// The slot refused (another shape, a held bundle lock, …); it has released everything.
    #[error("the pooled runtime refused the claim: {0}")]
    Refused(String),
    /// The slot could not be reached or answered nothing (it died or is not ready).
    #[error("{op}")]
    Io {
        /// What was being done.
        op: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// How long a claim may take: the runtime answers after a lock, a config read and a check.
pub const CLAIM_TIMEOUT: Duration = Duration::from_secs(5);

/// Claims `slot`'s VM for the container of `bundle`. On `Ok`, the slot's runtime is the
/// container's runtime (watch the bundle as for a spawned one); on an error the slot's
/// runtime exits without having touched the bundle beyond its lock.
pub async fn claim(slot: &PoolSlot, bundle: &Path) -> Result<(), ClaimError> {
    let dir = bundle
        .to_str()
        .filter(|d| !d.contains('\n'))
        .ok_or_else(|| ClaimError::Refused("the bundle path is not one line of UTF-8".into()))?;
    let io = |op: &str| {
        let op = format!("{op} {}", slot.claim_socket().display());
        move |source| ClaimError::Io { op, source }
    };
    let exchange = async {
        let mut stream = tokio::net::UnixStream::connect(slot.claim_socket())
            .await
            .map_err(io("connecting to"))?;
        stream
            .write_all(format!("{dir}\n").as_bytes())
            .await
            .map_err(io("writing to"))?;
        let mut line = String::new();
        BufReader::new(stream)
            .read_line(&mut line)
            .await
            .map_err(io("reading from"))?;
        match line.trim_end().strip_prefix("error ") {
            _ if line.trim_end() == "ok" => Ok(()),
            Some(reason) => Err(ClaimError::Refused(reason.to_owned())),
            None => Err(io("reading from")(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("unexpected answer {:?}", line.trim_end()),
            ))),
        }
    };
    tokio::time::timeout(CLAIM_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(io("waiting for")(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no answer",
            )))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_user_mode_containers_fit_a_pool() {
        let tmp = tempfile::tempdir().unwrap();
        let mut config = crate::config::testing::sample(tmp.path());
        config.networks = vec![crate::config::NetworkAttachment {
            mac: "02:00:00:00:00:01".into(),
            attachment: vmm::NicAttachment::User {
                forwards: vec![],
                isolated: false,
            },
            address: None,
            gateway: None,
            mtu: None,
        }];
        let shape = PoolShape::of(&config).expect("a plain container fits");
        assert_eq!(shape.cpus, config.cpus);
        assert_eq!(shape.memory_mib, config.vm_memory_mib());
        // The MAC is set per container, so it is no part of the shape.
        let mut other = config.clone();
        other.networks[0].mac = "02:00:00:00:00:02".into();
        assert_eq!(PoolShape::of(&other), Some(shape.clone()));
        other.networks[0].attachment = vmm::NicAttachment::Tap {
            name: "ctap0".into(),
        };
        assert_eq!(PoolShape::of(&other), None);
        let mut other = config.clone();
        other.memory_bytes *= 2;
        assert_ne!(PoolShape::of(&other), Some(shape));
    }
}
