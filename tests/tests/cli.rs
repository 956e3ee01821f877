//! End to end: the real `container` binary against a real `container-apiserver`, which runs
//! every container in a real VM through `container-runtime`. Each test owns a daemon on its
//! own app root and stops it (and everything it started) when done.
//!
//! The binaries are the workspace's own debug builds (`cargo nextest run --workspace` builds
//! them beside the test executables); the daemon boots the guest `cargo xtask guest`
//! published in `target/share/container/` and the busybox image comes from
//! `$CONTAINER_TEST_IMAGES`.

use container_tests::daemon::Daemon;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn run_prints_and_returns_the_exit_code() {
    let Some(d) = Daemon::start("run") else {
        return;
    };
    assert_eq!(d.ok(&["run", "--rm", "busybox", "echo", "hi"]), "hi\n");
    let out = d.run(&[
        "run",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    // --rm left nothing; the second container stays listed as stopped.
    let all = d.ok(&["ls", "-a", "-q"]);
    assert_eq!(all.lines().count(), 1, "{all}");
}

#[test]
fn network_none_shows_only_loopback() {
    let Some(d) = Daemon::start("nonet") else {
        return;
    };
    // Docker shows only lo; a kernel with IPv6-in-IPv4 tunnels would add sit0 to every
    // network namespace.
    let out = d.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "ls",
        "/sys/class/net",
    ]);
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["lo"], "{out}");
}

#[test]
fn detached_container_lifecycle() {
    let Some(d) = Daemon::start("web") else {
        return;
    };
    d.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "busybox",
        "sh",
        "-c",
        "echo started; exec httpd -f -p 80",
    ]);
    let ls = d.ok(&["ls"]);
    let row = ls
        .lines()
        .find(|l| l.starts_with("web "))
        .unwrap_or_else(|| panic!("{ls}"));
    assert!(row.contains("running"), "{row}");
    let hostname = d.ok(&["exec", "web", "cat", "/etc/hostname"]);
    assert!(!hostname.trim().is_empty());
    assert!(d.ok(&["logs", "web"]).contains("started"));
    let id = d.ok(&["inspect", "web"]);
    let inspect: serde_json::Value = serde_json::from_str(&id).expect("inspect prints JSON");
    let id = inspect[0]["id"]
        .as_str()
        .or(inspect["id"].as_str())
        .unwrap_or_default()
        .to_owned();
    // httpd as PID 1 ignores SIGTERM: stop must fall back to SIGKILL after the timeout.
    let start = Instant::now();
    d.ok(&["stop", "-t", "2", "web"]);
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "stop took {:?}",
        start.elapsed()
    );
    let ls = d.ok(&["ls", "-a"]);
    assert!(
        ls.lines()
            .any(|l| l.starts_with("web ") && l.contains("stopped")),
        "{ls}"
    );
    d.ok(&["rm", "web"]);
    assert!(!d.ok(&["ls", "-a"]).contains("web"));
    if !id.is_empty() {
        assert!(
            !d.root.join("containers").join(&id).exists(),
            "files of {id} left behind"
        );
    }
}

