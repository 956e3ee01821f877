//! End to end, the Docker Engine API: the real `docker` CLI (28.2, on the PATH) with
//! `DOCKER_HOST=unix://<app root>/docker.sock` against a real daemon whose containers run in
//! real VMs. Asserts what a Docker user sees: output, exit codes and error messages.

use container_tests::daemon::Daemon;
use container_tests::docker::{Docker, docker_env, find_docker};
use container_tests::{free_port, http_get};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn docker_run_prints_and_exits_like_docker() {
    let Some(k) = Docker::start("dkrun") else {
        return;
    };
    // The socket is the owner's alone, like the gRPC socket, and status names it.
    use std::os::unix::fs::PermissionsExt;
    let sock = k.d.root.join("docker.sock");
    let mode = std::fs::metadata(&sock)
        .expect("docker.sock")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let status: serde_json::Value =
        serde_json::from_str(&k.d.ok(&["system", "status", "--format", "json"])).expect("json");
    assert_eq!(status["dockerSocket"], sock.display().to_string());
    assert_eq!(k.ok(&["run", "--rm", "busybox", "echo", "hi"]), "hi\n");
    let out = k.run(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    // stdin reaches the container and its end closes the container's stdin.
    let mut child = k
        .cmd(&["run", "-i", "--rm", "busybox", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("docker run -i");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"piped data\n")
        .expect("write stdin");
    let out = child.wait_with_output().expect("docker run -i ends");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "piped data\n");
    // Docker's exit codes for the same failures.
    let e = k.fails(&["run", "--rm", "nosuchimage-dkapi:1", "true"], 125);
    assert!(
        e.contains("Unable to find image 'nosuchimage-dkapi:1' locally"),
        "{e}"
    );
    let e = k.fails(&["run", "--rm", "busybox", "nosuchcmd"], 127);
    assert!(e.contains("executable file not found"), "{e}");
    let e = k.fails(&["run", "--rm", "--privileged", "busybox", "true"], 125);
    assert!(e.contains("HostConfig.Privileged is not supported"), "{e}");
    let e = k.fails(
        &["run", "--rm", "--network", "host", "busybox", "true"],
        125,
    );
    assert!(e.contains("HostConfig.NetworkMode is not supported"), "{e}");
    // --rm left nothing behind.
    assert_eq!(k.ok(&["ps", "-a", "-q"]), "");
}

#[test]
fn docker_detached_container_lifecycle() {
    let Some(k) = Docker::start("dkweb") else {
        return;
    };
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:80");
    let id = k.ok(&[
        "run", "-d", "--name", "web", "-p", &publish, "--label", "role=web", "busybox", "sh",
        "-c", "echo started; echo hello-web > /www; mkdir -p /srv; mv /www /srv/index.html; exec httpd -f -p 80 -h /srv",
    ]);
    let id = id.trim();
    assert_eq!(id.len(), 64, "{id}");
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
    // ps with filters and a format.
    let ps = k.ok(&[
        "ps",
        "--filter",
        "label=role=web",
        "--format",
        "{{.Names}} {{.State}} {{.Ports}}",
    ]);
    assert_eq!(ps.trim(), format!("web running 127.0.0.1:{port}->80/tcp"));
    assert_eq!(k.ok(&["ps", "--filter", "label=role=db", "-q"]), "");
    assert_eq!(
        k.ok(&["ps", "--filter", "name=we", "--format", "{{.ID}}"])
            .trim(),
        &id[..12]
    );
    // The published port serves what the container wrote.
    let page = http_get(port, "/");
    assert!(page.contains("hello-web"), "{page}");
    // A second container of that name is a conflict.
    let e = k.fails(&["run", "-d", "--name", "web", "busybox", "true"], 125);
    assert!(e.contains("already in use"), "{e}");
    // So is a second container on the same host port, failing at its start as in Docker.
    let e = k.fails(
        &[
            "run", "-d", "--name", "web2", "-p", &publish, "busybox", "true",
        ],
        125,
    );
    assert!(e.contains(&port.to_string()), "{e}");
    k.ok(&["rm", "web2"]);
    assert!(k.ok(&["logs", "web"]).contains("started"));
    assert_eq!(k.ok(&["exec", "web", "sh", "-c", "echo $((6*7))"]), "42\n");
    let out = k.run(&["exec", "web", "sh", "-c", "exit 5"]);
    assert_eq!(out.status.code(), Some(5));
    let inspect = k.ok(&[
        "inspect",
        "-f",
        "{{.Name}} {{.State.Status}} {{.Config.Tty}} {{index .Config.Labels \"role\"}}",
        "web",
    ]);
    assert_eq!(inspect.trim(), "/web running false web");
    // top lists the container's processes (through its own ps), not ours.
    let top = k.ok(&["top", "web"]);
    assert!(top.starts_with("PID"), "{top}");
    assert!(
        top.lines().any(|l| l.contains("httpd -f -p 80 -h /srv")),
        "{top}"
    );
    assert!(!top.contains("ps -o"), "{top}");
    // One stats sample, named as Docker names it, counting httpd.
    let stats = k.ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.PIDs}} {{.MemUsage}}",
        "web",
    ]);
    let fields: Vec<&str> = stats.split_whitespace().collect();
    assert_eq!(fields[0], "web", "{stats}");
    assert!(fields[1].parse::<u32>().is_ok_and(|n| n >= 1), "{stats}");
    assert!(stats.contains("MiB /"), "{stats}");
    // docker cp both ways.
    let dir = k.d.root.join("cp");
    std::fs::create_dir_all(&dir).expect("cp dir");
    let src = dir.join("in.txt");
    std::fs::write(&src, "copied in\n").expect("write");
    k.ok(&["cp", src.to_str().expect("utf-8"), "web:/tmp/"]);
    assert_eq!(k.ok(&["exec", "web", "cat", "/tmp/in.txt"]), "copied in\n");
    k.ok(&[
        "exec",
        "web",
        "sh",
        "-c",
        "echo from the container > /tmp/out.txt",
    ]);
    let dst = dir.join("out.txt");
    k.ok(&["cp", "web:/tmp/out.txt", dst.to_str().expect("utf-8")]);
    assert_eq!(
        std::fs::read_to_string(&dst).expect("copied out"),
        "from the container\n"
    );
    // httpd as PID 1 ignores SIGTERM: stop falls back to SIGKILL, and wait says so.
    k.ok(&["stop", "-t", "1", "web"]);
    assert_eq!(k.ok(&["wait", "web"]).trim(), "137");
    let ps = k.ok(&[
        "ps",
        "-a",
        "--filter",
        "status=exited",
        "--format",
        "{{.Names}} {{.Status}}",
    ]);
    assert!(ps.starts_with("web Exited (137)"), "{ps}");
    let e = k.fails(&["start", "-a", "nosuch"], 1);
    assert!(e.contains("No such container: nosuch"), "{e}");
    k.ok(&["rm", "-f", "web"]);
    assert_eq!(k.ok(&["ps", "-a", "-q"]), "");
}

