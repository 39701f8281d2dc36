//! Trace grouping end to end, with the shipped rule sets, against moto: a
//! Lambda request that spans a restart is one trace with one summary; a trace
//! crossing log groups is one trace; a long backfill closes its traces as it
//! reads past them, each once.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use serde_json::Value;

fn run_until(moto: &Moto, config: &Path, out: &Path, done: impl Fn(&[Value]) -> bool) -> bool {
    let mut child = cwtap(&moto.url)
        .args(["run", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ok = wait_until(Duration::from_secs(30), || done(&read_ndjson(out)));
    signal(&child, "TERM");
    let exit =
        wait_exit(&mut child, Duration::from_secs(10)).expect("exits within 10 s of SIGTERM");
    assert!(exit.success());
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lambda_request_spanning_a_restart_is_one_trace_with_one_summary() {
    let moto = Moto::start();
    let client = moto.client().await;
    let group = "/aws/lambda/checkout";
    let stream = "2026/11/22/[$LATEST]0123456789abcdef0123456789abcdef";
    let req = "8f5c0a3e-1b2d-4c5e-8f7a-9b0c1d2e3f40";
    let t0 = now_ms() - 20_000;
    put_events(
        &client,
        group,
        stream,
        &[
            (t0, format!("START RequestId: {req} Version: $LATEST")),
            (
                t0 + 5,
                format!("2026-11-22T08:00:00.005Z\t{req}\tINFO\tcharging card"),
            ),
            (t0 + 9, "a bare print() line with no id".to_string()),
            (
                t0 + 12,
                format!("2026-11-22T08:00:00.012Z\t{req}\tERROR\tcard declined"),
            ),
        ],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = ndjson_config(
        dir.path(),
        &format!("  - name: {group}\n    parsers: [{{use: lambda}}]\n"),
        "  poll_interval_secs: 1\n  lookback_secs: 2m\n  trace_idle_secs: 1h\n",
    );
    let out = dir.path().join("out.ndjson");
    assert!(
        run_until(&moto, &cfg, &out, |e| e.len() >= 4),
        "first half not delivered"
    );
    assert!(
        summaries(&read_ndjson(&out)).is_empty(),
        "the trace is still open before the restart"
    );

    // After the restart the request ends.
    put_events(
        &client,
        group,
        stream,
        &[
            (now_ms() - 2_000, format!("END RequestId: {req}")),
            (
                now_ms() - 1_999,
                format!(
                    "REPORT RequestId: {req}\tDuration: 41.20 ms\tBilled Duration: 42 ms\tMemory Size: 512 MB\tMax Memory Used: 90 MB\tInit Duration: 230.50 ms"
                ),
            ),
        ],
    )
    .await;
    assert!(
        run_until(&moto, &cfg, &out, |e| !summaries(e).is_empty()),
        "no summary after the request ended"
    );
    let events = read_ndjson(&out);
    let sums = summaries(&events);
    assert_eq!(sums.len(), 1, "one summary: {sums:?}");
    let s = &sums[0]["properties"];
    assert_eq!(s["trace_key"], format!("r:{req}"));
    assert_eq!(s["event_count"], 6);
    assert_eq!(s["error_count"], 1);
    assert_eq!(s["lambda"][req]["duration_ms"], 41.2);
    assert_eq!(s["lambda"][req]["cold_start"], true);
    let logs: Vec<&Value> = events.iter().filter(|e| !is_summary(e)).collect();
    assert_eq!(logs.len(), 6);
    for e in &logs {
        assert_eq!(
            e["session_id"],
            format!("r:{req}"),
            "every line of the request, the bare print too: {e}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_crossing_log_groups_is_one_trace() {
    let moto = Moto::start();
    let client = moto.client().await;
    let trace = "1-6740a1b2-5f0e9d8c7b6a5f4e3d2c1b0a";
    let t0 = now_ms() - 30 * 60_000;
    put_events(
        &client,
        "/aws/apigateway/shop",
        "gw",
        &[(
            t0,
            format!(
                r#"{{"requestId":"gw-req-1","xrayTraceId":"{trace}","httpMethod":"POST","path":"/checkout","status":"200","responseLatency":"120"}}"#
            ),
        )],
    )
    .await;
    for (i, (group, req)) in [
        ("/aws/lambda/a", "aaaaaaaa-0000-0000-0000-000000000001"),
        ("/aws/lambda/b", "bbbbbbbb-0000-0000-0000-000000000002"),
    ]
    .iter()
    .enumerate()
    {
        let t = t0 + 10 + i as i64 * 20;
        put_events(
            &client,
            group,
            "s",
            &[
                (t, format!("START RequestId: {req} Version: $LATEST")),
                (t + 1, format!(r#"{{"level":"info","trace_id":"{trace}","span_id":"s{i}","message":"working"}}"#)),
                (t + 2, format!("END RequestId: {req}")),
                (t + 3, format!("REPORT RequestId: {req}\tDuration: 5.00 ms\tBilled Duration: 5 ms\tMemory Size: 128 MB\tMax Memory Used: 60 MB")),
            ],
        )
        .await;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = ndjson_config(
        dir.path(),
        "  - prefix: /aws/lambda/\n    parsers: [{use: lambda}, {use: json}, {use: xray}]\n  - prefix: /aws/apigateway/\n    parsers: [{use: apigateway}]\n",
        "  trace_idle_secs: 5m\n",
    );
    let out = run_to_end(
        cwtap(&moto.url)
            .args(["backfill", "--since", "1h", "--config"])
            .arg(&cfg),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let events = read_ndjson(&dir.path().join("out.ndjson"));
    let sums = summaries(&events);
    assert_eq!(
        sums.len(),
        1,
        "one trace across the three groups: {sums:#?}"
    );
    let s = &sums[0]["properties"];
    assert_eq!(s["event_count"], 9);
    assert_eq!(s["log_groups"].as_array().unwrap().len(), 3);
    assert_eq!(s["lambda"].as_object().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_backfill_closes_traces_as_it_reads_past_them_each_once() {
    // 3,000 two-event traces over 100 minutes, more than one closing round
    // (2,000 traces) holds: the backfill closes and summarises them while it
    // reads, a batch at a time, and none too early (a trace closed before
    // its second event was read would reopen and be summarised twice).
    let moto = Moto::start();
    let client = moto.client().await;
    let group = "/app/orders";
    let t0 = now_ms() - 110 * 60_000;
    let events: Vec<(i64, String)> = (0..6_000)
        .map(|i| {
            (
                t0 + i * 1_000,
                format!(
                    r#"{{"level":"info","request_id":"req-{}","message":"step {i}"}}"#,
                    i / 2
                ),
            )
        })
        .collect();
    put_events(&client, group, "s", &events).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = ndjson_config(
        dir.path(),
        &format!("  - name: {group}\n    parsers: [{{use: json}}]\n"),
        "  trace_idle_secs: 60\n",
    );
    std::fs::write(
        &cfg,
        std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("ndjson:\n", "ndjson:\n  batch_size: 100\n"),
    )
    .unwrap();
    let out = run_to_end(
        cwtap(&moto.url)
            .args(["backfill", "--since", "2h", "--config"])
            .arg(&cfg),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let delivered = read_ndjson(&dir.path().join("out.ndjson"));
    let ids = id_counts(&delivered);
    assert_eq!(ids.len(), 6_000, "every event delivered");
    assert!(ids.values().all(|&n| n == 1), "no event twice");
    let sums = summaries(&delivered);
    let mut keys: HashMap<String, usize> = HashMap::new();
    for s in &sums {
        assert_eq!(s["properties"]["event_count"], 2, "{s}");
        assert_eq!(s["properties"]["revision"], 1, "closed once: {s}");
        *keys
            .entry(s["properties"]["trace_key"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(keys.len(), 3_000, "one summary per trace");
    assert!(keys.values().all(|&n| n == 1), "no trace summarised twice");
    let first_summary = delivered.iter().position(is_summary).unwrap();
    let last_event = delivered.iter().rposition(|e| !is_summary(e)).unwrap();
    assert!(
        first_summary < last_event,
        "traces were closed while the backfill read, not all at its end"
    );
}
