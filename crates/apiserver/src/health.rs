//! Healthchecks: the healthcheck a container gets (the image's `HEALTHCHECK` under the
//! user's `--health-*` flags, as Docker merges them), and how probe results move its health
//! between starting, healthy and unhealthy. Pure logic: the probe loop that runs the
//! command through the runtime's exec lives in `containers/health`.
//!
//! Docker's rules: a probe that exits 0 makes the container healthy and resets the failing
//! streak; any other end (a non-zero exit, a timeout, a probe that could not run) is a
//! failure; `retries` consecutive failures make it unhealthy; failures while it is still
//! starting and within the start period do not count. The last 5 results are kept, each
//! with its output cut to 4 KiB.

use api::v1;
use serde::{Deserialize, Serialize};

/// Probe results kept.
pub const LOG_ENTRIES: usize = 5;
/// Bytes of a probe's output kept.
pub const MAX_OUTPUT: usize = 4096;
/// Docker's default interval and timeout.
pub const DEFAULT_INTERVAL_MS: u64 = 30_000;
/// Docker's default timeout.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// Docker's default retries.
pub const DEFAULT_RETRIES: u32 = 3;

/// A healthcheck in effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// `["CMD", args...]` or `["CMD-SHELL", command]`.
    pub test: Vec<String>,
    /// Time between probes.
    pub interval_ms: u64,
    /// Time one probe may take.
    pub timeout_ms: u64,
    /// Time after the start during which failures do not count.
    pub start_period_ms: u64,
    /// Consecutive failures before unhealthy.
    pub retries: u32,
}

impl HealthConfig {
    /// The probe's program and arguments: `CMD-SHELL` runs through `/bin/sh -c`.
    pub fn argv(&self) -> Vec<String> {
        match self.test.split_first() {
            Some((kind, rest)) if kind == "CMD-SHELL" => {
                vec!["/bin/sh".into(), "-c".into(), rest.join(" ")]
            }
            Some((_, rest)) => rest.to_vec(),
            None => Vec::new(),
        }
    }

    /// The wire form.
    pub fn to_wire(&self) -> v1::Healthcheck {
        v1::Healthcheck {
            test: self.test.clone(),
            interval_ms: self.interval_ms,
            timeout_ms: self.timeout_ms,
            start_period_ms: self.start_period_ms,
            retries: self.retries,
        }
    }
}

/// Why a healthcheck was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HealthError {
    /// The test's first word is not NONE, CMD or CMD-SHELL.
    #[error("unknown healthcheck type {0:?}: the test starts with NONE, CMD or CMD-SHELL")]
    UnknownType(String),
    /// CMD or CMD-SHELL with nothing to run.
    #[error("the healthcheck {0} has no command")]
    NoCommand(String),
}

/// The healthcheck a container gets: the user's fields over the image's (an empty test or
/// a zero value inherits), then Docker's defaults. None when neither has one or the test is
/// `NONE`.
pub fn resolve(
    image: Option<&oci::ImageHealthcheck>,
    user: Option<&v1::Healthcheck>,
) -> Result<Option<HealthConfig>, HealthError> {
    let ms = |ns: u64| ns / 1_000_000;
    let pick = |u: u64, i: u64| if u != 0 { u } else { i };
    let test = match (user.map(|u| &u.test), image.map(|i| &i.test)) {
        (Some(t), _) if !t.is_empty() => t.clone(),
        (_, Some(t)) => t.clone(),
        _ => Vec::new(),
    };
    let Some(kind) = test.first() else {
        return Ok(None);
    };
    match kind.as_str() {
        "NONE" => return Ok(None),
        "CMD" | "CMD-SHELL" => {
            if test.len() < 2 || test[1..].iter().all(|a| a.trim().is_empty()) {
                return Err(HealthError::NoCommand(kind.clone()));
            }
        }
        other => return Err(HealthError::UnknownType(other.to_owned())),
    }
    let or_default = |v: u64, d: u64| if v == 0 { d } else { v };
    let u = user.cloned().unwrap_or_default();
    let i = image.cloned().unwrap_or_default();
    Ok(Some(HealthConfig {
        test,
        interval_ms: or_default(pick(u.interval_ms, ms(i.interval_ns)), DEFAULT_INTERVAL_MS),
        timeout_ms: or_default(pick(u.timeout_ms, ms(i.timeout_ns)), DEFAULT_TIMEOUT_MS),
        start_period_ms: pick(u.start_period_ms, ms(i.start_period_ns)),
        retries: match (u.retries, i.retries) {
            (0, 0) => DEFAULT_RETRIES,
            (0, r) | (r, _) => r,
        },
    }))
}

