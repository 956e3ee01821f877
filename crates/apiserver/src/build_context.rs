//! The build context as it reaches the daemon: a tar the client sent (the CLI's plain tar,
//! or a Docker client's body, which may be gzip or zstd compressed), unpacked into the
//! build's work directory; and the Dockerfile a Docker client names by its path inside
//! that context. Nothing here knows about gRPC or HTTP.

use std::collections::{HashMap, HashSet};
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
    #[error("the build context key must be 64 hex digits")]
    BadKey,
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

/// What the daemon knows of one file of a kept context.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Indexed {
    /// sha256 of the content, hex.
    pub sha256: String,
    pub size: u64,
    pub mode: u32,
    pub mtime: u64,
}

/// A kept context's files, by their path relative to its tree.
pub type Index = HashMap<String, Indexed>;

/// Files no larger than this are read whole before they are written, so an unchanged one
/// is never written; larger ones always are.
const COMPARE_IN_MEMORY: u64 = 1 << 20;

/// Unpacks the context stream `input` into `dest` (which exists) as it arrives, hashing
/// each regular file's content on the way in: the digests a COPY of the file is keyed
/// with, so a build never reads the context twice. With `old` (the index of what `dest`
/// already holds, a context kept from an earlier build), a file whose content, mode and
/// time are unchanged is not written again, and whatever `dest` holds that the stream
/// does not is removed. Names with `..`, absolute names and paths through a symlink are
/// refused; links and other entries go through the tar crate's `unpack_in`, which refuses
/// the same. Returns the digests and the index of what `dest` now holds.
pub fn unpack(
    input: impl Read,
    dest: &Path,
    old: Option<&Index>,
) -> Result<(build::copy::KnownDigests, Index), ContextError> {
    let mut archive = tar::Archive::new(decompress(input)?);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(true);
    let kept = old.is_some();
    let mut known = build::copy::KnownDigests::new();
    let mut index = Index::new();
    let mut seen: HashSet<PathBuf> = HashSet::new();
    // Directories get their modes and times last, so a read-only one can still be filled.
    let mut dirs: Vec<(PathBuf, u32, u64)> = Vec::new();
    for entry in archive.entries().map_err(ContextError::Tar)? {
        let mut entry = entry.map_err(ContextError::Tar)?;
        let kind = entry.header().entry_type();
        let path = entry.path().map_err(ContextError::Tar)?.into_owned();
        let Some(rel) = place(dest, &path, kept)? else {
            continue; // the context's root
        };
        let target = dest.join(&rel);
        if kind.is_file() {
            let facts = write_file(
                &mut entry,
                &target,
                &path,
                old.and_then(|o| o.get(&rel.to_string_lossy().into_owned())),
            )?;
            let mut digest = [0u8; 32];
            hex::decode_to_slice(&facts.sha256, &mut digest)
                .map_err(|e| refused(&path, &e.to_string()))?;
            known.insert(target, digest);
            index.insert(rel.to_string_lossy().into_owned(), facts);
        } else if kind.is_dir() {
            match fs::symlink_metadata(&target) {
                Ok(m) if m.is_dir() => {}
                Ok(_) if kept => {
                    remove_any(&target)?;
                    fs::create_dir(&target).map_err(ContextError::Tar)?;
                }
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
            if kept && fs::symlink_metadata(&target).is_ok() {
                remove_any(&target)?;
            }
            entry.unpack_in(dest).map_err(ContextError::Tar)?;
        }
        for a in rel.ancestors() {
            if !a.as_os_str().is_empty() && !seen.insert(a.to_path_buf()) {
                break;
            }
        }
    }
    if kept {
        remove_unseen(dest, Path::new(""), &seen)?;
    }
    for (dir, mode, mtime) in dirs.into_iter().rev() {
        use std::os::unix::fs::PermissionsExt;
        let f = fs::File::open(&dir).map_err(ContextError::Tar)?;
        let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime);
        f.set_modified(when).map_err(ContextError::Tar)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).map_err(ContextError::Tar)?;
    }
    Ok((known, index))
}

