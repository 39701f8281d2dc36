//! The delivered event as JSON, written straight into a buffer: the same
//! bytes as `serde_json::to_vec` of the [`OutEvent`] (a test holds them
//! equal), at a fraction of the cost on long strings. serde_json checks a
//! string byte by byte for what needs escaping; here eight bytes are
//! checked at once and clean runs are copied whole.

use serde_json::{Map, Value};

use super::{Origin, OutEvent};
use crate::parse::{Properties, plain};
use crate::time::{EpochMs, write_ms};
use crate::trace::{Invocation, KeyField, Span, TraceSummary};

/// Appends `e` as one JSON object.
pub(super) fn write_event(out: &mut Vec<u8>, e: &OutEvent) {
    let envelope = Envelope {
        trace_id: e.trace_id.as_deref(),
        timestamp_ms: e.timestamp_ms,
        event_type: e.event_type.as_deref(),
        agent_id: e.agent_id.as_deref(),
        session_id: e.session_id.as_deref(),
        system: e.source.system,
        log_group: &e.source.log_group,
        log_stream: &e.source.log_stream,
        log_id: &e.source.log_id,
        origin: &e.source.origin,
    };
    envelope.write(out, |out| write_properties(out, &e.properties));
}

/// Appends the `trace_summary` event of `s`: the same bytes as
/// [`write_event`] of [`OutEvent::summary`], without building its
/// properties as a map of JSON values first (a test holds them equal).
pub(super) fn write_summary(out: &mut Vec<u8>, s: &TraceSummary, key_field: KeyField) {
    let key = s.trace_key.as_str();
    let log_id = s.log_id();
    let envelope = Envelope {
        trace_id: (key_field == KeyField::TraceId).then_some(key),
        timestamp_ms: s.last_ms,
        event_type: Some("trace_summary"),
        agent_id: None,
        session_id: (key_field == KeyField::SessionId).then_some(key),
        system: "cloudwatch",
        log_group: s.log_groups.first().map_or("", |g| &**g),
        log_stream: SUMMARY_STREAM,
        log_id: &log_id,
        origin: &Origin::default(),
    };
    envelope.write(out, |out| {
        // The summary's fields as `serde_json::to_value` orders them: by name.
        let mut o = ObjectWriter::new(out);
        o.field("aliases");
        write_strs(o.out, &s.aliases);
        o.field("closed");
        write_bool(o.out, s.closed);
        o.field("duration_ms");
        write_int(o.out, s.duration_ms);
        o.field("error_count");
        write_int(o.out, s.error_count);
        o.field("event_count");
        write_int(o.out, s.event_count);
        o.field("first");
        write_time(o.out, s.first_ms);
        o.field("lambda");
        let mut lambda = ObjectWriter::new(o.out);
        for (request, invocation) in &s.lambda {
            lambda.key(request);
            write_invocation(lambda.out, invocation);
        }
        lambda.end();
        o.field("last");
        write_time(o.out, s.last_ms);
        o.field("log_groups");
        write_strs(o.out, &s.log_groups);
        o.field("message");
        write_message(o.out, s);
        o.field("revision");
        write_int(o.out, s.revision);
        o.field("root_span");
        match &s.root_span {
            Some(root) => write_str(o.out, root),
            None => o.out.extend_from_slice(b"null"),
        }
        o.field("services");
        write_strs(o.out, &s.services);
        o.field("spans");
        write_spans(o.out, &s.spans);
        o.field("trace_key");
        write_str(o.out, key);
        o.end();
    });
}

/// The log stream a `trace_summary` event names.
pub(super) const SUMMARY_STREAM: &str = "cwtap/trace-summary";

/// What every delivered record carries around its properties.
struct Envelope<'a> {
    trace_id: Option<&'a str>,
    timestamp_ms: EpochMs,
    event_type: Option<&'a str>,
    agent_id: Option<&'a str>,
    session_id: Option<&'a str>,
    system: &'a str,
    log_group: &'a str,
    log_stream: &'a str,
    log_id: &'a str,
    origin: &'a Origin,
}

