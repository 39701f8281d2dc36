//! OpenTelemetry output: OTLP/HTTP with protobuf bodies to any backend that
//! takes it (an OpenTelemetry Collector, Grafana, Honeycomb, ...). Log events
//! go to `{endpoint}/v1/logs` as log records; the Lambda invocations of
//! closed traces go to `{endpoint}/v1/traces` as spans ([`encode`] has the
//! mapping, docs/otlp.md the table). Delivery follows the OTLP/HTTP
//! specification and cwtap's rule that nothing is checkpointed before the
//! backend took it:
//!
//! - a request body stays under `otlp.max_batch_bytes` and
//!   `otlp.batch_size` records (before compression);
//! - 2xx is delivered; a `partial_success` that rejected records is counted
//!   (`cwtap_output_rejected_total{output="otlp"}`) and logged, never
//!   retried, as the specification says (it does not say which records);
//! - 429, 5xx, any other status that may change (401, 403, 404, 408),
//!   timeouts and connection errors are retried with capped exponential
//!   backoff and full jitter, never sooner than a `Retry-After` (seconds or
//!   an HTTP date), for as long as it takes, and mark the output not ready;
//! - 400, 413 and 422 refuse a whole request for what may be one record:
//!   the batch is halved until the refused records stand alone, which are
//!   then counted as rejected; 415 is rejected as it is;
//! - at shutdown an in-flight request gets `agent.shutdown_grace` to finish;
//! - the configured headers go out with every request and are never logged;
//!   https certificates are always verified (system roots plus
//!   `otlp.ca_file`).
//!
//! OTLP has no health route: the start-up check (`otlp.health_check`) posts
//! an empty `ExportLogsServiceRequest`, which a receiver accepts without
//! storing anything, and so proves the URL, TLS and the headers.
//!
//! [`config`] holds the `otlp:` section.

pub mod config;
pub mod encode;

use std::collections::VecDeque;
use std::io::Write;
use std::time::{Duration, SystemTime};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue};

use super::{BoxFuture, Outcome, Sink, SinkError, read_ca_file};
use crate::config::AgentConfig;
use crate::errors;
use crate::event::Record;
use crate::obs;
use crate::retry::Backoff;
use crate::shutdown::Shutdown;
pub use config::{Compression, OUTPUT, OtlpConfig};
use encode::{Encoded, Signal};

/// The longest `Retry-After` honoured as given; a longer one is waited out in
/// steps of this (each retry asks again).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

const PROTOBUF: &str = "application/x-protobuf";

pub struct OtlpSink {
    config: OtlpConfig,
    client: reqwest::Client,
    /// `Content-Type` and the configured headers, sent with every request.
    headers: HeaderMap,
    /// How long an in-flight request may finish after shutdown.
    shutdown_grace: Duration,
}

/// How one HTTP exchange ended.
enum Reply {
    Status {
        status: StatusCode,
        body: Vec<u8>,
        retry_after: Option<Duration>,
    },
    Transport(String),
    Abandoned,
}

