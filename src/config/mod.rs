//! Configuration: the YAML file is read once, `${VAR}`-expanded, validated and
//! turned into [`Config`]; the rest of cwtap never re-validates.
//!
//! Errors name the file and the line (YAML and type errors) or the key (values
//! that parse but make no sense), and are reported before any AWS or HTTP call
//! and before the state file is created.

mod expand;
pub(crate) mod raw;
mod section;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::parse::{LoadOptions, RedactConfig, RuleSet, redact::DEFAULT_FIELD_NAMES};
use crate::sink::OutputConfig;
use crate::source::firehose::config::FirehoseConfig;
use crate::time::parse_duration;
use crate::trace::SummaryPolicy;
pub use raw::{
    DurationValue, RawAccount, RawAgent, RawAws, RawConfig, RawLogGroup, RawRateLimits,
    RawReadMode, RawRedact, RawRedactFields,
};
pub use section::{Sections, field_names};

/// A secret value (an API key). Its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Why a configuration could not be loaded. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from, for messages.
    pub path: PathBuf,
    pub aws: AwsConfig,
    /// Every account-Region read; the first is the default of a group.
    pub accounts: Vec<AccountConfig>,
    /// The one output (see [`crate::sink::OUTPUTS`]).
    pub output: Arc<dyn OutputConfig>,
    pub groups: Vec<GroupConfig>,
    pub agent: AgentConfig,
    /// `firehose:`: what `cwtap serve` listens on.
    pub firehose: Option<Arc<FirehoseConfig>>,
}

/// The `aws:` section: where CloudWatch is and how calls are retried.
#[derive(Debug, Clone)]
pub struct AwsConfig {
    /// Region; `None` lets the standard AWS chain decide (AWS_REGION, profile).
    pub region: Option<String>,
    pub profile: Option<String>,
    /// Endpoint override (moto, LocalStack); `AWS_ENDPOINT_URL` also works.
    pub endpoint_url: Option<String>,
    /// Retries of one throttled or failed call before the poll gives up and
    /// tries again at the next interval (nothing is lost either way).
    pub max_retries: u32,
    /// Timeout of one API call attempt.
    pub timeout: Duration,
    /// The shared call budget per API.
    pub rate_limits: RateLimits,
}

/// One account and Region cwtap reads: credentials, Region, endpoint and its
/// own call budget. A config without `accounts:` has one, named `default`,
/// from `aws:`.
#[derive(Debug, Clone)]
pub struct AccountConfig {
    /// Unique; names the account in `log_groups[].account`, in metrics and
    /// as the key of its checkpoints in the state file.
    pub name: String,
    /// Region, profile, endpoint, retries, timeout and rate limits.
    pub aws: AwsConfig,
    /// A role to assume (through STS, with refreshing credentials).
    pub role: Option<AssumeRole>,
    /// The 12-digit account id, when configured or in the role's ARN.
    pub account_id: Option<String>,
    /// Whether the config lists `accounts:` (then events carry their
    /// account and Region in their source fields).
    pub listed: bool,
}

/// The role an account is read through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssumeRole {
    pub role_arn: String,
    pub external_id: Option<Secret>,
    pub session_name: String,
}

/// The name of the account of a config without `accounts:`.
pub const DEFAULT_ACCOUNT: &str = "default";

/// Calls per second per API, shared by every poller: CloudWatch's default
/// quotas per account and Region unless configured otherwise.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimits {
    pub filter_log_events: f64,
    pub get_log_events: f64,
    pub describe_log_groups: f64,
    pub describe_log_streams: f64,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            filter_log_events: 5.0,
            get_log_events: 25.0,
            describe_log_groups: 5.0,
            describe_log_streams: 5.0,
        }
    }
}

