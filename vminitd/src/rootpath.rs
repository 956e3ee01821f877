//! Resolving a path inside a container's root as the container will see it.
//!
//! Both the setup helper (mount targets, devices, the init binary) and user resolution
//! (/etc/passwd inside the rootfs) need it; it sits apart so that neither reaches into the
//! other. It reads links only, and must not create, open or mount anything.

use std::fs;
use std::path::{Component, Path, PathBuf};

/// Resolves `path` inside `root` the way the container will see it: symlinks are followed
/// as if `root` were `/`, so a link cannot lead a mount outside the rootfs.
pub fn resolve_in_root(root: &Path, path: &str) -> PathBuf {
    let mut parts: Vec<String> = Vec::new();
    let mut pending: Vec<String> = path
        .split('/')
        .filter(|c| !c.is_empty())
        .map(String::from)
        .rev()
        .collect();
    let mut links = 0;
    while let Some(c) = pending.pop() {
        match c.as_str() {
            "." => continue,
            ".." => {
                parts.pop();
                continue;
            }
            _ => {}
        }
        let candidate: PathBuf =
            root.join(parts.iter().chain(std::iter::once(&c)).collect::<PathBuf>());
        match fs::read_link(&candidate) {
            Ok(target) if links < 40 => {
                links += 1;
                let t = target.to_string_lossy().to_string();
                if t.starts_with('/') {
                    parts.clear();
                }
                pending.extend(
                    t.split('/')
                        .filter(|c| !c.is_empty())
                        .map(String::from)
                        .rev(),
                );
            }
            _ => parts.push(c),
        }
    }
    let rel: PathBuf = parts.iter().collect();
    debug_assert!(!rel.components().any(|c| matches!(c, Component::ParentDir)));
    root.join(rel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        fs::create_dir_all(r.join("run")).unwrap();
        std::os::unix::fs::symlink("/run", r.join("var-run")).unwrap();
        std::os::unix::fs::symlink("../../../../etc", r.join("escape")).unwrap();
        std::os::unix::fs::symlink("/", r.join("toroot")).unwrap();
        assert_eq!(resolve_in_root(r, "/var-run/x"), r.join("run/x"));
        assert_eq!(resolve_in_root(r, "/escape/passwd"), r.join("etc/passwd"));
        assert_eq!(resolve_in_root(r, "/toroot/../../proc"), r.join("proc"));
        assert_eq!(resolve_in_root(r, "/a/./b/../c"), r.join("a/c"));
    }
}
