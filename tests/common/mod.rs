//! Test harness: a real moto server (CloudWatch Logs) on 127.0.0.1, a real
//! HTTP receiver that plays VectaDB (with scripted failures), and helpers to
//! seed events and run the `cwtap` binary. Every wait is bounded.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub mod proxy;

use aws_sdk_cloudwatchlogs::Client;
use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use serde_json::Value;

/// A loopback port free now, for a server a test starts next. Taken below
/// the kernel's ephemeral range: a port from `bind(0)` comes from that range,
/// where any outgoing connection (cwtap's to moto, say) may take it before
/// the server binds it. Random, so that tests running side by side rarely
/// pick the same one; checked by binding it.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, RandomState};
    let ephemeral_from = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral_from.max(10_001));
    let random = RandomState::new();
    for attempt in 0u32..200 {
        let port = low + (random.hash_one(attempt) % u64::from(high - low)) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Polls `check` every 50 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    check()
}

pub fn now_ms() -> i64 {
    cwtap::time::now_ms()
}

// ---------------------------------------------------------------- moto

/// moto's server, killed on drop.
pub struct Moto {
    pub url: String,
    child: Child,
}

fn moto_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("CWTAP_MOTO_SERVER") {
        return PathBuf::from(p);
    }
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server");
    if local.exists() {
        return local;
    }
    panic!("moto_server not found: run ./scripts/test.sh, which installs it into .venv");
}

impl Moto {
    pub fn start() -> Moto {
        Moto::spawn(|port| {
            let mut c = Command::new(moto_binary());
            c.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
            c
        })
    }

    /// moto with FilterLogEvents pages ending past `bytes` (messages + 26
    /// bytes each), as CloudWatch's end at 1 MB (`scripts/bench_tools.py moto`).
    pub fn with_page_bytes(bytes: usize) -> Moto {
        let python = moto_binary().with_file_name("python");
        let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bench_tools.py");
        Moto::spawn(|port| {
            let mut c = Command::new(&python);
            c.arg(&tools).args([
                "moto",
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--page-bytes",
                &bytes.to_string(),
            ]);
            c
        })
    }

    fn spawn(command: impl Fn(u16) -> Command) -> Moto {
        // The port is free when picked, not necessarily when moto binds it
        // (tests start servers in parallel): a moto that exits instead of
        // listening is started again on another port.
        for _ in 0..3 {
            let port = free_port();
            let mut child = command(port)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("moto_server starts");
            let url = format!("http://127.0.0.1:{port}");
            let mut exited = false;
            let up = wait_until(Duration::from_secs(30), || {
                exited = matches!(child.try_wait(), Ok(Some(_)));
                exited || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            });
            if exited {
                continue;
            }
            assert!(up, "moto_server did not listen on {url} within 30 s");
            return Moto { url, child };
        }
        panic!("moto_server exited on start three times (is the venv broken?)");
    }

