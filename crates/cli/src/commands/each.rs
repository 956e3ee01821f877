//! What the command families share when they act on several named items or read the
//! `--since`/`--until` times: one JSON array for `inspect` of several names (the ones found,
//! each missing one reported on stderr), and the time flags in Docker's forms.

use std::future::Future;

use serde_json::Value;

use crate::error::{CliError, CliResult};

/// `inspect NAME…`: prints one JSON array of what `one` found, reporting each name it did not
/// find on stderr; fails (after printing) when any was missing, as Docker's inspect does.
pub(crate) async fn inspect_each<F, Fut>(names: &[String], mut one: F) -> CliResult
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<Value, CliError>>,
{
    let mut found = Vec::new();
    let mut missing = 0;
    for name in names {
        match one(name.clone()).await {
            Ok(v) => found.push(v),
            Err(e) => {
                eprintln!("container: {e}");
                missing += 1;
            }
        }
    }
    outln!(
        "{}",
        serde_json::to_string_pretty(&Value::Array(found)).unwrap_or_default()
    );
    if missing == 0 {
        Ok(0)
    } else {
        Err(CliError::Partial(format!(
            "{missing} of {} not found",
            names.len()
        )))
    }
}

/// Now, in nanoseconds since the epoch, for [`time_flag`].
pub(crate) fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A `--since`/`--until` value (a Unix time, an RFC 3339 time or a duration before `now`) in
/// nanoseconds, its error naming the flag.
pub(crate) fn time_flag(
    flag: &str,
    value: Option<&str>,
    now: i64,
) -> Result<Option<i64>, CliError> {
    value
        .map(|t| spec::parse_time(t, now).map_err(|e| CliError::Usage(format!("--{flag}: {e}"))))
        .transpose()
}
