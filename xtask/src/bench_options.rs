//! The start-latency options of issue 16 that are measured apart from a whole `run`, each
//! printed against the bare boot of the same run (`bench pool` calls [`print`]):
//! - the batched PrepareContainer rpc: the same set-up as separate calls and as one batch,
//!   in one VM (crates/vmm-qemu/examples/prepare_bench.rs);
//! - the writable-layer template: formatting a layer against cloning a formatted one
//!   (crates/ext4/examples/layer_template.rs), in the target dir's filesystem.

use crate::paths::{repo_root, target_dir};
use anyhow::{Context, Result};
use std::process::Command;

/// `key=value` words of an example's output line.
pub(crate) fn field(out: &str, key: &str) -> Option<String> {
    out.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .map(str::to_owned)
}

pub(crate) fn number(out: &str, key: &str) -> Result<f64> {
    field(out, key)
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no {key}= in {out:?}"))
}

pub(crate) fn example(
    package: &str,
    name: &str,
    features: &[&str],
    args: &[String],
    release: bool,
    guest: &crate::guest::Guest,
) -> Result<String> {
    crate::run::output(
        Command::new(env!("CARGO"))
            .current_dir(repo_root())
            .args(["run", "--quiet"])
            .args(release.then_some("--release"))
            .args(["-p", package])
            .args(features.iter().flat_map(|f| ["--features", f]))
            .args(["--example", name, "--"])
            .args(args)
            .env("CONTAINER_KERNEL", &guest.kernel)
            .env("CONTAINER_INITRD", &guest.initramfs),
    )
}

/// Measures both options and prints them with `bare` (seconds) as the baseline.
pub fn print(guest: &crate::guest::Guest, runs: u32, release: bool, bare: f64) -> Result<()> {
    let rounds = runs.max(3).to_string();
    let out = example(
        "vmm-qemu",
        "prepare_bench",
        &["testing"],
        std::slice::from_ref(&rounds),
        release,
        guest,
    )?;
    let (separate, batch) = (number(&out, "separate_ms")?, number(&out, "batch_ms")?);
    let bare_ms = bare * 1000.0;
    println!(
        "  set-up in the guest, separate calls  {:>7.1} ms  ratio {:>5.3} of the bare boot",
        separate,
        separate / bare_ms
    );
    println!(
        "  set-up in the guest, one batch (kept) {:>6.1} ms  ratio {:>5.3}   (batch / separate {:.2})",
        batch,
        batch / bare_ms,
        batch / separate
    );
    let dir = target_dir();
    std::fs::create_dir_all(&dir)?;
    let out = example(
        "ext4",
        "layer_template",
        &[],
        &[dir.display().to_string(), "16".into(), rounds],
        release,
        guest,
    )?;
    let (format, clone) = (number(&out, "format_ms")?, number(&out, "clone_ms")?);
    let kind = field(&out, "clone").unwrap_or_default();
    println!(
        "  16 GiB writable layer, formatted     {:>7.1} ms  ratio {:>5.3}",
        format,
        format / bare_ms
    );
    println!(
        "  16 GiB writable layer, cloned (kept) {:>7.1} ms  ratio {:>5.3}   ({kind}; clone / format {:.2})",
        clone,
        clone / bare_ms,
        clone / format
    );
    Ok(())
}
