//! Turning extracted values into canonical ones: level names, durations in
//! milliseconds, and trace headers (X-Ray, W3C traceparent) into ids.

use serde_json::Value;

/// How a rule reads numeric levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum LevelNumbers {
    /// pino and bunyan: 10 trace, 20 debug, 30 info, 40 warn, 50 error, 60 fatal.
    #[default]
    Pino,
    /// Python logging: 10 debug, 20 info, 30 warning, 40 error, 50 critical.
    Python,
    /// syslog severities: 0-2 fatal, 3 error, 4 warn, 5-6 info, 7 debug.
    Syslog,
}

/// The canonical lower-case level for a level value (name or number).
pub(crate) fn level(value: &Value, numbers: LevelNumbers) -> Option<String> {
    match value {
        Value::Number(n) => n.as_f64().map(|n| level_number(n, numbers).to_string()),
        Value::String(s) => {
            let s = s.trim();
            if s.is_empty() {
                return None;
            }
            if let Ok(n) = s.parse::<f64>() {
                return Some(level_number(n, numbers).to_string());
            }
            Some(level_name(s))
        }
        _ => None,
    }
}

fn level_number(n: f64, numbers: LevelNumbers) -> &'static str {
    match numbers {
        LevelNumbers::Pino => match n {
            n if n < 20.0 => "trace",
            n if n < 30.0 => "debug",
            n if n < 40.0 => "info",
            n if n < 50.0 => "warn",
            n if n < 60.0 => "error",
            _ => "fatal",
        },
        LevelNumbers::Python => match n {
            n if n < 20.0 => "debug",
            n if n < 30.0 => "info",
            n if n < 40.0 => "warn",
            n if n < 50.0 => "error",
            _ => "fatal",
        },
        LevelNumbers::Syslog => match n {
            n if n < 3.0 => "fatal",
            n if n < 4.0 => "error",
            n if n < 5.0 => "warn",
            n if n < 7.0 => "info",
            _ => "debug",
        },
    }
}

/// Level names of the common libraries, folded onto trace, debug, info,
/// warn, error and fatal; anything else is kept, lower-cased.
pub(crate) fn level_name(name: &str) -> String {
    LEVEL_ALIASES
        .iter()
        .find(|(alias, _)| name.eq_ignore_ascii_case(alias))
        .map_or_else(|| name.to_ascii_lowercase(), |(_, level)| level.to_string())
}

/// (alias, canonical level), compared without regard to case.
const LEVEL_ALIASES: &[(&str, &str)] = &[
    ("info", "info"),
    ("error", "error"),
    ("warn", "warn"),
    ("warning", "warn"),
    ("debug", "debug"),
    ("trace", "trace"),
    ("fatal", "fatal"),
    ("critical", "fatal"),
    ("information", "info"),
    ("informational", "info"),
    ("notice", "info"),
    ("inf", "info"),
    ("err", "error"),
    ("eror", "error"),
    ("erro", "error"),
    ("severe", "error"),
    ("wrn", "warn"),
    ("wrng", "warn"),
    ("dbg", "debug"),
    ("dbug", "debug"),
    ("fine", "debug"),
    ("trc", "trace"),
    ("verbose", "trace"),
    ("vrb", "trace"),
    ("finest", "trace"),
    ("finer", "trace"),
    ("ftl", "fatal"),
    ("crit", "fatal"),
    ("crt", "fatal"),
    ("panic", "fatal"),
    ("dpanic", "fatal"),
    ("emergency", "fatal"),
    ("emerg", "fatal"),
    ("alert", "fatal"),
];

/// A duration in milliseconds. A bare number is in the rule's unit
/// (`unit_ms` milliseconds per unit); text may carry its own unit: `350ms`,
/// `1.2s`, `1.2 seconds`, `15us`, `2m`.
pub(crate) fn duration_ms(value: &Value, unit_ms: f64) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64().map(|n| n * unit_ms),
        Value::String(s) => {
            let s = s.trim();
            let split = number_end(s);
            let number: f64 = s[..split].parse().ok()?;
            let per_unit = match s[split..].trim() {
                "" => unit_ms,
                "ns" => 1e-6,
                "us" | "µs" | "μs" => 1e-3,
                "ms" | "msec" | "msecs" | "millis" | "milliseconds" => 1.0,
                "s" | "sec" | "secs" | "second" | "seconds" => 1000.0,
                "m" | "min" | "mins" | "minute" | "minutes" => 60_000.0,
                "h" | "hr" | "hour" | "hours" => 3_600_000.0,
                _ => return None,
            };
            Some(number * per_unit)
        }
        _ => None,
    }
}

/// Where the number at the start of `s` ends (`1.9e-05 seconds` -> 7).
fn number_end(s: &str) -> usize {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let exponent = matches!(b[i], b'e' | b'E')
            && i > 0
            && b[i - 1].is_ascii_digit()
            && b.get(i + 1)
                .is_some_and(|&n| n.is_ascii_digit() || n == b'-' || n == b'+');
        if !(b[i].is_ascii_digit() || matches!(b[i], b'.' | b'-' | b'+') || exponent) {
            break;
        }
        i += 1;
    }
    i
}

