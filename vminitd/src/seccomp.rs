//! The container seccomp filter: Docker's default profile, compiled to classic BPF here.
//!
//! How this relates to Docker's `profiles/seccomp/default.json`: the same shape (default
//! action `ERRNO(EPERM)`, an allowlist of syscalls), written out by hand as Rust data for the
//! syscalls that exist on x86_64:
//! - the unconditional allowlist below (`ALWAYS`), minus io_uring, which Docker also dropped;
//! - the syscalls Docker allows on kernels >= 4.8 (`ptrace`, `kcmp`, `process_vm_*`, ...);
//! - the syscalls Docker gates on a capability being in the container's set (`BY_CAPABILITY`),
//!   decided here against the process's bounding set;
//! - argument rules: `clone` only without namespace flags (unless CAP_SYS_ADMIN), `clone3`
//!   answers ENOSYS so libc falls back to `clone` (unless CAP_SYS_ADMIN), `personality` only
//!   with the values Docker lists, and `socket` for every family except AF_VSOCK (so a
//!   container cannot reach the host's vsock ports, which carry other processes' stdio).
//!
//! Syscalls of other ABIs (i386 `int 0x80`, x32) get EPERM. Only x86_64 has a table so far;
//! other architectures get an error rather than an unfiltered process.

use std::collections::BTreeSet;

/// Errors of filter construction and loading.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("no seccomp syscall table for this architecture")]
    UnsupportedArch,
    #[error("filter too long ({0} instructions)")]
    TooLong(usize),
    #[error("loading the seccomp filter")]
    Load(#[source] std::io::Error),
}

/// One classic BPF instruction (`struct sock_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

const BPF_LD: u16 = 0x00;
const BPF_W: u16 = 0x00;
const BPF_ABS: u16 = 0x20;
const BPF_JMP: u16 = 0x05;
const BPF_JEQ: u16 = 0x10;
const BPF_JGE: u16 = 0x30;
const BPF_K: u16 = 0x00;
const BPF_RET: u16 = 0x06;
const BPF_ALU: u16 = 0x04;
const BPF_AND: u16 = 0x50;

/// seccomp return values.
pub const RET_ALLOW: u32 = 0x7fff_0000;
pub const RET_ERRNO: u32 = 0x0005_0000;

// Offsets in struct seccomp_data.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARG0_LO: u32 = 16;

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// Namespace flags Docker forbids in clone's flags without CAP_SYS_ADMIN (its mask 0x7E020000).
const CLONE_NS_MASK: u32 = 0x7E02_0000;
/// personality(2) values Docker allows: PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32,
/// and the query value 0xffffffff.
const PERSONALITY_ALLOWED: [u32; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];
const AF_VSOCK: u32 = 40;

const CAP_DAC_READ_SEARCH: u32 = 2;
const CAP_SYS_MODULE: u32 = 16;
const CAP_SYS_RAWIO: u32 = 17;
const CAP_SYS_CHROOT: u32 = 18;
const CAP_SYS_PACCT: u32 = 20;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_SYS_BOOT: u32 = 22;
const CAP_SYS_NICE: u32 = 23;
const CAP_SYS_TIME: u32 = 25;
const CAP_SYS_TTY_CONFIG: u32 = 26;
const CAP_SYSLOG: u32 = 34;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

#[cfg(target_arch = "x86_64")]
mod table {
    use libc::*;

    // Newer syscalls that this libc release does not name yet (x86_64 numbers).
    const NR_IO_PGETEVENTS: c_long = 333;
    const NR_CACHESTAT: c_long = 451;
    const NR_MAP_SHADOW_STACK: c_long = 453;
    const NR_FUTEX_WAKE: c_long = 454;
    const NR_FUTEX_WAIT: c_long = 455;
    const NR_FUTEX_REQUEUE: c_long = 456;

