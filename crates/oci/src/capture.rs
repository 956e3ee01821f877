//! Layers captured from a container (`commit`, `diff`, build steps): the guest streams its
//! overlay upper as an uncompressed OCI layer tar, and this module checks it and stores it.
//!
//! The tar comes from a VM, which may run anything, so it is untrusted input. Every entry
//! must pass the rules the ext4 writer applies to image layers, stricter where a guest has
//! no reason to differ: a relative name with no `..`, no NUL and no empty component; a
//! known entry type (file, directory, symlink, hard link, device, fifo); a hard link naming
//! a regular file earlier in the same tar; no entry below a name this tar made a symlink or
//! a non-directory; no name twice; whiteouts empty regular files; only known PAX keys; a
//! bounded entry count, name length and total size. The first violation refuses the whole
//! layer with one line, and nothing is stored: the gzip blob is written to a private temp
//! file that becomes visible only after the tar checked out (see
//! [`crate::store::Ingest`]).
//!
//! The same pass lists the layer's entries, from which [`changes`] derives Docker's
//! `A`/`C`/`D` listing of `docker diff`.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};

use sha2::{Digest as _, Sha256};

use crate::Digest;
use crate::store::{ContentStore, StoreError};

/// Bounds on a captured layer.
#[derive(Debug, Clone, Copy)]
pub struct CaptureLimits {
    /// Most entries (files, directories, links, whiteouts).
    pub max_entries: u64,
    /// Most uncompressed bytes of the whole tar.
    pub max_bytes: u64,
}

impl Default for CaptureLimits {
    fn default() -> Self {
        CaptureLimits {
            max_entries: 10_000_000,
            max_bytes: 1 << 40,
        }
    }
}

/// The longest name accepted (Linux's PATH_MAX).
const MAX_NAME: usize = 4096;
/// The longest name component accepted (Linux's NAME_MAX).
const MAX_COMPONENT: usize = 255;

/// Why a captured layer was refused or could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The tar breaks a rule; nothing was stored.
    #[error("the captured layer is invalid: {0}")]
    Invalid(String),
    /// Reading the stream failed.
    #[error("reading the captured layer")]
    Read(#[source] io::Error),
    /// Storing the blob failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl CaptureError {
    pub fn kind(&self) -> crate::ErrorKind {
        match self {
            CaptureError::Invalid(_) => crate::ErrorKind::InvalidArgument,
            CaptureError::Read(_) => crate::ErrorKind::Unavailable,
            CaptureError::Store(e) => e.kind(),
        }
    }
}

/// What an entry of a layer does to the file system below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerEntryKind {
    /// A directory (created or changed).
    Directory,
    /// `.wh..wh..opq`: the directory's lower contents are hidden.
    Opaque,
    /// `.wh.NAME`: NAME of the lower layers is deleted.
    Whiteout,
    /// Any other object: a file, link, device or fifo.
    Other,
}

/// One entry of a captured layer, its path absolute (`/etc/passwd`; for a whiteout, the
/// deleted path; for an opaque marker, its directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerEntry {
    pub path: String,
    pub kind: LayerEntryKind,
}

/// A checked layer: its entries in archive order and, when it was stored, its blob.
#[derive(Debug, Clone)]
pub struct CapturedLayer {
    pub entries: Vec<LayerEntry>,
    /// sha256 of the uncompressed tar (the config's `rootfs.diff_ids` entry).
    pub diff_id: Digest,
    /// Uncompressed size.
    pub uncompressed_size: u64,
    /// The stored gzip blob's digest and size (`None` when only checked).
    pub blob: Option<(Digest, u64)>,
}

/// Adapts the store's ingest to `Write` for the gzip encoder.
struct IngestWriter<'a>(crate::store::Ingest<'a>);

impl Write for IngestWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf).map_err(io::Error::other)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Checks the uncompressed layer tar `input` and, with `store`, stores it gzip-compressed.
/// Nothing is stored unless the whole tar is valid.
pub fn ingest_layer(
    store: Option<&ContentStore>,
    input: impl Read,
    limits: CaptureLimits,
) -> Result<CapturedLayer, CaptureError> {
    let ingest = match store {
        Some(store) => Some(store.begin_temp(None, None)?),
        None => None,
    };
    ingest_into(ingest, input, limits)
}

