//! What a cwtap record becomes in OTLP: log events are `LogRecord`s, the
//! Lambda invocations of a closed trace's summary are `Span`s (docs/otlp.md
//! has the whole table).
//!
//! Each record is encoded once, with the generated `opentelemetry-proto`
//! messages, into its own bytes ([`Unit`]); a request body is then framed
//! from those bytes ([`Encoded::body`]), so that cutting a batch by size,
//! retrying it or halving it never encodes a record twice. The framing is the
//! protobuf encoding of `Export{Logs,Trace}ServiceRequest` itself: both
//! requests have the same shape (resource = 1, scope entries = 2; scope = 1,
//! records = 2), checked against the generated decoders in the tests.

use std::collections::HashMap;

use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, SeverityNumber};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{Span, span::SpanKind};
use prost::Message;
use serde_json::Value;

use crate::event::{OutEvent, Record};
use crate::time::EpochMs;
use crate::trace::{TraceSummary, service_from_group};

/// The instrumentation scope of everything cwtap exports.
pub const SCOPE_NAME: &str = "cwtap";

/// The OTLP signal a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Logs,
    Traces,
}

impl Signal {
    /// The path appended to the endpoint.
    pub fn path(self) -> &'static str {
        match self {
            Signal::Logs => "/v1/logs",
            Signal::Traces => "/v1/traces",
        }
    }

    /// The name in metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Logs => "logs",
            Signal::Traces => "traces",
        }
    }
}

/// One batch record's share of a request: its encoded log record, or the
/// spans of its summary, each with the resource it belongs to.
#[derive(Debug, Clone)]
pub struct Unit {
    /// The record's position in the batch.
    pub record: usize,
    pub items: Vec<Item>,
}

/// One encoded `LogRecord` or `Span`.
#[derive(Debug, Clone)]
pub struct Item {
    /// Index into [`Encoded`]'s resources.
    pub resource: usize,
    pub bytes: Vec<u8>,
}

/// The part of a batch that goes to one signal, encoded once.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub signal: Signal,
    /// The distinct resources, each an encoded `Resource`.
    resources: Vec<Vec<u8>>,
    /// The encoded `InstrumentationScope` (the same for every record).
    scope: Vec<u8>,
    pub units: Vec<Unit>,
}

/// A whole batch, encoded.
#[derive(Debug, Clone)]
pub struct EncodedBatch {
    pub logs: Encoded,
    pub traces: Encoded,
    /// Records with nothing to export (summaries without Lambda
    /// invocations, or every summary when spans are off): done as they are.
    pub nothing_to_send: Vec<usize>,
}

/// Encodes every record of `batch`: events as log records, summaries as
/// spans when `spans` is on.
pub fn encode_batch(batch: &[Record], spans: bool) -> EncodedBatch {
    let mut logs = Interner::new(Signal::Logs);
    let mut traces = Interner::new(Signal::Traces);
    let mut nothing_to_send = Vec::new();
    for (i, record) in batch.iter().enumerate() {
        match record {
            Record::Event(e) => {
                let resource = logs.intern(LogResource::of(e));
                let bytes = log_record(e).encode_to_vec();
                logs.units.push(Unit {
                    record: i,
                    items: vec![Item { resource, bytes }],
                });
            }
            Record::Summary(s) => {
                let found = if spans {
                    invocation_spans(s)
                } else {
                    Vec::new()
                };
                if found.is_empty() {
                    nothing_to_send.push(i);
                    continue;
                }
                let items = found
                    .into_iter()
                    .map(|(group, span)| Item {
                        resource: traces.intern(LogResource::lambda(group, s)),
                        bytes: span.encode_to_vec(),
                    })
                    .collect();
                traces.units.push(Unit { record: i, items });
            }
        }
    }
    EncodedBatch {
        logs: logs.finish(),
        traces: traces.finish(),
        nothing_to_send,
    }
}

/// Collects units and their distinct resources.
struct Interner<'a> {
    signal: Signal,
    index: HashMap<LogResource<'a>, usize>,
    resources: Vec<Vec<u8>>,
    units: Vec<Unit>,
}

impl<'a> Interner<'a> {
    fn new(signal: Signal) -> Self {
        Interner {
            signal,
            index: HashMap::new(),
            resources: Vec::new(),
            units: Vec::new(),
        }
    }

    fn intern(&mut self, key: LogResource<'a>) -> usize {
        if let Some(&i) = self.index.get(&key) {
            return i;
        }
        let i = self.resources.len();
        self.resources.push(key.resource().encode_to_vec());
        self.index.insert(key, i);
        i
    }

