//! JSON read in one pass, for the bodies whose strings are most of their
//! bytes: CloudWatch's event pages and the subscription messages Firehose
//! delivers. The members a caller uses are unescaped once into their final
//! strings, everything else is skipped.
//!
//! A JSON log line arrives as a JSON string, with a `\"` every few bytes.
//! A general JSON reader copies the text between two escapes into a scratch
//! buffer piece by piece and then the buffer into the string; here the text
//! is copied eight bytes at a time, and a string without escapes (a stream
//! name, an eventId, a text line) is one copy.
//!
//! The reader takes only what it fully understands: standard JSON whose
//! members that a caller reads have keys without escapes (in what it skips,
//! keys are not read). Anything else (such an escaped key, a lone
//! surrogate, a control character, nesting past [`DEPTH`] levels) makes a
//! read return `None`, and the caller hands the body to a general reader.

use crate::parse::{plain, string_stops};

/// How deep a skipped value may nest (serde_json's limit too).
pub(crate) const DEPTH: u32 = 128;

/// A place in a JSON text, read forwards.
pub(crate) struct Cursor<'a> {
    text: &'a str,
    at: usize,
    /// The string being unescaped (its capacity kept from one to the next).
    scratch: Vec<u8>,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(text: &'a str) -> Cursor<'a> {
        Cursor {
            text,
            at: 0,
            scratch: Vec::new(),
        }
    }

    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    /// The next byte that is not white space (the cursor left on it).
    pub(crate) fn peek(&mut self) -> Option<u8> {
        let bytes = self.bytes();
        while let Some(&b) = bytes.get(self.at) {
            if !matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
                return Some(b);
            }
            self.at += 1;
        }
        None
    }

    pub(crate) fn eat(&mut self, b: u8) -> Option<()> {
        (self.peek()? == b).then(|| self.at += 1)
    }

    /// Nothing but white space is left.
    pub(crate) fn end(&mut self) -> Option<()> {
        self.peek().is_none().then_some(())
    }

    fn literal(&mut self, word: &str) -> bool {
        let found = self.bytes()[self.at..].starts_with(word.as_bytes());
        if found {
            self.at += word.len();
        }
        found
    }

    /// `null`, if that is next.
    pub(crate) fn null(&mut self) -> Option<bool> {
        Some(self.peek()? == b'n' && self.literal("null"))
    }

    /// An object; `member` reads each member's value, given its key.
    pub(crate) fn object(
        &mut self,
        mut member: impl FnMut(&mut Self, &'a str) -> Option<()>,
    ) -> Option<()> {
        self.delimited(b'{', b'}', |c| {
            let key = c.key()?;
            c.eat(b':')?;
            member(c, key)
        })
    }

    /// `open`, the items `item` reads with commas between them, `close`.
    fn delimited(
        &mut self,
        open: u8,
        close: u8,
        mut item: impl FnMut(&mut Self) -> Option<()>,
    ) -> Option<()> {
        self.eat(open)?;
        if self.peek()? == close {
            self.at += 1;
            return Some(());
        }
        loop {
            item(self)?;
            match self.peek()? {
                b',' => self.at += 1,
                b if b == close => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// An array; `item` reads each element.
    pub(crate) fn array(&mut self, item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.delimited(b'[', b']', item)
    }

    /// An array of what `item` reads, or `null`.
    pub(crate) fn list<T>(
        &mut self,
        item: impl FnMut(&mut Self) -> Option<T>,
    ) -> Option<Option<Vec<T>>> {
        self.list_sized(usize::MAX, item)
    }

    /// [`Cursor::list`] of items that take at least about `item_bytes`
    /// of text each: the list is sized once for what the rest of the text
    /// can hold, instead of growing (and copying) as it is read.
    pub(crate) fn list_sized<T>(
        &mut self,
        item_bytes: usize,
        mut item: impl FnMut(&mut Self) -> Option<T>,
    ) -> Option<Option<Vec<T>>> {
        if self.null()? {
            return Some(None);
        }
        let mut items = Vec::with_capacity((self.text.len() - self.at) / item_bytes.max(1));
        self.array(|c| {
            items.push(item(c)?);
            Some(())
        })?;
        Some(Some(items))
    }

    /// A key without escapes.
    pub(crate) fn key(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.at;
        let end = start + plain(&self.bytes()[start..]);
        if self.bytes().get(end) != Some(&b'"') {
            return None;
        }
        self.at = end + 1;
        Some(&self.text[start..end])
    }

    /// A string or `null`.
    pub(crate) fn string(&mut self) -> Option<Option<String>> {
        if self.null()? {
            return Some(None);
        }
        self.eat(b'"')?;
        let bytes = self.bytes();
        let start = self.at;
        let mut i = start + plain(&bytes[start..]);
        if *bytes.get(i)? == b'"' {
            self.at = i + 1;
            return Some(Some(self.text[start..i].to_owned()));
        }
        // The text between the escapes and each escaped character go into
        // the scratch buffer; the string is one copy of it.
        let out = &mut self.scratch;
        out.clear();
        out.extend_from_slice(&bytes[start..i]);
        loop {
            match *bytes.get(i)? {
                b'"' => {
                    self.at = i + 1;
                    return std::str::from_utf8(out).ok().map(|s| Some(s.to_owned()));
                }
                b'\\' => {
                    let c = match *bytes.get(i + 1)? {
                        b'"' => Some(b'"'),
                        b'\\' => Some(b'\\'),
                        b'/' => Some(b'/'),
                        b'b' => Some(0x08),
                        b'f' => Some(0x0c),
                        b'n' => Some(b'\n'),
                        b'r' => Some(b'\r'),
                        b't' => Some(b'\t'),
                        b'u' => None,
                        _ => return None,
                    };
                    if let Some(c) = c {
                        out.push(c);
                        i += 2;
                    } else {
                        let (c, len) = unicode(&bytes[i..])?;
                        out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                        i += len;
                    }
                }
                // A control character.
                _ => return None,
            }
            // The plain text up to the next stop: eight bytes at a time,
            // each word copied whole and the bytes past the stop dropped.
            loop {
                let Some(word) = bytes.get(i..i + 8) else {
                    let n = plain(&bytes[i..]);
                    out.extend_from_slice(&bytes[i..i + n]);
                    i += n;
                    break;
                };
                let word: [u8; 8] = word.try_into().unwrap_or_default();
                let stops = string_stops(u64::from_le_bytes(word));
                out.extend_from_slice(&word);
                if stops != 0 {
                    let n = (stops.trailing_zeros() / 8) as usize;
                    out.truncate(out.len() - 8 + n);
                    i += n;
                    break;
                }
                i += 8;
            }
        }
    }

    /// A string skipped (its escapes need not be read).
    fn skip_string(&mut self) -> Option<()> {
        self.eat(b'"')?;
        let bytes = self.bytes();
        let mut i = self.at;
        loop {
            i += plain(&bytes[i..]);
            match *bytes.get(i)? {
                b'"' => {
                    self.at = i + 1;
                    return Some(());
                }
                b'\\' if i + 1 < bytes.len() => i += 2,
                _ => return None,
            }
        }
    }

    /// An object skipped: its keys may have escapes (they are not read).
    fn skip_object(&mut self, depth: u32) -> Option<()> {
        self.delimited(b'{', b'}', |c| {
            c.skip_string()?;
            c.eat(b':')?;
            c.skip(depth)
        })
    }

    /// An integer (no fraction, no exponent) that fits in 64 bits, or `null`.
    pub(crate) fn int(&mut self) -> Option<Option<i64>> {
        if self.null()? {
            return Some(None);
        }
        let bytes = self.bytes();
        let start = self.at;
        let first = start + usize::from(bytes.get(start) == Some(&b'-'));
        // Every event's timestamps: eight digits at a time, summed as read
        // (up to 18 digits fit an i64 whatever they are).
        let mut end = first;
        let mut n: i64 = 0;
        while let Some(word) = bytes.get(end..end + 8)
            && end - first <= 10
        {
            let word = u64::from_le_bytes(word.try_into().unwrap_or_default());
            let Some(eight) = eight_digits(word) else {
                break;
            };
            n = n * 100_000_000 + eight as i64;
            end += 8;
        }
        while let Some(d) = bytes.get(end).filter(|b| b.is_ascii_digit()) {
            n = n.wrapping_mul(10).wrapping_add(i64::from(d - b'0'));
            end += 1;
        }
        let digits = end - first;
        // No digits, or a leading zero (JSON has none).
        if digits == 0 || (digits > 1 && bytes[first] == b'0') {
            return None;
        }
        if matches!(bytes.get(end), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        self.at = end;
        if digits <= 18 {
            return Some(Some(if first > start { -n } else { n }));
        }
        self.text[start..end].parse().ok().map(Some)
    }

    /// Any value, read only to pass it.
    pub(crate) fn skip(&mut self, depth: u32) -> Option<()> {
        let depth = depth.checked_sub(1)?;
        match self.peek()? {
            b'"' => self.skip_string(),
            b'{' => self.skip_object(depth),
            b'[' => self.array(|c| c.skip(depth)),
            b't' => self.literal("true").then_some(()),
            b'f' => self.literal("false").then_some(()),
            b'n' => self.literal("null").then_some(()),
            b'-' | b'0'..=b'9' => {
                let len = self.bytes()[self.at..]
                    .iter()
                    .take_while(|b| matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                    .count();
                // Checked as a number, so that a wrong one is not passed.
                self.text[self.at..self.at + len].parse::<f64>().ok()?;
                self.at += len;
                Some(())
            }
            _ => None,
        }
    }
}

/// The value of eight ASCII digits read as a little-endian word (the first
/// digit in the lowest byte); `None` unless all eight are digits.
fn eight_digits(word: u64) -> Option<u32> {
    const HIGHS: u64 = 0xF0F0_F0F0_F0F0_F0F0;
    // A digit is 0x30-0x39: its high nibble is 3, and adding 6 does not
    // carry into it.
    let digits = (word & HIGHS) | (((word.wrapping_add(0x0606_0606_0606_0606)) & HIGHS) >> 4);
    if digits != 0x3333_3333_3333_3333 {
        return None;
    }
    // Pairs, then fours, then eight (the digits' place values folded in
    // by multiplication).
    let w = word - 0x3030_3030_3030_3030;
    let w = w.wrapping_mul(10).wrapping_add(w >> 8);
    let w = ((w & 0x0000_00FF_0000_00FF).wrapping_mul(100 + (1_000_000 << 32))
        + ((w >> 16) & 0x0000_00FF_0000_00FF).wrapping_mul(1 + (10_000 << 32)))
        >> 32;
    Some(w as u32)
}

/// The character of a `\uXXXX` escape (two of them for a surrogate pair)
/// at the start of `bytes`, and the escape's length.
fn unicode(bytes: &[u8]) -> Option<(char, usize)> {
    let hex = |at: usize| -> Option<u32> {
        let digits = std::str::from_utf8(bytes.get(at..at + 4)?).ok()?;
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u32::from_str_radix(digits, 16).ok()
    };
    let first = hex(2)?;
    match first {
        0xD800..=0xDBFF => {
            if bytes.get(6..8)? != b"\\u" {
                return None;
            }
            let low = hex(8)?;
            if !(0xDC00..=0xDFFF).contains(&low) {
                return None;
            }
            let c = char::from_u32(0x10000 + ((first - 0xD800) << 10) + (low - 0xDC00))?;
            Some((c, 12))
        }
        0xDC00..=0xDFFF => None,
        _ => Some((char::from_u32(first)?, 6)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `Cursor::int` of `text`, and where it stopped.
    fn int(text: &str) -> (Option<Option<i64>>, usize) {
        let mut c = Cursor::new(text);
        let n = c.int();
        (n, c.at)
    }

    #[test]
    fn integers_of_every_length_read_as_serde_json_reads_them() {
        assert_eq!(int("1700000000000,"), (Some(Some(1_700_000_000_000)), 13));
        assert_eq!(int("-12345678}"), (Some(Some(-12_345_678)), 9));
        assert_eq!(
            int("123456789012345678]"),
            (Some(Some(123_456_789_012_345_678)), 18)
        );
        assert_eq!(int(&i64::MAX.to_string()), (Some(Some(i64::MAX)), 19));
        assert_eq!(int(&i64::MIN.to_string()), (Some(Some(i64::MIN)), 20));
        assert_eq!(int("99999999999999999999").0, None, "past i64");
        assert_eq!(int("null").0, Some(None));
        for bad in ["01", "-", "1.5", "12345678e2", "", "-0123456789", "x1"] {
            assert_eq!(int(bad).0, None, "{bad:?}");
        }
        // Eight bytes that are not all digits: the word is not taken whole.
        assert_eq!(int("1234567:9").0, Some(Some(1_234_567)));
        assert_eq!(int("12345678/9").0, Some(Some(12_345_678)));
    }

    proptest! {
        #[test]
        fn any_integer_text_reads_as_serde_json_reads_it(
            digits in "-?[0-9]{1,24}",
            after in prop_oneof![Just(""), Just(","), Just("}"), Just("."), Just("e1"), Just("a"), Just("/"), Just(":")],
        ) {
            let text = format!("{digits}{after}");
            let expected = if after.starts_with(['.', 'e']) {
                None
            } else if digits == "-0" {
                // serde_json reads it as a float (negative zero); it is 0.
                Some(Some(0))
            } else {
                serde_json::from_str::<i64>(&digits).ok().map(Some)
            };
            prop_assert_eq!(int(&text).0, expected, "{}", text);
        }
    }
}
