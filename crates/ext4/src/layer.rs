//! Applies one OCI layer (a tar stream) to the in-memory tree, streaming file
//! contents into the image. This is where hostile input is refused: `..`
//! components, paths through symlinks, bad hard links, oversized files and
//! names, malformed attributes.

use std::io::{BufReader, Read};

use tar::EntryType;

use crate::image::ImageWriter;
use crate::tree::{Kind, Meta, NodeId, ROOT, Tree, Ts, Xattr};
use crate::{Error, Options, Result};

const WHITEOUT: &[u8] = b".wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";
const MAX_SYMLINK: usize = 4095;

pub(crate) fn apply(
    tree: &mut Tree,
    writer: &mut ImageWriter,
    reader: impl Read,
    layer: usize,
    options: &Options,
) -> Result<()> {
    let tar_err = |source| Error::Tar { layer, source };
    let mut archive = tar::Archive::new(BufReader::with_capacity(1 << 20, reader));
    for entry in archive.entries().map_err(tar_err)? {
        let mut entry = entry.map_err(tar_err)?;
        let mut ctx = Ctx {
            tree: &mut *tree,
            layer,
            stamp: layer as u32,
            path: String::new(),
        };
        ctx.entry(&mut entry, writer, options)?;
    }
    // Read the stream to its end (tar padding after the end-of-archive
    // marker) so that a caller hashing or checksumming it sees every byte.
    std::io::copy(&mut archive.into_inner(), &mut std::io::sink()).map_err(tar_err)?;
    Ok(())
}

struct Ctx<'t> {
    tree: &'t mut Tree,
    layer: usize,
    stamp: u32,
    /// The entry's path as written in the tar, for error messages.
    path: String,
}

fn show(comps: &[&[u8]]) -> String {
    comps
        .iter()
        .map(|c| String::from_utf8_lossy(c))
        .collect::<Vec<_>>()
        .join("/")
}

