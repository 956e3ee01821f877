//! Multi-layer images read back with debugfs and checked by e2fsck.

mod common;

use common::*;
use tar::EntryType;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

const LONG_TARGET: &str = "../../some/where/far/away/in/a/directory/tree/that/is/deep/target-file";

fn layers() -> Vec<Vec<u8>> {
    let mut l1 = Layer::new()
        .dir("etc")
        .file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n");
    l1.file_m(
        "etc/shadow",
        b"root:*:1::::::\n",
        M {
            mode: 0o640,
            gid: 42,
            ..DEF
        },
    );
    l1.dir_m("usr", M { mode: 0o755, ..DEF });
    l1.dir_m("usr/bin", M { mode: 0o755, ..DEF });
    l1.file_m(
        "usr/bin/tool",
        &pattern(10_000, 1),
        M {
            mode: 0o4755,
            uid: 1000,
            gid: 1001,
            mtime: 1_500_000_000,
        },
    );
    let l1 = l1
        .hardlink("usr/bin/tool2", "usr/bin/tool")
        .file("usr/lib/libx.so.1", b"\x7fELF")
        .symlink("usr/lib/libx.so", "libx.so.1")
        .symlink("slow", LONG_TARGET)
        .fifo("run/fifo")
        .device("dev/null", EntryType::Char, 1, 3)
        .device("dev/sda", EntryType::Block, 8, 0)
        .device("dev/big", EntryType::Char, 300, 70_000)
        .pax(&[
            ("SCHILY.xattr.user.comment", b"hello"),
            (
                "SCHILY.xattr.security.capability",
                &[
                    1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                ],
            ),
            ("mtime", b"1600000000.123456789"),
        ])
        .file("xattr-small", b"x")
        .pax(&[("SCHILY.xattr.user.big", &[b'v'; 1000][..])])
        .file("xattr-big", b"y")
        .dir("opq")
        .file("opq/a", b"a")
        .file("opq/b", b"b")
        .dir("opq/sub")
        .file("opq/sub/c", b"c")
        .dir("gone")
        .file("gone/inner", &pattern(50_000, 2))
        .file("willbedir", b"file for now")
        .dir("willbefile")
        .file("willbefile/child", b"child");
    let l2 = Layer::new()
        .whiteout("", "gone")
        .whiteout("etc", "shadow")
        .dir("opq")
        .opaque("opq")
        .file("opq/new", b"new")
        .dir("willbedir")
        .file("willbedir/x", b"x")
        .file("willbefile", b"now a file")
        .file("usr/bin/tool", b"new tool")
        .file("same", b"same layer")
        .whiteout("", "same");
    let mut l2 = l2;
    l2.file_m(
        "etc/passwd",
        b"root:x:0:0::/root:/bin/bash\n",
        M { mode: 0o600, ..DEF },
    );
    let l3 = Layer::new().hardlink("hl", "usr/bin/tool2");
    vec![l1.bytes(), l2.bytes(), l3.bytes()]
}

