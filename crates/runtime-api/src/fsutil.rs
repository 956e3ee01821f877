//! Timestamps as the runtime records them in state.json and logs. (Crash-safe writes live in
//! the `statefs` crate.)

use std::time::{SystemTime, UNIX_EPOCH};

pub use statefs::{open_private_append, write_atomic};

/// `time` as RFC 3339 in UTC with nanoseconds, e.g. `2026-11-23T16:47:01.123456789Z`.
pub fn rfc3339_nanos(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let nanos = i64::try_from(since.as_nanos()).unwrap_or(i64::MAX);
    spec::format_time(nanos, false)
}

/// The current time as [`rfc3339_nanos`].
pub fn now_rfc3339() -> String {
    rfc3339_nanos(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339_nanos(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        let t = UNIX_EPOCH + Duration::new(951_782_400, 5); // 2000-02-29
        assert_eq!(rfc3339_nanos(t), "2000-02-29T00:00:00.000000005Z");
        let t = UNIX_EPOCH + Duration::new(1_795_452_421, 123_456_789);
        assert_eq!(rfc3339_nanos(t), "2026-11-23T16:47:01.123456789Z");
        let t = UNIX_EPOCH + Duration::new(4_107_542_399, 0);
        assert_eq!(rfc3339_nanos(t), "2100-02-28T23:59:59.000000000Z");
    }
}