fn refused(name: &Path, why: &str) -> ContextError {
    ContextError::Tar(std::io::Error::other(format!("{}: {why}", name.display())))
}

fn remove_any(path: &Path) -> Result<(), ContextError> {
    let r = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(_) => Ok(()),
    };
    r.map_err(ContextError::Tar)
}

/// Removes what lies under `dest/rel` and is not in `seen`.
fn remove_unseen(dest: &Path, rel: &Path, seen: &HashSet<PathBuf>) -> Result<(), ContextError> {
    for e in fs::read_dir(dest.join(rel)).map_err(ContextError::Tar)? {
        let e = e.map_err(ContextError::Tar)?;
        let r = rel.join(e.file_name());
        if !seen.contains(&r) {
            remove_any(&dest.join(&r))?;
        } else if e.file_type().map_err(ContextError::Tar)?.is_dir() {
            remove_unseen(dest, &r, seen)?;
        }
    }
    Ok(())
}

/// The entry `name`'s path relative to `dest` (None for the root itself), its parents made
/// as real directories; `..`, absolute names and paths through a symlink are refused. In
/// a kept context (`replace`) a parent that is not a directory is left from an earlier
/// build and is replaced.
fn place(dest: &Path, name: &Path, replace: bool) -> Result<Option<PathBuf>, ContextError> {
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
            Ok(_) if replace => {
                remove_any(&dir)?;
                fs::create_dir(&dir).map_err(ContextError::Tar)?;
            }
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
    Ok(Some(rel))
}

/// Writes one regular file of the context at `target`, hashing it, unless `old` says the
/// file there already has this content, mode and time (then nothing is written).
fn write_file<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    target: &Path,
    name: &Path,
    old: Option<&Indexed>,
) -> Result<Indexed, ContextError> {
    use sha2::Digest as _;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let header = entry.header();
    let mode = header.mode().map_err(ContextError::Tar)? & 0o7777;
    let mtime = header.mtime().unwrap_or(0);
    let size = entry.size();
    let on_disk = fs::symlink_metadata(target).ok();
    if on_disk.as_ref().is_some_and(|m| !m.is_file()) {
        if old.is_some() || on_disk.as_ref().is_some_and(|m| m.is_dir()) {
            remove_any(target)?;
        } else {
            return Err(refused(name, "would replace something that is not a file"));
        }
    }
    let mut hasher = sha2::Sha256::new();
    let mut pending: Option<Vec<u8>> = None;
    if size <= COMPARE_IN_MEMORY {
        let mut data = Vec::with_capacity(size as usize);
        entry.read_to_end(&mut data).map_err(ContextError::Tar)?;
        pending = Some(data);
    }
    let mut sha256 = None;
    if let Some(data) = &pending {
        let digest = hex::encode(sha2::Sha256::digest(data));
        let unchanged = old.is_some_and(|o| {
            o.sha256 == digest
                && o.size == size
                && on_disk
                    .as_ref()
                    .is_some_and(|m| m.is_file() && m.len() == size)
        });
        if unchanged {
            let same_meta = old.is_some_and(|o| o.mode == mode && o.mtime == mtime);
            if !same_meta {
                set_meta(target, mode, mtime)?;
            }
            return Ok(Indexed {
                sha256: digest,
                size,
                mode,
                mtime,
            });
        }
        sha256 = Some(digest);
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o600)
        .open(target)
        .map_err(ContextError::Tar)?;
    match pending {
        Some(data) => std::io::Write::write_all(&mut file, &data).map_err(ContextError::Tar)?,
        None => {
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = entry.read(&mut buf).map_err(ContextError::Tar)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                std::io::Write::write_all(&mut file, &buf[..n]).map_err(ContextError::Tar)?;
            }
        }
    }
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(ContextError::Tar)?;
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime);
    file.set_modified(when).map_err(ContextError::Tar)?;
    Ok(Indexed {
        sha256: sha256.unwrap_or_else(|| hex::encode(hasher.finalize())),
        size,
        mode,
        mtime,
    })
}

