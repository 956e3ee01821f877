//! End to end, storage: bind mounts (directories, single files, relative paths, read-only),
//! named and anonymous volumes (their life, their integrity after a SIGKILL mid-write, one
//! read-write user at a time), socket relays both ways (`-v HOST_SOCKET`, `--ssh`,
//! `--publish-socket`) and bad input. Real daemon, real VMs, as in cli.rs.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use container_tests::daemon::{Daemon, check_fails, check_ok};

/// Small, single-CPU VMs: these tests are about disks, not compute.
const SMALL: [&str; 4] = ["--cpus", "1", "--memory", "256m"];

/// `run --rm` with the small VM flags, then `args`.
fn run_rm(args: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ["run", "--rm"].iter().map(|s| s.to_string()).collect();
    v.extend(SMALL.iter().map(|s| s.to_string()));
    v.extend(args.iter().map(|s| s.to_string()));
    v
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A private directory under /tmp (short paths: sockets live in it), removed on drop.
struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch(name: &str) -> Scratch {
    let dir = PathBuf::from(format!("/tmp/cst-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Scratch(dir)
}

/// Waits until `f` holds, or panics with `what` after `limit`.
fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn bind_mounts_share_directories_and_files_both_ways() {
    let Some(d) = Daemon::start("bind") else {
        return;
    };
    let dir = scratch("bind");
    std::fs::write(dir.join("from-host"), "written on the host\n").unwrap();
    std::fs::create_dir_all(dir.join("ro")).unwrap();
    std::fs::write(dir.join("ro/keep"), "x").unwrap();
    std::fs::create_dir_all(dir.join("rel")).unwrap();
    std::fs::write(dir.join("rel/here"), "relative\n").unwrap();
    std::fs::write(dir.join("app.conf"), "setting=1\n").unwrap();
    std::fs::write(dir.join("log.txt"), "line1\n").unwrap();
    let script = "cat /data/from-host; echo from-container > /data/from-container; \
                  cat /rel/here; cat /etc/app.conf; echo line2 >> /var/log.txt; \
                  (echo x > /ro/new) 2>&1; (echo x >> /etc/app.conf) 2>&1; true";
    let data = format!("{}:/data", path_str(&dir));
    let ro = format!("{}:/ro:ro", path_str(&dir.join("ro")));
    let conf = format!("{}:/etc/app.conf:ro", path_str(&dir.join("app.conf")));
    let log = format!("{}:/var/log.txt", path_str(&dir.join("log.txt")));
    let args = run_rm(&[
        "-v",
        &data,
        "-v",
        &ro,
        "-v",
        "./rel:/rel",
        "-v",
        &conf,
        "-v",
        &log,
        "busybox",
        "sh",
        "-c",
        script,
    ]);
    // Relative host paths are resolved against the CLI's working directory.
    let out = d
        .cmd(&strs(&args))
        .current_dir(&*dir)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let out = check_ok(&strs(&args), out);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[..3],
        ["written on the host", "relative", "setting=1"],
        "{out}"
    );
    assert!(lines[3].contains("Read-only file system"), "{out}");
    assert!(lines[4].contains("Read-only file system"), "{out}");
    assert_eq!(
        std::fs::read_to_string(dir.join("from-container")).unwrap(),
        "from-container\n"
    );
    // The container's own umask (022) decides the mode, not the daemon's private 077:
    // virtiofsd must not inherit it into files the container shares back.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("from-container"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o644);
    assert_eq!(
        std::fs::read_to_string(dir.join("log.txt")).unwrap(),
        "line1\nline2\n"
    );
    assert!(!dir.join("ro/new").exists());
    assert_eq!(
        std::fs::read_to_string(dir.join("app.conf")).unwrap(),
        "setting=1\n"
    );
}

/// The file system of a volume checked by e2fsck without changing it.
fn e2fsck(image: &Path) {
    let out = Command::new("e2fsck")
        .arg("-fn")
        .arg(image)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "e2fsck -fn {}: {}{}",
        image.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn named_volumes_outlive_containers_have_one_writer_and_survive_sigkill() {
    let Some(d) = Daemon::start("vol") else {
        return;
    };
    assert_eq!(
        d.ok(&[
            "volume", "create", "-s", "256m", "--label", "app=db", "data"
        ]),
        "data\n"
    );
    let err = d.fails(&["volume", "create", "data"], 125);
    assert!(err.contains("volume data already exists"), "{err}");
    let info: serde_json::Value =
        serde_json::from_str(&d.ok(&["volume", "inspect", "data"])).unwrap();
    assert_eq!(info[0]["sizeInBytes"], 256u64 << 20);
    assert_eq!(info[0]["labels"]["app"], "db");
    let image = PathBuf::from(info[0]["source"].as_str().unwrap());

    // A writer that fsyncs in a loop, killed mid-write.
    let mut args: Vec<&str> = vec!["run", "-d", "--name", "writer"];
    args.extend(SMALL);
    args.extend([
        "-v",
        "data:/data",
        "busybox",
        "sh",
        "-c",
        "echo hello > /data/marker; sync; i=0; while true; do \
         dd if=/dev/zero of=/data/f$((i % 20)) bs=4k count=64 conv=fsync 2>/dev/null; \
         i=$((i+1)); done",
    ]);
    d.ok(&args);
    wait_for("the writer's files", Duration::from_secs(60), || {
        d.run(&["exec", "writer", "ls", "/data/f3"])
            .status
            .success()
    });

    // A second read-write user is refused while the writer runs, and so is a delete.
    let second = run_rm(&["-v", "data:/data", "busybox", "true"]);
    let err = d.fails(&strs(&second), 125);
    assert!(
        err.contains("volume data is in use by container writer"),
        "{err}"
    );
    let err = d.fails(&["volume", "rm", "data"], 125);
    assert!(
        err.contains("volume data is in use by container writer"),
        "{err}"
    );
    assert_eq!(
        d.ok(&["ls", "-a", "-q"]).lines().count(),
        1,
        "the refused run was not removed"
    );

    d.ok(&["kill", "-s", "KILL", "writer"]);
    wait_for("the writer to stop", Duration::from_secs(60), || {
        d.ok(&["ls", "-a"])
            .lines()
            .any(|l| l.starts_with("writer ") && l.contains("stopped"))
    });
    d.ok(&["rm", "writer"]);
    e2fsck(&image);

    // The data outlived its container; read-only users share the volume.
    let mut args: Vec<&str> = vec!["run", "-d", "--name", "reader"];
    args.extend(SMALL);
    args.extend(["-v", "data:/data:ro", "busybox", "sleep", "600"]);
    d.ok(&args);
    let second = run_rm(&["-v", "data:/data:ro", "busybox", "cat", "/data/marker"]);
    assert_eq!(d.ok(&strs(&second)), "hello\n");
    let err = d.fails(
        &strs(&run_rm(&["-v", "data:/data", "busybox", "true"])),
        125,
    );
    assert!(
        err.contains("volume data is in use by container reader"),
        "{err}"
    );
    d.ok(&["rm", "-f", "reader"]);

    let df: serde_json::Value =
        serde_json::from_str(&d.ok(&["system", "df", "--format", "json"])).unwrap();
    assert_eq!(df["volumes"]["total"], 1, "{df}");
    assert!(df["volumes"]["sizeInBytes"].as_u64().unwrap() > 0, "{df}");

    assert_eq!(d.ok(&["volume", "rm", "data"]), "data\n");
    assert_eq!(d.ok(&["volume", "ls", "-q"]), "");
    assert!(!image.exists());
}

#[test]
fn anonymous_volumes_go_with_rm_and_stay_otherwise() {
    let Some(d) = Daemon::start("anon") else {
        return;
    };
    // Created implicitly with a warning, for a named volume.
    let args = run_rm(&[
        "-v",
        "/scratch",
        "-v",
        "auto:/auto",
        "busybox",
        "sh",
        "-c",
        "echo x > /scratch/y",
    ]);
    let out = d.run(&strs(&args));
    let stderr = String::from_utf8_lossy(&out.stderr);
    check_ok(&strs(&args), out.clone());
    assert!(
        stderr.contains("warning: volume auto did not exist and was created"),
        "{stderr}"
    );
    assert_eq!(
        d.ok(&["volume", "ls", "-q"]),
        "auto\n",
        "--rm left its anonymous volume"
    );

    let mut args: Vec<&str> = vec!["run", "--name", "keep"];
    args.extend(SMALL);
    args.extend(["--mount", "type=volume,target=/scratch", "busybox", "true"]);
    d.ok(&args);
    let ls = d.ok(&["volume", "ls"]);
    let anon: Vec<&str> = ls.lines().filter(|l| l.contains(" anonymous ")).collect();
    assert_eq!(anon.len(), 1, "{ls}");
    let name = anon[0].split_whitespace().next().unwrap().to_owned();
    assert_eq!(name.len(), 64, "{ls}");
    // Referenced by a container: neither prune nor delete takes it.
    let err = d.fails(&["volume", "rm", &name], 125);
    assert!(err.contains("is in use by container keep"), "{err}");
    let pruned = d.ok(&["volume", "prune"]);
    assert_eq!(pruned.lines().next(), Some("auto"), "{pruned}");
    // Without --volumes the container's removal keeps it, as Docker's rm does.
    d.ok(&["rm", "keep"]);
    assert_eq!(d.ok(&["volume", "ls", "-q"]), format!("{name}\n"));
    assert_eq!(
        d.ok(&["volume", "prune"]).lines().next(),
        Some(name.as_str())
    );
    assert_eq!(d.ok(&["volume", "ls", "-q"]), "");
}

/// Compiles tests/helpers/unixcat.rs into a static binary in `dir`.
fn unixcat(dir: &Path) -> PathBuf {
    let src = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    )
    .join("helpers/unixcat.rs");
    let out = dir.join("unixcat");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let status = Command::new(rustc)
        .args([
            "--edition",
            "2021",
            "-O",
            "-C",
            "target-feature=+crt-static",
            "-o",
        ])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("rustc runs");
    assert!(status.success(), "compiling {}", src.display());
    out
}

/// An echo server on a host Unix socket: answers `echo:` and what it got until EOF.
fn host_echo(path: &Path) {
    let listener = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { return };
            std::thread::spawn(move || {
                let mut got = Vec::new();
                if s.read_to_end(&mut got).is_ok() {
                    let _ = s.write_all(b"echo:");
                    let _ = s.write_all(&got);
                }
            });
        }
    });
}

