//! Reading a group stream by stream: DescribeLogStreams finds the streams that
//! can hold events of a window, GetLogEvents reads each of them.
//!
//! GetLogEvents has a quota of its own (25 requests/s per account and Region
//! by default, against FilterLogEvents' 5), which is why a busy group may be
//! read this way. Its events carry no `eventId`; [`OccurrenceIds`] gives each
//! one an id that is the same every time the window is read again.

use std::collections::HashMap;

use super::{CloudWatch, CloudWatchError, fxhash};
use crate::config::StreamFilter;
use crate::event::RawEvent;
use crate::shutdown::Shutdown;
use crate::time::EpochMs;

const HOUR_MS: i64 = 3_600_000;

/// How far in the future of its ingestion an event's timestamp may be
/// (PutLogEvents refuses events more than 2 h ahead).
pub const FUTURE_MS: i64 = 2 * HOUR_MS;

/// How far behind its ingestion an event's timestamp may be (PutLogEvents
/// refuses events more than 14 days old).
pub const PAST_MS: i64 = 14 * 24 * HOUR_MS;

/// Extra idle time before a stream is left out, because `lastIngestionTime`
/// is itself updated "on an eventual consistency basis" (AWS API reference).
pub const INGESTION_LAG_MS: i64 = HOUR_MS;

/// What DescribeLogStreams says about a stream, as far as choosing the
/// streams of a window goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamActivity {
    pub name: String,
    pub created_ms: Option<EpochMs>,
    pub last_ingestion_ms: Option<EpochMs>,
}

impl StreamActivity {
    /// Whether the stream can hold an event with a timestamp in
    /// `[start_ms, end_ms)`.
    ///
    /// Every event of a stream was ingested between the stream's creation and
    /// its last ingestion, and its timestamp is at most [`FUTURE_MS`] after
    /// and at most [`PAST_MS`] before its ingestion. So a stream whose
    /// `lastIngestionTime` is earlier than `start - 2 h` holds no event of the
    /// window, nor does a stream created more than 14 days after the window's
    /// end. `lastIngestionTime` is documented as eventually consistent too
    /// (in practice it follows ingestion closely, unlike
    /// `lastEventTimestamp`, which lags by up to an hour and is not used
    /// here), so a stream is left out only after a further
    /// [`INGESTION_LAG_MS`] of quiet. A stream without `lastIngestionTime`
    /// (no events yet, or not updated yet) is always read.
    pub fn may_hold(&self, start_ms: EpochMs, end_ms: EpochMs) -> bool {
        if let Some(last) = self.last_ingestion_ms
            && last < start_ms - FUTURE_MS - INGESTION_LAG_MS
        {
            return false;
        }
        if let Some(created) = self.created_ms
            && end_ms <= created - PAST_MS
        {
            return false;
        }
        true
    }
}

/// The prefix to list when only `names` are wanted: their longest common
/// prefix (Lambda's `YYYY/MM/DD/[version]...` names share the date), so
/// that DescribeLogStreams lists as few others as possible.
fn common_prefix(names: &[String]) -> String {
    let Some(first) = names.first() else {
        return String::new();
    };
    let mut len = first.len();
    for name in &names[1..] {
        len = first
            .char_indices()
            .zip(name.chars())
            .take_while(|((_, a), b)| a == b)
            .map(|((i, a), _)| i + a.len_utf8())
            .last()
            .unwrap_or(0)
            .min(len);
    }
    first[..len].to_string()
}

/// Gives GetLogEvents events (which carry no `eventId`) ids that stay the
/// same each time a window is read again, for one stream.
///
/// The id is `stream:<stream hash>:<timestamp>:<ingestion time>:<message
/// hash>:<occurrence>`; a FilterLogEvents `eventId` is a string of digits, so
/// the two never collide. The occurrence tells apart events whose stream,
/// timestamp, ingestion time and message hash are all equal: the first such
/// event in the read is 0, the next 1, and so on.
///
/// Why that is stable: windows are half-open ranges of whole milliseconds and
/// every page of the stream is read, so each read of a window sees every
/// event of each of its milliseconds, never a part of one. Within a
/// millisecond a stream returns its events in ingestion order, which later
/// ingestion only extends at the end. So the k-th event with a given
/// (timestamp, ingestion time, message hash) is the same event in every
/// read, and an event ingested later with the same key gets the next,
/// unused index and is delivered. Truly identical events are
/// interchangeable anyway: only their count matters.
#[derive(Debug)]
pub struct OccurrenceIds {
    stream_hash: u64,
    seen: HashMap<(EpochMs, Option<EpochMs>, u64), u32>,
}

impl OccurrenceIds {
    pub fn new(stream: &str) -> OccurrenceIds {
        OccurrenceIds {
            stream_hash: fxhash(stream),
            seen: HashMap::new(),
        }
    }

