//! Fixtures end to end against moto's server: generate -> replay -> capture
//! gives back the same messages in the same order per stream; replay to the
//! configured output gives the same events as pulling the replayed data with
//! `cwtap backfill`; pacing, retargeting, gzip, and bad input.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(180);

fn read_lines(path: &Path) -> Vec<Value> {
    let bytes = std::fs::read(path).expect("fixture exists");
    let text = if path.extension().is_some_and(|e| e == "gz") {
        use std::io::Read;
        let mut s = String::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_string(&mut s)
            .expect("valid gzip");
        s
    } else {
        String::from_utf8(bytes).expect("utf-8")
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("fixture line is JSON"))
        .collect()
}

/// Messages per (group, stream), in file order.
fn by_stream(events: &[Value]) -> BTreeMap<(String, String), Vec<String>> {
    let mut map: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for e in events {
        map.entry((
            e["log_group"].as_str().unwrap().to_string(),
            e["log_stream"].as_str().unwrap().to_string(),
        ))
        .or_default()
        .push(e["message"].as_str().unwrap().to_string());
    }
    map
}

fn generate(url: &str, out: &Path, extra: &[&str]) {
    run_ok(
        cwtap(url)
            .args(["generate", "-o"])
            .arg(out)
            .args([
                "--since",
                "50m",
                "--traces",
                "60",
                "--error-rate",
                "0.2",
                "--seed",
                "11",
            ])
            .args(extra),
        LIMIT,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_replay_capture_round_trip_keeps_messages_order_per_stream_and_count() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let generated = dir.path().join("gen.ndjson");
    generate(&moto.url, &generated, &[]);
    let original = read_lines(&generated);
    assert!(original.len() > 300, "{} events", original.len());

    let out = run_ok(
        cwtap(&moto.url)
            .arg("replay")
            .arg(&generated)
            .args(["--to", "cloudwatch", "--create"]),
        LIMIT,
    );
    assert!(
        out.contains(&format!("{} accepted, 0 rejected", original.len())),
        "{out}"
    );

    let captured = dir.path().join("captured.ndjson.gz");
    let groups: Vec<String> = by_stream(&original)
        .keys()
        .map(|(g, _)| g.clone())
        .collect();
    let mut cmd = cwtap(&moto.url);
    cmd.args(["capture", "--since", "2h", "-o"]).arg(&captured);
    for g in groups.iter().collect::<std::collections::BTreeSet<_>>() {
        cmd.args(["--group", g]);
    }
    run_ok(&mut cmd, LIMIT);
    let back = read_lines(&captured);
    assert_eq!(back.len(), original.len(), "same count");
    assert_eq!(
        by_stream(&back),
        by_stream(&original),
        "same messages, same order per stream"
    );
    // Exactly the fixture keys, with CloudWatch's ids and ingestion times.
    let keys: Vec<&str> = back[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 6, "{keys:?}");
    for k in [
        "log_group",
        "log_stream",
        "timestamp",
        "ingestion_time",
        "event_id",
        "message",
    ] {
        assert!(back[0].get(k).is_some(), "{k} missing");
    }
    // Relative timing is kept: the gaps between events are the same.
    let gaps = |events: &[Value]| -> Vec<i64> {
        let mut ts: Vec<i64> = events
            .iter()
            .map(|e| e["timestamp"].as_i64().unwrap())
            .collect();
        ts.sort_unstable();
        ts.windows(2).map(|w| w[1] - w[0]).collect()
    };
    assert_eq!(gaps(&back), gaps(&original));
}

#[test]
fn generate_is_deterministic_for_a_seed_and_range() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, seed: &str| {
        let path = dir.path().join(name);
        run_ok(
            cwtap("http://127.0.0.1:9")
                .args(["generate", "-o"])
                .arg(&path)
                .args([
                    "--since",
                    "2026-11-20T08:00:00Z",
                    "--until",
                    "2026-11-20T09:00:00Z",
                    "--services",
                    "front,back",
                    "--seed",
                    seed,
                ]),
            LIMIT,
        );
        std::fs::read(path).unwrap()
    };
    let a = run("a.ndjson", "5");
    assert_eq!(a, run("b.ndjson", "5"), "same seed, same bytes");
    assert_ne!(a, run("c.ndjson", "6"));
    let text = String::from_utf8(a).unwrap();
    assert!(text.contains("/aws/lambda/front") && text.contains("/aws/lambda/back"));
    assert!(!text.contains("/aws/lambda/checkout"));

    let (code, _, err) = run_code(
        cwtap("http://127.0.0.1:9")
            .args(["generate", "-o"])
            .arg(dir.path().join("x.ndjson"))
            .args(["--error-rate", "2"]),
        LIMIT,
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--error-rate"), "{err}");
}

/// The parts of a delivered event that must match between the two paths:
/// everything but the CloudWatch event id and the ingestion time (CloudWatch
/// assigns both when the replayed events are stored).
/// An event minus what legitimately differs between a pull and a replay: the
/// CloudWatch eventId, the ingestion time, and the trace key (which depends on
/// the order groups are processed in when a request is linked to a trace).
fn comparable(e: &Value) -> Value {
    let mut e = e.clone();
    let obj = e.as_object_mut().unwrap();
    obj["source"].as_object_mut().unwrap().remove("log_id");
    obj.remove("session_id");
    let props = obj["properties"].as_object_mut().unwrap();
    props.remove("cloudwatch_ingestion_time");
    props.remove("trace_key");
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_downstream_delivers_the_same_events_as_backfill_of_the_replayed_data() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let generated = dir.path().join("gen.ndjson");
    generate(&moto.url, &generated, &[]);
    let rebase = cwtap::time::format_ms(now_ms() - 60_000);
    run_ok(
        cwtap(&moto.url).arg("replay").arg(&generated).args([
            "--to",
            "cloudwatch",
            "--create",
            "--rebase",
            &rebase,
        ]),
        LIMIT,
    );
    let config_for = |out: &str, state: &str| {
        let path = dir.path().join(format!("{out}.yaml"));
        std::fs::write(
            &path,
            format!(
                "ndjson:\n  path: {}\nlog_groups:\n  - prefix: /aws/lambda/\n    agent_id: lambdas\n    parsers:\n      - {{type: json, field_mapping: {{trace_id: session_id}}}}\n      - {{type: regex, pattern: '^(?P<kind>START|END|REPORT) RequestId: (?P<request_id>[0-9a-f-]+)', event_type: lifecycle}}\n  - name: /aws/apigateway/demo-gw\n    parsers: [{{type: json}}]\nagent:\n  state_path: {}\n",
                dir.path().join(out).display(),
                dir.path().join(state).display()
            ),
        )
        .unwrap();
        path
    };
    let pulled_config = config_for("pulled.ndjson", "state.db");
    run_ok(
        cwtap(&moto.url)
            .args(["backfill", "--since", "3h", "--config"])
            .arg(&pulled_config),
        LIMIT,
    );
    let replayed_config = config_for("replayed.ndjson", "unused.db");
    let out = run_ok(
        cwtap(&moto.url)
            .arg("replay")
            .arg(&generated)
            .args(["--to", "downstream", "--rebase", &rebase, "--config"])
            .arg(&replayed_config),
        LIMIT,
    );
    assert!(out.contains("0 rejected"), "{out}");
    assert!(
        !dir.path().join("unused.db").exists(),
        "replay checkpoints nothing"
    );

    let key = |e: &Value| {
        (
            e["source"]["log_group"].as_str().unwrap().to_string(),
            e["source"]["log_stream"].as_str().unwrap().to_string(),
            e["timestamp"].as_str().unwrap().to_string(),
            e["properties"].to_string(),
        )
    };
    let all_pulled = read_ndjson(&dir.path().join("pulled.ndjson"));
    let all_replayed = read_ndjson(&dir.path().join("replayed.ndjson"));
    // Both grouped the events into traces and summarised closed ones.
    assert!(
        !summaries(&all_replayed).is_empty(),
        "replay emits trace summaries"
    );
    assert!(
        all_replayed
            .iter()
            .any(|e| e["properties"]["trace_key"].is_string())
    );
    let mut pulled: Vec<Value> = all_pulled.into_iter().filter(|e| !is_summary(e)).collect();
    let mut replayed: Vec<Value> = all_replayed
        .into_iter()
        .filter(|e| !is_summary(e))
        .collect();
    let generated_count = read_lines(&generated).len();
    assert_eq!(pulled.len(), generated_count);
    assert_eq!(replayed.len(), generated_count);
    pulled.sort_by_key(|e| key(&comparable(e)));
    replayed.sort_by_key(|e| key(&comparable(e)));
    for (p, r) in pulled.iter().zip(&replayed) {
        assert_eq!(comparable(p), comparable(r));
    }
    // The rules ran: JSON logs mapped, lifecycle lines typed, agent ids set.
    assert!(replayed.iter().any(|e| e["event_type"] == "lifecycle"));
    assert!(
        replayed
            .iter()
            .any(|e| e["agent_id"] == "lambdas" && e["properties"]["span_id"].is_string())
    );
    // Ingestion times keep their delay behind the (rebased) timestamps.
    let e = &replayed[0];
    assert!(
        e["properties"]["cloudwatch_ingestion_time"]
            .as_str()
            .unwrap()
            > e["timestamp"].as_str().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_paces_at_n_times_real_time_and_keeps_relative_timing() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("paced.ndjson");
    let base = 1_795_161_600_000;
    write_fixture(
        &path,
        &[0, 1_000, 2_000, 3_000]
            .iter()
            .map(|d| fixture_event("/r/paced", "s", base + d, &format!("at +{d}")))
            .collect::<Vec<_>>(),
    );
    let started = Instant::now();
    run_ok(
        cwtap(&moto.url).arg("replay").arg(&path).args([
            "--to",
            "cloudwatch",
            "--create",
            "--speed",
            "2",
        ]),
        LIMIT,
    );
    let took = started.elapsed();
    // 3 s of events at twice real time: about 1.5 s.
    assert!(took >= Duration::from_millis(1_400), "took {took:?}");
    assert!(took < Duration::from_secs(15), "took {took:?}");
    let stored = stored_events(&moto.client().await, "/r/paced").await;
    let ts: Vec<i64> = stored.iter().map(|(_, t, _)| *t).collect();
    assert_eq!(ts.len(), 4);
    assert_eq!(
        ts.windows(2).map(|w| w[1] - w[0]).collect::<Vec<_>>(),
        [1_000, 1_000, 1_000]
    );
    let newest = ts[3];
    assert!(
        (now_ms() - newest).abs() < 60_000,
        "rebased to now by default"
    );

    // max is fast.
    let started = Instant::now();
    run_ok(
        cwtap(&moto.url).arg("replay").arg(&path).args([
            "--to",
            "cloudwatch",
            "--group",
            "/r/fast",
            "--create",
            "--speed",
            "max",
        ]),
        LIMIT,
    );
    assert!(started.elapsed() < Duration::from_millis(1_400) + Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_fixture_replays_into_its_own_groups_or_a_chosen_group_and_stream() {
    let moto = Moto::start();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lambda-demo.ndjson");
    let out = run_ok(
        cwtap(&moto.url).arg("replay").arg(&fixture).args([
            "--to",
            "cloudwatch",
            "--create",
            "--json",
        ]),
        LIMIT,
    );
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["events"], 313);
    assert_eq!(report["accepted"], 313);
    let client = moto.client().await;
    assert_eq!(
        stored_events(&client, "/aws/lambda/checkout-api")
            .await
            .len(),
        128
    );
    assert_eq!(
        stored_events(&client, "/aws/apigateway/shop-gw")
            .await
            .len(),
        84
    );

    run_ok(
        cwtap(&moto.url).arg("replay").arg(&fixture).args([
            "--to",
            "cloudwatch",
            "--group",
            "/test/all",
            "--stream",
            "one",
            "--create",
        ]),
        LIMIT,
    );
    let all = stored_events(&client, "/test/all").await;
    assert_eq!(all.len(), 313);
    assert!(all.iter().all(|(s, _, _)| s == "one"));
}

/// `cwtap replay FILE ARGS...` against an endpoint where nothing listens
/// (a call would exit 1): it must exit 2 with every one of `says` in its
/// error, found before any call.
fn refused(file: &Path, args: &[&str], says: &[&str]) {
    let (code, _, err) = run_code(
        cwtap("http://127.0.0.1:9")
            .arg("replay")
            .arg(file)
            .args(args),
        LIMIT,
    );
    assert_eq!(code, 2, "{args:?}: {err}");
    for text in says {
        assert!(err.contains(text), "{args:?}: {err}");
    }
}

#[test]
fn bad_fixtures_and_flags_are_usage_errors_naming_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.ndjson");
    let good = fixture_event("/g", "s", 1_795_161_600_000, "ok").to_string();
    let to_cloudwatch = ["--to", "cloudwatch"];
    std::fs::write(&path, format!("{good}\n{good}\nnot json\n")).unwrap();
    refused(&path, &to_cloudwatch, &["bad.ndjson:3"]);

    // A key a fixture event does not have (a misspelt `ingestion_time`).
    let mut typo = fixture_event("/g", "s", 1_795_161_600_000, "x");
    typo["ingestion_tme"] = Value::from(1_795_161_600_001i64);
    std::fs::write(&path, format!("{good}\n{typo}\n")).unwrap();
    refused(&path, &to_cloudwatch, &["bad.ndjson:2", "ingestion_tme"]);

    // A name CloudWatch would refuse is found before any call, naming its line.
    for (bad, needle) in [
        (
            fixture_event("bad group!", "s", 1_795_161_600_000, "x"),
            "log_group",
        ),
        (
            fixture_event("/g", "a:b", 1_795_161_600_000, "x"),
            "log_stream",
        ),
    ] {
        std::fs::write(&path, format!("{good}\n{bad}\n")).unwrap();
        refused(
            &path,
            &["--to", "cloudwatch", "--create"],
            &["bad.ndjson:2", needle],
        );
    }

    let ok = dir.path().join("ok.ndjson");
    std::fs::write(&ok, format!("{good}\n")).unwrap();
    for (args, needle) in [
        (vec!["--to", "downstream"], "needs --config"),
        (vec!["--to", "cloudwatch", "--speed", "0"], "--speed"),
        (
            vec!["--to", "cloudwatch", "--rebase", "tomorrow"],
            "--rebase",
        ),
        (
            vec!["--to", "cloudwatch", "--group", "bad group"],
            "--group",
        ),
        (vec!["--to", "cloudwatch", "--stream", "a:b"], "--stream"),
        (
            vec!["--to", "downstream", "--create"],
            "--create applies to --to cloudwatch only",
        ),
        (
            vec!["--to", "downstream", "--speed", "10"],
            "--speed applies to --to cloudwatch only",
        ),
        (vec!["--to", "elsewhere"], "invalid value"),
    ] {
        refused(&ok, &args, &[needle]);
    }
    // A file that is not there is a usage error too, as a missing --config.
    refused(
        &dir.path().join("none.ndjson"),
        &to_cloudwatch,
        &["none.ndjson"],
    );
    // A `.gz` that is not gzip: the file and the line it fails at.
    let fake = dir.path().join("fake.ndjson.gz");
    std::fs::write(&fake, format!("{good}\n")).unwrap();
    refused(&fake, &to_cloudwatch, &["fake.ndjson.gz:1", "not gzip"]);
}

/// SIGINT while a PutLogEvents call is in flight: the call is let finish,
/// and what the report counts as accepted is exactly what CloudWatch holds
/// (a resumed replay starts from a true count).
#[test]
fn an_interrupted_replay_counts_exactly_what_cloudwatch_stored() {
    let moto = Moto::start();
    let proxy = common::proxy::FaultProxy::always(
        &moto.url,
        "PutLogEvents",
        common::proxy::Fault::Delay(Duration::from_secs(2)),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("two.ndjson");
    let now = now_ms();
    let events: Vec<Value> = ["a", "b"]
        .iter()
        .flat_map(|s| {
            (0..5).map(move |i| fixture_event("/int/g", s, now - 60_000 + i, &format!("{s} {i}")))
        })
        .collect();
    write_fixture(&path, &events);
    let mut child = cwtap(&proxy.url)
        .arg("replay")
        .arg(&path)
        .args([
            "--to",
            "cloudwatch",
            "--create",
            "--rebase",
            "keep",
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The first call finds no group (then it is created); the second is
    // the one in flight at the signal.
    assert!(
        wait_until(LIMIT, || proxy.script().calls_at.len() >= 2),
        "a second PutLogEvents call started"
    );
    signal(&child, "INT");
    assert!(wait_exit(&mut child, LIMIT).is_some(), "replay stops");
    let out = child.wait_with_output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    assert_eq!(report["interrupted"], true, "{report}");
    let captured = dir.path().join("back.ndjson");
    run_ok(
        cwtap(&moto.url)
            .args(["capture", "--group", "/int/g", "--since", "1h", "-o"])
            .arg(&captured),
        LIMIT,
    );
    let stored = read_lines(&captured).len();
    assert_eq!(report["accepted"], stored, "{report}");
    assert_eq!(stored, 5, "the call in flight finished: one stream stored");
}

/// A capture that fails (here: its second group does not exist) leaves no
/// file that looks like a complete fixture, and no partial one either.
#[test]
fn a_failed_capture_leaves_no_file_behind() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let fixture = dir.path().join("in.ndjson");
    write_fixture(
        &fixture,
        &[fixture_event("/cap/ok", "s", now_ms() - 1_000, "one")],
    );
    run_ok(
        cwtap(&moto.url).arg("replay").arg(&fixture).args([
            "--to",
            "cloudwatch",
            "--create",
            "--rebase",
            "keep",
        ]),
        LIMIT,
    );
    let out = dir.path().join("x.ndjson");
    let (code, _, err) = run_code(
        cwtap(&moto.url)
            .args([
                "capture",
                "--group",
                "/cap/ok",
                "--group",
                "/cap/missing",
                "--since",
                "1h",
                "-o",
            ])
            .arg(&out),
        LIMIT,
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("/cap/missing") && err.contains("not found"),
        "{err}"
    );
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("x."))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    // A capture that succeeds writes the file under its name.
    run_ok(
        cwtap(&moto.url)
            .args(["capture", "--group", "/cap/ok", "--since", "1h", "-o"])
            .arg(&out),
        LIMIT,
    );
    assert_eq!(read_lines(&out).len(), 1);
    // To standard output, read by something that stops early (`| head`):
    // the command ends quietly, with success.
    let mut child = cwtap(&moto.url)
        .args(["capture", "--group", "/cap/ok", "--since", "1h"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let done = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&done.stderr);
    assert!(done.status.success(), "{err}");
    assert!(!err.contains("error"), "{err}");
}

/// Without --create, a group or stream that does not exist is found before
/// the first write: the events of the ones that do exist are not stored
/// (a second attempt would store them twice).
#[test]
fn without_create_a_missing_destination_stops_the_replay_before_any_write() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    run_ok(cwtap(&moto.url).args(["groups", "create", "/pre/a"]), LIMIT);
    run_ok(
        cwtap(&moto.url).args(["streams", "create", "/pre/a", "s"]),
        LIMIT,
    );
    let now = now_ms();
    for (bad, names) in [
        (
            fixture_event("/pre/missing", "s", now - 500, "two"),
            "/pre/missing",
        ),
        (
            fixture_event("/pre/a", "nostream", now - 500, "two"),
            "nostream",
        ),
    ] {
        let path = dir.path().join("f.ndjson");
        write_fixture(
            &path,
            &[fixture_event("/pre/a", "s", now - 1_000, "one"), bad],
        );
        let (code, _, err) = run_code(
            cwtap(&moto.url).arg("replay").arg(&path).args([
                "--to",
                "cloudwatch",
                "--rebase",
                "keep",
            ]),
            LIMIT,
        );
        assert_eq!(code, 1, "{err}");
        assert!(err.contains(names) && err.contains("--create"), "{err}");
    }
    let back = dir.path().join("back.ndjson");
    run_ok(
        cwtap(&moto.url)
            .args(["capture", "--group", "/pre/a", "--since", "1h", "-o"])
            .arg(&back),
        LIMIT,
    );
    assert!(read_lines(&back).is_empty(), "nothing was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_downstream_exits_1_when_the_output_rejected_an_event_and_delivers_the_rest() {
    let receiver = Receiver::start();
    receiver.script().poison_marker = Some("poison".into());
    let dir = tempfile::tempdir().unwrap();
    let now = now_ms();
    let events: Vec<Value> = (0..5)
        .map(|i| {
            let message = if i == 2 {
                "poison pill".to_string()
            } else {
                format!("event {i}")
            };
            fixture_event("/r/poison", "s", now - 10_000 + i, &message)
        })
        .collect();
    let fixture = dir.path().join("f.ndjson");
    write_fixture(&fixture, &events);
    let config = dir.path().join("c.yaml");
    std::fs::write(
        &config,
        format!(
            "vectadb: {{endpoint: \"{}\"}}\nlog_groups:\n  - name: /r/poison\n",
            receiver.url
        ),
    )
    .unwrap();
    // No CloudWatch is called: the endpoint is a closed port.
    let (code, out, err) = run_code(
        cwtap("http://127.0.0.1:9")
            .arg("replay")
            .arg(&fixture)
            .args(["--to", "downstream", "--config"])
            .arg(&config),
        LIMIT,
    );
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("4 delivered, 1 rejected"), "{out}");
    assert!(
        err.contains("the output rejected 1 of the 5 events"),
        "{err}"
    );
    let mut stored: Vec<String> = receiver
        .stored()
        .iter()
        .map(|e| e["properties"]["message"].as_str().unwrap().to_string())
        .collect();
    stored.sort();
    assert_eq!(stored, ["event 0", "event 1", "event 3", "event 4"]);
}
