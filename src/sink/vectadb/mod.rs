//! VectaDB output: `POST /api/v1/events/batch`, following how the server
//! really behaves (see docs/design.md#delivery-to-vectadb):
//!
//! - `options` is always sent explicitly;
//! - a body stays under the configured byte bound, and a 413 splits the batch;
//! - a 200 with `errors` retries only the failed indices (each at most
//!   `max_item_retries` times, then counted as rejected);
//! - 429, 5xx, timeouts and connection errors are retried with capped
//!   exponential backoff and full jitter, for as long as it takes;
//! - 400, 415 and 422 are not retried: one sample is logged, the events are
//!   counted as rejected, delivery moves on; since a 400 or 422 refuses a
//!   whole request for what may be one bad event, such a batch is first
//!   halved until the refused events stand alone (as for a 413);
//! - the API key goes out as `X-API-Key` and `Authorization: Bearer`, and
//!   nowhere else;
//! - https certificates are always verified, against the system roots plus
//!   `vectadb.ca_file` when set.
//!
//! [`config`] holds the `vectadb:` section.

pub mod config;
mod size;

use std::collections::VecDeque;
use std::ops::Range;
use std::time::Duration;

use hyper::body::Bytes;
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::{BoxFuture, Outcome, Sink, SinkError, read_ca_file};
use crate::config::AgentConfig;
use crate::errors;
use crate::event::Record;
use crate::obs;
use crate::retry::Backoff;
use crate::shutdown::Shutdown;
use crate::trace::KeyField;
pub use config::{OUTPUT, VectadbConfig};

pub struct VectadbSink {
    config: VectadbConfig,
    client: reqwest::Client,
    /// The serialized `options` object, identical in every request.
    options: Vec<u8>,
    /// How long an in-flight request may finish after shutdown.
    shutdown_grace: Duration,
    /// How events carry their trace key.
    key_field: KeyField,
    /// How many events a request carries now (at most `batch_size`).
    size: size::RequestSize,
}

#[derive(Debug, Deserialize)]
struct BatchResponse {
    #[serde(default)]
    errors: Vec<ItemError>,
}

#[derive(Debug, Deserialize)]
struct ItemError {
    index: usize,
    #[serde(default)]
    error: String,
}

/// How one HTTP exchange ended.
enum Reply {
    Status(StatusCode, String),
    /// No answer within `timeout_secs` (once connected).
    TimedOut(String),
    Transport(String),
    Abandoned,
}

impl VectadbSink {
    pub fn new(config: VectadbConfig, agent: &AgentConfig) -> Result<VectadbSink, SinkError> {
        let mut builder = reqwest::Client::builder();
        if let Some(path) = &config.ca_file {
            let certs =
                read_ca_file(path).map_err(|e| SinkError::Open(format!("vectadb.ca_file: {e}")))?;
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
        let options = encode_options(&config);
        let size = size::RequestSize::new(config.batch_size, config.timeout);
        Ok(VectadbSink {
            size,
            config,
            client,
            options,
            shutdown_grace: agent.shutdown_grace,
            key_field: agent.trace_key_field,
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut req = self
            .client
            .request(method, format!("{}{}", self.config.endpoint, path));
        if let Some(key) = &self.config.api_key {
            let headers = [
                ("X-API-Key", key.expose().to_string()),
                ("Authorization", format!("Bearer {}", key.expose())),
            ];
            for (name, value) in headers {
                // Sensitive values are left out of the HTTP stack's debug output.
                match reqwest::header::HeaderValue::from_str(&value) {
                    Ok(mut v) => {
                        v.set_sensitive(true);
                        req = req.header(name, v);
                    }
                    // reqwest reports the invalid value at send time, without it.
                    Err(_) => req = req.header(name, value),
                }
            }
        }
        req
    }

    /// One POST of a batch body carrying `events` events.
    async fn post(&self, body: Bytes, events: usize, shutdown: &Shutdown) -> Reply {
        let send = self
            .request(reqwest::Method::POST, "/api/v1/events/batch")
            .header("Content-Type", "application/json")
            .body(body)
            .send();
        let started = std::time::Instant::now();
        let response = tokio::select! {
            r = send => r,
            _ = shutdown.deadline(self.shutdown_grace) => return Reply::Abandoned,
        };
        match response {
            Ok(resp) => {
                let status = resp.status();
                let text = tokio::select! {
                    t = resp.text() => t.unwrap_or_default(),
                    _ = shutdown.deadline(self.shutdown_grace) => String::new(),
                };
                obs::metrics().downstream_request(Some(status.as_u16()), started.elapsed());
                if status.is_success() {
                    self.size.answered(events, started.elapsed());
                }
                if status.is_server_error() {
                    obs::readiness().output_down(&format!("VectaDB answered {status}"));
                } else {
                    obs::readiness().output_up();
                }
                Reply::Status(status, text)
            }
            // reqwest's errors carry the URL, never headers: safe to log.
            Err(e) => {
                let chain = errors::chain(&e);
                obs::metrics().downstream_request(None, started.elapsed());
                obs::readiness().output_down(&format!("VectaDB unreachable: {chain}"));
                if e.is_timeout() && !e.is_connect() {
                    Reply::TimedOut(chain)
                } else {
                    Reply::Transport(chain)
                }
            }
        }
    }
}

/// The request's `options` object, the same in every request: always
/// explicit, since the server's default for a missing one turns trace
/// creation off.
fn encode_options(config: &VectadbConfig) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "auto_create_traces": config.auto_create_traces,
        "generate_embeddings": config.generate_embeddings,
        "extract_relationships": config.extract_relationships,
    }))
    .unwrap_or_default()
}