#[test]
fn docker_images_through_the_local_registry() {
    let Some(k) = Docker::start("dkimg") else {
        return;
    };
    let repo = format!("{}/dockerapi-{}/busybox", k.d.mirror, std::process::id());
    let tagged = format!("{repo}:t1");
    k.ok(&["tag", "busybox", &tagged]);
    let push = k.ok(&["push", &tagged]);
    assert!(push.contains("t1: digest: sha256:"), "{push}");
    let rmi = k.ok(&["rmi", &tagged]);
    assert!(rmi.contains(&format!("Untagged: {tagged}")), "{rmi}");
    let pull = k.ok(&["pull", &tagged]);
    assert!(
        pull.contains(&format!("Status: Downloaded newer image for {tagged}")),
        "{pull}"
    );
    assert_eq!(pull.lines().last(), Some(tagged.as_str()), "{pull}");
    let images = k.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    let mut names: Vec<&str> = images.lines().collect();
    names.sort();
    let mut want = vec!["busybox:latest", tagged.as_str()];
    want.sort();
    assert_eq!(names, want);
    assert_eq!(
        k.ok(&["run", "--rm", &tagged, "echo", "pulled"]),
        "pulled\n"
    );
    // save and load.
    let archive = k.d.root.join("saved.tar");
    k.ok(&["save", &tagged, "-o", archive.to_str().expect("utf-8")]);
    assert!(std::fs::metadata(&archive).expect("saved").len() > 100_000);
    k.ok(&["rmi", &tagged]);
    let load = k.ok(&["load", "-i", archive.to_str().expect("utf-8")]);
    assert!(load.contains(&format!("Loaded image: {tagged}")), "{load}");
    k.ok(&["rmi", &tagged]);
    let e = k.fails(&["rmi", &tagged], 1);
    assert!(e.contains("No such image"), "{e}");
}

