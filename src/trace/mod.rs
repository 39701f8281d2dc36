//! Grouping events into traces: pure logic over an in-memory working set.
//!
//! An event's correlation keys are its `trace_id` (an X-Ray root or W3C trace
//! id once the parsers normalised it), its `request_id`, and, only when it has
//! neither, its `session_id`. A trace is the set of events connected through
//! those keys: an event carrying both a trace id and a request id links the
//! request to the trace, and two traces linked that way merge into one (an API
//! gateway, Lambda A and Lambda B sharing a trace id, in three log groups, end
//! up as one trace). An event without any key stands alone.
//!
//! Within one log stream, the lines between `START RequestId: X` and
//! `END`/`REPORT RequestId: X` belong to request X even when they carry no id
//! (a bare `print()`); each stream has its own bracket, so interleaved streams
//! of one function stay apart.
//!
//! [`Traces`] is the working set: every trace that may still receive events,
//! the alias index (`t:<trace id>`, `r:<request id>`, `s:<session id>` -> trace)
//! and the open Lambda brackets. [`Traces::apply`] assigns one event in one
//! pass and records what changed; the state layer
//! ([`crate::state::StateStore::commit`]) writes the changes in the checkpoint
//! transaction that records the same events as delivered, so a crash or
//! restart never splits or forgets a trace. Traces that are closed, summarised
//! and quiet leave memory ([`Traces::evict`]) but stay in the state file until
//! pruned; their aliases are remembered as 64-bit fingerprints, so an event
//! for one of them makes the state layer load it back first
//! ([`Traces::cold_aliases`], [`Traces::restore`]).
//!
//! A trace closes at a Lambda `REPORT` line once none of its requests is still
//! open, or after `agent.trace_idle_secs` without events ([`Traces::close_idle`]);
//! a closed trace gets one `trace_summary` when the [`SummaryPolicy`] wants
//! one. Events arriving for a closed trace reopen it, and its next closing
//! emits a summary with a higher `revision`.

mod codec;
mod summary;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::parse::Fields;
use crate::time::{EpochMs, format_ms};
pub use codec::{
    PROTOBUF as PROTOBUF_ROW, decode as decode_stored, encode as encode_stored,
    extend as extend_stored, push_update,
};
pub use summary::{Span, SummaryPolicy, TraceSummary};

type Hasher = foldhash::fast::RandomState;
type Map<K, V> = HashMap<K, V, Hasher>;
type Set<K> = HashSet<K, Hasher>;

/// A shared string: group and service names, trace keys and aliases are
/// held once however many traces name them.
pub type Name = Arc<str>;

/// Most spans one trace keeps (a session can run for days); later spans are
/// counted in `spans_dropped`.
pub const MAX_SPANS: usize = 1000;

/// The facts about one event that grouping needs, borrowed from the event.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TraceInput<'a> {
    pub log_group: &'a str,
    pub log_stream: &'a str,
    pub timestamp_ms: EpochMs,
    pub trace_id: Option<&'a str>,
    pub request_id: Option<&'a str>,
    pub session_id: Option<&'a str>,
    pub span_id: Option<&'a str>,
    pub parent_span_id: Option<&'a str>,
    pub service: Option<&'a str>,
    pub is_error: bool,
    pub event_type: Option<&'a str>,
    /// From a Lambda REPORT line.
    pub report: Option<LambdaReport>,
}

/// What a Lambda REPORT line says about one invocation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LambdaReport {
    pub duration_ms: Option<f64>,
    pub billed_duration_ms: Option<f64>,
    pub memory_size_mb: Option<f64>,
    pub max_memory_used_mb: Option<f64>,
    /// Present only on a cold start.
    pub init_duration_ms: Option<f64>,
}

impl<'a> TraceInput<'a> {
    /// Collects the grouping facts from what the rules found: the canonical
    /// `fields` and the event's `properties` (a REPORT's numbers).
    pub fn from_fields(
        log_group: &'a str,
        log_stream: &'a str,
        timestamp_ms: EpochMs,
        f: &'a Fields,
        properties: &crate::parse::Properties,
    ) -> TraceInput<'a> {
        let number = |key: &str| properties.get(key).and_then(|v| v.as_f64());
        let report = (f.event_type.as_deref() == Some("lambda_report")).then(|| LambdaReport {
            duration_ms: f.duration_ms.or_else(|| number("duration_ms")),
            billed_duration_ms: number("billed_duration_ms"),
            memory_size_mb: number("memory_size_mb"),
            max_memory_used_mb: number("max_memory_used_mb"),
            init_duration_ms: number("init_duration_ms"),
        });
        let level_error = f
            .level
            .as_deref()
            .is_some_and(|l| matches!(l, "error" | "fatal" | "critical" | "panic"));
        TraceInput {
            log_group,
            log_stream,
            timestamp_ms,
            trace_id: non_empty(&f.trace_id),
            request_id: non_empty(&f.request_id),
            session_id: non_empty(&f.session_id),
            span_id: non_empty(&f.span_id),
            parent_span_id: non_empty(&f.parent_span_id),
            service: non_empty(&f.service).or_else(|| service_from_group(log_group)),
            is_error: level_error || f.error.as_deref().is_some_and(|e| !e.is_empty()),
            event_type: f.event_type.as_deref(),
            report,
        }
    }
}

/// The value unless it is empty or white space only (tested from its
/// first character: an id is not white space).
fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.chars().all(char::is_whitespace))
}

/// `/aws/lambda/checkout-api` -> `checkout-api`: a Lambda's service name.
pub fn service_from_group(group: &str) -> Option<&str> {
    group.strip_prefix("/aws/lambda/").filter(|s| !s.is_empty())
}

/// Where one event landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The trace key (`t:<trace id>`, `r:<request id>` or `s:<session id>`);
    /// `None` for an event without correlation ids. Shared with the trace.
    pub trace_key: Option<Name>,
    /// The request id, filled from the stream's START bracket when the line
    /// itself has none (`None` when the line has its own).
    pub bracket_request_id: Option<String>,
}

/// What a trace knows about one Lambda invocation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Invocation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_group: Option<String>,
    /// When its START line was logged (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billed_duration_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_size_mb: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory_used_mb: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_duration_ms: Option<f64>,
    /// Set by the REPORT line: whether it was a cold start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cold_start: Option<bool>,
}

/// One span seen in a trace. Stored as `[span_id, parent_span_id, service,
/// first_ts]`: a trace can hold many.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanRow {
    pub span_id: Box<str>,
    pub parent_span_id: Option<Box<str>>,
    pub service: Option<Name>,
    pub first_ts: EpochMs,
}

impl Serialize for SpanRow {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (
            &self.span_id,
            &self.parent_span_id,
            &self.service,
            self.first_ts,
        )
            .serialize(s)
    }
}

impl<'de> Deserialize<'de> for SpanRow {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<SpanRow, D::Error> {
        let (span_id, parent_span_id, service, first_ts) =
            <(Box<str>, Option<Box<str>>, Option<Name>, EpochMs)>::deserialize(d)?;
        Ok(SpanRow {
            span_id,
            parent_span_id,
            service,
            first_ts,
        })
    }
}

