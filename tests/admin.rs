//! Admin commands against moto's server: groups, streams, retention,
//! subscription and metric filters, tags; creating what exists is success;
//! missing resources and bad values are clear errors with the right exit code.

mod common;

use std::time::Duration;

use common::proxy::FaultProxy;
use common::*;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(60);

fn json_of(url: &str, args: &[&str]) -> Value {
    let out = run_ok(cwtap(url).args(args).arg("--json"), LIMIT);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?} --json: {e}: {out}"))
}

fn group_names(url: &str, prefix: &str) -> Vec<String> {
    json_of(url, &["groups", "list", "--prefix", prefix])
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn groups_are_created_listed_across_pages_by_prefix_and_deleted() {
    let moto = Moto::start();
    // 60 groups: more than one DescribeLogGroups page (moto pages at 50).
    for i in 0..60 {
        let out = run_ok(
            cwtap(&moto.url).args(["groups", "create", &format!("/aws/lambda/fn-{i:02}")]),
            LIMIT,
        );
        assert!(out.contains("created log group"), "{out}");
    }
    run_ok(
        cwtap(&moto.url).args(["groups", "create", "/other/x"]),
        LIMIT,
    );
    let names = group_names(&moto.url, "/aws/lambda/");
    assert_eq!(names.len(), 60, "every page is read");
    assert_eq!(names[0], "/aws/lambda/fn-00");
    assert!(names.iter().all(|n| n.starts_with("/aws/lambda/")));
    assert_eq!(group_names(&moto.url, "").len(), 61);

    // The table has a header and one line per group.
    let table = run_ok(
        cwtap(&moto.url).args(["groups", "list", "--prefix", "/other/"]),
        LIMIT,
    );
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("LOG GROUP") && lines[0].contains("RETENTION"),
        "{table}"
    );
    assert!(
        lines[1].starts_with("/other/x") && lines[1].contains("never expire"),
        "{table}"
    );

    let out = run_ok(
        cwtap(&moto.url).args(["groups", "delete", "/other/x"]),
        LIMIT,
    );
    assert!(out.contains("deleted log group /other/x"), "{out}");
    assert!(group_names(&moto.url, "/other/").is_empty());
}

#[test]
fn creating_an_existing_group_succeeds_and_applies_its_retention_and_tags() {
    let moto = Moto::start();
    let v = json_of(
        &moto.url,
        &[
            "groups",
            "create",
            "/app/a",
            "--retention",
            "7",
            "--tag",
            "team=core",
        ],
    );
    assert_eq!(v["created"], true);
    let v = json_of(
        &moto.url,
        &[
            "groups",
            "create",
            "/app/a",
            "--retention",
            "30",
            "--tag",
            "env=dev",
        ],
    );
    assert_eq!(v["created"], false, "exists: success, not an error");
    let groups = json_of(&moto.url, &["groups", "list", "--prefix", "/app/a"]);
    assert_eq!(groups[0]["retention_days"], 30);
    let tags = json_of(&moto.url, &["tags", "list", "/app/a"]);
    assert_eq!(tags, serde_json::json!({"team": "core", "env": "dev"}));
}

#[test]
fn a_retention_cloudwatch_does_not_allow_is_refused_before_any_call() {
    let moto = Moto::start();
    let (code, _, err) = run_code(
        cwtap(&moto.url).args(["groups", "create", "/app/r", "--retention", "4"]),
        LIMIT,
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("4 days is not allowed") && err.contains("3653"),
        "{err}"
    );
    assert!(
        group_names(&moto.url, "/app/r").is_empty(),
        "nothing was created"
    );

    run_ok(cwtap(&moto.url).args(["groups", "create", "/app/r"]), LIMIT);
    let (code, _, err) = run_code(
        cwtap(&moto.url).args(["retention", "set", "/app/r", "31"]),
        LIMIT,
    );
    assert_eq!(code, 2, "{err}");
    // moto itself accepts any number; cwtap refused it, so nothing changed.
    let groups = json_of(&moto.url, &["groups", "list", "--prefix", "/app/r"]);
    assert!(groups[0]["retention_days"].is_null());
}

