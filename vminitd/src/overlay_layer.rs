//! Unpacking an OCI layer tar into a directory that overlayfs can use as a lower layer (the
//! builder VM's `/scratch/layers/<n>`): the OCI whiteout `.wh.NAME` becomes a character
//! device 0/0 named NAME, the opaque marker `.wh..wh..opq` becomes the xattr
//! `trusted.overlay.opaque=y` on its directory, everything else unpacks as is, with its
//! owner, mode, time and extended attributes (`SCHILY.xattr.` PAX records in the
//! `user.`, `trusted.` and `security.` namespaces: a file's capabilities and labels survive
//! a RUN that copies it up). Other namespaces (`system.` ACLs) are left out.
//!
//! The tar is read raw: PAX headers and GNU long names are parsed here, PAX records by
//! their length with [`spec::pax`] (a binary value may hold newlines, which the tar crate's
//! reader cuts at). A layer is untrusted: overlayfs's own attributes (`trusted.overlay.*`,
//! `user.overlay.*`) in it are refused, as they would steer the overlay (redirects,
//! origins, opaque directories) rather than describe a file.
//!
//! Names are checked before anything is created: an absolute name or a `..` component is
//! refused, no directory on the way to an entry may be a symbolic link, and an existing
//! entry of the same name is replaced, never written through, so a layer cannot make the
//! guest write outside the destination.

use std::ffi::{CString, OsStr};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{Mode, SFlag, mknod};

use crate::fsops::FsError;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";
/// The most bytes of one PAX header or GNU long-name entry.
const MAX_EXTENSION: u64 = 1 << 20;
/// The xattr namespaces a layer's files keep.
const XATTR_NAMESPACES: [&[u8]; 3] = [b"user.", b"trusted.", b"security."];

fn invalid(name: &Path, why: &str) -> FsError {
    FsError::Invalid(format!("layer entry {}: {why}", name.display()))
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> FsError + 'a {
    move |source| FsError::Io {
        what,
        path: path.display().to_string(),
        source,
    }
}

/// The entry's name as plain components (`./a/b` -> `a/b`), or an error for an escape.
fn relative(name: &Path) -> Result<PathBuf, FsError> {
    let mut out = PathBuf::new();
    for c in name.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            _ => return Err(invalid(name, "leaves the layer")),
        }
    }
    Ok(out)
}

/// Creates `rel` below `dest` one component at a time, refusing symbolic links on the way.
fn directory_inside(dest: &Path, rel: &Path) -> Result<PathBuf, FsError> {
    let mut at = dest.to_path_buf();
    for c in rel.components() {
        at.push(c);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(invalid(rel, "a directory on its way is a symbolic link"));
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(invalid(rel, "a parent is not a directory")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::create_dir(&at).map_err(io("creating", &at))?;
            }
            Err(e) => return Err(io("reading", &at)(e)),
        }
    }
    Ok(at)
}

fn c_path(path: &Path) -> Result<CString, FsError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| invalid(path, "holds a NUL byte"))
}

/// Sets the xattr `name` of `path` itself (a symbolic link is not followed).
fn set_xattr(path: &Path, name: &[u8], value: &[u8]) -> Result<(), FsError> {
    let p = c_path(path)?;
    let n = CString::new(name).map_err(|_| invalid(path, "an xattr name holds a NUL byte"))?;
    // SAFETY: both strings are NUL-terminated and live across the call; `value` is a buffer
    // whose length is passed.
    let rc = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc != 0 {
        return Err(io("setting an xattr of", path)(io::Error::last_os_error()));
    }
    Ok(())
}

fn set_opaque(dir: &Path) -> Result<(), FsError> {
    set_xattr(dir, b"trusted.overlay.opaque", b"y")
}

/// What the PAX headers and GNU long names before an entry say about it.
#[derive(Debug, Default)]
struct Extensions {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    size: Option<u64>,
    uid: Option<u64>,
    gid: Option<u64>,
    mtime: Option<i64>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

fn number<T: std::str::FromStr>(key: &str, value: &[u8]) -> Result<T, FsError> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| FsError::Invalid(format!("a PAX {key} is not a number")))
}

