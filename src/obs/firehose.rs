//! The metrics of `cwtap serve` (the Firehose source).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

/// Requests, records and events received from Firehose.
pub struct FirehoseMetrics {
    requests: Family<StatusLabel, Counter>,
    records: Counter,
    events: Counter,
    duplicates: Counter,
    rejects: Family<ReasonLabel, Counter>,
    latency: Histogram,
}

impl FirehoseMetrics {
    pub(super) fn new() -> FirehoseMetrics {
        FirehoseMetrics {
            requests: Family::default(),
            records: Counter::default(),
            events: Counter::default(),
            duplicates: Counter::default(),
            rejects: Family::default(),
            // 1 ms .. ~65 s.
            latency: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
        }
    }

    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "firehose_requests",
            "Firehose requests answered, by HTTP status",
            self.requests.clone(),
        );
        registry.register(
            "firehose_records",
            "Records of the Firehose requests decoded",
            self.records.clone(),
        );
        registry.register(
            "firehose_events",
            "Log events in the Firehose requests decoded (control messages aside)",
            self.events.clone(),
        );
        registry.register(
            "firehose_duplicates",
            "Events skipped because a retried request delivered them before",
            self.duplicates.clone(),
        );
        registry.register(
            "firehose_rejects",
            "Firehose requests refused, by reason",
            self.rejects.clone(),
        );
        registry.register(
            "firehose_request_duration_seconds",
            "Time from a Firehose request's arrival to its answer",
            self.latency.clone(),
        );
    }

    /// A request was answered `status` after `elapsed`.
    pub fn request(&self, status: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&StatusLabel {
                status: status.to_string(),
            })
            .inc();
        self.latency.observe(elapsed.as_secs_f64());
    }

    /// A request was decoded: `records` records holding `events` events.
    pub fn decoded(&self, records: usize, events: usize) {
        self.records.inc_by(records as u64);
        self.events.inc_by(events as u64);
    }

    /// `n` events were skipped as already delivered.
    pub fn duplicates(&self, n: usize) {
        self.duplicates.inc_by(n as u64);
    }

    /// A request was refused for `reason` (`auth`, `too_large`, `busy`,
    /// `not_firehose`, `base64`, `gzip`, `json`, `timeout`, `shutdown`, ...).
    pub fn reject(&self, reason: &str) {
        self.rejects
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }
}
