//! COPY and ADD on the host: which files a step takes (from the context or a stage's root
//! filesystem), the digest of their content (the step's cache input), and the layer they
//! make.
//!
//! Docker's rules: a directory source copies its contents; a file goes to `<dest>` or, when
//! `<dest>` ends with `/` or there are several sources, into it; wildcards (`*`, `?`,
//! `[…]`) match within one path segment; new files belong to 0:0 unless `--chown`; modes
//! and modification times are kept unless `--chmod`. `ADD` unpacks a local tar archive
//! (plain or gzip) into `<dest>`.

use std::fs;
use std::io::{Read, Seek};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::layer::{LayerWriter, clean_relative, resolve_in_root};
use crate::{BuildError, Result};

/// What one entry of the layer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Dir,
    /// A regular file read from this path.
    File(PathBuf),
    Symlink(PathBuf),
    /// Literal bytes (a heredoc).
    Data(Vec<u8>),
    /// A tar archive ADD unpacks here.
    Archive(PathBuf),
}

/// One entry of the layer a COPY makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The path in the image, relative to `/`.
    pub dest: PathBuf,
    pub content: Content,
    pub mode: u32,
    pub mtime: u64,
    /// A parent directory the COPY creates on the way to its destination: `--chmod` does
    /// not apply to it.
    pub implied: bool,
}

/// Where sources come from and how they land.
#[derive(Debug, Clone)]
pub struct CopySpec {
    /// The context directory or a stage's root filesystem.
    pub root: PathBuf,
    /// The sources as written (expanded), relative to `root`.
    pub sources: Vec<String>,
    /// Literal sources (heredocs): name and body.
    pub literals: Vec<(String, Vec<u8>)>,
    /// Downloaded `ADD` URLs: the file's name and where the download is. They are 0600, as
    /// Docker makes them, and never unpacked.
    pub urls: Vec<(String, PathBuf)>,
    /// The destination, absolute (WORKDIR already applied).
    pub dest: String,
    /// `--chmod`, parsed.
    pub chmod: Option<u32>,
    /// `--exclude` patterns.
    pub exclude: Vec<String>,
    /// ADD: unpack local tar archives.
    pub unpack_archives: bool,
}

