//! Invalid configuration: exit code 2, a message naming the file and the line
//! or key, and no state file created (nothing else is touched either: the
//! AWS endpoint below does not exist, so any call would fail differently).

mod common;

use std::time::Duration;

use common::*;

const GOOD_GROUPS: &str = "log_groups:\n  - name: /aws/lambda/app\n";

struct Case {
    name: &'static str,
    yaml: String,
    /// Fragments the error message must contain (besides the file name).
    expect: &'static [&'static str],
}

fn cases() -> Vec<Case> {
    let out = "ndjson: {path: out.ndjson}\n";
    vec![
        Case {
            name: "yaml syntax error",
            yaml: format!("{out}log_groups:\n  - name: /a\n    parsers: [\n"),
            expect: &["line"],
        },
        Case {
            name: "unknown key",
            yaml: format!("{out}{GOOD_GROUPS}agent:\n  poll_intervall_secs: 5\n"),
            expect: &["unknown field `poll_intervall_secs`", "line 6"],
        },
        Case {
            name: "bad regex",
            yaml: format!(
                "{out}log_groups:\n  - name: /a\n    parsers:\n      - {{name: r, type: regex, pattern: '(unclosed'}}\n"
            ),
            expect: &["log_groups[0].parsers[0].pattern", "invalid regex"],
        },
        Case {
            name: "unknown rule set",
            yaml: format!(
                "{out}log_groups:\n  - name: /a\n    parsers: [{{use: lambda}}, {{use: nginx}}]\n"
            ),
            expect: &[
                "log_groups[0].parsers[1].use",
                "\"nginx\"",
                "built-in sets: lambda",
            ],
        },
        Case {
            name: "unknown redaction kind",
            yaml: format!("{out}{GOOD_GROUPS}redact: {{emails: true, ibans: true}}\n"),
            expect: &["unknown field `ibans`", "line 4"],
        },
        Case {
            name: "an empty agent_id",
            yaml: format!("{out}log_groups:\n  - name: /a\n  - {{name: /b, agent_id: ''}}\n"),
            expect: &["log_groups[1].agent_id", "must not be empty"],
        },
        Case {
            name: "a kv rule taking lines without pairs",
            yaml: format!(
                "{out}log_groups:\n  - name: /a\n    parsers: [{{name: k, type: kv, min_pairs: 0}}]\n"
            ),
            expect: &["log_groups[0].parsers[0].min_pairs", "at least 1"],
        },
        Case {
            name: "a key given twice",
            yaml: format!(
                "{out}{GOOD_GROUPS}agent:\n  poll_interval_secs: 5\n  poll_interval_secs: 6\n"
            ),
            // (Lines 6 and 7: the test adds `state_path` after `agent:`.)
            expect: &[
                "line 7",
                "`agent.poll_interval_secs` is given twice (first at line 6)",
            ],
        },
        Case {
            // Otherwise the second section would silently win.
            name: "a section given twice",
            yaml: format!("{out}{GOOD_GROUPS}ndjson: {{path: other.ndjson}}\n"),
            expect: &["line 4", "`ndjson` is given twice (first at line 1)"],
        },
        Case {
            name: "a key of a list item given twice",
            yaml: format!("{out}log_groups:\n  - name: /a\n    name: /b\n"),
            expect: &[
                "line 4",
                "`log_groups[0].name` is given twice (first at line 3)",
            ],
        },
        Case {
            name: "missing log_groups",
            yaml: out.to_string(),
            expect: &["log_groups", "missing"],
        },
        Case {
            name: "bad duration",
            yaml: format!("{out}{GOOD_GROUPS}agent:\n  late_arrival_secs: 5 fortnights\n"),
            expect: &["agent.late_arrival_secs", "invalid duration"],
        },
        Case {
            name: "negative duration",
            yaml: format!("{out}{GOOD_GROUPS}agent:\n  poll_interval_secs: -5\n"),
            expect: &["agent.poll_interval_secs", "cannot be negative", "line 6"],
        },
        Case {
            name: "fractional seconds",
            yaml: format!("{out}{GOOD_GROUPS}agent:\n  lookback_secs: 1.5\n"),
            expect: &["agent.lookback_secs", "whole seconds", "line 6"],
        },
        Case {
            name: "no output",
            yaml: GOOD_GROUPS.to_string(),
            expect: &["no output is configured"],
        },
        Case {
            name: "empty file",
            yaml: String::new(),
            expect: &["vectadb, otlp, ndjson: no output is configured"],
        },
        Case {
            name: "two outputs",
            yaml: format!("{out}vectadb: {{endpoint: 'http://127.0.0.1:9'}}\n{GOOD_GROUPS}"),
            expect: &["two outputs"],
        },
        Case {
            name: "wrong type",
            yaml: format!("{out}{GOOD_GROUPS}agent:\n  auto_create_traces: maybe\n"),
            expect: &["auto_create_traces", "line 6"],
        },
        Case {
            name: "unset variable",
            yaml: format!(
                "vectadb: {{endpoint: 'http://127.0.0.1:9', api_key: '${{CWTAP_TEST_UNSET_VAR}}'}}\n{GOOD_GROUPS}"
            ),
            expect: &["vectadb.api_key", "CWTAP_TEST_UNSET_VAR"],
        },
        Case {
            name: "bad group name",
            yaml: format!("{out}log_groups:\n  - name: 'has space'\n"),
            expect: &["log_groups[0].name"],
        },
        Case {
            name: "filter pattern in streams mode",
            yaml: format!(
                "{out}log_groups:\n  - {{name: /a}}\n  - {{name: /b, mode: streams, filter_pattern: ERROR}}\n"
            ),
            expect: &["log_groups[1].filter_pattern", "mode: streams"],
        },
        Case {
            name: "rate limit of zero",
            yaml: format!("{out}{GOOD_GROUPS}aws:\n  rate_limits: {{filter_log_events: 0}}\n"),
            expect: &[
                "aws.rate_limits.filter_log_events",
                "between 0.01 and 10000",
            ],
        },
        Case {
            name: "unknown API in rate limits",
            yaml: format!("{out}{GOOD_GROUPS}aws:\n  rate_limits: {{put_log_events: 10}}\n"),
            expect: &["unknown field `put_log_events`", "line 5"],
        },
        Case {
            name: "idle interval below the poll interval",
            yaml: format!(
                "{out}{GOOD_GROUPS}agent:\n  poll_interval_secs: 30\n  max_idle_poll_interval_secs: 10\n"
            ),
            expect: &["agent.max_idle_poll_interval_secs"],
        },
        Case {
            name: "unknown read mode",
            yaml: format!("{out}log_groups:\n  - {{name: /a, mode: insights}}\n"),
            expect: &["unknown variant `insights`", "filter", "streams", "line 3"],
        },
        Case {
            name: "a poll interval under a second",
            yaml: format!("{out}{GOOD_GROUPS}agent:\n  poll_interval_secs: 500ms\n"),
            expect: &["agent.poll_interval_secs", "at least 1s"],
        },
        Case {
            name: "discovery without pause",
            yaml: format!("{out}{GOOD_GROUPS}agent:\n  discovery_interval_secs: 0\n"),
            expect: &["agent.discovery_interval_secs", "at least 1s"],
        },
        Case {
            name: "an HTTP timeout of 0",
            yaml: format!(
                "vectadb: {{endpoint: 'http://127.0.0.1:1', timeout_secs: 0}}\n{GOOD_GROUPS}"
            ),
            expect: &["vectadb.timeout_secs", "at least 1"],
        },
        Case {
            name: "an OTLP backoff cap of 0",
            yaml: format!(
                "otlp: {{endpoint: 'http://127.0.0.1:1', max_backoff_secs: 0}}\n{GOOD_GROUPS}"
            ),
            expect: &["otlp.max_backoff_secs", "at least 1"],
        },
        Case {
            name: "two rules of one name",
            yaml: format!(
                "{out}log_groups:\n  - name: /a\n    parsers: [{{use: lambda}}, {{name: lambda-report, type: regex, pattern: x}}]\n"
            ),
            expect: &[
                "log_groups[0].parsers",
                "two rules are named \"lambda-report\"",
            ],
        },
        Case {
            name: "a duration with an unknown unit",
            yaml: format!("{out}{GOOD_GROUPS}agent:\n  lookback_secs: 10x\n"),
            expect: &["agent.lookback_secs", "unknown unit \"x\"", "90s"],
        },
        Case {
            name: "a number of the wrong type",
            yaml: format!("ndjson: {{path: out.ndjson, batch_size: lots}}\n{GOOD_GROUPS}"),
            expect: &[
                "ndjson.batch_size",
                "expected a whole number (0 or more)",
                "line 1",
            ],
        },
        Case {
            // "syntax": no state_path is added (it would be a second `agent`).
            name: "agent syntax: not a mapping",
            yaml: format!("{out}{GOOD_GROUPS}agent: 5\n"),
            expect: &["agent", "expected a mapping", "line 4"],
        },
        Case {
            name: "a string or a list expected",
            yaml: format!(
                "{out}log_groups:\n  - name: /a\n    parsers: [{{name: r, type: json, fields: {{trace_id: 5}}}}]\n"
            ),
            expect: &["expected a string or a list of strings", "line 4"],
        },
        Case {
            name: "a control character",
            yaml: format!("{out}{GOOD_GROUPS}agent:\n  poll_interval_secs: 5\u{1}\n"),
            expect: &["line 6, column 24", "control character (U+0001)"],
        },
        Case {
            name: "name and prefix",
            yaml: format!("{out}log_groups:\n  - {{name: /a, prefix: /b}}\n"),
            expect: &["log_groups[0]", "not both"],
        },
    ]
}

