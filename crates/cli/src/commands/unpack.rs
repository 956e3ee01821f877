//! Unpacks a tar that came out of a container onto the host, where the guest (the untrusted
//! side of the VM boundary) chose every byte of it.
//!
//! The rules are those the ext4 layer writer enforces for image layers: no `..` or absolute
//! names, no path through a symlink (one from the archive or one already on disk under the
//! destination), hard links only to an earlier non-directory entry of the same archive.
//! Symlinks are created as data and never followed. Every path is resolved one component at
//! a time with `openat(O_NOFOLLOW | O_DIRECTORY)` from a descriptor of the destination, so
//! nothing is written outside it whatever the archive or the disk hold. Device nodes and
//! fifos are skipped with a warning: a copy is data, and a device node from a guest on the
//! host is a hole.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{Mode, fchmod, fstatat, futimens, mkdirat};
use nix::sys::time::TimeSpec;
use nix::unistd::{UnlinkatFlags, linkat, symlinkat, unlinkat};

/// Why an archive could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The archive asked for something that would leave the destination or is malformed.
    #[error("refusing archive entry {entry}: {why}")]
    Refused { entry: String, why: String },
    /// The archive could not be read.
    #[error("reading the archive: {0}")]
    Read(#[source] std::io::Error),
    /// Writing an entry failed.
    #[error("unpacking {entry}: {source}")]
    Write {
        entry: String,
        #[source]
        source: std::io::Error,
    },
}

/// What was unpacked.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Unpacked {
    /// Entries written (directories, files, symlinks, hard links).
    pub entries: u64,
    /// Device nodes and fifos left out.
    pub skipped: Vec<String>,
}

/// Unpacks `reader` into the directory `dir`, renaming the first path component of every
/// entry (and of every hard link's target) to `name`, or dropping it (`None`: the content
/// lands in `dir` itself, as a copy of a container's `/` does). All entries must share one
/// first component, as the guest's archive of one path does.
pub fn unpack_renamed(
    reader: impl Read,
    dir: &Path,
    name: Option<&str>,
) -> Result<Unpacked, UnpackError> {
    unpack(reader, dir, name, false)
}

/// Unpacks `reader` (a whole tree: names relative to its root, such as an image's file
/// system from `build -o type=local`) into the directory `dir`, under the same rules.
pub fn unpack_tree(reader: impl Read, dir: &Path) -> Result<Unpacked, UnpackError> {
    unpack(reader, dir, None, true)
}

