//! The content store (verified blobs by digest), the image index (name → descriptor) and
//! garbage collection. Everything here is synchronous file I/O: async callers run it in
//! `spawn_blocking`.
//!
//! Invariants:
//! - A file appears under `content/blobs/sha256/` only by rename after its size and digest
//!   were checked, so every visible blob is exactly the content its name claims.
//! - `images.json` is replaced atomically (temp file, fsync, rename, fsync directory).
//! - Files being written live in `content/ingest/` and are `flock`ed by their writer, so
//!   opening a store (or a GC) never removes an ingest another writer is using.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tempfile::TempPath;

use crate::digest::Digest;
use crate::manifest::{self, Descriptor, ImageConfig, ImageManifest, Manifest, ManifestError};
use crate::platform::Platform;
use crate::reference::ImageRef;

/// Manifests and configs larger than this are refused (registries cap them at 4 MiB).
pub const MAX_METADATA_SIZE: u64 = 16 << 20;
/// A resumable partial download untouched for this long is deleted on open.
const PARTIAL_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
const INDEX_FILE: &str = "images.json";
const INDEX_VERSION: u32 = 1;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot access {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("blob {digest} is {actual} bytes but {expected} were expected (truncated or corrupt)")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("content does not match its digest: expected {expected}, got {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("blob {0} not found in the content store")]
    BlobNotFound(Digest),
    #[error("blob {digest} is {size} bytes, too large for a manifest or config")]
    TooLarge { digest: Digest, size: u64 },
    #[error("image not found: {0}")]
    ImageNotFound(String),
    #[error("image index {path} is corrupt")]
    CorruptIndex {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

impl StoreError {
    pub fn kind(&self) -> crate::ErrorKind {
        use crate::ErrorKind as K;
        match self {
            StoreError::BlobNotFound(_) | StoreError::ImageNotFound(_) => K::NotFound,
            StoreError::SizeMismatch { .. }
            | StoreError::DigestMismatch { .. }
            | StoreError::TooLarge { .. } => K::InvalidArgument,
            StoreError::Io { .. } | StoreError::CorruptIndex { .. } => K::Internal,
            StoreError::Manifest(e) => e.kind(),
        }
    }
}

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.into();
    move |source| StoreError::Io { path, source }
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Opens `path` read-write, creating it with mode 0600, without truncating it.
pub(crate) fn open_private(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
}

/// Writes `data` to `path` crash-safely and 0600 (see the `statefs` crate).
pub fn atomic_write(path: &Path, data: &[u8]) -> Result<()> {
    statefs::write_atomic(path, data).map_err(io_err(path))
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    statefs::sync_dir(dir).map_err(io_err(dir))
}

/// Content-addressed blobs under `<root>/content`.
#[derive(Debug)]
pub struct ContentStore {
    blobs: PathBuf,
    ingest: PathBuf,
}

enum Backing {
    /// `ingest/sha256-<hex>.partial`: survives errors so a retry can resume it.
    Partial(PathBuf),
    /// A private temp file, deleted on drop.
    Temp(TempPath),
}

impl Backing {
    fn path(&self) -> &Path {
        match self {
            Backing::Partial(p) => p,
            Backing::Temp(t) => t,
        }
    }
}

/// A blob being written. Bytes are hashed as they arrive; [`Ingest::commit`] makes the
/// blob visible only if its size and digest check out, otherwise the data is deleted.
pub struct Ingest<'a> {
    store: &'a ContentStore,
    file: File,
    backing: Option<Backing>,
    hasher: Sha256,
    written: u64,
    expected: Option<Digest>,
    expected_size: Option<u64>,
}

/// A verified blob not yet visible in the store (see [`Ingest::stage`]).
pub struct StagedBlob {
    pub digest: Digest,
    pub size: u64,
    file: File,
    backing: Backing,
    blobs: PathBuf,
}

impl ContentStore {
    fn open(content: &Path) -> Result<ContentStore> {
        let blobs = content.join("blobs").join("sha256");
        let ingest = content.join("ingest");
        statefs::create_private_dir(&blobs).map_err(io_err(&blobs))?;
        statefs::create_private_dir(&ingest).map_err(io_err(&ingest))?;
        Ok(ContentStore { blobs, ingest })
    }

    /// Where a blob lives (whether or not it exists).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(digest.hex())
    }

    pub fn contains(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// The size of a stored blob.
    pub fn size(&self, digest: &Digest) -> Result<u64> {
        match fs::metadata(self.path(digest)) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(StoreError::BlobNotFound(digest.clone()))
            }
            Err(e) => Err(io_err(self.path(digest))(e)),
        }
    }

    /// Opens a stored blob for reading.
    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        match File::open(self.path(digest)) {
            Ok(f) => Ok(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(StoreError::BlobNotFound(digest.clone()))
            }
            Err(e) => Err(io_err(self.path(digest))(e)),
        }
    }

    /// Reads a small blob (manifest, config) into memory.
    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>> {
        let size = self.size(digest)?;
        if size > MAX_METADATA_SIZE {
            return Err(StoreError::TooLarge {
                digest: digest.clone(),
                size,
            });
        }
        fs::read(self.path(digest)).map_err(io_err(self.path(digest)))
    }

    /// Every stored blob digest.
    pub fn list(&self) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.blobs).map_err(io_err(&self.blobs))? {
            let entry = entry.map_err(io_err(&self.blobs))?;
            if let Some(d) = entry
                .file_name()
                .to_str()
                .and_then(|n| Digest::from_hex(n).ok())
            {
                out.push(d);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Stores `data`, returning its digest. With `expected`, data that does not hash to it
    /// is refused and nothing is stored.
    pub fn write_blob(&self, data: &[u8], expected: Option<&Digest>) -> Result<Digest> {
        let digest = Digest::of(data);
        if let Some(e) = expected
            && *e != digest
        {
            return Err(StoreError::DigestMismatch {
                expected: e.clone(),
                actual: digest,
            });
        }
        if self.contains(&digest) {
            return Ok(digest);
        }
        let mut ingest = self.begin_temp(Some(&digest), Some(data.len() as u64))?;
        ingest.write(data)?;
        ingest.commit()
    }

    /// Streams `reader` into the store, verifying digest and size when given.
    pub fn ingest_reader(
        &self,
        reader: &mut dyn Read,
        expected: Option<&Digest>,
        expected_size: Option<u64>,
    ) -> Result<Digest> {
        let mut ingest = self.begin_temp(expected, expected_size)?;
        ingest.copy_from(reader)?;
        ingest.commit()
    }

    /// Starts writing a blob into a private temp file.
    pub fn begin_temp(
        &self,
        expected: Option<&Digest>,
        expected_size: Option<u64>,
    ) -> Result<Ingest<'_>> {
        let (file, path) = tempfile::Builder::new()
            .prefix("tmp-")
            .tempfile_in(&self.ingest)
            .map_err(io_err(&self.ingest))?
            .into_parts();
        // Locked so that a concurrent open/GC never deletes it; a failure only loses that
        // protection, which the lock on a fresh private file cannot lose in practice.
        let _ = file.try_lock();
        Ok(Ingest {
            store: self,
            file,
            backing: Some(Backing::Temp(path)),
            hasher: Sha256::new(),
            written: 0,
            expected: expected.cloned(),
            expected_size,
        })
    }

    /// Starts or resumes a download of `digest`. If an earlier attempt left a partial file,
    /// its bytes are re-hashed and [`Ingest::offset`] says where to continue. If another
    /// writer holds that partial, this one writes a private temp file from offset 0.
    pub fn begin_resumable(&self, digest: &Digest, size: u64) -> Result<Ingest<'_>> {
        let path = self.ingest.join(format!("sha256-{}.partial", digest.hex()));
        let file = open_private(&path).map_err(io_err(&path))?;
        if file.try_lock().is_err() {
            return self.begin_temp(Some(digest), Some(size));
        }
        let mut ingest = Ingest {
            store: self,
            file,
            backing: Some(Backing::Partial(path.clone())),
            hasher: Sha256::new(),
            written: 0,
            expected: Some(digest.clone()),
            expected_size: Some(size),
        };
        let len = ingest.file.metadata().map_err(io_err(&path))?.len();
        if len > size {
            ingest.reset()?;
            return Ok(ingest);
        }
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = ingest.file.read(&mut buf).map_err(io_err(&path))?;
            if n == 0 {
                break;
            }
            ingest.hasher.update(&buf[..n]);
            ingest.written += n as u64;
        }
        Ok(ingest)
    }

    /// Deletes a blob. Callers make sure nothing references it (see [`Store::gc`]).
    fn remove(&self, digest: &Digest) -> Result<u64> {
        let path = self.path(digest);
        let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        match fs::remove_file(&path) {
            Ok(()) => Ok(size),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(io_err(path)(e)),
        }
    }

    /// Removes ingest files nobody is writing. Resumable partials younger than
    /// `keep_partials_for` stay; pass `None` to remove them all. Returns the count removed.
    fn clean_ingest(&self, keep_partials_for: Option<Duration>) -> Result<usize> {
        let mut removed = 0;
        for entry in fs::read_dir(&self.ingest).map_err(io_err(&self.ingest))? {
            let entry = entry.map_err(io_err(&self.ingest))?;
            let path = entry.path();
            let meta = match entry.metadata() {
                Ok(m) => m,
                Err(_) => continue,
            };
            if meta.is_dir() {
                fs::remove_dir_all(&path).map_err(io_err(&path))?;
                removed += 1;
                continue;
            }
            let Ok(f) = File::open(&path) else { continue };
            if f.try_lock().is_err() {
                continue; // a live writer owns it
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_partial = name
                .strip_prefix("sha256-")
                .and_then(|n| n.strip_suffix(".partial"))
                .is_some_and(|h| Digest::from_hex(h).is_ok());
            let young = meta
                .modified()
                .ok()
                .and_then(|m| SystemTime::now().duration_since(m).ok())
                .zip(keep_partials_for)
                .is_some_and(|(age, keep)| age < keep);
            if is_partial && young {
                continue;
            }
            fs::remove_file(&path).map_err(io_err(&path))?;
            removed += 1;
        }
        Ok(removed)
    }
}

