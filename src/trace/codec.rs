//! How a [`Trace`] is stored in the state file: a protobuf message.
//!
//! A checkpoint writes every trace its events touched, so this encoding is
//! on the hot path: protobuf needs no escaping, holds numbers as varints
//! (the benchmark's five-event traces take 424 bytes against 687 as JSON)
//! and lets a later version add fields without a migration. [`encode`]
//! writes the message straight from the working set (no copy of its
//! strings); [`decode`] reads it through the
//! `prost` types below, which are also the schema:
//!
//! ```text
//! message Trace {
//!   int64 first_ts = 1;  int64 last_ts = 2;  uint64 event_count = 3;  uint64 error_count = 4;
//!   repeated string services = 5;  repeated string log_groups = 6;
//!   repeated string open_requests = 7;  repeated Invocation lambda = 8;
//!   repeated Span spans = 9;  uint64 spans_dropped = 10;  repeated string aliases = 11;
//!   int64 last_seen_ms = 12;  bool closed = 13;  int64 revision = 14;  bool summary_sent = 15;
//! }
//! message Invocation {
//!   string request_id = 1;  optional string log_group = 2;  optional string start = 3;
//!   optional double duration_ms = 4;  optional double billed_duration_ms = 5;
//!   optional double memory_size_mb = 6;  optional double max_memory_used_mb = 7;
//!   optional double init_duration_ms = 8;  optional bool cold_start = 9;
//! }
//! message Span {
//!   string span_id = 1;  optional string parent_span_id = 2;  optional string service = 3;
//!   int64 first_ts = 4;
//! }
//! ```
//!
//! A stored row is [`PROTOBUF`] followed by the message. Rows written by
//! earlier versions are JSON (they start with `{`) and are still read.

use std::sync::Arc;

use prost::Message;

use super::{Invocation, Name, SpanRow, Trace};

/// The first byte of a protobuf row.
pub const PROTOBUF: u8 = 1;

/// Appends `t` as a stored row (marker byte and message) to `out`.
pub fn encode(t: &Trace, out: &mut Vec<u8>) {
    out.push(PROTOBUF);
    let w = &mut Writer(out);
    w.int(1, t.first_ts as u64);
    w.int(2, t.last_ts as u64);
    w.int(3, t.event_count);
    w.int(4, t.error_count);
    for s in &t.services {
        w.str(5, s);
    }
    for g in &t.log_groups {
        w.str(6, g);
    }
    for r in &t.open_requests {
        w.str(7, r);
    }
    for (request, i) in &t.lambda {
        w.message(8, invocation_len(request, i), |w| {
            write_invocation(w, request, i)
        });
    }
    for s in &t.spans {
        w.message(9, span_len(s), |w| write_span(w, s));
    }
    w.int(10, t.spans_dropped);
    for a in &t.aliases {
        w.str(11, a);
    }
    w.int(12, t.last_seen_ms as u64);
    w.int(13, u64::from(t.closed));
    w.int(14, t.revision as u64);
    w.int(15, u64::from(t.summary_sent));
}

/// Reads a stored row: protobuf, or JSON from an earlier version.
pub fn decode(row: &[u8]) -> Result<Trace, String> {
    match row.split_first() {
        Some((&PROTOBUF, message)) => TraceMsg::decode(message)
            .map(Trace::from)
            .map_err(|e| e.to_string()),
        Some((b'{', _)) => serde_json::from_slice(row).map_err(|e| e.to_string()),
        Some((other, _)) => Err(format!("unknown trace row format {other:#04x}")),
        None => Err("empty trace row".into()),
    }
}

fn write_invocation(w: &mut Writer<'_>, request: &str, i: &Invocation) {
    w.str(1, request);
    w.opt_str(2, i.log_group.as_deref());
    w.opt_str(3, i.start.as_deref());
    w.opt_f64(4, i.duration_ms);
    w.opt_f64(5, i.billed_duration_ms);
    w.opt_f64(6, i.memory_size_mb);
    w.opt_f64(7, i.max_memory_used_mb);
    w.opt_f64(8, i.init_duration_ms);
    if let Some(cold) = i.cold_start {
        w.key(9, VARINT);
        w.varint(u64::from(cold));
    }
}