/// `whole`: every entry's name is kept whole (no shared first component to rename).
fn unpack(
    reader: impl Read,
    dir: &Path,
    name: Option<&str>,
    whole: bool,
) -> Result<Unpacked, UnpackError> {
    if let Some(n) = name
        && (n.is_empty() || n == "." || n == ".." || n.contains('/'))
    {
        return Err(UnpackError::Refused {
            entry: n.to_owned(),
            why: "not a plain file name".into(),
        });
    }
    let write = |entry: &str| {
        let entry = entry.to_owned();
        move |e: Errno| UnpackError::Write {
            entry,
            source: std::io::Error::from(e),
        }
    };
    let root = openat(
        nix::fcntl::AT_FDCWD,
        dir,
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(write(&dir.display().to_string()))?;
    let name = name.map(OsString::from);
    let mut archive = tar::Archive::new(reader);
    let mut first: Option<OsString> = None;
    // Non-directories written so far (as destination-relative paths): hard-link targets.
    let mut files: HashSet<Vec<OsString>> = HashSet::new();
    // Directory modes and times are set last, so a read-only directory can still be filled.
    let mut dirs: Vec<(Vec<OsString>, u32, i64)> = Vec::new();
    let mut out = Unpacked::default();
    for entry in archive.entries().map_err(UnpackError::Read)? {
        let mut entry = entry.map_err(UnpackError::Read)?;
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let refuse = |why: &str| UnpackError::Refused {
            entry: shown.clone(),
            why: why.to_owned(),
        };
        let Some(rel) = relative(&raw, &mut first, name.as_deref(), whole).map_err(&refuse)? else {
            continue;
        };
        if rel.is_empty() {
            continue; // the copied directory itself, merged into `dir`
        }
        let kind = entry.header().entry_type();
        let mode = entry.header().mode().unwrap_or(0o644) & 0o7777;
        let mtime = entry.header().mtime().unwrap_or(0) as i64;
        let (leaf, parents) = rel.split_last().ok_or_else(|| refuse("empty name"))?;
        use tar::EntryType as T;
        if matches!(kind, T::Char | T::Block | T::Fifo) {
            out.skipped.push(shown);
            continue;
        }
        if !matches!(
            kind,
            T::Directory | T::Regular | T::Continuous | T::Symlink | T::Link
        ) {
            continue; // pax and GNU bookkeeping the reader already applied
        }
        let parent = walk(&root, parents, true).map_err(|e| match e {
            Walk::Through(p) => refuse(&format!("{} is a symlink or not a directory", show(&p))),
            Walk::Io(e) => write(&shown)(e),
        })?;
        match kind {
            T::Directory => {
                match mkdirat(&parent, leaf.as_os_str(), Mode::from_bits_truncate(0o700)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(write(&shown)(e)),
                }
                let st = fstatat(&parent, leaf.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map_err(write(&shown))?;
                if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
                    return Err(refuse("a directory would replace a file or symlink"));
                }
                dirs.push((rel.clone(), mode, mtime));
                files.remove(&rel);
            }
            T::Regular | T::Continuous => {
                remove_non_dir(&parent, leaf).map_err(|e| match e {
                    Errno::EISDIR | Errno::EPERM => refuse("a file would replace a directory"),
                    e => write(&shown)(e),
                })?;
                let fd = openat(
                    &parent,
                    leaf.as_os_str(),
                    OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_WRONLY
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(write(&shown))?;
                let mut file = std::fs::File::from(fd);
                std::io::copy(&mut entry, &mut file).map_err(|source| UnpackError::Write {
                    entry: shown.clone(),
                    source,
                })?;
                fchmod(file.as_fd(), Mode::from_bits_truncate(mode as _)).map_err(write(&shown))?;
                let t = TimeSpec::new(mtime, 0);
                futimens(file.as_fd(), &t, &t).map_err(write(&shown))?;
                files.insert(rel);
            }
            T::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| refuse("symlink without a target"))?
                    .into_owned();
                remove_non_dir(&parent, leaf).map_err(|e| match e {
                    Errno::EISDIR | Errno::EPERM => refuse("a symlink would replace a directory"),
                    e => write(&shown)(e),
                })?;
                symlinkat(OsStr::from_bytes(&target), &parent, leaf.as_os_str())
                    .map_err(write(&shown))?;
                files.insert(rel);
            }
            T::Link => {
                let raw_target = entry
                    .link_name_bytes()
                    .ok_or_else(|| refuse("hard link without a target"))?
                    .into_owned();
                let target = match relative(&raw_target, &mut first, name.as_deref(), whole) {
                    Ok(Some(t)) if files.contains(&t) => t,
                    Ok(Some(t)) if t == rel => return Err(refuse("hard link to itself")),
                    _ => {
                        return Err(refuse(&format!(
                            "hard link target {} is not an earlier file of the archive",
                            String::from_utf8_lossy(&raw_target)
                        )));
                    }
                };
                let (target_leaf, target_parents) = target
                    .split_last()
                    .ok_or_else(|| refuse("hard link without a target"))?;
                let target_dir = walk(&root, target_parents, false).map_err(|e| match e {
                    Walk::Through(p) => {
                        refuse(&format!("hard link target passes through {}", show(&p)))
                    }
                    Walk::Io(e) => write(&shown)(e),
                })?;
                remove_non_dir(&parent, leaf).map_err(|e| match e {
                    Errno::EISDIR | Errno::EPERM => refuse("a hard link would replace a directory"),
                    e => write(&shown)(e),
                })?;
                // No AT_SYMLINK_FOLLOW: a symlink target is linked itself, never followed.
                linkat(
                    &target_dir,
                    target_leaf.as_os_str(),
                    &parent,
                    leaf.as_os_str(),
                    AtFlags::empty(),
                )
                .map_err(write(&shown))?;
                files.insert(rel);
            }
            _ => unreachable!("filtered above"),
        }
        out.entries += 1;
    }
    // Deepest first, so a parent's mode never blocks a child's.
    dirs.sort_by_key(|d| std::cmp::Reverse(d.0.len()));
    for (rel, mode, mtime) in dirs {
        let shown = show(&rel);
        let fd = walk(&root, &rel, false).map_err(|e| match e {
            Walk::Through(_) => UnpackError::Refused {
                entry: shown.clone(),
                why: "the directory was replaced".into(),
            },
            Walk::Io(e) => write(&shown)(e),
        })?;
        fchmod(fd.as_fd(), Mode::from_bits_truncate(mode as _)).map_err(write(&shown))?;
        let t = TimeSpec::new(mtime, 0);
        futimens(fd.as_fd(), &t, &t).map_err(write(&shown))?;
    }
    Ok(out)
}

