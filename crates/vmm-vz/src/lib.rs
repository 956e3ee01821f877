//! The Virtualization.framework backend of the `vmm` traits, for macOS hosts: one
//! `VZVirtualMachine` per VM, booted by `VZLinuxBootLoader` from the same kernel and
//! initramfs as everywhere, with virtio-blk disks (cached, guest flushes as `fsync`), one
//! virtio socket device (the host dials the agent on port 1024 and listens on the stdio
//! ports the guest dials), virtio-fs shares under the tags the guest mounts, a virtio console
//! into the boot log, a memory balloon, an entropy device and NICs on VZ's NAT.
//!
//! It is a thin adapter: [`plan`] decides the devices from a [`vmm::VmConfig`] (the shared
//! validation, this backend's limits, the kernel command line from [`vmm::cmdline`]) and is
//! compiled and tested on every host; `vz` (macOS only) turns that plan into framework
//! objects, all made and used on the VM's one serial dispatch queue. It must not know about
//! containers, images or the guest agent's protocol, and holds no logic the QEMU backend has.
//!
//! On Linux the framework layer is compiled only by `cargo xtask check-macos`, which sets
//! `--cfg check_macos` and type-checks it against the real objc2 bindings (docs/macos.md).

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod plan;
#[cfg(any(target_os = "macos", check_macos))]
mod vz;

#[cfg(any(target_os = "macos", check_macos))]
pub use vz::{Vz, VzVm};