impl Extensions {
    /// Takes one extension header's data.
    fn add(&mut self, kind: tar::EntryType, mut data: Vec<u8>) -> Result<(), FsError> {
        match kind {
            tar::EntryType::GNULongName | tar::EntryType::GNULongLink => {
                while data.last() == Some(&0) {
                    data.pop();
                }
                let slot = if kind == tar::EntryType::GNULongName {
                    &mut self.path
                } else {
                    &mut self.link
                };
                // A PAX name wins over a GNU one, whichever came first.
                slot.get_or_insert(data);
            }
            _ => {
                let records = spec::pax::records(&data)
                    .map_err(|e| FsError::Invalid(format!("a layer's PAX header: {e}")))?;
                for r in records {
                    match r.key {
                        b"path" => self.path = Some(r.value.to_vec()),
                        b"linkpath" => self.link = Some(r.value.to_vec()),
                        b"size" => self.size = Some(number("size", r.value)?),
                        b"uid" => self.uid = Some(number("uid", r.value)?),
                        b"gid" => self.gid = Some(number("gid", r.value)?),
                        b"mtime" => {
                            let whole = r.value.split(|b| *b == b'.').next().unwrap_or_default();
                            self.mtime = Some(number("mtime", whole)?);
                        }
                        key => {
                            if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                                self.xattr(name, r.value)?;
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn xattr(&mut self, name: &[u8], value: &[u8]) -> Result<(), FsError> {
        if name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.") {
            return Err(FsError::Invalid(format!(
                "a layer may not set overlayfs's own attribute {}",
                String::from_utf8_lossy(name)
            )));
        }
        if XATTR_NAMESPACES.iter().any(|ns| name.starts_with(ns)) {
            self.xattrs.push((name.to_vec(), value.to_vec()));
        }
        Ok(())
    }
}

/// Removes whatever `path` names (a directory with its contents), so an entry replaces it.
fn remove_existing(path: &Path) -> Result<(), FsError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path).map_err(io("replacing", path)),
        Ok(_) => std::fs::remove_file(path).map_err(io("replacing", path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("reading", path)(e)),
    }
}

/// The metadata an unpacked entry gets, in the order that keeps it: the owner first
/// (changing it clears set-id bits and capabilities), then the mode, the xattrs, the time.
struct Meta<'a> {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: i64,
    xattrs: &'a [(Vec<u8>, Vec<u8>)],
}

impl Meta<'_> {
    fn apply(&self, path: &Path, symlink: bool) -> Result<(), FsError> {
        std::os::unix::fs::lchown(path, Some(self.uid), Some(self.gid))
            .map_err(io("changing the owner of", path))?;
        if !symlink {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(self.mode))
                .map_err(io("changing the mode of", path))?;
        }
        for (name, value) in self.xattrs {
            set_xattr(path, name, value)?;
        }
        let t = nix::sys::time::TimeSpec::new(self.mtime, 0);
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            path,
            &t,
            &t,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .map_err(|e| io("setting the time of", path)(e.into()))
    }
}

/// Unpacks the uncompressed layer tar `input` into the existing directory `destination` in
/// overlay form.
pub fn unpack<R: Read>(destination: &str, input: R) -> Result<(), FsError> {
    let dest = crate::fsops::absolute(destination)?.to_path_buf();
    let mut archive = tar::Archive::new(input);
    let entries = archive
        .entries()
        .map_err(io("reading the layer for", &dest))?
        .raw(true);
    let mut pending = Extensions::default();
    for entry in entries {
        let mut entry = entry.map_err(io("reading the layer for", &dest))?;
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XHeader | tar::EntryType::GNULongName | tar::EntryType::GNULongLink
        ) {
            let size = entry
                .header()
                .entry_size()
                .map_err(io("reading the layer for", &dest))?;
            if size > MAX_EXTENSION {
                return Err(FsError::Invalid(format!(
                    "a layer's extension header of {size} bytes is too large"
                )));
            }
            let mut data = Vec::with_capacity(size as usize);
            entry
                .read_to_end(&mut data)
                .map_err(io("reading the layer for", &dest))?;
            pending.add(kind, data)?;
            continue;
        }
        let ext = std::mem::take(&mut pending);
        if kind == tar::EntryType::XGlobalHeader {
            continue; // describes the archive, not a file
        }
        unpack_entry(&dest, &mut entry, ext)?;
    }
    Ok(())
}

/// An old GNU sparse entry's layout: its real size and the stored chunks (offset, length).
struct SparseMap {
    real_size: u64,
    chunks: Vec<(u64, u64)>,
}

