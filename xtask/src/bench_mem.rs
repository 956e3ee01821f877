//! `cargo xtask bench mem`: host memory of idle containers against what their guests use
//! (issue 16's goal: host memory above guest use <= 64 MiB per idle container, PSS and RSS
//! reported, QEMU's shared text counted once), with the run and exec latency of the same
//! daemon, so a memory option is never judged apart from its speed.
//!
//! One daemon (pool off, user-mode networking) runs `busybox sleep` containers with the bare
//! boot's shape (`--cpus 1 --memory 256m`): the first one times `exec true` and a busier
//! exec, each further one runs the busier exec once (so every translation cache has seen
//! the same work). After the guests have settled (the balloon reports freed pages a few
//! seconds after they are freed) it reads:
//! - in each guest, `/proc/meminfo`: use = MemTotal - MemAvailable, and what is in it;
//! - on the host, `/proc/<pid>/smaps_rollup` of each runtime and every process below it
//!   (QEMU, vhost-device-vsock): PSS and RSS, and QEMU's PSS split into anonymous memory
//!   (TCG's translation cache, QEMU's heap), file pages (its text) and shared memory (the
//!   guest RAM the guest has touched);
//! - `/proc/<pid>/pagemap` of the same processes: the physical frames they map, each
//!   counted once, for the first container alone and for all of them together. That is
//!   the "shared QEMU text counts once" exactly, whatever else runs on the host
//!   (PSS divides a shared page among every process mapping it, other helpers' VMs too).
//!
//! Release binaries are built unless `--bin-dir` (or `$CONTAINER_BENCH_BIN`) names built
//! ones. `$CONTAINER_BENCH_SETTLE` is the settle time in seconds (default 20),
//! `$CONTAINER_BENCH_MEM_COUNT` the number of idle containers (default 4, at least 2).

use std::collections::HashSet;
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

/// The address ranges of `pid`'s mappings that hold resident pages (from its `smaps`).
fn resident_ranges(pid: u32) -> Vec<(u64, u64)> {
    let Ok(smaps) = std::fs::read_to_string(format!("/proc/{pid}/smaps")) else {
        return Vec::new();
    };
    let mut ranges = Vec::new();
    let mut current = None;
    for line in smaps.lines() {
        if let Some(kb) = line.strip_prefix("Rss:") {
            let resident = kb.trim().trim_end_matches("kB").trim() != "0";
            if let (Some(range), true) = (current.take(), resident) {
                ranges.push(range);
            }
            continue;
        }
        // A mapping's header: "start-end perms offset dev inode [path]".
        let Some((range, _)) = line.split_once(' ') else {
            continue;
        };
        if let Some((start, end)) = range.split_once('-')
            && let (Ok(start), Ok(end)) =
                (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16))
        {
            current = Some((start, end));
        }
    }
    ranges
}

/// Adds the physical frame of every resident page of `pid` to `frames` (from
/// `/proc/<pid>/pagemap`, which shows frame numbers to root only).
fn add_frames(pid: u32, frames: &mut HashSet<u64>) -> Result<()> {
    let pagemap = std::fs::File::open(format!("/proc/{pid}/pagemap"))
        .with_context(|| format!("cannot open /proc/{pid}/pagemap"))?;
    let before = frames.len();
    for range in resident_ranges(pid) {
        add_range_frames(&pagemap, range, frames);
    }
    if frames.len() == before {
        bail!("/proc/{pid}/pagemap shows no frame numbers (the bench must run as root)");
    }
    Ok(())
}

/// Adds the frames of the resident pages in `start..end` of a process's `pagemap`.
fn add_range_frames(pagemap: &std::fs::File, (start, end): (u64, u64), frames: &mut HashSet<u64>) {
    use std::os::unix::fs::FileExt;
    const PAGE: u64 = 4096;
    const PRESENT: u64 = 1 << 63;
    const PFN_MASK: u64 = (1 << 55) - 1;
    let mut buf = vec![0u8; ((end - start) / PAGE * 8) as usize];
    // [vsyscall] and other special mappings have no pagemap entries.
    if pagemap.read_exact_at(&mut buf, start / PAGE * 8).is_err() {
        return;
    }
    for entry in buf.chunks_exact(8) {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(entry);
        let entry = u64::from_le_bytes(bytes);
        if entry & PRESENT != 0 && entry & PFN_MASK != 0 {
            frames.insert(entry & PFN_MASK);
        }
    }
}

/// One idle container as the host and its guest see it.
struct Sample {
    /// The guest's use, MemTotal - MemAvailable, bytes.
    guest_use: u64,
    /// The guest's `/proc/meminfo`.
    meminfo: String,
    /// The runtime and every process below it, each with its rollup.
    each: Vec<(u32, String, Rollup)>,
    /// The sum of `each`.
    total: Rollup,
}