    fn finish(self) -> Encoded {
        Encoded {
            signal: self.signal,
            resources: self.resources,
            scope: scope().encode_to_vec(),
            units: self.units,
        }
    }
}

impl Encoded {
    /// Bytes `units[u]` adds to a request body, besides its resources.
    pub fn unit_bytes(&self, u: usize) -> usize {
        self.units[u]
            .items
            .iter()
            .map(|item| field_len(item.bytes.len()))
            .sum()
    }

    /// Bytes a resource's entry costs in a request body besides its records
    /// (its `Resource`, the scope, the framing).
    pub fn resource_overhead(&self, resource: usize) -> usize {
        field_len(self.resources[resource].len()) + field_len(self.scope.len()) + 2 * 11
    }

    /// The protobuf `Export{Logs,Trace}ServiceRequest` carrying `units`
    /// (indices into [`Encoded::units`]): one entry per resource, in the
    /// order resources first appear, each with one scope entry (`cwtap`)
    /// holding its records in batch order.
    pub fn body(&self, units: &[usize]) -> Vec<u8> {
        let mut order: Vec<usize> = Vec::new();
        let mut by_resource: HashMap<usize, Vec<&[u8]>> = HashMap::new();
        for &u in units {
            for item in &self.units[u].items {
                by_resource
                    .entry(item.resource)
                    .or_insert_with(|| {
                        order.push(item.resource);
                        Vec::new()
                    })
                    .push(&item.bytes);
            }
        }
        let total: usize = order
            .iter()
            .map(|r| {
                let records: usize = by_resource[r].iter().map(|b| field_len(b.len())).sum();
                self.resource_overhead(*r) + records
            })
            .sum();
        let mut out = Vec::with_capacity(total);
        for r in order {
            let records = &by_resource[&r];
            let scoped_len = field_len(self.scope.len())
                + records.iter().map(|b| field_len(b.len())).sum::<usize>();
            let resource = &self.resources[r];
            let entry_len = field_len(resource.len()) + field_len(scoped_len);
            // Export*ServiceRequest.resource_{logs,spans} = 1
            put_field(&mut out, 1, entry_len);
            // Resource{Logs,Spans}.resource = 1
            put_field(&mut out, 1, resource.len());
            out.extend_from_slice(resource);
            // Resource{Logs,Spans}.scope_{logs,spans} = 2
            put_field(&mut out, 2, scoped_len);
            // Scope{Logs,Spans}.scope = 1
            put_field(&mut out, 1, self.scope.len());
            out.extend_from_slice(&self.scope);
            for record in records {
                // Scope{Logs,Spans}.{log_records,spans} = 2
                put_field(&mut out, 2, record.len());
                out.extend_from_slice(record);
            }
        }
        out
    }

    /// The body carrying every unit.
    pub fn body_all(&self) -> Vec<u8> {
        let all: Vec<usize> = (0..self.units.len()).collect();
        self.body(&all)
    }
}

/// Length of a length-delimited field of `len` bytes with a one-byte key
/// (field numbers 1 to 15).
fn field_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// Writes the key of length-delimited field `field` (1 to 15) and `len`.
fn put_field(out: &mut Vec<u8>, field: u8, len: usize) {
    out.push((field << 3) | 2);
    let mut v = len as u64;
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: SCOPE_NAME.to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        ..Default::default()
    }
}

// ---------------------------------------------------------------- resources

/// What tells one resource from another: where the records were logged.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct LogResource<'a> {
    log_group: Option<&'a str>,
    log_stream: Option<&'a str>,
    service: Option<&'a str>,
    account_id: Option<&'a str>,
    region: Option<&'a str>,
}

impl<'a> LogResource<'a> {
    fn of(e: &'a OutEvent) -> Self {
        LogResource {
            log_group: Some(e.source.log_group.as_str()),
            log_stream: Some(e.source.log_stream.as_str()),
            service: non_empty(e.fields.service.as_deref())
                .or_else(|| service_from_group(&e.source.log_group)),
            account_id: e.source.origin.account_id.as_deref(),
            region: e.source.origin.region.as_deref(),
        }
    }

    /// The resource of an invocation's span: its function's log group (a
    /// summary knows no stream, account or Region).
    fn lambda(group: Option<&'a str>, s: &'a TraceSummary) -> Self {
        LogResource {
            log_group: group,
            log_stream: None,
            service: group
                .and_then(service_from_group)
                .or_else(|| s.services.first().map(|name| &**name)),
            account_id: None,
            region: None,
        }
    }

