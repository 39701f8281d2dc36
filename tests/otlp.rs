//! The OTLP output against a real OTLP/HTTP receiver (tests/peers/
//! otlp_receiver.py, which decodes every request with the official
//! opentelemetry-proto classes), with CloudWatch played by moto: every event
//! arrives once as a log record with its exact timestamp, body, severity and
//! ids; a Lambda invocation arrives as a span; 503s, 429s, partial successes
//! and a poisoned record lose nothing else and double nothing.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

// ---------------------------------------------------------------- receiver

/// The Python OTLP receiver, killed on drop.
struct Otlp {
    url: String,
    child: Child,
    _dir: tempfile::TempDir,
}

fn venv_python() -> PathBuf {
    let venv = std::env::var_os("CWTAP_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv"));
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "{} not found: run ./scripts/test.sh, which sets up .venv with opentelemetry-proto",
        python.display()
    );
    python
}

impl Otlp {
    fn start() -> Otlp {
        let dir = tempfile::tempdir().unwrap();
        let ready = dir.path().join("ready.json");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/otlp_receiver.py");
        let child = Command::new(venv_python())
            .arg(script)
            .args(["--port", "0", "--max-runtime", "600", "--ready-file"])
            .arg(&ready)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the OTLP receiver starts");
        let mut url = String::new();
        let up = wait_until(Duration::from_secs(30), || {
            let Ok(text) = std::fs::read_to_string(&ready) else {
                return false;
            };
            let Ok(doc) = serde_json::from_str::<Value>(&text) else {
                return false;
            };
            url = doc["url"].as_str().unwrap_or_default().to_string();
            !url.is_empty()
        });
        assert!(up, "the OTLP receiver wrote no ready file within 30 s");
        Otlp {
            url,
            child,
            _dir: dir,
        }
    }

    /// Scripts a fault (see tests/peers/README.md).
    fn control(&self, command: Value) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into();
        agent
            .post(&format!("{}/control", self.url))
            .send(command.to_string())
            .expect("POST /control");
    }

    /// Every line recorded of one kind (`log`, `span`, `request`).
    fn dump(&self, kind: &str) -> Vec<Value> {
        let (status, body) = http_get(&format!("{}/dump?kind={kind}", self.url));
        assert_eq!(status, 200, "GET /dump");
        body.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("dump lines are JSON"))
            .collect()
    }

    /// Accepted log records by CloudWatch event id.
    fn accepted_logs(&self) -> HashMap<String, Vec<Value>> {
        let mut by_id: HashMap<String, Vec<Value>> = HashMap::new();
        for log in self.dump("log") {
            if log["accepted"] == true {
                let id = log["attributes"]["log.record.uid"]
                    .as_str()
                    .expect("every log record carries log.record.uid")
                    .to_string();
                by_id.entry(id).or_default().push(log);
            }
        }
        by_id
    }

    /// Export requests (the start-up probe, which carries no record, left out).
    fn exports(&self) -> Vec<Value> {
        self.dump("request")
            .into_iter()
            .filter(|r| r["status"] != 200 || r["records"] != 0)
            .collect()
    }
}

impl Drop for Otlp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------- helpers

/// A config delivering to `otlp` (extra `otlp:` keys indented by two),
/// reading `groups` (`log_groups` entries), with `agent` keys besides the
/// state file.
fn otlp_config(dir: &Path, otlp: &Otlp, extra: &str, groups: &str, agent: &str) -> PathBuf {
    write_config(
        dir,
        &format!(
            "otlp:\n  endpoint: {}\n  max_backoff_secs: 2\n{extra}log_groups:\n{groups}agent:\n  state_path: {}\n{agent}",
            otlp.url,
            dir.join("state.db").display()
        ),
    )
}

fn backfill(moto: &Moto, config: &Path) -> std::process::Output {
    run_to_end(
        cwtap(&moto.url)
            .args(["backfill", "--since", "1h", "--config"])
            .arg(config),
        Duration::from_secs(120),
    )
}

