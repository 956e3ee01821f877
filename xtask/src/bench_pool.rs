//! `cargo xtask bench pool`: issue 16's figures, each against a baseline from the same run.
//!
//! - `run --rm busybox true` cold (pool off) and from the warm pool, against a bare boot of
//!   the same kernel (boot_bench --bare);
//! - memory of an idle container: PSS and RSS of its runtime, QEMU and vsock helper (from
//!   `/proc/<pid>/smaps_rollup`, so QEMU's shared text counts once in PSS), against what the
//!   guest itself uses (MemTotal - MemAvailable inside it);
//! - 50 idle containers with `--memory 256m` (also alone: `cargo xtask bench fifty`): all
//!   start, `ls` with 50 running against `ls` with none, `stop --all` (and that it ends every
//!   VM), total host memory; `run` latency with 1, 10 and 50 running against one alone;
//!   10 concurrent `run`s against 10 in a row.
//!
//! `$CONTAINER_BENCH_BIN` points at already built binaries (a debug build: the guest is
//! then the one `cargo xtask guest` published beside them), otherwise release binaries are
//! built. `$CONTAINER_BENCH_FIFTY=0` skips the 50-container part.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::paths::cache_dir;
use crate::run::{run, step};

/// One daemon on a temporary app root.
struct Bench {
    bin: PathBuf,
    root: PathBuf,
    pool: u32,
}

impl Bench {
    fn start(bin: &Path, name: &str, pool: u32, images: &Path) -> Result<Bench> {
        let root = cache_dir().join("bench").join(name);
        let _ = std::fs::remove_dir_all(&root);
        let b = Bench {
            bin: bin.to_path_buf(),
            root,
            pool,
        };
        run(&mut b.cmd(&["system", "start"]))?;
        run(b
            .cmd(&["image", "load", "-i"])
            .arg(images.join("busybox.docker.tar")))?;
        Ok(b)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(self.bin.join("container"));
        // User-mode networking: a benchmark must not add bridges to this host.
        cmd.args(args)
            .env("CONTAINER_APP_ROOT", &self.root)
            .env("CONTAINER_NETWORK_MODE", "user")
            .env("CONTAINER_POOL_SIZE", self.pool.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        cmd
    }

    fn output(&self, args: &[&str]) -> Result<String> {
        let mut cmd = self.cmd(args);
        cmd.stdout(Stdio::piped());
        crate::run::output(&mut cmd)
    }

    fn timed(&self, args: &[&str]) -> Result<Duration> {
        let start = Instant::now();
        run(&mut self.cmd(args))?;
        Ok(start.elapsed())
    }

    /// Waits until the pool has `n` ready guests (and nothing booting).
    fn wait_pool(&self, n: u32) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let status = self.output(&["system", "status", "--format", "json"])?;
            let v: serde_json::Value = serde_json::from_str(status.trim())?;
            let ready = v["pool"]["ready"].as_u64().unwrap_or(0);
            let booting = v["pool"]["booting"].as_u64().unwrap_or(0);
            if ready >= u64::from(n) && booting == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the pool did not fill: {status}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn stop(&self) {
        let _ = run(&mut self.cmd(&["rm", "--all", "--force"]));
        let _ = run(&mut self.cmd(&["system", "stop"]));
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn median(v: &mut [Duration]) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64()
}

/// PSS and RSS in bytes of `pid` and every process below it.
fn tree_memory(pid: u32) -> (u64, u64) {
    let mut parents = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(p) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        if let Some(ppid) = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|f| f.parse::<u32>().ok())
        {
            parents.push((p, ppid));
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    let mut pss = 0;
    let mut rss = 0;
    for p in tree {
        let Ok(rollup) = std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")) else {
            continue;
        };
        for line in rollup.lines() {
            let kb = |prefix: &str| {
                line.strip_prefix(prefix)
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            };
            if let Some(v) = kb("Pss:") {
                pss += v * 1024;
            }
            if let Some(v) = kb("Rss:") {
                rss += v * 1024;
            }
        }
    }
    (pss, rss)
}

/// The runtime pid of container `name` (from `inspect`).
fn runtime_pid(b: &Bench, name: &str) -> Result<u32> {
    let inspect: serde_json::Value = serde_json::from_str(&b.output(&["inspect", name])?)?;
    let id = inspect[0]["id"].as_str().context("inspect shows no id")?;
    let state = std::fs::read_to_string(b.root.join("containers").join(id).join("state.json"))?;
    let v: serde_json::Value = serde_json::from_str(&state)?;
    v["runtime_pid"]
        .as_u64()
        .map(|p| p as u32)
        .context("state.json has no pid")
}

/// What the guest of `name` uses: MemTotal - MemAvailable, bytes.
fn guest_used(b: &Bench, name: &str) -> Result<u64> {
    let meminfo = b.output(&["exec", name, "cat", "/proc/meminfo"])?;
    let field = |key: &str| {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    Ok(field("MemTotal:").saturating_sub(field("MemAvailable:")))
}

const MIB: f64 = 1048576.0;

pub fn pool(runs: u32) -> Result<()> {
    let guest = crate::guest::build(crate::arch::Arch::host())?;
    let images = crate::images::build()?;
    let (bin, release) = match std::env::var_os("CONTAINER_BENCH_BIN") {
        Some(dir) => (PathBuf::from(dir), false),
        None => (crate::quickstart::build_product()?, true),
    };
    let runs = runs.max(1);
    let small = ["--cpus", "1", "--memory", "256m"];
    fn run_true<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        let mut a = vec!["run", "--rm"];
        a.extend(extra);
        a.extend(["busybox", "true"]);
        a
    }

    step("cold and pooled runs, interleaved");
    let cold = Bench::start(&bin, "pool-cold", 0, &images)?;
    let warm = Bench::start(&bin, "pool-warm", 1, &images)?;
    let result = (|| -> Result<(Vec<Duration>, Vec<Duration>)> {
        // Warm-ups: the pool learns the shape from its first start.
        run(&mut cold.cmd(&run_true(&small)))?;
        run(&mut warm.cmd(&run_true(&small)))?;
        let (mut c, mut w) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            warm.wait_pool(1)?;
            c.push(cold.timed(&run_true(&small))?);
            warm.wait_pool(1)?;
            w.push(warm.timed(&run_true(&small))?);
        }
        Ok((c, w))
    })();
    cold.stop();
    let (mut c, mut w) = match result {
        Ok(r) => r,
        Err(e) => {
            warm.stop();
            return Err(e);
        }
    };
    step("bare boots of the same kernel (boot_bench --bare)");
    let bare = crate::bare_boot::bare_boot_median(&guest, runs, release)?;
    let (cold_s, warm_s) = (median(&mut c), median(&mut w));
    println!();
    println!("pool, {runs} runs of each, 1 vCPU and 256 MiB (the bare boot's shape):");
    println!("  bare QEMU boot to power-off          {bare:>7.2} s");
    println!(
        "  run --rm busybox true, cold          {cold_s:>7.2} s   ratio {:>5.2}",
        cold_s / bare
    );
    println!(
        "  run --rm busybox true, from the pool {warm_s:>7.2} s   ratio {:>5.2}   (goal <= 1.00)",
        warm_s / bare
    );
    if let Err(e) = crate::bench_options::print(&guest, runs, release, bare) {
        warm.stop();
        return Err(e);
    }