/// The sparse layout of an old GNU sparse entry, from its header. The tar is read raw, so
/// extension sparse headers (more than four chunks) cannot be followed: they are refused
/// rather than misread.
fn gnu_sparse_map(header: &tar::Header) -> Result<SparseMap, &'static str> {
    let gnu = header.as_gnu().ok_or("is sparse without a GNU header")?;
    if gnu.is_extended() {
        return Err("is a GNU sparse file of more than four chunks, which is not supported");
    }
    let real_size = gnu.real_size().map_err(|_| "has a malformed sparse size")?;
    let mut chunks = Vec::new();
    for s in gnu.sparse.iter().filter(|s| !s.is_empty()) {
        let offset = s.offset().map_err(|_| "has a malformed sparse map")?;
        let length = s.length().map_err(|_| "has a malformed sparse map")?;
        if offset.checked_add(length).is_none_or(|end| end > real_size) {
            return Err("has a sparse chunk beyond its size");
        }
        chunks.push((offset, length));
    }
    Ok(SparseMap { real_size, chunks })
}

/// Writes the stored chunks of a sparse entry at their offsets; the rest stays a hole.
fn write_sparse(data: &mut impl Read, file: &std::fs::File, map: &SparseMap) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.set_len(map.real_size)?;
    let mut buf = vec![0u8; 64 * 1024];
    for &(offset, length) in &map.chunks {
        let mut done = 0;
        while done < length {
            let want = (length - done).min(buf.len() as u64) as usize;
            data.read_exact(&mut buf[..want])?;
            file.write_all_at(&buf[..want], offset + done)?;
            done += want as u64;
        }
    }
    Ok(())
}

