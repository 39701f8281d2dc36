//! An event's properties: the message's own JSON object as it came, and
//! what was added beside it.
//!
//! A JSON log line is most of what cwtap delivers, and its fields go out
//! unchanged. Building them into a map of owned JSON values only to write
//! them out again was a quarter of the pull path's instructions (two
//! allocations per field, a B-tree insert, a drop). Here the object is
//! read once without copying a value ([`Properties::from_json_object`]: one
//! pass over its bytes that checks it is JSON as serde_json would, property
//! tests hold the two to the same answer, and notes where each member's key
//! and value are in the text), a value is built
//! only where a rule asks for it ([`Properties::get`]), and the output
//! writes each member's text as it came ([`Properties::members`]).
//!
//! The fields added beside it (what the rules extracted, the canonical
//! fields, the trace key) are kept by name ([`added`]), under keys the
//! object does not hold:
//! an original field of the same name wins, as it always has. Replacing an
//! original field ([`Properties::insert`] on its key, redaction through
//! [`Properties::map_mut`]) turns the whole into one map first.

use std::borrow::Cow;
use std::fmt;
use std::sync::OnceLock;

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

mod added;

use added::Added;
pub(crate) use added::Key;

/// The properties of one event (see the module).
#[derive(Default)]
pub struct Properties {
    object: Option<Object>,
    /// Keys `object` does not hold.
    added: Added,
    /// The whole as one map, built when something asks for it
    /// ([`Properties::as_map`]: tests, `parse-test`, the OTLP output).
    whole: OnceLock<Map<String, Value>>,
}

/// A JSON object's text and its members' places in it.
#[derive(Clone)]
struct Object {
    text: Box<str>,
    members: Vec<Member>,
    /// No white space between its members, keys and values: the text is
    /// the members written one after another (see [`Object::compact`]).
    compact: bool,
}

/// Byte ranges in [`Object::text`]: the key between its quotes (a key
/// with an escape is not kept this way), the value's JSON text; and
/// whether the value is a string without escapes (its text between the
/// quotes is the string).
#[derive(Clone, Copy)]
struct Member {
    key: (u32, u32),
    value: (u32, u32),
    plain: bool,
}

impl Object {
    fn new(text: Box<str>, members: Vec<Member>) -> Object {
        let compact = Object::compact(&text, &members);
        Object {
            text,
            members,
            compact,
        }
    }

    /// Whether `text` is `{`, the members as `"key":value` joined by `,`,
    /// and `}`, with nothing else between them.
    fn compact(text: &str, members: &[Member]) -> bool {
        // Where the next key's opening quote must be: after the `{`, then
        // after each value and its `,`.
        let mut next = 1;
        for m in members {
            let (key, value) = (m.key.0 as usize, m.value.0 as usize);
            if key != next + 1 || value != m.key.1 as usize + 2 {
                return false;
            }
            next = m.value.1 as usize + 1;
        }
        // The last value (or the `{`) is followed by the `}` alone.
        let end = members.last().map_or(1, |m| m.value.1 as usize);
        end + 1 == text.len()
    }

    fn key(&self, m: &Member) -> &str {
        &self.text[m.key.0 as usize..m.key.1 as usize]
    }

    fn value(&self, m: &Member) -> &str {
        &self.text[m.value.0 as usize..m.value.1 as usize]
    }

    /// A member's value as a JSON value.
    fn value_of(&self, m: &Member) -> Value {
        if m.plain {
            return Value::String(
                self.text[m.value.0 as usize + 1..m.value.1 as usize - 1].to_owned(),
            );
        }
        value_of(self.value(m))
    }

    /// The member named `key` (the last, as a parser that keeps one value
    /// per key would have it).
    fn find(&self, key: &str) -> Option<&Member> {
        let len = key.len() as u32;
        self.members
            .iter()
            .rev()
            .find(|m| m.key.1 - m.key.0 == len && self.key(m) == key)
    }
}

/// A member's value as a JSON value. The text was checked when read; a
/// number beyond `f64` (which that check lets through) stays its text.
/// (A string without escapes is read by [`Object::value_of`].)
fn value_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

impl Properties {
    pub fn new() -> Properties {
        Properties::default()
    }

