//! End to end: the Docker verbs of our own CLI (pause/unpause, rename, restart, wait, port,
//! top, attach, `ps`), the run flags `--hostname`, `--add-host`, `--stop-signal`, `-P` with
//! `--expose`, and `logs --since/--until/--timestamps`, with the real `container` binary
//! against a real daemon whose containers run in real VMs. Each check reads what a user sees:
//! a paused container's counter stops, the hostname and /etc/hosts inside, the port that
//! serves, the log lines a time selects.

use std::time::{Duration, Instant};

use container_tests::daemon::Daemon;
use container_tests::http_get;
use container_tests::unix_now_arg as now_arg;
use container_tests::wait_until;

/// The counter lines a container has printed so far.
fn count_lines(d: &Daemon, name: &str) -> usize {
    d.ok(&["logs", name])
        .lines()
        .filter(|l| l.starts_with("tick "))
        .count()
}

fn inspect(d: &Daemon, name: &str) -> serde_json::Value {
    let out = d.ok(&["inspect", name]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("inspect prints JSON");
    v[0].clone()
}

#[test]
fn pause_freezes_the_container_until_unpause_and_stop_thaws_it() {
    let Some(d) = Daemon::start("pause") else {
        return;
    };
    let t0 = now_arg();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "ctr",
        "busybox",
        "sh",
        "-c",
        "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done",
    ]);
    wait_until("the counter to run", || count_lines(&d, "ctr") >= 3);

    assert_eq!(d.ok(&["pause", "ctr"]).trim(), "ctr");
    let frozen = count_lines(&d, "ctr");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        count_lines(&d, "ctr"),
        frozen,
        "a paused container's counter must not advance"
    );
    // Seen as paused by ls (and its `ps` alias) and inspect.
    let ps = d.ok(&["ps"]);
    let row = ps
        .lines()
        .find(|l| l.starts_with("ctr "))
        .expect("ctr listed");
    assert!(row.contains(" paused "), "{ps}");
    let info = inspect(&d, "ctr");
    assert_eq!(info["status"]["state"], "paused", "{info}");
    assert_eq!(info["status"]["paused"], true, "{info}");
    // exec cannot run in a frozen container; pausing twice is refused.
    let err = d.fails(&["exec", "ctr", "true"], 125);
    assert!(err.contains("container ctr is paused"), "{err}");
    let err = d.fails(&["pause", "ctr"], 125);
    assert!(err.contains("already paused"), "{err}");

    assert_eq!(d.ok(&["unpause", "ctr"]).trim(), "ctr");
    wait_until("the counter to move again", || {
        count_lines(&d, "ctr") >= frozen + 3
    });
    assert_eq!(inspect(&d, "ctr")["status"]["state"], "running");
    let err = d.fails(&["unpause", "ctr"], 125);
    assert!(err.contains("is not paused"), "{err}");

    // A paused container stops: the runtime thaws it so the signals reach it.
    d.ok(&["pause", "ctr"]);
    let started = Instant::now();
    d.ok(&["stop", "-t", "2", "ctr"]);
    assert!(started.elapsed() < Duration::from_secs(30));
    let info = inspect(&d, "ctr");
    assert_eq!(info["status"]["state"], "stopped", "{info}");
    assert_eq!(info["status"]["paused"], false, "{info}");

    let events = d.ok(&[
        "events",
        "--since",
        &t0,
        "--until",
        &now_arg(),
        "--filter",
        "container=ctr",
        "--filter",
        "event=pause",
        "--filter",
        "event=unpause",
    ]);
    let actions: Vec<&str> = events.lines().filter_map(|l| l.split(' ').nth(2)).collect();
    assert_eq!(actions, ["pause", "unpause", "pause"], "{events}");
}

