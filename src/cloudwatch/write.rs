//! The write path: PutLogEvents batches that CloudWatch accepts by
//! construction, and a [`StreamWriter`] that sends them.
//!
//! [`plan_batches`] is pure: it sorts events by timestamp (stable, so events
//! on one millisecond keep their order), handles oversize and empty messages,
//! and cuts batches at 10,000 events, at 1,048,576 bytes (UTF-8 message bytes
//! plus 26 per event) and before a batch would span 24 h. The writer sends
//! each batch with the module's retry policy (throttling, 5xx, timeouts),
//! creates a missing group and stream when asked, copes with the sequence
//! tokens older emulators still enforce, and reports per event what
//! CloudWatch refused (`rejectedLogEventsInfo`).

use std::collections::BTreeMap;

use aws_sdk_cloudwatchlogs::error::SdkError;
use aws_sdk_cloudwatchlogs::operation::put_log_events::PutLogEventsError;
use aws_sdk_cloudwatchlogs::types::{InputLogEvent, RejectedLogEventsInfo};
use serde::Serialize;

use super::admin::AdminError;
use super::{CloudWatch, CloudWatchError};
use crate::shutdown::Shutdown;
use crate::time::{EpochMs, now_ms};

/// Most events in one PutLogEvents call.
pub const MAX_BATCH_EVENTS: usize = 10_000;
/// Most bytes in one PutLogEvents call, counted as [`event_size`] summed.
pub const MAX_BATCH_BYTES: usize = 1_048_576;
/// What CloudWatch adds to each message's UTF-8 length when it sizes a batch.
pub const EVENT_OVERHEAD_BYTES: usize = 26;
/// A batch spans strictly less than this (newest minus oldest timestamp).
pub const MAX_BATCH_SPAN_MS: i64 = 24 * 60 * 60 * 1000;
/// Default bound on one event (message bytes plus the 26-byte overhead): the
/// long-documented 256 KiB; newer accounts accept up to 1 MiB.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 256 * 1024;
/// Appended to a message cut to fit the event size limit.
pub const TRUNCATION_MARKER: &str = "...[truncated by cwtap]";
/// How far back CloudWatch accepts events.
const MAX_AGE_MS: i64 = 14 * 24 * 60 * 60 * 1000;
/// How far ahead CloudWatch accepts events.
const MAX_AHEAD_MS: i64 = 2 * 60 * 60 * 1000;

/// One event to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteEvent {
    /// Event time, ms since the epoch.
    pub timestamp_ms: EpochMs,
    pub message: String,
}

/// What to do with an event above the size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Oversize {
    /// Cut the message at a char boundary and append [`TRUNCATION_MARKER`].
    Truncate,
    /// Leave it out and report it as [`RejectReason::TooLarge`].
    Reject,
}

/// The bounds [`plan_batches`] keeps. `Default` is CloudWatch's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    pub max_events: usize,
    pub max_bytes: usize,
    pub max_span_ms: i64,
    /// Largest event (message bytes + 26); at most `max_bytes`.
    pub max_event_bytes: usize,
    pub oversize: Oversize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits {
            max_events: MAX_BATCH_EVENTS,
            max_bytes: MAX_BATCH_BYTES,
            max_span_ms: MAX_BATCH_SPAN_MS,
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            oversize: Oversize::Truncate,
        }
    }
}

impl BatchLimits {
    /// CloudWatch's batch limits with a chosen event size limit, which must
    /// lie between 1 KiB and the batch size (1 MiB).
    pub fn with_event_limit(
        max_event_bytes: usize,
        oversize: Oversize,
    ) -> Result<Self, WriteError> {
        if !(1024..=MAX_BATCH_BYTES).contains(&max_event_bytes) {
            return Err(WriteError::EventLimit(max_event_bytes));
        }
        Ok(BatchLimits {
            max_event_bytes,
            oversize,
            ..BatchLimits::default()
        })
    }
}

/// The size CloudWatch counts for one event.
pub fn event_size(message: &str) -> usize {
    message.len() + EVENT_OVERHEAD_BYTES
}

