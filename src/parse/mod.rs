//! Parser rules: turn one CloudWatch message into the fields of an event.
//!
//! The rule types are the VectaDB CloudWatch agent's (`json`, `regex`,
//! `langchain`, `llamaindex`) with its semantics: rules run in `priority` order
//! (lower first, then file order), the first that matches wins, and a message
//! no rule matches becomes `{message, raw_log: true}`. Unlike that agent, regex
//! named captures are kept as properties. `session_id` is found in the message
//! as VectaDB's agent finds it: `session_id`, else `request_id`, `req_id` or
//! `trace_id` (with `-`, `_` or nothing between the words).

use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value};

use crate::config::raw::RawParser;

/// The canonical fields every rule can fill. Trace grouping reads these;
/// the delivered event carries them in `properties` beside the original data.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fields {
    /// Trace id: a W3C trace id (32 hex), an X-Ray root (`1-xxxxxxxx-...`) or
    /// an application's own id.
    pub trace_id: Option<String>,
    /// Request id (a Lambda RequestId, an API Gateway requestId, ...).
    pub request_id: Option<String>,
    pub span_id: Option<String>,
    pub parent_span_id: Option<String>,
    pub session_id: Option<String>,
    pub agent_id: Option<String>,
    pub service: Option<String>,
    /// Lower-case level name: trace, debug, info, warn, error, fatal.
    pub level: Option<String>,
    /// The human-readable message, without prefixes the rule took apart.
    pub message: Option<String>,
    /// `lambda_start`, `lambda_end` and `lambda_report` are understood by trace
    /// grouping (with `request_id`).
    pub event_type: Option<String>,
    pub duration_ms: Option<f64>,
    /// Error type or message, when the line reports one.
    pub error: Option<String>,
}

/// What the rules made of one message.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// Name of the (first) rule that matched; `None` for the fallback.
    pub rule: Option<String>,
    pub fields: Fields,
    /// The original fields (JSON) or the raw line, beside what was extracted.
    pub properties: Map<String, Value>,
}

#[derive(Debug, Clone)]
enum Kind {
    /// The message is a JSON object (optionally also matching `pattern`).
    Json {
        pattern: Option<Regex>,
        default_event_type: Option<String>,
    },
    /// The pattern matches; named captures become properties.
    Regex(Regex),
}

#[derive(Debug, Clone)]
struct Rule {
    name: String,
    kind: Kind,
    field_mapping: Vec<(String, String)>,
    event_type: Option<String>,
    priority: i64,
}

/// The compiled rules of one log group, in the order they are tried.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
}

impl RuleSet {
    /// Compiles rules; errors are (key, message), the key like
    /// `log_groups[0].parsers[1].pattern`.
    pub(crate) fn compile(raw: &[RawParser], key: &str) -> Result<RuleSet, (String, String)> {
        let mut rules = Vec::with_capacity(raw.len());
        for (i, p) in raw.iter().enumerate() {
            let key = format!("{key}[{i}]");
            let compile = |pattern: &str| {
                Regex::new(pattern)
                    .map_err(|e| (format!("{key}.pattern"), format!("invalid regex: {e}")))
            };
            let kind = match p.kind.as_str() {
                "json" | "langchain" | "llamaindex" => Kind::Json {
                    pattern: p.pattern.as_deref().map(compile).transpose()?,
                    default_event_type: (p.kind != "json").then(|| p.kind.clone()),
                },
                "regex" => {
                    let pattern = p.pattern.as_deref().ok_or_else(|| {
                        (
                            format!("{key}.pattern"),
                            "is required when type is regex".to_string(),
                        )
                    })?;
                    Kind::Regex(compile(pattern)?)
                }
                other => {
                    return Err((
                        format!("{key}.type"),
                        format!(
                            "unknown parser type {other:?}; expected json, regex, langchain or llamaindex"
                        ),
                    ));
                }
            };
            rules.push(Rule {
                name: p.name.clone().unwrap_or_else(|| format!("{}#{i}", p.kind)),
                kind,
                field_mapping: p
                    .field_mapping
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                event_type: p.event_type.clone(),
                priority: p.priority.unwrap_or(100),
            });
        }
        // Stable: equal priorities keep file order.
        rules.sort_by_key(|r| r.priority);
        Ok(RuleSet { rules })
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Parses one message. Never fails: no match is the fallback event.
    pub fn parse(&self, message: &str) -> Parsed {
        let mut json: Option<Option<Map<String, Value>>> = None;
        for rule in &self.rules {
            let matched = match &rule.kind {
                Kind::Json {
                    pattern,
                    default_event_type,
                } => {
                    if pattern.as_ref().is_some_and(|p| !p.is_match(message)) {
                        continue;
                    }
                    let object = json.get_or_insert_with(|| parse_object(message));
                    object
                        .clone()
                        .map(|props| (props, default_event_type.clone()))
                }
                Kind::Regex(re) => re.captures(message).map(|caps| {
                    let mut props = Map::new();
                    for name in re.capture_names().flatten() {
                        if let Some(m) = caps.name(name) {
                            props.insert(name.to_string(), Value::String(m.as_str().to_string()));
                        }
                    }
                    let raw_key = if props.contains_key("message") {
                        "raw_message"
                    } else {
                        "message"
                    };
                    props.insert(raw_key.to_string(), Value::String(message.to_string()));
                    (props, None)
                }),
            };
            if let Some((mut properties, default_event_type)) = matched {
                for (from, to) in &rule.field_mapping {
                    if let Some(v) = lookup(&properties, from).cloned() {
                        properties.insert(to.clone(), v);
                    }
                }
                let event_type = rule
                    .event_type
                    .clone()
                    .or_else(|| string_field(&properties, "event_type"))
                    .or(default_event_type);
                return Parsed {
                    rule: Some(rule.name.clone()),
                    fields: Fields {
                        event_type,
                        session_id: string_field(&properties, "session_id")
                            .or_else(|| find_session_id(message)),
                        agent_id: string_field(&properties, "agent_id"),
                        ..Fields::default()
                    },
                    properties,
                };
            }
        }
        let mut properties = Map::new();
        properties.insert("message".into(), Value::String(message.to_string()));
        properties.insert("raw_log".into(), Value::Bool(true));
        Parsed {
            rule: None,
            fields: Fields {
                session_id: find_session_id(message),
                ..Fields::default()
            },
            properties,
        }
    }
}

fn parse_object(message: &str) -> Option<Map<String, Value>> {
    let trimmed = message.trim();
    if !trimmed.starts_with('{') {
        return None;
    }
    match serde_json::from_str::<Value>(trimmed) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

/// A top-level key, or a dotted path into nested objects (`error.type`).
fn lookup<'a>(props: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(v) = props.get(path) {
        return Some(v);
    }
    let mut parts = path.split('.');
    let mut current = props.get(parts.next()?)?;
    for part in parts {
        current = current.as_object()?.get(part)?;
    }
    Some(current)
}

fn string_field(props: &Map<String, Value>, key: &str) -> Option<String> {
    match props.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
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

/// The VectaDB agent's session id search: `session_id`, else `request_id`,
/// `req_id`, `trace_id`, in that order, as `key: value` or `key=value`.
pub fn find_session_id(message: &str) -> Option<String> {
    ID_PATTERNS
        .iter()
        .find_map(|re| re.captures(message).map(|c| c[1].to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(p.fields.session_id.as_deref(), Some("abc-123"));
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