    /// `text` (the whole text: a JSON object, white space around allowed)
    /// read without building its values; `None` when it is not a JSON
    /// object. An object with an escaped key is read into a map instead.
    pub(crate) fn from_json_object(text: &str) -> Option<Properties> {
        let trimmed = text.trim();
        if !(trimmed.starts_with('{') && trimmed.ends_with('}'))
            || trimmed.len() > u32::MAX as usize
        {
            return None;
        }
        let members = match scan::object(trimmed.as_bytes()) {
            scan::Scan::Object(members) => members,
            scan::Scan::NotJson => return None,
            // What the scanner leaves to serde_json (an escaped key, deep
            // nesting): a map, as any object was before the scanner.
            scan::Scan::Unsure => {
                return serde_json::from_str::<Map<String, Value>>(trimmed)
                    .ok()
                    .map(Properties::from);
            }
        };
        Some(Properties {
            object: Some(Object::new(trimmed.into(), members)),
            ..Properties::default()
        })
    }

    /// The value of `key`, built from the object's text when it is there.
    pub fn get(&self, key: &str) -> Option<Cow<'_, Value>> {
        if let Some(v) = self.added.get(key) {
            return Some(Cow::Borrowed(v));
        }
        let o = self.object.as_ref()?;
        o.find(key).map(|m| Cow::Owned(o.value_of(m)))
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.added.contains_key(key) || self.object.as_ref().is_some_and(|o| o.find(key).is_some())
    }

    /// Sets `key` to `value`, replacing what it was.
    pub fn insert(&mut self, key: impl Into<Key>, value: Value) {
        let key = key.into();
        if self.object.as_ref().is_some_and(|o| o.find(&key).is_some()) {
            self.map_mut().insert(key.into_owned(), value);
            return;
        }
        self.whole.take();
        self.added.insert(key, value);
    }

    /// Which of `keys` (at most 32) have a value: bit `i` for `keys[i]`.
    /// One pass over the object's members for all of them.
    pub(crate) fn present(&self, keys: &[&str]) -> u32 {
        debug_assert!(keys.len() <= 32);
        let mut present = 0u32;
        let mut mark = |key: &str| {
            for (i, k) in keys.iter().enumerate() {
                if k.len() == key.len() && *k == key {
                    present |= 1 << i;
                }
            }
        };
        if let Some(o) = &self.object {
            o.members.iter().for_each(|m| mark(o.key(m)));
        }
        self.added.iter().for_each(|(key, _)| mark(key));
        present
    }

    /// Sets `key`, which has no value (see [`Properties::present`]), to `value`.
    pub(crate) fn insert_new(&mut self, key: &'static str, value: Value) {
        debug_assert!(!self.contains_key(key), "{key}");
        self.whole.take();
        self.added.insert(Cow::Borrowed(key), value);
    }

    /// Sets `key` to `value()` unless it has a value. Returns whether it was set.
    pub fn insert_if_absent(&mut self, key: &str, value: impl FnOnce() -> Value) -> bool {
        if self.contains_key(key) {
            return false;
        }
        self.whole.take();
        self.added.insert(Cow::Owned(key.to_string()), value());
        true
    }

    /// The properties as one map to change in place: the object's members
    /// are built into values first.
    pub fn map_mut(&mut self) -> &mut Map<String, Value> {
        self.whole.take();
        let added = self.added.map_mut();
        if let Some(o) = self.object.take() {
            let mut map = Map::new();
            for m in &o.members {
                map.insert(o.key(m).to_string(), o.value_of(m));
            }
            map.append(added);
            *added = map;
        }
        added
    }

    /// The properties as one map.
    pub fn into_map(mut self) -> Map<String, Value> {
        std::mem::take(self.map_mut())
    }

    /// The properties as one map, built once and kept (for what reads them
    /// all; the delivery path does not).
    pub fn as_map(&self) -> &Map<String, Value> {
        if self.object.is_none()
            && let Some(map) = self.added.as_map()
        {
            return map;
        }
        self.whole.get_or_init(|| self.clone().into_map())
    }

    pub fn len(&self) -> usize {
        self.as_map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.object.as_ref().is_none_or(|o| o.members.is_empty())
    }

    /// The object's text without its closing `}`, when that is its
    /// members exactly as [`Properties::members`] lists them, written
    /// without white space; and whether it has no members.
    pub(crate) fn compact_members(&self) -> Option<(&str, bool)> {
        let o = self.object.as_ref().filter(|o| o.compact)?;
        Some((&o.text[..o.text.len() - 1], o.members.is_empty()))
    }

    /// The object's members as they came: key (unescaped, between its
    /// quotes) and value text, in order.
    pub(crate) fn members(&self) -> impl Iterator<Item = (&str, &str)> {
        // One slice walked (not a flattened `Option`): every delivered
        // JSON event's members go through here.
        let (text, members) = match &self.object {
            Some(o) => (&*o.text, &o.members[..]),
            None => ("", &[][..]),
        };
        members.iter().map(move |m| {
            (
                &text[m.key.0 as usize..m.key.1 as usize],
                &text[m.value.0 as usize..m.value.1 as usize],
            )
        })
    }

    /// The fields added beside the object (or all of them, without one),
    /// by name.
    pub(crate) fn added(&self) -> added::Iter<'_> {
        self.added.iter()
    }

    /// Each property whose key `wanted` takes (`Some`), with its value
    /// (built from the object's text only for these) and what `wanted`
    /// said of it.
    pub(crate) fn select<T>(
        &self,
        wanted: impl Fn(&str) -> Option<T>,
    ) -> Vec<(&str, Cow<'_, Value>, T)> {
        let mut out = Vec::with_capacity(8);
        if let Some(o) = &self.object {
            for m in &o.members {
                let key = o.key(m);
                if let Some(t) = wanted(key) {
                    out.push((key, Cow::Owned(o.value_of(m)), t));
                }
            }
        }
        for (key, value) in self.added.iter() {
            if let Some(t) = wanted(key) {
                out.push((key, Cow::Borrowed(value), t));
            }
        }
        out
    }
}

