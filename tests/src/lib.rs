//! Support for the end-to-end tests in `tests/tests/`: finding what `cargo xtask` prepared
//! (the test images and the local registries) and skipping, or failing in CI, without it.
//!
//! Tests here drive real binaries and real services; this crate holds no product logic.

use std::path::PathBuf;

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