impl OtlpSink {
    pub fn new(config: OtlpConfig, agent: &AgentConfig) -> Result<OtlpSink, SinkError> {
        let mut builder = reqwest::Client::builder();
        if let Some(path) = &config.ca_file {
            let certs =
                read_ca_file(path).map_err(|e| SinkError::Open(format!("otlp.ca_file: {e}")))?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder
            .timeout(config.timeout)
            .connect_timeout(Duration::from_secs(10).min(config.timeout))
            .user_agent(concat!("cwtap/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SinkError::Open(format!("cannot build the HTTP client: {e}")))?;
        let mut headers = HeaderMap::new();
        for h in &config.headers {
            headers.append(h.name.clone(), h.value.clone());
        }
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_static(PROTOBUF),
        );
        if config.compression == Compression::Gzip {
            headers.insert(
                reqwest::header::CONTENT_ENCODING,
                HeaderValue::from_static("gzip"),
            );
        }
        obs::metrics().set_downstream_request_events(config.batch_size);
        Ok(OtlpSink {
            config,
            client,
            headers,
            shutdown_grace: agent.shutdown_grace,
        })
    }

    fn url(&self, signal: Signal) -> String {
        match signal {
            Signal::Logs => self.config.logs_url(),
            Signal::Traces => self.config.traces_url(),
        }
    }

    /// The body as sent: compressed when configured.
    fn finish_body(&self, body: Vec<u8>) -> Vec<u8> {
        match self.config.compression {
            Compression::None => body,
            Compression::Gzip => {
                let mut gz = flate2::write::GzEncoder::new(
                    Vec::with_capacity(body.len() / 4 + 64),
                    flate2::Compression::fast(),
                );
                // Writing into a Vec cannot fail.
                gz.write_all(&body)
                    .and_then(|()| gz.finish())
                    .unwrap_or_default()
            }
        }
    }

    /// One POST of an export request.
    async fn post(&self, signal: Signal, body: Vec<u8>, shutdown: &Shutdown) -> Reply {
        let send = self
            .client
            .post(self.url(signal))
            .headers(self.headers.clone())
            .body(self.finish_body(body))
            .send();
        let started = std::time::Instant::now();
        let response = tokio::select! {
            r = send => r,
            _ = shutdown.deadline(self.shutdown_grace) => return Reply::Abandoned,
        };
        match response {
            Ok(resp) => {
                let status = resp.status();
                let retry_after = retry_after(resp.headers(), SystemTime::now());
                let body = tokio::select! {
                    b = resp.bytes() => b.map(|b| b.to_vec()).unwrap_or_default(),
                    _ = shutdown.deadline(self.shutdown_grace) => Vec::new(),
                };
                obs::metrics().downstream_request(Some(status.as_u16()), started.elapsed());
                Reply::Status {
                    status,
                    body,
                    retry_after,
                }
            }
            // reqwest's errors carry the URL, never headers: safe to log.
            Err(e) => {
                let chain = errors::chain(&e);
                obs::metrics().downstream_request(None, started.elapsed());
                obs::readiness().output_down(&format!("OTLP endpoint unreachable: {chain}"));
                Reply::Transport(chain)
            }
        }
    }

    /// Delivers every unit of `encoded`, recording each unit's record in
    /// `outcome`. Returns false when shutdown came first.
    async fn send_signal(
        &self,
        encoded: &Encoded,
        batch: &[Record],
        outcome: &mut Outcome,
        shutdown: &Shutdown,
    ) -> bool {
        let signal = encoded.signal;
        let mut queue = self.chunks(encoded);
        let mut backoff = Backoff::new(Duration::from_millis(250), self.config.max_backoff);
        while let Some(chunk) = queue.pop_front() {
            if shutdown.is_triggered() {
                return false;
            }
            let records = |chunk: &[usize]| -> Vec<usize> {
                chunk.iter().map(|&u| encoded.units[u].record).collect()
            };
            let items = |chunk: &[usize]| -> u64 {
                chunk
                    .iter()
                    .map(|&u| encoded.units[u].items.len() as u64)
                    .sum()
            };
            let delay = match self.post(signal, encoded.body(&chunk), shutdown).await {
                Reply::Abandoned => return false,
                Reply::Status { status, body, .. } if status.is_success() => {
                    obs::readiness().output_up();
                    backoff.reset();
                    partial_success(signal, &body, items(&chunk));
                    outcome.accepted.extend(records(&chunk));
                    None
                }
                // 400 and 422 refuse the whole request for what may be one bad
                // record, 413 for its size: halve until the refused records
                // stand alone, so that the others still get through.
                Reply::Status { status, .. }
                    if matches!(status.as_u16(), 400 | 413 | 422) && chunk.len() > 1 =>
                {
                    obs::readiness().output_up();
                    let (a, b) = chunk.split_at(chunk.len() / 2);
                    tracing::warn!(
                        signal = signal.name(),
                        status = status.as_u16(),
                        records = chunk.len(),
                        "the OTLP endpoint refused a request; splitting it to isolate the refused records"
                    );
                    queue.push_front(b.to_vec());
                    queue.push_front(a.to_vec());
                    continue;
                }
                Reply::Status { status, body, .. }
                    if matches!(status.as_u16(), 400 | 413 | 415 | 422) =>
                {
                    obs::readiness().output_up();
                    let first = records(&chunk).first().copied().unwrap_or_default();
                    tracing::error!(
                        signal = signal.name(),
                        status = status.as_u16(),
                        records = chunk.len(),
                        sample_log_group = %batch.get(first).map(Record::log_group).unwrap_or_default(),
                        sample_log_id = %batch.get(first).map(Record::log_id).unwrap_or_default(),
                        response = %status_message(&body),
                        "the OTLP endpoint refused records; not retrying, counting them as rejected"
                    );
                    obs::metrics().output_rejected("otlp", signal.name(), items(&chunk));
                    outcome.rejected.extend(records(&chunk));
                    None
                }
                Reply::Status {
                    status,
                    body,
                    retry_after,
                } => {
                    obs::readiness().output_down(&format!(
                        "OTLP endpoint answered {status} to {}",
                        signal.path()
                    ));
                    tracing::warn!(
                        signal = signal.name(),
                        status = status.as_u16(),
                        retry_after_secs = retry_after.map(|d| d.as_secs_f64()),
                        response = %status_message(&body),
                        "OTLP delivery failed; retrying"
                    );
                    Some(retry_after.unwrap_or_default())
                }
                Reply::Transport(error) => {
                    tracing::warn!(signal = signal.name(), %error, "OTLP endpoint unreachable; retrying");
                    Some(Duration::ZERO)
                }
            };
            if let Some(at_least) = delay {
                queue.push_front(chunk);
                // Never sooner than the server asked, and backing off anyway.
                let wait = backoff.next_delay().max(at_least.min(MAX_RETRY_AFTER));
                if !shutdown.sleep(wait).await {
                    return false;
                }
            }
        }
        true
    }

    /// The units cut into requests of at most `batch_size` records and
    /// `max_batch_bytes` (a single unit over the bound goes alone).
    fn chunks(&self, encoded: &Encoded) -> VecDeque<Vec<usize>> {
        let mut queue = VecDeque::new();
        let mut chunk: Vec<usize> = Vec::new();
        // The resources the chunk already carries (each costs its entry once).
        let mut resources: Vec<usize> = Vec::new();
        let mut bytes = 0usize;
        for u in 0..encoded.units.len() {
            let mut cost = unit_cost(encoded, u, &resources);
            if !chunk.is_empty()
                && (bytes + cost.0 > self.config.max_batch_bytes
                    || chunk.len() >= self.config.batch_size)
            {
                queue.push_back(std::mem::take(&mut chunk));
                resources.clear();
                bytes = 0;
                cost = unit_cost(encoded, u, &resources);
            }
            bytes += cost.0;
            resources.extend(cost.1);
            chunk.push(u);
        }
        if !chunk.is_empty() {
            queue.push_back(chunk);
        }
        queue
    }
}

/// What unit `u` adds to a request that already carries `resources`: its
/// bytes, and the resources it brings in.
fn unit_cost(encoded: &Encoded, u: usize, resources: &[usize]) -> (usize, Vec<usize>) {
    let mut bytes = encoded.unit_bytes(u);
    let mut fresh = Vec::new();
    for item in &encoded.units[u].items {
        if !resources.contains(&item.resource) && !fresh.contains(&item.resource) {
            fresh.push(item.resource);
            bytes += encoded.resource_overhead(item.resource);
        }
    }
    (bytes, fresh)
}

/// Counts and logs what a 2xx answer's `partial_success` says: rejected
/// records (counted, never retried: the answer does not say which), or a
/// warning the server attached.
fn partial_success(signal: Signal, body: &[u8], sent: u64) {
    if body.is_empty() {
        return;
    }
    let decoded = match signal {
        Signal::Logs => ExportLogsServiceResponse::decode(body).map(|r| {
            r.partial_success
                .map(|p| (p.rejected_log_records, p.error_message))
        }),
        Signal::Traces => ExportTraceServiceResponse::decode(body).map(|r| {
            r.partial_success
                .map(|p| (p.rejected_spans, p.error_message))
        }),
    };
    match decoded {
        Ok(Some((rejected, message))) if rejected > 0 => {
            let rejected = (rejected as u64).min(sent);
            obs::metrics().output_rejected("otlp", signal.name(), rejected);
            tracing::warn!(
                signal = signal.name(),
                rejected,
                sent,
                error = %message,
                "the OTLP endpoint accepted a request but rejected some of its records (partial success); not retrying them"
            );
        }
        Ok(Some((_, message))) if !message.is_empty() => {
            tracing::warn!(signal = signal.name(), warning = %message, "the OTLP endpoint accepted a request with a warning");
        }
        Ok(_) => {}
        Err(e) => {
            tracing::debug!(signal = signal.name(), error = %e, "the OTLP endpoint's 2xx answer is not an export response; counting the request as delivered");
        }
    }
}

/// How long a `Retry-After` header asks to wait: delay-seconds or an
/// HTTP date (relative to `now`).
fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

/// An error answer's `google.rpc.Status` message (field 2), or its bytes as
/// text when it is not one; shortened for a log line.
fn status_message(body: &[u8]) -> String {
    /// The two fields of `google.rpc.Status` cwtap reads.
    #[derive(Clone, PartialEq, prost::Message)]
    struct RpcStatus {
        #[prost(int32, tag = "1")]
        code: i32,
        #[prost(string, tag = "2")]
        message: String,
    }
    let text = match RpcStatus::decode(body) {
        Ok(s) if !s.message.is_empty() => s.message,
        _ => String::from_utf8_lossy(body).into_owned(),
    };
    text.chars().take(300).collect()
}

/// The body of one `POST /v1/logs` carrying every event of `batch`, encoded
/// as the sink encodes it (uncompressed). Public for `benches/encode.rs`
/// only; the sink itself also cuts batches by size.
#[doc(hidden)]
pub fn encode_logs_body(batch: &[Record]) -> Vec<u8> {
    encode::encode_batch(batch, false).logs.body_all()
}

impl Sink for OtlpSink {
    fn deliver<'a>(
        &'a self,
        batch: &'a [Record],
        shutdown: &'a Shutdown,
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let encoded = encode::encode_batch(batch, self.config.traces);
            let mut outcome = Outcome {
                accepted: encoded.nothing_to_send.clone(),
                ..Outcome::default()
            };
            for part in [&encoded.logs, &encoded.traces] {
                if !self.send_signal(part, batch, &mut outcome, shutdown).await {
                    outcome.abandoned = true;
                    break;
                }
            }
            outcome
        })
    }

    fn health<'a>(&'a self, shutdown: &'a Shutdown) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            if !self.config.health_check {
                return Ok(());
            }
            let url = self.url(Signal::Logs);
            let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(8));
            let mut last = String::new();
            for _ in 0..5 {
                // An empty ExportLogsServiceRequest: valid, and stores nothing.
                let empty = self.finish_body(Vec::new());
                let sent = tokio::select! {
                    r = self.client.post(&url).headers(self.headers.clone()).body(empty).send() => r,
                    _ = shutdown.wait() => return Err(SinkError::Unhealthy("shutdown during health check".into())),
                };
                match sent {
                    Ok(resp) if resp.status().is_success() => {
                        obs::readiness().output_up();
                        return Ok(());
                    }
                    Ok(resp) => {
                        let status = resp.status();
                        let body = resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
                        last = format!(
                            "an empty export to {url} was answered {status}: {}",
                            status_message(&body)
                        );
                        // A refusal that will not change by asking again.
                        if status.is_client_error() && !matches!(status.as_u16(), 408 | 429) {
                            break;
                        }
                    }
                    Err(e) => last = errors::chain(&e),
                }
                tracing::warn!(endpoint = %self.config.endpoint, error = %last, "OTLP health check failed");
                obs::readiness().output_down(&format!("health check failed: {last}"));
                if !backoff.sleep(shutdown).await {
                    break;
                }
            }
            Err(SinkError::Unhealthy(format!(
                "OTLP endpoint {} is not healthy: {last} (check otlp.endpoint and otlp.headers, or set otlp.health_check: false)",
                self.config.endpoint
            )))
        })
    }

    fn batch_size(&self) -> usize {
        self.config.batch_size
    }

    fn batch_bytes(&self) -> usize {
        self.config.max_batch_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            reqwest::header::RETRY_AFTER,
            HeaderValue::from_str(value).unwrap(),
        );
        h
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_as_an_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(
            retry_after(&headers("7"), now),
            Some(Duration::from_secs(7))
        );
        // 2015-10-21T07:28:00Z is 1445412480.
        assert_eq!(
            retry_after(&headers("Wed, 21 Oct 2015 07:28:30 GMT"), now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after(&headers("Wed, 21 Oct 2015 07:27:00 GMT"), now),
            Some(Duration::ZERO),
            "a date in the past: retry now"
        );
        assert_eq!(retry_after(&headers("soon"), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn an_error_answers_rpc_status_message_is_shown() {
        // google.rpc.Status{code: 14, message: "down"}
        let body = [0x08, 14, 0x12, 4, b'd', b'o', b'w', b'n'];
        assert_eq!(status_message(&body), "down");
        assert_eq!(status_message(b"plain text"), "plain text");
    }

    fn sink(batch_size: usize, max_batch_bytes: usize) -> OtlpSink {
        let config = crate::config::Config::from_yaml(
            "ndjson: {path: x}\nlog_groups: [{name: /a}]\n",
            std::path::Path::new("c.yaml"),
        )
        .expect("config");
        OtlpSink::new(
            OtlpConfig {
                batch_size,
                max_batch_bytes,
                ..OtlpConfig::with_endpoint("http://127.0.0.1:1")
            },
            &config.agent,
        )
        .expect("sink")
    }

    fn batch(n: usize, groups: usize) -> Vec<Record> {
        (0..n)
            .map(|i| {
                let raw = crate::event::RawEvent {
                    log_group: format!("/g{}", i % groups),
                    log_stream: "s".into(),
                    event_id: format!("{i:056}"),
                    timestamp_ms: i as i64,
                    ingestion_time_ms: None,
                    message: format!("message {i} {}", "x".repeat(100)),
                    origin: Default::default(),
                };
                let parsed = crate::parse::RuleSet::default().parse(&raw.message);
                Record::Event(crate::event::OutEvent::build(raw, parsed, None))
            })
            .collect()
    }

    #[test]
    fn batches_are_cut_by_count_and_by_bytes_including_resources() {
        let records = batch(10, 3);
        let encoded = encode::encode_batch(&records, true).logs;
        let by_count = sink(4, 1 << 20).chunks(&encoded);
        assert_eq!(
            by_count.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![4, 4, 2]
        );
        let bound = 1024;
        let by_bytes = sink(100, bound).chunks(&encoded);
        assert!(by_bytes.len() > 1);
        let mut seen: Vec<usize> = Vec::new();
        for chunk in &by_bytes {
            assert!(encoded.body(chunk).len() <= bound, "{chunk:?}");
            seen.extend(chunk.iter().copied());
        }
        assert_eq!(
            seen,
            (0..10).collect::<Vec<_>>(),
            "every unit once, in order"
        );
    }
}
