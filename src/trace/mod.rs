//! Grouping events into traces.
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
//! All trace state lives in SQLite and is changed by [`apply`] inside the
//! checkpoint transaction that records the same events as delivered, so a
//! crash or restart never splits or forgets a trace. Before delivery the same
//! function runs in a transaction that is rolled back, to learn each event's
//! trace key (see [`crate::state::StateStore::resolve_traces`]).
//!
//! A trace closes at a Lambda `REPORT` line once none of its requests is still
//! open, or after `agent.trace_idle_secs` without events; a closed trace gets
//! one `trace_summary` event downstream. Events arriving for a closed trace
//! reopen it, and its next closing emits a summary with a higher `revision`.

use std::collections::BTreeSet;

use rusqlite::{OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::event::{OutEvent, Source};
use crate::parse::Parsed;
use crate::time::{EpochMs, format_ms};

/// The facts about one event that grouping needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TraceInput {
    pub log_group: String,
    pub log_stream: String,
    pub timestamp_ms: EpochMs,
    pub trace_id: Option<String>,
    pub request_id: Option<String>,
    pub session_id: Option<String>,
    pub span_id: Option<String>,
    pub parent_span_id: Option<String>,
    pub service: Option<String>,
    pub is_error: bool,
    pub event_type: Option<String>,
    /// From a Lambda REPORT line.
    pub report: Option<LambdaReport>,
}

/// What a Lambda REPORT line says about one invocation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LambdaReport {
    pub duration_ms: Option<f64>,
    pub billed_duration_ms: Option<f64>,
    pub memory_size_mb: Option<f64>,
    pub max_memory_used_mb: Option<f64>,
    /// Present only on a cold start.
    pub init_duration_ms: Option<f64>,
}

impl TraceInput {
    /// Collects the grouping facts from a parsed event.
    pub fn from_parsed(
        log_group: &str,
        log_stream: &str,
        timestamp_ms: EpochMs,
        parsed: &Parsed,
    ) -> TraceInput {
        let f = &parsed.fields;
        let number = |key: &str| parsed.properties.get(key).and_then(Value::as_f64);
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
            log_group: log_group.to_string(),
            log_stream: log_stream.to_string(),
            timestamp_ms,
            trace_id: non_empty(&f.trace_id),
            request_id: non_empty(&f.request_id),
            session_id: non_empty(&f.session_id),
            span_id: non_empty(&f.span_id),
            parent_span_id: non_empty(&f.parent_span_id),
            service: non_empty(&f.service).or_else(|| service_from_group(log_group)),
            is_error: level_error || f.error.as_deref().is_some_and(|e| !e.is_empty()),
            event_type: f.event_type.clone(),
            report,
        }
    }
}

fn non_empty(v: &Option<String>) -> Option<String> {
    v.as_ref().filter(|s| !s.trim().is_empty()).cloned()
}

/// `/aws/lambda/checkout-api` -> `checkout-api`: a Lambda's service name.
fn service_from_group(group: &str) -> Option<String> {
    group
        .strip_prefix("/aws/lambda/")
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Where one event landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The trace key (`t:<trace id>`, `r:<request id>` or `s:<session id>`);
    /// `None` for an event without correlation ids.
    pub trace_key: Option<String>,
    /// The request id, filled from the stream's START bracket when the line
    /// itself has none.
    pub request_id: Option<String>,
}