/// Why a COPY could not take its sources.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("{0:?} not found")]
    NotFound(String),
    #[error("invalid --exclude pattern: {0}")]
    Exclude(String),
    #[error(transparent)]
    Build(#[from] BuildError),
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Matches one path segment against a pattern with `*`, `?` and `[…]` (`[!…]`/`[^…]`
/// negated, `a-z` ranges).
pub fn glob_segment(pattern: &str, name: &str) -> bool {
    fn rec(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len()).any(|i| rec(&p[1..], &n[i..])),
            Some('?') => !n.is_empty() && rec(&p[1..], &n[1..]),
            Some('[') => {
                let Some(close) = p.iter().skip(1).position(|&c| c == ']').map(|i| i + 1) else {
                    return n.first() == Some(&'[') && rec(&p[1..], &n[1..]);
                };
                let Some(&c) = n.first() else { return false };
                let mut class = &p[1..close];
                let negate = matches!(class.first(), Some('!' | '^'));
                if negate {
                    class = &class[1..];
                }
                let mut hit = false;
                let mut i = 0;
                while i < class.len() {
                    if i + 2 < class.len() && class[i + 1] == '-' {
                        hit |= class[i] <= c && c <= class[i + 2];
                        i += 3;
                    } else {
                        hit |= class[i] == c;
                        i += 1;
                    }
                }
                hit != negate && rec(&p[close + 1..], &n[1..])
            }
            Some('\\') if p.len() > 1 => n.first() == Some(&p[1]) && rec(&p[2..], &n[1..]),
            Some(c) => n.first() == Some(c) && rec(&p[1..], &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    rec(&p, &n)
}

/// The paths (relative to `root`) a wildcard source matches, sorted.
fn expand_glob(root: &Path, pattern: &str) -> Vec<PathBuf> {
    let segments: Vec<String> = clean_relative(pattern)
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let mut current = vec![PathBuf::new()];
    for seg in &segments {
        let mut next = Vec::new();
        for dir in &current {
            if has_glob(seg) {
                let Ok(rd) = fs::read_dir(root.join(dir)) else {
                    continue;
                };
                let mut names: Vec<String> = rd
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| glob_segment(seg, n))
                    .collect();
                names.sort();
                next.extend(names.into_iter().map(|n| dir.join(n)));
            } else if fs::symlink_metadata(root.join(dir).join(seg)).is_ok() {
                next.push(dir.join(seg));
            }
        }
        current = next;
    }
    current.retain(|p| !p.as_os_str().is_empty());
    current
}

fn is_tar_archive(path: &Path) -> bool {
    let Ok(mut f) = fs::File::open(path) else {
        return false;
    };
    let mut head = [0u8; 512];
    let Ok(n) = f.read(&mut head) else {
        return false;
    };
    if n >= 2 && head[0] == 0x1f && head[1] == 0x8b {
        return true;
    }
    n == 512 && &head[257..262] == b"ustar"
}

/// Lists what a COPY takes, in layer order. Missing sources are an error naming the
/// source as written.
pub fn plan(spec: &CopySpec) -> Result<Vec<Item>, CopyError> {
    let excludes = if spec.exclude.is_empty() {
        None
    } else {
        Some(
            dockerfile::dockerignore::IgnoreRules::parse(&spec.exclude.join("\n"))
                .map_err(|e| CopyError::Exclude(e.to_string()))?,
        )
    };
    let mut matches: Vec<(String, PathBuf)> = Vec::new();
    for source in &spec.sources {
        if has_glob(source) {
            let found = expand_glob(&spec.root, source);
            if found.is_empty() {
                return Err(CopyError::NotFound(source.clone()));
            }
            matches.extend(found.into_iter().map(|p| (source.clone(), p)));
        } else {
            matches.push((source.clone(), clean_relative(source)));
        }
    }
    let count = matches.len() + spec.literals.len() + spec.urls.len();
    let dest_rel = clean_relative(&spec.dest);
    let dest_is_dir = spec.dest.ends_with('/')
        || spec.dest.ends_with("/.")
        || count > 1
        || spec.sources.iter().any(|s| has_glob(s));
    let mut items = Vec::new();
    let push_parents = |items: &mut Vec<Item>, path: &Path| {
        let mut acc = PathBuf::new();
        for c in path.parent().into_iter().flat_map(Path::components) {
            acc.push(c);
            if !items.iter().any(|i: &Item| i.dest == acc) {
                items.push(Item {
                    dest: acc.clone(),
                    content: Content::Dir,
                    mode: 0o755,
                    mtime: 0,
                    implied: true,
                });
            }
        }
    };
    for (written, rel) in matches {
        let path = resolve_in_root(&spec.root, &rel.to_string_lossy(), true)?;
        let meta = fs::metadata(&path).map_err(|_| CopyError::NotFound(written.clone()))?;
        if meta.is_dir() {
            if !dest_rel.as_os_str().is_empty() {
                push_parents(&mut items, &dest_rel.join("x"));
            }
            walk(
                &path,
                &dest_rel,
                Path::new(""),
                excludes.as_ref(),
                &mut items,
            )?;
        } else {
            let target = if dest_is_dir {
                dest_rel.join(rel.file_name().unwrap_or_default())
            } else {
                dest_rel.clone()
            };
            if spec.unpack_archives && is_tar_archive(&path) {
                if !dest_rel.as_os_str().is_empty() {
                    push_parents(&mut items, &dest_rel.join("x"));
                }
                items.push(Item {
                    dest: dest_rel.clone(),
                    content: Content::Archive(path),
                    mode: 0,
                    mtime: 0,
                    implied: false,
                });
                continue;
            }
            push_parents(&mut items, &target);
            items.push(Item {
                dest: target,
                content: Content::File(path),
                mode: meta.mode() & 0o7777,
                mtime: meta.mtime().max(0) as u64,
                implied: false,
            });
        }
    }
    for (name, body) in &spec.literals {
        let target = if dest_is_dir {
            dest_rel.join(name)
        } else {
            dest_rel.clone()
        };
        push_parents(&mut items, &target);
        items.push(Item {
            dest: target,
            content: Content::Data(body.clone()),
            mode: 0o644,
            mtime: 0,
            implied: false,
        });
    }
    for (name, file) in &spec.urls {
        let target = if dest_is_dir {
            dest_rel.join(name)
        } else {
            dest_rel.clone()
        };
        push_parents(&mut items, &target);
        items.push(Item {
            dest: target,
            content: Content::File(file.clone()),
            mode: 0o600,
            mtime: 0,
            implied: false,
        });
    }
    if let Some(mode) = spec.chmod {
        for i in &mut items {
            if !i.implied && !matches!(i.content, Content::Symlink(_) | Content::Archive(_)) {
                i.mode = mode;
            }
        }
    }
    Ok(items)
}

/// Adds the contents of directory `dir` under `dest`, sorted, symlinks kept as links.
fn walk(
    dir: &Path,
    dest: &Path,
    rel: &Path,
    excludes: Option<&dockerfile::dockerignore::IgnoreRules>,
    items: &mut Vec<Item>,
) -> Result<(), CopyError> {
    let mut entries: Vec<fs::DirEntry> = fs::read_dir(dir)
        .map_err(BuildError::io(format!("reading {}", dir.display())))?
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let rel = rel.join(e.file_name());
        if let Some(x) = excludes
            && x.is_excluded(&rel.to_string_lossy())
        {
            continue;
        }
        let path = e.path();
        let meta = fs::symlink_metadata(&path)
            .map_err(BuildError::io(format!("reading {}", path.display())))?;
        let target = dest.join(&rel);
        let mode = meta.mode() & 0o7777;
        let mtime = meta.mtime().max(0) as u64;
        let ft = meta.file_type();
        if ft.is_dir() {
            items.push(Item {
                dest: target,
                content: Content::Dir,
                mode,
                mtime,
                implied: false,
            });
            walk(&path, dest, &rel, excludes, items)?;
        } else if ft.is_symlink() {
            let link = fs::read_link(&path)
                .map_err(BuildError::io(format!("reading {}", path.display())))?;
            items.push(Item {
                dest: target,
                content: Content::Symlink(link),
                mode: 0o777,
                mtime,
                implied: false,
            });
        } else if ft.is_file() {
            items.push(Item {
                dest: target,
                content: Content::File(path),
                mode,
                mtime,
                implied: false,
            });
        }
        // Sockets, fifos and devices are not copied, as Docker skips them.
    }
    Ok(())
}

/// The sha256 of files whose content was hashed already, by their path on disk: the
/// context's files, hashed while the context streamed in, so a COPY of them is keyed
/// without reading them again.
pub type KnownDigests = std::collections::HashMap<PathBuf, [u8; 32]>;

/// The sha256 of the file at `p`.
fn file_sha256(p: &Path) -> Result<[u8; 32]> {
    let mut f = fs::File::open(p).map_err(BuildError::io(format!("reading {}", p.display())))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(BuildError::io(format!("reading {}", p.display())))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().into())
}

