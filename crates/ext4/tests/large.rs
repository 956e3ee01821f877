//! Files big enough to need several extents and an extent leaf block, streamed
//! without holding them in memory; journals that need an extent tree too.

mod common;

use std::io::Read;

use common::*;

/// A one-file tar layer generated on the fly: `size` bytes of a pattern.
fn big_file_layer(name: &str, size: u64) -> impl Read {
    let mut h = tar::Header::new_gnu();
    h.set_path(name).unwrap();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    let pad = (512 - size % 512) % 512;
    let body = PatternReader { pos: 0, left: size };
    std::io::Cursor::new(h.as_bytes().to_vec())
        .chain(body)
        .chain(std::io::repeat(0).take(pad + 1024))
}

/// Yields byte `offset % 256` at every offset.
struct PatternReader {
    pos: u64,
    left: u64,
}

impl Read for PatternReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.left) as usize;
        for (i, b) in buf[..n].iter_mut().enumerate() {
            *b = (self.pos as usize + i) as u8;
        }
        self.pos += n as u64;
        self.left -= n as u64;
        Ok(n)
    }
}

#[test]
fn file_with_extent_leaf() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    // 5 extents of at most 128 MiB, and one more around group 1's backup superblock.
    let size = (4 << 27) + (3 << 20) + 17;
    let mut b = ext4::Ext4Builder::new(&img, test_options()).unwrap();
    b.apply_layer(Layer::new().file("small-first", b"x").bytes().as_slice())
        .unwrap();
    b.apply_layer(big_file_layer("big", size)).unwrap();
    let s = b.finish().unwrap();
    assert_eq!(s.bytes, size + 1);
    fsck(&img);
    let st = stat(&img, "/big");
    assert!(st.text.contains(&format!("Size: {size}")), "{}", st.text);
    // Depth-1 tree: debugfs lists the index node, then the leaf extents.
    assert!(st.text.contains("(ETB0)"), "{}", st.text);
    // Spot-check the content at a few offsets, including across extents.
    let out = dir.path().join("big.out");
    debugfs(&img, &[format!("dump /big {}", out.display())]);
    let mut f = std::fs::File::open(&out).unwrap();
    use std::io::{Seek, SeekFrom};
    for off in [
        0u64,
        4095,
        4096,
        (1 << 27) - 1,
        1 << 27,
        (4 << 27) + 5,
        size - 1,
    ] {
        f.seek(SeekFrom::Start(off)).unwrap();
        let mut byte = [0u8];
        f.read_exact(&mut byte).unwrap();
        assert_eq!(byte[0], (off % 256) as u8, "byte at {off}");
    }
    assert_eq!(std::fs::metadata(&out).unwrap().len(), size);
}

#[test]
fn journal_with_extent_leaf() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    let options = ext4::Options {
        journal_blocks: Some(262_144),
        ..test_options()
    };
    ext4::format_empty(&img, 4 << 30, &options).unwrap();
    fsck(&img);
    let info = std::process::Command::new("dumpe2fs")
        .arg("-h")
        .arg(&img)
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(info.contains("Total journal blocks:     262144"), "{info}");
}