#[test]
fn retention_is_set_and_deleted_and_a_missing_group_is_named() {
    let moto = Moto::start();
    run_ok(
        cwtap(&moto.url).args(["groups", "create", "/app/ret"]),
        LIMIT,
    );
    let out = run_ok(
        cwtap(&moto.url).args(["retention", "set", "/app/ret", "365"]),
        LIMIT,
    );
    assert!(out.contains("365 days"), "{out}");
    let groups = json_of(&moto.url, &["groups", "list", "--prefix", "/app/ret"]);
    assert_eq!(groups[0]["retention_days"], 365);
    run_ok(
        cwtap(&moto.url).args(["retention", "delete", "/app/ret"]),
        LIMIT,
    );
    let groups = json_of(&moto.url, &["groups", "list", "--prefix", "/app/ret"]);
    assert!(groups[0]["retention_days"].is_null());

    for args in [
        vec!["retention", "set", "/app/none", "30"],
        vec!["retention", "delete", "/app/none"],
        vec!["groups", "delete", "/app/none"],
        vec!["streams", "list", "/app/none"],
        vec!["streams", "create", "/app/none", "s"],
        vec!["tags", "list", "/app/none"],
        vec!["tags", "add", "/app/none", "a=b"],
        vec!["subscription-filters", "list", "/app/none"],
    ] {
        let (code, _, err) = run_code(cwtap(&moto.url).args(&args), LIMIT);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(
            err.contains("log group /app/none not found in region us-east-1"),
            "{args:?}: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_created_listed_by_name_or_last_event_and_deleted() {
    let moto = Moto::start();
    let client = moto.client().await;
    let now = now_ms();
    // b has the newest event, then c, then a.
    put_events(&client, "/app/s", "a", &[(now - 30_000, "x".into())]).await;
    put_events(&client, "/app/s", "b", &[(now - 1_000, "x".into())]).await;
    put_events(&client, "/app/s", "c", &[(now - 10_000, "x".into())]).await;
    let out = run_ok(
        cwtap(&moto.url).args(["streams", "create", "/app/s", "d"]),
        LIMIT,
    );
    assert!(out.contains("created log stream d"), "{out}");
    let out = run_ok(
        cwtap(&moto.url).args(["streams", "create", "/app/s", "d"]),
        LIMIT,
    );
    assert!(out.contains("already exists"), "{out}");

    let names = |v: Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names(json_of(&moto.url, &["streams", "list", "/app/s"])),
        ["a", "b", "c", "d"]
    );
    assert_eq!(
        names(json_of(
            &moto.url,
            &["streams", "list", "/app/s", "--order", "last-event"]
        ))[..3],
        ["b", "c", "a"]
    );
    let (code, _, err) = run_code(
        cwtap(&moto.url).args([
            "streams",
            "list",
            "/app/s",
            "--order",
            "last-event",
            "--prefix",
            "a",
        ]),
        LIMIT,
    );
    assert_eq!(code, 2, "{err}");
    for i in 0..55 {
        run_ok(
            cwtap(&moto.url).args(["streams", "create", "/app/s", &format!("p-{i:02}")]),
            LIMIT,
        );
    }
    let paged = names(json_of(
        &moto.url,
        &["streams", "list", "/app/s", "--prefix", "p-"],
    ));
    assert_eq!(paged.len(), 55, "every page is read");

    run_ok(
        cwtap(&moto.url).args(["streams", "delete", "/app/s", "a"]),
        LIMIT,
    );
    assert_eq!(
        names(json_of(
            &moto.url,
            &["streams", "list", "/app/s", "--prefix", "a"]
        ))
        .len(),
        0
    );
    let (code, _, err) = run_code(
        cwtap(&moto.url).args(["streams", "delete", "/app/s", "a"]),
        LIMIT,
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("log stream a not found in log group /app/s"),
        "{err}"
    );
    let (code, _, err) = run_code(
        cwtap(&moto.url).args(["streams", "create", "/app/s", "bad:name"]),
        LIMIT,
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("':'"), "{err}");
}

#[test]
fn subscribe_to_named_groups_needs_no_config_file() {
    let moto = Moto::start();
    for g in ["/app/src", "/app/dest", "/app/more-1", "/app/more-2"] {
        run_ok(cwtap(&moto.url).args(["groups", "create", g]), LIMIT);
    }
    // No --config, no $CWTAP_CONFIG and no ./config.yaml: the AWS settings
    // come from the environment.
    let dir = tempfile::tempdir().unwrap();
    let dest = "arn:aws:logs:us-east-1:123456789012:log-group:/app/dest:*";
    let subscribe = |extra: &[&str]| {
        let mut cmd = cwtap(&moto.url);
        cmd.current_dir(dir.path()).args([
            "subscribe",
            "--destination-arn",
            dest,
            "--role-arn",
            "arn:aws:iam::123456789012:role/cwl-to-dest",
            "--filter-name",
            "to-dest",
        ]);
        cmd.args(extra);
        cmd
    };
    let said = run_ok(
        &mut subscribe(&["--group", "/app/src", "--prefix", "/app/more"]),
        LIMIT,
    );
    for g in ["/app/src", "/app/more-1", "/app/more-2"] {
        assert!(
            said.contains(&format!("subscribed {g} -> {dest} (filter to-dest)")),
            "{said}"
        );
        let filters = json_of(&moto.url, &["subscription-filters", "list", g]);
        assert_eq!(filters.as_array().unwrap().len(), 1, "{g}: {filters}");
        assert_eq!(filters[0]["name"], "to-dest", "{g}");
        assert_eq!(filters[0]["destination_arn"], dest, "{g}");
    }
    let filters = json_of(&moto.url, &["subscription-filters", "list", "/app/dest"]);
    assert!(filters.as_array().unwrap().is_empty(), "{filters}");

    // A config file that is named but missing is still an error, and the
    // config's groups (no --group) still need one.
    let (code, _, err) = run_code(
        &mut subscribe(&["--group", "/app/src", "--config", "missing.yaml"]),
        LIMIT,
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("missing.yaml"), "{err}");
    let (code, _, err) = run_code(&mut subscribe(&[]), LIMIT);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("config.yaml"), "{err}");
}

