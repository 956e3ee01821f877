//! The baseline every VM benchmark divides by: a bare QEMU boot of the same kernel with a
//! trivial init that powers off at once (`boot_bench --bare`). Shared by `bench` and
//! `bench_pool`, so neither names the other.

use crate::paths::repo_root;
use anyhow::{Context, Result};
use std::process::Command;

/// The median bare boot, as boot_bench measures it (`--bare N` prints `bare_median_seconds=X`),
/// built in release mode or not.
pub fn bare_boot_median(guest: &crate::guest::Guest, runs: u32, release: bool) -> Result<f64> {
    let out = crate::run::output(
        Command::new(env!("CARGO"))
            .current_dir(repo_root())
            .args(["run", "--quiet"])
            .args(release.then_some("--release"))
            .args([
                "-p",
                "vmm-qemu",
                "--features",
                "testing",
                "--example",
                "boot_bench",
                "--",
                "--bare",
            ])
            .arg(runs.max(1).to_string())
            .env("CONTAINER_KERNEL", &guest.kernel)
            .env("CONTAINER_INITRD", &guest.initramfs),
    )?;
    out.lines()
        .find_map(|l| l.strip_prefix("bare_median_seconds="))
        .and_then(|v| v.trim().parse().ok())
        .context("boot_bench --bare printed no bare_median_seconds line")
}
