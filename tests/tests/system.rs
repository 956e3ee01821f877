//! End to end, the daemon as a whole: who may read its app root, what `system stop` does to
//! running containers, and which guest kernel it boots and reports. Real daemon, real VMs,
//! as in cli.rs.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use container_tests::daemon::{Daemon, share_dir};

/// Small, single-CPU VMs: these tests are about the daemon, not compute.
const SMALL: [&str; 4] = ["--cpus", "1", "--memory", "256m"];

/// Every path under `root` whose mode lets a group or other user in: directories must be
/// 0700, everything else (files, sockets) must have no group or other bits. Symbolic links
/// carry no mode of their own and are skipped. Returns the offenders and every file seen.
fn open_paths(root: &Path) -> (Vec<String>, Vec<PathBuf>) {
    let mut bad = Vec::new();
    let mut seen = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue; // removed while we walked (temp files)
        };
        let mode = meta.permissions().mode() & 0o7777;
        let kind = meta.file_type();
        if kind.is_symlink() {
            continue;
        }
        if kind.is_dir() {
            if mode != 0o700 {
                bad.push(format!("{:o} {}/", mode, path.display()));
            }
            if let Ok(entries) = std::fs::read_dir(&path) {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        } else {
            if mode & 0o077 != 0 {
                bad.push(format!("{:o} {}", mode, path.display()));
            }
            seen.push(path);
        }
    }
    (bad, seen)
}

#[test]
fn app_root_of_a_running_container_is_private() {
    let Some(d) = Daemon::start("perm") else {
        return;
    };
    d.ok(&["volume", "create", "pv"]);
    let mut args = vec!["run", "-d", "--name", "p", "-v", "pv:/data"];
    args.extend(SMALL);
    args.extend([
        "busybox",
        "sh",
        "-c",
        "echo secret > /data/f; echo secret-out; sleep 600",
    ]);
    d.ok(&args);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !d.ok(&["logs", "p"]).contains("secret-out") {
        assert!(Instant::now() < deadline, "the container printed nothing");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (bad, seen) = open_paths(&d.root);
    // The walk really reached the container's data: its output, state, disks and sockets.
    for name in [
        "apiserver.log",
        "stdio.log",
        "state.json",
        "rootfs.ext4",
        "runtime.sock",
        "qmp.sock",
        "volume.ext4",
        "network.json",
    ] {
        assert!(
            seen.iter()
                .any(|p| p.file_name().is_some_and(|n| n == name)),
            "no {name} under {}: {seen:#?}",
            d.root.display()
        );
    }
    assert!(
        bad.is_empty(),
        "readable by others under {}:\n{}",
        d.root.display(),
        bad.join("\n")
    );
    d.ok(&["rm", "-f", "p"]);
}

#[test]
fn system_stop_stops_running_containers_gracefully() {
    let Some(d) = Daemon::start("sstop") else {
        return;
    };
    // It handles its stop signal (SIGTERM) by saying so and exiting 3: a graceful stop is
    // quick and leaves that trace. Without the trap, PID 1 would ignore SIGTERM and only the
    // timeout's SIGKILL would end it (137).
    let mut args = vec!["run", "-d", "--name", "s"];
    args.extend(SMALL);
    args.extend([
        "busybox",
        "sh",
        "-c",
        "trap 'echo graceful; exit 3' TERM; echo up; while true; do sleep 1; done",
    ]);
    d.ok(&args);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !d.ok(&["logs", "s"]).contains("up") {
        assert!(Instant::now() < deadline, "the container printed nothing");
        std::thread::sleep(Duration::from_millis(200));
    }
    let inspect: serde_json::Value =
        serde_json::from_str(&d.ok(&["inspect", "s"])).expect("inspect prints JSON");
    let id = inspect[0]["id"]
        .as_str()
        .or(inspect["id"].as_str())
        .expect("an id")
        .to_owned();
    let bundle = d.root.join("containers").join(&id);
    let state = |bundle: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(bundle.join("state.json")).expect("state.json"))
            .expect("state.json is JSON")
    };
    let runtime_pid = state(&bundle)["runtime_pid"].as_i64().expect("runtime_pid");
    assert!(runtime_pid > 0);

    let start = Instant::now();
    assert_eq!(d.ok(&["system", "stop"]), "container daemon stopped\n");
    // Its stop signal worked: well inside the 10 s default timeout.
    assert!(
        start.elapsed() < Duration::from_secs(9),
        "system stop took {:?}",
        start.elapsed()
    );
    // The container's runtime (and so its VM) ends too, after its short linger.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{runtime_pid}")).exists() {
        assert!(
            Instant::now() < deadline,
            "container-runtime {runtime_pid} still runs 10s after system stop"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let after = state(&bundle);
    assert_eq!(after["status"], "stopped", "{after}");
    assert_eq!(after["exit_code"], 3, "{after}");

    d.ok(&["system", "start"]);
    let ls = d.ok(&["ls", "-a"]);
    let row = ls
        .lines()
        .find(|l| l.starts_with("s "))
        .unwrap_or_else(|| panic!("{ls}"));
    assert!(row.contains("stopped"), "{row}");
    assert!(d.ok(&["ls", "-q"]).trim().is_empty(), "nothing runs");
    let logs = d.ok(&["logs", "s"]);
    assert_eq!(logs, "up\ngraceful\n");
    let inspect: serde_json::Value =
        serde_json::from_str(&d.ok(&["inspect", "s"])).expect("inspect prints JSON");
    let text = inspect.to_string();
    assert!(text.contains("\"exitCode\":3"), "{text}");
}

