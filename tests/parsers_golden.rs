//! Golden tests of the shipped rule sets: every line of
//! `tests/fixtures/parsers/<set>.log` is parsed with the built-in set of that
//! name and checked against `<set>.golden.json` (the rule that matched, the
//! merge rules that added to it, and the canonical fields). On the shipped
//! fixtures at least 95% of the lines of a known format must match a rule
//! other than the fallback; lines of a format no rule is meant to know are
//! marked `"known": false` in the golden file.
//!
//! In a `.log` file each line is one CloudWatch message; `↵` stands for a
//! newline inside a message (a REPORT line with its XRAY part, a traceback).
//! Besides the rule and the canonical fields, a golden entry records under
//! `facts` the properties trace grouping reads (see [`FACTS`]).
//!
//! `CWTAP_BLESS=1 cargo test --test parsers_golden` rewrites the golden files
//! from the current output, keeping `known` and `note`; review the diff.

use std::fmt::Write as _;
use std::path::PathBuf;

use cwtap::parse::{Parsed, RuleSet, builtin_names};
use serde_json::{Map, Value, json};

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parsers")
}

/// The fixture's messages, in order.
fn messages(set: &str) -> Vec<String> {
    let path = fixture_dir().join(format!("{set}.log"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("fixture {} is missing: {e}", path.display()));
    text.lines().map(|l| l.replace('↵', "\n")).collect()
}

/// What the golden file records of one parsed line.
fn observed(n: usize, message: &str, p: &Parsed) -> Map<String, Value> {
    let f = &p.fields;
    let mut fields = Map::new();
    let mut put = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            fields.insert(k.into(), json!(v));
        }
    };
    put("trace_id", &f.trace_id);
    put("request_id", &f.request_id);
    put("span_id", &f.span_id);
    put("parent_span_id", &f.parent_span_id);
    put("session_id", &f.session_id);
    put("agent_id", &f.agent_id);
    put("service", &f.service);
    put("level", &f.level);
    put("event_type", &f.event_type);
    put("error", &f.error);
    put("message", &f.message);
    if let Some(d) = f.duration_ms {
        fields.insert("duration_ms".into(), json!(d));
    }
    let mut entry = Map::new();
    entry.insert("line".into(), json!(n));
    entry.insert("text".into(), json!(excerpt(message)));
    entry.insert("rule".into(), json!(p.rule));
    if !p.merged.is_empty() {
        entry.insert("merged".into(), json!(p.merged));
    }
    entry.insert("fields".into(), Value::Object(fields));
    let facts: Map<String, Value> = FACTS
        .iter()
        .filter_map(|k| p.properties.get(k).map(|v| (k.to_string(), v.into_owned())))
        .collect();
    if !facts.is_empty() {
        entry.insert("facts".into(), Value::Object(facts));
    }
    entry
}

/// Properties (not canonical fields) that trace grouping reads: a Lambda
/// REPORT's numbers (`init_duration_ms` marks a cold start) and SnapStart's
/// restore time. Recorded under `facts` when a line has any.
const FACTS: &[&str] = &[
    "billed_duration_ms",
    "memory_size_mb",
    "max_memory_used_mb",
    "init_duration_ms",
    "restore_duration_ms",
];

/// The start of a message, for finding the line in the golden file.
fn excerpt(message: &str) -> String {
    message.chars().take(72).collect()
}

struct SetResult {
    known: usize,
    known_matched: usize,
    unknown: usize,
    diffs: Vec<String>,
}

