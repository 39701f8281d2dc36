//! Parser rules: turn one CloudWatch message into the fields of an event.
//!
//! A [`RuleSet`] holds one log group's compiled rules, sorted by `priority`
//! (lower first, then list order). Rule kinds ([`rule`] has every key):
//!
//! - `json`: the message is a JSON object (or, with `embedded: true`, has one
//!   after a text prefix such as Lambda's `<ts>\t<request id>\tINFO\t{...}`);
//!   every original field stays in the properties; `fields` reads canonical
//!   values by dotted paths (`trace.id`, `error.stack.0`), several candidates each.
//! - `regex`: one of `patterns` matches; named captures become properties.
//! - `kv`: `key=value` / `key: value` pairs (logfmt).
//! - `langchain`, `llamaindex`: the VectaDB agent's framework types, run as
//!   the shipped rule sets of those names.
//!
//! A `first` rule that matches ends the search; a `merge` rule adds what it
//! found and the search goes on. The deciding `first` rule's values win;
//! merge rules fill only what is still empty, in priority order. A message no
//! rule matches becomes `{message, raw_log: true}`, as in VectaDB's agent.
//! When no rule found a trace, request or session id, the message is searched
//! the way VectaDB's agent does (`session_id`, `request_id`, `req_id`,
//! `trace_id` as `key: value` or `key=value`), and each id found goes to its
//! canonical field.
//!
//! Rule sets shipped in `parsers/` are embedded in the binary ([`load`]);
//! optional PII redaction ([`redact`]) runs inside [`RuleSet::parse`], so what
//! it returns is already redacted.

mod kv;
pub mod load;
mod normalize;
mod path;
pub mod redact;
pub mod rule;

use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value};

pub use load::{LoadOptions, RuleError, builtin_names};
pub use redact::{RedactConfig, Redactor};
use rule::{Extract, Input, Mode, Rule};

/// The canonical fields every rule can fill. Trace grouping reads these;
/// the delivered event carries them in `properties` beside the original data.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fields {
    /// Trace id: a W3C trace id (32 hex), an X-Ray root (`1-xxxxxxxx-...`) or
    /// an application's own id. X-Ray headers and traceparents are taken apart.
    pub trace_id: Option<String>,
    /// Request id (a Lambda RequestId, an API Gateway requestId, ...).
    pub request_id: Option<String>,
    /// This event's span.
    pub span_id: Option<String>,
    /// The span this event's span hangs under (X-Ray Parent, traceparent's
    /// parent id).
    pub parent_span_id: Option<String>,
    /// A conversation or user session.
    pub session_id: Option<String>,
    /// The agent that wrote the line, when the line says.
    pub agent_id: Option<String>,
    /// The service or application name.
    pub service: Option<String>,
    /// Lower-case level name: trace, debug, info, warn, error, fatal.
    pub level: Option<String>,
    /// The human-readable message, without prefixes the rule took apart.
    pub message: Option<String>,
    /// `lambda_start`, `lambda_end` and `lambda_report` are understood by trace
    /// grouping (with `request_id`).
    pub event_type: Option<String>,
    /// How long the operation the line reports took.
    pub duration_ms: Option<f64>,
    /// Error type or message, when the line reports one.
    pub error: Option<String>,
}

impl Fields {
    /// Fills every empty field from `other`.
    fn fill_from(&mut self, other: Fields) {
        macro_rules! fill {
            ($($f:ident),*) => { $( if self.$f.is_none() { self.$f = other.$f; } )* };
        }
        fill!(
            trace_id,
            request_id,
            span_id,
            parent_span_id,
            session_id,
            agent_id,
            service,
            level,
            message,
            event_type,
            duration_ms,
            error
        );
    }
}

/// What the rules made of one message.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// Name of the rule that decided: the `first` rule that matched, else the
    /// first merge rule that added something; `None` for the fallback.
    pub rule: Option<String>,
    pub fields: Fields,
    /// The original fields (JSON) or the raw line, beside what was extracted.
    pub properties: Map<String, Value>,
    /// Merge rules that added something, in the order they ran (without
    /// `rule` itself).
    pub merged: Vec<String>,
}

/// The compiled rules of one log group, in the order they are tried.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
    redactor: Option<Redactor>,
}