impl Default for AwsConfig {
    /// Everything from the standard AWS environment (`AWS_REGION`,
    /// `AWS_ENDPOINT_URL`, profile, ...), with cwtap's retry defaults.
    fn default() -> Self {
        AwsConfig {
            region: None,
            profile: None,
            endpoint_url: None,
            max_retries: 8,
            timeout: Duration::from_secs(30),
            rate_limits: RateLimits::default(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// Where this group sits in the file, `log_groups[2]`, for messages.
    pub key: String,
    pub selector: GroupSelector,
    /// The name of the account (`accounts[].name`) the group is read from.
    pub account: String,
    pub agent_id: Option<String>,
    pub filter_pattern: Option<String>,
    pub streams: StreamFilter,
    /// Which API reads the group's events.
    pub mode: ReadMode,
    pub rules: Arc<RuleSet>,
}

/// How a group's events are read. Both modes give the same cursor,
/// re-read and de-duplication guarantees.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReadMode {
    /// FilterLogEvents over the whole group (5 requests/s per account and
    /// Region by default).
    #[default]
    Filter,
    /// DescribeLogStreams, then GetLogEvents stream by stream (a quota of its
    /// own, 25 requests/s by default): for groups whose volume makes
    /// FilterLogEvents the bottleneck.
    Streams,
}

impl ReadMode {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            ReadMode::Filter => "filter",
            ReadMode::Streams => "streams",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupSelector {
    /// One group by its exact name.
    Name(String),
    /// Every group whose name starts with this, found with DescribeLogGroups.
    Prefix(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamFilter {
    All,
    Names(Vec<String>),
    Prefix(String),
}

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub poll_interval: Duration,
    /// A group that found nothing new polls less often, doubling its
    /// interval up to this.
    pub max_idle_poll_interval: Duration,
    /// How far back a group seen for the first time starts.
    pub lookback: Duration,
    pub state_path: PathBuf,
    /// Whether every state commit is fsynced (see [`crate::state::StateStore::set_fsync`]).
    pub state_fsync: bool,
    /// Guaranteed lateness: an event ingested up to this long after its
    /// timestamp is delivered exactly once.
    pub late_arrival: Duration,
    /// Whether the re-read window grows past `late_arrival` for a group whose
    /// observed delays (ingestion time minus timestamp) are longer.
    pub adaptive_late_arrival: bool,
    /// Upper bound of the adaptive window.
    pub max_late_arrival: Duration,
    /// Longest time span one scan covers before its cursor is committed.
    pub max_window: Duration,
    /// How many pages read from CloudWatch the groups of one account hold
    /// at once (a page is up to 10,000 events or 1 MB); bounds the memory
    /// of a backfill over many groups.
    pub max_pages_per_account: usize,
    /// How often `prefix` selectors are re-discovered.
    pub discovery_interval: Duration,
    /// How long an in-flight delivery may finish after SIGTERM.
    pub shutdown_grace: Duration,
    /// Whether events are grouped into traces (and summaries emitted).
    pub group_traces: bool,
    /// A trace without events for this long is closed.
    pub trace_idle: Duration,
    /// How delivered events carry their trace key.
    pub trace_key_field: crate::trace::KeyField,
    /// Which closed traces get a `trace_summary`.
    pub trace_summaries: SummaryPolicy,
    /// Where `cwtap run` serves `/healthz`, `/readyz` and `/metrics`;
    /// `None` when `agent.listen: off`.
    pub listen: Option<std::net::SocketAddr>,
}

/// Where the metrics and health listener is by default: loopback only.
pub const DEFAULT_LISTEN: std::net::SocketAddr =
    std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9464);

impl Config {
    /// Reads, expands and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_yaml(&text, path)
    }

    /// Reads only the `aws:` section of `path`, for the commands that talk
    /// to CloudWatch and deliver nowhere (admin, query, capture, replay to
    /// CloudWatch): a file with nothing but `aws:` is enough. The whole file
    /// is still checked for YAML and unknown keys.
    pub fn load_aws_only(path: &Path) -> Result<AwsConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let (_, raw) = Self::parse(&text, path)?;
        validate_aws(raw.aws).map_err(|(key, message)| ConfigError::Invalid {
            path: path.to_path_buf(),
            key,
            message,
        })
    }

    /// The `agent.state_path` of the file at `path`, read without the rest
    /// (for `status`, which reads nothing else): other `${VAR}`s may be
    /// unset. `None` when the file cannot be read or parsed that far, or
    /// when the state path itself is written with a `${...}`.
    pub fn state_path_only(path: &Path) -> Option<PathBuf> {
        #[derive(serde::Deserialize)]
        struct File {
            agent: Option<Agent>,
        }
        #[derive(serde::Deserialize)]
        struct Agent {
            state_path: Option<String>,
        }
        let text = std::fs::read_to_string(path).ok()?;
        if text
            .lines()
            .any(|l| l.contains("state_path") && l.contains("${"))
        {
            return None;
        }
        // Any value does for the others: only the state path is kept.
        let expanded = expand::expand_text(&text, &|name| {
            Some(
                std::env::var(name)
                    .ok()
                    .filter(|v| !v.is_empty())
                    .unwrap_or_else(|| "0".into()),
            )
        })
        .ok()?;
        let file: File = serde_yaml::from_str(&expanded).ok()?;
        let state_path = file
            .agent
            .and_then(|a| a.state_path)
            .filter(|p| !p.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_STATE_PATH.into());
        Some(PathBuf::from(state_path))
    }

    /// Expands `${VAR}` in the text, then parses it (errors keep their line
    /// and column) and checks the top-level keys. Returns the expanded text
    /// (the sections read from it) and the general part.
    fn parse(text: &str, path: &Path) -> Result<(String, RawConfig), ConfigError> {
        let syntax = |message: String| ConfigError::Syntax {
            path: path.to_path_buf(),
            message,
        };
        // Some editors start a UTF-8 file with a byte order mark.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let expanded =
            expand::expand_text(text, &|name| std::env::var(name).ok()).map_err(|e| {
                ConfigError::Invalid {
                    path: path.to_path_buf(),
                    key: e.key,
                    message: format!("line {}: {}", e.line, e.message),
                }
            })?;
        // serde_yaml names a control character by its byte offset only.
        // The expanded lines are the file's (a variable that holds a line
        // break or a control character was refused above).
        if let Some((line, column, c)) = control_character(&expanded) {
            return Err(syntax(format!(
                "line {line}, column {column}: a control character (U+{:04X}) is not allowed in a config file",
                c as u32
            )));
        }
        // Parsed once as plain YAML for the checks the typed parse cannot
        // make: keys given twice (before it, which would take one of them
        // silently) and unknown top-level keys (after it, whose errors carry
        // a line).
        let value = serde_yaml::from_str::<serde_yaml::Value>(&expanded);
        if let Err(e) = &value {
            check_duplicate_keys(&expanded, e).map_err(syntax)?;
        }
        let raw: RawConfig = serde_yaml::from_str(&expanded)
            .map_err(|e| syntax(crate::errors::plain(&e.to_string())))?;
        if let Ok(serde_yaml::Value::Mapping(map)) = &value {
            check_top_level_keys(&expanded, map).map_err(syntax)?;
        }
        Ok((expanded, raw))
    }

    /// Validates YAML text; `path` is used in messages, and its folder is
    /// where a relative `parsers_dir` is read from.
    pub fn from_yaml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let (expanded, raw) = Self::parse(text, path)?;
        let base = path.parent().unwrap_or(Path::new(""));
        let invalid = |(key, message): Invalid| ConfigError::Invalid {
            path: path.to_path_buf(),
            key,
            message,
        };
        let rules = rule_options(&raw, base).map_err(invalid)?;
        let sections = Sections {
            text: &expanded,
            path,
            base_dir: base,
            agent: &raw.agent,
            rules: &rules,
        };
        let output = read_output(&sections).map_err(invalid)?;
        let firehose = crate::source::firehose::config::load(&sections).map_err(invalid)?;
        validate(raw, output, firehose, rules)
            .map_err(invalid)
            .map(|mut c| {
                c.path = path.to_path_buf();
                c
            })
    }
}

/// The first control character other than tab and line breaks, with its
/// line and column (1-based).
fn control_character(text: &str) -> Option<(usize, usize, char)> {
    text.lines().enumerate().find_map(|(n, line)| {
        line.chars()
            .enumerate()
            .find(|(_, c)| c.is_control() && !matches!(c, '\t' | '\r'))
            .map(|(i, c)| (n + 1, i + 1, c))
    })
}

/// Top-level keys that are not [`RawConfig`]'s: the sections their modules
/// read for themselves (the outputs', and the Firehose source's).
fn section_names() -> Vec<&'static str> {
    crate::sink::OUTPUTS
        .iter()
        .map(|o| o.name)
        .chain([crate::source::firehose::config::SECTION])
        .collect()
}

