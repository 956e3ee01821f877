//! What Docker's profile allows on x86_64 beyond the shared table: the legacy syscalls the
//! generic table dropped (`open`, `stat`, `fork`, ...), Docker's amd64-only block, and the
//! port I/O calls of CAP_SYS_RAWIO.

use libc::*;

/// The audit architecture of the native x86_64 ABI (`AUDIT_ARCH_X86_64`).
pub const AUDIT_ARCH: u32 = 0xc000_003e;
/// x32 syscalls carry this bit in their number under the x86_64 audit arch: numbers at or
/// above it are another ABI and are denied.
pub const FOREIGN_NR_MIN: Option<u32> = Some(0x4000_0000);

/// `io_pgetevents` (x86_64 number; this libc release does not name it yet).
pub const NR_IO_PGETEVENTS: c_long = 333;

/// Allowed for every container, x86_64 only.
pub const ALWAYS: &[c_long] = &[
    SYS_access,
    SYS_alarm,
    SYS_chmod,
    SYS_chown,
    SYS_creat,
    SYS_dup2,
    SYS_epoll_create,
    SYS_epoll_ctl_old,
    SYS_epoll_wait,
    SYS_epoll_wait_old,
    SYS_eventfd,
    SYS_fork,
    SYS_futimesat,
    SYS_getdents,
    SYS_getpgrp,
    SYS_get_thread_area,
    SYS_inotify_init,
    SYS_lchown,
    SYS_link,
    SYS_lstat,
    SYS_mkdir,
    SYS_mknod,
    SYS_open,
    SYS_pause,
    SYS_pipe,
    SYS_poll,
    SYS_readlink,
    SYS_rename,
    SYS_rmdir,
    SYS_select,
    SYS_set_thread_area,
    SYS_signalfd,
    SYS_stat,
    SYS_symlink,
    SYS_time,
    SYS_unlink,
    SYS_utime,
    SYS_utimes,
    SYS_vfork,
    // Docker's amd64-only block.
    SYS_arch_prctl,
    SYS_modify_ldt,
];

/// The capability for port I/O, which only x86 has.
const CAP_SYS_RAWIO: u32 = 17;

/// Allowed when the capability is in the container's set, x86_64 only.
pub const BY_CAPABILITY: &[(u32, &[c_long])] = &[(CAP_SYS_RAWIO, &[SYS_iopl, SYS_ioperm])];