#[test]
fn every_invalid_config_exits_2_naming_file_and_place_before_touching_state() {
    for case in cases() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.db");
        let yaml = format!("{}\n", case.yaml);
        // Point the state file into the temp dir when the YAML allows it.
        let yaml = if yaml.contains("agent:\n") {
            yaml.replace(
                "agent:\n",
                &format!("agent:\n  state_path: {}\n", state.display()),
            )
        } else if !case.name.contains("syntax") {
            format!("{yaml}agent:\n  state_path: {}\n", state.display())
        } else {
            yaml
        };
        let config = write_config(dir.path(), &yaml);
        for command in ["check", "run", "backfill"] {
            let mut cmd = cwtap("http://127.0.0.1:9");
            cmd.current_dir(dir.path())
                .arg(command)
                .arg("--config")
                .arg(&config);
            if command == "backfill" {
                cmd.args(["--since", "1h"]);
            }
            let out = run_to_end(&mut cmd, Duration::from_secs(20));
            let err = stderr(&out);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{}: `{command}` exit code; stderr:\n{err}",
                case.name
            );
            assert!(
                err.contains("config.yaml"),
                "{}: message names the file: {err}",
                case.name
            );
            for fragment in case.expect {
                assert!(
                    err.contains(fragment),
                    "{}: message contains {fragment:?}: {err}",
                    case.name
                );
            }
            assert!(
                !state.exists(),
                "{}: `{command}` created the state file",
                case.name
            );
            assert!(
                !dir.path().join("cwtap-state.db").exists(),
                "{}: default state file created",
                case.name
            );
        }
    }
}