#[test]
fn docker_volumes_create_list_and_remove() {
    let Some(k) = Docker::start("dkvol") else {
        return;
    };
    assert_eq!(
        k.ok(&["volume", "create", "--label", "k=v", "testvol"])
            .trim(),
        "testvol"
    );
    let ls = k.ok(&[
        "volume",
        "ls",
        "--filter",
        "label=k=v",
        "--format",
        "{{.Driver}} {{.Name}}",
    ]);
    assert_eq!(ls.trim(), "local testvol");
    let out = k.ok(&[
        "run",
        "--rm",
        "-v",
        "testvol:/data",
        "busybox",
        "sh",
        "-c",
        "echo kept > /data/f",
    ]);
    assert_eq!(out, "");
    assert_eq!(
        k.ok(&[
            "run",
            "--rm",
            "-v",
            "testvol:/data",
            "busybox",
            "cat",
            "/data/f"
        ]),
        "kept\n"
    );
    k.ok(&["volume", "rm", "testvol"]);
    assert_eq!(k.ok(&["volume", "ls", "-q"]), "");
    let e = k.fails(&["volume", "rm", "testvol"], 1);
    assert!(e.contains("no such volume"), "{e}");
}

/// The daemon in bridge mode inside a namespace of the test's own, for user networks.
#[test]
fn docker_networks_create_list_and_remove() {
    let Some(_docker) = find_docker() else {
        return;
    };
    let Some(ns) = net::TestNetns::new_or_skip("dknet", "dknet") else {
        return;
    };
    let Some(d) = Daemon::start_in("dknet", Some(ns.name())) else {
        return;
    };
    let config = d.root.join("docker-config");
    std::fs::create_dir_all(&config).expect("docker config dir");
    let k = Docker { d, config };
    let id = k.ok(&["network", "create", "--label", "team=a", "testnet"]);
    assert_eq!(id.trim().len(), 64, "{id}");
    let ls = k.ok(&[
        "network",
        "ls",
        "--filter",
        "label=team=a",
        "--format",
        "{{.Name}} {{.Driver}}",
    ]);
    assert_eq!(ls.trim(), "testnet bridge");
    let inspect = k.ok(&["network", "inspect", "-f", "{{.Name}} {{.Id}}", "testnet"]);
    assert_eq!(inspect.trim(), format!("testnet {}", id.trim()));
    let e = k.fails(&["network", "create", "testnet"], 1);
    assert!(e.contains("testnet"), "{e}");
    k.ok(&["network", "rm", "testnet"]);
    assert!(
        !k.ok(&["network", "ls", "--format", "{{.Name}}"])
            .contains("testnet")
    );
    drop(k);
    drop(ns);
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after the epoch")
        .as_secs_f64()
}

