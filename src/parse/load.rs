//! Building a [`RuleSet`] from a group's `parsers` list: inline rules,
//! `use: NAME` (a file in `parsers_dir`, else a built-in set), and the
//! VectaDB framework types `langchain` / `llamaindex`.

use std::path::{Path as FsPath, PathBuf};

use regex::Regex;

use super::RuleSet;
use super::redact::{RedactConfig, Redactor};
use super::rule::{KeyError, Rule};
use super::spec::RawParser;

/// The rule sets shipped in `parsers/`, embedded in the binary.
const BUILTIN: &[(&str, &str)] = &[
    ("lambda", include_str!("../../parsers/lambda.yaml")),
    ("json", include_str!("../../parsers/json.yaml")),
    ("xray", include_str!("../../parsers/xray.yaml")),
    ("otel", include_str!("../../parsers/otel.yaml")),
    ("apigateway", include_str!("../../parsers/apigateway.yaml")),
    ("langchain", include_str!("../../parsers/langchain.yaml")),
    ("llamaindex", include_str!("../../parsers/llamaindex.yaml")),
    (
        "python-logging",
        include_str!("../../parsers/python-logging.yaml"),
    ),
    ("kv", include_str!("../../parsers/kv.yaml")),
];

/// The names of the built-in rule sets, for `use:`.
pub fn builtin_names() -> Vec<&'static str> {
    BUILTIN.iter().map(|(n, _)| *n).collect()
}

/// The YAML text of a built-in rule set.
pub fn builtin_text(name: &str) -> Option<&'static str> {
    BUILTIN.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// Why rules could not be built. Every variant names the config key; rule
/// file errors also name the file, the rule and its line.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// An inline rule or a `use:` entry is wrong.
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
    /// A rule file is not valid YAML or has unknown keys or wrong types
    /// (the message carries serde_yaml's line and column).
    #[error("{key}: rule file {file}: {message}")]
    FileSyntax {
        key: String,
        file: String,
        message: String,
    },
    /// A rule in a rule file is wrong; `message` starts with the rule's key
    /// that is wrong (`pattern: invalid regex ...`).
    #[error("{key}: rule file {file}, rule {rule:?} (line {line}): {message}")]
    FileRule {
        key: String,
        file: String,
        rule: String,
        line: usize,
        message: String,
    },
    /// A rule file could not be read.
    #[error("{key}: cannot read rule file {file}: {source}")]
    Read {
        key: String,
        file: String,
        source: std::io::Error,
    },
}

impl RuleError {
    /// The config key the error belongs to (`log_groups[0].parsers[2].use`).
    pub fn key(&self) -> &str {
        match self {
            RuleError::Invalid { key, .. }
            | RuleError::FileSyntax { key, .. }
            | RuleError::FileRule { key, .. }
            | RuleError::Read { key, .. } => key,
        }
    }

    /// The message without the key.
    pub fn detail(&self) -> String {
        let full = self.to_string();
        full.strip_prefix(&format!("{}: ", self.key()))
            .map(str::to_string)
            .unwrap_or(full)
    }

    /// `(key, message)`, the shape config validation reports.
    pub fn into_pair(self) -> (String, String) {
        (self.key().to_string(), self.detail())
    }
}

/// Where `use:` looks for rule files, and what to redact.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// The user's rule files: `use: NAME` reads `DIR/NAME.yaml` first.
    pub parsers_dir: Option<PathBuf>,
    /// PII redaction applied by [`RuleSet::parse`].
    pub redact: RedactConfig,
}

/// Where the entries being compiled come from, for messages.
enum Origin<'a> {
    /// A group's `parsers` list; `key` like `log_groups[0].parsers`.
    Config { key: &'a str },
    /// A rule file, reached from the config key `key`.
    File {
        key: &'a str,
        file: &'a str,
        text: &'a str,
    },
}

impl RuleSet {
    /// Builds the rules of a `parsers` list at config key `key`.
    pub fn load(
        entries: &[RawParser],
        key: &str,
        options: &LoadOptions,
    ) -> Result<RuleSet, RuleError> {
        let mut rules = Vec::new();
        compile_entries(entries, &Origin::Config { key }, options, &mut rules, 0)?;
        // Two rules of one name (an inline rule and one of a `use:` set,
        // or a set used twice): only the first by priority would be seen
        // deciding, which reads as if the other had run.
        let mut names = std::collections::HashSet::new();
        if let Some(rule) = rules.iter().find(|r| !names.insert(&*r.name)) {
            return Err(RuleError::Invalid {
                key: key.to_string(),
                message: format!(
                    "two rules are named {:?} (an inline rule and a rule of a `use:` set, or a set used twice); give the inline rule another name",
                    rule.name
                ),
            });
        }
        let redactor =
            Redactor::new(options.redact.clone()).map_err(|message| RuleError::Invalid {
                key: "redact.fields".into(),
                message,
            })?;
        Ok(RuleSet::from_rules(rules, redactor))
    }

