//! `cargo xtask kernel`: the guest kernel, built from Debian's `linux-source-6.1` package.
//!
//! The source is whatever point release of `linux-source-6.1` Debian serves: apt has already
//! verified the package's signature, and Debian ships a new point release every few weeks, so
//! nothing here pins the tarball. Instead the package version and the tarball's sha256 go into
//! the cache key and into the kernel's build info, so a new point release rebuilds the kernel.
//! The build starts from `tinyconfig`, merges the fragment `kernel/config-<arch>`, and checks
//! that every option the fragment asks for survived `olddefconfig` (Kconfig drops options
//! whose dependencies are missing, silently). Results are cached under `<cache>/kernel/<key>/`
//! where the key hashes the fragment, the package version, the source checksum and this
//! recipe's version (one per architecture); `target/guest/vmlinux` links to the result, and
//! `target/guest/vmlinux.info.json` to its build info (which `container system version`
//! shows).
//!
//! `--arch arm64` cross-builds the same source with Debian's `gcc-aarch64-linux-gnu` into
//! `target/guest/arm64/`. Its `vmlinux` is the arm64 boot `Image` (uncompressed, what QEMU's
//! `virt` machine and Virtualization.framework's `VZLinuxBootLoader` both load); the name is
//! kept so that every architecture's directory holds the same three files.

use crate::arch::Arch;
use crate::paths::{self, cache_dir, repo_root};
use crate::run::{output, run, step};
use anyhow::{Context, Result, bail};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian's source package and the tarball it installs.
pub const SOURCE_PACKAGE: &str = "linux-source-6.1";
const TARBALL: &str = "/usr/src/linux-source-6.1.tar.xz";

/// What differs per architecture in the recipe below.
struct Recipe {
    /// Bump when the build steps change in a way that changes the output.
    version: &'static str,
    /// The make targets.
    targets: &'static [&'static str],
    /// (file in the build tree, name in the cache and in `target/guest[/<arch>]/`).
    outputs: &'static [(&'static str, &'static str)],
    /// How long the build takes on this project's 2-core machines, for the log.
    duration: &'static str,
}

fn recipe(arch: Arch) -> Recipe {
    match arch {
        Arch::X86_64 => Recipe {
            version: "1",
            targets: &["vmlinux", "bzImage"],
            // vmlinux is PVH-bootable by QEMU's microvm; bzImage for everything else.
            outputs: &[("vmlinux", "vmlinux"), ("arch/x86/boot/bzImage", "bzImage")],
            duration: "about 7-11 minutes on 2 cores",
        },
        Arch::Arm64 => Recipe {
            version: "arm64-1",
            targets: &["Image"],
            outputs: &[("arch/arm64/boot/Image", "vmlinux")],
            duration: "about 20-40 minutes on 2 cores",
        },
    }
}

/// Build (or reuse) the kernel; returns the path of the uncompressed kernel the VMM boots
/// (`vmlinux`: PVH-bootable on x86_64, the boot `Image` on arm64).
pub fn build(arch: Arch) -> Result<PathBuf> {
    let recipe = recipe(arch);
    let fragment_path = repo_root().join(format!("kernel/config-{}", arch.kernel_name()));
    let fragment = fs::read(&fragment_path)
        .with_context(|| format!("cannot read {}", fragment_path.display()))?;
    if !Path::new(TARBALL).exists() {
        bail!("{TARBALL} is missing: run `cargo xtask deps` (it installs {SOURCE_PACKAGE})");
    }
    let source = Source::installed()?;
    let key = &paths::sha256_bytes(&[
        &fragment,
        source.package_version.as_bytes(),
        source.tarball_sha256.as_bytes(),
        recipe.version.as_bytes(),
    ])[..16];
    let out = cache_dir().join("kernel").join(key);
    let vmlinux = out.join("vmlinux");
    if !vmlinux.exists() || !out.join(INFO_FILE).exists() {
        // Two runs at once (two worktrees sharing the cache) must not build into the same
        // tree: the second waits for the first, then finds its result.
        fs::create_dir_all(cache_dir().join("kernel"))?;
        let lock_path = cache_dir().join("kernel").join(format!("{key}.lock"));
        let lock = fs::File::create(&lock_path)
            .with_context(|| format!("cannot create {}", lock_path.display()))?;
        if lock.try_lock().is_err() {
            step("waiting for another build of this kernel to finish");
            lock.lock()
                .with_context(|| format!("cannot lock {}", lock_path.display()))?;
        }
        if !vmlinux.exists() || !out.join(INFO_FILE).exists() {
            compile(arch, &recipe, &fragment_path, &source, &out)?;
        }
    }
    let boot = boot_kernel(&vmlinux)?;
    let published = arch.guest_out_dir();
    for (_, name) in recipe.outputs {
        let target = if *name == "vmlinux" {
            boot.clone()
        } else {
            out.join(name)
        };
        paths::symlink_force(&target, &published.join(name))?;
    }
    paths::symlink_force(&out.join(INFO_FILE), &published.join(INFO_FILE))?;
    Ok(boot)
}