/// One trace: what its summary says, and its aliases. Serialised as the
/// state file's `trace_state.data`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    pub first_ts: EpochMs,
    pub last_ts: EpochMs,
    pub event_count: u64,
    pub error_count: u64,
    #[serde(default)]
    pub services: Vec<Name>,
    #[serde(default)]
    pub log_groups: Vec<Name>,
    /// Lambda requests started and not yet ended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub open_requests: Vec<String>,
    /// Per Lambda request id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub lambda: BTreeMap<String, Invocation>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spans: Vec<SpanRow>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub spans_dropped: u64,
    /// Every correlation key that leads here (the trace key among them).
    #[serde(default)]
    pub aliases: Vec<Name>,
    /// Wall clock of the last event applied (idle closing in `run`, eviction).
    pub last_seen_ms: EpochMs,
    pub closed: bool,
    pub revision: i64,
    pub summary_sent: bool,
    /// What of it the state file holds (not stored itself).
    #[serde(skip)]
    pub written: Written,
}

/// What of a trace the state file already holds, so that a checkpoint
/// writes a trace's update instead of all of it ([`codec::encode_update`]).
/// Bookkeeping, not content: never stored, and any two are equal.
#[derive(Debug, Clone, Copy, Default)]
pub struct Written {
    /// Whether the file holds a version an update can follow. Unset for a
    /// new trace, one read from the file (a prune may take the file's copy
    /// away), one whose last write failed and one whose spans changed in
    /// place: their next write is whole.
    base: bool,
    /// Updates written since the last whole version.
    updates: u16,
    /// Lengths of the lists as written (they only ever grow by appending).
    services: u32,
    log_groups: u32,
    spans: u32,
    aliases: u32,
}

impl PartialEq for Written {
    fn eq(&self, _: &Written) -> bool {
        true
    }
}

/// Updates a stored trace may carry before its next write is whole again
/// (bounds how many segments a row has to read back).
const MAX_UPDATES: u16 = 32;

impl Written {
    /// What `t` holds now, as written.
    fn of(t: &Trace, updates: u16) -> Written {
        Written {
            base: true,
            updates,
            services: t.services.len() as u32,
            log_groups: t.log_groups.len() as u32,
            spans: t.spans.len() as u32,
            aliases: t.aliases.len() as u32,
        }
    }

    /// Whether `t`'s next write can be an update.
    fn can_update(&self, t: &Trace) -> bool {
        self.base
            && self.updates < MAX_UPDATES
            && self.services as usize <= t.services.len()
            && self.log_groups as usize <= t.log_groups.len()
            && self.spans as usize <= t.spans.len()
            && self.aliases as usize <= t.aliases.len()
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Trace {
    fn new(ts: EpochMs, now_ms: EpochMs) -> Trace {
        Trace {
            first_ts: ts,
            last_ts: ts,
            event_count: 0,
            error_count: 0,
            services: Vec::new(),
            log_groups: Vec::new(),
            open_requests: Vec::new(),
            lambda: BTreeMap::new(),
            spans: Vec::new(),
            spans_dropped: 0,
            aliases: Vec::new(),
            last_seen_ms: now_ms,
            closed: false,
            revision: 0,
            summary_sent: false,
            written: Written::default(),
        }
    }

    /// Whether a Lambda REPORT was seen for one of its requests.
    pub fn has_report(&self) -> bool {
        self.lambda.values().any(|i| i.duration_ms.is_some())
    }

    /// Closes the trace: a new revision whose summary is due.
    fn close(&mut self) {
        self.closed = true;
        self.summary_sent = false;
        self.revision += 1;
    }

    fn add_span(&mut self, e: &TraceInput<'_>, span: &str, service: Option<Name>) {
        if let Some(s) = self.spans.iter_mut().find(|s| &*s.span_id == span) {
            let before = (s.parent_span_id.is_some(), s.first_ts);
            if s.parent_span_id.is_none() {
                s.parent_span_id = e.parent_span_id.map(Box::from);
            }
            s.first_ts = s.first_ts.min(e.timestamp_ms);
            if (s.parent_span_id.is_some(), s.first_ts) != before {
                // Not an append: an update cannot say it.
                self.written.base = false;
            }
        } else if self.spans.len() < MAX_SPANS {
            // Most traces hold a few spans, and many traces are held: the
            // first ones grow the list by one, not by doubling.
            if self.spans.len() < 8 {
                self.spans.reserve_exact(1);
            }
            self.spans.push(SpanRow {
                span_id: Box::from(span),
                parent_span_id: e.parent_span_id.map(Box::from),
                service,
                first_ts: e.timestamp_ms,
            });
        } else {
            self.spans_dropped += 1;
        }
    }

    /// Takes `other` in (a merge): counters, sets, spans, aliases.
    fn absorb(&mut self, other: Trace) {
        self.first_ts = self.first_ts.min(other.first_ts);
        self.last_ts = self.last_ts.max(other.last_ts);
        self.event_count += other.event_count;
        self.error_count += other.error_count;
        for s in other.services {
            push_name(&mut self.services, &s);
        }
        for g in other.log_groups {
            push_name(&mut self.log_groups, &g);
        }
        for r in other.open_requests {
            push_unique(&mut self.open_requests, &r);
        }
        for (k, v) in other.lambda {
            self.lambda.entry(k).or_insert(v);
        }
        for span in other.spans {
            if !self.spans.iter().any(|s| s.span_id == span.span_id) {
                if self.spans.len() < MAX_SPANS {
                    self.spans.push(span);
                } else {
                    self.spans_dropped += 1;
                }
            }
        }
        self.spans_dropped += other.spans_dropped;
        self.aliases.extend(other.aliases);
        self.last_seen_ms = self.last_seen_ms.max(other.last_seen_ms);
        // Merged traces are open unless both were closed.
        self.closed = self.closed && other.closed;
    }
}

fn push_unique(list: &mut Vec<String>, value: &str) {
    if !list.iter().any(|v| v == value) {
        list.push(value.to_string());
    }
}

fn push_name(list: &mut Vec<Name>, value: &Name) {
    if !list.iter().any(|v| v == value) {
        list.push(Arc::clone(value));
    }
}

/// One trace as the state file stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTrace {
    pub key: Name,
    pub last_seen_ms: EpochMs,
    /// Closed and its summary delivered: may leave the file once quiet.
    pub settled: bool,
    /// Whether `data` is an update of the stored version
    /// ([`extend_stored`]) rather than the whole trace.
    pub update: bool,
    /// The [`Trace`], encoded (see [`decode_stored`]), or its update.
    pub data: Vec<u8>,
}

/// The stream a Lambda bracket belongs to: (log group, log stream).
pub type StreamKey = (String, String);

/// What changed in the working set since the last [`Traces::take_changes`]:
/// what the next checkpoint writes.
#[derive(Debug, Default)]
pub struct Changes {
    /// Traces to write.
    pub traces: Vec<StoredTrace>,
    /// Traces merged into another since: their rows go.
    pub deleted: Vec<String>,
    /// Brackets opened (`Some`) or closed (`None`).
    pub brackets: Vec<((String, String), Option<String>)>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.traces.is_empty() && self.deleted.is_empty() && self.brackets.is_empty()
    }
}

