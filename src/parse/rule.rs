//! One compiled rule: its kind (json, regex, kv), its `when` prefilter, what
//! it extracts, and how it runs against a message.
//!
//! Rule keys (inline in a group's `parsers` or in a rule file):
//!
//! - `name`, `type` (`json`, `regex`, `kv`), `priority` (lower first, default
//!   100), `mode` (`first`: a match stops the search; `merge`: the rule adds
//!   what it found and the search goes on).
//! - `when`: `prefix`, `contains`, `regex`, `json_field`; all given must hold.
//! - json: `pattern` (must match too; its named captures become properties),
//!   `embedded: true` (the object may follow a text prefix).
//! - regex: `pattern` or `patterns` (the first that matches is used).
//! - kv: `separators` (`=`, `:` or `both`), `min_pairs` (default 2).
//! - `fields`: target -> candidate paths (the first present wins). Targets are
//!   the canonical fields or property names. A canonical field that is not
//!   listed is read from the property of the same name.
//! - `defaults`, `numbers`, `level_numbers`, `duration_unit`,
//!   `field_mapping` (VectaDB's: copy a field to a new name), `event_type`
//!   (may name properties: `{phase}`, `{kind|lower}`).

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use regex::Regex;
use serde_json::{Map, Number, Value};

use super::Fields;
use super::anchor::FirstBytes;
use super::kv::{self, Separators};
use super::normalize::{self, LevelNumbers};
use super::path::Path;
use super::props::Properties;
use super::spec::{OneOrMany, RawLevelNumbers, RawMode, RawParser};

/// What went wrong compiling a rule: (key below the rule, message).
pub(crate) type KeyError = (String, String);

fn err(key: &str, message: impl Into<String>) -> KeyError {
    (key.to_string(), message.into())
}

/// The canonical fields, in the order rules fill them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Canon {
    TraceId,
    ParentSpanId,
    RequestId,
    SpanId,
    SessionId,
    AgentId,
    Service,
    Level,
    Message,
    EventType,
    DurationMs,
    Error,
}

impl Canon {
    pub(crate) const ALL: [Canon; 12] = [
        Canon::TraceId,
        Canon::ParentSpanId,
        Canon::RequestId,
        Canon::SpanId,
        Canon::SessionId,
        Canon::AgentId,
        Canon::Service,
        Canon::Level,
        Canon::Message,
        Canon::EventType,
        Canon::DurationMs,
        Canon::Error,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Canon::TraceId => "trace_id",
            Canon::ParentSpanId => "parent_span_id",
            Canon::RequestId => "request_id",
            Canon::SpanId => "span_id",
            Canon::SessionId => "session_id",
            Canon::AgentId => "agent_id",
            Canon::Service => "service",
            Canon::Level => "level",
            Canon::Message => "message",
            Canon::EventType => "event_type",
            Canon::DurationMs => "duration_ms",
            Canon::Error => "error",
        }
    }

    fn from_name(name: &str) -> Option<Canon> {
        Canon::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// Where an extracted value goes.
#[derive(Debug, Clone, PartialEq)]
enum Target {
    Canonical(Canon),
    Property(String),
}

/// Whether a matching rule ends the search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    First,
    Merge,
}

#[derive(Debug, Clone)]
enum Kind {
    Json {
        pattern: Option<Regex>,
        embedded: bool,
    },
    Regex(Vec<Regex>),
    Kv {
        separators: Separators,
        min_pairs: usize,
    },
}

/// The cheap tests a message must pass before the rule runs.
#[derive(Debug, Clone, Default)]
struct When {
    prefix: Vec<String>,
    contains: Vec<String>,
    /// `contains` as ids in the rule set's [`Needles`] (set by
    /// [`Needles::link`]).
    needles: Vec<usize>,
    regex: Option<Regex>,
    /// The first bytes `regex` can match at, when it is anchored at the
    /// start: checked before the regex runs.
    regex_first: Option<FirstBytes>,
    json_fields: Vec<Path>,
}

/// `event_type` text with `{property}` / `{property|lower}` holes.
#[derive(Debug, Clone)]
enum Template {
    Fixed(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Clone)]
