//! The build cache: what a layer-making step produced, keyed by everything that decides
//! its result, kept on disk so it survives daemon restarts.
//!
//! A key is the sha256 of the parent's key (the base image's manifest digest, or
//! `scratch`, for a stage's first step), the instruction with its words expanded, and its
//! inputs (the content digests of COPY sources, the build args a RUN sees). The entry
//! names the layer blob; a hit whose blob has since been garbage collected counts as a
//! miss. Layout, under the directory the daemon hands [`Cache::open`]:
//! ```text
//! <dir>/<key hex>.json   one entry: the layer's descriptor and diff ID, and when the step
//!                        first ran (its history time, so a cached rebuild gives the same
//!                        image ID) (atomic writes)
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::layer::Layer;
use crate::{BuildError, Result};

/// One cached step.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    pub layer: Layer,
    /// RFC 3339 time the step first ran.
    pub created: String,
}

/// The cache directory.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

/// A cache key: 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key(String);

impl Key {
    /// The key of a stage's start: its base (a manifest digest, or `scratch`).
    pub fn root(base: &str) -> Key {
        Key::derive(None, "FROM", base)
    }

    /// The key of a step after `parent`.
    pub fn derive(parent: Option<&Key>, instruction: &str, inputs: &str) -> Key {
        let mut h = Sha256::new();
        h.update(b"container-build-cache-v1\0");
        h.update(parent.map_or("", |k| k.0.as_str()).as_bytes());
        h.update(b"\0");
        h.update(instruction.as_bytes());
        h.update(b"\0");
        h.update(inputs.as_bytes());
        Key(hex::encode(h.finalize()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Cache {
    /// Opens (creating) the cache at `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Cache> {
        let dir = dir.into();
        statefs::create_private_dir(&dir)
            .map_err(BuildError::io(format!("creating {}", dir.display())))?;
        Ok(Cache { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, key: &Key) -> PathBuf {
        self.dir.join(format!("{}.json", key.0))
    }

    /// The layer recorded for `key` when its blob is still in `store`.
    pub fn get(&self, key: &Key, store: &oci::store::ContentStore) -> Option<Entry> {
        let bytes = fs::read(self.path(key)).ok()?;
        let entry: Entry = serde_json::from_slice(&bytes).ok()?;
        store
            .contains(&entry.layer.descriptor.digest)
            .then_some(entry)
    }

    /// Records `entry` for `key`.
    pub fn put(&self, key: &Key, entry: &Entry) -> Result<()> {
        let bytes = serde_json::to_vec(entry).map_err(|e| BuildError::Io {
            what: "encoding a cache entry".into(),
            source: std::io::Error::other(e),
        })?;
        let path = self.path(key);
        statefs::write_atomic(&path, &bytes)
            .map_err(BuildError::io(format!("writing {}", path.display())))
    }

    /// Removes every entry; returns how many there were and the bytes of their files.
    /// The layers themselves are blobs of the content store, which its GC reclaims once no
    /// image names them.
    pub fn prune(&self) -> Result<(Vec<String>, u64)> {
        let mut removed = Vec::new();
        let mut bytes = 0;
        let rd = fs::read_dir(&self.dir)
            .map_err(BuildError::io(format!("reading {}", self.dir.display())))?;
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(key) = name.strip_suffix(".json") {
                bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
                fs::remove_file(e.path())
                    .map_err(BuildError::io(format!("removing {}", e.path().display())))?;
                removed.push(key.to_string());
            }
        }
        removed.sort();
        Ok((removed, bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_depend_on_parent_instruction_and_inputs() {
        let root = Key::root("scratch");
        let a = Key::derive(Some(&root), "COPY a /a", "sha256:1");
        assert_eq!(a, Key::derive(Some(&root), "COPY a /a", "sha256:1"));
        assert_ne!(a, Key::derive(Some(&root), "COPY a /a", "sha256:2"));
        assert_ne!(a, Key::derive(Some(&root), "COPY a /b", "sha256:1"));
        assert_ne!(
            a,
            Key::derive(Some(&Key::root("x")), "COPY a /a", "sha256:1")
        );
        assert_eq!(a.as_str().len(), 64);
    }
}
