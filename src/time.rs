//! Time values as cwtap uses them: CloudWatch's milliseconds since the epoch,
//! durations written `90s`, `5m`, `7d`, `2w`, and RFC 3339 instants.

use std::cell::Cell;
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
        let why = match e {
            humantime::DurationError::UnknownUnit { unit, .. } => format!("unknown unit {unit:?}"),
            e => e.to_string(),
        };
        format!("invalid duration {text:?} ({why}); use a number with a unit such as 90s, 5m, 2h, 7d, 1w")
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
        return i64::try_from(ago.as_millis())
            .ok()
            .filter(|&ago| ago <= now)
            .map(|ago| now - ago)
            .ok_or_else(|| format!("{text:?} ago is before 1970"));
    }
    parse_rfc3339(text).ok_or_else(|| {
        let year = text.get(..4).filter(|y| y.bytes().all(|b| b.is_ascii_digit()));
        if year.is_some_and(|y| y < "1970") && text.get(4..5) == Some("-") {
            format!("{text:?} is before 1970")
        } else {
            format!(
                "invalid time {text:?}: give a duration ago (30m, 6h, 7d, 2w) or an RFC 3339 time (2026-11-20T08:00:00Z, 2026-11-20T10:00:00+02:00)"
            )
        }
    })
}

/// Reads an RFC 3339 time as epoch milliseconds: `Z`, an offset
/// (`+02:00`, `-0530`) or no zone (UTC); `T` or a space between date and
/// time. `None` when it is not one, or before 1970.
pub fn parse_rfc3339(text: &str) -> Option<EpochMs> {
    // humantime reads UTC (`Z` or no zone); an offset is applied here.
    let (local, offset_ms) = split_offset(text.trim());
    let t = humantime::parse_rfc3339_weak(local).ok()?;
    let ms = t.duration_since(UNIX_EPOCH).ok()?.as_millis() as EpochMs - offset_ms;
    (ms >= 0).then_some(ms)
}

/// Splits an RFC 3339 time into its local part and its UTC offset in ms
/// (`+02:00`, `-0530`); a time without one (or with `Z`) has offset 0.
fn split_offset(text: &str) -> (&str, EpochMs) {
    let b = text.as_bytes();
    // `+hh:mm` or `+hhmm`, after a time of day (not a date's `-mm-dd`).
    for len in [6, 5] {
        let Some(at) = b.len().checked_sub(len) else {
            continue;
        };
        let (local, zone) = (&text[..at], &b[at..]);
        let digits: Vec<u8> = zone[1..].iter().copied().filter(|&c| c != b':').collect();
        let shaped = match len {
            6 => zone[3] == b':',
            _ => !zone.contains(&b':'),
        };
        if !(zone[0] == b'+' || zone[0] == b'-')
            || !shaped
            || digits.len() != 4
            || !digits.iter().all(u8::is_ascii_digit)
            || !local.contains(['T', 't', ' '])
            || !local.contains(':')
        {
            continue;
        }
        let n = |d: &[u8]| i64::from(d[0] - b'0') * 10 + i64::from(d[1] - b'0');
        let (hours, minutes) = (n(&digits[..2]), n(&digits[2..]));
        if hours > 23 || minutes > 59 {
            continue;
        }
        let ms = (hours * 60 + minutes) * 60_000;
        return (local, if zone[0] == b'-' { -ms } else { ms });
    }
    (text, 0)
}

