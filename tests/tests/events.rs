//! End to end: `container events` and healthchecks, with the real `container` binary against
//! a real daemon whose containers run in real VMs. Events are checked as a user reads them:
//! the live stream while things happen, the replay with `--since`/`--until`, the filters and
//! the JSON form. Health is checked through `inspect`, `ls` and the `health_status` events,
//! and across a daemon crash and restart.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use container_tests::daemon::Daemon;
use container_tests::unix_now_arg as now_arg;

/// The (type, action) pairs of event lines about `actor`, in order.
fn actions_of(lines: &str, actor: &str) -> Vec<String> {
    lines
        .lines()
        .filter_map(|l| {
            let mut words = l.split(' ');
            let (_time, kind, rest) = (words.next()?, words.next()?, words.collect::<Vec<_>>());
            // The action may hold spaces (`health_status: healthy`): it ends before the ID.
            let at = rest.iter().position(|w| *w == actor)?;
            Some(format!("{kind} {}", rest[..at].join(" ")))
        })
        .collect()
}

#[test]
fn events_of_run_stop_rm_live_and_replayed_with_filters() {
    let Some(d) = Daemon::start("events") else {
        return;
    };
    let t0 = now_arg();
    // A live subscriber, started before anything happens.
    let mut live = d
        .cmd(&["events", "--filter", "container=ev1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("events runs");
    let (tx, rx) = mpsc::channel();
    let stdout = live.stdout.take().expect("piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // Give the subscription time to reach the daemon.
    std::thread::sleep(Duration::from_millis(500));

    let id = d.ok(&[
        "run",
        "-d",
        "--name",
        "ev1",
        "-l",
        "tier=front",
        "busybox",
        "sleep",
        "600",
    ]);
    let id = id.trim().to_owned();
    d.ok(&["stop", "-t", "1", "ev1"]);
    d.ok(&["rm", "ev1"]);
    d.ok(&["volume", "create", "evvol"]);
    d.ok(&["volume", "rm", "evvol"]);
    d.ok(&["image", "pull", "busybox:1.36"]);
    d.ok(&["image", "tag", "busybox:1.36", "evtag:1"]);
    d.ok(&["image", "rm", "evtag:1"]);

    // Live: every step of ev1, in Docker's order, up to its destroy.
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !seen.iter().any(|l: &String| l.contains(" destroy ")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("no destroy event live; saw:\n{}", seen.join("\n")),
        }
    }
    let _ = live.kill();
    let _ = live.wait();
    let live_text = seen.join("\n");
    assert_eq!(
        actions_of(&live_text, &id),
        [
            "container create",
            "container start",
            "container kill",
            "container die",
            "container stop",
            "container destroy"
        ],
        "{live_text}"
    );
    let die = seen.iter().find(|l| l.contains(" die ")).unwrap();
    // sleep as PID 1 ignores SIGTERM: the stop ends with SIGKILL.
    assert!(
        die.ends_with("(exitCode=137, image=busybox, name=ev1, tier=front)"),
        "{die}"
    );
    assert!(
        seen.iter()
            .any(|l| l.contains(" kill ") && l.contains("signal=15")),
        "{live_text}"
    );
    // Docker's line: RFC 3339 UTC time with nanoseconds first.
    let time = seen[0].split(' ').next().unwrap();
    assert_eq!(time.len(), "2026-12-04T17:00:00.000000000Z".len(), "{time}");
    assert!(time.ends_with('Z') && time.as_bytes()[10] == b'T', "{time}");

    // Replay: the same events (and the volume's) between t0 and now; the stream ends.
    let t1 = now_arg();
    let replay = d.ok(&["events", "--since", &t0, "--until", &t1]);
    assert_eq!(
        actions_of(&replay, &id),
        actions_of(&live_text, &id),
        "{replay}"
    );
    assert_eq!(
        actions_of(&replay, "evvol"),
        ["volume create", "volume destroy"],
        "{replay}"
    );
    let images = d.ok(&["events", "--since", &t0, "--until", &t1, "-f", "type=image"]);
    let image_actions: Vec<&str> = images
        .lines()
        .map(|l| l.split(' ').nth(2).unwrap_or_default())
        .collect();
    assert_eq!(image_actions, ["pull", "tag", "untag"], "{images}");
    assert!(
        images.contains("image pull docker.io/library/busybox:1.36"),
        "{images}"
    );
    assert!(
        images.lines().nth(1).is_some_and(
            |l| l.contains(" sha256:") && l.ends_with("(name=docker.io/library/evtag:1)")
        ),
        "{images}"
    );
    let tagged = d.ok(&[
        "events",
        "--since",
        &t0,
        "--until",
        &t1,
        "-f",
        "image=evtag:1",
    ]);
    assert_eq!(tagged.lines().count(), 2, "{tagged}");
    // Filters: one action; a type; labels; something that matches nothing.
    let dies = d.ok(&[
        "events",
        "--since",
        &t0,
        "--until",
        &t1,
        "--filter",
        "event=die",
    ]);
    assert_eq!(dies.lines().count(), 1, "{dies}");
    assert!(dies.contains(&format!("container die {id}")), "{dies}");
    let volumes = d.ok(&[
        "events",
        "--since",
        &t0,
        "--until",
        &t1,
        "-f",
        "type=volume",
    ]);
    assert_eq!(volumes.lines().count(), 2, "{volumes}");
    let labelled = d.ok(&[
        "events",
        "--since",
        &t0,
        "--until",
        &t1,
        "-f",
        "label=tier=front",
        "-f",
        "event=start",
    ]);
    assert_eq!(
        actions_of(&labelled, &id),
        ["container start"],
        "{labelled}"
    );
    let nothing = d.ok(&[
        "events",
        "--since",
        &t0,
        "--until",
        &t1,
        "-f",
        "container=nope",
    ]);
    assert_eq!(nothing, "");
    // --until alone replays from the oldest kept: the image loaded when the daemon started,
    // and nothing after t0.
    let before = d.ok(&["events", "--until", &t0]);
    assert!(before.contains(" image load "), "{before}");
    assert!(!before.contains(&id), "{before}");
    // JSON: Docker's message shape.
    let json = d.ok(&[
        "events",
        "--since",
        &t0,
        "--until",
        &t1,
        "-f",
        "event=create",
        "-f",
        "type=container",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(json.trim()).expect("one JSON line");
    assert_eq!(v["Type"], "container");
    assert_eq!(v["Action"], "create");
    assert_eq!(v["Actor"]["ID"], id.as_str());
    assert_eq!(v["Actor"]["Attributes"]["name"], "ev1");
    assert_eq!(v["scope"], "local");
    assert!(v["timeNano"].as_i64().unwrap() / 1_000_000_000 == v["time"].as_i64().unwrap());
    // A bad filter is the daemon's one-line refusal.
    let err = d.fails(&["events", "--until", &t1, "-f", "colour=red"], 125);
    assert!(err.contains("invalid filter \"colour\""), "{err}");
}

/// `inspect`'s health of `name` (null when it has none).
fn health(d: &Daemon, name: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(&d.ok(&["inspect", name])).unwrap();
    v[0]["status"]["health"].clone()
}

/// Waits (up to a minute) for `name`'s health status to be `want`.
fn wait_health(d: &Daemon, name: &str, want: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let h = health(d, name);
        if h["status"] == want {
            return h;
        }
        assert!(Instant::now() < deadline, "{name} never became {want}: {h}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn ls_row(d: &Daemon, name: &str) -> String {
    let ls = d.ok(&["ls"]);
    ls.lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} not listed: {ls}"))
        .to_owned()
}

#[test]
fn healthcheck_goes_unhealthy_then_healthy_and_survives_a_daemon_restart() {
    let Some(d) = Daemon::start("health") else {
        return;
    };
    let t0 = now_arg();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "hc",
        "--health-cmd",
        "test -f /tmp/ok",
        "--health-interval",
        "1s",
        "--health-retries",
        "2",
        "busybox",
        "sleep",
        "600",
    ]);
    // Two failures are needed: right after the start it is still starting.
    let row = ls_row(&d, "hc");
    assert!(row.contains("running (health: starting)"), "{row}");
    let h = wait_health(&d, "hc", "unhealthy");
    assert!(h["failingStreak"].as_u64().unwrap() >= 2, "{h}");
    let last = &h["log"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["exitCode"], 1, "{h}");
    assert!(ls_row(&d, "hc").contains("running (unhealthy)"));
    let v: serde_json::Value = serde_json::from_str(&d.ok(&["inspect", "hc"])).unwrap();
    let config = &v[0]["configuration"]["healthcheck"];
    assert_eq!(
        config["test"],
        serde_json::json!(["CMD-SHELL", "test -f /tmp/ok"])
    );
    assert_eq!(
        (config["intervalMs"].as_u64(), config["retries"].as_u64()),
        (Some(1000), Some(2))
    );

    d.ok(&["exec", "hc", "touch", "/tmp/ok"]);
    let h = wait_health(&d, "hc", "healthy");
    assert_eq!(h["failingStreak"], 0, "{h}");
    assert!(h["log"].as_array().unwrap().len() <= 5, "{h}");
    assert!(ls_row(&d, "hc").contains("running (healthy)"));
    let changes = d.ok(&[
        "events",
        "--since",
        &t0,
        "--until",
        &now_arg(),
        "-f",
        "event=health_status",
    ]);
    let actions: Vec<&str> = changes
        .lines()
        .map(|l| l.split(' ').nth(2).unwrap_or_default())
        .collect();
    assert_eq!(actions, ["health_status:", "health_status:"], "{changes}");
    assert!(
        changes
            .lines()
            .next()
            .unwrap()
            .contains("health_status: unhealthy"),
        "{changes}"
    );
    assert!(
        changes
            .lines()
            .nth(1)
            .unwrap()
            .contains("health_status: healthy"),
        "{changes}"
    );

    // A probe that outlives its timeout is killed and fails.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "slow",
        "--health-cmd",
        "sleep 30",
        "--health-interval",
        "1s",
        "--health-timeout",
        "500ms",
        "--health-retries",
        "1",
        "busybox",
        "sleep",
        "600",
    ]);
    let h = wait_health(&d, "slow", "unhealthy");
    let last = h["log"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["exitCode"], -1, "{h}");
    assert!(
        last["output"]
            .as_str()
            .unwrap()
            .contains("exceeded timeout (500ms)"),
        "{h}"
    );
    // Killed, not left behind: with three probes past, at most the current one runs.
    let deadline = Instant::now() + Duration::from_secs(60);
    while health(&d, "slow")["log"].as_array().map_or(0, Vec::len) < 3 {
        assert!(Instant::now() < deadline, "fewer than 3 probes in a minute");
        std::thread::sleep(Duration::from_millis(250));
    }
    let ps = d.ok(&["exec", "slow", "ps", "-o", "pid,args"]);
    let probes = ps.lines().filter(|l| l.ends_with("sleep 30")).count();
    assert!(probes <= 1, "timed-out probes still run: {ps}");
    d.ok(&["rm", "-f", "slow"]);

    // A crashed daemon's successor keeps the health and probes again.
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
    assert_eq!(health(&d, "hc")["status"], "healthy");
    d.ok(&["exec", "hc", "rm", "/tmp/ok"]);
    wait_health(&d, "hc", "unhealthy");
    assert!(ls_row(&d, "hc").contains("running (unhealthy)"));
    d.ok(&["rm", "-f", "hc"]);
}
