//! Support for the end-to-end tests in `tests/tests/`: finding what `cargo xtask` prepared
//! (the test images and the local registries) and skipping, or failing in CI, without it.
//!
//! Tests here drive real binaries and real services; this crate holds no product logic.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub mod daemon;
pub mod docker;

/// Waits (up to a minute, polling every 250 ms) until `f` holds, or fails naming `what`.
pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

/// Writes `files` (path relative to `dir`, content) under `dir`, making their directories.
pub fn write_files(dir: &Path, files: &[(&str, &str)]) {
    for (name, body) in files {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().expect("a file has a parent")).expect("mkdir");
        std::fs::write(p, body).expect("write");
    }
}

/// A TCP port free on 127.0.0.1 at the time of the call.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `GET path` on 127.0.0.1:`port`, retried for up to a minute until something answers (a
/// published port's container may still be booting); the whole reply.
pub fn http_get(port: u16, path: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n");
            let mut body = String::new();
            if s.read_to_string(&mut body).is_ok() && !body.is_empty() {
                return body;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nothing answered on 127.0.0.1:{port}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Now as `--since`/`--until` take it: seconds since the epoch with nanoseconds.
pub fn unix_now_arg() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after the epoch");
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

/// The environment `cargo xtask registry start` writes and `cargo xtask test` exports.
pub struct TestEnv {
    /// host:port of the anonymous registry.
    pub registry: String,
    /// host:port of the basic-auth registry, with its user and password.
    pub auth_registry: String,
    pub auth_user: String,
    pub auth_password: String,
    /// The offline image cache (`oci/<name>/` layouts, `<name>.docker.tar` archives).
    pub images: PathBuf,
}

impl TestEnv {
    /// The prepared environment, or `None` (after saying why) when the tests run outside
    /// `cargo xtask test`. With `CONTAINER_REQUIRE_VM=1` (CI) a missing environment panics.
    pub fn get() -> Option<TestEnv> {
        let var = |name: &str| std::env::var(name).ok();
        let env = (|| {
            Some(TestEnv {
                registry: var("CONTAINER_TEST_REGISTRY")?,
                auth_registry: var("CONTAINER_TEST_AUTH_REGISTRY")?,
                auth_user: var("CONTAINER_TEST_AUTH_USER")?,
                auth_password: var("CONTAINER_TEST_AUTH_PASSWORD")?,
                images: PathBuf::from(var("CONTAINER_TEST_IMAGES")?),
            })
        })();
        if env.is_none() {
            let why = "CONTAINER_TEST_REGISTRY etc. are unset: run through `cargo xtask test`, \
                       or `cargo xtask registry start` and export its output";
            test_support::skip(why);
        }
        env
    }
}