/// Unpacks one entry (its extension headers already read into `ext`).
fn unpack_entry<R: Read>(
    dest: &Path,
    entry: &mut tar::Entry<'_, R>,
    ext: Extensions,
) -> Result<(), FsError> {
    let raw_name = ext
        .path
        .clone()
        .unwrap_or_else(|| entry.path_bytes().into_owned());
    let name = PathBuf::from(OsStr::from_bytes(&raw_name));
    let rel = relative(&name)?;
    let Some(base) = rel.file_name().map(|b| b.to_string_lossy().into_owned()) else {
        return Ok(()); // the layer's root directory itself
    };
    let parent = rel.parent().unwrap_or(Path::new(""));
    if base == OPAQUE {
        let dir = directory_inside(dest, parent)?;
        return set_opaque(&dir);
    }
    if let Some(hidden) = base.strip_prefix(WHITEOUT_PREFIX) {
        if hidden.is_empty() || hidden == "." || hidden == ".." {
            return Err(invalid(&name, "names no file"));
        }
        let target = directory_inside(dest, parent)?.join(hidden);
        remove_existing(&target)?;
        return mknod(&target, SFlag::S_IFCHR, Mode::empty(), 0).map_err(|e| FsError::Io {
            what: "creating the whiteout",
            path: target.display().to_string(),
            source: io::Error::from(e),
        });
    }
    let header = entry.header().clone();
    let bad = |what: &str| invalid(&name, what);
    let size = header
        .entry_size()
        .map_err(|_| bad("has a malformed size"))?;
    if ext.size.is_some_and(|s| s != size) {
        return Err(bad("has a PAX size unlike its header's"));
    }
    let id = |pax: Option<u64>, field: io::Result<u64>| -> Result<u32, FsError> {
        let v = match pax {
            Some(v) => v,
            None => field.map_err(|_| bad("has a malformed owner"))?,
        };
        u32::try_from(v).map_err(|_| bad("has an owner beyond 32 bits"))
    };
    let meta = Meta {
        uid: id(ext.uid, header.uid())?,
        gid: id(ext.gid, header.gid())?,
        mode: header.mode().map_err(|_| bad("has a malformed mode"))? & 0o7777,
        mtime: match ext.mtime {
            Some(t) => t,
            None => header.mtime().map_err(|_| bad("has a malformed time"))? as i64,
        },
        xattrs: &ext.xattrs,
    };
    let dir = directory_inside(dest, parent)?;
    let target = dir.join(&base);
    let link_name = || -> Result<PathBuf, FsError> {
        let raw = ext
            .link
            .clone()
            .or_else(|| entry.link_name_bytes().map(|l| l.into_owned()))
            .ok_or_else(|| bad("a link without a target"))?;
        Ok(PathBuf::from(OsStr::from_bytes(&raw)))
    };
    use tar::EntryType as T;
    match header.entry_type() {
        T::Directory => {
            if !std::fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) {
                remove_existing(&target)?;
                std::fs::create_dir(&target).map_err(io("creating", &target))?;
            }
            meta.apply(&target, false)
        }
        T::Regular | T::Continuous | T::GNUSparse => {
            let chunks = match header.entry_type() {
                T::GNUSparse => Some(gnu_sparse_map(&header).map_err(bad)?),
                _ => None,
            };
            remove_existing(&target)?;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_NOFOLLOW)
                .mode(0o600)
                .open(&target)
                .map_err(io("creating", &target))?;
            match chunks {
                None => {
                    let copied = io::copy(entry, &mut file).map_err(io("writing", &target))?;
                    if copied != size {
                        return Err(bad("ends before its size"));
                    }
                }
                Some(map) => {
                    write_sparse(entry, &file, &map).map_err(io("writing", &target))?;
                }
            }
            drop(file);
            meta.apply(&target, false)
        }
        T::Symlink => {
            let link = link_name()?;
            remove_existing(&target)?;
            std::os::unix::fs::symlink(&link, &target).map_err(io("creating", &target))?;
            meta.apply(&target, true)
        }
        T::Link => {
            let link = relative(&link_name()?)?;
            let link_parent = link.parent().unwrap_or(Path::new(""));
            let Some(link_base) = link.file_name() else {
                return Err(bad("is a hard link to the layer's root"));
            };
            let source = directory_inside(dest, link_parent)?.join(link_base);
            if source == target {
                return Ok(());
            }
            remove_existing(&target)?;
            std::fs::hard_link(&source, &target).map_err(io("linking", &target))
        }
        T::Char | T::Block | T::Fifo => {
            let kind = match header.entry_type() {
                T::Char => SFlag::S_IFCHR,
                T::Block => SFlag::S_IFBLK,
                _ => SFlag::S_IFIFO,
            };
            let major = header.device_major().ok().flatten().unwrap_or(0);
            let minor = header.device_minor().ok().flatten().unwrap_or(0);
            remove_existing(&target)?;
            mknod(
                &target,
                kind,
                Mode::from_bits_truncate(meta.mode),
                libc::makedev(major, minor),
            )
            .map_err(|e| io("creating", &target)(e.into()))?;
            meta.apply(&target, false)
        }
        other => Err(bad(&format!("has an unsupported type {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_size(data.len() as u64);
            h.set_mode(if *kind == tar::EntryType::Directory {
                0o755
            } else {
                0o644
            });
            h.set_path(name).unwrap();
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
        let p = CString::new(path.as_os_str().as_bytes()).unwrap();
        let n = CString::new(name).unwrap();
        let mut buf = vec![0u8; 256];
        // SAFETY: NUL-terminated strings and a writable buffer of the length passed.
        let len =
            unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        (len >= 0).then(|| buf[..len as usize].to_vec())
    }

    /// A tar of one regular file `name` (any length) carrying `xattrs`, as PAX records.
    fn tar_with_pax(name: &str, xattrs: &[(&str, &[u8])]) -> Vec<u8> {
        let mut records = spec::pax::record(b"path", name.as_bytes());
        for (k, v) in xattrs {
            records.extend(spec::pax::record(format!("SCHILY.xattr.{k}").as_bytes(), v));
        }
        let mut b = tar::Builder::new(Vec::new());
        let mut x = tar::Header::new_ustar();
        x.set_entry_type(tar::EntryType::XHeader);
        x.set_size(records.len() as u64);
        x.set_path("PaxHeaders/f").unwrap();
        x.set_cksum();
        b.append(&x, &records[..]).unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_path("short-name").unwrap();
        h.set_mode(0o4755);
        h.set_uid(1000);
        h.set_gid(1000);
        h.set_mtime(1_000_000);
        h.set_size(4);
        h.set_cksum();
        b.append(&h, &b"body"[..]).unwrap();
        b.into_inner().unwrap()
    }

    #[test]
    fn xattrs_owner_mode_and_long_pax_names_are_kept() {
        if let Some(why) = test_support::missing_root("setting trusted. and security. xattrs") {
            test_support::skip(&why);
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().to_str().unwrap().to_string();
        let long = format!("deep/{}/tool", "d".repeat(120));
        // A binary capability holding newline bytes: one record, cut by its length.
        let cap: &[u8] = &[
            1, 0, 0, 2, 0x0a, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        let tar = tar_with_pax(
            &long,
            &[
                ("user.note", b"two\nlines"),
                ("security.capability", cap),
                ("trusted.mine", b"t"),
                ("system.unknown", b"left out"),
            ],
        );
        unpack(&dest, &tar[..]).unwrap();
        let f = dir.path().join(&long);
        assert_eq!(std::fs::read(&f).unwrap(), b"body");
        assert_eq!(get_xattr(&f, "user.note").unwrap(), b"two\nlines");
        assert_eq!(get_xattr(&f, "security.capability").unwrap(), cap);
        assert_eq!(get_xattr(&f, "trusted.mine").unwrap(), b"t");
        assert!(!dir.path().join("short-name").exists());
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(&f).unwrap();
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (1000, 1000, 0o4755));
        assert_eq!(m.mtime(), 1_000_000);
    }

    #[test]
    fn overlay_attributes_in_a_layer_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().to_str().unwrap().to_string();
        for key in ["trusted.overlay.redirect", "user.overlay.opaque"] {
            let tar = tar_with_pax("f", &[(key, b"y")]);
            let err = unpack(&dest, &tar[..]).unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
            assert!(
                !dir.path().join("f").exists(),
                "{key}: the entry was unpacked"
            );
        }
    }

    #[test]
    fn an_entry_replaces_what_the_lower_had_and_never_writes_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let dest = dir.path().to_str().unwrap().to_string();
        std::os::unix::fs::symlink(outside.path().join("victim"), dir.path().join("f")).unwrap();
        let tar = tar_of(&[
            ("f", tar::EntryType::Regular, b"new"),
            ("d/", tar::EntryType::Directory, b""),
            ("d/x", tar::EntryType::Regular, b"x"),
            ("d", tar::EntryType::Regular, b"now a file"),
        ]);
        unpack(&dest, &tar[..]).unwrap();
        assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"new");
        assert!(!outside.path().join("victim").exists());
        assert_eq!(std::fs::read(dir.path().join("d")).unwrap(), b"now a file");
    }

    #[test]
    fn gnu_sparse_files_unpack_with_their_holes() {
        if let Some(why) = test_support::missing_file("/usr/bin/tar", "writing a GNU sparse tar") {
            test_support::skip(&why);
            return;
        }
        use std::os::unix::fs::FileExt;
        let src = tempfile::tempdir().unwrap();
        let f = std::fs::File::create(src.path().join("sparse")).unwrap();
        f.set_len(8 << 20).unwrap();
        f.write_all_at(b"middle", 1 << 20).unwrap();
        f.write_all_at(b"end", (8 << 20) - 3).unwrap();
        drop(f);
        let out = std::process::Command::new("tar")
            .args(["--format=gnu", "--sparse", "-cf", "-", "-C"])
            .arg(src.path())
            .arg("sparse")
            .output()
            .unwrap();
        assert!(out.status.success());
        let dir = tempfile::tempdir().unwrap();
        unpack(dir.path().to_str().unwrap(), &out.stdout[..]).unwrap();
        let got = std::fs::read(dir.path().join("sparse")).unwrap();
        let want = std::fs::read(src.path().join("sparse")).unwrap();
        assert_eq!(got.len(), want.len());
        assert!(got == want, "the content differs");
    }

    #[test]
    fn names_that_leave_the_layer_are_refused() {
        assert!(relative(Path::new("../x")).is_err());
        assert!(relative(Path::new("/etc/x")).is_err());
        assert_eq!(relative(Path::new("./a/b")).unwrap(), PathBuf::from("a/b"));
    }

    #[test]
    fn regular_entries_unpack_and_symlinked_whiteout_parents_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().to_str().unwrap().to_string();
        let tar = tar_of(&[
            ("a/", tar::EntryType::Directory, b""),
            ("a/f", tar::EntryType::Regular, b"hello"),
        ]);
        unpack(&dest, &tar[..]).unwrap();
        assert_eq!(std::fs::read(dir.path().join("a/f")).unwrap(), b"hello");

        std::os::unix::fs::symlink("/", dir.path().join("link")).unwrap();
        let tar = tar_of(&[("link/.wh.etc", tar::EntryType::Regular, b"")]);
        let err = unpack(&dest, &tar[..]).unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");
    }
}
