//! End to end, many containers at once (issue 16): `stop --all` stops every running
//! container and their VMs end, `ls` is right after a runtime dies under it, and
//! `system df` reports the warm pool. Real daemons, real VMs.

use std::path::Path;
use std::time::{Duration, Instant};

use container_tests::daemon::Daemon;

/// The VM shape of every container here: small, so several fit beside the other tests.
const SMALL: [&str; 4] = ["--cpus", "1", "--memory", "256m"];

/// Starts `busybox sleep` containers named `names`, detached.
fn run_idle(d: &Daemon, names: &[&str]) {
    for name in names {
        let mut args = vec!["run", "-d", "--name", name];
        args.extend(SMALL);
        args.extend(["busybox", "sleep", "3600"]);
        d.ok(&args);
    }
}

/// The id of container `name`, from `inspect`.
fn id_of(d: &Daemon, name: &str) -> String {
    let out = d.ok(&["inspect", name]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("inspect prints json");
    v[0]["id"].as_str().expect("an id").to_owned()
}

/// The runtime's own record of container `name` (`state.json` in its bundle).
fn runtime_state(d: &Daemon, name: &str) -> serde_json::Value {
    let path = d
        .root
        .join("containers")
        .join(id_of(d, name))
        .join("state.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("state.json is json")
}

/// `(state, exit code)` of every container `ls -a` lists, by name.
fn listed(d: &Daemon) -> std::collections::BTreeMap<String, (String, i64)> {
    let out = d.ok(&["ls", "-a", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("ls prints json");
    v.as_array()
        .expect("an array")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().expect("a name").to_owned(),
                (
                    c["status"]["state"].as_str().expect("a state").to_owned(),
                    c["status"]["exitCode"].as_i64().expect("an exit code"),
                ),
            )
        })
        .collect()
}

fn alive(pid: u64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn stop_all_stops_every_running_container_and_ends_their_vms() {
    let Some(d) = Daemon::start("stopall") else {
        return;
    };
    let names = ["s1", "s2", "s3", "s4"];
    run_idle(&d, &names);
    // A created container is not running: `stop --all` leaves it alone.
    d.ok(&["create", "--name", "never", "busybox", "true"]);
    let mut vm_pids = Vec::new();
    for name in names {
        let pids: Vec<u64> = runtime_state(&d, name)["vm_pids"]
            .as_array()
            .expect("vm_pids")
            .iter()
            .map(|p| p.as_u64().expect("a pid"))
            .collect();
        assert!(!pids.is_empty(), "{name} has no VM process");
        assert!(pids.iter().all(|p| alive(*p)), "{name}: {pids:?}");
        vm_pids.extend(pids);
    }
    // busybox sleep as pid 1 ignores SIGTERM: each one is killed after its -t.
    let out = d.ok(&["stop", "--all", "-t", "1"]);
    let mut printed: Vec<&str> = out.lines().collect();
    printed.sort_unstable();
    let mut ids: Vec<String> = names.iter().map(|n| id_of(&d, n)).collect();
    ids.sort_unstable();
    assert_eq!(
        printed, ids,
        "stop --all prints each stopped container once"
    );
    let after = listed(&d);
    for name in names {
        assert_eq!(
            after[name],
            ("stopped".to_owned(), 137),
            "{name} after stop --all: {after:?}"
        );
        assert_eq!(runtime_state(&d, name)["status"], "stopped", "{name}");
    }
    assert_eq!(after["never"].0, "created", "{after:?}");
    assert_eq!(d.ok(&["ls", "-q"]), "", "nothing runs after stop --all");
    // Their VMs are gone when the command returns (the runtime powers the guest off before
    // it reports the end); allow a moment for the kernel to reap the processes.
    let deadline = Instant::now() + Duration::from_secs(5);
    while vm_pids.iter().any(|p| alive(*p)) {
        assert!(
            Instant::now() < deadline,
            "VM processes outlived stop --all: {:?}",
            vm_pids.iter().filter(|p| alive(**p)).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // And a second `stop --all` has nothing to do.
    assert_eq!(d.ok(&["stop", "--all"]), "");
    d.ok(&["rm", "--all"]);
    // This daemon has no pool: `system df` says so in its Pool row, with no pool line.
    let table = d.ok(&["system", "df"]);
    let row: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with("Pool "))
        .unwrap_or_else(|| panic!("no Pool row:\n{table}"))
        .split_whitespace()
        .collect();
    assert_eq!(
        row,
        ["Pool", "0", "0", "0", "B", "0", "B", "(0%)"],
        "{table}"
    );
    assert!(!table.contains("Pool: "), "{table}");
}

#[test]
fn ls_shows_a_container_whose_runtime_was_killed_as_exited() {
    let Some(d) = Daemon::start("lskill") else {
        return;
    };
    run_idle(&d, &["victim", "bystander"]);
    let state = runtime_state(&d, "victim");
    let runtime = state["runtime_pid"].as_u64().expect("runtime_pid");
    let vm: Vec<u64> = state["vm_pids"]
        .as_array()
        .expect("vm_pids")
        .iter()
        .map(|p| p.as_u64().expect("a pid"))
        .collect();
    let mut running: Vec<String> = d.ok(&["ls", "-q"]).lines().map(str::to_owned).collect();
    running.sort_unstable();
    let mut both = vec![
        id_of(&d, "victim")[..12].to_owned(),
        id_of(&d, "bystander")[..12].to_owned(),
    ];
    both.sort_unstable();
    assert_eq!(running, both);

    // The runtime dies without a word (and its VM with it, as after an OOM kill).
    let kill = std::process::Command::new("kill")
        .arg("-KILL")
        .arg(runtime.to_string())
        .args(vm.iter().map(|p| p.to_string()))
        .status()
        .expect("kill runs");
    assert!(kill.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        let now = listed(&d);
        if now["victim"].0 != "running" {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "ls still shows the killed container running: {now:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(after["victim"].0, "stopped", "{after:?}");
    assert_ne!(after["victim"].1, 0, "a killed runtime is no clean exit");
    assert_eq!(after["bystander"], ("running".to_owned(), -1), "{after:?}");
    assert_eq!(
        d.ok(&["ls", "-q"]).trim(),
        &id_of(&d, "bystander")[..12],
        "only the bystander runs"
    );
    let inspect: serde_json::Value =
        serde_json::from_str(&d.ok(&["inspect", "victim"])).expect("json");
    assert_eq!(inspect[0]["status"]["state"], "stopped", "{inspect}");
    d.ok(&["rm", "-f", "victim", "bystander"]);
}

#[test]
fn system_df_shows_the_warm_pool() {
    let Some(d) = Daemon::start_with_pool("dfpool", 1) else {
        return;
    };
    // The pool learns its shape from the first start, then boots a guest of it.
    let mut args = vec!["run", "--rm"];
    args.extend(SMALL);
    args.extend(["busybox", "true"]);
    d.ok(&args);
    let deadline = Instant::now() + Duration::from_secs(180);
    let json = loop {
        let out = d.ok(&["system", "df", "-v", "--format", "json"]);
        let v: serde_json::Value = serde_json::from_str(out.trim()).expect("df prints json");
        if v["pool"]["ready"] == 1 && v["pool"]["booting"] == 0 {
            break v;
        }
        assert!(Instant::now() < deadline, "the pool did not fill: {v}");
        std::thread::sleep(Duration::from_millis(300));
    };
    let pool = &json["pool"];
    assert_eq!(pool["size"], 1, "{json}");
    // 256 MiB for the container and the guest's own overhead on top.
    assert!(
        pool["memoryMiB"].as_u64().expect("memoryMiB") >= 256,
        "{json}"
    );
    let resident = pool["residentBytes"].as_u64().expect("residentBytes");
    assert!(resident > 10 << 20, "a booted guest holds memory: {json}");
    let guests = pool["guests"].as_array().expect("guests with -v");
    assert_eq!(guests.len(), 1, "{json}");
    let slot = guests[0]["slot"].as_str().expect("slot");
    assert!(
        d.root.join("pool").join(slot).join("claim.sock").exists(),
        "{slot} is not a ready slot of this pool"
    );
    assert_eq!(guests[0]["ready"], true);
    assert_eq!(guests[0]["cpus"], 1);
    let pid = guests[0]["pid"].as_u64().expect("pid");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("the slot's runtime runs");
    assert!(
        String::from_utf8_lossy(&cmdline).contains(slot),
        "pid {pid} is not the slot's runtime"
    );

    // The table: a Pool row (one guest, none in use) and the line saying what it holds.
    let table = d.ok(&["system", "df"]);
    let row: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with("Pool "))
        .unwrap_or_else(|| panic!("no Pool row:\n{table}"))
        .split_whitespace()
        .collect();
    assert_eq!(&row[1..3], ["1", "0"], "{table}");
    assert!(
        table.contains("Pool: 1 ready, 0 booting of 1 (container.pool.size);"),
        "{table}"
    );
    assert!(!table.contains(slot), "only -v lists the guests:\n{table}");
    let verbose = d.ok(&["system", "df", "-v"]);
    let line = verbose
        .lines()
        .find(|l| l.starts_with(slot))
        .unwrap_or_else(|| panic!("-v does not list {slot}:\n{verbose}"));
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&fields[1..4], ["ready", &pid.to_string(), "1"], "{verbose}");
}
