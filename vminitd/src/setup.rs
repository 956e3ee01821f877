//! The setup helper: a fresh, single-threaded copy of vminitd (`/proc/self/exe __setup`)
//! that turns a `Launch` plan into a running container process.
//!
//! Why a separate process: namespaces, setns(CLONE_NEWNS) and pivot_root need a
//! single-threaded caller, and forking the multi-threaded agent would leave only
//! async-signal-safe calls available. The helper joins the cgroup, enters or creates the
//! namespaces, forks (so the child is inside the new pid namespace), reports the child's pid
//! and exits. The child builds the container's filesystem, reports `Ready`, waits for the
//! start byte, drops privileges in the order below, and execs. If the exec succeeds the
//! control socket (close-on-exec) simply closes; on failure the error is sent back.
//!
//! Privilege order, and why: the bounding set is dropped while still root (needs
//! CAP_SETPCAP); without no_new_privs the seccomp filter is loaded next, while CAP_SYS_ADMIN
//! is still held (as runc does); then groups/gid/uid with KEEPCAPS, then capset and the
//! ambient set; with no_new_privs, the flag and then the filter come last before exec.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::mount::{MntFlags, MsFlags};
use serde::{Deserialize, Serialize};

use crate::rootpath::resolve_in_root;
use crate::spec::{ContainerPlan, INIT_PATH, Join, Launch, MountPlan};
use crate::{caps, mountopt, seccomp};

/// The fd the control socket has in the helper.
pub const CONTROL_FD: RawFd = 3;
/// The argument that selects helper mode.
pub const SETUP_ARG: &str = "__setup";
/// personality(2)'s default persona, with address randomization (libc has no constant).
const PER_LINUX: libc::c_ulong = 0;

/// Messages from the helper (and its child) to the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Report {
    /// The container process's pid in the guest's pid namespace.
    Pid(u32),
    /// Set up and waiting for the start byte.
    Ready,
    /// Setup or exec failed; the process exits with `code`.
    Failed { message: String, code: i32 },
}

