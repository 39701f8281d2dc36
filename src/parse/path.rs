//! Dotted paths into JSON values: `trace.id`, `error.stack.0`, `records[2].id`.

use std::borrow::Cow;

use serde_json::Value;

use super::props::Properties;

/// A compiled path. A key that itself contains dots (`"dd.trace_id"`, as
/// flattened loggers write) is found too: the whole path is tried as one key
/// before it is walked.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Path {
    raw: String,
    segments: Vec<String>,
}

impl Path {
    /// Parses `a.b.0.c` or `a.b[0].c`. Errors say what is wrong.
    pub(crate) fn parse(text: &str) -> Result<Path, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("a path must not be empty".into());
        }
        let mut segments = Vec::new();
        for part in text.split('.') {
            let mut rest = part;
            // `name[0][1]`: the name, then indices.
            let name_end = rest.find('[').unwrap_or(rest.len());
            let (name, mut tail) = rest.split_at(name_end);
            if !name.is_empty() {
                segments.push(name.to_string());
            }
            while let Some(inner) = tail.strip_prefix('[') {
                let close = inner
                    .find(']')
                    .ok_or_else(|| format!("path {text:?} has an unclosed ["))?;
                let index = &inner[..close];
                if index.parse::<usize>().is_err() {
                    return Err(format!(
                        "path {text:?}: [{index}] is not an array index (use a number)"
                    ));
                }
                segments.push(index.to_string());
                tail = &inner[close + 1..];
            }
            rest = tail;
            if !rest.is_empty() {
                return Err(format!("path {text:?}: unexpected {rest:?} after ]"));
            }
            if name.is_empty() && name_end == part.len() {
                return Err(format!("path {text:?} has an empty segment"));
            }
        }
        Ok(Path {
            raw: text.to_string(),
            segments,
        })
    }

    /// The path as written (a top-level key, possibly with dots).
    pub(crate) fn raw(&self) -> &str {
        &self.raw
    }

    /// The first segment: the top-level key a walk starts from.
    pub(crate) fn first(&self) -> &str {
        self.segments
            .first()
            .map_or(self.raw.as_str(), String::as_str)
    }

    /// The value at this path, given the object's entry `key: value`
    /// (the path as one key, or a walk from its first segment).
    pub(crate) fn lookup_in_entry<'a>(&self, key: &str, value: &'a Value) -> Option<&'a Value> {
        if key == self.raw {
            return Some(value);
        }
        if self.segments.len() < 2 || key != self.segments[0] {
            return None;
        }
        self.walk(value)
    }

    /// The value at this path in an event's properties, if any (a
    /// top-level key as written wins over a walk): only the value the path
    /// starts at is built from a JSON object's text.
    pub(crate) fn lookup_props<'a>(&self, props: &'a Properties) -> Option<Cow<'a, Value>> {
        if let Some(v) = props.get(&self.raw) {
            return Some(v);
        }
        if self.segments.len() < 2 {
            return None;
        }
        match props.get(&self.segments[0])? {
            Cow::Borrowed(v) => self.walk(v).map(Cow::Borrowed),
            Cow::Owned(v) => self.walk(&v).cloned().map(Cow::Owned),
        }
    }

    /// The value at the path's segments after the first, from `value`.
    fn walk<'a>(&self, value: &'a Value) -> Option<&'a Value> {
        let mut current = value;
        for segment in &self.segments[1..] {
            current = match current {
                Value::Object(m) => m.get(segment)?,
                Value::Array(a) => a.get(segment.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, json};

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn paths_walk_objects_and_arrays_and_prefer_flattened_keys() {
        let m = map(json!({
            "trace": {"id": "nested"},
            "dd.trace_id": "flat",
            "records": [{"id": "r0"}, {"id": "r1"}],
        }));
        // Built as a map, and read from the object's text.
        let text = Value::Object(m.clone()).to_string();
        for props in [
            Properties::from(m.clone()),
            Properties::from_json_object(&text).unwrap(),
        ] {
            let get = |p: &str| {
                Path::parse(p)
                    .unwrap()
                    .lookup_props(&props)
                    .map(Cow::into_owned)
            };
            assert_eq!(get("trace.id"), Some(json!("nested")));
            assert_eq!(get("dd.trace_id"), Some(json!("flat")));
            assert_eq!(get("records.1.id"), Some(json!("r1")));
            assert_eq!(get("records[0].id"), Some(json!("r0")));
            assert_eq!(get("records.2.id"), None);
            assert_eq!(get("trace.id.more"), None);
        }
        let p = Path::parse("records.1.id").unwrap();
        assert_eq!(p.first(), "records");
        assert_eq!(
            p.lookup_in_entry("records", &m["records"]),
            Some(&json!("r1"))
        );
        assert_eq!(p.lookup_in_entry("trace", &m["trace"]), None);
    }

    #[test]
    fn malformed_paths_are_refused() {
        assert!(Path::parse("").is_err());
        assert!(Path::parse("a..b").is_err());
        assert!(Path::parse("a[x]").is_err());
        assert!(Path::parse("a[0").is_err());
    }
}
