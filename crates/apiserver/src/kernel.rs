//! The guest kernel and initramfs: which files a new container boots, and installing a
//! kernel into `<app root>/kernels/`.
//!
//! Two places only, for each of the kernel and the initramfs, in this order:
//! 1. `<app root>/kernels/` (`vmlinux-<arch>`, `initramfs.cpio`): what `system kernel set`
//!    installed;
//! 2. the installation's share directory, `<directory of the daemon's executable>/../share/
//!    container/` (`vmlinux`, `initramfs.cpio`): `/usr/local/bin/container-apiserver` finds
//!    `/usr/local/share/container/`, and a development build in `<target>/debug/` finds
//!    `<target>/share/container/`, where `cargo xtask guest` publishes the guest.
//!
//! Each architecture has its own guest, chosen by the image's platform ([`guest_arch`]): the
//! host's as above; another one's as `kernels/vmlinux-<arch>` and
//! `kernels/initramfs-<arch>.cpio`, or in the share directory's `<arch>/` subdirectory
//! (`share/container/arm64/vmlinux`), where `cargo xtask guest --arch arm64` publishes it.
//!
//! Nothing else: no environment variable (the daemon is often started by a service manager,
//! whose environment nobody reads) and no directories above the executable (from
//! `/home/alice/bin/` a scan upwards reaches `/home/guest/`).
//!
//! A kernel's build info, when it has one, is the JSON file `<kernel file>.info.json` beside
//! it (what `cargo xtask kernel` writes); `system kernel set` copies it along.

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

/// The kernel's file name in the share directory.
pub const SHARE_KERNEL_NAME: &str = "vmlinux";

/// The suffix of a kernel's build info file, appended to the kernel's file name.
pub const INFO_SUFFIX: &str = ".info.json";

/// The installation's share directory for an executable: `<exe dir>/../share/container`.
pub fn share_dir_of(exe: &Path) -> Option<PathBuf> {
    let bin = exe.parent()?;
    Some(bin.parent()?.join("share").join("container"))
}

/// This daemon's share directory.
pub fn share_dir() -> Option<PathBuf> {
    share_dir_of(&std::env::current_exe().ok()?)
}

/// Where the guest files are looked for: the app root's `kernels/` and the share directory.
#[derive(Debug, Clone)]
pub struct GuestDirs {
    /// `<app root>/kernels`.
    pub kernels: PathBuf,
    /// The installation's share directory, if the executable's path has one.
    pub share: Option<PathBuf>,
}

impl GuestDirs {
    /// The places for an app root and this daemon's executable.
    pub fn new(app_root: &Path) -> GuestDirs {
        GuestDirs {
            kernels: app_root.join("kernels"),
            share: share_dir(),
        }
    }

    fn pick(&self, own: &str, shared: &str, what: &'static str) -> Result<PathBuf, KernelError> {
        let candidates = std::iter::once(self.kernels.join(own))
            .chain(self.share.iter().map(|d| d.join(shared)));
        for path in candidates {
            if path.is_file() {
                return Ok(path);
            }
        }
        let share = self
            .share
            .as_ref()
            .map(|d| format!(" or put one at {}", d.join(shared).display()))
            .unwrap_or_default();
        Err(KernelError::Missing {
            what,
            hint: format!("install one with `container system kernel set --binary PATH`{share}"),
        })
    }

    /// The kernel and initramfs a new container of the host's architecture boots.
    pub fn guest_files(&self) -> Result<(PathBuf, PathBuf), KernelError> {
        self.guest_files_for(vmm::Arch::host())
    }

    /// The kernel and initramfs of the guest for `arch`.
    pub fn guest_files_for(&self, arch: vmm::Arch) -> Result<(PathBuf, PathBuf), KernelError> {
        let name = arch_name(arch);
        if arch == vmm::Arch::host() {
            let kernel = self.pick(&kernel_name(name), SHARE_KERNEL_NAME, "kernel")?;
            let initramfs = self.pick(INITRAMFS_NAME, INITRAMFS_NAME, "initramfs")?;
            return Ok((kernel, initramfs));
        }
        let foreign = |what: &'static str, own: String, shared: String| {
            self.pick(&own, &shared, what).map_err(|_| {
                let share = self
                    .share
                    .as_ref()
                    .map(|d| format!(" or put one at {}", d.join(&shared).display()))
                    .unwrap_or_default();
                KernelError::Missing {
                    what,
                    hint: format!(
                        "this image is {name} and needs the {name} guest: build it with \
                         `cargo xtask guest --arch {name}`, install one with \
                         `container system kernel set --arch {name} --binary PATH`{share}"
                    ),
                }
            })
        };
        let kernel = foreign(
            "kernel",
            kernel_name(name),
            format!("{name}/{SHARE_KERNEL_NAME}"),
        )?;
        let initramfs = foreign(
            "initramfs",
            format!("initramfs-{name}.cpio"),
            format!("{name}/{INITRAMFS_NAME}"),
        )?;
        Ok((kernel, initramfs))
    }
}

