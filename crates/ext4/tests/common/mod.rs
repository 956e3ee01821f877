//! Test helpers: build tar layers in memory, and inspect images with the real
//! e2fsprogs tools (e2fsck, debugfs).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use tar::{EntryType, Header};

/// Ownership, permissions and time of a tar entry.
#[derive(Clone, Copy, Debug)]
pub struct M {
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
}

pub const DEF: M = M {
    mode: 0o644,
    uid: 0,
    gid: 0,
    mtime: 1_600_000_000,
};

/// An OCI layer under construction.
pub struct Layer {
    b: tar::Builder<Vec<u8>>,
}

impl Default for Layer {
    fn default() -> Self {
        Self::new()
    }
}

impl Layer {
    pub fn new() -> Self {
        Layer {
            b: tar::Builder::new(Vec::new()),
        }
    }

    fn header(kind: EntryType, m: M, size: u64) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(m.mode);
        h.set_uid(m.uid);
        h.set_gid(m.gid);
        h.set_mtime(m.mtime);
        h.set_size(size);
        h
    }

    pub fn file(mut self, path: &str, data: &[u8]) -> Self {
        self.file_m(path, data, DEF);
        self
    }

    pub fn file_m(&mut self, path: &str, data: &[u8], m: M) {
        let mut h = Self::header(EntryType::Regular, m, data.len() as u64);
        self.b.append_data(&mut h, path, data).unwrap();
    }

    pub fn dir(mut self, path: &str) -> Self {
        self.dir_m(path, M { mode: 0o755, ..DEF });
        self
    }

    pub fn dir_m(&mut self, path: &str, m: M) {
        let mut h = Self::header(EntryType::Directory, m, 0);
        self.b.append_data(&mut h, path, &[][..]).unwrap();
    }

    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        let mut h = Self::header(EntryType::Symlink, M { mode: 0o777, ..DEF }, 0);
        self.b.append_link(&mut h, path, target).unwrap();
        self
    }

    pub fn hardlink(mut self, path: &str, target: &str) -> Self {
        let mut h = Self::header(EntryType::Link, DEF, 0);
        self.b.append_link(&mut h, path, target).unwrap();
        self
    }

    pub fn fifo(mut self, path: &str) -> Self {
        let mut h = Self::header(EntryType::Fifo, DEF, 0);
        self.b.append_data(&mut h, path, &[][..]).unwrap();
        self
    }

    pub fn device(mut self, path: &str, kind: EntryType, major: u32, minor: u32) -> Self {
        let mut h = Self::header(kind, M { mode: 0o660, ..DEF }, 0);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.b.append_data(&mut h, path, &[][..]).unwrap();
        self
    }

    /// A PAX extended header applying to the next entry.
    pub fn pax(mut self, records: &[(&str, &[u8])]) -> Self {
        self.b
            .append_pax_extensions(records.iter().map(|(k, v)| (*k, *v)))
            .unwrap();
        self
    }

    pub fn whiteout(self, dir: &str, name: &str) -> Self {
        let path = if dir.is_empty() {
            format!(".wh.{name}")
        } else {
            format!("{dir}/.wh.{name}")
        };
        self.file(&path, b"")
    }

    pub fn opaque(self, dir: &str) -> Self {
        self.file(&format!("{dir}/.wh..wh..opq"), b"")
    }

    /// An entry written byte for byte, bypassing the tar crate's path checks.
    pub fn raw(mut self, kind: EntryType, path: &[u8], link: &[u8], data: &[u8]) -> Self {
        let mut h = Self::header(kind, DEF, data.len() as u64);
        let old = h.as_old_mut();
        old.name = [0; 100];
        old.name[..path.len()].copy_from_slice(path);
        old.linkname = [0; 100];
        old.linkname[..link.len()].copy_from_slice(link);
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }

    pub fn bytes(self) -> Vec<u8> {
        self.b.into_inner().unwrap()
    }
}

/// Runs `e2fsck -fn` and panics with its output unless it is clean.
pub fn fsck(img: &Path) {
    let out = Command::new("e2fsck").arg("-fn").arg(img).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "e2fsck -fn {} failed ({}):\n{text}",
        img.display(),
        out.status
    );
}

