//! `save`/`load` round trips, skopeo-made docker archives, bad archives, and GC.

mod common;

use std::collections::BTreeSet;
use std::io::Read;
use std::process::Command;

use common::*;
use oci::{Digest, ImageRef, Store, open_layer};

fn save_to_vec(store: &Store, names: &[&str]) -> Vec<u8> {
    let refs: Vec<ImageRef> = names.iter().map(|n| ImageRef::parse(n).unwrap()).collect();
    let mut out = Vec::new();
    oci::save(store, &refs, None, &mut out).unwrap();
    out
}

fn two_images(store: &Store) -> (BuiltImage, BuiltImage) {
    let shared = ("etc/os-release", b"ID=test\n" as &[u8]);
    let a = build_image(
        store,
        "example.com/a:1",
        "amd64",
        &[
            layer(Comp::Gzip, &[shared]),
            layer(Comp::Zstd, &[("a", b"only a")]),
        ],
    );
    let b = build_image(
        store,
        "localhost:5000/b/c:2",
        "amd64",
        &[
            layer(Comp::Gzip, &[shared]),
            layer(Comp::None, &[("b", b"only b")]),
        ],
    );
    (a, b)
}

/// Store state a failed load must leave untouched.
fn snapshot(store: &Store) -> (Vec<Digest>, Vec<String>, Vec<String>) {
    (
        store.content().list().unwrap(),
        store
            .images()
            .unwrap()
            .iter()
            .map(|r| r.name.to_string())
            .collect(),
        ingest_files(store.root()),
    )
}

#[test]
fn save_then_load_into_fresh_store_round_trips() {
    let work = tempfile::tempdir().unwrap();
    let src = Store::open(work.path().join("src")).unwrap();
    let (a, b) = two_images(&src);
    let tar = save_to_vec(&src, &["example.com/a:1", "localhost:5000/b/c:2"]);

    // The archive is an OCI layout with names in index.json.
    let entries = tar_entries(tar.as_slice());
    let names: BTreeSet<&str> = entries.iter().map(|(p, _)| p.as_str()).collect();
    assert!(names.contains("oci-layout") && names.contains("index.json"));
    let index: serde_json::Value =
        serde_json::from_slice(&entries.iter().find(|(p, _)| p == "index.json").unwrap().1)
            .unwrap();
    assert_eq!(
        index["manifests"][0]["annotations"]["io.containerd.image.name"],
        "example.com/a:1"
    );
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "1"
    );
    // 2 manifests + 2 configs + 3 distinct layers (one shared).
    assert_eq!(
        names
            .iter()
            .filter(|p| p.starts_with("blobs/sha256/") && !p.ends_with('/'))
            .count(),
        7
    );

    let dst = Store::open(work.path().join("dst")).unwrap();
    let loaded = oci::load(&dst, tar.as_slice()).unwrap().names;
    assert_eq!(
        loaded.iter().map(ImageRef::to_string).collect::<Vec<_>>(),
        ["example.com/a:1", "localhost:5000/b/c:2"]
    );
    assert_eq!(dst.content().list().unwrap(), src.content().list().unwrap());
    for img in [&a, &b] {
        let r = dst.image(&img.name).unwrap();
        assert_eq!(r.target.digest, img.manifest.digest);
        let resolved = dst.resolve(&img.name, None).unwrap();
        for (l, tar) in resolved.manifest.layers.iter().zip(&img.tars) {
            let mut out = Vec::new();
            open_layer(dst.content(), l)
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(&out, tar);
        }
    }
    assert!(ingest_files(dst.root()).is_empty());
    // Saving from the loaded store gives the same bytes: the format is deterministic.
    assert_eq!(
        save_to_vec(&dst, &["example.com/a:1", "localhost:5000/b/c:2"]),
        tar
    );
}

/// A tar of directory `dir`'s files, paths relative to it.
fn tar_dir(dir: &std::path::Path) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.append_dir_all(".", dir).unwrap();
    b.into_inner().unwrap()
}

