//! The guest kernel and initramfs: which files a new container boots, and installing a
//! kernel into `<app root>/kernels/`.
//!
//! Lookup order, for each of the kernel and the initramfs: `<app root>/kernels/` (what
//! `system kernel set` installed), then `$CONTAINER_KERNEL` / `$CONTAINER_INITRD`, then the
//! workspace's `target/guest/` (development builds, found from the daemon's executable).

use std::path::{Path, PathBuf};

/// Why the guest files cannot be found or installed.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// No kernel or initramfs anywhere.
    #[error("no guest {what} found: {hint}")]
    Missing {
        /// `kernel` or `initramfs`.
        what: &'static str,
        /// Where to put one.
        hint: String,
    },
    /// The request is malformed.
    #[error("{0}")]
    Invalid(String),
    /// Copying failed.
    #[error("installing {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl From<KernelError> for api::ApiError {
    fn from(e: KernelError) -> api::ApiError {
        match e {
            KernelError::Missing { .. } => api::ApiError::failed_precondition(e.to_string()),
            KernelError::Invalid(_) => api::ApiError::invalid_argument(e.to_string()),
            KernelError::Io { .. } => api::ApiError::internal(e.to_string()),
        }
    }
}

/// The host's architecture as kernels are named (`amd64`, `arm64`).
pub fn host_arch() -> &'static str {
    if cfg!(target_arch = "aarch64") {
        "arm64"
    } else {
        "amd64"
    }
}

/// The kernel file name for an architecture.
pub fn kernel_name(arch: &str) -> String {
    format!("vmlinux-{arch}")
}

/// The initramfs file name.
pub const INITRAMFS_NAME: &str = "initramfs.cpio";

/// `target/guest/` of the workspace this binary was built in, if it is a development build
/// (`<target>/debug/container-apiserver` or `<target>/debug/deps/<test binary>`).
fn dev_guest_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    exe.ancestors()
        .skip(1)
        .take(4)
        .map(|d| d.join("guest"))
        .find(|d| d.is_dir())
}

fn pick(
    kernels: &Path,
    own: &str,
    env: &str,
    dev: &str,
    what: &'static str,
) -> Result<PathBuf, KernelError> {
    let installed = kernels.join(own);
    if installed.is_file() {
        return Ok(installed);
    }
    if let Some(p) = std::env::var_os(env).filter(|v| !v.is_empty()) {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
    }
    if let Some(p) = dev_guest_dir().map(|d| d.join(dev)).filter(|p| p.is_file()) {
        return Ok(p);
    }
    Err(KernelError::Missing {
        what,
        hint: format!(
            "install one with `container system kernel set --binary PATH`, or set ${env}"
        ),
    })
}

/// The kernel and initramfs a new container boots.
pub fn guest_files(app_root: &Path) -> Result<(PathBuf, PathBuf), KernelError> {
    let kernels = app_root.join("kernels");
    let kernel = pick(
        &kernels,
        &kernel_name(host_arch()),
        "CONTAINER_KERNEL",
        "vmlinux",
        "kernel",
    )?;
    let initramfs = pick(
        &kernels,
        INITRAMFS_NAME,
        "CONTAINER_INITRD",
        "initramfs.cpio",
        "initramfs",
    )?;
    Ok((kernel, initramfs))
}

/// Copies the kernel at `binary` into `kernels/` (atomically); returns where it went.
pub fn install(
    app_root: &Path,
    binary: &Path,
    arch: &str,
    force: bool,
) -> Result<PathBuf, KernelError> {
    let arch = if arch.is_empty() { host_arch() } else { arch };
    if !matches!(arch, "amd64" | "arm64") {
        return Err(KernelError::Invalid(format!(
            "unknown architecture {arch:?} (amd64 or arm64)"
        )));
    }
    if !binary.is_absolute() {
        return Err(KernelError::Invalid(format!(
            "kernel path {} must be absolute",
            binary.display()
        )));
    }
    if !binary.is_file() {
        return Err(KernelError::Invalid(format!(
            "kernel {} is not a file",
            binary.display()
        )));
    }
    let dir = app_root.join("kernels");
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| KernelError::Io { path, source }
    };
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let dest = dir.join(kernel_name(arch));
    if dest.exists() && !force {
        let same = std::fs::read(&dest).ok() == std::fs::read(binary).ok();
        if !same {
            return Err(KernelError::Invalid(format!(
                "a different kernel is installed at {}: use --force to replace it",
                dest.display()
            )));
        }
    }
    let mut tmp = statefs::AtomicFile::new(&dest).map_err(io(&dir))?;
    let mut src = std::fs::File::open(binary).map_err(io(binary))?;
    std::io::copy(&mut src, tmp.file()).map_err(io(binary))?;
    tmp.commit().map_err(io(&dest))?;
    Ok(dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installed_kernel_wins_and_refuses_silent_replacement() {
        let root = tempfile::tempdir().unwrap();
        let src = root.path().join("k1");
        std::fs::write(&src, b"kernel one").unwrap();
        let dest = install(root.path(), &src, "", false).unwrap();
        assert_eq!(
            dest,
            root.path().join("kernels").join(kernel_name(host_arch()))
        );
        assert_eq!(std::fs::read(&dest).unwrap(), b"kernel one");
        let other = root.path().join("k2");
        std::fs::write(&other, b"kernel two").unwrap();
        let err = install(root.path(), &other, "", false).unwrap_err();
        assert!(err.to_string().contains("--force"), "{err}");
        install(root.path(), &other, "", true).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"kernel two");
        assert!(install(root.path(), Path::new("rel"), "", false).is_err());
        assert!(install(root.path(), &src, "sparc", false).is_err());
    }
}
