//! Volumes: named and anonymous ext4 file systems the daemon owns, on disk. The `Volumes`
//! service and the claims running containers hold on volumes are in
//! [`crate::volume_service`]; this module knows nothing of the daemon.
//!
//! ```text
//! <app root>/volumes/
//! ├── <name>/volume.ext4   the file system (sparse ext4 with an ordered journal), attached
//! │                        to a container's VM as a virtio-blk disk
//! ├── <name>/volume.json   what `volume inspect` shows: creation time, size, labels,
//! │                        options, whether it is anonymous
//! ├── .new-<random>/       a volume being created; renamed to <name>/ when whole
//! └── .gone-<random>/      a volume being deleted
//! ```
//! Both dot-directories are leftovers of a crash when the daemon starts, and removed then.
//!
//! Named volumes are created by `volume create`, or on first use by `-v NAME:/path` (with a
//! warning, as Apple's `container` does). Anonymous volumes (`-v /path`, an image's VOLUME)
//! get a 64-hex-digit name and belong to their container: `--rm` and `delete --volumes`
//! remove them with it. A volume is a disk, so one running container at a time may attach it
//! read-write; read-only users may share it with each other. Delete and prune refuse volumes
//! any container references.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use api::ApiError;
use api::v1;
use serde::{Deserialize, Serialize};

/// The file of a volume's file system.
const IMAGE: &str = "volume.ext4";
/// The file of a volume's metadata.
const META: &str = "volume.json";

/// Errors of volume handling.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// The name is not a valid volume name.
    #[error("invalid volume name {name:?}: {reason}")]
    BadName {
        /// The name.
        name: String,
        /// Why.
        reason: String,
    },
    /// The size is outside what a volume may have.
    #[error("invalid size for volume {name}: {reason}")]
    BadSize {
        /// The volume.
        name: String,
        /// Why.
        reason: String,
    },
    /// No such volume.
    #[error("volume {0} not found")]
    NotFound(String),
    /// The name is taken.
    #[error("volume {0} already exists")]
    Exists(String),
    /// The file system could not be created.
    #[error("creating volume {name}: {reason}")]
    Create {
        /// The volume.
        name: String,
        /// Why.
        reason: String,
    },
    /// A file of the volume could not be read, written or removed.
    #[error("volume {name}: {reason}")]
    Io {
        /// The volume.
        name: String,
        /// Why.
        reason: String,
    },
}

impl From<VolumeError> for ApiError {
    fn from(e: VolumeError) -> ApiError {
        match e {
            VolumeError::BadName { .. } | VolumeError::BadSize { .. } => {
                ApiError::invalid_argument(e.to_string())
            }
            VolumeError::NotFound(_) => ApiError::not_found(e.to_string()),
            VolumeError::Exists(_) => ApiError::already_exists(e.to_string()),
            VolumeError::Create { .. } | VolumeError::Io { .. } => {
                ApiError::internal(e.to_string())
            }
        }
    }
}

/// A volume's `volume.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeMeta {
    /// The name.
    pub name: String,
    /// When it was created, ms since the epoch.
    pub created_ms: i64,
    /// The file system's size in bytes.
    pub size_bytes: u64,
    /// Labels given at creation.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Creation options as given (`size=10g`).
    #[serde(default)]
    pub options: Vec<String>,
    /// Made for one container rather than by name.
    #[serde(default)]
    pub anonymous: bool,
}

/// What a new volume is made with.
#[derive(Debug, Clone, Default)]
pub struct NewVolume {
    /// The file system's size in bytes.
    pub size_bytes: u64,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Creation options as given.
    pub options: Vec<String>,
    /// Made for one container.
    pub anonymous: bool,
}

/// The volumes directory of an app root.
pub fn dir(app_root: &Path) -> PathBuf {
    app_root.join("volumes")
}

/// The ext4 image of volume `name`.
pub fn image_path(volumes: &Path, name: &str) -> PathBuf {
    volumes.join(name).join(IMAGE)
}

pub(crate) fn check_name(name: &str) -> Result<(), VolumeError> {
    spec::validate_volume_name(name).map_err(|e| VolumeError::BadName {
        name: name.to_owned(),
        reason: e.to_string(),
    })
}

