//! Reading one top-level section of the config file into its own types, so
//! that each output (and each source with settings of its own) owns its YAML
//! section: the section is deserialised straight from the (expanded) text,
//! so its errors keep serde_yaml's line and column.

use std::marker::PhantomData;
use std::path::Path;

use serde::de::{DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, Visitor};

use super::Invalid;
use super::raw::RawAgent;

/// The config text and what a section's validation may need besides it.
pub struct Sections<'a> {
    /// The YAML text, `${VAR}` already expanded.
    pub(super) text: &'a str,
    /// The config file, for messages.
    pub path: &'a Path,
    /// The config file's folder: relative paths in a section are read from here.
    pub base_dir: &'a Path,
    /// The `agent:` section as written (for settings an output also accepts
    /// there, as the VectaDB agent's config has them).
    pub agent: &'a RawAgent,
    /// How parser rules in a section are loaded (`parsers_dir`, redaction).
    pub rules: &'a crate::parse::LoadOptions,
}

impl Sections<'_> {
    /// The top-level section `name` as `T`, or `None` when the file has none.
    /// Errors name the section and carry the line.
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, Invalid> {
        let de = serde_yaml::Deserializer::from_str(self.text);
        Pick {
            name,
            _value: PhantomData,
        }
        .deserialize(de)
        .map_err(|e| key_and_message(name, crate::errors::plain(&e.to_string())))
    }
}

/// serde_yaml starts a message with the path of the value it is about
/// (`ndjson.batch_size: invalid type ...`): that path is the key, said once.
fn key_and_message(name: &str, message: String) -> Invalid {
    if let Some((path, rest)) = message.split_once(": ")
        && (path == name
            || path
                .strip_prefix(name)
                .is_some_and(|p| p.starts_with(['.', '['])))
    {
        return (path.to_string(), rest.to_string());
    }
    (name.to_string(), message)
}

/// Picks the value of one key of the top-level mapping, skipping the others.
struct Pick<'n, T> {
    name: &'n str,
    _value: PhantomData<T>,
}

impl<'de, T: DeserializeOwned> DeserializeSeed<'de> for Pick<'_, T> {
    type Value = Option<T>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, T: DeserializeOwned> Visitor<'de> for Pick<'_, T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a mapping of config sections")
    }

    fn visit_unit<E>(self) -> Result<Option<T>, E> {
        Ok(None)
    }

    /// An empty file.
    fn visit_none<E>(self) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<T>, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<serde_yaml::Value>()? {
            if key.as_str() == Some(self.name) {
                found = map.next_value::<Option<T>>()?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// The field names serde's derived `Deserialize` of struct `T` accepts: the
/// keys a section of that type may hold.
pub fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Probe(Option<&'static [&'static str]>);
    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("field probe")
        }
    }
    impl std::error::Error for Stop {}
    impl serde::de::Error for Stop {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Stop
        }
    }
    impl<'de> serde::Deserializer<'de> for &mut Probe {
        type Error = Stop;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            self.0 = Some(fields);
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    let mut probe = Probe(None);
    let _ = T::deserialize(&mut probe);
    probe.0.unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Out {
        endpoint: String,
        batch_size: Option<u32>,
    }

    fn sections(text: &str) -> (String, RawAgent) {
        (text.to_string(), RawAgent::default())
    }

    static RULES: std::sync::LazyLock<crate::parse::LoadOptions> =
        std::sync::LazyLock::new(Default::default);

    #[test]
    fn a_section_is_read_with_its_line_and_other_sections_are_skipped() {
        let (text, agent) = sections(
            "log_groups: [{name: /a}]\nout:\n  endpoint: x\n  batch_size: 7\nother: {a: 1}\n",
        );
        let s = Sections {
            text: &text,
            path: Path::new("c.yaml"),
            base_dir: Path::new(""),
            agent: &agent,
            rules: &RULES,
        };
        assert_eq!(
            s.get::<Out>("out").unwrap(),
            Some(Out {
                endpoint: "x".into(),
                batch_size: Some(7)
            })
        );
        assert_eq!(s.get::<Out>("missing").unwrap(), None);
        let (text, agent) = sections("a: 1\nout:\n  endpoint: x\n  batchsize: 7\n");
        let s = Sections {
            text: &text,
            path: Path::new("c.yaml"),
            base_dir: Path::new(""),
            agent: &agent,
            rules: &RULES,
        };
        let (key, message) = s.get::<Out>("out").unwrap_err();
        assert_eq!(key, "out");
        assert!(
            message.contains("batchsize") && message.contains("line 4"),
            "{message}"
        );
    }

    #[test]
    fn field_names_come_from_the_derived_deserializer() {
        assert_eq!(field_names::<Out>(), &["endpoint", "batch_size"]);
    }

    #[test]
    fn the_path_serde_yaml_gives_becomes_the_key_said_once() {
        let split = |m: &str| key_and_message("ndjson", m.to_string());
        assert_eq!(
            split(
                "ndjson.batch_size: invalid type: string \"x\", expected usize at line 1 column 40"
            ),
            (
                "ndjson.batch_size".to_string(),
                "invalid type: string \"x\", expected usize at line 1 column 40".to_string()
            )
        );
        assert_eq!(
            split("ndjson: unknown field `paht`").0,
            "ndjson",
            "the section itself"
        );
        // Another section's name, or no path at all: the message stays whole.
        assert_eq!(
            split("ndjsonx.a: b"),
            ("ndjson".to_string(), "ndjsonx.a: b".to_string())
        );
        assert_eq!(
            split("invalid type: map"),
            ("ndjson".to_string(), "invalid type: map".to_string())
        );
    }
}
