//! What Docker's profile allows on aarch64 beyond the shared table: nothing. aarch64 uses the
//! kernel's generic syscall table, which the shared table is written from; the legacy calls
//! (`open`, `stat`, `fork`, ...) and x86's port I/O do not exist here, and Docker's arm64
//! block names only 32-bit ARM syscalls.

use libc::c_long;

/// The audit architecture of the native AArch64 ABI (`AUDIT_ARCH_AARCH64`). AArch32 tasks
/// report `AUDIT_ARCH_ARM` instead and are denied by the architecture check.
pub const AUDIT_ARCH: u32 = 0xc000_00b7;
/// aarch64 has no second ABI multiplexed into the syscall number.
pub const FOREIGN_NR_MIN: Option<u32> = None;

/// `io_pgetevents` (the generic table's number; this libc release does not name it yet).
pub const NR_IO_PGETEVENTS: c_long = 292;

/// Allowed for every container, aarch64 only.
pub const ALWAYS: &[c_long] = &[];

/// Allowed when the capability is in the container's set, aarch64 only.
pub const BY_CAPABILITY: &[(u32, &[c_long])] = &[];
