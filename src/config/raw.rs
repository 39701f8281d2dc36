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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAws {
    pub region: Option<String>,
    pub profile: Option<String>,
    pub endpoint_url: Option<String>,
    pub max_retries: Option<u32>,
    pub timeout_secs: Option<u64>,
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
    #[serde(default)]
    pub parsers: Vec<RawParser>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawParser {
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    pub pattern: Option<String>,
    #[serde(default)]
    pub field_mapping: BTreeMap<String, String>,
    pub event_type: Option<String>,
    pub priority: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    pub poll_interval_secs: Option<DurationValue>,
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
}

/// A number of seconds, or a duration string such as `90s`, `5m`, `1h`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum DurationValue {
    Secs(u64),
    Text(String),
}