/// The digest of what a COPY takes: paths, kinds, modes and each file's content digest
/// (not times, so a touched but unchanged file still hits the cache, as BuildKit does).
/// Files in `known` are not read again.
pub fn digest(items: &[Item], known: &KnownDigests) -> Result<String> {
    let mut h = Sha256::new();
    for i in items {
        h.update(i.dest.to_string_lossy().as_bytes());
        h.update(format!("\0{:o}\0", i.mode).as_bytes());
        match &i.content {
            Content::Dir => h.update(b"d"),
            Content::Symlink(t) => {
                h.update(b"l");
                h.update(t.to_string_lossy().as_bytes());
            }
            Content::Data(d) => {
                h.update(b"f");
                h.update(Sha256::digest(d));
            }
            Content::File(p) | Content::Archive(p) => {
                h.update(if matches!(i.content, Content::File(_)) {
                    b"f"
                } else {
                    b"a"
                });
                match known.get(p) {
                    Some(d) => h.update(d),
                    None => h.update(file_sha256(p)?),
                }
            }
        }
        h.update(b"\n");
    }
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

/// How a COPY layer's entries are stamped: their owner (uid, gid) and, with
/// SOURCE_DATE_EPOCH, the latest modification time any of them may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stamp {
    pub owner: (u32, u32),
    pub epoch: Option<u64>,
}

