//! Tar archives of a container's files, for `cp` out of a container and `export`.
//!
//! Paths resolve inside a root directory (`openat2` with `RESOLVE_IN_ROOT`): a container's
//! symlink `/x -> /` reaches the container's root, never the VM's. The tree is walked through
//! directory descriptors opened with `O_NOFOLLOW`, so a process in the container that swaps a
//! directory for a symlink mid-walk cannot redirect the walk either. Hard links stay links:
//! the second and later names of a file with more than one link are `Link` entries naming
//! the first. Export mode archives the whole root the way `docker export` does: names
//! relative to the root, directories of other filesystems (mount points) and the pseudo
//! filesystems' directories present but empty.

use std::collections::HashMap;
use std::ffi::{CStr, OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat, openat2, readlinkat};
use nix::sys::stat::{FileStat, Mode, fstatat};

use crate::fsops::FsError;

/// Directories whose contents export leaves out: they are the kernel's, not the container's.
const PSEUDO: [&str; 3] = ["proc", "sys", "dev"];

fn errno<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(Errno) -> FsError + 'a {
    move |e| {
        if e == Errno::ENOENT {
            FsError::NotFound(path.display().to_string())
        } else {
            FsError::Io {
                what,
                path: path.display().to_string(),
                source: e.into(),
            }
        }
    }
}

