//! Empty filesystems, and images the kernel mounts read-write.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

#[test]
fn format_empty_one_gib_is_clean_and_sparse() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("vol.img");
    let s = ext4::format_empty(&img, 1 << 30, &test_options()).unwrap();
    fsck(&img);
    let meta = std::fs::metadata(&img).unwrap();
    assert_eq!(meta.len(), 1 << 30);
    assert_eq!(s.image_size, 1 << 30);
    let allocated = meta.blocks() * 512;
    assert!(
        allocated < 2 << 20,
        "1 GiB empty image allocates {allocated} bytes"
    );
    let info = Command::new("dumpe2fs")
        .arg("-h")
        .arg(&img)
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(info.contains("has_journal"), "{info}");
    assert!(info.contains("Block count:              262144"), "{info}");
    assert!(info.contains("user_xattr acl"), "{info}");
}

#[test]
fn format_empty_odd_sizes() {
    let dir = tempfile::tempdir().unwrap();
    for size in [
        16 << 20,
        (200 << 20) + 12345,
        (3 << 30) + (32768 * 4096) + 4096,
    ] {
        let img = dir.path().join(format!("v{size}"));
        ext4::format_empty(&img, size, &test_options()).unwrap();
        fsck(&img);
    }
}

#[test]
fn format_empty_too_small() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("tiny");
    let e = ext4::format_empty(&img, 1 << 20, &test_options()).unwrap_err();
    assert!(matches!(e, ext4::Error::TooSmall { .. }), "{e}");
    assert!(!img.exists());
}

/// A loop mount that is undone even if the test fails.
struct Mounted(PathBuf);