/// Creates volume `name`: formatted and described in a private directory, fsynced, then
/// renamed into place, so a crash never leaves half a volume. Refuses a taken name.
pub fn create(volumes: &Path, name: &str, new: &NewVolume) -> Result<VolumeMeta, VolumeError> {
    check_name(name)?;
    spec::check_volume_size(name, spec::ByteSize(new.size_bytes)).map_err(|e| {
        VolumeError::BadSize {
            name: name.to_owned(),
            reason: e.to_string(),
        }
    })?;
    let fail = |reason: String| VolumeError::Create {
        name: name.to_owned(),
        reason,
    };
    if volumes.join(name).exists() {
        return Err(VolumeError::Exists(name.to_owned()));
    }
    crate::fsutil::create_private_dir(volumes).map_err(|e| fail(e.to_string()))?;
    let tmp = tempfile::Builder::new()
        .prefix(".new-")
        .tempdir_in(volumes)
        .map_err(|e| fail(e.to_string()))?;
    let options = ext4::Options {
        label: "volume".into(),
        sync: true,
        max_image_size: new.size_bytes.max(16 << 20),
        ..Default::default()
    };
    ext4::format_empty(tmp.path().join(IMAGE), new.size_bytes, &options)
        .map_err(|e| fail(crate::errors::one_line(&spec::error_chain(&e))))?;
    let meta = VolumeMeta {
        name: name.to_owned(),
        created_ms: crate::fsutil::now_ms(),
        size_bytes: new.size_bytes,
        labels: new.labels.clone(),
        options: new.options.clone(),
        anonymous: new.anonymous,
    };
    let json = serde_json::to_vec_pretty(&meta).map_err(|e| fail(e.to_string()))?;
    statefs::write_atomic(&tmp.path().join(META), &json).map_err(|e| fail(e.to_string()))?;
    let tmp = tmp.keep();
    // rename(2) onto an existing, non-empty directory fails: a racing create loses here.
    if let Err(e) = std::fs::rename(&tmp, volumes.join(name)) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(if volumes.join(name).exists() {
            VolumeError::Exists(name.to_owned())
        } else {
            fail(e.to_string())
        });
    }
    statefs::sync_dir(volumes).map_err(|e| fail(e.to_string()))?;
    Ok(meta)
}

/// Whether volume `name` exists.
pub fn exists(volumes: &Path, name: &str) -> bool {
    check_name(name).is_ok() && image_path(volumes, name).is_file()
}

/// Reads a volume's metadata. A volume made before metadata was kept gets it from its
/// image: its size, and its modification time as creation time.
pub fn load(volumes: &Path, name: &str) -> Result<VolumeMeta, VolumeError> {
    check_name(name)?;
    let image = image_path(volumes, name);
    let md = std::fs::metadata(&image).map_err(|_| VolumeError::NotFound(name.to_owned()))?;
    match std::fs::read(volumes.join(name).join(META)) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| VolumeError::Io {
            name: name.to_owned(),
            reason: format!("{META}: {e}"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(VolumeMeta {
            name: name.to_owned(),
            created_ms: md
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_millis() as i64),
            size_bytes: md.len(),
            labels: BTreeMap::new(),
            options: Vec::new(),
            anonymous: false,
        }),
        Err(e) => Err(VolumeError::Io {
            name: name.to_owned(),
            reason: e.to_string(),
        }),
    }
}

/// Removes a volume: renamed aside first, so a crash never leaves half of it under its
/// name. A missing volume is not an error.
pub fn remove(volumes: &Path, name: &str) -> Result<(), VolumeError> {
    if check_name(name).is_err() {
        return Ok(());
    }
    let fail = |e: std::io::Error| VolumeError::Io {
        name: name.to_owned(),
        reason: format!("removing: {e}"),
    };
    let gone = volumes.join(format!(".gone-{}", crate::names::new_id().map_err(fail)?));
    match std::fs::rename(volumes.join(name), &gone) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(fail(e)),
        Ok(()) => {}
    }
    statefs::sync_dir(volumes).map_err(fail)?;
    std::fs::remove_dir_all(&gone).map_err(fail)
}

/// Removes what interrupted creates and deletes left; returns how many.
pub fn clean(volumes: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(volumes) else {
        return 0;
    };
    let mut n = 0;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if (name.starts_with(".new-") || name.starts_with(".gone-"))
            && std::fs::remove_dir_all(e.path()).is_ok()
        {
            n += 1;
        }
    }
    n
}

