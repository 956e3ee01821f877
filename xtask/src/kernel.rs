//! `cargo xtask kernel`: the guest kernel, built from Debian's `linux-source-6.1` package.
//!
//! The source tarball is pinned by checksum. The build starts from `tinyconfig`, merges the
//! fragment `kernel/config-x86_64`, and checks that every option the fragment asks for
//! survived `olddefconfig` (Kconfig drops options whose dependencies are missing, silently).
//! Results are cached under `<cache>/kernel/<key>/` where the key hashes the fragment, the
//! source checksum and this recipe's version; `target/guest/vmlinux` links to the result.

use crate::paths::{self, cache_dir, guest_out_dir, repo_root};
use crate::run::{output, run, step};
use anyhow::{Context, Result, bail};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian's source package and the tarball it installs.
pub const SOURCE_PACKAGE: &str = "linux-source-6.1";
const TARBALL: &str = "/usr/src/linux-source-6.1.tar.xz";
/// sha256 of the tarball from linux-source-6.1 6.1.192-2 (Debian 12). A new Debian point
/// release changes it: then check the new source boots and update this pin.
const TARBALL_SHA256: &str = "4d415b3d364834fd818270e88813e90323bbfce4f519a0e6bd4940ddcd7df693";
/// Bump when the build steps below change in a way that changes the output.
const RECIPE_VERSION: &str = "1";

/// Build (or reuse) the kernel; returns the path of the uncompressed, PVH-bootable `vmlinux`.
pub fn build() -> Result<PathBuf> {
    let fragment_path = repo_root().join("kernel/config-x86_64");
    let fragment = fs::read(&fragment_path)
        .with_context(|| format!("cannot read {}", fragment_path.display()))?;
    let key = &paths::sha256_bytes(&[
        &fragment,
        TARBALL_SHA256.as_bytes(),
        RECIPE_VERSION.as_bytes(),
    ])[..16];
    let out = cache_dir().join("kernel").join(key);
    let vmlinux = out.join("vmlinux");
    if !vmlinux.exists() {
        compile(&fragment_path, &out)?;
    }
    paths::symlink_force(&vmlinux, &guest_out_dir().join("vmlinux"))?;
    paths::symlink_force(&out.join("bzImage"), &guest_out_dir().join("bzImage"))?;
    Ok(vmlinux)
}

fn compile(fragment: &Path, out: &Path) -> Result<()> {
    if !Path::new(TARBALL).exists() {
        bail!("{TARBALL} is missing: run `cargo xtask deps` (it installs {SOURCE_PACKAGE})");
    }
    step("checking the kernel source checksum");
    let sum = paths::sha256_file(Path::new(TARBALL))?;
    if sum != TARBALL_SHA256 {
        bail!(
            "{TARBALL} has sha256 {sum}, expected {TARBALL_SHA256}: Debian updated {SOURCE_PACKAGE}; \
             verify the new source and update TARBALL_SHA256 in xtask/src/kernel.rs"
        );
    }
    let kernel_cache = cache_dir().join("kernel");
    let src = kernel_cache.join(format!("src-{}", &TARBALL_SHA256[..12]));
    if !src.join("Makefile").exists() {
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
        run(Command::new("make")
            .arg("-C")
            .arg(&src)
            .arg(format!("O={}", build.display()))
            .arg("ARCH=x86_64")
            .args(args))
    };
    step("configuring the kernel (tinyconfig + kernel/config-x86_64)");
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
        "building the kernel with {jobs} jobs (about 7-11 minutes on 2 cores)"
    ));
    make(&["-s", &format!("-j{jobs}"), "vmlinux", "bzImage"])?;
    let tmp = out.with_extension("tmp");
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp)?;
    fs::copy(build.join("vmlinux"), tmp.join("vmlinux"))?;
    fs::copy(build.join("arch/x86/boot/bzImage"), tmp.join("bzImage"))?;
    fs::copy(build.join(".config"), tmp.join("config"))?;
    let _ = fs::remove_dir_all(out);
    fs::rename(&tmp, out)?;
    // The object tree is large and only useful for incremental rebuilds of this same key.
    let _ = fs::remove_dir_all(&build);
    Ok(())
}

/// Every `CONFIG_X=y` of the fragment must be `=y` in the result, and every
/// `# CONFIG_X is not set` must not be `=y`: Kconfig silently drops what it cannot satisfy.
fn check_config(fragment: &Path, config: &Path) -> Result<()> {
    let fragment = fs::read_to_string(fragment)?;
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
            "kernel/config-x86_64 does not hold after olddefconfig (missing dependencies?): {}",
            mismatches.join("; ")
        );
    }
    Ok(())
}