impl Ingest<'_> {
    /// Bytes written so far (for a resumed download, where the next byte goes).
    pub fn offset(&self) -> u64 {
        self.written
    }

    fn path(&self) -> PathBuf {
        self.backing
            .as_ref()
            .map(|b| b.path().to_owned())
            .unwrap_or_default()
    }

    /// Throws away what was written (a server ignored our Range request).
    pub fn reset(&mut self) -> Result<()> {
        let path = self.path();
        self.file.set_len(0).map_err(io_err(&path))?;
        self.file.seek(SeekFrom::Start(0)).map_err(io_err(&path))?;
        self.hasher = Sha256::new();
        self.written = 0;
        Ok(())
    }

    /// Appends bytes. Writing past the expected size is refused at once, and the data
    /// is discarded, since no continuation can make it right.
    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        if let Some(size) = self.expected_size
            && self.written + data.len() as u64 > size
        {
            let digest = match &self.expected {
                Some(d) => d.clone(),
                None => Digest::from_hasher(self.hasher.clone()),
            };
            let err = StoreError::SizeMismatch {
                digest,
                expected: size,
                actual: self.written + data.len() as u64,
            };
            self.discard();
            return Err(err);
        }
        self.file.write_all(data).map_err(io_err(self.path()))?;
        self.hasher.update(data);
        self.written += data.len() as u64;
        Ok(())
    }

    /// Copies everything from `reader`.
    pub fn copy_from(&mut self, reader: &mut dyn Read) -> Result<()> {
        let mut buf = vec![0u8; 1 << 17];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(StoreError::Io {
                        path: self.path(),
                        source,
                    });
                }
            };
            self.write(&buf[..n])?;
        }
    }

    fn discard(&mut self) {
        match self.backing.take() {
            Some(Backing::Partial(p)) => {
                let _ = fs::remove_file(p);
            }
            Some(Backing::Temp(t)) => drop(t),
            None => {}
        }
    }

    /// Checks size and digest and syncs the data, without making it visible yet.
    /// On a mismatch the data is deleted.
    pub fn stage(mut self) -> Result<StagedBlob> {
        let actual = Digest::from_hasher(std::mem::take(&mut self.hasher));
        let path = self.path();
        if let Some(size) = self.expected_size
            && size != self.written
        {
            self.discard();
            return Err(StoreError::SizeMismatch {
                digest: self.expected.clone().unwrap_or(actual),
                expected: size,
                actual: self.written,
            });
        }
        if let Some(expected) = &self.expected
            && *expected != actual
        {
            let err = StoreError::DigestMismatch {
                expected: expected.clone(),
                actual,
            };
            self.discard();
            return Err(err);
        }
        self.file.sync_all().map_err(io_err(&path))?;
        let backing = match self.backing.take() {
            Some(b) => b,
            None => {
                return Err(StoreError::Io {
                    path,
                    source: io::Error::other("ingest already finished"),
                });
            }
        };
        let file = self.file.try_clone().map_err(io_err(&path))?;
        Ok(StagedBlob {
            digest: actual,
            size: self.written,
            file,
            backing,
            blobs: self.store.blobs.clone(),
        })
    }

    /// Verifies and publishes the blob under its digest.
    pub fn commit(self) -> Result<Digest> {
        self.stage()?.commit()
    }
}