#[test]
fn run_flags_and_verbs_of_a_serving_container() {
    let Some(d) = Daemon::start("verbs") else {
        return;
    };
    let t0 = now_arg();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--hostname",
        "box-1",
        "--add-host",
        "db:10.1.2.3",
        "--add-host",
        "gw:host-gateway",
        "--stop-signal",
        "KILL",
        "-P",
        "--expose",
        "8080",
        "busybox",
        "sh",
        "-c",
        "echo hi from web > /tmp/hello.txt; exec httpd -f -p 8080 -h /tmp",
    ]);

    // -P gave the exposed port a free host port, which `port` shows and which serves.
    let ports = d.ok(&["port", "web"]);
    let line = ports.trim();
    let host_port: u16 = line
        .strip_prefix("8080/tcp -> 0.0.0.0:")
        .unwrap_or_else(|| panic!("port prints Docker's mapping: {ports:?}"))
        .parse()
        .expect("a port number");
    assert_ne!(host_port, 8080, "-P picks a free host port");
    assert_eq!(
        d.ok(&["port", "web", "8080/tcp"]).trim(),
        format!("0.0.0.0:{host_port}")
    );
    let err = d.fails(&["port", "web", "9999"], 125);
    assert!(
        err.contains("no public port 9999/tcp published for web"),
        "{err}"
    );
    let body = http_get(host_port, "/hello.txt");
    assert!(body.starts_with("HTTP/1."), "{body}");
    assert!(body.ends_with("hi from web\n"), "{body}");

    // The hostname and the extra hosts, as the container sees them.
    assert_eq!(d.ok(&["exec", "web", "hostname"]).trim(), "box-1");
    let hosts = d.ok(&["exec", "web", "cat", "/etc/hosts"]);
    let entry = |ip: &str, name: &str| {
        hosts.lines().any(|l| {
            let mut w = l.split_whitespace();
            w.next() == Some(ip) && w.any(|n| n == name)
        })
    };
    assert!(entry("10.1.2.3", "db"), "{hosts}");
    // User-mode networking: the guest reaches the host at QEMU's 10.0.2.2.
    assert!(entry("10.0.2.2", "gw"), "{hosts}");

    // top: the container's processes, httpd among them, without top's own ps.
    let top = d.ok(&["top", "web"]);
    assert!(top.lines().next().unwrap_or("").contains("PID"), "{top}");
    assert!(top.contains("httpd -f -p 8080"), "{top}");
    assert!(!top.contains("ps -o"), "{top}");

    // rename: the new name answers, the old one is gone, a taken name is refused.
    d.ok(&["create", "--name", "other", "busybox", "true"]);
    d.ok(&["rename", "web", "web2"]);
    assert_eq!(inspect(&d, "web2")["name"], "web2");
    let err = d.fails(&["inspect", "web"], 125);
    assert!(err.contains("container web not found"), "{err}");
    let err = d.fails(&["rename", "web2", "other"], 125);
    assert!(err.contains("already in use"), "{err}");
    let err = d.fails(&["rename", "web2", "bad/name"], 125);
    assert!(err.contains("bad/name"), "{err}");

    // restart: stopped with its stop signal (KILL: exit 137), started again, still serving.
    let before = inspect(&d, "web2")["status"]["startedDate"].clone();
    assert_eq!(d.ok(&["restart", "web2"]).trim(), "web2");
    let after = inspect(&d, "web2");
    assert_eq!(after["status"]["state"], "running", "{after}");
    assert_ne!(after["status"]["startedDate"], before, "{after}");
    assert_eq!(after["configuration"]["stopSignal"], 9, "{after}");
    let body = http_get(host_port, "/hello.txt");
    assert!(body.ends_with("hi from web\n"), "{body}");

    let events = d.ok(&[
        "events",
        "--since",
        &t0,
        "--until",
        &now_arg(),
        "--filter",
        "event=rename",
    ]);
    assert!(
        events.contains(" container rename ") && events.contains("oldName=/web"),
        "{events}"
    );
    assert!(events.contains("name=web2"), "{events}");
    let events = d.ok(&[
        "events",
        "--since",
        &t0,
        "--until",
        &now_arg(),
        "--filter",
        "container=web2",
        "--filter",
        "event=die",
    ]);
    assert!(events.contains("exitCode=137"), "{events}");
    d.ok(&["rm", "-f", "web2", "other"]);
}

#[test]
fn wait_attach_and_logs_by_time() {
    let Some(d) = Daemon::start("waitlogs") else {
        return;
    };
    d.ok(&[
        "run",
        "-d",
        "--name",
        "lg",
        "busybox",
        "sh",
        "-c",
        "echo early; sleep 3; echo late; while [ ! -f /tmp/go ]; do sleep 0.2; done; echo after attach; exit 3",
    ]);
    wait_until("the late line", || d.ok(&["logs", "lg"]).contains("late"));

    // Timestamps: each line prefixed with its RFC 3339 time, as docker logs -t.
    let stamped = d.ok(&["logs", "--timestamps", "lg"]);
    let times: Vec<(&str, &str)> = stamped
        .lines()
        .map(|l| l.split_once(' ').expect("time, then the line"))
        .collect();
    assert_eq!(
        times.iter().map(|(_, l)| *l).collect::<Vec<_>>(),
        ["early", "late"],
        "{stamped}"
    );
    for (t, _) in &times {
        assert_eq!(t.len(), "2026-12-04T17:00:00.000000000Z".len(), "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[10] == b'T', "{t}");
    }
    // --since the late line's time drops the early one, --until the early line's time the
    // late one; a duration counts back from now.
    assert_eq!(d.ok(&["logs", "--since", times[1].0, "lg"]), "late\n");
    assert_eq!(d.ok(&["logs", "--until", times[0].0, "lg"]), "early\n");
    assert_eq!(d.ok(&["logs", "--since", "10m", "lg"]), "early\nlate\n");
    let err = d.fails(&["logs", "--since", "yesterday", "lg"], 125);
    assert!(err.contains("--since: invalid time \"yesterday\""), "{err}");

    // wait and attach in the background; the container goes on once /tmp/go exists. attach
    // shows only what comes after it and exits with the container's code; wait prints it.
    let err = d.fails(&["attach", "nosuch"], 125);
    assert!(err.contains("container nosuch not found"), "{err}");
    let waiter = d
        .cmd(&["wait", "lg"])
        .stdout(std::process::Stdio::piped())
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("wait runs");
    let attach = d
        .cmd(&["attach", "--no-stdin", "lg"])
        .stdout(std::process::Stdio::piped())
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("attach runs");
    // Give the attach time to reach the runtime before the output it must see.
    std::thread::sleep(Duration::from_secs(3));
    d.ok(&["exec", "lg", "touch", "/tmp/go"]);
    let out = attach.wait_with_output().expect("attach ends");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "after attach\n");
    assert_eq!(out.status.code(), Some(3));
    let waited = waiter.wait_with_output().expect("wait ends");
    assert_eq!(String::from_utf8_lossy(&waited.stdout), "3\n");
    let err = d.fails(&["attach", "lg"], 125);
    assert!(
        err.contains("you cannot attach to a stopped container lg"),
        "{err}"
    );
}