fn invocation_len(request: &str, i: &Invocation) -> usize {
    str_len(1, request)
        + opt_str_len(2, i.log_group.as_deref())
        + opt_str_len(3, i.start.as_deref())
        + [
            i.duration_ms,
            i.billed_duration_ms,
            i.memory_size_mb,
            i.max_memory_used_mb,
            i.init_duration_ms,
        ]
        .iter()
        .filter(|v| v.is_some())
        .count()
            * 9
        + if i.cold_start.is_some() { 2 } else { 0 }
}

fn write_span(w: &mut Writer<'_>, s: &SpanRow) {
    w.str(1, &s.span_id);
    w.opt_str(2, s.parent_span_id.as_deref());
    w.opt_str(3, s.service.as_deref());
    w.int(4, s.first_ts as u64);
}

fn span_len(s: &SpanRow) -> usize {
    str_len(1, &s.span_id)
        + opt_str_len(2, s.parent_span_id.as_deref())
        + opt_str_len(3, s.service.as_deref())
        + int_len(4, s.first_ts as u64)
}

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;

/// Writes protobuf fields the way `prost` does: proto3 scalars and
/// non-optional strings only when not zero or empty.
struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn key(&mut self, tag: u32, wire: u8) {
        self.varint(u64::from(tag << 3 | u32::from(wire)));
    }

    fn int(&mut self, tag: u32, v: u64) {
        if v != 0 {
            self.key(tag, VARINT);
            self.varint(v);
        }
    }

    fn str(&mut self, tag: u32, s: &str) {
        if !s.is_empty() {
            self.bytes(tag, s);
        }
    }

    fn opt_str(&mut self, tag: u32, s: Option<&str>) {
        if let Some(s) = s {
            self.bytes(tag, s);
        }
    }

    fn bytes(&mut self, tag: u32, s: &str) {
        self.key(tag, LEN);
        self.varint(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
    }

    fn opt_f64(&mut self, tag: u32, v: Option<f64>) {
        if let Some(v) = v {
            self.key(tag, FIXED64);
            self.0.extend_from_slice(&v.to_le_bytes());
        }
    }

    fn message(&mut self, tag: u32, len: usize, body: impl FnOnce(&mut Self)) {
        self.key(tag, LEN);
        self.varint(len as u64);
        body(self);
    }
}

fn varint_len(v: u64) -> usize {
    // One byte per started 7 bits, at least one.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn int_len(tag: u32, v: u64) -> usize {
    if v == 0 {
        0
    } else {
        varint_len(u64::from(tag << 3)) + varint_len(v)
    }
}

fn str_len(tag: u32, s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        opt_str_len(tag, Some(s))
    }
}

fn opt_str_len(tag: u32, s: Option<&str>) -> usize {
    s.map_or(0, |s| {
        varint_len(u64::from(tag << 3)) + varint_len(s.len() as u64) + s.len()
    })
}

