//! `${VAR}` expansion in string values, so that secrets such as
//! `vectadb.api_key` can come from the environment. `${VAR:-default}` gives a
//! default, `$$` is a literal `$`. An unset variable without a default is an
//! error naming the key.

use serde_yaml::Value;

/// Expands every string in `value`; on error returns (key path, message).
pub fn expand_env(
    value: &mut Value,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), (String, String)> {
    walk(value, String::new(), lookup)
}

fn walk(
    value: &mut Value,
    key: String,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), (String, String)> {
    match value {
        Value::String(s) if s.contains('$') => {
            *s = expand_str(s, lookup).map_err(|m| (key, m))?;
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk(item, format!("{key}[{i}]"), lookup)?;
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                let name = k.as_str().unwrap_or("?");
                let child = if key.is_empty() {
                    name.to_string()
                } else {
                    format!("{key}.{name}")
                };
                walk(v, child, lookup)?;
            }
        }
        Value::Tagged(t) => walk(&mut t.value, key, lookup)?,
        _ => {}
    }
    Ok(())
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
                .ok_or_else(|| format!("unclosed ${{ in {s:?}"))?;
            let inner = &body[..end];
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("invalid variable name {name:?} in ${{...}}"));
            }
            match lookup(name)
                .filter(|v| !v.is_empty())
                .or(default.map(str::to_string))
            {
                Some(v) => out.push_str(&v),
                None => {
                    return Err(format!(
                        "environment variable {name} is not set (write ${{{name}:-default}} for a default)"
                    ));
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "KEY" => Some("s3cret".into()),
            "EMPTY" => Some(String::new()),
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
    fn unset_variable_names_the_key_and_the_variable() {
        let mut v: Value = serde_yaml::from_str("vectadb:\n  api_key: ${NOPE}\n").unwrap();
        let (key, msg) = expand_env(&mut v, &env).unwrap_err();
        assert_eq!(key, "vectadb.api_key");
        assert!(msg.contains("NOPE"), "{msg}");
    }
}
