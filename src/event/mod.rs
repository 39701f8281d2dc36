//! The shapes an event takes: [`RawEvent`] as CloudWatch returned it,
//! [`OutEvent`] once parsed (serialised, it is VectaDB's batch item and one
//! NDJSON line), and [`Record`], what an output is handed: an event or a
//! closed trace's summary. Beside them, the JSON text they come in and go
//! out as: `read` (event pages and subscription messages read in one
//! pass) and the writer of the delivered JSON.

mod json;
pub(crate) mod read;

use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::parse::{Fields, Parsed, Properties};
use crate::time::{EpochMs, format_ms};
use crate::trace::{KeyField, TraceSummary};

/// Where an event was read, as far as cwtap knows: the AWS account and
/// Region (`None` when the source cannot tell: a single-account config
/// without `accounts:`, a fixture).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Origin {
    /// The `accounts` entry the event was read through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<Arc<str>>,
}

impl Origin {
    /// The account for metrics labels: the `accounts` entry, else the
    /// account id, else `default`.
    pub fn label(&self) -> &str {
        self.account
            .as_deref()
            .or(self.account_id.as_deref())
            .unwrap_or(crate::config::DEFAULT_ACCOUNT)
    }
}

/// One log event as CloudWatch returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEvent {
    pub log_group: String,
    pub log_stream: String,
    /// Unique within the group; the de-duplication key.
    pub event_id: String,
    pub timestamp_ms: EpochMs,
    pub ingestion_time_ms: Option<EpochMs>,
    pub message: String,
    pub origin: Origin,
}

/// Where an event came from, in VectaDB's `source` shape (plus the account
/// and Region when known; VectaDB ignores keys it does not know).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Source {
    pub system: &'static str,
    pub log_group: String,
    pub log_stream: String,
    /// The CloudWatch eventId.
    pub log_id: String,
    #[serde(flatten)]
    pub origin: Origin,
}

/// One event as delivered downstream.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OutEvent {
    /// Set only when the trace key is configured to travel as `trace_id`
    /// (VectaDB then uses it as-is and creates no trace record).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// The CloudWatch timestamp in ms (the checkpoint's), sent as RFC 3339
    /// with milliseconds: exactly.
    #[serde(rename = "timestamp", serialize_with = "crate::time::serialize_ms")]
    pub timestamp_ms: EpochMs,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The original fields or raw line, beside what the rules extracted.
    pub properties: Properties,
    pub source: Source,
    /// When CloudWatch ingested it (outputs that map it: OTLP).
    #[serde(skip)]
    pub ingestion_time_ms: Option<EpochMs>,
    /// The message exactly as CloudWatch returned it.
    #[serde(skip)]
    pub message: String,
    /// The canonical fields the rules found.
    #[serde(skip)]
    pub fields: Fields,
    /// The trace the event was grouped into.
    #[serde(skip)]
    pub trace_key: Option<Arc<str>>,
    /// The rule that parsed it (`None`: the fallback).
    #[serde(skip)]
    pub rule: Option<Arc<str>>,
}

impl OutEvent {
    /// About the size of its JSON (see [`Record::json_size_hint`]): the
    /// properties are most of it (about the message again), then the
    /// source and the canonical fields, timestamps and key names.
    pub fn json_size_hint(&self) -> usize {
        self.message.len()
            + self.source.log_group.len()
            + self.source.log_stream.len()
            + self.source.log_id.len()
            + 512
    }