    step("memory of an idle container");
    let memory = (|| -> Result<()> {
        warm.wait_pool(1)?;
        let mut args = vec!["run", "-d", "--name", "idle"];
        args.extend(small);
        args.extend(["busybox", "sleep", "3600"]);
        run(&mut warm.cmd(&args))?;
        std::thread::sleep(Duration::from_secs(10));
        let pid = runtime_pid(&warm, "idle")?;
        let (pss, rss) = tree_memory(pid);
        let used = guest_used(&warm, "idle")?;
        println!(
            "  guest's own use (MemTotal - MemAvailable) {:>7.1} MiB",
            used as f64 / MIB
        );
        println!(
            "  host PSS {:>7.1} MiB (above guest use {:>6.1} MiB; goal <= 64), RSS {:>7.1} MiB (above {:>6.1} MiB)",
            pss as f64 / MIB,
            (pss as f64 - used as f64) / MIB,
            rss as f64 / MIB,
            (rss as f64 - used as f64) / MIB
        );
        run(&mut warm.cmd(&["rm", "-f", "idle"]))?;
        Ok(())
    })();
    warm.stop();
    memory?;

    if std::env::var("CONTAINER_BENCH_FIFTY").as_deref() == Ok("0") {
        return Ok(());
    }
    step("50 idle containers with --memory 256m");
    let fifty = Bench::start(&bin, "pool-fifty", 0, &images)?;
    let result = fifty_idle(&fifty, &small, runs);
    fifty.stop();
    result
}

