//! The shell completions and man pages generated from the CLI definition.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

/// Standard output of a cwtap command that must succeed (read as it comes:
/// a completion script is larger than a pipe holds).
fn output(args: &[&str]) -> String {
    let out = Command::new(cwtap_bin()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn completions_are_scripts_the_shells_accept() {
    for shell in ["bash", "zsh", "fish"] {
        let script = output(&["completions", shell]);
        assert!(script.contains("cwtap"), "{shell}");
        // Every subcommand is completed.
        for sub in ["run", "backfill", "serve", "status", "check", "completions"] {
            assert!(script.contains(sub), "{shell} completes {sub}");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let bash = dir.path().join("cwtap.bash");
    std::fs::write(&bash, output(&["completions", "bash"])).unwrap();
    let checked = Command::new("bash").arg("-n").arg(&bash).output().unwrap();
    assert!(
        checked.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&checked.stderr)
    );
    // An unknown shell is a usage error.
    let (code, _, _) = run_code(
        Command::new(cwtap_bin()).args(["completions", "tcsh"]),
        Duration::from_secs(20),
    );
    assert_eq!(code, 2);
}

#[test]
fn man_pages_are_generated_for_the_command_and_each_subcommand() {
    let page = output(&["man"]);
    assert!(page.contains(".TH cwtap 1"), "{page}");
    assert!(page.contains("backfill"), "lists the subcommands");
    let dir = tempfile::tempdir().unwrap();
    run_ok(
        Command::new(cwtap_bin())
            .arg("man")
            .arg("--dir")
            .arg(dir.path()),
        Duration::from_secs(20),
    );
    for page in [
        "cwtap.1",
        "cwtap-run.1",
        "cwtap-backfill.1",
        "cwtap-serve.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap_or_default();
        assert!(text.contains(".TH"), "{page} written");
    }
}

#[test]
fn status_watch_redraws_the_table_until_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ndjson_config(dir.path(), "  - name: /w/app\n", "  listen: 'off'\n");
    // An empty state file: the table shows no group yet.
    {
        let conn = rusqlite::Connection::open(dir.path().join("state.db")).unwrap();
        drop(conn);
    }
    let out_path = dir.path().join("watch.out");
    let mut child = Command::new(cwtap_bin())
        .args(["status", "--watch", "--interval", "1s", "--config"])
        .arg(&cfg)
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let redraws = || {
        std::fs::read_to_string(&out_path)
            .unwrap_or_default()
            .matches("(every 1s; Ctrl-C to stop)")
            .count()
    };
    let drew = wait_until(Duration::from_secs(20), || redraws() >= 3);
    signal(&child, "INT");
    let exit = wait_exit(&mut child, Duration::from_secs(10)).expect("stops on SIGINT");
    assert!(
        drew,
        "{}",
        std::fs::read_to_string(&out_path).unwrap_or_default()
    );
    assert!(exit.success());
    let text = std::fs::read_to_string(&out_path).unwrap();
    assert!(text.contains("LOG GROUP"), "the table: {text}");
}

/// `parse-test` reads a captured fixture as `capture` writes it: plain, or
/// gzipped when its name ends in `.gz`; both give the same report.
#[test]
fn parse_test_reads_plain_and_gzipped_fixtures_alike() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let cfg = ndjson_config(
        dir.path(),
        "  - name: /aws/lambda/app\n    parsers: [{use: lambda}, {use: json}]\n",
        "",
    );
    let events = [
        fixture_event(
            "/aws/lambda/app",
            "s",
            1_000,
            "START RequestId: 5e5c4176-5df6-4817-b099-3b5a9a1b2c3d Version: $LATEST",
        ),
        fixture_event(
            "/aws/lambda/app",
            "s",
            1_001,
            r#"{"level":"info","msg":"hi","request_id":"5e5c4176-5df6-4817-b099-3b5a9a1b2c3d"}"#,
        ),
    ];
    let plain = dir.path().join("f.ndjson");
    write_fixture(&plain, &events);
    let gz = dir.path().join("f.ndjson.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::default(),
    );
    enc.write_all(&std::fs::read(&plain).unwrap()).unwrap();
    enc.finish().unwrap();
    let report = |file: &std::path::Path| {
        let args = [
            "parse-test",
            "--json",
            "--group",
            "/aws/lambda/app",
            "--config",
        ];
        let out = Command::new(cwtap_bin())
            .args(args)
            .arg(&cfg)
            .arg(file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let from_plain = report(&plain);
    assert!(from_plain.contains("lambda-start"), "{from_plain}");
    assert!(from_plain.contains("json-structured"), "{from_plain}");
    assert_eq!(report(&gz), from_plain);
    // A `.gz` that is not gzip is a usage error naming the file.
    let fake = dir.path().join("fake.ndjson.gz");
    std::fs::copy(&plain, &fake).unwrap();
    let out = Command::new(cwtap_bin())
        .args(["parse-test", "--group", "/aws/lambda/app", "--config"])
        .arg(&cfg)
        .arg(&fake)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("fake.ndjson.gz") && err.contains("not gzip"),
        "{err}"
    );
}

/// `| head` closing the pipe is not an error of the command (nor a panic).
#[test]
fn a_closed_pipe_ends_commands_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ndjson_config(dir.path(), "  - name: /w/app\n", "");
    let cfg = cfg.to_str().unwrap();
    for args in [
        &["completions", "bash"][..],
        &["man"],
        &["check", "--config", cfg],
    ] {
        let mut child = Command::new(cwtap_bin())
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Read nothing: close the pipe at once.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {err}");
        assert!(!err.contains("error"), "{args:?}: {err}");
    }
}

/// Values clap accepts but that mean nothing useful: refused with exit 2 and
/// the reason, before anything runs.
#[test]
fn meaningless_command_line_values_exit_2_saying_why() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ndjson_config(dir.path(), "  - name: /w/app\n", "");
    for (args, says) in [
        (
            vec![
                "backfill",
                "--since",
                "1h",
                "--until",
                "2099-01-01T00:00:00Z",
            ],
            "in the future",
        ),
        (vec!["backfill", "--since", "99999999d"], "before 1970"),
        (vec!["backfill", "--since", "999999999999d"], "before 1970"),
        (vec!["--log-level", "eror", "check"], "log level \"eror\""),
        (
            vec!["--log-level", "cwtap=debug,warnn", "check"],
            "\"warnn\"",
        ),
        (
            vec!["status", "--watch", "--interval", "0"],
            "--interval 0: at least 1s",
        ),
    ] {
        let out = Command::new(cwtap_bin())
            .current_dir(dir.path())
            .args(&args)
            .arg("--config")
            .arg(&cfg)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    for url in ["notaurl", "ftp://127.0.0.1/readyz", "127.0.0.1:9464/readyz"] {
        let out = Command::new(cwtap_bin())
            .args(["health", "--url", url])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{url}: {err}");
        assert!(
            err.contains("not an http:// or https:// URL"),
            "{url}: {err}"
        );
    }
    assert!(!dir.path().join("state.db").exists());
    // A level (any case) and target=level directives are fine.
    for level in ["warn", "DEBUG", "cwtap=debug,warn"] {
        let out = Command::new(cwtap_bin())
            .args(["--log-level", level, "check", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{level}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `check` on a config that only receives (Firehose) says what `serve`
/// will do, and that nothing is pulled.
#[test]
fn check_describes_the_firehose_listener() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "ndjson: {path: out.ndjson}\nfirehose: {listen: '127.0.0.1:8443', access_key: k-do-not-print}\n",
    );
    let out = output(&["check", "--config", cfg.to_str().unwrap()]);
    assert!(
        out.contains("firehose (cwtap serve): listen on 127.0.0.1:8443 (HTTP)"),
        "{out}"
    );
    assert!(out.contains("log groups: none (nothing to pull)"), "{out}");
    assert!(!out.contains("k-do-not-print"), "{out}");
}

/// With `--log-format json`, the error a command ends with is a JSON line
/// like the others, with its exit code.
#[test]
fn with_json_logs_the_final_error_is_a_json_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(cwtap_bin())
        .args(["--log-format", "json", "check", "--config"])
        .arg(dir.path().join("missing.yaml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().last().unwrap_or_default();
    let line: serde_json::Value =
        serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {err}"));
    assert_eq!(line["level"], "ERROR", "{line}");
    assert_eq!(line["fields"]["exit_code"], 2, "{line}");
    assert!(
        line["fields"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("missing.yaml"),
        "{line}"
    );
}

/// An NDJSON output that cannot be opened is named by its setting.
#[test]
fn an_ndjson_path_that_cannot_be_created_names_its_setting() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = dir.path().join("f.ndjson");
    write_fixture(&fixture, &[fixture_event("/w/app", "s", 1_000, "hello")]);
    let cfg = write_config(
        dir.path(),
        "ndjson: {path: /proc/cwtap-nowhere/out.ndjson}\nlog_groups: [{name: /w/app}]\n",
    );
    let out = Command::new(cwtap_bin())
        .current_dir(dir.path())
        .arg("replay")
        .arg(&fixture)
        .args(["--to", "downstream", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("ndjson.path: cannot create the folder /proc/cwtap-nowhere"),
        "{err}"
    );
}

/// A config that only receives (`serve`) needs no AWS access: `check
/// --online` does not ask for credentials and passes.
#[test]
fn check_online_of_a_receive_only_config_calls_no_aws_api() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "ndjson: {{path: {}}}\nfirehose: {{listen: '127.0.0.1:{}', access_key: k}}\nagent: {{state_path: {}}}\n",
            dir.path().join("out.ndjson").display(),
            free_port(),
            dir.path().join("state.db").display()
        ),
    );
    let (code, out, err) = run_code(
        cwtap("http://127.0.0.1:9")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_REGION")
            .args(["check", "--online", "--config"])
            .arg(&cfg),
        Duration::from_secs(30),
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("aws: not called"), "{out}");
    assert!(out.contains("online check passed"), "{out}");
}

/// `status` reads only the state file: a secret's variable unset where it
/// runs is a warning, not an error, and the state path is still found.
#[test]
fn status_reads_the_state_path_of_a_config_whose_secret_is_unset() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.db");
    let cfg = write_config(
        dir.path(),
        &format!(
            "vectadb: {{endpoint: 'http://127.0.0.1:9', api_key: '${{CWTAP_TEST_UNSET_KEY}}'}}\nlog_groups: [{{name: /a}}]\nagent: {{state_path: {}}}\n",
            state.display()
        ),
    );
    let (code, _, err) = run_code(
        cwtap("http://127.0.0.1:9")
            .env_remove("CWTAP_TEST_UNSET_KEY")
            .args(["status", "--config"])
            .arg(&cfg),
        Duration::from_secs(30),
    );
    // No state file yet: exit 1 naming it (past the config), after the warning.
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("CWTAP_TEST_UNSET_KEY") && err.contains("warning"),
        "{err}"
    );
    assert!(
        err.contains(&format!("no state file at {}", state.display())),
        "{err}"
    );
}

