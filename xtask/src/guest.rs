//! `cargo xtask guest`: the static `vminitd` and the initramfs that boots it as `/init`.
//!
//! vminitd is built for `x86_64-unknown-linux-gnu` with `+crt-static` (the musl target cannot
//! be installed here); `--target` keeps build scripts and proc-macros dynamic. `--arch arm64`
//! builds it the same way for `aarch64-unknown-linux-gnu` in a Debian sid chroot
//! (`toolchain.rs`), since the host's rustup has no aarch64 std. The initramfs
//! is a newc cpio holding only `/init`, written here directly so no `cpio` run is needed and
//! the archive is byte-for-byte reproducible.
//!
//! The kernel, its build info and the initramfs are published twice: in `target/guest/` for
//! the VM test harnesses, and in `target/share/container/` (links), where the daemons of
//! `target/debug/` and `target/release/` look for their guest as an installed daemon looks
//! in `<prefix>/share/container/`. Other architectures than x86_64 go into a subdirectory
//! named after the kernel arch of each: `target/guest/arm64/`, `target/share/container/arm64/`.

use crate::arch::Arch;
use crate::paths::{self, repo_root, target_dir};
use crate::run::{run, step};
use anyhow::{Context, Result, bail};
use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

/// The cargo profile of the guest binary (workspace Cargo.toml: small, LTO, abort on panic).
const GUEST_PROFILE: &str = "guest";
pub const STATIC_RUSTFLAGS: &str = "-C target-feature=+crt-static";

/// The guest artifacts, as the VM test harnesses find them in `target/guest/`; the daemon
/// finds the same files in `share`.
pub struct Guest {
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    pub share: PathBuf,
}

impl Guest {
    pub fn print(&self) {
        println!("kernel:    {}", self.kernel.display());
        println!("initramfs: {}", self.initramfs.display());
        println!(
            "share:     {} (what the daemon boots)",
            self.share.display()
        );
    }
}

pub fn build(arch: Arch) -> Result<Guest> {
    let vminitd = if arch == Arch::host() {
        step("building static vminitd");
        run(Command::new(env!("CARGO"))
            .current_dir(repo_root())
            .env("RUSTFLAGS", STATIC_RUSTFLAGS)
            .args(["build", "--quiet", "--profile", GUEST_PROFILE])
            .args(["-p", "vminitd", "--target", arch.rust_target()]))?;
        target_dir()
            .join(arch.rust_target())
            .join(GUEST_PROFILE)
            .join("vminitd")
    } else {
        let chroot = crate::toolchain::ensure(arch)?;
        step(&format!(
            "building static vminitd for {} in the sid chroot ({})",
            arch.rust_target(),
            chroot
                .packages
                .lines()
                .find(|l| l.starts_with("rustc:"))
                .unwrap_or("rustc")
                .trim()
        ));
        chroot.cargo_build(
            &repo_root(),
            &chroot_target_dir(arch),
            GUEST_PROFILE,
            "vminitd",
            STATIC_RUSTFLAGS,
        )?
    };
    let binary =
        fs::read(&vminitd).with_context(|| format!("cannot read {}", vminitd.display()))?;
    check_static_elf(&binary, arch)
        .with_context(|| format!("{} is not a usable /init", vminitd.display()))?;
    crate::kernel::build(arch)?;
    let out = arch.guest_out_dir();
    fs::create_dir_all(&out)?;
    let initramfs = out.join("initramfs.cpio");
    let tmp = out.join("initramfs.cpio.tmp");
    let mut file = fs::File::create(&tmp)?;
    file.write_all(&newc_archive(&[("init", 0o100_755, &binary)]))?;
    file.sync_all()?;
    fs::rename(&tmp, &initramfs)?;
    let share = arch.share_dir();
    for name in ["vmlinux", crate::kernel::INFO_FILE, "initramfs.cpio"] {
        let src = out.join(name);
        // Link to what target/guest/ links to, not to the link: one hop less to go stale.
        let src =
            fs::canonicalize(&src).with_context(|| format!("{} is missing", src.display()))?;
        paths::symlink_force(&src, &share.join(name))?;
    }
    Ok(Guest {
        kernel: out.join("vmlinux"),
        initramfs,
        share,
    })
}

/// The cargo target dir of builds in `arch`'s sid chroot: one of its own, since sid's rustc
/// and the host's must not share artifacts.
pub fn chroot_target_dir(arch: Arch) -> PathBuf {
    target_dir().join(format!("chroot-{}", arch.kernel_name()))
}