/// The working set. See the module documentation.
#[derive(Debug, Default)]
pub struct Traces {
    /// By trace key.
    traces: Map<Name, Trace>,
    /// Alias -> trace key.
    aliases: Map<Name, Name>,
    /// Group and service names, each held once.
    names: Set<Name>,
    /// Open Lambda brackets: log group -> log stream -> request id.
    brackets: Map<String, Map<String, String>>,
    dirty: Set<Name>,
    deleted: Set<Name>,
    dirty_brackets: Set<StreamKey>,
    /// Fingerprints of the aliases of evicted traces, with the wall-clock
    /// time their trace was last seen (when the state file may prune it).
    cold: Map<u64, EpochMs>,
    /// No entry of `cold` was last seen before this (0: not known yet), so
    /// that [`Traces::forget_cold`] goes over the map only when it can find
    /// something to forget.
    cold_oldest: EpochMs,
    /// Seeds the alias fingerprints; fixed for the life of the process.
    fingerprint: foldhash::quality::FixedState,
    scratch: Scratch,
}

/// The correlation keys of the event being applied, in buffers reused from
/// one event to the next.
#[derive(Debug, Default)]
struct Scratch {
    keys: [String; 2],
}

impl Scratch {
    /// `t:<trace id>` and `r:<request id>`, or else `s:<session id>`.
    fn aliases(
        &mut self,
        trace_id: Option<&str>,
        request_id: Option<&str>,
        session_id: Option<&str>,
    ) -> &[String] {
        let mut n = 0;
        for (prefix, id) in [("t:", trace_id), ("r:", request_id)] {
            if let Some(id) = id {
                self.set(n, prefix, id);
                n += 1;
            }
        }
        if n == 0
            && let Some(s) = session_id
        {
            self.set(0, "s:", s);
            n = 1;
        }
        &self.keys[..n]
    }

    fn set(&mut self, i: usize, prefix: &str, id: &str) {
        let key = &mut self.keys[i];
        key.clear();
        push_alias(key, prefix, id);
    }
}

/// Appends the alias `prefix` + `id` to `key`. A trace id is written in one
/// form whichever it came in, so that the X-Ray form
/// (`1-5759e988-bd862e3fe1be46a994272793`, API Gateway, Lambda's REPORT) and
/// the W3C form (`5759e988bd862e3fe1be46a994272793`, OpenTelemetry SDKs) of
/// one trace group together: 32 lower-case hex digits. Other ids as they are.
fn push_alias(key: &mut String, prefix: &str, id: &str) {
    key.push_str(prefix);
    if prefix == "t:" {
        let b = id.as_bytes();
        // The 32 digits, eight at a time: the X-Ray form's 8 + 24 after
        // its `1-` and between its dashes, or the W3C form whole.
        let words = if b.len() == 35 && b.starts_with(b"1-") && b[10] == b'-' {
            [&b[2..10], &b[11..19], &b[19..27], &b[27..35]]
        } else if b.len() == 32 {
            [&b[..8], &b[8..16], &b[16..24], &b[24..]]
        } else {
            [&b[..0]; 4]
        };
        let mut digits = [0u8; 32];
        let all_hex = words.iter().enumerate().all(|(i, w)| {
            let word = <[u8; 8]>::try_from(*w).map(u64::from_le_bytes);
            match word.ok().and_then(hex_lower) {
                Some(lower) => {
                    digits[i * 8..i * 8 + 8].copy_from_slice(&lower.to_le_bytes());
                    true
                }
                None => false,
            }
        });
        if all_hex && let Ok(digits) = std::str::from_utf8(&digits) {
            key.push_str(digits);
            return;
        }
    }
    key.push_str(id);
}

/// Eight bytes in lower case if every one is a hex digit (`0-9`, `a-f`,
/// `A-F`), else `None`: a test on the whole word at once.
fn hex_lower(word: u64) -> Option<u64> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    if word & HIGH != 0 {
        return None;
    }
    // Each byte's high bit set where the byte is in `lo..=hi`. The bytes
    // are below 0x80, so no sum carries into the next byte.
    let within = |x: u64, lo: u64, hi: u64| (x + (0x80 - lo) * ONES) & !(x + (0x7f - hi) * ONES);
    // Setting bit 0x20 lowers `A-F` and leaves the digits as they are.
    let lower = word | (0x20 * ONES);
    let hex = within(word, 0x30, 0x39) | within(lower, 0x61, 0x66);
    (hex & HIGH == HIGH).then_some(lower)
}

impl Traces {
    pub fn new() -> Traces {
        Traces::default()
    }

    /// Number of traces in memory.
    pub fn len(&self) -> usize {
        self.traces.len()
    }

    pub fn is_empty(&self) -> bool {
        self.traces.is_empty()
    }

    /// Number of traces not closed yet.
    pub fn open_count(&self) -> usize {
        self.traces.values().filter(|t| !t.closed).count()
    }

    /// A trace by key.
    pub fn get(&self, key: &str) -> Option<&Trace> {
        self.traces.get(key)
    }

    /// Every trace key in memory, ordered by first event (for `parse-test`).
    pub fn keys_by_first_event(&self) -> Vec<String> {
        let mut keys: Vec<(&EpochMs, &Name)> =
            self.traces.iter().map(|(k, t)| (&t.first_ts, k)).collect();
        keys.sort();
        keys.into_iter().map(|(_, k)| str::to_owned(k)).collect()
    }

    /// `name`, shared with every other use of it.
    fn name(&mut self, name: &str) -> Name {
        match self.names.get(name) {
            Some(n) => Arc::clone(n),
            None => {
                let n: Name = Arc::from(name);
                self.names.insert(Arc::clone(&n));
                n
            }
        }
    }

    fn fingerprint(&self, alias: &str) -> u64 {
        self.fingerprint.hash_one(alias)
    }

    /// Loads traces and brackets read from the state file (at start, or
    /// evicted traces an event needs again). They are not dirty; a trace
    /// already in memory is newer than its stored copy and stays.
    pub fn restore(
        &mut self,
        traces: impl IntoIterator<Item = (String, Trace)>,
        brackets: impl IntoIterator<Item = (StreamKey, String)>,
    ) {
        for (key, mut trace) in traces {
            if self.traces.contains_key(key.as_str()) {
                continue;
            }
            let key: Name = Arc::from(key);
            for alias in &trace.aliases {
                let fp = self.fingerprint(alias);
                self.cold.remove(&fp);
                self.aliases.insert(Arc::clone(alias), Arc::clone(&key));
            }
            for n in trace.services.iter_mut().chain(trace.log_groups.iter_mut()) {
                *n = self.name(n);
            }
            self.traces.insert(key, trace);
        }
        for ((group, stream), request) in brackets {
            self.brackets
                .entry(group)
                .or_default()
                .entry(stream)
                .or_insert(request);
        }
    }

