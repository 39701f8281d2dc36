//! PII redaction, off unless configured: e-mail addresses, card numbers
//! (Luhn checked), US social security numbers, phone numbers, and the values
//! of named fields (`password`, `token`, ...) in JSON and in `key=value` /
//! `key: value` text. A value is replaced with `[REDACTED:<kind>]`.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::{Captures, Regex};
use serde_json::{Map, Value};

use super::Fields;

/// Field names redacted when `fields: true`.
pub const DEFAULT_FIELD_NAMES: &[&str] =
    &["password", "secret", "token", "api_key", "authorization"];

/// Which kinds of PII to replace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedactConfig {
    pub emails: bool,
    /// 13 to 19 digits (spaces or dashes allowed between them) that pass the
    /// Luhn check and start like a card number (2-6).
    pub card_numbers: bool,
    /// `AAA-GG-SSSS` with a valid area, group and serial.
    pub us_ssn: bool,
    /// North American numbers with separators (`(555) 123-4567`,
    /// `555-123-4567`, `+1 555 123 4567`) and E.164 (`+4915112345678`).
    pub phone_numbers: bool,
    /// A field whose name ends with one of these (case, `_` and `-` ignored:
    /// `api_key` covers `apiKey`, `X-Api-Key`, `stripe_api_key`) has its value
    /// replaced.
    pub fields: Vec<String>,
}

impl RedactConfig {
    /// Whether anything is redacted at all.
    pub fn is_active(&self) -> bool {
        self.emails
            || self.card_numbers
            || self.us_ssn
            || self.phone_numbers
            || !self.fields.is_empty()
    }
}

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
        .expect("static pattern compiles")
});
static CARD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b[2-6]\d(?:[ \-]?\d){11,17}\b").expect("static pattern compiles")
});
static SSN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b(\d{3})-(\d{2})-(\d{4})\b").expect("static pattern compiles"));
static PHONE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?:\+\d{1,3}[ .\-]?)?(?:\(\d{3}\)[ .\-]?|\b\d{3}[ .\-])\d{3}[ .\-]\d{4}\b|\+\d{8,15}\b",
    )
    .expect("static pattern compiles")
});

/// Replaces PII in messages, properties and fields. Built once per rule set.
#[derive(Debug, Clone)]
pub struct Redactor {
    config: RedactConfig,
    /// Normalised field names (lower case, no `_` or `-`).
    names: Vec<String>,
    /// `name = value` / `"name": "value"` in text.
    field_text: Option<Regex>,
    /// Just the names: a cheap test before `field_text` runs.
    field_names: Option<Regex>,
}

