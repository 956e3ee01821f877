//! The container seccomp filter: Docker's default profile, compiled to classic BPF here.
//!
//! How this relates to Docker's `profiles/seccomp/default.json`: the same shape (default
//! action `ERRNO(EPERM)`, an allowlist of syscalls), written out by hand as Rust data for the
//! syscalls that exist on x86_64 and aarch64 (`seccomp/table.rs` holds what they share,
//! `seccomp/x86_64.rs` and `seccomp/aarch64.rs` what only one has):
//! - the unconditional allowlist (`ALWAYS`), minus io_uring, which Docker also dropped;
//! - the syscalls Docker allows on kernels >= 4.8 (`ptrace`, `kcmp`, `process_vm_*`, ...);
//! - the syscalls Docker gates on a capability being in the container's set (`BY_CAPABILITY`),
//!   decided here against the process's bounding set;
//! - argument rules: `clone` only without namespace flags (unless CAP_SYS_ADMIN), `clone3`
//!   answers ENOSYS so libc falls back to `clone` (unless CAP_SYS_ADMIN), `personality` only
//!   with the values Docker lists, and `socket` for every family except AF_VSOCK (so a
//!   container cannot reach the host's vsock ports, which carry other processes' stdio).
//!
//! Syscalls of other ABIs (i386 `int 0x80` and x32 on x86_64, AArch32 on aarch64) get EPERM.
//! Other architectures have no table and get an error rather than an unfiltered process.

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

/// Namespace flags Docker forbids in clone's flags without CAP_SYS_ADMIN (its mask 0x7E020000).
const CLONE_NS_MASK: u32 = 0x7E02_0000;
/// personality(2) values Docker allows: PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32,
/// and the query value 0xffffffff.
const PERSONALITY_ALLOWED: [u32; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];
const AF_VSOCK: u32 = 40;

const CAP_DAC_READ_SEARCH: u32 = 2;
const CAP_SYS_MODULE: u32 = 16;
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

/// The architecture's own part of the profile. Each of these modules defines `AUDIT_ARCH`,
/// `FOREIGN_NR_MIN`, `NR_IO_PGETEVENTS`, `ALWAYS` and `BY_CAPABILITY`; an architecture
/// without one gets `SeccompError::UnsupportedArch` rather than an unfiltered process.
#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "aarch64")]
use aarch64 as arch;
#[cfg(target_arch = "x86_64")]
use x86_64 as arch;

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod table;

/// The syscalls allowed without argument checks for a container whose capability set
/// (bounding set) is `caps`.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub fn allowed_syscalls(caps: u64) -> BTreeSet<u32> {
    let mut set: BTreeSet<u32> = table::ALWAYS
        .iter()
        .chain(arch::ALWAYS)
        .map(|n| *n as u32)
        .collect();
    for (cap, calls) in table::BY_CAPABILITY.iter().chain(arch::BY_CAPABILITY) {
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
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub fn build(caps: u64) -> Result<Vec<Insn>, SeccompError> {
    let deny = RET_ERRNO | libc::EPERM as u32;
    let allowed = allowed_syscalls(caps);
    let mut p = vec![
        stmt(BPF_LD | BPF_W | BPF_ABS, OFF_ARCH),
        jump(BPF_JMP | BPF_JEQ | BPF_K, arch::AUDIT_ARCH, 1, 0),
        stmt(BPF_RET | BPF_K, deny),
        stmt(BPF_LD | BPF_W | BPF_ABS, OFF_NR),
    ];
    if let Some(foreign) = arch::FOREIGN_NR_MIN {
        p.extend([
            jump(BPF_JMP | BPF_JGE | BPF_K, foreign, 0, 1),
            stmt(BPF_RET | BPF_K, deny),
        ]);
    }
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
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
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

/// The same test list runs on every architecture with a table: what the x86_64 guest refuses,
/// the aarch64 guest refuses.
#[cfg(all(test, any(target_arch = "x86_64", target_arch = "aarch64")))]
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
        run(prog, arch::AUDIT_ARCH, nr as u32, arg0)
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
        // i386's read(2) is 3, AArch32's is 3 too: neither architecture passes the check.
        assert_eq!(run(&p, 0x4000_0003 /* AUDIT_ARCH_I386 */, 3, 0), EPERM);
        assert_eq!(run(&p, 0x4000_0028 /* AUDIT_ARCH_ARM */, 3, 0), EPERM);
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            sys(&p, 0x4000_0000 /* __X32_SYSCALL_BIT */ | libc::SYS_read, 0),
            EPERM
        );
    }

    #[test]
    fn the_profile_covers_what_libc_and_runtimes_call_first() {
        // Syscalls glibc, musl and Go runtimes make at start-up on both architectures; the
        // unified-number ones check the hand-typed constants land on allowed syscalls.
        let p = build(DOCKER_DEFAULT_CAPS).unwrap();
        for nr in [
            libc::SYS_brk,
            libc::SYS_mmap,
            libc::SYS_newfstatat,
            libc::SYS_rt_sigaction,
            libc::SYS_set_tid_address,
            libc::SYS_set_robust_list,
            libc::SYS_rseq,
            libc::SYS_prlimit64,
            libc::SYS_getrandom,
            libc::SYS_statx,
            libc::SYS_faccessat2,
            libc::SYS_epoll_pwait,
            libc::SYS_pipe2,
            libc::SYS_wait4,
            table::CLONE,
            452, // fchmodat2
            arch::NR_IO_PGETEVENTS,
        ] {
            assert_eq!(sys(&p, nr, 0), RET_ALLOW, "syscall {nr}");
        }
        let allowed = allowed_syscalls(DOCKER_DEFAULT_CAPS);
        assert!(
            allowed.len() > 250,
            "only {} syscalls allowed",
            allowed.len()
        );
        // No number is listed that the architecture does not have (the generic table ends
        // below 470 today; x86_64's too).
        assert!(allowed.iter().all(|nr| *nr < 470), "{allowed:?}");
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
