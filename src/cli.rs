//! Command-line interface: one `Command` variant per subcommand; the
//! operator commands (admin, Insights, fixtures) are in [`OpsCommand`].

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Pull CloudWatch Logs into a trace store without losing or duplicating
/// events.
#[derive(Debug, Parser)]
#[command(name = "cwtap", version, about, long_about = None)]
pub struct Cli {
    /// Log line format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log level (error, warn, info, debug, trace, off) or a RUST_LOG-style
    /// filter; RUST_LOG wins when set.
    #[arg(long, global = true, default_value = "info")]
    pub log_level: String,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The config file option shared by every command.
#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// Config file [default: $CWTAP_CONFIG, then $CONFIG_PATH, then ./config.yaml]
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
}

impl ConfigArg {
    /// The flag, else `$CWTAP_CONFIG`, else `$CONFIG_PATH` (the VectaDB
    /// agent's variable), else `./config.yaml`.
    pub fn resolve(&self) -> PathBuf {
        self.config
            .clone()
            .or_else(|| {
                std::env::var_os("CWTAP_CONFIG")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
            })
            .or_else(|| {
                std::env::var_os("CONFIG_PATH")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
            })
            .unwrap_or_else(|| PathBuf::from("config.yaml"))
    }

    /// The file [`ConfigArg::resolve`] names, unless that is the default
    /// `./config.yaml` and there is none: for commands that can do without
    /// a config file.
    pub fn resolve_optional(&self) -> Option<PathBuf> {
        let path = self.resolve();
        let defaulted = self.config.is_none()
            && ["CWTAP_CONFIG", "CONFIG_PATH"]
                .iter()
                .all(|v| std::env::var_os(v).is_none_or(|v| v.is_empty()));
        (!defaulted || path.exists()).then_some(path)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Poll every configured log group until SIGTERM or SIGINT.
    Run {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Deliver a past time window once, then exit.
    Backfill {
        #[command(flatten)]
        config: ConfigArg,
        /// Start of the window: a duration ago (30m, 6h, 7d, 2w) or an RFC 3339 time (Z or an offset).
        #[arg(long)]
        since: String,
        /// End of the window, same forms as --since [default: now].
        #[arg(long)]
        until: Option<String>,
        /// Only this log group (repeatable); must be selected by the config.
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Plain log lines even on a terminal.
        #[arg(long)]
        no_progress: bool,
    },
    /// Receive CloudWatch Logs subscription events from Amazon Data Firehose
    /// (an HTTP endpoint destination) on `firehose.listen` until SIGTERM.
    Serve {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Put a subscription filter on log groups towards a Firehose stream, so
    /// that their events reach `cwtap serve`.
    Subscribe {
        #[command(flatten)]
        config: ConfigArg,
        /// ARN of the Firehose delivery stream (or another destination).
        #[arg(long)]
        destination_arn: String,
        /// ARN of the role CloudWatch Logs assumes to write to the stream.
        #[arg(long)]
        role_arn: String,
        /// These log groups (repeatable) [default: the config's log_groups,
        /// prefixes resolved]. With --group or --prefix no config file is
        /// needed: without one the AWS settings come from the environment.
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Every group whose name starts with this (repeatable).
        #[arg(long = "prefix")]
        prefixes: Vec<String>,
        /// Name of the subscription filter (a group has at most two).
        #[arg(long, default_value = "cwtap")]
        filter_name: String,
        /// Filter pattern; empty sends every event.
        #[arg(long, default_value = "")]
        filter_pattern: String,
        /// Print what would be done and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Validate the config and print what would be polled and where it goes.
    Check {
        #[command(flatten)]
        config: ConfigArg,
        /// Also try it: one cheap call per account-Region and IAM action
        /// needed, prefixes resolved, the output's health, the state path;
        /// exit 1 naming each failure.
        #[arg(long)]
        online: bool,
    },
    /// Parse raw lines (or a captured fixture) with a group's rules and show
    /// the matching rule, the canonical fields and the traces that form.
    ParseTest {
        #[command(flatten)]
        config: ConfigArg,
        /// The log group whose rules apply (a configured name, or a name a
        /// configured prefix selects).
        #[arg(long)]
        group: String,
        /// Input file: raw lines, or a fixture of JSON lines with `message`
        /// (`-` or nothing: standard input).
        input: Option<PathBuf>,
        /// JSON lines (one per input line, then one per trace) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show each log group's cursor, lag, counts and last error.
    Status {
        #[command(flatten)]
        config: ConfigArg,
        /// JSON instead of a table.
        #[arg(long, conflicts_with = "watch")]
        json: bool,
        /// Redraw the table every --interval until interrupted.
        #[arg(long)]
        watch: bool,
        /// How often --watch redraws (2s, 10s, 1m).
        #[arg(long, default_value = "2s", requires = "watch")]
        interval: String,
    },
    /// Print the shell completion script (bash, zsh, fish, elvish,
    /// powershell) to standard output.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to standard output, or write one page per
    /// command into --dir.
    Man {
        /// Folder for cwtap.1 and one page per subcommand (cwtap-run.1, ...).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Probe a running agent's health endpoint: exit 0 when it answers 200,
    /// 1 otherwise (the container's HEALTHCHECK; no curl needed).
    Health {
        /// The URL to GET.
        #[arg(long, default_value = "http://127.0.0.1:9464/healthz")]
        url: String,
    },
    #[command(flatten)]
    Ops(OpsCommand),
}

/// Where admin, query and fixture commands find CloudWatch.
#[derive(Debug, Clone, clap::Args)]
pub struct AwsArgs {
    /// Config file whose `aws:` section to use (a file with only `aws:` is
    /// enough) [default: the standard AWS environment: AWS_REGION,
    /// AWS_ENDPOINT_URL, AWS_PROFILE, credentials chain]
    #[arg(long, short = 'c', global = true)]
    pub config: Option<PathBuf>,
}

/// Table or JSON output.
#[derive(Debug, Clone, clap::Args)]
pub struct FormatArgs {
    /// JSON on standard output instead of a table (for scripts).
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum GroupsAction {
    /// List log groups (all pages), by name.
    List {
        /// Only groups whose name starts with this, e.g. /aws/lambda/.
        #[arg(long, default_value = "")]
        prefix: String,
    },
    /// Create a log group; an existing one is success (its retention and tags are set).
    Create {
        /// Log group name, e.g. /aws/lambda/checkout.
        name: String,
        /// Retention in days (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653).
        #[arg(long)]
        retention: Option<i64>,
        /// A tag as KEY=VALUE (repeatable).
        #[arg(long = "tag", value_name = "KEY=VALUE")]
        tags: Vec<String>,
    },
    /// Delete a log group and all its events.
    Delete {
        /// Log group name.
        name: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StreamOrderArg {
    /// By name, ascending.
    Name,
    /// Most recent event first (CloudWatch's lastEventTimestamp may lag up to an hour).
    LastEvent,
}

#[derive(Debug, Subcommand)]
pub enum StreamsAction {
    /// List the streams of a group (all pages).
    List {
        /// Log group name.
        group: String,
        /// Only streams whose name starts with this (not with --order last-event).
        #[arg(long)]
        prefix: Option<String>,
        #[arg(long, value_enum, default_value_t = StreamOrderArg::Name)]
        order: StreamOrderArg,
    },
    /// Create a stream; an existing one is success.
    Create {
        /// Log group name.
        group: String,
        /// Log stream name.
        stream: String,
    },
    /// Delete a stream and its events.
    Delete {
        /// Log group name.
        group: String,
        /// Log stream name.
        stream: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum RetentionAction {
    /// Keep a group's events this many days (only CloudWatch's allowed values).
    Set {
        /// Log group name.
        group: String,
        /// Days to keep events.
        days: i64,
    },
    /// Keep a group's events forever.
    Delete {
        /// Log group name.
        group: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SubscriptionFiltersAction {
    /// Create or replace a subscription filter.
    Put {
        /// Log group name.
        group: String,
        /// Filter name.
        name: String,
        /// ARN of the Kinesis stream, Firehose, Lambda or logs destination.
        #[arg(long)]
        destination_arn: String,
        /// Filter pattern; empty matches every event.
        #[arg(long, default_value = "")]
        pattern: String,
        /// Role CloudWatch assumes to deliver (Kinesis, Firehose).
        #[arg(long)]
        role_arn: Option<String>,
        /// Group events by log stream (AWS's default; stated explicitly).
        #[arg(long, conflicts_with = "random")]
        by_log_stream: bool,
        /// Spread events evenly at random instead of by log stream
        /// (Kinesis Data Streams destinations only).
        #[arg(long)]
        random: bool,
    },
    /// List a group's subscription filters.
    List {
        /// Log group name.
        group: String,
        /// Only filters whose name starts with this.
        #[arg(long)]
        prefix: Option<String>,
    },
    /// Delete a subscription filter.
    Delete {
        /// Log group name.
        group: String,
        /// Filter name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum MetricFiltersAction {
    /// Create or replace a metric filter.
    Put {
        /// Log group name.
        group: String,
        /// Filter name.
        name: String,
        /// Filter pattern, e.g. '"ERROR"' or '{ $.level = "error" }'.
        #[arg(long)]
        pattern: String,
        /// Name of the CloudWatch metric the filter counts into.
        #[arg(long)]
        metric_name: String,
        /// Namespace of that metric.
        #[arg(long)]
        namespace: String,
        /// Value published per matching event: a number or $.field.
        #[arg(long, default_value = "1")]
        value: String,
        /// Value published when nothing matches.
        #[arg(long)]
        default_value: Option<f64>,
    },
    /// List metric filters (of one group, or of every group).
    List {
        /// Log group name [default: every group].
        group: Option<String>,
        /// Only filters whose name starts with this.
        #[arg(long)]
        prefix: Option<String>,
    },
    /// Delete a metric filter.
    Delete {
        /// Log group name.
        group: String,
        /// Filter name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TagsAction {
    /// Show a group's tags.
    List {
        /// Log group name.
        group: String,
    },
    /// Add or overwrite tags: KEY=VALUE ...
    Add {
        /// Log group name.
        group: String,
        /// Tags to add or change.
        #[arg(required = true, value_name = "KEY=VALUE")]
        tags: Vec<String>,
    },
    /// Remove tags by key.
    Remove {
        /// Log group name.
        group: String,
        /// Keys of the tags to remove.
        #[arg(required = true, value_name = "KEY")]
        keys: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TraceViaArg {
    /// Logs Insights, else FilterLogEvents where Insights is unavailable.
    Auto,
    Insights,
    /// FilterLogEvents with the quoted id as filter pattern.
    Filter,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReplayTarget {
    /// PutLogEvents into a CloudWatch endpoint (AWS, LocalStack, moto).
    Cloudwatch,
    /// The config's parser rules and output, without CloudWatch.
    Downstream,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OversizeArg {
    /// Cut at a char boundary and mark it.
    Truncate,
    /// Leave it out and report it.
    Reject,
}

/// The operator commands: admin, Insights and fixtures.
#[derive(Debug, Subcommand)]
pub enum OpsCommand {
    /// Log groups: list, create, delete.
    Groups {
        #[command(flatten)]
        aws: AwsArgs,
        #[command(flatten)]
        format: FormatArgs,
        #[command(subcommand)]
        action: GroupsAction,
    },
    /// Log streams: list, create, delete.
    Streams {
        #[command(flatten)]
        aws: AwsArgs,
        #[command(flatten)]
        format: FormatArgs,
        #[command(subcommand)]
        action: StreamsAction,
    },
    /// Retention: set, delete.
    Retention {
        #[command(flatten)]
        aws: AwsArgs,
        #[command(flatten)]
        format: FormatArgs,
        #[command(subcommand)]
        action: RetentionAction,
    },
    /// Subscription filters: put, list, delete.
    SubscriptionFilters {
        #[command(flatten)]
        aws: AwsArgs,
        #[command(flatten)]
        format: FormatArgs,
        #[command(subcommand)]
        action: SubscriptionFiltersAction,
    },
    /// Metric filters: put, list, delete.
    MetricFilters {
        #[command(flatten)]
        aws: AwsArgs,
        #[command(flatten)]
        format: FormatArgs,
        #[command(subcommand)]
        action: MetricFiltersAction,
    },
    /// Tags of a log group: list, add, remove.
    Tags {
        #[command(flatten)]
        aws: AwsArgs,
        #[command(flatten)]
        format: FormatArgs,
        #[command(subcommand)]
        action: TagsAction,
    },
    /// Run a Logs Insights query and print the results.
    Query {
        /// The query, e.g. 'fields @timestamp, @message | sort @timestamp desc | limit 20'.
        query: String,
        /// Log group name or ARN (repeatable, at most 50).
        #[arg(long = "group", required = true)]
        groups: Vec<String>,
        /// Start: a duration ago (30m, 6h, 7d) or an RFC 3339 time (Z or an offset).
        #[arg(long)]
        since: String,
        /// End, same forms [default: now].
        #[arg(long)]
        until: Option<String>,
        /// Most rows (1 to 10000).
        #[arg(long)]
        limit: Option<i32>,
        /// Stop the query (StopQuery) when it has not completed after this long.
        #[arg(long, default_value = "60s")]
        timeout: String,
        /// One JSON array of row objects.
        #[arg(long, conflicts_with = "ndjson")]
        json: bool,
        /// One JSON object per row per line.
        #[arg(long)]
        ndjson: bool,
        #[command(flatten)]
        aws: AwsArgs,
    },
    /// Every event of one trace or request across groups, in time order.
    Trace {
        /// The trace id, request id or any correlation id.
        id: String,
        /// Log group (repeatable).
        #[arg(long = "group", required = true)]
        groups: Vec<String>,
        /// Start: a duration ago (30m, 6h, 7d) or an RFC 3339 time (Z or an offset).
        #[arg(long)]
        since: String,
        /// End, same forms [default: now].
        #[arg(long)]
        until: Option<String>,
        /// How to search.
        #[arg(long, value_enum, default_value_t = TraceViaArg::Auto)]
        via: TraceViaArg,
        /// Stop the Insights query after this long.
        #[arg(long, default_value = "60s")]
        timeout: String,
        /// An agent config: its aws: section, and its log_groups' parser
        /// rules to show each event's parsed fields.
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
        /// JSON instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Copy raw events of log groups into a fixture file.
    Capture {
        /// Log group (repeatable).
        #[arg(long = "group", required = true)]
        groups: Vec<String>,
        /// Start: a duration ago (30m, 6h, 7d) or an RFC 3339 time (Z or an offset).
        #[arg(long)]
        since: String,
        /// End, same forms [default: now].
        #[arg(long)]
        until: Option<String>,
        /// Fixture file (gzip when it ends in .gz) [default: standard output].
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
        #[command(flatten)]
        aws: AwsArgs,
    },
    /// Put a fixture into CloudWatch, or through the parsers into the output.
    Replay {
        /// Fixture file (.ndjson or .ndjson.gz).
        file: PathBuf,
        #[arg(long, value_enum)]
        to: ReplayTarget,
        /// Send every event to this log group instead of its own.
        #[arg(long)]
        group: Option<String>,
        /// Send every event to this log stream instead of its own.
        #[arg(long)]
        stream: Option<String>,
        /// Create missing log groups and streams (cloudwatch).
        #[arg(long)]
        create: bool,
        /// Shift timestamps so the newest event lands at: now, an RFC 3339
        /// time, or keep [default: now for cloudwatch, keep for downstream].
        #[arg(long)]
        rebase: Option<String>,
        /// Pace: N times real time, or max (cloudwatch) [default: max].
        #[arg(long)]
        speed: Option<String>,
        /// Largest event in bytes (message + 26); larger ones are handled by --oversize.
        #[arg(long, default_value_t = crate::cloudwatch::write::DEFAULT_MAX_EVENT_BYTES)]
        max_event_bytes: usize,
        #[arg(long, value_enum, default_value_t = OversizeArg::Truncate)]
        oversize: OversizeArg,
        /// cloudwatch: a config whose aws: section to use; downstream
        /// (required): the agent config with log_groups and the output.
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
        /// The report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write synthetic correlated logs (gateway -> Lambdas) as a fixture.
    Generate {
        /// Fixture file (gzip when it ends in .gz).
        #[arg(long, short = 'o')]
        output: PathBuf,
        /// Number of gateway requests.
        #[arg(long, default_value_t = 50)]
        traces: usize,
        /// Lambda services in call order, comma-separated.
        #[arg(
            long,
            default_value = "checkout,payments,inventory",
            value_delimiter = ','
        )]
        services: Vec<String>,
        /// Share of requests that fail with a stack trace.
        #[arg(long, default_value_t = 0.05)]
        error_rate: f64,
        /// Start of the time range: a duration ago or an RFC 3339 time.
        #[arg(long, default_value = "1h")]
        since: String,
        /// End of the time range [default: now].
        #[arg(long)]
        until: Option<String>,
        /// The same seed and range give the same file.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// API Gateway name (its group is /aws/apigateway/NAME).
        #[arg(long, default_value = "demo-gw")]
        gateway: String,
    },
}