#[test]
fn sockets_are_relayed_both_ways() {
    let Some(d) = Daemon::start("sock") else {
        return;
    };
    let dir = scratch("sock");
    let tool = unixcat(&dir);
    let tool_mount = format!("{}:/usr/local/bin/unixcat:ro", path_str(&tool));
    let host_sock = dir.join("echo.sock");
    host_echo(&host_sock);

    // -v HOST_SOCKET and --ssh (the same agent socket, at Apple's path).
    let sock_mount = format!("{}:/run/echo.sock", path_str(&host_sock));
    let args = run_rm(&[
        "--ssh",
        "-v",
        &tool_mount,
        "-v",
        &sock_mount,
        "busybox",
        "sh",
        "-c",
        "echo one | /usr/local/bin/unixcat /run/echo.sock; echo; echo $SSH_AUTH_SOCK; \
         echo two | /usr/local/bin/unixcat $SSH_AUTH_SOCK",
    ]);
    let out = d
        .cmd(&strs(&args))
        .env("SSH_AUTH_SOCK", &host_sock)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let out = check_ok(&strs(&args), out);
    assert_eq!(
        out, "echo:one\n\n/run/host-services/ssh-auth.sock\necho:two\n",
        "{out}"
    );

    // --publish-socket: a server in the container, reached from the host.
    let published = dir.join("pub.sock");
    let spec = format!("{}:/run/srv.sock", path_str(&published));
    let mut args: Vec<&str> = vec!["run", "-d", "--name", "srv", "--publish-socket", &spec];
    args.extend(SMALL);
    args.extend([
        "-v",
        &tool_mount,
        "busybox",
        "sh",
        "-c",
        "mkdir -p /run && exec /usr/local/bin/unixcat -l /run/srv.sock",
    ]);
    d.ok(&args);
    let mut answer = String::new();
    wait_for(
        "the published socket to answer",
        Duration::from_secs(60),
        || {
            let Ok(mut s) = UnixStream::connect(&published) else {
                return false;
            };
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            if s.write_all(b"ping").is_err() || s.shutdown(std::net::Shutdown::Write).is_err() {
                return false;
            }
            answer.clear();
            s.read_to_string(&mut answer).is_ok() && !answer.is_empty()
        },
    );
    assert_eq!(answer, "echo:ping");
    // Two more connections, at once.
    let clients: Vec<_> = (0..2)
        .map(|i| {
            let p = published.clone();
            std::thread::spawn(move || {
                let mut s = UnixStream::connect(&p).unwrap();
                s.write_all(format!("c{i}").as_bytes()).unwrap();
                s.shutdown(std::net::Shutdown::Write).unwrap();
                let mut back = String::new();
                s.read_to_string(&mut back).unwrap();
                back
            })
        })
        .collect();
    for (i, c) in clients.into_iter().enumerate() {
        assert_eq!(c.join().unwrap(), format!("echo:c{i}"));
    }
    d.ok(&["rm", "-f", "srv"]);
    assert!(
        !published.exists(),
        "the published socket outlived its container"
    );
}

