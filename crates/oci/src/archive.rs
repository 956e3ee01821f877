//! `image save` and `image load`: OCI image layout tars out, OCI layout tars and
//! `docker save` archives in.
//!
//! Saved archives hold `oci-layout`, `index.json` and `blobs/sha256/<hex>`. Each index
//! entry carries the full name in `io.containerd.image.name` and the tag in
//! `org.opencontainers.image.ref.name`, as `docker save` (v25+) writes them, so Docker,
//! containerd and skopeo read them too. Loading stages every member in the ingest area,
//! checks every referenced blob's size and digest, and only then publishes blobs and names:
//! a bad archive leaves the store as it was.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use crate::digest::Digest;
use crate::manifest::{self, Descriptor, Manifest, ManifestError, media_type};
use crate::platform::Platform;
use crate::reference::ImageRef;
use crate::store::{StagedBlob, Store, StoreError};

const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// Metadata members read into memory are refused above this size.
const MAX_METADATA: u64 = 16 << 20;

/// Why a save or load failed.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("cannot write archive")]
    Write(#[source] io::Error),
    #[error("cannot read archive")]
    Read(#[source] io::Error),
    #[error("archive is truncated: member {path} ends after {actual} of its {expected} bytes")]
    Truncated {
        path: String,
        expected: u64,
        actual: u64,
    },
    #[error("unsafe path {0:?} in archive (absolute or leaving the archive root)")]
    UnsafePath(String),
    #[error(
        "not an image archive: it has neither index.json (OCI layout) nor manifest.json (docker save)"
    )]
    NotAnImage,
    #[error("archive member {path} is malformed")]
    Malformed {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("archive member {0} is too large for metadata")]
    TooLarge(String),
    #[error("archive is missing {what} {path}")]
    Missing { what: String, path: String },
    #[error("{what} {path} does not match its digest: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        path: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("{what} {path} is {actual} bytes but {expected} were expected (truncated or corrupt)")]
    SizeMismatch {
        what: String,
        path: String,
        expected: u64,
        actual: u64,
    },
    #[error("image name {name:?} in the archive is invalid")]
    BadName {
        name: String,
        #[source]
        source: crate::reference::ReferenceError,
    },
    #[error(
        "image {name} has content for several platforms ({platforms}) but not all; pick one with --platform"
    )]
    AmbiguousPlatform { name: String, platforms: String },
}

impl ArchiveError {
    pub fn kind(&self) -> crate::ErrorKind {
        use crate::ErrorKind as K;
        match self {
            ArchiveError::Store(e) => e.kind(),
            ArchiveError::Manifest(e) => e.kind(),
            ArchiveError::Write(_) => K::Internal,
            ArchiveError::AmbiguousPlatform { .. } => K::FailedPrecondition,
            _ => K::InvalidArgument,
        }
    }
}

type Result<T, E = ArchiveError> = std::result::Result<T, E>;

/// Writes `images` from `store` as an OCI image layout tar to `out`. With `platform`, each
/// image is saved as that platform's manifest; without, an index is saved whole when all
/// its platforms are present, else the one platform that is.
pub fn save(
    store: &Store,
    images: &[ImageRef],
    platform: Option<&Platform>,
    out: impl Write,
) -> Result<()> {
    let mut entries: Vec<Descriptor> = Vec::new();
    let mut blobs: Vec<Digest> = Vec::new();
    for name in images {
        let rec = store.image(name)?;
        let mut chosen = match platform {
            Some(p) => {
                let r = store.resolve_descriptor(&rec.target, Some(p))?;
                let mut d = r.manifest_descriptor;
                d.platform = Some(manifest::PlatformJson::from_platform(&r.config.platform()));
                d
            }
            None => default_save_target(store, name, &rec.target)?,
        };
        let mut reach = std::collections::BTreeSet::new();
        store.reachable(&chosen, &mut reach)?;
        for d in reach {
            // Layers of a present manifest must be present too.
            if !store.content().contains(&d) {
                return Err(StoreError::BlobNotFound(d).into());
            }
            if !blobs.contains(&d) {
                blobs.push(d);
            }
        }
        chosen
            .annotations
            .insert(ANNOTATION_IMAGE_NAME.into(), name.to_string());
        if let Some(tag) = name.tag() {
            chosen
                .annotations
                .insert(ANNOTATION_REF_NAME.into(), tag.to_owned());
        }
        entries.push(chosen);
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": entries,
    });
    // Serialising plain data cannot fail.
    let index = serde_json::to_vec(&index).unwrap_or_default();

    let mut tar = tar::Builder::new(out);
    let w = ArchiveError::Write;
    append_dir(&mut tar, "blobs/").map_err(w)?;
    append_dir(&mut tar, "blobs/sha256/").map_err(w)?;
    append_bytes(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(w)?;
    for d in &blobs {
        let f = store.content().open_blob(d)?;
        let size = f.metadata().map_err(ArchiveError::Read)?.len();
        let mut h = header(tar::EntryType::Regular, size, 0o444);
        tar.append_data(&mut h, format!("blobs/sha256/{}", d.hex()), f)
            .map_err(w)?;
    }
    append_bytes(&mut tar, "index.json", &index).map_err(w)?;
    tar.into_inner().and_then(|mut o| o.flush()).map_err(w)?;
    Ok(())
}

