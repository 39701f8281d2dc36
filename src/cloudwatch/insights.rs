//! Logs Insights queries, and finding every event of one trace or request.
//!
//! A query is started with StartQuery (times in epoch SECONDS, groups by name
//! or ARN), polled with GetQueryResults at growing intervals (250 ms up to
//! 5 s) through Scheduled and Running until Complete, Failed, Cancelled or
//! Timeout, and stopped with StopQuery when cwtap gives up waiting or is
//! interrupted, so that it stops costing money.
//!
//! [`CloudWatch::trace_events`] finds the events mentioning an id with a
//! query, or with FilterLogEvents and the quoted id as filter pattern where
//! Insights is not available (some emulators, or a policy without
//! `logs:StartQuery`). Either way each message is checked to contain the id,
//! so an endpoint that ignores the filter still gives the right answer.

use std::time::{Duration, Instant};

use aws_sdk_cloudwatchlogs::types::QueryStatus;
use serde::Serialize;

use super::{CloudWatch, CloudWatchError, ScanRequest};
use crate::config::StreamFilter;
use crate::shutdown::Shutdown;
use crate::time::EpochMs;

/// Most log groups one query may name.
pub const MAX_QUERY_GROUPS: usize = 50;
/// Most rows one query returns.
pub const MAX_QUERY_ROWS: i32 = 10_000;

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
pub enum InsightsError {
    /// MalformedQueryException, with CloudWatch's reason.
    #[error("the query is malformed: {message}\n  query: {query}")]
    Malformed { query: String, message: String },
    /// The query ended without results (Failed, Cancelled, Timeout).
    #[error("query {query_id} ended with status {status}: {hint}")]
    Ended {
        query_id: String,
        status: String,
        hint: &'static str,
    },
    /// cwtap stopped waiting and stopped the query.
    #[error(
        "query {query_id} did not complete within {timeout:?} and was stopped: narrow --since/--until or raise --timeout"
    )]
    TimedOut { query_id: String, timeout: Duration },
    /// Shutdown (Ctrl-C) came first; the query was stopped.
    #[error("query {query_id} was interrupted and stopped")]
    Interrupted { query_id: String },
    /// The endpoint has no Insights (or refuses StartQuery).
    #[error("Logs Insights is not available at this endpoint: {message}")]
    Unavailable { message: String },
    /// A named group does not exist.
    #[error(
        "a log group of the query was not found in region {region} ({groups}): check the names with `cwtap groups list`"
    )]
    GroupNotFound { groups: String, region: String },
    /// Values out of range (groups, limit, time window, id).
    #[error("{0}")]
    Usage(String),
    /// Any other failed call.
    #[error(transparent)]
    CloudWatch(#[from] CloudWatchError),
}

impl InsightsError {
    /// Errors in what the user typed (exit code 2).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            InsightsError::Usage(_) | InsightsError::Malformed { .. }
        )
    }
}

/// What to ask Logs Insights.
#[derive(Debug, Clone)]
pub struct QueryRequest {
    pub query: String,
    /// Names or ARNs (at most 50).
    pub groups: Vec<String>,
    /// Event time bounds in ms; sent as whole seconds covering them.
    pub start_ms: EpochMs,
    pub end_ms: EpochMs,
    /// Most rows (1 to 10,000); `None` is the query's own or 1,000.
    pub limit: Option<i32>,
    /// How long to wait for the query before stopping it.
    pub timeout: Duration,
}

/// A completed query.
#[derive(Debug, Clone, Serialize)]
pub struct QueryOutcome {
    pub query_id: String,
    /// One row per result, fields in the order CloudWatch gave them.
    pub rows: Vec<Vec<(String, String)>>,
    pub records_matched: Option<f64>,
    pub records_scanned: Option<f64>,
    pub bytes_scanned: Option<f64>,
}

/// How trace events were found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TraceMethod {
    /// A Logs Insights query.
    /// Logs Insights only.
    Insights,
    /// FilterLogEvents with the quoted id as pattern.
    FilterLogEvents,
}

/// Which way `trace` may search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceVia {
    /// Insights, falling back to FilterLogEvents where it is unavailable.
    Auto,
    Insights,
    Filter,
}

/// One event mentioning the traced id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TraceEvent {
    pub log_group: String,
    pub log_stream: String,
    pub timestamp_ms: EpochMs,
    pub message: String,
}

