//! Random layer stacks → ext4 → read back (debugfs) equals a model of the
//! merged tree. The model is a flat map from paths to inodes, deliberately
//! unlike the writer's tree, and it predicts refusals as well.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    File(Vec<String>, u8, u32),
    Dir(Vec<String>, u32),
    Symlink(Vec<String>, bool),
    HardLink(Vec<String>, Vec<String>),
    Fifo(Vec<String>),
    Whiteout(Vec<String>),
    Opaque(Vec<String>),
}

fn path() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(prop::sample::select(vec!["a", "b", "c"]), 1..=3)
        .prop_map(|v| v.into_iter().map(String::from).collect())
}

fn op() -> impl Strategy<Value = Op> {
    let mode = prop::sample::select(vec![0o644u32, 0o600, 0o755, 0o4711]);
    prop_oneof![
        5 => (path(), 0u8..4, mode.clone()).prop_map(|(p, c, m)| Op::File(p, c, m)),
        3 => (path(), mode).prop_map(|(p, m)| Op::Dir(p, m)),
        1 => (path(), any::<bool>()).prop_map(|(p, slow)| Op::Symlink(p, slow)),
        2 => (path(), path()).prop_map(|(p, t)| Op::HardLink(p, t)),
        1 => path().prop_map(Op::Fifo),
        2 => path().prop_map(Op::Whiteout),
        1 => prop::collection::vec(prop::sample::select(vec!["a", "b"]), 0..=2)
            .prop_map(|v| Op::Opaque(v.into_iter().map(String::from).collect())),
    ]
}

fn content(c: u8) -> Vec<u8> {
    match c {
        0 => Vec::new(),
        1 => b"small".to_vec(),
        2 => (0..9000u32).map(|i| (i % 251) as u8).collect(),
        _ => (0..70_000u32).map(|i| (i % 253) as u8 ^ 0x5a).collect(),
    }
}

fn target(slow: bool) -> String {
    if slow {
        format!("/{}", "long/".repeat(20))
    } else {
        "short/target".into()
    }
}

#[derive(Debug, Clone, PartialEq)]
enum MKind {
    Dir(u32),
    File(Vec<u8>, u32),
    Symlink(String),
    Fifo,
}

#[derive(Debug, Clone, Copy)]
struct MEntry {
    ino: usize,
    stamp: usize,
}

#[derive(Default)]
struct Model {
    paths: BTreeMap<Vec<String>, MEntry>,
    inodes: Vec<MKind>,
}

#[derive(Debug, PartialEq)]
enum Refusal {
    ThroughSymlink,
    NotADirectory,
    BadHardLink,
}

impl Model {
    fn kind(&self, p: &[String]) -> Option<&MKind> {
        self.paths.get(p).map(|e| &self.inodes[e.ino])
    }

    fn remove_tree(&mut self, p: &[String]) {
        self.paths.retain(|k, _| !k.starts_with(p));
    }

    fn insert(&mut self, p: &[String], kind: MKind, stamp: usize) {
        self.remove_tree(p);
        self.inodes.push(kind);
        self.paths.insert(
            p.to_vec(),
            MEntry {
                ino: self.inodes.len() - 1,
                stamp,
            },
        );
    }

    /// Checks (and with `create`, makes and stamps) the directories above `p`.
    fn parents(&mut self, p: &[String], create: bool, stamp: usize) -> Result<bool, Refusal> {
        for i in 1..p.len() {
            let pre = &p[..i];
            match self.kind(pre) {
                Some(MKind::Dir(_)) => {
                    if create {
                        self.paths.get_mut(pre).unwrap().stamp = stamp;
                    }
                }
                Some(MKind::Symlink(_)) => return Err(Refusal::ThroughSymlink),
                Some(_) => return Err(Refusal::NotADirectory),
                None if create => {
                    self.inodes.push(MKind::Dir(0o755));
                    self.paths.insert(
                        pre.to_vec(),
                        MEntry {
                            ino: self.inodes.len() - 1,
                            stamp,
                        },
                    );
                }
                None => return Ok(false),
            }
        }
        Ok(true)
    }