/// Lower case without `_`, `-` and `.`, for comparing field names.
fn normalise(name: &str) -> String {
    name.chars()
        .filter(|c| !matches!(c, '_' | '-' | '.'))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Whether `key`, normalised like [`normalise`], ends with `name` (already
/// normalised), without allocating.
fn ends_with_normalised(key: &str, name: &str) -> bool {
    let mut key_chars = key
        .chars()
        .rev()
        .filter(|c| !matches!(c, '_' | '-' | '.'))
        .flat_map(char::to_lowercase);
    name.chars().rev().all(|n| key_chars.next() == Some(n))
}

impl Redactor {
    /// A redactor for `config`; `None` when it redacts nothing.
    pub fn new(config: RedactConfig) -> Result<Option<Redactor>, String> {
        if !config.is_active() {
            return Ok(None);
        }
        let mut names = Vec::new();
        let mut alternatives = Vec::new();
        for name in &config.fields {
            let n = normalise(name);
            if n.is_empty() || !n.chars().all(|c| c.is_alphanumeric()) {
                return Err(format!(
                    "{name:?} is not a field name (letters, digits, _ and - only)"
                ));
            }
            // `api_key` in text also matches `api-key` and `apikey`.
            let parts: Vec<String> = name
                .split(['_', '-', '.'])
                .filter(|p| !p.is_empty())
                .map(regex::escape)
                .collect();
            alternatives.push(parts.join("[_.-]?"));
            names.push(n);
        }
        let field_names = if alternatives.is_empty() {
            None
        } else {
            let pattern = format!("(?i){}", alternatives.join("|"));
            Some(Regex::new(&pattern).map_err(|e| e.to_string())?)
        };
        let field_text = if alternatives.is_empty() {
            None
        } else {
            let pattern = format!(
                r#"(?i)(?P<head>\b[A-Za-z0-9_.\-]*(?:{})["']?\s*[:=]\s*)(?P<value>"(?:[^"\\]|\\.)*"|'[^']*'|(?:Bearer|Basic|Token|Digest)\s+[^\s,;"'&]+|[^\s,;&"'}}\]]+)"#,
                alternatives.join("|")
            );
            Some(Regex::new(&pattern).map_err(|e| e.to_string())?)
        };
        Ok(Some(Redactor {
            config,
            names,
            field_text,
            field_names,
        }))
    }

    fn is_secret_name(&self, key: &str) -> bool {
        self.names.iter().any(|n| ends_with_normalised(key, n))
    }

    /// `text` with every configured kind replaced; borrowed when unchanged.
    pub fn redact_str<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        if let (Some(re), Some(names)) = (&self.field_text, &self.field_names)
            && names.is_match(&out)
        {
            out = apply(out, re, |c: &Captures| {
                let replaced = match c["value"].as_bytes().first() {
                    Some(b'"') => "\"[REDACTED:field]\"",
                    Some(b'\'') => "'[REDACTED:field]'",
                    _ => "[REDACTED:field]",
                };
                format!("{}{replaced}", &c["head"])
            });
        }
        if self.config.emails && out.contains('@') {
            out = apply(out, &EMAIL, "[REDACTED:email]");
        }
        let digits = out.bytes().filter(u8::is_ascii_digit).count();
        if self.config.card_numbers && digits >= 13 {
            out = apply(out, &CARD, |c: &Captures| {
                if luhn_valid(&c[0]) {
                    "[REDACTED:card_number]".to_string()
                } else {
                    c[0].to_string()
                }
            });
        }
        if self.config.us_ssn && digits >= 9 {
            out = apply(out, &SSN, |c: &Captures| {
                if ssn_valid(&c[1], &c[2], &c[3]) {
                    "[REDACTED:us_ssn]".to_string()
                } else {
                    c[0].to_string()
                }
            });
        }
        if self.config.phone_numbers && digits >= 8 {
            out = apply(out, &PHONE, "[REDACTED:phone_number]");
        }
        out
    }

    fn redact_string(&self, s: &mut String) {
        if let Cow::Owned(r) = self.redact_str(s) {
            *s = r;
        }
    }

    /// Redacts a value in place: strings by content, and under a secret
    /// field name the whole value.
    pub fn redact_value(&self, value: &mut Value) {
        match value {
            Value::String(s) => self.redact_string(s),
            Value::Array(items) => items.iter_mut().for_each(|v| self.redact_value(v)),
            Value::Object(map) => self.redact_map(map),
            _ => {}
        }
    }

    /// Redacts every value of a JSON object, recursively.
    pub fn redact_map(&self, map: &mut Map<String, Value>) {
        for (key, value) in map.iter_mut() {
            if !value.is_null() && !value.is_boolean() && self.is_secret_name(key) {
                *value = Value::String("[REDACTED:field]".into());
            } else {
                self.redact_value(value);
            }
        }
    }

    /// Redacts the canonical fields.
    pub fn redact_fields(&self, f: &mut Fields) {
        for s in [
            &mut f.trace_id,
            &mut f.request_id,
            &mut f.span_id,
            &mut f.parent_span_id,
            &mut f.session_id,
            &mut f.agent_id,
            &mut f.service,
            &mut f.level,
            &mut f.message,
            &mut f.event_type,
            &mut f.error,
        ]
        .into_iter()
        .flatten()
        {
            self.redact_string(s);
        }
    }
}

/// `text` with `re` replaced, still borrowed when nothing matched.
fn apply<'a>(text: Cow<'a, str>, re: &Regex, rep: impl regex::Replacer) -> Cow<'a, str> {
    let replaced = match re.replace_all(&text, rep) {
        Cow::Owned(s) => Some(s),
        Cow::Borrowed(_) => None,
    };
    match replaced {
        Some(s) => Cow::Owned(s),
        None => text,
    }
}

/// The Luhn check over the digits of `text` (13 to 19 of them).
pub(crate) fn luhn_valid(text: &str) -> bool {
    let digits: Vec<u32> = text.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| match (i % 2 == 1, d * 2) {
            (true, d2) if d2 > 9 => d2 - 9,
            (true, d2) => d2,
            (false, _) => d,
        })
        .sum();
    sum.is_multiple_of(10)
}