impl Ctx<'_> {
    fn bad(&self, reason: impl Into<String>) -> Error {
        Error::BadEntry {
            layer: self.layer,
            path: self.path.clone(),
            reason: reason.into(),
        }
    }

    /// Splits a tar path into components, dropping `.` and empty ones
    /// (so absolute paths are taken relative to the root, as Docker does).
    fn split<'p>(&self, raw: &'p [u8]) -> Result<Vec<&'p [u8]>> {
        let mut comps = Vec::new();
        for c in raw.split(|&b| b == b'/') {
            match c {
                b"" | b"." => {}
                b".." => {
                    return Err(Error::DotDot {
                        layer: self.layer,
                        path: String::from_utf8_lossy(raw).into_owned(),
                    });
                }
                _ if c.len() > 255 => {
                    return Err(Error::NameTooLong {
                        layer: self.layer,
                        path: String::from_utf8_lossy(raw).into_owned(),
                    });
                }
                _ if c.contains(&0) => return Err(self.bad("path contains a NUL byte")),
                _ => comps.push(c),
            }
        }
        Ok(comps)
    }

    /// Walks to the directory holding the last component. With `create`,
    /// missing directories are made and every directory passed is stamped
    /// with this layer; without it, a missing directory yields `None`.
    fn walk(&mut self, dirs: &[&[u8]], create: bool) -> Result<Option<NodeId>> {
        let mut cur = ROOT;
        for (i, c) in dirs.iter().enumerate() {
            match self.tree.lookup(cur, c) {
                Some(d) => match self.tree.node(d.node).kind {
                    Kind::Dir(_) => {
                        if create {
                            self.tree.stamp(cur, c, self.stamp);
                        }
                        cur = d.node;
                    }
                    Kind::Symlink(_) => {
                        return Err(Error::ThroughSymlink {
                            layer: self.layer,
                            path: self.path.clone(),
                            symlink: show(&dirs[..=i]),
                        });
                    }
                    _ => {
                        return Err(Error::NotADirectory {
                            layer: self.layer,
                            path: self.path.clone(),
                            parent: show(&dirs[..=i]),
                        });
                    }
                },
                None if create => {
                    let meta = self.tree.implicit_dir_meta();
                    let id = self.tree.add(meta, Kind::Dir(Default::default()));
                    self.tree.link(cur, c, id, self.stamp);
                    cur = id;
                }
                None => return Ok(None),
            }
        }
        Ok(Some(cur))
    }

    fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        writer: &mut ImageWriter,
        options: &Options,
    ) -> Result<()> {
        let etype = entry.header().entry_type();
        if etype.is_pax_global_extensions() {
            return Ok(());
        }
        let raw_path = entry.path_bytes().into_owned();
        self.path = String::from_utf8_lossy(&raw_path).into_owned();
        let comps = self.split(&raw_path)?;
        let meta = self.meta(entry)?;
        let Some((&name, dirs)) = comps.split_last() else {
            // The root itself ("./"): only its metadata can change.
            if etype != EntryType::Directory {
                return Err(self.bad("the root must be a directory"));
            }
            self.tree.node_mut(ROOT).meta = meta;
            return Ok(());
        };

        if let Some(hidden) = name.strip_prefix(WHITEOUT) {
            return self.whiteout(dirs, name, hidden);
        }

        match etype {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let size = entry.size();
                if size > options.max_file_size {
                    return Err(Error::FileTooLarge {
                        layer: self.layer,
                        path: self.path.clone(),
                        size,
                        limit: options.max_file_size,
                    });
                }
                let parent = self.walk(dirs, true)?.unwrap_or(ROOT);
                let runs = writer.write_file(entry, size).map_err(|e| match e {
                    Ok(e) => e,
                    Err(source) => Error::Tar {
                        layer: self.layer,
                        source,
                    },
                })?;
                let id = self.tree.add(meta, Kind::File { size, runs });
                self.tree.link(parent, name, id, self.stamp);
            }
            EntryType::Directory => {
                let parent = self.walk(dirs, true)?.unwrap_or(ROOT);
                match self.tree.lookup(parent, name) {
                    // An existing directory keeps its content and takes the new metadata.
                    Some(d) if matches!(self.tree.node(d.node).kind, Kind::Dir(_)) => {
                        self.tree.node_mut(d.node).meta = meta;
                        self.tree.stamp(parent, name, self.stamp);
                    }
                    _ => {
                        let id = self.tree.add(meta, Kind::Dir(Default::default()));
                        self.tree.link(parent, name, id, self.stamp);
                    }
                }
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                if target.is_empty() {
                    return Err(self.bad("symlink with an empty target"));
                }
                if target.len() > MAX_SYMLINK || target.contains(&0) {
                    return Err(self.bad("symlink target longer than 4095 bytes or with a NUL"));
                }
                let parent = self.walk(dirs, true)?.unwrap_or(ROOT);
                let id = self.tree.add(meta, Kind::Symlink(target.into()));
                self.tree.link(parent, name, id, self.stamp);
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                let node = self.hard_link_target(&comps, &target)?;
                let parent = self.walk(dirs, true)?.unwrap_or(ROOT);
                self.tree.link(parent, name, node, self.stamp);
            }
            EntryType::Char | EntryType::Block => {
                let header = entry.header();
                let dev = |r: std::io::Result<Option<u32>>| {
                    r.ok()
                        .flatten()
                        .ok_or_else(|| self.bad("device node without a device number"))
                };
                let major = dev(header.device_major())?;
                let minor = dev(header.device_minor())?;
                if major >= 1 << 12 || minor >= 1 << 20 {
                    return Err(self.bad(format!("device number {major}:{minor} out of range")));
                }
                let kind = if etype == EntryType::Char {
                    Kind::CharDev { major, minor }
                } else {
                    Kind::BlockDev { major, minor }
                };
                let parent = self.walk(dirs, true)?.unwrap_or(ROOT);
                let id = self.tree.add(meta, kind);
                self.tree.link(parent, name, id, self.stamp);
            }
            EntryType::Fifo => {
                let parent = self.walk(dirs, true)?.unwrap_or(ROOT);
                let id = self.tree.add(meta, Kind::Fifo);
                self.tree.link(parent, name, id, self.stamp);
            }
            other => {
                return Err(self.bad(format!("unsupported tar entry type {other:?}")));
            }
        }
        Ok(())
    }

    /// `.wh.NAME` hides NAME of lower layers; `.wh..wh..opq` hides all of the
    /// directory's lower content. Other `.wh..wh.` names are aufs bookkeeping.
    fn whiteout(&mut self, dirs: &[&[u8]], name: &[u8], hidden: &[u8]) -> Result<()> {
        if name == OPAQUE {
            let dir = self.walk(dirs, true)?.unwrap_or(ROOT);
            self.tree.make_opaque(dir, self.stamp);
            return Ok(());
        }
        if name.starts_with(b".wh..wh.") {
            return Ok(());
        }
        if hidden.is_empty() || hidden == b"." || hidden == b".." {
            return Err(self.bad("whiteout without a valid name"));
        }
        if let Some(dir) = self.walk(dirs, false)?
            && let Some(d) = self.tree.lookup(dir, hidden)
            && d.layer < self.stamp
        {
            self.tree.remove(dir, hidden);
        }
        Ok(())
    }

    fn hard_link_target(&mut self, comps: &[&[u8]], raw_target: &[u8]) -> Result<NodeId> {
        let target_str = String::from_utf8_lossy(raw_target).into_owned();
        let (layer, path) = (self.layer, self.path.clone());
        let fail = |reason| Error::BadHardLink {
            layer,
            path: path.clone(),
            target: target_str.clone(),
            reason,
        };
        let tcomps = self.split(raw_target)?;
        if tcomps.is_empty() {
            return Err(fail("target is the root directory"));
        }
        if tcomps == comps {
            return Err(fail("link to itself"));
        }
        let (&tname, tdirs) = tcomps.split_last().ok_or_else(|| fail("empty target"))?;
        let node = self
            .walk(tdirs, false)?
            .and_then(|dir| self.tree.lookup(dir, tname))
            .ok_or_else(|| fail("target does not exist"))?
            .node;
        if matches!(self.tree.node(node).kind, Kind::Dir(_)) {
            return Err(fail("target is a directory"));
        }
        Ok(node)
    }

    fn meta<R: Read>(&self, entry: &mut tar::Entry<'_, R>) -> Result<Meta> {
        let tar_err = |source| Error::Tar {
            layer: self.layer,
            source,
        };
        let mut pax_times: [Option<Ts>; 3] = [None; 3];
        let mut xattrs: Vec<Xattr> = Vec::new();
        if let Some(exts) = entry.pax_extensions().map_err(tar_err)? {
            for ext in exts {
                let ext = ext.map_err(tar_err)?;
                let key = ext.key_bytes();
                let value = ext.value_bytes();
                match key {
                    b"atime" => pax_times[0] = parse_time(value),
                    b"mtime" => pax_times[1] = parse_time(value),
                    b"ctime" => pax_times[2] = parse_time(value),
                    _ => {
                        if let Some(name) = key.strip_prefix(b"SCHILY.xattr.")
                            && let Some(x) = map_xattr(name, value).map_err(|r| self.bad(r))?
                        {
                            xattrs.retain(|o| o.index != x.index || o.name != x.name);
                            xattrs.push(x);
                        }
                    }
                }
            }
        }
        if !xattrs.is_empty() {
            let refs: Vec<&Xattr> = xattrs.iter().collect();
            if !crate::disk::xattrs_fit_block(&refs) {
                return Err(self.bad("extended attributes do not fit in one 4 KiB block"));
            }
        }
        let header = entry.header();
        let perm = (header.mode().map_err(tar_err)? & 0o7777) as u16;
        let id = |v: std::io::Result<u64>, what: &str| -> Result<u32> {
            let v = v.map_err(tar_err)?;
            u32::try_from(v).map_err(|_| self.bad(format!("{what} {v} does not fit in 32 bits")))
        };
        let uid = id(header.uid(), "uid")?;
        let gid = id(header.gid(), "gid")?;
        let mtime = pax_times[1].unwrap_or(Ts {
            sec: header.mtime().map_err(tar_err)? as i64,
            nsec: 0,
        });
        let gnu_time = |f: fn(&tar::GnuHeader) -> std::io::Result<u64>| {
            header
                .as_gnu()
                .and_then(|g| f(g).ok())
                .filter(|&t| t != 0)
                .map(|t| Ts {
                    sec: t as i64,
                    nsec: 0,
                })
        };
        let atime = pax_times[0]
            .or_else(|| gnu_time(tar::GnuHeader::atime))
            .unwrap_or(mtime);
        let ctime = pax_times[2]
            .or_else(|| gnu_time(tar::GnuHeader::ctime))
            .unwrap_or(mtime);
        Ok(Meta {
            perm,
            uid,
            gid,
            atime,
            mtime,
            ctime,
            xattrs,
        })
    }
}