#[test]
fn subscription_filters_are_put_listed_and_deleted() {
    let moto = Moto::start();
    run_ok(
        cwtap(&moto.url).args(["groups", "create", "/app/src"]),
        LIMIT,
    );
    run_ok(
        cwtap(&moto.url).args(["groups", "create", "/app/dest"]),
        LIMIT,
    );
    let dest = "arn:aws:logs:us-east-1:123456789012:log-group:/app/dest:*";
    for spread in ["--by-log-stream", "--random"] {
        // Putting the same filter twice replaces it.
        run_ok(
            cwtap(&moto.url).args([
                "subscription-filters",
                "put",
                "/app/src",
                "errors",
                "--destination-arn",
                dest,
                "--pattern",
                "ERROR",
                spread,
            ]),
            LIMIT,
        );
    }
    let filters = json_of(&moto.url, &["subscription-filters", "list", "/app/src"]);
    assert_eq!(filters.as_array().unwrap().len(), 1, "{filters}");
    assert_eq!(filters[0]["name"], "errors");
    assert_eq!(filters[0]["pattern"], "ERROR");
    assert_eq!(filters[0]["destination_arn"], dest);
    let table = run_ok(
        cwtap(&moto.url).args(["subscription-filters", "list", "/app/src"]),
        LIMIT,
    );
    assert!(
        table.starts_with("FILTER") && table.contains("errors"),
        "{table}"
    );

    run_ok(
        cwtap(&moto.url).args(["subscription-filters", "delete", "/app/src", "errors"]),
        LIMIT,
    );
    let filters = json_of(&moto.url, &["subscription-filters", "list", "/app/src"]);
    assert!(filters.as_array().unwrap().is_empty());
    // What is sent (moto lists every filter as ByLogStream): no
    // distribution by default (AWS's, by log stream), Random with --random.
    let proxy = FaultProxy::start(&moto.url, "PutSubscriptionFilter");
    for spread in [None, Some("--by-log-stream"), Some("--random")] {
        run_ok(
            cwtap(&proxy.url)
                .args(["subscription-filters", "put", "/app/src", "spread"])
                .args(["--destination-arn", dest])
                .args(spread),
            LIMIT,
        );
    }
    let bodies = proxy.script().bodies.clone();
    assert_eq!(bodies.len(), 3, "{bodies:?}");
    assert!(!bodies[0].contains("distribution"), "{}", bodies[0]);
    assert!(
        bodies[1].contains("\"distribution\":\"ByLogStream\""),
        "{}",
        bodies[1]
    );
    assert!(
        bodies[2].contains("\"distribution\":\"Random\""),
        "{}",
        bodies[2]
    );
    let (code, _, err) = run_code(
        cwtap(&moto.url).args(["subscription-filters", "delete", "/app/src", "errors"]),
        LIMIT,
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("subscription filter errors not found in log group /app/src"),
        "{err}"
    );
    // A destination that does not exist is refused with CloudWatch's reason.
    let (code, _, err) = run_code(
        cwtap(&moto.url).args([
            "subscription-filters",
            "put",
            "/app/src",
            "k",
            "--destination-arn",
            "arn:aws:kinesis:us-east-1:123456789012:stream/none",
        ]),
        LIMIT,
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("PutSubscriptionFilter on /app/src was refused"),
        "{err}"
    );
    // A malformed ARN or group name is a usage error found before any
    // call (nothing listens at this endpoint: a call would exit 1).
    let stream = "arn:aws:kinesis:us-east-1:123456789012:stream/s";
    let role = "arn:aws:iam::123456789012:role/r";
    for (args, says) in [
        (
            vec![
                "subscription-filters",
                "put",
                "/app/src",
                "k",
                "--destination-arn",
                "not-an-arn",
            ],
            "--destination-arn",
        ),
        (
            vec![
                "subscription-filters",
                "put",
                "/app/src",
                "k",
                "--destination-arn",
                stream,
                "--role-arn",
                "arn:aws:s3:::bucket",
            ],
            "--role-arn",
        ),
        (
            vec![
                "subscribe",
                "--destination-arn",
                "not-an-arn",
                "--role-arn",
                role,
                "--group",
                "/a",
            ],
            "--destination-arn",
        ),
        (
            vec![
                "subscribe",
                "--destination-arn",
                stream,
                "--role-arn",
                "bogus",
                "--group",
                "/a",
            ],
            "--role-arn",
        ),
        (
            vec![
                "subscribe",
                "--destination-arn",
                stream,
                "--role-arn",
                role,
                "--group",
                "bad name!",
            ],
            "--group",
        ),
    ] {
        let (code, _, err) = run_code(cwtap("http://127.0.0.1:9").args(&args), LIMIT);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[test]
fn metric_filters_are_put_listed_and_deleted() {
    let moto = Moto::start();
    run_ok(cwtap(&moto.url).args(["groups", "create", "/app/m"]), LIMIT);
    run_ok(
        cwtap(&moto.url).args([
            "metric-filters",
            "put",
            "/app/m",
            "error-count",
            "--pattern",
            "\"ERROR\"",
            "--metric-name",
            "Errors",
            "--namespace",
            "Demo",
            "--default-value",
            "0",
        ]),
        LIMIT,
    );
    let filters = json_of(&moto.url, &["metric-filters", "list", "/app/m"]);
    assert_eq!(filters.as_array().unwrap().len(), 1, "{filters}");
    let f = &filters[0];
    assert_eq!(f["name"], "error-count");
    assert_eq!(f["group"], "/app/m");
    assert_eq!(f["pattern"], "\"ERROR\"");
    assert_eq!(f["metric_name"], "Errors");
    assert_eq!(f["metric_namespace"], "Demo");
    assert_eq!(f["metric_value"], "1");
    assert_eq!(f["default_value"], 0.0);
    let all = json_of(&moto.url, &["metric-filters", "list", "--prefix", "error"]);
    assert_eq!(all.as_array().unwrap().len(), 1);

    run_ok(
        cwtap(&moto.url).args(["metric-filters", "delete", "/app/m", "error-count"]),
        LIMIT,
    );
    let filters = json_of(&moto.url, &["metric-filters", "list", "/app/m"]);
    assert!(filters.as_array().unwrap().is_empty());
    // A value that is neither a number nor a field: refused before the call.
    let (code, _, err) = run_code(
        cwtap("http://127.0.0.1:9").args([
            "metric-filters",
            "put",
            "/app/m",
            "x",
            "--pattern",
            "",
            "--metric-name",
            "M",
            "--namespace",
            "N",
            "--value",
            "abc",
        ]),
        LIMIT,
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--value"), "{err}");
}

#[test]
fn tags_are_listed_added_and_removed() {
    let moto = Moto::start();
    run_ok(
        cwtap(&moto.url).args(["groups", "create", "/app/t", "--tag", "team=core"]),
        LIMIT,
    );
    run_ok(
        cwtap(&moto.url).args(["tags", "add", "/app/t", "env=prod", "cost=42"]),
        LIMIT,
    );
    let tags = json_of(&moto.url, &["tags", "list", "/app/t"]);
    assert_eq!(
        tags,
        serde_json::json!({"team": "core", "env": "prod", "cost": "42"})
    );
    run_ok(
        cwtap(&moto.url).args(["tags", "remove", "/app/t", "team", "cost"]),
        LIMIT,
    );
    let tags = json_of(&moto.url, &["tags", "list", "/app/t"]);
    assert_eq!(tags, serde_json::json!({"env": "prod"}));
    let table = run_ok(cwtap(&moto.url).args(["tags", "list", "/app/t"]), LIMIT);
    assert_eq!(table, "KEY  VALUE\nenv  prod\n");
    let (code, _, err) = run_code(
        cwtap(&moto.url).args(["tags", "add", "/app/t", "novalue"]),
        LIMIT,
    );
    assert_eq!(code, 2);
    assert!(err.contains("KEY=VALUE"), "{err}");
}

#[test]
fn a_config_with_only_an_aws_section_is_enough_for_admin_commands() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!("aws:\n  region: us-east-1\n  endpoint_url: {}\n", moto.url),
    );
    // No AWS_ENDPOINT_URL: the endpoint comes from the file.
    let mut cmd = cwtap("http://127.0.0.1:9");
    cmd.env_remove("AWS_ENDPOINT_URL");
    run_ok(
        cmd.args(["groups", "create", "/app/cfg", "--config"])
            .arg(&config),
        LIMIT,
    );
    assert_eq!(group_names(&moto.url, "/app/cfg"), ["/app/cfg"]);

    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "aws:\n  regoin: us-east-1\n").unwrap();
    let (code, _, err) = run_code(
        cwtap(&moto.url)
            .args(["groups", "list", "--config"])
            .arg(&bad),
        LIMIT,
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("bad.yaml") && err.contains("regoin"), "{err}");
}