/// Schema of the trace tables (migration 2 of the state file).
pub const SCHEMA: &str = "
    CREATE TABLE traces (
        trace_key       TEXT PRIMARY KEY,
        first_ts        INTEGER NOT NULL,
        last_ts         INTEGER NOT NULL,
        event_count     INTEGER NOT NULL DEFAULT 0,
        error_count     INTEGER NOT NULL DEFAULT 0,
        services        TEXT NOT NULL DEFAULT '[]',
        log_groups      TEXT NOT NULL DEFAULT '[]',
        root_span       TEXT,
        open_requests   TEXT NOT NULL DEFAULT '[]',
        lambda          TEXT NOT NULL DEFAULT '{}',
        last_seen_ms    INTEGER NOT NULL,
        closed          INTEGER NOT NULL DEFAULT 0,
        revision        INTEGER NOT NULL DEFAULT 0,
        summary_sent    INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX traces_open ON traces (closed, last_seen_ms);
    CREATE TABLE trace_aliases (
        alias      TEXT PRIMARY KEY,
        trace_key  TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX trace_aliases_by_trace ON trace_aliases (trace_key);
    CREATE TABLE trace_spans (
        trace_key       TEXT NOT NULL,
        span_id         TEXT NOT NULL,
        parent_span_id  TEXT,
        service         TEXT,
        first_ts        INTEGER NOT NULL,
        PRIMARY KEY (trace_key, span_id)
    ) WITHOUT ROWID;
    CREATE TABLE lambda_brackets (
        log_group   TEXT NOT NULL,
        log_stream  TEXT NOT NULL,
        request_id  TEXT NOT NULL,
        PRIMARY KEY (log_group, log_stream)
    ) WITHOUT ROWID;
";

fn json_set(text: &str) -> BTreeSet<String> {
    serde_json::from_str(text).unwrap_or_default()
}

fn json_text<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

/// One trace row, held in memory while a batch is applied.
#[derive(Debug, Clone)]
struct TraceRow {
    first_ts: i64,
    last_ts: i64,
    event_count: i64,
    error_count: i64,
    services: BTreeSet<String>,
    log_groups: BTreeSet<String>,
    open_requests: BTreeSet<String>,
    lambda: serde_json::Map<String, Value>,
    last_seen_ms: i64,
    closed: bool,
    revision: i64,
    summary_sent: bool,
}

/// The rows one `apply` call touches: read once, written back once at the
/// end. Aliases and spans are written as they come (merges rewrite them in
/// SQL, which must see every earlier write).
struct Work<'t, 'c> {
    tx: &'t Transaction<'c>,
    traces: std::collections::HashMap<String, TraceRow>,
    deleted: BTreeSet<String>,
    aliases: std::collections::HashMap<String, Option<String>>,
    brackets: std::collections::HashMap<(String, String), Option<String>>,
}

impl<'t, 'c> Work<'t, 'c> {
    fn new(tx: &'t Transaction<'c>) -> Self {
        Work {
            tx,
            traces: Default::default(),
            deleted: BTreeSet::new(),
            aliases: Default::default(),
            brackets: Default::default(),
        }
    }

    fn alias(&mut self, alias: &str) -> rusqlite::Result<Option<String>> {
        if let Some(cached) = self.aliases.get(alias) {
            return Ok(cached.clone());
        }
        let key: Option<String> = self
            .tx
            .prepare_cached("SELECT trace_key FROM trace_aliases WHERE alias = ?1")?
            .query_row([alias], |r| r.get(0))
            .optional()?;
        self.aliases.insert(alias.to_string(), key.clone());
        Ok(key)
    }

    fn set_alias(&mut self, alias: &str, key: &str) -> rusqlite::Result<()> {
        if self.alias(alias)?.is_none() {
            self.tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO trace_aliases (alias, trace_key) VALUES (?1, ?2)",
                )?
                .execute(params![alias, key])?;
            self.aliases
                .insert(alias.to_string(), Some(key.to_string()));
        }
        Ok(())
    }

    fn trace(&mut self, key: &str) -> rusqlite::Result<Option<&mut TraceRow>> {
        if !self.traces.contains_key(key) {
            let row = self
                .tx
                .prepare_cached(
                    "SELECT first_ts, last_ts, event_count, error_count, services, log_groups, open_requests,
                            lambda, last_seen_ms, closed, revision, summary_sent
                     FROM traces WHERE trace_key = ?1",
                )?
                .query_row([key], |r| {
                    Ok(TraceRow {
                        first_ts: r.get(0)?,
                        last_ts: r.get(1)?,
                        event_count: r.get(2)?,
                        error_count: r.get(3)?,
                        services: json_set(&r.get::<_, String>(4)?),
                        log_groups: json_set(&r.get::<_, String>(5)?),
                        open_requests: json_set(&r.get::<_, String>(6)?),
                        lambda: serde_json::from_str(&r.get::<_, String>(7)?).unwrap_or_default(),
                        last_seen_ms: r.get(8)?,
                        closed: r.get::<_, i64>(9)? == 1,
                        revision: r.get(10)?,
                        summary_sent: r.get::<_, i64>(11)? == 1,
                    })
                })
                .optional()?;
            match row {
                Some(row) => {
                    self.traces.insert(key.to_string(), row);
                }
                None => return Ok(None),
            }
        }
        Ok(self.traces.get_mut(key))
    }

    fn bracket(&mut self, group: &str, stream: &str) -> rusqlite::Result<Option<String>> {
        let k = (group.to_string(), stream.to_string());
        if let Some(cached) = self.brackets.get(&k) {
            return Ok(cached.clone());
        }
        let request: Option<String> = self
            .tx
            .prepare_cached(
                "SELECT request_id FROM lambda_brackets WHERE log_group = ?1 AND log_stream = ?2",
            )?
            .query_row(params![group, stream], |r| r.get(0))
            .optional()?;
        self.brackets.insert(k, request.clone());
        Ok(request)
    }

    /// Merges trace `from` into `into`: aliases, spans, counters, sets.
    fn merge(&mut self, into: &str, from: &str) -> rusqlite::Result<()> {
        if into == from {
            return Ok(());
        }
        let Some(other) = self.trace(from)?.cloned() else {
            return Ok(());
        };
        self.tx.execute(
            "UPDATE trace_aliases SET trace_key = ?1 WHERE trace_key = ?2",
            params![into, from],
        )?;
        for v in self.aliases.values_mut() {
            if v.as_deref() == Some(from) {
                *v = Some(into.to_string());
            }
        }
        self.tx.execute(
            "INSERT OR IGNORE INTO trace_spans (trace_key, span_id, parent_span_id, service, first_ts)
             SELECT ?1, span_id, parent_span_id, service, first_ts FROM trace_spans WHERE trace_key = ?2",
            params![into, from],
        )?;
        self.tx
            .execute("DELETE FROM trace_spans WHERE trace_key = ?1", [from])?;
        if let Some(t) = self.trace(into)? {
            t.first_ts = t.first_ts.min(other.first_ts);
            t.last_ts = t.last_ts.max(other.last_ts);
            t.event_count += other.event_count;
            t.error_count += other.error_count;
            t.services.extend(other.services);
            t.log_groups.extend(other.log_groups);
            t.open_requests.extend(other.open_requests);
            for (k, v) in other.lambda {
                t.lambda.entry(k).or_insert(v);
            }
            t.last_seen_ms = t.last_seen_ms.max(other.last_seen_ms);
            // Merged traces are open unless both were closed.
            t.closed = t.closed && other.closed;
        }
        self.traces.remove(from);
        self.deleted.insert(from.to_string());
        Ok(())
    }

    /// Writes every touched row back.
    fn flush(self) -> rusqlite::Result<()> {
        for key in &self.deleted {
            self.tx
                .execute("DELETE FROM traces WHERE trace_key = ?1", [key])?;
        }
        let mut upsert = self.tx.prepare_cached(
            "INSERT OR REPLACE INTO traces (trace_key, first_ts, last_ts, event_count, error_count, services,
                 log_groups, open_requests, lambda, last_seen_ms, closed, revision, summary_sent)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )?;
        for (key, t) in &self.traces {
            upsert.execute(params![
                key,
                t.first_ts,
                t.last_ts,
                t.event_count,
                t.error_count,
                json_text(&t.services),
                json_text(&t.log_groups),
                json_text(&t.open_requests),
                json_text(&t.lambda),
                t.last_seen_ms,
                t.closed as i64,
                t.revision,
                t.summary_sent as i64,
            ])?;
        }
        for ((group, stream), request) in &self.brackets {
            match request {
                Some(r) => self.tx.execute(
                    "INSERT INTO lambda_brackets (log_group, log_stream, request_id) VALUES (?1, ?2, ?3)
                     ON CONFLICT (log_group, log_stream) DO UPDATE SET request_id = excluded.request_id",
                    params![group, stream, r],
                )?,
                None => self.tx.execute(
                    "DELETE FROM lambda_brackets WHERE log_group = ?1 AND log_stream = ?2",
                    params![group, stream],
                )?,
            };
        }
        Ok(())
    }
}

