//! `key=value` and `key: value` pairs in a text line (logfmt and kin).

/// Which separators make a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Separators {
    /// `key=value` (logfmt).
    pub equals: bool,
    /// `key: value` (a space after the colon is required, so `http://x` and
    /// `10:00:00` are not pairs).
    pub colon: bool,
}

fn key_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b'@'
}

fn key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'@' | b'/')
}

/// The pairs of `line`, in order. Values may be quoted with `"` (backslash
/// escapes) or `'`; bare values end at white space, and a trailing `,` or `;`
/// is dropped. Words that are not pairs are skipped.
pub(crate) fn pairs(line: &str, sep: Separators) -> Vec<(&str, String)> {
    let b = line.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        // Find the start of a key: a key-start byte preceded by nothing or a
        // separator-ish byte.
        if !key_start(b[i])
            || (i > 0 && !matches!(b[i - 1], b' ' | b'\t' | b',' | b';' | b'(' | b'[' | b'{'))
        {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && key_byte(b[i]) {
            i += 1;
        }
        let key = &line[start..i];
        let value_start = if sep.equals && i < b.len() && b[i] == b'=' {
            i + 1
        } else if sep.colon && i + 1 < b.len() && b[i] == b':' && matches!(b[i + 1], b' ' | b'\t') {
            let mut j = i + 1;
            while j < b.len() && matches!(b[j], b' ' | b'\t') {
                j += 1;
            }
            j
        } else {
            // Not a pair: skip this word.
            while i < b.len() && !matches!(b[i], b' ' | b'\t') {
                i += 1;
            }
            continue;
        };
        let (value, next) = read_value(line, value_start);
        out.push((key, value));
        i = next;
    }
    out
}

/// The value starting at `at` and the index after it.
fn read_value(line: &str, at: usize) -> (String, usize) {
    let b = line.as_bytes();
    match b.get(at) {
        Some(&q @ (b'"' | b'\'')) => {
            let mut value = String::new();
            let mut j = at + 1;
            let mut run = j;
            while j < b.len() {
                if b[j] == b'\\' && q == b'"' && j + 1 < b.len() {
                    value.push_str(&line[run..j]);
                    // Keep the escaped byte (a quote, a backslash, ...).
                    let next = line[j + 1..].chars().next().map_or(1, char::len_utf8);
                    value.push_str(&line[j + 1..j + 1 + next]);
                    j += 1 + next;
                    run = j;
                } else if b[j] == q {
                    value.push_str(&line[run..j]);
                    return (value, j + 1);
                } else {
                    j += 1;
                }
            }
            // Unclosed quote: the rest of the line.
            value.push_str(&line[run..]);
            (value, b.len())
        }
        _ => {
            let mut j = at;
            while j < b.len() && !matches!(b[j], b' ' | b'\t') {
                j += 1;
            }
            let value = line[at..j].trim_end_matches([',', ';']);
            (value.to_string(), j)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: Separators = Separators {
        equals: true,
        colon: true,
    };

    #[test]
    fn logfmt_pairs_with_quotes_and_escapes() {
        let p = pairs(
            r#"time=2024-01-15T10:00:00Z level=info msg="user \"bob\" logged in" dur=12ms empty= ok"#,
            BOTH,
        );
        assert_eq!(
            p,
            vec![
                ("time", "2024-01-15T10:00:00Z".to_string()),
                ("level", "info".to_string()),
                ("msg", r#"user "bob" logged in"#.to_string()),
                ("dur", "12ms".to_string()),
                ("empty", String::new()),
            ]
        );
    }

    #[test]
    fn colon_pairs_need_a_space_and_urls_times_are_not_pairs() {
        let p = pairs(
            "at 10:00:00 fetched http://x/y status: 200, user: 'a b'",
            BOTH,
        );
        assert_eq!(
            p,
            vec![("status", "200".to_string()), ("user", "a b".to_string())]
        );
        let eq_only = Separators {
            equals: true,
            colon: false,
        };
        assert!(pairs("status: 200", eq_only).is_empty());
    }

    #[test]
    fn unclosed_quotes_take_the_rest_of_the_line() {
        assert_eq!(
            pairs(r#"a=1 msg="no end"#, BOTH),
            vec![("a", "1".to_string()), ("msg", "no end".to_string())]
        );
    }
}