/// Parses a PAX time such as `1700000000.123456789` or `-1.5`.
fn parse_time(v: &[u8]) -> Option<Ts> {
    let s = std::str::from_utf8(v).ok()?;
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let mut sec: i64 = int.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let mut nsec: u32 = if digits.is_empty() {
        0
    } else {
        format!("{digits:0<9}").parse().ok()?
    };
    if neg {
        sec = -sec;
        if nsec > 0 {
            sec -= 1;
            nsec = 1_000_000_000 - nsec;
        }
    }
    Some(Ts { sec, nsec })
}

/// Maps an xattr name to ext4's name index. Namespaces ext4 cannot hold
/// (e.g. macOS `com.apple.*`) are dropped, as the kernel would refuse them.
fn map_xattr(name: &[u8], value: &[u8]) -> std::result::Result<Option<Xattr>, String> {
    let (index, suffix, value): (u8, &[u8], Vec<u8>) = match name {
        b"system.posix_acl_access" => (2, b"", acl_to_disk(value)?),
        b"system.posix_acl_default" => (3, b"", acl_to_disk(value)?),
        _ => {
            let Some((index, suffix)) = [(&b"user."[..], 1u8), (b"trusted.", 4), (b"security.", 6)]
                .iter()
                .find_map(|(p, i)| name.strip_prefix(*p).map(|s| (*i, s)))
            else {
                return Ok(None);
            };
            if suffix.is_empty() {
                return Err(format!(
                    "extended attribute {:?} has an empty name",
                    String::from_utf8_lossy(name)
                ));
            }
            (index, suffix, value.to_vec())
        }
    };
    if suffix.len() > 255 {
        return Err("extended attribute name longer than 255 bytes".into());
    }
    Ok(Some(Xattr {
        index,
        name: suffix.into(),
        value: value.into(),
    }))
}

