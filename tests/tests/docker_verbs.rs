//! End to end, the Docker verbs through the Engine API: the real `docker` CLI against a real
//! daemon's docker.sock pauses, unpauses and renames containers, and creates them with
//! `--add-host`, `--hostname` and `-P --expose`, each in a real VM. Asserts what a Docker user
//! sees: `inspect` templates, `ps` filters, `port`, events and error exits.

use std::time::Duration;

use container_tests::docker::Docker;
use container_tests::unix_now_arg as unix_now;
use container_tests::wait_until;

/// The counter lines a container has printed so far.
trait Ticks {
    fn ticks(&self, name: &str) -> usize;
}

impl Ticks for Docker {
    fn ticks(&self, name: &str) -> usize {
        self.ok(&["logs", name])
            .lines()
            .filter(|l| l.starts_with("tick "))
            .count()
    }
}

#[test]
fn docker_pause_unpause_and_rename() {
    let Some(dk) = Docker::start("dkverbs") else {
        return;
    };
    let t0 = unix_now();
    dk.ok(&[
        "run",
        "-d",
        "--name",
        "p1",
        "busybox",
        "sh",
        "-c",
        "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done",
    ]);
    wait_until("the counter", || dk.ticks("p1") >= 3);

    assert_eq!(dk.ok(&["pause", "p1"]).trim(), "p1");
    let state = dk.ok(&[
        "inspect",
        "-f",
        "{{.State.Status}} {{.State.Paused}} {{.State.Running}}",
        "p1",
    ]);
    assert_eq!(state.trim(), "paused true true");
    let ps = dk.ok(&[
        "ps",
        "--filter",
        "status=paused",
        "--format",
        "{{.Names}} {{.Status}}",
    ]);
    assert!(
        ps.starts_with("p1 Up ") && ps.trim_end().ends_with("(Paused)"),
        "{ps}"
    );
    let frozen = dk.ticks("p1");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(dk.ticks("p1"), frozen, "a paused container's counter moved");
    let err = dk.fails(&["pause", "p1"], 1);
    assert!(err.contains("already paused"), "{err}");

    assert_eq!(dk.ok(&["unpause", "p1"]).trim(), "p1");
    wait_until("the counter to move again", || dk.ticks("p1") >= frozen + 3);
    assert_eq!(
        dk.ok(&["inspect", "-f", "{{.State.Status}} {{.State.Paused}}", "p1"])
            .trim(),
        "running false"
    );

    // rename: the new name is the container's, a taken one is Docker's conflict.
    dk.ok(&["create", "--name", "taken", "busybox", "true"]);
    dk.ok(&["rename", "p1", "p2"]);
    assert_eq!(dk.ok(&["inspect", "-f", "{{.Name}}", "p2"]).trim(), "/p2");
    let err = dk.fails(&["inspect", "p1"], 1);
    assert!(err.contains("No such"), "{err}");
    let err = dk.fails(&["rename", "p2", "taken"], 1);
    assert!(err.contains("already in use"), "{err}");
    // Pausing a container that does not run is a conflict too.
    let err = dk.fails(&["pause", "taken"], 1);
    assert!(err.contains("is not running"), "{err}");

    let events = dk.ok(&[
        "events",
        "--since",
        &t0,
        "--until",
        &unix_now(),
        "--filter",
        "type=container",
        "--filter",
        "event=pause",
        "--filter",
        "event=unpause",
        "--filter",
        "event=rename",
        "--format",
        "{{.Action}} {{.Actor.Attributes.name}}",
    ]);
    assert_eq!(
        events.lines().collect::<Vec<_>>(),
        ["pause p1", "unpause p1", "rename p2"],
        "{events}"
    );
    dk.ok(&["rm", "-f", "p2", "taken"]);
}

#[test]
fn docker_run_add_host_hostname_and_publish_all() {
    let Some(dk) = Docker::start("dkflags") else {
        return;
    };
    let out = dk.ok(&[
        "run",
        "--rm",
        "--hostname",
        "hx",
        "--add-host",
        "db:10.9.8.7",
        "--add-host",
        "gw:host-gateway",
        "busybox",
        "sh",
        "-c",
        "hostname; grep -E 'db|gw' /etc/hosts",
    ]);
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["hx"], "{out}");
    assert!(lines.contains(&vec!["10.9.8.7", "db"]), "{out}");
    assert!(lines.contains(&vec!["10.0.2.2", "gw"]), "{out}");

    dk.ok(&[
        "run", "-d", "--name", "pp", "-P", "--expose", "8080", "busybox", "httpd", "-f", "-p",
        "8080",
    ]);
    let port = dk.ok(&["port", "pp", "8080/tcp"]);
    let host_port: u16 = port
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("0.0.0.0:"))
        .unwrap_or_else(|| panic!("docker port: {port:?}"))
        .parse()
        .expect("a port");
    assert_ne!(host_port, 0);
    wait_until("the published port to answer", || {
        std::net::TcpStream::connect(("127.0.0.1", host_port)).is_ok()
    });
    dk.ok(&["rm", "-f", "pp"]);
}

/// `docker exec -d`: the exec is listed in the container's `ExecIDs` while it runs, and
/// `GET /exec/{id}/json` tells Running false and its exit code once it has ended (what
/// docker-py's `exec_inspect` and the CLI's exit status read), as with Docker.
#[test]
fn docker_exec_detached_reports_its_end() {
    let Some(dk) = Docker::start("dkexecd") else {
        return;
    };
    dk.ok(&["run", "-d", "--name", "ex", "busybox", "sleep", "600"]);
    dk.ok(&[
        "exec",
        "-d",
        "ex",
        "sh",
        "-c",
        "echo started > /tmp/s; sleep 4; exit 3",
    ]);
    let ids = dk.ok(&["inspect", "-f", "{{json .ExecIDs}}", "ex"]);
    let ids: Vec<String> = serde_json::from_str(ids.trim()).expect("ExecIDs is a list");
    assert_eq!(ids.len(), 1, "{ids:?}");
    let path = format!("/exec/{}/json", ids[0]);
    let (status, first) = dk.api_get(&path);
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["Running"], true, "{first}");
    wait_until("the detached exec to end", || {
        dk.api_get(&path).1["Running"] == false
    });
    let (_, done) = dk.api_get(&path);
    assert_eq!(done["ExitCode"], 3, "{done}");
    assert_eq!(dk.ok(&["exec", "ex", "cat", "/tmp/s"]), "started\n");
    // A finished exec leaves ExecIDs, as with Docker.
    let ids = dk.ok(&["inspect", "-f", "{{json .ExecIDs}}", "ex"]);
    assert_eq!(ids.trim(), "null");
    dk.ok(&["rm", "-f", "ex"]);
}