fn check_set(set: &str, bless: bool) -> SetResult {
    let rules = RuleSet::builtin(set).unwrap_or_else(|e| panic!("built-in set {set}: {e}"));
    let messages = messages(set);
    let golden_path = fixture_dir().join(format!("{set}.golden.json"));
    let golden: Vec<Value> = match std::fs::read_to_string(&golden_path) {
        Ok(text) => {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", golden_path.display()))
        }
        Err(_) if bless => Vec::new(),
        Err(e) => panic!(
            "{} is missing ({e}); run with CWTAP_BLESS=1",
            golden_path.display()
        ),
    };

    let mut result = SetResult {
        known: 0,
        known_matched: 0,
        unknown: 0,
        diffs: Vec::new(),
    };
    let mut blessed = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let n = i + 1;
        let parsed = rules.parse(message);
        let mut got = observed(n, message, &parsed);
        let want = golden.get(i).and_then(Value::as_object);
        let known = want
            .and_then(|w| w.get("known"))
            .and_then(Value::as_bool)
            .unwrap_or(true);
        if known {
            result.known += 1;
            if parsed.rule.is_some() {
                result.known_matched += 1;
            }
        } else {
            result.unknown += 1;
        }
        if bless {
            if !known {
                got.insert("known".into(), json!(false));
            }
            if let Some(note) = want.and_then(|w| w.get("note")) {
                got.insert("note".into(), note.clone());
            }
            blessed.push(Value::Object(got));
            continue;
        }
        let Some(want) = want else {
            result.diffs.push(format!(
                "line {n}: no golden entry ({:?})",
                excerpt(message)
            ));
            continue;
        };
        let mut diff = String::new();
        for key in ["text", "rule", "merged", "facts"] {
            let w = want.get(key).cloned().unwrap_or(Value::Null);
            let g = got.get(key).cloned().unwrap_or(Value::Null);
            if w != g {
                let _ = writeln!(diff, "    {key}: expected {w}, got {g}");
            }
        }
        let empty = Map::new();
        let wf = want
            .get("fields")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let gf = got
            .get("fields")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let mut names: Vec<&String> = wf.keys().chain(gf.keys()).collect();
        names.sort();
        names.dedup();
        for name in names {
            let (w, g) = (wf.get(name), gf.get(name));
            if w != g {
                let show = |v: Option<&Value>| v.map_or("(none)".to_string(), Value::to_string);
                let _ = writeln!(
                    diff,
                    "    fields.{name}: expected {}, got {}",
                    show(w),
                    show(g)
                );
            }
        }
        if !diff.is_empty() {
            result
                .diffs
                .push(format!("line {n} {:?}:\n{diff}", excerpt(message)));
        }
    }
    if !bless && golden.len() != messages.len() {
        result.diffs.push(format!(
            "the golden file has {} entries for {} lines",
            golden.len(),
            messages.len()
        ));
    }
    if bless {
        let text = serde_json::to_string_pretty(&blessed).expect("JSON values serialise");
        std::fs::write(&golden_path, text + "\n")
            .unwrap_or_else(|e| panic!("{}: {e}", golden_path.display()));
    }
    result
}

#[test]
fn every_fixture_line_parses_as_its_golden_entry_says() {
    let bless = std::env::var("CWTAP_BLESS").is_ok_and(|v| v == "1");
    let mut failures = String::new();
    for set in builtin_names() {
        let r = check_set(set, bless);
        for d in &r.diffs {
            let _ = writeln!(failures, "{set}: {d}");
        }
    }
    assert!(
        failures.is_empty(),
        "parsed fixture lines differ from their golden entries \
         (CWTAP_BLESS=1 rewrites them; review the diff):\n{failures}"
    );
}

#[test]
fn at_least_95_percent_of_known_format_lines_match_a_rule_in_every_set() {
    let mut report = String::new();
    let mut low = Vec::new();
    for set in builtin_names() {
        let r = check_set(set, false);
        assert!(
            r.known >= 20,
            "{set}: the fixture needs at least 20 lines of known format"
        );
        assert!(
            r.unknown >= 1,
            "{set}: the fixture needs lines of unknown format too"
        );
        let share = r.known_matched as f64 / r.known as f64;
        let _ = writeln!(
            report,
            "{set:>15}: {}/{} known-format lines matched ({:.1}%), {} unknown-format lines",
            r.known_matched,
            r.known,
            share * 100.0,
            r.unknown
        );
        if share < 0.95 {
            low.push(set);
        }
    }
    println!("{report}");
    assert!(low.is_empty(), "below 95%: {low:?}\n{report}");
}