    /// Allowed for every container (Docker's big unconditional block, x86_64 names).
    pub const ALWAYS: &[c_long] = &[
        SYS_accept,
        SYS_accept4,
        SYS_access,
        SYS_adjtimex,
        SYS_alarm,
        SYS_bind,
        SYS_brk,
        NR_CACHESTAT,
        SYS_capget,
        SYS_capset,
        SYS_chdir,
        SYS_chmod,
        SYS_chown,
        SYS_clock_adjtime,
        SYS_clock_getres,
        SYS_clock_gettime,
        SYS_clock_nanosleep,
        SYS_close,
        SYS_close_range,
        SYS_connect,
        SYS_copy_file_range,
        SYS_creat,
        SYS_dup,
        SYS_dup2,
        SYS_dup3,
        SYS_epoll_create,
        SYS_epoll_create1,
        SYS_epoll_ctl,
        SYS_epoll_ctl_old,
        SYS_epoll_pwait,
        SYS_epoll_pwait2,
        SYS_epoll_wait,
        SYS_epoll_wait_old,
        SYS_eventfd,
        SYS_eventfd2,
        SYS_execve,
        SYS_execveat,
        SYS_exit,
        SYS_exit_group,
        SYS_faccessat,
        SYS_faccessat2,
        SYS_fadvise64,
        SYS_fallocate,
        SYS_fanotify_mark,
        SYS_fchdir,
        SYS_fchmod,
        SYS_fchmodat,
        SYS_fchmodat2,
        SYS_fchown,
        SYS_fchownat,
        SYS_fcntl,
        SYS_fdatasync,
        SYS_fgetxattr,
        SYS_flistxattr,
        SYS_flock,
        SYS_fork,
        SYS_fremovexattr,
        SYS_fsetxattr,
        SYS_fstat,
        SYS_fstatfs,
        SYS_fsync,
        SYS_ftruncate,
        SYS_futex,
        NR_FUTEX_REQUEUE,
        NR_FUTEX_WAIT,
        SYS_futex_waitv,
        NR_FUTEX_WAKE,
        SYS_futimesat,
        SYS_getcpu,
        SYS_getcwd,
        SYS_getdents,
        SYS_getdents64,
        SYS_getegid,
        SYS_geteuid,
        SYS_getgid,
        SYS_getgroups,
        SYS_getitimer,
        SYS_getpeername,
        SYS_getpgid,
        SYS_getpgrp,
        SYS_getpid,
        SYS_getppid,
        SYS_getpriority,
        SYS_getrandom,
        SYS_getresgid,
        SYS_getresuid,
        SYS_getrlimit,
        SYS_get_robust_list,
        SYS_getrusage,
        SYS_getsid,
        SYS_getsockname,
        SYS_getsockopt,
        SYS_get_thread_area,
        SYS_gettid,
        SYS_gettimeofday,
        SYS_getuid,
        SYS_getxattr,
        SYS_inotify_add_watch,
        SYS_inotify_init,
        SYS_inotify_init1,
        SYS_inotify_rm_watch,
        SYS_io_cancel,
        SYS_ioctl,
        SYS_io_destroy,
        SYS_io_getevents,
        NR_IO_PGETEVENTS,
        SYS_ioprio_get,
        SYS_ioprio_set,
        SYS_io_setup,
        SYS_io_submit,
        SYS_kill,
        SYS_landlock_add_rule,
        SYS_landlock_create_ruleset,
        SYS_landlock_restrict_self,
        SYS_lchown,
        SYS_lgetxattr,
        SYS_link,
        SYS_linkat,
        SYS_listen,
        SYS_listxattr,
        SYS_llistxattr,
        SYS_lremovexattr,
        SYS_lseek,
        SYS_lsetxattr,
        SYS_lstat,
        SYS_madvise,
        NR_MAP_SHADOW_STACK,
        SYS_membarrier,
        SYS_memfd_create,
        SYS_memfd_secret,
        SYS_mincore,
        SYS_mkdir,
        SYS_mkdirat,
        SYS_mknod,
        SYS_mknodat,
        SYS_mlock,
        SYS_mlock2,
        SYS_mlockall,
        SYS_mmap,
        SYS_mprotect,
        SYS_mq_getsetattr,
        SYS_mq_notify,
        SYS_mq_open,
        SYS_mq_timedreceive,
        SYS_mq_timedsend,
        SYS_mq_unlink,
        SYS_mremap,
        SYS_msgctl,
        SYS_msgget,
        SYS_msgrcv,
        SYS_msgsnd,
        SYS_msync,
        SYS_munlock,
        SYS_munlockall,
        SYS_munmap,
        SYS_name_to_handle_at,
        SYS_nanosleep,
        SYS_newfstatat,
        SYS_open,
        SYS_openat,
        SYS_openat2,
        SYS_pause,
        SYS_pidfd_open,
        SYS_pidfd_send_signal,
        SYS_pipe,
        SYS_pipe2,
        SYS_pkey_alloc,
        SYS_pkey_free,
        SYS_pkey_mprotect,
        SYS_poll,
        SYS_ppoll,
        SYS_prctl,
        SYS_pread64,
        SYS_preadv,
        SYS_preadv2,
        SYS_prlimit64,
        SYS_process_mrelease,
        SYS_pselect6,
        SYS_pwrite64,
        SYS_pwritev,
        SYS_pwritev2,
        SYS_read,
        SYS_readahead,
        SYS_readlink,
        SYS_readlinkat,
        SYS_readv,
        SYS_recvfrom,
        SYS_recvmmsg,
        SYS_recvmsg,
        SYS_remap_file_pages,
        SYS_removexattr,
        SYS_rename,
        SYS_renameat,
        SYS_renameat2,
        SYS_restart_syscall,
        SYS_rmdir,
        SYS_rseq,
        SYS_rt_sigaction,
        SYS_rt_sigpending,
        SYS_rt_sigprocmask,
        SYS_rt_sigqueueinfo,
        SYS_rt_sigreturn,
        SYS_rt_sigsuspend,
        SYS_rt_sigtimedwait,
        SYS_rt_tgsigqueueinfo,
        SYS_sched_getaffinity,
        SYS_sched_getattr,
        SYS_sched_getparam,
        SYS_sched_get_priority_max,
        SYS_sched_get_priority_min,
        SYS_sched_getscheduler,
        SYS_sched_rr_get_interval,
        SYS_sched_setaffinity,
        SYS_sched_setattr,
        SYS_sched_setparam,
        SYS_sched_setscheduler,
        SYS_sched_yield,
        SYS_seccomp,
        SYS_select,
        SYS_semctl,
        SYS_semget,
        SYS_semop,
        SYS_semtimedop,
        SYS_sendfile,
        SYS_sendmmsg,
        SYS_sendmsg,
        SYS_sendto,
        SYS_setfsgid,
        SYS_setfsuid,
        SYS_setgid,
        SYS_setgroups,
        SYS_setitimer,
        SYS_setpgid,
        SYS_setpriority,
        SYS_setregid,
        SYS_setresgid,
        SYS_setresuid,
        SYS_setreuid,
        SYS_setrlimit,
        SYS_set_robust_list,
        SYS_setsid,
        SYS_setsockopt,
        SYS_set_thread_area,
        SYS_set_tid_address,
        SYS_setuid,
        SYS_setxattr,
        SYS_shmat,
        SYS_shmctl,
        SYS_shmdt,
        SYS_shmget,
        SYS_shutdown,
        SYS_sigaltstack,
        SYS_signalfd,
        SYS_signalfd4,
        SYS_socketpair,
        SYS_splice,
        SYS_stat,
        SYS_statfs,
        SYS_statx,
        SYS_symlink,
        SYS_symlinkat,
        SYS_sync,
        SYS_sync_file_range,
        SYS_syncfs,
        SYS_sysinfo,
        SYS_tee,
        SYS_tgkill,
        SYS_time,
        SYS_timer_create,
        SYS_timer_delete,
        SYS_timer_getoverrun,
        SYS_timer_gettime,
        SYS_timer_settime,
        SYS_timerfd_create,
        SYS_timerfd_gettime,
        SYS_timerfd_settime,
        SYS_times,
        SYS_tkill,
        SYS_truncate,
        SYS_umask,
        SYS_uname,
        SYS_unlink,
        SYS_unlinkat,
        SYS_utime,
        SYS_utimensat,
        SYS_utimes,
        SYS_vfork,
        SYS_vmsplice,
        SYS_wait4,
        SYS_waitid,
        SYS_write,
        SYS_writev,
        // Docker's amd64-only block.
        SYS_arch_prctl,
        SYS_modify_ldt,
        // Docker's "minKernel 4.8" block (our guest kernel is 6.1).
        SYS_kcmp,
        SYS_pidfd_getfd,
        SYS_process_madvise,
        SYS_process_vm_readv,
        SYS_process_vm_writev,
        SYS_ptrace,
    ];