/// Where `use:` finds rule files, and the redaction every group gets unless
/// it says otherwise. `base` is the config file's folder: a relative
/// `parsers_dir` is read from there.
fn rule_options(raw: &RawConfig, base: &Path) -> Result<LoadOptions, Invalid> {
    let parsers_dir = match non_empty(raw.parsers_dir.clone(), "parsers_dir")? {
        None => None,
        Some(dir) => {
            let dir = base.join(dir);
            if !dir.is_dir() {
                return Err(invalid(
                    "parsers_dir",
                    format!(
                        "{} is not a folder (a relative path is read from the config file's folder)",
                        dir.display()
                    ),
                ));
            }
            Some(dir)
        }
    };
    Ok(LoadOptions {
        parsers_dir,
        redact: redact_config(raw.redact.as_ref()),
    })
}

/// A key given twice in one mapping is an error naming both lines (serde
/// would take one of them silently, or name only the mapping's line). `e`
/// is the plain YAML parse's error; other errors are left to the typed parse.
fn check_duplicate_keys(text: &str, e: &serde_yaml::Error) -> Result<(), String> {
    let message = e.to_string();
    let Some(at) = message.find("duplicate entry with key ") else {
        // Other errors are reported by the typed parse, with its words.
        return Ok(());
    };
    let parent = message[..at].strip_suffix(": ").unwrap_or("");
    let rest = &message[at + "duplicate entry with key ".len()..];
    let rest = rest.split(" at line ").next().unwrap_or(rest);
    let key = rest.trim().trim_matches('"');
    let path = if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    };
    let (line, column) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
    Err(match key_lines(text, line, column, key) {
        Some((first, second)) => format!(
            "line {second}: `{path}` is given twice (first at line {first}); give each key once"
        ),
        None => format!("line {line}: `{path}` is given twice in this mapping; give each key once"),
    })
}

/// The lines (1-based) of the first two entries `key` of the block mapping
/// that starts at `line`, `column`: the keys at that indentation, until a
/// line less indented ends it. `None` when not found (a flow mapping).
fn key_lines(text: &str, line: usize, column: usize, key: &str) -> Option<(usize, usize)> {
    let indent = column.saturating_sub(1);
    let is_key = |entry: &str| {
        [key.to_string(), format!("\"{key}\""), format!("'{key}'")]
            .iter()
            .any(|k| {
                entry
                    .strip_prefix(k.as_str())
                    .is_some_and(|after| after.trim_start().starts_with(':'))
            })
    };
    let mut found = Vec::new();
    for (n, l) in text.lines().enumerate().skip(line.saturating_sub(1)) {
        let entry = if n + 1 == line {
            // The mapping's first key, maybe after `- `.
            l.get(indent..).unwrap_or("")
        } else {
            let content = l.trim_start_matches(' ');
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            let spaces = l.len() - content.len();
            if spaces < indent {
                break;
            }
            if spaces > indent {
                continue;
            }
            content
        };
        if is_key(entry) {
            found.push(n + 1);
            if let [first, second] = found[..] {
                return Some((first, second));
            }
        }
    }
    None
}

/// Every top-level key must be known: a misspelt section would otherwise
/// be ignored.
fn check_top_level_keys(text: &str, map: &serde_yaml::Mapping) -> Result<(), String> {
    let general = field_names::<RawConfig>();
    let sections = section_names();
    for key in map.keys() {
        let name = key.as_str().unwrap_or_default();
        if !general.contains(&name) && !sections.contains(&name) {
            let line = text
                .lines()
                .position(|l| l.starts_with(name) && l[name.len()..].trim_start().starts_with(':'))
                .map(|n| format!("line {}: ", n + 1))
                .unwrap_or_default();
            let mut known: Vec<&str> = general.iter().copied().chain(sections).collect();
            known.sort_unstable();
            return Err(format!(
                "{line}unknown top-level key `{name}`, expected one of {}",
                known.join(", ")
            ));
        }
    }
    Ok(())
}

/// The one configured output.
fn read_output(sections: &Sections<'_>) -> Result<Arc<dyn OutputConfig>, Invalid> {
    let mut found: Vec<(&str, Arc<dyn OutputConfig>)> = Vec::new();
    for kind in crate::sink::OUTPUTS {
        if let Some(output) = (kind.load)(sections)? {
            found.push((kind.name, output));
        }
    }
    match found.len() {
        0 => Err(invalid(
            crate::sink::OUTPUTS
                .iter()
                .map(|o| o.name)
                .collect::<Vec<_>>()
                .join(", "),
            "no output is configured; add a `vectadb:` section, `otlp: {endpoint: ...}` or `ndjson: {path: ...}`",
        )),
        1 => Ok(found.remove(0).1),
        _ => Err(invalid(
            found.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "),
            "two outputs are configured; keep exactly one",
        )),
    }
}

/// A value that makes no sense: (key, message).
pub type Invalid = (String, String);

pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> Invalid {
    (key.into(), message.into())
}

pub(crate) fn duration(
    value: &Option<DurationValue>,
    key: &str,
    default: Duration,
) -> Result<Duration, Invalid> {
    match value {
        None => Ok(default),
        Some(DurationValue::Secs(s)) => Ok(Duration::from_secs(*s)),
        Some(DurationValue::Text(t)) => parse_duration(t).map_err(|e| invalid(key, e)),
    }
}

/// A duration that must be at least a second: a pace (polling, discovery)
/// faster than that only spends the call budget.
fn pace(value: &Option<DurationValue>, key: &str, default: Duration) -> Result<Duration, Invalid> {
    let d = duration(value, key, default)?;
    if d < Duration::from_secs(1) {
        return Err(invalid(key, "must be at least 1s"));
    }
    Ok(d)
}

pub(crate) fn non_empty(value: Option<String>, key: &str) -> Result<Option<String>, Invalid> {
    match value {
        Some(v) if v.trim().is_empty() => Err(invalid(key, "must not be empty")),
        other => Ok(other),
    }
}

/// CloudWatch's rule for group names: 1-512 of `[.\-_/#A-Za-z0-9]`.
fn check_group_name(name: &str, key: &str, allow_empty: bool) -> Result<(), Invalid> {
    match crate::cloudwatch::admin::group_name_problem(name, allow_empty) {
        Some(problem) => Err(invalid(key, problem)),
        None => Ok(()),
    }
}

/// `redact:` as configured; every kind is off unless switched on.
fn redact_config(raw: Option<&RawRedact>) -> RedactConfig {
    let Some(r) = raw else {
        return RedactConfig::default();
    };
    RedactConfig {
        emails: r.emails.unwrap_or(false),
        card_numbers: r.card_numbers.unwrap_or(false),
        us_ssn: r.us_ssn.unwrap_or(false),
        phone_numbers: r.phone_numbers.unwrap_or(false),
        fields: match &r.fields {
            None | Some(RawRedactFields::Switch(false)) => Vec::new(),
            Some(RawRedactFields::Switch(true)) => {
                DEFAULT_FIELD_NAMES.iter().map(|s| s.to_string()).collect()
            }
            Some(RawRedactFields::Names(names)) => names.clone(),
        },
    }
}