fn default_save_target(store: &Store, name: &ImageRef, target: &Descriptor) -> Result<Descriptor> {
    let Manifest::Index(idx) = store.manifest(target)? else {
        return Ok(target.clone());
    };
    let present: Vec<&Descriptor> = idx
        .manifests
        .iter()
        .filter(|d| store.content().contains(&d.digest))
        .collect();
    match present.as_slice() {
        _ if present.len() == idx.manifests.len() => Ok(target.clone()),
        [one] => Ok((*one).clone()),
        _ => Err(ArchiveError::AmbiguousPlatform {
            name: name.to_string(),
            platforms: crate::platform::list(
                &present
                    .iter()
                    .filter_map(|d| d.platform())
                    .collect::<Vec<_>>(),
            ),
        }),
    }
}

fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

fn append_dir<W: Write>(tar: &mut tar::Builder<W>, path: &str) -> io::Result<()> {
    let mut h = header(tar::EntryType::Directory, 0, 0o755);
    tar.append_data(&mut h, path, io::empty())
}

fn append_bytes<W: Write>(tar: &mut tar::Builder<W>, path: &str, data: &[u8]) -> io::Result<()> {
    let mut h = header(tar::EntryType::Regular, data.len() as u64, 0o444);
    tar.append_data(&mut h, path, data)
}

/// Everything read from an archive before anything is published.
struct Staging {
    files: HashMap<String, StagedBlob>,
    links: HashMap<String, String>,
    metadata: HashMap<String, Vec<u8>>,
}

impl Staging {
    fn resolve<'a>(&'a self, path: &str) -> Option<&'a StagedBlob> {
        let mut p = path.to_owned();
        for _ in 0..16 {
            if let Some(f) = self.files.get(&p) {
                return Some(f);
            }
            p = self.links.get(&p)?.clone();
        }
        None
    }
}

/// What a load stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loaded {
    /// The names given to images, in archive order.
    pub names: Vec<ImageRef>,
    /// Images the archive does not name, kept without a name and listed by digest as
    /// Docker 25+ does: an OCI layout whose `org.opencontainers.image.ref.name` is a bare
    /// tag (what umoci and `skopeo copy oci:` write) or absent, or a `docker save` entry
    /// without RepoTags.
    pub untagged: Vec<UntaggedImage>,
}

/// An image loaded without a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UntaggedImage {
    /// Its index or manifest.
    pub target: Descriptor,
    /// The bare tag the archive gave it (`latest`), if any.
    pub tag: Option<String>,
}

