//! The operator commands: admin (groups, streams, retention, filters, tags),
//! Insights (`query`, `trace`) and fixtures (`capture`, `replay`,
//! `generate`). Each turns its command-line values into a library call once,
//! then prints a table (or `--json` for scripts) on standard output; notes
//! and summaries go to standard error.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::app::AppError;
use crate::cli::{
    AwsArgs, GroupsAction, MetricFiltersAction, OpsCommand, OversizeArg, ReplayTarget,
    RetentionAction, StreamOrderArg, StreamsAction, SubscriptionFiltersAction, TagsAction,
    TraceViaArg,
};
use crate::cloudwatch::CloudWatch;
use crate::cloudwatch::admin::{
    MetricFilterSpec, StreamOrder, SubscriptionFilterSpec, check_retention,
};
use crate::cloudwatch::insights::{QueryRequest, TraceRequest, TraceVia};
use crate::cloudwatch::write::{BatchLimits, Oversize};
use crate::config::{AwsConfig, Config};
use crate::parse::RuleSet;
use crate::replay::fixture::{FixtureWriter, read_fixture, read_fixture_checked};
use crate::replay::generate::{GenerateOptions, generate};
use crate::replay::{
    self, CaptureRequest, Rebase, Retarget, Speed, ToCloudWatch, describe_range, describe_shift,
};
use crate::shutdown::Shutdown;
use crate::time::{EpochMs, format_ms, now_ms, parse_duration, parse_instant};

