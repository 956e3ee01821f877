//! Writing a layer into the content store while hashing it, and unpacking layers into a
//! directory (a stage's root filesystem, which `COPY --from` reads).

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use oci::store::ContentStore;
use oci::{Descriptor, media_type};
use sha2::{Digest as _, Sha256};

use crate::{BuildError, Result};

/// Adapts a content-store ingest to `io::Write`.
pub(crate) struct IngestWriter<'a>(oci::store::Ingest<'a>);

impl Write for IngestWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf).map_err(io::Error::other)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Hashes what passes through it: the uncompressed tar, whose digest is the layer's diff ID.
pub(crate) struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A layer being written: a tar stream, gzip-compressed into a temp ingest of the store.
/// Dropped without [`LayerWriter::finish`], nothing becomes visible.
pub struct LayerWriter<'a> {
    store: &'a ContentStore,
    tar: tar::Builder<Sink<'a>>,
}

/// Where a layer's tar goes: hashed, compressed, into the store.
pub(crate) type Sink<'a> = HashingWriter<flate2::write::GzEncoder<IngestWriter<'a>>>;

/// A finished layer: its descriptor in the store and its diff ID (`sha256:` of the tar).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Layer {
    pub descriptor: Descriptor,
    pub diff_id: String,
}

impl<'a> LayerWriter<'a> {
    pub fn new(store: &'a ContentStore) -> Result<LayerWriter<'a>> {
        let ingest = store.begin_temp(None, None)?;
        let gz = flate2::write::GzEncoder::new(IngestWriter(ingest), flate2::Compression::fast());
        let mut tar = tar::Builder::new(HashingWriter {
            inner: gz,
            hasher: Sha256::new(),
        });
        tar.mode(tar::HeaderMode::Complete);
        tar.follow_symlinks(false);
        Ok(LayerWriter { store, tar })
    }

    /// The tar builder, to append entries (paths relative, no leading `/`).
    pub(crate) fn tar(&mut self) -> &mut tar::Builder<Sink<'a>> {
        &mut self.tar
    }

    /// Ends the tar, commits the blob and returns the layer.
    pub fn finish(self) -> Result<Layer> {
        let hashing = self
            .tar
            .into_inner()
            .map_err(BuildError::io("writing a layer"))?;
        let diff_id = format!("sha256:{}", hex::encode(hashing.hasher.finalize()));
        let ingest = hashing
            .inner
            .finish()
            .map_err(BuildError::io("compressing a layer"))?;
        let digest = ingest.0.commit()?;
        let size = self.store.size(&digest)?;
        let descriptor = Descriptor {
            media_type: media_type::OCI_LAYER_GZIP.to_string(),
            digest,
            size,
            platform: None,
            annotations: Default::default(),
            urls: Vec::new(),
        };
        Ok(Layer {
            descriptor,
            diff_id,
        })
    }
}

/// A relative path inside a root with `.` and `..` resolved lexically, never above the
/// root; None for an empty result (the root itself).
pub fn clean_relative(path: &str) -> PathBuf {
    let mut out = PathBuf::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// Resolves `path` inside `root` as the root's own processes would see it: symlinks are
/// followed with `root` as `/`, so nothing resolves outside it. The last component is
/// followed too when `follow_last`.
pub fn resolve_in_root(root: &Path, path: &str, follow_last: bool) -> Result<PathBuf> {
    let mut pending: Vec<std::ffi::OsString> = clean_relative(path)
        .components()
        .rev()
        .map(|c| c.as_os_str().to_owned())
        .collect();
    let mut done = PathBuf::new();
    let mut hops = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            done.pop();
            continue;
        }
        let candidate = done.join(&part);
        let full = root.join(&candidate);
        let is_last = pending.is_empty();
        match fs::symlink_metadata(&full) {
            Ok(m) if m.file_type().is_symlink() && (!is_last || follow_last) => {
                hops += 1;
                if hops > 40 {
                    return Err(BuildError::Io {
                        what: format!("resolving {path}"),
                        source: io::Error::other("too many levels of symbolic links"),
                    });
                }
                let target = fs::read_link(&full).map_err(BuildError::io(format!(
                    "reading link {}",
                    candidate.display()
                )))?;
                if target.is_absolute() {
                    done = PathBuf::new();
                }
                for c in target.components().rev() {
                    match c {
                        Component::Normal(n) => pending.push(n.to_owned()),
                        Component::ParentDir => pending.push("..".into()),
                        _ => {}
                    }
                }
            }
            _ => done = candidate,
        }
    }
    Ok(root.join(done))
}