    /// The correlation keys of `events` that belong to evicted traces (or
    /// may: fingerprints can collide), to load before [`Traces::apply`].
    pub fn cold_aliases(&self, events: &[TraceInput<'_>]) -> Vec<String> {
        if self.cold.is_empty() {
            return Vec::new();
        }
        let mut out: Vec<String> = Vec::new();
        // Each candidate is written into one buffer; only a cold one is kept.
        let mut alias = String::new();
        for e in events {
            for (prefix, id) in [
                ("t:", e.trace_id),
                ("r:", e.request_id),
                ("s:", e.session_id),
            ] {
                let Some(id) = id else { continue };
                alias.clear();
                push_alias(&mut alias, prefix, id);
                // The fingerprint first: most aliases are of no evicted
                // trace, and a number is looked up faster than a string.
                if self.cold.contains_key(&self.fingerprint(&alias))
                    && !self.aliases.contains_key(alias.as_str())
                    && !out.contains(&alias)
                {
                    out.push(alias.clone());
                }
            }
        }
        out
    }

    fn mark(&mut self, key: &Name) {
        if !self.dirty.contains(key) {
            self.dirty.insert(Arc::clone(key));
        }
    }

    fn bracket(&self, group: &str, stream: &str) -> Option<&String> {
        self.brackets
            .get(group)
            .and_then(|streams| streams.get(stream))
    }

    fn set_bracket(&mut self, group: &str, stream: &str, request: Option<&str>) {
        match request {
            Some(r) => {
                if self.bracket(group, stream).map(String::as_str) == Some(r) {
                    return;
                }
                self.brackets
                    .entry(str::to_owned(group))
                    .or_default()
                    .insert(str::to_owned(stream), str::to_owned(r));
            }
            None => {
                let Some(streams) = self.brackets.get_mut(group) else {
                    return;
                };
                if streams.remove(stream).is_none() {
                    return;
                }
                if streams.is_empty() {
                    self.brackets.remove(group);
                }
            }
        }
        self.dirty_brackets
            .insert((str::to_owned(group), str::to_owned(stream)));
    }

    /// Merges trace `from` into `into`.
    fn merge(&mut self, into: &Name, from: &Name) {
        if into == from {
            return;
        }
        let Some(other) = self.traces.remove(from) else {
            return;
        };
        for alias in &other.aliases {
            if let Some(k) = self.aliases.get_mut(alias) {
                *k = Arc::clone(into);
            }
        }
        if let Some(t) = self.traces.get_mut(into) {
            t.absorb(other);
        }
        self.dirty.remove(from);
        self.deleted.insert(Arc::clone(from));
        self.mark(into);
    }

    /// Applies one event, in order, and says where it landed. `now_ms` is
    /// the wall clock (for idle closing and eviction).
    pub fn apply(&mut self, e: &TraceInput<'_>, now_ms: EpochMs) -> Assignment {
        let event_type = e.event_type.unwrap_or("");
        // Lambda bracketing, per stream.
        let mut bracket_request_id = None;
        let request_id: Option<&str> = match e.request_id {
            Some(r) => Some(r),
            None if event_type != "lambda_start" => {
                bracket_request_id = self.bracket(e.log_group, e.log_stream).cloned();
                bracket_request_id.as_deref()
            }
            None => None,
        };
        if let Some(r) = request_id {
            match event_type {
                "lambda_start" => self.set_bracket(e.log_group, e.log_stream, Some(r)),
                "lambda_report" | "lambda_end"
                    if self
                        .bracket(e.log_group, e.log_stream)
                        .is_some_and(|open| open.as_str() == r) =>
                {
                    self.set_bracket(e.log_group, e.log_stream, None)
                }
                _ => {}
            }
        }

        // Correlation keys, most specific first, written into buffers kept
        // from event to event (an alias is allocated only when it is new).
        let mut scratch = std::mem::take(&mut self.scratch);
        let aliases = scratch.aliases(e.trace_id, request_id, e.session_id);
        if aliases.is_empty() {
            self.scratch = scratch;
            return Assignment {
                trace_key: None,
                bracket_request_id,
            };
        }

        // The traces these keys already belong to; merge them into the oldest.
        let mut found: [Option<(EpochMs, Name)>; 2] = [None, None];
        // Which keys are known already (a merge below keeps them so).
        let mut known = [false; 2];
        for (alias, known) in aliases.iter().zip(&mut known) {
            let Some(key) = self.aliases.get(alias.as_str()) else {
                continue;
            };
            *known = true;
            if !found.iter().flatten().any(|(_, k)| k == key) {
                let first = self.traces.get(key).map_or(EpochMs::MAX, |t| t.first_ts);
                let slot = if found[0].is_none() { 0 } else { 1 };
                found[slot] = Some((first, Arc::clone(key)));
            }
        }
        if let [Some(a), Some(b)] = &mut found {
            if b < a {
                std::mem::swap(a, b);
            }
            let (into, from) = (Arc::clone(&a.1), Arc::clone(&b.1));
            self.merge(&into, &from);
        }
        let key: Name = match found[0].take() {
            Some((_, key)) => key,
            None => Arc::from(aliases[0].as_str()),
        };
        let group = self.name(e.log_group);
        let service = e.service.map(|s| self.name(s));
        // A new key starts a trace (as does, defensively, an alias whose
        // trace is gone: cold traces are loaded before events are applied).
        let t = self
            .traces
            .entry(key.clone())
            .or_insert_with(|| Trace::new(e.timestamp_ms, now_ms));
        for (alias, _) in aliases.iter().zip(known).filter(|(_, known)| !known) {
            // The key is its trace's first alias: one string for both.
            let alias: Name = if *key == *alias.as_str() {
                Arc::clone(&key)
            } else {
                Arc::from(alias.as_str())
            };
            t.aliases.push(Arc::clone(&alias));
            self.aliases.insert(alias, Arc::clone(&key));
        }
        self.scratch = scratch;
        if let Some(span) = e.span_id {
            t.add_span(e, span, service.clone());
        }

        // Update the trace.
        t.first_ts = t.first_ts.min(e.timestamp_ms);
        t.last_ts = t.last_ts.max(e.timestamp_ms);
        t.event_count += 1;
        t.error_count += e.is_error as u64;
        if let Some(s) = &service {
            push_name(&mut t.services, s);
        }
        push_name(&mut t.log_groups, &group);
        t.last_seen_ms = now_ms;
        // An event for a closed trace reopens it.
        if t.closed {
            t.closed = false;
            t.summary_sent = false;
        }
        if let Some(r) = request_id {
            match event_type {
                "lambda_start" => {
                    push_unique(&mut t.open_requests, r);
                    let entry = t.lambda.entry(str::to_owned(r)).or_default();
                    entry.log_group = Some(str::to_owned(e.log_group));
                    entry.start = Some(format_ms(e.timestamp_ms));
                }
                "lambda_end" => t.open_requests.retain(|o| o != r),
                "lambda_report" => {
                    t.open_requests.retain(|o| o != r);
                    let entry = t.lambda.entry(str::to_owned(r)).or_default();
                    entry.log_group = Some(str::to_owned(e.log_group));
                    if let Some(rep) = &e.report {
                        let fill = |slot: &mut Option<f64>, v: Option<f64>| {
                            if v.is_some() {
                                *slot = v;
                            }
                        };
                        fill(&mut entry.duration_ms, rep.duration_ms);
                        fill(&mut entry.billed_duration_ms, rep.billed_duration_ms);
                        fill(&mut entry.memory_size_mb, rep.memory_size_mb);
                        fill(&mut entry.max_memory_used_mb, rep.max_memory_used_mb);
                        fill(&mut entry.init_duration_ms, rep.init_duration_ms);
                        entry.cold_start = Some(rep.init_duration_ms.is_some());
                    }
                    if t.open_requests.is_empty() {
                        t.close();
                    }
                }
                _ => {}
            }
        }
        self.mark(&key);
        Assignment {
            trace_key: Some(key),
            bracket_request_id,
        }
    }

    /// Closes open traces without events since `before_ms`: by the wall clock
    /// of their last event (`run`), or with `by_event_time` by their last
    /// event's timestamp (`backfill`, replay). Returns how many closed.
    pub fn close_idle(&mut self, before_ms: EpochMs, by_event_time: bool) -> usize {
        let idle = self.idle(before_ms, by_event_time);
        self.close_if_idle(&idle, before_ms, by_event_time)
    }

    fn last(t: &Trace, by_event_time: bool) -> EpochMs {
        if by_event_time {
            t.last_ts
        } else {
            t.last_seen_ms
        }
    }

    /// The open traces without events since `before_ms` (see
    /// [`Traces::close_idle`]), the longest idle first.
    pub fn idle(&self, before_ms: EpochMs, by_event_time: bool) -> Vec<Name> {
        let mut idle: Vec<(EpochMs, &Name)> = self
            .traces
            .iter()
            .filter(|(_, t)| !t.closed)
            .map(|(key, t)| (Traces::last(t, by_event_time), key))
            .filter(|(last, _)| *last < before_ms)
            .collect();
        idle.sort_unstable();
        idle.into_iter().map(|(_, key)| Arc::clone(key)).collect()
    }

    /// Closes those of `keys` that are still open and idle since
    /// `before_ms` (an event may have come for one since [`Traces::idle`]
    /// listed it). Returns how many closed.
    pub fn close_if_idle(
        &mut self,
        keys: &[Name],
        before_ms: EpochMs,
        by_event_time: bool,
    ) -> usize {
        let mut closed = 0;
        for key in keys {
            if let Some(t) = self.traces.get_mut(key)
                && !t.closed
                && Traces::last(t, by_event_time) < before_ms
            {
                t.close();
                closed += 1;
                self.mark(key);
            }
        }
        closed
    }

    /// The keys of the closed traces whose summary is due, oldest first:
    /// those whose last event is before `before_ms` (`EpochMs::MAX`: all).
    /// Traces the policy does not summarise are marked sent.
    pub fn due_summaries(&mut self, policy: SummaryPolicy, before_ms: EpochMs) -> Vec<String> {
        let mut due: Vec<(EpochMs, Name)> = Vec::new();
        let mut skipped: Vec<Name> = Vec::new();
        for (key, t) in &self.traces {
            if !t.closed || t.summary_sent || t.last_ts >= before_ms {
                continue;
            }
            if policy.wants(t) {
                due.push((t.last_ts, Arc::clone(key)));
            } else {
                skipped.push(Arc::clone(key));
            }
        }
        for key in skipped {
            if let Some(t) = self.traces.get_mut(&key) {
                t.summary_sent = true;
            }
            self.mark(&key);
        }
        due.sort_unstable();
        due.into_iter().map(|(_, k)| str::to_owned(&k)).collect()
    }

    /// Closed traces whose summary is still due, oldest first, at most
    /// `limit` (see [`Traces::due_summaries`]).
    pub fn pending_summaries(&mut self, policy: SummaryPolicy, limit: usize) -> Vec<TraceSummary> {
        let due = self.due_summaries(policy, EpochMs::MAX);
        due.iter()
            .take(limit)
            .filter_map(|key| self.summary(key))
            .collect()
    }

    /// Records summaries as delivered: (trace key, revision). A trace
    /// reopened meanwhile (its revision moved on) stays due.
    pub fn mark_sent(&mut self, sent: &[(String, i64)]) {
        for (key, revision) in sent {
            let key: Name = Arc::from(key.as_str());
            if let Some(t) = self.traces.get_mut(&key)
                && t.revision == *revision
                && t.closed
            {
                t.summary_sent = true;
                self.mark(&key);
            }
        }
    }

    /// One trace's summary.
    pub fn summary(&self, key: &str) -> Option<TraceSummary> {
        self.traces.get(key).map(|t| TraceSummary::of(key, t))
    }

    /// Takes what changed since the last call, for the checkpoint to write.
    pub fn take_changes(&mut self) -> Changes {
        let mut changes = Changes::default();
        for key in self.dirty.drain() {
            if let Some(t) = self.traces.get_mut(&key) {
                let update = t.written.can_update(t);
                let mut data = Vec::with_capacity(if update { 128 } else { 512 });
                if update {
                    codec::encode_update(t, &mut data);
                    t.written = Written::of(t, t.written.updates + 1);
                } else {
                    codec::encode(t, &mut data);
                    t.written = Written::of(t, 0);
                }
                changes.traces.push(StoredTrace {
                    key,
                    last_seen_ms: t.last_seen_ms,
                    settled: t.closed && t.summary_sent,
                    update,
                    data,
                });
            }
        }
        changes.deleted = self.deleted.drain().map(|k| str::to_owned(&k)).collect();
        let dirty: Vec<StreamKey> = self.dirty_brackets.drain().collect();
        for stream in dirty {
            let request = self.bracket(&stream.0, &stream.1).cloned();
            changes.brackets.push((stream, request));
        }
        changes
    }

    /// Gives back changes a checkpoint could not write, so the next one does.
    pub fn restore_changes(&mut self, changes: Changes) {
        for stored in changes.traces {
            let key: Name = stored.key;
            // What the file holds is unknown now: the next write is whole.
            if let Some(t) = self.traces.get_mut(&key) {
                t.written.base = false;
            }
            self.dirty.insert(key);
        }
        for key in changes.deleted {
            // Unless the key came back meanwhile as a new trace.
            let key: Name = Arc::from(key);
            if !self.traces.contains_key(&key) {
                self.deleted.insert(key);
            } else {
                self.dirty.insert(key);
            }
        }
        for (stream, _) in changes.brackets {
            self.dirty_brackets.insert(stream);
        }
    }

    /// Drops from memory the traces that are closed, summarised, written and
    /// quiet since `before_ms` (wall clock, or with `by_event_time` their
    /// last event's timestamp); they stay in the state file, and their
    /// aliases' fingerprints bring them back when needed. Returns how many
    /// left.
    pub fn evict(&mut self, before_ms: EpochMs, by_event_time: bool) -> usize {
        let gone: Vec<Name> = self
            .traces
            .iter()
            .filter(|(k, t)| {
                t.closed
                    && t.summary_sent
                    && Traces::last(t, by_event_time) < before_ms
                    && !self.dirty.contains(*k)
            })
            .map(|(k, _)| Arc::clone(k))
            .collect();
        for key in &gone {
            if let Some(t) = self.traces.remove(key) {
                for alias in &t.aliases {
                    self.aliases.remove(alias);
                    let fp = self.fingerprint(alias);
                    self.cold.insert(fp, t.last_seen_ms);
                    self.cold_oldest = self.cold_oldest.min(t.last_seen_ms);
                }
            }
        }
        gone.len()
    }

    /// Forgets the fingerprints of evicted traces last seen before
    /// `before_ms`: the state file prunes those traces at the same bound.
    pub fn forget_cold(&mut self, before_ms: EpochMs) {
        if before_ms <= self.cold_oldest {
            return;
        }
        let mut oldest = EpochMs::MAX;
        self.cold.retain(|_, &mut seen| {
            let keep = seen >= before_ms;
            if keep {
                oldest = oldest.min(seen);
            }
            keep
        });
        self.cold_oldest = oldest;
    }

    /// Registers traces present in the state file but not loaded (at start),
    /// so that an event for one of them loads it.
    pub fn remember_cold(&mut self, aliases: impl IntoIterator<Item = (Name, EpochMs)>) {
        for (alias, seen) in aliases {
            let fp = self.fingerprint(&alias);
            self.cold.insert(fp, seen);
            self.cold_oldest = self.cold_oldest.min(seen);
        }
    }
}

/// How delivered events carry their trace key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyField {
    /// As `session_id`: VectaDB creates one trace per session id (default).
    #[default]
    SessionId,
    /// As `trace_id`: VectaDB then takes it as-is and does not create a trace.
    TraceId,
    /// Not at all; the event keeps the session id it had.
    None,
}

