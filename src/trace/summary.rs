//! What a closed trace's `trace_summary` says, and which traces get one.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Invocation, Name, SpanRow, Trace};
use crate::time::{EpochMs, serialize_ms};

/// Which closed traces get a `trace_summary` (`agent.trace_summaries`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SummaryPolicy {
    /// Traces of two or more events, or with a Lambda REPORT (default): a
    /// single log line with its own id says nothing its summary would not.
    #[default]
    MultiEvent,
    /// Every closed trace.
    All,
    /// None.
    None,
}

impl SummaryPolicy {
    pub fn parse(text: &str) -> Option<SummaryPolicy> {
        match text {
            "multi_event" => Some(SummaryPolicy::MultiEvent),
            "all" => Some(SummaryPolicy::All),
            "none" => Some(SummaryPolicy::None),
            _ => None,
        }
    }

    /// Whether `trace` gets a summary when it closes.
    pub fn wants(self, trace: &Trace) -> bool {
        match self {
            SummaryPolicy::MultiEvent => trace.event_count >= 2 || trace.has_report(),
            SummaryPolicy::All => true,
            SummaryPolicy::None => false,
        }
    }
}

/// One span of a trace's tree.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Span {
    pub span_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_span_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<Name>,
    #[serde(rename = "first", serialize_with = "serialize_ms")]
    pub first_ms: EpochMs,
    pub children: Vec<Span>,
}

/// Everything a `trace_summary` says.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraceSummary {
    pub trace_key: String,
    pub revision: i64,
    pub aliases: Vec<Name>,
    pub root_span: Option<String>,
    pub spans: Vec<Span>,
    pub services: Vec<Name>,
    pub log_groups: Vec<Name>,
    #[serde(rename = "first", serialize_with = "serialize_ms")]
    pub first_ms: EpochMs,
    #[serde(rename = "last", serialize_with = "serialize_ms")]
    pub last_ms: EpochMs,
    pub duration_ms: i64,
    pub event_count: u64,
    pub error_count: u64,
    /// Per Lambda request: durations, memory, cold start.
    pub lambda: BTreeMap<String, Invocation>,
    pub closed: bool,
}

impl TraceSummary {
    pub fn of(key: &str, t: &Trace) -> TraceSummary {
        let (root_span, spans) = build_spans(&t.spans);
        // The trace's names, shared with it (no copies).
        fn sorted(v: &[Name]) -> Vec<Name> {
            let mut names = v.to_vec();
            names.sort_unstable();
            names.dedup();
            names
        }
        TraceSummary {
            trace_key: str::to_owned(key),
            revision: t.revision,
            aliases: sorted(&t.aliases),
            root_span,
            spans,
            services: sorted(&t.services),
            log_groups: sorted(&t.log_groups),
            first_ms: t.first_ts,
            last_ms: t.last_ts,
            duration_ms: t.last_ts - t.first_ts,
            event_count: t.event_count,
            error_count: t.error_count,
            lambda: t.lambda.clone(),
            closed: t.closed,
        }
    }

    /// The `log_id` a `trace_summary` event carries: its trace and revision.
    pub fn log_id(&self) -> String {
        let mut revision = itoa::Buffer::new();
        let revision = revision.format(self.revision);
        let mut id = String::with_capacity(15 + self.trace_key.len() + revision.len());
        id.push_str("trace-summary:");
        id.push_str(&self.trace_key);
        id.push(':');
        id.push_str(revision);
        id
    }

    /// The line a `trace_summary` event carries as its `message`.
    pub fn message(&self) -> String {
        let mut text = format!(
            "trace {} closed: {} events, {} errors, {} ms",
            self.trace_key, self.event_count, self.error_count, self.duration_ms,
        );
        if !self.services.is_empty() {
            text.push_str(" across ");
            text.push_str(&self.services.join(", "));
        }
        text
    }
}

fn build_spans(rows: &[SpanRow]) -> (Option<String>, Vec<Span>) {
    let mut ids: Vec<&str> = rows.iter().map(|r| &*r.span_id).collect();
    ids.sort_unstable();
    // Each span's children, in the rows' order: (parent, row) sorted.
    let mut by_parent: Vec<(&str, usize)> = rows
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.parent_span_id.as_deref().map(|p| (p, i)))
        .collect();
    by_parent.sort_unstable();
    fn node(r: &SpanRow, rows: &[SpanRow], by_parent: &[(&str, usize)], depth: usize) -> Span {
        let from = by_parent.partition_point(|(p, _)| *p < &*r.span_id);
        let children = by_parent[from..]
            .iter()
            .take_while(|(p, _)| *p == &*r.span_id);
        Span {
            span_id: str::to_owned(&r.span_id),
            parent_span_id: r.parent_span_id.as_deref().map(str::to_string),
            service: r.service.clone(),
            first_ms: r.first_ts,
            children: if depth > 64 {
                Vec::new()
            } else {
                children
                    .map(|&(_, c)| node(&rows[c], rows, by_parent, depth + 1))
                    .collect()
            },
        }
    }
    // Roots: spans whose parent is absent or unknown in this trace.
    let mut roots: Vec<&SpanRow> = rows
        .iter()
        .filter(|r| {
            r.parent_span_id
                .as_deref()
                .is_none_or(|p| ids.binary_search(&p).is_err())
        })
        .collect();
    roots.sort_by_key(|r| (r.parent_span_id.is_some(), r.first_ts));
    let root = roots.first().map(|r| str::to_owned(&r.span_id));
    let tree = roots.iter().map(|r| node(r, rows, &by_parent, 0)).collect();
    (root, tree)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(span: &str, parent: Option<&str>, first_ts: EpochMs) -> SpanRow {
        SpanRow {
            span_id: span.into(),
            parent_span_id: parent.map(Into::into),
            service: None,
            first_ts,
        }
    }

    /// (span, children) as a string: `a(c,b(d))`.
    fn shape(spans: &[Span]) -> String {
        spans
            .iter()
            .map(|s| {
                if s.children.is_empty() {
                    s.span_id.clone()
                } else {
                    format!("{}({})", s.span_id, shape(&s.children))
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    #[test]
    fn spans_form_a_tree_children_in_the_order_they_came_roots_without_parent_first() {
        let rows = [
            row("x", Some("unknown"), 1),
            row("c", Some("a"), 5),
            row("a", None, 4),
            row("b", Some("a"), 3),
            row("d", Some("b"), 6),
            row("e", Some("c"), 2),
        ];
        let (root, tree) = build_spans(&rows);
        assert_eq!(root.as_deref(), Some("a"));
        assert_eq!(shape(&tree), "a(c(e),b(d)),x");
        assert_eq!(tree[1].parent_span_id.as_deref(), Some("unknown"));
        // A span that names itself as parent stops at the depth limit.
        let (_, tree) = build_spans(&[row("s", Some("s"), 1), row("t", None, 2)]);
        assert_eq!(shape(&tree), "t");
        assert_eq!(build_spans(&[]), (None, Vec::new()));
    }
}