/// Where a container's health stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// No probe has passed yet.
    Starting,
    /// The last probe passed.
    Healthy,
    /// `retries` probes in a row failed.
    Unhealthy,
}

impl HealthStatus {
    /// Docker's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Starting => "starting",
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

/// One probe's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeResult {
    /// Start, ms since the epoch.
    pub start_ms: i64,
    /// End, ms since the epoch.
    pub end_ms: i64,
    /// Exit code; -1 when it timed out or could not run.
    pub exit_code: i32,
    /// Output, at most [`MAX_OUTPUT`] bytes.
    pub output: String,
}

/// A container's health, kept in its record so it survives a daemon restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthState {
    /// The status.
    pub status: HealthStatus,
    /// Consecutive failures that counted.
    pub failing_streak: u32,
    /// The last results, oldest first.
    pub log: Vec<ProbeResult>,
}

impl HealthState {
    /// The health of a container that just started.
    pub fn starting() -> HealthState {
        HealthState {
            status: HealthStatus::Starting,
            failing_streak: 0,
            log: Vec::new(),
        }
    }

    /// Takes a probe's result for a container that started at `started_ms`; returns the new
    /// status when it changed.
    pub fn record(
        &mut self,
        result: ProbeResult,
        config: &HealthConfig,
        started_ms: i64,
    ) -> Option<HealthStatus> {
        let before = self.status;
        if result.exit_code == 0 {
            self.failing_streak = 0;
            self.status = HealthStatus::Healthy;
        } else {
            let in_start_period = self.status == HealthStatus::Starting
                && result.start_ms - started_ms < config.start_period_ms as i64;
            if !in_start_period {
                self.failing_streak += 1;
                if self.failing_streak >= config.retries {
                    self.status = HealthStatus::Unhealthy;
                }
            }
        }
        self.log.push(result);
        if self.log.len() > LOG_ENTRIES {
            let extra = self.log.len() - LOG_ENTRIES;
            self.log.drain(..extra);
        }
        (self.status != before).then_some(self.status)
    }

    /// The wire form.
    pub fn to_wire(&self) -> v1::ContainerHealth {
        v1::ContainerHealth {
            status: self.status.as_str().into(),
            failing_streak: self.failing_streak,
            log: self
                .log
                .iter()
                .map(|r| v1::HealthProbe {
                    start_ms: r.start_ms,
                    end_ms: r.end_ms,
                    exit_code: r.exit_code,
                    output: r.output.clone(),
                })
                .collect(),
        }
    }
}