    /// Builds the delivered event. `group_agent_id` (from the log group's
    /// config) wins over an `agent_id` found in the message, as in VectaDB's agent.
    pub fn build(raw: RawEvent, parsed: Parsed, group_agent_id: Option<&str>) -> OutEvent {
        let Parsed {
            fields,
            mut properties,
            rule,
            ..
        } = parsed;
        // The canonical fields the rules extracted, beside the original data
        // (an original field of the same name wins): which names the data
        // has is looked up once for all of them.
        let f = &fields;
        let text = |v: &Option<String>| v.as_ref().map(|v| Value::String(v.clone()));
        let added: [(&str, &dyn Fn() -> Option<Value>); 11] = [
            ("trace_id", &|| text(&f.trace_id)),
            ("request_id", &|| text(&f.request_id)),
            ("span_id", &|| text(&f.span_id)),
            ("parent_span_id", &|| text(&f.parent_span_id)),
            ("session_id", &|| text(&f.session_id)),
            ("service", &|| text(&f.service)),
            ("level", &|| text(&f.level)),
            ("error", &|| text(&f.error)),
            ("duration_ms", &|| {
                f.duration_ms
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
            }),
            ("message", &|| text(&f.message)),
            ("cloudwatch_ingestion_time", &|| {
                raw.ingestion_time_ms.map(|ms| Value::String(format_ms(ms)))
            }),
        ];
        let present = properties.present(&added.map(|(key, _)| key));
        for (i, (key, value)) in added.iter().enumerate() {
            if present & (1 << i) == 0
                && let Some(value) = value()
            {
                properties.insert_new(key, value);
            }
        }
        OutEvent {
            trace_id: None,
            event_type: fields.event_type.clone(),
            agent_id: group_agent_id
                .map(str::to_string)
                .or_else(|| fields.agent_id.clone()),
            session_id: fields.session_id.clone(),
            properties,
            source: Source {
                system: "cloudwatch",
                log_group: raw.log_group,
                log_stream: raw.log_stream,
                log_id: raw.event_id,
                origin: raw.origin,
            },
            timestamp_ms: raw.timestamp_ms,
            ingestion_time_ms: raw.ingestion_time_ms,
            message: raw.message,
            fields,
            trace_key: None,
            rule,
        }
    }

    /// Records where grouping put the event: its trace key (in
    /// `properties.trace_key`, and as `session_id` or `trace_id` as
    /// configured) and the request id its stream's Lambda bracket gave a
    /// line without one.
    pub fn set_trace(
        &mut self,
        trace_key: Option<Arc<str>>,
        bracket_request_id: Option<String>,
        key_field: KeyField,
    ) {
        if let Some(r) = bracket_request_id {
            self.properties
                .insert_if_absent("request_id", || Value::String(r));
        }
        let Some(key) = trace_key else { return };
        self.properties
            .insert("trace_key", Value::String(str::to_owned(&key)));
        match key_field {
            KeyField::SessionId => self.session_id = Some(str::to_owned(&key)),
            KeyField::TraceId => self.trace_id = Some(str::to_owned(&key)),
            KeyField::None => {}
        }
        self.trace_key = Some(key);
    }

    /// The downstream `trace_summary` event of a closed trace, as an
    /// [`OutEvent`]: the reference for its shape. The JSON outputs write it
    /// without building it ([`Record::write_json`]; a test holds the bytes
    /// equal to serde_json's of this).
    pub fn summary(s: &TraceSummary, key_field: KeyField) -> OutEvent {
        let mut properties = match serde_json::to_value(s) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        properties.insert("message".into(), Value::String(s.message()));
        let key = s.trace_key.clone();
        OutEvent {
            event_type: Some("trace_summary".into()),
            agent_id: None,
            session_id: (key_field == KeyField::SessionId).then(|| key.clone()),
            trace_id: (key_field == KeyField::TraceId).then(|| key.clone()),
            properties: Properties::from(properties),
            source: Source {
                system: "cloudwatch",
                log_group: s
                    .log_groups
                    .first()
                    .map(|g| g.to_string())
                    .unwrap_or_default(),
                log_stream: json::SUMMARY_STREAM.into(),
                log_id: s.log_id(),
                origin: Origin::default(),
            },
            timestamp_ms: s.last_ms,
            ingestion_time_ms: None,
            message: String::new(),
            fields: Fields::default(),
            trace_key: Some(key.into()),
            rule: None,
        }
    }
}

/// What an output is handed: a log event, or the summary of a closed trace.
// Events are nearly every record: boxing them would cost an allocation each.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Event(OutEvent),
    Summary(Box<TraceSummary>),
}