/// Applies events to the trace state in `tx`, in order, and returns where each
/// landed. `now_ms` is the wall clock (for idle closing).
pub fn apply(
    tx: &Transaction<'_>,
    events: &[TraceInput],
    now_ms: EpochMs,
) -> rusqlite::Result<Vec<Assignment>> {
    let mut work = Work::new(tx);
    let mut out = Vec::with_capacity(events.len());
    for e in events {
        out.push(apply_one(&mut work, e, now_ms)?);
    }
    work.flush()?;
    Ok(out)
}

fn apply_one(
    w: &mut Work<'_, '_>,
    e: &TraceInput,
    now_ms: EpochMs,
) -> rusqlite::Result<Assignment> {
    let event_type = e.event_type.as_deref().unwrap_or("");
    // Lambda bracketing, per stream.
    let mut request_id = e.request_id.clone();
    let stream_key = (e.log_group.clone(), e.log_stream.clone());
    if event_type == "lambda_start" {
        if let Some(r) = &request_id {
            w.brackets.insert(stream_key.clone(), Some(r.clone()));
        }
    } else if request_id.is_none() {
        request_id = w.bracket(&e.log_group, &e.log_stream)?;
    }
    if matches!(event_type, "lambda_report" | "lambda_end")
        && let Some(r) = &request_id
        && w.bracket(&e.log_group, &e.log_stream)?.as_deref() == Some(r.as_str())
    {
        w.brackets.insert(stream_key, None);
    }

    // Correlation keys, most specific first.
    let mut aliases = Vec::with_capacity(2);
    if let Some(t) = &e.trace_id {
        aliases.push(format!("t:{t}"));
    }
    if let Some(r) = &request_id {
        aliases.push(format!("r:{r}"));
    }
    if aliases.is_empty()
        && let Some(s) = &e.session_id
    {
        aliases.push(format!("s:{s}"));
    }
    if aliases.is_empty() {
        return Ok(Assignment {
            trace_key: None,
            request_id,
        });
    }

    // Find the traces these keys already belong to; merge them into the oldest.
    let mut found: Vec<(i64, String)> = Vec::new();
    for alias in &aliases {
        if let Some(key) = w.alias(alias)?
            && !found.iter().any(|(_, k)| *k == key)
        {
            let first = w.trace(&key)?.map(|t| t.first_ts).unwrap_or(i64::MAX);
            found.push((first, key));
        }
    }
    found.sort();
    let key = match found.first() {
        None => {
            let key = aliases[0].clone();
            w.traces.insert(
                key.clone(),
                TraceRow {
                    first_ts: e.timestamp_ms,
                    last_ts: e.timestamp_ms,
                    event_count: 0,
                    error_count: 0,
                    services: BTreeSet::new(),
                    log_groups: BTreeSet::new(),
                    open_requests: BTreeSet::new(),
                    lambda: serde_json::Map::new(),
                    last_seen_ms: now_ms,
                    closed: false,
                    revision: 0,
                    summary_sent: false,
                },
            );
            key
        }
        Some((_, into)) => {
            let into = into.clone();
            for (_, other) in &found[1..] {
                w.merge(&into, other)?;
            }
            into
        }
    };
    for alias in &aliases {
        w.set_alias(alias, &key)?;
    }
    if let Some(span) = &e.span_id {
        w.tx.prepare_cached(
            "INSERT INTO trace_spans (trace_key, span_id, parent_span_id, service, first_ts) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (trace_key, span_id) DO UPDATE SET
               parent_span_id = COALESCE(trace_spans.parent_span_id, excluded.parent_span_id),
               first_ts = MIN(trace_spans.first_ts, excluded.first_ts)",
        )?
        .execute(params![key, span, e.parent_span_id, e.service, e.timestamp_ms])?;
    }

    // Update the trace.
    let Some(t) = w.trace(&key)? else {
        return Ok(Assignment {
            trace_key: Some(key),
            request_id,
        });
    };
    t.first_ts = t.first_ts.min(e.timestamp_ms);
    t.last_ts = t.last_ts.max(e.timestamp_ms);
    t.event_count += 1;
    t.error_count += e.is_error as i64;
    if let Some(s) = &e.service {
        t.services.insert(s.clone());
    }
    t.log_groups.insert(e.log_group.clone());
    t.last_seen_ms = now_ms;
    // An event for a closed trace reopens it.
    if t.closed {
        t.closed = false;
        t.summary_sent = false;
    }
    if let Some(r) = &request_id {
        match event_type {
            "lambda_start" => {
                t.open_requests.insert(r.clone());
                let entry = t.lambda.entry(r.clone()).or_insert_with(|| json!({}));
                entry["log_group"] = json!(e.log_group);
                entry["start"] = json!(format_ms(e.timestamp_ms));
            }
            "lambda_end" => {
                t.open_requests.remove(r);
            }
            "lambda_report" => {
                t.open_requests.remove(r);
                let entry = t.lambda.entry(r.clone()).or_insert_with(|| json!({}));
                entry["log_group"] = json!(e.log_group);
                if let Some(rep) = &e.report {
                    if let (Some(obj), Ok(Value::Object(src))) =
                        (entry.as_object_mut(), serde_json::to_value(rep))
                    {
                        for (k, v) in src {
                            if !v.is_null() {
                                obj.insert(k, v);
                            }
                        }
                    }
                    entry["cold_start"] = json!(rep.init_duration_ms.is_some());
                }
                if t.open_requests.is_empty() {
                    t.closed = true;
                    t.summary_sent = false;
                    t.revision += 1;
                }
            }
            _ => {}
        }
    }
    Ok(Assignment {
        trace_key: Some(key),
        request_id,
    })
}

