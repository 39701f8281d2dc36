//! The push source: an HTTP endpoint for Amazon Data Firehose, as its "HTTP
//! endpoint delivery request and response specifications" describe it, for
//! CloudWatch Logs subscription filters that deliver through a Firehose
//! stream (`cwtap serve`).
//!
//! One request: the access key is checked (constant time; 401 otherwise,
//! nothing parsed), the body read within its bound (413), decompressed when
//! `Content-Encoding: gzip` (a bound on the output too), parsed, and every
//! record decoded ([`decode`]; one bad record fails the request with 400
//! naming it, nothing of it delivered). The events of the data messages
//! (control messages are dropped) whose ids were not delivered before (a
//! retry) are prepared with their group's rules and handed to the
//! [`Pipeline`] in batches; the request is answered 200 only once every
//! batch is committed, else non-200 so that Firehose retries it whole (the
//! ids it delivered meanwhile are skipped then). Requests past the
//! in-flight bounds are answered 503, as are requests that could not be
//! delivered within `firehose.request_timeout_secs` or before shutdown.
//! A retry arriving while its first attempt is still being handled waits
//! for it.
//!
//! [`config`] holds the `firehose:` section.

pub mod config;
pub mod decode;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::config::GroupConfig;
use crate::event::RawEvent;
use crate::obs;
use crate::pipeline::{self, Batch, Pending, Pipeline, Position};
use crate::shutdown::{self, Shutdown};
use crate::state::StateStore;
use crate::time::now_ms;
use config::FirehoseConfig;
use decode::DecodeError;

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr} (firehose.listen): {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("firehose TLS: {0}")]
    Tls(String),
}

/// What every request shares.
pub struct Receiver {
    config: Arc<FirehoseConfig>,
    /// The `log_groups` entries, whose rules apply by name or prefix.
    groups: Vec<Arc<GroupConfig>>,
    pipeline: Arc<Pipeline>,
    state: StateStore,
    requests: Arc<Semaphore>,
    /// Decompressed bytes in flight, in KiB.
    kib: Arc<Semaphore>,
    /// Requests being handled, by request id: a retry waits for its first
    /// attempt.
    handling: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Events being delivered by a request, by a hash of (group, id):
    /// another request with one of them (Firehose sending a record again
    /// under a new request id) waits until that delivery is committed or
    /// given up. (Two ids sharing a hash only wait needlessly.)
    in_flight: Mutex<std::collections::HashSet<u64>>,
    /// Wakes the requests waiting on `in_flight`.
    released: tokio::sync::Notify,
    shutdown: Shutdown,
    /// The shutdown grace: what the output's call in flight may take of a
    /// request's time when delivery has to stop.
    grace: Duration,
}

/// Events a request claimed in [`Receiver::in_flight`]; released on drop.
struct Claim<'a> {
    receiver: &'a Receiver,
    ids: Vec<u64>,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut set = self
            .receiver
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for id in &self.ids {
            set.remove(id);
        }
        drop(set);
        self.receiver.released.notify_waiters();
    }
}

/// How a request ended: the status, and the message for a non-200.
struct Answer {
    status: StatusCode,
    error: Option<String>,
    /// For the rejects metric.
    reason: Option<&'static str>,
}

impl Answer {
    fn ok() -> Answer {
        Answer {
            status: StatusCode::OK,
            error: None,
            reason: None,
        }
    }

    fn fail(status: StatusCode, reason: &'static str, error: impl Into<String>) -> Answer {
        Answer {
            status,
            error: Some(error.into()),
            reason: Some(reason),
        }
    }
}

impl Receiver {
    pub fn new(
        config: Arc<FirehoseConfig>,
        groups: &[GroupConfig],
        pipeline: Arc<Pipeline>,
        state: StateStore,
        shutdown: Shutdown,
        grace: Duration,
    ) -> Receiver {
        let kib = (config.max_in_flight_bytes / 1024).clamp(1, Semaphore::MAX_PERMITS);
        Receiver {
            requests: Arc::new(Semaphore::new(config.max_in_flight_requests)),
            kib: Arc::new(Semaphore::new(kib)),
            groups: groups.iter().cloned().map(Arc::new).collect(),
            config,
            pipeline,
            state,
            handling: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(std::collections::HashSet::new()),
            released: tokio::sync::Notify::new(),
            shutdown,
            grace,
        }
    }