/// `docker events` from the daemon's event bus: a replayed window with filters, Docker's
/// message fields, and a live stream that ends at `--until`.
#[test]
fn docker_events_replay_filter_and_stream() {
    let Some(k) = Docker::start("dkevents") else {
        return;
    };
    let since = format!("{:.3}", unix_now() - 1.0);
    k.ok(&[
        "run", "--name", "evbox", "--label", "tier=x", "busybox", "true",
    ]);
    k.ok(&["rm", "evbox"]);
    let until = format!("{:.3}", unix_now() + 1.0);
    let lines = k.ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "container=evbox",
        "--format",
        "{{json .}}",
    ]);
    let events: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON message a line"))
        .collect();
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["Action"].as_str().unwrap_or(""))
        .collect();
    let at = |a: &str| actions.iter().position(|x| *x == a);
    assert!(
        at("create") < at("start") && at("start") < at("die") && at("die") < at("destroy"),
        "create, start, die, destroy in order: {actions:?}"
    );
    assert!(at("create").is_some(), "{actions:?}");
    for e in &events {
        assert_eq!(e["Type"], "container", "{e}");
        assert_eq!(e["Actor"]["Attributes"]["name"], "evbox", "{e}");
        assert_eq!(e["Actor"]["Attributes"]["tier"], "x", "{e}");
        assert_eq!(e["status"], e["Action"], "{e}");
        assert_eq!(e["id"], e["Actor"]["ID"], "{e}");
        assert_eq!(e["Actor"]["ID"].as_str().map(str::len), Some(64), "{e}");
        assert_eq!(e["scope"], "local", "{e}");
    }
    // Keys must all match; values of one key are alternatives.
    let dies = k.ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "container=evbox",
        "--filter",
        "event=die",
        "--filter",
        "event=destroy",
        "--format",
        "{{.Action}}",
    ]);
    assert_eq!(dies, "die\ndestroy\n");
    let labelled = k.ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "label=tier=y",
    ]);
    assert_eq!(labelled, "", "no event has tier=y");
    // The default format: Docker's one line a message.
    let plain = k.ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "container=evbox",
        "--filter",
        "event=start",
    ]);
    assert!(
        plain.contains(" container start ") && plain.contains("name=evbox"),
        "{plain}"
    );
    // Live: a stream with a future `--until` carries what happens meanwhile, then ends.
    let live_until = format!("{:.3}", unix_now() + 25.0);
    let child = k
        .cmd(&[
            "events",
            "--until",
            &live_until,
            "--filter",
            "type=volume",
            "--format",
            "{{.Action}} {{.Actor.ID}}",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("docker events starts");
    std::thread::sleep(Duration::from_secs(2));
    k.ok(&["volume", "create", "evvol"]);
    k.ok(&["volume", "rm", "evvol"]);
    let started = std::time::Instant::now();
    let out = child.wait_with_output().expect("docker events ends");
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "the stream outlived --until"
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "create evvol\ndestroy evvol\n"
    );
    // A bad filter is Docker's 400, one line.
    let err = k.fails(&["events", "--until", &until, "--filter", "colour=red"], 1);
    assert!(err.contains("invalid filter"), "{err}");
}