/// SSA rules: area not 000, 666 or 9xx; group not 00; serial not 0000.
fn ssn_valid(area: &str, group: &str, serial: &str) -> bool {
    area != "000" && area != "666" && !area.starts_with('9') && group != "00" && serial != "0000"
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn redactor(f: impl FnOnce(&mut RedactConfig)) -> Redactor {
        let mut c = RedactConfig::default();
        f(&mut c);
        Redactor::new(c).unwrap().unwrap()
    }

    #[test]
    fn nothing_configured_is_no_redactor() {
        assert!(Redactor::new(RedactConfig::default()).unwrap().is_none());
    }

    #[test]
    fn emails_are_replaced() {
        let r = redactor(|c| c.emails = true);
        assert_eq!(
            r.redact_str("mail jane.doe+shop@example.co.uk now"),
            "mail [REDACTED:email] now"
        );
        assert_eq!(
            r.redact_str("user@localhost has no tld"),
            "user@localhost has no tld"
        );
    }

    #[test]
    fn only_luhn_valid_card_numbers_are_replaced() {
        let r = redactor(|c| c.card_numbers = true);
        assert_eq!(
            r.redact_str("paid with 4111 1111 1111 1111."),
            "paid with [REDACTED:card_number]."
        );
        assert_eq!(
            r.redact_str("card=5500-0000-0000-0004"),
            "card=[REDACTED:card_number]"
        );
        assert_eq!(
            r.redact_str("amex 378282246310005"),
            "amex [REDACTED:card_number]"
        );
        // Luhn fails: one digit off.
        assert_eq!(r.redact_str("4111 1111 1111 1112"), "4111 1111 1111 1112");
        // Too short, and epoch milliseconds (start with 1) are no cards.
        assert_eq!(r.redact_str("order 411111111111"), "order 411111111111");
        assert_eq!(r.redact_str("ts=1795161600691"), "ts=1795161600691");
        assert!(luhn_valid("4242424242424242"));
        assert!(!luhn_valid("4242424242424241"));
    }

    #[test]
    fn valid_us_ssns_are_replaced_and_impossible_ones_kept() {
        let r = redactor(|c| c.us_ssn = true);
        assert_eq!(r.redact_str("ssn 123-45-6789"), "ssn [REDACTED:us_ssn]");
        for kept in [
            "000-12-3456",
            "666-12-3456",
            "912-34-5678",
            "123-00-4567",
            "123-45-0000",
        ] {
            assert_eq!(r.redact_str(kept), kept);
        }
    }

    #[test]
    fn phone_numbers_with_separators_or_country_code_are_replaced() {
        let r = redactor(|c| c.phone_numbers = true);
        for (text, want) in [
            ("call (555) 123-4567", "call [REDACTED:phone_number]"),
            ("call 555-123-4567.", "call [REDACTED:phone_number]."),
            ("tel +1 555 123 4567", "tel [REDACTED:phone_number]"),
            ("tel +4915112345678", "tel [REDACTED:phone_number]"),
        ] {
            assert_eq!(r.redact_str(text), want);
        }
        // Ids, dates and plain numbers stay.
        for kept in [
            "5e5c4176-5df6-4817-b099-2bcf60ec6db2",
            "2026-11-20T08:00:01.001Z",
            "took 5551234567 ns",
        ] {
            assert_eq!(r.redact_str(kept), kept);
        }
    }

    #[test]
    fn named_fields_are_replaced_in_json_and_text() {
        let r =
            redactor(|c| c.fields = DEFAULT_FIELD_NAMES.iter().map(|s| s.to_string()).collect());
        let mut v = json!({
            "user": "bob",
            "password": "hunter2",
            "headers": {"Authorization": "Bearer abc.def", "X-Api-Key": "k-1"},
            "access_token": 12345,
            "total_tokens": 812,
            "auth": {"client_secret": "s3"},
            "note": "login password=hunter2 token: abc123 ok",
        });
        r.redact_value(&mut v);
        assert_eq!(v["user"], "bob");
        assert_eq!(v["password"], "[REDACTED:field]");
        assert_eq!(v["headers"]["Authorization"], "[REDACTED:field]");
        assert_eq!(v["headers"]["X-Api-Key"], "[REDACTED:field]");
        assert_eq!(v["access_token"], "[REDACTED:field]");
        assert_eq!(v["total_tokens"], 812);
        assert_eq!(v["auth"]["client_secret"], "[REDACTED:field]");
        assert_eq!(
            v["note"],
            "login password=[REDACTED:field] token: [REDACTED:field] ok"
        );
        assert_eq!(
            r.redact_str(r#"{"apiKey":"sk-live-1","n":1} Authorization: Bearer eyJh.x y"#),
            r#"{"apiKey":"[REDACTED:field]","n":1} Authorization: [REDACTED:field] y"#
        );
    }
}
