//! Fixtures: capture events from CloudWatch into a file, replay a file into
//! CloudWatch or straight into the configured output, and generate
//! synthetic correlated logs.
//!
//! ```text
//! CloudWatch ──capture──▶ fixture (.ndjson[.gz]) ──replay --to cloudwatch──▶ CloudWatch
//!                 generate ──▶ │ ──replay --to downstream──▶ parse ──▶ sink
//! ```
//!
//! - [`fixture`]: the file format, reading and writing (gzip by extension).
//! - [`generate`]: the synthetic gateway -> Lambda traces.
//! - this module: capture, and both replays.

pub mod fixture;
pub mod generate;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cloudwatch::write::{
    BatchLimits, PutReport, RejectReason, StreamWriter, WriteError, WriteEvent,
};
use crate::cloudwatch::{CloudWatch, CloudWatchError, ScanRequest};
use crate::config::{Config, GroupConfig, GroupSelector, StreamFilter};
use crate::event::RawEvent;
use crate::pipeline::{self, Batch, Pending, Pipeline, PipelineError, Position};
use crate::shutdown::Shutdown;
use crate::sink::SinkError;
use crate::time::{EpochMs, format_ms};
use fixture::{FixtureEvent, FixtureWriter};

/// Why a capture, replay or generation failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// A fixture or output file could not be read or written.
    #[error("cannot {action} {path}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
    /// A fixture line is not a fixture event.
    #[error("{path}:{line}: {message}")]
    Line {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// Options that make no sense.
    #[error("{0}")]
    Usage(String),
    /// Writing to CloudWatch failed.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// Reading from CloudWatch failed.
    #[error(transparent)]
    CloudWatch(#[from] CloudWatchError),
    /// The configured output could not be opened or is not healthy.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The pipeline failed (it keeps no state here, so only in theory).
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
}

impl ReplayError {
    /// Errors in what the user typed or gave (exit code 2).
    pub fn is_usage(&self) -> bool {
        matches!(self, ReplayError::Usage(_) | ReplayError::Line { .. })
    }
}

// ---------------------------------------------------------------- capture

/// What `capture` reads.
#[derive(Debug, Clone)]
pub struct CaptureRequest {
    pub groups: Vec<String>,
    /// Inclusive lower and exclusive upper bound on event timestamps, in ms.
    pub start_ms: EpochMs,
    pub end_ms: EpochMs,
}

/// Copies every event of the groups in the window into `out`, group by
/// group, in the order FilterLogEvents returns them (every page).
/// Returns the number of events written per group.
pub async fn capture(
    cloudwatch: &CloudWatch,
    request: &CaptureRequest,
    out: &mut FixtureWriter,
    shutdown: &Shutdown,
) -> Result<BTreeMap<String, usize>, ReplayError> {
    if request.start_ms >= request.end_ms {
        return Err(ReplayError::Usage("--since must be before --until".into()));
    }
    let mut counts = BTreeMap::new();
    for group in &request.groups {
        let scan = ScanRequest {
            log_group: group.clone(),
            start_ms: request.start_ms,
            end_ms: request.end_ms - 1,
            filter_pattern: None,
            streams: StreamFilter::All,
        };
        let mut token: Option<String> = None;
        let mut n = 0usize;
        loop {
            let page = cloudwatch
                .filter_page(&scan, token.as_deref(), shutdown)
                .await?;
            for raw in page.events {
                out.write(&FixtureEvent::from(raw))?;
                n += 1;
            }
            match page.next_token {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        tracing::info!(group = %group, events = n, "captured");
        counts.insert(group.clone(), n);
    }
    Ok(counts)
}

// ---------------------------------------------------------------- timing

/// Where replayed timestamps land.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rebase {
    /// The newest event lands now.
    Now,
    /// The newest event lands at this instant (ms).
    At(EpochMs),
    /// Timestamps as captured.
    Keep,
}

impl Rebase {
    /// Parses `now`, `keep` or an RFC 3339 instant.
    pub fn parse(text: &str) -> Result<Rebase, ReplayError> {
        match text.trim() {
            "now" => Ok(Rebase::Now),
            "keep" => Ok(Rebase::Keep),
            other => crate::time::parse_rfc3339(other)
                .map(Rebase::At)
                .ok_or_else(|| {
                    ReplayError::Usage(format!(
                        "--rebase {other:?}: give now, keep, or an RFC 3339 time (2026-11-20T08:00:00Z, 2026-11-20T10:00:00+02:00)"
                    ))
                }),
        }
    }

    /// The shift to add to every timestamp of `events`.
    pub fn shift_ms(self, events: &[FixtureEvent], now: EpochMs) -> i64 {
        let Some(newest) = events.iter().map(|e| e.timestamp).max() else {
            return 0;
        };
        match self {
            Rebase::Now => now - newest,
            Rebase::At(at) => at - newest,
            Rebase::Keep => 0,
        }
    }
}

/// How fast `replay --to cloudwatch` sends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Speed {
    /// As fast as CloudWatch takes it.
    Max,
    /// This many times real time (2 is twice as fast).
    Times(f64),
}

impl Speed {
    /// Parses `max` or a positive number.
    pub fn parse(text: &str) -> Result<Speed, ReplayError> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("max") {
            return Ok(Speed::Max);
        }
        match text.trim_end_matches('x').parse::<f64>() {
            Ok(f) if f.is_finite() && f > 0.0 => Ok(Speed::Times(f)),
            _ => Err(ReplayError::Usage(format!(
                "--speed {text:?}: give max or a positive number (1 is real time, 10 is ten times faster)"
            ))),
        }
    }
}

