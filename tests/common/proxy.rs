//! A fault-injecting HTTP proxy in front of moto's server: it forwards every
//! request unchanged, except that it answers scripted AWS answers for a
//! chosen operation, which moto itself cannot produce on demand: throttling,
//! service unavailable, internal error, access denied, sequence-token errors
//! of older emulators, a malformed query, an unsupported operation, and a
//! query that never completes; and, on any operation, a call held past the
//! client's timeout or a connection broken mid-call.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Throttle,
    Unavailable,
    Internal,
    AccessDenied,
    /// PutLogEvents of an older emulator: the expected token is "49612345".
    InvalidSequenceToken,
    DataAlreadyAccepted,
    MalformedQuery,
    /// An endpoint without the operation (Insights on some emulators).
    Unsupported,
    /// GetQueryResults: still running, no rows.
    QueryRunning,
    /// Hold the call this long, then forward it (slower than the client's
    /// timeout, it is a timeout).
    Delay(std::time::Duration),
    /// Break the connection: a bare `101` status line where the answer
    /// should be, then the socket closed (tiny_http gives no way to send a
    /// TCP reset; to the client both are a call that died mid-way).
    Drop,
}

impl Fault {
    fn response(self) -> (u16, &'static str) {
        match self {
            Fault::Throttle => (
                400,
                r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#,
            ),
            Fault::Unavailable => (
                503,
                r#"{"__type":"ServiceUnavailableException","message":"The service is unavailable"}"#,
            ),
            Fault::Internal => (
                500,
                r#"{"__type":"InternalFailure","message":"internal error"}"#,
            ),
            Fault::AccessDenied => (
                400,
                r#"{"__type":"AccessDeniedException","message":"User: arn:aws:iam::123456789012:user/test is not authorized to perform: logs:FilterLogEvents"}"#,
            ),
            Fault::InvalidSequenceToken => (
                400,
                r#"{"__type":"InvalidSequenceTokenException","message":"The given sequenceToken is invalid. The next expected sequenceToken is: 49612345","expectedSequenceToken":"49612345"}"#,
            ),
            Fault::DataAlreadyAccepted => (
                400,
                r#"{"__type":"DataAlreadyAcceptedException","message":"The given batch of log events has already been accepted.","expectedSequenceToken":"49612346"}"#,
            ),
            Fault::MalformedQuery => (
                400,
                r#"{"__type":"MalformedQueryException","message":"unexpected symbol found bogus at line 1 and position 9","queryCompileError":{"location":{"startCharOffset":8,"endCharOffset":13},"message":"unexpected symbol"}}"#,
            ),
            Fault::Unsupported => (
                400,
                r#"{"__type":"UnknownOperationException","message":"The operation is not supported by this endpoint"}"#,
            ),
            Fault::QueryRunning => (200, r#"{"status":"Running","results":[]}"#),
            // Handled before any answer is written.
            Fault::Delay(_) | Fault::Drop => (500, ""),
        }
    }
}

#[derive(Default)]
pub struct ProxyScript {
    /// Faults answered, in order, to calls of `operation`.
    pub faults: VecDeque<Fault>,
    /// Answer this fault to every call of `operation`, forever.
    pub always: Option<Fault>,
    /// Let this many calls of `operation` through before `always` applies.
    pub always_after: usize,
    /// Answer this fault to every other call of `operation` (a storm that
    /// lets half the calls through).
    pub every_other: Option<Fault>,
    /// When each call of `operation` arrived, answered or forwarded.
    pub calls_at: Vec<std::time::Instant>,
    /// The operation faults apply to, e.g. "FilterLogEvents".
    pub operation: String,
    /// Faults answered so far.
    pub injected: usize,
    /// Calls forwarded to moto per operation.
    pub forwarded: Vec<String>,
    /// Bodies of the calls of `operation` forwarded to moto, in order.
    pub bodies: Vec<String>,
}

pub struct FaultProxy {
    pub url: String,
    pub script: Arc<Mutex<ProxyScript>>,
    server: Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FaultProxy {
    /// A proxy that answers every call of `operation` with `fault`.
    pub fn always(upstream: &str, operation: &str, fault: Fault) -> FaultProxy {
        let proxy = FaultProxy::start(upstream, operation);
        proxy.script().always = Some(fault);
        proxy
    }

    pub fn start(upstream: &str, operation: &str) -> FaultProxy {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("proxy binds"));
        let port = server.server_addr().to_ip().expect("ip").port();
        let script = Arc::new(Mutex::new(ProxyScript {
            operation: operation.to_string(),
            ..ProxyScript::default()
        }));
        let (s, sc, upstream) = (
            Arc::clone(&server),
            Arc::clone(&script),
            upstream.to_string(),
        );
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let thread = std::thread::spawn(move || {
            for mut request in s.incoming_requests() {
                let target = request
                    .headers()
                    .iter()
                    .find(|h| h.field.equiv("X-Amz-Target"))
                    .map(|h| {
                        h.value
                            .as_str()
                            .rsplit('.')
                            .next()
                            .unwrap_or("")
                            .to_string()
                    })
                    .unwrap_or_default();
                let fault = {
                    let mut sc = sc.lock().unwrap();
                    if target == sc.operation {
                        sc.calls_at.push(std::time::Instant::now());
                        let alternate = sc.every_other.filter(|_| sc.calls_at.len() % 2 == 0);
                        let always = sc.always.filter(|_| sc.calls_at.len() > sc.always_after);
                        let f = sc.faults.pop_front().or(always).or(alternate);
                        if f.is_some() {
                            sc.injected += 1;
                        } else {
                            sc.forwarded.push(target.clone());
                        }
                        f
                    } else {
                        sc.forwarded.push(target.clone());
                        None
                    }
                };
                let fault = match fault {
                    Some(Fault::Delay(d)) => {
                        std::thread::sleep(d);
                        None
                    }
                    Some(Fault::Drop) => {
                        // Take the raw connection (tiny_http writes a bare
                        // 101 first) and close it.
                        drop(request.upgrade("close", tiny_http::Response::empty(101)));
                        continue;
                    }
                    other => other,
                };
                if let Some(f) = fault {
                    let (status, body) = f.response();
                    let _ = request.respond(
                        tiny_http::Response::from_string(body)
                            .with_status_code(status)
                            .with_header(
                                tiny_http::Header::from_bytes(
                                    "Content-Type",
                                    "application/x-amz-json-1.1",
                                )
                                .unwrap(),
                            ),
                    );
                    continue;
                }
                let mut body = Vec::new();
                let _ = request.as_reader().read_to_end(&mut body);
                {
                    let mut sc = sc.lock().unwrap();
                    if target == sc.operation {
                        sc.bodies.push(String::from_utf8_lossy(&body).into_owned());
                    }
                }
                let mut builder = ureq::http::Request::builder()
                    .method(request.method().as_str())
                    .uri(format!("{upstream}{}", request.url()));
                for h in request.headers() {
                    let name = h.field.as_str().as_str();
                    if !name.eq_ignore_ascii_case("host")
                        && !name.eq_ignore_ascii_case("content-length")
                    {
                        builder = builder.header(name, h.value.as_str());
                    }
                }
                let forwarded = builder.body(body).ok().and_then(|req| agent.run(req).ok());
                match forwarded {
                    Some(resp) => {
                        let status = resp.status().as_u16();
                        let content_type = resp
                            .headers()
                            .get("content-type")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("application/x-amz-json-1.1")
                            .to_string();
                        let bytes = resp.into_body().read_to_vec().unwrap_or_default();
                        let _ = request.respond(
                            tiny_http::Response::from_data(bytes)
                                .with_status_code(status)
                                .with_header(
                                    tiny_http::Header::from_bytes("Content-Type", content_type)
                                        .unwrap(),
                                ),
                        );
                    }
                    None => {
                        let _ = request.respond(
                            tiny_http::Response::from_string("bad gateway").with_status_code(502),
                        );
                    }
                }
            }
        });
        FaultProxy {
            url: format!("http://127.0.0.1:{port}"),
            script,
            server,
            thread: Some(thread),
        }
    }

    pub fn script(&self) -> std::sync::MutexGuard<'_, ProxyScript> {
        self.script.lock().unwrap()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