/// Closes open traces without events since `idle_before_ms` (wall clock);
/// with `by_event_time`, compares the trace's last event timestamp instead.
pub fn close_idle(
    tx: &Transaction<'_>,
    idle_before_ms: EpochMs,
    by_event_time: bool,
) -> rusqlite::Result<usize> {
    let column = if by_event_time {
        "last_ts"
    } else {
        "last_seen_ms"
    };
    tx.execute(
        &format!(
            "UPDATE traces SET closed = 1, revision = revision + 1, summary_sent = 0
             WHERE closed = 0 AND {column} < ?1"
        ),
        [idle_before_ms],
    )
}

/// One span of a trace's tree.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Span {
    pub span_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_span_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub first: String,
    pub children: Vec<Span>,
}

/// Everything a `trace_summary` says.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraceSummary {
    pub trace_key: String,
    pub revision: i64,
    pub aliases: Vec<String>,
    pub root_span: Option<String>,
    pub spans: Vec<Span>,
    pub services: Vec<String>,
    pub log_groups: Vec<String>,
    pub first: String,
    pub last: String,
    #[serde(skip)]
    pub first_ms: EpochMs,
    #[serde(skip)]
    pub last_ms: EpochMs,
    pub duration_ms: i64,
    pub event_count: i64,
    pub error_count: i64,
    /// Per Lambda request: durations, memory, cold start.
    pub lambda: Value,
    pub closed: bool,
}

