//! The YAML file as written: serde structs with `deny_unknown_fields`, no
//! validation beyond types. [`super::Config::load`] turns them into the validated
//! runtime configuration once; nothing else reads these.

use serde::Deserialize;

use crate::parse::spec::RawParser;

/// The general part of the file. The output sections (`vectadb:`,
/// `ndjson:`, ...) are read by their own modules (see
/// [`crate::sink::OUTPUTS`]); top-level keys are checked against both. The
/// VectaDB CloudWatch agent's config is a subset of the whole.
#[derive(Debug, Deserialize)]
pub struct RawConfig {
    #[serde(default)]
    pub aws: RawAws,
    /// The accounts and Regions read; without it, one named `default` from `aws:`.
    pub accounts: Option<Vec<RawAccount>>,
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

/// One account-Region, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccount {
    pub name: String,
    pub region: Option<String>,
    pub profile: Option<String>,
    pub role_arn: Option<String>,
    pub external_id: Option<String>,
    pub session_name: Option<String>,
    pub account_id: Option<String>,
    pub endpoint_url: Option<String>,
    pub rate_limits: Option<RawRateLimits>,
}

/// Calls per second allowed per API (the account's quota in this Region).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimits {
    pub filter_log_events: Option<f64>,
    pub get_log_events: Option<f64>,
    pub describe_log_groups: Option<f64>,
    pub describe_log_streams: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogGroup {
    pub name: Option<String>,
    pub prefix: Option<String>,
    /// The `accounts` entry the group is read from (default: the first).
    pub account: Option<String>,
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
    /// VectaDB's `options`, where the VectaDB agent's config has them;
    /// `vectadb.*` of the same name wins.
    pub auto_create_traces: Option<bool>,
    pub generate_embeddings: Option<bool>,
    pub extract_relationships: Option<bool>,
    pub state_path: Option<String>,
    pub state_fsync: Option<bool>,
    pub late_arrival_secs: Option<DurationValue>,
    pub max_late_arrival_secs: Option<DurationValue>,
    pub adaptive_late_arrival: Option<bool>,
    pub max_window_secs: Option<DurationValue>,
    /// How many FilterLogEvents / GetLogEvents pages the groups of one
    /// account hold in memory together (being read or not yet delivered).
    pub max_pages_per_account: Option<u64>,
    pub discovery_interval_secs: Option<DurationValue>,
    pub shutdown_grace_secs: Option<DurationValue>,
    pub group_traces: Option<bool>,
    pub trace_idle_secs: Option<DurationValue>,
    pub trace_key_field: Option<String>,
    /// Which closed traces get a summary: `multi_event`, `all`, `none`.
    pub trace_summaries: Option<String>,
    /// `HOST:PORT` of the metrics and health listener, or `off`.
    pub listen: Option<String>,
}

/// A number of seconds, or a duration string such as `90s`, `5m`, `1h`.
#[derive(Debug, Clone)]
pub enum DurationValue {
    Secs(u64),
    Text(String),
}

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = DurationValue;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a whole number of seconds or a duration such as 90s, 5m, 1h")
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<DurationValue, E> {
                Ok(DurationValue::Secs(v))
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<DurationValue, E> {
                u64::try_from(v)
                    .map(DurationValue::Secs)
                    .map_err(|_| E::custom(format!("invalid duration {v}: it cannot be negative")))
            }

            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<DurationValue, E> {
                Err(E::custom(format!(
                    "invalid duration {v}: give whole seconds, or a unit for less (1500ms)"
                )))
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<DurationValue, E> {
                Ok(DurationValue::Text(v.to_string()))
            }
        }
        d.deserialize_any(Visitor)
    }
}