impl Envelope<'_> {
    /// The record as one JSON object, in [`OutEvent`]'s field order, with
    /// `properties` writing the properties object.
    fn write(&self, out: &mut Vec<u8>, properties: impl FnOnce(&mut Vec<u8>)) {
        let mut o = ObjectWriter::new(out);
        if let Some(t) = self.trace_id {
            o.field("trace_id");
            write_str(o.out, t);
        }
        o.field("timestamp");
        write_time(o.out, self.timestamp_ms);
        for (name, value) in [
            ("event_type", self.event_type),
            ("agent_id", self.agent_id),
            ("session_id", self.session_id),
        ] {
            if let Some(v) = value {
                o.field(name);
                write_str(o.out, v);
            }
        }
        o.field("properties");
        properties(o.out);
        o.field("source");
        let out = &mut *o.out;
        out.extend_from_slice(b"{\"system\":");
        write_str(out, self.system);
        out.extend_from_slice(b",\"log_group\":");
        write_str(out, self.log_group);
        out.extend_from_slice(b",\"log_stream\":");
        write_str(out, self.log_stream);
        out.extend_from_slice(b",\"log_id\":");
        write_str(out, self.log_id);
        let Origin {
            account,
            account_id,
            region,
        } = self.origin;
        for (name, value) in [
            ("account", account),
            ("account_id", account_id),
            ("region", region),
        ] {
            if let Some(v) = value {
                out.push(b',');
                out.push(b'"');
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b"\":");
                write_str(out, v);
            }
        }
        out.push(b'}');
        o.end();
    }
}

/// Writes one JSON object key by key: the braces and the commas.
struct ObjectWriter<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> ObjectWriter<'a> {
    fn new(out: &'a mut Vec<u8>) -> ObjectWriter<'a> {
        out.push(b'{');
        ObjectWriter { out, first: true }
    }

    /// Starts the next member: its value is written to `self.out` next.
    fn key(&mut self, k: &str) {
        if !std::mem::take(&mut self.first) {
            self.out.push(b',');
        }
        write_str(self.out, k);
        self.out.push(b':');
    }

    /// [`ObjectWriter::key`] for a key written in the code, which needs no
    /// escaping: copied as it is (a dozen of these per event; inlined, so
    /// that each copies its key as a constant).
    #[inline(always)]
    fn field(&mut self, k: &'static str) {
        debug_assert!(k.bytes().all(|b| ESCAPE[b as usize] == 0), "{k:?}");
        let out = &mut *self.out;
        out.reserve(k.len() + 4);
        if !std::mem::take(&mut self.first) {
            out.push(b',');
        }
        out.push(b'"');
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b"\":");
    }

    fn end(self) {
        self.out.push(b'}');
    }
}

/// [`TraceSummary::message`] as a JSON string, written in place.
fn write_message(out: &mut Vec<u8>, s: &TraceSummary) {
    out.extend_from_slice(b"\"trace ");
    write_escaped(out, &s.trace_key);
    out.extend_from_slice(b" closed: ");
    write_int(out, s.event_count);
    out.extend_from_slice(b" events, ");
    write_int(out, s.error_count);
    out.extend_from_slice(b" errors, ");
    write_int(out, s.duration_ms);
    out.extend_from_slice(b" ms");
    for (i, service) in s.services.iter().enumerate() {
        out.extend_from_slice(if i == 0 { &b" across "[..] } else { b", " });
        write_escaped(out, service);
    }
    out.push(b'"');
}

/// A time as the JSON string [`crate::time::format_ms`] gives (which needs no escaping).
fn write_time(out: &mut Vec<u8>, ms: EpochMs) {
    out.push(b'"');
    write_ms(out, ms);
    out.push(b'"');
}

/// Writes `items` as a JSON array, each by `each`.
fn write_array<T>(out: &mut Vec<u8>, items: &[T], mut each: impl FnMut(&mut Vec<u8>, &T)) {
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        each(out, item);
    }
    out.push(b']');
}

fn write_strs(out: &mut Vec<u8>, items: &[impl AsRef<str>]) {
    write_array(out, items, |out, s| write_str(out, s.as_ref()));
}

/// A span and its children, fields by name (as `to_value` orders them).
fn write_spans(out: &mut Vec<u8>, spans: &[Span]) {
    write_array(out, spans, |out, span| {
        let mut o = ObjectWriter::new(out);
        o.field("children");
        write_spans(o.out, &span.children);
        o.field("first");
        write_time(o.out, span.first_ms);
        for (name, value) in [
            ("parent_span_id", span.parent_span_id.as_deref()),
            ("service", span.service.as_deref()),
        ] {
            if let Some(v) = value {
                o.field(name);
                write_str(o.out, v);
            }
        }
        o.field("span_id");
        write_str(o.out, &span.span_id);
        o.end();
    });
}