/// Errors of container setup.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{what}")]
    Sys {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Caps(#[from] caps::CapsError),
    #[error(transparent)]
    Seccomp(#[from] seccomp::SeccompError),
    #[error(transparent)]
    MountOpt(#[from] mountopt::MountOptError),
}

fn sys<T>(what: impl FnOnce() -> String, r: Result<T, nix::Error>) -> Result<T, SetupError> {
    r.map_err(|e| SetupError::Sys {
        what: what(),
        source: io::Error::from(e),
    })
}

fn ioe<T>(what: impl FnOnce() -> String, r: io::Result<T>) -> Result<T, SetupError> {
    r.map_err(|source| SetupError::Sys {
        what: what(),
        source,
    })
}

fn send(ctrl: BorrowedFd<'_>, r: &Report) {
    // Serialising a plain enum cannot fail; an empty message would read as a protocol error.
    let buf = serde_json::to_vec(r).unwrap_or_default();
    let _ = nix::sys::socket::send(ctrl.as_raw_fd(), &buf, nix::sys::socket::MsgFlags::empty());
}

/// Entry point of helper mode. Never returns.
pub fn helper_main() -> ! {
    // SAFETY: fd 3 was placed there by the agent for this process and is owned by it.
    let ctrl = unsafe { OwnedFd::from_raw_fd(CONTROL_FD) };
    // The exec must close it: its end of file is how the agent learns the exec succeeded.
    let _ = nix::fcntl::fcntl(
        &ctrl,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    // Nothing of the agent's but stdio and the control socket may reach the container.
    // SAFETY: close_range on fds this process owns; no Rust object refers to them.
    unsafe { libc::syscall(libc::SYS_close_range, 4u32, u32::MAX, 0u32) };
    use nix::sys::socket::MsgFlags;
    // The plan is one datagram of unknown size: peek at its length first.
    let size = nix::sys::socket::recv(
        ctrl.as_raw_fd(),
        &mut [],
        MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC,
    )
    .unwrap_or(0);
    let mut buf = vec![0u8; size.max(1)];
    let launch: Launch = match nix::sys::socket::recv(
        ctrl.as_raw_fd(),
        &mut buf,
        nix::sys::socket::MsgFlags::empty(),
    )
    .map_err(|e| e.to_string())
    .and_then(|n| serde_json::from_slice(&buf[..n]).map_err(|e| e.to_string()))
    {
        Ok(l) => l,
        Err(e) => {
            send(
                ctrl_fd(&ctrl),
                &Report::Failed {
                    message: format!("reading launch plan: {e}"),
                    code: 1,
                },
            );
            exit(1)
        }
    };
    drop(buf);
    if let Err(e) = enter(&launch) {
        send(
            ctrl_fd(&ctrl),
            &Report::Failed {
                message: spec::error_chain(&e),
                code: 1,
            },
        );
        exit(1);
    }
    // SAFETY: this process is single-threaded (a fresh exec of vminitd), so fork is sound.
    match unsafe { nix::unistd::fork() } {
        Err(e) => {
            send(
                ctrl_fd(&ctrl),
                &Report::Failed {
                    message: format!("fork: {e}"),
                    code: 1,
                },
            );
            exit(1)
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            send(ctrl_fd(&ctrl), &Report::Pid(child.as_raw() as u32));
            exit(0)
        }
        Ok(nix::unistd::ForkResult::Child) => {
            let (message, code) = match child(&launch, ctrl_fd(&ctrl)) {
                Ok(never) => match never {},
                Err((e, code)) => (spec::error_chain(&e), code),
            };
            send(ctrl_fd(&ctrl), &Report::Failed { message, code });
            exit(code)
        }
    }
}

fn ctrl_fd(fd: &OwnedFd) -> BorrowedFd<'_> {
    use std::os::fd::AsFd;
    fd.as_fd()
}

fn exit(code: i32) -> ! {
    // SAFETY: _exit never returns and skips atexit handlers, which belong to the agent image.
    unsafe { libc::_exit(code) }
}

/// Joins the cgroup and creates or enters the namespaces (before the fork).
fn enter(l: &Launch) -> Result<(), SetupError> {
    if let Some(cg) = &l.cgroup {
        let procs = cg.join("cgroup.procs");
        ioe(
            || format!("joining cgroup {}", cg.display()),
            fs::write(&procs, "0"),
        )?;
    }
    match &l.join {
        Join::Create(plan) => {
            use nix::sched::CloneFlags as C;
            let mut flags = C::CLONE_NEWNS
                | C::CLONE_NEWUTS
                | C::CLONE_NEWIPC
                | C::CLONE_NEWPID
                | C::CLONE_NEWCGROUP;
            if plan.own_network {
                flags |= C::CLONE_NEWNET;
            }
            sys(|| "unshare".into(), nix::sched::unshare(flags))?;
            if plan.own_network {
                // A new namespace's loopback starts down.
                crate::net::link_set("lo", "", true, 0, "", "").map_err(|e| {
                    SetupError::Invalid(format!("bringing up lo in the new network namespace: {e}"))
                })?;
            }
        }
        Join::Exec { init_pid } => {
            use nix::sched::CloneFlags as C;
            // mnt last: after it, /proc/<pid> paths of the guest are no longer reachable.
            let order = [
                ("ipc", C::CLONE_NEWIPC),
                ("uts", C::CLONE_NEWUTS),
                ("cgroup", C::CLONE_NEWCGROUP),
                ("pid", C::CLONE_NEWPID),
                ("mnt", C::CLONE_NEWNS),
            ];
            let mut fds = Vec::new();
            for (name, flag) in order {
                let path = format!("/proc/{init_pid}/ns/{name}");
                let f = ioe(|| format!("opening {path}"), fs::File::open(&path))?;
                fds.push((path, f, flag));
            }
            for (path, f, flag) in fds {
                use std::os::fd::AsFd;
                sys(
                    || format!("setns {path}"),
                    nix::sched::setns(f.as_fd(), flag),
                )?;
            }
        }
    }
    Ok(())
}

enum Never {}

/// The container process before exec. Returns only on failure, with the exit code to use.
fn child(l: &Launch, ctrl: BorrowedFd<'_>) -> Result<Never, (SetupError, i32)> {
    let fail = |e: SetupError| (e, 1);
    // Device nodes need exact modes.
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    if let Join::Create(plan) = &l.join {
        build_container(plan, l.terminal).map_err(fail)?;
    }
    send(ctrl, &Report::Ready);
    let mut b = [0u8; 1];
    match nix::sys::socket::recv(
        ctrl.as_raw_fd(),
        &mut b,
        nix::sys::socket::MsgFlags::empty(),
    ) {
        Ok(1) => {}
        _ => return Err((SetupError::Invalid("start was not requested".into()), 1)),
    }
    finish(l)
}

/// Session, limits, identity, capabilities, seccomp, exec.
fn finish(l: &Launch) -> Result<Never, (SetupError, i32)> {
    let fail = |e: SetupError| (e, 1);
    sys(|| "setsid".into(), nix::unistd::setsid().map(|_| ())).map_err(fail)?;
    if l.terminal {
        // SAFETY: TIOCSCTTY on our stdin, which the agent set to the pty's slave.
        let rc = unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) };
        if rc < 0 {
            return Err(fail(SetupError::Sys {
                what: "setting the controlling terminal".into(),
                source: io::Error::last_os_error(),
            }));
        }
    }
    for (res, soft, hard) in &l.rlimits {
        let lim = libc::rlimit {
            rlim_cur: *soft,
            rlim_max: *hard,
        };
        // SAFETY: setrlimit with a valid rlimit struct.
        if unsafe { libc::setrlimit(*res as _, &lim) } < 0 {
            return Err(fail(SetupError::Sys {
                what: format!("setrlimit({res})"),
                source: io::Error::last_os_error(),
            }));
        }
    }
    if let Some(adj) = l.oom_score_adj {
        ioe(
            || "writing oom_score_adj".into(),
            fs::write("/proc/self/oom_score_adj", adj.to_string()),
        )
        .map_err(fail)?;
    }
    if matches!(l.join, Join::Create(_)) && fs::metadata(&l.cwd).is_err() {
        // As runc does: a container's working directory is created when the image lacks it.
        ioe(
            || format!("creating the working directory {}", l.cwd),
            fs::create_dir_all(&l.cwd),
        )
        .map_err(fail)?;
    }
    // The agent started the helper without address randomization (process.rs); the
    // container's program gets it back.
    // SAFETY: integer-argument personality(2).
    if unsafe { libc::personality(PER_LINUX) } < 0 {
        return Err(fail(SetupError::Sys {
            what: "restoring address randomization".into(),
            source: io::Error::last_os_error(),
        }));
    }
    let cwd_early = nix::unistd::chdir(l.cwd.as_str());
    // Prepared before any privilege is dropped, so later steps need no allocation or lookup.
    let prog = crate::spec::find_program(&l.args[0], &l.env, Path::new("/"));
    let filter = if l.seccomp {
        Some(seccomp::build(l.caps.bounding).map_err(|e| fail(e.into()))?)
    } else {
        None
    };
    caps::drop_bounding(l.caps.bounding).map_err(|e| fail(e.into()))?;
    if let (Some(f), false) = (&filter, l.no_new_privs) {
        seccomp::load(f).map_err(|e| fail(e.into()))?;
    }
    let groups: Vec<nix::unistd::Gid> = l
        .additional_gids
        .iter()
        .map(|g| nix::unistd::Gid::from_raw(*g))
        .collect();
    sys(|| "setgroups".into(), nix::unistd::setgroups(&groups)).map_err(fail)?;
    let gid = nix::unistd::Gid::from_raw(l.gid);
    sys(|| "setresgid".into(), nix::unistd::setresgid(gid, gid, gid)).map_err(fail)?;
    // SAFETY: integer-argument prctl.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) };
    let uid = nix::unistd::Uid::from_raw(l.uid);
    sys(|| "setresuid".into(), nix::unistd::setresuid(uid, uid, uid)).map_err(fail)?;
    // SAFETY: integer-argument prctl.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) };
    caps::apply(&l.caps).map_err(|e| fail(e.into()))?;
    if cwd_early.is_err() {
        sys(
            || format!("chdir {}", l.cwd),
            nix::unistd::chdir(l.cwd.as_str()),
        )
        .map_err(fail)?;
    }
    if l.no_new_privs {
        // SAFETY: integer-argument prctl.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } < 0 {
            return Err(fail(SetupError::Sys {
                what: "setting no_new_privs".into(),
                source: io::Error::last_os_error(),
            }));
        }
        if let Some(f) = &filter {
            seccomp::load(f).map_err(|e| fail(e.into()))?;
        }
    }
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(
        l.umask as libc::mode_t,
    ));
    let Some(prog) = prog else {
        return Err((
            SetupError::Invalid(format!(
                "exec: {:?}: executable file not found in $PATH",
                l.args[0]
            )),
            127,
        ));
    };
    let cstr = |s: &str| {
        CString::new(s).map_err(|_| (SetupError::Invalid(format!("nul byte in {s:?}")), 1))
    };
    let path = cstr(&prog)?;
    let argv = l
        .args
        .iter()
        .map(|a| cstr(a))
        .collect::<Result<Vec<_>, _>>()?;
    let envp = l
        .env
        .iter()
        .map(|a| cstr(a))
        .collect::<Result<Vec<_>, _>>()?;
    let err = nix::unistd::execve(&path, &argv, &envp).unwrap_err();
    let code = if err == nix::Error::ENOENT { 127 } else { 126 };
    Err((
        SetupError::Sys {
            what: format!("exec {prog}"),
            source: io::Error::from(err),
        },
        code,
    ))
}

