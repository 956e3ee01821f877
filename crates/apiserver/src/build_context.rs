//! The build context as it reaches the daemon: a tar the client sent (the CLI's plain tar,
//! or a Docker client's body, which may be gzip or zstd compressed), unpacked into the
//! build's work directory; and the Dockerfile a Docker client names by its path inside
//! that context. Nothing here knows about gRPC or HTTP.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};

/// The largest Dockerfile read from a context: a larger one is refused, not held.
const MAX_DOCKERFILE: u64 = 4 << 20;

/// Why a context could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("the build context is not a valid tar: {0}")]
    Tar(#[source] std::io::Error),
    #[error("{0}-compressed build contexts are not supported: send a plain, gzip or zstd tar")]
    Compression(&'static str),
    #[error("cannot locate specified Dockerfile: {0}")]
    NoDockerfile(String),
    #[error("the Dockerfile {0} is larger than 4 MiB")]
    TooLarge(String),
    #[error("the Dockerfile {0} is not UTF-8 text")]
    NotText(String),
    #[error("reading the Dockerfile {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl ContextError {
    /// The error's kind on the wire.
    pub fn kind(&self) -> api::ErrorKind {
        match self {
            ContextError::NoDockerfile(_) => api::ErrorKind::NotFound,
            ContextError::Read { .. } => api::ErrorKind::Internal,
            _ => api::ErrorKind::InvalidArgument,
        }
    }
}

impl From<ContextError> for api::ApiError {
    fn from(e: ContextError) -> api::ApiError {
        api::ApiError::new(e.kind(), e.to_string())
    }
}

/// What the first bytes of a context say about its compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    Bzip2,
    Xz,
}

impl Compression {
    /// Sniffs `head` (the first bytes, up to six).
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else if head.starts_with(b"BZh") {
            Compression::Bzip2
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Compression::Xz
        } else {
            Compression::None
        }
    }
}

/// The context stream `input` as an uncompressed tar stream, its compression sniffed from
/// its first bytes.
pub fn decompress<'a>(input: impl Read + 'a) -> Result<Box<dyn Read + 'a>, ContextError> {
    let mut reader = BufReader::with_capacity(1 << 16, input);
    let head = loop {
        match reader.fill_buf() {
            Ok(b) => break b.get(..6).unwrap_or(b).to_vec(),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ContextError::Tar(e)),
        }
    };
    Ok(match Compression::detect(&head) {
        Compression::None => Box::new(reader),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
        Compression::Zstd => {
            Box::new(zstd::Decoder::with_buffer(reader).map_err(ContextError::Tar)?)
        }
        Compression::Bzip2 => return Err(ContextError::Compression("bzip2")),
        Compression::Xz => return Err(ContextError::Compression("xz")),
    })
}

/// Unpacks the context stream `input` into `dest` (which exists) as it arrives, hashing
/// each regular file's content on the way in: the digests a COPY of the file is keyed
/// with, so a build never reads the context twice. Names with `..`, absolute names and
/// paths through a symlink are refused; other entries go through the tar crate's
/// `unpack_in`, which refuses the same.
pub fn unpack(input: impl Read, dest: &Path) -> Result<build::copy::KnownDigests, ContextError> {
    let mut archive = tar::Archive::new(decompress(input)?);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    let mut known = build::copy::KnownDigests::new();
    // Directories get their modes and times last, so a read-only one can still be filled.
    let mut dirs: Vec<(PathBuf, u32, u64)> = Vec::new();
    for entry in archive.entries().map_err(ContextError::Tar)? {
        let mut entry = entry.map_err(ContextError::Tar)?;
        let kind = entry.header().entry_type();
        if kind.is_file() {
            let path = entry.path().map_err(ContextError::Tar)?.into_owned();
            let (target, digest) = write_file(&mut entry, dest, &path)?;
            known.insert(target, digest);
        } else if kind.is_dir() {
            let path = entry.path().map_err(ContextError::Tar)?.into_owned();
            let Some(target) = place(dest, &path)? else {
                continue; // the context's root
            };
            match fs::symlink_metadata(&target) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(refused(
                        &path,
                        "would replace something that is not a directory",
                    ));
                }
                Err(_) => fs::create_dir(&target).map_err(ContextError::Tar)?,
            }
            let h = entry.header();
            dirs.push((
                target,
                h.mode().map_err(ContextError::Tar)? & 0o7777,
                h.mtime().unwrap_or(0),
            ));
        } else {
            entry.unpack_in(dest).map_err(ContextError::Tar)?;
        }
    }
    for (dir, mode, mtime) in dirs.into_iter().rev() {
        use std::os::unix::fs::PermissionsExt;
        let f = fs::File::open(&dir).map_err(ContextError::Tar)?;
        let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime);
        f.set_modified(when).map_err(ContextError::Tar)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).map_err(ContextError::Tar)?;
    }
    Ok(known)
}