/// Runs debugfs commands (one per line) and returns stdout.
pub fn debugfs(img: &Path, cmds: &[String]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("cmds");
    std::fs::write(&script, cmds.join("\n") + "\n").unwrap();
    let out = Command::new("debugfs")
        .arg("-f")
        .arg(&script)
        .arg(img)
        .output()
        .unwrap();
    assert!(out.status.success(), "debugfs failed: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One directory entry as `debugfs ls -p` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LsEntry {
    pub ino: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: String,
}

/// `ls -p` of each directory, parsed; keys are directory paths.
pub fn ls_dirs(img: &Path, dirs: &[String]) -> BTreeMap<String, BTreeMap<String, LsEntry>> {
    let cmds: Vec<String> = dirs.iter().map(|d| format!("ls -p \"{d}\"")).collect();
    let out = debugfs(img, &cmds);
    let mut result = BTreeMap::new();
    let mut it = dirs.iter();
    let mut cur: Option<BTreeMap<String, LsEntry>> = None;
    let mut cur_name = String::new();
    for line in out.lines() {
        if line.starts_with("debugfs:") {
            if let Some(m) = cur.take() {
                result.insert(cur_name.clone(), m);
            }
            cur_name = it.next().cloned().unwrap_or_default();
            cur = Some(BTreeMap::new());
            continue;
        }
        // /ino/mode/uid/gid/name/size/
        let f: Vec<&str> = line.split('/').collect();
        if f.len() < 7 {
            continue;
        }
        let name = f[5..f.len() - 2].join("/");
        if name == "." || name == ".." {
            continue;
        }
        if let Some(m) = cur.as_mut() {
            m.insert(
                name,
                LsEntry {
                    ino: f[1].parse().unwrap(),
                    mode: u32::from_str_radix(f[2], 8).unwrap(),
                    uid: f[3].parse().unwrap(),
                    gid: f[4].parse().unwrap(),
                    size: f[f.len() - 2].to_string(),
                },
            );
        }
    }
    if let Some(m) = cur.take() {
        result.insert(cur_name, m);
    }
    result
}

/// Fields of `debugfs stat PATH` the tests look at.
#[derive(Debug, Default)]
pub struct Stat {
    pub ino: u32,
    pub links: u32,
    pub mtime: u32,
    pub mtime_extra: u32,
    pub flags: u32,
    pub text: String,
}

pub fn stat(img: &Path, path: &str) -> Stat {
    let text = debugfs(img, &[format!("stat \"{path}\"")]);
    let mut s = Stat {
        text: text.clone(),
        ..Default::default()
    };
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        for w in words.windows(2) {
            match w[0] {
                "Inode:" => s.ino = w[1].parse().unwrap_or(0),
                "Links:" => s.links = w[1].parse().unwrap_or(0),
                "Flags:" => {
                    s.flags = u32::from_str_radix(w[1].trim_start_matches("0x"), 16).unwrap_or(0)
                }
                "mtime:" => {
                    let (a, b) = w[1].split_once(':').unwrap();
                    s.mtime = u32::from_str_radix(a.trim_start_matches("0x"), 16).unwrap();
                    s.mtime_extra = u32::from_str_radix(b, 16).unwrap();
                }
                _ => {}
            }
        }
    }
    s
}

/// Dumps the whole image to a fresh directory with `debugfs rdump`.
pub fn rdump(img: &Path) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("root");
    std::fs::create_dir(&out).unwrap();
    debugfs(img, &[format!("rdump / {}", out.display())]);
    (dir, out)
}

/// Builds an image from layers with default options.
pub fn build(img: &Path, layers: &[Vec<u8>]) -> Result<ext4::Summary, ext4::Error> {
    let mut b = ext4::Ext4Builder::new(img, test_options())?;
    for l in layers {
        b.apply_layer(&l[..])?;
    }
    b.finish()
}

pub fn test_options() -> ext4::Options {
    ext4::Options {
        headroom_bytes: 8 << 20,
        timestamp: Some(1_700_000_000),
        ..Default::default()
    }
}
