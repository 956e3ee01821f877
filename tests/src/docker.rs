//! The docker CLI pointed at a test daemon's Docker socket: the one set-up of the tests that
//! drive `docker` (tests/tests/docker.rs, docker_verbs.rs, detach.rs, commit.rs), the
//! environment compose runs in and where compose is.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::daemon::Daemon;

/// A daemon and the docker CLI pointed at its Docker socket.
pub struct Docker {
    /// The daemon.
    pub d: Daemon,
    /// The docker CLI's own config directory (`DOCKER_CONFIG`), inside the daemon's root.
    pub config: PathBuf,
}

/// The docker CLI, or None (skip) when it is not installed outside `cargo xtask test`.
pub fn find_docker() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("docker"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        test_support::skip("the docker CLI is not on the PATH");
    }
    found
}

/// The major version `docker-compose` at `path` reports, if it runs.
fn compose_major(path: &Path) -> Option<u32> {
    let out = Command::new(path)
        .args(["version", "--short"])
        .stdin(Stdio::null())
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()?
        .parse()
        .ok()
}

/// A `docker-compose` of major version `major`: v2 from the dev cache's tools first (the
/// PATH may hold v1 at /usr/bin), v1 from the PATH; None (skip) outside `cargo xtask test`.
pub fn find_compose(major: u32) -> Option<PathBuf> {
    let cache = std::env::var_os("CONTAINER_DEV_CACHE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/container-dev"))
        });
    let mut dirs: Vec<PathBuf> = cache.map(|c| c.join("tools/bin")).into_iter().collect();
    dirs.extend(
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .unwrap_or_default(),
    );
    let found = dirs
        .into_iter()
        .map(|d| d.join("docker-compose"))
        .find(|p| p.is_file() && compose_major(p) == Some(major));
    if found.is_none() {
        test_support::skip(&format!(
            "docker-compose v{major} is not installed (cargo xtask deps)"
        ));
    }
    found
}

/// Points `c` (docker, compose, docker-py) at the Docker socket under `root`, with `config`
/// as its config directory and nothing of the caller's docker context.
pub fn docker_env<'a>(c: &'a mut Command, root: &Path, config: &Path) -> &'a mut Command {
    c.env(
        "DOCKER_HOST",
        format!("unix://{}", root.join("docker.sock").display()),
    )
    .env("DOCKER_CONFIG", config)
    .env_remove("DOCKER_CONTEXT")
    .env_remove("DOCKER_API_VERSION")
}

impl Docker {
    /// A daemon of its own for `test` and the docker CLI, or None (skip) without the CLI.
    pub fn start(test: &str) -> Option<Docker> {
        find_docker()?;
        let d = Daemon::start(test)?;
        let config = d.root.join("docker-config");
        std::fs::create_dir_all(&config).expect("docker config dir");
        assert!(
            d.root.join("docker.sock").exists(),
            "the daemon serves no docker.sock"
        );
        Some(Docker { d, config })
    }

    /// `GET path` on the Docker socket, for what the docker CLI has no command for (an
    /// exec's state); the status code and the body as JSON.
    pub fn api_get(&self, path: &str) -> (u16, serde_json::Value) {
        use std::io::{Read, Write};
        let mut conn = std::os::unix::net::UnixStream::connect(self.d.root.join("docker.sock"))
            .expect("docker.sock");
        conn.set_read_timeout(Some(std::time::Duration::from_secs(60)))
            .expect("a read timeout");
        // HTTP/1.0: the daemon closes the connection after the one answer, unchunked.
        write!(conn, "GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n").expect("request");
        let mut reply = Vec::new();
        conn.read_to_end(&mut reply).expect("the answer");
        let reply = String::from_utf8_lossy(&reply);
        let (head, body) = reply.split_once("\r\n\r\n").expect("an HTTP answer");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no status in {head:?}"));
        let body = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
        (status, body)
    }

    /// A `docker` command against this daemon, stdin closed.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("docker");
        c.args(args);
        docker_env(&mut c, &self.d.root, &self.config).stdin(Stdio::null());
        c
    }

    /// Runs a command to its end.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("docker runs")
    }

    /// Runs and requires success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs and requires exit `code`; returns stderr.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "docker {args:?}: {stderr}");
        stderr
    }
}
