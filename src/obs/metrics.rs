//! The Prometheus metrics, one process-wide set.
//!
//! Process-wide because the hooks sit in layers that share no handle (the
//! CloudWatch client's retry loop, the sinks, the pollers): a global keeps
//! each hook a one-line call instead of a parameter threaded through every
//! constructor. Counters only ever go up, so tests assert exact values by
//! scraping a fresh process.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of the per-group metrics: the account it is read from
/// (`accounts[].name`, `default` without `accounts:`, the owner's id for
/// pushed events) and the group.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabel {
    account: String,
    log_group: String,
}

/// Labels of the per-API metrics: the account-Region whose budget it is and
/// the CloudWatch Logs operation name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabel {
    account: String,
    operation: String,
}

/// Label of the downstream request counter: `2xx`, `4xx`, `5xx`, ... or
/// `error` when no HTTP answer came (connection refused, timeout, TLS).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status_class: String,
}

/// Labels of the output's refused-record counter: the output and, for
/// OTLP, the signal (`logs`, `traces`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutputLabel {
    output: String,
    signal: String,
}

type GaugeF64 = Gauge<f64, std::sync::atomic::AtomicU64>;

/// Every metric cwtap exports; see docs/operations.md#metrics-and-health.
pub struct Metrics {
    registry: Registry,
    events_pulled: Family<GroupLabel, Counter>,
    events_delivered: Family<GroupLabel, Counter>,
    events_rejected: Family<GroupLabel, Counter>,
    events_fallback: Family<GroupLabel, Counter>,
    overlap_rereads: Family<GroupLabel, Counter>,
    late_events: Family<GroupLabel, Counter>,
    lag_seconds: Family<GroupLabel, GaugeF64>,
    /// Each polled group's cursor (ms): its lag is worked out at every
    /// scrape, so that it keeps growing while the group is stalled (an
    /// output outage) instead of holding its last value.
    cursors: std::sync::Mutex<std::collections::HashMap<GroupLabel, i64>>,
    api_calls: Family<OperationLabel, Counter>,
    api_throttles: Family<OperationLabel, Counter>,
    api_rate: Family<OperationLabel, GaugeF64>,
    poll_interval: Family<GroupLabel, GaugeF64>,
    downstream_requests: Family<StatusLabel, Counter>,
    downstream_latency: Histogram,
    downstream_request_events: Gauge,
    commit_latency: Histogram,
    open_traces: Gauge,
    output_rejected: Family<OutputLabel, Counter>,
    firehose: super::firehose::FirehoseMetrics,
}

