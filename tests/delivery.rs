//! Delivery to a VectaDB-compatible API (a real HTTP receiver in the test
//! playing the server, including its partial failures, 503s, 413 and 422),
//! with CloudWatch played by moto's server.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn vectadb_config(
    dir: &Path,
    receiver: &Receiver,
    group: &str,
    extra_vectadb: &str,
    agent: &str,
) -> PathBuf {
    write_config(
        dir,
        &format!(
            "vectadb:\n  endpoint: {}\n  max_backoff_secs: 1\n{extra_vectadb}log_groups:\n  - name: {group}\nagent:\n  state_path: {}\n{agent}",
            receiver.url,
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

fn status_json(moto: &Moto, config: &Path) -> Vec<Value> {
    let out = run_to_end(
        cwtap(&moto.url)
            .args(["status", "--json", "--config"])
            .arg(config),
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "status: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("status --json is JSON")
}

fn assert_stored_exactly_once(receiver: &Receiver, expected: usize) {
    let stored = receiver.stored();
    let ids = id_counts(&stored);
    let dups = ids.values().filter(|n| **n > 1).count();
    assert_eq!(dups, 0, "{dups} events stored more than once");
    assert_eq!(ids.len(), expected, "distinct events stored");
}

async fn seed(
    moto: &Moto,
    group: &str,
    n: usize,
    message: impl Fn(usize) -> String,
) -> Vec<(i64, String)> {
    let client = moto.client().await;
    let base = now_ms() - 10 * 60_000;
    let events: Vec<(i64, String)> = (0..n).map(|i| (base + i as i64, message(i))).collect();
    put_events(&client, group, "stream-1", &events).await;
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_first_then_batches_with_explicit_options_source_and_both_auth_headers() {
    let moto = Moto::start();
    let receiver = Receiver::start();
    seed(&moto, "/app/api", 250, |i| {
        format!("{{\"session_id\":\"s-{}\",\"i\":{i}}}", i % 3)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = vectadb_config(
        dir.path(),
        &receiver,
        "/app/api\n    agent_id: checkout\n    parsers: [{type: json}]",
        "  api_key: ${CWTAP_TEST_KEY}\n  batch_size: 40\n",
        "  auto_create_traces: false\n  generate_embeddings: true\n",
    );
    let out = run_to_end(
        cwtap(&moto.url)
            .env("CWTAP_TEST_KEY", "sk-live-very-secret")
            .env("RUST_LOG", "debug")
            .args(["backfill", "--since", "1h", "--config"])
            .arg(&config),
        Duration::from_secs(60),
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        !err.contains("sk-live-very-secret"),
        "the API key leaked into the logs"
    );
    assert_stored_exactly_once(&receiver, 250);

    let requests = receiver.requests();
    assert_eq!(
        requests[0].path, "/health",
        "GET /health comes before any batch"
    );
    let batches = event_batches(&receiver);
    // The first request is small (the size follows the server's answers),
    // then they double up to batch_size.
    assert_eq!(batches[0].events, 10, "the first request");
    assert_eq!(batches.iter().map(|r| r.events).max(), Some(40));
    assert_eq!(batches.iter().map(|r| r.events).sum::<usize>(), 250);
    for r in &batches {
        assert!(r.events <= 40);
        assert_eq!(
            r.headers.get("x-api-key").map(String::as_str),
            Some("sk-live-very-secret")
        );
        assert_eq!(
            r.headers.get("authorization").map(String::as_str),
            Some("Bearer sk-live-very-secret")
        );
        let options = r.options.as_ref().expect("options always sent");
        assert_eq!(options["auto_create_traces"], false);
        assert_eq!(options["generate_embeddings"], true);
        assert_eq!(options["extract_relationships"], false);
    }
    let e = &receiver.stored()[0];
    assert_eq!(e["source"]["system"], "cloudwatch");
    assert_eq!(e["source"]["log_group"], "/app/api");
    assert_eq!(e["source"]["log_stream"], "stream-1");
    assert!(
        e["source"]["log_id"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    assert_eq!(e["agent_id"], "checkout");
    // The trace key travels as session_id; the original stays in properties.
    let original = e["properties"]["session_id"]
        .as_str()
        .expect("original session id kept");
    assert_eq!(e["session_id"], format!("s:{original}"));
    assert!(
        e["properties"]["i"].is_number(),
        "original JSON fields kept: {e}"
    );
    // One trace per session, each closed (idle by the end of the window) with one summary.
    let summaries = summaries(&receiver.stored());
    let mut keys: Vec<_> = summaries
        .iter()
        .map(|s| s["session_id"].as_str().unwrap().to_string())
        .collect();
    keys.sort();
    assert_eq!(keys, vec!["s:s-0", "s:s-1", "s:s-2"]);
    let counts: i64 = summaries
        .iter()
        .map(|s| s["properties"]["event_count"].as_i64().unwrap())
        .sum();
    assert_eq!(counts, 250);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downstream_down_for_a_while_holds_the_cursor_then_delivers_everything_once() {
    let moto = Moto::start();
    let receiver = Receiver::start();
    seed(&moto, "/app/down", 300, |i| format!("event {i}")).await;
    let dir = tempfile::tempdir().unwrap();
    let config = vectadb_config(dir.path(), &receiver, "/app/down", "  batch_size: 50\n", "");
    receiver.script().down_until = Some(Instant::now() + Duration::from_secs(5));
    let mut child = cwtap(&moto.url)
        .args(["backfill", "--since", "1h", "--no-progress", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // While the downstream answers 503, nothing is checkpointed.
    assert!(wait_until(Duration::from_secs(10), || receiver
        .requests()
        .iter()
        .filter(|r| r.status == 503)
        .count()
        >= 2));
    let during = status_json(&moto, &config);
    assert_eq!(during[0]["events_delivered"], 0, "{during:?}");
    assert_eq!(
        during[0]["cursor"], during[0]["covered_from"],
        "cursor must not move while down"
    );
    let exit = wait_exit(&mut child, Duration::from_secs(60))
        .expect("backfill finishes once the downstream is back");
    assert!(exit.success());
    assert_stored_exactly_once(&receiver, 300);
    let after = status_json(&moto, &config);
    assert_eq!(after[0]["events_delivered"], 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_failures_in_a_200_are_retried_by_index_only() {
    let moto = Moto::start();
    let receiver = Receiver::start();
    let events = seed(&moto, "/app/partial", 200, |i| {
        if i % 7 == 0 {
            format!("flaky event {i}")
        } else {
            format!("event {i}")
        }
    })
    .await;
    let flaky = events
        .iter()
        .filter(|(_, m)| m.starts_with("flaky"))
        .count();
    receiver.script().flaky_marker = Some("flaky".into());
    let dir = tempfile::tempdir().unwrap();
    let config = vectadb_config(
        dir.path(),
        &receiver,
        "/app/partial",
        "  batch_size: 50\n",
        "",
    );
    let out = backfill(&moto, &config);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_stored_exactly_once(&receiver, 200);

    let stored = receiver.stored();
    let message_by_id: HashMap<String, String> = stored
        .iter()
        .map(|e| {
            (
                e["source"]["log_id"].as_str().unwrap().to_string(),
                e["properties"]["message"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let batches: Vec<_> = receiver
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/batch"))
        .collect();
    let sent: usize = batches.iter().map(|r| r.events).sum();
    assert_eq!(
        sent,
        200 + flaky,
        "every event sent once, failed ones once more"
    );
    let retries: Vec<_> = batches
        .iter()
        .filter(|r| {
            r.log_ids
                .iter()
                .all(|id| message_by_id[id].starts_with("flaky"))
        })
        .collect();
    // Every batch holds a flaky event (one in 7; the smallest request, the
    // first, carries 10).
    assert_eq!(
        retries.len(),
        batches.len() - retries.len(),
        "one retry per batch, carrying only the failed events"
    );
    assert_eq!(retries.iter().map(|r| r.events).sum::<usize>(), flaky);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_413_splits_the_batch_until_it_fits() {
    let moto = Moto::start();
    let receiver = Receiver::start();
    seed(&moto, "/app/big", 120, |i| format!("event {i}")).await;
    receiver.script().max_events = Some(7);
    let dir = tempfile::tempdir().unwrap();
    let config = vectadb_config(dir.path(), &receiver, "/app/big", "  batch_size: 60\n", "");
    let out = backfill(&moto, &config);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_stored_exactly_once(&receiver, 120);
    let requests = receiver.requests();
    assert!(requests.iter().any(|r| r.status == 413));
    assert!(
        requests
            .iter()
            .filter(|r| r.status == 200 && r.path.ends_with("/batch"))
            .all(|r| r.events <= 7)
    );
}

/// The batch requests of `receiver`, but for trace summaries.
fn event_batches(receiver: &Receiver) -> Vec<RequestLog> {
    receiver
        .requests()
        .into_iter()
        .filter(|r| r.path == "/api/v1/events/batch")
        .filter(|r| !r.log_ids.iter().all(|id| id.starts_with("trace-summary:")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_server_is_sent_requests_that_fit_its_time() {
    let moto = Moto::start();
    let receiver = Receiver::start();
    seed(&moto, "/app/slow", 40, |i| format!("event {i}")).await;
    // 100 ms per event, against a 3 s timeout: a request is sized to take
    // a quarter of it, 7 events. The default batch_size (300) in one
    // request would take 30 s, time out, and be sent again for ever.
    receiver.script().delay_per_event = Duration::from_millis(100);
    let dir = tempfile::tempdir().unwrap();
    let config = vectadb_config(
        dir.path(),
        &receiver,
        "/app/slow",
        "  timeout_secs: 3
",
        "  group_traces: false
",
    );
    let out = backfill(&moto, &config);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_stored_exactly_once(&receiver, 40);
    let sizes: Vec<usize> = event_batches(&receiver).iter().map(|r| r.events).collect();
    assert_eq!(sizes[0], 10, "the first request: {sizes:?}");
    assert!(
        sizes[1..].iter().all(|&n| n <= 7),
        "after the first answer (100 ms per event), at most 7 events: {sizes:?}"
    );
    assert!(
        !stderr(&out).contains("timeout_secs"),
        "no request timed out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_times_out_goes_again_in_smaller_ones() {
    let moto = Moto::start();
    let receiver = Receiver::start();
    seed(&moto, "/app/stall", 100, |i| format!("event {i}")).await;
    // Requests of 10 and 20 events are answered at once; the third, of 40,
    // takes 1.5 s against a 1 s timeout (and is stored all the same).
    receiver
        .script()
        .delays
        .extend([Duration::ZERO, Duration::ZERO, Duration::from_millis(1_500)]);
    let dir = tempfile::tempdir().unwrap();
    let config = vectadb_config(
        dir.path(),
        &receiver,
        "/app/stall",
        "  batch_size: 40
  timeout_secs: 1
",
        "  group_traces: false
",
    );
    let out = backfill(&moto, &config);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("did not answer within vectadb.timeout_secs"),
        "the timeout is reported: {err}"
    );
    let batches = event_batches(&receiver);
    let sizes: Vec<usize> = batches.iter().map(|r| r.events).collect();
    assert_eq!(&sizes[..3], &[10, 20, 40], "{sizes:?}");
    // Its events went again, in order, in requests of half its size or
    // less (the size then follows the answers).
    assert!(sizes[3] <= 20, "{sizes:?}");
    let again: Vec<&String> = batches[3..]
        .iter()
        .flat_map(|r| &r.log_ids)
        .take(40)
        .collect();
    assert_eq!(again, batches[2].log_ids.iter().collect::<Vec<_>>());
    // Everything arrived; only the timed-out request's events twice.
    let ids = id_counts(&receiver.stored());
    assert_eq!(ids.len(), 100, "distinct events stored");
    let twice: Vec<&String> = ids
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| id)
        .collect();
    assert_eq!(twice.len(), 40, "{sizes:?}");
    assert!(twice.iter().all(|id| batches[2].log_ids.contains(id)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_stay_under_the_byte_bound() {
    let moto = Moto::start();
    let receiver = Receiver::start();
    // ~2 KB messages: 100 of them would be ~200 KB; the bound is 20 KB.
    seed(&moto, "/app/bytes", 100, |i| {
        format!("{i} {}", "x".repeat(2_000))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = vectadb_config(
        dir.path(),
        &receiver,
        "/app/bytes",
        "  batch_size: 100\n  max_batch_bytes: 20480\n",
        "",
    );
    let out = backfill(&moto, &config);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_stored_exactly_once(&receiver, 100);
    let batches: Vec<_> = receiver
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/batch"))
        .collect();
    assert!(
        batches.len() >= 10,
        "split by bytes: {} requests",
        batches.len()
    );
    assert!(batches.iter().all(|r| r.events <= 9));
    // The batches themselves end at the byte bound: each request has its
    // own checkpoint (one row of delivered ids each), so a kill -9 could
    // resend only the request in flight.
    let conn = rusqlite::Connection::open(dir.path().join("state.db")).unwrap();
    let checkpoints: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM delivered_batches WHERE log_group = '/app/bytes'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        checkpoints as usize,
        batches.len(),
        "one checkpoint per request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_event_is_isolated_counted_and_not_retried() {
    let moto = Moto::start();
    let receiver = Receiver::start();
    seed(&moto, "/app/poison", 64, |i| {
        if i == 21 {
            "poison pill".into()
        } else {
            format!("event {i}")
        }
    })
    .await;
    receiver.script().poison_marker = Some("poison".into());
    let dir = tempfile::tempdir().unwrap();
    let config = vectadb_config(
        dir.path(),
        &receiver,
        "/app/poison",
        "  batch_size: 32\n",
        "",
    );
    let out = backfill(&moto, &config);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert_stored_exactly_once(&receiver, 63);
    let poisoned_alone = receiver
        .requests()
        .iter()
        .filter(|r| r.status == 422 && r.events == 1)
        .count();
    assert_eq!(
        poisoned_alone, 1,
        "the refused event is sent alone exactly once, never retried"
    );
    assert!(
        err.contains("422") && err.contains("rejected"),
        "one sample logged: {err}"
    );
    let status = status_json(&moto, &config);
    assert_eq!(status[0]["events_rejected"], 1);
    assert_eq!(status[0]["events_delivered"], 63);
    // A re-run does not try it again.
    let out = backfill(&moto, &config);
    assert!(out.status.success());
    assert_eq!(
        receiver
            .requests()
            .iter()
            .filter(|r| r.status == 422 && r.events == 1)
            .count(),
        1
    );
}

fn start_run(moto: &Moto, config: &Path) -> Child {
    cwtap(&moto.url)
        .args(["run", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_run_then_restart_loses_nothing_even_with_thousands_of_events_on_one_millisecond()
 {
    kill_9_mid_run_then_restart("").await;
}

/// Without an fsync per checkpoint, a killed process still loses none: the
/// commits are in the OS's page cache, which outlives the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_checkpoint_without_state_fsync_either() {
    kill_9_mid_run_then_restart("  state_fsync: false\n").await;
}

/// 3,000 events on one millisecond, `kill -9` while they are delivered, a
/// restart: every event arrives, and the only duplicates are the batch the
/// output accepted just before the kill. `agent` adds to the agent section.
async fn kill_9_mid_run_then_restart(agent: &str) {
    let moto = Moto::start();
    let receiver = Receiver::start();
    let client = moto.client().await;
    let ts = now_ms() - 60_000;
    // 3,000 events on one millisecond, split over two streams.
    let a: Vec<(i64, String)> = (0..1_500).map(|i| (ts, format!("same ms a{i}"))).collect();
    let b: Vec<(i64, String)> = (0..1_500).map(|i| (ts, format!("same ms b{i}"))).collect();
    put_events(&client, "/app/crash", "a", &a).await;
    put_events(&client, "/app/crash", "b", &b).await;
    receiver.script().delay = Duration::from_millis(60);
    let dir = tempfile::tempdir().unwrap();
    let config = vectadb_config(
        dir.path(),
        &receiver,
        "/app/crash",
        "  batch_size: 100\n",
        &format!("  poll_interval_secs: 1\n  lookback_secs: 10m\n{agent}"),
    );
    let mut child = start_run(&moto, &config);
    assert!(wait_until(Duration::from_secs(30), || receiver
        .stored_count()
        >= 800));
    child.kill().unwrap(); // SIGKILL: no chance to commit anything
    child.wait().unwrap();
    let at_kill = receiver.stored_count();
    assert!(
        at_kill < 3_000,
        "the kill came too late to test anything ({at_kill} stored)"
    );

    let mut child = start_run(&moto, &config);
    let complete = wait_until(Duration::from_secs(60), || {
        id_counts(&receiver.stored()).len() >= 3_000
    });
    // Two more polls re-read the same millisecond: nothing may come twice.
    assert!(newer_polls(&moto.url, &config, 2, Duration::from_secs(30)));
    signal(&child, "TERM");
    wait_exit(&mut child, Duration::from_secs(10)).expect("exits after SIGTERM");
    assert!(
        complete,
        "events lost after kill -9: {} of 3000",
        id_counts(&receiver.stored()).len()
    );
    let stored = receiver.stored();
    let ids = id_counts(&stored);
    assert_eq!(ids.len(), 3_000);
    // The only duplicates possible: the batch the server accepted just before
    // the kill, whose checkpoint never happened.
    let duplicates = stored.len() - ids.len();
    assert!(
        duplicates <= 100,
        "{duplicates} duplicates, more than one batch"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_slow_delivery_lets_it_finish_commits_it_and_exits_zero() {
    let moto = Moto::start();
    let receiver = Receiver::start();
    seed(&moto, "/app/slow", 50, |i| format!("event {i}")).await;
    receiver.script().delay = Duration::from_secs(2);
    let dir = tempfile::tempdir().unwrap();
    let config = vectadb_config(
        dir.path(),
        &receiver,
        "/app/slow",
        "  batch_size: 50\n",
        "  lookback_secs: 1h\n",
    );
    let mut child = start_run(&moto, &config);
    // Wait for the batch request to be in flight: the receiver counts it
    // when it arrives, before its delay.
    assert!(wait_until(Duration::from_secs(20), || receiver
        .script()
        .batches_arrived
        >= 1));
    let sent = Instant::now();
    signal(&child, "TERM");
    let exit =
        wait_exit(&mut child, Duration::from_secs(10)).expect("exits within 10 s of SIGTERM");
    assert_eq!(exit.code(), Some(0));
    assert!(sent.elapsed() < Duration::from_secs(10));
    // The request in flight was the first, of 10 events (the request size
    // starts small): it finished, was committed, and nothing came after.
    let in_flight = event_batches(&receiver);
    assert_eq!(in_flight.len(), 1, "one batch request before the exit");
    assert_eq!(in_flight[0].events, 10);
    assert_stored_exactly_once(&receiver, 10);
    let status = status_json(&moto, &config);
    assert_eq!(
        status[0]["events_delivered"], 10,
        "the finished delivery was committed"
    );
    // A restart sends the rest, and nothing again.
    receiver.script().delay = Duration::ZERO;
    let mut child = start_run(&moto, &config);
    assert!(newer_polls(&moto.url, &config, 1, Duration::from_secs(30)));
    signal(&child, "TERM");
    wait_exit(&mut child, Duration::from_secs(10)).expect("exits");
    assert_stored_exactly_once(&receiver, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_the_downstream_is_down_exits_zero_promptly_and_keeps_everything_for_later() {
    let moto = Moto::start();
    let receiver = Receiver::start();
    seed(&moto, "/app/outage", 80, |i| format!("event {i}")).await;
    receiver.script().down_until = Some(Instant::now() + Duration::from_secs(3600));
    let dir = tempfile::tempdir().unwrap();
    let config = vectadb_config(
        dir.path(),
        &receiver,
        "/app/outage",
        "  batch_size: 20\n",
        "  lookback_secs: 1h\n",
    );
    let mut child = spawn_run_logged(&moto.url, &config);
    assert!(wait_until(Duration::from_secs(20), || receiver
        .requests()
        .iter()
        .any(|r| r.status == 503)));
    // A retry of the refused batch, then the stop.
    assert!(wait_until(Duration::from_secs(20), || receiver
        .requests()
        .iter()
        .filter(|r| r.status == 503)
        .count()
        >= 2));
    signal(&child, "TERM");
    let exit =
        wait_exit(&mut child, Duration::from_secs(10)).expect("exits within 10 s of SIGTERM");
    assert_eq!(exit.code(), Some(0));
    assert_eq!(receiver.stored_count(), 0);
    // The log says what was left undelivered, and that it comes back.
    let log = std::fs::read_to_string(config.with_file_name("cwtap.log")).unwrap();
    assert!(
        log.lines().any(
            |l| l.contains("shutdown came before the output took every event")
                && l.contains("next start")
        ),
        "{log}"
    );
    // Back up: the next run delivers all of it.
    receiver.script().down_until = None;
    let mut child = start_run(&moto, &config);
    let all = wait_until(Duration::from_secs(30), || receiver.stored_count() >= 80);
    signal(&child, "TERM");
    wait_exit(&mut child, Duration::from_secs(10)).expect("exits");
    assert!(
        all,
        "events held during the outage were not delivered after it"
    );
    assert_stored_exactly_once(&receiver, 80);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_check_can_be_switched_off() {
    let moto = Moto::start();
    let receiver = Receiver::start();
    seed(&moto, "/app/nohealth", 5, |i| format!("event {i}")).await;
    let dir = tempfile::tempdir().unwrap();
    let config = vectadb_config(
        dir.path(),
        &receiver,
        "/app/nohealth",
        "  health_check: false\n",
        "",
    );
    let out = backfill(&moto, &config);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_stored_exactly_once(&receiver, 5);
    assert!(
        receiver.requests().iter().all(|r| r.path != "/health"),
        "no GET /health when switched off"
    );
}
