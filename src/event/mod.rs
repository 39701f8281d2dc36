//! The shapes an event takes: [`RawEvent`] as CloudWatch returned it,
//! [`OutEvent`] once parsed (serialised, it is VectaDB's batch item and one
//! NDJSON line), and [`Record`], what an output is handed: an event or a
//! closed trace's summary. Beside them, the JSON text they come in and go
//! out as: `read` (event pages and subscription messages read in one
//! pass) and the writer of the delivered JSON.

mod json;
pub(crate) mod read;

pub(crate) use json::string_stops;

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
    /// RFC 3339 with milliseconds: the CloudWatch timestamp, exactly.
    pub timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The original fields or raw line, beside what the rules extracted.
    pub properties: Properties,
    pub source: Source,
    /// The CloudWatch timestamp in ms, for the checkpoint (not sent).
    #[serde(skip)]
    pub timestamp_ms: EpochMs,
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
    pub trace_key: Option<String>,
    /// The rule that parsed it (`None`: the fallback).
    #[serde(skip)]
    pub rule: Option<String>,
}

impl OutEvent {
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
        // (an original field of the same name wins).
        let f = &fields;
        let strings = [
            ("trace_id", &f.trace_id),
            ("request_id", &f.request_id),
            ("span_id", &f.span_id),
            ("parent_span_id", &f.parent_span_id),
            ("session_id", &f.session_id),
            ("service", &f.service),
            ("level", &f.level),
            ("error", &f.error),
        ];
        let mut add = |key: &str, value: &dyn Fn() -> Value| {
            properties.insert_if_absent(key, value);
        };
        for (key, value) in strings {
            if let Some(v) = value {
                add(key, &|| Value::String(v.clone()));
            }
        }
        if let Some(d) = f.duration_ms.and_then(serde_json::Number::from_f64) {
            add("duration_ms", &|| Value::Number(d.clone()));
        }
        if let Some(m) = &f.message {
            add("message", &|| Value::String(m.clone()));
        }
        if let Some(ingested) = raw.ingestion_time_ms {
            add("cloudwatch_ingestion_time", &|| {
                Value::String(format_ms(ingested))
            });
        }
        OutEvent {
            trace_id: None,
            timestamp: format_ms(raw.timestamp_ms),
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
        trace_key: Option<String>,
        bracket_request_id: Option<String>,
        key_field: KeyField,
    ) {
        if let Some(r) = bracket_request_id {
            self.properties
                .insert_if_absent("request_id", || Value::String(r));
        }
        let Some(key) = trace_key else { return };
        self.properties
            .insert("trace_key".into(), Value::String(key.clone()));
        match key_field {
            KeyField::SessionId => self.session_id = Some(key.clone()),
            KeyField::TraceId => self.trace_id = Some(key.clone()),
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
            timestamp: format_ms(s.last_ms),
            event_type: Some("trace_summary".into()),
            agent_id: None,
            session_id: (key_field == KeyField::SessionId).then(|| key.clone()),
            trace_id: (key_field == KeyField::TraceId).then(|| key.clone()),
            properties: Properties::from(properties),
            source: Source {
                system: "cloudwatch",
                log_group: s.log_groups.first().cloned().unwrap_or_default(),
                log_stream: json::SUMMARY_STREAM.into(),
                log_id: format!("trace-summary:{key}:{}", s.revision),
                origin: Origin::default(),
            },
            timestamp_ms: s.last_ms,
            ingestion_time_ms: None,
            message: String::new(),
            fields: Fields::default(),
            trace_key: Some(key),
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
            Record::Summary(s) => format!("trace-summary:{}:{}", s.trace_key, s.revision),
        }
    }

    /// The log group the record is about, for messages (a summary: the
    /// first group of its trace).
    pub fn log_group(&self) -> &str {
        match self {
            Record::Event(e) => &e.source.log_group,
            Record::Summary(s) => s.log_groups.first().map_or("", String::as_str),
        }
    }

    /// The record as the JSON object VectaDB's batch API and the NDJSON
    /// output take (one shape for both).
    pub fn to_json(&self, key_field: KeyField) -> Vec<u8> {
        let hint = match self {
            // The properties are most of it: about the message again.
            Record::Event(e) => e.message.len() + 384,
            Record::Summary(_) => 1024,
        };
        let mut out = Vec::with_capacity(hint);
        self.write_json(&mut out, key_field);
        out
    }

    /// Appends [`Record::to_json`] to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>, key_field: KeyField) {
        match self {
            Record::Event(e) => json::write_event(out, e),
            Record::Summary(s) => json::write_summary(out, s, key_field),
        }
    }
}