fn set_meta(target: &Path, mode: u32, mtime: u64) -> Result<(), ContextError> {
    use std::os::unix::fs::PermissionsExt;
    let f = fs::OpenOptions::new()
        .write(true)
        .open(target)
        .map_err(ContextError::Tar)?;
    f.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(ContextError::Tar)?;
    f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime))
        .map_err(ContextError::Tar)
}

/// A context kept between builds of the same client directory, under
/// `<contexts>/<key>/`: `tree/` (the files), `index.json` (what the tree holds, written
/// after a complete unpack and removed before the next one starts, so a tree whose index
/// is missing is wiped), `lock` (flocked by the build using it).
pub struct KeptContext {
    dir: PathBuf,
    _lock: fs::File,
    /// The index read at open; None when the tree must start empty.
    old: Option<Index>,
}

/// How many kept contexts stay; the least recently used beyond this are removed.
const KEPT_CONTEXTS: usize = 8;

impl KeptContext {
    /// Opens (creating) the kept context `key` (64 hex digits) under `contexts`; None when
    /// another build holds it (that build then unpacks into a fresh directory).
    pub fn open(contexts: &Path, key: &str) -> Result<Option<KeptContext>, ContextError> {
        if key.len() != 64 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ContextError::BadKey);
        }
        let io = ContextError::Tar;
        statefs::create_private_dir(contexts).map_err(io)?;
        let dir = contexts.join(key.to_ascii_lowercase());
        statefs::create_private_dir(&dir).map_err(io)?;
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("lock"))
            .map_err(io)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Ok(None),
            Err(fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        let index_path = dir.join("index.json");
        let old = fs::read(&index_path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Index>(&b).ok());
        // From here until a new index is written, the tree counts as unknown.
        let _ = fs::remove_file(&index_path);
        let tree = dir.join("tree");
        if old.is_none() {
            remove_any(&tree)?;
        }
        fs::create_dir_all(&tree).map_err(io)?;
        Ok(Some(KeptContext {
            dir,
            _lock: lock,
            old,
        }))
    }

    pub fn tree(&self) -> PathBuf {
        self.dir.join("tree")
    }

    /// Records what the tree now holds.
    fn save(&self, index: &Index) -> Result<(), ContextError> {
        let bytes = serde_json::to_vec(index).map_err(|e| ContextError::Tar(e.into()))?;
        statefs::write_atomic(&self.dir.join("index.json"), &bytes).map_err(ContextError::Tar)
    }
}