enum Part {
    Text(String),
    Hole { path: Path, lower: bool },
}

impl Template {
    fn parse(text: &str) -> Result<Template, String> {
        if !text.contains('{') {
            return Ok(Template::Fixed(text.to_string()));
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("{text:?} has an unclosed {{"))?;
            let inner = &rest[open + 1..open + close];
            let (name, lower) = match inner.split_once('|') {
                Some((name, "lower")) => (name, true),
                Some((_, filter)) => {
                    return Err(format!("unknown filter {filter:?} (only `lower`)"));
                }
                None => (inner, false),
            };
            parts.push(Part::Hole {
                path: Path::parse(name)?,
                lower,
            });
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template::Parts(parts))
    }

    fn render(&self, props: &Properties) -> String {
        match self {
            Template::Fixed(s) => s.clone(),
            Template::Parts(parts) => {
                let mut out = String::new();
                for part in parts {
                    match part {
                        Part::Text(t) => out.push_str(t),
                        Part::Hole { path, lower } => {
                            if let Some(v) =
                                path.lookup_props(props).and_then(|v| scalar_string(&v))
                            {
                                if *lower {
                                    out.push_str(&v.to_lowercase());
                                } else {
                                    out.push_str(&v);
                                }
                            }
                        }
                    }
                }
                out
            }
        }
    }
}

/// A fast hasher for the key index (FxHash's mixing). SipHash's flooding
/// protection is not needed: the index is built from the rules, and input
/// only looks keys up.
#[derive(Default)]
struct KeyHasher(u64);

impl KeyHasher {
    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        let n = bytes.len();
        let word = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(w)
        };
        let half = |at: usize| {
            let mut w = [0u8; 4];
            w.copy_from_slice(&bytes[at..at + 4]);
            u64::from(u32::from_le_bytes(w))
        };
        let mut i = 0;
        while i + 8 <= n {
            self.mix(word(i));
            i += 8;
        }
        if i == n {
            return;
        }
        // The last 1-7 bytes in fixed-size reads (a copy of a variable
        // length into a word stalls the load that follows it): the last
        // eight bytes, overlapping some already mixed; or two overlapping
        // halves; or three single bytes. With the length, so that keys of
        // different lengths read alike do not collide.
        let tail = if n >= 8 {
            word(n - 8)
        } else if n >= 4 {
            half(0) | half(n - 4) << 32
        } else {
            u64::from(bytes[0]) | u64::from(bytes[n / 2]) << 8 | u64::from(bytes[n - 1]) << 16
        };
        self.mix(tail ^ (n as u64) << 59);
    }

    fn write_u8(&mut self, n: u8) {
        self.mix(u64::from(n));
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    /// Shared with each event it parses ([`super::Parsed::rule`]).
    pub(crate) name: Arc<str>,
    pub(crate) priority: i64,
    pub(crate) mode: Mode,
    kind: Kind,
    when: When,
    extract: Vec<(Target, Vec<Path>)>,
    /// Top-level key -> (index in `extract`, candidate rank): one hash lookup
    /// per key of the message finds every candidate path it can satisfy.
    index: HashMap<String, Vec<(usize, usize)>, BuildHasherDefault<KeyHasher>>,
    defaults: Vec<(Target, String)>,
    field_mapping: Vec<(Path, String)>,
    numbers: Vec<String>,
    event_type: Option<Template>,
    level_numbers: LevelNumbers,
    duration_unit_ms: f64,
}

/// What one rule made of a message.
#[derive(Debug, Default)]
pub(crate) struct Extract {
    /// JSON fields, captures or pairs (and what `fields` copied to properties).
    pub(crate) props: Properties,
    pub(crate) fields: Fields,
    /// The properties hold all of the message (a JSON object that is the
    /// whole message): no raw line is added. An object embedded after
    /// text is not all of it, and the raw line is kept as for text.
    pub(crate) whole_message: bool,
}