/// Where fixture events go: their own group and stream unless overridden.
#[derive(Debug, Clone, Default)]
pub struct Retarget {
    pub group: Option<String>,
    pub stream: Option<String>,
}

impl Retarget {
    fn apply(&self, e: &mut FixtureEvent) {
        if let Some(g) = &self.group {
            e.log_group = g.clone();
        }
        if let Some(s) = &self.stream {
            e.log_stream = s.clone();
        }
    }
}

// ---------------------------------------------------------------- to CloudWatch

/// What `replay --to cloudwatch` does.
#[derive(Debug, Clone)]
pub struct ToCloudWatch {
    pub retarget: Retarget,
    /// Create missing groups and streams.
    pub create: bool,
    pub rebase: Rebase,
    pub speed: Speed,
    pub limits: BatchLimits,
}

/// One event CloudWatch (or the batcher) did not store.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayRejection {
    /// Position in the fixture (0-based, blank lines not counted).
    pub index: usize,
    /// The line of the fixture file (1-based, as in errors about the
    /// file; 0 for an event not read from a file).
    pub line: usize,
    pub log_group: String,
    pub log_stream: String,
    /// The timestamp sent (after the rebase).
    pub timestamp_ms: EpochMs,
    pub reason: RejectReason,
}

/// What a replay into CloudWatch did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CloudWatchReplayReport {
    pub events: usize,
    pub accepted: usize,
    pub truncated: usize,
    pub rejected: Vec<ReplayRejection>,
    /// Distinct (group, stream) written to.
    pub streams: usize,
    /// Added to every timestamp, ms.
    pub shift_ms: i64,
    /// Shutdown came before every event was sent.
    pub interrupted: bool,
}

impl CloudWatchReplayReport {
    /// Rejections counted by reason.
    pub fn rejected_by_reason(&self) -> BTreeMap<RejectReason, usize> {
        let mut counts = BTreeMap::new();
        for r in &self.rejected {
            *counts.entry(r.reason).or_insert(0) += 1;
        }
        counts
    }
}

type Destination = (String, String);

