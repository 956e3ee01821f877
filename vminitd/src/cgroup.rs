//! Per-container cgroups (v2) under /sys/fs/cgroup/<id>: limits from the spec, stats, kill.

use std::fs;
use std::io;
use std::path::Path;

use oci_spec::runtime::LinuxResources;

/// Errors of cgroup handling.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
    /// cgroup.events did not reach the asked freezer state in time.
    #[error("cgroup {path} did not become {state} within {millis} ms")]
    FreezeTimeout {
        path: String,
        state: &'static str,
        millis: u128,
    },
}

/// The cgroup v2 mount point of the guest.
pub const ROOT: &str = "/sys/fs/cgroup";

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CgroupError + 'a {
    move |source| CgroupError::Io {
        what,
        path: path.display().to_string(),
        source,
    }
}

/// The files to write for the spec's limits, as (file, value).
pub fn limit_files(res: &LinuxResources) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(cpu) = res.cpu() {
        if let Some(quota) = cpu.quota().filter(|q| *q > 0) {
            let period = cpu.period().unwrap_or(100_000);
            out.push(("cpu.max", format!("{quota} {period}")));
        }
        if let Some(shares) = cpu.shares().filter(|s| *s > 0) {
            // The conversion runc and crun use from cgroup v1 shares (2..262144) to weight.
            let weight = 1 + ((shares.clamp(2, 262_144) - 2) * 9999) / 262_142;
            out.push(("cpu.weight", weight.to_string()));
        }
        if let Some(cpus) = cpu.cpus().as_ref().filter(|c| !c.is_empty()) {
            out.push(("cpuset.cpus", cpus.clone()));
        }
    }
    if let Some(mem) = res.memory() {
        if let Some(limit) = mem.limit().filter(|l| *l > 0) {
            out.push(("memory.max", limit.to_string()));
            if let Some(swap) = mem.swap() {
                // Docker's memory-swap is memory+swap; v2 wants swap alone (-1 = unlimited).
                let v = if swap < 0 {
                    "max".to_string()
                } else {
                    (swap - limit).max(0).to_string()
                };
                out.push(("memory.swap.max", v));
            }
        }
        if let Some(res) = mem.reservation().filter(|r| *r > 0) {
            out.push(("memory.low", res.to_string()));
        }
    }
    if let Some(pids) = res.pids() {
        let v = if pids.limit() > 0 {
            pids.limit().to_string()
        } else {
            "max".into()
        };
        out.push(("pids.max", v));
    }
    if let Some(bio) = res.block_io() {
        // runc's conversion from blkio weight (10..1000) to io.weight (1..10000).
        let weight = |w: u16| 1 + (u64::from(w.clamp(10, 1000)) - 10) * 9999 / 990;
        if let Some(w) = bio.weight().filter(|w| *w > 0) {
            out.push(("io.weight", format!("default {}", weight(w))));
        }
        for d in bio.weight_device().iter().flatten() {
            if let Some(w) = d.weight().filter(|w| *w > 0) {
                out.push((
                    "io.weight",
                    format!("{}:{} {}", d.major(), d.minor(), weight(w)),
                ));
            }
        }
        let throttles = [
            (bio.throttle_read_bps_device(), "rbps"),
            (bio.throttle_write_bps_device(), "wbps"),
            (bio.throttle_read_iops_device(), "riops"),
            (bio.throttle_write_iops_device(), "wiops"),
        ];
        for (devices, key) in throttles {
            for d in devices.iter().flatten() {
                out.push((
                    "io.max",
                    format!("{}:{} {key}={}", d.major(), d.minor(), d.rate()),
                ));
            }
        }
    }
    for (k, v) in res.unified().iter().flatten() {
        // Keys come from the spec; only plain file names are accepted.
        if !k.contains('/') && !k.starts_with('.') {
            out.push((leak_name(k), v.clone()));
        }
    }
    out
}

fn leak_name(k: &str) -> &'static str {
    // Unified keys are few and per container; a tiny leak keeps the return type simple.
    Box::leak(k.to_string().into_boxed_str())
}

/// Creates the cgroup directory `dir` and applies the limits.
pub fn create_in(dir: &Path, res: Option<&LinuxResources>) -> Result<(), CgroupError> {
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_err("creating cgroup", dir)(e)),
    }
    if let Some(res) = res {
        for (file, value) in limit_files(res) {
            let p = dir.join(file);
            // memory.swap.max is absent without swap accounting and io.weight without an io
            // scheduler that weighs; the other files always exist with their controller.
            if (file == "memory.swap.max" || file == "io.weight") && !p.exists() {
                crate::warn!("{file} is not available in this kernel; not limiting it");
                continue;
            }
            fs::write(&p, &value).map_err(io_err("writing", &p))?;
        }
    }
    Ok(())
}