/// Every `when.contains` text of a rule set, each searched for at most
/// once per message: most messages go past every such rule, and a
/// substring search is most of what a rule that does not apply costs.
#[derive(Debug, Clone, Default)]
pub(crate) struct Needles {
    /// Searchers built once (`str::contains` sets one up on every call).
    finders: Vec<memchr::memmem::Finder<'static>>,
    /// A shorter needle that each one contains, searched first: where it is
    /// absent, so is this one (the Lambda set's `"platform.start"`,
    /// `"platform.report"`, ... all wait on its `"platform.`).
    within: Vec<Option<usize>>,
    /// All the needles at once: a message that holds none of them (most
    /// do not) is ruled out in one pass over it, where one search per
    /// needle asked about would read it once each.
    any: Option<aho_corasick::packed::Searcher>,
}

/// How many needles a message remembers the outcome of (bits of a `u64`);
/// the others are searched every time they are asked about.
const REMEMBERED: usize = 64;

impl Needles {
    /// Collects the `contains` texts of `rules`, gives each rule their ids.
    pub(crate) fn link(rules: &mut [Rule]) -> Needles {
        let mut texts: Vec<String> = Vec::new();
        for rule in rules.iter_mut() {
            rule.when.needles = rule
                .when
                .contains
                .iter()
                .map(|c| match texts.iter().position(|t| t == c) {
                    Some(id) => id,
                    None => {
                        texts.push(c.clone());
                        texts.len() - 1
                    }
                })
                .collect();
        }
        // The longest needle found inside each one: chains (a in b in c)
        // are then searched from the shortest up.
        let within = texts
            .iter()
            .map(|t| {
                texts
                    .iter()
                    .enumerate()
                    .filter(|(_, o)| o.len() < t.len() && !o.is_empty() && t.contains(o.as_str()))
                    .max_by_key(|(_, o)| o.len())
                    .map(|(id, _)| id)
            })
            .collect();
        Needles {
            finders: texts
                .iter()
                .map(|t| memchr::memmem::Finder::new(t.as_bytes()).into_owned())
                .collect(),
            within,
            // With one needle, its own search is the one pass.
            any: (texts.len() > 1)
                .then(|| aho_corasick::packed::Searcher::new(texts.iter()))
                .flatten(),
        }
    }
}

/// Per-message state shared by the rules: the JSON parse and each needle's
/// search are done once.
pub(crate) struct Input<'a> {
    pub(crate) message: &'a str,
    /// The message without its leading white space (`when.prefix`).
    trimmed: &'a str,
    needles: &'a Needles,
    /// Needles searched for, and those found (bit = id).
    searched: u64,
    found: u64,
    /// Whether the message holds any needle at all ([`Needles::any`]),
    /// once asked.
    any: Option<bool>,
    json: Option<Option<Properties>>,
    embedded: Option<(usize, Option<Properties>)>,
}

impl<'a> Input<'a> {
    pub(crate) fn new(message: &'a str, needles: &'a Needles) -> Input<'a> {
        Input {
            message,
            trimmed: message.trim_start(),
            needles,
            searched: 0,
            found: 0,
            any: None,
            json: None,
            embedded: None,
        }
    }

    /// Whether the message contains needle `id`.
    fn contains(&mut self, id: usize) -> bool {
        let needles = self.needles;
        let message = self.message;
        let any = *self.any.get_or_insert_with(|| {
            needles
                .any
                .as_ref()
                .is_none_or(|all| all.find(message).is_some())
        });
        if !any {
            return false;
        }
        let search = |input: &mut Input<'a>| {
            needles.within[id].is_none_or(|shorter| input.contains(shorter))
                && needles.finders[id].find(input.message.as_bytes()).is_some()
        };
        if id >= REMEMBERED {
            return search(self);
        }
        let bit = 1u64 << id;
        if self.searched & bit == 0 {
            if search(self) {
                self.found |= bit;
            }
            self.searched |= bit;
        }
        self.found & bit != 0
    }

    /// The message as a JSON object, parsed at most once.
    fn json(&mut self) -> Option<&Properties> {
        let message = self.message;
        self.json
            .get_or_insert_with(|| Properties::from_json_object(message))
            .as_ref()
    }

    fn take_json(&mut self, keep: bool) -> Option<Properties> {
        self.json();
        let slot = self.json.as_mut()?;
        if keep { slot.clone() } else { slot.take() }
    }

    /// The object embedded from the first `{` at or after `from`, and
    /// where it starts.
    fn take_embedded(&mut self, from: usize, keep: bool) -> Option<(usize, Properties)> {
        let message = self.message;
        let start = from + message.get(from..)?.find('{')?;
        if self.embedded.as_ref().map(|(s, _)| *s) != Some(start) {
            self.embedded = Some((start, Properties::from_json_object(&message[start..])));
        }
        let slot = &mut self.embedded.as_mut()?.1;
        let object = if keep { slot.clone() } else { slot.take() };
        object.map(|o| (start, o))
    }
}

