//! `cargo xtask quickstart`: the README's first command. From a fresh clone it installs what
//! the host needs, builds the guest and the bundled images, builds the product, starts the
//! daemon, loads the bundled busybox image (offline) and runs a container that prints from
//! inside its own VM.

use crate::paths::{repo_root, target_dir};
use crate::run::{run, step};
use crate::{deps, guest, images};
use anyhow::{Result, bail};
use std::path::PathBuf;
use std::process::Command;

/// The product's binaries and the packages that build them.
const PRODUCT: &[(&str, &str)] = &[
    ("cli", "container"),
    ("apiserver", "container-apiserver"),
    ("runtime", "container-runtime"),
];

pub fn run_quickstart() -> Result<()> {
    deps::install()?;
    guest::build(crate::arch::Arch::host())?.print();
    let images = images::build()?;
    let bin = build_product()?;
    let container = || {
        let mut cmd = Command::new(bin.join("container"));
        // QEMU user-mode networking: the quick start never adds bridges or firewall rules
        // to the machine it runs on (docs/networking.md shows bridge mode). The daemon in
        // target/release/ boots the guest `guest::build` published in target/share/container/.
        cmd.env("CONTAINER_NETWORK_MODE", "user");
        cmd
    };
    step("container system start");
    run(container().args(["system", "start"]))?;
    step("container image load -i busybox.docker.tar (the bundled image, offline)");
    run(container()
        .args(["image", "load", "-i"])
        .arg(images.join("busybox.docker.tar")))?;
    step("container run --rm busybox (a VM boots, runs the command, and is gone)");
    let status = container()
        .args(["run", "--rm", "busybox", "sh", "-c"])
        .arg("echo \"hello from inside a VM: $(uname -sr), $(nproc) CPU, hostname $(hostname)\"")
        .status()?;
    if !status.success() {
        bail!("container run failed with {status}");
    }
    println!();
    println!("The daemon is still running. Try:");
    println!("  export PATH={}:$PATH", bin.display());
    println!("  container run -it --rm busybox sh");
    println!("  container system stop");
    Ok(())
}

/// Build the product's binaries in release mode; returns the directory holding them.
pub fn build_product() -> Result<PathBuf> {
    step("building container, container-apiserver and container-runtime (release)");
    let mut build = Command::new(env!("CARGO"));
    build
        .current_dir(repo_root())
        .args(["build", "--quiet", "--release"]);
    for (package, _) in PRODUCT {
        build.args(["-p", package]);
    }
    run(&mut build)?;
    let bin = target_dir().join("release");
    for (_, binary) in PRODUCT {
        if !bin.join(binary).exists() {
            bail!("{} was not built", bin.join(binary).display());
        }
    }
    Ok(bin)
}