/// One Lambda invocation, the fields it has by name.
fn write_invocation(out: &mut Vec<u8>, i: &Invocation) {
    let mut o = ObjectWriter::new(out);
    let number = |o: &mut ObjectWriter<'_>, name: &'static str, v: Option<f64>| {
        if let Some(v) = v {
            o.field(name);
            write_value(o.out, &Value::from(v));
        }
    };
    number(&mut o, "billed_duration_ms", i.billed_duration_ms);
    if let Some(cold) = i.cold_start {
        o.field("cold_start");
        write_bool(o.out, cold);
    }
    number(&mut o, "duration_ms", i.duration_ms);
    number(&mut o, "init_duration_ms", i.init_duration_ms);
    if let Some(group) = &i.log_group {
        o.field("log_group");
        write_str(o.out, group);
    }
    number(&mut o, "max_memory_used_mb", i.max_memory_used_mb);
    number(&mut o, "memory_size_mb", i.memory_size_mb);
    if let Some(start) = &i.start {
        o.field("start");
        write_str(o.out, start);
    }
    o.end();
}

/// The message's own object member by member as it came (its keys have
/// no escapes, its values are checked JSON), then the added fields: as
/// [`Properties`]' `Serialize` writes them, without white space.
fn write_properties(out: &mut Vec<u8>, p: &Properties) {
    if let Some((members, none)) = p.compact_members() {
        // The object as it came is already that: one copy.
        out.extend_from_slice(members.as_bytes());
        write_added(out, p, none);
        return;
    }
    out.push(b'{');
    let mut first = true;
    for (key, value) in p.members() {
        if !first {
            out.push(b',');
        }
        first = false;
        out.reserve(key.len() + value.len() + 4);
        out.push(b'"');
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
        out.extend_from_slice(value.as_bytes());
    }
    write_added(out, p, first);
}

/// The fields added beside the object, and the closing `}`; `first`: no
/// member was written before them.
fn write_added(out: &mut Vec<u8>, p: &Properties, mut first: bool) {
    for (key, value) in p.added() {
        if !first {
            out.push(b',');
        }
        first = false;
        write_str(out, key);
        out.push(b':');
        write_value(out, value);
    }
    out.push(b'}');
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

/// An integer as serde_json writes it (serde_json itself uses `itoa`),
/// without building a [`Value`] for it.
fn write_int(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn write_bool(out: &mut Vec<u8>, b: bool) {
    out.extend_from_slice(if b { b"true" } else { b"false" });
}

fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => write_bool(out, *b),
        // serde_json's own number formatting (itoa, ryu), so that they
        // read back the same; writing into a Vec cannot fail.
        Value::Number(n) => {
            let _ = serde_json::to_writer(&mut *out, n);
        }
        Value::String(s) => write_str(out, s),
        Value::Array(a) => write_array(out, a, write_value),
        Value::Object(m) => write_object(out, m),
    }
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
    out.reserve(s.len() + 2);
    out.push(b'"');
    write_escaped(out, s);
    out.push(b'"');
}