/// `cargo xtask bench fifty`: only the 50-container part, on the binaries in `bin_dir`
/// (else `$CONTAINER_BENCH_BIN`, else a release build).
pub fn fifty(runs: u32, bin_dir: Option<PathBuf>) -> Result<()> {
    crate::guest::build(crate::arch::Arch::host())?;
    let images = crate::images::build()?;
    let bin = match bin_dir.or_else(|| std::env::var_os("CONTAINER_BENCH_BIN").map(PathBuf::from)) {
        Some(dir) => dir,
        None => crate::quickstart::build_product()?,
    };
    step("50 idle containers with --memory 256m");
    let b = Bench::start(&bin, "pool-fifty", 0, &images)?;
    let result = fifty_idle(&b, &["--cpus", "1", "--memory", "256m"], runs.max(1));
    b.stop();
    result
}

/// The host's load average over the last minute, for the figures' context.
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// Medians of 30 interleaved calls, seconds: `container ls`, `container --version` (the
/// CLI's start alone, no daemon: the control that shows how much the host itself slowed
/// down), and `docker ps` through the daemon's Docker socket (None without a docker CLI).
fn ls_medians(b: &Bench) -> Result<(f64, f64, Option<f64>)> {
    let docker = Command::new("docker")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let (mut ls, mut version, mut ps) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..30 {
        ls.push(b.timed(&["ls"])?);
        version.push(b.timed(&["--version"])?);
        if docker {
            let start = Instant::now();
            run(Command::new("docker")
                .arg("ps")
                .env(
                    "DOCKER_HOST",
                    format!("unix://{}", b.root.join("docker.sock").display()),
                )
                .env("DOCKER_CONFIG", b.root.join("docker-config"))
                .env_remove("DOCKER_CONTEXT")
                .stdout(Stdio::null()))?;
            ps.push(start.elapsed());
        }
    }
    Ok((
        median(&mut ls),
        median(&mut version),
        docker.then(|| median(&mut ps)),
    ))
}

