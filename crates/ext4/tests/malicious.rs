//! Hostile layers are refused with a named error and leave no image behind.

mod common;

use common::*;
use ext4::Error;
use tar::EntryType;

fn refuse(layers: Vec<Vec<u8>>, options: ext4::Options) -> Error {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    let result = (|| {
        let mut b = ext4::Ext4Builder::new(&img, options)?;
        for l in &layers {
            b.apply_layer(&l[..])?;
        }
        b.finish()
    })();
    let err = result.expect_err("layer was accepted");
    assert!(!img.exists(), "partial image left behind after: {err}");
    // Every error prints as one line.
    assert!(!err.to_string().contains('\n'));
    err
}

#[test]
fn dotdot_component() {
    let l = Layer::new()
        .raw(EntryType::Regular, b"a/../../etc/passwd", b"", b"x")
        .bytes();
    let e = refuse(vec![l], test_options());
    assert!(matches!(e, Error::DotDot { .. }), "{e}");
    assert!(e.to_string().contains("'..'"), "{e}");
}

#[test]
fn absolute_path_escaping() {
    let l = Layer::new()
        .raw(EntryType::Regular, b"/../escape", b"", b"x")
        .bytes();
    assert!(matches!(
        refuse(vec![l], test_options()),
        Error::DotDot { .. }
    ));
}

#[test]
fn absolute_paths_stay_inside() {
    // A leading slash is taken relative to the root, as Docker does.
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    let l = Layer::new()
        .raw(EntryType::Regular, b"/etc/hostname", b"", b"box\n")
        .bytes();
    build(&img, &[l]).unwrap();
    fsck(&img);
    assert!(debugfs(&img, &["cat /etc/hostname".into()]).contains("box"));
}

#[test]
fn entry_under_a_symlink_same_layer() {
    let l = Layer::new()
        .symlink("lib", "/")
        .raw(EntryType::Regular, b"lib/etc/evil", b"", b"x")
        .bytes();
    let e = refuse(vec![l], test_options());
    assert!(
        matches!(e, Error::ThroughSymlink { ref symlink, .. } if symlink == "lib"),
        "{e}"
    );
}

#[test]
fn entry_under_a_symlink_from_lower_layer() {
    let l1 = Layer::new().symlink("escape", "../../../../tmp").bytes();
    let l2 = Layer::new().file("escape/owned", b"x").bytes();
    let e = refuse(vec![l1, l2], test_options());
    assert!(matches!(e, Error::ThroughSymlink { layer: 2, .. }), "{e}");
}