/// A value as text for a canonical string field: strings (not empty, not
/// `-`, which access logs write for "none"), numbers and booleans.
pub(crate) fn scalar_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() && s != "-" => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn present(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(s) => !s.is_empty() && s != "-",
        _ => true,
    }
}

/// A text value as a JSON number when it is one.
fn to_number(value: &Value) -> Option<Value> {
    let Value::String(s) = value else { return None };
    let s = s.trim();
    if let Ok(i) = s.parse::<i64>() {
        return Some(Value::Number(i.into()));
    }
    s.parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .map(Value::Number)
}

fn list(values: &Option<OneOrMany>) -> Vec<String> {
    values.as_ref().map(|v| v.to_vec()).unwrap_or_default()
}

impl Rule {
    /// Compiles one rule entry (`type` is json, regex or kv here; the
    /// framework types are expanded before). `index` names unnamed rules.
    pub(crate) fn compile(p: &RawParser, kind_name: &str, index: usize) -> Result<Rule, KeyError> {
        let compile_re = |key: &str, pattern: &str| {
            Regex::new(pattern).map_err(|e| err(key, format!("invalid regex: {e}")))
        };
        let kind = match kind_name {
            "json" => Kind::Json {
                pattern: p
                    .pattern
                    .as_deref()
                    .map(|s| compile_re("pattern", s))
                    .transpose()?,
                embedded: p.embedded.unwrap_or(false),
            },
            "regex" => {
                let mut patterns = Vec::new();
                if let Some(s) = &p.pattern {
                    patterns.push(compile_re("pattern", s)?);
                }
                for (i, s) in p.patterns.iter().flatten().enumerate() {
                    patterns.push(compile_re(&format!("patterns[{i}]"), s)?);
                }
                if patterns.is_empty() {
                    return Err(err(
                        "pattern",
                        "is required when type is regex (or give `patterns`)",
                    ));
                }
                Kind::Regex(patterns)
            }
            "kv" => {
                if p.pattern.is_some() || p.patterns.is_some() {
                    return Err(err(
                        "pattern",
                        "a kv rule has no pattern; use `when: {regex: ...}`",
                    ));
                }
                let separators = match p.separators.as_deref().unwrap_or("both") {
                    "=" => Separators {
                        equals: true,
                        colon: false,
                    },
                    ":" => Separators {
                        equals: false,
                        colon: true,
                    },
                    "both" => Separators {
                        equals: true,
                        colon: true,
                    },
                    other => {
                        return Err(err(
                            "separators",
                            format!("{other:?}: use \"=\", \":\" or both"),
                        ));
                    }
                };
                if p.min_pairs == Some(0) {
                    return Err(err(
                        "min_pairs",
                        "must be at least 1 (a line with no pair is not key=value text)",
                    ));
                }
                Kind::Kv {
                    separators,
                    min_pairs: p.min_pairs.unwrap_or(2),
                }
            }
            other => {
                return Err(err(
                    "type",
                    format!(
                        "unknown parser type {other:?}; expected json, regex, kv, langchain or llamaindex"
                    ),
                ));
            }
        };
        if !matches!(kind, Kind::Json { .. }) && p.embedded.is_some() {
            return Err(err("embedded", "only a json rule takes `embedded`"));
        }
        if !matches!(kind, Kind::Regex(_)) && p.patterns.is_some() {
            return Err(err("patterns", "only a regex rule takes `patterns`"));
        }

        let when = match &p.when {
            None => When::default(),
            Some(w) => When {
                prefix: list(&w.prefix),
                contains: list(&w.contains),
                needles: Vec::new(),
                regex: w
                    .regex
                    .as_deref()
                    .map(|s| compile_re("when.regex", s))
                    .transpose()?,
                regex_first: w.regex.as_deref().and_then(FirstBytes::of),
                json_fields: list(&w.json_field)
                    .iter()
                    .map(|f| Path::parse(f).map_err(|e| err("when.json_field", e)))
                    .collect::<Result<_, _>>()?,
            },
        };

        let target = |name: &str| match Canon::from_name(name) {
            Some(c) => Target::Canonical(c),
            None => Target::Property(name.to_string()),
        };
        let mut extract = Vec::new();
        for (name, candidates) in &p.fields {
            if name.trim().is_empty() {
                return Err(err("fields", "a field name must not be empty"));
            }
            let paths = candidates
                .to_vec()
                .iter()
                .map(|c| Path::parse(c).map_err(|e| err(&format!("fields.{name}"), e)))
                .collect::<Result<Vec<_>, _>>()?;
            extract.push((target(name), paths));
        }
        // Canonical fields not listed come from the property of that name
        // (regex captures, kv keys, JSON keys, field_mapping targets).
        for c in Canon::ALL {
            if !p.fields.contains_key(c.name()) {
                extract.push((
                    Target::Canonical(c),
                    vec![Path::parse(c.name()).map_err(|e| err("fields", e))?],
                ));
            }
        }
        // Canonical order, so a trace header's parent never overrides an
        // explicit parent_span_id.
        extract.sort_by_key(|(t, _)| match t {
            Target::Canonical(c) => Canon::ALL.iter().position(|x| x == c).unwrap_or(0),
            Target::Property(_) => Canon::ALL.len(),
        });

        let mut key_index: HashMap<String, Vec<(usize, usize)>, BuildHasherDefault<KeyHasher>> =
            HashMap::default();
        for (t, (_, paths)) in extract.iter().enumerate() {
            for (c, path) in paths.iter().enumerate() {
                key_index
                    .entry(path.raw().to_string())
                    .or_default()
                    .push((t, c));
                if path.first() != path.raw() {
                    key_index
                        .entry(path.first().to_string())
                        .or_default()
                        .push((t, c));
                }
            }
        }

        let field_mapping = p
            .field_mapping
            .iter()
            .map(|(from, to)| {
                Path::parse(from)
                    .map(|path| (path, to.clone()))
                    .map_err(|e| err(&format!("field_mapping.{from}"), e))
            })
            .collect::<Result<_, _>>()?;

        let event_type = p
            .event_type
            .as_deref()
            .map(|t| Template::parse(t).map_err(|e| err("event_type", e)))
            .transpose()?;

        let duration_unit_ms = match p.duration_unit.as_deref() {
            None => 1.0,
            Some(u) => normalize::unit_ms(u)
                .ok_or_else(|| err("duration_unit", format!("{u:?}: use ns, us, ms or s")))?,
        };

        Ok(Rule {
            name: p
                .name
                .clone()
                .unwrap_or_else(|| format!("{kind_name}#{index}"))
                .into(),
            priority: p.priority.unwrap_or(100),
            mode: match p.mode {
                Some(RawMode::Merge) => Mode::Merge,
                _ => Mode::First,
            },
            kind,
            when,
            extract,
            index: key_index,
            defaults: p
                .defaults
                .iter()
                .map(|(k, v)| (target(k), v.clone()))
                .collect(),
            field_mapping,
            numbers: p.numbers.clone(),
            event_type,
            level_numbers: match p.level_numbers {
                None | Some(RawLevelNumbers::Pino) => LevelNumbers::Pino,
                Some(RawLevelNumbers::Python) => LevelNumbers::Python,
                Some(RawLevelNumbers::Syslog) => LevelNumbers::Syslog,
            },
            duration_unit_ms,
        })
    }