fn ingest_into(
    ingest: Option<crate::store::Ingest<'_>>,
    input: impl Read,
    limits: CaptureLimits,
) -> Result<CapturedLayer, CaptureError> {
    let mut hasher = Sha256::new();
    let mut count = 0u64;
    let mut encoder = ingest
        .map(|i| flate2::write::GzEncoder::new(IngestWriter(i), flate2::Compression::default()));
    let failed = std::cell::Cell::new(false);
    let entries = {
        let tee = TeeRef {
            failed: &failed,
            inner: input,
            hasher: &mut hasher,
            count: &mut count,
            max: limits.max_bytes,
            out: encoder.as_mut(),
        };
        check(tee, limits, &failed)?
    };
    let diff_id = Digest::from_hasher(hasher);
    let blob = match encoder {
        Some(e) => {
            let w = e.finish().map_err(CaptureError::Read)?;
            let staged = w.0.stage()?;
            let size = staged.size;
            let digest = staged.commit()?;
            Some((digest, size))
        }
        None => None,
    };
    Ok(CapturedLayer {
        entries,
        diff_id,
        uncompressed_size: count,
        blob,
    })
}

/// [`Tee`] over borrowed state, so the caller keeps the hash and the encoder.
struct TeeRef<'h, 'e, 'i, R> {
    inner: R,
    hasher: &'h mut Sha256,
    count: &'h mut u64,
    max: u64,
    out: Option<&'e mut flate2::write::GzEncoder<IngestWriter<'i>>>,
    /// Set when the stream itself (not the tar in it) failed.
    failed: &'h std::cell::Cell<bool>,
}

impl<R: Read> Read for TeeRef<'_, '_, '_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self
            .inner
            .read(buf)
            .inspect_err(|_| self.failed.set(true))?;
        *self.count += n as u64;
        if *self.count > self.max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("it is larger than {} bytes", self.max),
            ));
        }
        self.hasher.update(&buf[..n]);
        if let Some(out) = &mut self.out {
            out.write_all(&buf[..n])
                .inspect_err(|_| self.failed.set(true))?;
        }
        Ok(n)
    }
}

fn invalid(s: impl Into<String>) -> CaptureError {
    CaptureError::Invalid(s.into())
}

/// PAX keys a layer may carry; anything else is refused.
fn pax_key_allowed(key: &str) -> bool {
    matches!(
        key,
        "path"
            | "linkpath"
            | "size"
            | "mtime"
            | "atime"
            | "ctime"
            | "uid"
            | "gid"
            | "uname"
            | "gname"
    ) || key.strip_prefix("SCHILY.xattr.").is_some_and(|x| {
        ["user.", "trusted.", "security."]
            .iter()
            .any(|p| x.starts_with(p))
    })
}

/// Splits a name into its components, refusing what may not appear in a layer.
fn components(raw: &[u8]) -> Result<Vec<&[u8]>, CaptureError> {
    let show = || String::from_utf8_lossy(raw).into_owned();
    if raw.len() > MAX_NAME {
        return Err(invalid(format!("the name {:.64}... is too long", show())));
    }
    if raw.contains(&0) {
        return Err(invalid(format!("the name {:?} holds a NUL byte", show())));
    }
    if raw.starts_with(b"/") {
        return Err(invalid(format!("the name {:?} is absolute", show())));
    }
    let mut out = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => continue,
            b".." => return Err(invalid(format!("the name {:?} holds `..`", show()))),
            c if c.len() > MAX_COMPONENT => {
                return Err(invalid(format!(
                    "the name {:?} has a too long part",
                    show()
                )));
            }
            c => out.push(c),
        }
    }
    if out.is_empty() {
        return Err(invalid(format!("the name {:?} names the root", show())));
    }
    Ok(out)
}

/// The most bytes of one PAX header or GNU long-name entry.
const MAX_EXTENSION: u64 = 1 << 20;

/// What the extension headers before an entry say about it.
#[derive(Debug, Default)]
struct Extensions {
    pax: bool,
    long_name: bool,
    long_link: bool,
    /// The name: PAX `path`, else a GNU long name.
    path: Option<Vec<u8>>,
    /// The link target: PAX `linkpath`, else a GNU long link.
    link: Option<Vec<u8>>,
    /// PAX `size`.
    size: Option<u64>,
}

impl Extensions {
    fn is_empty(&self) -> bool {
        !(self.pax || self.long_name || self.long_link)
    }