    /// The semantic conventions' attributes: cloud.*, aws.log.*, service.*,
    /// faas.* (for Lambda groups).
    fn resource(&self) -> Resource {
        let mut attributes = vec![kv("cloud.provider", string("aws"))];
        let function = self.log_group.and_then(service_from_group);
        if function.is_some() {
            attributes.push(kv("cloud.platform", string("aws_lambda")));
        }
        if let Some(region) = self.region {
            attributes.push(kv("cloud.region", string(region)));
        }
        if let Some(account) = self.account_id {
            attributes.push(kv("cloud.account.id", string(account)));
        }
        if let Some(group) = self.log_group {
            attributes.push(kv("aws.log.group.names", strings(&[group])));
        }
        if let Some(stream) = self.log_stream {
            attributes.push(kv("aws.log.stream.names", strings(&[stream])));
        }
        if let Some(service) = self.service {
            attributes.push(kv("service.name", string(service)));
        }
        if let Some(function) = function {
            attributes.push(kv("faas.name", string(function)));
            // On Lambda the execution environment is its log stream.
            if let Some(stream) = self.log_stream {
                attributes.push(kv("faas.instance", string(stream)));
            }
        }
        Resource {
            attributes,
            ..Default::default()
        }
    }
}

fn non_empty(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.trim().is_empty())
}

// ---------------------------------------------------------------- log records

/// One delivered event as an OTLP log record.
pub fn log_record(e: &OutEvent) -> LogRecord {
    let (severity_number, severity_text) = severity(e.fields.level.as_deref());
    let trace_id = e.fields.trace_id.as_deref().and_then(trace_id_bytes);
    // A span id means nothing without its trace.
    let span_id = trace_id
        .and(e.fields.span_id.as_deref())
        .and_then(span_id_bytes);
    LogRecord {
        time_unix_nano: ms_to_ns(e.timestamp_ms),
        observed_time_unix_nano: ms_to_ns(e.ingestion_time_ms.unwrap_or(e.timestamp_ms)),
        severity_number: severity_number as i32,
        severity_text,
        body: Some(string(&e.message)),
        attributes: log_attributes(e),
        trace_id: trace_id.map(|t| t.to_vec()).unwrap_or_default(),
        span_id: span_id.map(|s| s.to_vec()).unwrap_or_default(),
        ..Default::default()
    }
}

/// The event's properties (what the rules parsed and the correlation keys
/// grouping added), without the copy of the body a message without a rule
/// carries; then the CloudWatch event id and the top-level fields cwtap sets.
fn log_attributes(e: &OutEvent) -> Vec<KeyValue> {
    let mut attributes = Vec::with_capacity(e.properties.len() + 3);
    for (key, value) in e.properties.as_map() {
        if key == "message" && value.as_str() == Some(e.message.as_str()) {
            continue;
        }
        attributes.push(kv(key, any_value(value)));
    }
    // Unique within the group: a backend may drop a record it already has.
    attributes.push(kv("log.record.uid", string(&e.source.log_id)));
    if let Some(t) = &e.event_type {
        attributes.push(kv("cwtap.event_type", string(t)));
    }
    if let Some(a) = &e.agent_id {
        attributes.push(kv("cwtap.agent_id", string(a)));
    }
    attributes
}

/// The log data model's severity for a canonical level: the first number of
/// its range, and its short name. A level cwtap does not know keeps its text
/// with an unspecified number.
pub fn severity(level: Option<&str>) -> (SeverityNumber, String) {
    let Some(level) = level.map(str::trim).filter(|l| !l.is_empty()) else {
        return (SeverityNumber::Unspecified, String::new());
    };
    let number = match level.to_ascii_lowercase().as_str() {
        "trace" => SeverityNumber::Trace,
        "debug" => SeverityNumber::Debug,
        "info" => SeverityNumber::Info,
        "warn" => SeverityNumber::Warn,
        "error" => SeverityNumber::Error,
        "fatal" => SeverityNumber::Fatal,
        _ => return (SeverityNumber::Unspecified, level.to_string()),
    };
    (number, level.to_ascii_uppercase())
}

