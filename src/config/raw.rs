//! The YAML file as written: serde structs with `deny_unknown_fields`, no
//! validation beyond types. [`super::Config::load`] turns them into the validated
//! runtime configuration once; nothing else reads these.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The whole file. The VectaDB CloudWatch agent's config is a subset of this.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub aws: RawAws,
    pub vectadb: Option<RawVectadb>,
    pub ndjson: Option<RawNdjson>,
    pub log_groups: Option<Vec<RawLogGroup>>,
    #[serde(default)]
    pub agent: RawAgent,
    /// Folder of the user's own rule files; `use: NAME` looks for
    /// `DIR/NAME.yaml` there before the built-in sets.
    pub parsers_dir: Option<String>,
    /// PII redaction for every group (a group's own `redact` replaces it).
    pub redact: Option<RawRedact>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAws {
    pub region: Option<String>,
    pub profile: Option<String>,
    pub endpoint_url: Option<String>,
    pub max_retries: Option<u32>,
    pub timeout_secs: Option<u64>,
    pub rate_limits: Option<RawRateLimits>,
}

/// Calls per second allowed per API (the account's quota in this Region).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimits {
    pub filter_log_events: Option<f64>,
    pub get_log_events: Option<f64>,
    pub describe_log_groups: Option<f64>,
    pub describe_log_streams: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVectadb {
    pub endpoint: String,
    pub api_key: Option<String>,
    pub batch_size: Option<usize>,
    pub timeout_secs: Option<u64>,
    pub max_batch_bytes: Option<usize>,
    pub max_backoff_secs: Option<u64>,
    pub max_item_retries: Option<u32>,
    pub health_check: Option<bool>,
    /// PEM file of CA certificates trusted besides the system roots.
    pub ca_file: Option<String>,
}

// Hand-written so that the API key never reaches a log line through `{:?}`.
impl std::fmt::Debug for RawVectadb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawVectadb")
            .field("endpoint", &self.endpoint)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("batch_size", &self.batch_size)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNdjson {
    pub path: String,
    pub batch_size: Option<usize>,
    pub fsync: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogGroup {
    pub name: Option<String>,
    pub prefix: Option<String>,
    pub agent_id: Option<String>,
    pub filter_pattern: Option<String>,
    pub stream_names: Option<Vec<String>>,
    pub stream_prefix: Option<String>,
    /// How the group is read: `filter` (FilterLogEvents, the default) or
    /// `streams` (DescribeLogStreams, then GetLogEvents stream by stream).
    pub mode: Option<RawReadMode>,
    #[serde(default)]
    pub parsers: Vec<RawParser>,
    /// PII redaction for this group; replaces the top-level `redact`.
    pub redact: Option<RawRedact>,
}

/// `mode:` of a log group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawReadMode {
    Filter,
    Streams,
}

/// One entry of a `parsers` list or of a rule file: either `{use: NAME}` (a
/// whole rule set) or one rule. The keys are described in `parse::rule`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawParser {
    pub name: Option<String>,
    /// `json`, `regex`, `kv`, `langchain` or `llamaindex`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Name of a rule set (a file in `parsers_dir` or a built-in one).
    #[serde(rename = "use")]
    pub use_set: Option<String>,
    pub pattern: Option<String>,
    pub patterns: Option<Vec<String>>,
    #[serde(default)]
    pub field_mapping: BTreeMap<String, String>,
    pub event_type: Option<String>,
    pub priority: Option<i64>,
    pub when: Option<RawWhen>,
    pub mode: Option<RawMode>,
    /// Target field -> candidate source paths, first present wins.
    #[serde(default)]
    pub fields: BTreeMap<String, OneOrMany>,
    /// Values used for fields that are still empty after extraction.
    #[serde(default)]
    pub defaults: BTreeMap<String, String>,
    /// Properties whose text values become JSON numbers.
    #[serde(default)]
    pub numbers: Vec<String>,
    /// json: the object may follow a text prefix.
    pub embedded: Option<bool>,
    /// How numeric levels are read: `pino` (10..60), `python` (10..50), `syslog` (0..7).
    pub level_numbers: Option<RawLevelNumbers>,
    /// Unit of a bare number in `duration_ms`: `ns`, `us`, `ms` or `s`.
    pub duration_unit: Option<String>,
    /// kv: which separators make a pair: `=`, `:` or both (default).
    pub separators: Option<String>,
    /// kv: fewest pairs for the rule to match (default 2).
    pub min_pairs: Option<usize>,
}

/// A string or a list of strings.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    /// The values, in order.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// A rule's prefilter: every condition given must hold.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWhen {
    /// The message (after leading white space) starts with one of these.
    pub prefix: Option<OneOrMany>,
    /// The message contains one of these.
    pub contains: Option<OneOrMany>,
    /// The message matches this regex.
    pub regex: Option<String>,
    /// The message is a JSON object with all of these (dotted) paths.
    pub json_field: Option<OneOrMany>,
}

/// First match stops; merge adds what it finds and matching goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawMode {
    First,
    Merge,
}

/// Scales of numeric log levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawLevelNumbers {
    Pino,
    Python,
    Syslog,
}

/// `redact:` as written: the kinds of PII to replace; a missing key is off.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedact {
    pub emails: Option<bool>,
    pub card_numbers: Option<bool>,
    pub us_ssn: Option<bool>,
    pub phone_numbers: Option<bool>,
    /// `true` for the default names, a list for one's own, `false` for none.
    pub fields: Option<RawRedactFields>,
}

/// `fields:` of `redact`: on/off for the default names, or the names.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawRedactFields {
    Switch(bool),
    Names(Vec<String>),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    pub poll_interval_secs: Option<DurationValue>,
    pub max_idle_poll_interval_secs: Option<DurationValue>,
    pub lookback_secs: Option<DurationValue>,
    pub auto_create_traces: Option<bool>,
    pub generate_embeddings: Option<bool>,
    pub extract_relationships: Option<bool>,
    pub state_path: Option<String>,
    pub late_arrival_secs: Option<DurationValue>,
    pub max_late_arrival_secs: Option<DurationValue>,
    pub adaptive_late_arrival: Option<bool>,
    pub max_window_secs: Option<DurationValue>,
    pub discovery_interval_secs: Option<DurationValue>,
    pub shutdown_grace_secs: Option<DurationValue>,
    pub group_traces: Option<bool>,
    pub trace_idle_secs: Option<DurationValue>,
    pub trace_key_field: Option<String>,
    /// `HOST:PORT` of the metrics and health listener, or `off`.
    pub listen: Option<String>,
}

/// A number of seconds, or a duration string such as `90s`, `5m`, `1h`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum DurationValue {
    Secs(u64),
    Text(String),
}