/// Runs one operator command; the result is the process exit code.
pub async fn execute(command: OpsCommand, shutdown: Shutdown) -> Result<u8, AppError> {
    match command {
        OpsCommand::Groups {
            aws,
            format,
            action,
        } => groups(&connect(&aws).await?, action, format.json, &shutdown).await,
        OpsCommand::Streams {
            aws,
            format,
            action,
        } => streams(&connect(&aws).await?, action, format.json, &shutdown).await,
        OpsCommand::Retention {
            aws,
            format,
            action,
        } => retention(&connect(&aws).await?, action, format.json, &shutdown).await,
        OpsCommand::SubscriptionFilters {
            aws,
            format,
            action,
        } => subscription_filters(&connect(&aws).await?, action, format.json, &shutdown).await,
        OpsCommand::MetricFilters {
            aws,
            format,
            action,
        } => metric_filters(&connect(&aws).await?, action, format.json, &shutdown).await,
        OpsCommand::Tags {
            aws,
            format,
            action,
        } => tags(&connect(&aws).await?, action, format.json, &shutdown).await,
        OpsCommand::Query {
            query,
            groups,
            since,
            until,
            limit,
            timeout,
            json,
            ndjson,
            aws,
        } => {
            if query.trim().is_empty() {
                return Err(AppError::Usage(
                    "QUERY is empty: give a Logs Insights query (fields @timestamp, @message | limit 20)".into(),
                ));
            }
            let (start_ms, end_ms) = window(&since, until.as_deref())?;
            let request = QueryRequest {
                query,
                groups,
                start_ms,
                end_ms,
                limit,
                timeout: duration_arg("--timeout", &timeout)?,
            };
            let cloudwatch = connect(&aws).await?;
            run_query(&cloudwatch, &request, json, ndjson, &shutdown).await
        }
        OpsCommand::Trace {
            id,
            groups,
            since,
            until,
            via,
            timeout,
            config,
            json,
        } => {
            let (start_ms, end_ms) = window(&since, until.as_deref())?;
            let config = config.as_deref().map(Config::load).transpose()?;
            let aws = config.as_ref().map(|c| c.aws.clone()).unwrap_or_default();
            let cloudwatch = CloudWatch::connect(&aws).await;
            let request = TraceRequest {
                id,
                groups,
                start_ms,
                end_ms,
                via: match via {
                    TraceViaArg::Auto => TraceVia::Auto,
                    TraceViaArg::Insights => TraceVia::Insights,
                    TraceViaArg::Filter => TraceVia::Filter,
                },
                timeout: duration_arg("--timeout", &timeout)?,
            };
            trace(&cloudwatch, &request, config.as_ref(), json, &shutdown).await
        }
        OpsCommand::Capture {
            groups,
            since,
            until,
            output,
            aws,
        } => {
            let (start_ms, end_ms) = window(&since, until.as_deref())?;
            let cloudwatch = connect(&aws).await?;
            let mut writer = FixtureWriter::create(output.as_deref())?;
            let request = CaptureRequest {
                groups,
                start_ms,
                end_ms,
            };
            let counts = replay::capture(&cloudwatch, &request, &mut writer, &shutdown).await?;
            let written = writer.finish()?;
            crate::errln!(
                "cwtap: captured {written} events from {} log group(s) ({}) to {}",
                counts.len(),
                counts
                    .iter()
                    .map(|(g, n)| format!("{g}: {n}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                output
                    .as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "standard output".into())
            );
            Ok(0)
        }
        OpsCommand::Replay {
            file,
            to,
            group,
            stream,
            create,
            rebase,
            speed,
            max_event_bytes,
            oversize,
            config,
            json,
        } => {
            let retarget = Retarget { group, stream };
            if let Some(g) = &retarget.group
                && let Some(problem) = crate::cloudwatch::admin::group_name_problem(g, false)
            {
                return Err(AppError::Usage(format!("--group: {problem}")));
            }
            if let Some(s) = &retarget.stream {
                crate::cloudwatch::admin::check_stream_name(s)
                    .map_err(|e| AppError::Usage(format!("--stream: {e}")))?;
            }
            match to {
                ReplayTarget::Cloudwatch => {
                    let options = ToCloudWatch {
                        retarget,
                        create,
                        rebase: Rebase::parse(rebase.as_deref().unwrap_or("now"))?,
                        speed: Speed::parse(speed.as_deref().unwrap_or("max"))?,
                        limits: BatchLimits::with_event_limit(
                            max_event_bytes,
                            match oversize {
                                OversizeArg::Truncate => Oversize::Truncate,
                                OversizeArg::Reject => Oversize::Reject,
                            },
                        )?,
                    };
                    let aws = match &config {
                        Some(p) => Config::load_aws_only(p)?,
                        None => AwsConfig::default(),
                    };
                    // Every name is checked before the first call: a bad one
                    // halfway would leave the events before it stored, and
                    // stored again by the next attempt.
                    let events = read_fixture_checked(&file, |e| {
                        let group = options.retarget.group.as_deref().unwrap_or(&e.log_group);
                        let stream = options.retarget.stream.as_deref().unwrap_or(&e.log_stream);
                        if let Some(problem) =
                            crate::cloudwatch::admin::group_name_problem(group, false)
                        {
                            return Err(format!("log_group {group:?}: {problem}"));
                        }
                        crate::cloudwatch::admin::check_stream_name(stream)
                            .map_err(|e| format!("log_stream: {e}"))
                    })?;
                    let cloudwatch = CloudWatch::connect(&aws).await;
                    replay_cloudwatch(&cloudwatch, &file, events, &options, json, &shutdown).await
                }
                ReplayTarget::Downstream => {
                    // Settings of the CloudWatch side are refused rather
                    // than ignored.
                    let cloudwatch_only = [
                        ("--create", create),
                        ("--speed", speed.is_some()),
                        (
                            "--max-event-bytes",
                            max_event_bytes != crate::cloudwatch::write::DEFAULT_MAX_EVENT_BYTES,
                        ),
                        ("--oversize", oversize != OversizeArg::Truncate),
                    ];
                    if let Some((flag, _)) = cloudwatch_only.iter().find(|(_, given)| *given) {
                        return Err(AppError::Usage(format!(
                            "{flag} applies to --to cloudwatch only"
                        )));
                    }
                    let Some(path) = config else {
                        return Err(AppError::Usage(
                            "replay --to downstream needs --config: the agent config whose log_groups parser rules and output to use".into(),
                        ));
                    };
                    let config = Config::load(&path)?;
                    let rebase = Rebase::parse(rebase.as_deref().unwrap_or("keep"))?;
                    let events = read_fixture(&file)?;
                    replay_downstream(&config, &file, events, &retarget, rebase, json, &shutdown)
                        .await
                }
            }
        }
        OpsCommand::Generate {
            output,
            traces,
            services,
            error_rate,
            since,
            until,
            seed,
            gateway,
        } => {
            let (start_ms, end_ms) = window(&since, until.as_deref())?;
            let options = GenerateOptions {
                traces,
                services: services.iter().map(|s| s.trim().to_string()).collect(),
                error_rate,
                start_ms,
                end_ms,
                seed,
                gateway,
            };
            if let Some(problem) =
                crate::cloudwatch::admin::group_name_problem(&options.gateway, false)
            {
                return Err(AppError::Usage(format!("--gateway: {problem}")));
            }
            let events = generate(&options)?;
            let mut writer = FixtureWriter::create(Some(&output))?;
            for e in &events {
                writer.write(e)?;
            }
            let written = writer.finish()?;
            let groups: std::collections::BTreeSet<&str> =
                events.iter().map(|e| e.log_group.as_str()).collect();
            crate::errln!(
                "cwtap: wrote {written} events of {traces} traces ({}) to {}; groups: {}",
                describe_range(&events),
                output.display(),
                groups.into_iter().collect::<Vec<_>>().join(", ")
            );
            Ok(0)
        }
    }
}

async fn connect(aws: &AwsArgs) -> Result<CloudWatch, AppError> {
    let config = match &aws.config {
        Some(path) => Config::load_aws_only(path)?,
        None => AwsConfig::default(),
    };
    Ok(CloudWatch::connect(&config).await)
}

fn window(since: &str, until: Option<&str>) -> Result<(EpochMs, EpochMs), AppError> {
    let now = now_ms();
    let start = parse_instant(since, now).map_err(|e| AppError::Usage(format!("--since: {e}")))?;
    let end = match until {
        Some(u) => parse_instant(u, now).map_err(|e| AppError::Usage(format!("--until: {e}")))?,
        None => now,
    };
    if start >= end {
        return Err(AppError::Usage(format!(
            "--since {} is not before --until {}",
            format_ms(start),
            format_ms(end)
        )));
    }
    Ok((start, end))
}

/// A wait given on the command line (`--timeout`): more than nothing.
fn duration_arg(flag: &str, text: &str) -> Result<Duration, AppError> {
    match parse_duration(text) {
        Ok(d) if d.is_zero() => Err(AppError::Usage(format!(
            "{flag} {text}: must be more than 0"
        ))),
        Ok(d) => Ok(d),
        Err(e) => Err(AppError::Usage(format!("{flag}: {e}"))),
    }
}

fn parse_tags(pairs: &[String]) -> Result<BTreeMap<String, String>, AppError> {
    pairs
        .iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
            _ => Err(AppError::Usage(format!(
                "tag {p:?}: write tags as KEY=VALUE"
            ))),
        })
        .collect()
}