/// Removes kept contexts beyond the newest [`KEPT_CONTEXTS`] (by their index's time) that
/// no build holds; all of them with `all` (`builder prune`). Returns how many went.
pub fn evict(contexts: &Path, all: bool) -> usize {
    let Ok(rd) = fs::read_dir(contexts) else {
        return 0;
    };
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = rd
        .flatten()
        .map(|e| {
            let t = fs::metadata(e.path().join("index.json"))
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            (t, e.path())
        })
        .collect();
    found.sort();
    let keep = if all { 0 } else { KEPT_CONTEXTS };
    let excess = found.len().saturating_sub(keep);
    let mut removed = 0;
    for (_, dir) in found.into_iter().take(excess) {
        let Ok(lock) = fs::OpenOptions::new().write(true).open(dir.join("lock")) else {
            continue;
        };
        if lock.try_lock().is_ok() && fs::remove_dir_all(&dir).is_ok() {
            removed += 1;
        }
    }
    removed
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

/// Where a build's context goes: a fresh directory, or a context kept from earlier builds
/// of the same client directory.
pub enum Destination {
    Fresh(PathBuf),
    /// The context kept under `contexts` by `key`; `fresh` when another build holds it.
    Kept {
        contexts: PathBuf,
        key: String,
        fresh: PathBuf,
    },
}

/// An unpacked context: where it is, its files' digests, and the kept context (held, so
/// no other build changes it) when it is one.
pub struct Unpacked {
    pub dir: PathBuf,
    pub digests: build::copy::KnownDigests,
    pub kept: Option<KeptContext>,
}

/// Starts unpacking a context into `dest` on a blocking thread: send its bytes into the
/// returned channel (then drop it) and await the handle. The channel closes early when the
/// unpack has ended, by the tar's end or an error.
pub fn unpack_in_background(
    dest: Destination,
) -> (
    tokio::sync::mpsc::Sender<Vec<u8>>,
    tokio::task::JoinHandle<Result<Unpacked, ContextError>>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let handle = tokio::task::spawn_blocking(move || {
        let reader = ChunkReader {
            rx,
            buf: Vec::new(),
            pos: 0,
        };
        // Opening a kept context may wipe a stale tree: here, off the async threads.
        let dest = match dest {
            Destination::Kept {
                contexts,
                key,
                fresh,
            } => match KeptContext::open(&contexts, &key)? {
                Some(kept) => Ok(kept),
                None => Err(fresh),
            },
            Destination::Fresh(dir) => Err(dir),
        };
        match dest {
            Err(dir) => {
                let (digests, _) = unpack(reader, &dir, None)?;
                Ok(Unpacked {
                    dir,
                    digests,
                    kept: None,
                })
            }
            Ok(kept) => {
                let dir = kept.tree();
                let empty = Index::new();
                let old = kept.old.as_ref().unwrap_or(&empty);
                let (digests, index) = unpack(reader, &dir, Some(old))?;
                kept.save(&index)?;
                Ok(Unpacked {
                    dir,
                    digests,
                    kept: Some(kept),
                })
            }
        }
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
        let (known, _) = unpack(bytes, &dest, None)?;
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
    fn a_kept_context_writes_only_what_changed_and_drops_what_went() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let contexts = dir.path().join("contexts");
        let key = "ab".repeat(32);
        let build = |files: &[(&str, &[u8])]| {
            let kept = KeptContext::open(&contexts, &key)
                .unwrap()
                .expect("not locked");
            // A second build of the same directory meanwhile starts afresh.
            assert!(KeptContext::open(&contexts, &key).unwrap().is_none());
            let tree = kept.tree();
            let empty = Index::new();
            let (digests, index) = unpack(
                &tar_of(files)[..],
                &tree,
                Some(kept.old.as_ref().unwrap_or(&empty)),
            )
            .unwrap();
            kept.save(&index).unwrap();
            (tree, digests)
        };
        let (tree, digests) = build(&[("a.txt", b"alpha"), ("sub/b.txt", b"beta"), ("gone", b"x")]);
        assert_eq!(digests.len(), 3);
        let inode = |p: &str| fs::metadata(tree.join(p)).unwrap().ino();
        let (a1, b1) = (inode("a.txt"), inode("sub/b.txt"));
        let before = fs::metadata(tree.join("a.txt")).unwrap().ctime_nsec();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let (tree, digests) = build(&[("a.txt", b"alpha"), ("sub/b.txt", b"BETA!")]);
        // Unchanged: not rewritten (same inode, untouched). Changed: rewritten. Gone: removed.
        assert_eq!(inode("a.txt"), a1);
        assert_eq!(
            fs::metadata(tree.join("a.txt")).unwrap().ctime_nsec(),
            before
        );
        assert_eq!(fs::read(tree.join("sub/b.txt")).unwrap(), b"BETA!");
        let _ = b1;
        assert!(!tree.join("gone").exists());
        let want: [u8; 32] = sha2::Sha256::digest(b"BETA!").into();
        assert_eq!(digests[&tree.join("sub/b.txt")], want);
        let want: [u8; 32] = sha2::Sha256::digest(b"alpha").into();
        assert_eq!(digests[&tree.join("a.txt")], want);
        // A tree whose index is missing (a build that died mid-way) starts empty.
        fs::write(tree.join("stray"), b"?").unwrap();
        fs::remove_file(contexts.join(&key).join("index.json")).unwrap();
        let (tree, _) = build(&[("a.txt", b"alpha")]);
        assert!(!tree.join("stray").exists());
        assert!(!tree.join("sub").exists());
        assert_eq!(fs::read(tree.join("a.txt")).unwrap(), b"alpha");
        assert!(matches!(
            KeptContext::open(&contexts, "../x"),
            Err(ContextError::BadKey)
        ));
        assert_eq!(evict(&contexts, true), 1);
        assert!(!contexts.join(&key).exists());
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