    /// Adds a `when.regex`-like condition (a framework type's `pattern`).
    pub(crate) fn require(&mut self, regex: Regex) {
        self.when.regex_first = FirstBytes::of(regex.as_str());
        self.when.regex = Some(regex);
    }

    /// Applies a `type: langchain`-style entry's overrides.
    pub(crate) fn override_with(
        &mut self,
        field_mapping: &[(Path, String)],
        event_type: Option<&str>,
    ) {
        self.field_mapping.extend(field_mapping.iter().cloned());
        if let Some(t) = event_type {
            self.event_type = Some(Template::Fixed(t.to_string()));
        }
    }

    /// The compiled `field_mapping` of an entry, for [`Rule::override_with`].
    pub(crate) fn mapping_of(p: &RawParser) -> Result<Vec<(Path, String)>, KeyError> {
        p.field_mapping
            .iter()
            .map(|(from, to)| {
                Path::parse(from)
                    .map(|path| (path, to.clone()))
                    .map_err(|e| err(&format!("field_mapping.{from}"), e))
            })
            .collect()
    }

    fn when_holds(&self, input: &mut Input) -> bool {
        let w = &self.when;
        let message = input.message;
        if !w.prefix.is_empty() {
            let m = input.trimmed;
            // The first byte before the rest: most messages start with
            // none of the prefixes' first bytes.
            let first = m.as_bytes().first();
            if !w.prefix.iter().any(|p| {
                p.as_bytes().first().is_none_or(|b| Some(b) == first) && m.starts_with(p.as_str())
            }) {
                return false;
            }
        }
        if !w.needles.is_empty() && !w.needles.iter().any(|&id| input.contains(id)) {
            return false;
        }
        if let Some(re) = &w.regex
            && !(w.regex_first.as_ref().is_none_or(|f| f.admits(message)) && re.is_match(message))
        {
            return false;
        }
        if !w.json_fields.is_empty() {
            match input.json() {
                Some(obj) => {
                    if !w.json_fields.iter().all(|p| p.lookup_props(obj).is_some()) {
                        return false;
                    }
                }
                None => return false,
            }
        }
        true
    }