#[test]
fn merged_tree_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    let summary = build(&img, &layers()).unwrap();
    fsck(&img);

    let dirs: Vec<String> = [
        "/",
        "/etc",
        "/usr",
        "/usr/bin",
        "/usr/lib",
        "/run",
        "/dev",
        "/opq",
        "/willbedir",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let ls = ls_dirs(&img, &dirs);
    let names = |d: &str| ls[d].keys().cloned().collect::<Vec<_>>().join(" ");
    assert_eq!(
        names("/"),
        "dev etc hl lost+found opq run same slow usr willbedir willbefile xattr-big xattr-small"
    );
    assert_eq!(names("/etc"), "passwd");
    assert_eq!(names("/usr/bin"), "tool tool2");
    assert_eq!(names("/usr/lib"), "libx.so libx.so.1");
    assert_eq!(names("/opq"), "new");
    assert_eq!(names("/willbedir"), "x");
    assert_eq!(names("/dev"), "big null sda");
    assert_eq!(names("/run"), "fifo");

    // Types, modes and ownership.
    assert_eq!(ls["/etc"]["passwd"].mode, 0o100600);
    assert_eq!(ls["/usr/bin"]["tool2"].mode, 0o104755);
    assert_eq!(
        (ls["/usr/bin"]["tool2"].uid, ls["/usr/bin"]["tool2"].gid),
        (1000, 1001)
    );
    assert_eq!(ls["/usr/bin"]["tool"].mode, 0o100644);
    assert_eq!(ls["/"]["willbefile"].mode & 0o170000, 0o100000);
    assert_eq!(ls["/"]["willbedir"].mode & 0o170000, 0o040000);
    assert_eq!(ls["/usr/lib"]["libx.so"].mode, 0o120777);
    assert_eq!(ls["/run"]["fifo"].mode, 0o010644);
    assert_eq!(ls["/dev"]["null"].mode, 0o020660);
    assert_eq!(ls["/dev"]["sda"].mode, 0o060660);

    // Hard links: tool2 and hl share the inode holding the first layer's tool.
    let tool2 = ls["/usr/bin"]["tool2"].ino;
    assert_eq!(ls["/"]["hl"].ino, tool2);
    assert_ne!(ls["/usr/bin"]["tool"].ino, tool2);
    assert_eq!(stat(&img, "/hl").links, 2);
    assert_eq!(stat(&img, "/usr/bin/tool").links, 1);

    // Contents.
    let (_keep, root) = rdump(&img);
    let read = |p: &str| std::fs::read(root.join(p)).unwrap();
    assert_eq!(read("hl"), pattern(10_000, 1));
    assert_eq!(read("usr/bin/tool"), b"new tool");
    assert_eq!(read("etc/passwd"), b"root:x:0:0::/root:/bin/bash\n");
    assert_eq!(read("willbefile"), b"now a file");
    assert_eq!(read("same"), b"same layer");
    assert_eq!(read("opq/new"), b"new");
    let link = |p: &str| std::fs::read_link(root.join(p)).unwrap();
    assert_eq!(link("usr/lib/libx.so").to_str().unwrap(), "libx.so.1");
    assert_eq!(link("slow").to_str().unwrap(), LONG_TARGET);
    assert!(
        stat(&img, "/usr/lib/libx.so")
            .text
            .contains("Fast link dest: \"libx.so.1\"")
    );
    assert!(stat(&img, "/slow").text.contains("EXTENTS"));

    // Devices (old and new encodings).
    assert!(
        stat(&img, "/dev/null")
            .text
            .contains("Device major/minor number: 01:03")
    );
    assert!(
        stat(&img, "/dev/sda")
            .text
            .contains("Device major/minor number: 08:00")
    );
    assert!(
        stat(&img, "/dev/big")
            .text
            .contains("Device major/minor number: 300:70000"),
        "{}",
        stat(&img, "/dev/big").text
    );

    // Times: nanoseconds from PAX, seconds from the header.
    let s = stat(&img, "/xattr-small");
    assert_eq!(s.mtime, 1_600_000_000);
    assert_eq!(s.mtime_extra >> 2, 123_456_789);
    assert_eq!(stat(&img, "/hl").mtime, 1_500_000_000);

    // Extended attributes, in the inode and in an external block.
    let ea = debugfs(
        &img,
        &["ea_list /xattr-small".into(), "ea_list /xattr-big".into()],
    );
    assert!(ea.contains("user.comment (5) = \"hello\""), "{ea}");
    assert!(ea.contains("security.capability (20)"), "{ea}");
    assert!(ea.contains("user.big (1000)"), "{ea}");
    assert!(!stat(&img, "/xattr-big").text.contains("File ACL: 0"));

    assert_eq!(summary.files, 10, "{summary:?}");
    assert_eq!(summary.symlinks, 2);
    assert_eq!(summary.specials, 4);
}

#[test]
fn whiteout_data_is_punched_out() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    let big = pattern(8 << 20, 9);
    let l1 = Layer::new().file("big", &big).bytes();
    let l2 = Layer::new().whiteout("", "big").bytes();
    build(&img, &[l1, l2]).unwrap();
    fsck(&img);
    use std::os::unix::fs::MetadataExt;
    let allocated = std::fs::metadata(&img).unwrap().blocks() * 512;
    assert!(allocated < 2 << 20, "image still holds {allocated} bytes");
}

#[test]
fn zero_blocks_stay_holes() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    let mut zeros = vec![0u8; 32 << 20];
    zeros[5 << 20] = 1; // one non-zero block in the middle
    build(&img, &[Layer::new().file("lastlog", &zeros).bytes()]).unwrap();
    fsck(&img);
    use std::os::unix::fs::MetadataExt;
    let allocated = std::fs::metadata(&img).unwrap().blocks() * 512;
    assert!(allocated < 2 << 20, "image allocates {allocated} bytes");
    let (_keep, root) = rdump(&img);
    assert_eq!(std::fs::read(root.join("lastlog")).unwrap(), zeros);
}

#[test]
fn same_input_same_image() {
    let dir = tempfile::tempdir().unwrap();
    let options = ext4::Options {
        uuid: Some(*b"0123456789abcdef"),
        ..test_options()
    };
    let mut images = Vec::new();
    for name in ["a", "b"] {
        let img = dir.path().join(name);
        let mut b = ext4::Ext4Builder::new(&img, options.clone()).unwrap();
        for l in layers() {
            b.apply_layer(&l[..]).unwrap();
        }
        b.finish().unwrap();
        images.push(std::fs::read(&img).unwrap());
    }
    assert!(images[0] == images[1], "images differ");
}

#[test]
fn layer_stream_is_read_to_the_end() {
    // A caller hashing the decompressed stream must see every byte, including
    // the padding after the end-of-archive marker.
    struct Counting<'a>(&'a [u8], usize);
    impl std::io::Read for Counting<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(self.0.len() - self.1);
            buf[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
            self.1 += n;
            Ok(n)
        }
    }
    let mut bytes = Layer::new().file("f", b"x").bytes();
    bytes.extend_from_slice(&[0u8; 10240]);
    let dir = tempfile::tempdir().unwrap();
    let mut b = ext4::Ext4Builder::new(dir.path().join("img"), test_options()).unwrap();
    let mut r = Counting(&bytes, 0);
    b.apply_layer(&mut r).unwrap();
    assert_eq!(r.1, bytes.len());
    b.finish().unwrap();
}

#[test]
fn builder_can_move_to_a_blocking_thread() {
    fn assert_send<T: Send + 'static>() {}
    assert_send::<ext4::Ext4Builder>();
    assert_send::<ext4::Error>();
}