/// The destination-relative components of an archive name: its first component (which may
/// be `.`) becomes `name` or is dropped, the rest must be plain names. `None` for an empty
/// name.
fn relative(
    raw: &[u8],
    first: &mut Option<OsString>,
    name: Option<&OsStr>,
    whole: bool,
) -> Result<Option<Vec<OsString>>, &'static str> {
    if raw.starts_with(b"/") {
        return Err("absolute name");
    }
    if whole {
        let mut rel = Vec::new();
        for c in raw
            .split(|b| *b == b'/')
            .filter(|c| !c.is_empty() && *c != b".")
        {
            if c == b".." {
                return Err("'..' leaves the destination");
            }
            rel.push(OsStr::from_bytes(c).to_owned());
        }
        return Ok(Some(rel));
    }
    let mut parts = raw.split(|b| *b == b'/').filter(|c| !c.is_empty());
    let Some(head) = parts.next() else {
        return Ok(None);
    };
    let parts = parts.filter(|c| *c != b".");
    if head == b".." {
        return Err("'..' leaves the destination");
    }
    match first {
        None => *first = Some(OsStr::from_bytes(head).to_owned()),
        Some(f) if f.as_bytes() == head => {}
        Some(_) => return Err("outside the copied path"),
    }
    let mut rel: Vec<OsString> = name.iter().map(|n| n.to_os_string()).collect();
    for c in parts {
        if c == b".." {
            return Err("'..' leaves the destination");
        }
        rel.push(OsStr::from_bytes(c).to_owned());
    }
    Ok(Some(rel))
}

enum Walk {
    /// This prefix is a symlink or not a directory.
    Through(Vec<OsString>),
    Io(Errno),
}

/// Opens the directory `parts` below `root` one component at a time, never following a
/// symlink; creates missing directories when `create`.
fn walk(root: &OwnedFd, parts: &[OsString], create: bool) -> Result<OwnedFd, Walk> {
    let flags = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC;
    let mut cur = root
        .try_clone()
        .map_err(|e| Walk::Io(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))))?;
    for (i, part) in parts.iter().enumerate() {
        let next = match openat(&cur, part.as_os_str(), flags, Mode::empty()) {
            Err(Errno::ENOENT) if create => {
                match mkdirat(&cur, part.as_os_str(), Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(Walk::Io(e)),
                }
                openat(&cur, part.as_os_str(), flags, Mode::empty())
            }
            r => r,
        };
        cur = match next {
            Ok(fd) => fd,
            Err(Errno::ELOOP | Errno::ENOTDIR | Errno::EMLINK) => {
                return Err(Walk::Through(parts[..=i].to_vec()));
            }
            Err(e) => return Err(Walk::Io(e)),
        };
    }
    Ok(cur)
}

/// Unlinks a non-directory at `leaf` so a new entry can take its place; a missing one is fine.
fn remove_non_dir(dir: &OwnedFd, leaf: &OsStr) -> Result<(), Errno> {
    match unlinkat(dir, leaf, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(e),
    }
}