/// Why an event was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// Older than 14 days (`tooOldLogEventEndIndex`).
    TooOld,
    /// More than 2 h in the future (`tooNewLogEventStartIndex`).
    TooNew,
    /// Older than the group's retention (`expiredLogEventEndIndex`).
    Expired,
    /// Above the event size limit with [`Oversize::Reject`].
    TooLarge,
    /// An empty message, which CloudWatch refuses.
    Empty,
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RejectReason::TooOld => "too old (more than 14 days, or before the group's retention)",
            RejectReason::TooNew => "too new (more than 2 h ahead)",
            RejectReason::Expired => "expired (older than the group's retention)",
            RejectReason::TooLarge => "too large",
            RejectReason::Empty => "empty message",
        })
    }
}

/// An event that was not stored, by its position in the input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejected {
    pub index: usize,
    pub timestamp_ms: EpochMs,
    pub reason: RejectReason,
}

/// One event of a batch, with its position in the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchItem {
    pub index: usize,
    pub timestamp_ms: EpochMs,
    pub message: String,
}

/// Events for one PutLogEvents call, in timestamp order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    pub items: Vec<BatchItem>,
    /// Sum of [`event_size`] over the items.
    pub bytes: usize,
}

/// What [`plan_batches`] made of a set of events.
#[derive(Debug, Default)]
pub struct Plan {
    pub batches: Vec<Batch>,
    /// Events left out before sending (too large, empty).
    pub rejected: Vec<Rejected>,
    /// Input positions of events whose message was cut.
    pub truncated: Vec<usize>,
}

/// Sorts and splits `events` into batches that keep every bound of `limits`.
/// Every input event ends up in exactly one batch or in `rejected`; batches
/// concatenated are the input sorted by timestamp, ties in input order.
pub fn plan_batches(events: Vec<WriteEvent>, limits: &BatchLimits) -> Plan {
    let mut indexed: Vec<(usize, WriteEvent)> = events.into_iter().enumerate().collect();
    indexed.sort_by_key(|(i, e)| (e.timestamp_ms, *i));
    let max_event = limits.max_event_bytes.min(limits.max_bytes);
    let mut plan = Plan::default();
    let mut current = Batch::default();
    for (index, event) in indexed {
        let WriteEvent {
            timestamp_ms,
            mut message,
        } = event;
        if message.is_empty() {
            plan.rejected.push(Rejected {
                index,
                timestamp_ms,
                reason: RejectReason::Empty,
            });
            continue;
        }
        if event_size(&message) > max_event {
            match limits.oversize {
                Oversize::Reject => {
                    plan.rejected.push(Rejected {
                        index,
                        timestamp_ms,
                        reason: RejectReason::TooLarge,
                    });
                    continue;
                }
                Oversize::Truncate => {
                    message = truncate_message(&message, max_event - EVENT_OVERHEAD_BYTES);
                    plan.truncated.push(index);
                }
            }
        }
        let size = event_size(&message);
        let full = match current.items.first() {
            None => false,
            Some(first) => {
                current.items.len() >= limits.max_events.max(1)
                    || current.bytes + size > limits.max_bytes
                    || timestamp_ms - first.timestamp_ms >= limits.max_span_ms
            }
        };
        if full {
            plan.batches.push(std::mem::take(&mut current));
        }
        current.bytes += size;
        current.items.push(BatchItem {
            index,
            timestamp_ms,
            message,
        });
    }
    if !current.items.is_empty() {
        plan.batches.push(current);
    }
    plan
}

/// Cuts `message` to at most `max_bytes` UTF-8 bytes, marker included, at a
/// char boundary.
pub fn truncate_message(message: &str, max_bytes: usize) -> String {
    if message.len() <= max_bytes {
        return message.to_string();
    }
    let mut cut = max_bytes
        .saturating_sub(TRUNCATION_MARKER.len())
        .min(message.len());
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{TRUNCATION_MARKER}", &message[..cut])
}

/// CloudWatch's `rejectedLogEventsInfo`, as plain numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RejectedInfo {
    pub too_old_end: Option<usize>,
    pub too_new_start: Option<usize>,
    pub expired_end: Option<usize>,
}

