//! The fields added beside an event's JSON object (see [`super`]).
//!
//! A delivered JSON event gets two or three, under names cwtap gives
//! (`message`, `cloudwatch_ingestion_time`, `trace_key`): a short list
//! kept in key order, whose fixed names are not copied, costs one
//! allocation where a B-tree map of owned keys cost four, and its drop
//! is a walk down a slice. Properties that come as one map (a regex
//! rule's captures, an object read by serde_json) stay that map, as does
//! the whole once something changes it as one
//! ([`super::Properties::map_mut`]).

use std::borrow::Cow;

use serde_json::{Map, Value};

/// A field name: one cwtap gives, or one from the configuration or the
/// event.
pub(crate) type Key = Cow<'static, str>;

/// Fields by name, in name order (the order serde_json's map keeps, and
/// the JSON outputs write them in).
#[derive(Clone)]
pub(super) enum Added {
    /// Sorted by key, each key once.
    List(Vec<(Key, Value)>),
    Map(Map<String, Value>),
}

impl Default for Added {
    fn default() -> Added {
        Added::List(Vec::new())
    }
}

impl Added {
    pub(super) fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Added::List(list) => list
                .binary_search_by(|(k, _)| (**k).cmp(key))
                .ok()
                .map(|i| &list[i].1),
            Added::Map(map) => map.get(key),
        }
    }

    pub(super) fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Sets `key` to `value`, replacing what it was.
    pub(super) fn insert(&mut self, key: Key, value: Value) {
        match self {
            Added::List(list) => match list.binary_search_by(|(k, _)| (**k).cmp(&*key)) {
                Ok(i) => list[i].1 = value,
                Err(i) => list.insert(i, (key, value)),
            },
            Added::Map(map) => {
                map.insert(key.into_owned(), value);
            }
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        match self {
            Added::List(list) => list.is_empty(),
            Added::Map(map) => map.is_empty(),
        }
    }

    /// The fields in name order.
    pub(super) fn iter(&self) -> Iter<'_> {
        match self {
            Added::List(list) => Iter::List(list.iter()),
            Added::Map(map) => Iter::Map(map.iter()),
        }
    }

    /// The map these fields are, when they are one.
    pub(super) fn as_map(&self) -> Option<&Map<String, Value>> {
        match self {
            Added::List(_) => None,
            Added::Map(map) => Some(map),
        }
    }

    /// These fields as one map, to change in place.
    pub(super) fn map_mut(&mut self) -> &mut Map<String, Value> {
        if let Added::List(list) = self {
            let map = std::mem::take(list)
                .into_iter()
                .map(|(k, v)| (k.into_owned(), v))
                .collect();
            *self = Added::Map(map);
        }
        match self {
            Added::Map(map) => map,
            Added::List(_) => unreachable!("made a map above"),
        }
    }
}

/// [`Added::iter`].
pub(crate) enum Iter<'a> {
    List(std::slice::Iter<'a, (Key, Value)>),
    Map(serde_json::map::Iter<'a>),
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, &'a Value);

    fn next(&mut self) -> Option<(&'a str, &'a Value)> {
        match self {
            Iter::List(it) => it.next().map(|(k, v)| (&**k, v)),
            Iter::Map(it) => it.next().map(|(k, v)| (k.as_str(), v)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(added: &Added) -> Vec<(String, Value)> {
        added
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn a_list_keeps_the_order_and_the_last_value_of_a_map() {
        let inserts = [
            ("trace_key", 1),
            ("message", 2),
            ("cloudwatch_ingestion_time", 3),
            ("message", 4),
            ("zz", 5),
            ("a", 6),
        ];
        let mut added = Added::default();
        let mut map = Map::new();
        for (k, v) in inserts {
            added.insert(Cow::Borrowed(k), Value::from(v));
            map.insert(k.to_string(), Value::from(v));
        }
        assert!(matches!(added, Added::List(_)));
        let expected: Vec<(String, Value)> = map.clone().into_iter().collect();
        assert_eq!(list(&added), expected);
        assert_eq!(added.get("message"), Some(&Value::from(4)));
        assert_eq!(added.get("nope"), None);
        assert!(added.contains_key("a") && !added.contains_key("b"));

        // As a map: the same fields, and it stays one.
        assert_eq!(added.map_mut(), &map);
        added.insert(Cow::Owned("b".into()), Value::from(7));
        map.insert("b".into(), Value::from(7));
        assert_eq!(added.as_map(), Some(&map));
        assert_eq!(list(&added), map.into_iter().collect::<Vec<_>>());
    }
}
