//! Pulling from CloudWatch (moto's server): pagination, late events, missing
//! groups, discovery, backfill idempotence, clean shutdown.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use serde_json::Value;

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

/// `cwtap backfill --since 1h`, which must succeed, and the NDJSON file it
/// writes into beside the config (`ndjson_config`).
fn backfill_hour(endpoint: &str, config: &Path) -> Vec<Value> {
    let out = run_to_end(
        cwtap(endpoint)
            .args(["backfill", "--since", "1h", "--config"])
            .arg(config),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "backfill failed: {}", stderr(&out));
    read_ndjson(&config.with_file_name("out.ndjson"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_of_more_than_10000_events_is_paged_to_the_end_and_a_rerun_delivers_nothing_twice()
{
    let moto = Moto::start();
    let client = moto.client().await;
    let base = now_ms() - 20 * 60_000;
    let a: Vec<(i64, String)> = (0..7_000)
        .map(|i| (base + i as i64 * 7, format!("a-{i}")))
        .collect();
    let b: Vec<(i64, String)> = (0..5_500)
        .map(|i| {
            (
                base + i as i64 * 11,
                format!("{{\"n\":{i},\"stream\":\"b\"}}"),
            )
        })
        .collect();
    put_events(&client, "/app/big", "stream-a", &a).await;
    put_events(&client, "/app/big", "stream-b", &b).await;

    let dir = tempfile::tempdir().unwrap();
    let config = ndjson_config(
        dir.path(),
        "  - name: /app/big\n    parsers: [{type: json}]\n",
        "",
    );
    let events = backfill_hour(&moto.url, &config);
    assert_exactly_once(&events, 12_500);

    // Every event keeps its exact timestamp, group, stream, id and message.
    let by_message: std::collections::HashMap<String, &Value> = events
        .iter()
        .map(|e| {
            let m = e["properties"]["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("{{\"n\":{},\"stream\":\"b\"}}", e["properties"]["n"]));
            (m, e)
        })
        .collect();
    for (ts, msg) in a.iter().chain(&b).step_by(97) {
        let e = by_message
            .get(msg)
            .unwrap_or_else(|| panic!("message {msg} not delivered"));
        assert_eq!(
            e["timestamp"],
            cwtap::time::format_ms(*ts),
            "timestamp of {msg}"
        );
        assert_eq!(e["source"]["log_group"], "/app/big");
        assert_eq!(e["source"]["system"], "cloudwatch");
        let stream = if msg.starts_with("a-") {
            "stream-a"
        } else {
            "stream-b"
        };
        assert_eq!(e["source"]["log_stream"], stream);
    }

    // The same backfill again: nothing new.
    let again = backfill_hour(&moto.url, &config);
    assert_exactly_once(&again, 12_500);

    let status = status_json(&moto.url, &config);
    assert_eq!(status.len(), 1);
    assert_eq!(status[0]["events_delivered"], 12_500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_sharing_a_single_page_slot_all_read_to_the_end() {
    // `agent.max_pages_per_account: 1`: every call waits for the one slot,
    // which a page holds until its events are prepared; one group needs two
    // pages, and a page reads ahead only when the slot is free.
    let moto = Moto::start();
    let client = moto.client().await;
    let base = now_ms() - 20 * 60_000;
    let big: Vec<(i64, String)> = (0..10_400)
        .map(|i| (base + i as i64 * 9, format!("big-{i}")))
        .collect();
    put_events(&client, "/app/slot/big", "s", &big).await;
    for g in 0..4 {
        let small: Vec<(i64, String)> = (0..150)
            .map(|i| (base + i as i64 * 1_000, format!("small-{g}-{i}")))
            .collect();
        put_events(&client, &format!("/app/slot/small-{g}"), "s", &small).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = ndjson_config(
        dir.path(),
        "  - prefix: /app/slot/\n",
        "  max_pages_per_account: 1\n",
    );
    let events = backfill_hour(&moto.url, &config);
    assert_exactly_once(&events, 10_400 + 4 * 150);
    let status = status_json(&moto.url, &config);
    assert_eq!(status.len(), 5);
    let big_pages = status
        .iter()
        .find(|g| g["log_group"] == "/app/slot/big")
        .map(|g| g["api_calls"].as_u64().unwrap_or(0));
    assert!(
        big_pages.is_some_and(|calls| calls >= 2),
        "the big group took at least two pages: {status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_reads_its_groups_in_step() {
    // Pages of 8 KB (CloudWatch ends its pages at 1 MB; small events here):
    // each group takes about 17 pages. The account's two page slots would
    // let two groups read their whole range before the others start, every
    // trace they read staying open meanwhile; in step, no group delivers
    // an event much more than `trace_idle_secs` past where another group
    // still reading has got to.
    let moto = Moto::with_page_bytes(8_192);
    let client = moto.client().await;
    let since = now_ms() - 60 * 60_000;
    let base = since + 10 * 60_000;
    let per_group = 1_500usize;
    for g in 0..4 {
        let events: Vec<(i64, String)> = (0..per_group)
            .map(|i| {
                let ts = base + i as i64 * 1_800;
                (ts, format!("group {g} event {i:05} and some words of text"))
            })
            .collect();
        put_events(&client, &format!("/app/step/{g}"), "s", &events).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "ndjson:\n  path: {}\n  batch_size: 50\nlog_groups:\n  - prefix: /app/step/\n\
             agent:\n  state_path: {}\n  trace_idle_secs: 60\n",
            dir.path().join("out.ndjson").display(),
            dir.path().join("state.db").display()
        ),
    );
    let events = backfill_hour(&moto.url, &config);
    assert_exactly_once(&events, 4 * per_group);

    // In delivery order: how far each group has got (from its first
    // event's time), and how many of its events are still to come.
    let mut reached: std::collections::BTreeMap<String, (i64, usize)> = (0..4)
        .map(|g| (format!("/app/step/{g}"), (base, per_group)))
        .collect();
    let mut lead_ms = 0i64;
    for e in &events {
        let group = e["source"]["log_group"].as_str().unwrap_or_default();
        let ts = cwtap::time::parse_instant(e["timestamp"].as_str().unwrap_or_default(), 0)
            .expect("an RFC 3339 timestamp");
        let slowest = reached
            .iter()
            .filter(|(g, (_, left))| g.as_str() != group && *left > 0)
            .map(|(_, (at, _))| *at)
            .min();
        if let Some(slowest) = slowest {
            lead_ms = lead_ms.max(ts - slowest);
        }
        let entry = reached.get_mut(group).expect("a seeded group");
        entry.0 = entry.0.max(ts);
        entry.1 -= 1;
    }
    // The pace (1 min), the page being delivered and the one read ahead
    // (~3 min each), what a batch of 50 covers (1.5 min): about 9 minutes.
    // Group by group, it would be the whole 45 minutes.
    assert!(
        lead_ms < 20 * 60_000,
        "a group delivered an event {} min past where another group had got to",
        lead_ms / 60_000
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_reaching_further_back_than_the_checkpoint_fills_the_gap_once() {
    let moto = Moto::start();
    let client = moto.client().await;
    let now = now_ms();
    // One event every minute over the last 3 hours.
    let events: Vec<(i64, String)> = (0..180)
        .map(|i| (now - (i + 1) * 60_000, format!("minute {i}")))
        .collect();
    put_events(&client, "/app/hist", "s", &events).await;
    let dir = tempfile::tempdir().unwrap();
    let config = ndjson_config(
        dir.path(),
        "  - name: /app/hist\n",
        "  max_window_secs: 45m\n",
    );
    for since in ["1h", "3h30m", "2h"] {
        let out = run_to_end(
            cwtap(&moto.url)
                .args(["backfill", "--since", since, "--config"])
                .arg(&config),
            Duration::from_secs(60),
        );
        assert!(
            out.status.success(),
            "backfill --since {since}: {}",
            stderr(&out)
        );
    }
    let delivered = read_ndjson(&dir.path().join("out.ndjson"));
    assert_exactly_once(&delivered, 180);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_events_written_after_the_cursor_passed_them_are_delivered_exactly_once() {
    let moto = Moto::start();
    let client = moto.client().await;
    let first: Vec<(i64, String)> = (0..50)
        .map(|i| (now_ms() - 5_000 + i, format!("on time {i}")))
        .collect();
    put_events(&client, "/app/late", "s1", &first).await;

    let dir = tempfile::tempdir().unwrap();
    let config = ndjson_config(
        dir.path(),
        "  - name: /app/late\n",
        "  poll_interval_secs: 1\n  late_arrival_secs: 20\n  lookback_secs: 60\n",
    );
    let out_path = dir.path().join("out.ndjson");
    let mut child = cwtap(&moto.url)
        .args(["run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || read_ndjson(&out_path).len()
            >= 50),
        "on-time events not delivered"
    );
    // Let the cursor move past the late events' timestamps.
    let late_ts = now_ms() - 15_000;
    assert!(cursors_past(
        &moto.url,
        &config,
        now_ms(),
        Duration::from_secs(30)
    ));
    // 15 s late: beyond an ordinary poll's short re-read (10 s here), within
    // the 20 s bound, so only the periodic sweep (every 10 s) can catch them.
    let late: Vec<(i64, String)> = (0..30)
        .map(|i| (late_ts + i, format!("late {i}")))
        .collect();
    put_events(&client, "/app/late", "s2", &late).await;
    assert!(
        wait_until(Duration::from_secs(30), || read_ndjson(&out_path).len()
            >= 80),
        "late events not delivered"
    );
    // A few more polls re-read the same overlap: nothing may come twice.
    assert!(newer_polls(&moto.url, &config, 3, Duration::from_secs(30)));
    signal(&child, "TERM");
    let status =
        wait_exit(&mut child, Duration::from_secs(10)).expect("exits within 10 s of SIGTERM");
    assert!(status.success(), "run exit status {status:?}");
    let events = read_ndjson(&out_path);
    assert_exactly_once(&events, 80);
    let messages = message_counts(&events);
    assert!((0..30).all(|i| messages.get(&format!("late {i}")) == Some(&1)));
    let status = status_json(&moto.url, &config);
    assert_eq!(
        status[0]["late_events"], 30,
        "late events counted: {status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_log_group_is_reported_with_its_region_and_the_other_groups_go_on() {
    let moto = Moto::start();
    let client = moto.client().await;
    let events: Vec<(i64, String)> = (0..20)
        .map(|i| (now_ms() - 10_000 + i, format!("present {i}")))
        .collect();
    put_events(&client, "/app/present", "s", &events).await;
    let dir = tempfile::tempdir().unwrap();
    let config = ndjson_config(
        dir.path(),
        "  - name: /app/missing\n  - name: /app/present\n",
        "  poll_interval_secs: 1\n",
    );
    let mut child = cwtap(&moto.url)
        .args(["run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out_path = dir.path().join("out.ndjson");
    let delivered = wait_until(Duration::from_secs(30), || {
        read_ndjson(&out_path).len() >= 20
    });
    // Both groups polled again (the missing one records its error each time).
    assert!(newer_polls(&moto.url, &config, 2, Duration::from_secs(30)));
    signal(&child, "TERM");
    wait_exit(&mut child, Duration::from_secs(10)).expect("exits after SIGTERM");
    let output = child.wait_with_output().unwrap();
    let err = stderr(&output);
    assert!(delivered, "present group not delivered; stderr:\n{err}");
    let reports = err
        .lines()
        .filter(|l| l.contains("/app/missing") && l.contains("not found"))
        .count();
    assert!(reports >= 1, "missing group not reported:\n{err}");
    assert!(err.contains("us-east-1"), "region not named:\n{err}");
    // Said once, then looked for at the idle pace, not logged every poll.
    assert!(reports <= 2, "missing group reported {reports} times");
    let status = status_json(&moto.url, &config);
    let missing = status
        .iter()
        .find(|g| g["log_group"] == "/app/missing")
        .expect("status row");
    assert!(
        missing["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("not found"),
        "{missing}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_of_a_group_a_prefix_selects_but_that_does_not_exist_fails_naming_it() {
    let moto = Moto::start();
    let client = moto.client().await;
    put_events(
        &client,
        "/svc/real",
        "s",
        &[(now_ms() - 5_000, "from real".into())],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = ndjson_config(dir.path(), "  - prefix: /svc/\n", "");
    let backfill = |group: &str| {
        run_code(
            cwtap(&moto.url)
                .args([
                    "backfill",
                    "--since",
                    "1h",
                    "--no-progress",
                    "--group",
                    group,
                ])
                .arg("--config")
                .arg(&config),
            Duration::from_secs(60),
        )
    };
    let (code, _, err) = backfill("/svc/reel");
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("/svc/reel") && err.contains("cwtap groups list"),
        "{err}"
    );
    assert!(read_ndjson(&dir.path().join("out.ndjson")).is_empty());
    let (code, _, err) = backfill("/svc/real");
    assert_eq!(code, 0, "{err}");
    let messages = message_counts(&read_ndjson(&dir.path().join("out.ndjson")));
    assert_eq!(messages.get("from real"), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_selection_discovers_groups_created_later_and_stops_polling_deleted_ones() {
    let moto = Moto::start();
    let client = moto.client().await;
    put_events(
        &client,
        "/svc/a",
        "s",
        &[(now_ms() - 5_000, "from a".into())],
    )
    .await;
    put_events(
        &client,
        "/other/x",
        "s",
        &[(now_ms() - 5_000, "not selected".into())],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = ndjson_config(
        dir.path(),
        "  - prefix: /svc/\n",
        "  poll_interval_secs: 1\n  discovery_interval_secs: 1\n",
    );
    let out_path = dir.path().join("out.ndjson");
    let log_path = dir.path().join("cwtap.log");
    let mut child = cwtap(&moto.url)
        .args(["run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(30), || !read_ndjson(
        &out_path
    )
    .is_empty()));
    put_events(
        &client,
        "/svc/b",
        "s",
        &[(now_ms() - 5_000, "from b".into())],
    )
    .await;
    let found = wait_until(Duration::from_secs(30), || {
        read_ndjson(&out_path).len() >= 2
    });
    // A group the prefix no longer lists (deleted) stops being polled at
    // the next discovery; the others go on.
    let stopped = |log: &str| {
        log.lines()
            .any(|l| l.contains("no longer listed under its prefix") && l.contains("/svc/a"))
    };
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let mut a_stopped = false;
    if found {
        client
            .delete_log_group()
            .log_group_name("/svc/a")
            .send()
            .await
            .expect("delete /svc/a");
        a_stopped = wait_until(Duration::from_secs(30), || stopped(&read_log()));
        put_events(
            &client,
            "/svc/b",
            "s",
            &[(now_ms() - 4_000, "from b, later".into())],
        )
        .await;
        wait_until(Duration::from_secs(30), || {
            read_ndjson(&out_path).len() >= 3
        });
    }
    signal(&child, "TERM");
    wait_exit(&mut child, Duration::from_secs(10)).expect("exits after SIGTERM");
    assert!(found, "group created later was not discovered");
    let log = read_log();
    assert!(a_stopped, "the deleted group's poller did not stop: {log}");
    assert!(
        !log.lines()
            .any(|l| l.contains("no longer listed under its prefix") && l.contains("/svc/b")),
        "{log}"
    );
    let messages = message_counts(&read_ndjson(&out_path));
    assert_eq!(messages.get("from a"), Some(&1));
    assert_eq!(messages.get("from b"), Some(&1));
    assert_eq!(messages.get("from b, later"), Some(&1));
    assert_eq!(messages.get("not selected"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_zero_with_state_committed_and_a_restart_resumes_without_duplicates() {
    let moto = Moto::start();
    let client = moto.client().await;
    let events: Vec<(i64, String)> = (0..100)
        .map(|i| (now_ms() - 30_000 + i, format!("e{i}")))
        .collect();
    put_events(&client, "/app/term", "s", &events).await;
    let dir = tempfile::tempdir().unwrap();
    let config = ndjson_config(
        dir.path(),
        "  - name: /app/term\n",
        "  poll_interval_secs: 1\n",
    );
    let out_path = dir.path().join("out.ndjson");
    let start = |cfg: &Path| {
        cwtap(&moto.url)
            .args(["run", "--config"])
            .arg(cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut child = start(&config);
    assert!(wait_until(Duration::from_secs(30), || read_ndjson(
        &out_path
    )
    .len()
        >= 100));
    signal(&child, "TERM");
    let exit =
        wait_exit(&mut child, Duration::from_secs(10)).expect("exits within 10 s of SIGTERM");
    assert_eq!(exit.code(), Some(0));
    let status = status_json(&moto.url, &config);
    assert_eq!(status[0]["events_delivered"], 100);
    let lag = status[0]["lag_secs"].as_f64().unwrap();
    assert!(lag < 60.0, "cursor committed near now, lag {lag}s");

    let more: Vec<(i64, String)> = (0..10)
        .map(|i| (now_ms() - 1_000 + i, format!("after restart {i}")))
        .collect();
    put_events(&client, "/app/term", "s2", &more).await;
    let mut child = start(&config);
    assert!(wait_until(Duration::from_secs(30), || read_ndjson(
        &out_path
    )
    .len()
        >= 110));
    // More polls after the restart: nothing may come twice.
    assert!(newer_polls(&moto.url, &config, 2, Duration::from_secs(30)));
    signal(&child, "INT");
    let exit = wait_exit(&mut child, Duration::from_secs(10)).expect("exits within 10 s of SIGINT");
    assert_eq!(exit.code(), Some(0));
    assert_exactly_once(&read_ndjson(&out_path), 110);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reread_window_adapts_to_a_group_whose_events_arrive_later_than_configured() {
    let moto = Moto::start();
    let client = moto.client().await;
    // This group's producer is ~40 s behind: its events are ingested 40 s
    // after their timestamps, far beyond the configured 5 s.
    let first: Vec<(i64, String)> = (0..20)
        .map(|i| (now_ms() - 40_000 + i, format!("slow {i}")))
        .collect();
    put_events(&client, "/app/slow", "s1", &first).await;
    let dir = tempfile::tempdir().unwrap();
    let config = ndjson_config(
        dir.path(),
        "  - name: /app/slow\n",
        "  poll_interval_secs: 1\n  late_arrival_secs: 5\n  max_late_arrival_secs: 5m\n  lookback_secs: 2m\n",
    );
    let out_path = dir.path().join("out.ndjson");
    let mut child = cwtap(&moto.url)
        .args(["run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(30), || read_ndjson(
        &out_path
    )
    .len()
        >= 20));
    // The cursor moves past the late events' timestamps.
    assert!(cursors_past(
        &moto.url,
        &config,
        now_ms(),
        Duration::from_secs(30)
    ));
    // 60 s late: outside the configured 5 s, inside twice the observed 40 s.
    let late: Vec<(i64, String)> = (0..10)
        .map(|i| (now_ms() - 60_000 + i, format!("later {i}")))
        .collect();
    put_events(&client, "/app/slow", "s2", &late).await;
    let caught = wait_until(Duration::from_secs(20), || {
        read_ndjson(&out_path).len() >= 30
    });
    // More polls re-read the late events: nothing may come twice.
    assert!(newer_polls(&moto.url, &config, 2, Duration::from_secs(30)));
    signal(&child, "TERM");
    wait_exit(&mut child, Duration::from_secs(10)).expect("exits after SIGTERM");
    assert!(
        caught,
        "late events of a slow group were not caught by the adapted window"
    );
    assert_exactly_once(&read_ndjson(&out_path), 30);
    let status = status_json(&moto.url, &config);
    let delay = status[0]["observed_delay_ms"].as_i64().unwrap();
    assert!(delay >= 39_000, "observed delay recorded: {delay}");
}