impl From<&RejectedLogEventsInfo> for RejectedInfo {
    fn from(info: &RejectedLogEventsInfo) -> Self {
        let index = |i: Option<i32>| i.and_then(|i| usize::try_from(i).ok());
        RejectedInfo {
            too_old_end: index(info.too_old_log_event_end_index()),
            too_new_start: index(info.too_new_log_event_start_index()),
            expired_end: index(info.expired_log_event_end_index()),
        }
    }
}

/// Which events of a sent batch (by position) CloudWatch refused.
///
/// The API reference has `tooOldLogEventEndIndex` and
/// `expiredLogEventEndIndex` exclusive and `tooNewLogEventStartIndex`
/// inclusive. Some emulators report the last too-old event, or the last
/// too-new one, instead. A batch is in timestamp order, so too-old events are
/// a prefix and too-new ones a suffix: when CloudWatch reports either, every
/// event beyond the same bound by its own timestamp (14 days back, 2 hours
/// ahead of `now`) is counted with them.
pub fn rejected_positions(
    timestamps: &[EpochMs],
    info: RejectedInfo,
    now: EpochMs,
) -> Vec<(usize, RejectReason)> {
    let n = timestamps.len();
    let mut reasons: Vec<Option<RejectReason>> = vec![None; n];
    if let Some(end) = info.too_old_end {
        let by_clock = timestamps
            .iter()
            .take_while(|&&t| t < now - MAX_AGE_MS)
            .count();
        let end = end.min(n).max(by_clock);
        reasons[..end].fill(Some(RejectReason::TooOld));
    }
    if let Some(end) = info.expired_end {
        for r in reasons.iter_mut().take(end.min(n)) {
            r.get_or_insert(RejectReason::Expired);
        }
    }
    if let Some(start) = info.too_new_start {
        let by_clock = n - timestamps
            .iter()
            .rev()
            .take_while(|&&t| t > now + MAX_AHEAD_MS)
            .count();
        let start = start.min(n).min(by_clock);
        for r in reasons.iter_mut().skip(start) {
            r.get_or_insert(RejectReason::TooNew);
        }
    }
    reasons
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| r.map(|r| (i, r)))
        .collect()
}

/// Why writing failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The group or stream is missing and creating was not asked for.
    #[error(
        "log group {group} or its log stream {stream} does not exist in region {region}: pass --create, or create them with `cwtap groups create` and `cwtap streams create`"
    )]
    Missing {
        group: String,
        stream: String,
        region: String,
    },
    /// An event size limit outside 1 KiB to 1 MiB.
    #[error("an event size limit of {0} bytes is out of range: use 1024 to 1048576")]
    EventLimit(usize),
    /// CloudWatch refused the batch as a whole (InvalidParameter).
    #[error("PutLogEvents to {group} / {stream} was refused: {message}")]
    Refused {
        group: String,
        stream: String,
        message: String,
    },
    /// Creating the missing group or stream failed.
    #[error(transparent)]
    Create(#[from] AdminError),
    /// Any other failed call (retries exhausted, access denied, ...).
    #[error(transparent)]
    CloudWatch(#[from] CloudWatchError),
}

/// What became of the events given to [`StreamWriter::put`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct PutReport {
    /// Events CloudWatch stored.
    pub accepted: usize,
    /// Events not stored, with the reason, by input position.
    pub rejected: Vec<Rejected>,
    /// Events stored with a cut message.
    pub truncated: usize,
    /// PutLogEvents calls that succeeded.
    pub batches: usize,
    /// Shutdown came between two calls (or during a retry's wait): the
    /// events of the calls not made are neither accepted nor rejected.
    pub interrupted: bool,
}

impl PutReport {
    /// Adds another report's counts (positions are not renumbered).
    pub fn absorb(&mut self, other: PutReport) {
        self.accepted += other.accepted;
        self.rejected.extend(other.rejected);
        self.truncated += other.truncated;
        self.batches += other.batches;
        self.interrupted |= other.interrupted;
    }

    /// Rejections counted by reason.
    pub fn rejected_by_reason(&self) -> BTreeMap<RejectReason, usize> {
        let mut counts = BTreeMap::new();
        for r in &self.rejected {
            *counts.entry(r.reason).or_insert(0) += 1;
        }
        counts
    }
}

