//! `cargo xtask test`: everything CI runs, in order, stopping what it started.

use crate::paths::repo_root;
use crate::run::{run, step};
use crate::{deps, guest, registry};
use anyhow::Result;
use std::process::Command;

/// The test harnesses (VM boots, network namespaces) live behind these features so that no
/// product build contains them.
const TEST_FEATURES: &str = "vmm-qemu/testing,net/testing";

pub fn run_all(nextest_args: &[String]) -> Result<()> {
    deps::install()?;
    let guest = guest::build(crate::arch::Arch::host())?;
    let started = registry::start()?;
    let result = checks_and_tests(&guest, nextest_args);
    if started {
        registry::stop()?;
    }
    result
}

fn checks_and_tests(guest: &guest::Guest, nextest_args: &[String]) -> Result<()> {
    let cargo = || {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.current_dir(repo_root());
        cmd
    };
    step("module cycles (cargo xtask modules)");
    crate::modules::check()?;
    step("cargo fmt --check");
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    step("cargo clippy --all-targets -- -D warnings");
    run(cargo().args([
        "clippy",
        "--quiet",
        "--workspace",
        "--all-targets",
        "--features",
        TEST_FEATURES,
        "--",
        "-D",
        "warnings",
    ]))?;
    // The daemon's platform-neutral code must build with its Linux-only modules gone
    // (crates/apiserver/src/platform/linux.rs and crates/net's `host`), as it must on macOS:
    // a Linux-only item named outside those modules fails here.
    step("cargo clippy -p apiserver -p net --no-default-features (no linux-only code)");
    run(cargo().args([
        "clippy",
        "--quiet",
        "-p",
        "apiserver",
        "-p",
        "net",
        "--no-default-features",
        "--",
        "-D",
        "warnings",
    ]))?;
    step("cargo nextest run");
    let mut nextest = cargo();
    nextest
        .args(["nextest", "run", "--workspace", "--no-fail-fast"])
        .args(["--features", TEST_FEATURES])
        .args(nextest_args)
        // VM tests fail instead of skipping when the guest is missing.
        .env("CONTAINER_REQUIRE_VM", "1")
        // Every daemon a test starts stays off the host's network unless the test asks for
        // bridge mode itself, inside a namespace of its own (tests/tests/network.rs).
        .env("CONTAINER_NETWORK_MODE", "user")
        // For the VM harnesses (crates/vmm-qemu's testing, the runtime's tests); daemons
        // ignore these and boot what `guest::build` published in target/share/container/.
        .env("CONTAINER_KERNEL", &guest.kernel)
        .env("CONTAINER_INITRD", &guest.initramfs)
        // Tests that need root, busybox or cgroup v2 fail instead of skipping without them.
        .env("CONTAINER_REQUIRE_ALL", "1");
    for line in std::fs::read_to_string(registry::env_file())?.lines() {
        if let Some((key, value)) = line.split_once('=') {
            nextest.env(key, value);
        }
    }
    run(&mut nextest)
}
