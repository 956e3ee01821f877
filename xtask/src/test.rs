//! `cargo xtask test`: everything CI runs, in order, stopping what it started.

use crate::arch::Arch;
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
    let guest = guest::build(Arch::host())?;
    // The arm64 guest too (crates/vmm-qemu/tests/arm64.rs boots it under TCG): its kernel
    // and sid chroot are cached, so a warm run only rebuilds vminitd when it changed.
    let arm64 = if Arch::host() == Arch::Arm64 {
        None
    } else {
        Some(guest::build(Arch::Arm64)?)
    };
    if arm64.is_some() {
        vminitd_seccomp_tests_emulated(Arch::Arm64)?;
    }
    let started = registry::start()?;
    let result = checks_and_tests(&guest, arm64.as_ref(), nextest_args);
    if started {
        registry::stop()?;
    }
    result
}

/// vminitd's seccomp unit tests built for `arch` in its sid chroot and run under
/// `qemu-<arch>-static`: the same test list as on the host, so the arm64 table refuses what
/// the x86_64 one refuses. The one test that loads the filter into the kernel is left out:
/// qemu's user-mode emulation refuses seccomp filters (they would filter the emulator's own
/// host syscalls).
fn vminitd_seccomp_tests_emulated(arch: Arch) -> Result<()> {
    step(&format!(
        "vminitd seccomp tests for {} under qemu-{}-static",
        arch.rust_target(),
        arch.qemu_user_name()
    ));
    crate::toolchain::ensure(arch)?.cargo(
        &repo_root(),
        &crate::guest::chroot_target_dir(arch),
        // Static like the guest binary. The test binaries keep glibc's NSS functions (the
        // guest build's LTO drops them), and sid's rustc relays the linker's note on each as
        // a warning: not about our code, so silenced here only.
        &format!("{} -A linker_messages", crate::guest::STATIC_RUSTFLAGS),
        &[
            "test",
            "--quiet",
            "--locked",
            "-p",
            "vminitd",
            "--lib",
            "--target",
            arch.rust_target(),
            "--",
            "seccomp::",
            "--skip",
            "loaded_filter_denies_in_a_child_process",
        ],
    )
}

fn checks_and_tests(
    guest: &guest::Guest,
    arm64: Option<&guest::Guest>,
    nextest_args: &[String],
) -> Result<()> {
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
    // The macOS code (crates/vmm-vz and the macOS side of every platform gate), type-checked
    // against the real objc2 bindings, plus the proof that a wrong call fails that check.
    crate::check_macos::run()?;
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
        // No daemon boots pooled guests beside the tests unless its test asks for a pool
        // (tests/tests/pool.rs): they would only add load.
        .env("CONTAINER_POOL_SIZE", "0")
        // For the VM harnesses (crates/vmm-qemu's testing, the runtime's tests); daemons
        // ignore these and boot what `guest::build` published in target/share/container/.
        .env("CONTAINER_KERNEL", &guest.kernel)
        .env("CONTAINER_INITRD", &guest.initramfs)
        // Tests that need root, busybox or cgroup v2 fail instead of skipping without them.
        .env("CONTAINER_REQUIRE_ALL", "1");
    if let Some(arm64) = arm64 {
        nextest
            .env("CONTAINER_KERNEL_ARM64", &arm64.kernel)
            .env("CONTAINER_INITRD_ARM64", &arm64.initramfs);
    }
    for line in std::fs::read_to_string(registry::env_file())?.lines() {
        if let Some((key, value)) = line.split_once('=') {
            nextest.env(key, value);
        }
    }
    run(&mut nextest)
}