    /// Allowed when the capability is in the container's set.
    pub const BY_CAPABILITY: &[(u32, &[c_long])] = &[
        (
            super::CAP_SYS_ADMIN,
            &[
                SYS_bpf,
                SYS_fanotify_init,
                SYS_fsconfig,
                SYS_fsmount,
                SYS_fsopen,
                SYS_fspick,
                SYS_lookup_dcookie,
                SYS_mount,
                SYS_mount_setattr,
                SYS_move_mount,
                SYS_open_tree,
                SYS_perf_event_open,
                SYS_quotactl,
                SYS_quotactl_fd,
                SYS_setdomainname,
                SYS_sethostname,
                SYS_setns,
                SYS_syslog,
                SYS_umount2,
                SYS_unshare,
            ],
        ),
        (super::CAP_SYS_BOOT, &[SYS_reboot]),
        (super::CAP_SYS_CHROOT, &[SYS_chroot]),
        (
            super::CAP_SYS_MODULE,
            &[SYS_delete_module, SYS_init_module, SYS_finit_module],
        ),
        (super::CAP_SYS_PACCT, &[SYS_acct]),
        (super::CAP_SYS_RAWIO, &[SYS_iopl, SYS_ioperm]),
        (super::CAP_SYS_TIME, &[SYS_settimeofday, SYS_clock_settime]),
        (super::CAP_SYS_TTY_CONFIG, &[SYS_vhangup]),
        (
            super::CAP_SYS_NICE,
            &[
                SYS_get_mempolicy,
                SYS_mbind,
                SYS_set_mempolicy,
                SYS_set_mempolicy_home_node,
            ],
        ),
        (super::CAP_SYSLOG, &[SYS_syslog]),
        (super::CAP_BPF, &[SYS_bpf]),
        (super::CAP_PERFMON, &[SYS_perf_event_open]),
        (super::CAP_DAC_READ_SEARCH, &[SYS_open_by_handle_at]),
    ];

