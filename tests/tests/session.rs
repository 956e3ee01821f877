//! End to end: what the CLI sends and shows in a session with a real daemon and a real VM:
//! stdio, environment and exit codes, detached runs and cidfiles, tables, signals, stats,
//! stdout handling and `cp` paths. These checks once ran against a stand-in daemon
//! (crates/cli/tests/daemon_contract.rs); a stand-in proves only that the CLI agrees with
//! itself, so they run against the real one here.

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use container_tests::daemon::Daemon;

#[test]
fn run_pipes_stdin_passes_env_and_returns_the_code() {
    let Some(d) = Daemon::start("stdio") else {
        return;
    };
    let mut child = d
        .cmd(&[
            "run",
            "-i",
            "--name",
            "echo",
            "-e",
            "A=1",
            "busybox",
            "sh",
            "-c",
            "echo \"A=$A\"; tr a-z A-Z; echo done >&2; exit 6",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "A=1\nHELLO\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "done\n");
    assert_eq!(out.status.code(), Some(6));
    let inspect: serde_json::Value = serde_json::from_str(&d.ok(&["inspect", "echo"])).unwrap();
    let text = inspect.to_string();
    assert!(text.contains("\"A=1\""), "{text}");
}

#[test]
fn detached_run_prints_the_id_writes_the_cidfile_and_lists() {
    let Some(d) = Daemon::start("detach") else {
        return;
    };
    let cidfile = d.root.join("cid");
    let id = d.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--cidfile",
        cidfile.to_str().unwrap(),
        "busybox",
        "sleep",
        "600",
    ]);
    let id = id.strip_suffix('\n').unwrap_or_else(|| panic!("{id:?}"));
    assert_eq!(id.len(), 64, "{id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    assert_eq!(std::fs::read_to_string(&cidfile).unwrap(), id);
    // A second run with the same cidfile is refused before anything is created.
    let err = d.fails(
        &[
            "run",
            "-d",
            "--cidfile",
            cidfile.to_str().unwrap(),
            "busybox",
            "true",
        ],
        125,
    );
    assert!(err.contains("already exists"), "{err}");
    let ls = d.ok(&["ls"]);
    let mut lines = ls.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "ID", "IMAGE", "OS", "ARCH", "STATE", "IP", "CPUS", "MEMORY", "STARTED"
        ]
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(row[0], "web", "{ls}");
    assert_eq!(row[1], "busybox", "{ls}");
    assert_eq!(row[2], "linux", "{ls}");
    assert_eq!(row[4], "running", "{ls}");
    assert_eq!(lines.next(), None, "{ls}");
    assert_eq!(d.ok(&["ls", "-q"]), format!("{}\n", &id[..12]));
}