/// Healthchecks through the Engine API: `--health-*` flags reach the daemon's prober, and
/// inspect, ps and events show what it found.
#[test]
fn docker_healthcheck_inspect_ps_and_events() {
    let Some(k) = Docker::start("dkhealth") else {
        return;
    };
    let since = format!("{:.3}", unix_now() - 1.0);
    k.ok(&[
        "run",
        "-d",
        "--name",
        "hc",
        "--health-cmd",
        "test -f /tmp/ready && echo ready",
        "--health-interval",
        "1s",
        "--health-retries",
        "2",
        "--health-timeout",
        "5s",
        "busybox",
        "sh",
        "-c",
        "sleep 4; touch /tmp/ready; sleep 600",
    ]);
    let status = || {
        k.ok(&["inspect", "--format", "{{.State.Health.Status}}", "hc"])
            .trim()
            .to_owned()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let mut seen = vec![];
    loop {
        let s = status();
        if seen.last() != Some(&s) {
            seen.push(s.clone());
        }
        if s == "healthy" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never healthy: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let health: serde_json::Value =
        serde_json::from_str(&k.ok(&["inspect", "--format", "{{json .State.Health}}", "hc"]))
            .expect("health json");
    assert_eq!(health["FailingStreak"], 0, "{health}");
    let log = health["Log"].as_array().expect("a log");
    let last = log.last().expect("a probe");
    assert_eq!(last["ExitCode"], 0, "{health}");
    assert_eq!(
        last["Output"].as_str().map(str::trim),
        Some("ready"),
        "{health}"
    );
    assert!(
        last["Start"].as_str().is_some_and(|t| t.starts_with("20")),
        "{health}"
    );
    let ps = k.ok(&[
        "ps",
        "--filter",
        "health=healthy",
        "--format",
        "{{.Names}} {{.Status}}",
    ]);
    assert!(
        ps.starts_with("hc Up ") && ps.trim_end().ends_with("(healthy)"),
        "{ps}"
    );
    assert_eq!(
        k.ok(&[
            "ps",
            "--filter",
            "health=unhealthy",
            "--format",
            "{{.Names}}"
        ]),
        ""
    );
    let until = format!("{:.3}", unix_now() + 1.0);
    let events = k.ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "event=health_status",
        "--format",
        "{{.Action}}",
    ]);
    assert!(
        events.lines().any(|l| l == "health_status: healthy"),
        "{events}"
    );
    // --no-healthcheck: no Health at all.
    k.ok(&[
        "run",
        "-d",
        "--name",
        "nohc",
        "--no-healthcheck",
        "busybox",
        "sleep",
        "600",
    ]);
    assert_eq!(
        k.ok(&["inspect", "--format", "{{json .State.Health}}", "nohc"])
            .trim(),
        "null"
    );
    k.ok(&["rm", "-f", "hc", "nohc"]);
}

/// docker-py's own pytest suite under tests/docker-py, against a real daemon.
#[test]
fn docker_py_suite() {
    let Some(k) = Docker::start("dkpy") else {
        return;
    };
    let suite = Path::new(env!("CARGO_MANIFEST_DIR")).join("docker-py");
    // pytest comes from apt (python3-pytest, `cargo xtask deps`); docker-py 7 from the
    // machine's python3. Debian's dist-packages go after the interpreter's own packages.
    let runner = "import sys; sys.path.append('/usr/lib/python3/dist-packages'); \
                  import pytest; sys.exit(pytest.main(sys.argv[1:]))";
    let check = Command::new("python3")
        .args(["-c", "import sys; sys.path.append('/usr/lib/python3/dist-packages'); import pytest, docker; print(docker.__version__)"])
        .output();
    match check {
        Ok(o) if o.status.success() => {
            let v = String::from_utf8_lossy(&o.stdout);
            assert!(v.starts_with('7'), "docker-py 7 expected, found {v}");
        }
        _ => {
            test_support::skip("python3 with pytest and docker-py 7 is missing (cargo xtask deps)");
            return;
        }
    }
    let mut pytest = Command::new("python3");
    pytest
        .args(["-c", runner, "-q", "-p", "no:cacheprovider"])
        .arg(&suite);
    let out = docker_env(&mut pytest, &k.d.root, &k.config)
        .env("TEST_REGISTRY", &k.d.mirror)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pytest failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(" passed"), "{stdout}");
    assert!(!stdout.contains("skipped"), "{stdout}");
}

