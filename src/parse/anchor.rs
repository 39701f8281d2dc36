//! The bytes a start-anchored pattern can begin with.
//!
//! A rule's `when: {regex: '^\d{4}-...'}` can only match a message whose
//! first byte is a digit. Most messages are not such lines (a JSON log
//! starts with `{`), and asking the regex engine costs a few hundred
//! instructions even when it fails at the first byte. [`FirstBytes::of`]
//! reads the pattern's syntax once, at load, and gives the set of first
//! bytes a match can have; a message whose first byte is not in it is
//! turned away with one table lookup.
//!
//! The set may hold more than the pattern accepts (a non-ASCII class lets
//! every UTF-8 lead byte through), never less: the regex still decides
//! for every message the set lets through.

use regex_syntax::hir::{Class, Hir, HirKind, Look};

/// The bytes a match of a start-anchored pattern can begin with.
#[derive(Clone)]
pub(crate) struct FirstBytes([bool; 256]);

impl std::fmt::Debug for FirstBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.iter().filter(|&&b| b).count();
        write!(f, "FirstBytes({n} bytes)")
    }
}

impl FirstBytes {
    /// The set for `pattern`, when every match must start at the start of
    /// the text (a leading `^` outside multi-line mode) and is not empty.
    /// `None` when no such set holds: the regex alone decides.
    pub(crate) fn of(pattern: &str) -> Option<FirstBytes> {
        let hir = regex_syntax::Parser::new().parse(pattern).ok()?;
        let HirKind::Concat(items) = hir.kind() else {
            return None;
        };
        let (first, rest) = items.split_first()?;
        if *first.kind() != HirKind::Look(Look::Start) {
            return None;
        }
        let mut set = FirstBytes([false; 256]);
        let nullable = set.add_concat(rest);
        (!nullable).then_some(set)
    }

    /// Whether a match may start with `text`'s first byte.
    pub(crate) fn admits(&self, text: &str) -> bool {
        text.as_bytes().first().is_some_and(|&b| self.0[b as usize])
    }

    /// Adds the first bytes of `items` in sequence; returns whether the
    /// whole can match the empty string.
    fn add_concat(&mut self, items: &[Hir]) -> bool {
        for item in items {
            if !self.add(item) {
                return false;
            }
        }
        true
    }

    /// Adds the bytes a match of `hir` can begin with; returns whether
    /// `hir` can match the empty string (then what follows it counts too).
    fn add(&mut self, hir: &Hir) -> bool {
        match hir.kind() {
            HirKind::Empty => true,
            // Zero-width: it does not consume the first byte.
            HirKind::Look(_) => true,
            HirKind::Literal(lit) => match lit.0.first() {
                Some(&b) => {
                    self.0[b as usize] = true;
                    false
                }
                None => true,
            },
            HirKind::Class(Class::Bytes(class)) => {
                for r in class.iter() {
                    self.range(r.start(), r.end());
                }
                false
            }
            HirKind::Class(Class::Unicode(class)) => {
                for r in class.iter() {
                    let (start, end) = (r.start() as u32, r.end() as u32);
                    if start < 0x80 {
                        self.range(start as u8, end.min(0x7f) as u8);
                    }
                    if end >= 0x80 {
                        // Every lead byte of a multi-byte UTF-8 sequence.
                        self.range(0xc2, 0xf4);
                    }
                }
                false
            }
            HirKind::Repetition(rep) => {
                let nullable = self.add(&rep.sub);
                nullable || rep.min == 0
            }
            HirKind::Capture(cap) => self.add(&cap.sub),
            HirKind::Concat(items) => self.add_concat(items),
            HirKind::Alternation(alts) => {
                let mut nullable = false;
                for alt in alts {
                    nullable |= self.add(alt);
                }
                nullable
            }
        }
    }

    fn range(&mut self, start: u8, end: u8) {
        for b in start..=end {
            self.0[b as usize] = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use regex::Regex;

    #[test]
    fn an_anchored_pattern_admits_only_its_first_bytes() {
        let digits = FirstBytes::of(r"^\d{4}-\d\d-\d\dT").unwrap();
        assert!(digits.admits("2024-01-01T00:00:00Z\tx"));
        assert!(!digits.admits(r#"{"level":"info"}"#));
        assert!(!digits.admits(""));
        // Unicode digits (`\d` is Unicode) start with a lead byte.
        assert!(digits.admits("٣"));

        let alts = FirstBytes::of(r"^(?:START|END) RequestId").unwrap();
        assert!(alts.admits("START RequestId: 1") && alts.admits("END RequestId: 1"));
        assert!(!alts.admits("REPORT RequestId: 1"));

        // An optional start lets what follows it in.
        let optional = FirstBytes::of(r"^a?b").unwrap();
        assert!(optional.admits("b") && optional.admits("ab") && !optional.admits("c"));
        let case = FirstBytes::of(r"(?i)^x").unwrap();
        assert!(case.admits("X") && case.admits("x"));
    }

    #[test]
    fn a_pattern_without_a_leading_anchor_or_that_can_match_empty_has_no_set() {
        for pattern in [
            r"\d{4}", r"(?m)^\d", r"^\d*", r"^$", r"^", r"a^b", r"(", r"^(?:a|)",
        ] {
            assert!(FirstBytes::of(pattern).is_none(), "{pattern}");
        }
    }

    proptest! {
        /// The set never turns away a message the regex matches (texts from
        /// the patterns' own letters, so that many do match).
        #[test]
        fn the_set_never_turns_away_a_match(
            pattern in r"\^(\[a-c\]|x|\\d|\.|\(y\|z\)|\\s)(\?|\*|\+|)(b|\\w|)",
            text in r"[a-cbxyz0-9_ \t٣é\n]{0,6}",
        ) {
            let re = Regex::new(&pattern).unwrap();
            if let Some(set) = FirstBytes::of(&pattern) && re.is_match(&text) {
                prop_assert!(set.admits(&text), "{pattern} {text:?}");
            }
        }
    }
}