    /// A built-in rule set by name (`lambda`, `json`, ...; see
    /// [`builtin_names`]).
    pub fn builtin(name: &str) -> Result<RuleSet, RuleError> {
        let text = builtin_text(name).ok_or_else(|| unknown_set(name, "use", None))?;
        RuleSet::from_yaml(text, &format!("parsers/{name}.yaml"))
    }

    /// The rules of a rule file's text; `file` names it in errors.
    pub fn from_yaml(text: &str, file: &str) -> Result<RuleSet, RuleError> {
        let mut rules = Vec::new();
        compile_file(text, file, "rules", &LoadOptions::default(), &mut rules, 0)?;
        Ok(RuleSet::from_rules(rules, None))
    }
}

fn unknown_set(name: &str, key: &str, dir: Option<&FsPath>) -> RuleError {
    let looked = match dir {
        Some(d) => format!("no {} and ", d.join(format!("{name}.yaml")).display()),
        None => String::new(),
    };
    RuleError::Invalid {
        key: key.to_string(),
        message: format!(
            "unknown rule set {name:?}: {looked}no built-in set of that name; built-in sets: {}",
            builtin_names().join(", ")
        ),
    }
}

/// The line (1-based) where each top-level list item of a rule file starts.
fn item_lines(text: &str) -> Vec<usize> {
    let mut indent = None;
    let mut lines = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if !(trimmed.starts_with("- ") || trimmed == "-") {
            continue;
        }
        let i = line.len() - trimmed.len();
        match indent {
            None => {
                indent = Some(i);
                lines.push(n + 1);
            }
            Some(first) if first == i => lines.push(n + 1),
            _ => {}
        }
    }
    lines
}

/// The `name:` of the list item that holds `line` (1-based), if it has one.
fn rule_at_line(text: &str, line: usize) -> Option<String> {
    let starts = item_lines(text);
    let item = starts.iter().rposition(|&start| start <= line)?;
    let end = starts.get(item + 1).copied().unwrap_or(usize::MAX);
    text.lines()
        .enumerate()
        .skip(starts[item] - 1)
        .take_while(|(n, _)| n + 1 < end)
        .find_map(|(_, l)| {
            let l = l.trim_start().trim_start_matches("- ").trim_start();
            let rest = l.strip_prefix("name:")?;
            Some(rest.trim().trim_matches(['"', '\'']).to_string())
        })
        .filter(|n| !n.is_empty())
}

/// Upper bound on `use`/framework-type nesting (a file using a set that
/// uses a set ...), so a cycle is an error rather than a hang.
const MAX_DEPTH: usize = 4;

fn compile_file(
    text: &str,
    file: &str,
    key: &str,
    options: &LoadOptions,
    out: &mut Vec<Rule>,
    depth: usize,
) -> Result<(), RuleError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let entries: Vec<RawParser> = serde_yaml::from_str(text).map_err(|e| {
        // A rule file is a list: serde_yaml's path starts `.[0]`.
        let plain = crate::errors::plain(&e.to_string());
        let message = plain.strip_prefix('.').unwrap_or(&plain);
        RuleError::FileSyntax {
            key: key.to_string(),
            file: file.to_string(),
            message: match e.location().and_then(|l| rule_at_line(text, l.line())) {
                Some(rule) => format!("rule {rule:?}: {message}"),
                None => message.to_string(),
            },
        }
    })?;
    if entries.is_empty() {
        return Err(RuleError::FileSyntax {
            key: key.to_string(),
            file: file.to_string(),
            message: "the file holds no rules (a rule file is a YAML list of rules)".into(),
        });
    }
    compile_entries(
        &entries,
        &Origin::File { key, file, text },
        options,
        out,
        depth,
    )
}