/// `X-Registry-Auth`: the docker CLI's login (its config.json, never the daemon's store)
/// reaches the basic-auth registry on pull and push; without it both are refused.
#[test]
fn docker_registry_auth_header_for_pull_and_push() {
    let Some(k) = Docker::start("dkauth") else {
        return;
    };
    let env = container_tests::TestEnv::get().expect("the test environment");
    let registry = env.auth_registry.clone();
    let image = format!("{registry}/library/busybox:1.36");
    let pushed = format!("{registry}/s5compat-{}/busybox:auth", std::process::id());
    // No login anywhere: the registry refuses, so nothing below can pass on stored logins.
    let e = k.fails(&["pull", &image], 1);
    assert!(
        e.contains(&format!("registry {registry} requires authentication")),
        "{e}"
    );
    k.ok(&["tag", "busybox", &pushed]);
    let out = k.run(&["push", &pushed]);
    assert!(!out.status.success(), "a push without credentials passed");
    // The docker CLI's own login: it sends it as X-Registry-Auth.
    let auth = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", env.auth_user, env.auth_password))
    };
    std::fs::write(
        k.config.join("config.json"),
        format!(r#"{{"auths":{{"{registry}":{{"auth":"{auth}"}}}}}}"#),
    )
    .expect("config.json");
    let pull = k.ok(&["pull", &image]);
    assert_eq!(pull.lines().last(), Some(image.as_str()), "{pull}");
    let images = k.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(
        images.lines().any(|l| l == image),
        "{image} not listed: {images}"
    );
    let push = k.ok(&["push", &pushed]);
    assert!(push.contains("auth: digest: sha256:"), "{push}");
    // The daemon stored nothing: our CLI still has no login for that registry.
    let logins = k.d.ok(&["registry", "list", "--format", "json"]);
    assert!(!logins.contains(&registry), "{logins}");
}

/// A stopped container: `docker cp` out of it works (a read-only maintenance VM), and into
/// it (a writable one) but for a path under a volume; it leaves a network (a running one is
/// refused with 409).
#[test]
fn docker_stopped_container_cp_and_network_disconnect() {
    let Some(k) = Docker::start("dkstop") else {
        return;
    };
    k.ok(&[
        "run",
        "--name",
        "st",
        "busybox",
        "sh",
        "-c",
        "echo kept-in-layer > /f",
    ]);
    let out_dir = k.d.root.join("cp-out");
    std::fs::create_dir_all(&out_dir).expect("cp-out dir");
    let dest = out_dir.join("f");
    k.ok(&["cp", "st:/f", dest.to_str().expect("utf-8")]);
    assert_eq!(
        std::fs::read_to_string(&dest).expect("copied out"),
        "kept-in-layer\n"
    );
    // Into it: the file lands in its writable layer, and the container reads it once it
    // starts (`docker start -a` prints what it cat).
    k.ok(&[
        "create",
        "--name",
        "reader",
        "-v",
        "dkvol:/data",
        "busybox",
        "cat",
        "/g",
    ]);
    k.ok(&["cp", dest.to_str().expect("utf-8"), "reader:/g"]);
    assert_eq!(k.ok(&["start", "-a", "reader"]), "kept-in-layer\n");
    // Under a volume, which only a running container has attached: refused in words.
    let e = k.fails(&["cp", dest.to_str().expect("utf-8"), "reader:/data/g"], 1);
    assert!(e.contains("/data is on a volume of the container"), "{e}");
    // Leaving its only network leaves it with none; a second time it is not connected.
    k.ok(&["network", "disconnect", "bridge", "st"]);
    let inspect = k.ok(&["inspect", "-f", "{{.HostConfig.NetworkMode}}", "st"]);
    assert_eq!(inspect.trim(), "none");
    let e = k.fails(&["network", "disconnect", "bridge", "st"], 1);
    assert!(e.contains("is not connected to network"), "{e}");
    k.ok(&["run", "-d", "--name", "up", "busybox", "sleep", "600"]);
    let e = k.fails(&["network", "disconnect", "bridge", "up"], 1);
    assert!(
        e.contains("container up is running: its VM keeps its network devices"),
        "{e}"
    );
    k.ok(&["rm", "-f", "up", "st", "reader"]);
}
