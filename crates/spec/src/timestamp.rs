//! Points in time users type for `--since` and `--until`, as Docker takes them: an RFC 3339
//! date-time (`2026-12-04T17:00:00Z`, `2026-12-04T18:00:00.5+01:00`), a date
//! (`2026-12-04`, midnight UTC), Unix seconds with an optional fraction (`1764867600.25`),
//! or a duration before now (`10m`, `1h30m`, `1.5s`).

/// Why a time was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    /// None of the accepted forms.
    #[error(
        "invalid time {0:?}: expected an RFC 3339 time (2026-12-04T17:00:00Z), Unix seconds or a duration before now (10m)"
    )]
    Malformed(String),
}

/// Nanoseconds since the epoch of `text`, with relative durations counted back from `now`
/// (nanoseconds since the epoch).
pub fn parse_time(text: &str, now: i64) -> Result<i64, TimestampError> {
    let bad = || TimestampError::Malformed(text.to_owned());
    if text.is_empty() {
        return Err(bad());
    }
    if text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
        let secs: i64 = secs.parse().map_err(|_| bad())?;
        return Ok(
            secs.checked_mul(1_000_000_000).ok_or_else(bad)? + fraction(frac).ok_or_else(bad)?
        );
    }
    if let Ok(d) = crate::duration::parse_precise(text) {
        let back = i64::try_from(d.as_nanos()).map_err(|_| bad())?;
        return Ok(now - back);
    }
    if let Ok(p) = text.parse::<crate::Period>() {
        let back = i64::try_from(p.0)
            .ok()
            .and_then(|s| s.checked_mul(1_000_000_000));
        return back.map(|b| now - b).ok_or_else(bad);
    }
    date_time(text).ok_or_else(bad)
}

/// Nanoseconds of a fraction's digits (`25` of `.25`).
fn fraction(digits: &str) -> Option<i64> {
    if digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if digits.is_empty() {
        return Some(0);
    }
    format!("{digits:0<9}").parse().ok()
}

fn date_time(text: &str) -> Option<i64> {
    let (date, time) = match text.split_once(['T', 't', ' ']) {
        Some((d, t)) => (d, Some(t)),
        None => (text, None),
    };
    let mut d = date.split('-');
    let (y, m, day): (i64, i64, i64) = (
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
    );
    if d.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    let (mut secs, mut nanos, mut offset) = (0i64, 0i64, 0i64);
    if let Some(time) = time {
        let (clock, zone) = if let Some(c) = time.strip_suffix(['Z', 'z']) {
            (c, 0)
        } else if let Some(i) = time.rfind(['+', '-']) {
            let (c, z) = time.split_at(i);
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let (zh, zm) = z[1..].split_once(':')?;
            let zone: i64 = zh.parse::<i64>().ok()? * 3600 + zm.parse::<i64>().ok()? * 60;
            (c, sign * zone)
        } else {
            (time, 0)
        };
        offset = zone;
        let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
        let mut t = hms.split(':');
        let h: i64 = t.next()?.parse().ok()?;
        let mi: i64 = t.next()?.parse().ok()?;
        let s: i64 = t.next().unwrap_or("0").parse().ok()?;
        if t.next().is_some() || h > 23 || mi > 59 || s > 60 {
            return None;
        }
        secs = h * 3600 + mi * 60 + s;
        nanos = fraction(frac)?;
    }
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + secs - offset) * 1_000_000_000 + nanos)
}

/// `nanos` since the epoch as RFC 3339 in UTC: with nine fraction digits
/// (`2026-12-04T17:00:00.000000042Z`, Docker's event times and our state records) or, with
/// `whole_seconds`, without a fraction (`2026-12-04T17:00:00Z`). The inverse of [`parse_time`]
/// for these forms.
pub fn format_time(nanos: i64, whole_seconds: bool) -> String {
    let secs = nanos.div_euclid(1_000_000_000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, mi, sec) = (rem / 3600, rem % 3600 / 60, rem % 60);
    if whole_seconds {
        format!("{year:04}-{month:02}-{day:02}T{h:02}:{mi:02}:{sec:02}Z")
    } else {
        let frac = nanos.rem_euclid(1_000_000_000);
        format!("{year:04}-{month:02}-{day:02}T{h:02}:{mi:02}:{sec:02}.{frac:09}Z")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_time(0, false), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            format_time(951_782_400_000_000_005, false),
            "2000-02-29T00:00:00.000000005Z"
        );
        assert_eq!(
            format_time(1_795_452_421_123_456_789, false),
            "2026-11-23T16:47:01.123456789Z"
        );
        assert_eq!(
            format_time(4_107_542_399_000_000_000, true),
            "2100-02-28T23:59:59Z"
        );
    }

    const NOW: i64 = 1_764_867_600_000_000_000; // 2025-12-04T17:00:00Z

    #[test]
    fn every_form() {
        assert_eq!(parse_time("2025-12-04T17:00:00Z", 0).unwrap(), NOW);
        assert_eq!(parse_time("2025-12-04T18:00:00+01:00", 0).unwrap(), NOW);
        assert_eq!(
            parse_time("2025-12-04T17:00:00.000000250Z", 0).unwrap(),
            NOW + 250
        );
        assert_eq!(
            parse_time("2025-12-04", 0).unwrap(),
            NOW - 17 * 3600 * 1_000_000_000
        );
        assert_eq!(parse_time("1764867600", 0).unwrap(), NOW);
        assert_eq!(parse_time("1764867600.25", 0).unwrap(), NOW + 250_000_000);
        assert_eq!(parse_time("10m", NOW).unwrap(), NOW - 600_000_000_000);
        assert_eq!(parse_time("1.5s", NOW).unwrap(), NOW - 1_500_000_000);
        assert_eq!(parse_time("1d", NOW).unwrap(), NOW - 86_400_000_000_000);
        for bad in [
            "",
            "yesterday",
            "2025-13-01",
            "2025-12-04T25:00:00Z",
            "1.2.3",
        ] {
            assert!(parse_time(bad, NOW).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn unix_seconds_and_their_date_agree(secs in 0i64..4_000_000_000, frac in 0i64..1_000_000_000) {
            let text = format_time(secs * 1_000_000_000, true);
            prop_assert_eq!(parse_time(&text, 0).unwrap(), secs * 1_000_000_000);
            prop_assert_eq!(parse_time(&secs.to_string(), 0).unwrap(), secs * 1_000_000_000);
            let nanos = secs * 1_000_000_000 + frac;
            prop_assert_eq!(parse_time(&format_time(nanos, false), 0).unwrap(), nanos);
        }
    }
}