fn mkdir_all(p: &Path) -> Result<(), SetupError> {
    ioe(
        || format!("creating {}", p.display()),
        fs::create_dir_all(p),
    )
}

fn ensure_file(p: &Path) -> Result<(), SetupError> {
    if p.exists() {
        return Ok(());
    }
    if let Some(parent) = p.parent() {
        mkdir_all(parent)?;
    }
    ioe(
        || format!("creating {}", p.display()),
        fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o644)
            .open(p)
            .map(|_| ()),
    )
}

fn mount(
    src: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), SetupError> {
    sys(
        || {
            format!(
                "mounting {} on {}",
                src.or(fstype).unwrap_or("none"),
                target.display()
            )
        },
        nix::mount::mount(src, target, fstype, flags, data),
    )
}

fn propagation(name: &str) -> MsFlags {
    match name {
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => MsFlags::MS_SLAVE | MsFlags::MS_REC,
    }
}

/// Builds the container's filesystem view and pivots into it. Runs in the new mount namespace.
fn build_container(plan: &ContainerPlan, terminal: bool) -> Result<(), SetupError> {
    // Nothing done here may propagate back to the guest.
    mount(
        None,
        Path::new("/"),
        None,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None,
    )?;
    let root = plan.rootfs.as_path();
    mount(
        Some(&root.display().to_string()),
        root,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )?;
    for m in &plan.mounts {
        mount_one(root, m)?;
        if m.destination == "/dev" && m.fstype == "tmpfs" {
            create_devices(&root.join("dev"))?;
        }
    }
    for d in &plan.devices {
        create_device(root, d)?;
    }
    if terminal {
        // The pty's slave doubles as /dev/console, as runc does.
        if let Ok(tty) = fs::read_link("/proc/self/fd/0") {
            let console = root.join("dev/console");
            ensure_file(&console)?;
            mount(
                Some(&tty.display().to_string()),
                &console,
                None,
                MsFlags::MS_BIND,
                None,
            )?;
        }
    }
    if let Some(init) = &plan.bind_init {
        let target = resolve_in_root(root, INIT_PATH);
        ensure_file(&target)?;
        mount(Some(init.as_str()), &target, None, MsFlags::MS_BIND, None)?;
        mount(
            None,
            &target,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None,
        )?;
    }
    // pivot_root(".", ".") stacks the old root on top of the new one; detaching it leaves
    // only the container's tree.
    sys(
        || format!("chdir {}", root.display()),
        nix::unistd::chdir(root),
    )?;
    sys(|| "pivot_root".into(), nix::unistd::pivot_root(".", "."))?;
    sys(
        || "detaching the old root".into(),
        nix::mount::umount2(".", MntFlags::MNT_DETACH),
    )?;
    sys(|| "chdir /".into(), nix::unistd::chdir("/"))?;
    mount(
        None,
        Path::new("/"),
        None,
        propagation(&plan.root_propagation),
        None,
    )?;
    for p in &plan.masked_paths {
        mask(Path::new(p))?;
    }
    for p in &plan.readonly_paths {
        readonly(Path::new(p))?;
    }
    if plan.readonly_root {
        mount(
            None,
            Path::new("/"),
            None,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None,
        )?;
    }
    if let Some(h) = &plan.hostname {
        sys(|| format!("sethostname {h}"), nix::unistd::sethostname(h))?;
    }
    for (k, v) in &plan.sysctl {
        let path = format!("/proc/sys/{}", k.replace('.', "/"));
        ioe(|| format!("writing sysctl {k}"), fs::write(&path, v))?;
    }
    Ok(())
}