impl Mounted {
    fn new(img: &Path, at: &Path) -> Option<Mounted> {
        let out = Command::new("mount")
            .arg("-o")
            .arg("loop")
            .arg(img)
            .arg(at)
            .output()
            .ok()?;
        if !out.status.success() {
            test_support::skip(&format!(
                "mount -o loop failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
            return None;
        }
        Some(Mounted(at.to_owned()))
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn can_mount() -> bool {
    let missing = test_support::missing_root("loop mounts")
        .or_else(|| test_support::missing_file("/dev/loop-control", "loop mounts"));
    if let Some(why) = missing {
        test_support::skip(&why);
        return false;
    }
    true
}

#[test]
fn kernel_mounts_layers_image_read_write() {
    if !can_mount() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    let mut big = Layer::new().dir("big");
    for i in 0..5000 {
        big.file_m(&format!("big/entry-{i}"), format!("{i}").as_bytes(), DEF);
    }
    let l2 = Layer::new()
        .file("etc/hostname", b"box\n")
        .symlink("etc/link", "hostname")
        .pax(&[("SCHILY.xattr.user.k", b"v")])
        .file("xa", b"")
        .bytes();
    let options = ext4::Options {
        headroom_bytes: 64 << 20,
        ..test_options()
    };
    let mut b = ext4::Ext4Builder::new(&img, options).unwrap();
    b.apply_layer(&big.bytes()[..]).unwrap();
    b.apply_layer(&l2[..]).unwrap();
    b.finish().unwrap();
    fsck(&img);

    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    {
        let Some(_m) = Mounted::new(&img, &mnt) else {
            return;
        };
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
        let line = mounts
            .lines()
            .find(|l| l.contains(mnt.to_str().unwrap()))
            .unwrap();
        assert!(line.contains(" rw,"), "{line}");
        assert!(!line.contains("data=journal"), "{line}");
        // Kernel lookups through the htree.
        for i in (0..5000).step_by(37) {
            let s = std::fs::read_to_string(mnt.join(format!("big/entry-{i}"))).unwrap();
            assert_eq!(s, i.to_string());
        }
        assert_eq!(
            std::fs::read_to_string(mnt.join("etc/link")).unwrap(),
            "box\n"
        );
        // Writes: new entries in the htree, a new file elsewhere, deletions.
        for i in 0..2000 {
            std::fs::write(mnt.join(format!("big/new-{i}")), b"n").unwrap();
        }
        for i in 0..100 {
            std::fs::remove_file(mnt.join(format!("big/entry-{i}"))).unwrap();
        }
        std::fs::write(mnt.join("etc/written"), vec![1u8; 1 << 20]).unwrap();
        assert_eq!(std::fs::read_dir(mnt.join("big")).unwrap().count(), 6900);
    }
    fsck(&img);
}

#[test]
fn kernel_mounts_empty_volume() {
    if !can_mount() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("vol");
    ext4::format_empty(&img, 256 << 20, &test_options()).unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    {
        let Some(_m) = Mounted::new(&img, &mnt) else {
            return;
        };
        std::fs::create_dir(mnt.join("data")).unwrap();
        std::fs::write(mnt.join("data/file"), vec![7u8; 10 << 20]).unwrap();
        assert!(mnt.join("lost+found").is_dir());
    }
    fsck(&img);
}

fn lgetxattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 4096];
    // SAFETY: the strings are NUL-terminated; buf is writable for its length.
    let rc = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if rc < 0 {
        return None;
    }
    buf.truncate(rc as usize);
    Some(buf)
}

/// A POSIX ACL in the xattr interface format: user::rwx user:1000:r-x group::r-x mask::r-x other::r--
fn acl_bytes() -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in [
        (1u16, 7u16, u32::MAX),
        (2, 5, 1000),
        (4, 5, u32::MAX),
        (0x10, 5, u32::MAX),
        (0x20, 4, u32::MAX),
    ] {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}

#[test]
fn kernel_sees_xattrs_acls_devices_and_times() {
    if !can_mount() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    let cap = [
        1u8, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let big = vec![b'z'; 3000];
    let acl = acl_bytes();
    let layer = Layer::new()
        .pax(&[
            ("SCHILY.xattr.user.a", b"1"),
            ("SCHILY.xattr.security.capability", &cap[..]),
            ("SCHILY.xattr.system.posix_acl_access", &acl[..]),
            ("mtime", b"1600000000.5"),
        ])
        .file("f", b"data")
        .pax(&[
            ("SCHILY.xattr.user.big", &big[..]),
            ("SCHILY.xattr.trusted.t", b"tv"),
        ])
        .file("g", b"")
        .device("null", tar::EntryType::Char, 1, 3)
        .device("big", tar::EntryType::Block, 259, 300_000)
        .fifo("fifo")
        .bytes();
    build(&img, &[layer]).unwrap();
    fsck(&img);
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    {
        let Some(_m) = Mounted::new(&img, &mnt) else {
            return;
        };
        let f = mnt.join("f");
        assert_eq!(lgetxattr(&f, "user.a").as_deref(), Some(&b"1"[..]));
        assert_eq!(
            lgetxattr(&f, "security.capability").as_deref(),
            Some(&cap[..])
        );
        assert_eq!(lgetxattr(&f, "system.posix_acl_access"), Some(acl.clone()));
        let g = mnt.join("g");
        assert_eq!(lgetxattr(&g, "user.big"), Some(big.clone()));
        assert_eq!(lgetxattr(&g, "trusted.t").as_deref(), Some(&b"tv"[..]));
        let m = std::fs::symlink_metadata(&f).unwrap();
        assert_eq!((m.mtime(), m.mtime_nsec()), (1_600_000_000, 500_000_000));
        let rdev = |p: &str| std::fs::symlink_metadata(mnt.join(p)).unwrap().rdev();
        assert_eq!(rdev("null"), libc::makedev(1, 3));
        assert_eq!(rdev("big"), libc::makedev(259, 300_000));
        use std::os::unix::fs::FileTypeExt;
        assert!(
            std::fs::symlink_metadata(mnt.join("fifo"))
                .unwrap()
                .file_type()
                .is_fifo()
        );
        assert!(
            std::fs::symlink_metadata(mnt.join("big"))
                .unwrap()
                .file_type()
                .is_block_device()
        );
    }
    fsck(&img);
}

#[test]
fn full_disk_is_an_io_error_and_leaves_nothing() {
    if !can_mount() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small");
    std::fs::create_dir(&small).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(&small)
        .status()
        .unwrap()
        .success();
    if !ok {
        test_support::skip("cannot mount a tmpfs");
        return;
    }
    let _m = Mounted(small.clone());
    let img = small.join("img");
    let layer = Layer::new().file("big", &vec![7u8; 24 << 20]).bytes();
    let e = build(&img, &[layer]).unwrap_err();
    assert!(matches!(e, ext4::Error::Io { .. }), "{e}");
    assert!(!e.is_invalid_input());
    let source = std::error::Error::source(&e)
        .map(|s| s.to_string())
        .unwrap_or_default();
    assert!(source.contains("No space left"), "{e}: {source}");
    assert!(!img.exists());
}
