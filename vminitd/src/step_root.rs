//! MountStepRoot: the root of one build step (RUN in the builder VM) in one call.
//!
//! `<dir>/root` becomes an overlay of the layer directories with the fresh upper
//! `<dir>/upper`. The mount points the step's process needs (its spec's mount destinations)
//! and the layers lack are made in a lower of the step's own, `<dir>/stubs`, stacked on top,
//! so creating them puts nothing in the upper: the upper holds the step's changes only and
//! stays exactly its layer when later steps stack on it.
//!
//! The host used to do this with a round trip per lookup, per stub and per mount; here it
//! is one call. Paths are looked up as the container will see them (`resolve_in_root`): a
//! symbolic link in the layers leads to where it points inside the root, never outside it.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::fsops::{self, FsError};
use crate::rootpath::resolve_in_root;

/// A mount point the step's process needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPoint {
    /// An absolute path in the root.
    pub path: String,
    /// A file (the target of a bind-mounted file) rather than a directory.
    pub file: bool,
}

/// Where a mount point is missing: the directories of the root that lead to it (relative
/// to the root), and the components below them that nothing provides.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Missing {
    existing: Vec<String>,
    rest: Vec<String>,
    file: bool,
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> FsError + 'a {
    move |source| FsError::Io {
        what,
        path: path.display().to_string(),
        source,
    }
}

/// The part of `point` that `root` lacks, following symbolic links inside the root; None
/// when it exists (or when a non-directory stands in its way, which the mount itself will
/// report).
fn missing(root: &Path, point: &MountPoint) -> Option<Missing> {
    let resolved = resolve_in_root(root, &point.path);
    let relative = resolved.strip_prefix(root).ok()?;
    let parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let mut at = root.to_path_buf();
    for (i, part) in parts.iter().enumerate() {
        at.push(part);
        match fs::symlink_metadata(&at) {
            Ok(md) if md.is_dir() => {}
            Ok(_) => return None,
            Err(_) => {
                return Some(Missing {
                    existing: parts[..i].to_vec(),
                    rest: parts[i..].to_vec(),
                    file: point.file,
                });
            }
        }
    }
    None
}

/// Makes `m` under `stubs`: the existing directories with their mode and owner (overlayfs
/// takes a directory's attributes from the topmost lower that has it), then the missing
/// components, the last a file or a directory.
fn make_stub(root: &Path, stubs: &Path, m: &Missing) -> Result<(), FsError> {
    let (mut src, mut dst) = (root.to_path_buf(), stubs.to_path_buf());
    for part in &m.existing {
        src.push(part);
        dst.push(part);
        if dst.exists() {
            continue;
        }
        let md = fs::symlink_metadata(&src).map_err(io("looking up", &src))?;
        fs::create_dir(&dst).map_err(io("creating", &dst))?;
        fs::set_permissions(&dst, fs::Permissions::from_mode(md.mode() & 0o7777))
            .map_err(io("chmod", &dst))?;
        std::os::unix::fs::chown(&dst, Some(md.uid()), Some(md.gid()))
            .map_err(io("chown", &dst))?;
    }
    for (i, part) in m.rest.iter().enumerate() {
        dst.push(part);
        let last = i + 1 == m.rest.len();
        if last && m.file {
            fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&dst)
                .map_err(io("creating", &dst))?;
        } else if !dst.exists() {
            fs::create_dir(&dst).map_err(io("creating", &dst))?;
            fs::set_permissions(&dst, fs::Permissions::from_mode(0o755))
                .map_err(io("chmod", &dst))?;
        }
    }
    Ok(())
}

fn overlay(lowers: &str, dir: &Path, root: &Path) -> Result<(), FsError> {
    let option = format!(
        "lowerdir={lowers},upperdir={},workdir={}",
        dir.join("upper").display(),
        dir.join("work").display()
    );
    fsops::mount(
        "overlay",
        &root.display().to_string(),
        "overlay",
        &[option],
        false,
    )
}

/// Checks a lower directory: absolute, and no character overlayfs's option syntax gives a
/// meaning (`:` separates lowers, `,` options).
fn check_lower(lower: &str) -> Result<(), FsError> {
    fsops::absolute(lower)?;
    if lower.contains([':', ',']) {
        return Err(FsError::Invalid(format!(
            "layer directory {lower:?} contains ':' or ','"
        )));
    }
    Ok(())
}

