//! `cargo xtask guest`: the static `vminitd` and the initramfs that boots it as `/init`.
//!
//! vminitd is built for `x86_64-unknown-linux-gnu` with `+crt-static` (the musl target cannot
//! be installed here); `--target` keeps build scripts and proc-macros dynamic. The initramfs
//! is a newc cpio holding only `/init`, written here directly so no `cpio` run is needed and
//! the archive is byte-for-byte reproducible.
//!
//! The kernel, its build info and the initramfs are published twice: in `target/guest/` for
//! the VM test harnesses, and in `target/share/container/` (links), where the daemons of
//! `target/debug/` and `target/release/` look for their guest as an installed daemon looks
//! in `<prefix>/share/container/`.

use crate::paths::{self, guest_out_dir, repo_root, target_dir};
use crate::run::{run, step};
use anyhow::{Context, Result};
use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

const GUEST_TARGET: &str = "x86_64-unknown-linux-gnu";

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

pub fn build(arch: crate::arch::Arch) -> Result<Guest> {
    crate::kernel::build(arch)?;
    step("building static vminitd");
    run(Command::new(env!("CARGO"))
        .current_dir(repo_root())
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .args([
            "build",
            "--quiet",
            "--profile",
            "guest",
            "-p",
            "vminitd",
            "--target",
            GUEST_TARGET,
        ]))?;
    let vminitd = target_dir()
        .join(GUEST_TARGET)
        .join("guest")
        .join("vminitd");
    let binary =
        fs::read(&vminitd).with_context(|| format!("cannot read {}", vminitd.display()))?;
    let out = guest_out_dir();
    fs::create_dir_all(&out)?;
    let initramfs = out.join("initramfs.cpio");
    let tmp = out.join("initramfs.cpio.tmp");
    let mut file = fs::File::create(&tmp)?;
    file.write_all(&newc_archive(&[("init", 0o100_755, &binary)]))?;
    file.sync_all()?;
    fs::rename(&tmp, &initramfs)?;
    let share = paths::share_dir();
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
    use super::newc_archive;

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