/// What `trace` asks for.
#[derive(Debug, Clone)]
pub struct TraceRequest {
    /// The trace, request or correlation id; no `"` or `\`.
    pub id: String,
    pub groups: Vec<String>,
    pub start_ms: EpochMs,
    pub end_ms: EpochMs,
    pub via: TraceVia,
    pub timeout: Duration,
}

/// A status that means the query is still going.
fn in_progress(status: &QueryStatus) -> bool {
    matches!(
        status,
        QueryStatus::Scheduled | QueryStatus::Running | QueryStatus::UnknownValue
    ) || status.as_str() == "Unknown"
}

/// The query string `trace` runs for `id`.
pub fn trace_query(id: &str) -> String {
    format!(
        "fields @timestamp, @message, @logStream, @log | filter @message like \"{id}\" | sort @timestamp asc | limit {MAX_QUERY_ROWS}"
    )
}

/// Parses an Insights `@timestamp`: `2026-11-20 08:00:00.123` (UTC) as AWS
/// writes it, or epoch milliseconds as some emulators do.
pub fn parse_insights_timestamp(value: &str) -> Option<EpochMs> {
    if let Ok(ms) = value.parse::<i64>() {
        return Some(ms);
    }
    let t = humantime::parse_rfc3339_weak(value.trim()).ok()?;
    t.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_millis() as EpochMs)
}

/// `@log` is `ACCOUNT:GROUP` on AWS; group names have no `:`.
fn group_of(log: &str) -> &str {
    log.rsplit(':').next().unwrap_or(log)
}