impl KeyField {
    pub fn parse(text: &str) -> Option<KeyField> {
        match text {
            "session_id" => Some(KeyField::SessionId),
            "trace_id" => Some(KeyField::TraceId),
            "none" => Some(KeyField::None),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(names: &[&str]) -> Vec<Name> {
        names.iter().map(|&name| name.into()).collect()
    }

    fn ev<'a>(group: &'a str, stream: &'a str, ts: i64) -> TraceInput<'a> {
        TraceInput {
            log_group: group,
            log_stream: stream,
            timestamp_ms: ts,
            ..TraceInput::default()
        }
    }

    fn run(traces: &mut Traces, events: &[TraceInput<'_>]) -> Vec<Assignment> {
        events.iter().map(|e| traces.apply(e, 0)).collect()
    }

    #[test]
    fn bare_lines_inside_a_lambda_bracket_belong_to_its_request_and_streams_stay_apart() {
        let mut traces = Traces::new();
        let start = |stream, r, ts| TraceInput {
            event_type: Some("lambda_start"),
            request_id: Some(r),
            ..ev("/aws/lambda/f", stream, ts)
        };
        let report = |stream, r, ts| TraceInput {
            event_type: Some("lambda_report"),
            request_id: Some(r),
            report: Some(LambdaReport {
                duration_ms: Some(12.5),
                init_duration_ms: Some(200.0),
                ..LambdaReport::default()
            }),
            ..ev("/aws/lambda/f", stream, ts)
        };
        let out = run(
            &mut traces,
            &[
                start("s1", "A", 1),
                start("s2", "B", 2),
                ev("/aws/lambda/f", "s1", 3),
                ev("/aws/lambda/f", "s2", 4),
                report("s1", "A", 5),
                ev("/aws/lambda/f", "s1", 6),
            ],
        );
        let keys: Vec<_> = out.iter().map(|a| a.trace_key.as_deref()).collect();
        assert_eq!(
            keys,
            vec![
                Some("r:A"),
                Some("r:B"),
                Some("r:A"),
                Some("r:B"),
                Some("r:A"),
                None
            ]
        );
        assert_eq!(out[2].bracket_request_id.as_deref(), Some("A"));
        let a = traces.summary("r:A").unwrap();
        assert!(a.closed);
        assert_eq!(a.event_count, 3);
        assert_eq!(a.lambda["A"].duration_ms, Some(12.5));
        assert_eq!(a.lambda["A"].cold_start, Some(true));
        assert!(!traces.summary("r:B").unwrap().closed);
    }

    #[test]
    fn traces_sharing_a_trace_id_across_groups_merge_into_one() {
        let mut traces = Traces::new();
        let out = run(
            &mut traces,
            &[
                // Gateway: trace T, its own request id.
                TraceInput {
                    trace_id: Some("T"),
                    request_id: Some("gw-1"),
                    span_id: Some("a"),
                    ..ev("/gw", "s", 1)
                },
                // Lambda B logs only its request id first...
                TraceInput {
                    request_id: Some("lam-b"),
                    span_id: Some("c"),
                    parent_span_id: Some("b"),
                    is_error: true,
                    service: Some("b"),
                    ..ev("/aws/lambda/b", "s", 3)
                },
                // ...Lambda A links itself to T...
                TraceInput {
                    trace_id: Some("T"),
                    request_id: Some("lam-a"),
                    span_id: Some("b"),
                    parent_span_id: Some("a"),
                    service: Some("a"),
                    ..ev("/aws/lambda/a", "s", 2)
                },
                // ...and later B's line with T merges B's request into the trace.
                TraceInput {
                    trace_id: Some("T"),
                    request_id: Some("lam-b"),
                    ..ev("/aws/lambda/b", "s", 4)
                },
            ],
        );
        assert_eq!(out[0].trace_key.as_deref(), Some("t:T"));
        assert_eq!(out[1].trace_key.as_deref(), Some("r:lam-b"));
        assert_eq!(out[3].trace_key.as_deref(), Some("t:T"));
        assert_eq!(traces.keys_by_first_event(), vec!["t:T".to_string()]);
        let s = traces.summary("t:T").unwrap();
        assert_eq!(s.event_count, 4);
        assert_eq!(s.error_count, 1);
        assert_eq!(
            s.log_groups,
            names(&["/aws/lambda/a", "/aws/lambda/b", "/gw"])
        );
        assert_eq!(s.services, names(&["a", "b"]));
        assert_eq!(s.root_span.as_deref(), Some("a"));
        assert_eq!(s.spans.len(), 1);
        assert_eq!(s.spans[0].children[0].span_id, "b");
        assert_eq!(s.spans[0].children[0].children[0].span_id, "c");
        assert!(s.aliases.contains(&"r:lam-b".into()));
        let changes = traces.take_changes();
        assert_eq!(changes.deleted, vec!["r:lam-b".to_string()]);
        assert_eq!(changes.traces.len(), 1);
    }

    #[test]
    fn the_xray_and_w3c_forms_of_one_trace_id_are_one_trace() {
        let mut traces = Traces::new();
        let out = run(
            &mut traces,
            &[
                TraceInput {
                    trace_id: Some("1-5DDCF71C-b2f975fa52bcf463b3388dc8"),
                    request_id: Some("gw-1"),
                    ..ev("/aws/apigateway/api", "s", 1)
                },
                TraceInput {
                    trace_id: Some("5ddcf71cb2f975fa52bcf463b3388dc8"),
                    request_id: Some("lam-1"),
                    ..ev("/aws/lambda/a", "s", 2)
                },
                // Not an id of either form: kept as it is.
                TraceInput {
                    trace_id: Some("1-5ddcf71c-nothex"),
                    ..ev("/app", "s", 3)
                },
            ],
        );
        let key = "t:5ddcf71cb2f975fa52bcf463b3388dc8";
        assert_eq!(out[0].trace_key.as_deref(), Some(key));
        assert_eq!(out[1].trace_key.as_deref(), Some(key));
        assert_eq!(out[2].trace_key.as_deref(), Some("t:1-5ddcf71c-nothex"));
        assert_eq!(traces.summary(key).unwrap().event_count, 2);
    }

    #[test]
    fn session_only_keys_group_and_events_without_ids_stand_alone() {
        let mut traces = Traces::new();
        let out = run(
            &mut traces,
            &[
                TraceInput {
                    session_id: Some("s1"),
                    ..ev("/g", "s", 1)
                },
                ev("/g", "s", 2),
                TraceInput {
                    session_id: Some("s1"),
                    ..ev("/g", "s", 3)
                },
            ],
        );
        assert_eq!(out[0].trace_key.as_deref(), Some("s:s1"));
        assert_eq!(out[1].trace_key, None);
        assert_eq!(out[2].trace_key.as_deref(), Some("s:s1"));
    }

    #[test]
    fn idle_traces_close_and_summaries_are_marked_once_per_revision() {
        let mut traces = Traces::new();
        let two = |ts| {
            [
                TraceInput {
                    request_id: Some("R"),
                    ..ev("/g", "s", ts)
                },
                TraceInput {
                    request_id: Some("R"),
                    ..ev("/g", "s", ts + 1)
                },
            ]
        };
        run(&mut traces, &two(10));
        assert_eq!(traces.close_idle(100, true), 1);
        let pending = traces.pending_summaries(SummaryPolicy::MultiEvent, 10);
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].revision, 1);
        traces.mark_sent(&[("r:R".into(), 1)]);
        assert!(
            traces
                .pending_summaries(SummaryPolicy::MultiEvent, 10)
                .is_empty()
        );
        // A late event reopens it; closing again gives revision 2.
        run(&mut traces, &two(20)[..1]);
        assert!(
            traces
                .pending_summaries(SummaryPolicy::MultiEvent, 10)
                .is_empty(),
            "open again"
        );
        traces.close_idle(100, true);
        assert_eq!(
            traces.pending_summaries(SummaryPolicy::MultiEvent, 10)[0].revision,
            2
        );
    }

    #[test]
    fn idle_traces_come_longest_idle_first_and_one_that_got_an_event_since_stays_open() {
        let mut traces = Traces::new();
        let at = |r, ts| TraceInput {
            request_id: Some(r),
            ..ev("/g", "s", ts)
        };
        run(&mut traces, &[at("B", 20), at("A", 10), at("C", 90)]);
        let idle = traces.idle(50, true);
        let keys: Vec<&str> = idle.iter().map(|k| &**k).collect();
        assert_eq!(keys, ["r:A", "r:B"], "idle before 50, the oldest first");
        // B gets an event after it was listed: closing leaves it open.
        traces.apply(&at("B", 60), 0);
        assert_eq!(traces.close_if_idle(&idle, 50, true), 1);
        assert!(traces.get("r:A").unwrap().closed);
        assert!(!traces.get("r:B").unwrap().closed);
        assert!(!traces.get("r:C").unwrap().closed);
    }

    #[test]
    fn a_summary_is_due_only_once_its_last_event_is_before_the_bound() {
        // A REPORT closes its trace at once; mid-backfill its summary waits
        // until every group has read past it (other groups may still add
        // events that merge into it).
        let mut traces = Traces::new();
        let report = |r, ts| TraceInput {
            request_id: Some(r),
            event_type: Some("lambda_report"),
            report: Some(LambdaReport {
                duration_ms: Some(1.0),
                ..LambdaReport::default()
            }),
            ..ev("/aws/lambda/f", "s", ts)
        };
        run(&mut traces, &[report("early", 10), report("late", 100)]);
        assert!(traces.get("r:late").unwrap().closed);
        let policy = SummaryPolicy::MultiEvent;
        assert_eq!(traces.due_summaries(policy, 50), ["r:early"]);
        traces.mark_sent(&[("r:early".into(), 1)]);
        assert!(traces.due_summaries(policy, 50).is_empty());
        assert_eq!(traces.due_summaries(policy, EpochMs::MAX), ["r:late"]);
    }

    #[test]
    fn single_event_traces_get_no_summary_by_default_but_a_lambda_report_does() {
        let mut traces = Traces::new();
        run(
            &mut traces,
            &[
                TraceInput {
                    request_id: Some("lonely"),
                    ..ev("/g", "s", 1)
                },
                TraceInput {
                    request_id: Some("L"),
                    event_type: Some("lambda_report"),
                    report: Some(LambdaReport {
                        duration_ms: Some(3.0),
                        ..LambdaReport::default()
                    }),
                    ..ev("/aws/lambda/f", "s", 2)
                },
            ],
        );
        traces.close_idle(i64::MAX, true);
        let due: Vec<String> = traces
            .pending_summaries(SummaryPolicy::MultiEvent, 10)
            .into_iter()
            .map(|s| s.trace_key)
            .collect();
        assert_eq!(due, vec!["r:L".to_string()]);
        // The single-event trace is settled: not due under any later call.
        assert!(traces.get("r:lonely").unwrap().summary_sent);
        let mut all = Traces::new();
        run(
            &mut all,
            &[TraceInput {
                request_id: Some("lonely"),
                ..ev("/g", "s", 1)
            }],
        );
        all.close_idle(i64::MAX, true);
        assert_eq!(all.pending_summaries(SummaryPolicy::All, 10).len(), 1);
        let mut none = Traces::new();
        run(
            &mut none,
            &[TraceInput {
                request_id: Some("L"),
                event_type: Some("lambda_report"),
                ..ev("/g", "s", 1)
            }],
        );
        assert!(none.pending_summaries(SummaryPolicy::None, 10).is_empty());
    }

    #[test]
    fn evicted_traces_are_found_again_through_their_fingerprints() {
        let mut traces = Traces::new();
        let e = TraceInput {
            trace_id: Some("T"),
            request_id: Some("R"),
            ..ev("/g", "s", 1)
        };
        traces.apply(&e, 1_000);
        traces.close_idle(i64::MAX, true);
        traces.pending_summaries(SummaryPolicy::All, 10);
        traces.mark_sent(&[("t:T".into(), 1)]);
        assert_eq!(
            traces.evict(2_000, false),
            0,
            "dirty traces stay until written"
        );
        let written = traces.take_changes();
        assert_eq!(traces.evict(2_000, false), 1);
        assert!(traces.is_empty());
        let late = TraceInput {
            request_id: Some("R"),
            ..ev("/g", "s", 5)
        };
        assert_eq!(traces.cold_aliases(&[late]), vec!["r:R".to_string()]);
        let other = TraceInput {
            request_id: Some("unknown"),
            ..ev("/g", "s", 5)
        };
        assert!(traces.cold_aliases(&[other]).is_empty());
        // The state layer loads it back; the late event joins it.
        traces.restore(
            written
                .traces
                .into_iter()
                .map(|t| (t.key.to_string(), decode_stored(&t.data).unwrap())),
            [],
        );
        assert!(traces.cold_aliases(&[late]).is_empty());
        assert_eq!(traces.apply(&late, 3_000).trace_key.as_deref(), Some("t:T"));
        assert_eq!(traces.get("t:T").unwrap().event_count, 2);
        traces.forget_cold(i64::MAX);
    }

    #[test]
    fn cold_traces_are_forgotten_once_older_than_the_bound_whenever_they_came() {
        let mut traces = Traces::new();
        let alias = |id: &'static str| TraceInput {
            request_id: Some(id),
            ..ev("/g", "s", 5)
        };
        let cold = |traces: &Traces, id| !traces.cold_aliases(&[alias(id)]).is_empty();
        traces.remember_cold([("r:A".into(), 100), ("r:B".into(), 200)]);
        traces.forget_cold(150);
        assert!(!cold(&traces, "A") && cold(&traces, "B"));
        // Nothing left before 150: this pass has nothing to do.
        traces.forget_cold(150);
        assert!(cold(&traces, "B"));
        // An older one registered later is still forgotten at the bound.
        traces.remember_cold([("r:C".into(), 50)]);
        traces.forget_cold(150);
        assert!(!cold(&traces, "C") && cold(&traces, "B"));
        traces.forget_cold(201);
        assert!(!cold(&traces, "B"));
    }

