//! Errors as cwtap reports them: an error with every cause behind it.

/// An error and its sources, `: `-separated (TLS causes sit deep in the chain).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// A serde (YAML or JSON) error message in the words of the file it is
/// about: the Rust type names serde uses (`expected usize`, `expected
/// struct RawAgent`, `untagged enum OneOrMany`) become what the file should
/// hold, and a string value that was not accepted is not repeated (it may be
/// a secret put in by `${VAR}`).
pub fn plain(message: &str) -> String {
    use std::sync::LazyLock;

    use regex::{Captures, Regex};

    static GOT_STRING: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r#"(invalid (?:type|value): )string "(?:[^"\\]|\\.)*""#).unwrap()
    });
    static GOT_NUMBER: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(invalid (?:type|value): )(?:integer|floating point) `?([-+0-9.eE]+)`?(?: as [iu]128)?").unwrap()
    });
    static GOT_BOOL: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(invalid (?:type|value): )boolean `?(true|false)`?").unwrap()
    });
    static EXPECTED: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"expected (?:(usize|u64|u128)|(u32)|(u16)|(u8)|(i64|i32|i128|isize)|(f64|f32)|struct \w+)\b").unwrap()
    });
    static UNTAGGED: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"data did not match any variant of untagged enum (\w+)").unwrap()
    });

    let m = GOT_STRING.replace_all(message, "${1}a string");
    let m = GOT_NUMBER.replace_all(&m, "${1}the number $2");
    let m = GOT_BOOL.replace_all(&m, "${1}$2");
    let m = EXPECTED.replace_all(&m, |c: &Captures| {
        let what = if c.get(1).is_some() {
            "a whole number (0 or more)"
        } else if c.get(2).is_some() {
            "a whole number from 0 to 4294967295"
        } else if c.get(3).is_some() {
            "a whole number from 0 to 65535"
        } else if c.get(4).is_some() {
            "a whole number from 0 to 255"
        } else if c.get(5).is_some() {
            "a whole number"
        } else if c.get(6).is_some() {
            "a number"
        } else {
            "a mapping (`key: value` entries)"
        };
        format!("expected {what}")
    });
    let m = UNTAGGED.replace_all(&m, |c: &Captures| {
        match &c[1] {
            "OneOrMany" => "expected a string or a list of strings",
            "RawRedactFields" => "expected true, false or a list of field names",
            _ => "not one of the forms this key takes (see docs/configuration.md)",
        }
        .to_string()
    });
    m.into_owned()
}

#[cfg(test)]
mod tests {
    use super::plain;

    #[test]
    fn serde_messages_name_what_the_file_should_hold() {
        let cases = [
            (
                r#"ndjson.batch_size: invalid type: string "lots", expected usize at line 3 column 15"#,
                "ndjson.batch_size: invalid type: a string, expected a whole number (0 or more) at line 3 column 15",
            ),
            (
                "invalid value: integer `-1`, expected usize at line 2 column 3",
                "invalid value: the number -1, expected a whole number (0 or more) at line 2 column 3",
            ),
            (
                "invalid type: floating point `1.5`, expected usize",
                "invalid type: the number 1.5, expected a whole number (0 or more)",
            ),
            (
                "invalid value: integer `100000000000000000000000` as u128, expected usize",
                "invalid value: the number 100000000000000000000000, expected a whole number (0 or more)",
            ),
            (
                "agent: invalid type: integer 5, expected struct RawAgent at line 1 column 8",
                "agent: invalid type: the number 5, expected a mapping (`key: value` entries) at line 1 column 8",
            ),
            (
                "log_groups[0].fields.trace_id: data did not match any variant of untagged enum OneOrMany at line 4",
                "log_groups[0].fields.trace_id: expected a string or a list of strings at line 4",
            ),
            (
                "redact.fields: data did not match any variant of untagged enum RawRedactFields",
                "redact.fields: expected true, false or a list of field names",
            ),
            (
                r#"[0].priority: invalid type: string "high", expected i64 at line 2 column 13"#,
                "[0].priority: invalid type: a string, expected a whole number at line 2 column 13",
            ),
            (
                "invalid type: boolean `true`, expected f64",
                "invalid type: true, expected a number",
            ),
            (
                "expected ident at line 1 column 2",
                "expected ident at line 1 column 2",
            ),
        ];
        for (serde, want) in cases {
            assert_eq!(plain(serde), want, "{serde}");
        }
    }

    #[test]
    fn a_string_value_that_was_refused_is_not_repeated() {
        let m = plain(r#"batch_size: invalid type: string "hunter5 \"x\"", expected usize"#);
        assert!(!m.contains("hunter5"), "{m}");
    }
}