impl Drop for Ingest<'_> {
    fn drop(&mut self) {
        // A partial download stays for a later resume; temp files are deleted.
        if let Some(Backing::Temp(t)) = self.backing.take() {
            drop(t);
        }
    }
}

impl StagedBlob {
    /// Where the staged bytes are until [`StagedBlob::commit`].
    pub fn path(&self) -> &Path {
        self.backing.path()
    }

    /// Makes the blob visible under its digest (rename, then fsync the directory).
    pub fn commit(self) -> Result<Digest> {
        let target = self.blobs.join(self.digest.hex());
        let from = self.backing.path().to_owned();
        fs::rename(&from, &target).map_err(io_err(&target))?;
        if let Backing::Temp(t) = self.backing {
            // Already renamed away: keep TempPath from deleting the new name's old path.
            let _ = t.keep();
        }
        drop(self.file);
        sync_dir(&self.blobs)?;
        Ok(self.digest)
    }
}

/// One named image: its reference and the descriptor of its manifest or index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRecord {
    pub name: ImageRef,
    pub target: Descriptor,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct IndexFile {
    version: u32,
    images: BTreeMap<String, Descriptor>,
    /// Images loaded without a name (an OCI layout that tags them but names no
    /// repository), keyed by digest, as Docker 25+ keeps them. Left out of the file while
    /// empty, so a store without any stays readable by older versions.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    untagged: BTreeMap<String, Descriptor>,
}

