//! `container build -o type=tar|local`: an image's file system as one tar, its layers
//! applied in order with their whiteouts honoured, as Docker's tar and local exporters
//! give it (not an image: no config, no layers).
//!
//! Two passes over the layers, streaming, nothing unpacked to disk: the first decides, for
//! every path, which layer's entry survives (a later entry replaces an earlier one; a
//! whiteout removes a path and what lies below it; an opaque marker empties its directory
//! of what lower layers put there; a non-directory replacing a directory removes the
//! directory's lower contents); the second copies each surviving entry, bottom layer first,
//! so directories come before what they hold. Entry names are relative (`bin/busybox`).
//! Owners, modes and times are kept; PAX xattrs are not carried over.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};

use oci::Descriptor;
use oci::store::ContentStore;

use crate::layer::clean_relative;
use crate::{BuildError, Result};

/// What a path is in the final file system: the layer whose entry wins, and whether it is
/// a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Winner {
    layer: usize,
    dir: bool,
}

/// Removes every path strictly below `dir` that a layer before `layer` put there.
fn remove_below(map: &mut BTreeMap<String, Winner>, dir: &str, layer: usize) {
    let prefix = if dir.is_empty() {
        String::new()
    } else {
        format!("{dir}/")
    };
    let doomed: Vec<String> = map
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .filter(|(_, w)| w.layer < layer)
        .map(|(k, _)| k.clone())
        .collect();
    for k in doomed {
        map.remove(&k);
    }
}

/// An entry's path, cleaned and relative; None for the root itself.
fn entry_path<R: Read>(entry: &tar::Entry<'_, R>) -> io::Result<Option<String>> {
    let raw = entry.path()?;
    let clean = clean_relative(&raw.to_string_lossy());
    let s = clean.to_string_lossy().into_owned();
    Ok((!s.is_empty()).then_some(s))
}

fn read_err(what: &str) -> impl FnOnce(io::Error) -> BuildError + '_ {
    move |source| BuildError::Io {
        what: what.to_string(),
        source,
    }
}

/// Which layer's entry each path of the final file system comes from.
fn winners(
    open: &dyn Fn(usize) -> Result<Box<dyn Read + Send>>,
    count: usize,
) -> Result<BTreeMap<String, Winner>> {
    let mut map: BTreeMap<String, Winner> = BTreeMap::new();
    for layer in 0..count {
        let mut archive = tar::Archive::new(open(layer)?);
        for entry in archive.entries().map_err(read_err("reading a layer"))? {
            let entry = entry.map_err(read_err("reading a layer"))?;
            let Some(path) = entry_path(&entry).map_err(read_err("reading a layer"))? else {
                continue;
            };
            let (parent, name) = match path.rsplit_once('/') {
                Some((p, n)) => (p.to_string(), n.to_string()),
                None => (String::new(), path.clone()),
            };
            if let Some(hidden) = name.strip_prefix(".wh.") {
                if hidden == ".wh..opq" {
                    remove_below(&mut map, &parent, layer);
                } else {
                    let gone = if parent.is_empty() {
                        hidden.to_string()
                    } else {
                        format!("{parent}/{hidden}")
                    };
                    if map.get(&gone).is_some_and(|w| w.layer < layer) {
                        map.remove(&gone);
                    }
                    remove_below(&mut map, &gone, layer);
                }
                continue;
            }
            let dir = entry.header().entry_type().is_dir();
            if !dir {
                remove_below(&mut map, &path, layer);
            }
            map.insert(path, Winner { layer, dir });
        }
    }
    Ok(map)
}

/// Writes the file system of the layers `open` gives (bottom first, uncompressed tars) as
/// one tar into `out`.
pub fn write_filesystem_from(
    open: &dyn Fn(usize) -> Result<Box<dyn Read + Send>>,
    count: usize,
    out: impl Write,
) -> Result<()> {
    let map = winners(open, count)?;
    let mut tar = tar::Builder::new(out);
    tar.mode(tar::HeaderMode::Complete);
    tar.follow_symlinks(false);
    let write_err = |p: &str| read_err_owned(format!("writing {p}"));
    for layer in 0..count {
        let mut archive = tar::Archive::new(open(layer)?);
        for entry in archive.entries().map_err(read_err("reading a layer"))? {
            let mut entry = entry.map_err(read_err("reading a layer"))?;
            let Some(path) = entry_path(&entry).map_err(read_err("reading a layer"))? else {
                continue;
            };
            if map.get(&path).map(|w| w.layer) != Some(layer) {
                continue;
            }
            let mut header = entry.header().clone();
            header.set_size(entry.size());
            use tar::EntryType as T;
            match header.entry_type() {
                T::Symlink | T::Link => {
                    let target = entry
                        .link_name()
                        .map_err(read_err("reading a layer"))?
                        .map(|t| t.into_owned())
                        .unwrap_or_default();
                    // Hard links name paths of the archive: cleaned as entry names are.
                    let target = if header.entry_type() == T::Link {
                        clean_relative(&target.to_string_lossy())
                    } else {
                        target
                    };
                    header.set_size(0);
                    tar.append_link(&mut header, &path, &target)
                        .map_err(write_err(&path))?;
                }
                _ => {
                    tar.append_data(&mut header, &path, &mut entry)
                        .map_err(write_err(&path))?;
                }
            }
        }
    }
    tar.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(read_err("finishing the file system tar"))
}

