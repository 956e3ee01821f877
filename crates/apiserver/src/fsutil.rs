//! Crash-safe writes and small file-system helpers.

use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// Writes `bytes` to `path` so that a reader sees the old or the new content, never a mix:
/// a temp file beside it, fsync, rename, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir)
}

/// Creates `dir` and its missing parents with mode 0700: nothing under the app root is for
/// other users (a root daemon's container logs and writable layers least of all). Existing
/// directories keep their mode; [`secure_app_root`] fixes the root itself.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Creates the app root (0700) and restricts it to 0700 when an older install left it
/// open: with the root closed, nothing beneath it is reachable by other users whatever its
/// own mode. No helper runs as another user, so no directory needs 0711.
pub fn secure_app_root(root: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    create_private_dir(root)?;
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))
}

/// Opens `path` for appending, creating it with mode 0600 (logs).
pub fn open_private_append(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// fsyncs a directory so that renames and creations in it survive a crash.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Bytes used on disk by a file or directory tree (allocated blocks, so sparse files count
/// what they use).
pub fn disk_usage(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if meta.is_dir() {
        let Ok(entries) = std::fs::read_dir(path) else {
            return 0;
        };
        entries.flatten().map(|e| disk_usage(&e.path())).sum()
    } else {
        meta.blocks() * 512
    }
}

/// Milliseconds since the epoch of an RFC 3339 UTC time (`2026-11-23T16:47:01.123Z`); 0 when
/// it does not parse.
pub fn rfc3339_to_ms(text: &str) -> i64 {
    let parse = || -> Option<i64> {
        let (date, time) = text.split_once('T')?;
        let mut d = date.split('-');
        let y: i64 = d.next()?.parse().ok()?;
        let m: i64 = d.next()?.parse().ok()?;
        let day: i64 = d.next()?.parse().ok()?;
        let time = time.trim_end_matches('Z');
        let time = time.split(['+']).next()?;
        let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
        let mut t = hms.split(':');
        let h: i64 = t.next()?.parse().ok()?;
        let mi: i64 = t.next()?.parse().ok()?;
        let s: i64 = t.next()?.parse().ok()?;
        let ms: i64 = format!("{frac:0<3}")[..3].parse().ok()?;
        // Howard Hinnant's days_from_civil.
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + day - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        Some(((days * 86_400 + h * 3600 + mi * 60 + s) * 1000) + ms)
    };
    parse().unwrap_or(0)
}

/// Reads 32 random bytes from the kernel.
pub fn random_bytes() -> std::io::Result<[u8; 32]> {
    use std::io::Read;
    let mut buf = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_parses_known_instants() {
        assert_eq!(rfc3339_to_ms("1970-01-01T00:00:00.000000000Z"), 0);
        assert_eq!(
            rfc3339_to_ms("2026-11-23T16:47:01.123456789Z"),
            1_795_452_421_123
        );
        assert_eq!(rfc3339_to_ms("2000-02-29T00:00:00Z"), 951_782_400_000);
        assert_eq!(rfc3339_to_ms("garbage"), 0);
    }

    #[test]
    fn atomic_write_leaves_only_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        write_atomic(&p, b"1").unwrap();
        write_atomic(&p, b"2").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"2");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
