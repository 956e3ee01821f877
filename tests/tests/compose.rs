//! End to end, compose v2 (Debian's `docker-compose`, installed by `cargo xtask deps` into
//! `<cache>/tools/bin`) against the daemon's Docker socket, with the daemon inside a network
//! namespace the test creates: a three-service project with a healthcheck gate, a published
//! port, logs, exec, and a `down -v` that leaves nothing behind.

use container_tests::daemon::Daemon;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// `docker-compose` from the PATH or the dev cache's tools, or None (skip) outside
/// `cargo xtask test`.
fn find_compose() -> Option<PathBuf> {
    let cache = std::env::var_os("CONTAINER_DEV_CACHE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/container-dev"))
        });
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(cache.map(|c| c.join("tools/bin")));
    let found = dirs
        .into_iter()
        .map(|d| d.join("docker-compose"))
        .find(|p| p.is_file());
    if found.is_none() {
        test_support::skip("docker-compose is not installed (cargo xtask deps)");
    }
    found
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

struct Project {
    d: Daemon,
    compose: PathBuf,
    dir: PathBuf,
    config: PathBuf,
}

impl Project {
    fn cmd(&self, program: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(program);
        c.args(args)
            .current_dir(&self.dir)
            .env(
                "DOCKER_HOST",
                format!("unix://{}", self.d.root.join("docker.sock").display()),
            )
            .env("DOCKER_CONFIG", &self.config)
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_API_VERSION")
            .env_remove("COMPOSE_FILE")
            .env("COMPOSE_PROJECT_NAME", "ctest")
            .stdin(Stdio::null());
        c
    }

    fn output(&self, program: &Path, args: &[&str]) -> Output {
        self.cmd(program, args).output().expect("runs")
    }

    /// `docker-compose args…`, required to succeed; its stdout.
    fn compose(&self, args: &[&str]) -> String {
        let out = self.output(&self.compose, args);
        assert!(
            out.status.success(),
            "compose {args:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `docker args…`, required to succeed; its stdout.
    fn docker(&self, args: &[&str]) -> String {
        let out = self.output(Path::new("docker"), args);
        assert!(
            out.status.success(),
            "docker {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn http_get(port: u16) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = write!(s, "GET / HTTP/1.0\r\nHost: x\r\n\r\n");
            let mut body = String::new();
            if s.read_to_string(&mut body).is_ok() && !body.is_empty() {
                return body;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nothing answered on 127.0.0.1:{port}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn compose_up_healthy_gate_logs_exec_down() {
    let Some(compose) = find_compose() else {
        return;
    };
    let Some(ns) = net::TestNetns::new_or_skip("compose", "cmp") else {
        return;
    };
    let Some(d) = Daemon::start_in("compose", Some(ns.name())) else {
        return;
    };
    let dir = d.root.join("project");
    let config = d.root.join("docker-config");
    std::fs::create_dir_all(&dir).expect("project dir");
    std::fs::create_dir_all(&config).expect("docker config dir");
    let port = free_port();
    std::fs::write(
        dir.join("compose.yaml"),
        format!(
            r#"services:
  web:
    image: busybox
    command: ["sh", "-c", "mkdir -p /www && echo compose-web > /www/index.html && echo web-up && exec httpd -f -p 80 -h /www"]
    ports: ["127.0.0.1:{port}:80"]
    volumes: ["data:/data"]
    healthcheck:
      test: ["CMD-SHELL", "wget -q -O- http://127.0.0.1/ | grep -q compose-web"]
      interval: 1s
      timeout: 5s
      retries: 30
  worker:
    image: busybox
    command: ["sh", "-c", "echo worker-started; exec sleep 600"]
    depends_on:
      web:
        condition: service_healthy
  job:
    image: busybox
    command: ["echo", "job-done"]
volumes:
  data: {{}}
"#
        ),
    )
    .expect("compose.yaml");
    let p = Project {
        d,
        compose,
        dir,
        config,
    };
    p.compose(&["up", "-d", "--quiet-pull"]);
    // The gate held: the worker started only once web was healthy.
    let health = p.docker(&[
        "inspect",
        "--format",
        "{{.State.Health.Status}}",
        "ctest-web-1",
    ]);
    assert_eq!(health.trim(), "healthy");
    let body = ns.run(move || http_get(port)).expect("in the namespace");
    assert!(body.contains("compose-web"), "{body}");
    let ps = p.compose(&["ps", "--all", "--format", "{{.Service}} {{.State}}"]);
    let mut rows: Vec<&str> = ps.lines().collect();
    rows.sort();
    assert_eq!(
        rows,
        ["job exited", "web running", "worker running"],
        "{ps}"
    );
    let logs = p.compose(&["logs", "--no-color"]);
    for want in ["web-up", "worker-started", "job-done"] {
        assert!(logs.contains(want), "compose logs lacks {want}: {logs}");
    }
    assert_eq!(
        p.compose(&["exec", "-T", "web", "cat", "/www/index.html"]),
        "compose-web\n"
    );
    assert_eq!(
        p.compose(&["exec", "-T", "worker", "sh", "-c", "echo $((6 * 7))"]),
        "42\n"
    );
    p.compose(&["down", "-v"]);
    assert_eq!(p.docker(&["ps", "-a", "--format", "{{.Names}}"]), "");
    let networks = p.docker(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(!networks.contains("ctest"), "{networks}");
    let volumes = p.docker(&["volume", "ls", "--format", "{{.Name}}"]);
    assert!(!volumes.contains("ctest"), "{volumes}");
    drop(p);
    drop(ns);
}
