//! End to end, the warm pool (crates/apiserver/src/pool.rs): a daemon with pre-booted guests,
//! real VMs. A container started from the pool behaves like one booted for it, a claimed
//! guest serves one container only, a pooled runtime killed with SIGKILL loses no container
//! and is replaced, and `system stop` powers every pooled guest off.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use container_tests::daemon::Daemon;

/// The VM shape of every container here; the pool learns it from the first start.
const SMALL: [&str; 4] = ["--cpus", "1", "--memory", "256m"];

/// The pool's slot directories whose guest is ready (`claim.sock` bound).
fn ready_slots(root: &Path) -> Vec<PathBuf> {
    let mut ready: Vec<PathBuf> = std::fs::read_dir(root.join("pool"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.join("claim.sock").exists())
                .collect()
        })
        .unwrap_or_default();
    ready.sort();
    ready
}

/// Waits until `n` pooled guests are ready; returns their slots.
fn wait_ready(d: &Daemon, n: usize) -> Vec<PathBuf> {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let ready = ready_slots(&d.root);
        if ready.len() >= n {
            return ready;
        }
        assert!(
            Instant::now() < deadline,
            "{n} pooled guests were not ready within 180s; status:\n{}",
            d.ok(&["system", "status"])
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Pids of the processes whose command line names `dir` (a slot's runtime and its VM).
fn pids_naming(dir: &Path) -> Vec<i32> {
    let needle = dir.to_string_lossy().into_owned();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&needle) {
            pids.push(pid);
        }
    }
    pids
}

/// The id of container `name`, from `inspect`.
fn id_of(d: &Daemon, name: &str) -> String {
    let out = d.ok(&["inspect", name]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("inspect prints json");
    v[0]["id"].as_str().expect("an id").to_owned()
}

/// The runtime log of container `name`: says whether its VM came from the pool.
fn runtime_log(d: &Daemon, name: &str) -> String {
    let id = id_of(d, name);
    let path = d.root.join("containers").join(id).join("runtime.log");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn run_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["run"];
    args.extend(SMALL);
    args.extend(extra);
    args
}

#[test]
fn pooled_guest_serves_one_container_as_a_cold_one_would() {
    let Some(d) = Daemon::start_with_pool("pool1", 1) else {
        return;
    };
    // Cold: the pool has not seen this shape yet.
    let script = "echo out; echo err >&2; grep ' / ' /proc/mounts | cut -d' ' -f3; echo data > /f; cat /f; exit 3";
    let cold = d.run(&run_args(&[
        "--name", "cold", "busybox", "sh", "-c", script,
    ]));
    assert_eq!(cold.status.code(), Some(3), "{cold:?}");
    let slots = wait_ready(&d, 1);

    let pooled = d.run(&run_args(&[
        "--name", "warm", "busybox", "sh", "-c", script,
    ]));
    assert_eq!(pooled.status.code(), Some(3), "{pooled:?}");
    // The same output as the cold one: an overlay root it can write, stderr apart.
    for (name, out) in [("cold", &cold), ("warm", &pooled)] {
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "out\noverlay\ndata\n",
            "{name}"
        );
        assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n", "{name}");
    }
    assert!(String::from_utf8_lossy(&pooled.stderr).contains("err\n"));
    assert!(
        runtime_log(&d, "warm").contains("claimed from the pool"),
        "the second start did not use the pool:\n{}",
        runtime_log(&d, "warm")
    );
    assert!(!runtime_log(&d, "cold").contains("claimed from the pool"));
    // The claimed slot left the pool: its guest is the container's now.
    assert!(!slots[0].join("claim.sock").exists());

    // A claimed guest serves one container: the next start takes a new guest (or boots
    // cold while the pool refills), and the two do not share a file system.
    let slots = wait_ready(&d, 1);
    d.ok(&run_args(&["-d", "--name", "a", "busybox", "sleep", "600"]));
    d.ok(&run_args(&["-d", "--name", "b", "busybox", "sleep", "600"]));
    assert!(runtime_log(&d, "a").contains("claimed from the pool"));
    assert!(!slots[0].join("claim.sock").exists());
    d.ok(&["exec", "a", "sh", "-c", "echo mine > /only-a"]);
    assert_eq!(d.ok(&["exec", "a", "cat", "/only-a"]), "mine\n");
    let b = d.run(&["exec", "b", "cat", "/only-a"]);
    assert_ne!(b.status.code(), Some(0), "b sees a's file: {b:?}");
    // Its own name and MAC (Docker's: 02:42 and the id's first bytes), not the pooled
    // guest's.
    for name in ["a", "b"] {
        let id = id_of(&d, name);
        assert_eq!(
            d.ok(&["exec", name, "hostname"]),
            format!("{}\n", &id[..12])
        );
        let mac = format!(
            "02:42:{}:{}:{}:{}\n",
            &id[0..2],
            &id[2..4],
            &id[4..6],
            &id[6..8]
        );
        assert_eq!(
            d.ok(&["exec", name, "cat", "/sys/class/net/eth0/address"]),
            mac,
            "{name}"
        );
    }
    d.ok(&["rm", "-f", "a", "b"]);
}

#[test]
fn a_killed_pooled_runtime_loses_no_container_and_is_replaced() {
    let Some(d) = Daemon::start_with_pool("pool2", 1) else {
        return;
    };
    d.ok(&run_args(&["--rm", "busybox", "true"]));
    let slot = wait_ready(&d, 1).remove(0);
    let pids = pids_naming(&slot);
    assert!(!pids.is_empty(), "no process names {}", slot.display());
    let kill = std::process::Command::new("kill")
        .arg("-KILL")
        .args(pids.iter().map(|p| p.to_string()))
        .status()
        .expect("kill runs");
    assert!(kill.success(), "kill -KILL {pids:?}");
    // The start right after the crash still runs its container.
    assert_eq!(
        d.ok(&run_args(&["--rm", "busybox", "echo", "still-here"])),
        "still-here\n"
    );
    // And the pool boots a replacement.
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let ready = ready_slots(&d.root);
        if ready.iter().any(|s| *s != slot) {
            break;
        }
        assert!(Instant::now() < deadline, "the pool was not refilled");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!slot.exists(), "the dead slot was left behind");
}

#[test]
fn system_stop_powers_the_pool_off() {
    let Some(d) = Daemon::start_with_pool("pool3", 2) else {
        return;
    };
    d.ok(&run_args(&["--rm", "busybox", "true"]));
    let slots = wait_ready(&d, 2);
    let status = d.ok(&["system", "status"]);
    assert!(status.contains("pool"), "{status}");
    let pids: Vec<i32> = slots.iter().flat_map(|s| pids_naming(s)).collect();
    assert!(
        pids.len() >= 4,
        "expected a runtime and a qemu per slot: {pids:?}"
    );
    d.ok(&["system", "stop"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let alive: Vec<i32> = pids
            .iter()
            .copied()
            .filter(|p| Path::new(&format!("/proc/{p}")).exists())
            .collect();
        if alive.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pooled processes outlived system stop: {alive:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for slot in &slots {
        assert!(!slot.exists(), "{} left behind", slot.display());
    }
}