fn build_spans(
    rows: Vec<(String, Option<String>, Option<String>, i64)>,
) -> (Option<String>, Vec<Span>) {
    let ids: BTreeSet<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    fn children(
        parent: &str,
        rows: &[(String, Option<String>, Option<String>, i64)],
        depth: usize,
    ) -> Vec<Span> {
        if depth > 64 {
            return Vec::new();
        }
        rows.iter()
            .filter(|r| r.1.as_deref() == Some(parent))
            .map(|r| Span {
                span_id: r.0.clone(),
                parent_span_id: r.1.clone(),
                service: r.2.clone(),
                first: format_ms(r.3),
                children: children(&r.0, rows, depth + 1),
            })
            .collect()
    }
    // Roots: spans whose parent is absent or unknown in this trace.
    let mut roots: Vec<_> = rows
        .iter()
        .filter(|r| r.1.as_deref().is_none_or(|p| !ids.contains(p)))
        .collect();
    roots.sort_by_key(|r| (r.1.is_some(), r.3));
    let root = roots.first().map(|r| r.0.clone());
    let tree = roots
        .iter()
        .map(|r| Span {
            span_id: r.0.clone(),
            parent_span_id: r.1.clone(),
            service: r.2.clone(),
            first: format_ms(r.3),
            children: children(&r.0, &rows, 0),
        })
        .collect();
    (root, tree)
}