/// Without credentials, or without a Region, anywhere, an AWS command says
/// so at once, in words (and where to set a Region), instead of retrying a
/// dispatch failure nine times and printing the SDK's debug dump.
#[test]
fn no_credentials_or_no_region_is_said_plainly_and_not_retried() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let config = ndjson_config(dir.path(), "  - name: /a/b\n", "");
    let nowhere = dir.path().join("none");
    let unset: [(&[&str], &[&str]); 2] = [
        (
            &[
                "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY",
                "AWS_SESSION_TOKEN",
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            ],
            &["cannot get AWS credentials"],
        ),
        (
            &["AWS_REGION", "AWS_DEFAULT_REGION"],
            &["no AWS Region for DescribeLogGroups", "aws.region"],
        ),
    ];
    for (removed, says) in unset {
        for args in [&["groups", "list"][..], &["check", "--online"]] {
            let mut cmd = cwtap(&moto.url);
            for var in removed {
                cmd.env_remove(var);
            }
            let (code, _, err) = run_code(
                cmd.env("AWS_CONFIG_FILE", &nowhere)
                    .env("AWS_SHARED_CREDENTIALS_FILE", &nowhere)
                    .env("HOME", dir.path())
                    .args(args)
                    .arg("--config")
                    .arg(&config),
                Duration::from_secs(60),
            );
            assert_eq!(code, 1, "{args:?}: {err}");
            for text in says {
                assert!(err.contains(text), "{args:?}: {err}");
            }
            assert!(!err.contains("attempts"), "retried: {err}");
            assert!(!err.contains("DispatchFailure("), "debug dump: {err}");
        }
    }
}