    pub const CLONE: c_long = SYS_clone;
    pub const CLONE3: c_long = SYS_clone3;
    pub const PERSONALITY: c_long = SYS_personality;
    pub const SOCKET: c_long = SYS_socket;
    pub const AUDIT_ARCH: u32 = super::AUDIT_ARCH_X86_64;
}

/// The syscalls allowed without argument checks for a container whose capability set
/// (bounding set) is `caps`.
#[cfg(target_arch = "x86_64")]
pub fn allowed_syscalls(caps: u64) -> BTreeSet<u32> {
    let mut set: BTreeSet<u32> = table::ALWAYS.iter().map(|n| *n as u32).collect();
    for (cap, calls) in table::BY_CAPABILITY {
        if caps & (1 << cap) != 0 {
            set.extend(calls.iter().map(|n| *n as u32));
        }
    }
    if caps & (1 << CAP_SYS_ADMIN) != 0 {
        set.insert(table::CLONE as u32);
        set.insert(table::CLONE3 as u32);
    }
    set
}

fn stmt(code: u16, k: u32) -> Insn {
    Insn {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> Insn {
    Insn { code, jt, jf, k }
}

/// Builds the filter for a container whose capability set (bounding set) is `caps`.
#[cfg(target_arch = "x86_64")]
pub fn build(caps: u64) -> Result<Vec<Insn>, SeccompError> {
    let deny = RET_ERRNO | libc::EPERM as u32;
    let allowed = allowed_syscalls(caps);
    let mut p = vec![
        stmt(BPF_LD | BPF_W | BPF_ABS, OFF_ARCH),
        jump(BPF_JMP | BPF_JEQ | BPF_K, table::AUDIT_ARCH, 1, 0),
        stmt(BPF_RET | BPF_K, deny),
        stmt(BPF_LD | BPF_W | BPF_ABS, OFF_NR),
        jump(BPF_JMP | BPF_JGE | BPF_K, X32_SYSCALL_BIT, 0, 1),
        stmt(BPF_RET | BPF_K, deny),
    ];
    // Each unconditional entry is "if nr == N return ALLOW"; the accumulator keeps nr.
    for nr in &allowed {
        p.push(jump(BPF_JMP | BPF_JEQ | BPF_K, *nr, 0, 1));
        p.push(stmt(BPF_RET | BPF_K, RET_ALLOW));
    }
    // Argument rules. Each block returns on every path, so nr stays in the accumulator for
    // the blocks after it.
    if !allowed.contains(&(table::CLONE as u32)) {
        p.extend([
            jump(BPF_JMP | BPF_JEQ | BPF_K, table::CLONE as u32, 0, 5),
            stmt(BPF_LD | BPF_W | BPF_ABS, OFF_ARG0_LO),
            stmt(BPF_ALU | BPF_AND | BPF_K, CLONE_NS_MASK),
            jump(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 1),
            stmt(BPF_RET | BPF_K, RET_ALLOW),
            stmt(BPF_RET | BPF_K, deny),
        ]);
    }
    if !allowed.contains(&(table::CLONE3 as u32)) {
        p.extend([
            jump(BPF_JMP | BPF_JEQ | BPF_K, table::CLONE3 as u32, 0, 1),
            stmt(BPF_RET | BPF_K, RET_ERRNO | libc::ENOSYS as u32),
        ]);
    }
    let n = PERSONALITY_ALLOWED.len() as u8;
    p.push(jump(
        BPF_JMP | BPF_JEQ | BPF_K,
        table::PERSONALITY as u32,
        0,
        n + 3,
    ));
    p.push(stmt(BPF_LD | BPF_W | BPF_ABS, OFF_ARG0_LO));
    for (i, v) in PERSONALITY_ALLOWED.iter().enumerate() {
        // On a match jump to the ALLOW after the list; otherwise fall through to the next.
        p.push(jump(BPF_JMP | BPF_JEQ | BPF_K, *v, n - i as u8, 0));
    }
    p.push(stmt(BPF_RET | BPF_K, deny));
    p.push(stmt(BPF_RET | BPF_K, RET_ALLOW));
    p.extend([
        jump(BPF_JMP | BPF_JEQ | BPF_K, table::SOCKET as u32, 0, 4),
        stmt(BPF_LD | BPF_W | BPF_ABS, OFF_ARG0_LO),
        jump(BPF_JMP | BPF_JEQ | BPF_K, AF_VSOCK, 0, 1),
        stmt(BPF_RET | BPF_K, deny),
        stmt(BPF_RET | BPF_K, RET_ALLOW),
    ]);
    p.push(stmt(BPF_RET | BPF_K, deny));
    if p.len() > 4096 {
        return Err(SeccompError::TooLong(p.len()));
    }
    Ok(p)
}

/// Builds the filter for a container whose capability set (bounding set) is `caps`.
#[cfg(not(target_arch = "x86_64"))]
pub fn build(_caps: u64) -> Result<Vec<Insn>, SeccompError> {
    Err(SeccompError::UnsupportedArch)
}

/// Installs `prog` on the calling thread. Needs no_new_privs or CAP_SYS_ADMIN.
pub fn load(prog: &[Insn]) -> Result<(), SeccompError> {
    #[repr(C)]
    struct SockFprog {
        len: u16,
        filter: *const Insn,
    }
    let fprog = SockFprog {
        len: prog.len() as u16,
        filter: prog.as_ptr(),
    };
    // SAFETY: fprog points at `prog`, which outlives the call; the kernel copies the program.
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER as libc::c_ulong,
            &fprog as *const SockFprog as libc::c_ulong,
            0,
            0,
        )
    };
    if rc < 0 {
        return Err(SeccompError::Load(std::io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    /// A classic BPF interpreter for the instructions `build` emits, to check the program's
    /// meaning rather than its bytes.
    fn run(prog: &[Insn], arch: u32, nr: u32, arg0: u64) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_le_bytes());
        data[4..8].copy_from_slice(&arch.to_le_bytes());
        data[16..24].copy_from_slice(&arg0.to_le_bytes());
        let mut a: u32 = 0;
        let mut pc = 0usize;
        loop {
            let i = prog[pc];
            match i.code {
                c if c == BPF_LD | BPF_W | BPF_ABS => {
                    let k = i.k as usize;
                    a = u32::from_le_bytes(data[k..k + 4].try_into().unwrap());
                }
                c if c == BPF_ALU | BPF_AND | BPF_K => a &= i.k,
                c if c == BPF_JMP | BPF_JEQ | BPF_K => {
                    pc += if a == i.k {
                        i.jt as usize
                    } else {
                        i.jf as usize
                    };
                }
                c if c == BPF_JMP | BPF_JGE | BPF_K => {
                    pc += if a >= i.k {
                        i.jt as usize
                    } else {
                        i.jf as usize
                    };
                }
                c if c == BPF_RET | BPF_K => return i.k,
                c => panic!("unexpected opcode {c:#x}"),
            }
            pc += 1;
        }
    }

    const DOCKER_DEFAULT_CAPS: u64 = 0xa80425fb;
    const EPERM: u32 = RET_ERRNO | libc::EPERM as u32;

    fn sys(prog: &[Insn], nr: libc::c_long, arg0: u64) -> u32 {
        run(prog, AUDIT_ARCH_X86_64, nr as u32, arg0)
    }

    #[test]
    fn ordinary_syscalls_are_allowed_and_privileged_ones_denied() {
        let p = build(DOCKER_DEFAULT_CAPS).unwrap();
        assert!(p.len() < 1000, "{} instructions", p.len());
        for nr in [
            libc::SYS_read,
            libc::SYS_execve,
            libc::SYS_openat,
            libc::SYS_exit_group,
            libc::SYS_chroot,
        ] {
            assert_eq!(sys(&p, nr, 0), RET_ALLOW, "syscall {nr}");
        }
        for nr in [
            libc::SYS_mount,
            libc::SYS_unshare,
            libc::SYS_setns,
            libc::SYS_reboot,
            libc::SYS_init_module,
            libc::SYS_keyctl,
            libc::SYS_add_key,
            libc::SYS_io_uring_setup,
            libc::SYS_clock_settime,
            libc::SYS_sethostname,
            libc::SYS_bpf,
        ] {
            assert_eq!(sys(&p, nr, 0), EPERM, "syscall {nr}");
        }
    }

    #[test]
    fn clone_rules() {
        let p = build(DOCKER_DEFAULT_CAPS).unwrap();
        let fork_flags =
            (libc::CLONE_CHILD_SETTID | libc::CLONE_CHILD_CLEARTID | libc::SIGCHLD) as u64;
        assert_eq!(sys(&p, libc::SYS_clone, fork_flags), RET_ALLOW);
        assert_eq!(
            sys(
                &p,
                libc::SYS_clone,
                libc::CLONE_VM as u64 | libc::CLONE_THREAD as u64
            ),
            RET_ALLOW
        );
        for ns in [
            libc::CLONE_NEWNS,
            libc::CLONE_NEWPID,
            libc::CLONE_NEWUSER,
            libc::CLONE_NEWNET,
            libc::CLONE_NEWCGROUP,
        ] {
            assert_eq!(sys(&p, libc::SYS_clone, fork_flags | ns as u64), EPERM);
        }
        assert_eq!(
            sys(&p, libc::SYS_clone3, 0),
            RET_ERRNO | libc::ENOSYS as u32
        );
        let admin = build(DOCKER_DEFAULT_CAPS | 1 << CAP_SYS_ADMIN).unwrap();
        assert_eq!(
            sys(&admin, libc::SYS_clone, libc::CLONE_NEWNS as u64),
            RET_ALLOW
        );
        assert_eq!(sys(&admin, libc::SYS_clone3, 0), RET_ALLOW);
        assert_eq!(sys(&admin, libc::SYS_mount, 0), RET_ALLOW);
    }

    #[test]
    fn personality_and_socket_rules() {
        let p = build(DOCKER_DEFAULT_CAPS).unwrap();
        for v in PERSONALITY_ALLOWED {
            assert_eq!(sys(&p, libc::SYS_personality, v as u64), RET_ALLOW);
        }
        assert_eq!(sys(&p, libc::SYS_personality, 0x0040000), EPERM); // ADDR_NO_RANDOMIZE
        assert_eq!(sys(&p, libc::SYS_socket, libc::AF_INET as u64), RET_ALLOW);
        assert_eq!(sys(&p, libc::SYS_socket, libc::AF_UNIX as u64), RET_ALLOW);
        assert_eq!(sys(&p, libc::SYS_socket, libc::AF_VSOCK as u64), EPERM);
    }

    #[test]
    fn capabilities_unlock_their_syscalls() {
        let time = build(DOCKER_DEFAULT_CAPS | 1 << CAP_SYS_TIME).unwrap();
        assert_eq!(sys(&time, libc::SYS_clock_settime, 0), RET_ALLOW);
        let no_chroot = build(DOCKER_DEFAULT_CAPS & !(1 << CAP_SYS_CHROOT)).unwrap();
        assert_eq!(sys(&no_chroot, libc::SYS_chroot, 0), EPERM);
    }

    #[test]
    fn other_abis_are_denied() {
        let p = build(DOCKER_DEFAULT_CAPS).unwrap();
        assert_eq!(run(&p, 0x4000_0003 /* AUDIT_ARCH_I386 */, 3, 0), EPERM);
        assert_eq!(
            sys(&p, X32_SYSCALL_BIT as libc::c_long | libc::SYS_read, 0),
            EPERM
        );
    }

    #[test]
    fn loaded_filter_denies_in_a_child_process() {
        let p = build(DOCKER_DEFAULT_CAPS).unwrap();
        // SAFETY: the child only makes raw syscalls and _exits; no allocation after fork.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: integer-argument prctl and raw syscalls in the forked child.
            unsafe {
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
                if load(&p).is_err() {
                    libc::_exit(10);
                }
                let rc = libc::unshare(libc::CLONE_NEWUTS);
                let errno = *libc::__errno_location();
                if rc != -1 || errno != libc::EPERM {
                    libc::_exit(11);
                }
                if libc::getpid() <= 0 {
                    libc::_exit(12);
                }
                libc::_exit(0);
            }
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status));
        assert_eq!(libc::WEXITSTATUS(status), 0);
    }
}