    /// Runs the rule. `None` when it does not match; a merge rule that finds
    /// nothing does not match either.
    #[inline]
    pub(crate) fn apply(&self, input: &mut Input) -> Option<Extract> {
        if !self.when_holds(input) {
            return None;
        }
        self.extract(input)
    }

    /// The rule on a message its `when` let through. Out of line: most
    /// rules stop at `when`, and this one's stack frame (the candidates
    /// array) would otherwise be set up for each of them.
    #[inline(never)]
    fn extract(&self, input: &mut Input) -> Option<Extract> {
        let keep = self.mode == Mode::Merge;
        let message = input.message;
        let (mut props, from_json, whole_message) = match &self.kind {
            Kind::Json { pattern, embedded } => {
                let captures = match pattern {
                    Some(re) => Some(re.captures(message)?),
                    None => None,
                };
                let (mut object, whole) = if *embedded {
                    // The object starts at the first `{` from where the
                    // pattern's match ends (the pattern may include the `{`).
                    let from = captures
                        .as_ref()
                        .and_then(|c| c.get(0))
                        .map_or(0, |m| m.end().saturating_sub(1));
                    let (start, object) = input.take_embedded(from, keep)?;
                    (object, message[..start].trim().is_empty())
                } else {
                    (input.take_json(keep)?, true)
                };
                if let (Some(caps), Some(re)) = (&captures, pattern) {
                    for name in re.capture_names().flatten() {
                        if let Some(m) = caps.name(name) {
                            object.insert_if_absent(name, || Value::String(m.as_str().to_string()));
                        }
                    }
                }
                (object, true, whole)
            }
            Kind::Regex(patterns) => {
                let (re, caps) = patterns
                    .iter()
                    .find_map(|re| re.captures(message).map(|c| (re, c)))?;
                let mut props = Map::new();
                for name in re.capture_names().flatten() {
                    if let Some(m) = caps.name(name) {
                        props.insert(name.to_string(), Value::String(m.as_str().to_string()));
                    }
                }
                (Properties::from(props), false, false)
            }
            Kind::Kv {
                separators,
                min_pairs,
            } => {
                let pairs = kv::pairs(message, *separators);
                if pairs.len() < *min_pairs {
                    return None;
                }
                let mut props = Map::new();
                for (k, v) in pairs {
                    props.entry(k).or_insert(Value::String(v));
                }
                (Properties::from(props), false, false)
            }
        };

        for (from, to) in &self.field_mapping {
            if let Some(v) = from.lookup_props(&props) {
                let v = v.into_owned();
                props.insert(to.clone(), v);
            }
        }

        let mut fields = Fields::default();
        let mut found = false;
        // The best (lowest-ranked) present candidate of every target: its
        // rank, the selected entry it is in, and whether it is that whole
        // entry (else a path inside it). On the stack for the usual number
        // of targets.
        let mut on_stack = [None; 32];
        let mut on_heap;
        let best: &mut [Option<(usize, usize, bool)>] = if self.extract.len() <= on_stack.len() {
            &mut on_stack[..self.extract.len()]
        } else {
            on_heap = vec![None; self.extract.len()];
            &mut on_heap
        };
        // Only the values a rule reads are built from the object's text.
        let mut selected = props.select(|key| self.index.get(key));
        for (entry, (key, value, hits)) in selected.iter().enumerate() {
            for &(t, c) in hits.iter() {
                if best[t].is_some_and(|(ranked, ..)| ranked <= c) {
                    continue;
                }
                if let Some(v) = self.extract[t].1[c].lookup_in_entry(key, value.as_ref())
                    && present(v)
                {
                    best[t] = Some((c, entry, std::ptr::eq(v, value.as_ref())));
                }
            }
        }
        let mut new_props = Vec::new();
        for (t, (target, candidates)) in self.extract.iter().enumerate() {
            let Some((c, entry, whole)) = best[t] else {
                continue;
            };
            // A whole entry no later target reads is moved, not copied.
            let last_use = whole
                && !best[t + 1..]
                    .iter()
                    .any(|b| b.is_some_and(|(_, e, _)| e == entry));
            let value = if last_use {
                Cow::Owned(
                    std::mem::replace(&mut selected[entry].1, Cow::Owned(Value::Null)).into_owned(),
                )
            } else {
                let (key, value, _) = &selected[entry];
                match candidates[c].lookup_in_entry(key, value.as_ref()) {
                    Some(v) => Cow::Borrowed(v),
                    None => continue,
                }
            };
            match target {
                Target::Canonical(canon) => found |= self.set(&mut fields, *canon, value),
                Target::Property(name) => {
                    if !props.contains_key(name) {
                        new_props.push((name.clone(), value.into_owned()));
                    }
                }
            }
        }
        // It borrows `props`, which changes next.
        drop(selected);
        for (name, value) in new_props {
            props.insert(name, value);
            found = true;
        }
        for (target, value) in &self.defaults {
            match target {
                Target::Canonical(c) => {
                    if get(&fields, *c) {
                        continue;
                    }
                    self.set(&mut fields, *c, Cow::Owned(Value::String(value.clone())));
                }
                Target::Property(name) => {
                    props.insert_if_absent(name, || Value::String(value.clone()));
                }
            }
        }
        for name in &self.numbers {
            if let Some(n) = props.get(name).and_then(|v| to_number(&v)) {
                props.insert(name.clone(), n);
            }
        }
        if let Some(t) = &self.event_type {
            let rendered = t.render(&props);
            if !rendered.is_empty() {
                fields.event_type = Some(rendered);
            }
        }
        // A merge rule on a JSON object that extracted nothing adds nothing
        // (it would only repeat the object).
        if self.mode == Mode::Merge && from_json && !found && fields == Fields::default() {
            return None;
        }
        Some(Extract {
            props,
            fields,
            whole_message,
        })
    }