fn validate_aws(raw: raw::RawAws) -> Result<AwsConfig, Invalid> {
    let aws = AwsConfig {
        region: non_empty(raw.region, "aws.region")?,
        profile: non_empty(raw.profile, "aws.profile")?,
        endpoint_url: non_empty(raw.endpoint_url, "aws.endpoint_url")?,
        max_retries: raw.max_retries.unwrap_or(8),
        timeout: Duration::from_secs(raw.timeout_secs.unwrap_or(30).max(1)),
        rate_limits: validate_rate_limits(raw.rate_limits, RateLimits::default())?,
    };
    match &aws.endpoint_url {
        Some(url) => check_http_url(url, "aws.endpoint_url")?,
        // The SDK reads the variable itself; it is checked the same way
        // (and `check` shows it), so a typo or a password in it is found
        // before the first call.
        None => {
            if let Some(url) = std::env::var("AWS_ENDPOINT_URL")
                .ok()
                .filter(|u| !u.trim().is_empty())
            {
                check_http_url(&url, "AWS_ENDPOINT_URL (environment)")?;
            }
        }
    }
    Ok(aws)
}

/// Reads a `rate_limits` section; a key left out keeps its value from
/// `defaults` (CloudWatch's quotas for `aws.rate_limits`, the agent-wide
/// budget for an account's).
fn validate_rate_limits(
    raw: Option<raw::RawRateLimits>,
    d: RateLimits,
) -> Result<RateLimits, Invalid> {
    let Some(raw) = raw else { return Ok(d) };
    let rate = |v: Option<f64>, default: f64, key: &str| match v {
        None => Ok(default),
        Some(r) if r.is_finite() && (0.01..=10_000.0).contains(&r) => Ok(r),
        Some(r) => Err(invalid(
            key,
            format!("{r} is not a rate between 0.01 and 10000 calls per second"),
        )),
    };
    Ok(RateLimits {
        filter_log_events: rate(
            raw.filter_log_events,
            d.filter_log_events,
            "aws.rate_limits.filter_log_events",
        )?,
        get_log_events: rate(
            raw.get_log_events,
            d.get_log_events,
            "aws.rate_limits.get_log_events",
        )?,
        describe_log_groups: rate(
            raw.describe_log_groups,
            d.describe_log_groups,
            "aws.rate_limits.describe_log_groups",
        )?,
        describe_log_streams: rate(
            raw.describe_log_streams,
            d.describe_log_streams,
            "aws.rate_limits.describe_log_streams",
        )?,
    })
}

