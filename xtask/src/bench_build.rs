//! `cargo xtask bench build`: `container build` with RUN steps in the builder VM.
//!
//! - A Dockerfile of 5 RUN steps, each `sleep 0.2` (the steps' own run time: 1 s in all),
//!   built cold (`--no-cache`) against a bare boot of the same kernel measured in the same
//!   run: the per-step overhead is (build - bare boot - 1 s) / 5. Goal: <= 0.3 s a step.
//! - The same build again, all CACHED: nothing boots. Goal: <= 1.5 s.
//! - A context of 10,000 small files (`COPY . /ctx/`, no VM), cold.
//! - Where a step's own cost in the guest goes, in one VM (crates/vmm-qemu/examples/
//!   step_bench.rs): its root and process in one batch, start, wait, delete.
//!
//! Each figure is the best of `--runs` runs. Record results in docs/benchmarks.md, with the
//! load (`uptime`) and which build of the binaries was measured.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::bench_daemon::BenchDaemon;
use crate::run::{run, step};

const STEPS: u32 = 5;
const STEP_SLEEP: f64 = 0.2;
/// Issue 14's goal for the overhead of one RUN step, in seconds.
const GOAL_PER_STEP: f64 = 0.3;

fn best(runs: u32, mut f: impl FnMut() -> Result<Duration>) -> Result<Duration> {
    let mut best = Duration::MAX;
    for _ in 0..runs.max(1) {
        best = best.min(f()?);
    }
    Ok(best)
}

fn timed(cmd: &mut Command) -> Result<Duration> {
    let start = Instant::now();
    run(cmd)?;
    Ok(start.elapsed())
}

pub fn build(runs: u32, bin: &Path, release: bool) -> Result<()> {
    let guest = crate::guest::build(crate::arch::Arch::host())?;
    let d = BenchDaemon::start("build-root", bin, 0)?;
    let ctx = d.root.join("ctx-run");
    std::fs::create_dir_all(&ctx)?;
    let mut dockerfile = String::from("FROM busybox\n");
    for i in 0..STEPS {
        dockerfile.push_str(&format!("RUN sleep {STEP_SLEEP} && echo {i} > /step{i}\n"));
    }
    std::fs::write(ctx.join("Dockerfile"), dockerfile)?;
    let files = d.root.join("ctx-files");
    for i in 0..10_000 {
        let dir = files.join(format!("d{:02}", i % 100));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(format!("f{i}")), format!("file {i}\n"))?;
    }
    std::fs::write(files.join("Dockerfile"), "FROM scratch\nCOPY . /ctx/\n")?;
    let build_cmd = |ctx: &Path, extra: &[&str]| {
        let mut c = d.container();
        c.args(["build", "-t", "bench:1"]).args(extra).arg(ctx);
        c.stderr(std::process::Stdio::null());
        c
    };
    step(&format!("cold builds of {STEPS} RUN steps, {runs} runs"));
    let cold = best(runs, || timed(&mut build_cmd(&ctx, &["--no-cache"])))?;
    step("cached rebuilds");
    let cached = best(runs, || timed(&mut build_cmd(&ctx, &[])))?;
    step("10,000-file context builds");
    let many = best(runs, || timed(&mut build_cmd(&files, &["--no-cache"])))?;
    step("bare boots of the same kernel (boot_bench --bare)");
    let bare = crate::bare_boot::bare_boot_median(&guest, runs, release)?;
    let own = STEPS as f64 * STEP_SLEEP;
    let per_step = (cold.as_secs_f64() - bare - own) / STEPS as f64;
    println!();
    println!("build, best of {} runs:", runs.max(1));
    println!(
        "  {STEPS} RUN steps, cold                  {:>7.2} s",
        cold.as_secs_f64()
    );
    println!("  bare QEMU boot to power-off          {bare:>7.2} s (median)");
    println!("  the steps' own run time              {own:>7.2} s");
    let verdict = if per_step <= GOAL_PER_STEP {
        "met"
    } else {
        "not met"
    };
    println!(
        "  overhead per step                    {per_step:>7.2} s   (goal <= {GOAL_PER_STEP} s: {verdict})"
    );
    println!(
        "  cached rebuild (no VM)               {:>7.2} s   (goal <= 1.5 s)",
        cached.as_secs_f64()
    );
    println!(
        "  10,000-file context, COPY, cold      {:>7.2} s",
        many.as_secs_f64()
    );
    step("one step's cost in the guest (step_bench)");
    let out = crate::bench_options::example(
        "vmm-qemu",
        "step_bench",
        &["testing"],
        &[runs.max(3).to_string()],
        release,
        &guest,
    )?;
    let ms = |key: &str| crate::bench_options::number(&out, key);
    println!(
        "  in the guest, per step (median)      {:>7.1} ms  (root + create {:.1}, start {:.1}, wait {:.1}, delete {:.1})",
        ms("total_ms")?,
        ms("prepare_ms")?,
        ms("start_ms")?,
        ms("wait_ms")?,
        ms("delete_ms")?
    );
    Ok(())
}
