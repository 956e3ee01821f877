//! Crash-safe writes of the host's state, private to its owner.
//!
//! One job: put bytes on disk so that a crash leaves either the old file or the new one,
//! never a mix, and so that nothing written is readable by other users. Every state file
//! of the daemon, the runtime and the image store goes through here: a temp file beside the
//! destination (created 0600), fsync, rename, fsync the directory. Directories made here are
//! 0700 and append-only logs 0600, whatever the process's umask.
//!
//! It must not know what it writes (no formats, no paths of its own, no app-root layout),
//! choose where files go, or map errors onto a caller's kinds: it returns `std::io::Error`
//! and callers add what they were doing. It is host-side only; vminitd writes with the mode
//! its caller asks for and does not use it.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The directory a file named `path` lives in (`.` for a bare name).
fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Writes `bytes` to `path` so that a reader sees the old or the new content, never a mix:
/// a 0600 temp file beside it, fsync, rename, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = AtomicFile::new(path)?;
    file.file().write_all(bytes)?;
    file.commit()
}

/// fsyncs a directory so that renames and creations in it survive a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` and its missing parents with mode 0700; existing directories keep theirs.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Opens `path` for appending, creating it with mode 0600 (logs).
pub fn open_private_append(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// A file being written in place of `dest`: it lives as a 0600 temp file in `dest`'s
/// directory until [`AtomicFile::commit`] makes it `dest`, and is deleted if dropped before.
/// For content written by something that wants a path or a file (an ext4 image, a copied
/// kernel) rather than one slice of bytes.
#[derive(Debug)]
pub struct AtomicFile {
    tmp: tempfile::NamedTempFile,
    dest: PathBuf,
}

impl AtomicFile {
    /// A temp file named `.tmp-…` beside `dest`.
    pub fn new(dest: &Path) -> io::Result<Self> {
        Self::with_prefix(dest, ".tmp-")
    }

    /// A temp file whose name starts with `prefix` beside `dest`, for callers that sweep
    /// their own leftovers after a crash.
    pub fn with_prefix(dest: &Path, prefix: &str) -> io::Result<Self> {
        // tempfile creates the file 0600, the mode every state file keeps after the rename.
        let tmp = tempfile::Builder::new()
            .prefix(prefix)
            .tempfile_in(parent_dir(dest))?;
        Ok(Self {
            tmp,
            dest: dest.to_path_buf(),
        })
    }

    /// Where the content is being written now.
    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// The open temp file.
    pub fn file(&mut self) -> &mut File {
        self.tmp.as_file_mut()
    }

    /// fsyncs the content, renames it over the destination and fsyncs the directory.
    pub fn commit(self) -> io::Result<()> {
        self.tmp.as_file().sync_all()?;
        let dir = parent_dir(&self.dest).to_path_buf();
        self.tmp.persist(&self.dest).map_err(|e| e.error)?;
        sync_dir(&dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn write_atomic_replaces_whole_privately_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        fs::write(&p, b"old, readable by all").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(mode(&p), 0o600);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"]);
    }

    #[test]
    fn an_uncommitted_file_leaves_the_old_content_and_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("rootfs.ext4");
        fs::write(&p, b"old").unwrap();
        let mut f = AtomicFile::with_prefix(&p, "rootfs.ext4.tmp-").unwrap();
        assert!(
            f.path()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("rootfs.ext4.tmp-")
        );
        f.file().write_all(b"half").unwrap();
        drop(f);
        assert_eq!(fs::read(&p).unwrap(), b"old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn content_written_by_path_is_committed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("kernel");
        let f = AtomicFile::new(&p).unwrap();
        fs::write(f.path(), b"vmlinux").unwrap();
        f.commit().unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"vmlinux");
        assert_eq!(mode(&p), 0o600);
    }

    #[test]
    fn private_dirs_are_0700_and_logs_0600_and_append() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("a/b");
        create_private_dir(&d).unwrap();
        assert_eq!(mode(&d), 0o700);
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        let log = d.join("stdio.log");
        open_private_append(&log)
            .unwrap()
            .write_all(b"1\n")
            .unwrap();
        open_private_append(&log)
            .unwrap()
            .write_all(b"2\n")
            .unwrap();
        assert_eq!(fs::read(&log).unwrap(), b"1\n2\n");
        assert_eq!(mode(&log), 0o600);
    }

    #[test]
    fn a_missing_directory_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_atomic(&dir.path().join("gone/x"), b"1").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