impl Stamp {
    fn mtime(&self, mtime: u64) -> u64 {
        self.epoch.map_or(mtime, |e| mtime.min(e))
    }
}

fn header(kind: tar::EntryType, mode: u32, mtime: u64, stamp: Stamp) -> tar::Header {
    let owner = stamp.owner;
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_mtime(stamp.mtime(mtime));
    h.set_uid(u64::from(owner.0));
    h.set_gid(u64::from(owner.1));
    h.set_size(0);
    h
}

/// Writes `items` into `layer`, owned and dated as `stamp` says.
pub fn write(items: &[Item], layer: &mut LayerWriter<'_>, stamp: Stamp) -> Result<()> {
    let tar = layer.tar();
    let err = |p: &Path| BuildError::io(format!("writing {} into a layer", p.display()));
    for i in items {
        match &i.content {
            Content::Dir => {
                let mut h = header(tar::EntryType::Directory, i.mode, i.mtime, stamp);
                tar.append_data(&mut h, &i.dest, std::io::empty())
                    .map_err(err(&i.dest))?;
            }
            Content::Symlink(t) => {
                let mut h = header(tar::EntryType::Symlink, 0o777, i.mtime, stamp);
                tar.append_link(&mut h, &i.dest, t).map_err(err(&i.dest))?;
            }
            Content::Data(d) => {
                let mut h = header(tar::EntryType::Regular, i.mode, i.mtime, stamp);
                h.set_size(d.len() as u64);
                tar.append_data(&mut h, &i.dest, &d[..])
                    .map_err(err(&i.dest))?;
            }
            Content::File(p) => {
                let f = fs::File::open(p).map_err(err(p))?;
                let len = f.metadata().map_err(err(p))?.len();
                let mut h = header(tar::EntryType::Regular, i.mode, i.mtime, stamp);
                h.set_size(len);
                // A file that changes size while read would corrupt the tar: take exactly
                // the size the header says.
                tar.append_data(&mut h, &i.dest, f.take(len))
                    .map_err(err(p))?;
            }
            Content::Archive(p) => unpack_into(tar, p, &i.dest, stamp)?,
        }
    }
    Ok(())
}

/// Re-emits a tar archive's (plain or gzip) entries under `dest`.
fn unpack_into(
    tar: &mut tar::Builder<crate::layer::Sink<'_>>,
    path: &Path,
    dest: &Path,
    stamp: Stamp,
) -> Result<()> {
    let owner = stamp.owner;
    let err = || BuildError::io(format!("unpacking {}", path.display()));
    let mut f = fs::File::open(path).map_err(err())?;
    let mut magic = [0u8; 2];
    let gz = f.read_exact(&mut magic).is_ok() && magic == [0x1f, 0x8b];
    f.rewind().map_err(err())?;
    let reader: Box<dyn Read> = if gz {
        Box::new(flate2::read::MultiGzDecoder::new(std::io::BufReader::new(
            f,
        )))
    } else {
        Box::new(std::io::BufReader::new(f))
    };
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(err())? {
        let mut entry = entry.map_err(err())?;
        let name = entry.path().map_err(err())?.into_owned();
        let rel = clean_relative(&name.to_string_lossy());
        if rel.as_os_str().is_empty() {
            continue;
        }
        let mut h = entry.header().clone();
        h.set_uid(u64::from(owner.0));
        h.set_gid(u64::from(owner.1));
        h.set_mtime(stamp.mtime(h.mtime().map_err(err())?));
        let target = dest.join(&rel);
        let kind = h.entry_type();
        if kind.is_hard_link() {
            let link = entry.link_name().map_err(err())?.unwrap_or_default();
            let link = dest.join(clean_relative(&link.to_string_lossy()));
            tar.append_link(&mut h, &target, &link).map_err(err())?;
        } else if kind.is_symlink() {
            let link = entry
                .link_name()
                .map_err(err())?
                .unwrap_or_default()
                .into_owned();
            tar.append_link(&mut h, &target, &link).map_err(err())?;
        } else if kind.is_file() || kind.is_dir() {
            tar.append_data(&mut h, &target, &mut entry)
                .map_err(err())?;
        }
    }
    Ok(())
}