/// A JSON value as an `AnyValue`, as the specification maps arbitrary data:
/// integers that fit i64 as ints (larger ones as decimal strings), other
/// numbers as doubles, objects as kvlists, arrays as arrays, null as an empty
/// value.
pub fn any_value(v: &Value) -> AnyValue {
    use any_value::Value as V;
    let value = match v {
        Value::Null => None,
        Value::Bool(b) => Some(V::BoolValue(*b)),
        Value::Number(n) => Some(match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => V::IntValue(i),
            (None, Some(u), _) => V::StringValue(u.to_string()),
            (None, None, Some(f)) => V::DoubleValue(f),
            (None, None, None) => V::StringValue(n.to_string()),
        }),
        Value::String(s) => Some(V::StringValue(s.clone())),
        Value::Array(items) => Some(V::ArrayValue(ArrayValue {
            values: items.iter().map(any_value).collect(),
        })),
        Value::Object(map) => Some(V::KvlistValue(KeyValueList {
            values: map.iter().map(|(k, v)| kv(k, any_value(v))).collect(),
        })),
    };
    AnyValue { value }
}

// ---------------------------------------------------------------- ids

/// A trace id as OTLP's 16 bytes: a W3C id (32 hex) as it is, an X-Ray root
/// (`1-5759e988-bd862e3fe1be46a994272793`) as its time and random parts
/// joined (`5759e988bd862e3fe1be46a994272793`), the form the X-Ray and
/// OpenTelemetry tools share. Anything else, and the invalid all-zero id,
/// is `None`.
pub fn trace_id_bytes(id: &str) -> Option<[u8; 16]> {
    let id = id.trim();
    let b = id.as_bytes();
    let mut hex = [0u8; 32];
    if b.len() == 32 {
        hex.copy_from_slice(b);
    } else if b.len() == 35 && b.starts_with(b"1-") && b[10] == b'-' {
        hex[..8].copy_from_slice(&b[2..10]);
        hex[8..].copy_from_slice(&b[11..]);
    } else {
        return None;
    }
    let mut out = [0u8; 16];
    decode_hex(&hex, &mut out)?;
    (out != [0; 16]).then_some(out)
}

/// A span id (16 hex, as W3C and X-Ray segment ids are) as OTLP's 8 bytes.
pub fn span_id_bytes(id: &str) -> Option<[u8; 8]> {
    let b = id.trim().as_bytes();
    if b.len() != 16 {
        return None;
    }
    let mut out = [0u8; 8];
    decode_hex(b, &mut out)?;
    (out != [0; 8]).then_some(out)
}

fn decode_hex(hex: &[u8], out: &mut [u8]) -> Option<()> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *o = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(())
}

/// FNV-1a, 128 bits: stable across builds and hosts (unlike the std
/// hashers), so the same trace key gives the same trace id in every run.
fn fnv1a_128(data: &[u8]) -> u128 {
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    for &b in data {
        h ^= b as u128;
        h = h.wrapping_mul(0x0000000001000000000000000000013b);
    }
    h
}

/// A trace summary's trace id: the W3C or X-Ray id its key or one of its
/// `t:` aliases carries (so spans join the logs and the X-Ray trace), else
/// an id derived from the trace key.
pub fn summary_trace_id(s: &TraceSummary) -> [u8; 16] {
    std::iter::once(s.trace_key.as_str())
        .chain(s.aliases.iter().map(|alias| &**alias))
        .filter_map(|alias| alias.strip_prefix("t:"))
        .find_map(trace_id_bytes)
        .unwrap_or_else(|| derived_id(&s.trace_key))
}

/// A non-zero 16-byte id derived from `key`.
fn derived_id(key: &str) -> [u8; 16] {
    let h = fnv1a_128(format!("cwtap trace {key}").as_bytes()).max(1);
    h.to_be_bytes()
}

/// The span id of the invocation `request_id`: derived from it, so a later
/// revision of the same trace's summary gives its spans the same ids.
pub fn invocation_span_id(request_id: &str) -> [u8; 8] {
    let h = fnv1a_128(format!("cwtap invocation {request_id}").as_bytes());
    let folded = ((h >> 64) as u64 ^ h as u64).max(1);
    folded.to_be_bytes()
}

// ---------------------------------------------------------------- spans