/// A delivery's records, each serialized once, into one buffer that is
/// also the body of the request carrying them all (the usual request: a
/// pipeline batch fits one): `{"events":[` the items, `],"options":...}`.
/// A request for part of them (a batch cut by `max_batch_bytes`, failed
/// events sent again, a halved batch) copies its items out of it.
struct Encoded {
    body: Bytes,
    /// Each record's JSON, in `body`.
    items: Vec<Range<usize>>,
}

const BODY_HEAD: &[u8] = b"{\"events\":[";

impl Encoded {
    fn new(batch: &[Record], key_field: KeyField, options: &[u8]) -> Encoded {
        let size: usize = batch.iter().map(|r| r.json_size_hint() + 1).sum();
        let mut body = Vec::with_capacity(BODY_HEAD.len() + size + options.len() + 16);
        body.extend_from_slice(BODY_HEAD);
        let mut items = Vec::with_capacity(batch.len());
        for (i, record) in batch.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            let start = body.len();
            record.write_json(&mut body, key_field);
            items.push(start..body.len());
        }
        end_body(&mut body, options);
        Encoded {
            body: Bytes::from(body),
            items,
        }
    }

    fn item(&self, i: usize) -> &[u8] {
        &self.body[self.items[i].clone()]
    }

    /// The body of a request carrying the records `chunk` (positions in
    /// the batch, in the order they go).
    fn body(&self, chunk: &[usize], options: &[u8]) -> Bytes {
        let whole =
            chunk.len() == self.items.len() && chunk.iter().enumerate().all(|(n, &i)| n == i);
        if whole {
            return self.body.clone();
        }
        let items: Vec<&[u8]> = chunk.iter().map(|&i| self.item(i)).collect();
        Bytes::from(batch_body(&items, options))
    }
}

/// `{"events":[...],"options":{...}}` from pre-serialized events.
fn batch_body(items: &[&[u8]], options: &[u8]) -> Vec<u8> {
    let size: usize = items.iter().map(|i| i.len() + 1).sum();
    let mut body = Vec::with_capacity(BODY_HEAD.len() + size + options.len() + 16);
    body.extend_from_slice(BODY_HEAD);
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(item);
    }
    end_body(&mut body, options);
    body
}

fn end_body(body: &mut Vec<u8>, options: &[u8]) {
    body.extend_from_slice(b"],\"options\":");
    body.extend_from_slice(options);
    body.push(b'}');
}

/// The body of one `POST /api/v1/events/batch` carrying all of `batch`, built
/// the way the sink builds it (each record serialized into the body, with
/// the `options` of `config`). Public for `benches/encode.rs` only; the sink
/// itself also cuts batches by `max_batch_bytes` and `batch_size`.
#[doc(hidden)]
pub fn encode_batch(batch: &[Record], config: &VectadbConfig, key_field: KeyField) -> Vec<u8> {
    Vec::from(Encoded::new(batch, key_field, &encode_options(config)).body)
}

fn excerpt(text: &str) -> &str {
    let end = text
        .char_indices()
        .nth(300)
        .map(|(i, _)| i)
        .unwrap_or(text.len());
    &text[..end]
}

impl Sink for VectadbSink {
    fn deliver<'a>(
        &'a self,
        batch: &'a [Record],
        shutdown: &'a Shutdown,
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let encoded = Encoded::new(batch, self.key_field, &self.options);
            let mut outcome = Outcome::default();
            let mut attempts = vec![0u32; batch.len()];
            // Split by bytes first: each chunk's body stays under the bound.
            let overhead = self.options.len() + 32;
            let mut queue: VecDeque<Vec<usize>> = VecDeque::new();
            let mut chunk = Vec::new();
            let mut chunk_bytes = overhead;
            for (i, item) in encoded.items.iter().enumerate() {
                if !chunk.is_empty() && chunk_bytes + item.len() + 1 > self.config.max_batch_bytes {
                    queue.push_back(std::mem::take(&mut chunk));
                    chunk_bytes = overhead;
                }
                chunk_bytes += item.len() + 1;
                chunk.push(i);
            }
            if !chunk.is_empty() {
                queue.push_back(chunk);
            }

