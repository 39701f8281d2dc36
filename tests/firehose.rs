//! `cwtap serve` end to end: CloudWatch Logs (moto) writes subscription
//! records into a Kinesis stream (the filter put by `cwtap subscribe`); a
//! Firehose stand-in (tests/peers/firehose_standin.py, following Firehose's
//! HTTP endpoint specification: request ids, access key, gzip, retries on
//! non-200 and timeouts) reads them and delivers them to `cwtap serve`.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const KEY: &str = "fh-test-key-0123456789";
const STREAM_ARN: &str = "arn:aws:kinesis:us-east-1:123456789012:stream/cwl";
const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/cwl-to-kinesis";

fn venv_python() -> PathBuf {
    let venv = std::env::var_os("CWTAP_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv"));
    venv.join("bin/python")
}

fn peer(script: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/peers")
        .join(script)
}

/// Creates the Kinesis stream the subscription filter writes to (one shard:
/// records keep their order) and waits until it is active.
fn create_stream(moto: &Moto) {
    let script = format!(
        "import boto3, time\n\
         k = boto3.client('kinesis', endpoint_url='{}', region_name='us-east-1', aws_access_key_id='testing', aws_secret_access_key='testing')\n\
         k.create_stream(StreamName='cwl', ShardCount=1)\n\
         for _ in range(100):\n\
         \x20   if k.describe_stream_summary(StreamName='cwl')['StreamDescriptionSummary']['StreamStatus'] == 'ACTIVE': break\n\
         \x20   time.sleep(0.1)\n",
        moto.url
    );
    let out = Command::new(venv_python())
        .args(["-c", &script])
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "create stream: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A `serve` config in `dir`: `output` (YAML), the endpoint on `port`,
/// `/app/` groups with the json rules (others get the default rules), the
/// metrics listener on a port of its own.
fn serve_config(dir: &Path, output: &str, port: u16, extra: &str) -> PathBuf {
    write_config(
        dir,
        &format!(
            "{output}\nfirehose:\n  listen: 127.0.0.1:{port}\n  access_key: ${{FH_KEY}}\n{extra}\
             log_groups:\n  - prefix: /app/\n    parsers: [{{use: json}}]\n\
             agent:\n  state_path: {}\n  listen: 127.0.0.1:{}\n  trace_idle_secs: 1h\n",
            dir.join("state.db").display(),
            free_port()
        ),
    )
}

/// The `/metrics` URL of a [`serve_config`]: `agent.listen`, its last
/// `listen:` line.
fn metrics_url(config: &Path) -> String {
    let text = std::fs::read_to_string(config).unwrap();
    let agent = text
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("listen: "))
        .expect("agent.listen");
    format!("http://{agent}/metrics")
}

/// A `cwtap serve` process, killed if a test ends (or panics) without
/// stopping it.
struct Serve(Option<Child>);

