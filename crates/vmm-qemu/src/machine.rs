//! One machine description per guest architecture: what the QEMU command line, the KVM probe
//! and the program lookup need to know about it. The devices themselves are the same on
//! both: `microvm` and `virt` each have virtio-mmio transports, so the vsock, block, net and
//! virtio-fs devices are the same `-device ...-device` lines; only the board, its console and
//! its timer words differ.

use vmm::Arch;

use crate::tools::{self, Tool};

/// How QEMU emulates or virtualises one guest architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Machine {
    /// The guest architecture this row is for.
    pub arch: Arch,
    /// The QEMU system emulator.
    pub qemu: Tool,
    /// The `-M` board (options are appended after a comma).
    pub board: &'static str,
    /// The serial console the board has, as the guest kernel names it.
    pub console: &'static str,
    /// Kernel command line words for this board (timers), after the common ones.
    pub cmdline: &'static [&'static str],
    /// Whether the guest is told the host's TSC rate under TCG (`tsc_early_khz`).
    pub tsc_rate: bool,
    /// `/proc/cpuinfo` flags of which one must be present before KVM is probed; empty when
    /// the host architecture has no such flag (arm64: `/dev/kvm` and the probe decide).
    pub kvm_cpu_flags: &'static [&'static str],
}

/// x86_64 guests: the `microvm` board (no PCI, no firmware tables, fastest boot).
pub const X86_64: Machine = Machine {
    arch: Arch::X86_64,
    qemu: tools::QEMU_X86_64,
    board: "microvm",
    console: "ttyS0",
    // The timer words cut about 0.2 s of boot under TCG.
    cmdline: &["tsc=reliable", "no_timer_check"],
    tsc_rate: true,
    kvm_cpu_flags: &["vmx", "svm"],
};

/// aarch64 guests: the `virt` board with the highest GIC the accelerator offers (GICv3 under
/// TCG, the host's under KVM); PL011 is its serial console.
pub const AARCH64: Machine = Machine {
    arch: Arch::Aarch64,
    qemu: tools::QEMU_AARCH64,
    board: "virt,gic-version=max",
    console: "ttyAMA0",
    cmdline: &[],
    tsc_rate: false,
    kvm_cpu_flags: &[],
};

/// The machine for a guest of `arch`.
pub fn for_arch(arch: Arch) -> &'static Machine {
    match arch {
        Arch::X86_64 => &X86_64,
        Arch::Aarch64 => &AARCH64,
    }
}

impl Machine {
    /// Whether hardware virtualisation can run this guest here at all: only a guest of the
    /// host's own architecture can.
    pub fn native(&self) -> bool {
        self.arch == Arch::host()
    }
}
