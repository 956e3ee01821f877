//! `cargo xtask bench mem`: host memory of one idle container against what its guest uses
//! (issue 16's goal: PSS above guest use <= 64 MiB), with the run and exec latency of the
//! same daemon, so a memory option is never judged apart from its speed.
//!
//! One daemon (pool off, user-mode networking) runs `busybox sleep` with the bare boot's
//! shape (`--cpus 1 --memory 256m`), waits until the guest has settled (the balloon reports
//! freed pages a few seconds after they are freed), then reads:
//! - in the guest, `/proc/meminfo`: use = MemTotal - MemAvailable, and what is in it;
//! - on the host, `/proc/<pid>/smaps_rollup` of the runtime and every process below it
//!   (QEMU, vhost-device-vsock): PSS (QEMU's text and the guest RAM memfd that QEMU and the
//!   vsock helper both map count once) and RSS, and QEMU's PSS split into anonymous memory
//!   (TCG's translation cache, QEMU's heap), file pages (its text) and shared memory (the
//!   guest RAM the guest has touched).
//!
//! `$CONTAINER_BENCH_BIN` points at already built binaries (a debug build), otherwise release
//! binaries are built. `$CONTAINER_BENCH_SETTLE` is the settle time in seconds (default 20).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::paths::cache_dir;
use crate::run::{run, step};

const MIB: f64 = 1048576.0;

/// The busier exec: a few applets over the image's files, each a different code path.
const BUSY: &str = "for i in 1 2 3; do find / -xdev >/dev/null 2>&1; tar -cf - /bin /etc 2>/dev/null | md5sum >/dev/null; \
     sha256sum /bin/busybox >/dev/null; gzip -c /bin/busybox | wc -c >/dev/null; ls -laR /etc >/dev/null; done";

/// The fields of one process's `smaps_rollup`, bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rollup {
    pub rss: u64,
    pub pss: u64,
    pub pss_anon: u64,
    pub pss_file: u64,
    pub pss_shmem: u64,
}

impl Rollup {
    /// Parses the text of `/proc/<pid>/smaps_rollup`.
    pub fn parse(text: &str) -> Rollup {
        let mut r = Rollup::default();
        for line in text.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let Some(kb) = value
                .trim()
                .strip_suffix("kB")
                .and_then(|v| v.trim().parse::<u64>().ok())
            else {
                continue;
            };
            let bytes = kb * 1024;
            match key {
                "Rss" => r.rss += bytes,
                "Pss" => r.pss += bytes,
                "Pss_Anon" => r.pss_anon += bytes,
                "Pss_File" => r.pss_file += bytes,
                "Pss_Shmem" => r.pss_shmem += bytes,
                _ => {}
            }
        }
        r
    }

    fn add(&mut self, o: &Rollup) {
        self.rss += o.rss;
        self.pss += o.pss;
        self.pss_anon += o.pss_anon;
        self.pss_file += o.pss_file;
        self.pss_shmem += o.pss_shmem;
    }
}

/// `pid` and every process below it, each with its command name.
pub fn process_tree(pid: u32) -> Vec<(u32, String)> {
    let mut procs = Vec::new();
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
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let comm = head
            .split_once('(')
            .map(|(_, c)| c)
            .unwrap_or("")
            .to_string();
        if let Some(ppid) = rest
            .split_whitespace()
            .nth(1)
            .and_then(|f| f.parse::<u32>().ok())
        {
            procs.push((p, ppid, comm));
        }
    }
    let mut tree: Vec<(u32, String)> = procs
        .iter()
        .filter(|(p, _, _)| *p == pid)
        .map(|(p, _, c)| (*p, c.clone()))
        .collect();
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i].0;
        tree.extend(
            procs
                .iter()
                .filter(|(_, pp, _)| *pp == parent)
                .map(|(p, _, c)| (*p, c.clone())),
        );
        i += 1;
    }
    tree
}