/// Loads an OCI layout tar or a `docker save` archive from `input` into `store` and names
/// its images; images the archive does not name are kept without one.
pub fn load(store: &Store, input: impl Read) -> Result<Loaded> {
    let _lease = store.lease()?;
    let staging = stage(store, input)?;
    let mut publish: BTreeMap<Digest, String> = BTreeMap::new(); // digest -> staged path
    let mut generated: Vec<Vec<u8>> = Vec::new();
    let mut names: Vec<(ImageRef, Descriptor)> = Vec::new();
    let mut untagged: Vec<UntaggedImage> = Vec::new();

    if let Some(index) = staging.metadata.get("index.json") {
        let idx = match manifest::parse_manifest(index, Some(media_type::OCI_INDEX))? {
            Manifest::Index(i) => i,
            Manifest::Image(_) => {
                return Err(ManifestError::UnsupportedMediaType {
                    what: "index.json",
                    media_type: media_type::OCI_MANIFEST.into(),
                }
                .into());
            }
        };
        let docker_names = docker_repo_tags(&staging)?;
        for d in &idx.manifests {
            check_tree(&staging, d, &mut publish)?;
            let mut target = d.clone();
            target.annotations.clear();
            match entry_name(d, &docker_names, &staging)? {
                Some(name) => names.push((name, target)),
                None => untagged.push(UntaggedImage {
                    target,
                    tag: d.annotations.get(ANNOTATION_REF_NAME).cloned(),
                }),
            }
        }
    } else if staging.metadata.contains_key("manifest.json") {
        for entry in docker_entries(&staging)? {
            let (bytes, refs) = docker_manifest(&staging, &entry, &mut publish)?;
            let target = Descriptor::of(media_type::DOCKER_MANIFEST, &bytes);
            generated.push(bytes);
            if refs.is_empty() {
                untagged.push(UntaggedImage { target, tag: None });
                continue;
            }
            for r in refs {
                names.push((r, target.clone()));
            }
        }
    } else {
        return Err(ArchiveError::NotAnImage);
    }

    // Everything checked: publish blobs, then names.
    let Staging { mut files, .. } = staging;
    for path in publish.values() {
        if let Some(blob) = files.remove(path)
            && !store.content().contains(&blob.digest)
        {
            blob.commit()?;
        }
    }
    for bytes in &generated {
        store.content().write_blob(bytes, None)?;
    }
    for (name, target) in &names {
        store.put_image(name, target)?;
    }
    for u in &untagged {
        store.put_untagged(&u.target)?;
    }
    Ok(Loaded {
        names: names.into_iter().map(|(n, _)| n).collect(),
        untagged,
    })
}

fn clean_path(raw: &Path) -> Result<String> {
    let mut parts = Vec::new();
    for c in raw.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::CurDir => {}
            _ => return Err(ArchiveError::UnsafePath(raw.display().to_string())),
        }
    }
    Ok(parts.join("/"))
}

fn stage(store: &Store, input: impl Read) -> Result<Staging> {
    let mut staging = Staging {
        files: HashMap::new(),
        links: HashMap::new(),
        metadata: HashMap::new(),
    };
    let mut archive = tar::Archive::new(input);
    for entry in archive.entries().map_err(ArchiveError::Read)? {
        let mut entry = entry.map_err(ArchiveError::Read)?;
        let raw: PathBuf = entry.path().map_err(ArchiveError::Read)?.into_owned();
        let path = clean_path(&raw)?;
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let Some(target) = entry.link_name().map_err(ArchiveError::Read)? else {
                    continue;
                };
                let joined = if entry.header().entry_type() == tar::EntryType::Symlink {
                    Path::new(&path)
                        .parent()
                        .unwrap_or(Path::new(""))
                        .join(&target)
                } else {
                    target.into_owned()
                };
                let resolved = normalise_link(&joined)?;
                staging.links.insert(path, resolved);
                continue;
            }
            _ => continue,
        }
        let size = entry.size();
        if matches!(
            path.as_str(),
            "index.json" | "manifest.json" | "oci-layout" | "repositories"
        ) {
            if size > MAX_METADATA {
                return Err(ArchiveError::TooLarge(path));
            }
            let mut buf = Vec::with_capacity(size as usize);
            entry.read_to_end(&mut buf).map_err(ArchiveError::Read)?;
            staging.metadata.insert(path, buf);
            continue;
        }
        let mut ingest = store.content().begin_temp(None, Some(size))?;
        match ingest.copy_from(&mut entry) {
            Ok(()) => {}
            Err(StoreError::Io { source, .. }) => return Err(ArchiveError::Read(source)),
            Err(e) => return Err(e.into()),
        }
        if ingest.offset() != size {
            return Err(ArchiveError::Truncated {
                path,
                expected: size,
                actual: ingest.offset(),
            });
        }
        staging.files.insert(path, ingest.stage()?);
    }
    Ok(staging)
}

/// Resolves `..` inside the archive, refusing links that leave it.
fn normalise_link(p: &Path) -> Result<String> {
    let mut parts: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(x) => parts.push(x.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::ParentDir if !parts.is_empty() => {
                parts.pop();
            }
            _ => return Err(ArchiveError::UnsafePath(p.display().to_string())),
        }
    }
    Ok(parts.join("/"))
}

