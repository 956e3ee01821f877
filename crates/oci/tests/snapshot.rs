//! Root filesystem snapshots built with the ext4 writer, checked with e2fsck and debugfs.

mod common;

use std::process::Command;
use std::sync::Arc;

use common::*;
use oci::{Store, ensure_rootfs, rootfs_path};

/// (stdout, stderr) of one debugfs request.
fn debugfs(image: &std::path::Path, cmd: &str) -> (String, String) {
    let out = Command::new("debugfs")
        .args(["-R", cmd])
        .arg(image)
        .output()
        .expect("debugfs must be installed");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn rootfs_is_built_once_from_all_layers_and_collected_with_its_image() {
    let work = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(work.path().join("s")).unwrap());
    let img = build_image(
        &store,
        "local/rootfs:1",
        "amd64",
        &[
            layer(
                Comp::Gzip,
                &[
                    ("etc/motd", b"hello from layer 1\n"),
                    ("etc/old", b"gone soon"),
                ],
            ),
            layer(
                Comp::Zstd,
                &[
                    ("etc/.wh.old", b""),
                    ("usr/bin/tool", b"#!/bin/sh\necho hi\n"),
                ],
            ),
            layer(Comp::None, &[("etc/motd", b"overridden by layer 3\n")]),
        ],
    );
    let opts = ext4::Options::default();

    // Two callers at once: one builds, the other waits and reuses it.
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| s.spawn(|| ensure_rootfs(&store, &img.manifest.digest, &opts).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(results.iter().filter(|s| s.built).count(), 1);
    let path = rootfs_path(&store, &img.manifest.digest);
    assert_eq!(results[0].path, path);
    assert!(path.ends_with(format!(
        "snapshots/{}/rootfs.ext4",
        img.manifest.digest.hex()
    )));

    let fsck = Command::new("e2fsck")
        .arg("-fn")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "e2fsck: {}",
        String::from_utf8_lossy(&fsck.stdout)
    );
    assert_eq!(debugfs(&path, "cat /etc/motd").0, "overridden by layer 3\n");
    assert_eq!(
        debugfs(&path, "cat /usr/bin/tool").0,
        "#!/bin/sh\necho hi\n"
    );
    assert!(debugfs(&path, "stat /etc/old").1.contains("File not found"));

    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    let again = ensure_rootfs(&store, &img.manifest.digest, &opts).unwrap();
    assert!(!again.built);
    assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), mtime);
    let dir = path.parent().unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "rootfs.ext4" && n != ".lock")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // The snapshot lives as long as an image references its manifest.
    assert!(store.gc().unwrap().removed_snapshots.is_empty());
    store.remove_image(&img.name).unwrap();
    let report = store.gc().unwrap();
    assert_eq!(
        report.removed_snapshots,
        std::slice::from_ref(&img.manifest.digest)
    );
    assert!(!dir.exists());
}

#[test]
fn a_crashed_build_is_replaced_and_a_bad_layer_leaves_no_image() {
    let work = tempfile::tempdir().unwrap();
    let store = Store::open(work.path().join("s")).unwrap();
    let img = build_image(
        &store,
        "local/x:1",
        "amd64",
        &[layer(Comp::Gzip, &[("a", b"a")])],
    );
    let dir = store.snapshots_dir().join(img.manifest.digest.hex());
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("rootfs.ext4.tmp-crashed"), b"half an image").unwrap();
    let s = ensure_rootfs(&store, &img.manifest.digest, &ext4::Options::default()).unwrap();
    assert!(s.built);
    assert!(!dir.join("rootfs.ext4.tmp-crashed").exists());

    // A layer whose tar stream is garbage: a clear error, and no rootfs.ext4 appears.
    let bad = build_image(
        &store,
        "local/bad:1",
        "amd64",
        &[layer(Comp::None, &[("a", b"a")])],
    );
    let layer_path = store.content().path(&bad.layers[0].digest);
    // Corrupt the stored blob behind the store's back (as a disk error would).
    std::fs::write(&layer_path, vec![0x42u8; 1536]).unwrap();
    let err = ensure_rootfs(&store, &bad.manifest.digest, &ext4::Options::default()).unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "cannot build the root filesystem of manifest {}",
            bad.manifest.digest
        )),
        "{err}"
    );
    let bad_dir = store.snapshots_dir().join(bad.manifest.digest.hex());
    let files: Vec<_> = std::fs::read_dir(&bad_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".lock")
        .collect();
    assert!(files.is_empty(), "{files:?}");
}
