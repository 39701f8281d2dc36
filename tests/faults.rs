//! CloudWatch faults moto cannot produce on demand, injected by a proxy in
//! front of moto's server: throttling and 5xx are retried with backoff and lose
//! nothing; AccessDenied names the missing IAM action; a backfill that cannot
//! finish exits non-zero and a re-run completes it exactly once.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::proxy::{Fault, FaultProxy};
use common::*;

fn config(dir: &Path, extra_aws: &str) -> PathBuf {
    write_config(
        dir,
        &format!(
            "aws:\n  region: us-east-1\n{extra_aws}ndjson:\n  path: {}\nlog_groups:\n  - name: /app/faulty\nagent:\n  state_path: {}\n  max_window_secs: 10m\n",
            dir.join("out.ndjson").display(),
            dir.join("state.db").display()
        ),
    )
}

async fn seed(moto: &Moto) {
    let client = moto.client().await;
    let base = now_ms() - 50 * 60_000;
    let events: Vec<(i64, String)> = (0..500)
        .map(|i| (base + i * 6_000, format!("event {i}")))
        .collect();
    put_events(&client, "/app/faulty", "s", &events).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_and_server_errors_are_retried_and_lose_nothing() {
    let moto = Moto::start();
    seed(&moto).await;
    let proxy = FaultProxy::start(&moto.url, "FilterLogEvents");
    proxy.script().faults.extend([
        Fault::Throttle,
        Fault::Throttle,
        Fault::Unavailable,
        Fault::Internal,
        Fault::Throttle,
    ]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let out = run_to_end(
        cwtap(&proxy.url)
            .args(["backfill", "--since", "1h", "--config"])
            .arg(&cfg),
        Duration::from_secs(120),
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert_eq!(proxy.script().injected, 5);
    assert!(
        err.contains("ThrottlingException"),
        "retries are logged: {err}"
    );
    let events = read_ndjson(&dir.path().join("out.ndjson"));
    assert_eq!(id_counts(&events).len(), 500);
    assert_eq!(events.len(), 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_connections_and_calls_past_the_timeout_are_retried_and_lose_nothing() {
    let moto = Moto::start();
    seed(&moto).await;
    let proxy = FaultProxy::start(&moto.url, "FilterLogEvents");
    proxy.script().faults.extend([
        Fault::Drop,
        Fault::Delay(Duration::from_millis(2_500)),
        Fault::Drop,
        Fault::Delay(Duration::from_millis(2_500)),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "  timeout_secs: 1\n");
    let out = run_to_end(
        cwtap(&proxy.url)
            .args(["backfill", "--since", "1h", "--config"])
            .arg(&cfg),
        Duration::from_secs(120),
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(proxy.script().faults.is_empty(), "every fault was met");
    assert!(err.contains("retrying"), "retries are logged: {err}");
    let events = read_ndjson(&dir.path().join("out.ndjson"));
    assert_eq!(id_counts(&events).len(), 500);
    assert_eq!(events.len(), 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_denied_names_the_missing_iam_action_and_fails_the_backfill() {
    let moto = Moto::start();
    seed(&moto).await;
    let proxy = FaultProxy::always(&moto.url, "FilterLogEvents", Fault::AccessDenied);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let out = run_to_end(
        cwtap(&proxy.url)
            .args(["backfill", "--since", "1h", "--config"])
            .arg(&cfg),
        Duration::from_secs(60),
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("logs:FilterLogEvents"),
        "names the IAM action: {err}"
    );
    assert!(err.contains("/app/faulty"), "names the group: {err}");
    assert_eq!(proxy.script().injected, 1, "access denied is not retried");
    assert!(read_ndjson(&dir.path().join("out.ndjson")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_that_cannot_finish_exits_non_zero_and_a_rerun_completes_it_once() {
    let moto = Moto::start();
    // Two groups, each small enough to be read in one call: the proxy lets
    // exactly one call through, so one group is delivered and the other is
    // throttled for good, whichever goes first.
    let client = moto.client().await;
    let base = now_ms() - 50 * 60_000;
    for group in ["/app/faulty", "/app/faulty2"] {
        let events: Vec<(i64, String)> = (0..250)
            .map(|i| (base + i * 12_000, format!("{group} event {i}")))
            .collect();
        put_events(&client, group, "s", &events).await;
    }
    let proxy = FaultProxy::start(&moto.url, "FilterLogEvents");
    {
        let mut script = proxy.script();
        script.always = Some(Fault::Throttle);
        script.always_after = 1;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "aws:\n  region: us-east-1\n  max_retries: 2\nndjson:\n  path: {}\nlog_groups:\n  - name: /app/faulty\n  - name: /app/faulty2\nagent:\n  state_path: {}\n",
            dir.path().join("out.ndjson").display(),
            dir.path().join("state.db").display()
        ),
    );
    let out = run_to_end(
        cwtap(&proxy.url)
            .args(["backfill", "--since", "1h", "--no-progress", "--config"])
            .arg(&cfg),
        Duration::from_secs(60),
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("after 3 attempts"), "{err}");
    assert_eq!(proxy.script().injected, 3, "one call plus two retries");
    let partial = read_ndjson(&dir.path().join("out.ndjson"));
    assert_eq!(partial.len(), 250, "the group that was read is delivered");

    proxy.script().always = None;
    let out = run_to_end(
        cwtap(&proxy.url)
            .args(["backfill", "--since", "1h", "--config"])
            .arg(&cfg),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let events = read_ndjson(&dir.path().join("out.ndjson"));
    assert_eq!(id_counts(&events).len(), 500);
    assert_eq!(events.len(), 500, "nothing delivered twice");
}