/// Writes to one log stream; keeps the sequence token between calls for
/// emulators that still use one.
#[derive(Debug)]
pub struct StreamWriter {
    cloudwatch: CloudWatch,
    group: String,
    stream: String,
    /// Create the group and stream when CloudWatch says they are missing.
    create: bool,
    limits: BatchLimits,
    sequence_token: Option<String>,
}

enum Sent {
    Stored(Option<RejectedInfo>),
    /// DataAlreadyAccepted: an earlier attempt of this batch was stored.
    AlreadyStored,
}

impl StreamWriter {
    /// A writer for `group` / `stream`.
    pub fn new(
        cloudwatch: CloudWatch,
        group: &str,
        stream: &str,
        create: bool,
        limits: BatchLimits,
    ) -> StreamWriter {
        StreamWriter {
            cloudwatch,
            group: group.to_string(),
            stream: stream.to_string(),
            create,
            limits,
            sequence_token: None,
        }
    }

    /// Writes `events` (any order) in as many calls as the limits require.
    /// Positions in the report are positions in `events`.
    pub async fn put(
        &mut self,
        events: Vec<WriteEvent>,
        shutdown: &Shutdown,
    ) -> Result<PutReport, WriteError> {
        let plan = plan_batches(events, &self.limits);
        let mut report = PutReport {
            rejected: plan.rejected,
            ..PutReport::default()
        };
        let truncated: std::collections::HashSet<usize> = plan.truncated.into_iter().collect();
        for batch in plan.batches {
            let timestamps: Vec<EpochMs> = batch.items.iter().map(|i| i.timestamp_ms).collect();
            let refused = match self.send(&batch, shutdown).await {
                Ok(Sent::Stored(Some(info))) => rejected_positions(&timestamps, info, now_ms()),
                Ok(Sent::Stored(None) | Sent::AlreadyStored) => Vec::new(),
                // What the calls before stored is in the report.
                Err(WriteError::CloudWatch(CloudWatchError::ShutDown)) => {
                    report.interrupted = true;
                    break;
                }
                Err(e) => return Err(e),
            };
            let refused_set: std::collections::HashSet<usize> =
                refused.iter().map(|(i, _)| *i).collect();
            for (pos, reason) in refused {
                let item = &batch.items[pos];
                report.rejected.push(Rejected {
                    index: item.index,
                    timestamp_ms: item.timestamp_ms,
                    reason,
                });
            }
            for (pos, item) in batch.items.iter().enumerate() {
                if !refused_set.contains(&pos) {
                    report.accepted += 1;
                    if truncated.contains(&item.index) {
                        report.truncated += 1;
                    }
                }
            }
            report.batches += 1;
        }
        report.rejected.sort_by_key(|r| r.index);
        Ok(report)
    }