    /// The id of the next event read with these values.
    pub fn next_id(
        &mut self,
        timestamp_ms: EpochMs,
        ingestion_ms: Option<EpochMs>,
        message: &str,
    ) -> String {
        let message_hash = fxhash(message);
        let n = self
            .seen
            .entry((timestamp_ms, ingestion_ms, message_hash))
            .or_insert(0);
        let occurrence = *n;
        *n += 1;
        format!(
            "stream:{:016x}:{timestamp_ms}:{}:{message_hash:016x}:{occurrence}",
            self.stream_hash,
            ingestion_ms.map(|i| i.to_string()).unwrap_or_default(),
        )
    }
}

/// One stream's events of a window, read page by page with GetLogEvents.
#[derive(Debug)]
pub struct StreamRead {
    log_group: String,
    stream: String,
    start_ms: EpochMs,
    /// Exclusive.
    end_ms: EpochMs,
    /// The forward token to send next; `None` before the first page.
    token: Option<String>,
    done: bool,
    ids: OccurrenceIds,
}

impl StreamRead {
    /// A read of `stream` for events with `start_ms <= timestamp < end_ms`.
    pub fn new(log_group: &str, stream: &str, start_ms: EpochMs, end_ms: EpochMs) -> StreamRead {
        StreamRead {
            log_group: log_group.to_string(),
            stream: stream.to_string(),
            start_ms,
            end_ms,
            token: None,
            done: false,
            ids: OccurrenceIds::new(stream),
        }
    }

    /// Whether the end of the stream's window was reached.
    pub fn is_done(&self) -> bool {
        self.done
    }
}

impl CloudWatch {
    /// The streams of `log_group` selected by `filter` that can hold events
    /// with timestamps in `[start_ms, end_ms)` (see
    /// [`StreamActivity::may_hold`]), by name, and the DescribeLogStreams
    /// calls it took (every page is read).
    pub async fn window_streams(
        &self,
        log_group: &str,
        filter: &StreamFilter,
        start_ms: EpochMs,
        end_ms: EpochMs,
        shutdown: &Shutdown,
    ) -> Result<(Vec<String>, u64), CloudWatchError> {
        let prefix = match filter {
            StreamFilter::All => String::new(),
            StreamFilter::Prefix(p) => p.clone(),
            StreamFilter::Names(names) => common_prefix(names),
        };
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        let mut calls = 0;
        loop {
            calls += 1;
            let page = self
                .retrying("DescribeLogStreams", log_group, shutdown, || {
                    self.client
                        .describe_log_streams()
                        .log_group_name(log_group)
                        .set_log_stream_name_prefix((!prefix.is_empty()).then(|| prefix.clone()))
                        .limit(50)
                        .set_next_token(token.clone())
                        .send()
                })
                .await?;
            found.extend(page.log_streams().iter().map(|s| StreamActivity {
                name: s.log_stream_name().unwrap_or_default().to_string(),
                created_ms: s.creation_time(),
                last_ingestion_ms: s.last_ingestion_time(),
            }));
            match page.next_token() {
                Some(t) if !t.is_empty() && token.as_deref() != Some(t) => {
                    token = Some(t.to_string())
                }
                _ => break,
            }
        }
        let listed = found.len();
        let streams: Vec<String> = found
            .into_iter()
            .filter(|s| !s.name.is_empty())
            .filter(|s| match filter {
                StreamFilter::Names(names) => names.contains(&s.name),
                _ => true,
            })
            .filter(|s| s.may_hold(start_ms, end_ms))
            .map(|s| s.name)
            .collect();
        tracing::debug!(
            group = log_group,
            listed,
            selected = streams.len(),
            "streams of the window"
        );
        Ok((streams, calls))
    }