/// `base` is the config file's folder: a relative `parsers_dir` is read
/// from there.
fn validate(
    raw: RawConfig,
    output: Arc<dyn OutputConfig>,
    firehose: Option<Arc<FirehoseConfig>>,
    rules: LoadOptions,
) -> Result<Config, Invalid> {
    let aws = validate_aws(raw.aws)?;
    let accounts = validate_accounts(raw.accounts, &aws)?;

    // A config that only receives (`firehose:`) may leave log_groups out:
    // every group then gets firehose.default_parsers.
    let raw_groups = match (raw.log_groups, &firehose) {
        (Some(g), _) if !g.is_empty() => g,
        (_, Some(_)) => Vec::new(),
        (None, None) => {
            return Err(invalid(
                "log_groups",
                "missing: list the log groups to poll (name: or prefix:)",
            ));
        }
        (Some(_), None) => {
            return Err(invalid(
                "log_groups",
                "is empty: list at least one log group (name: or prefix:)",
            ));
        }
    };
    let default_redact = rules.redact.clone();
    let mut groups = Vec::with_capacity(raw_groups.len());
    for (i, g) in raw_groups.into_iter().enumerate() {
        let key = format!("log_groups[{i}]");
        let mut account = match &g.account {
            None => None,
            Some(a) => Some(
                accounts
                    .iter()
                    .find(|c| c.name == *a)
                    .ok_or_else(|| {
                        invalid(
                            format!("{key}.account"),
                            format!(
                                "no accounts entry is named {a:?} (known: {})",
                                accounts
                                    .iter()
                                    .map(|c| c.name.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        )
                    })?
                    .name
                    .clone(),
            ),
        };
        // A log group ARN names its account and Region: the entry reading them.
        let name = match g.name {
            Some(n) if n.starts_with("arn:") => {
                let (region, account_id, name) = parse_log_group_arn(&n)
                    .ok_or_else(|| invalid(format!("{key}.name"), format!("{n:?} is not a log group ARN (arn:aws:logs:REGION:ACCOUNT:log-group:NAME)")))?;
                let entry = accounts
                    .iter()
                    .find(|c| {
                        c.account_id.as_deref() == Some(account_id)
                            && c.aws.region.as_deref() == Some(region)
                    })
                    .ok_or_else(|| {
                        invalid(
                            format!("{key}.name"),
                            format!(
                                "no accounts entry reads account {account_id} in {region}: add one with that account_id and region"
                            ),
                        )
                    })?;
                if account.as_ref().is_some_and(|a| *a != entry.name) {
                    return Err(invalid(
                        format!("{key}.account"),
                        format!("the ARN in name is read by accounts entry {:?}", entry.name),
                    ));
                }
                account = Some(entry.name.clone());
                Some(name.to_string())
            }
            other => other,
        };
        let account = account.unwrap_or_else(|| accounts[0].name.clone());
        let selector = match (name, g.prefix) {
            (Some(_), Some(_)) => {
                return Err(invalid(&key, "give either `name` or `prefix`, not both"));
            }
            (None, None) => {
                return Err(invalid(
                    &key,
                    "needs `name` (one group) or `prefix` (discovered groups)",
                ));
            }
            (Some(name), None) => {
                check_group_name(&name, &format!("{key}.name"), false)?;
                GroupSelector::Name(name)
            }
            (None, Some(prefix)) => {
                check_group_name(&prefix, &format!("{key}.prefix"), true)?;
                GroupSelector::Prefix(prefix)
            }
        };
        let streams = match (g.stream_names, g.stream_prefix) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    &key,
                    "give either `stream_names` or `stream_prefix`, not both (CloudWatch accepts one)",
                ));
            }
            (Some(names), None) if names.is_empty() => StreamFilter::All,
            (Some(names), None) => {
                if names.len() > 100 {
                    return Err(invalid(
                        format!("{key}.stream_names"),
                        "CloudWatch accepts at most 100 stream names",
                    ));
                }
                StreamFilter::Names(names)
            }
            (None, Some(p)) => StreamFilter::Prefix(p),
            (None, None) => StreamFilter::All,
        };
        let mode = match g.mode {
            None | Some(raw::RawReadMode::Filter) => ReadMode::Filter,
            Some(raw::RawReadMode::Streams) => ReadMode::Streams,
        };
        let filter_pattern = g.filter_pattern.filter(|p| !p.trim().is_empty());
        if mode == ReadMode::Streams && filter_pattern.is_some() {
            return Err(invalid(
                format!("{key}.filter_pattern"),
                "cannot be combined with `mode: streams` (GetLogEvents has no filter pattern): drop one",
            ));
        }
        let options = LoadOptions {
            parsers_dir: rules.parsers_dir.clone(),
            redact: match &g.redact {
                Some(r) => redact_config(Some(r)),
                None => default_redact.clone(),
            },
        };
        let rules =
            RuleSet::load(&g.parsers, &format!("{key}.parsers"), &options).map_err(|e| {
                let (k, m) = e.into_pair();
                // Redaction errors are reported under the key they came from.
                if k == "redact.fields" && g.redact.is_some() {
                    (format!("{key}.redact.fields"), m)
                } else {
                    (k, m)
                }
            })?;
        let agent_id = non_empty(g.agent_id, &format!("{key}.agent_id"))?;
        groups.push(GroupConfig {
            key,
            selector,
            account,
            agent_id,
            filter_pattern,
            streams,
            mode,
            rules: Arc::new(rules),
        });
    }

    let a = raw.agent;
    let late_arrival = duration(
        &a.late_arrival_secs,
        "agent.late_arrival_secs",
        Duration::from_secs(300),
    )?;
    let max_late_arrival = duration(
        &a.max_late_arrival_secs,
        "agent.max_late_arrival_secs",
        Duration::from_secs(900).max(late_arrival),
    )?;
    if max_late_arrival < late_arrival {
        return Err(invalid(
            "agent.max_late_arrival_secs",
            "must not be smaller than agent.late_arrival_secs",
        ));
    }
    // CloudWatch makes an event searchable seconds after it is written.
    let poll_interval = pace(
        &a.poll_interval_secs,
        "agent.poll_interval_secs",
        Duration::from_secs(10),
    )?;
    let max_idle_poll_interval = duration(
        &a.max_idle_poll_interval_secs,
        "agent.max_idle_poll_interval_secs",
        Duration::from_secs(60).max(poll_interval),
    )?;
    if max_idle_poll_interval < poll_interval {
        return Err(invalid(
            "agent.max_idle_poll_interval_secs",
            "must not be smaller than agent.poll_interval_secs",
        ));
    }
    let max_window = duration(
        &a.max_window_secs,
        "agent.max_window_secs",
        Duration::from_secs(3600),
    )?;
    if max_window < Duration::from_secs(1) {
        return Err(invalid("agent.max_window_secs", "must be at least 1s"));
    }
    let max_pages_per_account = match a.max_pages_per_account {
        // One page being delivered and the next being read.
        None => 2,
        Some(n @ 1..=1024) => n as usize,
        Some(n) => {
            return Err(invalid(
                "agent.max_pages_per_account",
                format!("{n} is not between 1 and 1024"),
            ));
        }
    };
    let listen = match non_empty(a.listen, "agent.listen")?.as_deref() {
        None => Some(DEFAULT_LISTEN),
        Some("off") => None,
        Some(text) => Some(text.parse::<std::net::SocketAddr>().map_err(|_| {
            invalid(
                "agent.listen",
                format!("{text:?} is not an IP:PORT address (e.g. 127.0.0.1:9464) or off"),
            )
        })?),
    };
    let state_path =
        non_empty(a.state_path, "agent.state_path")?.unwrap_or_else(|| DEFAULT_STATE_PATH.into());
    let agent = AgentConfig {
        poll_interval,
        max_idle_poll_interval,
        lookback: duration(
            &a.lookback_secs,
            "agent.lookback_secs",
            Duration::from_secs(300),
        )?,
        state_path: PathBuf::from(state_path),
        state_fsync: a.state_fsync.unwrap_or(true),
        late_arrival,
        adaptive_late_arrival: a.adaptive_late_arrival.unwrap_or(true),
        max_late_arrival,
        max_window,
        max_pages_per_account,
        // 0 would list the groups without pause, the whole DescribeLogGroups
        // budget of an account other tools share.
        discovery_interval: pace(
            &a.discovery_interval_secs,
            "agent.discovery_interval_secs",
            Duration::from_secs(300),
        )?,
        shutdown_grace: duration(
            &a.shutdown_grace_secs,
            "agent.shutdown_grace_secs",
            Duration::from_secs(5),
        )?,
        group_traces: a.group_traces.unwrap_or(true),
        trace_idle: duration(
            &a.trace_idle_secs,
            "agent.trace_idle_secs",
            Duration::from_secs(300),
        )?,
        trace_key_field: match a.trace_key_field.as_deref() {
            None => crate::trace::KeyField::default(),
            Some(text) => crate::trace::KeyField::parse(text).ok_or_else(|| {
                invalid(
                    "agent.trace_key_field",
                    format!("{text:?} is not one of session_id, trace_id, none"),
                )
            })?,
        },
        trace_summaries: match a.trace_summaries.as_deref() {
            None => SummaryPolicy::default(),
            Some(text) => SummaryPolicy::parse(text).ok_or_else(|| {
                invalid(
                    "agent.trace_summaries",
                    format!("{text:?} is not one of multi_event, all, none"),
                )
            })?,
        },
        listen,
    };
    if agent.shutdown_grace > Duration::from_secs(9) {
        return Err(invalid(
            "agent.shutdown_grace_secs",
            "must be at most 9s so that cwtap exits within 10 s of SIGTERM",
        ));
    }
    if let (Some(f), Some(l)) = (&firehose, agent.listen)
        && f.listen == l
    {
        return Err(invalid(
            "firehose.listen",
            format!("{l} is agent.listen too (metrics and health): give them different ports"),
        ));
    }

    Ok(Config {
        path: PathBuf::new(),
        aws,
        accounts,
        output,
        groups,
        agent,
        firehose,
    })
}