    async fn send(&mut self, batch: &Batch, shutdown: &Shutdown) -> Result<Sent, WriteError> {
        let events: Vec<InputLogEvent> = batch
            .items
            .iter()
            .map(|i| {
                InputLogEvent::builder()
                    .timestamp(i.timestamp_ms)
                    .message(&i.message)
                    .build()
            })
            .collect::<Result<_, _>>()
            .map_err(|e| WriteError::Refused {
                group: self.group.clone(),
                stream: self.stream.clone(),
                message: e.to_string(),
            })?;
        let resource = format!("{} / {}", self.group, self.stream);
        let mut created = false;
        let mut token_retried = false;
        loop {
            let token = self.sequence_token.clone();
            let result = self
                .cloudwatch
                .retrying_typed("PutLogEvents", &resource, shutdown, || {
                    self.cloudwatch
                        .client
                        .put_log_events()
                        .log_group_name(&self.group)
                        .log_stream_name(&self.stream)
                        .set_log_events(Some(events.clone()))
                        .set_sequence_token(token.clone())
                        .send()
                })
                .await;
            let failure = match result {
                Ok(out) => {
                    self.sequence_token = out.next_sequence_token().map(str::to_string);
                    return Ok(Sent::Stored(
                        out.rejected_log_events_info().map(RejectedInfo::from),
                    ));
                }
                Err(f) => f,
            };
            match failure.code() {
                Some("ResourceNotFoundException") if self.create && !created => {
                    self.create_missing(shutdown).await?;
                    created = true;
                }
                Some("ResourceNotFoundException") => {
                    return Err(WriteError::Missing {
                        group: self.group.clone(),
                        stream: self.stream.clone(),
                        region: self.cloudwatch.region.clone(),
                    });
                }
                Some("InvalidSequenceTokenException") if !token_retried => {
                    // Older emulators: take the token they expect and retry once.
                    token_retried = true;
                    self.sequence_token = failure.source.and_then(expected_token);
                    tracing::info!(group = %self.group, stream = %self.stream, "sequence token refused; retrying with the expected token");
                }
                Some("DataAlreadyAcceptedException") => {
                    // The batch is stored already; sending it again with the
                    // new token would store it twice.
                    self.sequence_token = failure.source.and_then(expected_token);
                    return Ok(Sent::AlreadyStored);
                }
                Some("InvalidParameterException") => {
                    return Err(WriteError::Refused {
                        group: self.group.clone(),
                        stream: self.stream.clone(),
                        message: failure.message().unwrap_or_default().to_string(),
                    });
                }
                _ => return Err(failure.error.into()),
            }
        }
    }

    async fn create_missing(&self, shutdown: &Shutdown) -> Result<(), WriteError> {
        let group = self
            .cloudwatch
            .create_group(&self.group, None, &BTreeMap::new(), shutdown)
            .await?;
        let stream = self
            .cloudwatch
            .create_stream(&self.group, &self.stream, shutdown)
            .await?;
        tracing::info!(group = %self.group, stream = %self.stream, group_created = group.is_new(), stream_created = stream.is_new(), "created the missing log group / stream");
        Ok(())
    }
}