fn refused(name: &Path, why: &str) -> ContextError {
    ContextError::Tar(std::io::Error::other(format!("{}: {why}", name.display())))
}

/// Where the entry `name` goes under `dest` (None for the root itself), its parents made
/// as real directories; `..`, absolute names and paths through a symlink are refused.
fn place(dest: &Path, name: &Path) -> Result<Option<PathBuf>, ContextError> {
    let mut rel = PathBuf::new();
    for c in name.components() {
        match c {
            Component::Normal(n) => rel.push(n),
            Component::CurDir => {}
            _ => return Err(refused(name, "names a path outside the context")),
        }
    }
    let Some(parent) = rel.parent() else {
        return Ok(None);
    };
    let mut dir = dest.to_path_buf();
    for c in parent.components() {
        dir.push(c);
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(refused(
                    name,
                    "lies below something that is not a directory",
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir(&dir).map_err(ContextError::Tar)?;
            }
            Err(e) => return Err(ContextError::Tar(e)),
        }
    }
    Ok(Some(dest.join(rel)))
}

/// Writes one regular file of the context under `dest`, hashing it; returns where it went
/// and its sha256.
fn write_file<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    dest: &Path,
    name: &Path,
) -> Result<(PathBuf, [u8; 32]), ContextError> {
    use sha2::Digest as _;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let Some(target) = place(dest, name)? else {
        return Err(refused(name, "names no file"));
    };
    if let Ok(m) = fs::symlink_metadata(&target)
        && !m.is_file()
    {
        return Err(refused(name, "would replace something that is not a file"));
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o600)
        .open(&target)
        .map_err(ContextError::Tar)?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = entry.read(&mut buf).map_err(ContextError::Tar)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        std::io::Write::write_all(&mut file, &buf[..n]).map_err(ContextError::Tar)?;
    }
    let header = entry.header();
    let mode = header.mode().map_err(ContextError::Tar)? & 0o7777;
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(ContextError::Tar)?;
    if let Ok(mtime) = header.mtime() {
        let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime);
        file.set_modified(when).map_err(ContextError::Tar)?;
    }
    Ok((target, hasher.finalize().into()))
}