/// Unpacks one layer (an uncompressed tar stream) onto `dir`, applying its whiteouts
/// (`.wh.<name>` removes a lower entry, `.wh..wh..opq` empties a directory). Entries that
/// would land outside `dir` are refused by `unpack_in`; device nodes that cannot be made
/// (without root) are skipped, as nothing a COPY reads is one.
pub fn apply_layer(dir: &Path, reader: impl Read) -> Result<()> {
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(true);
    let entries = archive
        .entries()
        .map_err(BuildError::io("reading a layer"))?;
    for entry in entries {
        let mut entry = entry.map_err(BuildError::io("reading a layer"))?;
        let path = entry
            .path()
            .map_err(BuildError::io("reading a layer"))?
            .into_owned();
        let rel = clean_relative(&path.to_string_lossy());
        let Some(name) = rel.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            continue;
        };
        // What this entry replaces or removes is found with the parent resolved inside
        // `dir`: a lower layer's symlink (`a -> /etc`) must not point the removal at the
        // host's own files.
        let parent = resolve_in_root(
            dir,
            &rel.parent().unwrap_or(Path::new("")).to_string_lossy(),
            true,
        )?;
        if let Some(hidden) = name.strip_prefix(".wh.") {
            if hidden == ".wh..opq" {
                if let Ok(rd) = fs::read_dir(&parent) {
                    for e in rd.flatten() {
                        remove_any(&e.path());
                    }
                }
            } else {
                remove_any(&parent.join(hidden));
            }
            continue;
        }
        let target = parent.join(&name);
        let kind = entry.header().entry_type();
        if let Ok(m) = fs::symlink_metadata(&target)
            && !(m.is_dir() && kind.is_dir())
        {
            remove_any(&target);
        }
        match entry.unpack_in(dir) {
            Ok(_) => {}
            Err(_) if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() => {}
            Err(e) => {
                return Err(BuildError::Io {
                    what: format!("unpacking {}", rel.display()),
                    source: e,
                });
            }
        }
    }
    Ok(())
}

fn remove_any(path: &Path) {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            let _ = fs::remove_dir_all(path);
        }
        Ok(_) => {
            let _ = fs::remove_file(path);
        }
        Err(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_stays_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("usr/bin")).unwrap();
        fs::write(root.join("usr/bin/tool"), b"x").unwrap();
        std::os::unix::fs::symlink("/usr/bin", root.join("bin")).unwrap();
        std::os::unix::fs::symlink("../../../../etc", root.join("escape")).unwrap();
        assert_eq!(
            resolve_in_root(root, "/bin/tool", true).unwrap(),
            root.join("usr/bin/tool")
        );
        assert_eq!(
            resolve_in_root(root, "escape/passwd", true).unwrap(),
            root.join("etc/passwd")
        );
        assert_eq!(
            resolve_in_root(root, "bin", false).unwrap(),
            root.join("bin")
        );
    }

    #[test]
    fn whiteouts_remove_lower_entries() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::write(root.join("a/b/c"), b"x").unwrap();
        fs::write(root.join("a/keep"), b"x").unwrap();
        fs::create_dir_all(root.join("o")).unwrap();
        fs::write(root.join("o/old"), b"x").unwrap();
        let mut tar = tar::Builder::new(Vec::new());
        for (name, data) in [
            ("a/.wh.b", &b""[..]),
            ("o/.wh..wh..opq", b""),
            ("o/new", b"n"),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut h, name, data).unwrap();
        }
        let bytes = tar.into_inner().unwrap();
        apply_layer(root, &bytes[..]).unwrap();
        assert!(!root.join("a/b").exists());
        assert!(root.join("a/keep").exists());
        assert!(!root.join("o/old").exists());
        assert_eq!(fs::read(root.join("o/new")).unwrap(), b"n");
    }

    #[test]
    fn replacing_and_whiteouts_never_reach_through_a_lower_symlink() {
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("victim"), b"keep").unwrap();
        fs::write(outside.path().join("hidden"), b"keep").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::os::unix::fs::symlink(outside.path(), root.join("a")).unwrap();
        let mut tar = tar::Builder::new(Vec::new());
        for (name, data) in [("a/.wh.hidden", &b""[..]), ("a/victim", b"new")] {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut h, name, data).unwrap();
        }
        let bytes = tar.into_inner().unwrap();
        // The entry itself may be refused (it lands outside); nothing outside changes.
        let _ = apply_layer(root, &bytes[..]);
        assert_eq!(fs::read(outside.path().join("victim")).unwrap(), b"keep");
        assert_eq!(fs::read(outside.path().join("hidden")).unwrap(), b"keep");
    }
}