/// Converts a POSIX ACL from the xattr interface format (version 2, 8-byte
/// entries) to ext4's on-disk format (version 1, ids only where needed).
fn acl_to_disk(v: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let bad = || "malformed POSIX ACL attribute".to_string();
    if v.len() < 4
        || !(v.len() - 4).is_multiple_of(8)
        || u32::from_le_bytes([v[0], v[1], v[2], v[3]]) != 2
    {
        return Err(bad());
    }
    let mut out = 1u32.to_le_bytes().to_vec();
    for e in v[4..].chunks(8) {
        let tag = u16::from_le_bytes([e[0], e[1]]);
        out.extend_from_slice(&e[0..4]);
        match tag {
            0x01 | 0x04 | 0x10 | 0x20 => {}
            0x02 | 0x08 => out.extend_from_slice(&e[4..8]),
            _ => return Err(bad()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times_parse() {
        assert_eq!(
            parse_time(b"12.5"),
            Some(Ts {
                sec: 12,
                nsec: 500_000_000
            })
        );
        assert_eq!(
            parse_time(b"-1.25"),
            Some(Ts {
                sec: -2,
                nsec: 750_000_000
            })
        );
        assert_eq!(parse_time(b"7"), Some(Ts { sec: 7, nsec: 0 }));
        assert_eq!(parse_time(b"x"), None);
    }

    #[test]
    fn acl_conversion_drops_ids_of_owner_entries() {
        let mut v = 2u32.to_le_bytes().to_vec();
        for (tag, perm, id) in [
            (1u16, 7u16, u32::MAX),
            (2, 5, 1000),
            (4, 5, u32::MAX),
            (0x10, 5, u32::MAX),
            (0x20, 4, u32::MAX),
        ] {
            v.extend_from_slice(&tag.to_le_bytes());
            v.extend_from_slice(&perm.to_le_bytes());
            v.extend_from_slice(&id.to_le_bytes());
        }
        let d = acl_to_disk(&v).unwrap();
        assert_eq!(d.len(), 4 + 4 + 8 + 4 + 4 + 4);
        assert_eq!(&d[..4], &1u32.to_le_bytes());
    }
}