/// A single-platform view of an image, resolved from the store.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// The descriptor the name points at (an index or a manifest).
    pub target: Descriptor,
    /// The chosen platform's manifest descriptor (equal to `target` for single-platform images).
    pub manifest_descriptor: Descriptor,
    pub manifest: ImageManifest,
    pub config: ImageConfig,
}

impl ResolvedImage {
    /// Bytes this platform's image occupies in a registry: manifest, config and
    /// (compressed) layers.
    pub fn size(&self) -> u64 {
        self.manifest_descriptor.size
            + self.manifest.config.size
            + self.manifest.layers.iter().map(|l| l.size).sum::<u64>()
    }
}

/// What a garbage collection removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    pub removed: Vec<Digest>,
    pub reclaimed_bytes: u64,
    pub removed_snapshots: Vec<Digest>,
}

/// Held by operations that add blobs before naming them (pull, load). GC waits for
/// every lease to end, so it never deletes a blob an operation is about to reference.
pub struct Lease {
    _file: File,
}

/// The image store: content, image index, snapshots. See the crate doc for the layout.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    content: ContentStore,
    index_mutex: Mutex<()>,
}

impl Store {
    /// Opens (creating if needed) a store at `root` and removes ingest files left by a
    /// crash (resumable partial downloads younger than a week stay).
    pub fn open(root: impl Into<PathBuf>) -> Result<Store> {
        let root = root.into();
        let content = ContentStore::open(&root.join("content"))?;
        let snapshots = root.join("snapshots");
        statefs::create_private_dir(&snapshots).map_err(io_err(&snapshots))?;
        let removed = content.clean_ingest(Some(PARTIAL_MAX_AGE))?;
        if removed > 0 {
            tracing::info!(removed, "removed abandoned ingest files");
        }
        Ok(Store {
            root,
            content,
            index_mutex: Mutex::new(()),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn content(&self) -> &ContentStore {
        &self.content
    }

    /// Where the rootfs snapshots of manifests live.
    pub fn snapshots_dir(&self) -> PathBuf {
        self.root.join("snapshots")
    }

    fn lock_file(&self, name: &str) -> Result<File> {
        let path = self.root.join(name);
        open_private(&path).map_err(io_err(path))
    }

    /// Takes a lease that keeps GC away until dropped.
    pub fn lease(&self) -> Result<Lease> {
        let f = self.lock_file("gc.lock")?;
        f.lock_shared().map_err(io_err(self.root.join("gc.lock")))?;
        Ok(Lease { _file: f })
    }

    /// Runs `f` on the image index under both the in-process and the cross-process lock,
    /// writing it back atomically if `f` returns `Ok(true)`.
    fn with_index<T>(&self, f: impl FnOnce(&mut IndexFile) -> Result<(T, bool)>) -> Result<T> {
        // A poisoned mutex only means another thread panicked mid-update; the file on
        // disk is still whole because writes are atomic, so carry on.
        let _guard = self.index_mutex.lock().unwrap_or_else(|p| p.into_inner());
        let lock = self.lock_file("images.lock")?;
        lock.lock().map_err(io_err(self.root.join("images.lock")))?;
        let mut index = self.read_index()?;
        let (out, changed) = f(&mut index)?;
        if changed {
            index.version = INDEX_VERSION;
            // Serialising plain strings and numbers cannot fail.
            let json = serde_json::to_vec_pretty(&index).unwrap_or_default();
            atomic_write(&self.root.join(INDEX_FILE), &json)?;
        }
        Ok(out)
    }

    fn read_index(&self) -> Result<IndexFile> {
        let path = self.root.join(INDEX_FILE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| StoreError::CorruptIndex { path, source }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(IndexFile::default()),
            Err(e) => Err(io_err(path)(e)),
        }
    }

    /// Every named image, sorted by name.
    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        let images = self.read_index()?.images;
        Ok(images
            .into_iter()
            .filter_map(|(name, target)| {
                ImageRef::parse(&name)
                    .ok()
                    .map(|name| ImageRecord { name, target })
            })
            .collect())
    }

    /// Every image stored without a name, sorted by digest.
    pub fn untagged(&self) -> Result<Vec<Descriptor>> {
        Ok(self.read_index()?.untagged.into_values().collect())
    }

    /// Keeps `target` as an image without a name, unless a name already points at it. The
    /// target blob must already be in the store.
    pub fn put_untagged(&self, target: &Descriptor) -> Result<()> {
        if !self.content.contains(&target.digest) {
            return Err(StoreError::BlobNotFound(target.digest.clone()));
        }
        self.with_index(|index| {
            if index.images.values().any(|t| t.digest == target.digest) {
                return Ok(((), false));
            }
            let key = target.digest.to_string();
            let changed = index.untagged.insert(key, target.clone()).as_ref() != Some(target);
            Ok(((), changed))
        })
    }

    /// Forgets the image without a name that has `digest`. Its blobs stay until the next
    /// [`Store::gc`].
    pub fn remove_untagged(&self, digest: &Digest) -> Result<Descriptor> {
        self.with_index(|index| match index.untagged.remove(&digest.to_string()) {
            Some(d) => Ok((d, true)),
            None => Err(StoreError::ImageNotFound(digest.to_string())),
        })
    }

    /// The record for `name`. A digest reference also finds an image stored under
    /// another name with that digest.
    pub fn image(&self, name: &ImageRef) -> Result<ImageRecord> {
        let index = self.read_index()?;
        let images = &index.images;
        if let Some(target) = images.get(&name.to_string()) {
            return Ok(ImageRecord {
                name: name.clone(),
                target: target.clone(),
            });
        }
        if let Some(d) = name.digest()
            && let Some(target) = images
                .values()
                .chain(index.untagged.values())
                .find(|t| &t.digest == d)
        {
            return Ok(ImageRecord {
                name: name.clone(),
                target: target.clone(),
            });
        }
        Err(StoreError::ImageNotFound(name.to_string()))
    }

    /// Names `target` as `name`, replacing what the name pointed at. The target blob
    /// must already be in the store. An image without a name that has the same digest now
    /// has one, so it is no longer kept apart.
    pub fn put_image(&self, name: &ImageRef, target: &Descriptor) -> Result<()> {
        if !self.content.contains(&target.digest) {
            return Err(StoreError::BlobNotFound(target.digest.clone()));
        }
        self.with_index(|index| {
            let unnamed = index.untagged.remove(&target.digest.to_string()).is_some();
            let changed = index
                .images
                .insert(name.to_string(), target.clone())
                .as_ref()
                != Some(target);
            Ok(((), changed || unnamed))
        })
    }

    /// Gives the image `source` the extra name `target`.
    pub fn tag(&self, source: &ImageRef, target: &ImageRef) -> Result<()> {
        let rec = self.image(source)?;
        self.put_image(target, &rec.target)
    }

    /// Removes a name. Its blobs stay until the next [`Store::gc`].
    pub fn remove_image(&self, name: &ImageRef) -> Result<Descriptor> {
        self.with_index(|index| match index.images.remove(&name.to_string()) {
            Some(d) => Ok((d, true)),
            None => Err(StoreError::ImageNotFound(name.to_string())),
        })
    }

    /// Reads and parses a stored manifest or index.
    pub fn manifest(&self, desc: &Descriptor) -> Result<Manifest> {
        let bytes = self.content.read(&desc.digest)?;
        Ok(manifest::parse_manifest(&bytes, Some(&desc.media_type))?)
    }

    /// Resolves `name` to one platform's manifest and config. For an index, `platform`
    /// picks the entry (host platform if `None`); a single-platform image is returned
    /// as is when it matches, else the error lists the platform it has.
    pub fn resolve(&self, name: &ImageRef, platform: Option<&Platform>) -> Result<ResolvedImage> {
        let rec = self.image(name)?;
        self.resolve_descriptor(&rec.target, platform)
    }

    /// Like [`Store::resolve`] but starting from a descriptor.
    pub fn resolve_descriptor(
        &self,
        target: &Descriptor,
        platform: Option<&Platform>,
    ) -> Result<ResolvedImage> {
        let wanted = platform.cloned().unwrap_or_else(Platform::host);
        let manifest_descriptor = match self.manifest(target)? {
            Manifest::Index(idx) => {
                let d = idx.select(&wanted)?.clone();
                if !self.content.contains(&d.digest) {
                    let present: Vec<Platform> = idx
                        .manifests
                        .iter()
                        .filter(|m| self.content.contains(&m.digest))
                        .filter_map(Descriptor::platform)
                        .collect();
                    return Err(ManifestError::PlatformNotFound {
                        wanted,
                        available: crate::platform::list(&present),
                    }
                    .into());
                }
                d
            }
            Manifest::Image(_) => target.clone(),
        };
        let Manifest::Image(manifest) = self.manifest(&manifest_descriptor)? else {
            return Err(ManifestError::UnsupportedMediaType {
                what: "index entry (nested index)",
                media_type: manifest_descriptor.media_type.clone(),
            }
            .into());
        };
        let config = manifest::parse_config(&self.content.read(&manifest.config.digest)?)?;
        if platform.is_some() && manifest_descriptor == *target {
            let have = config.platform();
            if !wanted.matches(&have) {
                return Err(ManifestError::PlatformNotFound {
                    wanted,
                    available: have.to_string(),
                }
                .into());
            }
        }
        Ok(ResolvedImage {
            target: target.clone(),
            manifest_descriptor,
            manifest,
            config,
        })
    }

    /// Every blob reachable from `target` that is present in the store (index entries
    /// for platforms that were not pulled are skipped).
    pub fn reachable(&self, target: &Descriptor, out: &mut BTreeSet<Digest>) -> Result<()> {
        if !self.content.contains(&target.digest) || !out.insert(target.digest.clone()) {
            return Ok(());
        }
        match self.manifest(target)? {
            Manifest::Index(idx) => {
                for m in &idx.manifests {
                    self.reachable(m, out)?;
                }
            }
            Manifest::Image(m) => {
                out.insert(m.config.digest.clone());
                out.extend(m.layers.iter().map(|l| l.digest.clone()));
            }
        }
        Ok(())
    }

    /// Removes every blob and snapshot no named image references, and every ingest file
    /// nobody is writing. Waits for running pulls and loads (their [`Lease`]s) first.
    pub fn gc(&self) -> Result<GcReport> {
        let lock = self.lock_file("gc.lock")?;
        lock.lock().map_err(io_err(self.root.join("gc.lock")))?;
        self.with_index(|index| {
            let mut keep = BTreeSet::new();
            for target in index.images.values().chain(index.untagged.values()) {
                self.reachable(target, &mut keep)?;
            }
            let mut report = GcReport::default();
            for d in self.content.list()? {
                if !keep.contains(&d) {
                    report.reclaimed_bytes += self.content.remove(&d)?;
                    report.removed.push(d);
                }
            }
            self.content.clean_ingest(None)?;
            let snaps = self.snapshots_dir();
            for entry in fs::read_dir(&snaps).map_err(io_err(&snaps))? {
                let entry = entry.map_err(io_err(&snaps))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let digest = Digest::from_hex(&name).ok();
                if digest.as_ref().is_some_and(|d| keep.contains(d)) {
                    continue;
                }
                let path = entry.path();
                let size = dir_size(&path);
                fs::remove_dir_all(&path).map_err(io_err(&path))?;
                report.reclaimed_bytes += size;
                if let Some(d) = digest {
                    report.removed_snapshots.push(d);
                }
            }
            Ok((report, false))
        })
    }
}

fn dir_size(path: &Path) -> u64 {
    let Ok(rd) = fs::read_dir(path) else { return 0 };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ingest_files(store: &Store) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(store.root().join("content/ingest"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn verified_blob_becomes_visible_and_mismatches_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let c = store.content();
        let d = c.write_blob(b"hello", None).unwrap();
        assert_eq!(c.read(&d).unwrap(), b"hello");
        assert_eq!(
            fs::read(dir.path().join("content/blobs/sha256").join(d.hex())).unwrap(),
            b"hello"
        );

        let wrong = Digest::of(b"other");
        let err = c
            .ingest_reader(&mut &b"hello!"[..], Some(&wrong), None)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "content does not match its digest: expected {wrong}, got {}",
                Digest::of(b"hello!")
            )
        );
        let err = c
            .ingest_reader(&mut &b"hell"[..], Some(&d), Some(5))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("blob {d} is 4 bytes but 5 were expected (truncated or corrupt)")
        );
        let err = c
            .ingest_reader(&mut &b"hello world"[..], Some(&d), Some(5))
            .unwrap_err();
        assert!(
            matches!(err, StoreError::SizeMismatch { actual: 11, .. }),
            "{err}"
        );
        assert_eq!(c.list().unwrap(), vec![d]);
        assert!(
            ingest_files(&store).is_empty(),
            "{:?}",
            ingest_files(&store)
        );
    }

