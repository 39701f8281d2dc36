//! `${VAR}` expansion, on the text before it is parsed, so that every value
//! can come from the environment, numbers and booleans included
//! (`poll_interval_secs: ${POLL:-10}` is a number once expanded):
//!
//! - `${VAR}`: the variable; unset or empty is an error naming the line;
//! - `${VAR:-default}`: the default when unset or empty;
//! - `${VAR:?message}`: fails with `message` when unset or empty;
//! - `$$` is a literal `$`; a `$` not followed by `{` stays as it is.
//!
//! Comments are left alone (a `${...}` in a comment is not expanded). A value
//! is put in as it is: quote the placeholder (`api_key: "${KEY}"`) when the
//! value may hold YAML syntax (`: `, ` #`, a leading `*` or `&`).

/// Why a `${...}` could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpandError {
    /// 1-based line.
    pub line: usize,
    /// The key the value belongs to, as far as the text shows it
    /// (`vectadb.api_key`).
    pub key: String,
    pub message: String,
}

/// Expands `text`.
pub fn expand_text(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ExpandError> {
    let mut out = String::with_capacity(text.len());
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let (code, comment) = split_comment(line);
        if code.contains('$') {
            let expanded = expand_str(code, lookup).map_err(|message| ExpandError {
                line: n + 1,
                key: key_at(text, n, code.find("${").unwrap_or(0)),
                message,
            })?;
            out.push_str(&expanded);
        } else {
            out.push_str(code);
        }
        out.push_str(comment);
    }
    Ok(out)
}

/// The dotted key of the value at `column` of line `n` (0-based): the keys
/// of the less indented lines above it, the line's own key, and a key
/// written before the value inside a flow mapping (`{a: 1, key: ${X}}`).
/// List items show as `[]`. Best effort, for messages.
fn key_at(text: &str, n: usize, column: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let Some(line) = lines.get(n) else {
        return String::new();
    };
    let key_of = |l: &str| -> Option<(usize, String)> {
        let indent = l.len() - l.trim_start().len();
        let body = l.trim_start();
        let (item, body) = match body.strip_prefix("- ") {
            Some(rest) => (true, rest.trim_start()),
            None => (false, body),
        };
        let key = body.split_once(':').map(|(k, _)| k.trim().to_string())?;
        let key = if key.is_empty() || key.contains(' ') || key.contains('{') {
            String::new()
        } else {
            key
        };
        let key = match (item, key.is_empty()) {
            (true, true) => "[]".to_string(),
            (true, false) => format!("[].{key}"),
            (false, _) => key,
        };
        Some((indent, key))
    };
    let mut parts: Vec<String> = Vec::new();
    let (mut indent, own) = key_of(line).unwrap_or((0, String::new()));
    // Inside flow mappings (`{a: 1, b: {key: ${X}}}`): the keys of the
    // mappings the value is in, and the last `key:` before it.
    let before = line.get(..column.min(line.len())).unwrap_or(line);
    let key_in = |s: &str| {
        s.split_once(':')
            .map(|(k, _)| k.trim().to_string())
            .filter(|k| !k.is_empty() && !k.contains(' '))
    };
    if let Some(start) = before.find('{') {
        let mut open: Vec<Option<String>> = Vec::new();
        let mut current = String::new();
        for c in before[start + 1..].chars() {
            match c {
                '{' => open.push(key_in(&std::mem::take(&mut current))),
                '}' => {
                    open.pop();
                    current.clear();
                }
                ',' => current.clear(),
                c => current.push(c),
            }
        }
        open.push(key_in(&current));
        parts.extend(open.into_iter().flatten().rev());
    }
    if !own.is_empty() {
        parts.push(own);
    }
    for above in lines[..n].iter().rev() {
        if above.trim().is_empty() || above.trim_start().starts_with('#') {
            continue;
        }
        if let Some((i, key)) = key_of(above)
            && i < indent
        {
            if !key.is_empty() {
                parts.push(key);
            }
            indent = i;
            if i == 0 {
                break;
            }
        }
    }
    parts.reverse();
    parts.join(".").replace(".[]", "[]")
}

/// Splits a line at the `#` that starts its comment (at the start of the
/// line or after white space, outside quotes).
fn split_comment(line: &str) -> (&str, &str) {
    let mut quote: Option<char> = None;
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == '#' && prev.is_whitespace() => return line.split_at(i),
            None => {}
        }
        prev = c;
    }
    (line, "")
}

fn expand_str(s: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| format!("unclosed ${{ in {:?}", s.trim()))?;
            out.push_str(&substitute(&body[..end], lookup)?);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The value of one `${...}` body: `NAME`, `NAME:-default` or `NAME:?message`.