/// Reads one trace's summary.
pub fn summary(conn: &rusqlite::Connection, key: &str) -> rusqlite::Result<Option<TraceSummary>> {
    let row = conn
        .query_row(
            "SELECT first_ts, last_ts, event_count, error_count, services, log_groups, lambda, closed, revision
             FROM traces WHERE trace_key = ?1",
            [key],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, i64>(7)?,
                    r.get::<_, i64>(8)?,
                ))
            },
        )
        .optional()?;
    let Some((first, last, events, errors, services, groups, lambda, closed, revision)) = row
    else {
        return Ok(None);
    };
    let mut aliases: Vec<String> = conn
        .prepare_cached("SELECT alias FROM trace_aliases WHERE trace_key = ?1 ORDER BY alias")?
        .query_map([key], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    aliases.sort();
    let spans: Vec<(String, Option<String>, Option<String>, i64)> = conn
        .prepare_cached("SELECT span_id, parent_span_id, service, first_ts FROM trace_spans WHERE trace_key = ?1")?
        .query_map([key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let (root_span, spans) = build_spans(spans);
    Ok(Some(TraceSummary {
        trace_key: key.to_string(),
        revision,
        aliases,
        root_span,
        spans,
        services: json_set(&services).into_iter().collect(),
        log_groups: json_set(&groups).into_iter().collect(),
        first: format_ms(first),
        last: format_ms(last),
        first_ms: first,
        last_ms: last,
        duration_ms: last - first,
        event_count: events,
        error_count: errors,
        lambda: serde_json::from_str(&lambda).unwrap_or(Value::Null),
        closed: closed == 1,
    }))
}

/// Closed traces whose summary has not been delivered yet.
pub fn pending_summaries(
    conn: &rusqlite::Connection,
    limit: usize,
) -> rusqlite::Result<Vec<TraceSummary>> {
    let keys: Vec<String> = conn
        .prepare_cached(
            "SELECT trace_key FROM traces WHERE closed = 1 AND summary_sent = 0 ORDER BY last_ts LIMIT ?1",
        )?
        .query_map([limit as i64], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        if let Some(s) = summary(conn, &key)? {
            out.push(s);
        }
    }
    Ok(out)
}

/// Marks summaries delivered, unless the trace was reopened meanwhile (its
/// revision moved on).
pub fn mark_sent(tx: &Transaction<'_>, sent: &[(String, i64)]) -> rusqlite::Result<()> {
    for (key, revision) in sent {
        tx.execute(
            "UPDATE traces SET summary_sent = 1 WHERE trace_key = ?1 AND revision = ?2 AND closed = 1",
            params![key, revision],
        )?;
    }
    Ok(())
}

/// Every trace key, ordered by first event (for `parse-test`).
pub fn all_keys(conn: &rusqlite::Connection) -> rusqlite::Result<Vec<String>> {
    conn.prepare("SELECT trace_key FROM traces ORDER BY first_ts, trace_key")?
        .query_map([], |r| r.get(0))?
        .collect()
}

/// How the downstream event carries the trace key.
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

/// The downstream `trace_summary` event for a closed trace.
pub fn summary_event(s: &TraceSummary, key_field: KeyField) -> OutEvent {
    let mut properties = match serde_json::to_value(s) {
        Ok(Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    properties.insert(
        "message".into(),
        json!(format!(
            "trace {} closed: {} events, {} errors, {} ms across {}",
            s.trace_key,
            s.event_count,
            s.error_count,
            s.duration_ms,
            s.services.join(", ")
        )),
    );
    let key = s.trace_key.clone();
    OutEvent {
        timestamp: format_ms(s.last_ms),
        event_type: Some("trace_summary".into()),
        agent_id: None,
        session_id: (key_field == KeyField::SessionId).then(|| key.clone()),
        trace_id: (key_field == KeyField::TraceId).then(|| key.clone()),
        properties,
        source: Source {
            system: "cloudwatch",
            log_group: s.log_groups.first().cloned().unwrap_or_default(),
            log_stream: "cwtap/trace-summary".into(),
            log_id: format!("trace-summary:{key}:{}", s.revision),
        },
        timestamp_ms: s.last_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> rusqlite::Connection {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        conn
    }

    fn ev(group: &str, stream: &str, ts: i64) -> TraceInput {
        TraceInput {
            log_group: group.into(),
            log_stream: stream.into(),
            timestamp_ms: ts,
            ..TraceInput::default()
        }
    }

    fn run(conn: &mut rusqlite::Connection, events: &[TraceInput]) -> Vec<Assignment> {
        let tx = conn.transaction().unwrap();
        let out = apply(&tx, events, 0).unwrap();
        tx.commit().unwrap();
        out
    }

    #[test]
    fn bare_lines_inside_a_lambda_bracket_belong_to_its_request_and_streams_stay_apart() {
        let mut conn = db();
        let start = |stream: &str, r: &str, ts| TraceInput {
            event_type: Some("lambda_start".into()),
            request_id: Some(r.into()),
            ..ev("/aws/lambda/f", stream, ts)
        };
        let report = |stream: &str, r: &str, ts| TraceInput {
            event_type: Some("lambda_report".into()),
            request_id: Some(r.into()),
            report: Some(LambdaReport {
                duration_ms: Some(12.5),
                init_duration_ms: Some(200.0),
                ..LambdaReport::default()
            }),
            ..ev("/aws/lambda/f", stream, ts)
        };
        let out = run(
            &mut conn,
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
        let a = summary(&conn, "r:A").unwrap().unwrap();
        assert!(a.closed);
        assert_eq!(a.event_count, 3);
        assert_eq!(a.lambda["A"]["duration_ms"], 12.5);
        assert_eq!(a.lambda["A"]["cold_start"], true);
        assert!(!summary(&conn, "r:B").unwrap().unwrap().closed);
    }

    #[test]
    fn traces_sharing_a_trace_id_across_groups_merge_into_one() {
        let mut conn = db();
        let out = run(
            &mut conn,
            &[
                // Gateway: trace T, its own request id.
                TraceInput {
                    trace_id: Some("T".into()),
                    request_id: Some("gw-1".into()),
                    span_id: Some("a".into()),
                    ..ev("/gw", "s", 1)
                },
                // Lambda B logs only its request id first...
                TraceInput {
                    request_id: Some("lam-b".into()),
                    span_id: Some("c".into()),
                    parent_span_id: Some("b".into()),
                    is_error: true,
                    service: Some("b".into()),
                    ..ev("/aws/lambda/b", "s", 3)
                },
                // ...Lambda A links itself to T...
                TraceInput {
                    trace_id: Some("T".into()),
                    request_id: Some("lam-a".into()),
                    span_id: Some("b".into()),
                    parent_span_id: Some("a".into()),
                    service: Some("a".into()),
                    ..ev("/aws/lambda/a", "s", 2)
                },
                // ...and later B's line with T merges B's request into the trace.
                TraceInput {
                    trace_id: Some("T".into()),
                    request_id: Some("lam-b".into()),
                    ..ev("/aws/lambda/b", "s", 4)
                },
            ],
        );
        assert_eq!(out[0].trace_key.as_deref(), Some("t:T"));
        assert_eq!(out[1].trace_key.as_deref(), Some("r:lam-b"));
        assert_eq!(out[3].trace_key.as_deref(), Some("t:T"));
        let keys = all_keys(&conn).unwrap();
        assert_eq!(keys, vec!["t:T".to_string()], "one trace after the merge");
        let s = summary(&conn, "t:T").unwrap().unwrap();
        assert_eq!(s.event_count, 4);
        assert_eq!(s.error_count, 1);
        assert_eq!(s.log_groups, vec!["/aws/lambda/a", "/aws/lambda/b", "/gw"]);
        assert_eq!(s.services, vec!["a", "b"]);
        assert_eq!(s.root_span.as_deref(), Some("a"));
        assert_eq!(s.spans.len(), 1);
        assert_eq!(s.spans[0].children[0].span_id, "b");
        assert_eq!(s.spans[0].children[0].children[0].span_id, "c");
        assert!(s.aliases.contains(&"r:lam-b".to_string()));
    }

    #[test]
    fn session_only_keys_group_and_events_without_ids_stand_alone() {
        let mut conn = db();
        let out = run(
            &mut conn,
            &[
                TraceInput {
                    session_id: Some("s1".into()),
                    ..ev("/g", "s", 1)
                },
                ev("/g", "s", 2),
                TraceInput {
                    session_id: Some("s1".into()),
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
        let mut conn = db();
        run(
            &mut conn,
            &[TraceInput {
                request_id: Some("R".into()),
                ..ev("/g", "s", 10)
            }],
        );
        let tx = conn.transaction().unwrap();
        assert_eq!(close_idle(&tx, 100, true).unwrap(), 1);
        tx.commit().unwrap();
        let pending = pending_summaries(&conn, 10).unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].revision, 1);
        let tx = conn.transaction().unwrap();
        mark_sent(&tx, &[("r:R".into(), 1)]).unwrap();
        tx.commit().unwrap();
        assert!(pending_summaries(&conn, 10).unwrap().is_empty());
        // A late event reopens it; closing again gives revision 2.
        run(
            &mut conn,
            &[TraceInput {
                request_id: Some("R".into()),
                ..ev("/g", "s", 20)
            }],
        );
        assert!(
            pending_summaries(&conn, 10).unwrap().is_empty(),
            "open again"
        );
        let tx = conn.transaction().unwrap();
        close_idle(&tx, 100, true).unwrap();
        tx.commit().unwrap();
        assert_eq!(pending_summaries(&conn, 10).unwrap()[0].revision, 2);
    }
}