    /// The rules of `log_group`: the first entry whose name equals it or
    /// whose prefix starts it, as when polling; else the default set.
    fn group_of(&self, log_group: &str) -> &Arc<GroupConfig> {
        self.groups
            .iter()
            .find(|g| match &g.selector {
                crate::config::GroupSelector::Name(n) => n == log_group,
                crate::config::GroupSelector::Prefix(p) => log_group.starts_with(p.as_str()),
            })
            .unwrap_or(&self.config.default_group)
    }

    fn key_matches(&self, given: Option<&[u8]>) -> bool {
        use subtle::ConstantTimeEq;
        let Some(given) = given else { return false };
        let expected = self.config.access_key.expose().as_bytes();
        // The length is no secret worth hiding: Firehose sends the key as
        // configured, and a wrong length is a wrong key.
        given.len() == expected.len() && bool::from(given.ct_eq(expected))
    }

    /// Answers one request.
    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let started = Instant::now();
        let request_id = header(&req, "x-amz-firehose-request-id").unwrap_or_default();
        let answer = self.answer(req, &request_id).await;
        let metrics = obs::metrics().firehose();
        metrics.request(answer.status.as_u16(), started.elapsed());
        if let Some(reason) = answer.reason {
            metrics.reject(reason);
        }
        match &answer.error {
            Some(error) if answer.status.is_server_error() => {
                tracing::warn!(request_id = %request_id, status = answer.status.as_u16(), %error, "Firehose request not delivered; Firehose will retry it");
            }
            Some(error) => {
                tracing::warn!(request_id = %request_id, status = answer.status.as_u16(), %error, "Firehose request refused");
            }
            None => {
                tracing::debug!(request_id = %request_id, elapsed_ms = started.elapsed().as_millis() as u64, "Firehose request delivered");
            }
        }
        reply(answer, &request_id)
    }

    async fn answer(&self, req: Request<Incoming>, request_id: &str) -> Answer {
        let key = req
            .headers()
            .get("x-amz-firehose-access-key")
            .map(|v| v.as_bytes());
        if !self.key_matches(key) {
            return Answer::fail(
                StatusCode::UNAUTHORIZED,
                "auth",
                "the X-Amz-Firehose-Access-Key header is missing or wrong",
            );
        }
        if req.method() != Method::POST {
            return Answer::fail(
                StatusCode::METHOD_NOT_ALLOWED,
                "method",
                "Firehose delivers with POST",
            );
        }
        if request_id.is_empty() {
            return Answer::fail(
                StatusCode::BAD_REQUEST,
                "not_firehose",
                "the X-Amz-Firehose-Request-Id header is missing",
            );
        }
        let max = self.config.max_body_bytes;
        if header(&req, "content-length")
            .and_then(|l| l.parse::<usize>().ok())
            .is_some_and(|l| l > max)
        {
            return Answer::fail(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the body is larger than firehose.max_body_bytes ({max})"),
            );
        }
        let Ok(_request) = Arc::clone(&self.requests).try_acquire_owned() else {
            return Answer::fail(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                format!(
                    "{} requests are being handled (firehose.max_in_flight_requests)",
                    self.config.max_in_flight_requests
                ),
            );
        };
        // Firehose sends gzip or nothing; another coding would be read as
        // JSON and refused as garbage, so it is named instead.
        let encoding = header(&req, "content-encoding").unwrap_or_default();
        let gzip = encoding.eq_ignore_ascii_case("gzip");
        if !gzip && !encoding.is_empty() && !encoding.eq_ignore_ascii_case("identity") {
            return Answer::fail(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "encoding",
                format!("Content-Encoding {encoding:?} is not supported (gzip or none)"),
            );
        }
        let region = header(&req, "x-amz-firehose-source-arn")
            .and_then(|arn| decode::region_of_arn(&arn).map(str::to_string));
        let body = match Limited::new(req.into_body(), max).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e)
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                return Answer::fail(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    format!("the body is larger than firehose.max_body_bytes ({max})"),
                );
            }
            Err(e) => {
                return Answer::fail(
                    StatusCode::BAD_REQUEST,
                    "body",
                    format!("reading the body failed: {e}"),
                );
            }
        };
        let body = if gzip {
            match decode::gunzip(&body, max) {
                Ok(b) => Bytes::from(b),
                Err(DecodeError::TooLarge(_)) => {
                    return Answer::fail(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "too_large",
                        format!(
                            "the decompressed body is larger than firehose.max_body_bytes ({max})"
                        ),
                    );
                }
                Err(e) => return Answer::fail(StatusCode::BAD_REQUEST, "gzip_body", e.to_string()),
            }
        } else {
            body
        };
        let kib = (body.len() / 1024 + 1).min(u32::MAX as usize) as u32;
        let Ok(_bytes) = Arc::clone(&self.kib).try_acquire_many_owned(kib) else {
            return Answer::fail(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "too many bytes in flight (firehose.max_in_flight_bytes)",
            );
        };
        let request = match decode::parse_request(&body) {
            Ok(r) => r,
            Err(e) => return Answer::fail(StatusCode::BAD_REQUEST, "not_firehose", e.to_string()),
        };
        // With the body, within what may be in flight at all.
        let max_decoded = self
            .config
            .max_in_flight_bytes
            .saturating_sub(kib as usize * 1024);
        let (messages, decoded) = match decode::decode_records(&request, max_decoded) {
            Ok(m) => m,
            Err(DecodeError::TooLarge(_)) => {
                return Answer::fail(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    format!(
                        "the records decode to more than firehose.max_in_flight_bytes leaves beside the body ({max_decoded} bytes)"
                    ),
                );
            }
            Err(e @ DecodeError::Record { .. }) => {
                let reason = match &e {
                    DecodeError::Record { reason, .. } => reason.reason(),
                    _ => "record",
                };
                return Answer::fail(StatusCode::BAD_REQUEST, reason, e.to_string());
            }
            Err(e) => return Answer::fail(StatusCode::BAD_REQUEST, "not_firehose", e.to_string()),
        };
        let records = request.records.len();
        drop(request);
        // The decoded records count against the bytes in flight too.
        let kib = (decoded / 1024 + 1).min(u32::MAX as usize) as u32;
        let Ok(_decoded) = Arc::clone(&self.kib).try_acquire_many_owned(kib) else {
            return Answer::fail(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "too many bytes in flight (firehose.max_in_flight_bytes)",
            );
        };
        let events = decode::raw_events(messages, region.as_deref());
        obs::metrics().firehose().decoded(records, events.len());

        // A retry of a request still being handled waits for it.
        let lock = {
            let mut handling = self.handling.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(handling.entry(request_id.to_string()).or_default())
        };
        let answer = {
            let _turn = lock.lock().await;
            self.deliver(events).await
        };
        drop(lock);
        let mut handling = self.handling.lock().unwrap_or_else(|p| p.into_inner());
        if handling
            .get(request_id)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            handling.remove(request_id);
        }
        answer
    }

    /// Claims `ids` once no other request is delivering any of them;
    /// `None` if `stop` came first.
    async fn claim(&self, ids: &[(String, String)], stop: &Shutdown) -> Option<Claim<'_>> {
        use std::hash::BuildHasher;
        let hasher = foldhash::fast::FixedState::with_seed(0);
        let ids: Vec<u64> = ids.iter().map(|id| hasher.hash_one(id)).collect();
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            // Registered before the check: a release in between still wakes it.
            released.as_mut().enable();
            {
                let mut set = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
                if !ids.iter().any(|id| set.contains(id)) {
                    set.extend(ids.iter().copied());
                    return Some(Claim {
                        receiver: self,
                        ids,
                    });
                }
            }
            tokio::select! {
                _ = released => {}
                _ = stop.wait() => return None,
            }
        }
    }

    /// Delivers the events not delivered before, batch by batch.
    async fn deliver(&self, events: Vec<RawEvent>) -> Answer {
        let ids: Vec<(String, String)> = events
            .iter()
            .map(|e| (e.log_group.clone(), e.event_id.clone()))
            .collect();
        // Delivery stops when cwtap shuts down, or in time for the answer
        // to go out within the request timeout: the output's call in flight
        // then gets what is left of it (at most the shutdown grace).
        let (trigger, stop) = shutdown::channel();
        let (global, timeout) = (self.shutdown.clone(), self.config.request_timeout);
        let stop_at = timeout.saturating_sub(self.grace).max(timeout / 2);
        let timer = tokio::spawn(async move {
            tokio::select! {
                _ = global.wait() => trigger.trigger(),
                _ = tokio::time::sleep(stop_at) => trigger.trigger_within(timeout - stop_at),
            }
        });
        // Checked after the claim: what another request delivered with
        // these events is committed by then.
        let Some(_claim) = self.claim(&ids, &stop).await else {
            timer.abort();
            let reason = if self.shutdown.is_triggered() {
                "shutdown"
            } else {
                "timeout"
            };
            return Answer::fail(
                StatusCode::SERVICE_UNAVAILABLE,
                reason,
                "another request was still delivering these events when this one had to stop; retry",
            );
        };
        let seen = match self.state.pushed_already(Arc::new(ids)).await {
            Ok(s) => s,
            Err(e) => {
                timer.abort();
                return Answer::fail(StatusCode::INTERNAL_SERVER_ERROR, "state", e.to_string());
            }
        };
        if !seen.is_empty() {
            obs::metrics().firehose().duplicates(seen.len());
        }
        let mut batch = Vec::with_capacity(self.pipeline.batch_size().min(events.len()));
        let mut batch_bytes = 0;
        let mut result = Answer::ok();
        // An event twice in one request (a source that repeats itself) goes once.
        let mut in_request = std::collections::HashSet::new();
        for (i, raw) in events.into_iter().enumerate() {
            if seen.contains(&i)
                || !in_request.insert((raw.log_group.clone(), raw.event_id.clone()))
            {
                continue;
            }
            let group = Arc::clone(self.group_of(&raw.log_group));
            let event = pipeline::prepare(raw, &group);
            batch_bytes += event.json_size_hint();
            batch.push(Pending { event, late: false });
            // Asked at each event: the output's batch size may change
            // after a delivery (see `Sink::batch_size`).
            if self.pipeline.batch_full(batch.len(), batch_bytes) {
                batch_bytes = 0;
                if let Some(failed) = self.submit(std::mem::take(&mut batch), &stop).await {
                    result = failed;
                    break;
                }
            }
        }
        if result.status.is_success()
            && !batch.is_empty()
            && let Some(failed) = self.submit(batch, &stop).await
        {
            result = failed;
        }
        timer.abort();
        result
    }

    /// Submits one batch; the answer to give when it did not all get
    /// through.
    async fn submit(&self, events: Vec<Pending>, stop: &Shutdown) -> Option<Answer> {
        let received = now_ms();
        let batch = Batch {
            events,
            position: Position::Pushed {
                received_ms: received,
                prune_before_ms: received - self.config.dedup_window.as_millis() as i64,
            },
        };
        match self.pipeline.submit(batch, stop).await {
            Ok(c) if !c.abandoned => None,
            Ok(_) if self.shutdown.is_triggered() => Some(Answer::fail(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutdown",
                "cwtap is shutting down before the output took every event; retry",
            )),
            Ok(_) => Some(Answer::fail(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                "the output did not take every event within firehose.request_timeout_secs; retry",
            )),
            Err(e) => Some(Answer::fail(
                StatusCode::INTERNAL_SERVER_ERROR,
                "state",
                e.to_string(),
            )),
        }
    }
}