/// Formats epoch milliseconds as RFC 3339 UTC with exactly millisecond
/// precision, so that the CloudWatch timestamp survives the round trip
/// (`2026-11-20T08:00:00.123Z`). Every event's timestamp passes here, so it
/// writes the digits itself instead of going through `fmt`. A pushed record
/// may carry any 64-bit number, and formatting never fails: past the year
/// 9999, which RFC 3339 cannot write, the year gets as many digits as it
/// needs, and before the year 0 a sign (ISO 8601's expanded years).
pub fn format_ms(ms: EpochMs) -> String {
    if let Some(b) = fixed_width(ms) {
        // Every timestamp an event carries: one allocation.
        return std::str::from_utf8(&b)
            .map(str::to_owned)
            .unwrap_or_default();
    }
    let (days, ms_of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000) as u64);
    let (year, month, day) = civil_from_days(days);
    let mut out = String::with_capacity(24);
    if year < 0 {
        out.push('-');
    }
    match year.unsigned_abs() {
        y if y > 9999 => out.push_str(&y.to_string()),
        y => push_digits(&mut out, y, 4),
    }
    let secs_of_day = ms_of_day / 1000;
    let rest = [
        (b'-', month as u64, 2),
        (b'-', day as u64, 2),
        (b'T', secs_of_day / 3600, 2),
        (b':', secs_of_day / 60 % 60, 2),
        (b':', secs_of_day % 60, 2),
        (b'.', ms_of_day % 1000, 3),
    ];
    for (sep, value, width) in rest {
        out.push(sep as char);
        push_digits(&mut out, value, width);
    }
    out.push('Z');
    out
}

/// [`format_ms`] of a time in the years 0 to 9999 (every timestamp an
/// event carries): fixed width, ASCII.
fn fixed_width(ms: EpochMs) -> Option<[u8; 24]> {
    // The date of the last day written on this thread: the timestamps of
    // a batch are mostly of one day.
    thread_local! {
        static DAY: Cell<(i64, [u8; 10])> = const { Cell::new((i64::MIN, [0; 10])) };
    }
    let (days, ms_of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000) as u64);
    let date = match DAY.with(Cell::get) {
        (cached, date) if cached == days => date,
        _ => {
            let (year, month, day) = civil_from_days(days);
            if !(0..=9999).contains(&year) {
                return None;
            }
            let mut date = *b"0000-00-00";
            let year = year as u64;
            put_2(&mut date[0..2], year / 100);
            put_2(&mut date[2..4], year % 100);
            put_2(&mut date[5..7], u64::from(month));
            put_2(&mut date[8..10], u64::from(day));
            DAY.with(|d| d.set((days, date)));
            date
        }
    };
    let mut b = *b"0000-00-00T00:00:00.000Z";
    b[..10].copy_from_slice(&date);
    let secs_of_day = ms_of_day / 1000;
    put_2(&mut b[11..13], secs_of_day / 3600);
    put_2(&mut b[14..16], secs_of_day / 60 % 60);
    put_2(&mut b[17..19], secs_of_day % 60);
    let millis = ms_of_day % 1000;
    b[20] = b'0' + (millis / 100) as u8;
    put_2(&mut b[21..23], millis % 100);
    Some(b)
}

/// Appends [`format_ms`] of `ms` to `out` (no string in between for the
/// usual years).
pub fn write_ms(out: &mut Vec<u8>, ms: EpochMs) {
    match fixed_width(ms) {
        Some(b) => out.extend_from_slice(&b),
        None => out.extend_from_slice(format_ms(ms).as_bytes()),
    }
}

/// Serializes epoch milliseconds as [`format_ms`] does (for serde's
/// `serialize_with`).
pub fn serialize_ms<S: serde::Serializer>(ms: &EpochMs, s: S) -> Result<S::Ok, S::Error> {
    match fixed_width(*ms) {
        Some(b) => s.serialize_str(std::str::from_utf8(&b).unwrap_or_default()),
        None => s.serialize_str(&format_ms(*ms)),
    }
}

/// Writes `value % 100` into `out` (two bytes) as two decimal digits.
fn put_2(out: &mut [u8], value: u64) {
    // "00" to "99", two bytes each: one lookup per field instead of a
    // division per digit (a timestamp is written several times per event).
    const PAIRS: &[u8; 200] = b"00010203040506070809101112131415161718192021222324252627282930313233343536373839404142434445464748495051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899";
    let i = (value as usize % 100) * 2;
    out.copy_from_slice(&PAIRS[i..i + 2]);
}