fn mount_one(root: &Path, m: &MountPlan) -> Result<(), SetupError> {
    let opts = mountopt::parse(&m.options)?;
    let target = resolve_in_root(root, &m.destination);
    let mut fstype = m.fstype.as_str();
    if opts.is_bind() || fstype == "bind" {
        let src = Path::new(&m.source);
        let md = ioe(|| format!("bind source {}", m.source), fs::metadata(src))?;
        if md.is_dir() {
            mkdir_all(&target)?
        } else {
            ensure_file(&target)?
        }
        mount(
            Some(&m.source),
            &target,
            None,
            MsFlags::MS_BIND | (opts.flags & MsFlags::MS_REC),
            None,
        )?;
        let extra = opts.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC);
        if !extra.is_empty() {
            mount(
                None,
                &target,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | extra,
                None,
            )?;
        }
    } else {
        mkdir_all(&target)?;
        // cgroup v1 is not in the guest kernel: the container gets its cgroup2 namespace view.
        if fstype == "cgroup" {
            fstype = "cgroup2";
        }
        let data = (!opts.data.is_empty()).then_some(opts.data.as_str());
        let src = if m.source.is_empty() {
            fstype
        } else {
            m.source.as_str()
        };
        mount(Some(src), &target, Some(fstype), opts.flags, data)?;
    }
    if !opts.propagation.is_empty() {
        mount(None, &target, None, opts.propagation, None)?;
    }
    Ok(())
}