    #[test]
    fn unwritten_changes_are_written_by_the_next_checkpoint() {
        let mut traces = Traces::new();
        traces.apply(
            &TraceInput {
                request_id: Some("R"),
                event_type: Some("lambda_start"),
                ..ev("/g", "s", 1)
            },
            0,
        );
        let failed = traces.take_changes();
        assert_eq!(failed.traces.len(), 1);
        assert_eq!(failed.brackets.len(), 1);
        assert!(traces.take_changes().is_empty());
        traces.restore_changes(failed);
        let again = traces.take_changes();
        assert_eq!(again.traces.len(), 1);
        assert_eq!(again.brackets.len(), 1);
    }

    /// What the state file would hold after the writes of `changes`.
    fn write(file: &mut HashMap<String, Vec<u8>>, changes: Changes) {
        for key in changes.deleted {
            file.remove(&key);
        }
        for t in changes.traces {
            if t.update {
                let row = file
                    .get_mut(&*t.key)
                    .expect("an update follows a stored trace");
                let mut list = Vec::new();
                push_update(&mut list, &t.data);
                extend_stored(row, &list).unwrap();
            } else {
                file.insert(t.key.to_string(), t.data);
            }
        }
    }

    #[test]
    fn whole_writes_and_updates_leave_the_file_holding_the_working_set() {
        // Pseudo-random events over few keys: traces grow, merge, reopen,
        // see a span again with an earlier time, and some writes fail.
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let ids: Vec<String> = (0..40).map(|i| format!("id-{i}")).collect();
        let mut traces = Traces::new();
        let mut file: HashMap<String, Vec<u8>> = HashMap::new();
        let (mut updates, mut wholes) = (0, 0);
        for round in 0..300 {
            for _ in 0..next(12) {
                let span = &ids[next(40) as usize];
                let e = TraceInput {
                    trace_id: (next(3) > 0).then(|| ids[next(30) as usize].as_str()),
                    request_id: (next(4) == 0).then(|| ids[next(40) as usize].as_str()),
                    span_id: (next(2) == 0).then_some(span.as_str()),
                    service: Some(["a", "b", "c"][next(3) as usize]),
                    is_error: next(9) == 0,
                    ..ev(
                        ["/g1", "/g2"][next(2) as usize],
                        "s",
                        1_000 + next(500) as i64,
                    )
                };
                traces.apply(&e, round);
            }
            if next(7) == 0 {
                traces.close_idle(EpochMs::MAX, true);
            }
            let changes = traces.take_changes();
            updates += changes.traces.iter().filter(|t| t.update).count();
            wholes += changes.traces.iter().filter(|t| !t.update).count();
            if next(10) == 0 {
                // The write failed: nothing of it reached the file.
                traces.restore_changes(changes);
            } else {
                write(&mut file, changes);
            }
        }
        write(&mut file, traces.take_changes());
        assert!(updates > wholes, "{updates} updates, {wholes} whole writes");
        assert_eq!(file.len(), traces.traces.len());
        for (key, t) in &traces.traces {
            assert_eq!(&decode_stored(&file[&**key]).unwrap(), t, "{key}");
        }
    }