    pub async fn client(&self) -> Client {
        let creds = aws_sdk_cloudwatchlogs::config::Credentials::new(
            "testing", "testing", None, None, "test",
        );
        let conf = aws_sdk_cloudwatchlogs::Config::builder()
            .behavior_version(aws_sdk_cloudwatchlogs::config::BehaviorVersion::latest())
            .region(aws_sdk_cloudwatchlogs::config::Region::new("us-east-1"))
            .credentials_provider(creds)
            .endpoint_url(&self.url)
            .build();
        Client::from_conf(conf)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates the group and the stream unless they exist. Any other error (a
/// connection moto dropped while it starts) is retried a few times, then
/// named: seeding must not fail later as "log group does not exist".
pub async fn create_group_and_stream(client: &Client, group: &str, stream: &str) {
    use aws_sdk_cloudwatchlogs::error::ProvideErrorMetadata;
    let exists = |code: Option<&str>| code == Some("ResourceAlreadyExistsException");
    let mut last = String::new();
    for attempt in 0..10 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let created = client.create_log_group().log_group_name(group).send().await;
        if let Err(e) = &created
            && !exists(e.code())
        {
            last = format!("CreateLogGroup {group}: {e:?}");
            continue;
        }
        let created = client
            .create_log_stream()
            .log_group_name(group)
            .log_stream_name(stream)
            .send()
            .await;
        match &created {
            Err(e) if !exists(e.code()) => last = format!("CreateLogStream {stream}: {e:?}"),
            _ => return,
        }
    }
    panic!("cannot create the log group and stream in moto: {last}");
}

/// Creates the group and stream (idempotent) and puts `(timestamp, message)`
/// events, in batches CloudWatch accepts.
pub async fn put_events(client: &Client, group: &str, stream: &str, events: &[(i64, String)]) {
    create_group_and_stream(client, group, stream).await;
    let mut sorted = events.to_vec();
    sorted.sort_by_key(|(ts, _)| *ts);
    for chunk in sorted.chunks(5_000) {
        let batch: Vec<InputLogEvent> = chunk
            .iter()
            .map(|(ts, m)| {
                InputLogEvent::builder()
                    .timestamp(*ts)
                    .message(m)
                    .build()
                    .unwrap()
            })
            .collect();
        let out = client
            .put_log_events()
            .log_group_name(group)
            .log_stream_name(stream)
            .set_log_events(Some(batch))
            .send()
            .await
            .expect("PutLogEvents to moto");
        assert!(
            out.rejected_log_events_info().is_none(),
            "moto rejected events: {out:?}"
        );
    }
}

// ---------------------------------------------------------------- receiver

/// How the fake VectaDB answers; changed by tests while it runs.
#[derive(Default)]
pub struct Script {
    /// Answer these statuses to the next batch requests, in order.
    pub statuses: VecDeque<u16>,
    /// Answer 503 to every batch request until this instant.
    pub down_until: Option<Instant>,
    /// Answer 413 to a request with more events than this.
    pub max_events: Option<usize>,
    /// Report events whose message contains this as failed (200 + errors)
    /// the first time each is seen.
    pub flaky_marker: Option<String>,
    /// Answer 422 to a request containing an event with this in its message.
    pub poison_marker: Option<String>,
    /// Sleep this long before answering a batch request.
    pub delay: Duration,
    /// Sleep these before answering the next batch requests, in order,
    /// instead of `delay` (the events are stored all the same, as VectaDB
    /// stores what it has handled when its client gave up waiting).
    pub delays: VecDeque<Duration>,
    /// Sleep this long more per event of a batch request (a server that
    /// embeds each event).
    pub delay_per_event: Duration,
    /// Answer 503 to the health check too (with `down_until`: the whole
    /// server is out).
    pub health_down: bool,
    /// Batch requests that arrived, counted before `delay` (a request in
    /// flight shows here before it is answered).
    pub batches_arrived: usize,
}

#[derive(Debug, Clone)]
pub struct RequestLog {
    pub path: String,
    pub status: u16,
    pub events: usize,
    pub log_ids: Vec<String>,
    pub headers: HashMap<String, String>,
    pub options: Option<Value>,
}

#[derive(Default)]
pub struct Recorded {
    /// Every event stored (accepted), in order.
    pub stored: Vec<Value>,
    pub requests: Vec<RequestLog>,
    flaky_seen: std::collections::HashSet<String>,
}

/// A real HTTP server playing VectaDB's batch API.
pub struct Receiver {
    pub url: String,
    pub script: Arc<Mutex<Script>>,
    pub recorded: Arc<Mutex<Recorded>>,
    server: Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn message_of(event: &Value) -> String {
    event["properties"]["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| event["properties"].to_string())
}

impl Receiver {
    pub fn start() -> Receiver {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("receiver binds"));
        let port = server.server_addr().to_ip().expect("ip address").port();
        let script = Arc::new(Mutex::new(Script::default()));
        let recorded = Arc::new(Mutex::new(Recorded::default()));
        let (s, sc, rec) = (
            Arc::clone(&server),
            Arc::clone(&script),
            Arc::clone(&recorded),
        );
        let thread = std::thread::spawn(move || {
            for mut request in s.incoming_requests() {
                let path = request.url().to_string();
                let headers: HashMap<String, String> = request
                    .headers()
                    .iter()
                    .map(|h| {
                        (
                            h.field.as_str().as_str().to_ascii_lowercase(),
                            h.value.as_str().to_string(),
                        )
                    })
                    .collect();
                let mut body = String::new();
                let _ = request.as_reader().read_to_string(&mut body);
                let (status, reply) = handle(&path, &body, &headers, &sc, &rec);
                let response = tiny_http::Response::from_string(reply)
                    .with_status_code(status)
                    .with_header(
                        tiny_http::Header::from_bytes("Content-Type", "application/json").unwrap(),
                    );
                let _ = request.respond(response);
            }
        });
        Receiver {
            url: format!("http://127.0.0.1:{port}"),
            script,
            recorded,
            server,
            thread: Some(thread),
        }
    }

    pub fn stored(&self) -> Vec<Value> {
        self.recorded.lock().unwrap().stored.clone()
    }

    pub fn stored_count(&self) -> usize {
        self.recorded.lock().unwrap().stored.len()
    }

    pub fn requests(&self) -> Vec<RequestLog> {
        self.recorded.lock().unwrap().requests.clone()
    }

    pub fn script(&self) -> std::sync::MutexGuard<'_, Script> {
        self.script.lock().unwrap()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn handle(
    path: &str,
    body: &str,
    headers: &HashMap<String, String>,
    script: &Mutex<Script>,
    recorded: &Mutex<Recorded>,
) -> (u16, String) {
    let log = |status: u16, events: &[Value], options: Option<Value>| {
        recorded.lock().unwrap().requests.push(RequestLog {
            path: path.to_string(),
            status,
            events: events.len(),
            log_ids: events
                .iter()
                .map(|e| e["source"]["log_id"].as_str().unwrap_or("").to_string())
                .collect(),
            headers: headers.clone(),
            options,
        });
    };
    if path == "/health" && script.lock().unwrap().health_down {
        log(503, &[], None);
        return (503, r#"{"error":"down"}"#.into());
    }
    if path == "/health" {
        log(200, &[], None);
        return (
            200,
            r#"{"status":"healthy","version":"test","ontology_loaded":false}"#.into(),
        );
    }
    if path != "/api/v1/events/batch" {
        log(404, &[], None);
        return (404, "{}".into());
    }
    if !headers
        .get("content-type")
        .is_some_and(|c| c.starts_with("application/json"))
    {
        log(415, &[], None);
        return (415, "unsupported media type".into());
    }
    let parsed: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(_) => {
            log(400, &[], None);
            return (400, "malformed json".into());
        }
    };
    let events: Vec<Value> = parsed["events"].as_array().cloned().unwrap_or_default();
    let options = parsed.get("options").cloned();
    let delay = {
        let mut sc = script.lock().unwrap();
        sc.batches_arrived += 1;
        let per_event = sc.delay_per_event * events.len() as u32;
        sc.delays.pop_front().unwrap_or(sc.delay) + per_event
    };
    if !delay.is_zero() {
        std::thread::sleep(delay);
    }
    let mut sc = script.lock().unwrap();
    if let Some(status) = sc.statuses.pop_front() {
        drop(sc);
        log(status, &events, options);
        return (
            status,
            r#"{"error":"Scripted","message":"scripted failure"}"#.into(),
        );
    }
    if sc.down_until.is_some_and(|t| Instant::now() < t) {
        drop(sc);
        log(503, &events, options);
        return (
            503,
            r#"{"error":"DatabaseNotAvailable","message":"down"}"#.into(),
        );
    }
    if sc.max_events.is_some_and(|m| events.len() > m) {
        drop(sc);
        log(413, &events, options);
        return (413, "payload too large".into());
    }
    if let Some(marker) = &sc.poison_marker
        && events
            .iter()
            .any(|e| message_of(e).contains(marker.as_str()))
    {
        drop(sc);
        log(422, &events, options);
        return (422, "missing field".into());
    }
    let flaky = sc.flaky_marker.clone();
    drop(sc);
    for e in &events {
        let ok = e["timestamp"].is_string() && e["properties"].is_object();
        if !ok {
            log(422, &events, options);
            return (422, "missing field".into());
        }
    }
    let mut rec = recorded.lock().unwrap();
    let mut errors = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let id = e["source"]["log_id"].as_str().unwrap_or("").to_string();
        if let Some(m) = &flaky
            && message_of(e).contains(m.as_str())
            && rec.flaky_seen.insert(id)
        {
            errors.push(serde_json::json!({"index": i, "error": "flaky storage"}));
            continue;
        }
        rec.stored.push(e.clone());
    }
    drop(rec);
    log(200, &events, options);
    let ingested = events.len() - errors.len();
    (
        200,
        serde_json::json!({"ingested": ingested, "failed": errors.len(), "trace_ids": [], "errors": errors}).to_string(),
    )
}

// ---------------------------------------------------------------- cwtap

/// The binary under test: Cargo's build of it, or `$CWTAP_BIN` when set (a
/// release build, or a copy kept apart from a target directory that other
/// checkouts also build into).
pub fn cwtap_bin() -> PathBuf {
    std::env::var_os("CWTAP_BIN")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_cwtap")))
}

/// A `cwtap` command with the AWS environment pointed at `moto`.
pub fn cwtap(moto_url: &str) -> Command {
    let mut cmd = Command::new(cwtap_bin());
    cmd.env("AWS_ENDPOINT_URL", moto_url)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("CWTAP_CONFIG")
        .env_remove("CONFIG_PATH")
        .env("RUST_LOG", "info");
    cmd
}

pub fn run_to_end(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cwtap starts");
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "cwtap did not finish within {limit:?}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// (status, body) of a GET; status 0 when nothing answered.
pub fn http_get(url: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    match agent.get(url).call() {
        Ok(mut resp) => {
            let status = resp.status().as_u16();
            let body = resp.body_mut().read_to_string().unwrap_or_default();
            (status, body)
        }
        Err(_) => (0, String::new()),
    }
}

/// The value of one sample (`name{labels}`) in a scrape; `None` if absent.
pub fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

/// A config delivering to `out.ndjson` in `dir` with its state in `dir`:
/// `groups` are `log_groups` entries, `agent` more `agent:` keys (YAML,
/// indented by two).
pub fn ndjson_config(dir: &Path, groups: &str, agent: &str) -> PathBuf {
    write_config(
        dir,
        &format!(
            "ndjson:\n  path: {}\nlog_groups:\n{groups}agent:\n  state_path: {}\n{agent}",
            dir.join("out.ndjson").display(),
            dir.join("state.db").display()
        ),
    )
}

/// `cwtap status --json`, which must succeed.
pub fn status_json(endpoint: &str, config: &Path) -> Vec<Value> {
    let out = run_to_end(
        cwtap(endpoint)
            .args(["status", "--json", "--config"])
            .arg(config),
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "status: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("status --json is JSON")
}

/// Waits until every group of `config` has polled `polls` more times (its
/// `last_poll` in `cwtap status --json` moved on), within `limit` each:
/// visible progress to wait on before asserting that something did not
/// happen. False if a poll did not come.
pub fn newer_polls(endpoint: &str, config: &Path, polls: usize, limit: Duration) -> bool {
    let last = || -> Vec<Value> {
        status_json(endpoint, config)
            .iter()
            .map(|g| g["last_poll"].clone())
            .collect()
    };
    for _ in 0..polls {
        let before = last();
        let moved = wait_until(limit, || {
            let now = last();
            now.len() == before.len() && now.iter().zip(&before).all(|(a, b)| a != b)
        });
        if !moved {
            return false;
        }
    }
    true
}

/// Waits until every group's cursor in `cwtap status --json` is at or past
/// `ts` (ms).
pub fn cursors_past(endpoint: &str, config: &Path, ts: i64, limit: Duration) -> bool {
    wait_until(limit, || {
        let status = status_json(endpoint, config);
        !status.is_empty()
            && status.iter().all(|g| {
                g["cursor"]
                    .as_str()
                    .and_then(|c| humantime::parse_rfc3339(c).ok())
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .is_some_and(|d| d.as_millis() as i64 >= ts)
            })
    })
}

/// `cwtap run --config CONFIG` against `endpoint`, output discarded.
pub fn spawn_run(endpoint: &str, config: &Path) -> Child {
    cwtap(endpoint)
        .args(["run", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cwtap run starts")
}

/// [`spawn_run`], with its log appended to `cwtap.log` beside the config.
pub fn spawn_run_logged(endpoint: &str, config: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(config.with_file_name("cwtap.log"))
        .expect("open cwtap.log");
    cwtap(endpoint)
        .args(["run", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("cwtap run starts")
}

/// Stops a [`spawn_run_logged`] child with SIGTERM and asserts it exited 0
/// within 10 s, showing the end of its log if not.
pub fn stop_logged(mut child: Child, config: &Path) {
    signal(&child, "TERM");
    let exit =
        wait_exit(&mut child, Duration::from_secs(10)).expect("exits within 10 s of SIGTERM");
    let log = std::fs::read_to_string(config.with_file_name("cwtap.log")).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(15).collect();
    assert!(
        exit.success(),
        "exit {exit:?}; last log lines (newest first):\n{}",
        tail.join("\n")
    );
}

/// Writes a config file in `dir` and returns its path.
pub fn write_config(dir: &Path, yaml: &str) -> PathBuf {
    let path = dir.join("config.yaml");
    std::fs::write(&path, yaml).expect("write config");
    path
}

/// Reads an NDJSON output file (missing file: no events). Only whole lines:
/// a test polls the file while cwtap writes to it, and a read can land in
/// the middle of a write, so a last line without its newline is not there
/// yet (one left so at exit shows as the events it lacks).
pub fn read_ndjson(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let whole = text.rfind('\n').map_or("", |end| &text[..end]);
    whole
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("every output line is JSON"))
        .collect()
}

pub fn is_summary(event: &Value) -> bool {
    event["event_type"] == "trace_summary"
}

/// The `trace_summary` events among delivered events.
pub fn summaries(events: &[Value]) -> Vec<Value> {
    events.iter().filter(|e| is_summary(e)).cloned().collect()
}

/// Counts of each CloudWatch eventId among delivered log events (trace
/// summaries left out).
pub fn id_counts(events: &[Value]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for e in events.iter().filter(|e| !is_summary(e)) {
        let id = e["source"]["log_id"]
            .as_str()
            .expect("source.log_id")
            .to_string();
        *counts.entry(id).or_insert(0) += 1;
    }
    counts
}

/// The messages delivered, as a multiset keyed by message.
pub fn message_counts(events: &[Value]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for e in events.iter().filter(|e| !is_summary(e)) {
        *counts.entry(message_of(e)).or_insert(0) += 1;
    }
    counts
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Sends SIGTERM (or another signal) to a child.
pub fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

/// Waits for a child to exit within `limit`, returning its status.
pub fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(s) = child.try_wait().expect("wait") {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

// ---------------------------------------------------------------- fixtures

/// One fixture line (the capture format).
pub fn fixture_event(group: &str, stream: &str, ts: i64, message: &str) -> Value {
    serde_json::json!({
        "log_group": group,
        "log_stream": stream,
        "timestamp": ts,
        "ingestion_time": ts + 500,
        "event_id": format!("{ts:019}{:037}", message.len()),
        "message": message,
    })
}

/// Writes fixture lines to `path`.
pub fn write_fixture(path: &Path, events: &[Value]) {
    let text: String = events.iter().map(|e| format!("{e}\n")).collect();
    std::fs::write(path, text).expect("write fixture");
}

/// Every event stored in `group` as (stream, timestamp, message), all pages,
/// in FilterLogEvents order.
pub async fn stored_events(client: &Client, group: &str) -> Vec<(String, i64, String)> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = client
            .filter_log_events()
            .log_group_name(group)
            .set_next_token(token.clone())
            .send()
            .await
            .expect("FilterLogEvents on moto");
        for e in page.events() {
            out.push((
                e.log_stream_name().unwrap_or_default().to_string(),
                e.timestamp().unwrap_or_default(),
                e.message().unwrap_or_default().to_string(),
            ));
        }
        match page.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => break,
        }
    }
    out
}

/// Runs a command that must succeed within `limit`; returns its stdout.
pub fn run_ok(cmd: &mut Command, limit: Duration) -> String {
    let out = run_to_end(cmd, limit);
    assert!(
        out.status.success(),
        "command failed ({:?}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command within `limit` and returns (exit code, stdout, stderr).
pub fn run_code(cmd: &mut Command, limit: Duration) -> (i32, String, String) {
    let out = run_to_end(cmd, limit);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr(&out),
    )
}
