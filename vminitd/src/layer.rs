//! An overlayfs upper directory as an OCI layer tar: what a build step, `commit` and `diff`
//! capture from a container.
//!
//! The upper holds exactly what changed above the read-only image: new and modified files,
//! deletions as whiteouts (character devices 0/0) and directories that replace a lower one
//! wholesale marked opaque (xattr `trusted.overlay.opaque` or, with `userxattr`,
//! `user.overlay.opaque`, value `y`). The OCI image spec writes those as `.wh.<name>` and
//! `<dir>/.wh..wh..opq` entries. Everything else is archived as it is: hard links as link
//! entries naming the first name met, xattrs (but overlay's own) as PAX `SCHILY.xattr.`
//! records, devices and fifos as themselves; sockets are skipped, as Docker skips them.
//!
//! The walk goes through directory descriptors opened with `O_NOFOLLOW` and never follows a
//! symlink, so a process in the container that swaps a directory for a link mid-walk cannot
//! make it read outside the upper. Children are archived in byte order of their names, so the
//! same upper always gives the same bytes (with `source_date_epoch`, also the same mtimes).

use std::collections::HashMap;
use std::ffi::{CStr, CString, OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, readlinkat};
use nix::sys::stat::{FileStat, Mode, fstatat};

use crate::archive::{errno_io as io_err, kind, regular_file_data};
use crate::fsops::FsError;

/// The prefix of a whiteout entry's name (OCI image spec, "Whiteouts").
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// The name of the entry that marks its directory opaque.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Writes the upper directory `upper` into `out` as an uncompressed OCI layer tar. With
/// `epoch`, no entry's mtime is later than it.
pub fn capture<W: Write>(
    upper: &Path,
    epoch: Option<i64>,
    exclude: &[PathBuf],
    out: W,
) -> Result<(), FsError> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let fd = openat(nix::fcntl::AT_FDCWD, upper, flags, Mode::empty()).map_err(|e| {
        if e == Errno::ENOENT {
            FsError::NotFound(upper.display().to_string())
        } else {
            io_err("opening", upper)(e.into())
        }
    })?;
    let mut w = LayerWriter {
        tar: tar::Builder::new(out),
        links: HashMap::new(),
        epoch,
        upper: upper.to_path_buf(),
        exclude: exclude.to_vec(),
    };
    w.directory(&fd, Path::new(""))?;
    let mut out = w.tar.into_inner().map_err(io_err("archiving", upper))?;
    out.flush().map_err(io_err("archiving", upper))
}

/// True for the xattrs overlayfs keeps for itself: they describe the upper, not the files.
fn is_overlay_xattr(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

/// The extended attributes of `name` in the directory `dir`, sorted by name. Read through the
/// directory descriptor's `/proc/self/fd` link with the `l` calls, so the last component is
/// never followed (symlinks have no user xattrs, but `trusted.` and `security.` ones).
fn xattrs(dir: &OwnedFd, name: &OsStr) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut path = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    path.extend_from_slice(name.as_bytes());
    let path = CString::new(path).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut names = vec![0u8; 1024];
    let len = loop {
        // SAFETY: `path` is a NUL-terminated string and `names` a writable buffer of the length
        // passed; the kernel writes at most that many bytes.
        let n = unsafe {
            libc::llistxattr(
                path.as_ptr(),
                names.as_mut_ptr().cast::<libc::c_char>(),
                names.len(),
            )
        };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ERANGE) => names.resize(names.len() * 4, 0),
            Some(libc::ENOTSUP) => return Ok(Vec::new()),
            _ => return Err(e),
        }
        if names.len() > 1 << 20 {
            return Err(io::Error::other("xattr list too long"));
        }
    };
    let mut out = Vec::new();
    for key in names[..len].split(|b| *b == 0).filter(|k| !k.is_empty()) {
        let ckey = CString::new(key).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let mut value = vec![0u8; 256];
        let vlen = loop {
            // SAFETY: as above; `ckey` is NUL-terminated and `value` writable for its length.
            let n = unsafe {
                libc::lgetxattr(
                    path.as_ptr(),
                    ckey.as_ptr(),
                    value.as_mut_ptr().cast::<libc::c_void>(),
                    value.len(),
                )
            };
            if n >= 0 {
                break Some(n as usize);
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::ERANGE) if value.len() < 1 << 20 => value.resize(value.len() * 4, 0),
                // Removed between the list and the read.
                Some(libc::ENODATA) => break None,
                _ => return Err(e),
            }
        };
        if let Some(vlen) = vlen {
            value.truncate(vlen);
            out.push((key.to_vec(), value));
        }
    }
    out.sort();
    Ok(out)
}

