//! Empty filesystems from a template: one formatted image per size and label is kept in a
//! directory, and each new empty filesystem is a clone of it (a reflink where the host
//! filesystem has them, else a sparse copy of its data extents), not a new format.
//!
//! Every clone carries the template's UUID. That is fine for a container's writable layer:
//! each VM sees one, and the guest finds disks by serial, never by UUID. Templates are named
//! after the writer's version too, so a new writer never clones an old writer's image.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use crate::{Error, Options, format_empty};

/// How [`clone_file`] made its copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloneKind {
    /// The destination shares the source's blocks (`FICLONE`) until either is written.
    Reflink,
    /// Only the source's data extents were copied; its holes stay holes.
    SparseCopy,
}

/// How [`empty_from_template`] made the filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Made {
    /// Cloned from a template that already existed.
    Cloned(CloneKind),
    /// The template was missing: it was formatted first, then cloned.
    FormattedTemplate(CloneKind),
}

/// The template file for `size` bytes and `options.label` in `dir`.
pub fn template_path(dir: &Path, size: u64, options: &Options) -> PathBuf {
    let label: String = options
        .label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    dir.join(format!(
        "empty-{size}-{label}-{}.ext4",
        env!("CARGO_PKG_VERSION")
    ))
}

/// Writes an empty ext4 filesystem of `size` bytes at `path` (which must not exist) as a
/// clone of `dir`'s template for that size and label, formatting the template first when
/// it is missing. The template is formatted under a temp name and renamed into place, so
/// a crash or a concurrent caller never sees half of one; `path` is written the same way.
///
/// `options.uuid` and `options.timestamp` are the template's, fixed when it was made.
pub fn empty_from_template(
    dir: &Path,
    path: &Path,
    size: u64,
    options: &Options,
) -> Result<Made, Error> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    let template = template_path(dir, size, options);
    let formatted = if template.is_file() {
        false
    } else {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let tmp = temp_beside(&template);
        format_empty(&tmp, size, options).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })?;
        std::fs::rename(&tmp, &template).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::Io {
                path: template.clone(),
                source: e,
            }
        })?;
        true
    };
    let tmp = temp_beside(path);
    let kind = clone_file(&template, &tmp).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::Io {
            path: tmp.clone(),
            source: e,
        }
    })?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::Io {
            path: path.to_path_buf(),
            source: e,
        }
    })?;
    Ok(if formatted {
        Made::FormattedTemplate(kind)
    } else {
        Made::Cloned(kind)
    })
}

/// A name beside `path` no other caller uses: `.<name>.<pid>.<counter>.tmp`.
fn temp_beside(path: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Copies `src` to a new file `dst` of the same length: a reflink when the filesystem
/// offers one, else its data extents only (`SEEK_DATA`/`SEEK_HOLE`), so holes stay holes.
pub fn clone_file(src: &Path, dst: &Path) -> io::Result<CloneKind> {
    let source = File::open(src)?;
    let dest = OpenOptions::new().write(true).create_new(true).open(dst)?;
    if reflink(&source, &dest).is_ok() {
        return Ok(CloneKind::Reflink);
    }
    sparse_copy(&source, &dest)?;
    Ok(CloneKind::SparseCopy)
}

#[cfg(target_os = "linux")]
fn reflink(source: &File, dest: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: FICLONE takes the source descriptor as its integer argument; both
    // descriptors are owned by files that outlive the call.
    let rc = unsafe { libc::ioctl(dest.as_raw_fd(), libc::FICLONE, source.as_raw_fd()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn reflink(_source: &File, _dest: &File) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// Copies the data extents of `source` into `dest` at the same offsets and gives `dest`
/// the source's length.
fn sparse_copy(source: &File, dest: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileExt;
    let len = source.metadata()?.len();
    dest.set_len(len)?;
    let seek = |offset: u64, whence: libc::c_int| -> io::Result<Option<u64>> {
        // SAFETY: lseek only reads its integer arguments; the descriptor is owned by
        // `source`, which outlives the call.
        let r = unsafe { libc::lseek(source.as_raw_fd(), offset as libc::off_t, whence) };
        if r >= 0 {
            return Ok(Some(r as u64));
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENXIO) {
            Ok(None) // no data at or after offset
        } else {
            Err(e)
        }
    };
    let mut buf = vec![0u8; 1 << 20];
    let mut offset = 0;
    while offset < len {
        let Some(data) = seek(offset, libc::SEEK_DATA)? else {
            break;
        };
        let end = seek(data, libc::SEEK_HOLE)?.unwrap_or(len).min(len);
        let mut at = data;
        while at < end {
            let n = ((end - at) as usize).min(buf.len());
            source.read_exact_at(&mut buf[..n], at)?;
            dest.write_all_at(&buf[..n], at)?;
            at += n as u64;
        }
        offset = end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> Options {
        Options {
            label: "container-rw".into(),
            ..Options::default()
        }
    }

    #[test]
    fn a_clone_is_the_template_byte_for_byte_and_stays_sparse() {
        let dir = tempfile::tempdir().unwrap();
        let templates = dir.path().join("templates");
        let size = 128 << 20;
        let first = dir.path().join("a.ext4");
        let second = dir.path().join("b.ext4");
        let made = empty_from_template(&templates, &first, size, &options()).unwrap();
        assert!(matches!(made, Made::FormattedTemplate(_)), "{made:?}");
        let made = empty_from_template(&templates, &second, size, &options()).unwrap();
        assert!(matches!(made, Made::Cloned(_)), "{made:?}");
        let template = template_path(&templates, size, &options());
        let t = std::fs::read(&template).unwrap();
        assert_eq!(t.len() as u64, size);
        assert!(t == std::fs::read(&first).unwrap());
        assert!(t == std::fs::read(&second).unwrap());
        // Only the template's temp names were ever beside it.
        let names: Vec<_> = std::fs::read_dir(&templates)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [template.file_name().unwrap()]);
        use std::os::unix::fs::MetadataExt;
        let allocated = std::fs::metadata(&second).unwrap().blocks() * 512;
        assert!(
            allocated < size / 8,
            "the clone takes {allocated} bytes of disk for a {size}-byte image"
        );
        for image in [&first, &second] {
            let out = std::process::Command::new("e2fsck")
                .arg("-fn")
                .arg(image)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "e2fsck: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }

    #[test]
    fn the_sparse_copy_keeps_data_at_its_offsets_and_holes_as_holes() {
        use std::os::unix::fs::FileExt;
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        let f = File::create(&src).unwrap();
        f.set_len(64 << 20).unwrap();
        f.write_all_at(b"start", 0).unwrap();
        f.write_all_at(b"middle", 32 << 20).unwrap();
        f.write_all_at(b"end", (64 << 20) - 3).unwrap();
        drop(f);
        let dst = dir.path().join("dst");
        let source = File::open(&src).unwrap();
        let dest = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&dst)
            .unwrap();
        sparse_copy(&source, &dest).unwrap();
        drop(dest);
        assert!(std::fs::read(&src).unwrap() == std::fs::read(&dst).unwrap());
        use std::os::unix::fs::MetadataExt;
        assert!(std::fs::metadata(&dst).unwrap().blocks() * 512 < 1 << 20);
        // A clone onto an existing file is refused, not an overwrite.
        let e = clone_file(&src, &dst).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
    }
}