impl CloudWatch {
    /// Runs one Insights query to completion (or timeout, or shutdown).
    pub async fn run_query(
        &self,
        req: &QueryRequest,
        shutdown: &Shutdown,
    ) -> Result<QueryOutcome, InsightsError> {
        if req.groups.is_empty() || req.groups.len() > MAX_QUERY_GROUPS {
            return Err(InsightsError::Usage(format!(
                "a query names 1 to {MAX_QUERY_GROUPS} log groups (--group), not {}",
                req.groups.len()
            )));
        }
        if req.start_ms >= req.end_ms {
            return Err(InsightsError::Usage(
                "--since must be before --until".to_string(),
            ));
        }
        if let Some(limit) = req.limit
            && !(1..=MAX_QUERY_ROWS).contains(&limit)
        {
            return Err(InsightsError::Usage(format!(
                "--limit {limit}: Logs Insights returns 1 to {MAX_QUERY_ROWS} rows"
            )));
        }
        let start_secs = req.start_ms.div_euclid(1000);
        let end_secs = (req.end_ms + 999).div_euclid(1000);
        let by_arn = req.groups.iter().any(|g| g.starts_with("arn:"));
        let resource = req.groups.join(", ");
        let started = self
            .retrying_typed("StartQuery", &resource, shutdown, || {
                let call = self
                    .client
                    .start_query()
                    .query_string(&req.query)
                    .start_time(start_secs)
                    .end_time(end_secs)
                    .set_limit(req.limit);
                let call = if by_arn {
                    call.set_log_group_identifiers(Some(req.groups.clone()))
                } else {
                    call.set_log_group_names(Some(req.groups.clone()))
                };
                call.send()
            })
            .await;
        let query_id = match started {
            Ok(out) => out.query_id().unwrap_or_default().to_string(),
            Err(f) => {
                let message = f.message().unwrap_or_default().to_string();
                return Err(match f.code() {
                    Some("MalformedQueryException") => InsightsError::Malformed {
                        query: req.query.clone(),
                        message,
                    },
                    Some("ResourceNotFoundException") => InsightsError::GroupNotFound {
                        groups: resource,
                        region: self.region.clone(),
                    },
                    Some(
                        "UnknownOperationException"
                        | "InvalidAction"
                        | "NotImplemented"
                        | "UnsupportedOperation",
                    ) => InsightsError::Unavailable {
                        message: f.error.to_string(),
                    },
                    _ if message.to_ascii_lowercase().contains("not implemented")
                        || message.to_ascii_lowercase().contains("not yet implemented") =>
                    {
                        InsightsError::Unavailable { message }
                    }
                    _ => f.error.into(),
                });
            }
        };
        tracing::debug!(query_id, groups = %resource, start_secs, end_secs, "query started");
        let deadline = Instant::now() + req.timeout;
        let mut interval = Duration::from_millis(250);
        loop {
            let polled = self
                .retrying("GetQueryResults", &query_id, shutdown, || {
                    self.client.get_query_results().query_id(&query_id).send()
                })
                .await;
            let out = match polled {
                Ok(out) => out,
                Err(CloudWatchError::ShutDown) => {
                    self.stop_query(&query_id).await;
                    return Err(InsightsError::Interrupted { query_id });
                }
                Err(e) => return Err(e.into()),
            };
            let status = out.status().cloned().unwrap_or(QueryStatus::UnknownValue);
            match status {
                QueryStatus::Complete => {
                    let stats = out.statistics();
                    return Ok(QueryOutcome {
                        rows: out
                            .results()
                            .iter()
                            .map(|row| {
                                row.iter()
                                    .map(|f| {
                                        (
                                            f.field().unwrap_or_default().to_string(),
                                            f.value().unwrap_or_default().to_string(),
                                        )
                                    })
                                    .collect()
                            })
                            .collect(),
                        records_matched: stats.map(|s| s.records_matched()),
                        records_scanned: stats.map(|s| s.records_scanned()),
                        bytes_scanned: stats.map(|s| s.bytes_scanned()),
                        query_id,
                    });
                }
                QueryStatus::Failed => {
                    return Err(InsightsError::Ended {
                        query_id,
                        status: "Failed".into(),
                        hint: "CloudWatch could not run it; check the query and try again",
                    });
                }
                QueryStatus::Cancelled => {
                    return Err(InsightsError::Ended {
                        query_id,
                        status: "Cancelled".into(),
                        hint: "someone stopped it (StopQuery)",
                    });
                }
                QueryStatus::Timeout => {
                    return Err(InsightsError::Ended {
                        query_id,
                        status: "Timeout".into(),
                        hint: "CloudWatch ran it for its 60-minute maximum: narrow the time range or the groups",
                    });
                }
                ref s if in_progress(s) => {}
                other => {
                    tracing::debug!(
                        status = other.as_str(),
                        "unknown query status; still waiting"
                    );
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.stop_query(&query_id).await;
                return Err(InsightsError::TimedOut {
                    query_id,
                    timeout: req.timeout,
                });
            }
            if !shutdown.sleep(interval.min(left)).await {
                self.stop_query(&query_id).await;
                return Err(InsightsError::Interrupted { query_id });
            }
            interval = (interval * 3 / 2).min(Duration::from_secs(5));
        }
    }

    /// Best effort, one attempt: a query left running only costs money.
    async fn stop_query(&self, query_id: &str) {
        let call = self.client.stop_query().query_id(query_id).send();
        match tokio::time::timeout(Duration::from_secs(10), call).await {
            Ok(Ok(_)) => tracing::info!(query_id, "query stopped"),
            Ok(Err(e)) => {
                tracing::warn!(query_id, error = %super::error_chain(&e), "StopQuery failed; the query runs until CloudWatch ends it")
            }
            Err(_) => tracing::warn!(
                query_id,
                "StopQuery timed out; the query runs until CloudWatch ends it"
            ),
        }
    }

    /// Every event in `groups` whose message contains `id`, in time order.
    pub async fn trace_events(
        &self,
        req: &TraceRequest,
        shutdown: &Shutdown,
    ) -> Result<(Vec<TraceEvent>, TraceMethod), InsightsError> {
        if req.id.is_empty() || req.id.contains(['"', '\\', '\n']) {
            return Err(InsightsError::Usage(format!(
                "trace id {:?} must be non-empty and contain no quote, backslash or newline",
                req.id
            )));
        }
        let mut events = match req.via {
            TraceVia::Filter => return self.trace_by_filter(req, shutdown).await,
            TraceVia::Insights => self.trace_by_insights(req, shutdown).await?,
            TraceVia::Auto => match self.trace_by_insights(req, shutdown).await {
                Ok(events) => events,
                Err(e @ InsightsError::Unavailable { .. })
                | Err(e @ InsightsError::CloudWatch(CloudWatchError::AccessDenied { .. })) => {
                    tracing::warn!(error = %e, "Logs Insights unavailable; searching with FilterLogEvents instead");
                    return self.trace_by_filter(req, shutdown).await;
                }
                Err(e) => return Err(e),
            },
        };
        events.sort_by(|a, b| {
            (a.timestamp_ms, &a.log_group, &a.log_stream).cmp(&(
                b.timestamp_ms,
                &b.log_group,
                &b.log_stream,
            ))
        });
        Ok((events, TraceMethod::Insights))
    }

    async fn trace_by_insights(
        &self,
        req: &TraceRequest,
        shutdown: &Shutdown,
    ) -> Result<Vec<TraceEvent>, InsightsError> {
        let mut events = Vec::new();
        for chunk in req.groups.chunks(MAX_QUERY_GROUPS) {
            let outcome = self
                .run_query(
                    &QueryRequest {
                        query: trace_query(&req.id),
                        groups: chunk.to_vec(),
                        start_ms: req.start_ms,
                        end_ms: req.end_ms,
                        limit: None,
                        timeout: req.timeout,
                    },
                    shutdown,
                )
                .await?;
            if outcome.rows.len() >= MAX_QUERY_ROWS as usize {
                tracing::warn!(
                    rows = outcome.rows.len(),
                    "the query hit Logs Insights' row limit; events may be missing: narrow --since/--until"
                );
            }
            for row in outcome.rows {
                let field =
                    |name: &str| row.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
                let message = field("@message").unwrap_or_default();
                if !message.contains(req.id.as_str()) {
                    continue;
                }
                let Some(timestamp_ms) = field("@timestamp").and_then(parse_insights_timestamp)
                else {
                    tracing::warn!(row = ?row, "a result row has no readable @timestamp; skipped");
                    continue;
                };
                let log_group = match field("@log") {
                    Some(log) => group_of(log).to_string(),
                    None if chunk.len() == 1 => chunk[0].clone(),
                    None => String::new(),
                };
                events.push(TraceEvent {
                    log_group,
                    log_stream: field("@logStream").unwrap_or_default().to_string(),
                    timestamp_ms,
                    message: message.to_string(),
                });
            }
        }
        Ok(events)
    }

    async fn trace_by_filter(
        &self,
        req: &TraceRequest,
        shutdown: &Shutdown,
    ) -> Result<(Vec<TraceEvent>, TraceMethod), InsightsError> {
        let mut events = Vec::new();
        for group in &req.groups {
            let scan = ScanRequest {
                log_group: group.clone(),
                start_ms: req.start_ms,
                end_ms: req.end_ms,
                filter_pattern: Some(format!("\"{}\"", req.id)),
                streams: StreamFilter::All,
            };
            let mut token: Option<String> = None;
            loop {
                let page = self
                    .filter_page(&scan, token.as_deref(), shutdown)
                    .await
                    .map_err(|e| match e {
                        CloudWatchError::GroupNotFound { group, region } => {
                            InsightsError::GroupNotFound {
                                groups: group,
                                region,
                            }
                        }
                        other => other.into(),
                    })?;
                events.extend(
                    page.events
                        .into_iter()
                        .filter(|e| e.message.contains(req.id.as_str()))
                        .map(|e| TraceEvent {
                            log_group: e.log_group,
                            log_stream: e.log_stream,
                            timestamp_ms: e.timestamp_ms,
                            message: e.message,
                        }),
                );
                match page.next_token {
                    Some(t) => token = Some(t),
                    None => break,
                }
            }
        }
        events.sort_by(|a, b| {
            (a.timestamp_ms, &a.log_group, &a.log_stream).cmp(&(
                b.timestamp_ms,
                &b.log_group,
                &b.log_stream,
            ))
        });
        Ok((events, TraceMethod::FilterLogEvents))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insights_timestamps_are_read_in_both_forms() {
        assert_eq!(
            parse_insights_timestamp("2026-11-20 08:00:00.123"),
            Some(1_795_161_600_123)
        );
        assert_eq!(
            parse_insights_timestamp("1795161600123"),
            Some(1_795_161_600_123)
        );
        assert_eq!(parse_insights_timestamp("yesterday"), None);
    }

    #[test]
    fn the_account_prefix_of_log_is_dropped() {
        assert_eq!(group_of("123456789012:/aws/lambda/x"), "/aws/lambda/x");
        assert_eq!(group_of("/aws/lambda/x"), "/aws/lambda/x");
    }

    #[test]
    fn the_trace_query_filters_on_the_quoted_id_in_time_order() {
        let q = trace_query("abc-123");
        assert!(q.contains("filter @message like \"abc-123\""), "{q}");
        assert!(q.contains("sort @timestamp asc"), "{q}");
    }
}
