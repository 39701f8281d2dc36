//! The shared API rate budget, against moto's server behind the
//! fault-injecting proxy: a throttling storm that lets half the calls through
//! for 30 s, and a fleet of 500 log groups polled within the budget.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::proxy::{Fault, FaultProxy};
use common::*;

/// The current FilterLogEvents rate limit from `/metrics`, if it answers.
fn filter_rate(port: u16) -> Option<f64> {
    let (status, body) = http_get(&format!("http://127.0.0.1:{port}/metrics"));
    (status == 200)
        .then(|| {
            sample(
                &body,
                "cwtap_api_rate_limit{account=\"default\",operation=\"FilterLogEvents\"}",
            )
        })
        .flatten()
}

/// Most calls seen in any `span` of the run (a sliding window over arrivals).
fn busiest(calls: &[Instant], span: Duration) -> usize {
    let mut most = 0;
    let mut from = 0;
    for (i, t) in calls.iter().enumerate() {
        while t.duration_since(calls[from]) >= span {
            from += 1;
        }
        most = most.max(i + 1 - from);
    }
    most
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttling_storm_loses_nothing_and_the_rate_adapts_and_recovers() {
    let moto = Moto::start();
    let client = moto.client().await;
    let proxy = FaultProxy::start(&moto.url, "FilterLogEvents");
    let groups = ["/storm/a", "/storm/b", "/storm/c"];
    for g in groups {
        put_events(&client, g, "s", &[(now_ms() - 5_000, format!("{g} first"))]).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let out = dir.path().join("out.ndjson");
    let config = write_config(
        dir.path(),
        &format!(
            "ndjson:\n  path: {}\n  batch_size: 50\nlog_groups:\n{}agent:\n  state_path: {}\n  poll_interval_secs: 1\n  max_idle_poll_interval_secs: 2\n  lookback_secs: 5m\n  late_arrival_secs: 60\n  group_traces: false\n  listen: 127.0.0.1:{port}\n",
            out.display(),
            groups
                .iter()
                .map(|g| format!("  - name: {g}\n"))
                .collect::<String>(),
            dir.path().join("state.db").display()
        ),
    );
    let child = spawn_run_logged(&proxy.url, &config);
    let distinct = || id_counts(&read_ndjson(&out)).len();
    assert!(wait_until(Duration::from_secs(30), || distinct() == 3));
    assert_eq!(filter_rate(port), Some(5.0), "the default budget is 5/s");

    // The storm: every other FilterLogEvents answered ThrottlingException
    // for 30 s, while events keep arriving in every group.
    let mut expected: HashSet<String> = groups.iter().map(|g| format!("{g} first")).collect();
    proxy.script().every_other = Some(Fault::Throttle);
    let storm = Instant::now();
    let calls_before = proxy.script().calls_at.len();
    let mut lowest = f64::MAX;
    let mut n = 0;
    while storm.elapsed() < Duration::from_secs(30) {
        for g in groups {
            let message = format!("{g} storm {n}");
            put_events(&client, g, "s", &[(now_ms() - 300, message.clone())]).await;
            expected.insert(message);
        }
        n += 1;
        if let Some(rate) = filter_rate(port) {
            lowest = lowest.min(rate);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (storm_calls, throttled) = {
        let mut script = proxy.script();
        script.every_other = None;
        (script.calls_at.len() - calls_before, script.injected)
    };

    // After the storm: everything arrives once and the rate climbs back.
    let all = wait_until(Duration::from_secs(60), || distinct() == expected.len());
    let recovered = wait_until(Duration::from_secs(90), || filter_rate(port) == Some(5.0));
    stop_logged(child, &config);

    let events = read_ndjson(&out);
    let counts = id_counts(&events);
    let messages: HashSet<String> = message_counts(&events).into_keys().collect();
    let missing: Vec<_> = expected.difference(&messages).take(5).collect();
    assert!(all && missing.is_empty(), "lost in the storm: {missing:?}");
    assert_eq!(events.len(), expected.len(), "nothing delivered twice");
    assert!(counts.values().all(|&c| c == 1));
    assert!(throttled >= 5, "the storm was felt ({throttled} throttled)");
    assert!(
        lowest <= 2.5,
        "the rate adapted to the storm: lowest {lowest}/s seen, configured 5/s"
    );
    assert!(recovered, "the rate recovered to 5/s after the storm");
    // Retries go through the same budget: the storm did not raise the call
    // rate above the budget (30 s at 5/s, plus the slot free at the start).
    assert!(
        storm_calls <= 30 * 5 + 1,
        "{storm_calls} calls during the 30 s storm: a retry storm"
    );
    eprintln!(
        "storm: {storm_calls} FilterLogEvents calls in 30 s ({throttled} throttled), lowest rate {lowest:.2}/s, {} events once each",
        expected.len()
    );
}

/// Creates `count` groups under `/fleet/` and an event in every tenth one.
async fn seed_fleet(moto: &Moto, count: usize) -> HashSet<String> {
    let client = moto.client().await;
    let mut expected = HashSet::new();
    for i in 0..count {
        let group = format!("/fleet/g{i:03}");
        if i % 10 == 0 {
            let message = format!("{group} hello");
            put_events(
                &client,
                &group,
                "s",
                &[(now_ms() - 10_000, message.clone())],
            )
            .await;
            expected.insert(message);
        } else {
            client
                .create_log_group()
                .log_group_name(&group)
                .send()
                .await
                .expect("create group");
        }
    }
    expected
}

fn fleet_config(dir: &Path, out: &Path, rate: f64) -> PathBuf {
    write_config(
        dir,
        &format!(
            "ndjson:\n  path: {}\naws:\n  rate_limits:\n    filter_log_events: {rate}\n    describe_log_groups: {rate}\nlog_groups:\n  - prefix: /fleet/\nagent:\n  state_path: {}\n  poll_interval_secs: 2\n  max_idle_poll_interval_secs: 4\n  lookback_secs: 1m\n  group_traces: false\n  listen: 'off'\n",
            out.display(),
            dir.join("state.db").display()
        ),
    )
}

/// Runs a fleet of `count` groups at `rate` FilterLogEvents calls per
/// second until `cwtap status` shows an achieved interval for every group,
/// and checks the budget held and every event arrived once.
async fn fleet(count: usize, rate: f64, limit: Duration) {
    let moto = Moto::start();
    let expected = seed_fleet(&moto, count).await;
    let proxy = FaultProxy::start(&moto.url, "FilterLogEvents");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.ndjson");
    let config = fleet_config(dir.path(), &out, rate);
    let child = spawn_run_logged(&proxy.url, &config);
    let status = || -> Vec<serde_json::Value> {
        let out = cwtap(&moto.url)
            .args(["status", "--json", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    };
    let every_group_polled_twice = wait_until(limit, || {
        let rows = status();
        rows.len() == count && rows.iter().all(|r| r["poll_interval_secs"].is_number())
    });
    stop_logged(child, &config);
    let rows = status();
    assert_eq!(rows.len(), count, "every group has a state row");
    assert!(
        every_group_polled_twice,
        "{} of {count} groups polled twice within {limit:?}",
        rows.iter()
            .filter(|r| r["poll_interval_secs"].is_number())
            .count()
    );
    for r in &rows {
        assert!(r["lag_secs"].is_number(), "status shows the lag: {r}");
        assert!(r["last_error"].is_null(), "poll error: {r}");
    }
    let events = read_ndjson(&out);
    let messages: HashSet<String> = message_counts(&events).into_keys().collect();
    assert_eq!(messages, expected, "every event of the fleet arrived");
    assert_eq!(events.len(), expected.len(), "nothing delivered twice");
    // The budget held: in any 5 s, at most 5 s worth of calls plus the slot
    // free at the start (and one for scheduling noise).
    let calls = proxy.script().calls_at.clone();
    let most = busiest(&calls, Duration::from_secs(5));
    assert!(
        most as f64 <= 5.0 * rate + 2.0,
        "{most} FilterLogEvents calls in 5 s with a budget of {rate}/s"
    );
    let intervals: Vec<f64> = rows
        .iter()
        .filter_map(|r| r["poll_interval_secs"].as_f64())
        .collect();
    let longest = intervals.iter().cloned().fold(0.0, f64::max);
    eprintln!(
        "fleet of {count} at {rate}/s: {} calls, busiest 5 s {most}, longest achieved interval {longest:.1} s",
        calls.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_groups_are_all_polled_within_a_shared_budget() {
    // 25 calls/s: a round of 500 groups takes at least 20 s.
    fleet(500, 25.0, Duration::from_secs(150)).await;
}

/// The same at CloudWatch's default 5 calls/s: a round takes at least 100 s.
/// Long; run with `./scripts/test.sh --test budget -- --ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn five_hundred_groups_are_all_polled_at_the_default_budget() {
    fleet(500, 5.0, Duration::from_secs(420)).await;
}
