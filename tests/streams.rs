//! Reading groups stream by stream (`mode: streams`: DescribeLogStreams, then
//! GetLogEvents) against moto's server: pagination, many events on one
//! millisecond, identical messages, late events, stream selection, and a
//! streams group beside a filter group. The guarantees are those of
//! FilterLogEvents mode: every event exactly once.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use common::proxy::{Fault, FaultProxy};
use common::*;
use serde_json::Value;

fn group_status<'a>(status: &'a [Value], group: &str) -> &'a Value {
    status
        .iter()
        .find(|g| g["log_group"] == group)
        .unwrap_or_else(|| panic!("no status row for {group}: {status:?}"))
}

fn backfill(url: &str, config: &Path, extra: &[&str]) -> std::process::Output {
    let out = run_to_end(
        cwtap(url)
            .args(["backfill", "--since", "1h", "--no-progress", "--config"])
            .arg(config)
            .args(extra),
        Duration::from_secs(180),
    );
    assert!(out.status.success(), "backfill failed: {}", stderr(&out));
    out
}

fn assert_exactly_once(events: &[Value], expected: usize) {
    let ids = id_counts(events);
    let dups: Vec<_> = ids.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        dups.is_empty(),
        "{} event ids delivered more than once, e.g. {:?}",
        dups.len(),
        dups.first()
    );
    assert_eq!(ids.len(), expected, "distinct events delivered");
    assert_eq!(events.len(), expected, "events delivered");
}