#[test]
fn missing_config_file_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_to_end(
        cwtap("http://127.0.0.1:9")
            .current_dir(dir.path())
            .args(["check"]),
        Duration::from_secs(20),
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("config.yaml"), "{err}");
}

/// `AWS_ENDPOINT_URL` is checked as `aws.endpoint_url` is: a typo or a
/// password in it is a configuration error naming the variable, and the
/// password is not repeated.
#[test]
fn a_bad_aws_endpoint_url_in_the_environment_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!("ndjson: {{path: out.ndjson}}\n{GOOD_GROUPS}"),
    );
    for (url, expect) in [
        (
            "http://u:pw-do-not-print@127.0.0.1:9",
            "credentials in the URL",
        ),
        ("127.0.0.1:9", "not an http:// or https:// URL"),
    ] {
        let out = run_to_end(
            cwtap(url)
                .current_dir(dir.path())
                .args(["check", "--config"])
                .arg(&config),
            Duration::from_secs(20),
        );
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{url}: {err}");
        assert!(
            err.contains("AWS_ENDPOINT_URL") && err.contains(expect),
            "{err}"
        );
        assert!(!err.contains("pw-do-not-print"), "{err}");
    }
    let out = run_to_end(
        cwtap("http://127.0.0.1:9")
            .current_dir(dir.path())
            .args(["check", "--config"])
            .arg(&config),
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("endpoint http://127.0.0.1:9 (AWS_ENDPOINT_URL)"),
        "check says where the endpoint comes from"
    );
}

