//! The delivered event as JSON, written straight into a buffer: the same
//! bytes as `serde_json::to_vec` of the [`OutEvent`] (a test holds them
//! equal), at a fraction of the cost on long strings. serde_json checks a
//! string byte by byte for what needs escaping; here eight bytes are
//! checked at once and clean runs are copied whole.

use serde_json::{Map, Value};

use super::{Origin, OutEvent};

/// Appends `e` as one JSON object.
pub(super) fn write_event(out: &mut Vec<u8>, e: &OutEvent) {
    out.push(b'{');
    let mut first = true;
    let mut key = |out: &mut Vec<u8>, k: &str| {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        write_str(out, k);
        out.push(b':');
    };
    if let Some(t) = &e.trace_id {
        key(out, "trace_id");
        write_str(out, t);
    }
    key(out, "timestamp");
    write_str(out, &e.timestamp);
    for (name, value) in [
        ("event_type", &e.event_type),
        ("agent_id", &e.agent_id),
        ("session_id", &e.session_id),
    ] {
        if let Some(v) = value {
            key(out, name);
            write_str(out, v);
        }
    }
    key(out, "properties");
    write_object(out, &e.properties);
    key(out, "source");
    let s = &e.source;
    out.extend_from_slice(b"{\"system\":");
    write_str(out, s.system);
    out.extend_from_slice(b",\"log_group\":");
    write_str(out, &s.log_group);
    out.extend_from_slice(b",\"log_stream\":");
    write_str(out, &s.log_stream);
    out.extend_from_slice(b",\"log_id\":");
    write_str(out, &s.log_id);
    let Origin {
        account,
        account_id,
        region,
    } = &s.origin;
    for (name, value) in [
        ("account", account),
        ("account_id", account_id),
        ("region", region),
    ] {
        if let Some(v) = value {
            out.push(b',');
            write_str(out, name);
            out.push(b':');
            write_str(out, v);
        }
    }
    out.extend_from_slice(b"}}");
}

fn write_object(out: &mut Vec<u8>, m: &Map<String, Value>) {
    out.push(b'{');
    for (i, (k, v)) in m.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, k);
        out.push(b':');
        write_value(out, v);
    }
    out.push(b'}');
}

fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        // serde_json's own number formatting (itoa, ryu), so that they
        // read back the same; writing into a Vec cannot fail.
        Value::Number(n) => {
            let _ = serde_json::to_writer(&mut *out, n);
        }
        Value::String(s) => write_str(out, s),
        Value::Array(a) => {
            out.push(b'[');
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, v);
            }
            out.push(b']');
        }
        Value::Object(m) => write_object(out, m),
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Whether any byte of `w` is below 0x20, `"` or `\`.
#[inline]
fn needs_escape(w: u64) -> bool {
    // A byte is zero after the xor exactly where it matched; the classic
    // "has a zero byte" test, and "has a byte below 0x20" as `w - 0x20`
    // borrowing into its high bit where the byte's own high bit is clear.
    let quote = w ^ (ONES * b'"' as u64);
    let backslash = w ^ (ONES * b'\\' as u64);
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let control = w.wrapping_sub(ONES * 0x20) & !w & HIGHS;
    (zero(quote) | zero(backslash) | control) != 0
}

/// Which bytes need escaping, as serde_json escapes them: 0 for none, else
/// the letter after the backslash (`u` for `\u00XX`).
static ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = b'u';
        b += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

/// Appends `s` as a JSON string, escaped as serde_json escapes it.
pub(super) fn write_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    let mut i = 0;
    let n = bytes.len();
    while i < n {
        // Eight clean bytes at a time, then byte by byte to the escape.
        while i + 8 <= n {
            let mut word = [0u8; 8];
            word.copy_from_slice(&bytes[i..i + 8]);
            if needs_escape(u64::from_le_bytes(word)) {
                break;
            }
            i += 8;
        }
        while i < n && ESCAPE[bytes[i] as usize] == 0 {
            i += 1;
        }
        if i == n {
            break;
        }
        let b = bytes[i];
        out.extend_from_slice(&bytes[start..i]);
        match ESCAPE[b as usize] {
            b'u' => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[(b >> 4) as usize],
                    HEX[(b & 0xf) as usize],
                ]);
            }
            letter => out.extend_from_slice(&[b'\\', letter]),
        }
        i += 1;
        start = i;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::Arc;

    use crate::event::Source;

    fn event(text: &str, properties: Map<String, Value>, origin: Origin) -> OutEvent {
        OutEvent {
            trace_id: Some(format!("t-{text}")),
            timestamp: "2026-12-02T10:00:00.123Z".into(),
            event_type: Some(text.to_string()),
            agent_id: None,
            session_id: Some("s\n1".into()),
            properties,
            source: Source {
                system: "cloudwatch",
                log_group: "/aws/lambda/f".into(),
                log_stream: text.to_string(),
                log_id: "38000000000000000000000000000000000000000000000000000001".into(),
                origin,
            },
            timestamp_ms: 1,
            ingestion_time_ms: None,
            message: text.to_string(),
            fields: Default::default(),
            trace_key: None,
            rule: None,
        }
    }

    fn same_as_serde(e: &OutEvent) {
        let mut ours = Vec::new();
        write_event(&mut ours, e);
        let theirs = serde_json::to_vec(e).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&ours),
            String::from_utf8_lossy(&theirs)
        );
    }

    #[test]
    fn every_kind_of_value_and_escape_is_written_as_serde_json_writes_it() {
        let properties = serde_json::json!({
            "text": "tab\there \"quoted\" back\\slash \u{1} \u{1f} \u{7f} \u{8}\u{c}\r\n é 日本 🦀",
            "long": "0123456789abcdef\"0123456789abcdef\\01234567\n",
            "n": [0, -1, 1.5, 1e300, -2.5e-7, 18446744073709551615u64, -9223372036854775808i64],
            "nested": {"a": [null, true, false, {}, []], "": ""},
            "k\"ey\n": "v"
        });
        let Value::Object(properties) = properties else {
            unreachable!()
        };
        same_as_serde(&event("plain", properties.clone(), Origin::default()));
        let origin = Origin {
            account: Some(Arc::from("prod")),
            account_id: Some(Arc::from("123456789012")),
            region: Some(Arc::from("eu-west-1")),
        };
        let mut e = event("with \"origin\"", properties, origin);
        e.trace_id = None;
        e.event_type = None;
        e.agent_id = Some("agent\\1".into());
        same_as_serde(&e);
    }

    proptest! {
        #[test]
        fn any_string_is_escaped_as_serde_json_escapes_it(s in "(?s).{0,64}", t in proptest::collection::vec(0u8..0x80, 0..40)) {
            let t = String::from_utf8(t).unwrap();
            for s in [&s, &t] {
                let mut ours = Vec::new();
                write_str(&mut ours, s);
                prop_assert_eq!(ours, serde_json::to_vec(s).unwrap());
            }
        }
    }
}
