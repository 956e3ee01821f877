//! Layers written by GNU tar itself, in its gnu and pax formats: sparse files,
//! long names and link targets, hard links, xattrs, nanosecond times.

mod common;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use common::*;

fn set_xattr(path: &Path, name: &str, value: &[u8]) -> bool {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    // SAFETY: both strings are NUL-terminated and outlive the call; value is a
    // valid slice of the given length.
    let rc = unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    rc == 0
}

fn source_tree(root: &Path) -> (String, String, bool) {
    std::fs::create_dir_all(root).unwrap();
    // A 40 MiB sparse file with data at 1 MiB and at the end.
    let sparse = std::fs::File::create(root.join("sparse")).unwrap();
    sparse.set_len(40 << 20).unwrap();
    use std::os::unix::fs::FileExt;
    sparse.write_all_at(b"middle", 1 << 20).unwrap();
    sparse.write_all_at(b"end", (40 << 20) - 3).unwrap();
    // A long path (> 255 bytes) and a long symlink target (> 100 bytes).
    let deep = format!("{}/{}", "d".repeat(120), "e".repeat(120));
    std::fs::create_dir_all(root.join(&deep)).unwrap();
    let long_name = format!("{deep}/{}", "f".repeat(200));
    std::fs::write(root.join(&long_name), b"long").unwrap();
    let target = format!("{}/target", "t".repeat(150));
    std::os::unix::fs::symlink(&target, root.join("longlink")).unwrap();
    std::fs::write(root.join("h1"), b"linked").unwrap();
    std::fs::hard_link(root.join("h1"), root.join("h2")).unwrap();
    std::fs::write(root.join("xa"), b"x").unwrap();
    let xattr_ok = set_xattr(&root.join("xa"), "user.note", b"from gnu tar");
    (long_name, target, xattr_ok)
}

fn check_format(format: &str, sparse_version: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let (long_name, target, xattr_ok) = source_tree(&src);
    let layer = dir.path().join("layer.tar");
    let mut tar = Command::new("tar");
    tar.arg(format!("--format={format}")).arg("--sparse");
    if let Some(v) = sparse_version {
        tar.arg(format!("--sparse-version={v}"));
    }
    if format == "pax" {
        tar.args(["--xattrs", "--xattrs-include=user.*"]);
    }
    let status = tar
        .arg("-cf")
        .arg(&layer)
        .arg("-C")
        .arg(&src)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    let img = dir.path().join("img");
    build(&img, &[std::fs::read(&layer).unwrap()]).unwrap();
    fsck(&img);

    let (_keep, root) = rdump(&img);
    let sparse = std::fs::read(root.join("sparse"))
        .unwrap_or_else(|e| panic!("{e}: image holds\n{}", debugfs(&img, &["ls -l /".into()])));
    assert_eq!(sparse.len(), 40 << 20);
    assert_eq!(&sparse[1 << 20..(1 << 20) + 6], b"middle");
    assert_eq!(&sparse[sparse.len() - 3..], b"end");
    assert!(sparse[..1 << 20].iter().all(|&b| b == 0));
    assert_eq!(std::fs::read(root.join(&long_name)).unwrap(), b"long");
    assert_eq!(
        std::fs::read_link(root.join("longlink"))
            .unwrap()
            .to_str()
            .unwrap(),
        target
    );
    let h1 = stat(&img, "/h1");
    assert_eq!(h1.ino, stat(&img, "/h2").ino);
    assert_eq!(h1.links, 2);
    // The holes stayed holes in the image file.
    let allocated = std::fs::metadata(&img).unwrap().blocks() * 512;
    assert!(
        allocated < 4 << 20,
        "{format}: image allocates {allocated} bytes"
    );
    if format == "pax" {
        // Sub-second mtimes survive in pax format.
        let want = std::fs::metadata(src.join("h1")).unwrap().mtime_nsec() as u32;
        assert_eq!(h1.mtime_extra >> 2, want);
        if xattr_ok {
            let ea = debugfs(&img, &["ea_list /xa".into()]);
            assert!(ea.contains("user.note (12) = \"from gnu tar\""), "{ea}");
        } else {
            test_support::skip("the xattr check: this filesystem refuses user xattrs");
        }
    }
}

#[test]
fn gnu_format() {
    check_format("gnu", None);
}

#[test]
fn pax_format_sparse_1_0() {
    check_format("pax", Some("1.0"));
}

#[test]
fn pax_format_sparse_0_1() {
    check_format("pax", Some("0.1"));
}

#[test]
fn pax_format_sparse_0_0() {
    check_format("pax", Some("0.0"));
}