/// The guest's `/init` must be a static executable of the guest's architecture: the
/// initramfs holds nothing else, so a dynamic or foreign binary would only fail at boot.
fn check_static_elf(binary: &[u8], arch: Arch) -> Result<()> {
    // ELF64 little-endian header: e_machine at 18, e_phoff at 32, e_phentsize at 54,
    // e_phnum at 56; each program header starts with its u32 p_type.
    const PT_INTERP: u32 = 3;
    let u16_at = |at: usize| {
        binary
            .get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    if binary.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        bail!("not a little-endian 64-bit ELF file");
    }
    let machine = u16_at(18).unwrap_or(0);
    let wanted = match arch {
        Arch::X86_64 => 62, // EM_X86_64
        Arch::Arm64 => 183, // EM_AARCH64
    };
    if machine != wanted {
        bail!(
            "its ELF machine is {machine}, not {wanted} ({})",
            arch.kernel_name()
        );
    }
    let phoff = binary
        .get(32..40)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .unwrap_or(0) as usize;
    let phentsize = usize::from(u16_at(54).unwrap_or(0));
    let phnum = usize::from(u16_at(56).unwrap_or(0));
    for i in 0..phnum {
        let at = phoff + i * phentsize;
        let Some(kind) = binary.get(at..at + 4) else {
            bail!("its program headers are cut short");
        };
        if u32::from_le_bytes([kind[0], kind[1], kind[2], kind[3]]) == PT_INTERP {
            bail!("it is dynamically linked (it names an interpreter)");
        }
    }
    Ok(())
}

/// A cpio archive in the "newc" format the kernel unpacks into its initial rootfs.
/// Entries are (name, st_mode, contents); timestamps and owners are zero for reproducibility.
fn newc_archive(entries: &[(&str, u32, &[u8])]) -> Vec<u8> {
    fn pad4(buf: &mut Vec<u8>) {
        while !buf.len().is_multiple_of(4) {
            buf.push(0);
        }
    }
    fn header(buf: &mut Vec<u8>, ino: u32, mode: u32, nlink: u32, size: usize, name: &str) {
        let fields = [
            ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            size as u32,
            0, // dev major
            0, // dev minor
            0, // rdev major
            0, // rdev minor
            name.len() as u32 + 1,
            0, // checksum (unused by newc)
        ];
        buf.extend_from_slice(b"070701");
        for field in fields {
            buf.extend_from_slice(format!("{field:08x}").as_bytes());
        }
        buf.extend_from_slice(name.as_bytes());
        buf.push(0);
        pad4(buf);
    }
    let mut buf = Vec::new();
    for (i, (name, mode, data)) in entries.iter().enumerate() {
        header(&mut buf, i as u32 + 1, *mode, 1, data.len(), name);
        buf.extend_from_slice(data);
        pad4(&mut buf);
    }
    header(&mut buf, 0, 0, 1, 0, "TRAILER!!!");
    buf
}

#[cfg(test)]
mod tests {
    use super::{check_static_elf, newc_archive};
    use crate::arch::Arch;

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn only_a_static_binary_of_the_guest_arch_passes() {
        // The host's busybox-static is a static x86_64 binary; this xtask itself is dynamic.
        let busybox = std::fs::read("/bin/busybox").unwrap();
        check_static_elf(&busybox, Arch::X86_64).unwrap();
        let err = check_static_elf(&busybox, Arch::Arm64).unwrap_err();
        assert_eq!(err.to_string(), "its ELF machine is 62, not 183 (arm64)");
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let err = check_static_elf(&me, Arch::X86_64).unwrap_err();
        assert_eq!(
            err.to_string(),
            "it is dynamically linked (it names an interpreter)"
        );
        let err = check_static_elf(b"#!/bin/sh\n", Arch::X86_64).unwrap_err();
        assert_eq!(err.to_string(), "not a little-endian 64-bit ELF file");
    }

    #[test]
    fn newc_archive_is_read_back_by_cpio() {
        let dir = std::env::temp_dir().join(format!("xtask-cpio-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let archive = newc_archive(&[("init", 0o100_755, b"#!/bin/sh\necho hi\n")]);
        let mut child = std::process::Command::new("cpio")
            .args(["-i", "--quiet"])
            .current_dir(&dir)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&archive).unwrap();
        assert!(child.wait().unwrap().success());
        let init = dir.join("init");
        assert_eq!(std::fs::read(&init).unwrap(), b"#!/bin/sh\necho hi\n");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&init).unwrap().permissions().mode() & 0o7777,
            0o755
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