/// The kernel and initramfs a new container of `arch` boots (see the module doc).
pub fn guest_files(app_root: &Path, arch: vmm::Arch) -> Result<(PathBuf, PathBuf), KernelError> {
    GuestDirs::new(app_root).guest_files_for(arch)
}

/// An architecture as kernels and images name it (`amd64`, `arm64`).
pub fn arch_name(arch: vmm::Arch) -> &'static str {
    match arch {
        vmm::Arch::X86_64 => "amd64",
        vmm::Arch::Aarch64 => "arm64",
    }
}

/// The guest architecture that runs an image of `platform`: each architecture runs in a VM
/// of its own (docs/multiarch.md says why, with the figures). Anything but linux on amd64
/// or arm64 has no guest.
pub fn guest_arch(platform: &oci::Platform) -> Result<vmm::Arch, KernelError> {
    if platform.os != "linux" {
        return Err(KernelError::Invalid(format!(
            "images for {platform} cannot run: only linux images run in the guest"
        )));
    }
    match platform.architecture.as_str() {
        "amd64" => Ok(vmm::Arch::X86_64),
        "arm64" => Ok(vmm::Arch::Aarch64),
        other => Err(KernelError::Invalid(format!(
            "images for {platform} cannot run: there is no {other} guest (amd64 and arm64 have one)"
        ))),
    }
}

/// What a kernel was built from: `<kernel>.info.json`, as `cargo xtask kernel` writes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildInfo {
    /// Debian's source package (`linux-source-6.1`).
    pub source_package: String,
    /// Its version (`6.1.192-3`).
    pub package_version: String,
    /// sha256 of the source tarball.
    pub tarball_sha256: String,
    /// sha256 of the config fragment.
    pub config_sha256: String,
    /// The build recipe's version.
    pub recipe: String,
}

/// The guest files of `dirs` and the kernel's build info, as the API reports them.
pub fn describe(dirs: &GuestDirs) -> api::v1::GuestKernel {
    let (kernel, initramfs) = match dirs.guest_files() {
        Ok(files) => files,
        Err(e) => {
            return api::v1::GuestKernel {
                error: e.to_string(),
                ..Default::default()
            };
        }
    };
    let (build, error) = match build_info(&kernel) {
        Ok(info) => (info.map(Into::into), String::new()),
        Err(e) => (None, e.to_string()),
    };
    api::v1::GuestKernel {
        path: kernel.display().to_string(),
        initramfs: initramfs.display().to_string(),
        error,
        build,
    }
}

impl From<BuildInfo> for api::v1::KernelBuildInfo {
    fn from(b: BuildInfo) -> Self {
        api::v1::KernelBuildInfo {
            source_package: b.source_package,
            package_version: b.package_version,
            tarball_sha256: b.tarball_sha256,
            config_sha256: b.config_sha256,
            recipe: b.recipe,
        }
    }
}

/// The build info file of a kernel file.
pub fn info_path(kernel: &Path) -> PathBuf {
    let mut name = kernel.as_os_str().to_owned();
    name.push(INFO_SUFFIX);
    PathBuf::from(name)
}

