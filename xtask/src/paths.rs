//! Where things live: the repository, the build cache outside it, and tool lookups.

use std::env;
use std::path::{Path, PathBuf};

/// The workspace root (the parent of `xtask/`).
///
/// Read from `CARGO_MANIFEST_DIR` as `cargo run` sets it for this run, not as it was baked in
/// at build time: checkouts that share a target directory (CI's clone and a developer's tree
/// share the cache's) share one xtask binary, built in whichever came first.
pub fn repo_root() -> PathBuf {
    env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The developer cache, outside the repo so fresh clones reuse it:
/// `$CONTAINER_DEV_CACHE`, else `$XDG_CACHE_HOME/container-dev`, else `~/.cache/container-dev`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = env::var_os("CONTAINER_DEV_CACHE") {
        return PathBuf::from(dir);
    }
    let base = env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    base.join("container-dev")
}

/// Cargo-installed helper binaries (vhost-device-vsock, virtiofsd) live in `<cache>/tools/bin`.
pub fn tools_bin() -> PathBuf {
    cache_dir().join("tools").join("bin")
}

/// The workspace's cargo target directory.
pub fn target_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
}

/// Where the guest artifacts are published for tests and the CLI: `target/guest/`.
pub fn guest_out_dir() -> PathBuf {
    target_dir().join("guest")
}

/// The installation-style share directory of the workspace's builds: the daemon in
/// `<target>/debug/` or `<target>/release/` looks for its guest in `<dir>/../share/container/`
/// (crates/apiserver/src/kernel.rs), so `cargo xtask guest` publishes it here.
pub fn share_dir() -> PathBuf {
    target_dir().join("share").join("container")
}

/// Hex sha256 of a file's contents, read in chunks.
pub fn sha256_file(path: &Path) -> anyhow::Result<String> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut file = std::fs::File::open(path)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Hex sha256 of some bytes.
pub fn sha256_bytes(parts: &[&[u8]]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hex::encode(hasher.finalize())
}

/// Replace `dst` with a symlink to `src`.
pub fn symlink_force(src: &Path, dst: &Path) -> anyhow::Result<()> {
    if let Some(parent) = dst.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let _ = std::fs::remove_file(dst);
    std::os::unix::fs::symlink(src, dst)?;
    Ok(())
}

/// Makes cargo rebuild the workspace's own crates when the target directory was last used by
/// another checkout.
///
/// Checkouts that share a target directory (CI's clone and a developer's tree share the
/// cache's) share artifacts: cargo names a workspace crate's artifacts by its path relative
/// to the workspace root and judges them fresh by mtime, so a checkout whose sources are
/// older than another checkout's build reuses that build, compile-time paths (insta
/// snapshots, test fixtures) and all. A marker in the target directory names the checkout
/// that built last; when it names another one, every tracked file here gets the current
/// time, which makes each workspace crate (and build script) dirty, and nothing else.
pub fn claim_target_dir() -> anyhow::Result<()> {
    let root = repo_root();
    let target = target_dir();
    let marker = target.join(".container-checkout");
    let here = root.to_string_lossy().into_owned();
    match std::fs::read_to_string(&marker) {
        Ok(last) if last == here => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !target.join("debug").exists() => {}
        _ => touch_tracked_files(&root)?,
    }
    std::fs::create_dir_all(&target)?;
    std::fs::write(&marker, here)?;
    Ok(())
}

fn touch_tracked_files(root: &Path) -> anyhow::Result<()> {
    let out = std::process::Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root)
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run git ls-files in {}: {e}", root.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "git ls-files failed in {}: {}",
        root.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let now = std::time::SystemTime::now();
    let mut touched = 0usize;
    for name in out.stdout.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let path = root.join(std::str::from_utf8(name)?);
        // Files deleted in the work tree but still in the index are skipped.
        if let Ok(file) = std::fs::File::options().append(true).open(&path) {
            file.set_modified(now)?;
            touched += 1;
        }
    }
    eprintln!(
        "xtask: the target directory was last built by another checkout; marked {touched} files of {} for rebuild",
        root.display()
    );
    Ok(())
}