/// The kernel file VMs boot: an ELF `vmlinux` without its symbol table, beside the built one
/// in the cache (`vmlinux.stripped`, made once), or the built file itself when it is no ELF
/// (arm64's `Image`). QEMU copies an ELF kernel's symbol table into its heap at load, for
/// its disassembler: 1.5 MiB of every VM's host memory (docs/benchmarks.md). The kernel's
/// own symbols (kallsyms) are inside its image and stay; the cache keeps the full `vmlinux`
/// for debuggers.
fn boot_kernel(vmlinux: &Path) -> Result<PathBuf> {
    let mut magic = [0u8; 4];
    fs::File::open(vmlinux)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .with_context(|| format!("cannot read {}", vmlinux.display()))?;
    if magic != *b"\x7fELF" {
        return Ok(vmlinux.to_path_buf());
    }
    let stripped = vmlinux.with_extension("stripped");
    if !stripped.exists() {
        let tmp = vmlinux.with_extension(format!("stripped.{}.tmp", std::process::id()));
        run(Command::new("objcopy")
            .arg("--strip-all")
            .arg(vmlinux)
            .arg(&tmp))?;
        fs::rename(&tmp, &stripped)?;
    }
    Ok(stripped)
}

/// The kernel's build info beside it: `<kernel file>.info.json`, read by the daemon.
pub const INFO_FILE: &str = "vmlinux.info.json";

/// The installed kernel source: which point release, and the tarball's content.
struct Source {
    package_version: String,
    tarball_sha256: String,
}

impl Source {
    fn installed() -> Result<Source> {
        let package_version =
            output(Command::new("dpkg-query").args(["-W", "-f=${Version}", SOURCE_PACKAGE]))
                .with_context(|| format!("cannot read the version of {SOURCE_PACKAGE}"))?
                .trim()
                .to_string();
        if package_version.is_empty() {
            bail!("{SOURCE_PACKAGE} is not installed: run `cargo xtask deps`");
        }
        step(&format!(
            "hashing {TARBALL} ({SOURCE_PACKAGE} {package_version})"
        ));
        let tarball_sha256 = paths::sha256_file(Path::new(TARBALL))?;
        Ok(Source {
            package_version,
            tarball_sha256,
        })
    }

    /// The build info as JSON: what the kernel was built from.
    /// The daemon reads it strictly (crates/apiserver/src/kernel.rs): the architecture shows
    /// in the recipe version rather than in a field of its own.
    fn info(&self, recipe: &Recipe, fragment: &[u8]) -> String {
        let object = serde_json::json!({
            "source_package": SOURCE_PACKAGE,
            "package_version": self.package_version,
            "tarball_sha256": self.tarball_sha256,
            "config_sha256": paths::sha256_bytes(&[fragment]),
            "recipe": recipe.version,
        });
        format!("{object:#}\n")
    }
}

