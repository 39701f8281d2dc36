//! Windows sized by what they hold, against moto: a sparse week costs calls
//! per page of events, not per hour of history; empty groups cost a handful
//! of calls; a late event inside a grown window is still delivered once.
//! Calls are read from `cwtap status --json` (per group) and checked against
//! moto's own count.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use serde_json::Value;

const HOUR_MS: i64 = 3_600_000;

/// Puts `events` into `group`, a day's worth per call (CloudWatch refuses a
/// batch spanning more than 24 h).
async fn put_spread(
    client: &aws_sdk_cloudwatchlogs::Client,
    group: &str,
    stream: &str,
    events: &[(i64, String)],
) {
    let mut by_day: HashMap<i64, Vec<(i64, String)>> = HashMap::new();
    for e in events {
        by_day
            .entry(e.0 / (24 * HOUR_MS))
            .or_default()
            .push(e.clone());
    }
    let mut days: Vec<_> = by_day.into_iter().collect();
    days.sort();
    for (_, day) in days {
        put_events(client, group, stream, &day).await;
    }
}

fn status_by_group(moto: &Moto, config: &std::path::Path) -> HashMap<String, Value> {
    status_json(&moto.url, config)
        .into_iter()
        .map(|g| (g["log_group"].as_str().unwrap().to_string(), g))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sparse_week_costs_calls_per_page_not_per_hour_and_delivers_every_event_once() {
    let moto = Moto::start();
    let client = moto.client().await;
    let now = now_ms();
    let groups = ["/win/a", "/win/b", "/win/c"];
    let mut sent = 0;
    for (g, group) in groups.iter().enumerate() {
        for stream in 0..4 {
            // Sparse over six days, with a burst in the middle.
            let mut events: Vec<(i64, String)> = (0..200)
                .map(|i| {
                    let ts = now - 6 * 24 * HOUR_MS + i * 43 * 60_000 + stream * 7_000;
                    (ts, format!("sparse {g} {stream} {i}"))
                })
                .collect();
            events.extend((0..250).map(|i| {
                (
                    now - 3 * 24 * HOUR_MS + i * 10 + stream,
                    format!("burst {g} {stream} {i}"),
                )
            }));
            sent += events.len();
            put_spread(&client, group, &format!("s{stream}"), &events).await;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = ndjson_config(dir.path(), "  - prefix: /win/\n", "  listen: 'off'\n");
    let out = run_to_end(
        cwtap(&moto.url)
            .args(["backfill", "--since", "7d", "--no-progress", "--config"])
            .arg(&cfg),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let events = read_ndjson(&dir.path().join("out.ndjson"));
    let ids = id_counts(&events);
    assert_eq!(ids.len(), sent, "every event");
    assert!(ids.values().all(|&n| n == 1), "once");
    let status = status_by_group(&moto, &cfg);
    for group in groups {
        let g = &status[group];
        let calls = g["api_calls"].as_u64().unwrap();
        // 168 one-hour windows before; now the windows grow while they fit
        // in a page: a week takes about eight.
        assert!(calls <= 20, "{group}: {calls} calls");
        assert!(calls >= 1);
        assert_eq!(g["events_delivered"], 1_800);
        assert!(
            g["events_per_call"].as_f64().unwrap() >= 1_800.0 / 20.0,
            "{g}"
        );
    }
    // The table shows them too.
    let table = run_ok(
        cwtap(&moto.url).args(["status", "--config"]).arg(&cfg),
        Duration::from_secs(20),
    );
    assert!(
        table.contains("CALLS") && table.contains("EV/CALL"),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_groups_cost_a_handful_of_calls_for_a_week() {
    let moto = Moto::start();
    let client = moto.client().await;
    for g in 0..20 {
        client
            .create_log_group()
            .log_group_name(format!("/empty/{g:02}"))
            .send()
            .await
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    // A budget above the default so that 20 groups take seconds.
    let cfg = write_config(
        dir.path(),
        &format!(
            "ndjson: {{path: {}}}\nlog_groups: [{{prefix: /empty/}}]\naws: {{rate_limits: {{filter_log_events: 100}}}}\nagent: {{state_path: {}, listen: 'off'}}\n",
            dir.path().join("out.ndjson").display(),
            dir.path().join("state.db").display()
        ),
    );
    let out = run_to_end(
        cwtap(&moto.url)
            .args(["backfill", "--since", "7d", "--no-progress", "--config"])
            .arg(&cfg),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let status = status_by_group(&moto, &cfg);
    assert_eq!(status.len(), 20);
    for (group, g) in &status {
        let calls = g["api_calls"].as_u64().unwrap();
        assert!((1..=12).contains(&calls), "{group}: {calls} calls");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_event_inside_a_grown_window_is_delivered_exactly_once() {
    let moto = Moto::start();
    let client = moto.client().await;
    let group = "/win/late";
    let now = now_ms();
    // A day and a half of sparse history: the catch-up windows grow from an
    // hour to the whole rest of the range.
    let history: Vec<(i64, String)> = (0..36)
        .map(|h| {
            (
                now - 36 * HOUR_MS + h * HOUR_MS + 1_000,
                format!("hourly {h}"),
            )
        })
        .collect();
    put_spread(&client, group, "s", &history).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = ndjson_config(
        dir.path(),
        &format!("  - name: {group}\n"),
        "  poll_interval_secs: 1\n  lookback_secs: 40h\n  late_arrival_secs: 60\n  listen: 'off'\n",
    );
    let mut child = spawn_run_logged(&moto.url, &cfg);
    let out = dir.path().join("out.ndjson");
    assert!(
        wait_until(Duration::from_secs(60), || read_ndjson(&out).len()
            >= history.len()),
        "the history was caught up"
    );
    // Cost: the catch-up took a handful of windows, not 40.
    let first = status_by_group(&moto, &cfg)[group].clone();
    assert!(first["api_calls"].as_u64().unwrap() <= 14, "{first}");

    // An event stamped 20 s ago, ingested now: the cursor is past it, in the
    // last (grown) catch-up window.
    let late_ts = now_ms() - 20_000;
    put_events(
        &client,
        group,
        "s",
        &[(late_ts, "late arrival".to_string())],
    )
    .await;
    assert!(
        wait_until(Duration::from_secs(90), || read_ndjson(&out)
            .iter()
            .any(|e| e["properties"]["message"] == "late arrival")),
        "the late event was delivered"
    );
    // Wait for two more polls after it (visible progress), then check
    // nothing came twice.
    let polled = |s: &Value| s["last_poll"].as_str().map(str::to_string);
    let after = polled(&status_by_group(&moto, &cfg)[group]);
    for _ in 0..2 {
        let before = polled(&status_by_group(&moto, &cfg)[group]);
        assert!(
            wait_until(Duration::from_secs(20), || polled(
                &status_by_group(&moto, &cfg)[group]
            ) != before),
            "a newer poll"
        );
    }
    assert!(after.is_some());
    stop_logged_child(&mut child, &cfg);
    let events = read_ndjson(&out);
    let ids = id_counts(&events);
    assert_eq!(ids.len(), history.len() + 1);
    assert!(ids.values().all(|&n| n == 1), "{ids:?}");
    let late: Vec<&Value> = events
        .iter()
        .filter(|e| e["properties"]["message"] == "late arrival")
        .collect();
    assert_eq!(late.len(), 1);
    let s = &status_by_group(&moto, &cfg)[group];
    assert!(
        s["late_events"].as_u64().unwrap() >= 1,
        "counted as late: {s}"
    );
}

fn stop_logged_child(child: &mut std::process::Child, config: &std::path::Path) {
    signal(child, "TERM");
    let exit = wait_exit(child, Duration::from_secs(10)).expect("exits within 10 s of SIGTERM");
    let log = std::fs::read_to_string(config.with_file_name("cwtap.log")).unwrap_or_default();
    assert!(exit.success(), "{exit:?}\n{log}");
}