fn print_json(value: &Value) {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    crate::outln!("{text}");
}

fn to_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

fn opt_ms(ms: Option<EpochMs>) -> String {
    ms.map(format_ms).unwrap_or_else(|| "-".into())
}

/// Plain columns, left-aligned, two spaces apart; the last column is not
/// padded so long messages wrap naturally.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count().min(60));
            }
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let last = cells.len().saturating_sub(1);
        for (i, cell) in cells.iter().enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(cell);
                let pad = widths[i].saturating_sub(cell.chars().count());
                out.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push('\n');
    };
    line(headers.to_vec(), &mut out);
    for row in rows {
        line(row.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

fn print_table(headers: &[&str], rows: &[Vec<String>], empty: &str) {
    if rows.is_empty() {
        crate::errln!("cwtap: {empty}");
        return;
    }
    crate::out!("{}", table(headers, rows));
}

fn done(json: bool, value: Value, text: String) -> Result<u8, AppError> {
    if json {
        print_json(&value);
    } else {
        crate::outln!("{text}");
    }
    Ok(0)
}

async fn groups(
    cw: &CloudWatch,
    action: GroupsAction,
    json: bool,
    shutdown: &Shutdown,
) -> Result<u8, AppError> {
    match action {
        GroupsAction::List { prefix } => {
            let groups = cw.list_groups(&prefix, shutdown).await?;
            if json {
                print_json(&to_json(&groups));
            } else {
                let rows: Vec<Vec<String>> = groups
                    .iter()
                    .map(|g| {
                        vec![
                            g.name.clone(),
                            g.retention_days
                                .map(|d| format!("{d} days"))
                                .unwrap_or_else(|| "never expire".into()),
                            g.stored_bytes.map(|b| b.to_string()).unwrap_or_default(),
                            opt_ms(g.created_ms),
                        ]
                    })
                    .collect();
                print_table(
                    &["LOG GROUP", "RETENTION", "STORED BYTES", "CREATED"],
                    &rows,
                    &format!("no log group starts with {prefix:?}"),
                );
            }
            Ok(0)
        }
        GroupsAction::Create {
            name,
            retention,
            tags,
        } => {
            let retention = retention.map(check_retention).transpose()?;
            let tags = parse_tags(&tags)?;
            let created = cw.create_group(&name, retention, &tags, shutdown).await?;
            done(
                json,
                json!({"log_group": name, "created": created.is_new()}),
                if created.is_new() {
                    format!("created log group {name}")
                } else {
                    format!("log group {name} already exists (retention and tags applied)")
                },
            )
        }
        GroupsAction::Delete { name } => {
            cw.delete_group(&name, shutdown).await?;
            done(
                json,
                json!({"log_group": name, "deleted": true}),
                format!("deleted log group {name}"),
            )
        }
    }
}

async fn streams(
    cw: &CloudWatch,
    action: StreamsAction,
    json: bool,
    shutdown: &Shutdown,
) -> Result<u8, AppError> {
    match action {
        StreamsAction::List {
            group,
            prefix,
            order,
        } => {
            let order = match order {
                StreamOrderArg::Name => StreamOrder::Name,
                StreamOrderArg::LastEvent => StreamOrder::LastEvent,
            };
            let streams = cw
                .list_streams(&group, prefix.as_deref(), order, shutdown)
                .await?;
            if json {
                print_json(&to_json(&streams));
            } else {
                let rows: Vec<Vec<String>> = streams
                    .iter()
                    .map(|s| {
                        vec![
                            s.name.clone(),
                            opt_ms(s.last_event_ms),
                            opt_ms(s.first_event_ms),
                            opt_ms(s.created_ms),
                        ]
                    })
                    .collect();
                print_table(
                    &["LOG STREAM", "LAST EVENT", "FIRST EVENT", "CREATED"],
                    &rows,
                    &format!("log group {group} has no matching stream"),
                );
            }
            Ok(0)
        }
        StreamsAction::Create { group, stream } => {
            let created = cw.create_stream(&group, &stream, shutdown).await?;
            done(
                json,
                json!({"log_group": group, "log_stream": stream, "created": created.is_new()}),
                if created.is_new() {
                    format!("created log stream {stream} in {group}")
                } else {
                    format!("log stream {stream} already exists in {group}")
                },
            )
        }
        StreamsAction::Delete { group, stream } => {
            cw.delete_stream(&group, &stream, shutdown).await?;
            done(
                json,
                json!({"log_group": group, "log_stream": stream, "deleted": true}),
                format!("deleted log stream {stream} from {group}"),
            )
        }
    }
}

async fn retention(
    cw: &CloudWatch,
    action: RetentionAction,
    json: bool,
    shutdown: &Shutdown,
) -> Result<u8, AppError> {
    match action {
        RetentionAction::Set { group, days } => {
            cw.set_retention(&group, days, shutdown).await?;
            done(
                json,
                json!({"log_group": group, "retention_days": days}),
                format!("log group {group} keeps events {days} days"),
            )
        }
        RetentionAction::Delete { group } => {
            cw.delete_retention(&group, shutdown).await?;
            done(
                json,
                json!({"log_group": group, "retention_days": null}),
                format!("log group {group} keeps events forever"),
            )
        }
    }
}

async fn subscription_filters(
    cw: &CloudWatch,
    action: SubscriptionFiltersAction,
    json: bool,
    shutdown: &Shutdown,
) -> Result<u8, AppError> {
    match action {
        SubscriptionFiltersAction::Put {
            group,
            name,
            destination_arn,
            pattern,
            role_arn,
            by_log_stream,
            random,
        } => {
            if let Some(problem) =
                crate::cloudwatch::admin::destination_arn_problem(&destination_arn)
            {
                return Err(AppError::Usage(format!("--destination-arn: {problem}")));
            }
            if let Some(problem) = role_arn
                .as_deref()
                .and_then(crate::cloudwatch::admin::role_arn_problem)
            {
                return Err(AppError::Usage(format!("--role-arn: {problem}")));
            }
            let spec = SubscriptionFilterSpec {
                name: name.clone(),
                pattern,
                destination_arn,
                role_arn,
                by_log_stream: match (by_log_stream, random) {
                    (_, true) => Some(false),
                    (true, false) => Some(true),
                    (false, false) => None,
                },
            };
            cw.put_subscription_filter(&group, &spec, shutdown).await?;
            done(
                json,
                json!({"log_group": group, "filter_name": name, "put": true}),
                format!("put subscription filter {name} on {group}"),
            )
        }
        SubscriptionFiltersAction::List { group, prefix } => {
            let filters = cw
                .list_subscription_filters(&group, prefix.as_deref(), shutdown)
                .await?;
            if json {
                print_json(&to_json(&filters));
            } else {
                let rows: Vec<Vec<String>> = filters
                    .iter()
                    .map(|f| {
                        vec![
                            f.name.clone(),
                            f.destination_arn.clone(),
                            format!("{:?}", f.pattern),
                        ]
                    })
                    .collect();
                print_table(
                    &["FILTER", "DESTINATION", "PATTERN"],
                    &rows,
                    &format!("log group {group} has no subscription filter"),
                );
            }
            Ok(0)
        }
        SubscriptionFiltersAction::Delete { group, name } => {
            cw.delete_subscription_filter(&group, &name, shutdown)
                .await?;
            done(
                json,
                json!({"log_group": group, "filter_name": name, "deleted": true}),
                format!("deleted subscription filter {name} from {group}"),
            )
        }
    }
}

async fn metric_filters(
    cw: &CloudWatch,
    action: MetricFiltersAction,
    json: bool,
    shutdown: &Shutdown,
) -> Result<u8, AppError> {
    match action {
        MetricFiltersAction::Put {
            group,
            name,
            pattern,
            metric_name,
            namespace,
            value,
            default_value,
        } => {
            // CloudWatch takes a number or a field of the pattern (`$.ms`,
            // `$size`); anything else it refuses only at the call.
            let is_field = value
                .strip_prefix('$')
                .is_some_and(|f| !f.is_empty() && !f.contains(char::is_whitespace));
            if value.trim().parse::<f64>().is_err() && !is_field {
                return Err(AppError::Usage(format!(
                    "--value {value:?}: give a number or a field of the pattern ($.field, $name)"
                )));
            }
            let spec = MetricFilterSpec {
                name: name.clone(),
                pattern,
                metric_name,
                metric_namespace: namespace,
                metric_value: value,
                default_value,
            };
            cw.put_metric_filter(&group, &spec, shutdown).await?;
            done(
                json,
                json!({"log_group": group, "filter_name": name, "put": true}),
                format!("put metric filter {name} on {group}"),
            )
        }
        MetricFiltersAction::List { group, prefix } => {
            let filters = cw
                .list_metric_filters(group.as_deref(), prefix.as_deref(), shutdown)
                .await?;
            if json {
                print_json(&to_json(&filters));
            } else {
                let rows: Vec<Vec<String>> = filters
                    .iter()
                    .map(|f| {
                        vec![
                            f.group.clone(),
                            f.name.clone(),
                            format!("{}/{}", f.metric_namespace, f.metric_name),
                            f.metric_value.clone(),
                            format!("{:?}", f.pattern),
                        ]
                    })
                    .collect();
                print_table(
                    &["LOG GROUP", "FILTER", "METRIC", "VALUE", "PATTERN"],
                    &rows,
                    "no metric filter",
                );
            }
            Ok(0)
        }
        MetricFiltersAction::Delete { group, name } => {
            cw.delete_metric_filter(&group, &name, shutdown).await?;
            done(
                json,
                json!({"log_group": group, "filter_name": name, "deleted": true}),
                format!("deleted metric filter {name} from {group}"),
            )
        }
    }
}

async fn tags(
    cw: &CloudWatch,
    action: TagsAction,
    json: bool,
    shutdown: &Shutdown,
) -> Result<u8, AppError> {
    match action {
        TagsAction::List { group } => {
            let tags = cw.list_tags(&group, shutdown).await?;
            if json {
                print_json(&to_json(&tags));
            } else {
                let rows: Vec<Vec<String>> = tags
                    .iter()
                    .map(|(k, v)| vec![k.clone(), v.clone()])
                    .collect();
                print_table(
                    &["KEY", "VALUE"],
                    &rows,
                    &format!("log group {group} has no tags"),
                );
            }
            Ok(0)
        }
        TagsAction::Add { group, tags } => {
            let tags = parse_tags(&tags)?;
            cw.tag_group(&group, &tags, shutdown).await?;
            done(
                json,
                json!({"log_group": group, "added": tags}),
                format!("tagged log group {group} with {} tag(s)", tags.len()),
            )
        }
        TagsAction::Remove { group, keys } => {
            cw.untag_group(&group, &keys, shutdown).await?;
            done(
                json,
                json!({"log_group": group, "removed": keys}),
                format!("removed {} tag key(s) from log group {group}", keys.len()),
            )
        }
    }
}

async fn run_query(
    cw: &CloudWatch,
    request: &QueryRequest,
    json: bool,
    ndjson: bool,
    shutdown: &Shutdown,
) -> Result<u8, AppError> {
    let outcome = cw.run_query(request, shutdown).await?;
    let objects: Vec<Value> = outcome
        .rows
        .iter()
        .map(|row| {
            Value::Object(
                row.iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect::<Map<String, Value>>(),
            )
        })
        .collect();
    if json {
        print_json(&Value::Array(objects));
    } else if ndjson {
        let mut out = std::io::stdout().lock();
        for o in &objects {
            let _ = writeln!(out, "{o}");
        }
    } else {
        // Columns in the order fields first appear; @ptr is an opaque pointer.
        let mut columns: Vec<String> = Vec::new();
        for row in &outcome.rows {
            for (k, _) in row {
                if k != "@ptr" && !columns.contains(k) {
                    columns.push(k.clone());
                }
            }
        }
        let rows: Vec<Vec<String>> = outcome
            .rows
            .iter()
            .map(|row| {
                columns
                    .iter()
                    .map(|c| {
                        row.iter()
                            .find(|(k, _)| k == c)
                            .map(|(_, v)| v.replace('\n', " "))
                            .unwrap_or_default()
                    })
                    .collect()
            })
            .collect();
        let headers: Vec<&str> = columns.iter().map(String::as_str).collect();
        print_table(&headers, &rows, "the query returned no rows");
    }
    crate::errln!(
        "cwtap: {} row(s); records matched {}, scanned {}, bytes scanned {} (query {})",
        outcome.rows.len(),
        stat(outcome.records_matched),
        stat(outcome.records_scanned),
        stat(outcome.bytes_scanned),
        outcome.query_id
    );
    Ok(0)
}

fn stat(v: Option<f64>) -> String {
    v.map(|v| format!("{v}")).unwrap_or_else(|| "-".into())
}

/// The fields `trace` shows beside each message.
const TRACE_FIELDS: [&str; 4] = ["trace_id", "span_id", "parent_span_id", "request_id"];

async fn trace(
    cw: &CloudWatch,
    request: &TraceRequest,
    config: Option<&Config>,
    json: bool,
    shutdown: &Shutdown,
) -> Result<u8, AppError> {
    let (events, method) = cw.trace_events(request, shutdown).await?;
    let no_rules = RuleSet::default();
    let mut out_rows = Vec::with_capacity(events.len());
    for e in &events {
        let (rules, agent) = match config.and_then(|c| replay::group_config(c, &e.log_group)) {
            Some(g) => (&*g.rules, g.agent_id.clone()),
            None => (&no_rules, None),
        };
        let parsed = rules.parse(&e.message);
        let mut fields = Map::new();
        let f = &parsed.fields;
        for (key, value) in [
            ("session_id", &f.session_id),
            ("event_type", &f.event_type),
            ("trace_id", &f.trace_id),
            ("request_id", &f.request_id),
            ("span_id", &f.span_id),
            ("parent_span_id", &f.parent_span_id),
            ("service", &f.service),
            ("level", &f.level),
        ] {
            if let Some(v) = value {
                fields.insert(key.into(), Value::String(v.clone()));
            }
        }
        if let Some(a) = agent.or(f.agent_id.clone()) {
            fields.insert("agent_id".into(), Value::String(a));
        }
        for key in TRACE_FIELDS {
            if fields.contains_key(key) {
                continue;
            }
            if let Some(v) = parsed.properties.get(key).filter(|v| !v.is_null()) {
                fields.insert(key.into(), v.into_owned());
            }
        }
        out_rows.push((e, fields));
    }
    if json {
        let array: Vec<Value> = out_rows
            .iter()
            .map(|(e, fields)| {
                json!({
                    "timestamp": format_ms(e.timestamp_ms),
                    "log_group": e.log_group,
                    "log_stream": e.log_stream,
                    "message": e.message,
                    "fields": fields,
                })
            })
            .collect();
        print_json(&Value::Array(array));
    } else {
        let mut out = std::io::stdout().lock();
        for (e, fields) in &out_rows {
            let shown: Vec<String> = fields
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => format!("{k}={s}"),
                    other => format!("{k}={other}"),
                })
                .collect();
            let fields = if shown.is_empty() {
                String::new()
            } else {
                format!("  [{}]", shown.join(" "))
            };
            let _ = writeln!(
                out,
                "{}  {}  {}{}\n    {}",
                format_ms(e.timestamp_ms),
                e.log_group,
                e.log_stream,
                fields,
                e.message.trim_end().replace('\n', "\n    ")
            );
        }
    }
    let groups: std::collections::BTreeSet<&str> =
        events.iter().map(|e| e.log_group.as_str()).collect();
    crate::errln!(
        "cwtap: {} event(s) mentioning {} in {} log group(s), found with {}",
        events.len(),
        request.id,
        groups.len(),
        match method {
            crate::cloudwatch::insights::TraceMethod::Insights => "Logs Insights",
            crate::cloudwatch::insights::TraceMethod::FilterLogEvents => "FilterLogEvents",
        }
    );
    Ok(0)
}

