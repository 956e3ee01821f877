//! `cargo xtask bench`: speed goals as ratios against baselines measured in the same run.
//!
//! - `unpack`: the `manyfiles` layer (112,920 files) written to one ext4 image by our writer,
//!   against GNU `tar -x` of the same layer to a directory, and against `tar -x` followed by
//!   `mkfs.ext4 -d` (the way most tools build an ext4 from a layer). Goal: ours <= 0.5x tar.
//! - `boot`: delegated to `crates/vmm-qemu/examples/boot_bench.rs`, which boots real VMs.
//! - `daemon`: `container ls -a` with 50 containers (goal <= 30 ms), and `container run --rm
//!   busybox true` end to end against a bare boot of the same kernel (goal <= 1.25x).
//! - `docker`: the Docker API's cost on the same daemon: `docker run --rm busybox true`
//!   through the daemon's Docker socket against `container run --rm busybox true` (goal
//!   <= 1.05x), and `docker ps` with 50 containers (goal <= 30 ms).
//!
//! Each figure is the best of `--runs` runs (default 3), so a noisy neighbour inflates no
//! ratio. Record results in docs/benchmarks.md.

use crate::bench_daemon::BenchDaemon;
use crate::paths::{cache_dir, repo_root, target_dir};
use crate::run::{run, step};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    All,
    Unpack,
    Boot,
    Daemon,
    /// Issue 16: cold and pooled runs, memory per idle container, fifty at once.
    Pool,
    Docker,
    /// Issue 16's fifty idle containers alone (`ls`, `stop --all`, memory, run latency).
    Fifty,
    /// Issue 16: host memory of idle containers against their guests' own use.
    Mem,
    /// Issue 14: `container build` with RUN steps in the builder VM.
    Build,
}

/// Where the product binaries come from: a release build, or a directory given with
/// `--bin-dir` (for a machine where a release build is not wanted; say so with the figures).
pub fn run_bench(which: Which, runs: u32, bin_dir: Option<PathBuf>) -> Result<()> {
    let binaries = || -> Result<PathBuf> {
        match &bin_dir {
            Some(dir) => Ok(dir.clone()),
            None => {
                // A daemon boots the guest published beside its binaries' target dir.
                crate::guest::build(crate::arch::Arch::host())?;
                crate::quickstart::build_product()
            }
        }
    };
    if matches!(which, Which::All | Which::Unpack) {
        unpack(runs)?;
    }
    if matches!(which, Which::All | Which::Boot) {
        boot()?;
    }
    if matches!(which, Which::All | Which::Daemon) {
        daemon(runs, &binaries()?)?;
    }
    if matches!(which, Which::All | Which::Docker) {
        docker(runs, &binaries()?)?;
    }
    if matches!(which, Which::All | Which::Pool) {
        crate::bench_pool::pool(runs)?;
    }
    if which == Which::Fifty {
        crate::bench_pool::fifty(runs, bin_dir.clone())?;
    }
    if matches!(which, Which::All | Which::Mem) {
        crate::bench_mem::mem(runs, bin_dir.clone())?;
    }
    if matches!(which, Which::All | Which::Build) {
        crate::bench_build::build(runs, &binaries()?, bin_dir.is_none())?;
    }
    Ok(())
}

fn cargo_release(args: &[&str]) -> Result<()> {
    run(Command::new(env!("CARGO"))
        .current_dir(repo_root())
        .args(["build", "--quiet", "--release"])
        .args(args))
}

/// The best wall time of `runs` runs of `f`, with `reset` run untimed before each.
fn best_of(
    runs: u32,
    mut reset: impl FnMut() -> Result<()>,
    mut f: impl FnMut() -> Result<()>,
) -> Result<Duration> {
    let mut best = Duration::MAX;
    for _ in 0..runs.max(1) {
        reset()?;
        sync();
        let start = Instant::now();
        f()?;
        sync();
        best = best.min(start.elapsed());
    }
    Ok(best)
}

/// Flush dirty pages so one run's writeback is not billed to the next.
fn sync() {
    let _ = Command::new("sync").status();
}

fn manyfiles_layer() -> Result<PathBuf> {
    let images = crate::images::build()?;
    let layout = images.join("oci/manyfiles");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json"))?)?;
    let blob = |digest: &str| {
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let manifest_digest = index["manifests"][0]["digest"]
        .as_str()
        .context("index without manifest")?;
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(manifest_digest))?)?;
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .context("manifest without layers")?;
    Ok(blob(layer))
}