impl RuleSet {
    /// Compiles a `parsers` list without `parsers_dir` or redaction; errors
    /// are (key, message), the key like `log_groups[0].parsers[1].pattern`.
    #[cfg(test)]
    pub(crate) fn compile(
        raw: &[crate::config::raw::RawParser],
        key: &str,
    ) -> Result<RuleSet, (String, String)> {
        RuleSet::load(raw, key, &LoadOptions::default()).map_err(RuleError::into_pair)
    }

    fn from_rules(mut rules: Vec<Rule>, redactor: Option<Redactor>) -> RuleSet {
        // Stable: equal priorities keep list order.
        rules.sort_by_key(|r| r.priority);
        RuleSet { rules, redactor }
    }

    /// The same rules, with PII redaction.
    pub fn with_redaction(mut self, config: RedactConfig) -> Result<RuleSet, String> {
        self.redactor = Redactor::new(config)?;
        Ok(self)
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there is no rule (every message is the fallback).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Rule names in the order they are tried.
    pub fn rule_names(&self) -> Vec<&str> {
        self.rules.iter().map(|r| r.name.as_str()).collect()
    }

    /// Whether PII redaction is on.
    pub fn redacts(&self) -> bool {
        self.redactor.is_some()
    }

    /// Parses one message. Never fails: no match is the fallback event.
    pub fn parse(&self, message: &str) -> Parsed {
        let mut input = Input::new(message);
        let mut merges: Vec<(&str, Extract)> = Vec::new();
        let mut decided: Option<(&str, Extract)> = None;
        for rule in &self.rules {
            let Some(extract) = rule.apply(&mut input) else {
                continue;
            };
            match rule.mode {
                Mode::Merge => merges.push((&rule.name, extract)),
                Mode::First => {
                    decided = Some((&rule.name, extract));
                    break;
                }
            }
        }

        let mut parsed = if decided.is_none() && merges.is_empty() {
            let mut properties = Map::new();
            properties.insert("message".into(), Value::String(message.to_string()));
            properties.insert("raw_log".into(), Value::Bool(true));
            Parsed {
                rule: None,
                fields: Fields::default(),
                properties,
                merged: Vec::new(),
            }
        } else {
            let mut merges = merges.into_iter();
            let (rule, first) = match decided {
                Some(d) => d,
                // Merge rules only: the first one names the result.
                None => merges.next().map_or(("", Extract::default()), |m| m),
            };
            let mut text_like = !first.from_json;
            let mut properties = first.props;
            let mut fields = first.fields;
            let mut merged = Vec::new();
            for (name, m) in merges {
                merged.push(name.to_string());
                fields.fill_from(m.fields);
                text_like &= !m.from_json;
                for (k, v) in m.props {
                    properties.entry(k).or_insert(v);
                }
            }
            if text_like {
                // A text rule keeps the raw line; a JSON object is kept as its fields.
                let key = if properties.contains_key("message") {
                    "raw_message"
                } else {
                    "message"
                };
                properties.insert(key.to_string(), Value::String(message.to_string()));
            }
            Parsed {
                rule: Some(rule.to_string()),
                fields,
                properties,
                merged,
            }
        };

        if parsed.fields.trace_id.is_none()
            && parsed.fields.request_id.is_none()
            && parsed.fields.session_id.is_none()
        {
            let f = &mut parsed.fields;
            f.session_id = find_id(&ID_PATTERNS[0], message);
            f.request_id =
                find_id(&ID_PATTERNS[1], message).or_else(|| find_id(&ID_PATTERNS[2], message));
            f.trace_id = find_id(&ID_PATTERNS[3], message);
        }

        if let Some(r) = &self.redactor {
            r.redact_map(&mut parsed.properties);
            r.redact_fields(&mut parsed.fields);
        }
        parsed
    }
}

static ID_PATTERNS: LazyLock<[Regex; 4]> = LazyLock::new(|| {
    let re = |word: &str| {
        Regex::new(&format!(
            r#"(?i){word}["']?\s*[:=]\s*["']?([A-Za-z0-9][A-Za-z0-9._:\-]*)"#
        ))
        .expect("static pattern compiles")
    };
    [
        re("session[-_]?id"),
        re("request[-_]?id"),
        re("req[-_]?id"),
        re("trace[-_]?id"),
    ]
});

fn find_id(re: &Regex, message: &str) -> Option<String> {
    re.captures(message).map(|c| c[1].to_string())
}

/// The VectaDB agent's session id search: `session_id`, else `request_id`,
/// `req_id`, `trace_id`, in that order, as `key: value` or `key=value`.
pub fn find_session_id(message: &str) -> Option<String> {
    ID_PATTERNS.iter().find_map(|re| find_id(re, message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::raw::RawParser;

    fn rules(yaml: &str) -> RuleSet {
        let raw: Vec<RawParser> = serde_yaml::from_str(yaml).unwrap();
        RuleSet::compile(&raw, "parsers").unwrap()
    }

    #[test]
    fn json_rule_keeps_every_original_field_and_maps_fields() {
        let set = rules(
            "- {name: j, type: json, field_mapping: {sid: session_id, 'err.kind': error_kind}}",
        );
        let p = set.parse(r#"{"level":"info","sid":"s-1","err":{"kind":"Timeout"},"n":3}"#);
        assert_eq!(p.rule.as_deref(), Some("j"));
        assert_eq!(p.fields.session_id.as_deref(), Some("s-1"));
        assert_eq!(p.properties["level"], "info");
        assert_eq!(p.properties["n"], 3);
        assert_eq!(p.properties["sid"], "s-1");
        assert_eq!(p.properties["error_kind"], "Timeout");
    }

    #[test]
    fn regex_named_captures_become_properties_beside_the_raw_line() {
        let set = rules(
            r#"- {name: r, type: regex, pattern: '^(?P<level>[A-Z]+) (?P<user>\w+) did', event_type: action}"#,
        );
        let p = set.parse("INFO alice did a thing");
        assert_eq!(p.fields.event_type.as_deref(), Some("action"));
        assert_eq!(p.properties["level"], "INFO");
        assert_eq!(p.properties["user"], "alice");
        assert_eq!(p.properties["message"], "INFO alice did a thing");
    }

    #[test]
    fn lower_priority_runs_first_and_first_match_wins() {
        let set = rules(
            "- {name: late, type: regex, pattern: 'x', priority: 200}\n- {name: early, type: regex, pattern: 'x', priority: 5}\n- {name: tie, type: regex, pattern: 'x', priority: 5}",
        );
        assert_eq!(set.parse("x").rule.as_deref(), Some("early"));
    }

    #[test]
    fn unmatched_message_is_the_raw_fallback() {
        let set = rules("- {type: json}");
        let p = set.parse("plain text request_id=abc-123 done");
        assert_eq!(p.rule, None);
        assert_eq!(
            p.properties["message"],
            "plain text request_id=abc-123 done"
        );
        assert_eq!(p.properties["raw_log"], true);
        assert_eq!(p.fields.request_id.as_deref(), Some("abc-123"));
    }

    #[test]
    fn session_id_search_prefers_session_over_request_and_trace() {
        assert_eq!(
            find_session_id(r#"{"trace_id":"t","sessionId":"s9"}"#).as_deref(),
            Some("s9")
        );
        assert_eq!(
            find_session_id("req-id: r7 trace_id=t").as_deref(),
            Some("r7")
        );
        assert_eq!(find_session_id("TRACE-ID=T1").as_deref(), Some("T1"));
        assert_eq!(find_session_id("nothing here"), None);
    }

    #[test]
    fn bad_rules_name_their_key() {
        let raw: Vec<RawParser> =
            serde_yaml::from_str("- {type: regex, pattern: '(unclosed'}").unwrap();
        let (key, msg) = RuleSet::compile(&raw, "log_groups[0].parsers").unwrap_err();
        assert_eq!(key, "log_groups[0].parsers[0].pattern");
        assert!(msg.contains("invalid regex"), "{msg}");
        let raw: Vec<RawParser> = serde_yaml::from_str("- {type: regex}").unwrap();
        assert_eq!(RuleSet::compile(&raw, "p").unwrap_err().0, "p[0].pattern");
        let raw: Vec<RawParser> = serde_yaml::from_str("- {type: xml}").unwrap();
        assert_eq!(RuleSet::compile(&raw, "p").unwrap_err().0, "p[0].type");
    }
}
