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

mod anchor;
mod kv;
pub mod load;
mod normalize;
mod path;
mod props;
pub mod redact;
pub mod rule;
pub mod spec;

use std::sync::{Arc, LazyLock};

use regex::Regex;
use serde_json::Value;

pub use load::{LoadOptions, RuleError, builtin_names};
pub use props::Properties;
pub(crate) use props::{plain, string_stops};
pub use redact::{RedactConfig, Redactor};
use rule::{Extract, Input, Mode, Needles, Rule};

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
    pub rule: Option<Arc<str>>,
    pub fields: Fields,
    /// The original fields (JSON) or the raw line, beside what was extracted.
    pub properties: Properties,
    /// Merge rules that added something, in the order they ran (without
    /// `rule` itself).
    pub merged: Vec<String>,
}

/// The compiled rules of one log group, in the order they are tried.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
    /// The rules' `when.contains` texts.
    needles: Needles,
    redactor: Option<Redactor>,
}

impl RuleSet {
    /// Compiles a `parsers` list without `parsers_dir` or redaction; errors
    /// are (key, message), the key like `log_groups[0].parsers[1].pattern`.
    #[cfg(test)]
    pub(crate) fn compile(raw: &[spec::RawParser], key: &str) -> Result<RuleSet, (String, String)> {
        RuleSet::load(raw, key, &LoadOptions::default()).map_err(RuleError::into_pair)
    }

    fn from_rules(mut rules: Vec<Rule>, redactor: Option<Redactor>) -> RuleSet {
        // Stable: equal priorities keep list order.
        rules.sort_by_key(|r| r.priority);
        let needles = Needles::link(&mut rules);
        RuleSet {
            rules,
            needles,
            redactor,
        }
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
        self.rules.iter().map(|r| &*r.name).collect()
    }

    /// Whether PII redaction is on.
    pub fn redacts(&self) -> bool {
        self.redactor.is_some()
    }

