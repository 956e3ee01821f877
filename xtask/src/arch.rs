//! The guest architectures the project builds: what differs between them for the kernel, the
//! static vminitd and where their artifacts are published. One table, read by `kernel` and
//! `guest`, so an architecture's facts are stated once.

use std::path::PathBuf;

/// A guest architecture, named as the kernel names it (`--arch x86_64`, `--arch arm64`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Arch {
    #[value(name = "x86_64", alias = "amd64")]
    X86_64,
    #[value(name = "arm64", alias = "aarch64")]
    Arm64,
}

impl Arch {
    /// The architecture of the machine running xtask: what `--arch` defaults to.
    pub fn host() -> Arch {
        if cfg!(target_arch = "aarch64") {
            Arch::Arm64
        } else {
            Arch::X86_64
        }
    }

    /// The kernel's name for it (`ARCH=` of the kernel's make, the config fragment's suffix).
    pub fn kernel_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Arm64 => "arm64",
        }
    }

    /// The Rust target vminitd is built for.
    pub fn rust_target(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-unknown-linux-gnu",
            Arch::Arm64 => "aarch64-unknown-linux-gnu",
        }
    }

    /// The GNU toolchain prefix that cross-compiles for this architecture.
    pub fn gnu_prefix(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-linux-gnu-",
            Arch::Arm64 => "aarch64-linux-gnu-",
        }
    }

    /// QEMU's name for it (`qemu-<name>-static`, `qemu-system-<name>`).
    pub fn qemu_user_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Arm64 => "aarch64",
        }
    }

    /// Debian's name for it (`dpkg --print-architecture`, `apt-get install pkg:<arch>`).
    pub fn debian_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    /// Where the guest artifacts of this architecture are published below `target/guest/`
    /// and `target/share/container/`: the host's own at the top, as before arm64 existed and
    /// as an installed daemon expects; the others in a directory named after the kernel arch.
    pub fn publish_subdir(self) -> Option<&'static str> {
        match self {
            Arch::X86_64 => None,
            Arch::Arm64 => Some("arm64"),
        }
    }

    /// `target/guest/` (x86_64) or `target/guest/arm64/`.
    pub fn guest_out_dir(self) -> PathBuf {
        let base = crate::paths::guest_out_dir();
        match self.publish_subdir() {
            Some(sub) => base.join(sub),
            None => base,
        }
    }

    /// `target/share/container/` (x86_64) or `target/share/container/arm64/`.
    pub fn share_dir(self) -> PathBuf {
        let base = crate::paths::share_dir();
        match self.publish_subdir() {
            Some(sub) => base.join(sub),
            None => base,
        }
    }
}
