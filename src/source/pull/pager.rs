//! Where a window's events come from, page by page, whatever the group's
//! read mode: the scan above drops what is outside the window or already
//! delivered, and checkpoints, the same way for both.
//!
//! - `mode: filter`: FilterLogEvents over the group, following `nextToken`
//!   until there is none.
//! - `mode: streams`: the streams that can hold events of the window are
//!   listed once (DescribeLogStreams), then each is read with GetLogEvents
//!   to its end; see [`crate::cloudwatch::streams`].

use std::collections::VecDeque;

use super::GroupSpec;
use super::plan::Window;
use crate::cloudwatch::streams::StreamRead;
use crate::cloudwatch::{CloudWatch, CloudWatchError, Page, ScanRequest};
use crate::config::{ReadMode, StreamFilter};
use crate::shutdown::Shutdown;
use crate::time::EpochMs;

/// The pages of one window of one group.
pub struct Pager {
    cloudwatch: CloudWatch,
    source: Source,
    /// Calls made so far.
    calls: u64,
}

enum Source {
    Filter {
        request: ScanRequest,
        token: Option<String>,
        done: bool,
    },
    Streams {
        log_group: String,
        filter: StreamFilter,
        start_ms: EpochMs,
        /// Exclusive.
        end_ms: EpochMs,
        /// Streams still to read; `None` until they are listed.
        pending: Option<VecDeque<String>>,
        current: Option<StreamRead>,
    },
}

impl Pager {
    /// The pages of `window` of `group`, read as the group's config says.
    pub fn new(cloudwatch: CloudWatch, group: &GroupSpec, window: Window) -> Pager {
        let source = match group.config.mode {
            ReadMode::Filter => Source::Filter {
                request: ScanRequest {
                    log_group: group.name.clone(),
                    start_ms: window.start_ms,
                    // FilterLogEvents' endTime is inclusive; windows are half-open.
                    end_ms: window.end_ms - 1,
                    filter_pattern: group.config.filter_pattern.clone(),
                    streams: group.config.streams.clone(),
                },
                token: None,
                done: false,
            },
            ReadMode::Streams => Source::Streams {
                log_group: group.name.clone(),
                filter: group.config.streams.clone(),
                start_ms: window.start_ms,
                end_ms: window.end_ms,
                pending: None,
                current: None,
            },
        };
        Pager {
            cloudwatch,
            source,
            calls: 0,
        }
    }

    /// The calls made so far (every page, and stream listings).
    pub fn calls(&self) -> u64 {
        self.calls
    }

    /// Whether pages measure how dense the window is: one scan over the
    /// group pages by content, a stream-by-stream read by streams.
    pub fn pages_measure_density(&self) -> bool {
        matches!(self.source, Source::Filter { .. })
    }

    /// Whether every page of the window was returned. A page, even an empty
    /// one, is not the end by itself: CloudWatch scans a bounded slice per
    /// call.
    pub fn is_done(&self) -> bool {
        match &self.source {
            Source::Filter { done, .. } => *done,
            Source::Streams {
                pending, current, ..
            } => {
                pending.as_ref().is_some_and(VecDeque::is_empty)
                    && current.as_ref().is_none_or(StreamRead::is_done)
            }
        }
    }

    /// The next page, or `None` when the window has no more.
    pub async fn next(&mut self, shutdown: &Shutdown) -> Result<Option<Page>, CloudWatchError> {
        if self.is_done() {
            return Ok(None);
        }
        let cloudwatch = &self.cloudwatch;
        let calls = &mut self.calls;
        match &mut self.source {
            Source::Filter {
                request,
                token,
                done,
            } => {
                *calls += 1;
                let page = cloudwatch
                    .filter_page(request, token.as_deref(), shutdown)
                    .await?;
                match &page.next_token {
                    Some(t) => *token = Some(t.clone()),
                    None => *done = true,
                }
                Ok(Some(page))
            }
            Source::Streams {
                log_group,
                filter,
                start_ms,
                end_ms,
                pending,
                current,
            } => loop {
                if let Some(read) = current.as_mut().filter(|r| !r.is_done()) {
                    *calls += 1;
                    let events = cloudwatch.stream_page(read, shutdown).await?;
                    return Ok(Some(Page {
                        events,
                        next_token: None,
                    }));
                }
                if pending.is_none() {
                    let (streams, listing) = cloudwatch
                        .window_streams(log_group, filter, *start_ms, *end_ms, shutdown)
                        .await?;
                    *calls += listing;
                    *pending = Some(streams.into());
                }
                match pending.as_mut().and_then(VecDeque::pop_front) {
                    Some(stream) => {
                        *current = Some(StreamRead::new(log_group, &stream, *start_ms, *end_ms))
                    }
                    None => {
                        *current = None;
                        return Ok(None);
                    }
                }
            },
        }
    }
}
