//! Applies one OCI layer (a tar stream) to the in-memory tree, streaming file
//! contents into the image. This is where hostile input is refused: `..`
//! components, paths through symlinks, bad hard links, oversized files and
//! names, malformed attributes.

use std::io::{BufReader, Read};

use tar::EntryType;

use crate::image::{CopyError, ImageWriter};
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
        let (meta, sparse) = self.meta(entry)?;
        let raw_path = match &sparse.name {
            Some(name) => name.clone(),
            None => entry.path_bytes().into_owned(),
        };
        self.path = String::from_utf8_lossy(&raw_path).into_owned();
        let comps = self.split(&raw_path)?;
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
                let stored = entry.size();
                let size = if sparse.seen {
                    sparse
                        .realsize
                        .ok_or_else(|| self.bad("sparse file without a real size"))?
                } else {
                    stored
                };
                if size.max(stored) > options.max_file_size {
                    return Err(Error::FileTooLarge {
                        layer: self.layer,
                        path: self.path.clone(),
                        size: size.max(stored),
                        limit: options.max_file_size,
                    });
                }
                let parent = self.walk(dirs, true)?.unwrap_or(ROOT);
                let written = if sparse.seen {
                    let mut map = sparse.map;
                    if sparse.major == Some(1) {
                        map = read_sparse_map(entry).map_err(|source| Error::Tar {
                            layer: self.layer,
                            source,
                        })?;
                    }
                    check_sparse_map(&map, size).map_err(|r| self.bad(r))?;
                    let mut expanded = SparseReader {
                        inner: entry,
                        map,
                        next: 0,
                        pos: 0,
                        size,
                    };
                    writer.write_file(&mut expanded, size)
                } else {
                    writer.write_file(entry, size)
                };
                let runs = written.map_err(|e| match e {
                    CopyError::Write(source) => writer.io_err(source),
                    CopyError::Read(source) => Error::Tar {
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

    fn meta<R: Read>(&self, entry: &mut tar::Entry<'_, R>) -> Result<(Meta, PaxSparse)> {
        let tar_err = |source| Error::Tar {
            layer: self.layer,
            source,
        };
        let mut pax_times: [Option<Ts>; 3] = [None; 3];
        let mut xattrs: Vec<Xattr> = Vec::new();
        let mut sparse = PaxSparse::default();
        let number = |v: &[u8]| {
            std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
        };
        if let Some(exts) = entry.pax_extensions().map_err(tar_err)? {
            for ext in exts {
                let ext = ext.map_err(tar_err)?;
                let key = ext.key_bytes();
                let value = ext.value_bytes();
                match key {
                    b"atime" => pax_times[0] = parse_time(value),
                    b"mtime" => pax_times[1] = parse_time(value),
                    b"ctime" => pax_times[2] = parse_time(value),
                    // GNU tar's PAX sparse formats 0.0, 0.1 and 1.0.
                    b"GNU.sparse.major" => sparse.major = number(value),
                    b"GNU.sparse.name" => sparse.name = Some(value.to_vec()),
                    b"GNU.sparse.realsize" | b"GNU.sparse.size" => {
                        sparse.realsize = number(value);
                    }
                    b"GNU.sparse.offset" => {
                        let off = number(value).ok_or_else(|| self.bad("bad sparse offset"))?;
                        sparse.map.push((off, 0));
                        sparse.seen = true;
                    }
                    b"GNU.sparse.numbytes" => {
                        let len = number(value).ok_or_else(|| self.bad("bad sparse length"))?;
                        match sparse.map.last_mut() {
                            Some(last) if last.1 == 0 => last.1 = len,
                            _ => return Err(self.bad("sparse length without an offset")),
                        }
                    }
                    b"GNU.sparse.map" => {
                        let nums: Option<Vec<u64>> = value
                            .split(|&b| b == b',')
                            .filter(|p| !p.is_empty())
                            .map(number)
                            .collect();
                        let nums = nums.ok_or_else(|| self.bad("bad sparse map"))?;
                        if nums.len() % 2 != 0 {
                            return Err(self.bad("bad sparse map"));
                        }
                        sparse.map = nums.chunks(2).map(|c| (c[0], c[1])).collect();
                        sparse.seen = true;
                    }
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
        sparse.seen |= sparse.major.is_some();
        Ok((
            Meta {
                perm,
                uid,
                gid,
                atime,
                mtime,
                ctime,
                xattrs,
            },
            sparse,
        ))
    }
}

/// Sparse-file records from a PAX header (GNU tar's formats 0.0, 0.1, 1.0).
#[derive(Default)]
struct PaxSparse {
    /// Any GNU.sparse record was present.
    seen: bool,
    major: Option<u64>,
    name: Option<Vec<u8>>,
    realsize: Option<u64>,
    /// (offset, length) of each data chunk; for 1.0 it is in the data instead.
    map: Vec<(u64, u64)>,
}

/// Most chunks a sparse map may list; more is refused rather than stored.
const MAX_SPARSE_CHUNKS: usize = 1 << 20;

/// Reads the format 1.0 sparse map at the start of the entry's data: decimal
/// numbers, one per line (count, then offset/length pairs), padded to 512 bytes.
fn read_sparse_map(r: &mut impl Read) -> std::io::Result<Vec<(u64, u64)>> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let mut consumed = 0usize;
    let mut next_number = |r: &mut dyn Read| -> std::io::Result<u64> {
        let mut value: u64 = 0;
        let mut digits = 0;
        loop {
            let mut b = [0u8];
            r.read_exact(&mut b)?;
            consumed += 1;
            match b[0] {
                b'\n' if digits > 0 => return Ok(value),
                c @ b'0'..=b'9' if digits < 20 => {
                    value = value
                        .checked_mul(10)
                        .and_then(|v| v.checked_add(u64::from(c - b'0')))
                        .ok_or_else(|| bad("sparse map number overflows"))?;
                    digits += 1;
                }
                _ => return Err(bad("malformed sparse map")),
            }
        }
    };
    let count = next_number(r)? as usize;
    if count > MAX_SPARSE_CHUNKS {
        return Err(bad("sparse map with too many chunks"));
    }
    let mut map = Vec::with_capacity(count);
    for _ in 0..count {
        let off = next_number(r)?;
        let len = next_number(r)?;
        map.push((off, len));
    }
    let pad = (512 - consumed % 512) % 512;
    std::io::copy(&mut r.take(pad as u64), &mut std::io::sink())?;
    Ok(map)
}

fn check_sparse_map(map: &[(u64, u64)], size: u64) -> std::result::Result<(), String> {
    if map.len() > MAX_SPARSE_CHUNKS {
        return Err("sparse map with too many chunks".into());
    }
    let mut end = 0u64;
    for &(off, len) in map {
        let chunk_end = off.checked_add(len).ok_or("sparse chunk overflows")?;
        if off < end || chunk_end > size {
            return Err("sparse map chunks overlap, are out of order or exceed the file".into());
        }
        end = chunk_end;
    }
    Ok(())
}

/// Expands a sparse entry: data chunks from `inner`, zeros in between.
struct SparseReader<'r, R> {
    inner: &'r mut R,
    map: Vec<(u64, u64)>,
    /// Index of the next chunk not yet fully read.
    next: usize,
    pos: u64,
    size: u64,
}

impl<R: Read> Read for SparseReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.next < self.map.len()
            && self.pos >= self.map[self.next].0 + self.map[self.next].1
        {
            self.next += 1;
        }
        if self.pos >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len() as u64;
        let n = match self.map.get(self.next) {
            Some(&(off, len)) if self.pos >= off => {
                let n = want.min(off + len - self.pos) as usize;
                let got = self.inner.read(&mut buf[..n])?;
                if got == 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "sparse entry ended before its data",
                    ));
                }
                got
            }
            Some(&(off, _)) => {
                let n = want.min(off - self.pos) as usize;
                buf[..n].fill(0);
                n
            }
            None => {
                let n = want.min(self.size - self.pos) as usize;
                buf[..n].fill(0);
                n
            }
        };
        self.pos += n as u64;
        Ok(n)
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
            // The image's root filesystem is an overlayfs lower when it runs: overlayfs's
            // own attributes (redirects, metacopy, opaque markers) in it would steer the
            // mount, so an image layer may not carry them.
            if (index == 4 || index == 1) && suffix.starts_with(b"overlay.") {
                return Err(format!(
                    "extended attribute {:?} belongs to overlayfs and is refused in an image layer",
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