/// Events per (group, stream).
fn per_stream(events: &[Value]) -> HashMap<(String, String), usize> {
    let mut counts = HashMap::new();
    for e in events {
        let key = (
            e["source"]["log_group"].as_str().unwrap_or("").to_string(),
            e["source"]["log_stream"].as_str().unwrap_or("").to_string(),
        );
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

fn counts_of(pairs: &[(&str, &str, usize)]) -> HashMap<(String, String), usize> {
    pairs
        .iter()
        .map(|(g, s, n)| ((g.to_string(), s.to_string()), *n))
        .collect()
}

/// The stream names of the GetLogEvents calls the proxy forwarded, and
/// whether each carried a token.
fn get_log_events_calls(proxy: &FaultProxy) -> Vec<(String, bool)> {
    proxy
        .script()
        .bodies
        .iter()
        .map(|b| {
            let v: Value = serde_json::from_str(b).expect("GetLogEvents body is JSON");
            (
                v["logStreamName"].as_str().unwrap_or("").to_string(),
                v.get("nextToken").is_some_and(|t| !t.is_null()),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_of_every_stream_is_delivered_once_including_identical_ones_on_one_millisecond()
{
    let moto = Moto::start();
    let client = moto.client().await;
    let group = "/app/busy";
    let base = now_ms() - 20 * 60_000;
    // More than one GetLogEvents page (moto, like CloudWatch, returns at
    // most 10,000 events per call).
    let big: Vec<(i64, String)> = (0..12_000)
        .map(|i| (base + i as i64 * 50, format!("big {i}")))
        .collect();
    // 200 events on one millisecond, each message four times: told apart
    // by their occurrence, not by their content.
    let same_ms = base + 7 * 60_000 + 25;
    let crowd: Vec<(i64, String)> = (0..200)
        .map(|i| (same_ms, format!("dup {}", i % 50)))
        .collect();
    let small: Vec<(i64, String)> = (0..50)
        .map(|i| (base + i * 1_000, format!("small {i}")))
        .collect();
    put_events(&client, group, "big", &big).await;
    put_events(&client, group, "crowd", &crowd).await;
    put_events(&client, group, "small", &small).await;
    put_events(&client, group, "empty", &[]).await;

    // Through a proxy that counts the calls and throttles two of them.
    let proxy = FaultProxy::start(&moto.url, "GetLogEvents");
    proxy
        .script()
        .faults
        .extend([Fault::Throttle, Fault::Unavailable]);
    let dir = tempfile::tempdir().unwrap();
    let config = ndjson_config(
        dir.path(),
        &format!("  - name: {group}\n    mode: streams\n"),
        "  late_arrival_secs: 30m\n",
    );
    let out_path = dir.path().join("out.ndjson");
    backfill(&proxy.url, &config, &[]);
    let events = read_ndjson(&out_path);
    assert_exactly_once(&events, 12_250);
    let messages = message_counts(&events);
    for (_, m) in big.iter().chain(&small) {
        assert_eq!(messages.get(m), Some(&1), "{m}");
    }
    for k in 0..50 {
        assert_eq!(messages.get(&format!("dup {k}")), Some(&4), "dup {k}");
    }
    assert_eq!(messages.len(), 12_000 + 50 + 50);
    assert_eq!(
        per_stream(&events),
        counts_of(&[
            (group, "big", 12_000),
            (group, "crowd", 200),
            (group, "small", 50)
        ])
    );
    for e in &events {
        let id = e["source"]["log_id"].as_str().unwrap();
        assert!(id.starts_with("stream:"), "synthetic id: {id}");
    }
    let crowd_ts = cwtap::time::format_ms(same_ms);
    assert_eq!(
        events.iter().filter(|e| e["timestamp"] == crowd_ts).count(),
        200
    );

    // One window: one DescribeLogStreams page; GetLogEvents until the token
    // comes back unchanged: big 3 calls (10,000 + 2,000 + end), the others 2
    // (events or none, then the end). The two injected faults were retried.
    {
        let script = proxy.script();
        assert_eq!(script.injected, 2);
        let ops = |name: &str| script.forwarded.iter().filter(|o| *o == name).count();
        assert_eq!(ops("DescribeLogStreams"), 1);
        assert_eq!(ops("GetLogEvents"), 9);
        assert_eq!(ops("FilterLogEvents"), 0);
    }
    let calls = get_log_events_calls(&proxy);
    let of = |stream: &str| -> Vec<bool> {
        calls
            .iter()
            .filter(|(s, _)| s == stream)
            .map(|(_, t)| *t)
            .collect()
    };
    assert_eq!(of("big"), vec![false, true, true]);
    assert_eq!(of("crowd"), vec![false, true]);
    assert_eq!(of("small"), vec![false, true]);
    assert_eq!(of("empty"), vec![false, true]);

    // The same backfill again re-reads the late-arrival window and delivers
    // nothing twice.
    backfill(&moto.url, &config, &[]);
    assert_exactly_once(&read_ndjson(&out_path), 12_250);

    // Late: events put now with timestamps well behind the cursor, into an
    // existing stream, a new stream, and one more copy of a message already
    // on the crowded millisecond (a later ingestion time: another event).
    let late_ts = now_ms() - 10 * 60_000;
    let late: Vec<(i64, String)> = (0..20)
        .map(|i| (late_ts + i, format!("late small {i}")))
        .collect();
    put_events(&client, group, "small", &late).await;
    let fresh: Vec<(i64, String)> = (0..15)
        .map(|i| (late_ts + i, format!("late new {i}")))
        .collect();
    put_events(&client, group, "new-stream", &fresh).await;
    put_events(&client, group, "crowd", &[(same_ms, "dup 7".to_string())]).await;
    backfill(&moto.url, &config, &[]);
    let events = read_ndjson(&out_path);
    assert_exactly_once(&events, 12_250 + 36);
    let messages = message_counts(&events);
    assert_eq!(messages.get("dup 7"), Some(&5));
    for i in 0..20 {
        assert_eq!(messages.get(&format!("late small {i}")), Some(&1));
    }
    for i in 0..15 {
        assert_eq!(messages.get(&format!("late new {i}")), Some(&1));
    }

    // And once more: nothing new.
    backfill(&moto.url, &config, &[]);
    assert_exactly_once(&read_ndjson(&out_path), 12_286);
    let status = status_json(&moto.url, &config);
    assert_eq!(status.len(), 1);
    assert_eq!(status[0]["events_delivered"], 12_286);
    assert_eq!(status[0]["late_events"], 36);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_run_catches_late_events_in_old_and_new_streams_exactly_once() {
    let moto = Moto::start();
    let client = moto.client().await;
    let first: Vec<(i64, String)> = (0..50)
        .map(|i| (now_ms() - 5_000 + i, format!("on time {i}")))
        .collect();
    put_events(&client, "/app/late", "s1", &first).await;

    let dir = tempfile::tempdir().unwrap();
    let config = ndjson_config(
        dir.path(),
        "  - name: /app/late\n    mode: streams\n",
        "  poll_interval_secs: 1\n  late_arrival_secs: 20\n  lookback_secs: 60\n",
    );
    let out_path = dir.path().join("out.ndjson");
    let mut child = spawn_run(&moto.url, &config);
    let on_time = wait_until(Duration::from_secs(30), || {
        read_ndjson(&out_path).len() >= 50
    });
    // Let the cursor move past the late events' timestamps.
    let late_ts = now_ms() - 15_000;
    assert!(cursors_past(
        &moto.url,
        &config,
        now_ms(),
        Duration::from_secs(30)
    ));
    // 15 s late: beyond an ordinary poll's short re-read, within the 20 s
    // bound, so the periodic sweep catches them; into the stream already
    // read and into one that did not exist at the earlier listings.
    let late: Vec<(i64, String)> = (0..30)
        .map(|i| (late_ts + i, format!("late {i}")))
        .collect();
    put_events(&client, "/app/late", "s1", &late[..10]).await;
    put_events(&client, "/app/late", "s2", &late[10..]).await;
    let caught = wait_until(Duration::from_secs(30), || {
        read_ndjson(&out_path).len() >= 80
    });
    // A few more polls re-read the same overlap: nothing may come twice.
    assert!(newer_polls(&moto.url, &config, 3, Duration::from_secs(30)));
    signal(&child, "TERM");
    let status =
        wait_exit(&mut child, Duration::from_secs(10)).expect("exits within 10 s of SIGTERM");
    assert!(on_time, "on-time events not delivered");
    assert!(caught, "late events not delivered");
    assert!(status.success(), "run exit status {status:?}");
    let events = read_ndjson(&out_path);
    assert_exactly_once(&events, 80);
    let messages = message_counts(&events);
    assert!((0..30).all(|i| messages.get(&format!("late {i}")) == Some(&1)));
    assert_eq!(
        per_stream(&events),
        counts_of(&[("/app/late", "s1", 60), ("/app/late", "s2", 20)])
    );
    let status = status_json(&moto.url, &config);
    assert_eq!(
        status[0]["late_events"], 30,
        "late events counted: {status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_prefix_and_stream_names_select_streams_and_a_filter_group_reads_beside_them() {
    let moto = Moto::start();
    let client = moto.client().await;
    let t = now_ms() - 10 * 60_000;
    let seed = |n: usize, tag: &str| -> Vec<(i64, String)> {
        (0..n)
            .map(|i| (t + i as i64, format!("{tag} {i}")))
            .collect()
    };
    put_events(&client, "/app/web", "web/1", &seed(30, "web1")).await;
    put_events(&client, "/app/web", "web/2", &seed(20, "web2")).await;
    put_events(&client, "/app/web", "worker/1", &seed(25, "worker1")).await;
    put_events(&client, "/app/named", "b-one", &seed(10, "one")).await;
    put_events(&client, "/app/named", "b-two", &seed(12, "two")).await;
    put_events(&client, "/app/named", "b-three", &seed(7, "three")).await;
    put_events(&client, "/app/named", "other", &seed(5, "other")).await;
    put_events(&client, "/app/filtered", "x", &seed(15, "x")).await;
    put_events(&client, "/app/filtered", "y", &seed(16, "y")).await;

    let dir = tempfile::tempdir().unwrap();
    let config = ndjson_config(
        dir.path(),
        concat!(
            "  - name: /app/web\n    mode: streams\n    stream_prefix: web/\n",
            "  - name: /app/named\n    mode: streams\n    stream_names: [b-one, b-two]\n",
            "  - name: /app/filtered\n    mode: filter\n",
            "  - name: /app/missing\n    mode: streams\n",
        ),
        "",
    );
    let out_path = dir.path().join("out.ndjson");
    let present = ["/app/web", "/app/named", "/app/filtered"];
    let mut args = Vec::new();
    for g in present {
        args.extend(["--group", g]);
    }
    backfill(&moto.url, &config, &args);
    let events = read_ndjson(&out_path);
    assert_exactly_once(&events, 50 + 22 + 31);
    assert_eq!(
        per_stream(&events),
        counts_of(&[
            ("/app/web", "web/1", 30),
            ("/app/web", "web/2", 20),
            ("/app/named", "b-one", 10),
            ("/app/named", "b-two", 12),
            ("/app/filtered", "x", 15),
            ("/app/filtered", "y", 16),
        ])
    );
    // Synthetic ids for the streams groups, CloudWatch's eventIds for the
    // filter group.
    for e in &events {
        let id = e["source"]["log_id"].as_str().unwrap();
        if e["source"]["log_group"] == "/app/filtered" {
            assert!(id.bytes().all(|b| b.is_ascii_digit()), "eventId: {id}");
        } else {
            assert!(id.starts_with("stream:"), "synthetic id: {id}");
        }
    }
    backfill(&moto.url, &config, &args);
    assert_exactly_once(&read_ndjson(&out_path), 103);
    let status = status_json(&moto.url, &config);
    for (group, n) in [("/app/web", 50), ("/app/named", 22), ("/app/filtered", 31)] {
        assert_eq!(
            group_status(&status, group)["events_delivered"],
            n,
            "{group}"
        );
    }

    // A missing group in streams mode is named with its region.
    let out = run_to_end(
        cwtap(&moto.url)
            .args(["backfill", "--since", "1h", "--no-progress", "--group"])
            .arg("/app/missing")
            .arg("--config")
            .arg(&config),
        Duration::from_secs(60),
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("/app/missing") && err.contains("not found") && err.contains("us-east-1"),
        "{err}"
    );
    assert_eq!(read_ndjson(&out_path).len(), 103);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_denied_on_get_log_events_names_the_missing_iam_action() {
    let moto = Moto::start();
    let client = moto.client().await;
    let events: Vec<(i64, String)> = (0..10)
        .map(|i| (now_ms() - 60_000 + i, format!("e{i}")))
        .collect();
    put_events(&client, "/app/denied", "s", &events).await;
    let proxy = FaultProxy::always(&moto.url, "GetLogEvents", Fault::AccessDenied);
    let dir = tempfile::tempdir().unwrap();
    let config = ndjson_config(dir.path(), "  - name: /app/denied\n    mode: streams\n", "");
    let out = run_to_end(
        cwtap(&proxy.url)
            .args(["backfill", "--since", "1h", "--no-progress", "--config"])
            .arg(&config),
        Duration::from_secs(60),
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("logs:GetLogEvents"), "{err}");
    assert_eq!(proxy.script().injected, 1, "access denied is not retried");
    assert_eq!(read_ndjson(&dir.path().join("out.ndjson")).len(), 0);
    // Nothing was checkpointed: the cursor did not move past the events.
    let out = backfill(&moto.url, &config, &[]);
    assert!(out.status.success());
    assert_exactly_once(&read_ndjson(&dir.path().join("out.ndjson")), 10);
}