#[test]
fn skopeo_oci_layout_with_a_bare_tag_loads_untagged() {
    let work = tempfile::tempdir().unwrap();
    let src = Store::open(work.path().join("src")).unwrap();
    let (_, b) = two_images(&src);
    let ours = work.path().join("ours");
    tar::Archive::new(save_to_vec(&src, &["localhost:5000/b/c:2"]).as_slice())
        .unpack(&ours)
        .unwrap();
    // `skopeo copy oci:` writes only org.opencontainers.image.ref.name = "latest".
    let theirs = work.path().join("theirs");
    let out = Command::new("skopeo")
        .arg("copy")
        .arg(format!("oci:{}:2", ours.display()))
        .arg(format!("oci:{}:latest", theirs.display()))
        .output()
        .expect("skopeo must be installed");
    assert!(
        out.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(theirs.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"][0]["annotations"],
        serde_json::json!({"org.opencontainers.image.ref.name": "latest"})
    );

    let dst = Store::open(work.path().join("dst")).unwrap();
    let loaded = oci::load(&dst, tar_dir(&theirs).as_slice()).unwrap();
    assert!(loaded.names.is_empty(), "{loaded:?}");
    assert_eq!(loaded.untagged.len(), 1);
    let u = &loaded.untagged[0];
    assert_eq!(u.tag.as_deref(), Some("latest"));
    assert!(dst.images().unwrap().is_empty());
    assert_eq!(dst.untagged().unwrap(), std::slice::from_ref(&u.target));
    // Found by digest, and its content is the image's.
    let by_digest = ImageRef::parse("anything/at-all")
        .unwrap()
        .with_digest(u.target.digest.clone());
    let r = dst.resolve(&by_digest, None).unwrap();
    assert_eq!(r.config.labels["test.name"], "localhost:5000/b/c:2");
    assert_eq!(r.manifest.layers.len(), b.tars.len());
    // GC keeps an image without a name.
    dst.gc().unwrap();
    assert!(dst.resolve(&by_digest, None).is_ok());
    // Naming it takes it out of the unnamed list; loading it again keeps the name only.
    let named = ImageRef::parse("mine:1").unwrap();
    dst.put_image(&named, &u.target).unwrap();
    assert!(dst.untagged().unwrap().is_empty());
    let again = oci::load(&dst, tar_dir(&theirs).as_slice()).unwrap();
    assert_eq!(again.untagged.len(), 1);
    assert!(dst.untagged().unwrap().is_empty());
    assert_eq!(dst.image(&named).unwrap().target, u.target);
    // And forgetting it lets GC reclaim it.
    dst.remove_image(&named).unwrap();
    dst.put_untagged(&u.target).unwrap();
    dst.remove_untagged(&u.target.digest).unwrap();
    dst.gc().unwrap();
    assert!(dst.content().list().unwrap().is_empty());
}

#[test]
fn skopeo_docker_archive_loads() {
    let work = tempfile::tempdir().unwrap();
    let src = Store::open(work.path().join("src")).unwrap();
    // skopeo cannot put zstd layers in a docker archive, so use the gzip + plain image.
    let (_, b) = two_images(&src);
    // Our save output is an OCI layout directory once unpacked; skopeo converts it.
    let layout = work.path().join("layout");
    let tar = save_to_vec(&src, &["localhost:5000/b/c:2"]);
    tar::Archive::new(tar.as_slice()).unpack(&layout).unwrap();
    let archive = work.path().join("docker.tar");
    let out = Command::new("skopeo")
        .arg("copy")
        .arg(format!("oci:{}:2", layout.display()))
        .arg(format!(
            "docker-archive:{}:skopeo/made:v9",
            archive.display()
        ))
        .output()
        .expect("skopeo must be installed");
    assert!(
        out.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let dst = Store::open(work.path().join("dst")).unwrap();
    let loaded = oci::load(&dst, std::fs::File::open(&archive).unwrap())
        .unwrap()
        .names;
    assert_eq!(
        loaded.iter().map(ImageRef::to_string).collect::<Vec<_>>(),
        ["docker.io/skopeo/made:v9"]
    );
    let r = dst.resolve(&loaded[0], None).unwrap();
    assert_eq!(r.manifest.media_type, oci::media_type::DOCKER_MANIFEST);
    assert_eq!(r.config.cmd, ["/bin/sh"]);
    assert_eq!(r.config.labels["test.name"], "localhost:5000/b/c:2");
    assert_eq!(r.manifest.layers.len(), 2);
    // Whatever compression skopeo chose, the layers hold the same files.
    for (l, tar) in r.manifest.layers.iter().zip(&b.tars) {
        let mut out = Vec::new();
        open_layer(dst.content(), l)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        let got: Vec<_> = tar_entries(out.as_slice());
        let want: Vec<_> = tar_entries(tar.as_slice());
        assert_eq!(got, want);
    }
    // And it round-trips through our own save/load.
    let again = save_to_vec(&dst, &["skopeo/made:v9"]);
    let dst2 = Store::open(work.path().join("dst2")).unwrap();
    oci::load(&dst2, again.as_slice()).unwrap();
    assert_eq!(
        dst2.content().list().unwrap(),
        dst.content().list().unwrap()
    );
}

/// Rewrites one member of a tar.
fn edit_member(tar: &[u8], path: &str, f: impl Fn(Vec<u8>) -> Vec<u8>) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (p, c) in tar_entries(tar) {
        if p.ends_with('/') {
            continue;
        }
        let c = if p == path { f(c) } else { c };
        let mut h = tar::Header::new_ustar();
        h.set_size(c.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, &p, c.as_slice()).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn bad_archives_are_refused_and_leave_the_store_unchanged() {
    let work = tempfile::tempdir().unwrap();
    let src = Store::open(work.path().join("src")).unwrap();
    let (a, _) = two_images(&src);
    let tar = save_to_vec(&src, &["example.com/a:1"]);
    let dst = Store::open(work.path().join("dst")).unwrap();
    // Something already in the store must stay exactly as it is.
    build_image(
        &dst,
        "pre/existing:1",
        "amd64",
        &[layer(Comp::None, &[("x", b"x")])],
    );
    let before = snapshot(&dst);

    let gz = &a.layers[0];
    let gz_path = format!("blobs/sha256/{}", gz.digest.hex());
    let cases: Vec<(Vec<u8>, String)> = vec![
        (
            edit_member(&tar, &gz_path, |mut c| {
                c[20] ^= 0xff;
                c
            }),
            format!(
                "layer {gz_path} does not match its digest: expected {}, got ",
                gz.digest
            ),
        ),
        (
            edit_member(&tar, &gz_path, |c| c[..c.len() / 2].to_vec()),
            format!(
                "layer {gz_path} is {} bytes but {} were expected (truncated or corrupt)",
                gz.size / 2,
                gz.size
            ),
        ),
        (
            with_weird_layer_type(&src, &a, &tar),
            "unsupported media type \"application/x-mystery\" for layer".to_owned(),
        ),
        (
            {
                // Cut the archive half-way through the gzip layer's data.
                let mut a = tar::Archive::new(tar.as_slice());
                let cut = a
                    .entries()
                    .unwrap()
                    .map(|e| e.unwrap())
                    .find(|e| e.path().unwrap().to_string_lossy() == gz_path)
                    .map(|e| e.raw_file_position() + e.size() / 2)
                    .unwrap();
                tar[..cut as usize].to_vec()
            },
            format!(
                "archive is truncated: member {gz_path} ends after {} of its {} bytes",
                gz.size / 2,
                gz.size
            ),
        ),
        (tar[..700].to_vec(), "cannot read archive".to_owned()),
        (
            {
                let mut b = tar::Builder::new(Vec::new());
                let mut h = tar::Header::new_gnu();
                h.set_size(1);
                h.set_mode(0o644);
                // tar's builder refuses '..' itself, so write the name bytes directly.
                h.as_gnu_mut().unwrap().name[..7].copy_from_slice(b"../evil");
                h.set_cksum();
                b.append(&h, &b"x"[..]).unwrap();
                b.into_inner().unwrap()
            },
            "unsafe path \"../evil\" in archive (absolute or leaving the archive root)".to_owned(),
        ),
        (
            edit_member(&tar, "index.json", |_| b"{}".to_vec()),
            "malformed image index: no schemaVersion".to_owned(),
        ),
    ];
    for (archive, want) in cases {
        let err = oci::load(&dst, archive.as_slice()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with(&want), "got {msg:?}, want {want:?}");
        assert!(!msg.contains('\n'));
        assert_eq!(snapshot(&dst), before, "after {want}");
    }
}

/// The archive with image `a`'s manifest rewritten to an unknown layer media type, its
/// digest and size kept honest so that the media type is the only problem.
fn with_weird_layer_type(src: &Store, a: &BuiltImage, tar: &[u8]) -> Vec<u8> {
    let old = format!("blobs/sha256/{}", a.manifest.digest.hex());
    let manifest =
        String::from_utf8(std::fs::read(src.content().path(&a.manifest.digest)).unwrap())
            .unwrap()
            .replace(oci::media_type::OCI_LAYER_ZSTD, "application/x-mystery")
            .into_bytes();
    let digest = Digest::of(&manifest);
    let t = edit_member(tar, &old, |_| manifest.clone());
    let t = edit_member(&t, "index.json", |c| {
        let mut idx: serde_json::Value = serde_json::from_slice(&c).unwrap();
        idx["manifests"][0]["digest"] = digest.to_string().into();
        idx["manifests"][0]["size"] = manifest.len().into();
        serde_json::to_vec(&idx).unwrap()
    });
    rename_member(&t, &old, &format!("blobs/sha256/{}", digest.hex()))
}

fn rename_member(tar: &[u8], from: &str, to: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (p, c) in tar_entries(tar) {
        if p.ends_with('/') {
            continue;
        }
        let p = if p == from { to.to_owned() } else { p };
        let mut h = tar::Header::new_ustar();
        h.set_size(c.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, &p, c.as_slice()).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn gc_removes_only_unreferenced_blobs() {
    let work = tempfile::tempdir().unwrap();
    let store = Store::open(work.path().join("s")).unwrap();
    let (a, b) = two_images(&store);
    let stray = store
        .content()
        .write_blob(b"nobody points here", None)
        .unwrap();
    // An index with one platform present keeps that platform's blobs.
    let idx = build_index(&store, "example.com/multi:1", &[(&a, "amd64")]);
    let all_before = store.content().list().unwrap();

    let report = store.gc().unwrap();
    assert_eq!(report.removed, std::slice::from_ref(&stray));
    assert_eq!(report.reclaimed_bytes, 18);

    store.remove_image(&b.name).unwrap();
    let report = store.gc().unwrap();
    let mut only_b: Vec<Digest> = vec![
        b.manifest.digest.clone(),
        b.config.digest.clone(),
        b.layers[1].digest.clone(),
    ];
    only_b.sort();
    assert_eq!(report.removed, only_b);
    // The shared layer stays for a.
    assert!(store.content().contains(&b.layers[0].digest));
    let left: Vec<Digest> = store.content().list().unwrap();
    let mut expect: Vec<Digest> = all_before
        .into_iter()
        .filter(|d| *d != stray && !only_b.contains(d))
        .collect();
    expect.sort();
    assert_eq!(left, expect);
    assert!(left.contains(&idx.digest));
    assert!(store.resolve(&a.name, None).is_ok());

    // Removing every name empties the store.
    store.remove_image(&a.name).unwrap();
    store
        .remove_image(&ImageRef::parse("example.com/multi:1").unwrap())
        .unwrap();
    store.gc().unwrap();
    assert!(store.content().list().unwrap().is_empty());
}

/// A `docker save` archive in the pre-v25 layout: `<id>/layer.tar` directories, a layer
/// shared between two images stored once and symlinked, plus `repositories`, `VERSION`
/// and `json` members that carry nothing we need.
fn legacy_docker_archive(diff_id_override: Option<&str>) -> (Vec<u8>, Vec<Vec<u8>>) {
    let l1 = tar_of(&[("bin/sh".to_string(), b"shell".to_vec())]);
    let l2 = tar_of(&[("app/run".to_string(), b"app".to_vec())]);
    let d1 = Digest::of(&l1).to_string();
    let d2 = Digest::of(&l2).to_string();
    let config = |diff_ids: Vec<String>| {
        serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Cmd": ["/app/run"], "ExposedPorts": {"8080/tcp": {}}},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap()
    };
    let base_cfg = config(vec![d1.clone()]);
    let app_cfg = config(vec![
        diff_id_override.map_or(d1.clone(), str::to_owned),
        d2.clone(),
    ]);
    let base_cfg_name = format!("{}.json", Digest::of(&base_cfg).hex());
    let app_cfg_name = format!("{}.json", Digest::of(&app_cfg).hex());
    let manifest = serde_json::json!([
        {"Config": base_cfg_name, "RepoTags": ["base:1"], "Layers": ["aaa/layer.tar"]},
        {"Config": app_cfg_name, "RepoTags": ["registry.local:5000/app:2", "app:latest"],
         "Layers": ["bbb/layer.tar", "ccc/layer.tar"]},
    ]);
    let mut b = tar::Builder::new(Vec::new());
    let file = |b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, path, data).unwrap();
    };
    file(&mut b, "aaa/VERSION", b"1.0");
    file(&mut b, "aaa/json", b"{}");
    file(&mut b, "aaa/layer.tar", &l1);
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    b.append_link(&mut h, "bbb/layer.tar", "../aaa/layer.tar")
        .unwrap();
    file(&mut b, "ccc/layer.tar", &l2);
    file(&mut b, &base_cfg_name, &base_cfg);
    file(&mut b, &app_cfg_name, &app_cfg);
    file(&mut b, "repositories", b"{}");
    file(
        &mut b,
        "manifest.json",
        &serde_json::to_vec(&manifest).unwrap(),
    );
    (b.into_inner().unwrap(), vec![l1, l2])
}

#[test]
fn legacy_docker_save_archive_with_shared_layers_loads() {
    let work = tempfile::tempdir().unwrap();
    let store = Store::open(work.path().join("s")).unwrap();
    let (archive, tars) = legacy_docker_archive(None);
    let names = oci::load(&store, archive.as_slice()).unwrap().names;
    assert_eq!(
        names.iter().map(ImageRef::to_string).collect::<Vec<_>>(),
        [
            "docker.io/library/base:1",
            "registry.local:5000/app:2",
            "docker.io/library/app:latest"
        ]
    );
    let base = store.resolve(&names[0], None).unwrap();
    let app = store.resolve(&names[1], None).unwrap();
    assert_eq!(app.target, store.image(&names[2]).unwrap().target);
    assert_eq!(app.config.exposed_ports, ["8080/tcp"]);
    assert_eq!(
        app.manifest.layers[0].digest,
        base.manifest.layers[0].digest
    );
    for (l, tar) in app.manifest.layers.iter().zip(&tars) {
        assert_eq!(l.media_type, oci::media_type::DOCKER_LAYER);
        let mut out = Vec::new();
        open_layer(store.content(), l)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(&out, tar);
    }
    // 2 configs + 2 layers + 2 generated manifests; VERSION/json/repositories are dropped.
    assert_eq!(store.content().list().unwrap().len(), 6);
    assert!(ingest_files(store.root()).is_empty());

    // A layer that does not match its config's diff_id is refused; nothing is stored.
    let fresh = Store::open(work.path().join("fresh")).unwrap();
    let wrong = Digest::of(b"not the layer").to_string();
    let (archive, _) = legacy_docker_archive(Some(&wrong));
    let err = oci::load(&fresh, archive.as_slice()).unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "layer bbb/layer.tar does not match its digest: expected {wrong}, got sha256:"
        )),
        "{err}"
    );
    assert!(fresh.content().list().unwrap().is_empty());
    assert!(fresh.images().unwrap().is_empty());
}