/// One span per Lambda invocation of the summary, with the log group it ran
/// in; a summary without invocations has none.
pub fn invocation_spans(s: &TraceSummary) -> Vec<(Option<&str>, Span)> {
    let trace_id = summary_trace_id(s);
    s.lambda
        .iter()
        .map(|(request_id, inv)| {
            let group = inv.log_group.as_deref();
            let start_ms = inv
                .start
                .as_deref()
                .and_then(parse_rfc3339_ms)
                .unwrap_or(s.first_ms);
            let start = ms_to_ns(start_ms);
            let end = match inv.duration_ms.filter(|d| d.is_finite() && *d >= 0.0) {
                Some(d) => start.saturating_add((d * 1e6).round() as u64),
                // No REPORT: it ran at least until the trace's last event.
                None => ms_to_ns(start_ms.max(s.last_ms)),
            };
            let mut attributes = vec![kv("faas.invocation_id", string(request_id))];
            if let Some(cold) = inv.cold_start {
                attributes.push(kv("faas.coldstart", bool_value(cold)));
            }
            let doubles = [
                ("cwtap.lambda.init_duration_ms", inv.init_duration_ms),
                ("cwtap.lambda.billed_duration_ms", inv.billed_duration_ms),
            ];
            for (key, value) in doubles {
                if let Some(v) = value {
                    attributes.push(kv(key, double(v)));
                }
            }
            let megabytes = [
                ("cwtap.lambda.memory_size_mb", inv.memory_size_mb),
                ("cwtap.lambda.max_memory_used_mb", inv.max_memory_used_mb),
            ];
            for (key, value) in megabytes {
                if let Some(v) = value {
                    attributes.push(kv(key, int(v.round() as i64)));
                }
            }
            if let Some(mb) = inv.memory_size_mb {
                // The semantic conventions' unit: bytes.
                attributes.push(kv("faas.max_memory", int((mb * 1_048_576.0) as i64)));
            }
            attributes.push(kv("cwtap.trace_key", string(&s.trace_key)));
            let name = group
                .and_then(service_from_group)
                .or(group)
                .unwrap_or("lambda invocation");
            let span = Span {
                trace_id: trace_id.to_vec(),
                span_id: invocation_span_id(request_id).to_vec(),
                name: name.to_string(),
                kind: SpanKind::Server as i32,
                start_time_unix_nano: start,
                end_time_unix_nano: end.max(start),
                attributes,
                ..Default::default()
            };
            (group, span)
        })
        .collect()
}

fn parse_rfc3339_ms(text: &str) -> Option<EpochMs> {
    let t = humantime::parse_rfc3339_weak(text.trim()).ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    Some(d.as_millis() as EpochMs)
}

/// Epoch milliseconds as epoch nanoseconds (0 before 1970, which OTLP reads
/// as unknown).
pub fn ms_to_ns(ms: EpochMs) -> u64 {
    (ms.max(0) as u64).saturating_mul(1_000_000)
}

// ---------------------------------------------------------------- values

fn kv(key: &str, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(value),
        ..Default::default()
    }
}

fn string(s: &str) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(s.to_string())),
    }
}

fn strings(items: &[&str]) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::ArrayValue(ArrayValue {
            values: items.iter().map(|s| string(s)).collect(),
        })),
    }
}

fn bool_value(b: bool) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::BoolValue(b)),
    }
}

fn int(i: i64) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::IntValue(i)),
    }
}

