//! The host side of `RUN --mount=type=cache`: which directory under
//! `<app root>/builder/cache-mounts/` a step gets, what it starts with (`from=`), and who
//! else may use it meanwhile (`sharing=`).
//!
//! - `shared` (the default): every step using the id gets its directory at once.
//! - `locked`: the step holds the id's lock file (`builder/cache-locks/<name>`, flocked)
//!   while it runs; a second step wanting it waits, in this daemon or another.
//! - `private`: the step takes the lock if it is free; if another step holds it, this one
//!   gets a fresh directory of its own, removed when the step ends.
//! - `from=` (with `source=`): a cache directory that does not exist yet is made from that
//!   directory of the stage's or image's layers, unpacked on the host next to it and
//!   renamed into place, so a concurrent step sees either nothing or the whole seed.
//!
//! It must not: talk to the builder VM (the caller sends the name it returns).

use std::fs;
use std::path::{Path, PathBuf};

use build::step::{CacheSeed, CacheSharing};
use sha2::Digest as _;

use crate::builder_vm::{builder_root, cache_mounts_dir};

/// A cache-mount id as one path component: a hash, so any id is safe and ids never clash.
pub(crate) fn cache_name(id: &str) -> String {
    let h = sha2::Sha256::digest(id.as_bytes());
    hex::encode(&h[..16])
}

/// What a step holds until it ends: the id's lock, or a private directory to remove.
pub(crate) enum Hold {
    /// Unlocked when the file closes.
    Lock {
        _file: fs::File,
    },
    Private(PathBuf),
}