impl From<Map<String, Value>> for Properties {
    fn from(added: Map<String, Value>) -> Properties {
        Properties {
            added: Added::Map(added),
            ..Properties::default()
        }
    }
}

impl Clone for Properties {
    fn clone(&self) -> Properties {
        Properties {
            object: self.object.clone(),
            added: self.added.clone(),
            whole: OnceLock::new(),
        }
    }
}

impl PartialEq for Properties {
    fn eq(&self, other: &Properties) -> bool {
        self.as_map() == other.as_map()
    }
}

impl fmt::Debug for Properties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_map().fmt(f)
    }
}

impl std::ops::Index<&str> for Properties {
    type Output = Value;

    /// As `Map`'s: `Value::Null` when the key is not there.
    fn index(&self, key: &str) -> &Value {
        &self.as_map()[key]
    }
}

/// The members first, as they came, then the added fields: the bytes the
/// JSON outputs write ([`crate::event`]).
impl Serialize for Properties {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for (key, value) in self.members() {
            let raw =
                RawValue::from_string(value.to_string()).map_err(serde::ser::Error::custom)?;
            map.serialize_entry(key, &raw)?;
        }
        for (key, value) in self.added.iter() {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

// JSON string text eight bytes at a time: the scanner below, and the
// reader and writer of `event` (pages, subscription messages, delivered
// events).

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The bytes of `w` (little-endian) that end a run of plain JSON string
/// text: below 0x20, `"` or `\`. The lowest byte whose high bit is set in
/// the result is the first such byte; bytes above it may be flagged
/// falsely (a borrow), so only the lowest one is to be read.
#[inline]
pub(crate) fn string_stops(w: u64) -> u64 {
    // A byte is zero after the xor exactly where it matched; the classic
    // "has a zero byte" test, and "has a byte below 0x20" as `w - 0x20`
    // borrowing into its high bit where the byte's own high bit is clear.
    let quote = w ^ (ONES * b'"' as u64);
    let backslash = w ^ (ONES * b'\\' as u64);
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let control = w.wrapping_sub(ONES * 0x20) & !w & HIGHS;
    zero(quote) | zero(backslash) | control
}

/// The length of the plain string text at the start of `bytes`: up to the
/// first closing quote, escape or control character (JSON allows none in a
/// string), or all of it. Eight bytes at a time.
pub(crate) fn plain(bytes: &[u8]) -> usize {
    let n = bytes.len();
    let word = |at: usize| {
        let mut w = [0; 8];
        w.copy_from_slice(&bytes[at..at + 8]);
        string_stops(u64::from_le_bytes(w))
    };
    let mut i = 0;
    while i + 8 <= n {
        let stops = word(i);
        if stops != 0 {
            return i + (stops.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    if i == n {
        return n;
    }
    if n >= 8 {
        // The rest as the last eight bytes: those before `i` in it were
        // read already and hold no stop, so its first stop is the first.
        let stops = word(n - 8);
        return match stops {
            0 => n,
            _ => n - 8 + (stops.trailing_zeros() / 8) as usize,
        };
    }
    bytes
        .iter()
        .position(|&b| b < 0x20 || b == b'"' || b == b'\\')
        .unwrap_or(n)
}

/// A JSON object read in one pass over its bytes: where each member's key
/// and value are, and whether the whole is JSON as serde_json reads it
/// (a test holds the two to the same answer). What it does not decide
/// itself (a key with an escape, nesting past 128 levels) it leaves to
/// serde_json.
mod scan {
    use super::Member;

    pub(super) enum Scan {
        Object(Vec<Member>),
        NotJson,
        Unsure,
    }

    /// Most nesting serde_json reads (its recursion limit).
    const DEPTH: usize = 128;

    enum Stop {
        NotJson,
        Unsure,
    }

    struct Reader<'a> {
        b: &'a [u8],
        i: usize,
    }

    impl Reader<'_> {
        fn peek(&self) -> Option<u8> {
            self.b.get(self.i).copied()
        }

        fn space(&mut self) {
            while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
                self.i += 1;
            }
        }

        fn eat(&mut self, byte: u8) -> Result<(), Stop> {
            if self.peek() == Some(byte) {
                self.i += 1;
                Ok(())
            } else {
                Err(Stop::NotJson)
            }
        }

        /// A string from its opening quote; returns whether it had an escape.
        fn string(&mut self) -> Result<bool, Stop> {
            self.eat(b'"')?;
            let mut escaped = false;
            loop {
                self.i += super::plain(&self.b[self.i..]);
                match self.peek() {
                    Some(b'"') => {
                        self.i += 1;
                        return Ok(escaped);
                    }
                    Some(b'\\') => {
                        escaped = true;
                        self.i += 1;
                        match self.peek() {
                            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                                self.i += 1
                            }
                            Some(b'u') => {
                                let hex =
                                    self.b.get(self.i + 1..self.i + 5).ok_or(Stop::NotJson)?;
                                if !hex.iter().all(u8::is_ascii_hexdigit) {
                                    return Err(Stop::NotJson);
                                }
                                self.i += 5;
                            }
                            _ => return Err(Stop::NotJson),
                        }
                    }
                    // A control character, or the end.
                    _ => return Err(Stop::NotJson),
                }
            }
        }

        fn digits(&mut self) -> usize {
            let start = self.i;
            while let Some(b'0'..=b'9') = self.peek() {
                self.i += 1;
            }
            self.i - start
        }

        fn number(&mut self) -> Result<(), Stop> {
            if self.peek() == Some(b'-') {
                self.i += 1;
            }
            match self.peek() {
                Some(b'0') => self.i += 1,
                Some(b'1'..=b'9') => {
                    self.digits();
                }
                _ => return Err(Stop::NotJson),
            }
            if self.peek() == Some(b'.') {
                self.i += 1;
                if self.digits() == 0 {
                    return Err(Stop::NotJson);
                }
            }
            if let Some(b'e' | b'E') = self.peek() {
                self.i += 1;
                if let Some(b'+' | b'-') = self.peek() {
                    self.i += 1;
                }
                if self.digits() == 0 {
                    return Err(Stop::NotJson);
                }
            }
            Ok(())
        }

        fn literal(&mut self, word: &[u8]) -> Result<(), Stop> {
            if self.b[self.i..].starts_with(word) {
                self.i += word.len();
                Ok(())
            } else {
                Err(Stop::NotJson)
            }
        }

        /// An object or array from its opening byte to `close`, `item`
        /// reading each member or element, `depth` containers deep.
        fn container(
            &mut self,
            close: u8,
            depth: usize,
            mut item: impl FnMut(&mut Self) -> Result<(), Stop>,
        ) -> Result<(), Stop> {
            if depth >= DEPTH {
                return Err(Stop::Unsure);
            }
            self.i += 1;
            self.space();
            if self.peek() == Some(close) {
                self.i += 1;
                return Ok(());
            }
            loop {
                self.space();
                item(self)?;
                self.space();
                match self.peek() {
                    Some(b',') => self.i += 1,
                    Some(c) if c == close => {
                        self.i += 1;
                        return Ok(());
                    }
                    _ => return Err(Stop::NotJson),
                }
            }
        }

        /// One value, `depth` containers deep.
        fn value(&mut self, depth: usize) -> Result<(), Stop> {
            match self.peek() {
                Some(b'"') => self.string().map(drop),
                Some(b'{') => self.container(b'}', depth, |r| {
                    r.string()?;
                    r.space();
                    r.eat(b':')?;
                    r.space();
                    r.value(depth + 1)
                }),
                Some(b'[') => self.container(b']', depth, |r| r.value(depth + 1)),
                Some(b't') => self.literal(b"true"),
                Some(b'f') => self.literal(b"false"),
                Some(b'n') => self.literal(b"null"),
                _ => self.number(),
            }
        }

        fn members(&mut self) -> Result<Vec<Member>, Stop> {
            let mut members = Vec::with_capacity(16);
            self.space();
            self.eat(b'{')?;
            self.space();
            if self.peek() == Some(b'}') {
                self.i += 1;
            } else {
                loop {
                    self.space();
                    let key_start = self.i + 1;
                    if self.string()? {
                        return Err(Stop::Unsure);
                    }
                    let key = (key_start as u32, (self.i - 1) as u32);
                    self.space();
                    self.eat(b':')?;
                    self.space();
                    let value_start = self.i;
                    let plain = if self.peek() == Some(b'"') {
                        !self.string()?
                    } else {
                        self.value(1)?;
                        false
                    };
                    members.push(Member {
                        key,
                        value: (value_start as u32, self.i as u32),
                        plain,
                    });
                    self.space();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            break;
                        }
                        _ => return Err(Stop::NotJson),
                    }
                }
            }
            self.space();
            if self.i == self.b.len() {
                Ok(members)
            } else {
                Err(Stop::NotJson)
            }
        }
    }

    /// `text` as one JSON object (white space around it allowed).
    pub(super) fn object(text: &[u8]) -> Scan {
        match (Reader { b: text, i: 0 }).members() {
            Ok(members) => Scan::Object(members),
            Err(Stop::NotJson) => Scan::NotJson,
            Err(Stop::Unsure) => Scan::Unsure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
    use serde_json::json;

    /// serde_json's reading of an object, the scanner's oracle: the members
    /// borrowed from the text; `None` when a key has
    /// an escape (it cannot be borrowed as written).
    struct Borrowed<'a>(Option<Vec<(&'a str, &'a RawValue)>>);

    impl<'de> Deserialize<'de> for Borrowed<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Members;
            impl<'de> Visitor<'de> for Members {
                type Value = Borrowed<'de>;

                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a JSON object")
                }

                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                    let mut members = Vec::with_capacity(map.size_hint().unwrap_or(16));
                    let mut escaped = false;
                    while let Some(key) = map.next_key::<Key<'de>>()? {
                        let value: &'de RawValue = map.next_value()?;
                        match key.0 {
                            Some(key) if !escaped => members.push((key, value)),
                            _ => escaped = true,
                        }
                    }
                    Ok(Borrowed((!escaped).then_some(members)))
                }
            }
            d.deserialize_map(Members)
        }
    }

    /// A key borrowed from the text, or `None` when it had to be unescaped.
    struct Key<'a>(Option<&'a str>);

    impl<'de> Deserialize<'de> for Key<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct K;
            impl<'de> Visitor<'de> for K {
                type Value = Key<'de>;

                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a key")
                }

                fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                    Ok(Key(Some(v)))
                }

                fn visit_str<E>(self, _: &str) -> Result<Key<'de>, E> {
                    Ok(Key(None))
                }
            }
            d.deserialize_str(K)
        }
    }

    fn props(text: &str) -> Properties {
        Properties::from_json_object(text).expect("a JSON object")
    }

    #[test]
    fn an_object_is_read_as_it_came_and_its_values_built_on_demand() {
        let p = props(r#" {"b": 1.50, "a": {"x": [1, "y"]}, "s": "t\"q"} "#);
        assert!(p.object.is_some(), "read without building values");
        assert_eq!(p.get("b").as_deref(), Some(&json!(1.5)));
        assert_eq!(p.get("a").as_deref(), Some(&json!({"x": [1, "y"]})));
        assert_eq!(p.get("s").as_deref(), Some(&json!("t\"q")));
        assert_eq!(p.get("nope"), None);
        let members: Vec<_> = p.members().collect();
        assert_eq!(
            members,
            [
                ("b", "1.50"),
                ("a", r#"{"x": [1, "y"]}"#),
                ("s", r#""t\"q""#)
            ]
        );
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"b":1.50,"a":{"x": [1, "y"]},"s":"t\"q"}"#
        );
        assert_eq!(p.len(), 3);
    }

    #[test]
    fn not_an_object_is_none_and_an_escaped_key_is_read_into_a_map() {
        for text in ["[1]", "{\"a\":", "{\"a\" 1}", "\"x\"", "", "{} x"] {
            assert!(Properties::from_json_object(text).is_none(), "{text:?}");
        }
        let p = props(r#"{"a\u0062": 1, "c": 2}"#);
        assert!(p.object.is_none());
        assert_eq!(p.as_map(), json!({"ab": 1, "c": 2}).as_object().unwrap());
    }

    #[test]
    fn the_last_of_a_repeated_key_is_its_value_and_every_one_is_written() {
        let p = props(r#"{"k": 1, "k": 2}"#);
        assert_eq!(p.get("k").as_deref(), Some(&json!(2)));
        assert_eq!(p["k"], 2);
        assert_eq!(serde_json::to_string(&p).unwrap(), r#"{"k":1,"k":2}"#);
    }

    #[test]
    fn an_original_field_wins_over_an_added_one_until_replaced() {
        let mut p = props(r#"{"level": "warn", "n": 1}"#);
        assert!(!p.insert_if_absent("level", || json!("error")));
        assert!(p.insert_if_absent("trace_key", || json!("t")));
        assert!(
            p.object.is_some(),
            "adding a key keeps the object as it came"
        );
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"level":"warn","n":1,"trace_key":"t"}"#
        );
        assert_eq!(p["trace_key"], "t");
        p.insert("n", json!(2));
        assert!(
            p.object.is_none(),
            "replacing an original field builds the map"
        );
        assert_eq!(
            p.as_map(),
            json!({"level": "warn", "n": 2, "trace_key": "t"})
                .as_object()
                .unwrap()
        );
    }

    /// What the scanner decides must be what serde_json decides.
    fn same_as_serde(text: &str) -> Result<(), proptest::test_runner::TestCaseError> {
        let trimmed = text.trim();
        let theirs = serde_json::from_str::<Borrowed<'_>>(trimmed);
        match scan::object(trimmed.as_bytes()) {
            scan::Scan::Object(members) => {
                let Ok(Borrowed(Some(theirs))) = theirs else {
                    return Err(proptest::test_runner::TestCaseError::fail(format!(
                        "scanned as an object, serde_json: {:?}",
                        theirs.err()
                    )));
                };
                let ours: Vec<(&str, &str)> = members
                    .iter()
                    .map(|m| {
                        (
                            &trimmed[m.key.0 as usize..m.key.1 as usize],
                            &trimmed[m.value.0 as usize..m.value.1 as usize],
                        )
                    })
                    .collect();
                let theirs: Vec<(&str, &str)> = theirs.iter().map(|(k, v)| (*k, v.get())).collect();
                proptest::prop_assert_eq!(ours, theirs);
            }
            scan::Scan::NotJson => {
                proptest::prop_assert!(
                    theirs.is_err(),
                    "not JSON to the scanner, serde_json read it"
                );
            }
            scan::Scan::Unsure => {}
        }
        Ok(())
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            "(?s).{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map("[a-z\"\\\\\n]{0,6}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn plain_stops_at_the_first_quote_backslash_or_control_character(
            bytes in proptest::collection::vec(
                proptest::sample::select(b"ab\"\\\x00\x1f \x7f\xc3\xa9".to_vec()),
                0..40,
            ),
            plain_prefix in 0usize..20,
        ) {
            // Runs of plain bytes of every length before the bytes drawn.
            let mut text = vec![b'x'; plain_prefix];
            text.extend_from_slice(&bytes);
            let naive = text
                .iter()
                .position(|&b| b < 0x20 || b == b'"' || b == b'\\')
                .unwrap_or(text.len());
            proptest::prop_assert_eq!(plain(&text), naive);
        }
    }

    proptest! {
        #[test]
        fn the_scanner_reads_json_as_serde_json_does(
            object in proptest::collection::btree_map("[a-z_]{0,6}", json_value(), 0..8),
            pretty in any::<bool>(),
            at in any::<proptest::sample::Index>(),
            byte in proptest::sample::select(b" {}[]:,\"\\0123456789.eE+-tfnul/x\t\n".to_vec()),
            how in 0u8..4,
        ) {
            let object = Value::Object(object.into_iter().collect());
            let text = if pretty {
                serde_json::to_string_pretty(&object).unwrap()
            } else {
                serde_json::to_string(&object).unwrap()
            };
            same_as_serde(&text)?;
            // One byte changed, added or taken away (on a char boundary).
            let mut bytes = text.into_bytes();
            let i = at.index(bytes.len() + 1);
            match how {
                0 if i < bytes.len() && bytes[i].is_ascii() => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                2 if i < bytes.len() && bytes[i].is_ascii() => {
                    bytes.remove(i);
                }
                _ => {}
            }
            if let Ok(text) = String::from_utf8(bytes) {
                same_as_serde(&text)?;
            }
        }

        #[test]
        fn the_scanner_reads_any_short_text_as_serde_json_does(
            text in "[ {}\\[\\]:,\"\\\\a-c0-9.eE+\\-tfrulsnx/\t\n\u{1}é]{0,40}",
        ) {
            same_as_serde(&format!("{{{text}}}"))?;
            same_as_serde(&text)?;
        }
    }

    #[test]
    fn the_scanner_leaves_escaped_keys_and_deep_nesting_to_serde_json() {
        assert!(matches!(
            scan::object(br#"{"a\"b": 1}"#),
            scan::Scan::Unsure
        ));
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(200), "]".repeat(200));
        assert!(matches!(scan::object(deep.as_bytes()), scan::Scan::Unsure));
        // serde_json's recursion limit, as for any object before the scanner.
        assert!(Properties::from_json_object(&deep).is_none());
        let ok = format!("{{\"a\":{}1{}}}", "[".repeat(100), "]".repeat(100));
        assert!(matches!(scan::object(ok.as_bytes()), scan::Scan::Object(_)));
        for text in [
            r#"{"a": 01}"#,
            r#"{"a": 1.}"#,
            r#"{"a": -}"#,
            r#"{"a": "\x"}"#,
            r#"{"a": "\u12G4"}"#,
            "{\"a\": \"\u{1}\"}",
            r#"{"a": tru}"#,
            r#"{"a": 1,}"#,
            r#"{"a" 1}"#,
            r#"{} {}"#,
        ] {
            assert!(
                matches!(scan::object(text.as_bytes()), scan::Scan::NotJson),
                "{text}"
            );
            assert!(
                serde_json::from_str::<Borrowed<'_>>(text).is_err(),
                "{text}"
            );
        }
    }

    #[test]
    fn a_number_beyond_f64_stays_its_text() {
        let p = props(r#"{"big": 1e400}"#);
        assert_eq!(p.get("big").as_deref(), Some(&json!("1e400")));
        assert_eq!(serde_json::to_string(&p).unwrap(), r#"{"big":1e400}"#);
    }
}