/// `accounts:`, each entry inheriting what it leaves out from `aws:`;
/// without it, one account named `default`.
fn validate_accounts(
    raw: Option<Vec<raw::RawAccount>>,
    aws: &AwsConfig,
) -> Result<Vec<AccountConfig>, Invalid> {
    let Some(raw) = raw else {
        return Ok(vec![AccountConfig {
            name: DEFAULT_ACCOUNT.to_string(),
            aws: aws.clone(),
            role: None,
            account_id: None,
            listed: false,
        }]);
    };
    if raw.is_empty() {
        return Err(invalid(
            "accounts",
            "is empty: list the accounts to read, or leave accounts out to read the one of `aws:`",
        ));
    }
    let mut out: Vec<AccountConfig> = Vec::with_capacity(raw.len());
    for (i, a) in raw.into_iter().enumerate() {
        let key = format!("accounts[{i}]");
        let name = a.name.trim().to_string();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(invalid(
                format!("{key}.name"),
                format!("{name:?}: use letters, digits, - and _"),
            ));
        }
        if out.iter().any(|o| o.name == name) {
            return Err(invalid(
                format!("{key}.name"),
                format!("{name:?} is used twice"),
            ));
        }
        let role = match non_empty(a.role_arn, &format!("{key}.role_arn"))? {
            None => None,
            Some(arn) => {
                if role_account(&arn).is_none() {
                    return Err(invalid(
                        format!("{key}.role_arn"),
                        format!("{arn:?} is not a role ARN (arn:aws:iam::ACCOUNT:role/NAME)"),
                    ));
                }
                Some(AssumeRole {
                    role_arn: arn,
                    external_id: non_empty(a.external_id, &format!("{key}.external_id"))?
                        .map(Secret::new),
                    session_name: non_empty(a.session_name, &format!("{key}.session_name"))?
                        .unwrap_or_else(|| "cwtap".into()),
                })
            }
        };
        let account_id = match non_empty(a.account_id, &format!("{key}.account_id"))? {
            Some(id) if id.len() == 12 && id.chars().all(|c| c.is_ascii_digit()) => Some(id),
            Some(id) => {
                return Err(invalid(
                    format!("{key}.account_id"),
                    format!("{id:?} is not a 12-digit AWS account id"),
                ));
            }
            None => role
                .as_ref()
                .and_then(|r| role_account(&r.role_arn))
                .map(str::to_string),
        };
        let endpoint_url = non_empty(a.endpoint_url, &format!("{key}.endpoint_url"))?
            .or_else(|| aws.endpoint_url.clone());
        if let Some(url) = &endpoint_url {
            check_http_url(url, &format!("{key}.endpoint_url"))?;
        }
        let rate_limits = match a.rate_limits {
            None => aws.rate_limits,
            Some(r) => validate_rate_limits(Some(r), aws.rate_limits)
                .map_err(|(k, m)| (k.replacen("aws.", &format!("{key}."), 1), m))?,
        };
        out.push(AccountConfig {
            name,
            aws: AwsConfig {
                region: non_empty(a.region, &format!("{key}.region"))?
                    .or_else(|| aws.region.clone()),
                profile: non_empty(a.profile, &format!("{key}.profile"))?
                    .or_else(|| aws.profile.clone()),
                endpoint_url,
                rate_limits,
                ..aws.clone()
            },
            role,
            account_id,
            listed: true,
        });
    }
    Ok(out)
}

/// The account id of a role ARN (`arn:aws:iam::123456789012:role/name`).
fn role_account(arn: &str) -> Option<&str> {
    let mut parts = arn.split(':');
    let (arn_, _partition, iam, _region, account, resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    (arn_ == "arn"
        && iam == "iam"
        && account.len() == 12
        && account.chars().all(|c| c.is_ascii_digit())
        && resource.starts_with("role/"))
    .then_some(account)
}

/// `agent.state_path` when the config does not say.
pub const DEFAULT_STATE_PATH: &str = "./cwtap-state.db";

/// (Region, account id, name) of a log group ARN
/// (`arn:aws:logs:REGION:ACCOUNT:log-group:NAME`, optionally ending `:*`).
pub fn parse_log_group_arn(arn: &str) -> Option<(&str, &str, &str)> {
    let rest = arn.strip_prefix("arn:")?;
    let (_partition, rest) = rest.split_once(':')?;
    let rest = rest.strip_prefix("logs:")?;
    let (region, rest) = rest.split_once(':')?;
    let (account, rest) = rest.split_once(':')?;
    let name = rest.strip_prefix("log-group:")?;
    let name = name.strip_suffix(":*").unwrap_or(name);
    (!region.is_empty() && !account.is_empty() && !name.is_empty())
        .then_some((region, account, name))
}

pub(crate) fn check_http_url(url: &str, key: &str) -> Result<(), Invalid> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| invalid(key, format!("{url:?} is not an http:// or https:// URL")))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(invalid(key, format!("{url:?} has no host")));
    }
    // user:password@host would be in every log line and error that names
    // the endpoint (the URL itself is not repeated here, for that reason).
    // The API's path is appended to the endpoint: after a query it would
    // land in the query (and a token there would show wherever the
    // endpoint is named).
    if rest.contains(['?', '#']) {
        return Err(invalid(
            key,
            "a query (?...) or fragment (#...) is not taken: the API path is appended to the endpoint; give tokens as headers (otlp.headers, vectadb.api_key)",
        ));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        let instead = if key.contains("endpoint_url") || key.starts_with("AWS_") {
            "AWS credentials come from the environment, a profile or a role"
        } else {
            "give them as vectadb.api_key or otlp.headers"
        };
        return Err(invalid(
            key,
            format!(
                "credentials in the URL (user:password@) are not taken: they would show wherever the endpoint is named; {instead}"
            ),
        ));
    }
    Ok(())
}