    fn apply(&mut self, op: &Op, layer: usize) -> Result<(), Refusal> {
        match op {
            Op::File(p, c, m) => {
                self.parents(p, true, layer)?;
                self.insert(p, MKind::File(content(*c), *m), layer);
            }
            Op::Dir(p, m) => {
                self.parents(p, true, layer)?;
                if let Some(MKind::Dir(_)) = self.kind(p) {
                    let e = *self.paths.get(p).unwrap();
                    self.inodes[e.ino] = MKind::Dir(*m);
                    self.paths.get_mut(p).unwrap().stamp = layer;
                } else {
                    self.insert(p, MKind::Dir(*m), layer);
                }
            }
            Op::Symlink(p, slow) => {
                self.parents(p, true, layer)?;
                self.insert(p, MKind::Symlink(target(*slow)), layer);
            }
            Op::Fifo(p) => {
                self.parents(p, true, layer)?;
                self.insert(p, MKind::Fifo, layer);
            }
            Op::HardLink(p, t) => {
                if p == t {
                    return Err(Refusal::BadHardLink);
                }
                if !self.parents(t, false, layer)? {
                    return Err(Refusal::BadHardLink);
                }
                let ino = match self.paths.get(t) {
                    Some(e) if !matches!(self.inodes[e.ino], MKind::Dir(_)) => e.ino,
                    _ => return Err(Refusal::BadHardLink),
                };
                self.parents(p, true, layer)?;
                self.remove_tree(p);
                self.paths.insert(p.clone(), MEntry { ino, stamp: layer });
            }
            Op::Whiteout(p) => {
                if self.parents(p, false, layer)?
                    && self.paths.get(p).is_some_and(|e| e.stamp < layer)
                {
                    self.remove_tree(p);
                }
            }
            Op::Opaque(d) => {
                // The marker's directory is walked (and made) like any parent.
                let mut marker = d.clone();
                marker.push(".wh..wh..opq".into());
                self.parents(&marker, true, layer)?;
                let lower: Vec<Vec<String>> = self
                    .paths
                    .iter()
                    .filter(|(k, e)| k.len() > d.len() && k.starts_with(d) && e.stamp < layer)
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in lower {
                    self.remove_tree(&k);
                }
            }
        }
        Ok(())
    }
}

fn tar_layer(ops: &[Op]) -> Vec<u8> {
    let mut l = Layer::new();
    let j = |p: &[String]| p.join("/");
    for op in ops {
        l = match op {
            Op::File(p, c, m) => {
                l.file_m(&j(p), &content(*c), M { mode: *m, ..DEF });
                l
            }
            Op::Dir(p, m) => {
                l.dir_m(&j(p), M { mode: *m, ..DEF });
                l
            }
            Op::Symlink(p, slow) => l.symlink(&j(p), &target(*slow)),
            Op::HardLink(p, t) => l.hardlink(&j(p), &j(t)),
            Op::Fifo(p) => l.fifo(&j(p)),
            Op::Whiteout(p) => l.whiteout(&j(&p[..p.len() - 1]), &p[p.len() - 1]),
            Op::Opaque(d) => l.file(
                &format!(
                    "{}.wh..wh..opq",
                    d.iter().map(|c| format!("{c}/")).collect::<String>()
                ),
                b"",
            ),
        };
    }
    l.bytes()
}

/// Every path in the image (but lost+found) with its `ls -p` entry.
fn list_image(img: &std::path::Path) -> BTreeMap<String, LsEntry> {
    let mut all = BTreeMap::new();
    let mut todo = vec!["/".to_string()];
    while !todo.is_empty() {
        let listed = ls_dirs(img, &todo);
        todo.clear();
        for (dir, entries) in listed {
            for (name, e) in entries {
                if dir == "/" && name == "lost+found" {
                    continue;
                }
                let p = if dir == "/" {
                    format!("/{name}")
                } else {
                    format!("{dir}/{name}")
                };
                if e.mode & 0o170000 == 0o040000 {
                    todo.push(p.clone());
                }
                all.insert(p, e);
            }
        }
    }
    all
}

/// Turns a generated op into the entries a layer would carry. With `repair`,
/// files or symlinks in the way of a path are first replaced by directories
/// and hard links pick an existing file (entry `pick` of them); without it
/// the op goes in as generated and may be refused.
fn concretize(model: &Model, op: &Op, repair: bool, pick: usize) -> Vec<Op> {
    let mut out = Vec::new();
    if !repair {
        out.push(op.clone());
        return out;
    }
    let path = match op {
        Op::File(p, ..)
        | Op::Dir(p, _)
        | Op::Symlink(p, _)
        | Op::HardLink(p, _)
        | Op::Fifo(p)
        | Op::Whiteout(p) => p.clone(),
        Op::Opaque(d) => {
            let mut m = d.clone();
            m.push(String::new());
            m
        }
    };
    for i in 1..path.len() {
        match model.kind(&path[..i]) {
            Some(MKind::Dir(_)) | None => {}
            Some(_) => {
                out.push(Op::Dir(path[..i].to_vec(), 0o755));
                break; // everything below is gone now
            }
        }
    }
    if let Op::HardLink(p, t) = op {
        let files: Vec<&Vec<String>> = model
            .paths
            .iter()
            .filter(|(k, e)| {
                !matches!(model.inodes[e.ino], MKind::Dir(_))
                    && *k != p
                    && !k.starts_with(p)
                    && !out
                        .iter()
                        .any(|o| matches!(o, Op::Dir(d, _) if k.starts_with(d)))
            })
            .map(|(k, _)| k)
            .collect();
        // Nothing to link to yet: the op is dropped (unrepaired ops cover refusals).
        let _ = t;
        if !files.is_empty() {
            out.push(Op::HardLink(p.clone(), files[pick % files.len()].clone()));
        }
    } else {
        out.push(op.clone());
    }
    out
}