#[test]
fn stdin_is_piped_through() {
    let Some(d) = Daemon::start("stdin") else {
        return;
    };
    let mut child = d
        .cmd(&["run", "-i", "--rm", "busybox", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"data\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "data\n");
}

#[test]
fn terminal_session_sees_the_window_size() {
    let Some(d) = Daemon::start("tty") else {
        return;
    };
    // `script` gives the CLI a real pseudo-terminal whose size we set first.
    let line = format!(
        "stty rows 33 cols 120; {} run -it --rm busybox stty size",
        d.bin.join("container").display()
    );
    let out = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env("CONTAINER_APP_ROOT", &d.root)
        .env("CONTAINER_REGISTRY_MIRROR", &d.mirror)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("33 120"), "{text:?}");
}

#[test]
fn resources_are_visible_inside() {
    let Some(d) = Daemon::start("res") else {
        return;
    };
    let out = d.ok(&[
        "run",
        "--rm",
        "--cpus",
        "2",
        "--memory",
        "512m",
        "busybox",
        "sh",
        "-c",
        "nproc; cat /sys/fs/cgroup/memory.max",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, ["2", "536870912"], "{out}");
}

#[test]
fn container_survives_a_daemon_crash() {
    let Some(d) = Daemon::start("crash") else {
        return;
    };
    d.ok(&[
        "run",
        "-d",
        "--name",
        "ticker",
        "busybox",
        "sh",
        "-c",
        "i=0; while true; do echo line$i; i=$((i+1)); sleep 0.2; done",
    ]);
    std::thread::sleep(Duration::from_secs(2));
    let pid = d.apiserver_pid();
    assert!(
        Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    std::thread::sleep(Duration::from_secs(1));
    d.ok(&["system", "start"]);
    let ls = d.ok(&["ls"]);
    assert!(
        ls.lines()
            .any(|l| l.starts_with("ticker ") && l.contains("running")),
        "{ls}"
    );
    let logs = d.ok(&["logs", "ticker"]);
    let numbers: Vec<u32> = logs
        .lines()
        .map(|l| {
            l.strip_prefix("line")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{l:?}"))
        })
        .collect();
    assert!(numbers.len() >= 10, "{logs}");
    assert!(
        numbers.iter().enumerate().all(|(i, n)| *n == i as u32),
        "logs are not whole: {logs}"
    );
    d.ok(&["stop", "-t", "2", "ticker"]);
    assert!(
        d.ok(&["ls", "-a"])
            .lines()
            .any(|l| l.starts_with("ticker ") && l.contains("stopped"))
    );
}

#[test]
fn bad_input_is_one_line_and_leaves_nothing() {
    let Some(d) = Daemon::start("bad") else {
        return;
    };
    d.fails(&["run", "--rm", "no-such-image-here"], 125);
    d.fails(&["run", "--rm", "-p", "80:x", "busybox", "true"], 125);
    d.fails(
        &["run", "--rm", "-v", "relative:path", "busybox", "true"],
        125,
    );
    d.fails(&["run", "--rm", "--memory", "12x", "busybox", "true"], 125);
    d.fails(&["run", "--rm", "busybox", "no-such-program"], 127);
    d.fails(&["run", "--rm", "busybox", "/etc/passwd"], 126);
    assert_eq!(d.ok(&["ls", "-a", "-q"]), "", "failed runs left containers");
    d.ok(&["create", "--name", "dup", "busybox", "true"]);
    d.fails(&["create", "--name", "dup", "busybox", "true"], 125);
    let err = d.fails(&["exec", "dup", "true"], 125);
    assert!(err.contains("dup"), "{err}");
    d.ok(&["run", "-d", "--name", "busy", "busybox", "sleep", "1000"]);
    let err = d.run(&["rm", "busy"]);
    assert!(!err.status.success());
    assert_eq!(
        String::from_utf8_lossy(&err.stderr).trim().lines().count(),
        1
    );
    d.ok(&["rm", "-f", "busy"]);
    let left = d.ok(&["ls", "-a", "-q"]);
    assert_eq!(left.lines().count(), 1, "{left}");
}

#[test]
fn logs_follow_streams_what_is_appended_until_the_container_stops() {
    let Some(d) = Daemon::start("follow") else {
        return;
    };
    d.ok(&[
        "run",
        "-d",
        "--name",
        "talker",
        "busybox",
        "sh",
        "-c",
        "echo before; sleep 3; echo after1; sleep 1; echo after2; sleep 1",
    ]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = d.ok(&["logs", "talker"]);
    while !seen.contains("before") {
        assert!(Instant::now() < deadline, "the container printed nothing");
        std::thread::sleep(Duration::from_millis(100));
        seen = d.ok(&["logs", "talker"]);
    }
    // Following starts mid-stream: what comes next is only appended after this point.
    assert!(
        !seen.contains("after2"),
        "the test started too late: {seen}"
    );
    let out = d.run(&["logs", "-f", "talker"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every line once, in order, and `logs -f` returned because the container ended.
    assert_eq!(text, "before\nafter1\nafter2\n");
    let ls = d.ok(&["ls", "-a"]);
    assert!(
        ls.lines()
            .any(|l| l.starts_with("talker ") && l.contains("stopped")),
        "{ls}"
    );
    assert_eq!(d.ok(&["logs", "-n", "1", "talker"]), "after2\n");
}