/// The inside of [`write_str`]: `s` escaped, without the quotes.
fn write_escaped(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    let n = bytes.len();
    while i < n {
        // To the next byte to escape (`plain` stops at exactly those).
        i += plain(&bytes[i..]);
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
            event_type: Some(text.to_string()),
            agent_id: None,
            session_id: Some("s\n1".into()),
            properties: properties.into(),
            source: Source {
                system: "cloudwatch",
                log_group: "/aws/lambda/f".into(),
                log_stream: text.to_string(),
                log_id: "38000000000000000000000000000000000000000000000000000001".into(),
                origin,
            },
            timestamp_ms: 1_796_205_600_123,
            ingestion_time_ms: None,
            message: text.to_string(),
            fields: Default::default(),
            trace_key: None,
            rule: None,
        }
    }

    #[test]
    fn an_object_without_white_space_is_copied_whole_and_reads_the_same() {
        // (text, whether it is copied whole)
        let cases = [
            (r#"{"b":1.50,"a":{"x": [1, "y"]},"s":"t\"q é"}"#, true),
            (r#"{"a":1,"a":2}"#, true),
            (r#"{"a":"x"}"#, true),
            ("{}", true),
            (r#" {"a":1} "#, true),
            (r#"{"a":1 }"#, false),
            (r#"{ "a":1}"#, false),
            (r#"{"a" :1}"#, false),
            (r#"{"a": 1}"#, false),
            (r#"{"a":1, "b":2}"#, false),
            ("{ }", false),
        ];
        for (text, whole) in cases {
            for added in [false, true] {
                let mut e = event("json", Map::new(), Origin::default());
                e.properties = Properties::from_json_object(text).unwrap();
                assert_eq!(e.properties.compact_members().is_some(), whole, "{text}");
                if added {
                    e.properties
                        .insert_if_absent("trace_key", || Value::String("k".into()));
                }
                same_as_serde(&e);
            }
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

    #[test]
    fn a_json_messages_object_is_written_as_it_came_then_the_added_fields() {
        let text = r#" {"b": 1.50, "a": {"x": [1, "y"]}, "s": "t\"q é", "e": "\u00e9"} "#;
        let mut e = event("json", Map::new(), Origin::default());
        e.properties = Properties::from_json_object(text).unwrap();
        e.properties
            .insert_if_absent("trace_key", || Value::String("k\n".into()));
        same_as_serde(&e);
        let mut ours = Vec::new();
        write_event(&mut ours, &e);
        let ours = String::from_utf8(ours).unwrap();
        assert!(
            ours.contains(r#""properties":{"b":1.50,"a":{"x": [1, "y"]},"s":"t\"q é","e":"\u00e9","trace_key":"k\n"}"#),
            "{ours}"
        );
        let v: Value = serde_json::from_str(&ours).unwrap();
        assert_eq!(
            v["properties"],
            serde_json::json!({"b": 1.5, "a": {"x": [1, "y"]}, "s": "t\"q é", "e": "é", "trace_key": "k\n"})
        );
    }

    fn summary(root_span: Option<&str>) -> TraceSummary {
        let span = |id: &str, parent: Option<&str>, service: Option<&str>, children| Span {
            span_id: id.into(),
            parent_span_id: parent.map(Into::into),
            service: service.map(Into::into),
            first_ms: 1_796_205_600_001,
            children,
        };
        TraceSummary {
            trace_key: "t:1-\"quoted\"\n".into(),
            revision: 3,
            aliases: vec!["r:req-1".into(), "t:1-\"quoted\"\n".into()],
            root_span: root_span.map(Into::into),
            spans: vec![
                span(
                    "a",
                    None,
                    Some("checkout"),
                    vec![span(
                        "b",
                        Some("a"),
                        None,
                        vec![span("c", Some("b"), Some("pay"), vec![])],
                    )],
                ),
                span("orphan", Some("gone"), None, vec![]),
            ],
            services: vec!["checkout".into(), "pay\tments".into()],
            log_groups: vec!["/aws/lambda/checkout".into()],
            first_ms: 1_796_205_600_000,
            last_ms: 1_796_205_601_500,
            duration_ms: 1_500,
            event_count: 7,
            error_count: 1,
            lambda: [
                (
                    "req-1".to_string(),
                    Invocation {
                        log_group: Some("/aws/lambda/checkout".into()),
                        start: Some("2026-12-02T10:00:00.000Z".into()),
                        duration_ms: Some(12.5),
                        billed_duration_ms: Some(13.0),
                        memory_size_mb: Some(128.0),
                        max_memory_used_mb: Some(f64::NAN),
                        init_duration_ms: Some(201.25),
                        cold_start: Some(true),
                    },
                ),
                ("req-2".to_string(), Invocation::default()),
            ]
            .into_iter()
            .collect(),
            closed: true,
        }
    }

    #[test]
    fn a_summary_is_written_as_serde_json_writes_its_event() {
        let mut bare = summary(None);
        bare.spans.clear();
        bare.lambda.clear();
        bare.log_groups.clear();
        for s in [summary(Some("a")), summary(None), bare] {
            for key_field in [KeyField::SessionId, KeyField::TraceId, KeyField::None] {
                let mut ours = Vec::new();
                write_summary(&mut ours, &s, key_field);
                let theirs = serde_json::to_vec(&OutEvent::summary(&s, key_field)).unwrap();
                assert_eq!(
                    String::from_utf8_lossy(&ours),
                    String::from_utf8_lossy(&theirs)
                );
            }
        }
        // The times are RFC 3339 strings with milliseconds.
        let mut ours = Vec::new();
        write_summary(&mut ours, &summary(Some("a")), KeyField::None);
        let v: Value = serde_json::from_slice(&ours).unwrap();
        assert_eq!(v["timestamp"], "2026-12-02T10:00:01.500Z");
        assert_eq!(v["properties"]["first"], "2026-12-02T10:00:00.000Z");
        assert_eq!(v["properties"]["last"], "2026-12-02T10:00:01.500Z");
        assert_eq!(
            v["properties"]["spans"][0]["first"],
            "2026-12-02T10:00:00.001Z"
        );
        let mut far = Vec::new();
        write_ms(&mut far, 253_402_300_800_000);
        assert_eq!(far, b"10000-01-01T00:00:00.000Z");
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