/// Milliseconds per unit for a rule's `duration_unit`.
pub(crate) fn unit_ms(unit: &str) -> Option<f64> {
    Some(match unit {
        "ns" => 1e-6,
        "us" => 1e-3,
        "ms" => 1.0,
        "s" => 1000.0,
        _ => return None,
    })
}

/// A trace id value taken apart: an X-Ray header (`Root=1-...;Parent=...`)
/// gives the Root and the Parent; a W3C traceparent (`00-<32 hex>-<16
/// hex>-<2 hex>`) gives the trace id and the parent span id; anything else is
/// the trace id as it is.
pub(crate) fn trace_id(value: String) -> (String, Option<String>) {
    let trimmed = value.trim();
    // An X-Ray header has `key=value` parts; a bare id has no `=`.
    if trimmed.as_bytes().contains(&b'=')
        && let Some(root) = header_part(trimmed, "Root")
    {
        return (
            root.to_string(),
            header_part(trimmed, "Parent").map(str::to_string),
        );
    }
    if let Some((trace, parent)) = traceparent(trimmed) {
        return (trace.to_string(), Some(parent.to_string()));
    }
    if trimmed.len() == value.len() {
        return (value, None);
    }
    (trimmed.to_string(), None)
}

/// `key=value` from an X-Ray header (`;`-separated, keys case-sensitive).
fn header_part<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    header.split(';').find_map(|part| {
        let (k, v) = part.trim().split_once('=')?;
        (k == key && !v.is_empty()).then_some(v)
    })
}

/// `(trace id, parent span id)` of a W3C traceparent.
pub(crate) fn traceparent(value: &str) -> Option<(&str, &str)> {
    let b = value.as_bytes();
    let hex = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_hexdigit);
    let shaped = b.len() == 55 && b[2] == b'-' && b[35] == b'-' && b[52] == b'-';
    (shaped && hex(0..2) && hex(3..35) && hex(36..52) && hex(53..55))
        .then(|| (&value[3..35], &value[36..52]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn level_names_fold_onto_six_canonical_names() {
        for (raw, want) in [
            ("INFO", "info"),
            ("Information", "info"),
            ("WARNING", "warn"),
            ("Warn", "warn"),
            ("ERR", "error"),
            ("CRITICAL", "fatal"),
            ("dpanic", "fatal"),
            ("Verbose", "trace"),
            ("DEBUG", "debug"),
            ("AUDIT", "audit"),
        ] {
            assert_eq!(
                level(&json!(raw), LevelNumbers::Pino).as_deref(),
                Some(want),
                "{raw}"
            );
        }
    }

    #[test]
    fn numeric_levels_follow_the_rule_scale() {
        let pino: Vec<_> = [10, 20, 30, 40, 50, 60]
            .iter()
            .map(|n| level(&json!(n), LevelNumbers::Pino).unwrap())
            .collect();
        assert_eq!(pino, ["trace", "debug", "info", "warn", "error", "fatal"]);
        let python: Vec<_> = [10, 20, 30, 40, 50]
            .iter()
            .map(|n| level(&json!(n), LevelNumbers::Python).unwrap())
            .collect();
        assert_eq!(python, ["debug", "info", "warn", "error", "fatal"]);
        assert_eq!(
            level(&json!("3"), LevelNumbers::Syslog).as_deref(),
            Some("error")
        );
        assert_eq!(level(&json!(""), LevelNumbers::Pino), None);
    }

    #[test]
    fn durations_read_units_and_scale_bare_numbers() {
        assert_eq!(duration_ms(&json!(12.5), 1.0), Some(12.5));
        assert_eq!(duration_ms(&json!(2), 1000.0), Some(2000.0));
        assert_eq!(duration_ms(&json!("1.5 seconds"), 1.0), Some(1500.0));
        assert_eq!(duration_ms(&json!("350ms"), 1.0), Some(350.0));
        assert_eq!(duration_ms(&json!("40.47"), 1.0), Some(40.47));
        assert_eq!(duration_ms(&json!("1500us"), 1.0), Some(1.5));
        assert_eq!(
            duration_ms(&json!("1.9e-05 seconds"), 1.0),
            Some(1.9e-05 * 1000.0)
        );
        assert_eq!(duration_ms(&json!("soon"), 1.0), None);
        assert_eq!(duration_ms(&json!("3 fortnights"), 1.0), None);
    }

    #[test]
    fn xray_headers_and_traceparents_give_trace_and_parent() {
        assert_eq!(
            trace_id(
                "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1".into()
            ),
            (
                "1-5759e988-bd862e3fe1be46a994272793".to_string(),
                Some("53995c3f42cd8ad8".to_string())
            )
        );
        assert_eq!(
            trace_id(
                "Self=1-67891234-12456789abcdef012345678;Root=1-5759e988-bd862e3fe1be46a994272793"
                    .into()
            ),
            ("1-5759e988-bd862e3fe1be46a994272793".to_string(), None)
        );
        assert_eq!(
            trace_id("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
            (
                "0af7651916cd43dd8448eb211c80319c".to_string(),
                Some("b7ad6b7169203331".to_string())
            )
        );
        assert_eq!(trace_id("abc-123".into()), ("abc-123".to_string(), None));
        assert_eq!(trace_id(" abc-123\n".into()), ("abc-123".to_string(), None));
        assert_eq!(
            traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0"),
            None
        );
    }
}
