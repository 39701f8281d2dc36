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
//! A stored row is [`PROTOBUF`] followed by the message, or [`SEGMENTS`]
//! followed by messages each preceded by its length (a varint): the whole
//! trace, then its updates. A trace changes at each of its events, and its
//! events come in different checkpoints (one per log group at least), so
//! once the file holds a trace, a checkpoint writes only its update
//! ([`encode_update`]: the scalars, what was added to its lists, its open
//! requests and Lambda invocations), which the journal's fold appends to the
//! stored row ([`extend`]). Reading applies the messages in order: scalars
//! are replaced, services, log groups, spans and aliases appended, open
//! requests replaced, invocations replaced by request id. After
//! `MAX_UPDATES` updates, or any change that is not an append, the
//! next write is whole again. Rows written by earlier versions are JSON
//! (they start with `{`) and are still read.

use std::sync::Arc;

use prost::Message;

use super::{Invocation, SpanRow, Trace, Written};

/// The first byte of a row of one protobuf message.
pub const PROTOBUF: u8 = 1;

/// The first byte of a row of length-prefixed messages: a trace and its
/// updates.
pub const SEGMENTS: u8 = 2;

/// Appends `t` as a stored row (marker byte and message) to `out`.
pub fn encode(t: &Trace, out: &mut Vec<u8>) {
    out.push(PROTOBUF);
    write(t, &Written::default(), out);
}

/// Appends `t`'s update to `out`: one message holding what changed since
/// `t.written` (every scalar, the services, log groups, spans and aliases
/// added since, the open requests and Lambda invocations whole), for
/// [`push_update`] and [`extend`].
pub fn encode_update(t: &Trace, out: &mut Vec<u8>) {
    write(t, &t.written, out);
}