fn compile_entries(
    entries: &[RawParser],
    origin: &Origin,
    options: &LoadOptions,
    out: &mut Vec<Rule>,
    depth: usize,
) -> Result<(), RuleError> {
    let lines = match origin {
        Origin::File { text, .. } => item_lines(text),
        Origin::Config { .. } => Vec::new(),
    };
    let mut names = std::collections::HashSet::new();
    for (i, entry) in entries.iter().enumerate() {
        // Turns a (field, message) error of entry i into a RuleError.
        let fail = |(field, message): KeyError| match origin {
            Origin::Config { key } => RuleError::Invalid {
                key: if field.is_empty() {
                    format!("{key}[{i}]")
                } else {
                    format!("{key}[{i}].{field}")
                },
                message,
            },
            Origin::File { key, file, .. } => RuleError::FileRule {
                key: key.to_string(),
                file: file.to_string(),
                rule: entry.name.clone().unwrap_or_else(|| format!("#{i}")),
                line: lines.get(i).copied().unwrap_or(0),
                message: if field.is_empty() {
                    message
                } else {
                    format!("{field}: {message}")
                },
            },
        };
        if let Origin::File { .. } = origin {
            if entry.use_set.is_some() {
                return Err(fail((
                    "use".into(),
                    "`use` is only allowed in a log group's parsers list".into(),
                )));
            }
            match &entry.name {
                None => {
                    return Err(fail((
                        "name".into(),
                        "every rule in a rule file needs a name".into(),
                    )));
                }
                Some(n) if !names.insert(n.clone()) => {
                    return Err(fail((
                        "name".into(),
                        format!("{n:?} is used twice in this file"),
                    )));
                }
                _ => {}
            }
        }
        if let Some(set) = &entry.use_set {
            let Origin::Config { key } = origin else {
                return Err(fail((
                    "use".into(),
                    "`use` is only allowed in a log group's parsers list".into(),
                )));
            };
            if !is_bare_use(entry) {
                return Err(fail((
                    "use".into(),
                    "`use` stands alone in its entry: `- {use: NAME}`; put other keys in a rule"
                        .into(),
                )));
            }
            let use_key = format!("{key}[{i}].use");
            load_set(set, &use_key, options, out, depth + 1)?;
            continue;
        }
        let Some(kind) = entry.kind.as_deref() else {
            return Err(fail((
                "type".into(),
                "missing: give `type` (json, regex, kv, langchain, llamaindex) or `use: NAME`"
                    .into(),
            )));
        };
        match kind {
            "langchain" | "llamaindex" => {
                if depth >= MAX_DEPTH {
                    return Err(fail(("type".into(), "rule sets nest too deeply".into())));
                }
                // VectaDB's framework types: the shipped set, at this entry's
                // priority, with its field_mapping and event_type.
                let mapping = Rule::mapping_of(entry).map_err(fail)?;
                let pattern = entry
                    .pattern
                    .as_deref()
                    .map(|p| {
                        Regex::new(p)
                            .map_err(|e| fail(("pattern".into(), format!("invalid regex: {e}"))))
                    })
                    .transpose()?;
                let mut set = Vec::new();
                let text = builtin_text(kind).unwrap_or_default();
                compile_file(
                    text,
                    &format!("parsers/{kind}.yaml"),
                    "type",
                    options,
                    &mut set,
                    depth + 1,
                )?;
                set.sort_by_key(|r| r.priority);
                for mut rule in set {
                    rule.priority = entry.priority.unwrap_or(100);
                    rule.override_with(&mapping, entry.event_type.as_deref());
                    if let Some(re) = &pattern {
                        rule.require(re.clone());
                    }
                    out.push(rule);
                }
            }
            _ => out.push(Rule::compile(entry, kind, i).map_err(fail)?),
        }
    }
    Ok(())
}

fn is_bare_use(e: &RawParser) -> bool {
    e.name.is_none()
        && e.kind.is_none()
        && e.pattern.is_none()
        && e.patterns.is_none()
        && e.field_mapping.is_empty()
        && e.event_type.is_none()
        && e.priority.is_none()
        && e.when.is_none()
        && e.mode.is_none()
        && e.fields.is_empty()
        && e.defaults.is_empty()
        && e.numbers.is_empty()
        && e.embedded.is_none()
        && e.level_numbers.is_none()
        && e.duration_unit.is_none()
        && e.separators.is_none()
        && e.min_pairs.is_none()
}

fn load_set(
    name: &str,
    key: &str,
    options: &LoadOptions,
    out: &mut Vec<Rule>,
    depth: usize,
) -> Result<(), RuleError> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
    {
        return Err(RuleError::Invalid {
            key: key.to_string(),
            message: format!("{name:?} is not a rule set name (letters, digits, - and _)"),
        });
    }
    if depth > MAX_DEPTH {
        return Err(RuleError::Invalid {
            key: key.to_string(),
            message: "rule sets nest too deeply".into(),
        });
    }
    if let Some(dir) = &options.parsers_dir {
        let path = dir.join(format!("{name}.yaml"));
        if path.is_file() {
            let file = path.display().to_string();
            let text = std::fs::read_to_string(&path).map_err(|source| RuleError::Read {
                key: key.to_string(),
                file: file.clone(),
                source,
            })?;
            return compile_file(&text, &file, key, options, out, depth);
        }
    }
    let text =
        builtin_text(name).ok_or_else(|| unknown_set(name, key, options.parsers_dir.as_deref()))?;
    compile_file(
        text,
        &format!("parsers/{name}.yaml"),
        key,
        options,
        out,
        depth,
    )
}