/// Checks one descriptor of an OCI layout (and what it references) against the staged
/// blobs, recording what to publish.
fn check_tree(
    staging: &Staging,
    d: &Descriptor,
    publish: &mut BTreeMap<Digest, String>,
) -> Result<()> {
    let path = format!("blobs/sha256/{}", d.digest.hex());
    let what = if d.media_type.contains("manifest") || d.media_type.contains("index") {
        "manifest"
    } else if d.media_type.contains("config") {
        "config"
    } else {
        "layer"
    };
    let blob = staging
        .resolve(&path)
        .ok_or_else(|| ArchiveError::Missing {
            what: what.to_owned(),
            path: path.clone(),
        })?;
    check_blob(what, &path, blob, &d.digest, d.size)?;
    publish.insert(d.digest.clone(), path.clone());
    if what != "manifest" {
        return Ok(());
    }
    let bytes = read_staged(blob)?;
    match manifest::parse_manifest(&bytes, Some(&d.media_type))? {
        Manifest::Index(idx) => {
            for child in &idx.manifests {
                check_tree(staging, child, publish)?;
            }
        }
        Manifest::Image(m) => {
            for child in std::iter::once(&m.config).chain(&m.layers) {
                check_tree(staging, child, publish)?;
            }
        }
    }
    Ok(())
}

fn check_blob(what: &str, path: &str, blob: &StagedBlob, digest: &Digest, size: u64) -> Result<()> {
    if blob.size != size {
        return Err(ArchiveError::SizeMismatch {
            what: what.to_owned(),
            path: path.to_owned(),
            expected: size,
            actual: blob.size,
        });
    }
    if blob.digest != *digest {
        return Err(ArchiveError::DigestMismatch {
            what: what.to_owned(),
            path: path.to_owned(),
            expected: digest.clone(),
            actual: blob.digest.clone(),
        });
    }
    Ok(())
}

fn read_staged(blob: &StagedBlob) -> Result<Vec<u8>> {
    if blob.size > MAX_METADATA {
        return Err(ArchiveError::TooLarge(blob.digest.to_string()));
    }
    let mut f = File::open(blob.path()).map_err(ArchiveError::Read)?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).map_err(ArchiveError::Read)?;
    Ok(buf)
}