            let mut backoff = Backoff::new(Duration::from_millis(250), self.config.max_backoff);
            while let Some(chunk) = queue.pop_front() {
                if shutdown.is_triggered() {
                    outcome.abandoned = true;
                    return outcome;
                }
                // Cut to the size the server is sent now (see `size`).
                let size = self.size.get();
                if chunk.len() > size {
                    for part in chunk.chunks(size).rev() {
                        queue.push_front(part.to_vec());
                    }
                    continue;
                }
                let body = encoded.body(&chunk, &self.options);
                let retry = match self.post(body, chunk.len(), shutdown).await {
                    Reply::Abandoned => {
                        outcome.abandoned = true;
                        return outcome;
                    }
                    Reply::Status(status, body) if status.is_success() => {
                        backoff.reset();
                        let failed = match serde_json::from_str::<BatchResponse>(&body) {
                            Ok(r) => r.errors,
                            Err(_) => {
                                tracing::warn!(status = %status, body = excerpt(&body), "VectaDB answered 2xx without a batch response; counting the batch as ingested");
                                Vec::new()
                            }
                        };
                        let failed_at: std::collections::HashMap<usize, &ItemError> =
                            failed.iter().map(|f| (f.index, f)).collect();
                        let mut again = Vec::new();
                        for (pos, &i) in chunk.iter().enumerate() {
                            match failed_at.get(&pos) {
                                None => outcome.accepted.push(i),
                                Some(f) => {
                                    attempts[i] += 1;
                                    if attempts[i] > self.config.max_item_retries {
                                        tracing::error!(log_group = %batch[i].log_group(), log_id = %batch[i].log_id(), error = %f.error, attempts = attempts[i], "VectaDB kept failing an event; counting it as rejected");
                                        outcome.rejected.push(i);
                                    } else {
                                        again.push(i);
                                    }
                                }
                            }
                        }
                        if again.is_empty() {
                            None
                        } else {
                            tracing::warn!(failed = again.len(), sample = %failed.first().map(|f| f.error.as_str()).unwrap_or(""), "VectaDB failed some events of a batch; retrying only those");
                            Some(again)
                        }
                    }
                    Reply::Status(StatusCode::PAYLOAD_TOO_LARGE, _) if chunk.len() > 1 => {
                        let (a, b) = chunk.split_at(chunk.len() / 2);
                        tracing::warn!(
                            events = chunk.len(),
                            "VectaDB answered 413; splitting the batch"
                        );
                        queue.push_front(b.to_vec());
                        queue.push_front(a.to_vec());
                        continue;
                    }
                    // A 400 or 422 refuses the whole request for what may be
                    // one bad event: halve the batch until the bad events stand
                    // alone, so the good ones still get through.
                    Reply::Status(status, _)
                        if matches!(status.as_u16(), 400 | 422) && chunk.len() > 1 =>
                    {
                        let (a, b) = chunk.split_at(chunk.len() / 2);
                        tracing::warn!(
                            status = status.as_u16(),
                            events = chunk.len(),
                            "VectaDB refused a batch; splitting it to isolate the refused events"
                        );
                        queue.push_front(b.to_vec());
                        queue.push_front(a.to_vec());
                        continue;
                    }
                    Reply::Status(status, body)
                        if matches!(status.as_u16(), 400 | 413 | 415 | 422) =>
                    {
                        tracing::error!(
                            status = status.as_u16(),
                            events = chunk.len(),
                            sample_log_group = %batch[chunk[0]].log_group(),
                            sample_log_id = %batch[chunk[0]].log_id(),
                            response = excerpt(&body),
                            "VectaDB refused a batch; not retrying, counting it as rejected"
                        );
                        outcome.rejected.extend(chunk.iter().copied());
                        None
                    }
                    Reply::Status(status, body) => {
                        tracing::warn!(
                            status = status.as_u16(),
                            response = excerpt(&body),
                            "VectaDB delivery failed; retrying"
                        );
                        Some(chunk)
                    }
                    Reply::TimedOut(error) => {
                        self.size.timed_out(chunk.len());
                        tracing::warn!(
                            %error,
                            events = chunk.len(),
                            next_request_events = self.size.get(),
                            "VectaDB did not answer within vectadb.timeout_secs; sending these events again in smaller requests (those it stored before the timeout are stored twice: it does not de-duplicate)"
                        );
                        Some(chunk)
                    }
                    Reply::Transport(error) => {
                        tracing::warn!(%error, "VectaDB unreachable; retrying");
                        Some(chunk)
                    }
                };
                if let Some(again) = retry {
                    queue.push_front(again);
                    if !backoff.sleep(shutdown).await {
                        outcome.abandoned = true;
                        return outcome;
                    }
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
            let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(8));
            let mut last = String::new();
            for _ in 0..5 {
                let sent = tokio::select! {
                    r = self.request(reqwest::Method::GET, "/health").send() => r,
                    _ = shutdown.wait() => return Err(SinkError::Unhealthy("shutdown during health check".into())),
                };
                match sent {
                    Ok(resp) if resp.status().is_success() => return Ok(()),
                    Ok(resp) => last = format!("GET /health answered {}", resp.status()),
                    Err(e) => last = errors::chain(&e),
                }
                tracing::warn!(endpoint = %self.config.endpoint, error = %last, "VectaDB health check failed");
                obs::readiness().output_down(&format!("health check failed: {last}"));
                if !backoff.sleep(shutdown).await {
                    break;
                }
            }
            Err(SinkError::Unhealthy(format!(
                "VectaDB at {} is not healthy: {last}",
                self.config.endpoint
            )))
        })
    }

    fn batch_size(&self) -> usize {
        self.size.get()
    }

    fn batch_bytes(&self) -> usize {
        self.config.max_batch_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{OutEvent, Source};
    use serde_json::Value;

    fn event(i: usize) -> Record {
        Record::Event(OutEvent {
            trace_id: None,
            event_type: Some("app_log".into()),
            agent_id: None,
            session_id: Some(format!("t:{i}")),
            properties: serde_json::Map::from_iter([("message".into(), json!("ok \"quoted\""))])
                .into(),
            source: Source {
                system: "cloudwatch",
                log_group: "/g".into(),
                log_stream: "s".into(),
                log_id: format!("{i:056}"),
                origin: Default::default(),
            },
            timestamp_ms: 1_795_161_600_000 + i as i64,
            ingestion_time_ms: None,
            message: String::new(),
            fields: Default::default(),
            trace_key: None,
            rule: None,
        })
    }

    #[test]
    fn batch_body_holds_every_event_in_order_and_explicit_options() {
        let config = crate::config::Config::from_yaml(
            "vectadb: {endpoint: 'http://127.0.0.1:1', generate_embeddings: false}\nlog_groups: [{name: /g}]\n",
            std::path::Path::new("test.yaml"),
        )
        .expect("config loads");
        let vectadb = VectadbConfig {
            generate_embeddings: false,
            ..sample()
        };
        assert!(format!("{:?}", config.output).contains("generate_embeddings: false"));
        let events: Vec<Record> = (0..3).map(event).collect();
        let body: Value =
            serde_json::from_slice(&encode_batch(&events, &vectadb, KeyField::SessionId))
                .expect("the body is JSON");
        let expected: Vec<Value> = events
            .iter()
            .map(|e| match e {
                Record::Event(e) => json!(e),
                Record::Summary(_) => unreachable!(),
            })
            .collect();
        assert_eq!(body["events"], Value::Array(expected));
        assert_eq!(
            body["options"],
            json!({"auto_create_traces": true, "generate_embeddings": false, "extract_relationships": false})
        );
        assert_eq!(
            serde_json::from_slice::<Value>(&encode_batch(&[], &vectadb, KeyField::SessionId))
                .expect("JSON")["events"],
            json!([])
        );
    }

    #[test]
    fn a_request_for_part_of_a_batch_carries_those_events_as_the_whole_does() {
        let options = encode_options(&sample());
        let events: Vec<Record> = (0..4).map(event).collect();
        let encoded = Encoded::new(&events, KeyField::SessionId, &options);
        let events_of = |body: &[u8]| -> Value {
            let body: Value = serde_json::from_slice(body).expect("the body is JSON");
            assert_eq!(
                body["options"],
                serde_json::from_slice::<Value>(&options).unwrap()
            );
            body["events"].clone()
        };
        let one = |i: usize| -> Value {
            serde_json::from_slice(&events[i].to_json(KeyField::SessionId)).expect("JSON")
        };
        // The whole batch is the buffer itself; its parts are copied out.
        let whole = encoded.body(&[0, 1, 2, 3], &options);
        assert_eq!(whole.as_ptr(), encoded.body.as_ptr());
        assert_eq!(events_of(&whole), Value::Array((0..4).map(one).collect()));
        for chunk in [&[1, 3][..], &[2], &[3, 2, 1, 0], &[]] {
            let body = encoded.body(chunk, &options);
            assert_ne!(body.as_ptr(), encoded.body.as_ptr());
            assert_eq!(
                events_of(&body),
                Value::Array(chunk.iter().map(|&i| one(i)).collect())
            );
        }
    }

    fn sample() -> VectadbConfig {
        VectadbConfig::with_endpoint("http://127.0.0.1:1")
    }
}