fn show(parts: &[OsString]) -> String {
    parts
        .iter()
        .map(|p| p.to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    enum E<'a> {
        File(&'a str, &'a [u8]),
        Dir(&'a str),
        Symlink(&'a str, &'a str),
        Link(&'a str, &'a str),
    }

    fn archive(entries: &[E]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for e in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            h.set_mtime(1_700_000_000);
            // Names are written raw: the builder's own checks would refuse the hostile ones.
            let (name, kind, link, data): (&str, _, Option<&str>, &[u8]) = match e {
                E::File(n, d) => (n, tar::EntryType::Regular, None, d),
                E::Dir(n) => (n, tar::EntryType::Directory, None, b""),
                E::Symlink(n, t) => (n, tar::EntryType::Symlink, Some(t), b""),
                E::Link(n, t) => (n, tar::EntryType::Link, Some(t), b""),
            };
            if matches!(e, E::Dir(_)) {
                h.set_mode(0o755);
            }
            h.set_entry_type(kind);
            h.set_size(data.len() as u64);
            let gnu = h.as_gnu_mut().unwrap();
            gnu.name[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(l) = link {
                gnu.linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
            h.set_cksum();
            b.append(&h, data).unwrap();
        }
        b.into_inner().unwrap()
    }

    /// A destination inside a scratch directory, so anything escaping it can be seen.
    struct Scratch {
        top: tempfile::TempDir,
    }

    impl Scratch {
        fn new() -> Scratch {
            let top = tempfile::tempdir().unwrap();
            std::fs::create_dir(top.path().join("dest")).unwrap();
            std::fs::write(top.path().join("victim"), b"original").unwrap();
            Scratch { top }
        }
        fn dest(&self) -> std::path::PathBuf {
            self.top.path().join("dest")
        }
        /// Every path under the scratch directory outside dest.
        fn outside(&self) -> Vec<String> {
            let mut v: Vec<String> = std::fs::read_dir(self.top.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n != "dest")
                .collect();
            v.sort();
            v
        }
        fn assert_untouched(&self) {
            assert_eq!(self.outside(), vec!["victim".to_string()]);
            assert_eq!(
                std::fs::read(self.top.path().join("victim")).unwrap(),
                b"original"
            );
        }
    }

    #[test]
    fn an_archive_is_unpacked_under_the_new_name_with_hard_links() {
        let s = Scratch::new();
        let tar = archive(&[
            E::Dir("bin/"),
            E::File("bin/busybox", b"ELF"),
            E::Link("bin/sh", "bin/busybox"),
            E::Symlink("bin/abs", "/etc/passwd"),
            E::Dir("bin/sub/"),
            E::File("bin/sub/x", b"x"),
        ]);
        let n = unpack_renamed(&tar[..], &s.dest(), Some("copied")).unwrap();
        assert_eq!(n.entries, 6);
        let d = s.dest().join("copied");
        assert_eq!(std::fs::read(d.join("busybox")).unwrap(), b"ELF");
        assert_eq!(std::fs::read(d.join("sh")).unwrap(), b"ELF");
        assert_eq!(
            std::fs::metadata(d.join("sh")).unwrap().ino(),
            std::fs::metadata(d.join("busybox")).unwrap().ino(),
            "a hard link stays a hard link"
        );
        assert_eq!(
            std::fs::read_link(d.join("abs")).unwrap(),
            Path::new("/etc/passwd")
        );
        assert_eq!(std::fs::read(d.join("sub/x")).unwrap(), b"x");
        assert_eq!(
            std::fs::metadata(&d).unwrap().mode() & 0o7777,
            0o755,
            "directory modes are applied"
        );
        s.assert_untouched();
    }

    #[test]
    fn a_path_through_an_archive_symlink_is_refused() {
        let s = Scratch::new();
        let top = s.top.path().display().to_string();
        let tar = archive(&[
            E::Dir("x/"),
            E::Symlink("x/up", &top),
            E::File("x/up/victim", b"pwned"),
            E::File("x/up/new", b"pwned"),
        ]);
        let e = unpack_renamed(&tar[..], &s.dest(), Some("x")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "refusing archive entry x/up/victim: x/up is a symlink or not a directory"
        );
        s.assert_untouched();
    }

    #[test]
    fn a_path_through_a_symlink_already_on_disk_is_refused() {
        let s = Scratch::new();
        std::fs::create_dir(s.dest().join("x")).unwrap();
        std::os::unix::fs::symlink(s.top.path(), s.dest().join("x/up")).unwrap();
        let tar = archive(&[E::File("x/up/victim", b"pwned")]);
        let e = unpack_renamed(&tar[..], &s.dest(), Some("x")).unwrap_err();
        assert!(e.to_string().contains("x/up is a symlink"), "{e}");
        // A file entry over that symlink replaces the link; it never writes through it.
        let tar = archive(&[E::File("x/up", b"data")]);
        unpack_renamed(&tar[..], &s.dest(), Some("x")).unwrap();
        assert_eq!(std::fs::read(s.dest().join("x/up")).unwrap(), b"data");
        s.assert_untouched();
    }

    #[test]
    fn hard_links_that_escape_are_refused() {
        for target in [
            "/etc/passwd",
            "../victim",
            "x/../../victim",
            "x/missing",
            "y/f",
        ] {
            let s = Scratch::new();
            let tar = archive(&[E::Dir("x/"), E::File("x/f", b"f"), E::Link("x/l", target)]);
            let e = unpack_renamed(&tar[..], &s.dest(), Some("x")).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!(
                    "refusing archive entry x/l: hard link target {target} is not an earlier file of the archive"
                )
            );
            assert!(!s.dest().join("x/l").exists());
            s.assert_untouched();
        }
        // Nor to a directory, or through a symlink the archive made.
        let s = Scratch::new();
        let tar = archive(&[E::Dir("x/d/"), E::Link("x/l", "x/d")]);
        assert!(unpack_renamed(&tar[..], &s.dest(), Some("x")).is_err());
        s.assert_untouched();
    }

    #[test]
    fn a_hard_link_to_a_symlink_links_the_symlink_itself() {
        let s = Scratch::new();
        let victim = s.top.path().join("victim").display().to_string();
        let tar = archive(&[
            E::Dir("x/"),
            E::Symlink("x/s", &victim),
            E::Link("x/l", "x/s"),
        ]);
        unpack_renamed(&tar[..], &s.dest(), Some("x")).unwrap();
        let l = s.dest().join("x/l");
        assert!(
            std::fs::symlink_metadata(&l)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        s.assert_untouched();
    }

    #[test]
    fn dot_dot_and_absolute_names_are_refused() {
        for (name, why) in [
            ("x/../../victim", "'..' leaves the destination"),
            ("../victim", "'..' leaves the destination"),
            ("/victim", "absolute name"),
            ("y/other", "outside the copied path"),
        ] {
            let s = Scratch::new();
            let tar = archive(&[E::Dir("x/"), E::File(name, b"pwned")]);
            let e = unpack_renamed(&tar[..], &s.dest(), Some("x")).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("refusing archive entry {name}: {why}")
            );
            s.assert_untouched();
        }
    }

    #[test]
    fn a_copy_of_the_root_merges_into_the_destination() {
        let s = Scratch::new();
        let tar = archive(&[
            E::Dir("./"),
            E::Dir("./bin/"),
            E::File("./bin/busybox", b"ELF"),
            E::Link("./bin/sh", "./bin/busybox"),
        ]);
        unpack_renamed(&tar[..], &s.dest(), None).unwrap();
        assert_eq!(std::fs::read(s.dest().join("bin/sh")).unwrap(), b"ELF");
        for bad in ["/", "..", ".", "a/b", ""] {
            let e = unpack_renamed(&tar[..], &s.dest(), Some(bad)).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("refusing archive entry {bad}: not a plain file name")
            );
        }
        s.assert_untouched();
    }

    #[test]
    fn device_nodes_are_skipped() {
        let s = Scratch::new();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Char);
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
        h.set_size(0);
        h.set_mode(0o666);
        h.set_cksum();
        b.append_data(&mut h, "null", &b""[..]).unwrap();
        let tar = b.into_inner().unwrap();
        let u = unpack_renamed(&tar[..], &s.dest(), Some("null")).unwrap();
        assert_eq!(u.skipped, vec!["null".to_string()]);
        assert!(!s.dest().join("null").exists());
    }
}