/// The rollup of each process of `pid`'s tree, and their sum.
pub fn tree_rollup(pid: u32) -> (Vec<(String, Rollup)>, Rollup) {
    let mut each = Vec::new();
    let mut total = Rollup::default();
    for (p, comm) in process_tree(pid) {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")) else {
            continue;
        };
        let r = Rollup::parse(&text);
        total.add(&r);
        each.push((comm, r));
    }
    (each, total)
}

/// One field of `/proc/meminfo` text, bytes.
pub fn meminfo_field(meminfo: &str, key: &str) -> Option<u64> {
    meminfo.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        if k != key {
            return None;
        }
        v.trim()
            .strip_suffix("kB")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
    })
}

/// A daemon on a temporary app root, pool off.
struct Daemon {
    bin: PathBuf,
    root: PathBuf,
}

impl Daemon {
    fn start(bin: &Path, images: &Path) -> Result<Daemon> {
        let root = cache_dir().join("bench").join("mem");
        let _ = std::fs::remove_dir_all(&root);
        let d = Daemon {
            bin: bin.to_path_buf(),
            root,
        };
        run(&mut d.cmd(&["system", "start"]))?;
        run(d
            .cmd(&["image", "load", "-i"])
            .arg(images.join("busybox.docker.tar")))?;
        Ok(d)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(self.bin.join("container"));
        // User-mode networking: a benchmark must not add bridges to this host.
        cmd.args(args)
            .env("CONTAINER_APP_ROOT", &self.root)
            .env("CONTAINER_NETWORK_MODE", "user")
            .env("CONTAINER_POOL_SIZE", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        cmd
    }

    fn output(&self, args: &[&str]) -> Result<String> {
        let mut cmd = self.cmd(args);
        cmd.stdout(Stdio::piped());
        crate::run::output(&mut cmd)
    }

    fn timed(&self, args: &[&str]) -> Result<f64> {
        let start = Instant::now();
        run(&mut self.cmd(args))?;
        Ok(start.elapsed().as_secs_f64())
    }

    /// The pid of container `name`'s runtime (its state.json).
    fn runtime_pid(&self, name: &str) -> Result<u32> {
        let inspect: serde_json::Value = serde_json::from_str(&self.output(&["inspect", name])?)?;
        let id = inspect[0]["id"].as_str().context("inspect shows no id")?;
        let state =
            std::fs::read_to_string(self.root.join("containers").join(id).join("state.json"))?;
        let v: serde_json::Value = serde_json::from_str(&state)?;
        v["runtime_pid"]
            .as_u64()
            .map(|p| p as u32)
            .context("state.json has no runtime_pid")
    }

    fn stop(&self) {
        let _ = run(&mut self.cmd(&["rm", "--all", "--force"]));
        let _ = run(&mut self.cmd(&["system", "stop"]));
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn mem(runs: u32) -> Result<()> {
    crate::guest::build(crate::arch::Arch::host())?;
    let images = crate::images::build()?;
    let bin = match std::env::var_os("CONTAINER_BENCH_BIN") {
        Some(dir) => PathBuf::from(dir),
        None => crate::quickstart::build_product()?,
    };
    let settle = std::env::var("CONTAINER_BENCH_SETTLE")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(20);
    let daemon = Daemon::start(&bin, &images)?;
    let result = measure(&daemon, runs.max(1), Duration::from_secs(settle));
    daemon.stop();
    result
}

fn measure(d: &Daemon, runs: u32, settle: Duration) -> Result<()> {
    let small = ["--cpus", "1", "--memory", "256m"];
    let mut run_true = vec!["run", "--rm"];
    run_true.extend(small);
    run_true.extend(["busybox", "true"]);
    step("run --rm busybox true");
    run(&mut d.cmd(&run_true))?; // warm-up: the image's snapshot, the page cache
    let mut runs_s = Vec::new();
    for _ in 0..runs {
        runs_s.push(d.timed(&run_true)?);
    }

    step("an idle container");
    let mut args = vec!["run", "-d", "--name", "idle"];
    args.extend(small);
    args.extend(["busybox", "sleep", "36000"]);
    run(&mut d.cmd(&args))?;
    let mut exec_s = Vec::new();
    for _ in 0..runs {
        exec_s.push(d.timed(&["exec", "idle", "true"])?);
    }
    // A workload with a larger code footprint than `true` (the applets, the kernel's file,
    // pipe and exec paths), for what a smaller translation cache costs once it flushes.
    let mut busy_s = Vec::new();
    for _ in 0..runs {
        busy_s.push(d.timed(&["exec", "idle", "sh", "-c", BUSY])?);
    }
    std::thread::sleep(settle);
    let pid = d.runtime_pid("idle")?;
    let (each, total) = tree_rollup(pid);
    let meminfo = d.output(&["exec", "idle", "cat", "/proc/meminfo"])?;
    let field = |k: &str| meminfo_field(&meminfo, k).unwrap_or(0) as f64 / MIB;
    if meminfo_field(&meminfo, "MemTotal").is_none() {
        bail!("the guest's /proc/meminfo has no MemTotal: {meminfo}");
    }
    let used = field("MemTotal") - field("MemAvailable");
    let pss = total.pss as f64 / MIB;
    let rss = total.rss as f64 / MIB;

    println!();
    println!(
        "idle busybox container (1 vCPU, 256 MiB), {} s after start:",
        settle.as_secs()
    );
    println!(
        "  guest: use {used:.1} MiB (MemTotal {:.1}, MemFree {:.1}, MemAvailable {:.1}, Cached {:.1}, Shmem {:.1})",
        field("MemTotal"),
        field("MemFree"),
        field("MemAvailable"),
        field("Cached"),
        field("Shmem")
    );
    for (comm, r) in &each {
        println!(
            "  {comm:<20} PSS {:>6.1} MiB (anon {:>6.1}, file {:>5.1}, shmem {:>6.1}), RSS {:>6.1} MiB",
            r.pss as f64 / MIB,
            r.pss_anon as f64 / MIB,
            r.pss_file as f64 / MIB,
            r.pss_shmem as f64 / MIB,
            r.rss as f64 / MIB
        );
    }
    println!(
        "  run --rm busybox true {:.2} s, exec true {:.2} s, exec of a busier script {:.2} s (medians of {runs})",
        median(runs_s),
        median(exec_s),
        median(busy_s)
    );
    // File-backed pages (QEMU's and the runtime's text, the kernel and initramfs images QEMU
    // maps) are shared by every VM on the host and the host can drop them: what this one
    // container's PSS holds of them depends on how many other VMs run at the same moment.
    let private = (total.pss_anon + total.pss_shmem) as f64 / MIB;
    println!(
        "  without file-backed pages (text and images, shared by every VM on the host): {private:.1} MiB, {:.1} MiB above guest use",
        private - used
    );
    println!(
        "host memory above guest use per idle container: {:.1} MiB (goal 64); PSS {pss:.1} MiB, RSS {rss:.1} MiB (above guest use {:.1} MiB), guest use {used:.1} MiB",
        pss - used,
        rss - used
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollup_and_meminfo_parse() {
        let text = "55d0-7ffe ---p 00000000 00:00 0 [rollup]\nRss:  2048 kB\nPss:  1024 kB\n\
                    Pss_Anon:  512 kB\nPss_File:  256 kB\nPss_Shmem:  256 kB\nSwap: 0 kB\n";
        assert_eq!(
            Rollup::parse(text),
            Rollup {
                rss: 2048 * 1024,
                pss: 1024 * 1024,
                pss_anon: 512 * 1024,
                pss_file: 256 * 1024,
                pss_shmem: 256 * 1024,
            }
        );
        let meminfo = "MemTotal:  250000 kB\nMemFree:  100 kB\nMemAvailable: 200000 kB\n";
        assert_eq!(meminfo_field(meminfo, "MemTotal"), Some(250000 * 1024));
        assert_eq!(meminfo_field(meminfo, "MemAvailable"), Some(200000 * 1024));
        assert_eq!(meminfo_field(meminfo, "Shmem"), None);
        let me = process_tree(std::process::id());
        assert_eq!(me[0].0, std::process::id());
    }
}