/// A blocking reader over the chunks an async task sends.
struct ChunkReader {
    rx: tokio::sync::mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.buf.len() {
            match self.rx.blocking_recv() {
                Some(b) => {
                    self.buf = b;
                    self.pos = 0;
                }
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Starts unpacking a context into `dest` on a blocking thread: send its bytes into the
/// returned channel (then drop it) and await the handle for the files' digests. The
/// channel closes early when the unpack has ended, by the tar's end or an error.
pub fn unpack_in_background(
    dest: PathBuf,
) -> (
    tokio::sync::mpsc::Sender<Vec<u8>>,
    tokio::task::JoinHandle<Result<build::copy::KnownDigests, ContextError>>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let handle = tokio::task::spawn_blocking(move || {
        let reader = ChunkReader {
            rx,
            buf: Vec::new(),
            pos: 0,
        };
        unpack(reader, &dest)
    });
    (tx, handle)
}

/// Reads the Dockerfile at `path` inside the unpacked `context` (symlinks resolved inside
/// it): its text and the name errors give it.
pub fn read_dockerfile(context: &Path, path: &str) -> Result<(String, String), ContextError> {
    let missing = || ContextError::NoDockerfile(path.to_string());
    let full = build::layer::resolve_in_root(context, path, true).map_err(|_| missing())?;
    let meta = fs::metadata(&full).map_err(|_| missing())?;
    if !meta.is_file() {
        return Err(missing());
    }
    if meta.len() > MAX_DOCKERFILE {
        return Err(ContextError::TooLarge(path.to_string()));
    }
    let bytes = fs::read(&full).map_err(|source| ContextError::Read {
        path: path.to_string(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|_| ContextError::NotText(path.to_string()))?;
    let name = Path::new(path)
        .file_name()
        .map_or_else(|| "Dockerfile".into(), |n| n.to_string_lossy().into_owned());
    Ok((text, name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest as _;
    use std::io::Write;

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn unpacked(bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>, ContextError> {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        fs::create_dir(&dest).unwrap();
        let known = unpack(bytes, &dest)?;
        // Every file's digest was taken on the way in.
        for (path, digest) in &known {
            let want: [u8; 32] = sha2::Sha256::digest(fs::read(path).unwrap()).into();
            assert_eq!(*digest, want, "{}", path.display());
        }
        let mut out = Vec::new();
        for e in fs::read_dir(&dest).unwrap() {
            let e = e.unwrap();
            out.push((
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).unwrap(),
            ));
        }
        out.sort();
        Ok(out)
    }

    #[test]
    fn plain_gzip_and_zstd_contexts_unpack_the_same_files() {
        let tar = tar_of(&[("Dockerfile", b"FROM scratch\n"), ("a.txt", b"alpha")]);
        let want = vec![
            ("Dockerfile".to_string(), b"FROM scratch\n".to_vec()),
            ("a.txt".to_string(), b"alpha".to_vec()),
        ];
        assert_eq!(unpacked(&tar).unwrap(), want);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        assert_eq!(unpacked(&gz.finish().unwrap()).unwrap(), want);
        let zst = zstd::encode_all(&tar[..], 1).unwrap();
        assert_eq!(unpacked(&zst).unwrap(), want);
    }

    #[test]
    fn names_leaving_the_context_are_refused() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        b.append_link(&mut h, "out", "/tmp").unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(1);
        h.set_mode(0o644);
        b.append_data(&mut h, "out/x", &b"x"[..]).unwrap();
        let e = unpacked(&b.into_inner().unwrap()).unwrap_err().to_string();
        assert!(
            e.contains("out/x: lies below something that is not a directory"),
            "{e}"
        );
        // A name with `..`, written into the header bytes directly.
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(1);
        h.set_mode(0o644);
        let name = b"xx/../../evil";
        h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
        h.set_cksum();
        b.append(&h, &b"2"[..]).unwrap();
        let e = unpacked(&b.into_inner().unwrap()).unwrap_err().to_string();
        assert!(e.contains("outside the context"), "{e}");
    }

    #[test]
    fn bzip2_and_xz_are_refused_by_name() {
        let e = unpacked(b"BZh91AY&SY").unwrap_err();
        assert_eq!(
            e.to_string(),
            "bzip2-compressed build contexts are not supported: send a plain, gzip or zstd tar"
        );
        let e = unpacked(&[0xfd, b'7', b'z', b'X', b'Z', 0, 1, 2]).unwrap_err();
        assert!(e.to_string().starts_with("xz-compressed"), "{e}");
    }

    #[test]
    fn the_dockerfile_is_found_by_its_path_and_stays_inside_the_context() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = dir.path();
        fs::create_dir_all(ctx.join("sub")).unwrap();
        fs::write(ctx.join("sub/Dockerfile.dev"), "FROM scratch\n").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", ctx.join("evil")).unwrap();
        let (text, name) = read_dockerfile(ctx, "./sub/Dockerfile.dev").unwrap();
        assert_eq!(text, "FROM scratch\n");
        assert_eq!(name, "Dockerfile.dev");
        let e = read_dockerfile(ctx, "Dockerfile").unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot locate specified Dockerfile: Dockerfile"
        );
        assert_eq!(e.kind(), api::ErrorKind::NotFound);
        // The link resolves to <context>/etc/passwd, which does not exist.
        let e = read_dockerfile(ctx, "evil").unwrap_err();
        assert_eq!(e.to_string(), "cannot locate specified Dockerfile: evil");
        let e = read_dockerfile(ctx, "../../../etc/passwd").unwrap_err();
        assert_eq!(e.kind(), api::ErrorKind::NotFound);
    }
}