/// A probe's output as kept: at most [`MAX_OUTPUT`] bytes, cut at a character boundary.
pub fn output_text(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(MAX_OUTPUT)];
    let text = String::from_utf8_lossy(cut);
    let mut end = text.len().min(MAX_OUTPUT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(retries: u32, start_period_ms: u64) -> HealthConfig {
        HealthConfig {
            test: vec!["CMD-SHELL".into(), "true".into()],
            interval_ms: 1000,
            timeout_ms: 1000,
            start_period_ms,
            retries,
        }
    }

    fn result(start_ms: i64, exit_code: i32) -> ProbeResult {
        ProbeResult {
            start_ms,
            end_ms: start_ms + 1,
            exit_code,
            output: String::new(),
        }
    }

    #[test]
    fn failures_in_a_row_make_it_unhealthy_and_one_pass_heals() {
        let c = config(2, 0);
        let mut h = HealthState::starting();
        assert_eq!(h.record(result(10, 1), &c, 0), None);
        assert_eq!(h.failing_streak, 1);
        assert_eq!(
            h.record(result(20, 1), &c, 0),
            Some(HealthStatus::Unhealthy)
        );
        assert_eq!(h.record(result(30, 1), &c, 0), None, "no change, no event");
        assert_eq!(h.failing_streak, 3);
        assert_eq!(h.record(result(40, 0), &c, 0), Some(HealthStatus::Healthy));
        assert_eq!(h.failing_streak, 0);
        assert_eq!(
            h.record(result(50, -1), &c, 0),
            None,
            "one failure is not enough"
        );
        assert_eq!(h.status, HealthStatus::Healthy);
    }

    #[test]
    fn failures_in_the_start_period_do_not_count_while_starting() {
        let c = config(1, 100);
        let mut h = HealthState::starting();
        assert_eq!(h.record(result(50, 1), &c, 0), None);
        assert_eq!(h.failing_streak, 0);
        assert_eq!(h.status, HealthStatus::Starting);
        assert_eq!(
            h.record(result(150, 1), &c, 0),
            Some(HealthStatus::Unhealthy)
        );
        // Once healthy, the start period no longer shields failures.
        let mut h = HealthState::starting();
        h.record(result(10, 0), &c, 0);
        assert_eq!(
            h.record(result(20, 1), &c, 0),
            Some(HealthStatus::Unhealthy)
        );
    }

    #[test]
    fn the_log_keeps_the_last_five() {
        let c = config(3, 0);
        let mut h = HealthState::starting();
        for t in 0..8 {
            h.record(result(t, 0), &c, 0);
        }
        let starts: Vec<i64> = h.log.iter().map(|r| r.start_ms).collect();
        assert_eq!(starts, [3, 4, 5, 6, 7]);
    }

    #[test]
    fn output_is_cut_to_4k_on_a_character_boundary() {
        let long = "é".repeat(3000); // 6000 bytes
        let kept = output_text(long.as_bytes());
        assert!(kept.len() <= MAX_OUTPUT);
        assert!(kept.len() >= MAX_OUTPUT - 3);
        assert!(kept.chars().all(|c| c == 'é'));
        assert_eq!(output_text(b"ok\n"), "ok\n");
    }

    #[test]
    fn user_flags_override_the_image_and_defaults_fill_the_rest() {
        let image = oci::ImageHealthcheck {
            test: vec!["CMD".into(), "/bin/check".into()],
            interval_ns: 5_000_000_000,
            timeout_ns: 0,
            start_period_ns: 2_000_000_000,
            retries: 4,
        };
        let c = resolve(Some(&image), None).unwrap().unwrap();
        assert_eq!(c.argv(), ["/bin/check"]);
        assert_eq!(
            (c.interval_ms, c.timeout_ms, c.start_period_ms, c.retries),
            (5000, DEFAULT_TIMEOUT_MS, 2000, 4)
        );
        let user = v1::Healthcheck {
            test: vec!["CMD-SHELL".into(), "test -f /tmp/ok".into()],
            interval_ms: 1000,
            retries: 2,
            ..Default::default()
        };
        let c = resolve(Some(&image), Some(&user)).unwrap().unwrap();
        assert_eq!(c.argv(), ["/bin/sh", "-c", "test -f /tmp/ok"]);
        assert_eq!(
            (c.interval_ms, c.timeout_ms, c.start_period_ms, c.retries),
            (1000, DEFAULT_TIMEOUT_MS, 2000, 2)
        );
        // Only an interval: the image's test with the user's interval.
        let only_interval = v1::Healthcheck {
            interval_ms: 700,
            ..Default::default()
        };
        let c = resolve(Some(&image), Some(&only_interval))
            .unwrap()
            .unwrap();
        assert_eq!((c.argv(), c.interval_ms), (vec!["/bin/check".into()], 700));
        let none = v1::Healthcheck {
            test: vec!["NONE".into()],
            ..Default::default()
        };
        assert_eq!(resolve(Some(&image), Some(&none)).unwrap(), None);
        assert_eq!(resolve(None, None).unwrap(), None);
    }

    #[test]
    fn malformed_tests_are_refused() {
        let bad = |test: &[&str]| v1::Healthcheck {
            test: test.iter().map(|s| (*s).to_owned()).collect(),
            ..Default::default()
        };
        assert_eq!(
            resolve(None, Some(&bad(&["RUN", "x"]))),
            Err(HealthError::UnknownType("RUN".into()))
        );
        assert_eq!(
            resolve(None, Some(&bad(&["CMD-SHELL", " "]))),
            Err(HealthError::NoCommand("CMD-SHELL".into()))
        );
    }
}