#[test]
fn version_shows_the_guest_kernel_and_kernel_set_keeps_its_build_info() {
    let Some(d) = Daemon::start("kver") else {
        return;
    };
    let share = share_dir(&d.bin);
    let info: serde_json::Value = serde_json::from_slice(
        &std::fs::read(share.join("vmlinux.info.json")).expect("cargo xtask guest publishes it"),
    )
    .expect("build info is JSON");
    let package_version = info["package_version"].as_str().expect("package_version");
    assert!(!package_version.is_empty());

    let kernel_row = |d: &Daemon| -> serde_json::Value {
        let all: serde_json::Value =
            serde_json::from_str(&d.ok(&["system", "version", "--format", "json"]))
                .expect("version prints JSON");
        all.as_array()
            .and_then(|rows| rows.iter().find(|r| r["appName"] == "guest-kernel"))
            .cloned()
            .unwrap_or_else(|| panic!("no guest-kernel row: {all}"))
    };
    // Booted from the installation's share directory, with its build info.
    let row = kernel_row(&d);
    assert_eq!(row["packageVersion"], package_version);
    assert_eq!(row["sourcePackage"], info["source_package"]);
    assert_eq!(row["tarballSha256"], info["tarball_sha256"]);
    assert_eq!(row["configSha256"], info["config_sha256"]);
    let path = row["path"].as_str().expect("path");
    assert_eq!(Path::new(path), share.join("vmlinux"));
    let table = d.ok(&["system", "version"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("guest-kernel") && l.contains(package_version)),
        "{table}"
    );

    // `kernel set` installs it into the app root, build info included, and it then wins.
    let kernel = share.join("vmlinux");
    d.ok(&[
        "system",
        "kernel",
        "set",
        "--binary",
        kernel.to_str().expect("utf-8 path"),
    ]);
    let row = kernel_row(&d);
    let installed = Path::new(row["path"].as_str().expect("path")).to_path_buf();
    assert!(installed.starts_with(d.root.join("kernels")), "{row}");
    assert_eq!(row["packageVersion"], package_version);
    let meta = std::fs::metadata(&installed).expect("installed kernel");
    assert_eq!(meta.mode() & 0o777, 0o600);
    assert_eq!(
        d.ok(&["run", "--rm", "busybox", "echo", "booted"]),
        "booted\n"
    );
}