/// Docker's default device nodes and links in a fresh /dev tmpfs.
fn create_devices(dev: &Path) -> Result<(), SetupError> {
    use nix::sys::stat::{Mode, SFlag, makedev, mknod};
    let nodes = [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ];
    for (name, major, minor) in nodes {
        let p = dev.join(name);
        let mode = Mode::from_bits_truncate(0o666);
        sys(
            || format!("mknod {}", p.display()),
            mknod(&p, SFlag::S_IFCHR, mode, makedev(major, minor)),
        )?;
    }
    let links = [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
        ("core", "/proc/kcore"),
    ];
    for (name, target) in links {
        let p = dev.join(name);
        ioe(
            || format!("symlink {}", p.display()),
            std::os::unix::fs::symlink(target, &p),
        )?;
    }
    Ok(())
}

fn create_device(root: &Path, d: &crate::spec::DevicePlan) -> Result<(), SetupError> {
    use nix::sys::stat::{Mode, SFlag, makedev, mknod};
    let p = resolve_in_root(root, &d.path);
    if let Some(parent) = p.parent() {
        mkdir_all(parent)?;
    }
    let _ = fs::remove_file(&p);
    let kind = match d.kind {
        'b' => SFlag::S_IFBLK,
        'p' => SFlag::S_IFIFO,
        _ => SFlag::S_IFCHR,
    };
    sys(
        || format!("mknod {}", d.path),
        mknod(
            &p,
            kind,
            Mode::from_bits_truncate(d.mode as libc::mode_t),
            makedev(d.major, d.minor),
        ),
    )?;
    sys(
        || format!("chown {}", d.path),
        nix::unistd::chown(
            &p,
            Some(nix::unistd::Uid::from_raw(d.uid)),
            Some(nix::unistd::Gid::from_raw(d.gid)),
        ),
    )
}

fn mask(p: &Path) -> Result<(), SetupError> {
    match fs::metadata(p) {
        Err(_) => Ok(()),
        Ok(md) if md.is_dir() => mount(Some("tmpfs"), p, Some("tmpfs"), MsFlags::MS_RDONLY, None),
        Ok(_) => mount(Some("/dev/null"), p, None, MsFlags::MS_BIND, None),
    }
}

fn readonly(p: &Path) -> Result<(), SetupError> {
    if fs::metadata(p).is_err() {
        return Ok(());
    }
    let s = p.display().to_string();
    mount(Some(&s), p, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)?;
    mount(
        None,
        p,
        None,
        MsFlags::MS_BIND
            | MsFlags::MS_REMOUNT
            | MsFlags::MS_RDONLY
            | MsFlags::MS_REC
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV
            | MsFlags::MS_NOEXEC,
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_round_trip() {
        for r in [
            Report::Pid(7),
            Report::Ready,
            Report::Failed {
                message: "x".into(),
                code: 127,
            },
        ] {
            let j = serde_json::to_vec(&r).unwrap();
            assert_eq!(serde_json::from_slice::<Report>(&j).unwrap(), r);
        }
    }
}
