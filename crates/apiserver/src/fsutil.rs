//! Small helpers of the daemon: clocks, disk usage, random bytes. (Crash-safe writes live in
//! the `statefs` crate.)

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

pub use statefs::{create_private_dir, open_private_append, sync_dir, write_atomic};

/// Creates the app root (0700) and restricts it to 0700 when an older install left it
/// open: with the root closed, nothing beneath it is reachable by other users whatever its
/// own mode. No helper runs as another user, so no directory needs 0711.
pub fn secure_app_root(root: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    create_private_dir(root)?;
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))
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
}
