//! Synthetic, correlated logs in the fixture format: an API gateway calling
//! Lambdas that call each other, the way their CloudWatch groups look.
//!
//! Each trace is one gateway request: API Gateway execution-log lines in
//! `/aws/apigateway/<gateway>`, then in `/aws/lambda/<service>` for every
//! service on the call chain the `START` / `END` / `REPORT` lines, runtime
//! text lines (Node: `<ts>\t<request id>\tINFO\t<msg>`; Python:
//! `[INFO]\t<ts>\t<request id>\t<msg>`) and JSON logs carrying `trace_id`,
//! `span_id` and `parent_span_id`. A share of traces (`error_rate`) fails in
//! its deepest service with a stack trace, and the failure shows up the
//! chain and at the gateway (502).
//!
//! The same options and seed always give the same file: the random source is
//! a small SplitMix64 written here, not a library generator whose sequence
//! may change between versions.

use serde_json::json;

use super::ReplayError;
use super::fixture::FixtureEvent;
use crate::time::{EpochMs, format_ms};

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Number of gateway requests (traces).
    pub traces: usize,
    /// Lambda services, in call order: the gateway calls the first, which
    /// may call the second, and so on.
    pub services: Vec<String>,
    /// Share of traces that end in an error, 0 to 1.
    pub error_rate: f64,
    /// Traces start in `[start_ms, end_ms)`.
    pub start_ms: EpochMs,
    pub end_ms: EpochMs,
    pub seed: u64,
    /// The API Gateway's name, in its log group name.
    pub gateway: String,
}

impl GenerateOptions {
    /// Checks the options; the message says which flag is wrong.
    pub fn validate(&self) -> Result<(), ReplayError> {
        let usage = |m: String| Err(ReplayError::Usage(m));
        if self.traces == 0 || self.traces > 1_000_000 {
            return usage(format!("--traces {}: give 1 to 1000000", self.traces));
        }
        if self.services.is_empty() {
            return usage("--services: name at least one service".into());
        }
        for s in &self.services {
            if s.is_empty()
                || !s
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return usage(format!(
                    "--services: {s:?} is not a Lambda function name (letters, digits, - and _)"
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.error_rate) {
            return usage(format!(
                "--error-rate {}: give a share between 0 and 1 (0.05 is 5%)",
                self.error_rate
            ));
        }
        if self.start_ms >= self.end_ms {
            return usage("--since must be before --until".into());
        }
        Ok(())
    }
}

/// SplitMix64: tiny, fast and the same sequence forever.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi)`; `lo` when the range is empty.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        lo + (self.next_u64() % (hi - lo) as u64) as i64
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// `n` random lowercase hex digits.
    pub fn hex(&mut self, n: usize) -> String {
        let mut s = String::with_capacity(n);
        while s.len() < n {
            s.push_str(&format!("{:016x}", self.next_u64()));
        }
        s.truncate(n);
        s
    }

    /// A random (version 4 shaped) UUID.
    pub fn uuid(&mut self) -> String {
        let h = self.hex(32);
        format!(
            "{}-{}-4{}-{}{}-{}",
            &h[0..8],
            &h[8..12],
            &h[13..16],
            ["8", "9", "a", "b"][(self.next_u64() % 4) as usize],
            &h[17..20],
            &h[20..32]
        )
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next_u64() % items.len() as u64) as usize]
    }
}

/// Node runtimes log `<ts>\t<id>\tLEVEL\t<msg>`, Python `[LEVEL]\t<ts>\t<id>\t<msg>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Runtime {
    Node,
    Python,
}

struct Builder {
    rng: SplitMix64,
    events: Vec<FixtureEvent>,
    seq: u64,
}

impl Builder {
    fn push(&mut self, group: &str, stream: &str, ts: EpochMs, message: String) {
        let ingestion = ts + self.rng.range(150, 1_800);
        self.seq += 1;
        self.events.push(FixtureEvent {
            log_group: group.to_string(),
            log_stream: stream.to_string(),
            timestamp: ts,
            ingestion_time: Some(ingestion),
            // CloudWatch's ids are 56 decimal digits, unique within a group.
            event_id: format!("{:019}{:037}", ts.max(0), self.seq),
            message,
            line: 0,
        });
    }
}

struct Service {
    name: String,
    group: String,
    runtime: Runtime,
    /// Two warm containers per function, as log streams.
    streams: [String; 2],
    memory_mb: u32,
}

const PATHS: [(&str, &str); 4] = [
    ("POST", "/checkout"),
    ("GET", "/orders/{id}"),
    ("POST", "/cart/items"),
    ("GET", "/inventory/{sku}"),
];

