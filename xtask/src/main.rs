//! `cargo xtask`: the one entry point for developer tasks (host dependencies, the guest kernel
//! and initramfs, offline test images, the local registry, the whole test run, benchmarks).
//!
//! Everything it builds is cached outside the repository (see [`paths::cache_dir`]) and keyed
//! by its inputs, so a warm machine skips work whose inputs did not change.

mod arch;
mod bare_boot;
mod bench;
mod bench_build;
mod bench_daemon;
mod bench_mem;
mod bench_options;
mod bench_pool;
mod check_macos;
mod deps;
mod guest;
mod images;
mod kernel;
mod modules;
mod paths;
mod quickstart;
mod registry;
mod run;
mod test;
mod toolchain;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Developer tasks for container")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install every host dependency (apt packages, cargo-installed helpers), idempotently.
    Deps,
    /// Build the guest kernel from Debian's linux-source into the cache.
    Kernel {
        /// The guest architecture (arm64 is cross-built with gcc-aarch64-linux-gnu).
        #[arg(long, value_enum, default_value_t = arch::Arch::host())]
        arch: arch::Arch,
    },
    /// Build the static vminitd and the guest initramfs; also ensures the kernel.
    Guest {
        /// The guest architecture (arm64's vminitd is built in a cached Debian sid chroot).
        #[arg(long, value_enum, default_value_t = arch::Arch::host())]
        arch: arch::Arch,
    },
    /// Build the offline test images (OCI layouts and docker-save archives) into the cache.
    Images,
    /// Run or stop the local registries (plain and basic-auth) holding the test images.
    Registry {
        #[command(subcommand)]
        action: registry::Action,
    },
    /// Speed goals as ratios against baselines measured in the same run.
    Bench {
        #[arg(value_enum, default_value = "all")]
        which: bench::Which,
        /// Runs per measurement; the best is reported.
        #[arg(long, default_value_t = 3)]
        runs: u32,
        /// Use the container, container-apiserver and container-runtime in this directory
        /// instead of a release build (the figures then say which build they measured).
        #[arg(long)]
        bin_dir: Option<std::path::PathBuf>,
    },
    /// The module-level import graph of every crate: fail on a cycle.
    Modules,
    /// Set everything up and run a container from the bundled busybox image, offline.
    Quickstart,
    /// Type-check the macOS code (vmm-vz and the host crates' macOS modules) on Linux.
    CheckMacos,
    /// Everything CI runs: deps, guest, images, registry, fmt, clippy, the test suite.
    Test {
        /// Extra arguments for `cargo nextest run` (e.g. a test name filter).
        #[arg(trailing_var_arg = true)]
        nextest_args: Vec<String>,
    },
}

fn main() -> Result<()> {
    let command = Cli::parse().command;
    if matches!(
        command,
        Command::Guest { .. } | Command::Quickstart | Command::Bench { .. } | Command::Test { .. }
    ) {
        paths::claim_target_dir()?;
    }
    match command {
        Command::Deps => deps::install(),
        Command::Kernel { arch } => kernel::build(arch).map(|k| println!("{}", k.display())),
        Command::Guest { arch } => guest::build(arch).map(|g| g.print()),
        Command::CheckMacos => check_macos::run(),
        Command::Images => images::build().map(|dir| println!("{}", dir.display())),
        Command::Registry { action } => registry::command(action),
        Command::Modules => modules::check(),
        Command::Quickstart => quickstart::run_quickstart(),
        Command::Bench {
            which,
            runs,
            bin_dir,
        } => bench::run_bench(which, runs, bin_dir),
        Command::Test { nextest_args } => test::run_all(&nextest_args),
    }
}