/// The build info beside `kernel`: `Ok(None)` when it has none.
pub fn build_info(kernel: &Path) -> Result<Option<BuildInfo>, KernelError> {
    let path = info_path(kernel);
    match std::fs::read(&path) {
        Ok(data) => serde_json::from_slice(&data).map(Some).map_err(|e| {
            KernelError::Invalid(format!("kernel build info {}: {e}", path.display()))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(KernelError::Io { path, source }),
    }
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
    crate::fsutil::create_private_dir(&dir).map_err(io(&dir))?;
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
    // A 0600 temp file beside the destination, renamed over it once whole.
    let mut tmp = statefs::AtomicFile::new(&dest).map_err(io(&dir))?;
    let mut src = std::fs::File::open(binary).map_err(io(binary))?;
    std::io::copy(&mut src, tmp.file()).map_err(io(binary))?;
    tmp.commit().map_err(io(&dest))?;
    // The build info goes along, or an older one is removed: it must describe this kernel.
    let info = info_path(&dest);
    let source_info = info_path(binary);
    if source_info.is_file() {
        build_info(binary)?;
        crate::fsutil::write_atomic(
            &info,
            &std::fs::read(&source_info).map_err(io(&source_info))?,
        )
        .map_err(io(&info))?;
    } else {
        match std::fs::remove_file(&info) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&info)(e)),
        }
    }
    crate::fsutil::sync_dir(&dir).map_err(io(&dir))?;
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

    const INFO: &str = r#"{"source_package": "linux-source-6.1", "package_version": "6.1.192-3",
        "tarball_sha256": "cacdc3", "config_sha256": "0f0f", "recipe": "1"}"#;

    #[test]
    fn kernel_set_copies_the_build_info_and_drops_a_stale_one() {
        let root = tempfile::tempdir().unwrap();
        let src = root.path().join("vmlinux");
        std::fs::write(&src, b"kernel").unwrap();
        std::fs::write(root.path().join("vmlinux.info.json"), INFO).unwrap();
        let dest = install(root.path(), &src, "", false).unwrap();
        let info = build_info(&dest).unwrap().unwrap();
        assert_eq!(info.package_version, "6.1.192-3");
        assert_eq!(info.source_package, "linux-source-6.1");
        // A kernel without build info must not inherit the previous one's.
        let bare = root.path().join("other");
        std::fs::write(&bare, b"kernel two").unwrap();
        install(root.path(), &bare, "", true).unwrap();
        assert_eq!(build_info(&dest).unwrap(), None);
        // Malformed build info is refused, naming the file.
        std::fs::write(root.path().join("other.info.json"), "{}").unwrap();
        let err = install(root.path(), &bare, "", true)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("kernel build info "), "{err}");
    }

    #[test]
    fn another_architectures_guest_lives_beside_and_its_absence_names_what_to_build() {
        let t = tempfile::tempdir().unwrap();
        let share = t.path().join("share/container");
        let dirs = GuestDirs {
            kernels: t.path().join("kernels"),
            share: Some(share.clone()),
        };
        let foreign = match vmm::Arch::host() {
            vmm::Arch::X86_64 => vmm::Arch::Aarch64,
            vmm::Arch::Aarch64 => vmm::Arch::X86_64,
        };
        let name = arch_name(foreign);
        // The host's guest does not stand in for another architecture's.
        std::fs::create_dir_all(&share).unwrap();
        std::fs::write(share.join("vmlinux"), b"k").unwrap();
        std::fs::write(share.join("initramfs.cpio"), b"i").unwrap();
        let err = dirs.guest_files_for(foreign).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "no guest kernel found: this image is {name} and needs the {name} guest: build it with \
                 `cargo xtask guest --arch {name}`, install one with \
                 `container system kernel set --arch {name} --binary PATH` or put one at {}",
                share.join(name).join("vmlinux").display()
            )
        );
        std::fs::create_dir_all(share.join(name)).unwrap();
        std::fs::write(share.join(name).join("vmlinux"), b"k").unwrap();
        std::fs::write(share.join(name).join("initramfs.cpio"), b"i").unwrap();
        assert_eq!(
            dirs.guest_files_for(foreign).unwrap(),
            (
                share.join(name).join("vmlinux"),
                share.join(name).join("initramfs.cpio")
            )
        );
        // What `system kernel set --arch` installed wins, with its own initramfs.
        std::fs::create_dir_all(&dirs.kernels).unwrap();
        std::fs::write(dirs.kernels.join(kernel_name(name)), b"own").unwrap();
        std::fs::write(dirs.kernels.join(format!("initramfs-{name}.cpio")), b"own").unwrap();
        assert_eq!(
            dirs.guest_files_for(foreign).unwrap(),
            (
                dirs.kernels.join(kernel_name(name)),
                dirs.kernels.join(format!("initramfs-{name}.cpio"))
            )
        );
        assert_eq!(dirs.guest_files().unwrap().0, share.join("vmlinux"));
    }

    #[test]
    fn lookup_is_the_app_root_then_the_share_dir_only() {
        let t = tempfile::tempdir().unwrap();
        // A kernel in a directory above the executable's must not be found.
        let exe = t.path().join("home/alice/bin/container-apiserver");
        std::fs::create_dir_all(t.path().join("home/guest")).unwrap();
        std::fs::write(t.path().join("home/guest/vmlinux"), b"k").unwrap();
        std::fs::write(t.path().join("home/guest/initramfs.cpio"), b"i").unwrap();
        let share = share_dir_of(&exe).unwrap();
        assert_eq!(share, t.path().join("home/alice/share/container"));
        let dirs = GuestDirs {
            kernels: t.path().join("root/kernels"),
            share: Some(share.clone()),
        };
        let err = dirs.guest_files().unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "no guest kernel found: install one with `container system kernel set --binary PATH` or put one at {}",
                share.join("vmlinux").display()
            )
        );
        std::fs::create_dir_all(&share).unwrap();
        std::fs::write(share.join("vmlinux"), b"k").unwrap();
        std::fs::write(share.join("initramfs.cpio"), b"i").unwrap();
        assert_eq!(
            dirs.guest_files().unwrap(),
            (share.join("vmlinux"), share.join("initramfs.cpio"))
        );
        // The app root's own kernel wins over the installation's.
        std::fs::create_dir_all(&dirs.kernels).unwrap();
        let own = dirs.kernels.join(kernel_name(host_arch()));
        std::fs::write(&own, b"own").unwrap();
        assert_eq!(dirs.guest_files().unwrap().0, own);
    }
}