fn compile(
    arch: Arch,
    recipe: &Recipe,
    fragment: &Path,
    source: &Source,
    out: &Path,
) -> Result<()> {
    let cross = (arch != Arch::host()).then(|| arch.gnu_prefix());
    if let Some(prefix) = cross
        && !crate::run::have(&format!("{prefix}gcc"))
    {
        bail!("{prefix}gcc is missing: run `cargo xtask deps` (it installs the cross compiler)");
    }
    let kernel_cache = cache_dir().join("kernel");
    let src = kernel_cache.join(format!("src-{}", &source.tarball_sha256[..12]));
    if !src.join("Makefile").exists() {
        // An older point release's tree is never used again: it costs 1.4 GB.
        for old in fs::read_dir(&kernel_cache).into_iter().flatten().flatten() {
            if old.file_name().to_string_lossy().starts_with("src-") {
                let _ = fs::remove_dir_all(old.path());
            }
        }
        step("extracting the kernel source");
        let tmp = kernel_cache.join("src.tmp");
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp)?;
        run(Command::new("tar")
            .args(["-xf", TARBALL, "--strip-components=1", "-C"])
            .arg(&tmp))?;
        let _ = fs::remove_dir_all(&src);
        fs::rename(&tmp, &src)?;
    }
    let build = kernel_cache.join(format!(
        "build-{}",
        out.file_name().and_then(|n| n.to_str()).unwrap_or("x")
    ));
    fs::create_dir_all(&build)?;
    let make = |args: &[&str]| -> Result<()> {
        let mut cmd = Command::new("make");
        cmd.arg("-C")
            .arg(&src)
            .arg(format!("O={}", build.display()))
            .arg(format!("ARCH={}", arch.kernel_name()));
        if let Some(prefix) = cross {
            cmd.arg(format!("CROSS_COMPILE={prefix}"));
        }
        run(cmd.args(args))
    };
    step(&format!(
        "configuring the {} kernel (tinyconfig + kernel/config-{})",
        arch.kernel_name(),
        arch.kernel_name()
    ));
    make(&["-s", "tinyconfig"])?;
    // merge_config.sh narrates every override; keep it for failures only.
    output(
        Command::new(src.join("scripts/kconfig/merge_config.sh"))
            .current_dir(&build)
            .args(["-m", "-O"])
            .arg(&build)
            .arg(build.join(".config"))
            .arg(fragment),
    )?;
    make(&["-s", "olddefconfig"])?;
    check_config(fragment, &build.join(".config"))?;
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    step(&format!(
        "building the {} kernel with {jobs} jobs ({})",
        arch.kernel_name(),
        recipe.duration
    ));
    let jobs = format!("-j{jobs}");
    let mut args = vec!["-s", jobs.as_str()];
    args.extend_from_slice(recipe.targets);
    make(&args)?;
    let tmp = out.with_extension("tmp");
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp)?;
    for (built, name) in recipe.outputs {
        fs::copy(build.join(built), tmp.join(name))
            .with_context(|| format!("cannot copy the built {built}"))?;
    }
    fs::copy(build.join(".config"), tmp.join("config"))?;
    fs::write(
        tmp.join(INFO_FILE),
        source.info(recipe, &fs::read(fragment)?),
    )?;
    let _ = fs::remove_dir_all(out);
    fs::rename(&tmp, out)?;
    // The object tree is large and only useful for incremental rebuilds of this same key.
    let _ = fs::remove_dir_all(&build);
    Ok(())
}

/// Every `CONFIG_X=y` of the fragment must be `=y` in the result, and every
/// `# CONFIG_X is not set` must not be `=y`: Kconfig silently drops what it cannot satisfy.
fn check_config(fragment_path: &Path, config: &Path) -> Result<()> {
    let fragment = fs::read_to_string(fragment_path)?;
    let config = fs::read_to_string(config)?;
    let enabled: std::collections::HashSet<&str> = config
        .lines()
        .filter_map(|l| l.strip_suffix("=y"))
        .collect();
    let mut mismatches = Vec::new();
    for line in fragment.lines() {
        if let Some(name) = line.strip_suffix("=y") {
            if !enabled.contains(name) {
                mismatches.push(format!("{name} asked =y but is not set"));
            }
        } else if let Some(rest) = line.strip_prefix("# ")
            && let Some(name) = rest.strip_suffix(" is not set")
            && enabled.contains(name)
        {
            mismatches.push(format!("{name} asked off but is =y"));
        }
    }
    if !mismatches.is_empty() {
        bail!(
            "{} does not hold after olddefconfig (missing dependencies?): {}",
            fragment_path.display(),
            mismatches.join("; ")
        );
    }
    Ok(())
}