    #[test]
    fn a_trace_is_written_whole_again_after_many_updates_or_a_change_in_place() {
        let mut traces = Traces::new();
        let at = |span, ts| TraceInput {
            trace_id: Some("T"),
            span_id: Some(span),
            ..ev("/g", "s", ts)
        };
        let kinds = |traces: &mut Traces| -> Vec<bool> {
            traces
                .take_changes()
                .traces
                .iter()
                .map(|t| t.update)
                .collect()
        };
        traces.apply(&at("a", 10), 0);
        assert_eq!(kinds(&mut traces), [false]);
        traces.apply(&at("b", 11), 0);
        assert_eq!(kinds(&mut traces), [true]);
        // Span "a" seen again earlier: changed in place.
        traces.apply(&at("a", 5), 0);
        assert_eq!(kinds(&mut traces), [false]);
        for i in 0..MAX_UPDATES {
            traces.apply(&at("b", 20 + i64::from(i)), 0);
            assert_eq!(kinds(&mut traces), [true]);
        }
        traces.apply(&at("b", 99), 0);
        assert_eq!(kinds(&mut traces), [false]);
        // Read back from the file: whole first.
        let t = traces.traces.values().next().unwrap().clone();
        let mut fresh = Traces::new();
        fresh.restore(
            [(
                "t:T".to_string(),
                decode_stored(&{
                    let mut row = Vec::new();
                    codec::encode(&t, &mut row);
                    row
                })
                .unwrap(),
            )],
            [],
        );
        fresh.apply(&at("c", 100), 0);
        assert_eq!(kinds(&mut fresh), [false]);
    }