impl Record {
    /// The id that names the record in messages (the CloudWatch eventId, or
    /// `trace-summary:<key>:<revision>`).
    pub fn log_id(&self) -> String {
        match self {
            Record::Event(e) => e.source.log_id.clone(),
            Record::Summary(s) => s.log_id(),
        }
    }

    /// The log group the record is about, for messages (a summary: the
    /// first group of its trace).
    pub fn log_group(&self) -> &str {
        match self {
            Record::Event(e) => &e.source.log_group,
            Record::Summary(s) => s.log_groups.first().map_or("", |g| &**g),
        }
    }

    /// The record as the JSON object VectaDB's batch API and the NDJSON
    /// output take (one shape for both).
    pub fn to_json(&self, key_field: KeyField) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.json_size_hint());
        self.write_json(&mut out, key_field);
        out
    }

    /// Enough bytes for the usual record's JSON at once: growing a buffer
    /// half way (a copy of all written so far) cost as much as writing a
    /// field.
    pub fn json_size_hint(&self) -> usize {
        match self {
            Record::Event(e) => e.json_size_hint(),
            // 1.4 kB for a trace of five spans.
            Record::Summary(_) => 2048,
        }
    }

    /// Appends [`Record::to_json`] to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>, key_field: KeyField) {
        match self {
            Record::Event(e) => json::write_event(out, e),
            Record::Summary(s) => json::write_summary(out, s, key_field),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::parse::RuleSet;

    fn raw(message: &str) -> RawEvent {
        RawEvent {
            log_group: "/app".into(),
            log_stream: "s-1".into(),
            event_id: "38000000000000000000000000000000000000000000000000000001".into(),
            timestamp_ms: 1_764_668_400_123,
            ingestion_time_ms: Some(1_764_668_401_000),
            message: message.into(),
            origin: Origin::default(),
        }
    }

    #[test]
    fn canonical_fields_join_the_original_ones_which_win_on_a_shared_name() {
        let rules = RuleSet::builtin("json").unwrap();
        // `level` and `message` are in the data under their own names (the
        // original wins); `trace_id` comes from `traceId` and `duration_ms`
        // from `elapsed_ms`.
        let message = r#"{"level":"WARN","traceId":"abc","requestId":"r-1","spanId":"s1","service":"pay","message":"original","msg":"m","elapsed_ms":12,"error":{"kind":"x"}}"#;
        let e = OutEvent::build(raw(message), rules.parse(message), None);
        let p = e.properties.as_map();
        assert_eq!(p["level"], "WARN");
        assert_eq!(e.fields.level.as_deref(), Some("warn"));
        assert_eq!(p["message"], "original");
        assert_eq!(p["trace_id"], "abc");
        assert_eq!(p["request_id"], "r-1");
        assert_eq!(p["span_id"], "s1");
        assert_eq!(p["service"], "pay");
        assert_eq!(p["error"], json!({"kind": "x"}));
        assert_eq!(p["duration_ms"], 12.0);
        assert_eq!(p["cloudwatch_ingestion_time"], "2025-12-02T09:40:01.000Z");
        assert_eq!(p["traceId"], "abc");
        assert!(!p.contains_key("parent_span_id") && !p.contains_key("session_id"));
        let sent: Value =
            serde_json::from_slice(&Record::Event(e.clone()).to_json(KeyField::None)).unwrap();
        assert_eq!(sent["timestamp"], "2025-12-02T09:40:00.123Z");
        assert_eq!(e.message, message);

        // A line no rule takes: the raw line, marked so, and the ingestion
        // time only.
        let e = OutEvent::build(raw("plain text"), rules.parse("plain text"), None);
        let p = e.properties.as_map();
        assert_eq!(p["message"], "plain text");
        assert_eq!(p["cloudwatch_ingestion_time"], "2025-12-02T09:40:01.000Z");
        assert_eq!(p["raw_log"], true);
        assert_eq!(p.len(), 3, "{p:?}");
    }
}