/// Without `--create`, every group and stream the events go to must exist:
/// checked before the first write, so that a missing one does not stop the
/// replay halfway (the events before it stored, and stored again by the
/// next attempt). One listing per group and per stream.
async fn check_destinations(
    cloudwatch: &CloudWatch,
    events: &[FixtureEvent],
    shutdown: &Shutdown,
) -> Result<(), ReplayError> {
    let mut wanted: std::collections::BTreeMap<&str, std::collections::BTreeSet<&str>> =
        Default::default();
    for e in events {
        wanted
            .entry(e.log_group.as_str())
            .or_default()
            .insert(e.log_stream.as_str());
    }
    let missing = |group: &str, stream: &str| {
        ReplayError::Write(WriteError::Missing {
            group: group.to_string(),
            stream: stream.to_string(),
            region: cloudwatch.region().to_string(),
        })
    };
    for (group, streams) in wanted {
        let groups = cloudwatch.discover_groups(group, shutdown).await?;
        let first = streams.iter().next().copied().unwrap_or_default();
        if !groups.iter().any(|g| g == group) {
            return Err(missing(group, first));
        }
        for stream in streams {
            let found = match cloudwatch
                .list_streams(
                    group,
                    Some(stream),
                    crate::cloudwatch::admin::StreamOrder::Name,
                    shutdown,
                )
                .await
            {
                Ok(found) => found,
                Err(crate::cloudwatch::admin::AdminError::CloudWatch(e)) => return Err(e.into()),
                // The group went away meanwhile.
                Err(crate::cloudwatch::admin::AdminError::GroupNotFound { .. }) => {
                    return Err(missing(group, stream));
                }
                Err(e) => return Err(ReplayError::Usage(e.to_string())),
            };
            if !found.iter().any(|s| s.name == stream) {
                return Err(missing(group, stream));
            }
        }
    }
    Ok(())
}

/// Puts `events` into CloudWatch, keeping their relative timing.
pub async fn replay_to_cloudwatch(
    cloudwatch: &CloudWatch,
    mut events: Vec<FixtureEvent>,
    options: &ToCloudWatch,
    now: EpochMs,
    shutdown: &Shutdown,
) -> Result<CloudWatchReplayReport, ReplayError> {
    let shift = options.rebase.shift_ms(&events, now);
    for e in &mut events {
        options.retarget.apply(e);
        e.timestamp += shift;
    }
    if !options.create {
        check_destinations(cloudwatch, &events, shutdown).await?;
    }
    let mut report = CloudWatchReplayReport {
        events: events.len(),
        shift_ms: shift,
        ..Default::default()
    };
    // Send order: by timestamp, ties in file order.
    let mut order: Vec<usize> = (0..events.len()).collect();
    order.sort_by_key(|&i| (events[i].timestamp, i));
    let first_ts = order.first().map(|&i| events[i].timestamp).unwrap_or(0);
    let mut writers: HashMap<Destination, StreamWriter> = HashMap::new();
    let started = Instant::now();
    let mut next = 0;
    while next < order.len() {
        // Everything due by now goes in this round.
        let due_until = match options.speed {
            Speed::Max => order.len(),
            Speed::Times(f) => {
                let elapsed_ms = started.elapsed().as_millis() as f64 * f;
                let mut end = next;
                while end < order.len()
                    && (events[order[end]].timestamp - first_ts) as f64 <= elapsed_ms
                {
                    end += 1;
                }
                end
            }
        };
        if due_until > next {
            let mut per_dest: HashMap<Destination, Vec<usize>> = HashMap::new();
            for &i in &order[next..due_until] {
                let e = &events[i];
                per_dest
                    .entry((e.log_group.clone(), e.log_stream.clone()))
                    .or_default()
                    .push(i);
            }
            let mut dests: Vec<_> = per_dest.into_iter().collect();
            dests.sort();
            for (dest, indices) in dests {
                let writer = writers.entry(dest.clone()).or_insert_with(|| {
                    StreamWriter::new(
                        cloudwatch.clone(),
                        &dest.0,
                        &dest.1,
                        options.create,
                        options.limits,
                    )
                });
                let batch: Vec<WriteEvent> = indices
                    .iter()
                    .map(|&i| WriteEvent {
                        timestamp_ms: events[i].timestamp,
                        message: events[i].message.clone(),
                    })
                    .collect();
                let put: PutReport = match writer.put(batch, shutdown).await {
                    Ok(r) => r,
                    Err(WriteError::CloudWatch(CloudWatchError::ShutDown)) => PutReport {
                        interrupted: true,
                        ..PutReport::default()
                    },
                    Err(e) => return Err(e.into()),
                };
                let interrupted = put.interrupted;
                report.accepted += put.accepted;
                report.truncated += put.truncated;
                for r in put.rejected {
                    let i = indices[r.index];
                    report.rejected.push(ReplayRejection {
                        index: i,
                        line: events[i].line,
                        log_group: dest.0.clone(),
                        log_stream: dest.1.clone(),
                        timestamp_ms: r.timestamp_ms,
                        reason: r.reason,
                    });
                }
                if interrupted {
                    report.interrupted = true;
                    report.streams = writers.len();
                    report.rejected.sort_by_key(|r| r.index);
                    return Ok(report);
                }
            }
            next = due_until;
        }
        if next >= order.len() {
            break;
        }
        if let Speed::Times(f) = options.speed {
            let due_ms = (events[order[next]].timestamp - first_ts) as f64 / f;
            let wait = Duration::from_millis(
                (due_ms - started.elapsed().as_millis() as f64).max(0.0) as u64,
            )
            // Events due meanwhile go together: at most ~5 calls/s per stream.
            .max(Duration::from_millis(200));
            if !shutdown.sleep(wait).await {
                report.interrupted = true;
                break;
            }
        }
    }
    report.streams = writers.len();
    report.rejected.sort_by_key(|r| r.index);
    Ok(report)
}