impl Sample {
    fn take(d: &Daemon, name: &str) -> Result<Sample> {
        let pid = d.runtime_pid(name)?;
        let meminfo = d.output(&["exec", name, "cat", "/proc/meminfo"])?;
        let (Some(total_mem), Some(available)) = (
            meminfo_field(&meminfo, "MemTotal"),
            meminfo_field(&meminfo, "MemAvailable"),
        ) else {
            bail!("{name}'s /proc/meminfo has no MemTotal or MemAvailable: {meminfo}");
        };
        let mut each = Vec::new();
        let mut total = Rollup::default();
        for (p, comm) in process_tree(pid) {
            let Ok(text) = std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")) else {
                continue;
            };
            let r = Rollup::parse(&text);
            total.add(&r);
            each.push((p, comm, r));
        }
        if !each.iter().any(|(_, comm, _)| comm.starts_with("qemu")) {
            bail!("{name}'s runtime (pid {pid}) has no QEMU below it");
        }
        Ok(Sample {
            guest_use: total_mem.saturating_sub(available),
            meminfo,
            each,
            total,
        })
    }
}

/// What `samples` hold on the host together, every physical page once (QEMU's text, the
/// kernel and initramfs images and each guest's RAM memfd count once however many processes
/// map them), and their guests' use, bytes.
fn together(samples: &[Sample]) -> Result<(u64, u64)> {
    let mut frames = HashSet::new();
    for s in samples {
        for (pid, _, _) in &s.each {
            add_frames(*pid, &mut frames)?;
        }
    }
    let guest_use = samples.iter().map(|s| s.guest_use).sum();
    Ok((frames.len() as u64 * 4096, guest_use))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB
}

pub fn mem(runs: u32, bin_dir: Option<PathBuf>) -> Result<()> {
    crate::guest::build(crate::arch::Arch::host())?;
    let images = crate::images::build()?;
    let bin = match bin_dir.or_else(|| std::env::var_os("CONTAINER_BENCH_BIN").map(PathBuf::from)) {
        Some(dir) => dir,
        None => crate::quickstart::build_product()?,
    };
    let settle = env_number("CONTAINER_BENCH_SETTLE", 20);
    let count = env_number("CONTAINER_BENCH_MEM_COUNT", 4).max(2);
    let daemon = Daemon::start(&bin, &images)?;
    let result = measure(
        &daemon,
        runs.max(1),
        Duration::from_secs(settle),
        count as usize,
    );
    daemon.stop();
    result
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(default)
}

const SHAPE: [&str; 4] = ["--cpus", "1", "--memory", "256m"];