/// CPU time (user + system) of `pid` and its descendants so far, in clock ticks.
fn tree_cpu_ticks(pid: u32) -> u64 {
    crate::bench_mem::process_tree(pid)
        .iter()
        .filter_map(|(p, _)| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .map(|stat| {
            // The fields after the command name: state ppid ... utime (12th) stime (13th).
            let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
            let f: Vec<&str> = rest.split_whitespace().collect();
            let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            num(11) + num(12)
        })
        .sum()
}

fn fifty_idle(b: &Bench, small: &[&str], runs: u32) -> Result<()> {
    let run_true = {
        let mut a = vec!["run", "--rm"];
        a.extend(small);
        a.extend(["busybox", "true"]);
        a
    };
    let latency = |b: &Bench| -> Result<f64> {
        let mut v = Vec::new();
        for _ in 0..runs {
            v.push(b.timed(&run_true)?);
        }
        Ok(median(&mut v))
    };
    // Baselines, with nothing running.
    let load_before = load();
    let (ls_empty, version_empty, ps_empty) = ls_medians(b)?;
    let alone = latency(b)?;
    let in_a_row = {
        let start = Instant::now();
        for _ in 0..10 {
            run(&mut b.cmd(&run_true))?;
        }
        start.elapsed().as_secs_f64()
    };
    let concurrent = {
        let start = Instant::now();
        let children: Vec<_> = (0..10)
            .map(|_| b.cmd(&run_true).spawn())
            .collect::<Result<_, _>>()?;
        let mut failed = 0;
        for mut c in children {
            if !c.wait()?.success() {
                failed += 1;
            }
        }
        if failed > 0 {
            bail!("{failed} of 10 concurrent runs failed");
        }
        start.elapsed().as_secs_f64()
    };

    let start = Instant::now();
    let mut at = Vec::new();
    for i in 1..=50 {
        let name = format!("idle{i}");
        let mut args = vec!["run", "-d", "--name", name.as_str()];
        args.extend(small);
        args.extend(["busybox", "sleep", "36000"]);
        run(&mut b.cmd(&args))?;
        if i == 1 || i == 10 || i == 50 {
            at.push((i, latency(b)?));
        }
    }
    let started = start.elapsed();
    let load_fifty = load();
    let (ls_fifty, version_fifty, ps_fifty) = ls_medians(b)?;
    let running = b.output(&["ls", "-q"])?.lines().count();
    let mut total = (0, 0);
    let mut runtimes = Vec::new();
    for i in 1..=50 {
        let pid = runtime_pid(b, &format!("idle{i}"))?;
        let (pss, rss) = tree_memory(pid);
        total.0 += pss;
        total.1 += rss;
        runtimes.push(pid);
    }
    // What 50 idle containers cost in CPU: their runtimes, QEMUs and vsock helpers over 10 s.
    let cpu_window = Duration::from_secs(10);
    let ticks = |pids: &[u32]| pids.iter().map(|p| tree_cpu_ticks(*p)).sum::<u64>();
    let before = ticks(&runtimes);
    std::thread::sleep(cpu_window);
    let hz = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<f64>()
                .ok()
        })
        .unwrap_or(100.0);
    let idle_cpu = (ticks(&runtimes).saturating_sub(before)) as f64 / hz / cpu_window.as_secs_f64();
    // Every VM process of the 50, to check that `stop --all` ends them.
    let vm_pids: Vec<u64> = (1..=50)
        .map(|i| vm_pids(b, &format!("idle{i}")))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect();
    let stop = b.timed(&["stop", "--all"])?;
    let still_running = b.output(&["ls", "-q"])?.lines().count();
    let vms_left = vm_pids
        .iter()
        .filter(|p| Path::new(&format!("/proc/{p}")).exists())
        .count();
    let remove = b.timed(&["rm", "--all"])?;

    println!();
    println!(
        "fifty idle containers (1 vCPU, 256 MiB each), load {load_before} before, {load_fifty} with 50 running:"
    );
    println!("  run alone (baseline)                  {alone:>7.2} s");
    for (n, s) in &at {
        println!(
            "  run with {n:>2} running                  {s:>7.2} s   ratio {:>5.2}",
            s / alone
        );
    }
    println!(
        "  10 runs in a row {in_a_row:.2} s, 10 concurrent {concurrent:.2} s   concurrent / in a row {:>5.2}",
        concurrent / in_a_row
    );
    println!(
        "  50 started in {:.1} s; {running} listed running",
        started.as_secs_f64()
    );
    println!(
        "  container ls: {:.1} ms with 0 running, {:.1} ms with 50   ratio {:>5.2}   (goal <= 30 ms)",
        ls_empty * 1e3,
        ls_fifty * 1e3,
        ls_fifty / ls_empty
    );
    println!(
        "  control, container --version (no daemon): {:.1} ms, {:.1} ms with 50   ratio {:>5.2}",
        version_empty * 1e3,
        version_fifty * 1e3,
        version_fifty / version_empty
    );
    if let (Some(e), Some(f)) = (ps_empty, ps_fifty) {
        println!(
            "  docker ps (same list rpc): {:.1} ms with 0 running, {:.1} ms with 50   ratio {:>5.2}",
            e * 1e3,
            f * 1e3,
            f / e
        );
    }
    println!(
        "  CPU of the 50 idle containers (runtime, QEMU, vsock helper): {:.0} % of one core in all, {:.2} % each",
        idle_cpu * 100.0,
        idle_cpu * 2.0
    );
    println!(
        "  host memory of all 50: PSS {:.0} MiB, RSS {:.0} MiB ({:.1} / {:.1} MiB each)",
        total.0 as f64 / MIB,
        total.1 as f64 / MIB,
        total.0 as f64 / MIB / 50.0,
        total.1 as f64 / MIB / 50.0
    );
    println!(
        "  stop --all of 50: {:.1} s ({still_running} still running, {vms_left} of {} VM processes left); rm --all {:.1} s",
        stop.as_secs_f64(),
        vm_pids.len(),
        remove.as_secs_f64()
    );
    Ok(())
}

/// The VM processes (QEMU, the vsock helper) of container `name`, from its runtime's record.
fn vm_pids(b: &Bench, name: &str) -> Result<Vec<u64>> {
    let inspect: serde_json::Value = serde_json::from_str(&b.output(&["inspect", name])?)?;
    let id = inspect[0]["id"].as_str().context("inspect shows no id")?;
    let state = std::fs::read_to_string(b.root.join("containers").join(id).join("state.json"))?;
    let v: serde_json::Value = serde_json::from_str(&state)?;
    Ok(v["vm_pids"]
        .as_array()
        .map(|a| a.iter().filter_map(serde_json::Value::as_u64).collect())
        .unwrap_or_default())
}
