//! The metrics and health listener of `cwtap run`, scraped over real HTTP:
//! exact counters after a delivery, readiness that follows the output, and
//! the `cwtap health` probe's exit codes.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use common::proxy::{Fault, FaultProxy};
use common::*;

fn group_series(metric: &str, group: &str) -> String {
    format!("{metric}{{account=\"default\",log_group=\"{group}\"}}")
}

fn start_run(moto: &Moto, config: &Path) -> Child {
    cwtap(&moto.url)
        .args(["run", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cwtap run starts")
}

fn stop(mut child: Child) -> String {
    signal(&child, "TERM");
    assert!(
        wait_exit(&mut child, Duration::from_secs(15)).is_some(),
        "cwtap did not stop within 15 s of SIGTERM"
    );
    let out = child.wait_with_output().expect("output");
    stderr(&out)
}

fn config(dir: &Path, endpoint: &str, group: &str, port: u16, vectadb_extra: &str) -> PathBuf {
    write_config(
        dir,
        &format!(
            "vectadb:\n  endpoint: {endpoint}\n  max_backoff_secs: 1\n{vectadb_extra}log_groups:\n  - name: {group}\n    parsers: [{{type: json}}]\nagent:\n  state_path: {}\n  poll_interval_secs: 1\n  lookback_secs: 1h\n  group_traces: false\n  listen: 127.0.0.1:{port}\n",
            dir.join("state.db").display()
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_exactly_the_events_delivered_parsed_by_fallback_and_reread() {
    let moto = Moto::start();
    let receiver = Receiver::start();
    let group = "/app/metrics";
    let base = now_ms() - 2 * 60_000;
    // 20 JSON lines (the json rule matches) and 10 plain lines (fallback).
    let events: Vec<(i64, String)> = (0..30)
        .map(|i| {
            let message = if i < 20 {
                format!("{{\"i\":{i}}}")
            } else {
                format!("plain line {i}")
            };
            (base + i as i64, message)
        })
        .collect();
    put_events(&moto.client().await, group, "s1", &events).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = config(dir.path(), &receiver.url, group, port, "");
    let metrics_url = format!("http://127.0.0.1:{port}/metrics");

    let child = start_run(&moto, &config);
    let delivered = group_series("cwtap_events_delivered_total", group);
    let reached = wait_until(Duration::from_secs(60), || {
        sample(&http_get(&metrics_url).1, &delivered) == Some(30.0)
    });
    let ready = wait_until(Duration::from_secs(20), || {
        http_get(&format!("http://127.0.0.1:{port}/readyz")).0 == 200
    });
    // A few more polls (the poll interval gauge is set at each): nothing may
    // be counted twice.
    let polls = group_series("cwtap_group_poll_interval_seconds", group);
    let calls = "cwtap_api_calls_total{account=\"default\",operation=\"FilterLogEvents\"}";
    let before = sample(&http_get(&metrics_url).1, calls).unwrap_or(0.0);
    assert!(
        wait_until(Duration::from_secs(30), || {
            let now = http_get(&metrics_url).1;
            sample(&now, calls).unwrap_or(0.0) >= before + 2.0 && sample(&now, &polls).is_some()
        }),
        "two more polls"
    );
    let (status, scrape) = http_get(&metrics_url);
    let (health, _) = http_get(&format!("http://127.0.0.1:{port}/healthz"));
    let log = stop(child);
    assert!(reached, "delivered never reached 30\n{scrape}\n{log}");
    assert!(ready, "/readyz never answered 200 after delivery\n{log}");
    assert_eq!(status, 200);
    assert_eq!(health, 200);
    assert_eq!(id_counts(&receiver.stored()).len(), 30);
    assert_eq!(sample(&scrape, &delivered), Some(30.0), "{scrape}");
    assert_eq!(
        sample(&scrape, &group_series("cwtap_events_fallback_total", group)),
        Some(10.0),
        "{scrape}"
    );
    assert_eq!(
        sample(&scrape, &group_series("cwtap_events_rejected_total", group)),
        Some(0.0),
        "{scrape}"
    );
    let pulled = sample(&scrape, &group_series("cwtap_events_pulled_total", group));
    assert!(pulled.is_some_and(|p| p >= 30.0), "{scrape}");
    let calls = sample(
        &scrape,
        "cwtap_api_calls_total{account=\"default\",operation=\"FilterLogEvents\"}",
    );
    assert!(calls.is_some_and(|c| c > 0.0), "{scrape}");
    let ok_requests = sample(
        &scrape,
        "cwtap_downstream_requests_total{status_class=\"2xx\"}",
    );
    assert!(ok_requests.is_some_and(|n| n >= 1.0), "{scrape}");
    // The request size started at 10 and grew with the fast answers, within
    // the default batch_size.
    let size = sample(&scrape, "cwtap_downstream_request_events");
    assert!(
        size.is_some_and(|n| (20.0..=300.0).contains(&n)),
        "{scrape}"
    );
    let commits = sample(&scrape, "cwtap_checkpoint_commit_duration_seconds_count");
    assert!(commits.is_some_and(|n| n >= 1.0), "{scrape}");
    let lag = sample(&scrape, &group_series("cwtap_group_lag_seconds", group));
    assert!(lag.is_some_and(|l| (0.0..60.0).contains(&l)), "{scrape}");

    // A restart sweeps the late-arrival bound again: every event comes back
    // from CloudWatch and is skipped as already delivered.
    let child = start_run(&moto, &config);
    let rereads = group_series("cwtap_overlap_rereads_total", group);
    let reread_all = wait_until(Duration::from_secs(60), || {
        sample(&http_get(&metrics_url).1, &rereads).is_some_and(|n| n >= 30.0)
    });
    let (_, scrape) = http_get(&metrics_url);
    let log = stop(child);
    assert!(
        reread_all,
        "the restart did not re-read 30 events\n{scrape}\n{log}"
    );
    // At 0, and there: a restarted process shows a quiet group's counters
    // (an `increase()` alert sees its first events).
    assert_eq!(
        sample(&scrape, &delivered),
        Some(0.0),
        "a restart delivered again, or the series is missing\n{scrape}"
    );
    for family in [
        "cwtap_events_rejected_total",
        "cwtap_late_events_total",
        "cwtap_events_fallback_total",
    ] {
        assert_eq!(
            sample(&scrape, &group_series(family, group)),
            Some(0.0),
            "{family}\n{scrape}"
        );
    }
    assert_eq!(
        sample(
            &scrape,
            "cwtap_api_throttles_total{account=\"default\",operation=\"FilterLogEvents\"}"
        ),
        Some(0.0),
        "{scrape}"
    );
    assert_eq!(id_counts(&receiver.stored()).len(), 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_and_says_why_while_the_output_health_check_has_not_passed() {
    let moto = Moto::start();
    // Connections to this port complete (the kernel's backlog) but no answer
    // ever comes: the health check hangs for its whole timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = config(
        dir.path(),
        &endpoint,
        "/app/never",
        port,
        "  timeout_secs: 60\n",
    );

    let child = start_run(&moto, &config);
    let up = wait_until(Duration::from_secs(20), || {
        http_get(&format!("http://127.0.0.1:{port}/healthz")).0 == 200
    });
    let (status, body) = http_get(&format!("http://127.0.0.1:{port}/readyz"));
    let probe = run_code(
        cwtap(&moto.url).args([
            "health",
            "--url",
            &format!("http://127.0.0.1:{port}/readyz"),
        ]),
        Duration::from_secs(20),
    );
    let log = stop(child);
    assert!(up, "/healthz never answered 200\n{log}");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("output not ready"), "{body}");
    assert_eq!(probe.0, 1, "cwtap health on a 503: {probe:?}");
    assert!(probe.2.contains("503"), "{}", probe.2);
}

#[test]
fn health_exits_0_against_a_live_listener_and_1_against_a_closed_port() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let out = dir.path().join("out.ndjson");
    let config = write_config(
        dir.path(),
        &format!(
            "ndjson:\n  path: {}\nlog_groups:\n  - name: /app/quiet\nagent:\n  state_path: {}\n  listen: 127.0.0.1:{port}\n",
            out.display(),
            dir.path().join("state.db").display()
        ),
    );
    let child = start_run(&moto, &config);
    let url = format!("http://127.0.0.1:{port}/healthz");
    let up = wait_until(Duration::from_secs(20), || http_get(&url).0 == 200);
    let live = run_code(
        cwtap(&moto.url).args(["health", "--url", &url]),
        Duration::from_secs(20),
    );
    let log = stop(child);
    assert!(up, "/healthz never answered 200\n{log}");
    assert_eq!(live.0, 0, "{live:?}");

    let closed = format!("http://127.0.0.1:{}/healthz", free_port());
    let (code, _, err) = run_code(
        cwtap(&moto.url).args(["health", "--url", &closed]),
        Duration::from_secs(20),
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot reach"), "{err}");
}

/// A prefix whose discovery fails leaves its groups unpolled: `/readyz`
/// says so (503) instead of "ready" with nothing polled, and turns ready
/// once discovery works and the groups it found have polled.
#[test]
fn readyz_is_503_while_a_prefix_cannot_be_discovered() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let fixture = dir.path().join("f.ndjson");
    write_fixture(
        &fixture,
        &[fixture_event("/disc/app", "s", now_ms(), "one")],
    );
    run_ok(
        cwtap(&moto.url)
            .arg("replay")
            .arg(&fixture)
            .args(["--to", "cloudwatch", "--create"]),
        Duration::from_secs(60),
    );
    let proxy = FaultProxy::always(&moto.url, "DescribeLogGroups", Fault::Unavailable);
    let port = free_port();
    let config = write_config(
        dir.path(),
        &format!(
            "ndjson:\n  path: {}\naws: {{endpoint_url: '{}', max_retries: 1}}\nlog_groups:\n  - prefix: /disc/\nagent:\n  state_path: {}\n  poll_interval_secs: 1\n  listen: 127.0.0.1:{port}\n",
            dir.path().join("out.ndjson").display(),
            proxy.url,
            dir.path().join("state.db").display()
        ),
    );
    let child = start_run(&moto, &config);
    let url = format!("http://127.0.0.1:{port}/readyz");
    let mut last = (0, String::new());
    let failed = wait_until(Duration::from_secs(60), || {
        last = http_get(&url);
        last.1.contains("log groups not resolved:")
    });
    let during = last.clone();
    // Discovery works again: retried at the poll interval, not the
    // discovery interval (5 minutes).
    proxy.script().always = None;
    let ready = wait_until(Duration::from_secs(60), || {
        last = http_get(&url);
        last.0 == 200
    });
    let log = stop(child);
    assert!(
        failed,
        "readyz never named the failed discovery: {last:?}\n{log}"
    );
    assert_eq!(during.0, 503, "{during:?}");
    assert!(during.1.contains("/disc/"), "names the prefix: {during:?}");
    assert!(ready, "never ready after discovery worked: {last:?}\n{log}");
}