// `container ls | head -0`: a reader that went away ends the command quietly with the
// SIGPIPE status, not a panic.
#[test]
fn a_closed_stdout_pipe_ends_quietly() {
    let Some(d) = Daemon::start("pipe") else {
        return;
    };
    d.ok(&["create", "--name", "web", "busybox", "true"]);
    let mut child = d
        .cmd(&["ls", "-a"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert_eq!(out.status.code(), Some(141));
}

// Without a terminal, signals sent to the CLI reach the container's process; the third
// Ctrl-C lets the user out of a session that does not end (exit 1, Apple's rule) and leaves
// the container running.
#[test]
fn signals_are_forwarded_and_three_interrupts_leave() {
    let Some(d) = Daemon::start("signals") else {
        return;
    };
    let script = "trap 'echo got USR1' USR1; trap 'echo got TERM' TERM; \
                  trap 'echo got INT' INT; echo ready; \
                  while true; do sleep 0.1; done";
    let mut child = d
        .cmd(&["run", "--name", "sig", "busybox", "sh", "-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let expect = |want: &str| {
        let line = rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("no {want:?} from the container"));
        assert_eq!(line, want);
    };
    expect("ready");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    use nix::sys::signal::{Signal, kill};
    kill(pid, Signal::SIGUSR1).unwrap();
    expect("got USR1");
    kill(pid, Signal::SIGTERM).unwrap();
    expect("got TERM");
    kill(pid, Signal::SIGINT).unwrap();
    expect("got INT");
    kill(pid, Signal::SIGINT).unwrap();
    expect("got INT");
    kill(pid, Signal::SIGINT).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the third interrupt did not leave"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr,
        "container: interrupted three times: leaving the container running\n"
    );
    let ls = d.ok(&["ls"]);
    assert!(
        ls.lines()
            .any(|l| l.starts_with("sig ") && l.contains("running")),
        "{ls}"
    );
}

#[test]
fn stats_no_stream_shows_one_sample_of_a_running_container() {
    let Some(d) = Daemon::start("stats") else {
        return;
    };
    let id = d.ok(&[
        "run", "-d", "--name", "st", "--memory", "512m", "busybox", "sleep", "600",
    ]);
    let out = d.ok(&["stats", "--no-stream", "st"]);
    let mut lines = out.lines();
    let header = lines.next().unwrap();
    for column in [
        "Container ID",
        "Cpu %",
        "Memory Usage",
        "Net Rx/Tx",
        "Block I/O",
        "Pids",
    ] {
        assert!(header.contains(column), "{out}");
    }
    let row = lines.next().unwrap_or_else(|| panic!("{out}"));
    assert!(row.starts_with(&format!("{} ", &id[..12])), "{out}");
    assert!(row.contains("/ 512.0 MiB"), "{out}");
    assert_eq!(lines.next(), None, "{out}");
    let json: serde_json::Value =
        serde_json::from_str(&d.ok(&["stats", "--no-stream", "--format", "json", "st"])).unwrap();
    assert_eq!(json[0]["memoryLimitBytes"], 512u64 << 20, "{json}");
    assert!(json[0]["numProcesses"].as_u64().unwrap_or(0) >= 1, "{json}");
    assert!(json[0]["cpuUsageUsec"].as_u64().unwrap_or(0) > 0, "{json}");
}

// An archive is never sprayed over a terminal.
#[test]
fn archives_refuse_a_terminal_on_stdout() {
    let Some(d) = Daemon::start("tty-out") else {
        return;
    };
    let pty = nix::pty::openpty(None, None).unwrap();
    let out = d
        .cmd(&["image", "save", "busybox"])
        .stdin(Stdio::null())
        .stdout(Stdio::from(pty.slave.try_clone().unwrap()))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "container: refusing to write an archive to a terminal: use -o or redirect stdout\n"
    );
}

// `cp` names entries the way `docker cp` does, both ways. (Export and cp of whole trees,
// hard links and stopped containers are tests/tests/copyexport.rs's.)
#[test]
fn cp_follows_docker_cp_paths_both_ways() {
    let Some(d) = Daemon::start("cp") else {
        return;
    };
    d.ok(&["run", "-d", "--name", "web", "busybox", "sleep", "600"]);
    let host = d.root.join("host");
    std::fs::create_dir_all(host.join("site")).unwrap();
    std::fs::write(host.join("app.conf"), "listen 80\n").unwrap();
    std::fs::write(host.join("site/index.html"), "<h1>hi</h1>").unwrap();
    let h = |p: &str| host.join(p).to_str().unwrap().to_owned();
    // In: into an existing directory keeps the name; a new path is the new name; a
    // directory to a new path becomes that directory.
    d.ok(&["cp", &h("app.conf"), "web:/etc"]);
    d.ok(&["cp", &h("app.conf"), "web:/etc/renamed.conf"]);
    d.ok(&["cp", &h("site"), "web:/srv"]);
    assert_eq!(
        d.ok(&[
            "exec",
            "web",
            "cat",
            "/etc/app.conf",
            "/etc/renamed.conf",
            "/srv/index.html"
        ]),
        "listen 80\nlisten 80\n<h1>hi</h1>"
    );
    // Out: the same rules on the host side.
    std::fs::create_dir(host.join("out")).unwrap();
    d.ok(&["cp", "web:/etc/app.conf", &h("out")]);
    d.ok(&["cp", "web:etc/renamed.conf", &h("copy.conf")]);
    d.ok(&["cp", "web:/srv", &h("srv-copy")]);
    assert_eq!(
        std::fs::read_to_string(host.join("out/app.conf")).unwrap(),
        "listen 80\n"
    );
    assert_eq!(
        std::fs::read_to_string(host.join("copy.conf")).unwrap(),
        "listen 80\n"
    );
    assert_eq!(
        std::fs::read_to_string(host.join("srv-copy/index.html")).unwrap(),
        "<h1>hi</h1>"
    );
    // A missing path is one line naming it.
    let err = d.fails(&["cp", "web:/nope", &h("out")], 125);
    assert!(err.contains("/nope"), "{err}");
    // `-` writes the archive itself to stdout.
    let out = d.run(&["cp", "web:/etc/app.conf", "-"]);
    assert!(out.status.success());
    let mut list = std::process::Command::new("tar")
        .arg("-tf")
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    list.stdin.take().unwrap().write_all(&out.stdout).unwrap();
    let names = list.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&names.stdout), "app.conf\n");
}