async fn replay_cloudwatch(
    cw: &CloudWatch,
    file: &Path,
    events: Vec<replay::fixture::FixtureEvent>,
    options: &ToCloudWatch,
    json: bool,
    shutdown: &Shutdown,
) -> Result<u8, AppError> {
    let range = describe_range(&events);
    let report = replay::replay_to_cloudwatch(cw, events, options, now_ms(), shutdown).await?;
    if json {
        print_json(&to_json(&report));
    } else {
        crate::outln!(
            "replayed {} of {} ({range}, shifted {}) into {} stream(s): {} accepted, {} rejected{}",
            report.events,
            file.display(),
            describe_shift(report.shift_ms),
            report.streams,
            report.accepted,
            report.rejected.len(),
            if report.truncated > 0 {
                format!(", {} truncated", report.truncated)
            } else {
                String::new()
            }
        );
        for (reason, n) in report.rejected_by_reason() {
            crate::outln!("  {n} rejected: {reason}");
        }
        for r in report.rejected.iter().take(20) {
            crate::outln!(
                "  line {} ({} / {}, {}): {}",
                r.line,
                r.log_group,
                r.log_stream,
                format_ms(r.timestamp_ms),
                r.reason
            );
        }
        if report.rejected.len() > 20 {
            crate::outln!("  ... and {} more", report.rejected.len() - 20);
        }
    }
    if report.interrupted {
        crate::errln!(
            "cwtap: replay interrupted; events after the last batch sent were not replayed"
        );
        return Ok(1);
    }
    if !report.rejected.is_empty() {
        crate::errln!(
            "cwtap: CloudWatch rejected {} of the {} events (each is in the report with its line and reason); the others are stored",
            report.rejected.len(),
            report.events
        );
        return Ok(1);
    }
    Ok(0)
}