#[test]
fn hard_link_to_nonexistent() {
    let l = Layer::new().hardlink("a", "does/not/exist").bytes();
    let e = refuse(vec![l], test_options());
    assert!(
        matches!(
            e,
            Error::BadHardLink {
                reason: "target does not exist",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn hard_link_outside_the_tree() {
    let l = Layer::new()
        .raw(EntryType::Link, b"a", b"../../etc/shadow", b"")
        .bytes();
    let e = refuse(vec![l], test_options());
    assert!(matches!(e, Error::DotDot { .. }), "{e}");
}

#[test]
fn hard_link_through_symlink() {
    let l = Layer::new()
        .dir("real")
        .file("real/f", b"x")
        .symlink("sym", "real")
        .hardlink("a", "sym/f")
        .bytes();
    assert!(matches!(
        refuse(vec![l], test_options()),
        Error::ThroughSymlink { .. }
    ));
}

#[test]
fn hard_link_cycle_and_self() {
    // "a" links to itself; a forward reference to a later entry is also refused.
    let l = Layer::new().hardlink("a", "a").bytes();
    let e = refuse(vec![l], test_options());
    assert!(
        matches!(
            e,
            Error::BadHardLink {
                reason: "link to itself",
                ..
            }
        ),
        "{e}"
    );
    let l = Layer::new().hardlink("a", "b").hardlink("b", "a").bytes();
    assert!(matches!(
        refuse(vec![l], test_options()),
        Error::BadHardLink { .. }
    ));
}

#[test]
fn hard_link_to_directory() {
    let l = Layer::new().dir("d").hardlink("a", "d").bytes();
    let e = refuse(vec![l], test_options());
    assert!(
        matches!(
            e,
            Error::BadHardLink {
                reason: "target is a directory",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn hard_link_to_whited_out_file() {
    let l1 = Layer::new().file("f", b"x").bytes();
    let l2 = Layer::new().whiteout("", "f").hardlink("g", "f").bytes();
    assert!(matches!(
        refuse(vec![l1, l2], test_options()),
        Error::BadHardLink { .. }
    ));
}

#[test]
fn absurd_file_size() {
    // The header claims 1 TiB; the limit is 1 MiB; no data needs to follow.
    let mut h = tar::Header::new_gnu();
    h.set_path("huge").unwrap();
    h.set_size(1 << 40);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_mode(0o644);
    h.set_entry_type(EntryType::Regular);
    h.set_cksum();
    let mut bytes = h.as_bytes().to_vec();
    bytes.extend_from_slice(&[0u8; 1024]);
    let options = ext4::Options {
        max_file_size: 1 << 20,
        ..test_options()
    };
    let e = refuse(vec![bytes], options);
    assert!(
        matches!(e, Error::FileTooLarge { size, limit, .. } if size == 1 << 40 && limit == 1 << 20),
        "{e}: {:?}",
        std::error::Error::source(&e)
    );
}

#[test]
fn truncated_layer() {
    let mut l = Layer::new().file("f", &[7u8; 100_000]).bytes();
    l.truncate(50_000);
    assert!(matches!(refuse(vec![l], test_options()), Error::Tar { .. }));
}

#[test]
fn name_too_long() {
    let long = "n".repeat(256);
    let l = Layer::new().file(&format!("d/{long}"), b"x").bytes();
    let e = refuse(vec![l], test_options());
    assert!(matches!(e, Error::NameTooLong { .. }), "{e}");
}

#[test]
fn file_where_a_directory_is_needed() {
    let l = Layer::new()
        .file("f", b"x")
        .raw(EntryType::Regular, b"f/g", b"", b"y")
        .bytes();
    assert!(matches!(
        refuse(vec![l], test_options()),
        Error::NotADirectory { .. }
    ));
}

#[test]
fn failed_builder_stays_failed() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    let mut b = ext4::Ext4Builder::new(&img, test_options()).unwrap();
    let bad = Layer::new()
        .raw(EntryType::Regular, b"../x", b"", b"x")
        .bytes();
    assert!(b.apply_layer(&bad[..]).is_err());
    assert!(!img.exists());
    let good = Layer::new().file("ok", b"x").bytes();
    assert!(matches!(b.apply_layer(&good[..]), Err(Error::Failed)));
    assert!(matches!(b.finish(), Err(Error::Failed)));
    assert!(!img.exists());
}

#[test]
fn dropped_builder_removes_image() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    let mut b = ext4::Ext4Builder::new(&img, test_options()).unwrap();
    b.apply_layer(&Layer::new().file("ok", b"x").bytes()[..])
        .unwrap();
    assert!(img.exists());
    drop(b);
    assert!(!img.exists());
}

#[test]
fn bad_sparse_maps() {
    for (map, realsize) in [("0,10,5,10", "20"), ("0,10,100,10", "50"), ("0,10,x", "20")] {
        let l = Layer::new()
            .pax(&[
                ("GNU.sparse.map", map.as_bytes()),
                ("GNU.sparse.realsize", realsize.as_bytes()),
                ("GNU.sparse.name", b"s"),
            ])
            .file("GNUSparseFile.1/s", &[1u8; 20])
            .bytes();
        let e = refuse(vec![l], test_options());
        assert!(matches!(e, Error::BadEntry { .. }), "{map}: {e}");
    }
    // A sparse file claiming a huge real size is checked against the limit.
    let l = Layer::new()
        .pax(&[
            ("GNU.sparse.map", b"0,1"),
            ("GNU.sparse.realsize", b"1099511627776"),
        ])
        .file("s", &[1u8])
        .bytes();
    let options = ext4::Options {
        max_file_size: 1 << 20,
        ..test_options()
    };
    assert!(matches!(
        refuse(vec![l], options),
        Error::FileTooLarge { .. }
    ));
}

#[test]
fn overlayfs_attributes_are_refused() {
    // The rootfs is an overlayfs lower at run time: a redirect or opaque marker of the
    // image's own would steer that mount.
    for name in [
        "SCHILY.xattr.trusted.overlay.redirect",
        "SCHILY.xattr.trusted.overlay.opaque",
        "SCHILY.xattr.user.overlay.metacopy",
    ] {
        let l = Layer::new()
            .dir("d")
            .pax(&[(name, b"/etc")])
            .file("d/f", b"x")
            .bytes();
        let e = refuse(vec![l], test_options());
        assert!(
            e.to_string().contains("belongs to overlayfs"),
            "{name}: {e}"
        );
    }
    // Other trusted and user attributes still pass.
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    let l = Layer::new()
        .pax(&[
            ("SCHILY.xattr.trusted.overlayish", b"1"),
            ("SCHILY.xattr.user.k", b"v"),
        ])
        .file("f", b"x")
        .bytes();
    build(&img, &[l]).unwrap();
    fsck(&img);
}