fn substitute(inner: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let (name, default, required) = if let Some((n, d)) = inner.split_once(":-") {
        (n, Some(d), None)
    } else if let Some((n, m)) = inner.split_once(":?") {
        (n, None, Some(m))
    } else {
        (inner, None, None)
    };
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("invalid variable name {name:?} in ${{...}}"));
    }
    let value = match lookup(name).filter(|v| !v.is_empty()) {
        Some(v) => v,
        None => match (default, required) {
            (Some(d), _) => d.to_string(),
            (None, Some(message)) if !message.trim().is_empty() => {
                return Err(format!("{name}: {}", message.trim()));
            }
            _ => {
                return Err(format!(
                    "environment variable {name} is not set or is empty (write ${{{name}:-default}} for a default)"
                ));
            }
        },
    };
    if value.contains('\n') || value.contains('\r') {
        return Err(format!(
            "environment variable {name} holds a line break; config values are single lines"
        ));
    }
    if let Some(c) = value.chars().find(|c| c.is_control() && *c != '\t') {
        return Err(format!(
            "environment variable {name} holds a control character (U+{:04X}); config values are printable text",
            c as u32
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "KEY" => Some("s3cret".into()),
            "EMPTY" => Some(String::new()),
            "PORT" => Some("8080".into()),
            "ON" => Some("false".into()),
            "MULTI" => Some("a\nb".into()),
            "CTRL" => Some("Vecta\u{1}Secret".into()),
            _ => None,
        }
    }

    #[test]
    fn variables_defaults_and_escapes_expand() {
        assert_eq!(expand_str("Bearer ${KEY}", &env).unwrap(), "Bearer s3cret");
        assert_eq!(expand_str("${NOPE:-fallback}", &env).unwrap(), "fallback");
        assert_eq!(expand_str("${EMPTY:-x}", &env).unwrap(), "x");
        assert_eq!(
            expand_str("cost $$5 and $HOME", &env).unwrap(),
            "cost $5 and $HOME"
        );
    }

    #[test]
    fn unset_variable_names_the_line_the_key_and_the_variable() {
        let e = expand_text("a: 1\nvectadb:\n  api_key: ${NOPE}\n", &env).unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (3, "vectadb.api_key"));
        assert!(e.message.contains("NOPE"), "{}", e.message);
        let e = expand_text("vectadb: {endpoint: x, api_key: '${NOPE}'}\n", &env).unwrap_err();
        assert_eq!(e.key, "vectadb.api_key");
        let e = expand_text("log_groups:\n  - name: ${NOPE}\n", &env).unwrap_err();
        assert_eq!(e.key, "log_groups[].name");
        // Flow mappings inside flow mappings.
        let e = expand_text(
            "otlp: {endpoint: x, headers: {a: b, x-key: \"${NOPE}\"}}\n",
            &env,
        )
        .unwrap_err();
        assert_eq!(e.key, "otlp.headers.x-key");
        let e = expand_text("otlp: {headers: {a: b}, compression: ${NOPE}}\n", &env).unwrap_err();
        assert_eq!(e.key, "otlp.compression");
        let e = expand_text(
            "log_groups:\n  - {name: a, fields: {trace_id: ${NOPE}}}\n",
            &env,
        )
        .unwrap_err();
        assert_eq!(e.key, "log_groups[].fields.trace_id");
    }

    #[test]
    fn required_variables_fail_with_their_own_message() {
        let e = expand_text("k: ${NOPE:?set NOPE to the VectaDB key}\n", &env).unwrap_err();
        assert_eq!(e.line, 1);
        assert_eq!(e.message, "NOPE: set NOPE to the VectaDB key");
        assert_eq!(expand_text("k: ${KEY:?x}\n", &env).unwrap(), "k: s3cret\n");
    }

    #[test]
    fn numbers_and_booleans_are_typed_after_expansion() {
        #[derive(serde::Deserialize)]
        struct T {
            port: u16,
            on: bool,
        }
        let text = expand_text("port: ${PORT}\non: ${ON}\n", &env).unwrap();
        let t: T = serde_yaml::from_str(&text).unwrap();
        assert_eq!((t.port, t.on), (8080, false));
    }

    #[test]
    fn comments_are_not_expanded_and_line_breaks_are_refused() {
        let text = "# set ${NOPE} first\nk: v # ${NOPE}\nq: 'a # ${KEY}'\n";
        assert_eq!(
            expand_text(text, &env).unwrap(),
            "# set ${NOPE} first\nk: v # ${NOPE}\nq: 'a # s3cret'\n"
        );
        assert!(
            expand_text("k: ${MULTI}\n", &env)
                .unwrap_err()
                .message
                .contains("line break")
        );
        let e = expand_text("vectadb:\n  api_key: \"${CTRL}\"\n", &env).unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (2, "vectadb.api_key"));
        assert!(
            e.message.contains("control character (U+0001)"),
            "{}",
            e.message
        );
        assert!(!e.message.contains("Secret"), "{}", e.message);
    }
}