#[derive(Clone, PartialEq, prost::Message)]
struct TraceMsg {
    #[prost(int64, tag = "1")]
    first_ts: i64,
    #[prost(int64, tag = "2")]
    last_ts: i64,
    #[prost(uint64, tag = "3")]
    event_count: u64,
    #[prost(uint64, tag = "4")]
    error_count: u64,
    #[prost(string, repeated, tag = "5")]
    services: Vec<String>,
    #[prost(string, repeated, tag = "6")]
    log_groups: Vec<String>,
    #[prost(string, repeated, tag = "7")]
    open_requests: Vec<String>,
    #[prost(message, repeated, tag = "8")]
    lambda: Vec<InvocationMsg>,
    #[prost(message, repeated, tag = "9")]
    spans: Vec<SpanMsg>,
    #[prost(uint64, tag = "10")]
    spans_dropped: u64,
    #[prost(string, repeated, tag = "11")]
    aliases: Vec<String>,
    #[prost(int64, tag = "12")]
    last_seen_ms: i64,
    #[prost(bool, tag = "13")]
    closed: bool,
    #[prost(int64, tag = "14")]
    revision: i64,
    #[prost(bool, tag = "15")]
    summary_sent: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
struct InvocationMsg {
    #[prost(string, tag = "1")]
    request_id: String,
    #[prost(string, optional, tag = "2")]
    log_group: Option<String>,
    #[prost(string, optional, tag = "3")]
    start: Option<String>,
    #[prost(double, optional, tag = "4")]
    duration_ms: Option<f64>,
    #[prost(double, optional, tag = "5")]
    billed_duration_ms: Option<f64>,
    #[prost(double, optional, tag = "6")]
    memory_size_mb: Option<f64>,
    #[prost(double, optional, tag = "7")]
    max_memory_used_mb: Option<f64>,
    #[prost(double, optional, tag = "8")]
    init_duration_ms: Option<f64>,
    #[prost(bool, optional, tag = "9")]
    cold_start: Option<bool>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SpanMsg {
    #[prost(string, tag = "1")]
    span_id: String,
    #[prost(string, optional, tag = "2")]
    parent_span_id: Option<String>,
    #[prost(string, optional, tag = "3")]
    service: Option<String>,
    #[prost(int64, tag = "4")]
    first_ts: i64,
}

fn names(v: Vec<String>) -> Vec<Name> {
    v.into_iter().map(Arc::from).collect()
}

impl From<TraceMsg> for Trace {
    fn from(m: TraceMsg) -> Trace {
        Trace {
            first_ts: m.first_ts,
            last_ts: m.last_ts,
            event_count: m.event_count,
            error_count: m.error_count,
            services: names(m.services),
            log_groups: names(m.log_groups),
            open_requests: m.open_requests,
            lambda: m
                .lambda
                .into_iter()
                .map(|i| {
                    (
                        i.request_id,
                        Invocation {
                            log_group: i.log_group,
                            start: i.start,
                            duration_ms: i.duration_ms,
                            billed_duration_ms: i.billed_duration_ms,
                            memory_size_mb: i.memory_size_mb,
                            max_memory_used_mb: i.max_memory_used_mb,
                            init_duration_ms: i.init_duration_ms,
                            cold_start: i.cold_start,
                        },
                    )
                })
                .collect(),
            spans: m
                .spans
                .into_iter()
                .map(|s| SpanRow {
                    span_id: s.span_id.into(),
                    parent_span_id: s.parent_span_id.map(Box::from),
                    service: s.service.map(Arc::from),
                    first_ts: s.first_ts,
                })
                .collect(),
            spans_dropped: m.spans_dropped,
            aliases: names(m.aliases),
            last_seen_ms: m.last_seen_ms,
            closed: m.closed,
            revision: m.revision,
            summary_sent: m.summary_sent,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn full() -> Trace {
        let name = |s: &str| -> Name { Arc::from(s) };
        Trace {
            first_ts: 1_700_000_000_000,
            last_ts: 1_700_000_000_450,
            event_count: 300,
            error_count: 2,
            services: vec![name("checkout-api"), name("payments")],
            log_groups: vec![name("/aws/lambda/checkout-api"), name("/ecs/é\"quoted\"")],
            open_requests: vec!["req-2".into()],
            lambda: BTreeMap::from([
                (
                    "req-1".to_string(),
                    Invocation {
                        log_group: Some("/aws/lambda/checkout-api".into()),
                        start: Some("2023-11-14T22:13:20.000Z".into()),
                        duration_ms: Some(12.5),
                        billed_duration_ms: Some(13.0),
                        memory_size_mb: Some(128.0),
                        max_memory_used_mb: Some(0.0),
                        init_duration_ms: Some(201.25),
                        cold_start: Some(false),
                    },
                ),
                ("req-2".to_string(), Invocation::default()),
            ]),
            spans: (0..200)
                .map(|i| SpanRow {
                    span_id: format!("{i:016x}").into(),
                    parent_span_id: (i % 2 == 0).then(|| "0000000000000000".into()),
                    service: (i % 3 == 0).then(|| name("payments")),
                    first_ts: 1_700_000_000_000 + i,
                })
                .collect(),
            spans_dropped: 7,
            aliases: vec![
                name("t:1-6afffe01-96d38ff58c3f846c00000000"),
                name("r:req-1"),
            ],
            last_seen_ms: 1_800_000_000_000,
            closed: true,
            revision: 3,
            summary_sent: true,
        }
    }

    fn message_of(t: &Trace) -> TraceMsg {
        let strings = |v: &[Name]| v.iter().map(|s| s.to_string()).collect();
        TraceMsg {
            first_ts: t.first_ts,
            last_ts: t.last_ts,
            event_count: t.event_count,
            error_count: t.error_count,
            services: strings(&t.services),
            log_groups: strings(&t.log_groups),
            open_requests: t.open_requests.clone(),
            lambda: t
                .lambda
                .iter()
                .map(|(r, i)| InvocationMsg {
                    request_id: r.clone(),
                    log_group: i.log_group.clone(),
                    start: i.start.clone(),
                    duration_ms: i.duration_ms,
                    billed_duration_ms: i.billed_duration_ms,
                    memory_size_mb: i.memory_size_mb,
                    max_memory_used_mb: i.max_memory_used_mb,
                    init_duration_ms: i.init_duration_ms,
                    cold_start: i.cold_start,
                })
                .collect(),
            spans: t
                .spans
                .iter()
                .map(|s| SpanMsg {
                    span_id: s.span_id.to_string(),
                    parent_span_id: s.parent_span_id.as_deref().map(str::to_string),
                    service: s.service.as_deref().map(str::to_string),
                    first_ts: s.first_ts,
                })
                .collect(),
            spans_dropped: t.spans_dropped,
            aliases: strings(&t.aliases),
            last_seen_ms: t.last_seen_ms,
            closed: t.closed,
            revision: t.revision,
            summary_sent: t.summary_sent,
        }
    }

    #[test]
    fn the_writer_produces_the_bytes_prost_would() {
        let mut empty = Trace::new(0, 0);
        empty.aliases.push(Arc::from("s:x"));
        for t in [full(), empty, Trace::new(-5, 1)] {
            let mut row = Vec::new();
            encode(&t, &mut row);
            assert_eq!(row[0], PROTOBUF);
            assert_eq!(&row[1..], message_of(&t).encode_to_vec().as_slice());
            assert_eq!(decode(&row).unwrap(), t);
        }
    }

    #[test]
    fn rows_of_earlier_versions_are_json_and_still_read() {
        let t = full();
        let json = serde_json::to_vec(&t).unwrap();
        assert_eq!(decode(&json).unwrap(), t);
        let mut row = Vec::new();
        encode(&t, &mut row);
        assert!(
            row.len() < json.len(),
            "protobuf {} bytes, JSON {}",
            row.len(),
            json.len()
        );
    }

    #[test]
    fn a_damaged_row_is_an_error_not_a_panic() {
        let mut row = Vec::new();
        encode(&full(), &mut row);
        // Cut inside a field (a protobuf cut between fields is a shorter
        // message, but rows are written whole).
        for cut in [2, row.len() - 1] {
            assert!(decode(&row[..cut]).is_err(), "cut at {cut}");
        }
        assert!(decode(b"").is_err());
        assert_eq!(
            decode(b"\x07abc").unwrap_err(),
            "unknown trace row format 0x07"
        );
        assert!(decode(b"{not json").is_err());
    }
}
