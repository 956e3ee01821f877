//! How a test says it cannot run here: the one pattern every tier uses.
//!
//! A test that needs root, a binary, a kernel feature or a prepared environment calls
//! [`skip`] with the reason and returns. Outside `cargo xtask test` that prints
//! `skipping: <why>`; under it (`CONTAINER_REQUIRE_ALL=1`, or `CONTAINER_REQUIRE_VM=1` which
//! it also sets) a missing prerequisite is a failure that names the reason, never a silent
//! pass. The [`missing_root`], [`missing_file`] and [`missing_cgroup2`] checks give the
//! reasons for the common prerequisites.
//!
//! Dev-only: listed under `[dev-dependencies]`, never in a product build.

use std::path::{Path, PathBuf};

/// Set to `1` by `cargo xtask test`: every prerequisite is required.
pub const REQUIRE_ALL_ENV: &str = "CONTAINER_REQUIRE_ALL";
/// Set to `1` by `cargo xtask test` for the VM tiers; also forbids skipping here.
pub const REQUIRE_VM_ENV: &str = "CONTAINER_REQUIRE_VM";

/// Whether this run forbids skipping.
pub fn required() -> bool {
    [REQUIRE_ALL_ENV, REQUIRE_VM_ENV]
        .iter()
        .any(|v| std::env::var(v).as_deref() == Ok("1"))
}

/// A prerequisite is missing: panics with `why` when skipping is forbidden, else says the
/// test skips. The caller returns right after.
#[track_caller]
pub fn skip(why: &str) {
    if required() {
        panic!("missing prerequisite: {why} ({REQUIRE_ALL_ENV}=1 forbids skipping)");
    }
    eprintln!("skipping: {why}");
}

/// `Some(reason)` unless this process runs as root.
pub fn missing_root(for_what: &str) -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    (!root).then(|| format!("needs root ({for_what})"))
}

/// `Some(reason)` unless `path` exists.
pub fn missing_file(path: impl AsRef<Path>, for_what: &str) -> Option<String> {
    let path = path.as_ref();
    (!path.exists()).then(|| format!("needs {} ({for_what})", path.display()))
}

/// The cgroup v2 hierarchy's root, if this host has one.
pub fn cgroup2_root() -> Option<PathBuf> {
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.join("cgroup.procs").exists() && p.join("cgroup.subtree_control").exists())
}

/// `Some(reason)` unless this host has a cgroup v2 hierarchy.
pub fn missing_cgroup2() -> Option<String> {
    cgroup2_root()
        .is_none()
        .then(|| "needs a cgroup v2 hierarchy".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_name_what_is_missing() {
        let missing = missing_file("/nonexistent/busybox", "the test rootfs");
        assert_eq!(
            missing.as_deref(),
            Some("needs /nonexistent/busybox (the test rootfs)")
        );
        assert_eq!(missing_file("/", "anything"), None);
    }

    #[test]
    fn skip_fails_when_required() {
        // The child inherits this process's environment plus the variable; a skip there must
        // panic, and outside it must not.
        if std::env::var("TEST_SUPPORT_CHILD").is_ok() {
            skip("a prerequisite this test invents");
            return;
        }
        let exe = std::env::current_exe().unwrap();
        let run = |require: &str| {
            std::process::Command::new(&exe)
                .args(["--exact", "tests::skip_fails_when_required", "--nocapture"])
                .env("TEST_SUPPORT_CHILD", "1")
                .env(REQUIRE_ALL_ENV, require)
                .env_remove(REQUIRE_VM_ENV)
                .output()
                .unwrap()
        };
        let strict = run("1");
        assert!(!strict.status.success());
        let out = String::from_utf8_lossy(&strict.stdout).into_owned()
            + &String::from_utf8_lossy(&strict.stderr);
        assert!(
            out.contains(
                "missing prerequisite: a prerequisite this test invents (CONTAINER_REQUIRE_ALL=1 forbids skipping)"
            ),
            "{out}"
        );
        let lax = run("0");
        assert!(lax.status.success());
        assert!(
            String::from_utf8_lossy(&lax.stderr)
                .contains("skipping: a prerequisite this test invents")
        );
    }
}