// ---------------------------------------------------------------- downstream

/// What a replay into the configured output did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DownstreamReport {
    pub events: usize,
    pub delivered: usize,
    pub rejected: usize,
    /// Events of groups no `log_groups` entry selects, by group.
    pub unmatched: BTreeMap<String, usize>,
    pub shift_ms: i64,
    pub interrupted: bool,
    /// Trace summaries delivered after the events.
    pub summaries: usize,
}

/// The config entry that selects `group`: the first whose name equals it or
/// whose prefix starts it, as when polling.
pub fn group_config<'a>(config: &'a Config, group: &str) -> Option<&'a GroupConfig> {
    config.groups.iter().find(|g| match &g.selector {
        GroupSelector::Name(n) => n == group,
        GroupSelector::Prefix(p) => group.starts_with(p.as_str()),
    })
}

/// Runs `events` through the pipeline as the pull path would, without
/// CloudWatch: each group's parser rules, trace grouping, the configured
/// output. Events are delivered in timestamp order (ties in file order);
/// nothing is checkpointed. At the end every trace is closed and its summary
/// delivered.
pub async fn replay_downstream(
    config: &Config,
    mut events: Vec<FixtureEvent>,
    retarget: &Retarget,
    rebase: Rebase,
    now: EpochMs,
    shutdown: &Shutdown,
) -> Result<DownstreamReport, ReplayError> {
    let shift = rebase.shift_ms(&events, now);
    let sink = config.output.build(&config.agent)?;
    sink.health(shutdown).await?;
    let pipeline = Pipeline::new(
        sink,
        None,
        config.agent.group_traces,
        crate::app::trace_settings(&config.agent),
    )
    .map_err(PipelineError::from)?;
    let mut report = DownstreamReport {
        events: events.len(),
        shift_ms: shift,
        ..Default::default()
    };
    for e in &mut events {
        retarget.apply(e);
    }
    let mut order: Vec<usize> = (0..events.len()).collect();
    order.sort_by_key(|&i| (events[i].timestamp, i));
    let mut batch: Vec<Pending> = Vec::with_capacity(pipeline.batch_size());
    let mut batch_bytes = 0;
    let mut slots: Vec<Option<FixtureEvent>> = events.into_iter().map(Some).collect();
    for i in order {
        let Some(e) = slots[i].take() else { continue };
        let Some(group) = group_config(config, &e.log_group) else {
            *report.unmatched.entry(e.log_group).or_insert(0) += 1;
            continue;
        };
        let mut raw: RawEvent = e.into();
        raw.timestamp_ms += shift;
        raw.ingestion_time_ms = raw.ingestion_time_ms.map(|t| t + shift);
        let event = pipeline::prepare(raw, group);
        batch_bytes += event.json_size_hint();
        batch.push(Pending { event, late: false });
        // Asked at each event: the output's batch size may change after a
        // delivery (see `Sink::batch_size`).
        if pipeline.batch_full(batch.len(), batch_bytes) {
            batch_bytes = 0;
            if !submit(&pipeline, &mut batch, &mut report, shutdown).await? {
                return Ok(report);
            }
        }
    }
    if !submit(&pipeline, &mut batch, &mut report, shutdown).await? {
        return Ok(report);
    }
    // The fixture is complete: every trace it holds is closed and summarised.
    report.summaries = pipeline
        .emit_summaries(EpochMs::MAX, true, crate::pipeline::Due::All, shutdown)
        .await?;
    for (group, n) in &report.unmatched {
        tracing::warn!(group = %group, events = n, "no log_groups entry selects this group; its events were skipped");
    }
    Ok(report)
}

