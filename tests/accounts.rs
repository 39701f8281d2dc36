//! Many accounts and Regions in one agent, against moto (which keeps accounts
//! apart by assumed role, and Regions apart by Region), and the operator's
//! rails: `check --online`, one agent per state file, SIGHUP, migration of a
//! state file of the previous release.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::proxy::{Fault, FaultProxy};
use common::*;
use serde_json::{Value, json};

const OTHER_ROLE: &str = "arn:aws:iam::111111111111:role/cwtap-reader";

fn venv_python() -> PathBuf {
    std::env::var_os("CWTAP_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv"))
        .join("bin/python")
}

/// Events to put: (group, stream, [(timestamp, message)]).
type Put<'a> = (&'a str, &'a str, Vec<(i64, String)>);

/// Puts events with boto3, as `role` (assumed; `None`: the default account)
/// in `region`.
fn seed(moto: &str, role: Option<&str>, region: &str, puts: &[Put<'_>]) {
    let spec = json!({"endpoint": moto, "role": role, "region": region, "puts": puts
        .iter()
        .map(|(g, s, e)| json!({"group": g, "stream": s, "events": e}))
        .collect::<Vec<_>>()});
    let script = r#"
import boto3, json, sys
spec = json.loads(sys.argv[1])
kw = dict(endpoint_url=spec["endpoint"], region_name=spec["region"],
          aws_access_key_id="testing", aws_secret_access_key="testing")
if spec["role"]:
    c = boto3.client("sts", **kw).assume_role(RoleArn=spec["role"], RoleSessionName="seed")["Credentials"]
    kw.update(aws_access_key_id=c["AccessKeyId"], aws_secret_access_key=c["SecretAccessKey"],
              aws_session_token=c["SessionToken"])
logs = boto3.client("logs", **kw)
for p in spec["puts"]:
    try: logs.create_log_group(logGroupName=p["group"])
    except logs.exceptions.ResourceAlreadyExistsException: pass
    try: logs.create_log_stream(logGroupName=p["group"], logStreamName=p["stream"])
    except logs.exceptions.ResourceAlreadyExistsException: pass
    events = sorted(({"timestamp": t, "message": m} for t, m in p["events"]), key=lambda e: e["timestamp"])
    if events:
        logs.put_log_events(logGroupName=p["group"], logStreamName=p["stream"], logEvents=events)
"#;
    let out = Command::new(venv_python())
        .args(["-c", script, &spec.to_string()])
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "seed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn events(tag: &str, n: usize) -> Vec<(i64, String)> {
    let t0 = now_ms() - 60_000;
    (0..n)
        .map(|i| (t0 + i as i64 * 10, format!("{tag} event {i}")))
        .collect()
}

/// Most calls seen in any second.
fn busiest_second(calls: &[Instant]) -> usize {
    let mut most = 0;
    for (i, a) in calls.iter().enumerate() {
        let n = calls[i..]
            .iter()
            .take_while(|b| b.duration_since(*a) < Duration::from_secs(1))
            .count();
        most = most.max(n);
    }
    most
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_group_in_two_accounts_and_two_regions_is_read_once_each_within_each_budget() {
    let moto = Moto::start();
    let group = "/aws/lambda/api";
    seed(
        &moto.url,
        None,
        "us-east-1",
        &[(group, "s", events("main", 40))],
    );
    seed(
        &moto.url,
        Some(OTHER_ROLE),
        "us-east-1",
        &[(group, "s", events("other", 30))],
    );
    seed(
        &moto.url,
        None,
        "eu-west-1",
        &[(group, "s", events("eu", 20))],
    );
    // Each account-Region behind its own proxy: its calls are counted apart.
    let proxies: Vec<FaultProxy> = (0..3)
        .map(|_| FaultProxy::start(&moto.url, "FilterLogEvents"))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "ndjson: {{path: {out}}}
aws: {{region: us-east-1}}
accounts:
  - {{name: main, account_id: '123456789012', endpoint_url: '{p0}', rate_limits: {{filter_log_events: 2}}}}
  - {{name: other, role_arn: '{OTHER_ROLE}', endpoint_url: '{p1}', rate_limits: {{filter_log_events: 3}}}}
  - {{name: main-eu, account_id: '123456789012', region: eu-west-1, endpoint_url: '{p2}', rate_limits: {{filter_log_events: 4}}}}
log_groups:
  - {{name: {group}, account: main}}
  - {{name: {group}, account: other}}
  - {{name: 'arn:aws:logs:eu-west-1:123456789012:log-group:{group}'}}
agent: {{state_path: {state}, poll_interval_secs: 1, lookback_secs: 5m, listen: 'off'}}
",
            out = dir.path().join("out.ndjson").display(),
            state = dir.path().join("state.db").display(),
            p0 = proxies[0].url,
            p1 = proxies[1].url,
            p2 = proxies[2].url,
        ),
    );
    let mut run = spawn_run_logged(&moto.url, &cfg);
    let out = dir.path().join("out.ndjson");
    let got = wait_until(Duration::from_secs(60), || {
        read_ndjson(&out).iter().filter(|e| !is_summary(e)).count() >= 90
    });
    // Let every group poll a few more times: nothing may come twice.
    let polls_before: usize = proxies.iter().map(|p| p.script().calls_at.len()).sum();
    assert!(
        wait_until(Duration::from_secs(30), || proxies
            .iter()
            .map(|p| p.script().calls_at.len())
            .sum::<usize>()
            >= polls_before + 6),
        "more polls"
    );
    signal(&run, "TERM");
    assert!(
        wait_exit(&mut run, Duration::from_secs(10)).is_some_and(|s| s.success()),
        "{}",
        std::fs::read_to_string(dir.path().join("cwtap.log")).unwrap_or_default()
    );
    assert!(got, "every account's events arrived");
    let delivered: Vec<Value> = read_ndjson(&out)
        .into_iter()
        .filter(|e| !is_summary(e))
        .collect();
    assert_eq!(delivered.len(), 90, "each event once");
    let mut by_account: HashMap<String, usize> = HashMap::new();
    for e in &delivered {
        let s = &e["source"];
        assert_eq!(s["log_group"], group);
        let message = e["properties"]["message"].as_str().unwrap();
        let (account, account_id, region) = match message.split(' ').next().unwrap() {
            "main" => ("main", "123456789012", "us-east-1"),
            "other" => ("other", "111111111111", "us-east-1"),
            "eu" => ("main-eu", "123456789012", "eu-west-1"),
            m => panic!("unexpected {m}"),
        };
        assert_eq!(s["account"], account, "{e}");
        assert_eq!(s["account_id"], account_id, "{e}");
        assert_eq!(s["region"], region, "{e}");
        *by_account.entry(account.to_string()).or_default() += 1;
    }
    assert_eq!(by_account["main"], 40);
    assert_eq!(by_account["other"], 30);
    assert_eq!(by_account["main-eu"], 20);
    // Each account-Region's FilterLogEvents calls kept to its own budget.
    for (proxy, rate) in proxies.iter().zip([2usize, 3, 4]) {
        let calls = proxy.script().calls_at.clone();
        assert!(!calls.is_empty());
        assert!(
            busiest_second(&calls) <= rate + 1,
            "{} calls in one second against a budget of {rate}/s",
            busiest_second(&calls)
        );
    }
    // The state file keeps three checkpoints for the one group name.
    let status = status_json(&moto.url, &cfg);
    let accounts: Vec<&str> = status
        .iter()
        .map(|g| g["account"].as_str().unwrap())
        .collect();
    assert_eq!(accounts, vec!["main", "main-eu", "other"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_that_cannot_be_assumed_and_a_missing_permission_are_named_and_the_others_go_on() {
    let moto = Moto::start();
    seed(
        &moto.url,
        None,
        "us-east-1",
        &[("/ok/app", "s", events("ok", 5))],
    );
    seed(
        &moto.url,
        None,
        "us-east-1",
        &[("/denied/app", "s", events("denied", 5))],
    );
    // STS behind this proxy answers every AssumeRole with an error.
    let no_sts = FaultProxy::always(&moto.url, "", Fault::AccessDenied);
    // FilterLogEvents behind this one is denied.
    let no_filter = FaultProxy::always(&moto.url, "FilterLogEvents", Fault::AccessDenied);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "ndjson: {{path: {out}}}
accounts:
  - {{name: ok, region: us-east-1}}
  - {{name: locked, region: us-east-1, role_arn: 'arn:aws:iam::222222222222:role/nope', endpoint_url: '{sts}'}}
  - {{name: readonly, region: us-east-1, endpoint_url: '{filter}'}}
log_groups:
  - {{name: /ok/app, account: ok}}
  - {{name: /ok/app, account: locked}}
  - {{name: /denied/app, account: readonly}}
  - {{name: /not/there, account: ok}}
agent: {{state_path: {state}, poll_interval_secs: 1, lookback_secs: 5m, listen: 'off'}}
",
            out = dir.path().join("out.ndjson").display(),
            state = dir.path().join("state.db").display(),
            sts = no_sts.url,
            filter = no_filter.url,
        ),
    );
    // Offline, `check` shows each account and which account reads a group.
    let offline = run_ok(
        cwtap(&moto.url).args(["check", "--config"]).arg(&cfg),
        Duration::from_secs(30),
    );
    assert!(
        offline.contains("account locked: region us-east-1")
            && offline.contains("role arn:aws:iam::222222222222:role/nope"),
        "{offline}"
    );
    assert!(offline.contains("/ok/app (account locked)"), "{offline}");
    let (code, stdout, stderr) = run_code(
        cwtap(&moto.url)
            .args(["check", "--online", "--config"])
            .arg(&cfg),
        Duration::from_secs(60),
    );
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("account locked") && stderr.contains("arn:aws:iam::222222222222:role/nope"),
        "names the role: {stderr}"
    );
    assert!(
        stderr.contains("logs:FilterLogEvents"),
        "names the IAM action: {stderr}"
    );
    assert!(
        stderr.contains("/not/there") && stderr.contains("us-east-1"),
        "names the missing group and its Region: {stderr}"
    );
    assert!(
        stdout.contains("account ok (us-east-1): credentials ok"),
        "{stdout}"
    );
    assert!(stdout.contains("each group every ~"), "{stdout}");
    assert!(
        !dir.path().join("out.ndjson").exists() && !dir.path().join("state.db").exists(),
        "check leaves no output or state file behind"
    );

    // `run`: the usable account goes on; the role is named in the log.
    let mut run = spawn_run_logged(&moto.url, &cfg);
    let out = dir.path().join("out.ndjson");
    assert!(
        wait_until(Duration::from_secs(30), || read_ndjson(&out).len() >= 5),
        "the ok account's events arrive"
    );
    signal(&run, "TERM");
    assert!(wait_exit(&mut run, Duration::from_secs(10)).is_some_and(|s| s.success()));
    let log = std::fs::read_to_string(dir.path().join("cwtap.log")).unwrap();
    assert!(
        log.contains("arn:aws:iam::222222222222:role/nope"),
        "the log names the role: {log}"
    );
    assert!(log.contains("logs:FilterLogEvents"), "{log}");
    let messages: Vec<String> = read_ndjson(&out)
        .iter()
        .map(|e| {
            e["properties"]["message"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(messages.iter().filter(|m| m.starts_with("ok ")).count(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_whose_calls_are_throttled_does_not_hold_up_another_accounts_pages() {
    // One page slot per account: the throttled account's readers wait with
    // theirs, retrying; the other account's groups have their own.
    let moto = Moto::start();
    let puts: Vec<(String, Vec<(i64, String)>)> = ["a", "b", "c", "d"]
        .iter()
        .map(|g| (format!("/iso/{g}"), events(g, 40)))
        .collect();
    let puts: Vec<Put<'_>> = puts
        .iter()
        .map(|(g, e)| (g.as_str(), "s", e.clone()))
        .collect();
    seed(&moto.url, None, "us-east-1", &puts);
    let throttled = FaultProxy::always(&moto.url, "FilterLogEvents", Fault::Throttle);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "ndjson: {{path: {out}}}
accounts:
  - {{name: throttled, region: us-east-1, endpoint_url: '{proxy}'}}
  - {{name: fine, region: us-east-1}}
log_groups:
  - {{name: /iso/a, account: throttled}}
  - {{name: /iso/b, account: throttled}}
  - {{name: /iso/c, account: fine}}
  - {{name: /iso/d, account: fine}}
agent: {{state_path: {state}, poll_interval_secs: 1, lookback_secs: 5m, max_pages_per_account: 1, listen: 'off'}}
",
            out = dir.path().join("out.ndjson").display(),
            state = dir.path().join("state.db").display(),
            proxy = throttled.url,
        ),
    );
    let mut run = spawn_run_logged(&moto.url, &cfg);
    let out = dir.path().join("out.ndjson");
    let arrived = wait_until(Duration::from_secs(40), || read_ndjson(&out).len() >= 80);
    let throttled_calls = throttled.script().calls_at.len();
    signal(&run, "TERM");
    assert!(wait_exit(&mut run, Duration::from_secs(10)).is_some_and(|s| s.success()));
    let events = read_ndjson(&out);
    let groups: Vec<&str> = events
        .iter()
        .filter_map(|e| e["source"]["log_group"].as_str())
        .collect();
    assert!(
        arrived,
        "the fine account's 80 events arrive: {} of them",
        events.len()
    );
    assert_eq!(groups.len(), 80, "only the fine account's events");
    assert!(groups.iter().all(|g| *g == "/iso/c" || *g == "/iso/d"));
    assert!(
        throttled_calls > 0,
        "the throttled account kept calling meanwhile"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_agent_on_the_same_state_file_exits_2_naming_the_holder_then_starts_once_it_is_free()
 {
    let moto = Moto::start();
    seed(
        &moto.url,
        None,
        "us-east-1",
        &[("/lock/app", "s", events("x", 3))],
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = ndjson_config(
        dir.path(),
        "  - name: /lock/app\n",
        "  poll_interval_secs: 1\n  lookback_secs: 5m\n  listen: 'off'\n",
    );
    let mut first = spawn_run_logged(&moto.url, &cfg);
    let out = dir.path().join("out.ndjson");
    assert!(wait_until(Duration::from_secs(30), || read_ndjson(&out)
        .len()
        >= 3));
    let state = dir.path().join("state.db");
    // The second one points at nowhere: any AWS call would fail loudly.
    for command in [vec!["run"], vec!["backfill", "--since", "1h"]] {
        let started = Instant::now();
        let (code, _, stderr) = run_code(
            cwtap("http://127.0.0.1:9")
                .args(&command)
                .arg("--config")
                .arg(&cfg),
            Duration::from_secs(20),
        );
        assert_eq!(code, 2, "{command:?}: {stderr}");
        assert!(started.elapsed() < Duration::from_secs(5), "at once");
        assert!(stderr.contains(&state.display().to_string()), "{stderr}");
        assert!(
            stderr.contains(&format!("pid {}", first.id())),
            "names the holder: {stderr}"
        );
    }
    signal(&first, "TERM");
    assert!(wait_exit(&mut first, Duration::from_secs(10)).is_some_and(|s| s.success()));
    // Free now: a second agent starts and resumes without sending anything again.
    let mut second = spawn_run_logged(&moto.url, &cfg);
    let before = status_json(&moto.url, &cfg)[0]["last_poll"].clone();
    assert!(
        wait_until(Duration::from_secs(30), || status_json(&moto.url, &cfg)[0]
            ["last_poll"]
            != before),
        "the second agent polls"
    );
    signal(&second, "TERM");
    assert!(wait_exit(&mut second, Duration::from_secs(10)).is_some_and(|s| s.success()));
    assert_eq!(id_counts(&read_ndjson(&out)).values().sum::<usize>(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_adds_a_group_without_resending_and_a_broken_config_keeps_the_running_one() {
    let moto = Moto::start();
    seed(
        &moto.url,
        None,
        "us-east-1",
        &[("/hup/a", "s", events("a", 10))],
    );
    seed(
        &moto.url,
        None,
        "us-east-1",
        &[("/hup/b", "s", events("b", 7))],
    );
    let dir = tempfile::tempdir().unwrap();
    let agent = "  poll_interval_secs: 1\n  lookback_secs: 5m\n  listen: 'off'\n";
    let cfg = ndjson_config(dir.path(), "  - name: /hup/a\n", agent);
    let mut run = spawn_run_logged(&moto.url, &cfg);
    let out = dir.path().join("out.ndjson");
    let count = |prefix: &str| {
        read_ndjson(&out)
            .iter()
            .filter(|e| {
                e["properties"]["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(prefix))
            })
            .count()
    };
    assert!(wait_until(Duration::from_secs(30), || count("a ") == 10));
    assert_eq!(count("b "), 0);

    // Add /hup/b and reload.
    ndjson_config(dir.path(), "  - name: /hup/a\n  - name: /hup/b\n", agent);
    signal(&run, "HUP");
    assert!(
        wait_until(Duration::from_secs(30), || count("b ") == 7),
        "the added group is polled"
    );

    // A broken config: refused, the running one stays.
    std::fs::write(&cfg, "ndjson: {path: [unclosed\n").unwrap();
    signal(&run, "HUP");
    let log = dir.path().join("cwtap.log");
    assert!(
        wait_until(Duration::from_secs(20), || std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("the new config does not load")),
        "the refusal is logged"
    );
    seed(
        &moto.url,
        None,
        "us-east-1",
        &[(
            "/hup/a",
            "s",
            vec![(now_ms() - 1_000, "a after the broken reload".into())],
        )],
    );
    assert!(
        wait_until(Duration::from_secs(30), || count("a after") == 1),
        "still polling with the old config"
    );
    signal(&run, "TERM");
    assert!(wait_exit(&mut run, Duration::from_secs(10)).is_some_and(|s| s.success()));
    let ids = id_counts(&read_ndjson(&out));
    assert_eq!(ids.len(), 18);
    assert!(ids.values().all(|&n| n == 1), "nothing sent twice");
}

/// The schema of the previous release (migrations 1 to 3, as shipped).
const RELEASED_SCHEMA: &str = "
    CREATE TABLE groups (log_group TEXT PRIMARY KEY, covered_from_ms INTEGER NOT NULL,
        cursor_ms INTEGER NOT NULL, events_delivered INTEGER NOT NULL DEFAULT 0,
        events_rejected INTEGER NOT NULL DEFAULT 0, late_events INTEGER NOT NULL DEFAULT 0,
        observed_delay_ms INTEGER NOT NULL DEFAULT 0, last_poll_ms INTEGER, last_error TEXT,
        last_error_ms INTEGER, updated_ms INTEGER NOT NULL, poll_interval_ms INTEGER);
    CREATE TABLE delivered (log_group TEXT NOT NULL, event_id TEXT NOT NULL,
        timestamp_ms INTEGER NOT NULL, PRIMARY KEY (log_group, event_id)) WITHOUT ROWID;
    CREATE INDEX delivered_by_time ON delivered (log_group, timestamp_ms);
    CREATE TABLE traces (trace_key TEXT PRIMARY KEY, first_ts INTEGER NOT NULL,
        last_ts INTEGER NOT NULL, event_count INTEGER NOT NULL DEFAULT 0,
        error_count INTEGER NOT NULL DEFAULT 0, services TEXT NOT NULL DEFAULT '[]',
        log_groups TEXT NOT NULL DEFAULT '[]', root_span TEXT,
        open_requests TEXT NOT NULL DEFAULT '[]', lambda TEXT NOT NULL DEFAULT '{}',
        last_seen_ms INTEGER NOT NULL, closed INTEGER NOT NULL DEFAULT 0,
        revision INTEGER NOT NULL DEFAULT 0, summary_sent INTEGER NOT NULL DEFAULT 0);
    CREATE INDEX traces_open ON traces (closed, last_seen_ms);
    CREATE TABLE trace_aliases (alias TEXT PRIMARY KEY, trace_key TEXT NOT NULL) WITHOUT ROWID;
    CREATE INDEX trace_aliases_by_trace ON trace_aliases (trace_key);
    CREATE TABLE trace_spans (trace_key TEXT NOT NULL, span_id TEXT NOT NULL,
        parent_span_id TEXT, service TEXT, first_ts INTEGER NOT NULL,
        PRIMARY KEY (trace_key, span_id)) WITHOUT ROWID;
    CREATE TABLE lambda_brackets (log_group TEXT NOT NULL, log_stream TEXT NOT NULL,
        request_id TEXT NOT NULL, PRIMARY KEY (log_group, log_stream)) WITHOUT ROWID;
    PRAGMA user_version = 3;";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_file_of_the_previous_release_is_migrated_and_resumes_where_it_was() {
    let moto = Moto::start();
    let client = moto.client().await;
    let group = "/migrate/app";
    let now = now_ms();
    let cursor = now - 30_000;
    // Before the cursor: delivered by the old agent (their ids are in the
    // file); after it: new.
    let old: Vec<(i64, String)> = (0..5)
        .map(|i| (cursor - 5_000 + i * 100, format!("old {i}")))
        .collect();
    let new: Vec<(i64, String)> = (0..4)
        .map(|i| (cursor + 1_000 + i * 100, format!("new {i}")))
        .collect();
    put_events(&client, group, "s", &old).await;
    put_events(&client, group, "s", &new).await;
    let ids = stored_ids(&client, group).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.db");
    {
        let conn = rusqlite::Connection::open(&state).unwrap();
        conn.execute_batch(RELEASED_SCHEMA).unwrap();
        conn.execute(
            "INSERT INTO groups (log_group, covered_from_ms, cursor_ms, events_delivered, updated_ms)
             VALUES (?1, ?2, ?3, 5, ?4)",
            rusqlite::params![group, now - 600_000, cursor, now],
        )
        .unwrap();
        for (id, ts) in ids.iter().filter(|(_, ts)| *ts < cursor) {
            conn.execute(
                "INSERT INTO delivered VALUES (?1, ?2, ?3)",
                rusqlite::params![group, id, ts],
            )
            .unwrap();
        }
    }
    let cfg = ndjson_config(
        dir.path(),
        &format!("  - name: {group}\n"),
        "  poll_interval_secs: 1\n  listen: 'off'\n",
    );
    let mut run = spawn_run_logged(&moto.url, &cfg);
    let out = dir.path().join("out.ndjson");
    assert!(wait_until(Duration::from_secs(30), || read_ndjson(&out)
        .len()
        >= 4));
    let polled = status_json(&moto.url, &cfg)[0]["last_poll"].clone();
    assert!(wait_until(Duration::from_secs(20), || status_json(
        &moto.url, &cfg
    )[0]["last_poll"]
        != polled));
    signal(&run, "TERM");
    assert!(wait_exit(&mut run, Duration::from_secs(10)).is_some_and(|s| s.success()));
    let messages: Vec<String> = read_ndjson(&out)
        .iter()
        .map(|e| e["properties"]["message"].as_str().unwrap().to_string())
        .collect();
    let mut sorted = messages.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        vec!["new 0", "new 1", "new 2", "new 3"],
        "nothing lost, nothing twice"
    );
    let status = &status_json(&moto.url, &cfg)[0];
    assert_eq!(status["account"], "default");
    assert_eq!(status["events_delivered"], 9, "the old counts carried over");
}

/// (eventId, timestamp) of every event of `group`.
async fn stored_ids(client: &aws_sdk_cloudwatchlogs::Client, group: &str) -> Vec<(String, i64)> {
    let out = client
        .filter_log_events()
        .log_group_name(group)
        .send()
        .await
        .unwrap();
    out.events()
        .iter()
        .map(|e| (e.event_id().unwrap().to_string(), e.timestamp().unwrap()))
        .collect()
}