/// Parses `--chmod` (octal).
pub fn parse_chmod(text: &str) -> Option<u32> {
    u32::from_str_radix(text, 8).ok().filter(|m| *m <= 0o7777)
}

/// Sets the permissions of a file the tests make.
#[cfg(test)]
fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(root: &Path, sources: &[&str], dest: &str) -> CopySpec {
        CopySpec {
            root: root.to_path_buf(),
            sources: sources.iter().map(|s| s.to_string()).collect(),
            literals: Vec::new(),
            urls: Vec::new(),
            dest: dest.into(),
            chmod: None,
            exclude: Vec::new(),
            unpack_archives: false,
        }
    }

    fn dests(items: &[Item]) -> Vec<String> {
        items
            .iter()
            .map(|i| i.dest.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn docker_destination_rules() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("src/sub")).unwrap();
        fs::write(root.join("src/a.txt"), b"a").unwrap();
        fs::write(root.join("src/sub/b.txt"), b"b").unwrap();
        fs::write(root.join("one"), b"1").unwrap();
        chmod(&root.join("one"), 0o700);
        // A file to a path names the file.
        let items = plan(&spec(root, &["one"], "/app/renamed")).unwrap();
        assert_eq!(dests(&items), ["app", "app/renamed"]);
        assert_eq!(items[1].mode, 0o700);
        // A directory copies its contents.
        let items = plan(&spec(root, &["src"], "/dst")).unwrap();
        assert_eq!(
            dests(&items),
            ["dst", "dst/a.txt", "dst/sub", "dst/sub/b.txt"]
        );
        // A trailing slash or wildcards: into the directory.
        let items = plan(&spec(root, &["src/*.txt"], "/d")).unwrap();
        assert_eq!(dests(&items), ["d", "d/a.txt"]);
        let items = plan(&spec(root, &["../../one"], "/x/")).unwrap();
        assert_eq!(dests(&items), ["x", "x/one"]);
        let err = plan(&spec(root, &["missing"], "/")).unwrap_err();
        assert_eq!(err.to_string(), "\"missing\" not found");
        let mut s = spec(root, &["src"], "/e");
        s.exclude = vec!["sub".into()];
        s.chmod = parse_chmod("640");
        let items = plan(&s).unwrap();
        assert_eq!(dests(&items), ["e", "e/a.txt"]);
        assert_eq!(items[1].mode, 0o640);
        assert_eq!(items[0].mode, 0o755, "--chmod leaves created parents alone");
    }

    #[test]
    fn digest_follows_content_not_times() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let none = KnownDigests::new();
        fs::write(root.join("f"), b"one").unwrap();
        let d1 = digest(&plan(&spec(root, &["f"], "/f")).unwrap(), &none).unwrap();
        fs::write(root.join("f"), b"one").unwrap();
        assert_eq!(
            d1,
            digest(&plan(&spec(root, &["f"], "/f")).unwrap(), &none).unwrap()
        );
        fs::write(root.join("f"), b"two").unwrap();
        let d2 = digest(&plan(&spec(root, &["f"], "/f")).unwrap(), &none).unwrap();
        assert_ne!(d1, d2);
        // A digest known from the context's stream stands for the file's content: the same
        // key as reading it, and the file is not read.
        let mut known = KnownDigests::new();
        known.insert(root.join("f"), Sha256::digest(b"two").into());
        assert_eq!(
            d2,
            digest(&plan(&spec(root, &["f"], "/f")).unwrap(), &known).unwrap()
        );
        known.insert(root.join("f"), Sha256::digest(b"one").into());
        assert_eq!(
            d1,
            digest(&plan(&spec(root, &["f"], "/f")).unwrap(), &known).unwrap()
        );
    }

    #[test]
    fn globs() {
        assert!(glob_segment("*.txt", "a.txt"));
        assert!(!glob_segment("*.txt", "a.txt.bak"));
        assert!(glob_segment("f?le[0-9]", "file7"));
        assert!(!glob_segment("[!a]x", "ax"));
    }
}