    /// Sets a canonical field from a value; false if the value does not fit.
    /// An owned text value becomes the field as it is.
    fn set(&self, f: &mut Fields, c: Canon, value: Cow<'_, Value>) -> bool {
        let text = |value: Cow<'_, Value>| -> Option<String> {
            match value {
                v if c == Canon::Message && (v.is_object() || v.is_array()) => {
                    serde_json::to_string(v.as_ref()).ok()
                }
                Cow::Owned(Value::String(s)) if !s.is_empty() && s != "-" => Some(s),
                v => scalar_string(v.as_ref()),
            }
        };
        match c {
            Canon::TraceId => {
                let Some(t) = text(value) else { return false };
                let (trace, parent) = normalize::trace_id(t);
                if all_zero(&trace) {
                    return false;
                }
                f.trace_id = Some(trace);
                if f.parent_span_id.is_none() {
                    f.parent_span_id = parent.filter(|p| !all_zero(p));
                }
            }
            Canon::SpanId | Canon::ParentSpanId => {
                let Some(t) = text(value).filter(|t| !all_zero(t)) else {
                    return false;
                };
                *slot(f, c) = Some(t);
            }
            Canon::Level => match normalize::level(&value, self.level_numbers) {
                Some(l) => f.level = Some(l),
                None => return false,
            },
            Canon::DurationMs => match normalize::duration_ms(&value, self.duration_unit_ms) {
                Some(d) => f.duration_ms = Some(d),
                None => return false,
            },
            other => {
                let Some(t) = text(value) else { return false };
                *slot(f, other) = Some(t);
            }
        }
        true
    }
}