    /// Parses one message. Never fails: no match is the fallback event.
    pub fn parse(&self, message: &str) -> Parsed {
        let mut input = Input::new(message, &self.needles);
        let mut merges: Vec<(&Arc<str>, Extract)> = Vec::new();
        let mut decided: Option<(&Arc<str>, Extract)> = None;
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

        // Merge rules only: the first one names the result.
        let mut merges = merges.into_iter();
        let mut parsed = if let Some((rule, first)) = decided.or_else(|| merges.next()) {
            let mut text_like = !first.whole_message;
            let mut properties = first.props;
            let mut fields = first.fields;
            let mut merged = Vec::new();
            for (name, m) in merges {
                merged.push(str::to_owned(name));
                fields.fill_from(m.fields);
                text_like &= !m.whole_message;
                for (k, v) in m.props.into_map() {
                    properties.insert_if_absent(&k, || v);
                }
            }
            if text_like {
                // A text rule keeps the raw line; a JSON object that is the
                // whole message is kept as its fields.
                let key = if properties.contains_key("message") {
                    "raw_message"
                } else {
                    "message"
                };
                properties.insert(key, Value::String(message.to_string()));
            }
            Parsed {
                rule: Some(Arc::clone(rule)),
                fields,
                properties,
                merged,
            }
        } else {
            let mut properties = Properties::new();
            properties.insert("message", Value::String(message.to_string()));
            properties.insert("raw_log", Value::Bool(true));
            Parsed {
                rule: None,
                fields: Fields::default(),
                properties,
                merged: Vec::new(),
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
            r.redact_map(parsed.properties.map_mut());
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
    re.captures(message)
        .map(|c| c[1].to_string())
        // All-zero ids mean "no active trace" (OpenTelemetry).
        .filter(|id| !id.bytes().all(|b| b == b'0'))
}

/// The VectaDB agent's session id search: `session_id`, else `request_id`,
/// `req_id`, `trace_id`, in that order, as `key: value` or `key=value`.
pub fn find_session_id(message: &str) -> Option<String> {
    ID_PATTERNS.iter().find_map(|re| find_id(re, message))
}

#[cfg(test)]
mod tests {
    use super::spec::RawParser;
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

    #[test]
    fn every_builtin_set_compiles_and_names_every_rule() {
        for name in builtin_names() {
            let set = RuleSet::builtin(name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!set.is_empty(), "{name} has no rules");
            assert!(set.rule_names().iter().all(|n| !n.contains('#')), "{name}");
        }
    }

    fn entries(yaml: &str) -> Vec<RawParser> {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn load(yaml: &str, options: &LoadOptions) -> Result<RuleSet, RuleError> {
        RuleSet::load(&entries(yaml), "log_groups[0].parsers", options)
    }

    #[test]
    fn lambda_report_gives_durations_memory_cold_start_and_xray_trace() {
        let set = RuleSet::builtin("lambda").unwrap();
        let cold = set.parse(
            "REPORT RequestId: 5e5c4176-5df6-4817-b099-2bcf60ec6db2\tDuration: 40.47 ms\tBilled Duration: 41 ms\tMemory Size: 512 MB\tMax Memory Used: 128 MB\tInit Duration: 226.07 ms\t\nXRAY TraceId: 1-6afffe01-96d38ff58c3f846cc6a942d3\tSegmentId: 3c5ab1d2e4f60718\tSampled: true\t",
        );
        assert_eq!(cold.fields.event_type.as_deref(), Some("lambda_report"));
        assert_eq!(
            cold.fields.request_id.as_deref(),
            Some("5e5c4176-5df6-4817-b099-2bcf60ec6db2")
        );
        assert_eq!(cold.fields.duration_ms, Some(40.47));
        assert_eq!(
            cold.fields.trace_id.as_deref(),
            Some("1-6afffe01-96d38ff58c3f846cc6a942d3")
        );
        assert_eq!(cold.properties["billed_duration_ms"], 41);
        assert_eq!(cold.properties["memory_size_mb"], 512);
        assert_eq!(cold.properties["max_memory_used_mb"], 128);
        assert_eq!(cold.properties["init_duration_ms"], 226.07);
        let warm = set.parse(
            "REPORT RequestId: 1a695bcc-29ff-4451-9e5d-e16df8dbf71d\tDuration: 582.42 ms\tBilled Duration: 583 ms\tMemory Size: 256 MB\tMax Memory Used: 69 MB\t",
        );
        assert!(!warm.properties.contains_key("init_duration_ms"));
        assert_eq!(warm.fields.trace_id, None);
        let start =
            set.parse("START RequestId: 1a695bcc-29ff-4451-9e5d-e16df8dbf71d Version: $LATEST");
        assert_eq!(start.fields.event_type.as_deref(), Some("lambda_start"));
        assert_eq!(start.properties["version"], "$LATEST");
        let end = set.parse("END RequestId: 1a695bcc-29ff-4451-9e5d-e16df8dbf71d");
        assert_eq!(end.fields.event_type.as_deref(), Some("lambda_end"));
        let init =
            set.parse("INIT_START Runtime Version: python:3.12.v38\tRuntime Version ARN: arn:x");
        assert_eq!(init.fields.event_type.as_deref(), Some("lambda_init_start"));
    }

    #[test]
    fn a_merge_rule_adds_to_the_rule_that_decides_and_matching_goes_on() {
        let set = load("[{use: lambda}, {use: langchain}]", &LoadOptions::default()).unwrap();
        let p = set.parse(
            "2026-11-20T08:00:01.001Z\t5e5c4176-5df6-4817-b099-2bcf60ec6db2\tINFO\t> Entering new AgentExecutor chain...",
        );
        assert_eq!(p.rule.as_deref(), Some("langchain-chain-start"));
        assert_eq!(p.merged, vec!["lambda-node-text".to_string()]);
        assert_eq!(p.fields.event_type.as_deref(), Some("chain_start"));
        assert_eq!(
            p.fields.request_id.as_deref(),
            Some("5e5c4176-5df6-4817-b099-2bcf60ec6db2")
        );
        assert_eq!(p.fields.level.as_deref(), Some("info"));
        assert_eq!(p.properties["chain_type"], "AgentExecutor");
    }

    #[test]
    fn the_deciding_rules_values_win_and_merge_rules_fill_only_empty_fields() {
        let set = load(
            "- {use: xray}\n- {name: j, type: json, fields: {trace_id: [traceId], service: [svc]}}",
            &LoadOptions::default(),
        )
        .unwrap();
        let p = set.parse(
            r#"{"traceId":"app-trace-1","svc":"api","hdr":"Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"}"#,
        );
        assert_eq!(p.rule.as_deref(), Some("j"));
        assert_eq!(p.fields.trace_id.as_deref(), Some("app-trace-1"));
        assert_eq!(p.fields.parent_span_id.as_deref(), Some("53995c3f42cd8ad8"));
        assert_eq!(p.fields.service.as_deref(), Some("api"));
        assert!(p.merged.contains(&"xray-header".to_string()));
        // Only merge rules matched: the first names the result.
        let only = set.parse("calling with Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=0");
        assert_eq!(only.rule.as_deref(), Some("xray-header"));
        assert_eq!(
            only.fields.trace_id.as_deref(),
            Some("1-5759e988-bd862e3fe1be46a994272793")
        );
        assert_eq!(
            only.properties["message"],
            "calling with Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=0"
        );
    }

    #[test]
    fn xray_headers_and_traceparents_in_json_fields_become_trace_and_parent() {
        let set = rules("- {name: j, type: json, fields: {trace_id: [trace.header, traceparent]}}");
        let x = set.parse(r#"{"trace":{"header":"Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"}}"#);
        assert_eq!(
            x.fields.trace_id.as_deref(),
            Some("1-5759e988-bd862e3fe1be46a994272793")
        );
        assert_eq!(x.fields.parent_span_id.as_deref(), Some("53995c3f42cd8ad8"));
        let w = set
            .parse(r#"{"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}"#);
        assert_eq!(
            w.fields.trace_id.as_deref(),
            Some("0af7651916cd43dd8448eb211c80319c")
        );
        assert_eq!(w.fields.parent_span_id.as_deref(), Some("b7ad6b7169203331"));
    }

    #[test]
    fn json_paths_reach_into_arrays_and_the_first_present_candidate_wins() {
        let set = rules(
            "- {name: j, type: json, fields: {request_id: [missing, records.1.id, rid], error: [err.type, err.message], first_stack: 'err.stack[0]'}}",
        );
        let p = set.parse(
            r#"{"records":[{"id":"r0"},{"id":"r1"}],"rid":"x","err":{"message":"boom","stack":["at a","at b"]}}"#,
        );
        assert_eq!(p.fields.request_id.as_deref(), Some("r1"));
        assert_eq!(p.fields.error.as_deref(), Some("boom"));
        assert_eq!(p.properties["first_stack"], "at a");
        assert_eq!(p.properties["rid"], "x");
    }

    #[test]
    fn one_value_read_by_several_targets_reaches_each_of_them() {
        // `rid` is the whole value of three targets and `ctx` feeds two by
        // path and one whole: a value handed to one target (moved, when no
        // later target reads it) is still there for the others.
        let set = rules(
            "- {name: j, type: json, fields: {request_id: rid, session_id: rid, copy_of_rid: rid, service: ctx.svc, agent_id: ctx.svc, ctx_copy: ctx, message: ctx, trace_id: tid, span_id: tid}}",
        );
        let p = set.parse(
            r#"{"rid":"r-1","ctx":{"svc":"pay"},"tid":"Root=1-5759e988-bd862e3fe1be46a994272793"}"#,
        );
        assert_eq!(p.fields.request_id.as_deref(), Some("r-1"));
        assert_eq!(p.fields.session_id.as_deref(), Some("r-1"));
        assert_eq!(p.properties["copy_of_rid"], "r-1");
        assert_eq!(p.fields.service.as_deref(), Some("pay"));
        assert_eq!(p.fields.agent_id.as_deref(), Some("pay"));
        assert_eq!(p.properties["ctx_copy"], serde_json::json!({"svc": "pay"}));
        assert_eq!(p.fields.message.as_deref(), Some(r#"{"svc":"pay"}"#));
        assert_eq!(
            p.fields.trace_id.as_deref(),
            Some("1-5759e988-bd862e3fe1be46a994272793")
        );
        assert_eq!(
            p.fields.span_id.as_deref(),
            Some("Root=1-5759e988-bd862e3fe1be46a994272793")
        );
        // The original fields are untouched.
        assert_eq!(p.properties["rid"], "r-1");
        assert_eq!(p.properties["ctx"], serde_json::json!({"svc": "pay"}));
    }

    #[test]
    fn embedded_json_after_a_text_prefix_is_taken_apart() {
        let set = RuleSet::builtin("lambda").unwrap();
        let p = set.parse(
            "2026-11-20T08:04:34.348Z\ta2e8f6e0-f878-4ccf-9dda-c46687d8b1eb\tERROR\tInvoke Error \t{\"errorType\":\"TypeError\",\"errorMessage\":\"boom\",\"stack\":[\"TypeError: boom\"]}",
        );
        assert_eq!(p.rule.as_deref(), Some("lambda-node-json"));
        assert_eq!(p.fields.error.as_deref(), Some("TypeError"));
        assert_eq!(p.fields.level.as_deref(), Some("error"));
        assert_eq!(p.properties["stack"][0], "TypeError: boom");
        assert_eq!(p.properties["text"], "Invoke Error");
        // The object is not the whole message: the raw line stays too, as
        // for a text rule, so nothing of the line is lost.
        let line = "2026-11-20T08:04:34.348Z\ta2e8f6e0-f878-4ccf-9dda-c46687d8b1eb\tERROR\tInvoke Error \t{\"errorType\":\"TypeError\",\"errorMessage\":\"boom\",\"stack\":[\"TypeError: boom\"]}";
        assert_eq!(set.parse(line).properties["message"], line);
        // An embedded rule on a message that is all object adds no line.
        let set = rules("- {name: e, type: json, embedded: true, fields: {request_id: rid}}");
        let p = set.parse(r#"  {"rid":"r1","message":"m"}"#);
        assert_eq!(p.rule.as_deref(), Some("e"));
        assert_eq!(p.properties["message"], "m");
        assert!(!p.properties.contains_key("raw_message"));
        let p = set.parse(r#"GET /x {"rid":"r1","message":"m"}"#);
        assert_eq!(p.properties["message"], "m");
        assert_eq!(
            p.properties["raw_message"],
            r#"GET /x {"rid":"r1","message":"m"}"#
        );
    }

    #[test]
    fn kv_rules_read_logfmt_pairs_and_need_enough_of_them() {
        let set = RuleSet::builtin("kv").unwrap();
        let p = set.parse(r#"level=warn msg="slow handler" took=1.2s trace_id=abc"#);
        assert_eq!(p.rule.as_deref(), Some("kv-logfmt"));
        assert_eq!(p.fields.level.as_deref(), Some("warn"));
        assert_eq!(p.fields.message.as_deref(), Some("slow handler"));
        assert_eq!(p.fields.duration_ms, Some(1200.0));
        assert_eq!(p.fields.trace_id.as_deref(), Some("abc"));
        assert_eq!(p.properties["msg"], "slow handler");
        assert_eq!(
            p.properties["message"],
            r#"level=warn msg="slow handler" took=1.2s trace_id=abc"#
        );
        assert_eq!(set.parse("ok=true").rule, None);
    }

    #[test]
    fn when_conditions_skip_rules_cheaply() {
        let set = rules(
            "- {name: p, type: regex, pattern: '(?P<x>\\w+)', when: {prefix: 'A '}}\n- {name: j, type: json, when: {json_field: a.b}}\n- {name: r, type: regex, pattern: '.', when: {regex: '^\\d+$', contains: '7'}}",
        );
        assert_eq!(set.parse("A thing").rule.as_deref(), Some("p"));
        assert_eq!(set.parse(r#"{"a":{"b":1}}"#).rule.as_deref(), Some("j"));
        assert_eq!(set.parse(r#"{"a":{"c":1}}"#).rule, None);
        assert_eq!(set.parse("1271").rule.as_deref(), Some("r"));
        assert_eq!(set.parse("1211").rule, None);
        // A prefix is checked by its first byte first; an empty one takes all.
        let set = rules(
            "- {name: a, type: regex, pattern: 'x', when: {prefix: ['Ab', 'Bx', '']}}\n- {name: b, type: regex, pattern: 'y', when: {prefix: ['By', 'Bz']}}",
        );
        assert_eq!(set.parse("x").rule.as_deref(), Some("a"));
        assert_eq!(set.parse("Byy").rule.as_deref(), Some("b"));
        assert_eq!(set.parse("Bay").rule, None);
        assert_eq!(set.parse("").rule, None);
    }

    #[test]
    fn contains_needles_shared_and_nested_across_rules_decide_as_each_alone() {
        // `"p.` is inside `"p.start"` and `"p.report"` (searched first for
        // them), `x"p.start"y` inside nothing; two rules share `"p.start"`.
        let set = rules(
            r#"- {name: start, type: regex, pattern: 'S', when: {contains: '"p.start"'}, priority: 1}
- {name: either, type: regex, pattern: 'S|R', when: {contains: ['"p.report"', '"p.start"']}, priority: 2}
- {name: wide, type: regex, pattern: 'x"p.start"y', when: {contains: 'x"p.start"y'}, priority: 0}
- {name: any, type: regex, pattern: 'A', when: {contains: '"p.'}, priority: 3}"#,
        );
        let rule = |m: &str| set.parse(m).rule;
        assert_eq!(rule(r#"S "p.start""#).as_deref(), Some("start"));
        assert_eq!(rule(r#"R "p.report""#).as_deref(), Some("either"));
        assert_eq!(rule(r#"S "p.report""#).as_deref(), Some("either"));
        assert_eq!(rule(r#"x"p.start"y S"#).as_deref(), Some("wide"));
        assert_eq!(rule(r#"A "p.other""#).as_deref(), Some("any"));
        // The shorter needle is there, the longer ones are not.
        assert_eq!(rule(r#"S R "p.startx"#), None);
        assert_eq!(rule("S R A p.start"), None);
    }

    #[test]
    fn a_needle_is_found_anywhere_in_a_long_message_and_only_there() {
        // All needles are first looked for in one pass; each is found
        // wherever it sits, short and long messages alike.
        let set = rules(
            r#"- {name: start, type: regex, pattern: 'S', when: {contains: '"p.start"'}}
- {name: tmpl, type: regex, pattern: 'S', when: {contains: '"MessageTemplate"'}}
- {name: task, type: regex, pattern: 'S', when: {contains: 'Task timed out'}}"#,
        );
        let filler = r#"{"level":"info","msg":"order processed","service":"S",}"#.repeat(6);
        for (needle, rule) in [
            (r#""p.start""#, "start"),
            (r#""MessageTemplate""#, "tmpl"),
            ("Task timed out", "task"),
        ] {
            for at in (0..=filler.len()).step_by(7).chain([filler.len()]) {
                let message = format!("{}{needle}{}", &filler[..at], &filler[at..]);
                assert_eq!(set.parse(&message).rule.as_deref(), Some(rule), "{message}");
                let short = format!("S{needle}");
                assert_eq!(set.parse(&short).rule.as_deref(), Some(rule));
            }
        }
        assert_eq!(set.parse(&filler).rule, None);
        assert_eq!(
            set.parse(r#"S "p.star "MessageTemplat Task timed"#).rule,
            None
        );
    }

    #[test]
    fn a_rule_set_with_more_needles_than_it_remembers_still_decides() {
        let yaml: String = (0..70)
            .map(|i| {
                format!(
                    "- {{name: n{i}, type: regex, pattern: 'k{i}=', when: {{contains: 'k{i}='}}}}\n"
                )
            })
            .collect();
        let set = rules(&yaml);
        for i in [0, 63, 64, 69] {
            assert_eq!(
                set.parse(&format!("k{i}=1")).rule.as_deref(),
                Some(format!("n{i}").as_str())
            );
        }
        assert_eq!(set.parse("k70=1").rule, None);
    }

    #[test]
    fn event_types_can_name_captured_values() {
        let set = rules(
            "- {name: r, type: regex, pattern: '\\[(?P<kind>\\w+)/(?P<phase>\\w+)\\]', event_type: '{kind|lower}_{phase}'}",
        );
        assert_eq!(
            set.parse("[LLM/end] x").fields.event_type.as_deref(),
            Some("llm_end")
        );
    }

    #[test]
    fn numeric_levels_follow_the_rules_scale() {
        let set = rules(
            "- {name: py, type: json, level_numbers: python, fields: {level: levelno}}\n- {name: pino, type: regex, pattern: '^(?P<level>\\d+)$'}",
        );
        assert_eq!(
            set.parse(r#"{"levelno":10}"#).fields.level.as_deref(),
            Some("debug")
        );
        assert_eq!(set.parse("10").fields.level.as_deref(), Some("trace"));
        assert_eq!(set.parse("60").fields.level.as_deref(), Some("fatal"));
    }

    #[test]
    fn langchain_type_extracts_what_the_vectadb_agent_extracts() {
        // VectaDB's agent: framework plus chain_type / tool_name / input.
        let set = rules("- {name: lc, type: langchain, priority: 7}");
        let chain = set.parse("> Entering new AgentExecutor chain...");
        assert_eq!(chain.properties["framework"], "langchain");
        assert_eq!(chain.properties["chain_type"], "AgentExecutor");
        let tool = set.parse("Running WebSearch tool with input: weather forecast");
        assert_eq!(tool.properties["tool_name"], "WebSearch");
        assert_eq!(tool.properties["input"], "weather forecast");
        let llama = rules("- {type: llamaindex}");
        let r = llama.parse("Retrieved 4 nodes");
        assert_eq!(r.properties["framework"], "llamaindex");
        assert_eq!(r.properties["node_count"], 4);
    }

    #[test]
    fn use_reads_parsers_dir_before_the_builtin_sets() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("lambda.yaml"),
            "# mine\n- name: my-lambda\n  type: regex\n  pattern: '^START'\n  event_type: mine\n",
        )
        .unwrap();
        let options = LoadOptions {
            parsers_dir: Some(dir.path().to_path_buf()),
            ..LoadOptions::default()
        };
        let set = load("[{use: lambda}, {use: kv}]", &options).unwrap();
        assert_eq!(
            set.parse("START RequestId: x").rule.as_deref(),
            Some("my-lambda")
        );
        assert!(set.rule_names().contains(&"kv-logfmt"));
    }

    #[test]
    fn an_unknown_set_names_the_key_and_lists_the_builtin_sets() {
        let e = load("[{use: lambda}, {use: nginx}]", &LoadOptions::default()).unwrap_err();
        assert_eq!(e.key(), "log_groups[0].parsers[1].use");
        let msg = e.to_string();
        assert!(msg.contains("\"nginx\""), "{msg}");
        for name in builtin_names() {
            assert!(msg.contains(name), "{msg}");
        }
        let e = load("[{use: lambda, priority: 3}]", &LoadOptions::default()).unwrap_err();
        assert_eq!(e.key(), "log_groups[0].parsers[0].use");
    }

    #[test]
    fn errors_in_rule_files_name_the_file_the_rule_and_its_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("mine.yaml"),
            "# my rules\n- name: ok\n  type: regex\n  pattern: 'a'\n\n- name: broken\n  type: regex\n  pattern: '(unclosed'\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("typo.yaml"),
            "- name: t\n  type: regex\n  patern: 'a'\n",
        )
        .unwrap();
        let options = LoadOptions {
            parsers_dir: Some(dir.path().to_path_buf()),
            ..LoadOptions::default()
        };
        let e = load("[{use: mine}]", &options).unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(&e, RuleError::FileRule { rule, line: 6, .. } if rule == "broken"),
            "{msg}"
        );
        assert!(
            msg.contains("mine.yaml") && msg.contains("pattern: invalid regex"),
            "{msg}"
        );
        let e = load("[{use: typo}]", &options).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("typo.yaml")
                && msg.contains("rule \"t\"")
                && msg.contains("patern")
                && msg.contains("line 3"),
            "{msg}"
        );
        // `use` in a rule file is named as such, with or without a name.
        std::fs::write(dir.path().join("uses.yaml"), "- {use: lambda}\n").unwrap();
        let msg = load("[{use: uses}]", &options).unwrap_err().to_string();
        assert!(
            msg.contains("uses.yaml")
                && msg.contains("`use` is only allowed in a log group's parsers list"),
            "{msg}"
        );
        // A file with no rule in it is a mistake, not an empty set.
        for (name, text) in [("empty", ""), ("comments", "# nothing yet\n")] {
            std::fs::write(dir.path().join(format!("{name}.yaml")), text).unwrap();
            let msg = load(&format!("[{{use: {name}}}]"), &options)
                .unwrap_err()
                .to_string();
            assert!(
                msg.contains(&format!("{name}.yaml")) && msg.contains("holds no rules"),
                "{msg}"
            );
        }
    }

    #[test]
    fn parse_returns_redacted_messages_properties_and_fields() {
        let set = RuleSet::builtin("json")
            .unwrap()
            .with_redaction(RedactConfig {
                emails: true,
                card_numbers: true,
                fields: vec!["password".into()],
                ..RedactConfig::default()
            })
            .unwrap();
        let p = set.parse(
            r#"{"msg":"order by jane@example.com paid with 4111-1111-1111-1111","password":"hunter2","user":{"email":"bob@example.org"}}"#,
        );
        assert_eq!(
            p.fields.message.as_deref(),
            Some("order by [REDACTED:email] paid with [REDACTED:card_number]")
        );
        assert_eq!(p.properties["password"], "[REDACTED:field]");
        assert_eq!(p.properties["user"]["email"], "[REDACTED:email]");
        let text = set.parse("login failed for jane@example.com password=hunter2");
        assert_eq!(
            text.properties["message"],
            "login failed for [REDACTED:email] password=[REDACTED:field]"
        );
        // Off by default.
        let plain = RuleSet::builtin("json").unwrap();
        assert!(!plain.redacts());
        assert_eq!(
            plain.parse("x jane@example.com").properties["message"],
            "x jane@example.com"
        );
    }
}
