//! Root filesystem snapshots: the ext4 image of one single-platform manifest, built once
//! from its layers with the `ext4` crate and cached at `snapshots/<hex>/rootfs.ext4`.
//!
//! The image is written under a temp name in the same directory and renamed into place
//! only when complete, so a visible `rootfs.ext4` is always whole. Concurrent callers for
//! the same manifest wait on a per-snapshot `flock` and then reuse the finished image.

use std::fs;
use std::path::PathBuf;

use crate::digest::Digest;
use crate::layer::{LayerError, open_layer};
use crate::manifest::{Manifest, ManifestError};
use crate::store::{Store, StoreError, io_err};

const ROOTFS: &str = "rootfs.ext4";
const TMP_PREFIX: &str = "rootfs.ext4.tmp-";

/// Why a snapshot could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Layer(#[from] LayerError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("cannot build the root filesystem of manifest {digest}")]
    Ext4 {
        digest: Digest,
        #[source]
        source: ext4::Error,
    },
}

impl SnapshotError {
    pub fn kind(&self) -> crate::ErrorKind {
        match self {
            SnapshotError::Store(e) => e.kind(),
            SnapshotError::Layer(e) => e.kind(),
            SnapshotError::Manifest(e) => e.kind(),
            SnapshotError::Ext4 { .. } => crate::ErrorKind::InvalidArgument,
        }
    }
}

/// What [`ensure_rootfs`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub path: PathBuf,
    /// False when an existing image was reused.
    pub built: bool,
}

/// Where the snapshot of `manifest` lives (whether or not it exists yet).
pub fn rootfs_path(store: &Store, manifest: &Digest) -> PathBuf {
    store.snapshots_dir().join(manifest.hex()).join(ROOTFS)
}

/// Returns the rootfs image for the single-platform manifest `manifest`, building it
/// from the layers in the store if it does not exist yet.
pub fn ensure_rootfs(
    store: &Store,
    manifest: &Digest,
    options: &ext4::Options,
) -> Result<Snapshot, SnapshotError> {
    let path = rootfs_path(store, manifest);
    if path.is_file() {
        return Ok(Snapshot { path, built: false });
    }
    // Keeps GC from deleting the layers (or this directory) while we build.
    let _lease = store.lease()?;
    let dir = store.snapshots_dir().join(manifest.hex());
    statefs::create_private_dir(&dir).map_err(io_err(&dir))?;
    let lock_path = dir.join(".lock");
    let lock = crate::store::open_private(&lock_path).map_err(io_err(&lock_path))?;
    lock.lock().map_err(io_err(&lock_path))?;
    if path.is_file() {
        return Ok(Snapshot { path, built: false }); // another caller built it meanwhile
    }
    // We hold the lock, so any temp file here is a crashed build's leftover.
    for entry in fs::read_dir(&dir).map_err(io_err(&dir))?.flatten() {
        if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
            fs::remove_file(entry.path()).map_err(io_err(entry.path()))?;
        }
    }

    let desc = crate::manifest::Descriptor {
        media_type: crate::media_type::OCI_MANIFEST.to_owned(),
        digest: manifest.clone(),
        size: store.content().size(manifest)?,
        platform: None,
        annotations: Default::default(),
        urls: Vec::new(),
    };
    let Manifest::Image(m) = store.manifest(&desc)? else {
        return Err(ManifestError::UnsupportedMediaType {
            what: "snapshot (an index has no single root filesystem)",
            media_type: crate::media_type::OCI_INDEX.to_owned(),
        }
        .into());
    };
    let tmp = statefs::AtomicFile::with_prefix(&path, TMP_PREFIX).map_err(io_err(&dir))?;
    let ext4_err = |source| SnapshotError::Ext4 {
        digest: manifest.clone(),
        source,
    };
    let mut builder = ext4::Ext4Builder::new(tmp.path(), options.clone()).map_err(ext4_err)?;
    for layer in &m.layers {
        builder
            .apply_layer(open_layer(store.content(), layer)?)
            .map_err(ext4_err)?;
    }
    builder.finish().map_err(ext4_err)?;
    tmp.commit().map_err(io_err(&path))?;
    Ok(Snapshot { path, built: true })
}