#[test]
fn bad_storage_input_is_one_line_and_creates_nothing() {
    let Some(d) = Daemon::start("sbad") else {
        return;
    };
    let cases: &[(&[&str], &str)] = &[
        (
            &["run", "--rm", "-v", "/no/such/dir:/data", "busybox", "true"],
            "bind mount source /no/such/dir does not exist",
        ),
        (
            &["run", "--rm", "-v", "data:relative", "busybox", "true"],
            "is not absolute",
        ),
        (
            &[
                "run",
                "--rm",
                "--mount",
                "type=bind,source=/tmp,target=/x,bogus=1",
                "busybox",
                "true",
            ],
            "unknown option \"bogus\"",
        ),
        (
            &["run", "--rm", "-v", "/tmp:/x:rx", "busybox", "true"],
            "unknown option \"rx\"",
        ),
        (
            &["run", "--rm", "-v", "a/b:/x", "busybox", "true"],
            "may not contain '/'",
        ),
        (
            &[
                "run",
                "--rm",
                "--publish-socket",
                "/tmp/x.sock",
                "busybox",
                "true",
            ],
            "expected HOST_PATH:CONTAINER_PATH",
        ),
        (&["volume", "create", "a/b"], "may not contain '/'"),
        (
            &["volume", "create", "--opt", "color=red", "v"],
            "unknown option \"color\"",
        ),
        (
            &["volume", "create", "-s", "1k", "v"],
            "below the minimum volume size",
        ),
        (&["volume", "rm", "nope"], "volume nope not found"),
    ];
    for (args, expect) in cases {
        let err = check_fails(args, d.run(args), 125);
        assert!(err.contains(expect), "{args:?}: {err}");
    }
    assert_eq!(d.ok(&["ls", "-a", "-q"]), "", "bad input left containers");
    assert_eq!(d.ok(&["volume", "ls", "-q"]), "", "bad input left volumes");
}
