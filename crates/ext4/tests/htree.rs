//! Large directories become htrees that e2fsck accepts and that find every name.

mod common;

use common::*;

fn name(i: usize) -> String {
    match i % 4 {
        0 => format!("file-{i:05}"),
        1 => format!("caf\u{e9}-\u{fc}nicode-{i}"),
        2 => format!("{}-{i}", "long".repeat(40)),
        _ => format!("x{i}"),
    }
}

#[test]
fn twenty_thousand_entries() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    let n = 20_000;
    let mut layer = Layer::new().dir("big");
    for i in 0..n {
        layer.file_m(&format!("big/{}", name(i)), b"", DEF);
    }
    build(&img, &[layer.bytes()]).unwrap();
    fsck(&img);

    let s = stat(&img, "/big");
    assert_ne!(s.flags & 0x1000, 0, "big is not indexed:\n{}", s.text);
    let ls = ls_dirs(&img, &["/big".to_string()]);
    assert_eq!(ls["/big"].len(), n);
    for i in 0..n {
        assert!(ls["/big"].contains_key(&name(i)), "missing {}", name(i));
    }
    // htree_dump walks the index and checks each leaf's hashes.
    let dump = debugfs(&img, &["htree_dump /big".to_string()]);
    assert!(
        dump.contains("Indirect levels: 0") || dump.contains("Indirect levels: 1"),
        "{}",
        &dump[..dump.len().min(2000)]
    );
    // Lookups by name (debugfs resolves paths through the directory).
    let probes: Vec<String> = (0..n)
        .step_by(997)
        .map(|i| format!("stat \"/big/{}\"", name(i)))
        .collect();
    let out = debugfs(&img, &probes);
    assert_eq!(out.matches("Type: regular").count(), probes.len(), "{out}");
}

#[test]
fn two_level_htree() {
    // Enough long names for more than 508 leaves: the root points to index blocks.
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    let n = 60_000;
    let mut layer = Layer::new().dir("d");
    for i in 0..n {
        layer.file_m(&format!("d/{}-{i:06}", "n".repeat(40)), b"", DEF);
    }
    build(&img, &[layer.bytes()]).unwrap();
    fsck(&img);
    let dump = debugfs(&img, &["htree_dump /d".to_string()]);
    assert!(
        dump.contains("Indirect levels: 1"),
        "{}",
        &dump[..dump.len().min(2000)]
    );
}

#[test]
fn many_empty_files_without_headroom() {
    // 40,000 empty files need more inodes than one group holds, while their
    // data needs almost no blocks: the inode count drives the group count.
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    let mut layer = Layer::new();
    for i in 0..40_000 {
        layer.file_m(&format!("d{}/f{i}", i % 3), b"", DEF);
    }
    let options = ext4::Options {
        headroom_bytes: 0,
        headroom_percent: 0,
        ..test_options()
    };
    let mut b = ext4::Ext4Builder::new(&img, options).unwrap();
    b.apply_layer(&layer.bytes()[..]).unwrap();
    let s = b.finish().unwrap();
    assert_eq!(s.files, 40_000);
    fsck(&img);
    let ls = ls_dirs(&img, &["/d0".to_string(), "/d2".to_string()]);
    assert_eq!(ls["/d0"].len() + ls["/d2"].len(), 26_667);
}