/// CloudWatch error codes that mean "slow down" (counted as throttles).
pub const THROTTLE_CODES: [&str; 4] = [
    "ThrottlingException",
    "Throttling",
    "RequestLimitExceeded",
    "TooManyRequestsException",
];

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("cwtap");
        let m = Metrics {
            registry: Registry::default(),
            events_pulled: Family::default(),
            events_delivered: Family::default(),
            events_rejected: Family::default(),
            events_fallback: Family::default(),
            overlap_rereads: Family::default(),
            late_events: Family::default(),
            lag_seconds: Family::default(),
            cursors: Default::default(),
            api_calls: Family::default(),
            api_throttles: Family::default(),
            api_rate: Family::default(),
            poll_interval: Family::default(),
            downstream_requests: Family::default(),
            // 5 ms .. ~41 s.
            downstream_latency: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            downstream_request_events: Gauge::default(),
            // 0.5 ms .. ~4 s.
            commit_latency: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            open_traces: Gauge::default(),
            output_rejected: Family::default(),
            firehose: super::firehose::FirehoseMetrics::new(),
        };
        registry.register(
            "events_pulled",
            "Events read from CloudWatch, before dropping those already delivered",
            m.events_pulled.clone(),
        );
        registry.register(
            "events_delivered",
            "Events the output accepted and the state file checkpointed",
            m.events_delivered.clone(),
        );
        registry.register(
            "events_rejected",
            "Events the output refused for good (counted, not retried)",
            m.events_rejected.clone(),
        );
        registry.register(
            "events_fallback",
            "Events no parser rule matched (delivered as raw_log)",
            m.events_fallback.clone(),
        );
        registry.register(
            "overlap_rereads",
            "Events read again by the late-arrival overlap and skipped as already delivered",
            m.overlap_rereads.clone(),
        );
        registry.register(
            "late_events",
            "Events found behind the cursor by the late-arrival window and delivered",
            m.late_events.clone(),
        );
        registry.register(
            "group_lag_seconds",
            "Seconds between now and the group's cursor at its last checkpoint",
            m.lag_seconds.clone(),
        );
        registry.register(
            "api_calls",
            "CloudWatch Logs API call attempts, retries included",
            m.api_calls.clone(),
        );
        registry.register(
            "api_throttles",
            "CloudWatch Logs API call attempts answered with a throttling error",
            m.api_throttles.clone(),
        );
        registry.register(
            "api_rate_limit",
            "Calls per second the shared budget currently allows per API (lowered on throttling, recovering on success)",
            m.api_rate.clone(),
        );
        registry.register(
            "group_poll_interval_seconds",
            "Time between the last two polls of the group",
            m.poll_interval.clone(),
        );
        registry.register(
            "downstream_requests",
            "Requests to the output (VectaDB, OTLP) by HTTP status class (error: no answer)",
            m.downstream_requests.clone(),
        );
        registry.register(
            "downstream_request_duration_seconds",
            "Time from sending a request to the output (VectaDB, OTLP) to its answer",
            m.downstream_latency.clone(),
        );
        registry.register(
            "downstream_request_events",
            "Most events the output's next request carries (VectaDB: sized by the server's answers)",
            m.downstream_request_events.clone(),
        );
        registry.register(
            "checkpoint_commit_duration_seconds",
            "Time to commit one checkpoint transaction to the state file",
            m.commit_latency.clone(),
        );
        registry.register(
            "open_traces",
            "Traces not yet closed (updated as summaries are emitted)",
            m.open_traces.clone(),
        );
        m.firehose.register(&mut registry);
        registry.register(
            "output_rejected",
            "Records (log records, spans) the output refused: counted in an OTLP partial_success, or refused alone with a 4xx",
            m.output_rejected.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The metrics of `cwtap serve`.
    pub fn firehose(&self) -> &super::firehose::FirehoseMetrics {
        &self.firehose
    }

    fn group(account: &str, name: &str) -> GroupLabel {
        GroupLabel {
            account: account.to_string(),
            log_group: name.to_string(),
        }
    }

    /// A poller for `group` started: its counters show from now on, at 0
    /// until something happens (an alert on `increase()` then sees the
    /// first events after a restart, and a quiet group is not missing).
    pub fn group_started(&self, account: &str, group: &str) {
        let label = Self::group(account, group);
        for family in [
            &self.events_pulled,
            &self.events_delivered,
            &self.events_rejected,
            &self.events_fallback,
            &self.overlap_rereads,
            &self.late_events,
        ] {
            let _ = family.get_or_create(&label);
        }
    }

    /// `n` events came back from CloudWatch for `group`.
    pub fn events_pulled(&self, account: &str, group: &str, n: usize) {
        self.events_pulled
            .get_or_create(&Self::group(account, group))
            .inc_by(n as u64);
    }

    /// `n` events were skipped because an earlier poll delivered them.
    pub fn overlap_rereads(&self, account: &str, group: &str, n: usize) {
        if n > 0 {
            self.overlap_rereads
                .get_or_create(&Self::group(account, group))
                .inc_by(n as u64);
        }
    }

    /// One event was parsed by the fallback (no rule matched).
    pub fn event_fallback(&self, account: &str, group: &str) {
        self.events_fallback
            .get_or_create(&Self::group(account, group))
            .inc();
    }

    /// A checkpoint committed: its delivered, rejected and late counts.
    pub fn checkpointed(
        &self,
        account: &str,
        group: &str,
        delivered: u64,
        rejected: u64,
        late: u64,
    ) {
        let label = Self::group(account, group);
        // get_or_create also makes a zero series visible for a quiet group.
        self.events_delivered
            .get_or_create(&label)
            .inc_by(delivered);
        self.events_rejected.get_or_create(&label).inc_by(rejected);
        self.late_events.get_or_create(&label).inc_by(late);
    }

    /// The group's cursor moved to `cursor_ms`: its lag is the time since.
    pub fn group_cursor(&self, account: &str, group: &str, cursor_ms: i64) {
        let label = Self::group(account, group);
        self.set_lag(&label, cursor_ms, crate::time::now_ms());
        if let Ok(mut cursors) = self.cursors.lock() {
            cursors.insert(label, cursor_ms);
        }
    }

    /// The group is no longer polled here: its lag stops moving.
    pub fn group_stopped(&self, account: &str, group: &str) {
        if let Ok(mut cursors) = self.cursors.lock() {
            cursors.remove(&Self::group(account, group));
        }
    }

    fn set_lag(&self, label: &GroupLabel, cursor_ms: i64, now_ms: i64) {
        let lag = Duration::from_millis((now_ms - cursor_ms).max(0) as u64);
        self.lag_seconds.get_or_create(label).set(lag.as_secs_f64());
    }

    /// One attempt of a CloudWatch call ended; `error_code` is the service's
    /// error code when it failed with one.
    pub fn api_call(&self, account: &str, operation: &str, error_code: Option<&str>) {
        let label = OperationLabel {
            account: account.to_string(),
            operation: operation.to_string(),
        };
        self.api_calls.get_or_create(&label).inc();
        // At 0 from the first call on, so that the first throttle counts.
        let throttles = self.api_throttles.get_or_create(&label);
        if error_code.is_some_and(|c| THROTTLE_CODES.contains(&c)) {
            throttles.inc();
        }
    }

    /// The budget of `operation` now allows `rate` calls per second.
    pub fn api_rate(&self, account: &str, operation: &str, rate: f64) {
        self.api_rate
            .get_or_create(&OperationLabel {
                account: account.to_string(),
                operation: operation.to_string(),
            })
            .set(rate);
    }

    /// The group was polled `interval` after its previous poll.
    pub fn poll_interval(&self, account: &str, group: &str, interval: Duration) {
        self.poll_interval
            .get_or_create(&Self::group(account, group))
            .set(interval.as_secs_f64());
    }

    /// One downstream request ended with `status` (`None`: no HTTP answer).
    pub fn downstream_request(&self, status: Option<u16>, elapsed: Duration) {
        let class = match status {
            Some(s) => format!("{}xx", s / 100),
            None => "error".to_string(),
        };
        self.downstream_requests
            .get_or_create(&StatusLabel {
                status_class: class,
            })
            .inc();
        self.downstream_latency.observe(elapsed.as_secs_f64());
    }

    /// The output's next request carries at most `events` events.
    pub fn set_downstream_request_events(&self, events: usize) {
        self.downstream_request_events
            .set(i64::try_from(events).unwrap_or(i64::MAX));
    }

    /// One checkpoint commit took `elapsed`.
    pub fn checkpoint_commit(&self, elapsed: Duration) {
        self.commit_latency.observe(elapsed.as_secs_f64());
    }

    /// The number of traces not closed yet.
    pub fn set_open_traces(&self, n: i64) {
        self.open_traces.set(n);
    }

    /// The output refused `n` records of `signal` (OTLP `partial_success`,
    /// or a 4xx for records sent alone).
    pub fn output_rejected(&self, output: &str, signal: &str, n: u64) {
        self.output_rejected
            .get_or_create(&OutputLabel {
                output: output.to_string(),
                signal: signal.to_string(),
            })
            .inc_by(n);
    }

    /// The text exposition format (OpenMetrics text, which Prometheus reads).
    pub fn encode(&self) -> String {
        let now = crate::time::now_ms();
        if let Ok(cursors) = self.cursors.lock() {
            for (label, &cursor) in cursors.iter() {
                self.set_lag(label, cursor, now);
            }
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_groups_lag_is_worked_out_at_each_scrape() {
        let m = Metrics::new();
        // A cursor an hour old: a stalled group's lag is at least that at
        // the next scrape, whatever it was when the cursor last moved.
        m.group_cursor("default", "/g", crate::time::now_ms() - 3_600_000);
        let text = m.encode();
        let line = text
            .lines()
            .find(|l| l.starts_with("cwtap_group_lag_seconds{"))
            .expect("the lag series");
        let lag: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(lag >= 3600.0, "{line}");
        m.group_stopped("default", "/g");
        assert!(m.cursors.lock().unwrap().is_empty());
    }

    #[test]
    fn a_throttled_attempt_counts_as_a_call_and_a_throttle() {
        let m = Metrics::new();
        m.api_call("default", "FilterLogEvents", None);
        m.api_call("default", "FilterLogEvents", Some("ThrottlingException"));
        m.api_call(
            "default",
            "FilterLogEvents",
            Some("ResourceNotFoundException"),
        );
        m.api_call("eu", "FilterLogEvents", None);
        let text = m.encode();
        assert!(
            text.contains(
                "cwtap_api_calls_total{account=\"default\",operation=\"FilterLogEvents\"} 3"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "cwtap_api_throttles_total{account=\"default\",operation=\"FilterLogEvents\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("cwtap_api_calls_total{account=\"eu\",operation=\"FilterLogEvents\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn downstream_requests_are_counted_by_status_class_and_their_size_shown() {
        let m = Metrics::new();
        m.downstream_request(Some(200), Duration::from_millis(3));
        m.downstream_request(Some(503), Duration::from_millis(3));
        m.downstream_request(None, Duration::from_millis(3));
        let text = m.encode();
        for class in ["2xx", "5xx", "error"] {
            assert!(
                text.contains(&format!(
                    "cwtap_downstream_requests_total{{status_class=\"{class}\"}} 1"
                )),
                "{text}"
            );
        }
        assert!(text.contains("cwtap_downstream_request_duration_seconds_count 3"));
        m.set_downstream_request_events(37);
        assert!(
            m.encode()
                .contains("\ncwtap_downstream_request_events 37\n")
        );
    }
}