fn header<B>(req: &Request<B>, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
}

/// `{requestId, timestamp}`, plus `errorMessage` for a failure.
fn reply(answer: Answer, request_id: &str) -> Response<Full<Bytes>> {
    let mut body = serde_json::json!({"requestId": request_id, "timestamp": now_ms()});
    if let Some(error) = &answer.error {
        body["errorMessage"] = serde_json::Value::String(error.clone());
    }
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = answer.status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// Binds the endpoint's socket (before anything else starts, so a busy port
/// is reported at once).
pub async fn bind(config: &FirehoseConfig) -> Result<TcpListener, ServeError> {
    TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })
}

/// The TLS acceptor for `firehose.tls_cert_file` and `tls_key_file`.
pub fn tls_acceptor(config: &FirehoseConfig) -> Result<Option<TlsAcceptor>, ServeError> {
    let Some((cert, key)) = &config.tls else {
        return Ok(None);
    };
    let server = server_tls(cert, key).map_err(|(k, m)| ServeError::Tls(format!("{k}: {m}")))?;
    Ok(Some(TlsAcceptor::from(Arc::new(server))))
}

/// The TLS server config of a certificate chain and key (PEM files). Also
/// run when the config loads, so that `check` and a reload catch a bad file;
/// the error is (setting, message).
pub(crate) fn server_tls(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<tokio_rustls::rustls::ServerConfig, (String, String)> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let fail = |k: &str, m: String| (k.to_string(), m);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect())
        .map_err(|e| fail("firehose.tls_cert_file", format!("{}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(fail(
            "firehose.tls_cert_file",
            format!("{} holds no certificate", cert.display()),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| fail("firehose.tls_key_file", format!("{}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail("firehose.tls_cert_file", e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            fail(
                "firehose.tls_cert_file, firehose.tls_key_file",
                format!("certificate and key do not fit: {e}"),
            )
        })
}

/// Serves Firehose requests on `listener` until `shutdown`; then stops
/// accepting, lets the requests in flight finish (their deliveries get
/// `agent.shutdown_grace`), and returns.
pub async fn serve(
    receiver: Arc<Receiver>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shutdown: Shutdown,
    grace: Duration,
) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, tls = tls.is_some(), "Firehose endpoint up");
    }
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait() => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "Firehose endpoint: accept failed");
                if !shutdown.sleep(Duration::from_millis(100)).await {
                    break;
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (receiver, shutdown, tls) = (Arc::clone(&receiver), shutdown.clone(), tls.clone());
        connections.spawn(async move {
            match tls {
                None => connection(TokioIo::new(stream), receiver, shutdown).await,
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(s) => connection(TokioIo::new(s), receiver, shutdown).await,
                    Err(error) => {
                        tracing::debug!(%error, "Firehose endpoint: TLS handshake failed")
                    }
                },
            }
        });
        // Reap finished connections as we go.
        while connections.try_join_next().is_some() {}
    }
    tracing::info!(
        connections = connections.len(),
        "Firehose endpoint: not accepting; finishing the requests in flight"
    );
    let wait = tokio::time::timeout(grace + Duration::from_secs(3), async {
        while connections.join_next().await.is_some() {}
    });
    if wait.await.is_err() {
        tracing::warn!("Firehose requests still in flight at exit; Firehose retries them");
        connections.abort_all();
    }
}

async fn connection<I>(io: TokioIo<I>, receiver: Arc<Receiver>, shutdown: Shutdown)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let receiver = Arc::clone(&receiver);
        async move { Ok::<_, Infallible>(receiver.handle(req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(error) = r {
                tracing::debug!(%error, "Firehose endpoint: connection ended with an error");
            }
            return;
        }
        _ = shutdown.wait() => {}
    }
    // Finish the request in flight, take no new one.
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}
