//! End to end, compose against the daemon's Docker socket, with the daemon inside a network
//! namespace the test creates: a three-service project with a healthcheck gate, a published
//! port, logs, exec, and a `down -v` that leaves nothing behind. Run twice: with compose v2
//! (Debian's Go `docker-compose` 2.x, which `cargo xtask deps` unpacks into
//! `<cache>/tools/bin`) and with compose v1 (Debian bookworm's python `docker-compose` 1.29,
//! the apt package, in /usr/bin), which speaks older API versions and calls.

use container_tests::daemon::Daemon;
use container_tests::docker::docker_env;
use container_tests::docker::find_compose;
use container_tests::{free_port, http_get};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

struct Project {
    d: Daemon,
    compose: PathBuf,
    dir: PathBuf,
    config: PathBuf,
}

impl Project {
    fn cmd(&self, program: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(program);
        c.args(args).current_dir(&self.dir);
        docker_env(&mut c, &self.d.root, &self.config)
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

#[test]
fn compose_v2_up_healthy_gate_logs_exec_down() {
    if let Some(compose) = find_compose(2) {
        project_lifecycle(compose, 2);
    }
}

#[test]
fn compose_v1_up_healthy_gate_logs_exec_down() {
    if let Some(compose) = find_compose(1) {
        project_lifecycle(compose, 1);
    }
}

/// The three-service project through compose of major version `major`.
fn project_lifecycle(compose: PathBuf, major: u32) {
    let test = format!("compose-v{major}");
    let Some(ns) = net::TestNetns::new_or_skip(&test, &format!("cv{major}")) else {
        return;
    };
    let Some(d) = Daemon::start_in(&test, Some(ns.name())) else {
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
    // v2 names containers `ctest-web-1`, v1 `ctest_web_1`.
    let sep = if major == 1 { "_" } else { "-" };
    // The gate held: the worker started only once web was healthy.
    let health = p.docker(&[
        "inspect",
        "--format",
        "{{.State.Health.Status}}",
        &format!("ctest{sep}web{sep}1"),
    ]);
    assert_eq!(health.trim(), "healthy");
    let body = ns
        .run(move || http_get(port, "/"))
        .expect("in the namespace");
    assert!(body.contains("compose-web"), "{body}");
    // compose v1's `ps` has no --format: the docker CLI reads compose's labels instead.
    let ps = p.docker(&[
        "ps",
        "--all",
        "--filter",
        "label=com.docker.compose.project=ctest",
        "--format",
        "{{.Label \"com.docker.compose.service\"}} {{.State}}",
    ]);
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
