//! Parser rules as written in a group's `parsers` list or in a rule file:
//! serde structs with `deny_unknown_fields`, no validation beyond types.
//! [`super::rule::Rule::compile`] turns each into a compiled rule; the
//! config loader only hands these over.

use std::collections::BTreeMap;

use serde::Deserialize;

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