/// Appends `value` as exactly `width` decimal digits (zero-padded).
fn push_digits(out: &mut String, value: u64, width: u32) {
    for place in (0..width).rev() {
        out.push((b'0' + (value / 10u64.pow(place) % 10) as u8) as char);
    }
}

/// The proleptic Gregorian (year, month, day) of a day count since
/// 1970-01-01 (H. Hinnant's `civil_from_days`), for any day an `EpochMs`
/// can name.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March first
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
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
        // The same instant with an offset, with or without its colon.
        for same in [
            "2026-11-20T10:00:00+02:00",
            "2026-11-20T10:00:00+0200",
            "2026-11-20T02:30:00-05:30",
            "2026-11-20T08:00:00+00:00",
            "2026-11-20 08:00:00",
        ] {
            assert_eq!(
                parse_instant(same, now).unwrap(),
                1_795_161_600_000,
                "{same}"
            );
        }
        assert_eq!(
            parse_instant("2026-11-20T10:00:00.250+02:00", now).unwrap(),
            1_795_161_600_250
        );
        for bad in [
            "yesterday",
            "2026-11-20T10:00:00+25:00",
            "2026-11-20T10:00:00+02",
            "2026-11-20+02:00",
        ] {
            assert!(parse_instant(bad, now).is_err(), "{bad}");
        }
        // Further back than 1970, or than a duration can say: refused, not
        // wrapped around into another time.
        for far in ["99999999d", "999999999999d", "1969-12-31T23:59:59Z"] {
            let e = parse_instant(far, now).unwrap_err();
            assert!(e.contains("before 1970"), "{far}: {e}");
        }
    }

    #[test]
    fn formatting_keeps_milliseconds_exactly() {
        assert_eq!(format_ms(1_795_161_600_123), "2026-11-20T08:00:00.123Z");
        assert_eq!(format_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_ms(-5), "1969-12-31T23:59:59.995Z");
        // Leap days, the century rules, the last instant RFC 3339 can write.
        assert_eq!(format_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(format_ms(4_107_542_399_999), "2100-02-28T23:59:59.999Z");
        assert_eq!(format_ms(4_107_542_400_000), "2100-03-01T00:00:00.000Z");
        assert_eq!(format_ms(253_402_300_799_999), "9999-12-31T23:59:59.999Z");
    }

    #[test]
    fn a_timestamp_rfc3339_cannot_write_keeps_its_value_and_does_not_panic() {
        assert_eq!(format_ms(253_402_300_800_000), "10000-01-01T00:00:00.000Z");
        let far = format_ms(EpochMs::MAX);
        assert_eq!(far, "292278994-08-17T07:12:55.807Z");
        assert_eq!(format_ms(-62_135_596_800_000), "0001-01-01T00:00:00.000Z");
        assert_eq!(format_ms(-62_135_596_800_001), "0000-12-31T23:59:59.999Z");
        assert_eq!(format_ms(-62_198_755_200_000), "-0001-01-01T00:00:00.000Z");
        assert_eq!(format_ms(EpochMs::MIN), "-292275055-05-16T16:47:04.192Z");
    }

    proptest::proptest! {
        #[test]
        fn formatting_matches_humantime_up_to_the_year_9999(
            ms in 86_400_000i64..253_402_214_400_000,
            later in 0i64..86_400_000,
        ) {
            // Each time, a time of the same day or the next (the date kept
            // from the one before), then of the day before.
            for ms in [ms, ms + later, ms - 86_400_000] {
                let t = UNIX_EPOCH + Duration::from_millis(ms as u64);
                proptest::prop_assert_eq!(
                    format_ms(ms),
                    humantime::format_rfc3339_millis(t).to_string()
                );
            }
        }
    }
}
