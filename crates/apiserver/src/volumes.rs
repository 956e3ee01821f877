//! Volumes: `<app root>/volumes/<name>/volume.ext4`, an ext4 image (sparse) attached to the
//! container's VM as a block device and mounted where the user asked. Named volumes are
//! created on first use; anonymous ones get a 64-hex name, belong to their container and go
//! with it on `delete --volumes`.

use std::path::{Path, PathBuf};

/// Size of a new volume's file system (sparse: it costs what is written).
pub const VOLUME_BYTES: u64 = 8 << 30;

/// The file of a volume.
const IMAGE: &str = "volume.ext4";

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
    /// The file system could not be created.
    #[error("creating volume {name}: {reason}")]
    Create {
        /// The volume.
        name: String,
        /// Why.
        reason: String,
    },
}

impl From<VolumeError> for api::ApiError {
    fn from(e: VolumeError) -> api::ApiError {
        match e {
            VolumeError::BadName { .. } => api::ApiError::invalid_argument(e.to_string()),
            VolumeError::Create { .. } => api::ApiError::internal(e.to_string()),
        }
    }
}

/// The volumes directory of an app root.
pub fn dir(app_root: &Path) -> PathBuf {
    app_root.join("volumes")
}

/// The ext4 image of volume `name`.
pub fn image_path(volumes: &Path, name: &str) -> PathBuf {
    volumes.join(name).join(IMAGE)
}

/// Creates volume `name` unless it exists (built under a temp name, renamed when whole).
pub fn ensure(volumes: &Path, name: &str) -> Result<PathBuf, VolumeError> {
    spec::validate_volume_name(name).map_err(|e| VolumeError::BadName {
        name: name.to_owned(),
        reason: e.to_string(),
    })?;
    let path = image_path(volumes, name);
    if path.is_file() {
        return Ok(path);
    }
    let fail = |reason: String| VolumeError::Create {
        name: name.to_owned(),
        reason,
    };
    let vdir = volumes.join(name);
    std::fs::create_dir_all(&vdir).map_err(|e| fail(e.to_string()))?;
    let tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(&vdir)
        .map_err(|e| fail(e.to_string()))?
        .into_temp_path();
    let options = ext4::Options {
        label: "volume".into(),
        sync: true,
        ..Default::default()
    };
    ext4::format_empty(&tmp, VOLUME_BYTES, &options).map_err(|e| fail(e.to_string()))?;
    tmp.persist(&path).map_err(|e| fail(e.error.to_string()))?;
    crate::fsutil::sync_dir(&vdir).map_err(|e| fail(e.to_string()))?;
    Ok(path)
}

/// Removes a volume and its directory.
pub fn remove(volumes: &Path, name: &str) -> std::io::Result<()> {
    if spec::validate_volume_name(name).is_err() {
        return Ok(());
    }
    match std::fs::remove_dir_all(volumes.join(name)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Every volume's name.
pub fn list(volumes: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(volumes) else {
        return vec![];
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().join(IMAGE).is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ensure_creates_once_and_e2fsck_accepts_it() {
        let root = tempfile::tempdir().unwrap();
        let v = dir(root.path());
        let p = ensure(&v, "data").unwrap();
        assert_eq!(p, v.join("data").join(IMAGE));
        let meta = std::fs::metadata(&p).unwrap();
        assert_eq!(meta.len(), VOLUME_BYTES);
        use std::os::unix::fs::MetadataExt;
        assert!(meta.blocks() * 512 < 64 << 20, "volume image is sparse");
        let out = std::process::Command::new("e2fsck")
            .arg("-fn")
            .arg(&p)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        std::fs::write(v.join("data").join("marker"), b"x").unwrap();
        assert_eq!(ensure(&v, "data").unwrap(), p);
        assert_eq!(list(&v), ["data"]);
        assert!(matches!(
            ensure(&v, "../x").unwrap_err(),
            VolumeError::BadName { .. }
        ));
        remove(&v, "data").unwrap();
        assert!(list(&v).is_empty());
    }
}
