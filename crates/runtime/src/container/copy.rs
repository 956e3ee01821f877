//! Container paths for copying in and out: where a path resolves in the guest.

use super::*;

/// See [`Container::guest_write_dir`].
pub(super) fn guest_write_dir(
    config: &RuntimeConfig,
    path: &str,
) -> Result<(String, String), ContainerError> {
    let trimmed = check_container_path(path)?;
    let under = |dest: &str| {
        let dest = dest.trim_end_matches('/');
        (trimmed == dest || trimmed.starts_with(&format!("{dest}/")))
            .then(|| trimmed[dest.len()..].to_string())
    };
    for (i, v) in config.volumes.iter().enumerate() {
        let Some(rest) = under(&v.destination) else {
            continue;
        };
        match v.kind {
            VolumeKind::Block | VolumeKind::Directory => {
                let rest = if rest.is_empty() { "/".into() } else { rest };
                return Ok((format!("{GUEST_DIR}/volumes/{i}"), rest));
            }
            VolumeKind::File | VolumeKind::Socket => {
                return Err(ContainerError::FailedPrecondition(format!(
                    "{path} is a file bind-mounted from the host; copy into a directory"
                )));
            }
        }
    }
    for t in &config.tmpfs {
        if under(&t.destination).is_some() {
            return Err(ContainerError::FailedPrecondition(format!(
                "{path} is on a tmpfs of the container; copying into it is not supported"
            )));
        }
    }
    let path = if trimmed.is_empty() { "/" } else { trimmed };
    Ok((GUEST_ROOTFS.to_string(), path.to_string()))
}

/// Where a copy into the stopped container of `config` unpacks (in a writable maintenance
/// VM): into its writable layer through the overlay, as [`guest_write_dir`] resolves it for
/// a running one. Its volumes and binds are not attached then, so a path under one is
/// refused: written there, it would land in the layer beneath the mount point, where the
/// container never sees it.
pub(crate) fn stopped_write_dir(
    config: &RuntimeConfig,
    path: &str,
) -> Result<(String, String), ContainerError> {
    let (root, rest) = guest_write_dir(config, path)?;
    if root != GUEST_ROOTFS {
        return Err(ContainerError::FailedPrecondition(format!(
            "{path} is on a volume of the container, which is attached only while it runs; start the container to copy there"
        )));
    }
    Ok((root, rest))
}

/// Checks that `path` is absolute without `..`; returns it without a trailing slash.
pub(crate) fn check_container_path(path: &str) -> Result<&str, ContainerError> {
    if !path.starts_with('/') {
        return Err(ContainerError::InvalidArgument(format!(
            "{path:?} is not an absolute path"
        )));
    }
    if path.split('/').any(|c| c == "..") {
        return Err(ContainerError::InvalidArgument(format!(
            "{path:?} must not contain '..'"
        )));
    }
    Ok(path.trim_end_matches('/'))
}

impl Container {
    /// The guest directory a container path resolves in, and the path inside it: the init
    /// process's root while it runs (so the container's own mounts are seen), else the
    /// overlay. The guest resolves the path with that directory as `/`, so the container's
    /// symlinks never reach the VM's own files.
    pub fn guest_path(&self, path: &str) -> Result<(String, String), ContainerError> {
        let trimmed = check_container_path(path)?;
        let path = if trimmed.is_empty() { "/" } else { trimmed };
        let s = self.state();
        let root = match (s.status, s.init_pid) {
            (Status::Running, Some(pid)) => format!("/proc/{pid}/root"),
            _ => GUEST_ROOTFS.to_string(),
        };
        Ok((root, path.to_string()))
    }

    /// Where to unpack for the container directory `path`: the guest directory that is `/`
    /// while the path resolves, and the path inside it. Not through /proc/<pid>/root: the
    /// agent's tar unpacking resolves that magic link to the guest's own root. So: a volume's
    /// own directory, else the overlay (the container's root).
    pub fn guest_write_dir(&self, path: &str) -> Result<(String, String), ContainerError> {
        guest_write_dir(&self.config, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn copy_in_lands_in_volumes_or_the_overlay() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = runtime_api::config::testing::sample(dir.path());
        config.volumes = vec![runtime_api::config::VolumeMount {
            path: dir.path().join("vol.ext4"),
            destination: "/data".into(),
            read_only: false,
            kind: runtime_api::config::VolumeKind::Block,
        }];
        config.tmpfs = vec![runtime_api::config::TmpfsMount {
            destination: "/scratch".into(),
            options: vec![],
        }];
        let dir_of = |p: &str| guest_write_dir(&config, p).map_err(|e| e.to_string());
        let pair = |root: &str, path: &str| (root.to_string(), path.to_string());
        assert_eq!(
            dir_of("/data").unwrap(),
            pair("/run/container/volumes/0", "/")
        );
        assert_eq!(
            dir_of("/data/sub/").unwrap(),
            pair("/run/container/volumes/0", "/sub")
        );
        assert_eq!(
            dir_of("/database").unwrap(),
            pair("/run/container/rootfs", "/database")
        );
        assert_eq!(dir_of("/").unwrap(), pair("/run/container/rootfs", "/"));
        assert!(dir_of("/scratch/x").unwrap_err().contains("tmpfs"));
        assert!(dir_of("tmp").unwrap_err().contains("not an absolute path"));
        assert!(dir_of("/tmp/../etc").unwrap_err().contains("'..'"));
    }

    #[test]
    fn copy_in_to_a_stopped_container_lands_in_the_layer_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = runtime_api::config::testing::sample(dir.path());
        config.volumes = vec![runtime_api::config::VolumeMount {
            path: dir.path().join("vol.ext4"),
            destination: "/data".into(),
            read_only: false,
            kind: runtime_api::config::VolumeKind::Block,
        }];
        let dir_of = |p: &str| stopped_write_dir(&config, p).map_err(|e| e.to_string());
        assert_eq!(
            dir_of("/database/x").unwrap(),
            (
                "/run/container/rootfs".to_string(),
                "/database/x".to_string()
            )
        );
        let e = dir_of("/data/sub").unwrap_err();
        assert!(
            e.contains("/data/sub is on a volume of the container"),
            "{e}"
        );
        assert!(dir_of("tmp").unwrap_err().contains("not an absolute path"));
    }
}
