//! `cargo xtask deps`: every host dependency, installed idempotently.
//!
//! On Debian: apt packages (only the missing ones, so a warm machine does no apt work) and the
//! vhost-user helpers that Debian does not package, `cargo install`ed into `<cache>/tools`.
//! On macOS: checks the prerequisites and says what is missing.

use crate::paths::tools_bin;
use crate::run::{output, run, step};
use anyhow::{Result, bail};
use std::process::Command;

/// Debian packages and why each is needed.
const APT_PACKAGES: &[(&str, &str)] = &[
    ("qemu-system-x86", "the Linux VMM backend"),
    ("qemu-system-arm", "qemu-system-aarch64: arm64 guests"),
    (
        "gcc-aarch64-linux-gnu",
        "cross-building the arm64 guest kernel",
    ),
    (
        "mmdebstrap",
        "the Debian sid chroot whose rustc builds the arm64 vminitd",
    ),
    (
        "qemu-user-static",
        "running arm64 test binaries of the sid chroot on this host",
    ),
    (crate::kernel::SOURCE_PACKAGE, "guest kernel source"),
    ("bc", "kernel build"),
    ("bison", "kernel build"),
    ("flex", "kernel build"),
    ("libelf-dev", "kernel build"),
    ("build-essential", "kernel build"),
    ("cpio", "kernel build"),
    ("xz-utils", "kernel source tarball"),
    ("e2fsprogs", "e2fsck/debugfs: the ext4 test oracle"),
    (
        "docker-registry",
        "the real distribution v2 registry for tests",
    ),
    ("apache2-utils", "htpasswd for the auth registry"),
    ("busybox-static", "the busybox test image"),
    ("skopeo", "docker-archive fixtures for load tests"),
    ("umoci", "OCI layout inspection in tests"),
    ("libseccomp-dev", "building virtiofsd"),
    ("libcap-ng-dev", "building virtiofsd"),
    ("iproute2", "network namespaces in network tests"),
    ("nftables", "NAT rules for container networks"),
    ("curl", "registry health checks"),
    ("tmux", "driving interactive terminal sessions in tests"),
    (
        "python3-pytest",
        "the docker-py suite of the Docker API tests",
    ),
];

/// Helpers built from crates.io: (crate, version, binary).
const CARGO_TOOLS: &[(&str, &str, &str)] = &[
    ("vhost-device-vsock", "0.3.0", "vhost-device-vsock"),
    ("virtiofsd", "1.14.0", "virtiofsd"),
];

pub fn install() -> Result<()> {
    if cfg!(target_os = "macos") {
        return check_macos();
    }
    install_apt()?;
    install_cargo_tools()?;
    install_nextest()
}

/// The test runner: preinstalled on this project's machines, installed here otherwise.
fn install_nextest() -> Result<()> {
    let found = Command::new(env!("CARGO"))
        .args(["nextest", "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        step("cargo install cargo-nextest (once)");
        run(Command::new(env!("CARGO")).args(["install", "--locked", "--quiet", "cargo-nextest"]))?;
    }
    Ok(())
}

fn install_apt() -> Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| !apt_installed(name))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    step(&format!("installing apt packages: {}", missing.join(" ")));
    if !crate::run::have("apt-get") {
        bail!(
            "apt-get not found: install these packages by hand: {}",
            missing.join(" ")
        );
    }
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing))
}

fn apt_installed(name: &str) -> bool {
    output(Command::new("dpkg-query").args(["-W", "-f=${Status}", name]))
        .map(|s| s.contains("install ok installed"))
        .unwrap_or(false)
}

fn install_cargo_tools() -> Result<()> {
    let root = tools_bin()
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(tools_bin);
    // cargo records what it installed under --root; trust that record and the binary.
    let record = std::fs::read_to_string(root.join(".crates.toml")).unwrap_or_default();
    for (krate, version, bin) in CARGO_TOOLS {
        let installed = record.contains(&format!("\"{krate} {version} "));
        if installed && tools_bin().join(bin).exists() {
            continue;
        }
        step(&format!(
            "cargo install {krate} {version} (a few minutes, once)"
        ));
        run(Command::new(env!("CARGO"))
            .args([
                "install",
                "--locked",
                "--quiet",
                krate,
                "--version",
                version,
                "--root",
            ])
            .arg(&root))?;
    }
    Ok(())
}

fn check_macos() -> Result<()> {
    let mut missing = Vec::new();
    for (tool, why) in [
        (
            "e2fsck",
            "e2fsprogs (brew install e2fsprogs), the ext4 test oracle",
        ),
        (
            "skopeo",
            "skopeo (brew install skopeo), docker-archive fixtures",
        ),
        (
            "codesign",
            "Xcode command line tools, to sign the virtualization entitlement",
        ),
    ] {
        if !crate::run::have(tool) {
            missing.push(format!("{tool}: {why}"));
        }
    }
    if missing.is_empty() {
        println!("all macOS prerequisites found");
        Ok(())
    } else {
        bail!("missing prerequisites:\n  {}", missing.join("\n  "))
    }
}
