//! `container export` and `container cp` out of running and stopped containers, checked
//! against the busybox image's own layer plus the changes each test makes.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use container_tests::daemon::Daemon;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir,
    File(Vec<u8>),
    Symlink(String),
}

/// A filesystem as a tar describes it: every path's node, and the groups of names that are
/// hard links of one file.
#[derive(Debug, Default)]
struct Tree {
    nodes: BTreeMap<String, Node>,
    groups: BTreeMap<String, BTreeSet<String>>,
}

fn clean(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    let s = s.trim_start_matches("./").trim_end_matches('/');
    s.to_string()
}

impl Tree {
    fn read(tar: impl Read) -> Tree {
        let mut t = Tree::default();
        let mut a = tar::Archive::new(tar);
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let path = clean(&e.path_bytes());
            if path.is_empty() || path == "." {
                continue;
            }
            match e.header().entry_type() {
                tar::EntryType::Directory => {
                    t.nodes.insert(path, Node::Dir);
                }
                tar::EntryType::Regular => {
                    let mut data = Vec::new();
                    e.read_to_end(&mut data).unwrap();
                    t.nodes.insert(path, Node::File(data));
                }
                tar::EntryType::Symlink => {
                    let target = String::from_utf8_lossy(&e.link_name_bytes().unwrap()).into();
                    t.nodes.insert(path, Node::Symlink(target));
                }
                tar::EntryType::Link => {
                    let target = clean(&e.link_name_bytes().unwrap());
                    let node = t.nodes.get(&target).cloned();
                    assert!(
                        matches!(node, Some(Node::File(_))),
                        "link {path} names {target}, not an earlier file"
                    );
                    t.nodes.insert(path.clone(), node.unwrap());
                    t.link(&target, &path);
                }
                other => panic!("unexpected {other:?} entry {path}"),
            }
        }
        t
    }

    fn link(&mut self, a: &str, b: &str) {
        let mut group: BTreeSet<String> = [a.to_string(), b.to_string()].into();
        for n in [a, b] {
            if let Some(g) = self.groups.get(n) {
                group.extend(g.iter().cloned());
            }
        }
        for n in &group {
            self.groups.insert(n.clone(), group.clone());
        }
    }

    fn remove(&mut self, path: &str) {
        self.nodes.remove(path);
        if let Some(g) = self.groups.remove(path) {
            for n in &g {
                if let Some(other) = self.groups.get_mut(n) {
                    other.remove(path);
                }
            }
        }
    }

    /// The distinct link groups of two or more names.
    fn link_groups(&self) -> BTreeSet<BTreeSet<String>> {
        self.groups
            .values()
            .filter(|g| g.len() > 1)
            .cloned()
            .collect()
    }
}

/// The busybox image's single layer, from the image cache.
fn image_tree() -> Tree {
    let images = PathBuf::from(std::env::var("CONTAINER_TEST_IMAGES").unwrap());
    let archive = std::fs::read(images.join("busybox.docker.tar")).unwrap();
    let mut outer = tar::Archive::new(&archive[..]);
    let mut layers = Vec::new();
    let mut manifest = Vec::new();
    for e in outer.entries().unwrap() {
        let mut e = e.unwrap();
        let name = clean(&e.path_bytes());
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        if name == "manifest.json" {
            manifest = data;
        } else if name.ends_with("layer.tar") {
            layers.push((name, data));
        }
    }
    let manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let listed = manifest[0]["Layers"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "busybox has one layer");
    let layer = &layers
        .iter()
        .find(|(n, _)| n == listed[0].as_str().unwrap())
        .unwrap()
        .1;
    Tree::read(&layer[..])
}

/// What a container made from busybox holds after the changes the test makes: /added and its
/// hard link /added-link, /etc/group deleted, the symlink /x -> /.
fn expected() -> Tree {
    let mut t = image_tree();
    t.remove("etc/group");
    t.nodes
        .insert("added".into(), Node::File(b"added\n".to_vec()));
    t.nodes
        .insert("added-link".into(), Node::File(b"added\n".to_vec()));
    t.link("added", "added-link");
    t.nodes.insert("x".into(), Node::Symlink("/".into()));
    t
}

/// Files the runtime writes into every container, and directories it creates as mount points.
fn runtime_made(path: &str, node: &Node) -> bool {
    matches!(path, "etc/hostname" | "etc/hosts" | "etc/resolv.conf") || *node == Node::Dir
}

fn assert_export(d: &Daemon, ctr: &str, out: &Path) {
    d.ok(&["export", ctr, "-o", out.to_str().unwrap()]);
    let got = Tree::read(std::fs::File::open(out).unwrap());
    let want = expected();
    for (path, node) in &want.nodes {
        let g = got.nodes.get(path);
        assert!(g.is_some(), "{ctr}: export lacks {path}");
        if g != Some(node) {
            panic!("{ctr}: export's {path} differs from the image's plus the changes");
        }
    }
    for (path, node) in &got.nodes {
        assert!(
            want.nodes.contains_key(path) || runtime_made(path, node),
            "{ctr}: export holds {path}, which is neither the image's nor the container's"
        );
    }
    assert!(
        !got.nodes.contains_key("etc/group"),
        "a deleted file came back"
    );
    for pseudo in ["proc", "sys", "dev"] {
        assert!(
            !got.nodes
                .keys()
                .any(|p| p.starts_with(&format!("{pseudo}/"))),
            "{ctr}: export holds the contents of /{pseudo}"
        );
    }
    // Hard links are links in the archive: busybox's names stay one file, and the one the
    // container made is kept.
    let groups = got.link_groups();
    assert_eq!(groups, want.link_groups(), "{ctr}: hard-link groups differ");
    assert!(
        groups
            .iter()
            .any(|g| g.len() > 200 && g.contains("bin/busybox")),
        "busybox's applets are links"
    );
}