#[test]
fn bad_command_line_values_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!("ndjson: {{path: out.ndjson}}\n{GOOD_GROUPS}"),
    );
    for args in [
        vec!["backfill", "--since", "7 fortnights"],
        vec!["backfill", "--since", "1h", "--until", "2h"],
        vec!["backfill", "--since", "1h", "--group", "/not/configured"],
        vec!["backfill"],
        vec!["frobnicate"],
    ] {
        let out = run_to_end(
            cwtap("http://127.0.0.1:9")
                .current_dir(dir.path())
                .args(&args)
                .arg("--config")
                .arg(&config),
            Duration::from_secs(20),
        );
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            !dir.path().join("cwtap-state.db").exists(),
            "{args:?} created the state file"
        );
        assert!(
            !dir.path().join("cwtap-state.db.lock").exists(),
            "{args:?} left a lock file"
        );
    }
}

#[test]
fn vectadb_agent_config_loads_unchanged_and_config_path_env_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = r#"
aws:     { region: "us-east-1", profile: "optional" }
vectadb: { endpoint: "http://localhost:8080", api_key: "sk-vectadb-secret-123", batch_size: 100, timeout_secs: 30 }
log_groups:
  - name: "/aws/lambda/x"
    agent_id: "optional"
    filter_pattern: "optional CloudWatch filter syntax"
    parsers:
      - name: "json"
        type: "json"
        field_mapping: { source_key: target_key }
        event_type: "optional"
        priority: 100
      - name: "chain"
        type: "regex"
        pattern: "Entering (?P<chain>\\w+) chain"
      - name: "lc"
        type: "langchain"
      - name: "li"
        type: "llamaindex"
agent: { poll_interval_secs: 10, lookback_secs: 300, auto_create_traces: true, generate_embeddings: true }
"#;
    let path = dir.path().join("vectadb-agent.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = run_to_end(
        cwtap("http://127.0.0.1:9")
            .current_dir(dir.path())
            .env("CONFIG_PATH", &path)
            .arg("check"),
        Duration::from_secs(20),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout.contains("/aws/lambda/x"), "{stdout}");
    // json, regex, and the framework types run as the shipped sets.
    let framework_rules = ["langchain", "llamaindex"]
        .iter()
        .map(|s| cwtap::parse::RuleSet::builtin(s).unwrap().len())
        .sum::<usize>();
    let rules = format!("{} parser rule(s)", 2 + framework_rules);
    assert!(stdout.contains(&rules), "{rules}: {stdout}");
    assert!(
        stdout.contains("VectaDB at http://localhost:8080"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("sk-vectadb-secret-123"),
        "api key must not be printed: {stdout}"
    );
    assert!(
        !dir.path().join("cwtap-state.db").exists(),
        "check must not create the state file"
    );
}

#[test]
fn the_shipped_example_config_is_valid() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.yaml");
    let out = run_to_end(
        cwtap("http://127.0.0.1:9")
            .env("VECTADB_API_KEY", "example-key")
            .args(["check", "--config"])
            .arg(&example),
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("example-key"));
    // `check` says how each group is read.
    assert_eq!(stdout.matches("; mode filter;").count(), 2, "{stdout}");
    assert_eq!(stdout.matches("; mode streams;").count(), 1, "{stdout}");
    assert!(
        stdout.contains("/ecs/orders-worker: streams starting with \"orders/\"; mode streams;"),
        "{stdout}"
    );
}