fn unpack(runs: u32) -> Result<()> {
    step("building the ext4 writer (release)");
    cargo_release(&["-p", "ext4", "--example", "layers2ext4"])?;
    let ours_bin = target_dir().join("release/examples/layers2ext4");
    let layer = manyfiles_layer()?;
    let work = cache_dir().join("bench");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let image = work.join("ours.ext4");
    let tree = work.join("tree");
    let mkfs_image = work.join("mkfs.ext4");
    let clear = |p: &Path| -> Result<()> {
        if p.is_dir() {
            std::fs::remove_dir_all(p)?;
        } else if p.exists() {
            std::fs::remove_file(p)?;
        }
        Ok(())
    };
    step(&format!(
        "unpack benchmark on {} ({runs} runs each)",
        layer.display()
    ));
    let ours = best_of(
        runs,
        || clear(&image),
        || {
            run(Command::new(&ours_bin)
                .arg(&image)
                .arg(&layer)
                .stdout(std::process::Stdio::null()))
        },
    )?;
    let tar = best_of(
        runs,
        || {
            clear(&tree)?;
            Ok(std::fs::create_dir_all(&tree)?)
        },
        || {
            run(Command::new("tar")
                .arg("-xzf")
                .arg(&layer)
                .arg("-C")
                .arg(&tree))
        },
    )?;
    // mkfs.ext4 -d on the tree tar left behind; size it as generously as our writer's output.
    let tree_bytes = dir_size(&tree)?;
    let size_mib = (tree_bytes * 2 / (1 << 20)).max(256);
    let mkfs = best_of(
        runs,
        || clear(&mkfs_image),
        || {
            run(Command::new("mkfs.ext4")
                .args(["-q", "-F", "-N", "140000", "-d"])
                .arg(&tree)
                .arg(&mkfs_image)
                .arg(format!("{size_mib}M")))
        },
    )?;
    let s = |d: Duration| d.as_secs_f64();
    println!();
    println!("unpack of manyfiles (112,920 files), best of {runs}:");
    println!(
        "  ours (layer.tar.gz -> one ext4 image)     {:>7.2} s",
        s(ours)
    );
    println!(
        "  tar -xzf to a directory                   {:>7.2} s",
        s(tar)
    );
    println!(
        "  mkfs.ext4 -d of the extracted tree        {:>7.2} s",
        s(mkfs)
    );
    println!(
        "  tar -xzf + mkfs.ext4 -d                   {:>7.2} s",
        s(tar) + s(mkfs)
    );
    println!(
        "  ratio ours / tar -x                       {:>7.2}   (goal <= 0.50)",
        s(ours) / s(tar)
    );
    println!(
        "  ratio ours / mkfs.ext4 -d alone           {:>7.2}   (goal < 1.00)",
        s(ours) / s(mkfs)
    );
    println!(
        "  ratio ours / (tar -x + mkfs.ext4 -d)      {:>7.2}",
        s(ours) / (s(tar) + s(mkfs))
    );
    let fsck = Command::new("e2fsck").arg("-fn").arg(&image).output()?;
    if !fsck.status.success() {
        bail!(
            "e2fsck -fn rejected our image: {}",
            String::from_utf8_lossy(&fsck.stdout)
        );
    }
    println!("  e2fsck -fn of our image: clean");
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

fn dir_size(dir: &Path) -> Result<u64> {
    let out = crate::run::output(Command::new("du").args(["-sb"]).arg(dir))?;
    out.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .context("cannot read du output")
}

fn boot() -> Result<()> {
    let guest = crate::guest::build(crate::arch::Arch::host())?;
    step("boot benchmark (crates/vmm-qemu/examples/boot_bench.rs)");
    run(Command::new(env!("CARGO"))
        .current_dir(repo_root())
        .args([
            "run",
            "--quiet",
            "--release",
            "-p",
            "vmm-qemu",
            "--features",
            "testing",
            "--example",
            "boot_bench",
        ])
        .env("CONTAINER_KERNEL", &guest.kernel)
        .env("CONTAINER_INITRD", &guest.initramfs))
}

/// Wall times of `n` runs of `cmd()`.
fn timed(n: u32, mut cmd: impl FnMut() -> Command) -> Result<Vec<Duration>> {
    let mut times = Vec::new();
    for _ in 0..n.max(1) {
        let start = Instant::now();
        run(&mut cmd())?;
        times.push(start.elapsed());
    }
    times.sort();
    Ok(times)
}

fn median(v: &[Duration]) -> f64 {
    v[v.len() / 2].as_secs_f64()
}

fn p90(v: &[Duration]) -> f64 {
    v[v.len() * 9 / 10].as_secs_f64()
}

/// The daemon's figures: `container ls -a` with 50 containers, and `container run --rm
/// busybox true` against a bare boot of the same kernel (from boot_bench's bare mode).
fn daemon(runs: u32, bin: &Path) -> Result<()> {
    let guest = crate::guest::build(crate::arch::Arch::host())?;
    type Timings = (Vec<Duration>, Vec<Duration>, Vec<Duration>);
    let result = (|| -> Result<Timings> {
        let d = BenchDaemon::start("daemon-root", bin, 50)?;
        let ls = timed(30, || {
            let mut c = d.container();
            c.args(["ls", "-a"]);
            c
        })?;
        step(&format!(
            "container run --rm busybox true, {runs} runs after a warm-up"
        ));
        run(d.container().args(["run", "--rm", "busybox", "true"]))?;
        // Interleaved: the default VM (4 vCPUs, or the host's count if lower) and one of the
        // bare boot's shape (1 vCPU).
        let mut runs_taken = Vec::new();
        let mut one_cpu = Vec::new();
        for _ in 0..runs.max(1) {
            let start = Instant::now();
            run(d.container().args(["run", "--rm", "busybox", "true"]))?;
            runs_taken.push(start.elapsed());
            let start = Instant::now();
            run(d
                .container()
                .args(["run", "--rm", "--cpus", "1", "busybox", "true"]))?;
            one_cpu.push(start.elapsed());
        }
        runs_taken.sort();
        one_cpu.sort();
        Ok((ls, runs_taken, one_cpu))
    })();
    let (ls, runs_taken, one_cpu) = result?;
    step("bare boots of the same kernel (boot_bench --bare)");
    let bare = crate::bare_boot::bare_boot_median(&guest, runs, true)?;
    println!();
    println!("daemon, {} runs of each:", runs.max(1));
    println!(
        "  container ls -a, 50 containers: median {:>6.1} ms, p90 {:>6.1} ms   (goal <= 30 ms)",
        median(&ls) * 1e3,
        p90(&ls) * 1e3
    );
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    println!(
        "  container run --rm busybox true    {:>7.2} s (median, default {cpus} vCPUs)",
        median(&runs_taken)
    );
    println!(
        "  ... --cpus 1 (the bare boot's shape) {:>6.2} s (median)",
        median(&one_cpu)
    );
    println!(
        "  bare QEMU boot to power-off         {:>7.2} s (median, 1 vCPU)",
        bare
    );
    println!(
        "  ratio run / bare boot               {:>7.2}   (goal <= 1.25)",
        median(&runs_taken) / bare
    );
    println!(
        "  ratio run --cpus 1 / bare boot      {:>7.2}   (same VM shape)",
        median(&one_cpu) / bare
    );
    Ok(())
}

/// The Docker API's figures on one daemon: `docker run --rm busybox true` against `container
/// run --rm busybox true`, interleaved, and `docker ps -a` with 50 containers.
fn docker(runs: u32, bin: &Path) -> Result<()> {
    if !crate::run::have("docker") {
        bail!("the docker CLI is not on the PATH: the Docker benchmark drives it");
    }
    let d = BenchDaemon::start("docker-root", bin, 50)?;
    let ps = timed(30, || {
        let mut c = d.docker();
        c.args(["ps", "-a"]);
        c
    })?;
    // The same list through our CLI and gRPC: what the Docker layer and the docker CLI add.
    let ls = timed(30, || {
        let mut c = d.container();
        c.args(["ls", "-a"]);
        c
    })?;
    step(&format!(
        "docker run --rm busybox true against container run --rm busybox true, {runs} runs each after a warm-up"
    ));
    run(d.docker().args(["run", "--rm", "busybox", "true"]))?;
    run(d.container().args(["run", "--rm", "busybox", "true"]))?;
    let (mut via_docker, mut via_container) = (Vec::new(), Vec::new());
    for _ in 0..runs.max(1) {
        let start = Instant::now();
        run(d.docker().args(["run", "--rm", "busybox", "true"]))?;
        via_docker.push(start.elapsed());
        let start = Instant::now();
        run(d.container().args(["run", "--rm", "busybox", "true"]))?;
        via_container.push(start.elapsed());
    }
    drop(d);
    via_docker.sort();
    via_container.sort();
    println!();
    println!("docker API, {} runs of each:", runs.max(1));
    println!(
        "  docker ps -a, 50 containers:    median {:>6.1} ms, p90 {:>6.1} ms   (goal <= 30 ms)",
        median(&ps) * 1e3,
        p90(&ps) * 1e3
    );
    println!(
        "  container ls -a, same daemon:    median {:>6.1} ms, p90 {:>6.1} ms",
        median(&ls) * 1e3,
        p90(&ls) * 1e3
    );
    println!(
        "  docker run --rm busybox true      {:>7.2} s (median)",
        median(&via_docker)
    );
    println!(
        "  container run --rm busybox true   {:>7.2} s (median)",
        median(&via_container)
    );
    println!(
        "  ratio docker / container          {:>7.3}   (goal <= 1.05)",
        median(&via_docker) / median(&via_container)
    );
    Ok(())
}
