//! A rule's `pcre`, compiled: with the regex crate (linear in the bytes it scans) wherever it
//! can, and with PCRE2 (backtracking, what Suricata runs) for what the regex crate lacks —
//! backreferences, look-around, atomic groups and the like — under Suricata's default match
//! limits, so that no pattern and no input makes one search run away: a search that reaches
//! them gives up, and the caller counts it.

use regex::bytes::{Regex, RegexBuilder};

/// The flags a rule's pcre gives its pattern (`/.../ismx`).
#[derive(Debug, Default, Clone, Copy)]
pub struct PcreFlags {
    pub caseless: bool,
    pub dotall: bool,
    pub multiline: bool,
    pub extended: bool,
}

/// Suricata's defaults (`pcre.match-limit`, `pcre.match-limit-recursion`): a PCRE2 search
/// tries at most this many backtracking steps, this deep.
const MATCH_LIMIT: u32 = 3500;
const DEPTH_LIMIT: u32 = 1500;

/// Work units a PCRE2 search is charged beyond the bytes it scans: its backtracking, bounded
/// by [`MATCH_LIMIT`] steps.
pub const BACKTRACKING_WORK: usize = MATCH_LIMIT as usize;

/// A compiled pattern.
#[derive(Debug, Clone)]
pub enum PcreRegex {
    /// The regex crate's: a search is linear in the bytes it scans.
    Linear(Regex),
    /// PCRE2's, for patterns the regex crate cannot compile.
    Backtracking(pcre2::bytes::Regex),
}

/// A PCRE2 search reached its match limits: neither a match nor a miss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GaveUp;

impl PcreRegex {
    /// Compiles `pattern` over bytes (no UTF-8, as Suricata's PCRE2): the regex crate's engine
    /// if it takes the pattern, else PCRE2's. The error is the regex crate's when PCRE2 does
    /// not take it either, PCRE2's when the regex crate took none of it.
    pub fn new(pattern: &str, flags: &PcreFlags) -> Result<PcreRegex, String> {
        let linear = RegexBuilder::new(pattern)
            .unicode(false)
            .case_insensitive(flags.caseless)
            .dot_matches_new_line(flags.dotall)
            .multi_line(flags.multiline)
            .ignore_whitespace(flags.extended)
            .size_limit(1 << 22)
            .build();
        let error = match linear {
            Ok(regex) => return Ok(PcreRegex::Linear(regex)),
            Err(e) => e.to_string().lines().last().unwrap_or("does not compile").trim().to_string(),
        };
        // The limits go into the pattern (PCRE2's `(*LIMIT_MATCH=n)`), where they can only
        // lower the library's.
        let limited = format!("(*LIMIT_MATCH={MATCH_LIMIT})(*LIMIT_DEPTH={DEPTH_LIMIT}){pattern}");
        pcre2::bytes::RegexBuilder::new()
            .caseless(flags.caseless)
            .dotall(flags.dotall)
            .multi_line(flags.multiline)
            .extended(flags.extended)
            .build(&limited)
            .map(PcreRegex::Backtracking)
            .map_err(|e| format!("{error} (nor PCRE2: {e})"))
    }

    /// Whether the regex crate runs it (else PCRE2).
    pub fn is_linear(&self) -> bool {
        matches!(self, PcreRegex::Linear(_))
    }

    pub fn is_match(&self, text: &[u8]) -> Result<bool, GaveUp> {
        match self {
            PcreRegex::Linear(r) => Ok(r.is_match(text)),
            PcreRegex::Backtracking(r) => r.is_match(text).map_err(|_| GaveUp),
        }
    }

    /// The first match starting at or after `at`: its start and end.
    pub fn find_at(&self, text: &[u8], at: usize) -> Result<Option<(usize, usize)>, GaveUp> {
        match self {
            PcreRegex::Linear(r) => Ok(r.find_at(text, at).map(|m| (m.start(), m.end()))),
            PcreRegex::Backtracking(r) => r.find_at(text, at).map(|m| m.map(|m| (m.start(), m.end()))).map_err(|_| GaveUp),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(pattern: &str) -> PcreRegex {
        PcreRegex::new(pattern, &PcreFlags::default()).unwrap()
    }

    #[test]
    fn backreferences_and_look_around_run_on_pcre2() {
        let r = compile(r"(\w)\1");
        assert!(!r.is_linear());
        assert_eq!(r.find_at(b"abccd", 0), Ok(Some((2, 4))));
        let r = compile(r"foo(?!bar)");
        assert_eq!((r.is_match(b"foobar"), r.is_match(b"foobaz")), (Ok(false), Ok(true)));
        let r = compile(r"(?<=\x00)\xff");
        assert_eq!(r.find_at(b"\xff\x00\xff", 0), Ok(Some((2, 3))), "bytes, not UTF-8");
        let caseless = PcreRegex::new(r"(a)\1", &PcreFlags { caseless: true, ..PcreFlags::default() }).unwrap();
        assert_eq!(caseless.is_match(b"xAa"), Ok(true));
        assert!(compile(r"a+b").is_linear());
    }

    #[test]
    fn a_runaway_search_gives_up_at_suricatas_limits() {
        // Catastrophic backtracking that a backreference forces onto PCRE2.
        let r = compile(r"^(a+)+\1$");
        let mut text = vec![b'a'; 40];
        text.push(b'!');
        assert_eq!(r.is_match(&text), Err(GaveUp));
        assert_eq!(r.is_match(b"aaa!"), Ok(false));
        assert_eq!(r.is_match(b"aaaa"), Ok(true));
    }

    #[test]
    fn what_neither_engine_takes_is_refused_with_both_reasons() {
        let e = PcreRegex::new(r"a(b", &PcreFlags::default()).unwrap_err();
        assert!(e.contains("nor PCRE2"), "{e}");
    }
}