    #[test]
    fn partial_download_resumes_and_crash_leftovers_are_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let d = Digest::of(&data);
        {
            let store = Store::open(dir.path()).unwrap();
            let mut ing = store
                .content()
                .begin_resumable(&d, data.len() as u64)
                .unwrap();
            ing.write(&data[..40_000]).unwrap();
            drop(ing); // an interrupted download
            // a crashed temp ingest and a crashed load directory
            fs::write(dir.path().join("content/ingest/tmp-crashed"), b"junk").unwrap();
            fs::create_dir(dir.path().join("content/ingest/tmp-load")).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            ingest_files(&store),
            [format!("sha256-{}.partial", d.hex())]
        );
        let mut ing = store
            .content()
            .begin_resumable(&d, data.len() as u64)
            .unwrap();
        assert_eq!(ing.offset(), 40_000);
        ing.write(&data[40_000..]).unwrap();
        assert_eq!(ing.commit().unwrap(), d);
        assert_eq!(store.content().read(&d).unwrap(), data);
        assert!(ingest_files(&store).is_empty());
    }

    #[test]
    fn opening_a_store_never_removes_a_live_writers_ingest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let data = b"being written";
        let d = Digest::of(data);
        let mut temp = store.content().begin_temp(Some(&d), None).unwrap();
        temp.write(&data[..5]).unwrap();
        let mut partial = store
            .content()
            .begin_resumable(&Digest::of(b"x"), 1)
            .unwrap();
        partial.write(b"x").unwrap();
        // A second writer of the same digest cannot share the locked partial file.
        let second = store
            .content()
            .begin_resumable(&Digest::of(b"x"), 1)
            .unwrap();
        assert_eq!(second.offset(), 0);
        drop(second);
        let before = ingest_files(&store);
        assert_eq!(before.len(), 2, "{before:?}");
        // Another open (a restarted daemon, a second process) and a GC leave both alone.
        let other = Store::open(dir.path()).unwrap();
        other.gc().unwrap();
        assert_eq!(ingest_files(&other), before);
        temp.write(&data[5..]).unwrap();
        assert_eq!(temp.commit().unwrap(), d);
        assert_eq!(partial.commit().unwrap(), Digest::of(b"x"));
        assert!(ingest_files(&store).is_empty());
    }

    #[test]
    fn image_index_is_atomic_json_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let d = store.content().write_blob(b"{}", None).unwrap();
        let desc = Descriptor::of(manifest::media_type::OCI_MANIFEST, b"{}");
        let name = ImageRef::parse("busybox").unwrap();
        store.put_image(&name, &desc).unwrap();
        store
            .tag(&name, &ImageRef::parse("localhost/bb:1").unwrap())
            .unwrap();
        let again = Store::open(dir.path()).unwrap();
        let names: Vec<String> = again
            .images()
            .unwrap()
            .iter()
            .map(|r| r.name.to_string())
            .collect();
        assert_eq!(
            names,
            ["docker.io/library/busybox:latest", "localhost/bb:1"]
        );
        assert_eq!(
            again
                .image(&name.with_digest(d.clone()))
                .unwrap()
                .target
                .digest,
            d
        );
        let missing = ImageRef::parse("nothere").unwrap();
        assert_eq!(
            again.image(&missing).unwrap_err().to_string(),
            "image not found: docker.io/library/nothere:latest"
        );
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }
}
