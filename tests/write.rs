//! The write path against moto's server, through `cwtap replay --to
//! cloudwatch`: batches split at CloudWatch's limits, per-event rejections,
//! oversize events, missing groups, and (through the fault proxy) throttling
//! and the sequence-token errors of older emulators.

mod common;

use std::path::Path;
use std::time::Duration;

use common::proxy::{Fault, FaultProxy};
use common::*;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(120);

/// The report of a replay that ran to the end: its exit code is 1 exactly
/// when CloudWatch rejected some of the events, 0 otherwise.
fn replay_json(url: &str, fixture: &Path, extra: &[&str]) -> Value {
    let (code, out, err) = run_code(
        cwtap(url)
            .arg("replay")
            .arg(fixture)
            .args(["--to", "cloudwatch", "--json"])
            .args(extra),
        LIMIT,
    );
    let report: Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("replay --json prints one JSON report ({e}): {out}\n{err}"));
    let rejected = report["rejected"].as_array().map_or(0, Vec::len);
    assert_eq!(code, i32::from(rejected > 0), "{rejected} rejected: {err}");
    report
}

fn put_calls(proxy: &FaultProxy) -> usize {
    proxy
        .script()
        .forwarded
        .iter()
        .filter(|op| *op == "PutLogEvents")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_split_at_10000_events_and_at_1_mib_and_every_event_is_stored_in_order() {
    let moto = Moto::start();
    let client = moto.client().await;
    put_events(&client, "/w/count", "s", &[]).await;
    put_events(&client, "/w/bytes", "s", &[]).await;
    let proxy = FaultProxy::start(&moto.url, "PutLogEvents");
    let dir = tempfile::tempdir().unwrap();
    let base = now_ms() - 30 * 60_000;
    // 25,000 small events: 10,000 + 10,000 + 5,000.
    let small: Vec<Value> = (0..25_000)
        .map(|i| fixture_event("/w/count", "s", base + i / 10, &format!("event {i}")))
        .collect();
    let path = dir.path().join("count.ndjson");
    write_fixture(&path, &small);
    let report = replay_json(&proxy.url, &path, &["--rebase", "keep"]);
    assert_eq!(report["accepted"], 25_000, "{report}");
    assert_eq!(put_calls(&proxy), 3, "10,000 + 10,000 + 5,000");
    let stored = stored_events(&client, "/w/count").await;
    assert_eq!(stored.len(), 25_000);
    let messages: Vec<&str> = stored.iter().map(|(_, _, m)| m.as_str()).collect();
    let expected: Vec<String> = (0..25_000).map(|i| format!("event {i}")).collect();
    assert_eq!(messages, expected, "same order as written");

    // 1,500 events of 1,000 bytes: 1,022 fit in 1,048,576 bytes with 26 each.
    let before = put_calls(&proxy);
    let message = "x".repeat(1_000);
    let big: Vec<Value> = (0..1_500)
        .map(|i| fixture_event("/w/bytes", "s", base + i, &message))
        .collect();
    let path = dir.path().join("bytes.ndjson");
    write_fixture(&path, &big);
    let report = replay_json(&proxy.url, &path, &["--rebase", "keep"]);
    assert_eq!(report["accepted"], 1_500);
    assert_eq!(put_calls(&proxy) - before, 2, "1,022 + 478");
    let bodies = proxy.script().bodies.clone();
    let largest = bodies.iter().map(String::len).max().unwrap();
    assert!(
        largest < 1_048_576 + 200_000,
        "request body {largest} bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_spanning_more_than_24_hours_go_in_separate_batches() {
    let moto = Moto::start();
    put_events(&moto.client().await, "/w/span", "s", &[]).await;
    let proxy = FaultProxy::start(&moto.url, "PutLogEvents");
    let dir = tempfile::tempdir().unwrap();
    let now = now_ms();
    let day = 24 * 3_600_000;
    let events: Vec<Value> = [
        now - 3 * day,
        now - 2 * day - 1,
        now - 2 * day,
        now - 60_000,
    ]
    .iter()
    .enumerate()
    .map(|(i, ts)| fixture_event("/w/span", "s", *ts, &format!("e{i}")))
    .collect();
    let path = dir.path().join("span.ndjson");
    write_fixture(&path, &events);
    let report = replay_json(&proxy.url, &path, &["--rebase", "keep"]);
    assert_eq!(report["accepted"], 4, "{report}");
    // [3d, 2d + 1 ms] ago spans 24 h - 1 ms; 2d ago would make it 24 h.
    assert_eq!(put_calls(&proxy), 3, "[3d, 2d + 1ms] [2d] [1m] ago");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_too_old_and_too_new_are_reported_one_by_one_and_the_rest_are_stored() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let now = now_ms();
    let day = 24 * 3_600_000;
    let mut events = Vec::new();
    for i in 0..3 {
        events.push(fixture_event(
            "/w/range",
            "s",
            now - 15 * day + i,
            &format!("old {i}"),
        ));
    }
    for i in 0..5 {
        events.push(fixture_event(
            "/w/range",
            "s",
            now - 60_000 + i,
            &format!("ok {i}"),
        ));
    }
    for i in 0..2 {
        events.push(fixture_event(
            "/w/range",
            "s",
            now + 3 * 3_600_000 + i,
            &format!("new {i}"),
        ));
    }
    let path = dir.path().join("range.ndjson");
    write_fixture(&path, &events);
    let report = replay_json(&moto.url, &path, &["--create", "--rebase", "keep"]);
    assert_eq!(report["accepted"], 5, "{report}");
    let rejected: Vec<(u64, String)> = report["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["index"].as_u64().unwrap(),
                r["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        rejected,
        vec![
            (0, "too_old".to_string()),
            (1, "too_old".to_string()),
            (2, "too_old".to_string()),
            (8, "too_new".to_string()),
            (9, "too_new".to_string()),
        ]
    );
    let stored = stored_events(&moto.client().await, "/w/range").await;
    let messages: Vec<&str> = stored.iter().map(|(_, _, m)| m.as_str()).collect();
    assert_eq!(messages, ["ok 0", "ok 1", "ok 2", "ok 3", "ok 4"]);

    // The table form names the reasons too, and the exit code says that
    // not every event was stored.
    let (code, out, err) = run_code(
        cwtap(&moto.url)
            .arg("replay")
            .arg(&path)
            .args(["--to", "cloudwatch", "--rebase", "keep"]),
        LIMIT,
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("CloudWatch rejected 5 of the 10 events"),
        "{err}"
    );
    assert!(out.contains("5 accepted, 5 rejected"), "{out}");
    assert!(out.contains("3 rejected: too old"), "{out}");
    assert!(out.contains("2 rejected: too new"), "{out}");
    // Each one by the line of the file, as errors about the file name it.
    assert!(out.contains("  line 1 (/w/range / "), "{out}");
    assert!(out.contains("  line 10 (/w/range / "), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_event_is_truncated_with_a_marker_or_rejected_by_option() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let ts = now_ms() - 60_000;
    // 300 KiB of 3-byte chars: over the default 256 KiB limit.
    let huge = "€".repeat(100 * 1024);
    let path = dir.path().join("huge.ndjson");
    write_fixture(
        &path,
        &[
            fixture_event("/w/size", "s", ts, &huge),
            fixture_event("/w/size", "s", ts + 1, "small"),
        ],
    );
    let report = replay_json(&moto.url, &path, &["--create", "--rebase", "keep"]);
    assert_eq!(report["accepted"], 2);
    assert_eq!(report["truncated"], 1);
    let stored = stored_events(&moto.client().await, "/w/size").await;
    let cut = &stored[0].2;
    assert!(
        cut.ends_with("...[truncated by cwtap]"),
        "marker at the end"
    );
    assert!(cut.len() + 26 <= 256 * 1024, "{} bytes", cut.len());
    assert!(cut.starts_with("€€€"), "cut at a char boundary, start kept");

    // A blank line first: the rejection names the file's line (2), the
    // events' position stays 0-based (0).
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("\n{text}")).unwrap();
    let report = replay_json(
        &moto.url,
        &path,
        &[
            "--group",
            "/w/size2",
            "--create",
            "--rebase",
            "keep",
            "--oversize",
            "reject",
        ],
    );
    assert_eq!(report["accepted"], 1);
    assert_eq!(report["rejected"][0]["index"], 0);
    assert_eq!(report["rejected"][0]["line"], 2);
    assert_eq!(report["rejected"][0]["reason"], "too_large");
    let stored = stored_events(&moto.client().await, "/w/size2").await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].2, "small");

    // A smaller configured limit applies, and nonsense limits are usage errors.
    let report = replay_json(
        &moto.url,
        &path,
        &[
            "--group",
            "/w/size3",
            "--create",
            "--rebase",
            "keep",
            "--max-event-bytes",
            "2048",
        ],
    );
    assert_eq!(report["truncated"], 1);
    let stored = stored_events(&moto.client().await, "/w/size3").await;
    assert!(stored[0].2.len() + 26 <= 2048);
    let (code, _, err) = run_code(
        cwtap(&moto.url).arg("replay").arg(&path).args([
            "--to",
            "cloudwatch",
            "--max-event-bytes",
            "10",
        ]),
        LIMIT,
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("1024 to 1048576"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_group_is_an_error_naming_it_unless_create_is_given() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("one.ndjson");
    write_fixture(
        &path,
        &[fixture_event("/w/missing", "s1", now_ms() - 1_000, "hello")],
    );
    let (code, _, err) = run_code(
        cwtap(&moto.url)
            .arg("replay")
            .arg(&path)
            .args(["--to", "cloudwatch"]),
        LIMIT,
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("/w/missing") && err.contains("--create"),
        "{err}"
    );
    assert!(err.contains("us-east-1"), "names the region: {err}");

    let report = replay_json(&moto.url, &path, &["--create"]);
    assert_eq!(report["accepted"], 1);
    // The group exists now but another stream does not: --create makes it.
    let report = replay_json(&moto.url, &path, &["--stream", "s2", "--create"]);
    assert_eq!(report["accepted"], 1);
    let stored = stored_events(&moto.client().await, "/w/missing").await;
    let streams: Vec<&str> = stored.iter().map(|(s, _, _)| s.as_str()).collect();
    assert_eq!(streams, ["s1", "s2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_puts_are_retried_and_lose_nothing() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.url, "PutLogEvents");
    proxy
        .script()
        .faults
        .extend([Fault::Throttle, Fault::Unavailable, Fault::Throttle]);
    let dir = tempfile::tempdir().unwrap();
    let base = now_ms() - 60_000;
    let events: Vec<Value> = (0..100)
        .map(|i| fixture_event("/w/throttle", "s", base + i, &format!("m{i}")))
        .collect();
    let path = dir.path().join("t.ndjson");
    write_fixture(&path, &events);
    let report = replay_json(&proxy.url, &path, &["--create"]);
    assert_eq!(report["accepted"], 100);
    assert_eq!(proxy.script().injected, 3);
    assert_eq!(
        stored_events(&moto.client().await, "/w/throttle")
            .await
            .len(),
        100
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_sequence_token_is_retried_once_with_the_expected_token() {
    let moto = Moto::start();
    let client = moto.client().await;
    put_events(&client, "/w/seq", "s", &[]).await;
    let proxy = FaultProxy::start(&moto.url, "PutLogEvents");
    proxy.script().faults.push_back(Fault::InvalidSequenceToken);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seq.ndjson");
    write_fixture(
        &path,
        &[fixture_event("/w/seq", "s", now_ms() - 1_000, "once")],
    );
    let report = replay_json(&proxy.url, &path, &[]);
    assert_eq!(report["accepted"], 1);
    let bodies = proxy.script().bodies.clone();
    assert_eq!(bodies.len(), 1, "one retry reached moto");
    assert!(
        bodies[0].contains(r#""sequenceToken":"49612345""#),
        "the retry carries the expected token: {}",
        bodies[0]
    );
    assert_eq!(
        stored_events(&client, "/w/seq").await.len(),
        1,
        "stored once"
    );

    // Refused twice: the second refusal is an error, not a loop.
    proxy
        .script()
        .faults
        .extend([Fault::InvalidSequenceToken, Fault::InvalidSequenceToken]);
    let (code, _, err) = run_code(
        cwtap(&proxy.url)
            .arg("replay")
            .arg(&path)
            .args(["--to", "cloudwatch"]),
        LIMIT,
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("InvalidSequenceToken"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_already_accepted_counts_the_batch_as_stored_without_sending_it_again() {
    let moto = Moto::start();
    let client = moto.client().await;
    put_events(&client, "/w/dup", "s", &[]).await;
    let proxy = FaultProxy::start(&moto.url, "PutLogEvents");
    proxy.script().faults.push_back(Fault::DataAlreadyAccepted);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dup.ndjson");
    write_fixture(
        &path,
        &[fixture_event("/w/dup", "s", now_ms() - 1_000, "dup")],
    );
    let report = replay_json(&proxy.url, &path, &[]);
    assert_eq!(report["accepted"], 1);
    assert_eq!(proxy.script().injected, 1);
    assert!(
        proxy.script().bodies.is_empty(),
        "the batch was not sent a second time"
    );
}
