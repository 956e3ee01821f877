//! Docker's names for our things: network IDs (derived from names), image references as
//! users write them, and times as Docker writes them.

use std::time::{Duration, UNIX_EPOCH};

use sha2::Digest;

/// Docker's zero time, for a container never started or stopped.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// RFC 3339 with nanoseconds, as Docker writes times; 0 is Docker's zero time.
pub fn time_of_ms(ms: i64) -> String {
    if ms <= 0 {
        return ZERO_TIME.to_owned();
    }
    let t = UNIX_EPOCH + Duration::from_millis(ms.unsigned_abs());
    runtime_api::fsutil::rfc3339_nanos(t)
}

/// Image references as users write them: `docker.io/library/` and `docker.io/` dropped.
pub fn familiar(reference: &str) -> String {
    let r = reference
        .strip_prefix("docker.io/library/")
        .or_else(|| reference.strip_prefix("docker.io/"))
        .unwrap_or(reference);
    r.to_owned()
}

/// The Docker ID of network `name`.
pub fn network_id(name: &str) -> String {
    hex::encode(sha2::Sha256::digest(
        format!("container-network:{name}").as_bytes(),
    ))
}
