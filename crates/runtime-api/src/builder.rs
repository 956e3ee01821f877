//! The builder runtime (`container-runtime --builder DIR`): its directory, its config and
//! the daemon's client of its API (`builder.proto`).
//!
//! ```text
//! <DIR>/
//!   builder.json    BuilderConfig, written by the daemon (atomically) before the runtime starts
//!   builder.sock    the Builder gRPC API (mode 0600), present while it serves
//!   scratch.ext4    the sparse scratch disk the runtime formats at start (layers, uppers)
//!   boot.log        the VM's console
//!   runtime.log     the runtime's own log
//!   vm/             the VM's runtime dir (as a bundle's)
//! ```
//! The runtime powers the VM off and removes `scratch.ext4` when its stdin closes: the
//! daemon holds that pipe for as long as it wants the builder.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tonic::transport::Channel;

use crate::client::{ClientError, connect_unix};
use crate::config::{Dns, NetworkAttachment};

/// The API version of `builder.proto`. Clients refuse a builder reporting another.
pub const BUILDER_API_VERSION: u32 = 1;

/// Generated messages, client (`builder_client`) and server (`builder_server`).
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("container.builder.v1");
}

/// The paths of a builder directory.
#[derive(Debug, Clone)]
pub struct BuilderDir {
    dir: PathBuf,
}

impl BuilderDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> PathBuf {
        self.dir.join("builder.json")
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("builder.sock")
    }

    pub fn scratch(&self) -> PathBuf {
        self.dir.join("scratch.ext4")
    }

    /// The same layout a bundle has for the VM's files (boot.log, runtime.log, vm/).
    pub fn bundle(&self) -> crate::Bundle {
        crate::Bundle::new(&self.dir)
    }
}

/// One builder VM, as the daemon hands it to its runtime.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuilderConfig {
    /// The guest kernel and initramfs of the build's platform.
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    pub arch: vmm::Arch,
    #[serde(default)]
    pub kernel_args: Vec<String>,
    pub cpus: u32,
    pub memory_bytes: u64,
    /// The sparse scratch disk's size: every layer and upper of the builds it serves.
    pub scratch_size_bytes: u64,
    /// The NIC steps without `--network=none` use (user-mode).
    #[serde(default)]
    pub networks: Vec<NetworkAttachment>,
    #[serde(default)]
    pub dns: Dns,
    /// The host directory shared into the VM for `--mount=type=cache` (one directory per
    /// cache id), kept across builds.
    pub cache_dir: PathBuf,
}

/// Errors reading a builder config.
#[derive(Debug, thiserror::Error)]
pub enum BuilderConfigError {
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {detail}", path.display())]
    Parse { path: PathBuf, detail: String },
}

impl BuilderConfig {
    pub fn load(path: &Path) -> Result<Self, BuilderConfigError> {
        let bytes = std::fs::read(path).map_err(|source| BuilderConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|e| BuilderConfigError::Parse {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })
    }

    /// Writes the config atomically.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        statefs::write_atomic(path, &bytes)
    }

    /// What the VM gets: the configured memory plus what the guest itself needs.
    pub fn vm_memory_mib(&self) -> u64 {
        (self.memory_bytes >> 20) + crate::config::VM_MEMORY_OVERHEAD_MIB
    }
}

/// A connected builder client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct BuilderClient {
    pub raw: pb::builder_client::BuilderClient<Channel>,
    pub status: pb::StatusResponse,
}

impl BuilderClient {
    /// Dials `socket`, asks Status and refuses a builder of another API version.
    pub async fn connect(socket: &Path, timeout: Duration) -> Result<Self, ClientError> {
        let handshake = |channel| async move {
            let mut raw =
                pb::builder_client::BuilderClient::new(channel).max_decoding_message_size(64 << 20);
            let status = raw
                .status(pb::StatusRequest {})
                .await
                .map_err(|s| format!("status: {}", s.message()))?
                .into_inner();
            let version = status.api_version;
            Ok((BuilderClient { raw, status }, version))
        };
        connect_unix(
            socket,
            "http://container-builder",
            BUILDER_API_VERSION,
            timeout,
            handshake,
        )
        .await
    }
}