    /// The next page of `read` (GetLogEvents, oldest first). The end of the
    /// stream is a forward token equal to the one sent; a page may be empty
    /// before it. A stream deleted since it was listed reads as empty.
    pub async fn stream_page(
        &self,
        read: &mut StreamRead,
        shutdown: &Shutdown,
    ) -> Result<Vec<RawEvent>, CloudWatchError> {
        if read.done {
            return Ok(Vec::new());
        }
        let resource = format!("{} stream {}", read.log_group, read.stream);
        let result = self
            .retrying("GetLogEvents", &resource, shutdown, || {
                self.client
                    .get_log_events()
                    .log_group_name(&read.log_group)
                    .log_stream_name(&read.stream)
                    .start_time(read.start_ms)
                    // Exclusive in the current API reference (older texts and
                    // moto include it): the window is filtered again anyway.
                    .end_time(read.end_ms)
                    .start_from_head(true)
                    .set_next_token(read.token.clone())
                    .customize()
                    .interceptor(super::page::Events(super::page::Call::Get))
                    .send()
            })
            .await;
        let out = match result {
            Ok(out) => out,
            // The group was there when the streams were listed: the stream
            // is gone, and its events with it.
            Err(CloudWatchError::GroupNotFound { .. }) => {
                tracing::debug!(group = %read.log_group, stream = %read.stream, "stream deleted since it was listed");
                read.done = true;
                return Ok(Vec::new());
            }
            Err(e) => return Err(e),
        };
        let events = out
            .events()
            .iter()
            .map(|e| {
                let timestamp_ms = e.timestamp().unwrap_or_default();
                let ingestion_time_ms = e.ingestion_time();
                let message = e.message().unwrap_or_default().to_string();
                RawEvent {
                    log_group: read.log_group.clone(),
                    log_stream: read.stream.clone(),
                    event_id: read.ids.next_id(timestamp_ms, ingestion_time_ms, &message),
                    timestamp_ms,
                    ingestion_time_ms,
                    message,
                    origin: Default::default(),
                }
            })
            .collect();
        match out.next_forward_token().filter(|t| !t.is_empty()) {
            Some(t) if read.token.as_deref() != Some(t) => read.token = Some(t.to_string()),
            // The same token back (or none at all): the stream is read.
            _ => read.done = true,
        }
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(created: Option<i64>, last: Option<i64>) -> StreamActivity {
        StreamActivity {
            name: "s".into(),
            created_ms: created,
            last_ingestion_ms: last,
        }
    }

    #[test]
    fn a_stream_quiet_since_before_the_margins_is_left_out_and_any_other_is_read() {
        let start = 1_000 * HOUR_MS;
        let end = start + HOUR_MS;
        let edge = start - FUTURE_MS - INGESTION_LAG_MS;
        assert!(!stream(Some(0), Some(edge - 1)).may_hold(start, end));
        assert!(stream(Some(0), Some(edge)).may_hold(start, end));
        assert!(stream(Some(0), Some(start)).may_hold(start, end));
        // lastEventTimestamp plays no part; a stream with no ingestion time
        // yet may have just received its first events.
        assert!(stream(Some(0), None).may_hold(start, end));
        assert!(stream(None, None).may_hold(start, end));
        // Created more than 14 days after the window: nothing can be in it.
        assert!(!stream(Some(end + PAST_MS), None).may_hold(start, end));
        assert!(stream(Some(end + PAST_MS - 1), None).may_hold(start, end));
    }

    /// The ids a state file holds for `mode: streams` events: a change of
    /// the hash or of the layout would deliver every event of the re-read
    /// windows again after an upgrade. Pinned to literal values (FNV-1a,
    /// 64-bit, as any other implementation of it computes them).
    #[test]
    fn occurrence_ids_are_pinned() {
        let mut ids = OccurrenceIds::new("2026/12/02/[$LATEST]0123456789abcdef");
        assert_eq!(
            ids.next_id(1_795_161_600_123, Some(1_795_161_600_456), "hello world"),
            "stream:169a9c1f85cb063e:1795161600123:1795161600456:779a65e7023cd2e7:0"
        );
        assert_eq!(
            ids.next_id(1_795_161_600_123, Some(1_795_161_600_456), "hello world"),
            "stream:169a9c1f85cb063e:1795161600123:1795161600456:779a65e7023cd2e7:1"
        );
        assert_eq!(
            ids.next_id(1_795_161_600_124, None, ""),
            "stream:169a9c1f85cb063e:1795161600124::cbf29ce484222325:0"
        );
    }

    #[test]
    fn listing_by_names_uses_their_common_prefix() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            common_prefix(&names(&[
                "2026/11/20/[$LATEST]ab",
                "2026/11/21/[$LATEST]cd"
            ])),
            "2026/11/2"
        );
        assert_eq!(common_prefix(&names(&["only"])), "only");
        assert_eq!(common_prefix(&names(&["a", "b"])), "");
        assert_eq!(common_prefix(&names(&["é1", "é2"])), "é");
        assert_eq!(common_prefix(&names(&["ab", "a"])), "a");
        assert_eq!(common_prefix(&[]), "");
    }

    #[test]
    fn ids_are_the_same_on_every_read_and_tell_identical_events_apart() {
        let read = |events: &[(i64, i64, &str)]| {
            let mut ids = OccurrenceIds::new("s1");
            events
                .iter()
                .map(|(t, i, m)| ids.next_id(*t, Some(*i), m))
                .collect::<Vec<_>>()
        };
        let first = read(&[(5, 9, "a"), (5, 9, "a"), (5, 9, "b"), (6, 9, "a")]);
        let unique: std::collections::HashSet<_> = first.iter().collect();
        assert_eq!(unique.len(), 4);
        // A third identical event ingested later in the same millisecond
        // extends the read; the first ones keep their ids.
        let again = read(&[
            (5, 9, "a"),
            (5, 9, "a"),
            (5, 9, "b"),
            (5, 9, "a"),
            (6, 9, "a"),
        ]);
        assert_eq!(&again[..3], &first[..3]);
        assert_eq!(again[4], first[3]);
        assert!(!first.contains(&again[3]));
        // Another stream, or another ingestion time, is another event.
        let mut other = OccurrenceIds::new("s2");
        assert_ne!(other.next_id(5, Some(9), "a"), first[0]);
        let mut ids = OccurrenceIds::new("s1");
        assert_ne!(ids.next_id(5, Some(10), "a"), first[0]);
        // Never a string of digits like a FilterLogEvents eventId.
        assert!(first.iter().all(|id| id.starts_with("stream:")));
        assert_eq!(
            first[1],
            format!("stream:{:016x}:5:9:{:016x}:1", fxhash("s1"), fxhash("a"))
        );
    }
}