/// Generates the events, sorted by timestamp (ties keep generation order).
pub fn generate(options: &GenerateOptions) -> Result<Vec<FixtureEvent>, ReplayError> {
    options.validate()?;
    let mut b = Builder {
        rng: SplitMix64::new(options.seed),
        events: Vec::new(),
        seq: 0,
    };
    let day = format_ms(options.start_ms)[..10].replace('-', "/");
    let services: Vec<Service> = options
        .services
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let streams = [
                format!("{day}/[$LATEST]{}", b.rng.hex(32)),
                format!("{day}/[$LATEST]{}", b.rng.hex(32)),
            ];
            Service {
                name: name.clone(),
                group: format!("/aws/lambda/{name}"),
                runtime: if i % 2 == 0 {
                    Runtime::Node
                } else {
                    Runtime::Python
                },
                streams,
                memory_mb: [128, 256, 512, 1024][i % 4],
            }
        })
        .collect();
    let gateway_group = format!("/aws/apigateway/{}", options.gateway);
    let gateway_streams = [b.rng.hex(32), b.rng.hex(32)];
    let stage = format!("{}/prod", b.rng.hex(10));
    // Leave room after the last start for the trace to finish in the window.
    let last_start = (options.end_ms - 5_000).max(options.start_ms + 1);
    let mut starts: Vec<EpochMs> = (0..options.traces)
        .map(|_| b.rng.range(options.start_ms, last_start))
        .collect();
    starts.sort_unstable();
    let mut cold = vec![true; services.len() * 2];

    for start in starts {
        let request_id = b.rng.uuid();
        let trace_id = b.rng.hex(32);
        let gateway_span = b.rng.hex(16);
        let stream = b.rng.pick(&gateway_streams).clone();
        let (method, path) = *b.rng.pick(&PATHS);
        let fails = b.rng.unit() < options.error_rate;
        let depth = 1 + b.rng.range(0, services.len() as i64) as usize;
        let gw = |m: &str| format!("({request_id}) {m}");
        let mut t = start;
        let extended_id = b.rng.hex(8).to_uppercase();
        b.push(
            &gateway_group,
            &stream,
            t,
            gw(&format!("Extended Request Id: {extended_id}=")),
        );
        b.push(
            &gateway_group,
            &stream,
            t,
            gw(&format!(
                "Verifying Usage Plan for request: {request_id}. API Key:  API Stage: {stage}"
            )),
        );
        t += b.rng.range(1, 4);
        b.push(
            &gateway_group,
            &stream,
            t,
            gw(&format!("Starting execution for request: {request_id}")),
        );
        b.push(
            &gateway_group,
            &stream,
            t,
            gw(&format!("HTTP Method: {method}, Resource Path: {path}")),
        );
        b.push(
            &gateway_group,
            &stream,
            t,
            gw(&format!(
                "X-Ray Trace ID: 1-{}-{}",
                &trace_id[..8],
                &trace_id[8..]
            )),
        );
        t += b.rng.range(2, 8);
        let (end, failed) = invoke(
            &mut b,
            &services,
            &mut cold,
            0,
            depth,
            fails,
            t,
            &trace_id,
            &gateway_span,
            method,
            path,
        );
        let status = if failed {
            502
        } else if method == "POST" {
            201
        } else {
            200
        };
        let t = end + b.rng.range(1, 5);
        if failed {
            b.push(&gateway_group, &stream, t, gw("Lambda execution failed with status 200 due to customer function error: downstream call failed"));
        }
        b.push(
            &gateway_group,
            &stream,
            t,
            gw(&format!("Method completed with status: {status}")),
        );
        // The stage's JSON access log line, with the trace id.
        let access = json!({
            "requestId": request_id,
            "ip": format!("203.0.113.{}", b.rng.range(1, 255)),
            "httpMethod": method,
            "resourcePath": path,
            "status": status,
            "responseLatency": t - start,
            "xrayTraceId": format!("1-{}-{}", &trace_id[..8], &trace_id[8..]),
            "trace_id": trace_id,
            "span_id": gateway_span,
        });
        b.push(&gateway_group, &stream, t, access.to_string());
    }
    let mut events = b.events;
    events.sort_by_key(|e| e.timestamp);
    Ok(events)
}

fn text_line(runtime: Runtime, ts: EpochMs, request_id: &str, level: &str, msg: &str) -> String {
    match runtime {
        Runtime::Node => format!("{}\t{request_id}\t{level}\t{msg}", format_ms(ts)),
        Runtime::Python => format!("[{level}]\t{}\t{request_id}\t{msg}", format_ms(ts)),
    }
}