/// Writes the message of `t`, with the lists counted in `from` left out.
fn write(t: &Trace, from: &Written, out: &mut Vec<u8>) {
    let added = |len: u32| len as usize;
    let w = &mut Writer(out);
    w.int(1, t.first_ts as u64);
    w.int(2, t.last_ts as u64);
    w.int(3, t.event_count);
    w.int(4, t.error_count);
    for s in t.services.iter().skip(added(from.services)) {
        w.str(5, s);
    }
    for g in t.log_groups.iter().skip(added(from.log_groups)) {
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
    for s in t.spans.iter().skip(added(from.spans)) {
        w.message(9, span_len(s), |w| write_span(w, s));
    }
    w.int(10, t.spans_dropped);
    for a in t.aliases.iter().skip(added(from.aliases)) {
        w.str(11, a);
    }
    w.int(12, t.last_seen_ms as u64);
    w.int(13, u64::from(t.closed));
    w.int(14, t.revision as u64);
    w.int(15, u64::from(t.summary_sent));
}

/// Appends one update ([`encode_update`]) to a list of updates: its
/// length, then the message.
pub fn push_update(updates: &mut Vec<u8>, update: &[u8]) {
    prost::encoding::encode_varint(update.len() as u64, updates);
    updates.extend_from_slice(update);
}

/// Appends a list of updates ([`push_update`]) to a stored row, which
/// becomes (or already is) a row of [`SEGMENTS`]. An empty row gets the
/// updates alone (its whole version was lost: the trace goes on from what
/// they hold).
pub fn extend(row: &mut Vec<u8>, updates: &[u8]) -> Result<(), String> {
    match row.first() {
        Some(&SEGMENTS) => {}
        Some(&PROTOBUF) => {
            let mut out = Vec::with_capacity(row.len() + 10 + updates.len());
            out.push(SEGMENTS);
            push_update(&mut out, &row[1..]);
            *row = out;
        }
        Some(b'{') => {
            let t = decode(row)?;
            row.clear();
            encode(&t, row);
            return extend(row, updates);
        }
        Some(other) => return Err(format!("unknown trace row format {other:#04x}")),
        None => row.push(SEGMENTS),
    }
    row.extend_from_slice(updates);
    Ok(())
}

/// Reads a stored row: protobuf (one message, or segments), or JSON from
/// an earlier version.
pub fn decode(row: &[u8]) -> Result<Trace, String> {
    let mut t = Trace::new(0, 0);
    match row.split_first() {
        Some((&PROTOBUF, message)) => apply(&mut t, message)?,
        Some((&SEGMENTS, mut rest)) => {
            while !rest.is_empty() {
                let len = prost::encoding::decode_varint(&mut rest).map_err(|e| e.to_string())?;
                let len = usize::try_from(len)
                    .ok()
                    .filter(|&len| len <= rest.len())
                    .ok_or_else(|| "trace row cut short".to_string())?;
                let (message, tail) = rest.split_at(len);
                apply(&mut t, message)?;
                rest = tail;
            }
        }
        Some((b'{', _)) => return serde_json::from_slice(row).map_err(|e| e.to_string()),
        Some((other, _)) => return Err(format!("unknown trace row format {other:#04x}")),
        None => return Err("empty trace row".into()),
    }
    Ok(t)
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

/// Applies one message of a row to `t` (see the module documentation).
fn apply(t: &mut Trace, message: &[u8]) -> Result<(), String> {
    let m = TraceMsg::decode(message).map_err(|e| e.to_string())?;
    t.first_ts = m.first_ts;
    t.last_ts = m.last_ts;
    t.event_count = m.event_count;
    t.error_count = m.error_count;
    t.services.extend(m.services.into_iter().map(Arc::from));
    t.log_groups.extend(m.log_groups.into_iter().map(Arc::from));
    t.open_requests = m.open_requests;
    for i in m.lambda {
        t.lambda.insert(
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
        );
    }
    t.spans.extend(m.spans.into_iter().map(|s| SpanRow {
        span_id: s.span_id.into(),
        parent_span_id: s.parent_span_id.map(Box::from),
        service: s.service.map(Arc::from),
        first_ts: s.first_ts,
    }));
    t.spans_dropped = m.spans_dropped;
    t.aliases.extend(m.aliases.into_iter().map(Arc::from));
    t.last_seen_ms = m.last_seen_ms;
    t.closed = m.closed;
    t.revision = m.revision;
    t.summary_sent = m.summary_sent;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::trace::Name;

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
            written: Written::default(),
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

    /// The trace a row stores after `updates` were appended to it.
    fn read_back(whole: &[u8], updates: &[&[u8]]) -> Trace {
        let mut list = Vec::new();
        for u in updates {
            push_update(&mut list, u);
        }
        let mut row = whole.to_vec();
        extend(&mut row, &list).unwrap();
        decode(&row).unwrap()
    }

    #[test]
    fn a_row_and_its_updates_read_back_as_the_trace_now() {
        let name = |s: &str| -> Name { Arc::from(s) };
        let mut t = full();
        let mut whole = Vec::new();
        encode(&t, &mut whole);
        t.written = Written::of(&t, 0);

        // Appends, scalars (one back to zero), a request ended and an
        // invocation changed.
        t.event_count += 1;
        t.closed = false;
        t.summary_sent = false;
        t.services.push(name("inventory"));
        t.aliases.push(name("r:req-3"));
        t.spans.push(SpanRow {
            span_id: "ffff".into(),
            parent_span_id: None,
            service: Some(name("inventory")),
            first_ts: 5,
        });
        t.open_requests.clear();
        t.lambda.get_mut("req-2").unwrap().duration_ms = Some(3.5);
        let mut first = Vec::new();
        encode_update(&t, &mut first);
        assert!(
            first.len() * 10 < whole.len(),
            "update {} bytes, whole {}",
            first.len(),
            whole.len()
        );
        assert_eq!(read_back(&whole, &[&first]), t);
        t.written = Written::of(&t, 1);

        t.log_groups.push(name("/aws/lambda/inventory"));
        t.open_requests.push("req-4".into());
        t.revision += 1;
        let mut second = Vec::new();
        encode_update(&t, &mut second);
        assert_eq!(read_back(&whole, &[&first, &second]), t);
        // Folded one at a time, or all at once: the same row.
        let mut row = whole.clone();
        for u in [&first, &second] {
            let mut list = Vec::new();
            push_update(&mut list, u);
            extend(&mut row, &list).unwrap();
        }
        assert_eq!(decode(&row).unwrap(), t);
        assert_eq!(row[0], SEGMENTS);
    }

    #[test]
    fn updates_follow_a_json_row_or_stand_alone_without_one() {
        let t = full();
        let json = serde_json::to_vec(&t).unwrap();
        let mut u = t.clone();
        u.written = Written::of(&u, 0);
        u.event_count += 1;
        u.aliases.push(Arc::from("s:later"));
        let mut update = Vec::new();
        encode_update(&u, &mut update);
        assert_eq!(read_back(&json, &[&update]), u);
        // No stored trace: what the update holds.
        let alone = read_back(&[], &[&update]);
        assert_eq!(alone.event_count, u.event_count);
        assert_eq!(alone.aliases, vec![Arc::from("s:later")]);
        assert!(alone.spans.is_empty());
        let mut list = Vec::new();
        push_update(&mut list, &update);
        assert!(extend(&mut b"\x07".to_vec(), &list).is_err());
        // A length past the end is an error, not a panic.
        assert_eq!(decode(b"\x02\x7f\x08").unwrap_err(), "trace row cut short");
    }
}