fn assert_cp(d: &Daemon, ctr: &str, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let busybox = match &image_tree().nodes["bin/busybox"] {
        Node::File(b) => b.clone(),
        other => panic!("busybox is {other:?}"),
    };
    let file = dir.join(format!("{ctr}-busybox"));
    d.ok(&["cp", &format!("{ctr}:/bin/busybox"), file.to_str().unwrap()]);
    assert!(
        std::fs::read(&file).unwrap() == busybox,
        "cp of /bin/busybox gave other bytes"
    );
    let bin = dir.join(format!("{ctr}-bin"));
    d.ok(&["cp", &format!("{ctr}:/bin"), bin.to_str().unwrap()]);
    let mut names: Vec<String> = std::fs::read_dir(&bin)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let want: Vec<String> = image_tree()
        .nodes
        .keys()
        .filter_map(|p| p.strip_prefix("bin/").map(str::to_owned))
        .filter(|p| !p.contains('/'))
        .collect();
    assert_eq!(names, want);
    use std::os::unix::fs::MetadataExt;
    let ino = |n: &str| std::fs::metadata(bin.join(n)).unwrap().ino();
    assert_eq!(ino("sh"), ino("busybox"), "cp keeps hard links");
    assert!(std::fs::read(bin.join("sh")).unwrap() == busybox);
    // /x -> / is the container's root, never the VM's: /x/added is the container's file.
    let added = dir.join(format!("{ctr}-added"));
    d.ok(&["cp", &format!("{ctr}:/x/added"), added.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&added).unwrap(), "added\n");
    let err = d.fails(
        &["cp", &format!("{ctr}:/x/init"), added.to_str().unwrap()],
        125,
    );
    assert!(
        err.contains("/x/init") && (err.contains("does not exist") || err.contains("no such file")),
        "{err}"
    );
}

#[test]
fn export_and_cp_of_running_and_stopped_containers() {
    let Some(d) = Daemon::start("cpx") else {
        return;
    };
    let dir = PathBuf::from(format!("/tmp/cpx-out-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    d.ok(&["run", "-d", "--name", "c1", "busybox", "sleep", "1000"]);
    d.ok(&[
        "exec",
        "c1",
        "sh",
        "-c",
        "echo added > /added && ln /added /added-link && rm /etc/group && ln -s / /x && sync",
    ]);
    assert_export(&d, "c1", &dir.join("running.tar"));
    assert_cp(&d, "c1", &dir.join("running"));
    d.ok(&["stop", "-t", "1", "c1"]);
    assert_export(&d, "c1", &dir.join("stopped.tar"));
    assert_cp(&d, "c1", &dir.join("stopped"));
    // The stopped container still starts and sees its files.
    d.ok(&["start", "c1"]);
    assert_eq!(d.ok(&["exec", "c1", "cat", "/added-link"]), "added\n");
    // Copying in through /x -> / lands in the container's own /tmp, not the VM's.
    let incoming = dir.join("incoming");
    std::fs::write(&incoming, "in\n").unwrap();
    d.ok(&["cp", incoming.to_str().unwrap(), "c1:/x/tmp/"]);
    assert_eq!(d.ok(&["exec", "c1", "cat", "/tmp/incoming"]), "in\n");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `cp` into a container that never ran and into one that has exited: the files land in its
/// writable layer (a maintenance VM mounts it writable), the container sees them once it
/// starts, and a path under one of its volumes, which are attached only while it runs, is
/// refused in one line with nothing written beneath the mount point.
#[test]
fn cp_into_stopped_containers_lands_in_their_layer() {
    let Some(d) = Daemon::start("cpin") else {
        return;
    };
    let dir = PathBuf::from(format!("/tmp/cpin-src-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("tree/sub")).unwrap();
    std::fs::write(dir.join("file"), "into a created container\n").unwrap();
    std::fs::write(dir.join("tree/sub/leaf"), "a leaf\n").unwrap();
    let file = dir.join("file");
    let tree = dir.join("tree");
    d.ok(&[
        "create",
        "--name",
        "fresh",
        "-v",
        "cpinvol:/data",
        "busybox",
        "sh",
        "-c",
        "cat /tmp/file /copied/sub/leaf; [ -e /data/x ] || echo nothing under the volume",
    ]);
    d.ok(&["cp", file.to_str().unwrap(), "fresh:/tmp/file"]);
    d.ok(&["cp", tree.to_str().unwrap(), "fresh:/copied"]);
    let err = d.fails(&["cp", file.to_str().unwrap(), "fresh:/data/x"], 125);
    assert!(
        err.contains("/data is on a volume of the container"),
        "{err}"
    );
    assert_eq!(
        d.ok(&["start", "-a", "fresh"]),
        "into a created container\na leaf\nnothing under the volume\n"
    );
    // Exited now: a second copy replaces the file, and a copy out reads it back.
    std::fs::write(&file, "into an exited container\n").unwrap();
    d.ok(&["cp", file.to_str().unwrap(), "fresh:/tmp/file"]);
    let back = dir.join("back");
    d.ok(&["cp", "fresh:/tmp/file", back.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(&back).unwrap(),
        "into an exited container\n"
    );
    assert_eq!(
        d.ok(&["start", "-a", "fresh"]),
        "into an exited container\na leaf\nnothing under the volume\n"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