/// Runs service `i` (and, below `depth`, the next one); returns when it
/// ended and whether it failed.
#[allow(clippy::too_many_arguments)]
fn invoke(
    b: &mut Builder,
    services: &[Service],
    cold: &mut [bool],
    i: usize,
    depth: usize,
    fails: bool,
    start: EpochMs,
    trace_id: &str,
    parent_span: &str,
    method: &str,
    path: &str,
) -> (EpochMs, bool) {
    let svc = &services[i];
    let container = (b.rng.next_u64() % 2) as usize;
    let stream = svc.streams[container].clone();
    let is_cold = std::mem::replace(&mut cold[i * 2 + container], false);
    let request_id = b.rng.uuid();
    let span_id = b.rng.hex(16);
    let group = svc.group.clone();
    let json_log = |ts: EpochMs, level: &str, msg: &str, extra: serde_json::Value| {
        let mut v = json!({
            "timestamp": format_ms(ts),
            "level": level,
            "service": svc.name,
            "message": msg,
            "trace_id": trace_id,
            "span_id": span_id,
            "parent_span_id": parent_span,
            "request_id": request_id,
        });
        if let (Some(obj), serde_json::Value::Object(more)) = (v.as_object_mut(), extra) {
            obj.extend(more);
        }
        v.to_string()
    };
    let mut t = start;
    let init_ms = if is_cold {
        let runtime = match svc.runtime {
            Runtime::Node => "nodejs:20.v41",
            Runtime::Python => "python:3.12.v38",
        };
        let runtime_hash = b.rng.hex(64);
        b.push(
            &group,
            &stream,
            t,
            format!(
                "INIT_START Runtime Version: {runtime}\tRuntime Version ARN: arn:aws:lambda:us-east-1::runtime:{runtime_hash}"
            ),
        );
        let init = b.rng.range(120, 480);
        t += init;
        Some(init)
    } else {
        None
    };
    b.push(
        &group,
        &stream,
        t,
        format!("START RequestId: {request_id} Version: $LATEST"),
    );
    t += b.rng.range(1, 6);
    let line = text_line(
        svc.runtime,
        t,
        &request_id,
        "INFO",
        &format!("{method} {path} received (trace {trace_id})"),
    );
    b.push(&group, &stream, t, line);
    t += b.rng.range(1, 10);
    let msg = json_log(
        t,
        "info",
        "handling request",
        json!({"http_method": method, "path": path}),
    );
    b.push(&group, &stream, t, msg);
    let mut failed = false;
    if i + 1 < depth && i + 1 < services.len() {
        let next = &services[i + 1].name;
        t += b.rng.range(2, 15);
        let msg = json_log(
            t,
            "info",
            &format!("calling {next}"),
            json!({"target": next}),
        );
        b.push(&group, &stream, t, msg);
        let child_start = t + b.rng.range(5, 20);
        let (end, child_failed) = invoke(
            b,
            services,
            cold,
            i + 1,
            depth,
            fails,
            child_start,
            trace_id,
            &span_id,
            method,
            path,
        );
        t = end + b.rng.range(3, 12);
        if child_failed {
            failed = true;
            let msg = json_log(
                t,
                "error",
                &format!("{next} failed"),
                json!({"error": {"type": "DownstreamError", "target": next}}),
            );
            b.push(&group, &stream, t, msg);
        } else {
            let msg = json_log(
                t,
                "info",
                &format!("{next} answered"),
                json!({"duration_ms": end - start}),
            );
            b.push(&group, &stream, t, msg);
        }
    } else if fails {
        failed = true;
        t += b.rng.range(5, 60);
        let message = match svc.runtime {
            Runtime::Node => format!(
                "{}\t{request_id}\tERROR\tInvoke Error \t{}",
                format_ms(t),
                json!({
                    "errorType": "TypeError",
                    "errorMessage": "Cannot read properties of undefined (reading 'sku')",
                    "stack": [
                        "TypeError: Cannot read properties of undefined (reading 'sku')",
                        format!("    at reserve (/var/task/{}.js:41:27)", svc.name),
                        "    at Runtime.handler (/var/task/index.js:18:11)",
                        "    at process.processTicksAndRejections (node:internal/process/task_queues:95:5)"
                    ]
                })
            ),
            Runtime::Python => format!(
                "[ERROR] KeyError: 'sku'\nTraceback (most recent call last):\n  File \"/var/task/app.py\", line 42, in handler\n    item = order[\"sku\"]\n  File \"/var/task/{}/inventory.py\", line 17, in reserve\n    raise KeyError(\"sku\")",
                svc.name
            ),
        };
        b.push(&group, &stream, t, message);
        let msg = json_log(
            t,
            "error",
            "request failed",
            json!({"error": {"type": "KeyError", "message": "sku"}}),
        );
        b.push(&group, &stream, t, msg);
    } else {
        t += b.rng.range(5, 80);
        let line = text_line(svc.runtime, t, &request_id, "INFO", "work done");
        b.push(&group, &stream, t, line);
    }
    t += b.rng.range(1, 4);
    let duration = (t - start) as f64 + b.rng.range(0, 100) as f64 / 100.0;
    b.push(&group, &stream, t, format!("END RequestId: {request_id}"));
    let init = match init_ms {
        Some(ms) => format!("Init Duration: {ms}.{:02} ms\t", b.rng.range(0, 100)),
        None => String::new(),
    };
    let max_memory = b.rng.range(60, 120);
    b.push(
        &group,
        &stream,
        t,
        format!(
            "REPORT RequestId: {request_id}\tDuration: {duration:.2} ms\tBilled Duration: {} ms\tMemory Size: {} MB\tMax Memory Used: {max_memory} MB\t{init}",
            duration.ceil() as i64,
            svc.memory_mb,
        ),
    );
    (t, failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(seed: u64) -> GenerateOptions {
        GenerateOptions {
            traces: 40,
            services: vec!["checkout".into(), "payments".into(), "inventory".into()],
            error_rate: 0.25,
            start_ms: 1_795_161_600_000,
            end_ms: 1_795_165_200_000,
            seed,
            gateway: "demo-gw".into(),
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_events_and_another_seed_does_not() {
        assert_eq!(
            generate(&options(7)).unwrap(),
            generate(&options(7)).unwrap()
        );
        assert_ne!(
            generate(&options(7)).unwrap(),
            generate(&options(8)).unwrap()
        );
    }

    #[test]
    fn events_are_in_time_order_inside_the_window_with_unique_ids_per_group() {
        let o = options(1);
        let events = generate(&o).unwrap();
        assert!(events.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
        assert!(
            events
                .iter()
                .all(|e| e.timestamp >= o.start_ms && e.timestamp < o.end_ms)
        );
        let mut ids = std::collections::HashSet::new();
        for e in &events {
            assert!(
                ids.insert((e.log_group.clone(), e.event_id.clone())),
                "duplicate id"
            );
            assert_eq!(e.event_id.len(), 56);
            assert!(e.ingestion_time.unwrap() > e.timestamp);
            assert!(!e.message.is_empty());
        }
    }

    #[test]
    fn every_trace_is_correlated_from_gateway_to_lambdas() {
        let events = generate(&options(3)).unwrap();
        let starts = events
            .iter()
            .filter(|e| e.message.starts_with("START RequestId:"))
            .count();
        let ends = events
            .iter()
            .filter(|e| e.message.starts_with("END RequestId:"))
            .count();
        let reports = events
            .iter()
            .filter(|e| e.message.starts_with("REPORT RequestId:"))
            .count();
        assert!(starts >= 40);
        assert_eq!(starts, ends);
        assert_eq!(starts, reports);
        let completed = events
            .iter()
            .filter(|e| {
                e.log_group == "/aws/apigateway/demo-gw" && e.message.contains("Method completed")
            })
            .count();
        assert_eq!(completed, 40);
        let access_logs = events
            .iter()
            .filter(|e| {
                e.log_group == "/aws/apigateway/demo-gw" && e.message.contains("\"trace_id\"")
            })
            .count();
        assert_eq!(
            access_logs, 40,
            "one access log line with the trace id per request"
        );
        // JSON logs carry the trace and a parent span; spans chain across services.
        let json: Vec<serde_json::Value> = events
            .iter()
            .filter(|e| e.log_group.starts_with("/aws/lambda/"))
            .filter_map(|e| serde_json::from_str(&e.message).ok())
            .collect();
        assert!(!json.is_empty());
        for v in &json {
            assert_eq!(v["trace_id"].as_str().unwrap().len(), 32);
            assert_eq!(v["span_id"].as_str().unwrap().len(), 16);
            assert_eq!(v["parent_span_id"].as_str().unwrap().len(), 16);
        }
        let spans: std::collections::HashSet<&str> =
            json.iter().filter_map(|v| v["span_id"].as_str()).collect();
        assert!(
            json.iter()
                .any(|v| spans.contains(v["parent_span_id"].as_str().unwrap())),
            "some service is called by another"
        );
        // Runtime text lines of both runtimes, and errors with stack traces.
        assert!(events.iter().any(|e| e.message.contains("\tINFO\t")));
        assert!(events.iter().any(|e| e.message.starts_with("[INFO]\t")));
        assert!(
            events
                .iter()
                .any(|e| e.message.contains("Traceback") || e.message.contains("\"stack\""))
        );
        assert!(
            events
                .iter()
                .any(|e| e.message.contains("Method completed with status: 502"))
        );
    }

    #[test]
    fn bad_options_name_the_flag() {
        let mut o = options(1);
        o.error_rate = 1.5;
        assert!(
            generate(&o)
                .unwrap_err()
                .to_string()
                .contains("--error-rate")
        );
        let mut o = options(1);
        o.services = vec!["has space".into()];
        assert!(generate(&o).unwrap_err().to_string().contains("--services"));
        let mut o = options(1);
        o.traces = 0;
        assert!(generate(&o).unwrap_err().to_string().contains("--traces"));
    }
}