struct LayerWriter<W: Write> {
    tar: tar::Builder<W>,
    /// (device, inode) of files with several links → the archive name of the first.
    links: HashMap<(u64, u64), Vec<u8>>,
    epoch: Option<i64>,
    upper: PathBuf,
    exclude: Vec<PathBuf>,
}

impl<W: Write> LayerWriter<W> {
    fn mtime(&self, t: i64) -> u64 {
        let t = match self.epoch {
            Some(e) => t.min(e),
            None => t,
        };
        t.max(0) as u64
    }

    fn header(&self, st: &FileStat) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_mode(st.st_mode & 0o7777);
        h.set_uid(st.st_uid as u64);
        h.set_gid(st.st_gid as u64);
        h.set_mtime(self.mtime(st.st_mtime));
        h.set_size(0);
        h
    }

    /// Archives the children of the directory `fd`, whose archive name is `arc` (empty for the
    /// upper itself).
    fn directory(&mut self, fd: &OwnedFd, arc: &Path) -> Result<(), FsError> {
        let shown = self.upper.join(arc);
        let mut children: Vec<OsString> = Vec::new();
        let reader = fd.try_clone().map_err(io_err("listing", &shown))?;
        let mut d =
            nix::dir::Dir::from_fd(reader).map_err(|e| io_err("listing", &shown)(e.into()))?;
        for e in d.iter() {
            let e = e.map_err(|e| io_err("listing", &shown)(e.into()))?;
            let n: &CStr = e.file_name();
            let b = n.to_bytes();
            if b != b"." && b != b".." {
                children.push(OsStr::from_bytes(b).to_owned());
            }
        }
        children.sort();
        for child in children {
            let st = match fstatat(fd, child.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(s) => s,
                Err(Errno::ENOENT) => continue, // removed while we walked
                Err(e) => return Err(io_err("stat", &shown.join(&child))(e.into())),
            };
            let name = arc.join(&child);
            if self.exclude.contains(&name) {
                continue;
            }
            self.entry(fd, &child, &st, &name)?;
        }
        Ok(())
    }

    /// Archives the object `name` of directory `dir` as `arc`.
    fn entry(
        &mut self,
        dir: &OwnedFd,
        name: &OsStr,
        st: &FileStat,
        arc: &Path,
    ) -> Result<(), FsError> {
        let shown = self.upper.join(arc);
        let io = |e| io_err("archiving", &shown)(e);
        let mut h = self.header(st);
        let attrs = xattrs(dir, name).map_err(io_err("reading xattrs of", &shown))?;
        let opaque = attrs.iter().any(|(k, v)| {
            (k == b"trusted.overlay.opaque" || k == b"user.overlay.opaque") && v == b"y"
        });
        let attrs: Vec<_> = attrs
            .into_iter()
            .filter(|(k, _)| !is_overlay_xattr(k))
            .collect();
        match kind(st) {
            libc::S_IFDIR => {
                let flags =
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
                let fd = openat(dir, name, flags, Mode::empty())
                    .map_err(|e| io_err("opening", &shown)(e.into()))?;
                h.set_entry_type(tar::EntryType::Directory);
                let mut n = arc.as_os_str().as_bytes().to_vec();
                n.push(b'/');
                self.append(h, &n, None, &attrs, io::empty()).map_err(io)?;
                if opaque {
                    // The marker carries the directory's own metadata, as Docker writes it.
                    let mut m = self.header(st);
                    m.set_mode(0o644);
                    m.set_entry_type(tar::EntryType::Regular);
                    let marker = arc.join(OPAQUE_MARKER);
                    self.append(m, bytes(&marker), None, &[], io::empty())
                        .map_err(io)?;
                }
                self.directory(&fd, arc)?;
            }
            libc::S_IFCHR if st.st_rdev == 0 => {
                // A whiteout: the lower file of this name is deleted.
                let mut wh = OsString::from(WHITEOUT_PREFIX);
                wh.push(name);
                let path = arc.with_file_name(wh);
                h.set_mode(0o644);
                h.set_entry_type(tar::EntryType::Regular);
                self.append(h, bytes(&path), None, &[], io::empty())
                    .map_err(io)?;
            }
            libc::S_IFREG => {
                if st.st_nlink > 1 {
                    let key = (st.st_dev, st.st_ino);
                    if let Some(first) = self.links.get(&key) {
                        let first = first.clone();
                        h.set_entry_type(tar::EntryType::Link);
                        return self
                            .append(h, bytes(arc), Some(&first), &[], io::empty())
                            .map_err(io);
                    }
                    self.links.insert(key, bytes(arc).to_vec());
                }
                let flags =
                    OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
                let fd = openat(dir, name, flags, Mode::empty())
                    .map_err(|e| io_err("opening", &shown)(e.into()))?;
                let (size, data) = regular_file_data(fd, st, &shown)?;
                h.set_size(size);
                h.set_entry_type(tar::EntryType::Regular);
                self.append(h, bytes(arc), None, &attrs, data).map_err(io)?;
            }
            libc::S_IFLNK => {
                let target = readlinkat(dir, name)
                    .map_err(|e| io_err("reading the link", &shown)(e.into()))?;
                h.set_entry_type(tar::EntryType::Symlink);
                self.append(h, bytes(arc), Some(target.as_bytes()), &attrs, io::empty())
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
                self.append(h, bytes(arc), None, &attrs, io::empty())
                    .map_err(io)?;
            }
            _ => {} // sockets are not archived
        }
        Ok(())
    }

    /// Appends an entry with its name and link target written byte for byte, preceded by a
    /// PAX header for its xattrs and GNU long-name entries where the names do not fit.
    fn append(
        &mut self,
        mut h: tar::Header,
        name: &[u8],
        link: Option<&[u8]>,
        attrs: &[(Vec<u8>, Vec<u8>)],
        data: impl Read,
    ) -> io::Result<()> {
        if !attrs.is_empty() {
            let mut records = Vec::new();
            for (k, v) in attrs {
                let mut key = b"SCHILY.xattr.".to_vec();
                key.extend_from_slice(k);
                records.extend(spec::pax::record(&key, v));
            }
            let mut x = tar::Header::new_ustar();
            let mut pax_name = b"PaxHeaders/".to_vec();
            pax_name.extend_from_slice(
                name.rsplit(|b| *b == b'/')
                    .find(|c| !c.is_empty())
                    .unwrap_or(b"x"),
            );
            pax_name.truncate(99);
            if let Some(u) = x.as_ustar_mut() {
                u.name[..pax_name.len()].copy_from_slice(&pax_name);
            }
            x.set_mode(0o644);
            x.set_mtime(h.mtime().unwrap_or(0));
            x.set_entry_type(tar::EntryType::XHeader);
            x.set_size(records.len() as u64);
            x.set_cksum();
            self.tar.append(&x, &records[..])?;
        }
        let gnu = h
            .as_gnu_mut()
            .ok_or_else(|| io::Error::other("not a gnu header"))?;
        if name.len() > gnu.name.len() {
            let (lh, ld) = crate::archive::long_entry(b'L', name);
            self.tar.append(&lh, &ld[..])?;
        }
        let n = name.len().min(gnu.name.len());
        gnu.name[..n].copy_from_slice(&name[..n]);
        if let Some(link) = link {
            if link.len() > gnu.linkname.len() {
                let (lh, ld) = crate::archive::long_entry(b'K', link);
                self.tar.append(&lh, &ld[..])?;
            }
            let n = link.len().min(gnu.linkname.len());
            gnu.linkname[..n].copy_from_slice(&link[..n]);
        }
        h.set_cksum();
        self.tar.append(&h, data)
    }
}