/// Hands `batch` (emptied) to the pipeline; false when shutdown cut it short.
async fn submit(
    pipeline: &Pipeline,
    batch: &mut Vec<Pending>,
    report: &mut DownstreamReport,
    shutdown: &Shutdown,
) -> Result<bool, ReplayError> {
    if batch.is_empty() {
        return Ok(true);
    }
    let committed = pipeline
        .submit(
            Batch {
                events: std::mem::take(batch),
                position: Position::None,
            },
            shutdown,
        )
        .await?;
    report.delivered += committed.delivered as usize;
    report.rejected += committed.rejected as usize;
    if committed.abandoned {
        report.interrupted = true;
        return Ok(false);
    }
    Ok(true)
}

/// Formats a shift for messages: `+2h 3m` / `-5s`.
pub fn describe_shift(shift_ms: i64) -> String {
    let sign = if shift_ms < 0 { "-" } else { "+" };
    let d = Duration::from_secs(shift_ms.unsigned_abs() / 1000);
    format!("{sign}{}", humantime::format_duration(d))
}

/// The time range of `events`, for messages.
pub fn describe_range(events: &[FixtureEvent]) -> String {
    let min = events.iter().map(|e| e.timestamp).min();
    let max = events.iter().map(|e| e.timestamp).max();
    match (min, max) {
        (Some(a), Some(b)) => format!("{} .. {}", format_ms(a), format_ms(b)),
        _ => "(empty)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(ts: EpochMs) -> FixtureEvent {
        FixtureEvent {
            log_group: "/g".into(),
            log_stream: "s".into(),
            timestamp: ts,
            ingestion_time: Some(ts + 10),
            event_id: ts.to_string(),
            message: "m".into(),
            line: 0,
        }
    }

    #[test]
    fn rebase_puts_the_newest_event_at_the_target_and_keeps_gaps() {
        let events = vec![ev(1_000), ev(5_000), ev(3_000)];
        assert_eq!(Rebase::Now.shift_ms(&events, 10_000), 5_000);
        assert_eq!(Rebase::At(6_000).shift_ms(&events, 10_000), 1_000);
        assert_eq!(Rebase::Keep.shift_ms(&events, 10_000), 0);
        assert_eq!(Rebase::Now.shift_ms(&[], 10_000), 0);
        assert_eq!(
            Rebase::parse("2026-11-20T08:00:00Z").unwrap(),
            Rebase::At(1_795_161_600_000)
        );
        assert!(Rebase::parse("yesterday").is_err());
    }

    #[test]
    fn speed_is_max_or_a_positive_factor() {
        assert_eq!(Speed::parse("max").unwrap(), Speed::Max);
        assert_eq!(Speed::parse("10").unwrap(), Speed::Times(10.0));
        assert_eq!(Speed::parse("2.5x").unwrap(), Speed::Times(2.5));
        for bad in ["0", "-1", "fast", "NaN"] {
            assert!(Speed::parse(bad).unwrap_err().is_usage(), "{bad}");
        }
    }
}