    /// The byte at a time reading of a trace id that [`push_alias`] reads a
    /// word at a time.
    fn alias_bytewise(prefix: &str, id: &str) -> String {
        let mut key = prefix.to_string();
        let b = id.as_bytes();
        let hex = |r: &[u8]| r.iter().all(u8::is_ascii_hexdigit);
        if prefix == "t:" && b.len() == 35 && b.starts_with(b"1-") && b[10] == b'-' {
            if hex(&b[2..10]) && hex(&b[11..]) {
                key.push_str(&id[2..10].to_ascii_lowercase());
                key.push_str(&id[11..].to_ascii_lowercase());
                return key;
            }
        } else if prefix == "t:" && b.len() == 32 && hex(b) {
            key.push_str(&id.to_ascii_lowercase());
            return key;
        }
        key.push_str(id);
        key
    }

    #[test]
    fn trace_ids_in_either_form_are_one_alias() {
        let alias = |prefix: &str, id: &str| {
            let mut key = String::new();
            push_alias(&mut key, prefix, id);
            key
        };
        let w3c = "t:5759e988bd862e3fe1be46a994272793";
        assert_eq!(alias("t:", "1-5759e988-bd862e3fe1be46a994272793"), w3c);
        assert_eq!(alias("t:", "1-5759E988-BD862E3FE1BE46A994272793"), w3c);
        assert_eq!(alias("t:", "5759e988bd862e3fe1be46a994272793"), w3c);
        assert_eq!(alias("t:", "5759E988BD862E3FE1BE46A994272793"), w3c);
        // Not hex, or not one of those lengths: as it came.
        for id in [
            "1-5759e988-bd862e3fe1be46a99427279g",
            "5759e988bd862e3fe1be46a99427279",
            "5759e988bd862e3fe1be46a99427279/",
        ] {
            assert_eq!(alias("t:", id), format!("t:{id}"));
        }
        assert_eq!(
            alias("r:", "5759E988BD862E3FE1BE46A994272793"),
            "r:5759E988BD862E3FE1BE46A994272793"
        );
    }

    proptest::proptest! {
        #[test]
        fn a_trace_id_is_read_a_word_at_a_time_as_byte_by_byte(
            digits in "[0-9a-fA-F]{32}",
            xray in proptest::bool::ANY,
            at in 0usize..40,
            odd in proptest::sample::select(vec![
                "", "g", "G", "-", "/", ":", "@", "`", "\u{7f}", "\u{0}", "é", "0",
            ]),
            prefix in proptest::sample::select(vec!["t:", "r:", "s:"]),
        ) {
            let mut id = if xray {
                format!("1-{}-{}", &digits[..8], &digits[8..])
            } else {
                digits
            };
            // Now and then a byte that is not a digit in place of one, or
            // one more.
            let at = at.min(id.len());
            if at < id.len() && at % 2 == 0 {
                id.replace_range(at..at + 1, odd);
            } else {
                id.insert_str(at, odd);
            }
            let mut key = String::new();
            push_alias(&mut key, prefix, &id);
            proptest::prop_assert_eq!(key, alias_bytewise(prefix, &id));
        }
    }
}
