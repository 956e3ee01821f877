//! `container commit` and `container diff` (and Docker's `docker commit`/`docker diff`)
//! against real VMs: a scripted set of changes, the exact A/C/D lines Docker prints for
//! them, and an image committed from the container that runs with the changes.

use container_tests::daemon::Daemon;
use container_tests::docker::Docker;

/// The changes every test makes to a busybox container: a new file, a changed file, a
/// deleted file, a new directory with a file, a hard link.
const SCRIPT: &str = "echo new > /new && echo more >> /etc/passwd && rm /etc/group && \
    mkdir -p /tmp/d && echo f > /tmp/d/f && ln /tmp/d/f /tmp/d/g && sync";

/// What `docker diff` prints for SCRIPT: each changed directory before its entries, names
/// sorted, the parents of changes as C.
const DIFF: &str =
    "C /etc\nD /etc/group\nC /etc/passwd\nA /new\nC /tmp\nA /tmp/d\nA /tmp/d/f\nA /tmp/d/g\n";

#[test]
fn diff_and_commit_of_running_and_stopped_containers() {
    let Some(d) = Daemon::start("commit") else {
        return;
    };
    d.ok(&["run", "-d", "--name", "c1", "busybox", "sleep", "1000"]);
    d.ok(&["exec", "c1", "sh", "-c", SCRIPT]);
    assert_eq!(d.ok(&["diff", "c1"]), DIFF);

    let id = d.ok(&[
        "commit",
        "-m",
        "scripted",
        "-a",
        "Tester <t@example.com>",
        "-c",
        "ENV COMMITTED=yes",
        "-c",
        "CMD [\"cat\", \"/new\"]",
        "c1",
        "committed:v1",
    ]);
    assert!(id.starts_with("sha256:") && id.trim().len() == 71, "{id:?}");

    // The new image runs with the change: its CMD, its ENV, the added file present and the
    // deleted one absent, hard links kept.
    assert_eq!(d.ok(&["run", "--rm", "committed:v1"]), "new\n");
    let out = d.ok(&[
        "run",
        "--rm",
        "committed:v1",
        "sh",
        "-c",
        "echo $COMMITTED; test -e /etc/group && echo group-present || echo group-absent; \
         tail -n1 /etc/passwd; stat -c %h /tmp/d/f; cat /tmp/d/g",
    ]);
    assert_eq!(out, "yes\ngroup-absent\nmore\n2\nf\n");

    // The config and history say what was committed.
    let inspect = d.ok(&["image", "inspect", "committed:v1"]);
    assert!(inspect.contains("COMMITTED=yes"), "{inspect}");
    assert!(inspect.contains("scripted"), "{inspect}");

    // A stopped container is read through a maintenance VM, with the same answer.
    d.ok(&["stop", "-t", "1", "c1"]);
    assert_eq!(d.ok(&["diff", "c1"]), DIFF);
    d.ok(&["commit", "c1", "committed:v2"]);
    assert_eq!(
        d.ok(&["run", "--rm", "committed:v2", "cat", "/new"]),
        "new\n"
    );

    // Bad input is one line and makes nothing.
    let err = d.fails(&["commit", "-c", "RUN true", "c1", "bad:v1"], 125);
    assert!(err.contains("RUN is not a valid change command"), "{err}");
    assert!(err.trim().lines().count() == 1, "{err}");
    let images = d.ok(&["image", "list"]);
    assert!(!images.contains("bad"), "{images}");
}

/// The real docker CLI: `docker diff` prints the same lines, `docker commit` makes an image
/// that runs with the change.
#[test]
fn docker_diff_and_commit() {
    let Some(k) = Docker::start("dcommit") else {
        return;
    };
    let (d, docker) = (&k.d, |args: &[&str]| k.ok(args));
    d.ok(&["run", "-d", "--name", "c1", "busybox", "sleep", "1000"]);
    d.ok(&["exec", "c1", "sh", "-c", SCRIPT]);
    assert_eq!(docker(&["diff", "c1"]), DIFF);
    let id = docker(&[
        "commit",
        "--change",
        "CMD [\"cat\", \"/tmp/d/g\"]",
        "c1",
        "dcommitted:v1",
    ]);
    assert!(id.starts_with("sha256:"), "{id:?}");
    assert_eq!(d.ok(&["run", "--rm", "dcommitted:v1"]), "f\n");
}

/// `commit` pauses a running container while it captures (Docker's default, with the
/// `pause` and `unpause` events Docker logs), `--pause=false` does not, and `--change`
/// words are expanded with the container's environment.
#[test]
fn commit_pauses_by_default_and_expands_changes() {
    let Some(k) = Docker::start("cpause") else {
        return;
    };
    let (d, docker) = (&k.d, |args: &[&str]| k.ok(args));
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let actions = |since: u64, until: u64| {
        docker(&[
            "events",
            "--since",
            &since.to_string(),
            "--until",
            &until.to_string(),
            "--filter",
            "container=p1",
            "--filter",
            "event=pause",
            "--filter",
            "event=unpause",
            "--format",
            "{{.Action}}",
        ])
    };
    d.ok(&[
        "run",
        "-d",
        "--name",
        "p1",
        "-e",
        "APP=/opt/app",
        "busybox",
        "sleep",
        "1000",
    ]);
    let t0 = now();
    d.ok(&[
        "commit",
        "--change",
        "ENV PATH=$PATH:$APP/bin",
        "--change",
        "WORKDIR $APP",
        "p1",
        "paused:v1",
    ]);
    let t1 = now() + 1;
    assert_eq!(actions(t0, t1), "pause\nunpause\n");
    // The container runs on, thawed.
    assert_eq!(d.ok(&["exec", "p1", "echo", "alive"]), "alive\n");
    let env = d.ok(&["run", "--rm", "paused:v1", "sh", "-c", "echo $PATH; pwd"]);
    assert!(
        env.ends_with(":/opt/app/bin\n/opt/app\n") && !env.contains('$'),
        "{env}"
    );
    std::thread::sleep(std::time::Duration::from_secs(1));
    let t2 = now();
    d.ok(&["commit", "--pause=false", "p1", "paused:v2"]);
    docker(&["commit", "--pause=false", "p1", "paused:v3"]);
    let t3 = now() + 1;
    assert_eq!(actions(t2, t3), "");
}