impl Drop for Hold {
    fn drop(&mut self) {
        if let Hold::Private(dir) = self {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

/// A cache directory ready for one step: the name the builder mounts and what to hold.
pub(crate) struct Prepared {
    pub name: String,
    pub hold: Option<Hold>,
}

fn err(what: &str, path: &Path, e: std::io::Error) -> String {
    format!("{what} {}: {e}", path.display())
}

/// Prepares the cache directory of `id` for a step; `waiting` is told when a locked step
/// has to wait for another.
pub(crate) fn prepare(
    app_root: &Path,
    store: &oci::store::ContentStore,
    id: &str,
    sharing: CacheSharing,
    seed: Option<&CacheSeed>,
    waiting: &mut dyn FnMut(),
) -> Result<Prepared, String> {
    let mounts = cache_mounts_dir(app_root);
    statefs::create_private_dir(&builder_root(app_root))
        .and_then(|()| statefs::create_private_dir(&mounts))
        .map_err(|e| err("creating", &mounts, e))?;
    let name = cache_name(id);
    let hold = match sharing {
        CacheSharing::Shared => None,
        CacheSharing::Locked => {
            let lock = lock_file(app_root, &name)?;
            let locked = match lock.try_lock() {
                Ok(()) => Ok(()),
                Err(fs::TryLockError::WouldBlock) => {
                    waiting();
                    lock.lock()
                }
                Err(fs::TryLockError::Error(e)) => Err(e),
            };
            locked.map_err(|e| err("locking the cache mount", &mounts.join(&name), e))?;
            Some(Hold::Lock { _file: lock })
        }
        CacheSharing::Private => {
            let lock = lock_file(app_root, &name)?;
            match lock.try_lock() {
                Ok(()) => Some(Hold::Lock { _file: lock }),
                Err(fs::TryLockError::WouldBlock) => {
                    let fresh = private_dir(&mounts, &name)?;
                    if let Some(seed) = seed {
                        seed_into(store, &mounts, &fresh, seed)?;
                    }
                    let fresh_name = file_name(&fresh);
                    return Ok(Prepared {
                        name: fresh_name,
                        hold: Some(Hold::Private(fresh)),
                    });
                }
                Err(fs::TryLockError::Error(e)) => {
                    return Err(err("locking the cache mount", &mounts.join(&name), e));
                }
            }
        }
    };
    if let Some(seed) = seed {
        seed_into(store, &mounts, &mounts.join(&name), seed)?;
    }
    Ok(Prepared { name, hold })
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Where the cache ids' lock files are: beside the cache mounts, not shared into the VM.
pub(crate) fn locks_dir(app_root: &Path) -> PathBuf {
    builder_root(app_root).join("cache-locks")
}

/// The lock file of the cache `name`.
fn lock_file(app_root: &Path, name: &str) -> Result<fs::File, String> {
    let locks = locks_dir(app_root);
    statefs::create_private_dir(&locks).map_err(|e| err("creating", &locks, e))?;
    let path = locks.join(name);
    fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| err("opening", &path, e))
}

/// A fresh empty directory `<name>.p<random>` under `mounts`.
fn private_dir(mounts: &Path, name: &str) -> Result<PathBuf, String> {
    let reserved = tempfile::Builder::new()
        .prefix(&format!("{name}.p"))
        .tempdir_in(mounts)
        .map_err(|e| err("creating a private cache directory in", mounts, e))?
        .keep();
    Ok(reserved)
}

/// Makes `dir` hold the seed's directory unless it has content already.
fn seed_into(
    store: &oci::store::ContentStore,
    mounts: &Path,
    dir: &Path,
    seed: &CacheSeed,
) -> Result<(), String> {
    let empty = match fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => return Err(err("reading", dir, e)),
    };
    if !empty {
        return Ok(());
    }
    let work = tempfile::Builder::new()
        .prefix(".seed")
        .tempdir_in(mounts)
        .map_err(|e| err("creating a directory in", mounts, e))?;
    let root = work.path().join("root");
    fs::create_dir(&root).map_err(|e| err("creating", &root, e))?;
    for l in &seed.layers {
        let reader = oci::open_layer(store, &l.descriptor).map_err(|e| e.to_string())?;
        build::layer::apply_layer(&root, reader).map_err(|e| e.to_string())?;
    }
    let source = build::layer::resolve_in_root(&root, &seed.source, true)
        .ok()
        .filter(|p| p.is_dir())
        .ok_or_else(|| {
            format!(
                "cache mount source {} is not a directory of its from=",
                seed.source
            )
        })?;
    // An empty directory left by the builder (or a private reservation) gives way; a
    // concurrent seeder that got there first wins.
    let _ = fs::remove_dir(dir);
    match fs::rename(&source, dir) {
        Ok(()) => Ok(()),
        Err(_) if dir.is_dir() => Ok(()),
        Err(e) => Err(err("seeding", dir, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(root: &Path) -> oci::Store {
        oci::Store::open(root.join("store")).unwrap()
    }

    #[test]
    fn cache_names_are_one_safe_component_per_id() {
        let a = cache_name("/root/.cache/go-build");
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, cache_name("/root/.cache/pip"));
        assert_eq!(a, cache_name("/root/.cache/go-build"));
    }

    #[test]
    fn locked_waits_and_private_gets_a_fresh_directory() {
        let d = tempfile::tempdir().unwrap();
        let s = store(d.path());
        let first = prepare(
            d.path(),
            s.content(),
            "c",
            CacheSharing::Locked,
            None,
            &mut || {},
        )
        .unwrap();
        let name = cache_name("c");
        assert_eq!(first.name, name);
        // A private user while the lock is held: a directory of its own, gone afterwards.
        let private = prepare(
            d.path(),
            s.content(),
            "c",
            CacheSharing::Private,
            None,
            &mut || {},
        )
        .unwrap();
        assert_ne!(private.name, name);
        assert!(private.name.starts_with(&format!("{name}.p")));
        let private_dir = cache_mounts_dir(d.path()).join(&private.name);
        drop(private);
        assert!(!private_dir.exists());
        // A second locked user waits until the first is done.
        let (tx, rx) = std::sync::mpsc::channel();
        let root = d.path().to_path_buf();
        let waiter = std::thread::spawn(move || {
            let s = store(&root);
            let p = prepare(
                &root,
                s.content(),
                "c",
                CacheSharing::Locked,
                None,
                &mut || {},
            )
            .unwrap();
            tx.send(()).unwrap();
            drop(p);
        });
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(
            rx.try_recv().is_err(),
            "the second locked user did not wait"
        );
        drop(first);
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("the lock was passed on");
        waiter.join().unwrap();
        // Free again: a private user gets the shared directory.
        let p = prepare(
            d.path(),
            s.content(),
            "c",
            CacheSharing::Private,
            None,
            &mut || {},
        )
        .unwrap();
        assert_eq!(p.name, name);
    }
}