fn read_err_owned(what: String) -> impl FnOnce(io::Error) -> BuildError {
    move |source| BuildError::Io { what, source }
}

/// Writes the file system of the image whose layers are `layers` (bottom first) into `out`.
pub fn write_filesystem(
    store: &ContentStore,
    layers: &[Descriptor],
    out: impl Write,
) -> Result<()> {
    let open =
        |i: usize| -> Result<Box<dyn Read + Send>> { Ok(oci::open_layer(store, &layers[i])?) };
    write_filesystem_from(&open, layers.len(), out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A layer of (name, kind, link target or data).
    fn layer(entries: &[(&str, char, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, extra) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mode(if *kind == 'd' { 0o755 } else { 0o644 });
            h.set_mtime(1_700_000_000);
            h.set_uid(7);
            match kind {
                'd' => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    b.append_data(&mut h, name, io::empty()).unwrap();
                }
                'l' => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_size(0);
                    b.append_link(&mut h, name, extra).unwrap();
                }
                'h' => {
                    h.set_entry_type(tar::EntryType::Link);
                    h.set_size(0);
                    b.append_link(&mut h, name, extra).unwrap();
                }
                _ => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(extra.len() as u64);
                    b.append_data(&mut h, name, extra.as_bytes()).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    /// (name, kind letter, content or link target, uid) of every entry of a tar.
    fn listing(tar_bytes: &[u8]) -> Vec<(String, char, String, u64)> {
        let mut a = tar::Archive::new(tar_bytes);
        let mut out = Vec::new();
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let kind = match e.header().entry_type() {
                tar::EntryType::Directory => 'd',
                tar::EntryType::Symlink => 'l',
                tar::EntryType::Link => 'h',
                _ => 'f',
            };
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let uid = e.header().uid().unwrap();
            let extra = match kind {
                'l' | 'h' => e
                    .link_name()
                    .unwrap()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
                _ => {
                    let mut s = String::new();
                    e.read_to_string(&mut s).unwrap();
                    s
                }
            };
            out.push((name, kind, extra, uid));
        }
        out
    }

    #[test]
    fn layers_flatten_with_whiteouts_opaque_dirs_and_replacements() {
        let layers = [
            layer(&[
                ("./", 'd', ""),
                ("./etc/", 'd', ""),
                ("./etc/passwd", 'f', "root\n"),
                ("./etc/old", 'f', "old"),
                ("./opt/", 'd', ""),
                ("./opt/a", 'f', "a"),
                ("./var/", 'd', ""),
                ("./var/log/", 'd', ""),
                ("./var/log/x", 'f', "x"),
                ("./bin/", 'd', ""),
                ("./bin/busybox", 'f', "BB"),
            ]),
            layer(&[
                ("etc/", 'd', ""),
                ("etc/.wh.old", 'f', ""),
                ("etc/passwd", 'f', "root\nuser\n"),
                ("opt/", 'd', ""),
                ("opt/.wh..wh..opq", 'f', ""),
                ("opt/b", 'f', "b"),
                ("var", 'f', "now a file"),
                ("bin/sh", 'l', "busybox"),
                ("bin/ls", 'h', "./bin/busybox"),
            ]),
        ];
        let open = |i: usize| -> Result<Box<dyn Read + Send>> {
            Ok(Box::new(io::Cursor::new(layers[i].clone())))
        };
        let mut out = Vec::new();
        write_filesystem_from(&open, layers.len(), &mut out).unwrap();
        let got = listing(&out);
        let want: Vec<(String, char, String, u64)> = [
            ("bin", 'd', ""),
            ("bin/busybox", 'f', "BB"),
            ("etc", 'd', ""),
            ("etc/passwd", 'f', "root\nuser\n"),
            ("opt", 'd', ""),
            ("opt/b", 'f', "b"),
            ("var", 'f', "now a file"),
            ("bin/sh", 'l', "busybox"),
            ("bin/ls", 'h', "bin/busybox"),
        ]
        .iter()
        .map(|(n, k, e)| (n.to_string(), *k, e.to_string(), 7))
        .collect();
        // Bottom layer first: the lower layer's survivors, then the upper layer's.
        let mut want_sorted = want.clone();
        want_sorted.sort();
        let mut got_sorted = got.clone();
        got_sorted.sort();
        assert_eq!(got_sorted, want_sorted);
        let pos = |n: &str| got.iter().position(|e| e.0 == n).unwrap();
        assert!(pos("bin") < pos("bin/sh") && pos("bin/busybox") < pos("bin/ls"));
    }
}