/// Whether the file a setting names could be written, without changing
/// anything: an existing file opens for appending; otherwise the nearest
/// folder on its path that exists takes a new file (a probe, removed at
/// once). The folders cwtap would create are not created.
pub fn writable(path: &Path, key: &str) -> Result<(), String> {
    if path.exists() {
        return std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map(drop)
            .map_err(|e| format!("{key}: {} is not writable: {e}", path.display()));
    }
    let dir = path
        .ancestors()
        .skip(1)
        .map(|d| {
            if d.as_os_str().is_empty() {
                Path::new(".")
            } else {
                d
            }
        })
        .find(|d| d.exists())
        .unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(format!(
            "{key}: cannot create {}: {} is not a folder",
            path.display(),
            dir.display()
        ));
    }
    let probe = dir.join(format!(".cwtap-write-probe-{}", std::process::id()));
    std::fs::write(&probe, b"probe").map_err(|e| {
        format!(
            "{key}: cannot create {}: the folder {} is not writable: {e}",
            path.display(),
            dir.display()
        )
    })?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_is_checked_writable_without_creating_it_or_its_folders() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b/out.ndjson");
        writable(&nested, "ndjson.path").unwrap();
        assert!(!dir.path().join("a").exists(), "no folder is created");
        let existing = dir.path().join("state.db");
        std::fs::write(&existing, b"kept").unwrap();
        writable(&existing, "agent.state_path").unwrap();
        assert_eq!(std::fs::read(&existing).unwrap(), b"kept");
        // Under a file: nothing can be created there.
        let e = writable(&existing.join("x/out.ndjson"), "ndjson.path").unwrap_err();
        assert!(
            e.starts_with("ndjson.path: cannot create") && e.contains("is not a folder"),
            "{e}"
        );
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no probe is left behind");
    }

    #[test]
    fn a_query_in_an_endpoint_url_is_refused_without_repeating_it() {
        for yaml in [
            "otlp: {endpoint: 'http://127.0.0.1:4318/otlp?token=SECRETQ'}\n",
            "vectadb: {endpoint: 'http://127.0.0.1:8080/#SECRETQ'}\n",
        ] {
            let yaml = format!("{yaml}log_groups: [{{name: /a}}]\n");
            let e = Config::from_yaml(&yaml, Path::new("c.yaml"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("query") && e.contains("endpoint"), "{e}");
            assert!(!e.contains("SECRETQ"), "{e}");
        }
    }

    #[test]
    fn credentials_in_an_endpoint_url_are_refused_without_repeating_them() {
        for (yaml, key) in [
            (
                "vectadb: {endpoint: 'http://u:pw-do-not-print@127.0.0.1:1/'}\n",
                "vectadb.endpoint",
            ),
            (
                "otlp: {endpoint: 'https://pw-do-not-print@collector:4318'}\n",
                "otlp.endpoint",
            ),
            (
                "ndjson: {path: '-'}\naws: {endpoint_url: 'http://u:pw-do-not-print@127.0.0.1:5000'}\n",
                "aws.endpoint_url",
            ),
        ] {
            let yaml = format!("{yaml}log_groups: [{{name: /a}}]\n");
            let e = Config::from_yaml(&yaml, Path::new("c.yaml"))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(key) && e.contains("credentials in the URL"),
                "{e}"
            );
            assert!(!e.contains("pw-do-not-print"), "{e}");
        }
        // An @ in the path or query is not a credential.
        let yaml = "vectadb: {endpoint: 'http://127.0.0.1:1/a@b'}\nlog_groups: [{name: /a}]\n";
        assert!(Config::from_yaml(yaml, Path::new("c.yaml")).is_ok());
    }

    #[test]
    fn a_byte_order_mark_at_the_start_is_skipped() {
        let yaml = "\u{feff}ndjson: {path: out.ndjson}\nlog_groups: [{name: /a}]\n";
        let config = Config::from_yaml(yaml, Path::new("c.yaml")).unwrap();
        assert_eq!(config.groups.len(), 1);
    }

    #[test]
    fn debug_output_never_shows_the_api_key() {
        let yaml = "vectadb: {endpoint: 'http://127.0.0.1:1', api_key: sk-do-not-print}\nlog_groups: [{name: /a}]\n";
        let config = Config::from_yaml(yaml, Path::new("c.yaml")).unwrap();
        let shown = format!("{config:?} {:?}", config.output);
        assert!(!shown.contains("sk-do-not-print"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn the_listener_is_on_loopback_by_default_and_off_disables_it() {
        let base = "ndjson: {path: out.ndjson}\nlog_groups: [{name: /a}]\n";
        let config = Config::from_yaml(base, Path::new("c.yaml")).unwrap();
        assert_eq!(config.agent.listen, Some(DEFAULT_LISTEN));
        assert!(DEFAULT_LISTEN.ip().is_loopback());
        let off = format!("{base}agent: {{listen: 'off'}}\n");
        let config = Config::from_yaml(&off, Path::new("c.yaml")).unwrap();
        assert_eq!(config.agent.listen, None);
        let any = format!("{base}agent: {{listen: '0.0.0.0:9464'}}\n");
        let config = Config::from_yaml(&any, Path::new("c.yaml")).unwrap();
        assert_eq!(config.agent.listen.map(|a| a.port()), Some(9464));
        let bad = format!("{base}agent: {{listen: 'localhost'}}\n");
        let error = Config::from_yaml(&bad, Path::new("c.yaml"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("agent.listen"), "{error}");
    }

    #[test]
    fn an_aws_only_file_loads_for_commands_that_need_only_aws() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aws.yaml");
        std::fs::write(
            &path,
            "aws:\n  region: eu-west-1\n  endpoint_url: http://127.0.0.1:4566\n",
        )
        .unwrap();
        let aws = Config::load_aws_only(&path).unwrap();
        assert_eq!(aws.region.as_deref(), Some("eu-west-1"));
        assert_eq!(aws.endpoint_url.as_deref(), Some("http://127.0.0.1:4566"));
        assert_eq!(aws.max_retries, 8);
        // The full loader still wants log groups and an output.
        assert!(Config::load(&path).is_err());
        // Unknown keys and bad values are still errors naming the key.
        std::fs::write(&path, "aws:\n  endpoint_url: ftp://x\n").unwrap();
        let e = Config::load_aws_only(&path).unwrap_err().to_string();
        assert!(e.contains("aws.endpoint_url"), "{e}");
        std::fs::write(&path, "awz: {}\n").unwrap();
        assert!(Config::load_aws_only(&path).is_err());
    }

    #[test]
    fn an_accounts_budget_inherits_the_keys_it_leaves_out_from_aws_rate_limits() {
        let yaml = "ndjson: {path: '-'}\n\
            aws: {rate_limits: {filter_log_events: 2, get_log_events: 7}}\n\
            accounts:\n\
            - {name: prod, region: eu-west-1, rate_limits: {filter_log_events: 9}}\n\
            - {name: dev, region: us-east-1}\n\
            log_groups: [{name: /a}]\n";
        let config = Config::from_yaml(yaml, Path::new("c.yaml")).unwrap();
        let prod = &config.accounts[0].aws.rate_limits;
        assert_eq!(prod.filter_log_events, 9.0);
        assert_eq!(prod.get_log_events, 7.0);
        assert_eq!(prod.describe_log_groups, 5.0);
        let dev = &config.accounts[1].aws.rate_limits;
        assert_eq!(dev.filter_log_events, 2.0);
        assert_eq!(dev.get_log_events, 7.0);
        let bad = yaml.replace("filter_log_events: 9", "filter_log_events: 0");
        let e = Config::from_yaml(&bad, Path::new("c.yaml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("accounts[0].rate_limits.filter_log_events"),
            "{e}"
        );
    }

    #[test]
    fn defaults_match_the_documentation() {
        let config = Config::from_yaml(
            "ndjson: {path: '-'}\nlog_groups: [{name: /a}]\n",
            Path::new("c.yaml"),
        )
        .unwrap();
        let a = &config.agent;
        assert_eq!(a.poll_interval, Duration::from_secs(10));
        assert_eq!(a.lookback, Duration::from_secs(300));
        assert_eq!(a.late_arrival, Duration::from_secs(300));
        assert_eq!(a.max_late_arrival, Duration::from_secs(900));
        assert_eq!(a.max_window, Duration::from_secs(3600));
        assert_eq!(a.state_path, PathBuf::from("./cwtap-state.db"));
        assert!(a.state_fsync);
        let no_fsync = Config::from_yaml(
            "ndjson: {path: '-'}\nagent: {state_fsync: false}\nlog_groups: [{name: /a}]\n",
            Path::new("c.yaml"),
        )
        .unwrap();
        assert!(!no_fsync.agent.state_fsync);
        assert_eq!(a.trace_summaries, SummaryPolicy::MultiEvent);
        assert_eq!(config.output.describe(), "NDJSON on standard output");
    }

    #[test]
    fn pages_per_account_default_to_two_and_are_bounded() {
        let load = |yaml: &str| Config::from_yaml(yaml, Path::new("c.yaml"));
        let default = load("ndjson: {path: '-'}\nlog_groups: [{name: /a}]\n").unwrap();
        assert_eq!(default.agent.max_pages_per_account, 2);
        let set = load(
            "ndjson: {path: '-'}\nagent: {max_pages_per_account: 9}\nlog_groups: [{name: /a}]\n",
        )
        .unwrap();
        assert_eq!(set.agent.max_pages_per_account, 9);
        for bad in ["0", "1025"] {
            let e = load(&format!(
                "ndjson: {{path: '-'}}\nagent: {{max_pages_per_account: {bad}}}\nlog_groups: [{{name: /a}}]\n"
            ))
            .unwrap_err()
            .to_string();
            assert!(e.contains("agent.max_pages_per_account"), "{e}");
        }
    }

    #[test]
    fn parsers_dir_is_read_from_the_config_files_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rules")).unwrap();
        std::fs::write(
            dir.path().join("rules/mine.yaml"),
            "- {name: mine, type: regex, pattern: '^hello'}\n",
        )
        .unwrap();
        let yaml = "ndjson: {path: '-'}\nparsers_dir: rules\nlog_groups: [{name: /a, parsers: [{use: mine}, {use: json}]}]\n";
        let config = Config::from_yaml(yaml, &dir.path().join("c.yaml")).unwrap();
        let rules = &config.groups[0].rules;
        assert_eq!(rules.parse("hello there").rule.as_deref(), Some("mine"));
        let missing = "ndjson: {path: '-'}\nparsers_dir: nowhere\nlog_groups: [{name: /a}]\n";
        let e = Config::from_yaml(missing, &dir.path().join("c.yaml")).unwrap_err();
        assert!(e.to_string().contains("parsers_dir"), "{e}");
    }

    #[test]
    fn the_read_mode_defaults_to_filter_and_streams_takes_no_filter_pattern() {
        let yaml = "ndjson: {path: '-'}\nlog_groups:\n  - {name: /a}\n  - {name: /b, mode: streams, stream_prefix: web/}\n  - {name: /c, mode: filter, filter_pattern: ERROR}\n";
        let config = Config::from_yaml(yaml, Path::new("c.yaml")).unwrap();
        let modes: Vec<_> = config.groups.iter().map(|g| g.mode).collect();
        assert_eq!(
            modes,
            [ReadMode::Filter, ReadMode::Streams, ReadMode::Filter]
        );
        let bad = "ndjson: {path: '-'}\nlog_groups:\n  - {name: /a, mode: streams, filter_pattern: ERROR}\n";
        let e = Config::from_yaml(bad, Path::new("c.yaml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("log_groups[0].filter_pattern"), "{e}");
        // A blank pattern is no pattern.
        let blank = "ndjson: {path: '-'}\nlog_groups:\n  - {name: /a, mode: streams, filter_pattern: ' '}\n";
        assert!(Config::from_yaml(blank, Path::new("c.yaml")).is_ok());
    }

    #[test]
    fn an_unknown_top_level_key_is_named_with_its_line() {
        let e = Config::from_yaml(
            "ndjson: {path: '-'}\nlog_groups: [{name: /a}]\nvectadbb: {endpoint: x}\n",
            Path::new("c.yaml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("line 3") && e.contains("`vectadbb`"), "{e}");
        let two = "ndjson: {path: '-'}\nvectadb: {endpoint: 'http://127.0.0.1:1'}\nlog_groups: [{name: /a}]\n";
        let e = Config::from_yaml(two, Path::new("c.yaml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("two outputs"), "{e}");
    }

    #[test]
    fn an_error_inside_an_output_section_names_the_section_and_line() {
        let yaml = "log_groups: [{name: /a}]\nvectadb:\n  endpoint: 'http://127.0.0.1:1'\n  batchsize: 5\n";
        let e = Config::from_yaml(yaml, Path::new("c.yaml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("vectadb") && e.contains("batchsize") && e.contains("line 4"),
            "{e}"
        );
    }

    #[test]
    fn a_groups_redact_replaces_the_top_level_one() {
        let yaml = "ndjson: {path: '-'}\nredact: {emails: true}\nlog_groups:\n  - {name: /a}\n  - {name: /b, redact: {fields: true}}\n  - {name: /c, redact: {}}\n";
        let config = Config::from_yaml(yaml, Path::new("c.yaml")).unwrap();
        let line = "mail a@example.com token=abc";
        let got: Vec<_> = config
            .groups
            .iter()
            .map(|g| g.rules.parse(line).properties["message"].clone())
            .collect();
        assert_eq!(got[0], "mail [REDACTED:email] token=abc");
        assert_eq!(got[1], "mail a@example.com token=[REDACTED:field]");
        assert_eq!(got[2], line);
    }
}