fn double(f: f64) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::DoubleValue(f)),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
    use serde_json::json;

    use super::*;
    use crate::event::{Origin, RawEvent};
    use crate::parse::RuleSet;
    use crate::trace::{Invocation, KeyField};

    fn event(group: &str, stream: &str, ts: i64, message: &str) -> OutEvent {
        let rules = RuleSet::builtin("json").expect("built-in set");
        let raw = RawEvent {
            log_group: group.into(),
            log_stream: stream.into(),
            event_id: format!("{ts:056}"),
            timestamp_ms: ts,
            ingestion_time_ms: Some(ts + 250),
            message: message.into(),
            origin: Origin {
                account: None,
                account_id: Some(Arc::from("123456789012")),
                region: Some(Arc::from("eu-west-1")),
            },
        };
        OutEvent::build(raw, rules.parse(message), None)
    }

    fn attr<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
        attributes
            .iter()
            .find(|a| a.key == key)
            .and_then(|a| a.value.as_ref())
            .and_then(|v| v.value.as_ref())
    }

    fn sv(v: &str) -> any_value::Value {
        any_value::Value::StringValue(v.into())
    }

    #[test]
    fn a_log_record_keeps_time_body_severity_and_ids_exactly() {
        let line = r#"{"level":"warning","msg":"card declined","trace_id":"0af7651916cd43dd8448eb211c80319c","span_id":"b7ad6b7169203331","amount":12.5,"items":3,"ok":false,"cart":{"id":"c-1","skus":["a","b"]}}"#;
        let mut e = event("/app/api", "s-1", 1_795_161_600_123, line);
        e.set_trace(Some("t:x".into()), None, KeyField::SessionId);
        let r = log_record(&e);
        assert_eq!(r.time_unix_nano, 1_795_161_600_123_000_000);
        assert_eq!(r.observed_time_unix_nano, 1_795_161_600_373_000_000);
        assert_eq!(r.severity_number, SeverityNumber::Warn as i32);
        assert_eq!(r.severity_text, "WARN");
        assert_eq!(
            r.body,
            Some(string(line)),
            "the body is the message, exactly"
        );
        assert_eq!(
            r.trace_id,
            [
                0x0a, 0xf7, 0x65, 0x19, 0x16, 0xcd, 0x43, 0xdd, 0x84, 0x48, 0xeb, 0x21, 0x1c, 0x80,
                0x31, 0x9c
            ]
        );
        assert_eq!(r.span_id, [0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31]);
        let a = &r.attributes;
        assert_eq!(
            attr(a, "amount"),
            Some(&any_value::Value::DoubleValue(12.5))
        );
        assert_eq!(attr(a, "items"), Some(&any_value::Value::IntValue(3)));
        assert_eq!(attr(a, "ok"), Some(&any_value::Value::BoolValue(false)));
        let Some(any_value::Value::KvlistValue(cart)) = attr(a, "cart") else {
            panic!("a nested object is a kvlist: {a:?}");
        };
        assert_eq!(attr(&cart.values, "id"), Some(&sv("c-1")));
        assert!(
            matches!(attr(&cart.values, "skus"), Some(any_value::Value::ArrayValue(v)) if v.values.len() == 2)
        );
        assert_eq!(attr(a, "trace_key"), Some(&sv("t:x")));
        assert_eq!(attr(a, "log.record.uid"), Some(&sv(&e.source.log_id)));
    }

    #[test]
    fn a_line_no_rule_parsed_has_its_body_once_and_no_severity() {
        let e = event("/app/api", "s-1", 5, "plain text line");
        let r = log_record(&e);
        assert_eq!(r.body, Some(string("plain text line")));
        assert_eq!(attr(&r.attributes, "message"), None, "not repeated");
        assert_eq!(
            attr(&r.attributes, "raw_log"),
            Some(&any_value::Value::BoolValue(true))
        );
        assert_eq!(r.severity_number, 0);
        assert_eq!(r.severity_text, "");
        assert!(r.trace_id.is_empty() && r.span_id.is_empty());
    }

    #[test]
    fn every_canonical_level_has_the_first_number_of_its_range() {
        let expected = [
            ("trace", 1, "TRACE"),
            ("debug", 5, "DEBUG"),
            ("info", 9, "INFO"),
            ("warn", 13, "WARN"),
            ("error", 17, "ERROR"),
            ("fatal", 21, "FATAL"),
            ("audit", 0, "audit"),
        ];
        for (level, number, text) in expected {
            let (n, t) = severity(Some(level));
            assert_eq!((n as i32, t.as_str()), (number, text), "{level}");
        }
        assert_eq!(severity(None).0, SeverityNumber::Unspecified);
    }

    #[test]
    fn x_ray_ids_become_the_32_hex_trace_id_and_other_ids_are_left_out() {
        let xray = trace_id_bytes("1-5759e988-bd862e3fe1be46a994272793").expect("X-Ray id");
        let w3c = trace_id_bytes("5759e988bd862e3fe1be46a994272793").expect("W3C id");
        assert_eq!(xray, w3c);
        assert_eq!(
            trace_id_bytes("5759E988BD862E3FE1BE46A994272793"),
            Some(w3c)
        );
        for bad in [
            "",
            "order-123",
            "00000000000000000000000000000000",
            "1-5759e988-bd862e3fe1be46a99427279z",
            "2-5759e988-bd862e3fe1be46a994272793",
        ] {
            assert_eq!(trace_id_bytes(bad), None, "{bad:?}");
        }
        assert_eq!(span_id_bytes("53995c3f42cd8ad8").map(|b| b[0]), Some(0x53));
        assert_eq!(span_id_bytes("s1"), None);
        assert_eq!(span_id_bytes("0000000000000000"), None);

        let line = r#"{"level":"info","trace_id":"1-5759e988-bd862e3fe1be46a994272793","span_id":"s0","message":"x"}"#;
        let r = log_record(&event("/a", "s", 1, line));
        assert_eq!(r.trace_id, w3c);
        assert!(
            r.span_id.is_empty(),
            "a span id that is not 16 hex is left out"
        );
        let text = r#"{"trace_id":"order-42","message":"x"}"#;
        let r = log_record(&event("/a", "s", 1, text));
        assert!(r.trace_id.is_empty());
        assert_eq!(attr(&r.attributes, "trace_id"), Some(&sv("order-42")));
    }

    #[test]
    fn big_and_null_json_values_follow_the_arbitrary_data_mapping() {
        assert_eq!(
            any_value(&json!(u64::MAX)).value,
            Some(sv("18446744073709551615"))
        );
        assert_eq!(any_value(&json!(null)).value, None);
        assert_eq!(
            any_value(&json!(-3)).value,
            Some(any_value::Value::IntValue(-3))
        );
    }

    fn summary(key: &str, aliases: &[&str], lambda: BTreeMap<String, Invocation>) -> TraceSummary {
        TraceSummary {
            trace_key: key.into(),
            revision: 1,
            aliases: aliases.iter().map(|&a| a.into()).collect(),
            root_span: None,
            spans: Vec::new(),
            services: vec!["checkout".into()],
            log_groups: vec!["/aws/lambda/checkout".into()],
            first_ms: 1_000,
            last_ms: 9_000,
            duration_ms: 8_000,
            event_count: 4,
            error_count: 0,
            lambda,
            closed: true,
        }
    }

    fn invocation(start: Option<&str>, duration_ms: Option<f64>) -> Invocation {
        Invocation {
            log_group: Some("/aws/lambda/checkout".into()),
            start: start.map(str::to_string),
            duration_ms,
            billed_duration_ms: Some(42.0),
            memory_size_mb: Some(512.0),
            max_memory_used_mb: Some(90.0),
            init_duration_ms: Some(230.5),
            cold_start: Some(true),
        }
    }

    #[test]
    fn a_lambda_invocation_is_a_span_of_its_duration_in_the_traces_x_ray_trace() {
        let s = summary(
            "r:req-1",
            &["r:req-1", "t:1-5759e988-bd862e3fe1be46a994272793"],
            BTreeMap::from([(
                "req-1".to_string(),
                invocation(Some("1970-01-01T00:00:02.000Z"), Some(41.2)),
            )]),
        );
        let spans = invocation_spans(&s);
        assert_eq!(spans.len(), 1);
        let (group, span) = &spans[0];
        assert_eq!(*group, Some("/aws/lambda/checkout"));
        assert_eq!(
            span.trace_id,
            trace_id_bytes("5759e988bd862e3fe1be46a994272793").unwrap()
        );
        assert_eq!(span.span_id, invocation_span_id("req-1"));
        assert_eq!(span.name, "checkout");
        assert_eq!(span.start_time_unix_nano, 2_000_000_000);
        assert_eq!(span.end_time_unix_nano, 2_041_200_000);
        let a = &span.attributes;
        assert_eq!(attr(a, "faas.invocation_id"), Some(&sv("req-1")));
        assert_eq!(
            attr(a, "faas.coldstart"),
            Some(&any_value::Value::BoolValue(true))
        );
        assert_eq!(
            attr(a, "cwtap.lambda.init_duration_ms"),
            Some(&any_value::Value::DoubleValue(230.5))
        );
        assert_eq!(
            attr(a, "cwtap.lambda.memory_size_mb"),
            Some(&any_value::Value::IntValue(512))
        );
        assert_eq!(
            attr(a, "faas.max_memory"),
            Some(&any_value::Value::IntValue(512 * 1_048_576))
        );
    }

    #[test]
    fn without_a_trace_id_a_trace_gets_a_stable_derived_one_and_no_start_means_the_first_event() {
        let lambda = BTreeMap::from([("req-2".to_string(), invocation(None, None))]);
        let (first, again) = (
            summary("r:req-2", &["r:req-2"], lambda.clone()),
            summary("r:req-2", &["r:req-2"], lambda),
        );
        let (a, b) = (invocation_spans(&first), invocation_spans(&again));
        assert_eq!(a[0].1.trace_id, b[0].1.trace_id, "deterministic");
        assert_eq!(a[0].1.trace_id.len(), 16);
        assert_ne!(a[0].1.trace_id, [0u8; 16]);
        assert_ne!(
            summary_trace_id(&summary("r:other", &[], BTreeMap::new())).to_vec(),
            a[0].1.trace_id
        );
        assert_eq!(a[0].1.start_time_unix_nano, 1_000_000_000);
        assert_eq!(
            a[0].1.end_time_unix_nano, 9_000_000_000,
            "no REPORT: until the last event"
        );
        assert!(invocation_spans(&summary("s:x", &[], BTreeMap::new())).is_empty());
    }

    fn records(n: usize) -> Vec<Record> {
        (0..n)
            .map(|i| {
                let group = if i % 2 == 0 {
                    "/aws/lambda/checkout"
                } else {
                    "/app/api"
                };
                let line = format!(r#"{{"level":"info","message":"m{i}"}}"#);
                Record::Event(event(group, "s", i as i64, &line))
            })
            .collect()
    }

    #[test]
    fn a_framed_body_decodes_as_the_generated_request_grouped_by_resource() {
        let mut batch = records(5);
        let lambda = BTreeMap::from([
            ("req-1".to_string(), invocation(None, Some(5.0))),
            ("req-2".to_string(), invocation(None, Some(6.0))),
        ]);
        batch.push(Record::Summary(Box::new(summary("r:req-1", &[], lambda))));
        batch.push(Record::Summary(Box::new(summary(
            "s:none",
            &[],
            BTreeMap::new(),
        ))));
        let encoded = encode_batch(&batch, true);
        assert_eq!(encoded.nothing_to_send, vec![6]);

        let body = encoded.logs.body_all();
        let request = ExportLogsServiceRequest::decode(body.as_slice()).expect("decodes");
        assert_eq!(request.resource_logs.len(), 2, "one entry per resource");
        let ResourceLogs {
            resource,
            scope_logs,
            ..
        } = &request.resource_logs[0];
        let resource = resource.as_ref().expect("resource");
        let ra = &resource.attributes;
        assert_eq!(attr(ra, "cloud.provider"), Some(&sv("aws")));
        assert_eq!(attr(ra, "cloud.region"), Some(&sv("eu-west-1")));
        assert_eq!(attr(ra, "cloud.account.id"), Some(&sv("123456789012")));
        assert_eq!(attr(ra, "service.name"), Some(&sv("checkout")));
        assert_eq!(attr(ra, "faas.name"), Some(&sv("checkout")));
        assert!(
            matches!(attr(ra, "aws.log.group.names"), Some(any_value::Value::ArrayValue(v)) if v.values == vec![string("/aws/lambda/checkout")])
        );
        let ScopeLogs {
            scope, log_records, ..
        } = &scope_logs[0];
        assert_eq!(scope.as_ref().map(|s| s.name.as_str()), Some("cwtap"));
        let bodies: Vec<_> = log_records.iter().map(|r| r.body.clone()).collect();
        assert_eq!(
            bodies,
            ["m0", "m2", "m4"]
                .iter()
                .map(|m| Some(string(&format!(r#"{{"level":"info","message":"{m}"}}"#))))
                .collect::<Vec<_>>()
        );
        assert_eq!(request.resource_logs[1].scope_logs[0].log_records.len(), 2);
        // The framing is exactly what the generated encoder writes.
        assert_eq!(request.encode_to_vec(), body);
        let overhead: usize = (0..2).map(|r| encoded.logs.resource_overhead(r)).sum();
        let records: usize = (0..5).map(|u| encoded.logs.unit_bytes(u)).sum();
        assert!(
            body.len() <= overhead + records,
            "the size estimate bounds the body"
        );

        let spans = ExportTraceServiceRequest::decode(encoded.traces.body_all().as_slice())
            .expect("decodes");
        assert_eq!(spans.resource_spans.len(), 1);
        assert_eq!(spans.resource_spans[0].scope_spans[0].spans.len(), 2);
        assert_eq!(encoded.traces.units[0].record, 5);

        let subset = ExportLogsServiceRequest::decode(encoded.logs.body(&[1, 3]).as_slice())
            .expect("decodes");
        assert_eq!(subset.resource_logs.len(), 1);
        assert_eq!(subset.resource_logs[0].scope_logs[0].log_records.len(), 2);
        assert!(encoded.logs.body(&[]).is_empty(), "an empty request");
    }

    #[test]
    fn summaries_send_nothing_when_spans_are_off() {
        let lambda = BTreeMap::from([("req-1".to_string(), invocation(None, Some(5.0)))]);
        let batch = vec![Record::Summary(Box::new(summary("r:req-1", &[], lambda)))];
        let encoded = encode_batch(&batch, false);
        assert!(encoded.traces.units.is_empty());
        assert_eq!(encoded.nothing_to_send, vec![0]);
    }

    #[test]
    fn long_fields_are_framed_with_multi_byte_lengths() {
        let long = "x".repeat(70_000);
        let batch = vec![Record::Event(event("/a", "s", 1, &long))];
        let encoded = encode_batch(&batch, true);
        let request =
            ExportLogsServiceRequest::decode(encoded.logs.body_all().as_slice()).expect("decodes");
        assert_eq!(
            request.resource_logs[0].scope_logs[0].log_records[0].body,
            Some(string(&long))
        );
    }
}