/// The pids in a cgroup.
pub fn pids(dir: &Path) -> Vec<i32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Freezes (or thaws) every process of the cgroup through cgroup v2's freezer, and waits
/// until `cgroup.events` reports `frozen 1` (or `frozen 0`): writing `cgroup.freeze` only asks,
/// the kernel settles each task at its next return to user space.
pub fn freeze(dir: &Path, frozen: bool, timeout: std::time::Duration) -> Result<(), CgroupError> {
    let want = if frozen { "1" } else { "0" };
    let file = dir.join("cgroup.freeze");
    fs::write(&file, want).map_err(io_err("writing", &file))?;
    let events = dir.join("cgroup.events");
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let content = fs::read_to_string(&events).map_err(io_err("reading", &events))?;
        if events_frozen(&content) == Some(frozen) {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(CgroupError::FreezeTimeout {
                path: dir.display().to_string(),
                state: if frozen { "frozen" } else { "thawed" },
                millis: timeout.as_millis(),
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// The `frozen` key of a `cgroup.events` file.
pub fn events_frozen(content: &str) -> Option<bool> {
    content
        .lines()
        .find_map(|l| l.strip_prefix("frozen "))
        .map(|v| v.trim() == "1")
}

/// Kills everything in the cgroup (cgroup.kill when the kernel has it) and removes it.
pub fn destroy(dir: &Path) -> Result<(), CgroupError> {
    if !dir.exists() {
        return Ok(());
    }
    let kill = dir.join("cgroup.kill");
    if fs::write(&kill, "1").is_err() {
        for pid in pids(dir) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    let mut last = None;
    for _ in 0..100 {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Err(io_err("removing cgroup", dir)(
        last.unwrap_or_else(|| io::Error::other("busy")),
    ))
}

/// Counters of one cgroup.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Usage {
    pub cpu_usec: u64,
    pub memory: u64,
    pub memory_limit: u64,
    pub pids: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
}

fn key_value(content: &str, key: &str) -> u64 {
    content
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Parses io.stat: sums rbytes and wbytes over devices.
pub fn parse_io_stat(content: &str) -> (u64, u64) {
    let mut r = 0;
    let mut w = 0;
    for field in content.split_whitespace() {
        if let Some(v) = field.strip_prefix("rbytes=") {
            r += v.parse::<u64>().unwrap_or(0);
        } else if let Some(v) = field.strip_prefix("wbytes=") {
            w += v.parse::<u64>().unwrap_or(0);
        }
    }
    (r, w)
}

/// Reads the counters of `dir`.
pub fn usage(dir: &Path) -> Result<Usage, CgroupError> {
    let read = |f: &str| -> Result<String, CgroupError> {
        let p = dir.join(f);
        match fs::read_to_string(&p) {
            Ok(s) => Ok(s),
            Err(e) if e.kind() == io::ErrorKind::NotFound && f != "cgroup.procs" => {
                Ok(String::new())
            }
            Err(e) => Err(io_err("reading", &p)(e)),
        }
    };
    read("cgroup.procs")?;
    let num = |s: String| s.trim().parse::<u64>().unwrap_or(0);
    let (read_bytes, write_bytes) = parse_io_stat(&read("io.stat")?);
    Ok(Usage {
        cpu_usec: key_value(&read("cpu.stat")?, "usage_usec"),
        memory: num(read("memory.current")?),
        memory_limit: num(read("memory.max")?),
        pids: num(read("pids.current")?),
        read_bytes,
        write_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_freezer_state_is_read_from_cgroup_events() {
        assert_eq!(events_frozen("populated 1\nfrozen 1\n"), Some(true));
        assert_eq!(events_frozen("populated 1\nfrozen 0\n"), Some(false));
        assert_eq!(events_frozen("populated 1\n"), None);
    }

    #[test]
    fn limits_from_docker_style_resources() {
        let res: LinuxResources = serde_json::from_str(
            r#"{"cpu":{"quota":150000,"period":100000,"shares":1024},"memory":{"limit":268435456,"swap":536870912},"pids":{"limit":100}}"#,
        )
        .unwrap();
        let files = limit_files(&res);
        assert!(files.contains(&("cpu.max", "150000 100000".into())));
        assert!(files.contains(&("cpu.weight", "39".into())));
        assert!(files.contains(&("memory.max", "268435456".into())));
        assert!(files.contains(&("memory.swap.max", "268435456".into())));
        assert!(files.contains(&("pids.max", "100".into())));
        let io: LinuxResources = serde_json::from_str(
            r#"{"blockIO":{"weight":500,"weightDevice":[{"major":254,"minor":0,"weight":10}],
                "throttleReadBpsDevice":[{"major":254,"minor":0,"rate":1048576}],
                "throttleWriteIOPSDevice":[{"major":254,"minor":16,"rate":100}]}}"#,
        )
        .unwrap();
        assert_eq!(
            limit_files(&io),
            vec![
                ("io.weight", "default 4950".to_string()),
                ("io.weight", "254:0 1".to_string()),
                ("io.max", "254:0 rbps=1048576".to_string()),
                ("io.max", "254:16 wiops=100".to_string()),
            ]
        );
        let none: LinuxResources = serde_json::from_str("{}").unwrap();
        assert!(limit_files(&none).is_empty());
    }

    #[test]
    fn stat_parsing() {
        assert_eq!(
            key_value("usage_usec 1234\nuser_usec 1000\n", "usage_usec"),
            1234
        );
        assert_eq!(key_value("usage_usecx 1\n", "usage_usec"), 0);
        let io =
            "254:0 rbytes=4096 wbytes=8192 rios=1 wios=2\n254:16 rbytes=1 wbytes=2 rios=1 wios=1\n";
        assert_eq!(parse_io_stat(io), (4097, 8194));
    }

    #[test]
    fn usage_of_a_cgroup_like_directory() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("cgroup.procs"), "1\n2\n").unwrap();
        fs::write(d.path().join("cpu.stat"), "usage_usec 99\n").unwrap();
        fs::write(d.path().join("memory.current"), "4096\n").unwrap();
        fs::write(d.path().join("memory.max"), "max\n").unwrap();
        let u = usage(d.path()).unwrap();
        assert_eq!(
            (u.cpu_usec, u.memory, u.memory_limit, u.pids),
            (99, 4096, 0, 0)
        );
        assert_eq!(pids(d.path()), vec![1, 2]);
        assert!(usage(&d.path().join("missing")).is_err());
    }
}