/// `n` JSON lines in `group`, 1 ms apart, ten minutes ago; `marked` ones
/// carry `marker` in their message.
async fn seed(moto: &Moto, group: &str, n: usize, marked: &[usize], marker: &str) -> usize {
    let base = now_ms() - 10 * 60_000;
    let events: Vec<(i64, String)> = (0..n)
        .map(|i| {
            let tag = if marked.contains(&i) { marker } else { "ok" };
            (
                base + i as i64,
                format!(r#"{{"level":"info","message":"event {i} {tag}"}}"#),
            )
        })
        .collect();
    put_events(&moto.client().await, group, "stream-1", &events).await;
    n
}

fn assert_each_once(by_id: &HashMap<String, Vec<Value>>, expected: usize) {
    let doubled: Vec<&String> = by_id
        .iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|(k, _)| k)
        .collect();
    assert!(doubled.is_empty(), "delivered more than once: {doubled:?}");
    assert_eq!(by_id.len(), expected, "distinct log records accepted");
}

fn hex_of_xray(xray: &str) -> String {
    xray.trim_start_matches("1-").replace('-', "")
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_arrives_once_with_its_timestamp_body_severity_and_ids_and_a_lambda_invocation_as_a_span()
 {
    let moto = Moto::start();
    let otlp = Otlp::start();
    let client = moto.client().await;
    let t0 = now_ms() - 20 * 60_000;

    // A Lambda request with active tracing: X-Ray ids.
    let lambda = "/aws/lambda/checkout";
    let stream = "2026/11/22/[$LATEST]0123456789abcdef0123456789abcdef";
    let req = "8f5c0a3e-1b2d-4c5e-8f7a-9b0c1d2e3f40";
    let xray = "1-5759e988-bd862e3fe1be46a994272793";
    let mut sent: Vec<(String, i64, String)> = vec![
        (
            lambda.into(),
            t0,
            format!("START RequestId: {req} Version: $LATEST"),
        ),
        (
            lambda.into(),
            t0 + 5,
            format!(
                r#"{{"level":"error","message":"card declined","request_id":"{req}","trace_id":"{xray}","span_id":"53995c3f42cd8ad8","amount":12.5}}"#
            ),
        ),
        (lambda.into(), t0 + 9, format!("END RequestId: {req}")),
        (
            lambda.into(),
            t0 + 10,
            format!(
                "REPORT RequestId: {req}\tDuration: 41.20 ms\tBilled Duration: 42 ms\tMemory Size: 512 MB\tMax Memory Used: 90 MB\tInit Duration: 230.50 ms\t\nXRAY TraceId: {xray}\tSegmentId: 0a1b2c3d4e5f6a7b\tSampled: true\t"
            ),
        ),
    ];
    put_events(
        &client,
        lambda,
        stream,
        &sent
            .iter()
            .map(|(_, ts, m)| (*ts, m.clone()))
            .collect::<Vec<_>>(),
    )
    .await;
    // A service with W3C ids, every level, two lines of one trace (a summary
    // without Lambda invocations: no span) and a line no rule parses.
    let api = "/app/api";
    let w3c = "0af7651916cd43dd8448eb211c80319c";
    let mut api_events = Vec::new();
    for (i, level) in ["trace", "debug", "info", "warn", "error", "fatal"]
        .iter()
        .enumerate()
    {
        api_events.push((
            t0 + 100 + i as i64,
            format!(
                r#"{{"level":"{level}","message":"step {i}","trace_id":"{w3c}","span_id":"b7ad6b716920333{i}","service":"api"}}"#
            ),
        ));
    }
    api_events.push((t0 + 200, "plain text, no rule matches \"this\"".to_string()));
    put_events(&client, api, "web-1", &api_events).await;
    sent.extend(
        api_events
            .iter()
            .map(|(ts, m)| (api.to_string(), *ts, m.clone())),
    );

    let dir = tempfile::tempdir().unwrap();
    let config = otlp_config(
        dir.path(),
        &otlp,
        "  compression: gzip\n  headers:\n    x-api-key: ${CWTAP_TEST_OTLP_KEY}\n",
        &format!(
            "  - name: {lambda}\n    parsers: [{{use: lambda}}, {{use: json}}]\n  - name: {api}\n    parsers: [{{type: json}}]\n"
        ),
        "  trace_idle_secs: 5m\n",
    );
    let out = run_to_end(
        cwtap(&moto.url)
            .env("CWTAP_TEST_OTLP_KEY", "sk-otlp-very-secret")
            .env("RUST_LOG", "debug")
            .args(["backfill", "--since", "1h", "--config"])
            .arg(&config),
        Duration::from_secs(120),
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        !err.contains("sk-otlp-very-secret"),
        "the header value leaked into the logs"
    );

    // The start-up probe is an empty export; every request is gzip protobuf.
    let requests = otlp.dump("request");
    assert_eq!(requests[0]["path"], "/v1/logs");
    assert_eq!(
        requests[0]["records"], 0,
        "the health probe exports nothing"
    );
    for r in &requests {
        assert_eq!(r["status"], 200, "{r}");
        assert_eq!(r["content_type"], "application/x-protobuf");
        assert_eq!(r["content_encoding"], "gzip");
    }

    let by_id = otlp.accepted_logs();
    assert_each_once(&by_id, sent.len());
    let logs: Vec<&Value> = by_id.values().map(|v| &v[0]).collect();
    for (group, ts, message) in &sent {
        let found: Vec<&&Value> = logs
            .iter()
            .filter(|l| l["body"].as_str() == Some(message.as_str()))
            .collect();
        assert_eq!(found.len(), 1, "{message:?} arrives once, body exact");
        let log = found[0];
        assert_eq!(log["time_unix_nano"], json!(*ts as u64 * 1_000_000));
        assert!(
            log["observed_time_unix_nano"].as_u64().unwrap() >= *ts as u64 * 1_000_000,
            "observed time is CloudWatch's ingestion time: {log}"
        );
        assert_eq!(log["resource"]["attributes"]["cloud.provider"], "aws");
        assert_eq!(
            log["resource"]["attributes"]["aws.log.group.names"],
            json!([group])
        );
        assert_eq!(log["scope"]["name"], "cwtap");
    }
    let by_body = |needle: &str| -> &Value {
        logs.iter()
            .find(|l| l["body"].as_str().is_some_and(|b| b.contains(needle)))
            .unwrap_or_else(|| panic!("no log record with {needle:?}"))
    };

    // Severity from the parsed level.
    for (i, (level, number)) in [
        ("TRACE", 1),
        ("DEBUG", 5),
        ("INFO", 9),
        ("WARN", 13),
        ("ERROR", 17),
        ("FATAL", 21),
    ]
    .iter()
    .enumerate()
    {
        let log = by_body(&format!("\"step {i}\""));
        assert_eq!(log["severity_number"], *number, "{log}");
        assert_eq!(log["severity_text"], *level);
        assert_eq!(log["trace_id"], w3c, "W3C trace id as it is");
        assert_eq!(log["span_id"], format!("b7ad6b716920333{i}"));
        assert_eq!(log["resource"]["attributes"]["service.name"], "api");
        assert_eq!(
            log["resource"]["attributes"]["aws.log.stream.names"],
            json!(["web-1"])
        );
    }
    let plain = by_body("plain text");
    assert_eq!(plain["severity_number"], 0);
    assert_eq!(plain["trace_id"], "");
    assert_eq!(plain["attributes"]["raw_log"], true);

    // X-Ray ids become the 32-hex trace id; parsed fields are typed attributes.
    let declined = by_body("card declined");
    assert_eq!(declined["trace_id"], hex_of_xray(xray));
    assert_eq!(declined["span_id"], "53995c3f42cd8ad8");
    assert_eq!(declined["severity_number"], 17);
    assert_eq!(declined["attributes"]["amount"], 12.5);
    assert_eq!(declined["attribute_types"]["amount"], "double");
    assert_eq!(declined["attributes"]["request_id"], req);
    assert_eq!(declined["attributes"]["trace_key"], format!("r:{req}"));
    let resource = &declined["resource"]["attributes"];
    assert_eq!(resource["service.name"], "checkout");
    assert_eq!(resource["faas.name"], "checkout");
    assert_eq!(resource["cloud.platform"], "aws_lambda");
    assert_eq!(resource["faas.instance"], stream);
    let report = by_body("REPORT RequestId");
    assert_eq!(report["trace_id"], hex_of_xray(xray));
    assert_eq!(report["span_id"], "0a1b2c3d4e5f6a7b");

    // The invocation is one span of its REPORT duration in the X-Ray trace;
    // the /app/api trace has a summary but no Lambda invocation: no span.
    let spans = otlp.dump("span");
    assert_eq!(
        spans.len(),
        1,
        "one span, for the one invocation: {spans:#?}"
    );
    let span = &spans[0];
    assert_eq!(span["accepted"], true);
    assert_eq!(span["name"], "checkout");
    assert_eq!(span["trace_id"], hex_of_xray(xray));
    assert_eq!(span["span_kind_name"], "SPAN_KIND_SERVER");
    assert_eq!(span["start_time_unix_nano"], json!(t0 as u64 * 1_000_000));
    let duration = span["end_time_unix_nano"].as_u64().unwrap()
        - span["start_time_unix_nano"].as_u64().unwrap();
    assert_eq!(duration, 41_200_000, "41.20 ms");
    assert_eq!(span["attributes"]["faas.invocation_id"], req);
    assert_eq!(span["attributes"]["faas.coldstart"], true);
    assert_eq!(span["attributes"]["cwtap.lambda.billed_duration_ms"], 42.0);
    assert_eq!(span["attributes"]["cwtap.lambda.max_memory_used_mb"], 90);
    assert_eq!(span["resource"]["attributes"]["faas.name"], "checkout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_for_20_seconds_loses_nothing_doubles_nothing_and_shows_on_readyz() {
    let moto = Moto::start();
    let otlp = Otlp::start();
    let group = "/app/outage";
    let n = seed(&moto, group, 300, &[], "").await;
    otlp.control(json!({"op": "unavailable", "seconds": 20, "retry_after": 1}));
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = otlp_config(
        dir.path(),
        &otlp,
        "  health_check: false\n  batch_size: 100\n",
        &format!("  - name: {group}\n    parsers: [{{type: json}}]\n"),
        &format!(
            "  poll_interval_secs: 1\n  lookback_secs: 1h\n  group_traces: false\n  listen: 127.0.0.1:{port}\n"
        ),
    );
    let readyz = format!("http://127.0.0.1:{port}/readyz");
    let child = spawn_run_logged(&moto.url, &config);

    let down = wait_until(Duration::from_secs(30), || {
        let (status, body) = http_get(&readyz);
        status == 503 && body.contains("output not ready") && body.contains("503")
    });
    assert!(
        down,
        "/readyz shows the failing output: {:?}",
        http_get(&readyz)
    );
    assert!(
        otlp.accepted_logs().is_empty(),
        "nothing is accepted during the outage"
    );
    let delivered = wait_until(Duration::from_secs(90), || otlp.accepted_logs().len() >= n);
    assert!(delivered, "not all delivered after the outage");
    let up = wait_until(Duration::from_secs(20), || http_get(&readyz).0 == 200);
    assert!(up, "/readyz ready again: {:?}", http_get(&readyz));
    let scrape = http_get(&format!("http://127.0.0.1:{port}/metrics")).1;
    assert!(
        sample(
            &scrape,
            "cwtap_downstream_requests_total{status_class=\"5xx\"}"
        )
        .is_some_and(|n| n >= 2.0),
        "the 503s are counted: {scrape}"
    );
    stop_logged(child, &config);

    assert_each_once(&otlp.accepted_logs(), n);
    let refused = otlp.exports().iter().filter(|r| r["status"] == 503).count();
    assert!(refused >= 2, "{refused} requests were answered 503");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_during_an_outage_is_prompt_and_a_restart_delivers_everything_once() {
    let moto = Moto::start();
    let otlp = Otlp::start();
    let group = "/app/stopped";
    let n = seed(&moto, group, 30, &[], "").await;
    otlp.control(json!({"op": "unavailable", "seconds": 600, "retry_after": 1}));
    let dir = tempfile::tempdir().unwrap();
    let config = otlp_config(
        dir.path(),
        &otlp,
        "  health_check: false\n",
        &format!("  - name: {group}\n"),
        "  poll_interval_secs: 1\n  lookback_secs: 1h\n  group_traces: false\n  shutdown_grace_secs: 2\n",
    );
    let child = spawn_run_logged(&moto.url, &config);
    let retrying = wait_until(Duration::from_secs(30), || {
        otlp.exports().iter().filter(|r| r["status"] == 503).count() >= 2
    });
    assert!(retrying, "the outage was met");
    // Exits 0 within 10 s of SIGTERM although nothing could be delivered.
    stop_logged(child, &config);
    assert!(otlp.accepted_logs().is_empty());

    otlp.control(json!({"op": "reset"}));
    let child = spawn_run_logged(&moto.url, &config);
    let delivered = wait_until(Duration::from_secs(60), || otlp.accepted_logs().len() >= n);
    stop_logged(child, &config);
    assert!(delivered, "the restart delivered what the stop left");
    assert_each_once(&otlp.accepted_logs(), n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_retried_no_sooner_than_its_retry_after() {
    let moto = Moto::start();
    let otlp = Otlp::start();
    let group = "/app/throttled";
    let n = seed(&moto, group, 20, &[], "").await;
    otlp.control(json!({"op": "status", "codes": [429], "retry_after": 3}));
    let dir = tempfile::tempdir().unwrap();
    let config = otlp_config(
        dir.path(),
        &otlp,
        "  health_check: false\n",
        &format!("  - name: {group}\n"),
        "  group_traces: false\n",
    );
    let out = backfill(&moto, &config);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_each_once(&otlp.accepted_logs(), n);
    let exports = otlp.exports();
    assert_eq!(exports[0]["status"], 429);
    assert_eq!(exports[1]["status"], 200);
    let waited = exports[1]["ts"].as_i64().unwrap() - exports[0]["ts"].as_i64().unwrap();
    assert!(
        waited >= 2_900,
        "retried after {waited} ms, Retry-After said 3 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_success_is_counted_in_metrics_and_not_retried() {
    let moto = Moto::start();
    let otlp = Otlp::start();
    let group = "/app/partial";
    let marked = [3, 17, 40];
    let n = seed(&moto, group, 50, &marked, "REJECT-ME").await;
    // Every request (the events may come in more than one) answers a partial
    // success rejecting the marked records.
    otlp.control(
        json!({"op": "partial", "requests": 1000, "marker": "REJECT-ME", "message": "records over quota"}),
    );
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = otlp_config(
        dir.path(),
        &otlp,
        "",
        &format!("  - name: {group}\n    parsers: [{{type: json}}]\n"),
        &format!(
            "  poll_interval_secs: 1\n  lookback_secs: 1h\n  group_traces: false\n  listen: 127.0.0.1:{port}\n"
        ),
    );
    let metrics = format!("http://127.0.0.1:{port}/metrics");
    let child = spawn_run_logged(&moto.url, &config);
    let series = "cwtap_output_rejected_total{output=\"otlp\",signal=\"logs\"}";
    let counted = wait_until(Duration::from_secs(60), || {
        sample(&http_get(&metrics).1, series) == Some(3.0)
    });
    assert!(counted, "{series} is 3: {}", http_get(&metrics).1);
    let delivered =
        format!("cwtap_events_delivered_total{{account=\"default\",log_group=\"{group}\"}}");
    assert!(
        wait_until(Duration::from_secs(30), || {
            sample(&http_get(&metrics).1, &delivered) == Some(n as f64)
        }),
        "the request is checkpointed as delivered: {}",
        http_get(&metrics).1
    );
    stop_logged(child, &config);

    let log = std::fs::read_to_string(config.with_file_name("cwtap.log")).unwrap();
    assert!(
        log.contains("partial success") && log.contains("records over quota"),
        "the partial success is logged with its message: {log}"
    );
    // Not retried: every record was sent exactly once, the 3 refused ones too.
    let logs = otlp.dump("log");
    assert_eq!(logs.len(), n, "every record sent once");
    let ids: std::collections::HashSet<&str> = logs
        .iter()
        .filter_map(|l| l["attributes"]["log.record.uid"].as_str())
        .collect();
    assert_eq!(ids.len(), n);
    let refused: Vec<&Value> = logs.iter().filter(|l| l["accepted"] == false).collect();
    assert_eq!(refused.len(), 3);
    assert!(
        refused
            .iter()
            .all(|l| l["body"].as_str().unwrap().contains("REJECT-ME"))
    );
    assert!(
        otlp.exports().iter().all(|r| r["status"] == 200),
        "no request was refused, so none was resent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_refused_with_400_is_isolated_and_does_not_block_the_rest() {
    let moto = Moto::start();
    let otlp = Otlp::start();
    let group = "/app/poison";
    let n = seed(&moto, group, 40, &[23], "POISON").await;
    otlp.control(json!({"op": "poison", "marker": "POISON", "status": 400}));
    let dir = tempfile::tempdir().unwrap();
    let config = otlp_config(
        dir.path(),
        &otlp,
        "  batch_size: 40\n",
        &format!("  - name: {group}\n    parsers: [{{type: json}}]\n"),
        "  group_traces: false\n",
    );
    let out = backfill(&moto, &config);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("counting them as rejected"),
        "the refused record is logged: {err}"
    );
    let by_id = otlp.accepted_logs();
    assert_each_once(&by_id, n - 1);
    assert!(
        by_id
            .values()
            .all(|v| !v[0]["body"].as_str().unwrap().contains("POISON"))
    );
    let exports = otlp.exports();
    let refused: Vec<u64> = exports
        .iter()
        .filter(|r| r["status"] == 400)
        .map(|r| r["records"].as_u64().unwrap())
        .collect();
    // 40 -> 20 -> 10 -> 5 -> 3 -> 2 -> 1 when the 40 come in one batch: each
    // half holding the record is refused, the other half goes through.
    assert!(
        refused.len() <= 7 && refused.last() == Some(&1),
        "halved until it stood alone: {refused:?}"
    );
    assert!(refused.windows(2).all(|w| w[1] < w[0]), "{refused:?}");

    // The checkpoint counts it as rejected: a second run sends nothing again.
    let before = otlp.exports().len();
    let out = backfill(&moto, &config);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(otlp.exports().len(), before, "nothing is sent twice");
}

#[test]
fn check_validates_the_otlp_section_and_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let groups = "log_groups:\n  - name: /aws/lambda/app\n";
    let check = |yaml: &str| {
        let config = write_config(dir.path(), &format!("{yaml}{groups}"));
        run_code(
            cwtap("http://127.0.0.1:9")
                .current_dir(dir.path())
                .env("CWTAP_TEST_OTLP_KEY", "sk-check-secret")
                .args(["check", "--config"])
                .arg(&config),
            Duration::from_secs(20),
        )
    };
    for (yaml, fragments) in [
        (
            "otlp: {endpoint: 'localhost:4318'}\n",
            &["otlp.endpoint", "http://"][..],
        ),
        (
            "otlp: {endpoint: 'http://127.0.0.1:4318/v1/traces'}\n",
            &["otlp.endpoint", "base URL"][..],
        ),
        (
            "otlp: {endpoint: 'http://127.0.0.1:4318', compression: brotli}\n",
            &["otlp.compression", "gzip or none"][..],
        ),
        (
            "otlp: {endpoint: 'http://127.0.0.1:4318', max_batch_bytes: 0}\n",
            &["otlp.max_batch_bytes"][..],
        ),
        (
            "otlp:\n  endpoint: http://127.0.0.1:4318\n  timeout: 5\n",
            &["otlp", "unknown field `timeout`", "line 3"][..],
        ),
        (
            "otlp: {endpoint: 'http://127.0.0.1:4318', headers: {x-key: '${CWTAP_TEST_UNSET_OTLP_VAR}'}}\n",
            &["CWTAP_TEST_UNSET_OTLP_VAR"][..],
        ),
        (
            "otlp: {endpoint: 'http://127.0.0.1:4318'}\nndjson: {path: out.ndjson}\n",
            &["two outputs"][..],
        ),
    ] {
        let (code, _, err) = check(yaml);
        assert_eq!(code, 2, "{yaml}: {err}");
        for fragment in fragments {
            assert!(err.contains(fragment), "{yaml}: {fragment:?} in {err}");
        }
    }
    let (code, out, err) = check(
        "otlp:\n  endpoint: https://otlp.example.com/\n  headers: {x-api-key: '${CWTAP_TEST_OTLP_KEY}'}\n  compression: gzip\n",
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("OTLP/HTTP at https://otlp.example.com"),
        "{out}"
    );
    assert!(out.contains("x-api-key"), "{out}");
    assert!(!out.contains("sk-check-secret") && !err.contains("sk-check-secret"));
}