/// `run` and `backfill` refuse to start (exit 2, before the state file is
/// created) when no AWS Region is found anywhere, instead of failing every
/// poll, and when the config has no log groups to pull (a receive-only
/// config is for `serve`).
#[test]
fn run_and_backfill_refuse_to_start_without_a_region_or_without_groups() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.db");
    let nowhere = dir.path().join("none");
    let cfg = ndjson_config(dir.path(), "  - name: /r/app\n", "");
    for args in [&["run"][..], &["backfill", "--since", "1h"]] {
        let (code, _, err) = run_code(
            cwtap("http://127.0.0.1:9")
                .env_remove("AWS_REGION")
                .env_remove("AWS_DEFAULT_REGION")
                .env("AWS_CONFIG_FILE", &nowhere)
                .env("AWS_SHARED_CREDENTIALS_FILE", &nowhere)
                .env("HOME", dir.path())
                .args(args)
                .arg("--config")
                .arg(&cfg),
            Duration::from_secs(60),
        );
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(
            err.contains("no AWS Region for account default") && err.contains("aws.region"),
            "{args:?}: {err}"
        );
        assert!(!state.exists(), "{args:?} created the state file");
    }

    let receive_only = write_config(
        dir.path(),
        &format!(
            "ndjson: {{path: {}}}\nfirehose: {{listen: '127.0.0.1:{}', access_key: k}}\nagent: {{state_path: {}}}\n",
            dir.path().join("out.ndjson").display(),
            free_port(),
            state.display()
        ),
    );
    for args in [&["run"][..], &["backfill", "--since", "1h"]] {
        let (code, _, err) = run_code(
            cwtap("http://127.0.0.1:9")
                .args(args)
                .arg("--config")
                .arg(&receive_only),
            Duration::from_secs(30),
        );
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(
            err.contains("has no log_groups") && err.contains("cwtap serve"),
            "{args:?}: {err}"
        );
        assert!(!state.exists(), "{args:?} created the state file");
    }
}