fn expected_token<R>(err: SdkError<PutLogEventsError, R>) -> Option<String> {
    match err.as_service_error()? {
        PutLogEventsError::InvalidSequenceTokenException(e) => {
            e.expected_sequence_token().map(str::to_string)
        }
        PutLogEventsError::DataAlreadyAcceptedException(e) => {
            e.expected_sequence_token().map(str::to_string)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ev(ts: EpochMs, message: &str) -> WriteEvent {
        WriteEvent {
            timestamp_ms: ts,
            message: message.to_string(),
        }
    }

    fn order(plan: &Plan) -> Vec<usize> {
        plan.batches
            .iter()
            .flat_map(|b| b.items.iter().map(|i| i.index))
            .collect()
    }

    #[test]
    fn events_are_sorted_by_timestamp_and_ties_keep_their_order() {
        let plan = plan_batches(
            vec![ev(30, "c"), ev(10, "a"), ev(30, "d"), ev(20, "b")],
            &BatchLimits::default(),
        );
        assert_eq!(plan.batches.len(), 1);
        assert_eq!(order(&plan), vec![1, 3, 0, 2]);
    }

    #[test]
    fn a_batch_ends_at_10000_events() {
        let events = (0..25_000).map(|i| ev(i, "x")).collect();
        let plan = plan_batches(events, &BatchLimits::default());
        let sizes: Vec<usize> = plan.batches.iter().map(|b| b.items.len()).collect();
        assert_eq!(sizes, vec![10_000, 10_000, 5_000]);
    }

    #[test]
    fn a_batch_ends_before_1_mib_counting_26_bytes_per_event() {
        // 1022 events of 1000 + 26 bytes are 1,048,572 bytes; a 1023rd would
        // make 1,049,598.
        let message = "é".repeat(500); // 1000 UTF-8 bytes, 500 chars
        let events = (0..2_000).map(|i| ev(i, &message)).collect();
        let plan = plan_batches(events, &BatchLimits::default());
        assert_eq!(plan.batches[0].items.len(), 1022);
        assert_eq!(plan.batches[0].bytes, 1022 * 1026);
        assert!(plan.batches.iter().all(|b| b.bytes <= MAX_BATCH_BYTES));
    }

    #[test]
    fn a_batch_never_spans_24_hours() {
        let day = MAX_BATCH_SPAN_MS;
        let plan = plan_batches(
            vec![ev(0, "a"), ev(day - 1, "b"), ev(day, "c"), ev(2 * day, "d")],
            &BatchLimits::default(),
        );
        let groups: Vec<Vec<usize>> = plan
            .batches
            .iter()
            .map(|b| b.items.iter().map(|i| i.index).collect())
            .collect();
        assert_eq!(groups, vec![vec![0, 1], vec![2], vec![3]]);
    }

    #[test]
    fn an_oversize_event_is_cut_at_a_char_boundary_with_a_marker() {
        let limits = BatchLimits::with_event_limit(1024, Oversize::Truncate).unwrap();
        let long = "ü".repeat(2000); // 4000 bytes, 2-byte chars
        let plan = plan_batches(vec![ev(1, &long), ev(2, "short")], &limits);
        assert_eq!(plan.truncated, vec![0]);
        let cut = &plan.batches[0].items[0].message;
        assert!(cut.ends_with(TRUNCATION_MARKER), "{cut}");
        assert!(event_size(cut) <= 1024, "{} bytes", event_size(cut));
        assert!(event_size(cut) > 1024 - 4, "cut no shorter than needed");
        assert_eq!(plan.batches[0].items[1].message, "short");
    }

    #[test]
    fn an_oversize_event_is_rejected_when_asked() {
        let limits = BatchLimits::with_event_limit(1024, Oversize::Reject).unwrap();
        let plan = plan_batches(vec![ev(1, &"x".repeat(999)), ev(2, "ok")], &limits);
        assert_eq!(plan.rejected.len(), 1);
        assert_eq!(plan.rejected[0].reason, RejectReason::TooLarge);
        assert_eq!(order(&plan), vec![1]);
        // 998 + 26 = 1024 is exactly at the limit and kept.
        let plan = plan_batches(vec![ev(1, &"x".repeat(998))], &limits);
        assert!(plan.rejected.is_empty());
    }

    #[test]
    fn empty_messages_are_rejected_before_sending() {
        let plan = plan_batches(vec![ev(1, ""), ev(2, "x")], &BatchLimits::default());
        assert_eq!(plan.rejected[0].reason, RejectReason::Empty);
        assert_eq!(order(&plan), vec![1]);
    }

    #[test]
    fn event_limits_outside_1kib_to_1mib_are_refused() {
        assert!(BatchLimits::with_event_limit(100, Oversize::Truncate).is_err());
        assert!(BatchLimits::with_event_limit(2 << 20, Oversize::Truncate).is_err());
        assert!(BatchLimits::with_event_limit(1 << 20, Oversize::Truncate).is_ok());
    }

    #[test]
    fn rejected_indices_follow_the_api_and_tolerate_inclusive_emulators() {
        let now = 100 * 24 * 3_600_000;
        let old = now - MAX_AGE_MS - 1_000;
        let ts = [old, old, now - 1_000, now, now + 3 * 3_600_000];
        // API reference: end index exclusive, start index inclusive.
        let api = RejectedInfo {
            too_old_end: Some(2),
            too_new_start: Some(4),
            expired_end: None,
        };
        let expected = vec![
            (0, RejectReason::TooOld),
            (1, RejectReason::TooOld),
            (4, RejectReason::TooNew),
        ];
        assert_eq!(rejected_positions(&ts, api, now), expected);
        // An emulator reporting the last too-old event (inclusive) and the
        // last too-new one instead of the first.
        let inclusive = RejectedInfo {
            too_old_end: Some(1),
            too_new_start: Some(4),
            expired_end: None,
        };
        assert_eq!(rejected_positions(&ts, inclusive, now), expected);
        let ts2 = [now, now + 3 * 3_600_000, now + 4 * 3_600_000];
        let last_new = RejectedInfo {
            too_new_start: Some(2),
            ..RejectedInfo::default()
        };
        assert_eq!(
            rejected_positions(&ts2, last_new, now),
            vec![(1, RejectReason::TooNew), (2, RejectReason::TooNew)]
        );
        // Without a report from CloudWatch, the clock alone rejects nothing.
        assert!(rejected_positions(&ts2, RejectedInfo::default(), now).is_empty());
        let expired = RejectedInfo {
            expired_end: Some(3),
            too_old_end: None,
            too_new_start: None,
        };
        assert_eq!(
            rejected_positions(&ts, expired, now),
            vec![
                (0, RejectReason::Expired),
                (1, RejectReason::Expired),
                (2, RejectReason::Expired)
            ]
        );
        // Indices beyond the batch are clamped.
        let wild = RejectedInfo {
            too_old_end: Some(99),
            too_new_start: Some(99),
            expired_end: None,
        };
        assert_eq!(rejected_positions(&ts, wild, now).len(), 5);
    }

    fn limits_strategy() -> impl Strategy<Value = BatchLimits> {
        (
            1usize..50,
            1024usize..8192,
            1i64..5_000,
            prop_oneof![Just(Oversize::Truncate), Just(Oversize::Reject)],
        )
            .prop_flat_map(|(max_events, max_bytes, max_span_ms, oversize)| {
                (1024usize..=max_bytes).prop_map(move |max_event_bytes| BatchLimits {
                    max_events,
                    max_bytes,
                    max_span_ms,
                    max_event_bytes,
                    oversize,
                })
            })
    }

    fn events_strategy() -> impl Strategy<Value = Vec<WriteEvent>> {
        prop::collection::vec(
            (
                0i64..20_000,
                prop_oneof![
                    3 => "[a-z ]{0,40}",
                    2 => "\\PC{0,300}",
                    1 => "[é漢🎉x]{200,3000}",
                ],
            )
                .prop_map(|(timestamp_ms, message)| WriteEvent {
                    timestamp_ms,
                    message,
                }),
            0..300,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn no_batch_breaks_a_limit_and_no_event_is_lost_or_reordered(
            limits in limits_strategy(),
            events in events_strategy(),
        ) {
            let plan = plan_batches(events.clone(), &limits);
            for b in &plan.batches {
                prop_assert!(!b.items.is_empty());
                prop_assert!(b.items.len() <= limits.max_events);
                let bytes: usize = b.items.iter().map(|i| event_size(&i.message)).sum();
                prop_assert_eq!(bytes, b.bytes);
                prop_assert!(bytes <= limits.max_bytes, "{} > {}", bytes, limits.max_bytes);
                let span = b.items.last().unwrap().timestamp_ms - b.items[0].timestamp_ms;
                prop_assert!(span < limits.max_span_ms);
                for i in &b.items {
                    prop_assert!(event_size(&i.message) <= limits.max_event_bytes);
                    prop_assert!(!i.message.is_empty());
                }
            }
            // Every event exactly once, batches in stable timestamp order.
            let mut expected: Vec<usize> = (0..events.len()).collect();
            expected.sort_by_key(|&i| (events[i].timestamp_ms, i));
            let rejected: std::collections::HashSet<usize> =
                plan.rejected.iter().map(|r| r.index).collect();
            expected.retain(|i| !rejected.contains(i));
            prop_assert_eq!(order(&plan), expected);
            // Kept messages are unchanged or a prefix plus the marker.
            for item in plan.batches.iter().flat_map(|b| &b.items) {
                let original = &events[item.index].message;
                if plan.truncated.contains(&item.index) {
                    let head = item.message.strip_suffix(TRUNCATION_MARKER).unwrap();
                    prop_assert!(original.starts_with(head));
                } else {
                    prop_assert_eq!(&item.message, original);
                }
                prop_assert_eq!(item.timestamp_ms, events[item.index].timestamp_ms);
            }
            // Rejections are exactly the empty and (when rejecting) oversize events.
            for r in &plan.rejected {
                let m = &events[r.index].message;
                match r.reason {
                    RejectReason::Empty => prop_assert!(m.is_empty()),
                    RejectReason::TooLarge => prop_assert!(
                        limits.oversize == Oversize::Reject && event_size(m) > limits.max_event_bytes
                    ),
                    other => prop_assert!(false, "unexpected reason {:?}", other),
                }
            }
        }
    }
}