/// Opens `root` (following it: `/proc/PID/root` is how a running container's root is reached)
/// and `path` inside it with `flags`, resolving every symlink and `..` inside the root.
fn open_at_root(root: &Path, path: &Path, flags: OFlag) -> Result<(OwnedFd, OwnedFd), Errno> {
    let root_fd = openat(
        nix::fcntl::AT_FDCWD,
        root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let rel = path.strip_prefix("/").unwrap_or(path);
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let how = OpenHow::new()
        .flags(flags | OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = openat2(&root_fd, rel, how)?;
    Ok((root_fd, fd))
}

/// `path` inside `root`, without following `path`'s last component.
fn open_in_root(root: &Path, path: &Path) -> Result<(OwnedFd, OwnedFd), FsError> {
    open_at_root(root, path, OFlag::O_NOFOLLOW).map_err(errno("opening", path))
}

/// Opens the directory `path` inside `root`, following symlinks (also the last component's)
/// within the root: where `cp` unpacks into a container.
pub(crate) fn open_dir_in_root(root: &Path, path: &Path) -> Result<OwnedFd, FsError> {
    match open_at_root(root, path, OFlag::O_DIRECTORY) {
        Ok((_, fd)) => Ok(fd),
        Err(Errno::ENOTDIR) => Err(FsError::Invalid(format!(
            "{} is not a directory",
            path.display()
        ))),
        Err(e) => Err(errno("opening", path)(e)),
    }
}

/// lstat of `path` resolved inside `root`; `None` when it does not exist.
pub fn stat_in_root(root: &Path, path: &Path) -> Result<Option<FileStat>, FsError> {
    match open_in_root(root, path) {
        Ok((_, fd)) => fstatat(
            &fd,
            "",
            AtFlags::AT_EMPTY_PATH | AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map(Some)
        .map_err(errno("stat", path)),
        Err(FsError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes `path` (resolved inside `root`) into `out` as a tar. For `cp` (`export` false) the
/// entries start with the path's base name (`.` for the root); for `export` the whole tree
/// below `path` is written with names relative to it.
pub fn tar_out<W: Write>(root: &Path, path: &Path, export: bool, out: W) -> Result<(), FsError> {
    let (_root_fd, fd) = open_in_root(root, path)?;
    let st = fstatat(
        &fd,
        "",
        AtFlags::AT_EMPTY_PATH | AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(errno("stat", path))?;
    let mut w = Writer {
        tar: tar::Builder::new(out),
        links: HashMap::new(),
        root_dev: st.st_dev,
        export,
        shown: path.to_path_buf(),
    };
    let name = if export {
        PathBuf::new()
    } else {
        path.file_name()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."))
    };
    // The start is reached through its O_PATH descriptor; everything below through its
    // directory's descriptor and a plain name.
    w.entry(&fd, OsStr::new(""), &st, &name, 0)?;
    let mut out = w.tar.into_inner().map_err(errno_io("archiving", path))?;
    out.flush().map_err(errno_io("archiving", path))
}

pub(crate) fn errno_io<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> FsError + 'a {
    move |source| FsError::Io {
        what,
        path: path.display().to_string(),
        source,
    }
}

struct Writer<W: Write> {
    tar: tar::Builder<W>,
    /// (device, inode) of files with several links → the archive name of the first.
    links: HashMap<(u64, u64), PathBuf>,
    root_dev: u64,
    export: bool,
    shown: PathBuf,
}

pub(crate) fn kind(st: &FileStat) -> u32 {
    st.st_mode & libc::S_IFMT
}

/// The contents of a regular file opened as `fd` for the entry the walk saw as `st`: its size
/// and a reader of exactly that many bytes. Refused when the open reached another file than
/// the walk saw; a file that shrinks while it is read is padded with zeros, so the archive
/// stays whole.
pub(crate) fn regular_file_data(
    fd: OwnedFd,
    st: &FileStat,
    shown: &Path,
) -> Result<(u64, impl Read), FsError> {
    let now = nix::sys::stat::fstat(&fd).map_err(errno("stat", shown))?;
    if kind(&now) != libc::S_IFREG || now.st_ino != st.st_ino {
        return Err(FsError::Invalid(format!(
            "{} changed while it was archived",
            shown.display()
        )));
    }
    let size = now.st_size.max(0) as u64;
    let data = std::fs::File::from(fd)
        .take(size)
        .chain(io::repeat(0))
        .take(size);
    Ok((size, data))
}

impl<W: Write> Writer<W> {
    /// Archives the object `name` of directory `dir` (or `dir` itself when `name` is empty)
    /// as `arc`. `depth` counts directories below the start.
    fn entry(
        &mut self,
        dir: &OwnedFd,
        name: &OsStr,
        st: &FileStat,
        arc: &Path,
        depth: usize,
    ) -> Result<(), FsError> {
        let shown = self.shown.join(arc);
        let mut h = tar::Header::new_gnu();
        h.set_mode(st.st_mode & 0o7777);
        h.set_uid(st.st_uid as u64);
        h.set_gid(st.st_gid as u64);
        h.set_mtime(st.st_mtime.max(0) as u64);
        h.set_size(0);
        let io = |e| errno_io("archiving", &shown)(e);
        match kind(st) {
            libc::S_IFDIR => {
                let flags =
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
                let fd = if name.is_empty() {
                    openat(dir, ".", flags, Mode::empty())
                } else {
                    openat(dir, name, flags, Mode::empty())
                }
                .map_err(errno("opening", &shown))?;
                if !arc.as_os_str().is_empty() {
                    h.set_entry_type(tar::EntryType::Directory);
                    // Directories end in `/`, as in docker's archives.
                    let mut name = arc.as_os_str().as_bytes().to_vec();
                    name.push(b'/');
                    self.append(h, &name, None, io::empty()).map_err(io)?;
                }
                // Another filesystem below the start (a volume, /proc in the container's
                // view) or a pseudo filesystem's directory: its mount point only.
                let pseudo =
                    self.export && depth == 1 && PSEUDO.iter().any(|p| arc == Path::new(p));
                if (self.export && st.st_dev != self.root_dev) || pseudo {
                    return Ok(());
                }
                let mut children: Vec<OsString> = Vec::new();
                let reader = fd.try_clone().map_err(io)?;
                let mut d = nix::dir::Dir::from_fd(reader).map_err(errno("listing", &shown))?;
                for e in d.iter() {
                    let e = e.map_err(errno("listing", &shown))?;
                    let n: &CStr = e.file_name();
                    let b = n.to_bytes();
                    if b != b"." && b != b".." {
                        children.push(OsStr::from_bytes(b).to_owned());
                    }
                }
                children.sort();
                for child in children {
                    let cst = match fstatat(&fd, child.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                        Ok(s) => s,
                        Err(Errno::ENOENT) => continue, // removed while we walked
                        Err(e) => return Err(errno("stat", &shown.join(&child))(e)),
                    };
                    self.entry(&fd, &child, &cst, &arc.join(&child), depth + 1)?;
                }
            }
            libc::S_IFREG => {
                if st.st_nlink > 1 {
                    let key = (st.st_dev, st.st_ino);
                    if let Some(first) = self.links.get(&key) {
                        let first = first.clone();
                        h.set_entry_type(tar::EntryType::Link);
                        let first = first.as_os_str().as_bytes();
                        return self
                            .append(h, bytes(arc), Some(first), io::empty())
                            .map_err(io);
                    }
                    self.links.insert(key, arc.to_path_buf());
                }
                let flags =
                    OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
                let fd = if name.is_empty() {
                    // The start itself: reopen its O_PATH descriptor for reading.
                    openat(
                        dir,
                        format!("/proc/self/fd/{}", raw(dir)).as_str(),
                        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )
                } else {
                    openat(dir, name, flags, Mode::empty())
                }
                .map_err(errno("opening", &shown))?;
                let (size, data) = regular_file_data(fd, st, &shown)?;
                h.set_size(size);
                h.set_entry_type(tar::EntryType::Regular);
                self.append(h, bytes(arc), None, data).map_err(io)?;
            }
            libc::S_IFLNK => {
                let target = readlinkat(dir, name).map_err(errno("reading the link", &shown))?;
                h.set_entry_type(tar::EntryType::Symlink);
                self.append(h, bytes(arc), Some(target.as_bytes()), io::empty())
                    .map_err(io)?;
            }
            libc::S_IFCHR | libc::S_IFBLK | libc::S_IFIFO => {
                h.set_entry_type(match kind(st) {
                    libc::S_IFCHR => tar::EntryType::Char,
                    libc::S_IFBLK => tar::EntryType::Block,
                    _ => tar::EntryType::Fifo,
                });
                let rdev = st.st_rdev;
                h.set_device_major(libc::major(rdev)).map_err(io)?;
                h.set_device_minor(libc::minor(rdev)).map_err(io)?;
                self.append(h, bytes(arc), None, io::empty()).map_err(io)?;
            }
            _ => {} // sockets are not archived
        }
        Ok(())
    }
}

fn bytes(p: &Path) -> &[u8] {
    p.as_os_str().as_bytes()
}

/// A GNU long-name (`L`) or long-link (`K`) pseudo-entry carrying `value`.
pub(crate) fn long_entry(kind: u8, value: &[u8]) -> (tar::Header, Vec<u8>) {
    let mut h = tar::Header::new_gnu();
    let name = b"././@LongLink";
    if let Some(g) = h.as_gnu_mut() {
        g.name[..name.len()].copy_from_slice(name);
    }
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::new(kind));
    let mut data = value.to_vec();
    data.push(0);
    h.set_size(data.len() as u64);
    h.set_cksum();
    (h, data)
}

impl<W: Write> Writer<W> {
    /// Appends an entry with its name and link target written byte for byte (the tar crate's
    /// own setters normalise `./x` and `/`), using GNU long-name entries where they do not
    /// fit the header.
    fn append(
        &mut self,
        mut h: tar::Header,
        name: &[u8],
        link: Option<&[u8]>,
        data: impl Read,
    ) -> io::Result<()> {
        let gnu = h
            .as_gnu_mut()
            .ok_or_else(|| io::Error::other("not a gnu header"))?;
        if name.len() > gnu.name.len() {
            let (lh, ld) = long_entry(b'L', name);
            self.tar.append(&lh, &ld[..])?;
        }
        let n = name.len().min(gnu.name.len());
        gnu.name[..n].copy_from_slice(&name[..n]);
        if let Some(link) = link {
            if link.len() > gnu.linkname.len() {
                let (lh, ld) = long_entry(b'K', link);
                self.tar.append(&lh, &ld[..])?;
            }
            let n = link.len().min(gnu.linkname.len());
            gnu.linkname[..n].copy_from_slice(&link[..n]);
        }
        h.set_cksum();
        self.tar.append(&h, data)
    }
}

fn raw(fd: &OwnedFd) -> i32 {
    use std::os::fd::AsRawFd;
    fd.as_fd().as_raw_fd()
}

/// Unpacks a tar stream into an existing directory, keeping ownership and permissions.
///
/// `destination` resolves inside `root` (empty: the guest's own root), so a container's
/// symlink (`/x -> /`) leads to the container's root, never the VM's. The tar crate then
/// refuses every entry whose parent resolves outside the destination.
pub fn tar_in<R: io::Read>(root: &str, destination: &str, input: R) -> Result<(), FsError> {
    let d = crate::fsops::absolute(destination)?;
    let root = if root.is_empty() { "/" } else { root };
    let dir = open_dir_in_root(crate::fsops::absolute(root)?, d)?;
    // The descriptor's magic link names the directory it resolved to.
    use std::os::fd::AsRawFd;
    let resolved = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    let mut a = tar::Archive::new(input);
    a.set_preserve_permissions(true);
    a.set_preserve_ownerships(true);
    a.set_overwrite(true);
    a.unpack(&resolved).map_err(|e| FsError::Io {
        what: "unpacking into",
        path: d.display().to_string(),
        source: e,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    /// (name, type, link target, content) of every entry.
    fn entries(tar: &[u8]) -> Vec<(String, tar::EntryType, String, Vec<u8>)> {
        let mut a = tar::Archive::new(tar);
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
                let kind = e.header().entry_type();
                let link = e
                    .link_name_bytes()
                    .map(|l| String::from_utf8_lossy(&l).into_owned())
                    .unwrap_or_default();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                (name, kind, link, data)
            })
            .collect()
    }

    /// A container root whose /etc/hostname differs from the host's, reachable through
    /// symlinks that would leave it if resolved in the VM's root.
    fn container_root() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("etc")).unwrap();
        fs::write(d.path().join("etc/hostname"), "inside\n").unwrap();
        symlink("/", d.path().join("x")).unwrap();
        symlink("../../../../../etc", d.path().join("up")).unwrap();
        d
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let root = container_root();
        for path in ["/x/etc/hostname", "/up/hostname", "/../../etc/hostname"] {
            let mut buf = Vec::new();
            tar_out(root.path(), Path::new(path), false, &mut buf).unwrap();
            let e = entries(&buf);
            assert_eq!(e.len(), 1, "{path}");
            assert_eq!(e[0].0, "hostname");
            assert_eq!(e[0].3, b"inside\n", "{path} was read outside the root");
        }
        // A directory through the symlink: the container's /etc, not the host's.
        let mut buf = Vec::new();
        tar_out(root.path(), Path::new("/x/etc"), false, &mut buf).unwrap();
        let names: Vec<String> = entries(&buf).into_iter().map(|e| e.0).collect();
        assert_eq!(names, vec!["etc/", "etc/hostname"]);
        // The last component is not followed: the link itself is archived.
        let mut buf = Vec::new();
        tar_out(root.path(), Path::new("/x"), false, &mut buf).unwrap();
        let e = entries(&buf);
        assert_eq!((e[0].1, e[0].2.as_str()), (tar::EntryType::Symlink, "/"));
        assert!(matches!(
            stat_in_root(root.path(), Path::new("/x/nothing")),
            Ok(None)
        ));
        assert!(
            stat_in_root(root.path(), Path::new("/up/hostname"))
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn hard_links_are_link_entries_naming_the_first() {
        let root = tempfile::tempdir().unwrap();
        let bin = root.path().join("bin");
        fs::create_dir(&bin).unwrap();
        fs::write(bin.join("busybox"), b"ELF").unwrap();
        for n in ["sh", "ls"] {
            fs::hard_link(bin.join("busybox"), bin.join(n)).unwrap();
        }
        let mut buf = Vec::new();
        tar_out(root.path(), Path::new("/bin"), false, &mut buf).unwrap();
        let e = entries(&buf);
        let summary: Vec<(&str, tar::EntryType, &str, &[u8])> = e
            .iter()
            .map(|(n, k, l, d)| (n.as_str(), *k, l.as_str(), d.as_slice()))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("bin/", tar::EntryType::Directory, "", &b""[..]),
                ("bin/busybox", tar::EntryType::Regular, "", &b"ELF"[..]),
                ("bin/ls", tar::EntryType::Link, "bin/busybox", &b""[..]),
                ("bin/sh", tar::EntryType::Link, "bin/busybox", &b""[..]),
            ]
        );
        // One file alone is its bytes, whatever its link count.
        let mut buf = Vec::new();
        tar_out(root.path(), Path::new("/bin/sh"), false, &mut buf).unwrap();
        let e = entries(&buf);
        assert_eq!(
            (e[0].0.as_str(), e[0].1, e[0].3.as_slice()),
            ("sh", tar::EntryType::Regular, &b"ELF"[..])
        );
    }

    #[test]
    fn export_names_are_relative_and_pseudo_filesystems_empty() {
        let root = tempfile::tempdir().unwrap();
        for d in ["proc/1", "sys/kernel", "dev", "etc"] {
            fs::create_dir_all(root.path().join(d)).unwrap();
        }
        fs::write(root.path().join("proc/1/status"), "x").unwrap();
        fs::write(root.path().join("dev/null"), "x").unwrap();
        fs::write(root.path().join("etc/passwd"), "root:x:0:0\n").unwrap();
        let mut buf = Vec::new();
        tar_out(root.path(), Path::new("/"), true, &mut buf).unwrap();
        let names: Vec<String> = entries(&buf).into_iter().map(|e| e.0).collect();
        assert_eq!(names, vec!["dev/", "etc/", "etc/passwd", "proc/", "sys/"]);
        // `cp CTR:/ -` names the root `.`.
        let mut buf = Vec::new();
        tar_out(root.path(), Path::new("/"), false, &mut buf).unwrap();
        let names: Vec<String> = entries(&buf).into_iter().map(|e| e.0).collect();
        assert_eq!(names[0], "./");
        assert!(names.contains(&"./proc/1/status".to_string()));
    }

    #[test]
    fn tar_round_trip() {
        let src = tempfile::tempdir().unwrap();
        let tree = src.path().join("tree");
        fs::create_dir_all(tree.join("sub")).unwrap();
        fs::write(tree.join("sub/file"), vec![7u8; 100_000]).unwrap();
        std::os::unix::fs::symlink("sub/file", tree.join("link")).unwrap();
        let mut buf = Vec::new();
        tar_out(Path::new("/"), &tree, false, &mut buf).unwrap();
        let dst = tempfile::tempdir().unwrap();
        tar_in("", dst.path().to_str().unwrap(), &buf[..]).unwrap();
        assert_eq!(
            fs::read(dst.path().join("tree/sub/file")).unwrap(),
            vec![7u8; 100_000]
        );
        assert_eq!(
            fs::read_link(dst.path().join("tree/link")).unwrap(),
            PathBuf::from("sub/file")
        );
        assert!(matches!(
            tar_in("", dst.path().join("nope").to_str().unwrap(), &buf[..]),
            Err(FsError::NotFound(_))
        ));
    }

    #[test]
    fn tar_in_resolves_the_destination_inside_the_root() {
        // A container root whose /x is a symlink to `/`, and a file outside it that the
        // symlink would reach if it were resolved from the VM's root.
        let top = tempfile::tempdir().unwrap();
        let root = top.path().join("root");
        fs::create_dir_all(root.join("etc")).unwrap();
        std::os::unix::fs::symlink("/", root.join("x")).unwrap();
        std::os::unix::fs::symlink("../../..", root.join("up")).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        h.set_uid(nix::unistd::getuid().as_raw().into());
        h.set_gid(nix::unistd::getgid().as_raw().into());
        h.set_mtime(0);
        h.set_cksum();
        b.append_data(&mut h, "dropped", &b"hi\n"[..]).unwrap();
        let archive = b.into_inner().unwrap();
        let root_s = root.to_str().unwrap();
        // Through /x the destination is the container's root...
        let outside = top.path().join("dropped");
        tar_in(root_s, "/x/etc", &archive[..]).unwrap();
        assert_eq!(fs::read(root.join("etc/dropped")).unwrap(), b"hi\n");
        // ...and `..` through a relative symlink stops at it too.
        tar_in(root_s, "/up", &archive[..]).unwrap();
        assert_eq!(fs::read(root.join("dropped")).unwrap(), b"hi\n");
        assert!(!outside.exists(), "nothing is written outside the root");
        // A destination that is a file is refused.
        fs::write(root.join("file"), b"").unwrap();
        assert!(matches!(
            tar_in(root_s, "/file", &archive[..]),
            Err(FsError::Invalid(_))
        ));
    }
}