/// `parse-test` shows what `serve` does with a group no entry selects: the
/// `firehose.default_parsers`; without a `firehose:` section such a group
/// is still a usage error.
#[test]
fn parse_test_of_a_group_no_entry_selects_uses_the_firehose_default_rules() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "ndjson: {{path: {}}}\nfirehose: {{listen: '127.0.0.1:{}', access_key: k, default_parsers: [{{use: json}}]}}\nagent: {{state_path: {}}}\n",
            dir.path().join("out.ndjson").display(),
            free_port(),
            dir.path().join("state.db").display()
        ),
    );
    let input = dir.path().join("in.log");
    std::fs::write(
        &input,
        "{\"level\":\"error\",\"msg\":\"x\",\"trace_id\":\"abc\"}\n",
    )
    .unwrap();
    let (code, out, err) = run_code(
        Command::new(cwtap_bin())
            .args(["parse-test", "--group", "/any/x", "--json", "--config"])
            .arg(&cfg)
            .arg(&input),
        Duration::from_secs(30),
    );
    assert_eq!(code, 0, "{err}");
    let first: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(first["fields"]["trace_id"], "abc", "{out}");
    assert_eq!(first["fields"]["level"], "error", "{out}");

    let pull = ndjson_config(dir.path(), "  - name: /only/this\n", "");
    let (code, _, err) = run_code(
        Command::new(cwtap_bin())
            .args(["parse-test", "--group", "/any/x", "--config"])
            .arg(&pull)
            .arg(&input),
        Duration::from_secs(30),
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("not selected by any log_groups entry"),
        "{err}"
    );
}

