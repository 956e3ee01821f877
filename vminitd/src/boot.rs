//! PID 1 duties at boot: the console, a real root filesystem, the pseudo-filesystems,
//! cgroup controllers, loopback; and powering off when something is beyond repair.
//!
//! Why the root switch: the initramfs root ("rootfs") cannot be pivot_root'ed away from,
//! and every container needs pivot_root. So stage 1 copies the binary into a tmpfs, moves
//! that tmpfs over / (as switch_root does), and re-executes itself from there as stage 2.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nix::mount::MsFlags;

/// Errors of boot.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("{what}")]
    Sys {
        what: String,
        #[source]
        source: io::Error,
    },
}

fn sys<T>(what: impl Into<String>, r: nix::Result<T>) -> Result<T, BootError> {
    r.map_err(|e| BootError::Sys {
        what: what.into(),
        source: e.into(),
    })
}

fn ioe<T>(what: impl Into<String>, r: io::Result<T>) -> Result<T, BootError> {
    r.map_err(|source| BootError::Sys {
        what: what.into(),
        source,
    })
}

const STAGE_ENV: &str = "VMINITD_STAGE";

/// Whether this process is the VM's init.
pub fn is_pid1() -> bool {
    std::process::id() == 1
}

fn mount(
    src: &str,
    target: &str,
    fstype: &str,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), BootError> {
    let _ = fs::create_dir_all(target);
    match nix::mount::mount(Some(src), target, Some(fstype), flags, data) {
        // Already there (a kernel that mounts devtmpfs itself, or a re-exec).
        Err(nix::Error::EBUSY) => Ok(()),
        r => sys(format!("mounting {fstype} on {target}"), r),
    }
}

/// Opens /dev/console onto fds 0-2 (the kernel started init without them).
fn console() -> Result<(), BootError> {
    let f = ioe(
        "opening /dev/console",
        fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/console"),
    )?;
    for fd in 0..3 {
        // SAFETY: dup2 onto the standard fds, which this process owns.
        unsafe { libc::dup2(f.as_raw_fd(), fd) };
    }
    Ok(())
}

/// Runs the boot sequence. In stage 1 it does not return (it re-executes itself).
pub fn boot() -> Result<(), BootError> {
    if std::env::var(STAGE_ENV).as_deref() != Ok("2") {
        mount(
            "devtmpfs",
            "/dev",
            "devtmpfs",
            MsFlags::MS_NOSUID,
            Some("mode=0755"),
        )?;
        let _ = console();
        switch_root()?;
    }
    let nosuid_noexec_nodev = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV;
    mount("proc", "/proc", "proc", nosuid_noexec_nodev, None)?;
    mount("sysfs", "/sys", "sysfs", nosuid_noexec_nodev, None)?;
    mount(
        "tmpfs",
        "/run",
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755"),
    )?;
    mount(
        "tmpfs",
        "/tmp",
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=1777"),
    )?;
    // Every container process joins a cgroup of its own: with favordynmods a migration no
    // longer waits for an RCU grace period (tens of ms under TCG), at a small cost to fork
    // and exit. A kernel without the option mounts without it.
    if mount(
        "cgroup2",
        "/sys/fs/cgroup",
        "cgroup2",
        nosuid_noexec_nodev,
        Some("favordynmods"),
    )
    .is_err()
    {
        mount(
            "cgroup2",
            "/sys/fs/cgroup",
            "cgroup2",
            nosuid_noexec_nodev,
            None,
        )?;
    }
    mount(
        "devpts",
        "/dev/pts",
        "devpts",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("mode=0620,ptmxmode=0666,gid=5"),
    )?;
    mount(
        "shm",
        "/dev/shm",
        "tmpfs",
        nosuid_noexec_nodev,
        Some("mode=1777"),
    )?;
    let _ = std::os::unix::fs::symlink("pts/ptmx", "/dev/ptmx");
    enable_controllers(Path::new(crate::cgroup::ROOT));
    crate::memory::tune_page_reporting(
        Path::new(crate::memory::REPORTING_ORDER_PARAM),
        crate::memory::reporting_order(),
    );
    if let Err(e) = crate::net::link_set("lo", "", true, 0, "", "") {
        crate::warn!("bringing up lo: {}", spec::error_chain(&e));
    }
    Ok(())
}

/// Enables the controllers containers are limited by, each on its own so one missing
/// controller does not cost the others.
pub fn enable_controllers(root: &Path) {
    for c in ["cpu", "memory", "pids", "io", "cpuset"] {
        if let Err(e) = fs::write(root.join("cgroup.subtree_control"), format!("+{c}")) {
            crate::warn!("enabling cgroup controller {c}: {e}");
        }
    }
}

fn switch_root() -> Result<(), BootError> {
    let new = "/newroot";
    mount("tmpfs", new, "tmpfs", MsFlags::empty(), Some("mode=0755"))?;
    ioe("copying /init", fs::copy("/init", "/newroot/init"))?;
    ioe(
        "chmod /newroot/init",
        fs::set_permissions("/newroot/init", fs::Permissions::from_mode(0o755)),
    )?;
    let _ = fs::create_dir_all("/newroot/dev");
    sys(
        "moving /dev",
        nix::mount::mount(
            Some("/dev"),
            "/newroot/dev",
            None::<&str>,
            MsFlags::MS_MOVE,
            None::<&str>,
        ),
    )?;
    // Frees the initramfs copy; the running image stays mapped until the exec below.
    let _ = fs::remove_file("/init");
    sys("chdir /newroot", nix::unistd::chdir(new))?;
    sys(
        "moving the new root over /",
        nix::mount::mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>),
    )?;
    sys("chroot", nix::unistd::chroot("."))?;
    sys("chdir /", nix::unistd::chdir("/"))?;
    let argv: Vec<CString> = std::env::args()
        .filter_map(|a| CString::new(a).ok())
        .collect();
    let mut envp: Vec<CString> = std::env::vars()
        .filter_map(|(k, v)| CString::new(format!("{k}={v}")).ok())
        .collect();
    envp.push(c"VMINITD_STAGE=2".to_owned());
    let path = c"/init";
    let err = nix::unistd::execve(path, &argv, &envp).unwrap_err();
    Err(BootError::Sys {
        what: "re-executing /init".into(),
        source: err.into(),
    })
}

/// How PID 1 ends the VM. An x86 guest without ACPI (a microvm started with `acpi=off`;
/// ours keep ACPI, docs/benchmarks.md says why) has no way to power off, and the kernel
/// would only halt; it resets instead, which ends the VM because the host
/// runs QEMU with `-no-reboot` (the kernel's `reboot=t` makes the reset a triple fault, which
/// needs no device). Every other guest powers off.
fn end_of_vm() -> nix::sys::reboot::RebootMode {
    use nix::sys::reboot::RebootMode;
    if cfg!(target_arch = "x86_64") && !Path::new("/sys/firmware/acpi").exists() {
        RebootMode::RB_AUTOBOOT
    } else {
        RebootMode::RB_POWER_OFF
    }
}

/// Logs, syncs and powers the VM off. Used for every fatal error of PID 1.
pub fn fatal(msg: &str) -> ! {
    crate::error!("fatal: {msg}");
    nix::unistd::sync();
    if is_pid1() {
        let _ = nix::sys::reboot::reboot(end_of_vm());
        // Should the kernel halt instead; stay here rather than exit, since PID 1 exiting
        // panics the kernel.
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
    std::process::exit(1)
}