async fn replay_downstream(
    config: &Config,
    file: &Path,
    events: Vec<replay::fixture::FixtureEvent>,
    retarget: &Retarget,
    rebase: Rebase,
    json: bool,
    shutdown: &Shutdown,
) -> Result<u8, AppError> {
    let report =
        replay::replay_downstream(config, events, retarget, rebase, now_ms(), shutdown).await?;
    if json {
        print_json(&to_json(&report));
    } else {
        crate::outln!(
            "replayed {} events of {} to {}: {} delivered, {} rejected",
            report.events,
            file.display(),
            config.output.describe(),
            report.delivered,
            report.rejected
        );
        for (group, n) in &report.unmatched {
            crate::outln!(
                "  {n} event(s) of {group} skipped: no log_groups entry in {} selects it",
                config.path.display()
            );
        }
    }
    if report.interrupted {
        crate::errln!("cwtap: replay interrupted before every event was delivered");
        return Ok(1);
    }
    if report.rejected > 0 {
        crate::errln!(
            "cwtap: the output rejected {} of the {} events (the reasons are in the log above); the others are delivered",
            report.rejected,
            report.events
        );
        return Ok(1);
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_and_leave_the_last_one_unpadded() {
        let t = table(
            &["NAME", "DAYS"],
            &[
                vec!["/a".into(), "1".into()],
                vec!["/longer".into(), "30".into()],
            ],
        );
        assert_eq!(t, "NAME     DAYS\n/a       1\n/longer  30\n");
    }

    #[test]
    fn tags_are_key_equals_value() {
        let tags = parse_tags(&["team=core".into(), "empty=".into()]).unwrap();
        assert_eq!(tags["team"], "core");
        assert_eq!(tags["empty"], "");
        assert!(parse_tags(&["novalue".into()]).is_err());
        assert!(parse_tags(&["=x".into()]).is_err());
    }
}
