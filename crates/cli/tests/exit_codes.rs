//! Exit codes and one-line errors of the real binary, with no daemon running.

use std::process::{Command, Output};

fn container(app_root: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_container"))
        .args(args)
        .env("CONTAINER_APP_ROOT", app_root)
        .env_remove("CONTAINER_DEFAULT_PLATFORM")
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_daemon_that_is_not_running_is_one_line_and_125() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("apiserver.sock");
    for args in [
        &["list"][..],
        &["run", "alpine", "true"],
        &["image", "ls"],
        &["registry", "list"],
        &["system", "df"],
        &["logs", "web"],
    ] {
        let out = container(dir.path(), args);
        assert_eq!(out.status.code(), Some(125), "{args:?}");
        assert_eq!(
            stderr(&out),
            format!(
                "container: cannot reach the container daemon at {}: is it running? (container system start)\n",
                socket.display()
            ),
            "{args:?}"
        );
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn usage_errors_are_125() {
    let dir = tempfile::tempdir().unwrap();
    let out = container(dir.path(), &["list", "--bogus"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).starts_with("error: unexpected argument '--bogus' found"));
    let out = container(dir.path(), &["frobnicate"]);
    assert_eq!(out.status.code(), Some(125));
    let out = container(
        dir.path(),
        &["run", "--no-dns", "--dns", "1.1.1.1", "alpine"],
    );
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("cannot be used with"),
        "{}",
        stderr(&out)
    );
}

// Flag values are checked before the daemon is asked, so these fail the same with or
// without a daemon, naming what was wrong.
#[test]
fn bad_flag_values_name_what_was_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &["run", "-p", "80:x", "alpine"],
            "container: invalid port spec \"80:x\": container port \"x\" is not a number\n",
        ),
        (
            &["run", "-v", "a/b:/x", "alpine"],
            "container: invalid volume spec \"a/b:/x\": volume name \"a/b\" may not contain '/' (write a host path as an absolute or ./relative path)\n",
        ),
        (
            &[
                "create",
                "--mount",
                "type=bind,src=/a,dst=/b,bogus=1",
                "alpine",
            ],
            "container: invalid mount spec \"type=bind,src=/a,dst=/b,bogus=1\": unknown option \"bogus\"\n",
        ),
        (
            &["run", "-m", "1q", "alpine"],
            "container: --memory: invalid size \"1q\": expected a number with an optional unit (b, k, m, g, t, p), e.g. 512m\n",
        ),
        (
            &["kill", "-s", "SIGNOPE", "web"],
            "container: invalid signal \"SIGNOPE\": expected a name such as TERM or SIGKILL, or a number from 1 to 64\n",
        ),
        (
            &["run", "--platform", "linux", "alpine"],
            "container: invalid platform \"linux\": expected os/arch[/variant], e.g. linux/arm64\n",
        ),
        (
            &["delete"],
            "container: no containers given: name at least one, or use --all\n",
        ),
        (
            &["delete", "-a", "web"],
            "container: explicitly supplied container IDs conflict with the --all flag\n",
        ),
        (
            &["cp", "a", "b"],
            "container: one of SOURCE and DEST must be CONTAINER:PATH\n",
        ),
    ];
    for (args, expected) in cases {
        let out = container(dir.path(), args);
        assert_eq!(out.status.code(), Some(125), "{args:?}");
        assert_eq!(stderr(&out), *expected, "{args:?}");
    }
}

#[test]
fn status_without_a_daemon_says_so_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let out = container(dir.path(), &["system", "status", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text,
        format!(
            "{{\"appRoot\":\"{}\",\"status\":\"not running\"}}\n",
            dir.path().display()
        )
    );
}

#[test]
fn system_start_without_the_daemon_program_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-apiserver");
    let out = container(
        dir.path(),
        &[
            "system",
            "start",
            "--apiserver",
            missing.to_str().unwrap(),
            "--timeout",
            "2",
        ],
    );
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).starts_with(&format!("container: starting {}: ", missing.display())),
        "{}",
        stderr(&out)
    );
}