fn bytes(p: &Path) -> &[u8] {
    p.as_os_str().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// (name, type, link target, xattrs, mtime) of every entry, PAX headers folded in.
    type Entry = (String, tar::EntryType, String, Vec<(String, Vec<u8>)>, u64);

    fn entries(tar: &[u8]) -> Vec<Entry> {
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
                let mut x = Vec::new();
                if let Some(p) = e.pax_extensions().unwrap() {
                    for r in p {
                        let r = r.unwrap();
                        x.push((r.key().unwrap().to_string(), r.value_bytes().to_vec()));
                    }
                }
                let mtime = e.header().mtime().unwrap();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                (name, kind, link, x, mtime)
            })
            .collect()
    }

    struct Overlay {
        dir: tempfile::TempDir,
    }

    impl Overlay {
        fn merged(&self) -> PathBuf {
            self.dir.path().join("merged")
        }
        fn upper(&self) -> PathBuf {
            self.dir.path().join("upper")
        }
    }

    impl Drop for Overlay {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(&self.merged(), nix::mount::MntFlags::MNT_DETACH);
        }
    }

    /// A real overlay mount whose lower holds /etc/{passwd,group}, /data/{a,b} and /gone.
    fn overlay() -> Option<Overlay> {
        if let Some(why) = test_support::missing_root("mounting overlayfs") {
            test_support::skip(&why);
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        for d in ["lower/etc", "lower/data", "upper", "work", "merged"] {
            fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        fs::write(dir.path().join("lower/etc/passwd"), "root:x:0:0\n").unwrap();
        fs::write(dir.path().join("lower/etc/group"), "root:x:0:\n").unwrap();
        fs::write(dir.path().join("lower/data/a"), "a").unwrap();
        fs::write(dir.path().join("lower/data/b"), "b").unwrap();
        fs::write(dir.path().join("lower/gone"), "x").unwrap();
        let p = |s: &str| dir.path().join(s).display().to_string();
        let data = format!(
            "lowerdir={},upperdir={},workdir={}",
            p("lower"),
            p("upper"),
            p("work")
        );
        nix::mount::mount(
            Some("overlay"),
            &dir.path().join("merged"),
            Some("overlay"),
            nix::mount::MsFlags::empty(),
            Some(data.as_str()),
        )
        .unwrap();
        Some(Overlay { dir })
    }

    fn setxattr(path: &Path, key: &str, value: &[u8]) {
        let p = CString::new(path.as_os_str().as_bytes()).unwrap();
        let k = CString::new(key).unwrap();
        // SAFETY: NUL-terminated strings and a buffer of the length passed.
        let r = unsafe {
            libc::lsetxattr(
                p.as_ptr(),
                k.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
        assert_eq!(r, 0, "setxattr {key}: {}", io::Error::last_os_error());
    }

    #[test]
    fn upper_becomes_an_oci_layer() {
        let Some(o) = overlay() else { return };
        let m = o.merged();
        // A new file with an xattr, a changed file, a deleted file, a directory replaced
        // wholesale (opaque), hard links and a symlink.
        fs::write(m.join("new"), "new\n").unwrap();
        setxattr(&m.join("new"), "user.note", b"hello=world");
        fs::write(m.join("etc/passwd"), "root:x:0:0\nme:x:1000:1000\n").unwrap();
        fs::remove_file(m.join("gone")).unwrap();
        fs::remove_dir_all(m.join("data")).unwrap();
        fs::create_dir(m.join("data")).unwrap();
        fs::write(m.join("data/c"), "c").unwrap();
        fs::write(m.join("data/one"), "1").unwrap();
        fs::hard_link(m.join("data/one"), m.join("data/two")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", m.join("link")).unwrap();

        let mut buf = Vec::new();
        capture(&o.upper(), None, &[], &mut buf).unwrap();
        let e = entries(&buf);
        let summary: Vec<(&str, tar::EntryType, &str)> = e
            .iter()
            .map(|(n, k, l, _, _)| (n.as_str(), *k, l.as_str()))
            .collect();
        use tar::EntryType as T;
        assert_eq!(
            summary,
            vec![
                ("data/", T::Directory, ""),
                ("data/.wh..wh..opq", T::Regular, ""),
                ("data/c", T::Regular, ""),
                ("data/one", T::Regular, ""),
                ("data/two", T::Link, "data/one"),
                ("etc/", T::Directory, ""),
                ("etc/passwd", T::Regular, ""),
                // In the order of the upper's names: `gone` is the whiteout's.
                (".wh.gone", T::Regular, ""),
                ("link", T::Symlink, "/etc/passwd"),
                ("new", T::Regular, ""),
            ]
        );
        // The user's xattr is a PAX record; overlay's own (opaque, origin) are not.
        let new = e.iter().find(|x| x.0 == "new").unwrap();
        assert_eq!(
            new.3,
            vec![(
                "SCHILY.xattr.user.note".to_string(),
                b"hello=world".to_vec()
            )]
        );
        for x in &e {
            assert!(
                x.3.iter().all(|(k, _)| !k.contains("overlay")),
                "{} carries overlay's xattrs: {:?}",
                x.0,
                x.3
            );
        }
        // The content is the upper's.
        let mut a = tar::Archive::new(&buf[..]);
        for f in a.entries().unwrap() {
            let mut f = f.unwrap();
            if f.path_bytes().as_ref() == b"etc/passwd" {
                let mut s = String::new();
                f.read_to_string(&mut s).unwrap();
                assert_eq!(s, "root:x:0:0\nme:x:1000:1000\n");
            }
        }
        // The same upper gives the same bytes.
        let mut again = Vec::new();
        capture(&o.upper(), None, &[], &mut again).unwrap();
        assert_eq!(buf, again);
    }

    #[test]
    fn mtimes_are_clamped_to_source_date_epoch() {
        let Some(o) = overlay() else { return };
        fs::write(o.merged().join("new"), "x").unwrap();
        fs::write(o.merged().join("skipped"), "x").unwrap();
        fs::remove_file(o.merged().join("gone")).unwrap();
        let mut buf = Vec::new();
        capture(
            &o.upper(),
            Some(1_000_000),
            &[PathBuf::from("skipped")],
            &mut buf,
        )
        .unwrap();
        let e = entries(&buf);
        assert_eq!(e.len(), 2);
        assert!(e.iter().all(|x| x.4 == 1_000_000), "{e:?}");
        // Without the epoch the files keep their own (recent) times.
        let mut buf = Vec::new();
        capture(&o.upper(), None, &[], &mut buf).unwrap();
        assert!(entries(&buf).iter().all(|x| x.4 > 1_000_000));
    }

    #[test]
    fn a_missing_upper_is_not_found() {
        let d = tempfile::tempdir().unwrap();
        let r = capture(&d.path().join("nope"), None, &[], Vec::new());
        assert!(matches!(r, Err(FsError::NotFound(_))), "{r:?}");
    }
}