/// The name of an index entry of an OCI layout; `None` when the archive gives it none (a
/// bare tag in `org.opencontainers.image.ref.name` names no repository).
fn entry_name(
    d: &Descriptor,
    docker_names: &HashMap<Digest, Vec<ImageRef>>,
    staging: &Staging,
) -> Result<Option<ImageRef>> {
    let parse = |n: &str| {
        ImageRef::parse(n).map_err(|source| ArchiveError::BadName {
            name: n.to_owned(),
            source,
        })
    };
    if let Some(n) = d.annotations.get(ANNOTATION_IMAGE_NAME) {
        return parse(n).map(Some);
    }
    if let Some(n) = d.annotations.get(ANNOTATION_REF_NAME)
        && (n.contains('/') || n.contains(':') || n.contains('@'))
    {
        return parse(n).map(Some);
    }
    // Docker's own OCI-layout archives also carry manifest.json with RepoTags; match by
    // config digest.
    if let Some(blob) = staging.resolve(&format!("blobs/sha256/{}", d.digest.hex()))
        && let Ok(bytes) = read_staged(blob)
        && let Ok(Manifest::Image(m)) = manifest::parse_manifest(&bytes, Some(&d.media_type))
        && let Some(refs) = docker_names.get(&m.config.digest)
        && let Some(first) = refs.first()
    {
        return Ok(Some(first.clone()));
    }
    Ok(None)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn docker_entries(staging: &Staging) -> Result<Vec<DockerEntry>> {
    let Some(bytes) = staging.metadata.get("manifest.json") else {
        return Ok(Vec::new());
    };
    serde_json::from_slice(bytes).map_err(|source| ArchiveError::Malformed {
        path: "manifest.json".into(),
        source,
    })
}

fn docker_repo_tags(staging: &Staging) -> Result<HashMap<Digest, Vec<ImageRef>>> {
    let mut out = HashMap::new();
    for e in docker_entries(staging)? {
        if let Some(blob) = staging.resolve(&clean_str(&e.config)) {
            let refs = e
                .repo_tags
                .unwrap_or_default()
                .iter()
                .filter_map(|t| ImageRef::parse(t).ok())
                .collect();
            out.insert(blob.digest.clone(), refs);
        }
    }
    Ok(out)
}

fn clean_str(p: &str) -> String {
    normalise_link(Path::new(p)).unwrap_or_else(|_| p.to_owned())
}

/// Builds a Docker schema2 manifest for one `docker save` entry.
fn docker_manifest(
    staging: &Staging,
    entry: &DockerEntry,
    publish: &mut BTreeMap<Digest, String>,
) -> Result<(Vec<u8>, Vec<ImageRef>)> {
    let config_path = clean_str(&entry.config);
    let config_blob = staging
        .resolve(&config_path)
        .ok_or_else(|| ArchiveError::Missing {
            what: "config".into(),
            path: config_path.clone(),
        })?;
    let config_bytes = read_staged(config_blob)?;
    let config = manifest::parse_config(&config_bytes)?;
    if config.diff_ids.len() != entry.layers.len() {
        return Err(ArchiveError::Missing {
            what: format!(
                "layers ({} listed, the config has {}) for",
                entry.layers.len(),
                config.diff_ids.len()
            ),
            path: config_path,
        });
    }
    publish.insert(config_blob.digest.clone(), path_of(staging, &config_path));
    let mut layers = Vec::new();
    for (i, layer) in entry.layers.iter().enumerate() {
        let path = clean_str(layer);
        let blob = staging
            .resolve(&path)
            .ok_or_else(|| ArchiveError::Missing {
                what: "layer".into(),
                path: path.clone(),
            })?;
        let mt = match sniff(blob)? {
            Sniffed::Gzip => media_type::DOCKER_LAYER_GZIP,
            Sniffed::Zstd => media_type::DOCKER_LAYER_ZSTD,
            Sniffed::Tar => {
                // An uncompressed layer's digest is its diff_id: this catches truncation.
                let want: Digest =
                    config.diff_ids[i]
                        .parse()
                        .map_err(|_| ArchiveError::Missing {
                            what: "valid diff_id for layer".into(),
                            path: path.clone(),
                        })?;
                if want != blob.digest {
                    return Err(ArchiveError::DigestMismatch {
                        what: "layer".into(),
                        path,
                        expected: want,
                        actual: blob.digest.clone(),
                    });
                }
                media_type::DOCKER_LAYER
            }
        };
        publish.insert(blob.digest.clone(), path_of(staging, &path));
        layers.push(serde_json::json!({
            "mediaType": mt, "size": blob.size, "digest": blob.digest,
        }));
    }
    let doc = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::DOCKER_MANIFEST,
        "config": {
            "mediaType": media_type::DOCKER_CONFIG,
            "size": config_blob.size,
            "digest": config_blob.digest,
        },
        "layers": layers,
    });
    // Serialising plain data cannot fail.
    let bytes = serde_json::to_vec(&doc).unwrap_or_default();
    let mut refs = Vec::new();
    for t in entry.repo_tags.clone().unwrap_or_default() {
        refs.push(ImageRef::parse(&t).map_err(|source| ArchiveError::BadName {
            name: t.clone(),
            source,
        })?);
    }
    Ok((bytes, refs))
}

/// The staged file path a (possibly linked) path resolves to.
fn path_of(staging: &Staging, path: &str) -> String {
    let mut p = path.to_owned();
    for _ in 0..16 {
        if staging.files.contains_key(&p) {
            return p;
        }
        match staging.links.get(&p) {
            Some(next) => p = next.clone(),
            None => break,
        }
    }
    p
}

enum Sniffed {
    Tar,
    Gzip,
    Zstd,
}

fn sniff(blob: &StagedBlob) -> Result<Sniffed> {
    let mut f = File::open(blob.path()).map_err(ArchiveError::Read)?;
    let mut magic = [0u8; 4];
    let n = f.read(&mut magic).map_err(ArchiveError::Read)?;
    Ok(match &magic[..n] {
        [0x1f, 0x8b, ..] => Sniffed::Gzip,
        [0x28, 0xb5, 0x2f, 0xfd] => Sniffed::Zstd,
        _ => Sniffed::Tar,
    })
}