/// Mounts the step root `<dir>/root` (see the module doc). `dir` may exist (the step's bind
/// mounts have their own overlays in it); its upper, work and root must not.
pub fn mount(dir: &str, lowers: &[String], points: &[MountPoint]) -> Result<(), FsError> {
    let dir = fsops::absolute(dir)?;
    check_lower(&dir.display().to_string())?;
    if lowers.is_empty() {
        return Err(FsError::Invalid(
            "a step root needs at least one layer".into(),
        ));
    }
    for l in lowers {
        check_lower(l)?;
    }
    for p in points {
        fsops::absolute(&p.path)?;
    }
    let parts = ["upper", "work", "root"].map(|d| dir.join(d));
    if let Some(taken) = parts.iter().find(|p| p.exists()) {
        return Err(FsError::Invalid(format!(
            "{} exists: the step directory is in use",
            taken.display()
        )));
    }
    fs::create_dir_all(dir).map_err(io("creating", dir))?;
    for p in &parts {
        fs::create_dir(p).map_err(io("creating", p))?;
    }
    let root = dir.join("root");
    let lowers = lowers.join(":");
    overlay(&lowers, dir, &root)?;
    let missing: Vec<Missing> = points.iter().filter_map(|p| missing(&root, p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let stubs: PathBuf = dir.join("stubs");
    fs::create_dir(&stubs).map_err(io("creating", &stubs))?;
    for m in &missing {
        make_stub(&root, &stubs, m)?;
    }
    // The layers of a mounted overlay must not change: the stubs go in by mounting again.
    fsops::umount(&root.display().to_string(), false)?;
    overlay(&format!("{}:{lowers}", stubs.display()), dir, &root)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(path: &str, file: bool) -> MountPoint {
        MountPoint {
            path: path.into(),
            file,
        }
    }

    #[test]
    fn only_what_the_root_lacks_is_missing() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::create_dir_all(root.join("proc")).unwrap();
        fs::write(root.join("etc/passwd"), "").unwrap();
        assert_eq!(missing(root, &point("/proc", false)), None);
        assert_eq!(missing(root, &point("/etc/passwd", true)), None);
        assert_eq!(
            missing(root, &point("/etc/hosts", true)),
            Some(Missing {
                existing: vec!["etc".into()],
                rest: vec!["hosts".into()],
                file: true
            })
        );
        assert_eq!(
            missing(root, &point("/run/secrets/a", true)),
            Some(Missing {
                existing: vec![],
                rest: vec!["run".into(), "secrets".into(), "a".into()],
                file: true
            })
        );
        // A file where a directory is needed: the mount reports it.
        assert_eq!(missing(root, &point("/etc/passwd/x", false)), None);
    }

    #[test]
    fn a_link_is_followed_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        fs::create_dir_all(root.join("run")).unwrap();
        fs::create_dir_all(root.join("var")).unwrap();
        // An absolute link means the root's /run, never the guest's.
        std::os::unix::fs::symlink("/run", root.join("var/run")).unwrap();
        assert_eq!(
            missing(root, &point("/var/run/x", false)),
            Some(Missing {
                existing: vec!["run".into()],
                rest: vec!["x".into()],
                file: false
            })
        );
    }

    #[test]
    fn stubs_copy_the_attributes_of_existing_directories() {
        let t = tempfile::tempdir().unwrap();
        let (root, stubs) = (t.path().join("root"), t.path().join("stubs"));
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::set_permissions(root.join("etc"), fs::Permissions::from_mode(0o750)).unwrap();
        fs::create_dir(&stubs).unwrap();
        let m = missing(&root, &point("/etc/ssl/hosts", true)).unwrap();
        make_stub(&root, &stubs, &m).unwrap();
        let etc = fs::metadata(stubs.join("etc")).unwrap();
        assert_eq!(etc.mode() & 0o7777, 0o750);
        assert!(fs::metadata(stubs.join("etc/ssl")).unwrap().is_dir());
        assert!(fs::metadata(stubs.join("etc/ssl/hosts")).unwrap().is_file());
        // A second mount point below the same directories reuses them.
        let m = missing(&root, &point("/etc/ssl/other", false)).unwrap();
        make_stub(&root, &stubs, &m).unwrap();
        assert!(fs::metadata(stubs.join("etc/ssl/other")).unwrap().is_dir());
    }

    #[test]
    fn bad_requests_are_refused_before_anything_is_made() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("step");
        let d = dir.display().to_string();
        let lower = t.path().display().to_string();
        assert!(mount(&d, &[], &[]).is_err());
        assert!(mount(&d, &["rel".into()], &[]).is_err());
        assert!(mount(&d, &[format!("{lower}:/x")], &[]).is_err());
        assert!(mount(&d, std::slice::from_ref(&lower), &[point("rel", false)]).is_err());
        assert!(!dir.exists());
        // A step directory that holds a root already is another step's.
        fs::create_dir_all(dir.join("root")).unwrap();
        assert!(mount(&d, std::slice::from_ref(&lower), &[]).is_err());
    }
}