impl Serve {
    fn child(&self) -> &Child {
        self.0.as_ref().expect("running")
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `cwtap serve`, logging to `serve.log` beside the config; waits until the
/// endpoint accepts connections.
fn spawn_serve(moto: &Moto, config: &Path, port: u16) -> Serve {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(config.with_file_name("serve.log"))
        .unwrap();
    let child = cwtap(&moto.url)
        .env("FH_KEY", KEY)
        .args(["serve", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("cwtap serve starts");
    let serve = Serve(Some(child));
    let up = wait_until(Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(up, "cwtap serve did not listen on {port}");
    serve
}

fn stop_serve(mut serve: Serve, config: &Path) {
    let mut child = serve.0.take().expect("running");
    signal(&child, "TERM");
    let exit = wait_exit(&mut child, Duration::from_secs(10)).expect("exits within 10 s");
    let log = std::fs::read_to_string(config.with_file_name("serve.log")).unwrap_or_default();
    assert!(exit.success(), "serve exit {exit:?}; log:\n{log}");
}

/// Runs the stand-in until it has delivered everything in the stream and
/// gone idle; returns its log lines.
fn standin(moto_url: &str, dir: &Path, urls: &[String], extra: &[&str]) -> (bool, Vec<Value>) {
    let log = dir.join("standin.jsonl");
    let mut cmd = Command::new(venv_python());
    cmd.arg(peer("firehose_standin.py"))
        .args(["run", "--kinesis-endpoint", moto_url, "--stream", "cwl"])
        .args(["--access-key", KEY, "--gzip", "--ids", "unique"])
        .args([
            "--source-arn",
            "arn:aws:firehose:us-east-1:123456789012:deliverystream/cwl",
        ])
        .args(["--max-records", "3", "--interval", "0.2"])
        .args([
            "--backoff-initial",
            "0.2",
            "--backoff-max",
            "2",
            "--retry-duration",
            "120",
        ])
        .args(["--stop-after-idle", "4", "--max-runtime", "150"])
        .arg("--log")
        .arg(&log)
        .args(extra);
    for url in urls {
        cmd.args(["--url", url]);
    }
    let out = run_to_end(&mut cmd, Duration::from_secs(170));
    let lines = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    if !out.status.success() {
        eprintln!("stand-in: {}", String::from_utf8_lossy(&out.stderr));
    }
    (out.status.success(), lines)
}

/// The unique ids the stand-in gave the events of every record it read.
fn standin_ids(log: &[Value]) -> Vec<String> {
    log.iter()
        .filter(|l| l["event"] == "record")
        .flat_map(|l| l["ids"].as_array().cloned().unwrap_or_default())
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

fn attempts(log: &[Value]) -> Vec<&Value> {
    log.iter().filter(|l| l["event"] == "attempt").collect()
}

/// Groups, a subscription filter on them (by `cwtap subscribe`), events.
async fn seed(
    moto: &Moto,
    config: &Path,
    groups: &[&str],
    per_group: usize,
) -> Vec<(String, i64, String)> {
    let client = moto.client().await;
    for g in groups {
        client
            .create_log_group()
            .log_group_name(*g)
            .send()
            .await
            .unwrap();
    }
    let out = run_to_end(
        cwtap(&moto.url)
            .env("FH_KEY", KEY)
            .args(["subscribe", "--config"])
            .arg(config)
            .args(["--destination-arn", STREAM_ARN, "--role-arn", ROLE_ARN])
            .args(groups.iter().flat_map(|g| ["--group", g])),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "subscribe: {}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    for g in groups {
        assert!(
            said.contains(&format!("subscribed {g} -> {STREAM_ARN}")),
            "{said}"
        );
    }
    let t0 = now_ms() - 60_000;
    let mut sent = Vec::new();
    for (gi, g) in groups.iter().enumerate() {
        for chunk in 0..per_group.div_ceil(10) {
            let events: Vec<(i64, String)> = (0..10.min(per_group - chunk * 10))
                .map(|k| {
                    let i = chunk * 10 + k;
                    let ts = t0 + (gi * per_group + i) as i64;
                    let msg = format!(
                        r#"{{"level":"info","msg":"event {gi}-{i}","request_id":"req-{gi}-{}","seq":{i}}}"#,
                        i / 3
                    );
                    (ts, msg)
                })
                .collect();
            put_events(&client, g, "web-1", &events).await;
            sent.extend(events.into_iter().map(|(ts, m)| (g.to_string(), ts, m)));
        }
    }
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subscribed_event_arrives_once_parsed_and_grouped_as_pulled() {
    let moto = Moto::start();
    create_stream(&moto);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let out = dir.path().join("out.ndjson");
    let config = serve_config(
        dir.path(),
        &format!("ndjson: {{path: {}}}", out.display()),
        port,
        "",
    );
    let sent = seed(&moto, &config, &["/app/api", "/other/worker"], 25).await;
    let serve = spawn_serve(&moto, &config, port);
    // A control message rides along in the second request; cwtap drops it.
    let (ok, log) = standin(
        &moto.url,
        dir.path(),
        &[format!("http://127.0.0.1:{port}/firehose")],
        &["--inject", "control:2"],
    );
    assert!(ok, "the stand-in delivered everything");
    let scrape = http_get(&metrics_url(&config)).1;
    let ready = http_get(&metrics_url(&config).replace("/metrics", "/readyz"));
    assert_eq!(ready.0, 200, "ready: {}", ready.1);
    stop_serve(serve, &config);
    assert_eq!(
        sample(&scrape, "cwtap_firehose_events_total"),
        Some(sent.len() as f64),
        "{scrape}"
    );
    assert_eq!(
        sample(&scrape, "cwtap_firehose_requests_total{status=\"200\"}"),
        Some(attempts(&log).len() as f64)
    );

    let events = read_ndjson(&out);
    let logs: Vec<&Value> = events.iter().filter(|e| !is_summary(e)).collect();
    assert_eq!(
        logs.len(),
        sent.len(),
        "every event once, control message dropped"
    );
    let ids = id_counts(&events);
    assert!(ids.values().all(|&n| n == 1), "no event twice");
    let mut expected_ids = standin_ids(&log);
    expected_ids.sort();
    let mut got: Vec<String> = ids.keys().cloned().collect();
    got.sort();
    assert_eq!(
        got, expected_ids,
        "each event keeps the eventId it was sent with"
    );
    let by_message: HashMap<String, &Value> = logs
        .iter()
        .map(|e| {
            (
                e["properties"]["msg"].as_str().unwrap_or("").to_string(),
                *e,
            )
        })
        .collect();
    for (group, ts, message) in &sent {
        let v: Value = serde_json::from_str(message).unwrap();
        let e = by_message
            .get(v["msg"].as_str().unwrap())
            .unwrap_or_else(|| panic!("{message} delivered"));
        assert_eq!(e["source"]["log_group"], group.as_str());
        assert_eq!(e["source"]["log_stream"], "web-1");
        assert_eq!(e["source"]["account_id"], "123456789012");
        assert_eq!(e["source"]["region"], "us-east-1");
        let delivered_ms = humantime::parse_rfc3339(e["timestamp"].as_str().unwrap())
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        assert_eq!(delivered_ms, *ts, "exact millisecond");
        // Parsed as the pull path would: every original field kept, the
        // request id found, grouped by it.
        assert_eq!(e["properties"]["seq"], v["seq"]);
        assert_eq!(e["properties"]["request_id"], v["request_id"]);
        assert_eq!(
            e["session_id"],
            format!("r:{}", v["request_id"].as_str().unwrap()).as_str()
        );
    }
    // The matched group used its rule (json); the other the default set.
    let api = logs
        .iter()
        .find(|e| e["source"]["log_group"] == "/app/api")
        .unwrap();
    assert_eq!(api["properties"]["level"], "info");
    // Requests were gzipped and answered 200 with the request id.
    for a in attempts(&log) {
        assert_eq!(a["status"], 200, "{a}");
        assert_eq!(a["response"]["requestId"], a["request_id"]);
    }
    // `status` shows what was received, per group.
    let status: Vec<Value> = serde_json::from_str(&run_ok(
        cwtap(&moto.url)
            .env("FH_KEY", KEY)
            .args(["status", "--json", "--config"])
            .arg(&config),
        Duration::from_secs(30),
    ))
    .unwrap();
    let kept: u64 = status
        .iter()
        .filter(|g| g["source"] == "firehose")
        .map(|g| g["event_ids_remembered"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(kept, sent.len() as u64, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_outage_gets_non_200_answers_and_firehose_retries_lose_and_double_nothing() {
    let moto = Moto::start();
    create_stream(&moto);
    let receiver = Receiver::start();
    receiver.script().down_until = Some(Instant::now() + Duration::from_secs(20));
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = serve_config(
        dir.path(),
        &format!(
            "vectadb: {{endpoint: '{}', max_backoff_secs: 2}}",
            receiver.url
        ),
        port,
        "  request_timeout_secs: 3\n",
    );
    let sent = seed(&moto, &config, &["/app/api"], 30).await;
    let serve = spawn_serve(&moto, &config, port);
    let (ok, log) = standin(
        &moto.url,
        dir.path(),
        &[format!("http://127.0.0.1:{port}/")],
        &[],
    );
    assert!(ok, "the stand-in delivered everything in the end");
    let scrape = http_get(&metrics_url(&config)).1;
    stop_serve(serve, &config);

    let all = attempts(&log);
    let failed: Vec<&&Value> = all.iter().filter(|a| a["status"] != 200).collect();
    assert!(
        !failed.is_empty(),
        "cwtap answered non-200 while the output was down"
    );
    assert!(failed.iter().all(|a| a["status"] == 503), "{failed:?}");
    // Each failed request was retried with the same id until delivered.
    for f in &failed {
        assert!(
            all.iter()
                .any(|a| a["request_id"] == f["request_id"] && a["status"] == 200),
            "request {} delivered in the end",
            f["request_id"]
        );
    }
    let stored = receiver.stored();
    let ids = id_counts(&stored);
    assert_eq!(ids.len(), sent.len(), "nothing lost");
    assert!(ids.values().all(|&n| n == 1), "nothing doubled: {ids:?}");
    assert!(
        sample(&scrape, "cwtap_firehose_rejects_total{reason=\"timeout\"}").unwrap_or(0.0) >= 1.0,
        "{scrape}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_behind_round_robin_one_killed_lose_nothing_and_repeat_only_what_was_in_flight()
 {
    let moto = Moto::start();
    create_stream(&moto);
    let receiver = Receiver::start();
    // Slow answers, so that requests are in flight when a replica dies.
    receiver.script().delay = Duration::from_millis(150);
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (port_a, port_b) = (free_port(), free_port());
    let output = format!("vectadb: {{endpoint: '{}', batch_size: 5}}", receiver.url);
    let config_a = serve_config(dir_a.path(), &output, port_a, "");
    let config_b = serve_config(dir_b.path(), &output, port_b, "");
    let sent = seed(&moto, &config_a, &["/app/api"], 60).await;
    let a = spawn_serve(&moto, &config_a, port_a);
    let b = spawn_serve(&moto, &config_b, port_b);
    let urls = [
        format!("http://127.0.0.1:{port_a}/"),
        format!("http://127.0.0.1:{port_b}/"),
    ];
    let runner = {
        let (moto_url, dir) = (moto.url.clone(), dir_a.path().to_path_buf());
        std::thread::spawn(move || standin(&moto_url, &dir, &urls, &[]))
    };
    // Kill replica A once it has delivered something.
    assert!(
        wait_until(Duration::from_secs(60), || receiver.stored_count() >= 10),
        "deliveries started"
    );
    signal(a.child(), "KILL");
    drop(a);
    let (ok, log) = runner.join().unwrap();
    assert!(ok, "the stand-in delivered everything through B");
    stop_serve(b, &config_b);

    let stored = receiver.stored();
    let ids = id_counts(&stored);
    assert_eq!(ids.len(), sent.len(), "nothing lost");
    let repeated: usize = ids.values().map(|n| n - 1).sum();
    // A request carries at most 3 records of 10 events: what A was
    // delivering when it died is the most that can arrive twice.
    assert!(repeated <= 30, "{repeated} events repeated");
    let failed = attempts(&log).iter().filter(|a| a["status"] != 200).count();
    assert!(failed >= 1, "an attempt failed on the dead replica");
}

/// `send` of one crafted body: the stand-in's verdict line.
fn send(dir: &Path, port: u16, body: &Path, key: &str) -> Value {
    let out = Command::new(venv_python())
        .arg(peer("firehose_standin.py"))
        .args(["send", "--url", &format!("http://127.0.0.1:{port}/")])
        .arg("--file")
        .arg(body)
        .args(["--access-key", key, "--log"])
        .arg(dir.join("send.jsonl"))
        .output()
        .expect("stand-in runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or("{}")).unwrap_or(Value::Null)
}

fn last_attempt(dir: &Path) -> Value {
    std::fs::read_to_string(dir.join("send.jsonl"))
        .unwrap_or_default()
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["event"] == "attempt")
        .unwrap_or(Value::Null)
}

/// A request body of two records of `events` events each (distinct ids), and
/// one bad record (`KIND:INDEX`) when asked.
fn build_body(dir: &Path, name: &str, events: usize, bad: Option<&str>) -> PathBuf {
    let mut cmd = Command::new(venv_python());
    cmd.arg(peer("firehose_standin.py")).arg("build");
    for record in 0..2 {
        let payload = dir.join(format!("{name}.{record}.payload.json"));
        let log_events: Vec<Value> = (0..events)
            .map(|i| {
                serde_json::json!({
                    "id": format!("{:040}{:08}{:08}", name.len(), record, i),
                    "timestamp": now_ms() - 1_000 + i as i64,
                    "message": format!("{name} record {record} line {i}"),
                })
            })
            .collect();
        std::fs::write(
            &payload,
            serde_json::json!({
                "messageType": "DATA_MESSAGE", "owner": "123456789012",
                "logGroup": "/app/api", "logStream": "s", "subscriptionFilters": ["cwtap"],
                "logEvents": log_events,
            })
            .to_string(),
        )
        .unwrap();
        cmd.arg("--payload").arg(&payload);
    }
    let body = dir.join(format!("{name}.body.json"));
    cmd.arg("--out").arg(&body);
    if let Some(bad) = bad {
        cmd.args(["--bad", bad]);
    }
    let out = cmd.output().expect("build runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_is_401_and_bad_records_are_400_naming_the_record_and_nothing_is_delivered() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let out = dir.path().join("out.ndjson");
    let config = serve_config(
        dir.path(),
        &format!("ndjson: {{path: {}}}", out.display()),
        port,
        "",
    );
    let serve = spawn_serve(&moto, &config, port);

    let good = build_body(dir.path(), "good", 4, None);
    let verdict = send(dir.path(), port, &good, "not-the-key");
    assert_ne!(verdict["event"], "delivered");
    let attempt = last_attempt(dir.path());
    assert_eq!(attempt["status"], 401, "{attempt}");
    assert!(
        attempt["response"]["errorMessage"]
            .as_str()
            .unwrap_or("")
            .contains("Access-Key")
    );

    for kind in ["base64", "gzip", "json"] {
        let bad = build_body(
            dir.path(),
            &format!("bad-{kind}"),
            4,
            Some(&format!("{kind}:1")),
        );
        let verdict = send(dir.path(), port, &bad, KEY);
        assert_ne!(verdict["event"], "delivered", "{kind}");
        let attempt = last_attempt(dir.path());
        assert_eq!(attempt["status"], 400, "{kind}: {attempt}");
        let message = attempt["response"]["errorMessage"]
            .as_str()
            .unwrap_or("")
            .to_string();
        assert!(message.contains("record 1"), "{kind}: {message}");
        assert!(message.contains(kind), "{kind}: {message}");
    }
    // A record that inflates past 16 MiB (a gzip bomb) is refused unread.
    let bomb = build_body(dir.path(), "bad-bomb", 4, Some("bomb:1"));
    let verdict = send(dir.path(), port, &bomb, KEY);
    assert_ne!(verdict["event"], "delivered");
    let attempt = last_attempt(dir.path());
    assert_eq!(attempt["status"], 400, "{attempt}");
    let message = attempt["response"]["errorMessage"].as_str().unwrap_or("");
    assert!(
        message.contains("record 1") && message.contains("inflates to more than"),
        "{message}"
    );
    assert!(
        read_ndjson(&out).iter().all(is_summary),
        "nothing of a refused request delivered"
    );

    // A Content-Encoding other than gzip is named, not read as garbage.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut resp = agent
        .post(&format!("http://127.0.0.1:{port}/"))
        .header("X-Amz-Firehose-Request-Id", "br-1")
        .header("X-Amz-Firehose-Access-Key", KEY)
        .header("Content-Encoding", "br")
        .send(std::fs::read(&good).unwrap())
        .expect("serve answers");
    assert_eq!(resp.status().as_u16(), 415);
    let body = resp.body_mut().read_to_string().unwrap_or_default();
    assert!(
        body.contains("Content-Encoding") && body.contains("br-1"),
        "{body}"
    );

    // The next good request is served.
    let verdict = send(dir.path(), port, &good, KEY);
    assert_eq!(verdict["event"], "delivered", "{verdict}");
    let scrape = http_get(&metrics_url(&config)).1;
    stop_serve(serve, &config);
    let delivered: Vec<Value> = read_ndjson(&out)
        .into_iter()
        .filter(|e| !is_summary(e))
        .collect();
    assert_eq!(delivered.len(), 8, "two records of four events");
    for reason in [
        "auth",
        "base64",
        "gzip",
        "json",
        "record_too_large",
        "encoding",
    ] {
        assert_eq!(
            sample(
                &scrape,
                &format!("cwtap_firehose_rejects_total{{reason=\"{reason}\"}}")
            ),
            Some(1.0),
            "{reason}: {scrape}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_request_in_flight_answers_it_and_exits_zero() {
    let moto = Moto::start();
    let receiver = Receiver::start();
    // The output takes 3 s to answer: the request is in flight at SIGTERM.
    receiver.script().delay = Duration::from_secs(3);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = serve_config(
        dir.path(),
        &format!("vectadb: {{endpoint: '{}'}}", receiver.url),
        port,
        "",
    );
    let mut serve = spawn_serve(&moto, &config, port);
    let body = build_body(dir.path(), "inflight", 5, None);
    let sender = {
        let (dir, body) = (dir.path().to_path_buf(), body.clone());
        std::thread::spawn(move || send(&dir, port, &body, KEY))
    };
    // Wait until cwtap is delivering it (the receiver saw the batch).
    assert!(
        wait_until(Duration::from_secs(20), || receiver
            .requests()
            .iter()
            .any(|r| r.path == "/api/v1/events/batch")),
        "delivery started"
    );
    signal(serve.child(), "TERM");
    let verdict = sender.join().unwrap();
    let mut child = serve.0.take().expect("running");
    let exit =
        wait_exit(&mut child, Duration::from_secs(10)).expect("exits within 10 s of SIGTERM");
    assert!(exit.success(), "{exit:?}");
    assert_eq!(
        verdict["event"], "delivered",
        "the request in flight was answered 200: {verdict}"
    );
    let ids = id_counts(&receiver.stored());
    assert_eq!(ids.len(), 10, "its events were delivered");
    // No new connection is taken after shutdown.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

/// A request given up while the output is out leaves the replica unready;
/// once the output is back, readiness returns by itself (a health check),
/// without waiting for a request that a load balancer would not send to
/// an unready replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_comes_back_with_the_output_without_a_new_request() {
    let moto = Moto::start();
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = serve_config(
        dir.path(),
        &format!(
            "vectadb: {{endpoint: '{}', max_backoff_secs: 1}}",
            receiver.url
        ),
        port,
        "  request_timeout_secs: 2\n",
    );
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("agent:\n", "agent:\n  poll_interval_secs: 1\n"),
    )
    .unwrap();
    let serve = spawn_serve(&moto, &config, port);
    let readyz = metrics_url(&config).replace("/metrics", "/readyz");
    assert!(
        wait_until(Duration::from_secs(20), || http_get(&readyz).0 == 200),
        "ready at start"
    );
    {
        let mut script = receiver.script();
        script.down_until = Some(Instant::now() + Duration::from_secs(3600));
        script.health_down = true;
    }
    let body = build_body(dir.path(), "outage", 3, None);
    let verdict = send(dir.path(), port, &body, KEY);
    let during = http_get(&readyz);
    {
        let mut script = receiver.script();
        script.down_until = None;
        script.health_down = false;
    }
    let back = wait_until(Duration::from_secs(30), || http_get(&readyz).0 == 200);
    stop_serve(serve, &config);
    assert_ne!(
        verdict["event"], "delivered",
        "the request failed: {verdict}"
    );
    assert_eq!(
        during.0, 503,
        "unready after the failed request: {during:?}"
    );
    assert!(during.1.contains("output not ready"), "{during:?}");
    assert!(back, "ready again once the output answers");
    assert!(
        receiver.stored().is_empty(),
        "nothing was delivered meanwhile"
    );
}

/// The same events in two requests at once under different request ids
/// (a record Firehose sends again in a new request): the second waits for
/// the first's delivery and delivers nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_events_in_two_concurrent_requests_are_delivered_once() {
    let moto = Moto::start();
    let receiver = Receiver::start();
    receiver.script().delay = Duration::from_secs(2);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = serve_config(
        dir.path(),
        &format!("vectadb: {{endpoint: '{}'}}", receiver.url),
        port,
        "",
    );
    let serve = spawn_serve(&moto, &config, port);
    // Same name length: the same event ids in both bodies.
    let first = build_body(dir.path(), "conc1", 3, None);
    let second = build_body(dir.path(), "conc2", 3, None);
    let sender = {
        let (dir, body) = (dir.path().to_path_buf(), first.clone());
        std::thread::spawn(move || send(&dir, port, &body, KEY))
    };
    assert!(
        wait_until(Duration::from_secs(20), || receiver
            .script()
            .batches_arrived
            >= 1),
        "the first request is being delivered"
    );
    let again = send(dir.path(), port, &second, KEY);
    let first = sender.join().unwrap();
    stop_serve(serve, &config);
    assert_eq!(first["event"], "delivered", "{first}");
    assert_eq!(again["event"], "delivered", "{again}");
    let ids = id_counts(&receiver.stored());
    assert_eq!(ids.len(), 6, "{ids:?}");
    assert!(ids.values().all(|&n| n == 1), "nothing twice: {ids:?}");
}