/// A closed standard error (a log reader that went away) loses log lines
/// and nothing else: the replay ends with success and every event and
/// summary delivered. (Each log line used to panic the task writing it:
/// the logger reported the failed write with `eprintln!`, which panics on
/// the same closed pipe.)
#[test]
fn a_closed_standard_error_loses_log_lines_not_events() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = dir.path().join("f.ndjson");
    // 100 traces of two events: their closing is logged at debug.
    let events: Vec<_> = (0..200)
        .map(|i| {
            let message = format!(r#"{{"trace_id":"trace-{}","msg":"m{i}"}}"#, i / 2);
            fixture_event("/w/app", "s", 1_000 + i, &message)
        })
        .collect();
    write_fixture(&fixture, &events);
    let out_path = dir.path().join("out.ndjson");
    let cfg = write_config(
        dir.path(),
        &format!(
            "ndjson: {{path: {}}}\nlog_groups: [{{name: /w/app}}]\n",
            out_path.display()
        ),
    );
    let mut child = Command::new(cwtap_bin())
        .current_dir(dir.path())
        .args(["--log-level", "debug", "replay"])
        .arg(&fixture)
        .args(["--to", "downstream", "--config"])
        .arg(&cfg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take());
    let mut status = None;
    wait_until(Duration::from_secs(60), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    if status.is_none() {
        let _ = child.kill();
    }
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "exit status {status:?}"
    );
    let out = read_ndjson(&out_path);
    assert_eq!(out.len() - summaries(&out).len(), 200);
    assert_eq!(summaries(&out).len(), 100);
}