/// OpenTelemetry writes all-zero ids when there is no active span.
fn all_zero(id: &str) -> bool {
    id.bytes().all(|b| b == b'0')
}

/// Whether a canonical field is set.
fn get(f: &Fields, c: Canon) -> bool {
    match c {
        Canon::DurationMs => f.duration_ms.is_some(),
        Canon::TraceId => f.trace_id.is_some(),
        Canon::ParentSpanId => f.parent_span_id.is_some(),
        Canon::RequestId => f.request_id.is_some(),
        Canon::SpanId => f.span_id.is_some(),
        Canon::SessionId => f.session_id.is_some(),
        Canon::AgentId => f.agent_id.is_some(),
        Canon::Service => f.service.is_some(),
        Canon::Level => f.level.is_some(),
        Canon::Message => f.message.is_some(),
        Canon::EventType => f.event_type.is_some(),
        Canon::Error => f.error.is_some(),
    }
}

/// The string slot of a canonical field (not duration_ms).
fn slot(f: &mut Fields, c: Canon) -> &mut Option<String> {
    match c {
        Canon::TraceId => &mut f.trace_id,
        Canon::ParentSpanId => &mut f.parent_span_id,
        Canon::RequestId => &mut f.request_id,
        Canon::SpanId => &mut f.span_id,
        Canon::SessionId => &mut f.session_id,
        Canon::AgentId => &mut f.agent_id,
        Canon::Service => &mut f.service,
        Canon::Level => &mut f.level,
        // duration_ms is a number and never reaches here (see `set`).
        Canon::Message | Canon::DurationMs => &mut f.message,
        Canon::EventType => &mut f.event_type,
        Canon::Error => &mut f.error,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::hash::BuildHasher;

    use super::*;

    #[test]
    fn short_keys_do_not_collide_in_the_key_index_hash() {
        // Every key of up to 10 bytes over three letters: each tail case
        // (1-3, 4-7 and 8+ bytes) and keys of different lengths that read
        // alike ("aaaa", "aaaaa") get hashes of their own.
        let hasher = BuildHasherDefault::<KeyHasher>::default();
        let mut keys = vec![String::new()];
        let mut hashes = HashSet::new();
        let mut all = 0;
        for _ in 0..10 {
            keys = keys
                .iter()
                .flat_map(|k| ["a", "b", "\u{0}"].map(|c| format!("{k}{c}")))
                .collect();
            for k in &keys {
                assert!(hashes.insert(hasher.hash_one(k.as_str())), "{k:?}");
                all += 1;
            }
        }
        assert_eq!(hashes.len(), all);
    }
}