    /// Takes one extension header's data.
    fn add(&mut self, kind: tar::EntryType, data: Vec<u8>) -> Result<(), CaptureError> {
        let nul_trimmed = |mut d: Vec<u8>| {
            while d.last() == Some(&0) {
                d.pop();
            }
            d
        };
        match kind {
            tar::EntryType::GNULongName => {
                if std::mem::replace(&mut self.long_name, true) {
                    return Err(invalid("two long names describe one entry"));
                }
                if self.path.is_none() {
                    self.path = Some(nul_trimmed(data));
                }
            }
            tar::EntryType::GNULongLink => {
                if std::mem::replace(&mut self.long_link, true) {
                    return Err(invalid("two long link names describe one entry"));
                }
                if self.link.is_none() {
                    self.link = Some(nul_trimmed(data));
                }
            }
            _ => {
                if std::mem::replace(&mut self.pax, true) {
                    return Err(invalid("two PAX headers describe one entry"));
                }
                let records = crate::pax::records(&data).map_err(|e| invalid(e.to_string()))?;
                // A reader that cuts at newlines (the tar crate's, which later readers of
                // this layer use) must not find a record we did not.
                if crate::pax::naive_records(&data)
                    .iter()
                    .any(|n| !records.contains(n))
                {
                    return Err(invalid(
                        "a PAX header reads differently when cut at newlines",
                    ));
                }
                for r in records {
                    let key = std::str::from_utf8(r.key)
                        .map_err(|_| invalid("a PAX record's key is not UTF-8"))?;
                    if !pax_key_allowed(key) {
                        return Err(invalid(format!("unknown PAX record {key:?}")));
                    }
                    match key {
                        "path" => self.path = Some(r.value.to_vec()),
                        "linkpath" => self.link = Some(r.value.to_vec()),
                        "size" => {
                            let size = std::str::from_utf8(r.value)
                                .ok()
                                .and_then(|v| v.parse::<u64>().ok())
                                .ok_or_else(|| invalid("a PAX size is not a number"))?;
                            self.size = Some(size);
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(())
    }
}

fn join(comps: &[&[u8]]) -> String {
    let mut s = String::new();
    for c in comps {
        s.push('/');
        s.push_str(&String::from_utf8_lossy(c));
    }
    s
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Seen {
    Dir,
    Regular,
    Other,
}

fn check(
    input: impl Read,
    limits: CaptureLimits,
    failed: &std::cell::Cell<bool>,
) -> Result<Vec<LayerEntry>, CaptureError> {
    let mut archive = tar::Archive::new(input);
    let mut seen: HashMap<String, Seen> = HashMap::new();
    let mut whiteouts: HashSet<String> = HashSet::new();
    let mut out = Vec::new();
    // An error the stream did not cause is the tar's: malformed, so invalid.
    let read = |e: io::Error| {
        if failed.get() {
            CaptureError::Read(e)
        } else {
            invalid(e.to_string())
        }
    };
    // Raw entries: PAX headers and GNU long names are read here, by our own parser
    // ([`crate::pax`]), not the tar crate's, which cuts PAX records at newlines.
    let entries = archive.entries().map_err(read)?.raw(true);
    let mut pending = Extensions::default();
    for entry in entries {
        let mut entry = entry.map_err(read)?;
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XHeader | tar::EntryType::GNULongName | tar::EntryType::GNULongLink
        ) {
            let size = entry.header().entry_size().map_err(read)?;
            if size > MAX_EXTENSION {
                return Err(invalid(format!(
                    "an extension header of {size} bytes is larger than {MAX_EXTENSION}"
                )));
            }
            let mut data = Vec::with_capacity(size as usize);
            entry.read_to_end(&mut data).map_err(read)?;
            pending.add(kind, data)?;
            continue;
        }
        let ext = std::mem::take(&mut pending);
        if out.len() as u64 >= limits.max_entries {
            return Err(invalid(format!(
                "it has more than {} entries",
                limits.max_entries
            )));
        }
        let raw = match ext.path.clone() {
            Some(p) => p,
            None => entry.path_bytes().into_owned(),
        };
        let comps = components(&raw)?;
        let (name, dirs) = comps
            .split_last()
            .ok_or_else(|| invalid("an entry without a name"))?;
        // Every parent named in this layer must be a directory of it.
        for i in 1..=dirs.len() {
            let p = join(&dirs[..i]);
            match seen.get(&p) {
                Some(Seen::Dir) | None => {}
                Some(_) => {
                    return Err(invalid(format!(
                        "{} lies below {p}, which is not a directory",
                        join(&comps)
                    )));
                }
            }
        }
        use tar::EntryType as T;
        let size = entry.header().entry_size().map_err(read)?;
        let path = join(&comps);
        if ext.size.is_some_and(|s| s != size) {
            return Err(invalid(format!(
                "{path} has a PAX size unlike its header's"
            )));
        }
        let link_name = ext
            .link
            .clone()
            .or_else(|| entry.link_name_bytes().map(|l| l.into_owned()));
        if let Some(hidden) = name.strip_prefix(b".wh.") {
            if kind != T::Regular || size != 0 {
                return Err(invalid(format!("the whiteout {path} is not an empty file")));
            }
            let dir = join(dirs);
            if hidden == b".wh..opq" {
                out.push(LayerEntry {
                    path: if dir.is_empty() { "/".into() } else { dir },
                    kind: LayerEntryKind::Opaque,
                });
                continue;
            }
            if hidden.is_empty() || hidden == b"." || hidden == b".." || hidden.starts_with(b".wh.")
            {
                return Err(invalid(format!("the whiteout {path} hides nothing")));
            }
            let mut gone = dirs.to_vec();
            gone.push(hidden);
            let gone = join(&gone);
            if seen.contains_key(&gone) || !whiteouts.insert(gone.clone()) {
                return Err(invalid(format!("{gone} appears twice")));
            }
            out.push(LayerEntry {
                path: gone,
                kind: LayerEntryKind::Whiteout,
            });
            continue;
        }
        let what = match kind {
            T::Directory => Seen::Dir,
            T::Regular | T::Continuous => Seen::Regular,
            T::Symlink | T::Char | T::Block | T::Fifo => Seen::Other,
            T::Link => {
                let target = link_name
                    .clone()
                    .ok_or_else(|| invalid(format!("the hard link {path} has no target")))?;
                let tcomps = components(&target)?;
                let t = join(&tcomps);
                if seen.get(&t) != Some(&Seen::Regular) {
                    return Err(invalid(format!(
                        "the hard link {path} names {t}, which is no earlier file of the layer"
                    )));
                }
                Seen::Other
            }
            other => {
                return Err(invalid(format!(
                    "{path} has the unsupported entry type {:?}",
                    other.as_byte() as char
                )));
            }
        };
        if kind == T::Symlink {
            let target = link_name.clone().unwrap_or_default();
            if target.is_empty() || target.contains(&0) || target.len() > MAX_NAME {
                return Err(invalid(format!("the symlink {path} has a bad target")));
            }
        }
        if what != Seen::Regular && size != 0 {
            return Err(invalid(format!("{path} has data but is no regular file")));
        }
        if whiteouts.contains(&path) || seen.insert(path.clone(), what).is_some() {
            return Err(invalid(format!("{path} appears twice")));
        }
        // Read the data through, so the stream (and its hash) stays in step.
        io::copy(&mut entry, &mut io::sink()).map_err(read)?;
        out.push(LayerEntry {
            path,
            kind: if what == Seen::Dir {
                LayerEntryKind::Directory
            } else {
                LayerEntryKind::Other
            },
        });
    }
    if !pending.is_empty() {
        return Err(invalid("an extension header describes no entry"));
    }
    // The rest of the stream (end blocks, padding) counts towards the digest too.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(read)?;
    Ok(out)
}

/// What `docker diff` prints for one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// `C`: the path existed below and was changed (or is a directory holding changes).
    Modified,
    /// `A`: the path is new.
    Added,
    /// `D`: the path was deleted.
    Deleted,
}

impl ChangeKind {
    /// Docker's letter.
    pub fn letter(self) -> char {
        match self {
            ChangeKind::Modified => 'C',
            ChangeKind::Added => 'A',
            ChangeKind::Deleted => 'D',
        }
    }
}

/// Docker's `diff` listing of a captured layer, in its walk order (each directory before
/// its entries, names sorted), given whether a path exists in the image below. Every
/// directory the layer holds is listed (`C` when the image has it): overlayfs copies a
/// directory up only when something below it changes, as Docker lists the parents of
/// changes. An opaque directory's marker adds nothing: the directory itself is listed.
pub fn changes(
    entries: &[LayerEntry],
    in_image: impl Fn(&str) -> bool,
) -> Vec<(ChangeKind, String)> {
    let mut out: Vec<(ChangeKind, String)> = Vec::new();
    for e in entries {
        match e.kind {
            LayerEntryKind::Opaque => {}
            LayerEntryKind::Whiteout => out.push((ChangeKind::Deleted, e.path.clone())),
            LayerEntryKind::Directory | LayerEntryKind::Other => {
                let kind = if in_image(&e.path) {
                    ChangeKind::Modified
                } else {
                    ChangeKind::Added
                };
                out.push((kind, e.path.clone()));
            }
        }
    }
    out
}

/// Every path of an image's file system, given its layers' uncompressed tars bottom first
/// (whiteouts and opaque markers applied). For [`changes`].
pub fn image_paths(
    layers: impl IntoIterator<Item = Result<Box<dyn Read + Send>, crate::LayerError>>,
) -> Result<HashSet<String>, CaptureError> {
    let mut paths: HashSet<String> = HashSet::new();
    for layer in layers {
        let layer = layer.map_err(|e| CaptureError::Read(io::Error::other(e.to_string())))?;
        let mut a = tar::Archive::new(layer);
        for entry in a.entries().map_err(CaptureError::Read)? {
            let entry = entry.map_err(CaptureError::Read)?;
            let raw = entry.path_bytes().into_owned();
            // Image layers were checked when their snapshot was built; names that do not
            // parse here cannot name anything a container sees.
            let Ok(comps) = components(&raw) else {
                continue;
            };
            let Some((name, dirs)) = comps.split_last() else {
                continue;
            };
            if let Some(hidden) = name.strip_prefix(b".wh.") {
                let dir = join(dirs);
                if hidden == b".wh..opq" {
                    let prefix = format!("{dir}/");
                    paths.retain(|p| !p.starts_with(&prefix));
                } else {
                    let mut gone = dirs.to_vec();
                    gone.push(hidden);
                    let gone = join(&gone);
                    let prefix = format!("{gone}/");
                    paths.retain(|p| *p != gone && !p.starts_with(&prefix));
                }
                continue;
            }
            for i in 1..dirs.len() + 1 {
                paths.insert(join(&dirs[..i]));
            }
            paths.insert(join(&comps));
        }
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_mtime(0);
        h
    }

    /// A tar of (name, type, link target, data) written byte for byte (no normalisation).
    fn tar_of(entries: &[(&str, tar::EntryType, &str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, link, data) in entries {
            let mut h = header(*kind, data.len() as u64);
            let g = h.as_gnu_mut().unwrap();
            g.name[..name.len()].copy_from_slice(name.as_bytes());
            g.linkname[..link.len()].copy_from_slice(link.as_bytes());
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    use tar::EntryType as T;

    fn good() -> Vec<u8> {
        tar_of(&[
            ("data/", T::Directory, "", b""),
            ("data/.wh..wh..opq", T::Regular, "", b""),
            ("data/one", T::Regular, "", b"1"),
            ("data/two", T::Link, "data/one", b""),
            ("etc/", T::Directory, "", b""),
            ("etc/passwd", T::Regular, "", b"root:x:0:0\n"),
            (".wh.gone", T::Regular, "", b""),
            ("link", T::Symlink, "/etc/passwd", b""),
        ])
    }

    fn blobs(store: &crate::Store) -> Vec<Digest> {
        store.content().list().unwrap()
    }

    #[test]
    fn a_good_layer_is_stored_as_gzip_with_its_diff_id() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::Store::open(dir.path()).unwrap();
        let tar = good();
        let l = ingest_layer(Some(store.content()), &tar[..], CaptureLimits::default()).unwrap();
        assert_eq!(l.diff_id, Digest::of(&tar));
        assert_eq!(l.uncompressed_size, tar.len() as u64);
        let (digest, size) = l.blob.clone().unwrap();
        let gz = store.content().read(&digest).unwrap();
        assert_eq!(gz.len() as u64, size);
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut plain)
            .unwrap();
        assert_eq!(plain, tar);
        let paths: Vec<(&str, &LayerEntryKind)> = l
            .entries
            .iter()
            .map(|e| (e.path.as_str(), &e.kind))
            .collect();
        use LayerEntryKind as K;
        assert_eq!(
            paths,
            vec![
                ("/data", &K::Directory),
                ("/data", &K::Opaque),
                ("/data/one", &K::Other),
                ("/data/two", &K::Other),
                ("/etc", &K::Directory),
                ("/etc/passwd", &K::Other),
                ("/gone", &K::Whiteout),
                ("/link", &K::Other),
            ]
        );
    }

    #[test]
    fn hostile_layers_are_refused_and_nothing_is_stored() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (tar_of(&[("../escape", T::Regular, "", b"x")]), "`..`"),
            (tar_of(&[("a/../../b", T::Regular, "", b"x")]), "`..`"),
            (tar_of(&[("/etc/passwd", T::Regular, "", b"x")]), "absolute"),
            (tar_of(&[("hl", T::Link, "/etc/shadow", b"")]), "absolute"),
            (
                tar_of(&[("hl", T::Link, "etc/shadow", b"")]),
                "no earlier file",
            ),
            (tar_of(&[("hl", T::Link, "../x", b"")]), "`..`"),
            (
                tar_of(&[
                    ("ln", T::Symlink, "/etc", b""),
                    ("ln/passwd", T::Regular, "", b"x"),
                ]),
                "not a directory",
            ),
            (
                tar_of(&[("a", T::Regular, "", b"1"), ("a", T::Regular, "", b"2")]),
                "twice",
            ),
            (
                tar_of(&[(".wh.x", T::Regular, "", b"data")]),
                "not an empty file",
            ),
            (tar_of(&[(".wh.", T::Regular, "", b"")]), "hides nothing"),
            (tar_of(&[("g", T::GNUSparse, "", b"")]), "invalid"),
            (
                tar_of(&[("g", T::XGlobalHeader, "", b"10 path=a\n")]),
                "entry type",
            ),
            (
                tar_of(&[("d", T::Directory, "", b"data")]),
                "no regular file",
            ),
            (
                {
                    // A PAX record the layer has no business with.
                    let rec = b"20 GNU.sparse.map=0\n";
                    let mut b = tar::Builder::new(Vec::new());
                    let mut x = header(T::XHeader, rec.len() as u64);
                    x.set_path("PaxHeaders/f").unwrap();
                    x.set_cksum();
                    b.append(&x, &rec[..]).unwrap();
                    let mut h = header(T::Regular, 0);
                    h.set_path("f").unwrap();
                    h.set_cksum();
                    b.append(&h, &b""[..]).unwrap();
                    b.into_inner().unwrap()
                },
                "PAX",
            ),
        ];
        let dir = tempfile::tempdir().unwrap();
        let store = crate::Store::open(dir.path()).unwrap();
        for (tar, why) in cases {
            let r = ingest_layer(Some(store.content()), &tar[..], CaptureLimits::default());
            let e = r.expect_err(why).to_string();
            assert!(e.contains(why), "{e:?} should say {why}");
            assert!(e.starts_with("the captured layer is invalid: "), "{e}");
        }
        assert!(blobs(&store).is_empty(), "nothing is stored");
        let ingest = dir.path().join("content/ingest");
        assert_eq!(
            std::fs::read_dir(ingest).unwrap().count(),
            0,
            "no temp file stays"
        );
    }

    /// A tar of one PAX header with `records` and then the regular file `name` ("x").
    fn with_pax(records: &[u8], name: &str) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut x = header(T::XHeader, records.len() as u64);
        x.set_path("PaxHeaders/f").unwrap();
        x.set_cksum();
        b.append(&x, records).unwrap();
        let mut h = header(T::Regular, 1);
        h.set_path(name).unwrap();
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
        b.into_inner().unwrap()
    }

    #[test]
    fn binary_xattrs_with_newlines_pass_and_hostile_pax_is_refused() {
        // A file capability (VFS_CAP_REVISION_2) whose bytes hold newlines.
        let cap = b"\x01\x00\x00\x02\x00\x20\x00\x00\n\x00\x00\x00\n\x00\x00\x00\x00\x00\x00\x00";
        let mut recs = crate::pax::record(b"SCHILY.xattr.security.capability", cap);
        recs.extend(crate::pax::record(b"SCHILY.xattr.user.note", b"two\nlines"));
        let l = ingest_layer(
            None,
            &with_pax(&recs, "bin/ping")[..],
            CaptureLimits::default(),
        )
        .expect("a binary xattr is accepted");
        assert_eq!(
            l.entries,
            vec![LayerEntry {
                path: "/bin/ping".into(),
                kind: LayerEntryKind::Other
            }]
        );
        // A PAX path names the entry, as readers of the layer will see it.
        let renamed = crate::pax::record(b"path", b"usr/bin/long-name");
        let l = ingest_layer(
            None,
            &with_pax(&renamed, "short")[..],
            CaptureLimits::default(),
        )
        .unwrap();
        assert_eq!(l.entries[0].path, "/usr/bin/long-name");
        let escape = crate::pax::record(b"path", b"../../etc/shadow");
        let hidden = crate::pax::record(b"SCHILY.xattr.user.x", b"a\n13 path=evil\nb");
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"9999 path=a\n".to_vec(), "runs past the end"),
            (b"3 path=a\n".to_vec(), "length 3 is impossible"),
            (b"12 path=abX".to_vec(), "runs past the end"),
            (b"11 path=abX".to_vec(), "does not end with a newline"),
            (b"x path=a\n".to_vec(), "length x is impossible"),
            (b"path=a\n".to_vec(), "has no length"),
            (escape, "`..`"),
            (hidden, "cut at newlines"),
            (crate::pax::record(b"size", b"7"), "PAX size unlike"),
            (crate::pax::record(b"size", b"seven"), "not a number"),
        ];
        for (recs, why) in cases {
            let e = ingest_layer(None, &with_pax(&recs, "f")[..], CaptureLimits::default())
                .expect_err(why)
                .to_string();
            assert!(e.contains(why), "{e:?} should say {why}");
        }
        // A PAX header with no entry after it.
        let mut b = tar::Builder::new(Vec::new());
        let rec = crate::pax::record(b"path", b"a");
        let mut x = header(T::XHeader, rec.len() as u64);
        x.set_path("PaxHeaders/f").unwrap();
        x.set_cksum();
        b.append(&x, &rec[..]).unwrap();
        let e = ingest_layer(None, &b.into_inner().unwrap()[..], CaptureLimits::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("describes no entry"), "{e}");
    }