fn check(layers: &[Vec<(Op, bool, usize)>]) -> Result<(), TestCaseError> {
    let mut model = Model::default();
    let mut refusal = None;
    let mut concrete: Vec<Vec<Op>> = Vec::new();
    'outer: for (i, ops) in layers.iter().enumerate() {
        concrete.push(Vec::new());
        for (op, repair, pick) in ops {
            for c in concretize(&model, op, *repair, *pick) {
                concrete[i].push(c.clone());
                if let Err(r) = model.apply(&c, i + 1) {
                    refusal = Some(r);
                    break 'outer;
                }
            }
        }
    }
    let layers = concrete;
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    let tars: Vec<Vec<u8>> = layers.iter().map(|ops| tar_layer(ops)).collect();
    let result = build(&img, &tars);
    if let Some(r) = refusal {
        let e = result.expect_err("model refuses, writer accepted");
        let got = match e {
            ext4::Error::ThroughSymlink { .. } => Refusal::ThroughSymlink,
            ext4::Error::NotADirectory { .. } => Refusal::NotADirectory,
            ext4::Error::BadHardLink { .. } => Refusal::BadHardLink,
            other => panic!("unexpected error {other}"),
        };
        prop_assert_eq!(got, r);
        prop_assert!(!img.exists());
        return Ok(());
    }
    result.unwrap();
    fsck(&img);

    let listed = list_image(&img);
    let key = |p: &Vec<String>| format!("/{}", p.join("/"));
    let want: BTreeSet<String> = model.paths.keys().map(key).collect();
    let got: BTreeSet<String> = listed.keys().cloned().collect();
    prop_assert_eq!(&got, &want);

    let (_keep, root) = rdump(&img);
    let mut ino_of_model: BTreeMap<usize, u32> = BTreeMap::new();
    let mut links: BTreeMap<usize, u32> = BTreeMap::new();
    for (p, e) in &model.paths {
        *links.entry(e.ino).or_default() += 1;
        let l = &listed[&key(p)];
        match &model.inodes[e.ino] {
            MKind::Dir(m) => prop_assert_eq!(l.mode, 0o040000 | m, "{:?}", p),
            MKind::File(c, m) => {
                prop_assert_eq!(l.mode, 0o100000 | m, "{:?}", p);
                let data = std::fs::read(root.join(p.join("/"))).unwrap();
                prop_assert!(data == *c, "content of {:?}", p);
            }
            MKind::Symlink(t) => {
                prop_assert_eq!(l.mode & 0o170000, 0o120000);
                let got = std::fs::read_link(root.join(p.join("/"))).unwrap();
                prop_assert_eq!(got.to_str().unwrap(), t.as_str());
            }
            MKind::Fifo => prop_assert_eq!(l.mode & 0o170000, 0o010000),
        }
        // Paths sharing a model inode share an image inode, and only they do.
        let prev = *ino_of_model.entry(e.ino).or_insert(l.ino);
        prop_assert_eq!(prev, l.ino, "{:?} should be a hard link", p);
    }
    let distinct: BTreeSet<u32> = ino_of_model.values().copied().collect();
    prop_assert_eq!(distinct.len(), ino_of_model.len());
    // Link counts of multiply linked non-directories.
    for (ino, n) in links {
        if n > 1 {
            let p = model.paths.iter().find(|(_, e)| e.ino == ino).unwrap().0;
            prop_assert_eq!(stat(&img, &key(p)).links, n);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_layer_stacks(
        layers in prop::collection::vec(
            prop::collection::vec((op(), prop::bool::weighted(0.95), any::<usize>()), 1..12),
            1..4,
        )
    ) {
        check(&layers)?;
    }
}