/// Every volume's name, sorted.
pub fn list(volumes: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(volumes) else {
        return vec![];
    };
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| exists(volumes, n))
        .collect();
    names.sort();
    names
}

/// How a container's configuration uses volumes: (name, read-only) per volume mount.
pub(crate) fn uses(config: &v1::ContainerConfig) -> Vec<(String, bool)> {
    config
        .mounts
        .iter()
        .filter_map(|m| match &m.kind {
            Some(v1::mount::Kind::Volume(v)) if !v.name.is_empty() => {
                Some((v.name.clone(), m.readonly))
            }
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e2fsck(path: &Path) {
        let out = std::process::Command::new("e2fsck")
            .arg("-fn")
            .arg(path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    #[test]
    fn create_load_list_remove() {
        let root = tempfile::tempdir().unwrap();
        let v = dir(root.path());
        let new = NewVolume {
            size_bytes: 1 << 30,
            labels: [("team".to_string(), "db".to_string())].into(),
            options: vec!["size=1g".into()],
            anonymous: false,
        };
        let meta = create(&v, "data", &new).unwrap();
        assert_eq!(meta.size_bytes, 1 << 30);
        let p = image_path(&v, "data");
        let md = std::fs::metadata(&p).unwrap();
        assert_eq!(md.len(), 1 << 30);
        use std::os::unix::fs::MetadataExt;
        assert!(md.blocks() * 512 < 64 << 20, "volume image is sparse");
        e2fsck(&p);
        assert_eq!(load(&v, "data").unwrap(), meta);
        assert!(matches!(
            create(&v, "data", &new).unwrap_err(),
            VolumeError::Exists(_)
        ));
        assert!(matches!(
            create(&v, "../x", &new).unwrap_err(),
            VolumeError::BadName { .. }
        ));
        let small = NewVolume {
            size_bytes: 1 << 20,
            ..new.clone()
        };
        let err = create(&v, "tiny", &small).unwrap_err();
        assert!(err.to_string().contains("below the minimum"), "{err}");
        assert!(!v.join("tiny").exists());
        assert!(matches!(
            load(&v, "nope").unwrap_err(),
            VolumeError::NotFound(_)
        ));
        assert_eq!(list(&v), ["data"]);
        // A crash mid-create or mid-delete leaves dot-directories that list ignores and
        // clean removes.
        std::fs::create_dir_all(v.join(".new-x")).unwrap();
        std::fs::create_dir_all(v.join(".gone-y")).unwrap();
        assert_eq!(list(&v), ["data"]);
        assert_eq!(clean(&v), 2);
        remove(&v, "data").unwrap();
        remove(&v, "data").unwrap();
        assert!(list(&v).is_empty());
        assert_eq!(std::fs::read_dir(&v).unwrap().count(), 0);
    }

    #[test]
    fn a_volume_without_metadata_is_described_from_its_image() {
        let root = tempfile::tempdir().unwrap();
        let v = dir(root.path());
        std::fs::create_dir_all(v.join("old")).unwrap();
        let f = std::fs::File::create(image_path(&v, "old")).unwrap();
        f.set_len(32 << 20).unwrap();
        let meta = load(&v, "old").unwrap();
        assert_eq!(meta.size_bytes, 32 << 20);
        assert!(meta.created_ms > 0);
        assert!(!meta.anonymous);
    }

    #[test]
    fn the_default_size_formats_quickly_and_sparsely() {
        let root = tempfile::tempdir().unwrap();
        let v = dir(root.path());
        let size = crate::properties::DEFAULT_VOLUME_SIZE
            .parse::<spec::ByteSize>()
            .unwrap()
            .bytes();
        let new = NewVolume {
            size_bytes: size,
            ..Default::default()
        };
        let t = std::time::Instant::now();
        create(&v, "big", &new).unwrap();
        let took = t.elapsed();
        use std::os::unix::fs::MetadataExt;
        let md = std::fs::metadata(image_path(&v, "big")).unwrap();
        eprintln!(
            "formatting {} took {took:?}, {} on disk",
            spec::human_bytes(size),
            spec::human_bytes(md.blocks() * 512)
        );
        assert!(md.blocks() * 512 < 256 << 20);
        e2fsck(&image_path(&v, "big"));
    }
}
