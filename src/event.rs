//! The two shapes an event takes: [`RawEvent`] as CloudWatch returned it, and
//! [`OutEvent`] as every output receives it (VectaDB's batch item; one NDJSON
//! line is the same object).

use serde::Serialize;
use serde_json::{Map, Value};

use crate::parse::Parsed;
use crate::time::{EpochMs, format_ms};

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
}

/// Where an event came from, in VectaDB's `source` shape.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Source {
    pub system: &'static str,
    pub log_group: String,
    pub log_stream: String,
    /// The CloudWatch eventId.
    pub log_id: String,
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
    pub properties: Map<String, Value>,
    pub source: Source,
    /// The CloudWatch timestamp in ms, for the checkpoint (not sent).
    #[serde(skip)]
    pub timestamp_ms: EpochMs,
}

impl OutEvent {
    /// Builds the delivered event. `group_agent_id` (from the log group's
    /// config) wins over an `agent_id` found in the message, as in VectaDB's agent.
    pub fn build(raw: RawEvent, parsed: Parsed, group_agent_id: Option<&str>) -> OutEvent {
        let mut properties = parsed.properties;
        // The canonical fields the rules extracted, beside the original data
        // (an original field of the same name wins).
        let f = &parsed.fields;
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
        for (key, value) in strings {
            if let Some(v) = value {
                properties
                    .entry(key)
                    .or_insert_with(|| Value::String(v.clone()));
            }
        }
        if let Some(d) = f.duration_ms.and_then(serde_json::Number::from_f64) {
            properties.entry("duration_ms").or_insert(Value::Number(d));
        }
        if let Some(m) = &f.message {
            properties
                .entry("message")
                .or_insert_with(|| Value::String(m.clone()));
        }
        if let Some(ingested) = raw.ingestion_time_ms {
            properties
                .entry("cloudwatch_ingestion_time")
                .or_insert_with(|| Value::String(format_ms(ingested)));
        }
        OutEvent {
            trace_id: None,
            timestamp: format_ms(raw.timestamp_ms),
            event_type: parsed.fields.event_type,
            agent_id: group_agent_id
                .map(str::to_string)
                .or(parsed.fields.agent_id),
            session_id: parsed.fields.session_id,
            properties,
            source: Source {
                system: "cloudwatch",
                log_group: raw.log_group,
                log_stream: raw.log_stream,
                log_id: raw.event_id,
            },
            timestamp_ms: raw.timestamp_ms,
        }
    }
}