    #[test]
    fn limits_are_enforced() {
        let tar = good();
        let small = CaptureLimits {
            max_entries: 3,
            max_bytes: 1 << 30,
        };
        let e = ingest_layer(None, &tar[..], small).unwrap_err().to_string();
        assert!(e.contains("more than 3 entries"), "{e}");
        let tiny = CaptureLimits {
            max_entries: 100,
            max_bytes: 1024,
        };
        let e = ingest_layer(None, &tar[..], tiny).unwrap_err().to_string();
        assert!(e.contains("larger than 1024 bytes"), "{e}");
    }

    #[test]
    fn changes_are_dockers_letters() {
        let l = ingest_layer(None, &good()[..], CaptureLimits::default()).unwrap();
        let lower: HashSet<String> = ["/data", "/data/a", "/etc", "/etc/passwd", "/gone"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let got: Vec<String> = changes(&l.entries, |p| lower.contains(p))
            .into_iter()
            .map(|(k, p)| format!("{} {p}", k.letter()))
            .collect();
        assert_eq!(
            got,
            vec![
                "C /data",
                "A /data/one",
                "A /data/two",
                "C /etc",
                "C /etc/passwd",
                "D /gone",
                "A /link",
            ]
        );
    }

    #[test]
    fn image_paths_apply_whiteouts() {
        let base = tar_of(&[
            ("a/", T::Directory, "", b""),
            ("a/x", T::Regular, "", b""),
            ("b/", T::Directory, "", b""),
            ("b/y", T::Regular, "", b""),
            ("c", T::Regular, "", b""),
        ]);
        let top = tar_of(&[
            ("a/.wh..wh..opq", T::Regular, "", b""),
            ("a/z", T::Regular, "", b""),
            (".wh.b", T::Regular, "", b""),
        ]);
        let layers: Vec<Result<Box<dyn Read + Send>, crate::LayerError>> = vec![
            Ok(Box::new(io::Cursor::new(base))),
            Ok(Box::new(io::Cursor::new(top))),
        ];
        let mut p: Vec<String> = image_paths(layers).unwrap().into_iter().collect();
        p.sort();
        assert_eq!(p, vec!["/a", "/a/z", "/c"]);
    }
}
