//! Time values as cwtap uses them: CloudWatch's milliseconds since the epoch,
//! durations written `90s`, `5m`, `7d`, `2w`, and RFC 3339 instants.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, CloudWatch's unit for event timestamps.
pub type EpochMs = i64;

/// The current wall-clock time in milliseconds since the epoch.
pub fn now_ms() -> EpochMs {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as EpochMs)
        .unwrap_or(0)
}

/// Parses a duration: a bare number of seconds, or a number with a unit
/// (`ms`, `s`, `m`, `h`, `d`, `w`, also combined as `1h30m`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(text).map_err(|e| {
        format!(
            "invalid duration {text:?} ({e}); use a number with a unit such as 90s, 5m, 2h, 7d, 1w"
        )
    })
}

/// Parses a point in time given either as a duration ago (`1h`: one hour before
/// `now`) or as an RFC 3339 instant in UTC (`2026-11-20T08:00:00Z`).
pub fn parse_instant(text: &str, now: EpochMs) -> Result<EpochMs, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("now") {
        return Ok(now);
    }
    if let Ok(ago) = parse_duration(text) {
        return Ok(now - ago.as_millis() as EpochMs);
    }
    match humantime::parse_rfc3339_weak(text) {
        Ok(t) => Ok(t
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as EpochMs)
            .unwrap_or(0)),
        Err(_) => Err(format!(
            "invalid time {text:?}: give a duration ago (30m, 6h, 7d, 2w) or an RFC 3339 UTC instant (2026-11-20T08:00:00Z)"
        )),
    }
}

/// Formats epoch milliseconds as RFC 3339 UTC with exactly millisecond
/// precision, so that the CloudWatch timestamp survives the round trip.
pub fn format_ms(ms: EpochMs) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_every_documented_unit() {
        assert_eq!(parse_duration("45").unwrap(), Duration::from_secs(45));
        assert_eq!(parse_duration("45s").unwrap(), Duration::from_secs(45));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(
            parse_duration("7d").unwrap(),
            Duration::from_secs(7 * 86400)
        );
        assert_eq!(
            parse_duration("1w").unwrap(),
            Duration::from_secs(7 * 86400)
        );
        assert!(parse_duration("7 fortnights").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn instants_are_durations_ago_or_rfc3339() {
        let now = 1_800_000_000_000;
        assert_eq!(parse_instant("1h", now).unwrap(), now - 3_600_000);
        assert_eq!(parse_instant("now", now).unwrap(), now);
        assert_eq!(
            parse_instant("2026-11-20T08:00:00Z", now).unwrap(),
            1_795_161_600_000
        );
        assert!(parse_instant("yesterday", now).is_err());
    }

    #[test]
    fn formatting_keeps_milliseconds_exactly() {
        assert_eq!(format_ms(1_795_161_600_123), "2026-11-20T08:00:00.123Z");
        assert_eq!(format_ms(0), "1970-01-01T00:00:00.000Z");
    }
}