fn measure(d: &Daemon, runs: u32, settle: Duration, count: usize) -> Result<()> {
    let mut run_true = vec!["run", "--rm"];
    run_true.extend(SHAPE);
    run_true.extend(["busybox", "true"]);
    step("run --rm busybox true");
    run(&mut d.cmd(&run_true))?; // warm-up: the image's snapshot, the page cache
    let mut runs_s = Vec::new();
    for _ in 0..runs {
        runs_s.push(d.timed(&run_true)?);
    }

    step("an idle container");
    start_idle(d, "idle-1")?;
    let mut exec_s = Vec::new();
    for _ in 0..runs {
        exec_s.push(d.timed(&["exec", "idle-1", "true"])?);
    }
    // A workload with a larger code footprint than `true` (the applets, the kernel's file,
    // pipe and exec paths), for what a smaller translation cache costs once it flushes.
    let mut busy_s = Vec::new();
    for _ in 0..runs {
        busy_s.push(d.timed(&["exec", "idle-1", "sh", "-c", BUSY])?);
    }
    step(&format!("{} more idle containers", count - 1));
    let names: Vec<String> = (1..=count).map(|i| format!("idle-{i}")).collect();
    for name in &names[1..] {
        start_idle(d, name)?;
        // The same workload once, so every container's translation cache has seen it.
        run(&mut d.cmd(&["exec", name, "sh", "-c", BUSY]))?;
    }
    std::thread::sleep(settle);
    let samples = names
        .iter()
        .map(|n| Sample::take(d, n))
        .collect::<Result<Vec<_>>>()?;
    let one = &samples[0];
    let (alone, alone_use) = together(&samples[..1])?;
    let (all, all_use) = together(&samples)?;

    println!();
    println!(
        "idle busybox container (1 vCPU, 256 MiB), {} s after the last exec:",
        settle.as_secs()
    );
    let field = |k: &str| mib(meminfo_field(&one.meminfo, k).unwrap_or(0));
    println!(
        "  guest: use {:.1} MiB (MemTotal {:.1}, MemFree {:.1}, MemAvailable {:.1}, Cached {:.1}, Shmem {:.1})",
        mib(one.guest_use),
        field("MemTotal"),
        field("MemFree"),
        field("MemAvailable"),
        field("Cached"),
        field("Shmem")
    );
    for (_, comm, r) in &one.each {
        println!(
            "  {comm:<20} PSS {:>6.1} MiB (anon {:>6.1}, file {:>5.1}, shmem {:>6.1}), RSS {:>6.1} MiB",
            mib(r.pss),
            mib(r.pss_anon),
            mib(r.pss_file),
            mib(r.pss_shmem),
            mib(r.rss)
        );
    }
    println!(
        "  run --rm busybox true {:.2} s, exec true {:.2} s, exec of a busier script {:.2} s (medians of {runs})",
        median(runs_s),
        median(exec_s),
        median(busy_s)
    );
    // File-backed pages (QEMU's and the runtime's text, the kernel and initramfs images QEMU
    // maps) are shared by every VM on the host and the host can drop them.
    let private = mib(one.total.pss_anon + one.total.pss_shmem);
    println!(
        "  without file-backed pages: {private:.1} MiB, {:.1} MiB above guest use",
        private - mib(one.guest_use)
    );
    println!(
        "  PSS {:.1} MiB, RSS {:.1} MiB (above guest use {:.1} / {:.1} MiB; PSS shares file pages with every other process mapping them, here or not)",
        mib(one.total.pss),
        mib(one.total.rss),
        mib(one.total.pss) - mib(one.guest_use),
        mib(one.total.rss) - mib(one.guest_use)
    );
    let pss_all: u64 = samples.iter().map(|s| s.total.pss).sum();
    let rss_all: u64 = samples.iter().map(|s| s.total.rss).sum();
    println!(
        "{count} idle containers: guest use {:.1} MiB in all, PSS {:.1} MiB, RSS {:.1} MiB, every host page once {:.1} MiB",
        mib(all_use),
        mib(pss_all),
        mib(rss_all),
        mib(all)
    );
    // Every host page once: QEMU's text counts in full for one container alone, and once
    // for all of them together; the marginal figure is what each further container adds.
    let above_alone = mib(alone) - mib(alone_use);
    let above_each = (mib(all) - mib(all_use)) / count as f64;
    let above_marginal =
        (mib(all) - mib(alone) - (mib(all_use) - mib(alone_use))) / (count - 1) as f64;
    println!(
        "host memory above guest use per idle container (every host page once; goal 64 MiB): alone {above_alone:.1} MiB, {count} together {above_each:.1} MiB each, each further one {above_marginal:.1} MiB"
    );
    Ok(())
}

/// Starts `busybox sleep` as container `name` with the bare boot's shape.
fn start_idle(d: &Daemon, name: &str) -> Result<()> {
    let mut args = vec!["run", "-d", "--name", name];
    args.extend(SHAPE);
    args.extend(["busybox", "sleep", "36000"]);
    run(&mut d.cmd(&args))
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

    #[test]
    fn a_page_mapped_twice_counts_once() {
        const PAGES: usize = 64;
        let path = std::env::temp_dir().join(format!("bench-mem-{}", std::process::id()));
        std::fs::write(&path, vec![7u8; PAGES * 4096]).unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        let map = || {
            use std::os::fd::AsRawFd;
            // SAFETY: a fresh shared mapping of the whole file, which stays open while the
            // mapping is used; only this test touches it, and it is unmapped below.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    PAGES * 4096,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    file.as_raw_fd(),
                    0,
                )
            };
            assert_ne!(p, libc::MAP_FAILED);
            for i in 0..PAGES {
                // SAFETY: `p` maps PAGES pages, readable and writable.
                unsafe { std::ptr::write_volatile((p as *mut u8).add(i * 4096), i as u8) };
            }
            p
        };
        let (a, b) = (map(), map());
        let pagemap = std::fs::File::open("/proc/self/pagemap").unwrap();
        let range = |p: *mut libc::c_void| (p as u64, p as u64 + (PAGES * 4096) as u64);
        let mut first = HashSet::new();
        add_range_frames(&pagemap, range(a), &mut first);
        let mut both = first.clone();
        add_range_frames(&pagemap, range(b), &mut both);
        // SAFETY: both mappings were made above with this length and are no longer used.
        unsafe {
            libc::munmap(a, PAGES * 4096);
            libc::munmap(b, PAGES * 4096);
        }
        assert_eq!(first.len(), PAGES, "one mapping's frames");
        assert_eq!(
            both, first,
            "the second mapping of the same pages adds no frame"
        );
    }
}