/// A profile no AWS config or credentials file holds is named at once, not
/// retried, and a profile that is there works.
#[test]
fn a_missing_profile_is_named_and_not_retried() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let aws_config = dir.path().join("aws-config");
    std::fs::write(
        &aws_config,
        "[profile there]\nregion = us-east-1\naws_access_key_id = testing\naws_secret_access_key = testing\n",
    )
    .unwrap();
    for (profile, code) in [("nope", 1), ("there", 0)] {
        let config = write_config(
            dir.path(),
            &format!(
                "ndjson: {{path: out.ndjson}}\naws: {{profile: {profile}}}\nlog_groups: [{{name: /a/b}}]\n"
            ),
        );
        let (got, _, err) = run_code(
            cwtap(&moto.url)
                .env_remove("AWS_ACCESS_KEY_ID")
                .env_remove("AWS_SECRET_ACCESS_KEY")
                .env("AWS_CONFIG_FILE", &aws_config)
                .env("AWS_SHARED_CREDENTIALS_FILE", dir.path().join("none"))
                .args(["groups", "list", "--config"])
                .arg(&config),
            Duration::from_secs(60),
        );
        assert_eq!(got, code, "{profile}: {err}");
        if code == 1 {
            assert!(err.contains("AWS profile \"nope\""), "{err}");
            assert!(!err.contains("attempts"), "retried: {err}");
        }
    }
}

/// An AWS call that keeps failing ends with the error and its causes, not
/// the SDK's debug dump, and a listing names no empty resource.
#[test]
fn a_failing_call_is_reported_in_words() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "ndjson: {path: out.ndjson}\naws: {max_retries: 1}\nlog_groups: [{name: /a/b}]\n",
    );
    // Nothing listens on port 9 of the loopback.
    let (code, _, err) = run_code(
        cwtap("http://127.0.0.1:9")
            .args(["groups", "list", "--config"])
            .arg(&config),
        Duration::from_secs(60),
    );
    assert_eq!(code, 1, "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(last.contains("DescribeLogGroups failed after"), "{last}");
    assert!(last.contains("Connection refused"), "{last}");
    assert!(!last.contains("DispatchFailure("), "debug dump: {last}");
}
