//! `cwtap query` and `cwtap trace` against moto's server (which runs
//! `fields`, `sort` and `limit`, and completes queries at once), and through
//! the fault proxy for what moto cannot do: a malformed query, a query that
//! never completes (timeout and Ctrl-C both stop it), and an endpoint
//! without Insights (trace falls back to FilterLogEvents).

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::proxy::{Fault, FaultProxy};
use common::*;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(60);

async fn seed(moto: &Moto) -> i64 {
    let client = moto.client().await;
    let base = now_ms() - 20 * 60_000;
    let api: Vec<(i64, String)> = (0..20)
        .map(|i| {
            (
                base + i * 1_000,
                format!("api request {i} trace_id=t-{}", i % 4),
            )
        })
        .collect();
    let worker: Vec<(i64, String)> = (0..20)
        .map(|i| {
            (
                base + i * 1_000 + 500,
                format!(
                    r#"{{"level":"info","trace_id":"t-{}","span_id":"s{i}","msg":"work {i}"}}"#,
                    i % 4
                ),
            )
        })
        .collect();
    put_events(&client, "/q/api", "api-1", &api).await;
    put_events(&client, "/q/worker", "w-1", &worker).await;
    base
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_returns_rows_as_a_table_json_or_ndjson() {
    let moto = Moto::start();
    let base = seed(&moto).await;
    let query = "fields @timestamp, @message, @logStream | sort @timestamp asc | limit 5";
    let out = run_ok(
        cwtap(&moto.url).args([
            "query", query, "--group", "/q/api", "--since", "1h", "--json",
        ]),
        LIMIT,
    );
    let rows: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(rows.len(), 5);
    assert_eq!(rows[0]["@message"], "api request 0 trace_id=t-0");
    assert_eq!(rows[0]["@logStream"], "api-1");
    assert_eq!(rows[0]["@timestamp"], base.to_string());

    // Several groups, --limit, NDJSON.
    let out = run_ok(
        cwtap(&moto.url).args([
            "query",
            "fields @message | sort @timestamp desc",
            "--group",
            "/q/api",
            "--group",
            "/q/worker",
            "--since",
            "1h",
            "--limit",
            "7",
            "--ndjson",
        ]),
        LIMIT,
    );
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!lines.is_empty() && lines.len() <= 40, "{out}");
    assert!(
        lines[0]["@message"].as_str().unwrap().contains("work 19"),
        "{out}"
    );

    let table = run_ok(
        cwtap(&moto.url).args(["query", query, "--group", "/q/api", "--since", "1h"]),
        LIMIT,
    );
    let first = table.lines().next().unwrap();
    assert!(
        first.starts_with("@timestamp") && first.contains("@message"),
        "{table}"
    );
    assert!(
        !first.contains("@ptr"),
        "the opaque pointer is not a column"
    );
    assert_eq!(table.lines().count(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_errors_name_the_group_or_the_flag() {
    let moto = Moto::start();
    seed(&moto).await;
    let (code, _, err) = run_code(
        cwtap(&moto.url).args([
            "query",
            "fields @message",
            "--group",
            "/q/none",
            "--since",
            "1h",
        ]),
        LIMIT,
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("/q/none") && err.contains("us-east-1"),
        "{err}"
    );
    for (flag, value) in [
        ("--limit", "0"),
        ("--limit", "10001"),
        ("--timeout", "soon"),
        ("--timeout", "0"),
    ] {
        let (code, _, err) = run_code(
            cwtap(&moto.url).args([
                "query",
                "fields @message",
                "--group",
                "/q/api",
                "--since",
                "1h",
                flag,
                value,
            ]),
            LIMIT,
        );
        assert_eq!(code, 2, "{flag} {value}: {err}");
        assert!(err.contains(flag), "{err}");
    }
    let (code, _, err) = run_code(
        cwtap(&moto.url).args(["query", " ", "--group", "/q/api", "--since", "1h"]),
        LIMIT,
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("QUERY is empty"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_query_is_shown_with_the_query() {
    let moto = Moto::start();
    seed(&moto).await;
    let proxy = FaultProxy::start(&moto.url, "StartQuery");
    proxy.script().faults.push_back(Fault::MalformedQuery);
    let (code, _, err) = run_code(
        cwtap(&proxy.url).args([
            "query",
            "fields bogus(",
            "--group",
            "/q/api",
            "--since",
            "1h",
        ]),
        LIMIT,
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("malformed"), "{err}");
    assert!(
        err.contains("unexpected symbol found bogus"),
        "CloudWatch's reason: {err}"
    );
    assert!(
        err.contains("query: fields bogus("),
        "the query itself: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_that_does_not_complete_in_time_is_stopped() {
    let moto = Moto::start();
    seed(&moto).await;
    let proxy = FaultProxy::always(&moto.url, "GetQueryResults", Fault::QueryRunning);
    let started = std::time::Instant::now();
    let (code, _, err) = run_code(
        cwtap(&proxy.url).args([
            "query",
            "fields @message",
            "--group",
            "/q/api",
            "--since",
            "1h",
            "--timeout",
            "3s",
        ]),
        LIMIT,
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("did not complete within 3s"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20));
    let polls = proxy.script().injected;
    // Growing intervals: 250 ms, 375 ms, ... about 6 polls in 3 s, not 12.
    assert!((3..=10).contains(&polls), "{polls} polls in 3 s");
    assert!(
        proxy.script().forwarded.iter().any(|op| op == "StopQuery"),
        "StopQuery was called: {:?}",
        proxy.script().forwarded
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_a_query_stops_it() {
    let moto = Moto::start();
    seed(&moto).await;
    let proxy = FaultProxy::always(&moto.url, "GetQueryResults", Fault::QueryRunning);
    let mut child = cwtap(&proxy.url)
        .args([
            "query",
            "fields @message",
            "--group",
            "/q/api",
            "--since",
            "1h",
            "--timeout",
            "5m",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(20), || proxy
        .script()
        .injected
        >= 2));
    signal(&child, "INT");
    let status = wait_exit(&mut child, Duration::from_secs(20)).expect("exits after SIGINT");
    assert_eq!(status.code(), Some(1));
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("interrupted"), "{err}");
    assert!(proxy.script().forwarded.iter().any(|op| op == "StopQuery"));
}

fn trace_json(url: &str, extra: &[&str]) -> (Vec<Value>, String) {
    let out = run_to_end(
        cwtap(url)
            .args([
                "trace",
                "t-1",
                "--group",
                "/q/api",
                "--group",
                "/q/worker",
                "--since",
                "1h",
                "--json",
            ])
            .args(extra),
        LIMIT,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    (serde_json::from_slice(&out.stdout).unwrap(), stderr(&out))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_finds_every_event_of_an_id_across_groups_in_time_order_by_any_method() {
    let moto = Moto::start();
    seed(&moto).await;
    let (insights, err) = trace_json(&moto.url, &[]);
    assert!(err.contains("Logs Insights"), "{err}");
    // i % 4 == 1: 5 api lines and 5 worker lines, interleaved in time.
    assert_eq!(insights.len(), 10, "{insights:?}");
    let groups: Vec<&str> = insights
        .iter()
        .map(|e| e["log_group"].as_str().unwrap())
        .collect();
    assert_eq!(groups, ["/q/api", "/q/worker"].repeat(5));
    let times: Vec<&str> = insights
        .iter()
        .map(|e| e["timestamp"].as_str().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    assert!(
        insights
            .iter()
            .all(|e| e["message"].as_str().unwrap().contains("t-1"))
    );

    let (filtered, err) = trace_json(&moto.url, &["--via", "filter"]);
    assert!(err.contains("FilterLogEvents"), "{err}");
    assert_eq!(filtered, insights, "both methods find the same events");

    // Where Insights is not available, auto falls back to FilterLogEvents.
    let proxy = FaultProxy::always(&moto.url, "StartQuery", Fault::Unsupported);
    let (fallback, err) = trace_json(&proxy.url, &[]);
    assert!(
        err.contains("searching with FilterLogEvents instead"),
        "{err}"
    );
    assert_eq!(fallback, insights);
    let out = run_to_end(
        cwtap(&proxy.url).args([
            "trace", "t-1", "--group", "/q/api", "--since", "1h", "--via", "insights",
        ]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(1), "insights only: no fallback");
    assert!(stderr(&out).contains("not available"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_shows_each_events_parsed_fields_with_the_groups_rules() {
    let moto = Moto::start();
    seed(&moto).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "aws:\n  endpoint_url: {}\nndjson: {{path: '-'}}\nlog_groups:\n  - name: /q/worker\n    agent_id: worker\n    parsers: [{{type: json, field_mapping: {{trace_id: session_id}}}}]\n  - name: /q/api\n",
            moto.url
        ),
    );
    let (events, _) = trace_json(&moto.url, &["--config", config.to_str().unwrap()]);
    let worker = events
        .iter()
        .find(|e| e["log_group"] == "/q/worker")
        .unwrap();
    assert_eq!(worker["fields"]["trace_id"], "t-1");
    assert_eq!(worker["fields"]["session_id"], "t-1");
    assert_eq!(worker["fields"]["agent_id"], "worker");
    assert!(
        worker["fields"]["span_id"]
            .as_str()
            .unwrap()
            .starts_with('s')
    );
    let api = events.iter().find(|e| e["log_group"] == "/q/api").unwrap();
    assert_eq!(api["fields"]["trace_id"], "t-1", "found in the raw line");

    // The text form: time, group, stream, fields, then the message.
    let out = run_ok(
        cwtap(&moto.url)
            .args([
                "trace",
                "t-1",
                "--group",
                "/q/worker",
                "--since",
                "1h",
                "--config",
            ])
            .arg(&config),
        LIMIT,
    );
    let first = out.lines().next().unwrap();
    assert!(
        first.contains("/q/worker  w-1  [") && first.contains("span_id=s1"),
        "{out}"
    );
    assert!(out.lines().nth(1).unwrap().starts_with("    {"), "{out}");
}
