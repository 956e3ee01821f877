//! Unpacking an OCI layer tar into a directory that overlayfs can use as a lower layer (the
//! builder VM's `/scratch/layers/<n>`): the OCI whiteout `.wh.NAME` becomes a character
//! device 0/0 named NAME, the opaque marker `.wh..wh..opq` becomes the xattr
//! `trusted.overlay.opaque=y` on its directory, everything else unpacks as is.
//!
//! Names are checked before anything is created: an absolute name or a `..` component is
//! refused, and no directory on the way to a whiteout may be a symbolic link, so a layer
//! cannot make the guest write outside the destination. Regular entries go through the tar
//! crate's `unpack_in`, which refuses the same escapes.

use std::ffi::CString;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{Mode, SFlag, mknod};

use crate::fsops::FsError;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

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

fn set_opaque(dir: &Path) -> Result<(), FsError> {
    let path =
        CString::new(dir.as_os_str().as_bytes()).map_err(|_| invalid(dir, "holds a NUL byte"))?;
    let name = c"trusted.overlay.opaque";
    // SAFETY: both strings are NUL-terminated and live across the call; the value is a
    // 1-byte buffer whose length is passed.
    let rc = unsafe { libc::setxattr(path.as_ptr(), name.as_ptr(), b"y".as_ptr().cast(), 1, 0) };
    if rc != 0 {
        return Err(io("marking opaque", dir)(io::Error::last_os_error()));
    }
    Ok(())
}

/// Unpacks the uncompressed layer tar `input` into the existing directory `destination` in
/// overlay form.
pub fn unpack<R: Read>(destination: &str, input: R) -> Result<(), FsError> {
    let dest = crate::fsops::absolute(destination)?.to_path_buf();
    let mut archive = tar::Archive::new(input);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(true);
    let entries = archive
        .entries()
        .map_err(io("reading the layer for", &dest))?;
    for entry in entries {
        let mut entry = entry.map_err(io("reading the layer for", &dest))?;
        let name = entry
            .path()
            .map_err(io("reading an entry name for", &dest))?
            .into_owned();
        let rel = relative(&name)?;
        let Some(base) = rel.file_name().map(|b| b.to_string_lossy().into_owned()) else {
            continue; // the layer's root directory itself
        };
        let parent = rel.parent().unwrap_or(Path::new(""));
        if base == OPAQUE {
            let dir = directory_inside(&dest, parent)?;
            set_opaque(&dir)?;
        } else if let Some(hidden) = base.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.is_empty() || hidden == "." || hidden == ".." {
                return Err(invalid(&name, "names no file"));
            }
            let dir = directory_inside(&dest, parent)?;
            let target = dir.join(hidden);
            match std::fs::symlink_metadata(&target) {
                Ok(m) if m.is_dir() => {
                    std::fs::remove_dir_all(&target).map_err(io("replacing", &target))?
                }
                Ok(_) => std::fs::remove_file(&target).map_err(io("replacing", &target))?,
                Err(_) => {}
            }
            mknod(&target, SFlag::S_IFCHR, Mode::empty(), 0).map_err(|e| FsError::Io {
                what: "creating the whiteout",
                path: target.display().to_string(),
                source: io::Error::from(e),
            })?;
        } else {
            let unpacked = entry
                .unpack_in(&dest)
                .map_err(io("unpacking into", &dest))?;
            if !unpacked {
                return Err(invalid(&name, "leaves the layer"));
            }
        }
    }
    Ok(())
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
