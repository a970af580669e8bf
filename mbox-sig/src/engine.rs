//! Matching compiled rules against buffers: a multi-pattern prefilter (Aho-Corasick over one
//! "fast pattern" per rule, in the buffer that pattern looks at) picks candidate rules, and each
//! candidate is verified step by step — contents with their absolute and relative bounds,
//! negations and pcres — backtracking over earlier matches the way Suricata does.
//!
//! Verification is bounded by a budget of work, which the caller sets (sig-match earns it per
//! stream byte): every search charges what it scans — a byte through an automaton (a regex, a
//! case-insensitive literal) costs one unit, a byte passed over by memchr's vectorised literal
//! search an eighth ([`MEMCHR_BYTES_PER_UNIT`]; measured here: 0.02 ns against 1-1.5 ns) — so no
//! rule and no input can make a verification cost more than its budget. Within that, the search avoids work whose
//! outcome is already known: a step is only retried at a later occurrence when the step after
//! it is relative (what Suricata does too), and a relative step with an open-ended window that
//! is not found ends the search (later occurrences only shrink its window). Literal searches are
//! compiled once (memchr's finder, a case-insensitive Aho-Corasick for `nocase`), so each is
//! linear in the bytes it scans.

use crate::bytes::{ByteJump, ByteTest};
use crate::rule::{Buffer, Content, Item, Pcre, Rule, SizeRange};
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use memchr::memmem;
use std::net::IpAddr;

/// Number of [`Buffer`] kinds (the index space of per-buffer tables).
pub const BUFFERS: usize = Buffer::ALL.len();

fn index(b: Buffer) -> usize {
    b as usize
}

/// The buffers one inspection can see: a window of the stream, or a protocol field.
#[derive(Debug, Clone, Copy)]
pub struct Buffers<'a> {
    slots: [Option<&'a [u8]>; BUFFERS],
    /// Stream offset of the stream buffer's first byte: absolute positions (`offset`, `depth`)
    /// count from the stream's start, which may lie before the window inspected.
    stream_base: u64,
}

impl Default for Buffers<'_> {
    // By hand: arrays of more than 32 have no derived Default.
    fn default() -> Self {
        Buffers { slots: [None; BUFFERS], stream_base: 0 }
    }
}

impl<'a> Buffers<'a> {
    pub fn set(&mut self, buffer: Buffer, bytes: &'a [u8]) -> &mut Self {
        self.slots[index(buffer)] = Some(bytes);
        self
    }

    /// Sets the stream buffer to a window of the stream that starts at stream offset `base`.
    pub fn set_stream_window(&mut self, bytes: &'a [u8], base: u64) -> &mut Self {
        self.stream_base = base;
        self.set(Buffer::Stream, bytes)
    }

    pub fn get(&self, buffer: Buffer) -> Option<&'a [u8]> {
        self.slots[index(buffer)]
    }

    /// Stream offset of the stream buffer's first byte (see [`Buffers::set_stream_window`]).
    pub fn stream_base(&self) -> u64 {
        self.stream_base
    }

    /// Where absolute positions of `buffer` count from, relative to its first byte.
    fn base(&self, buffer: Buffer) -> u64 {
        if buffer == Buffer::Stream {
            self.stream_base
        } else {
            0
        }
    }
}

/// The prefilter of one buffer kind.
struct Prefilter {
    automaton: AhoCorasick,
    /// Pattern index -> rule index.
    owners: Vec<u32>,
}

/// A content's literal search, compiled once.
enum Finder {
    Exact(Box<memmem::Finder<'static>>),
    Caseless(AhoCorasick),
}

/// Bytes of a memchr literal search that cost one unit of work (see the module docs).
pub const MEMCHR_BYTES_PER_UNIT: usize = 8;

impl Finder {
    fn new(c: &Content) -> Finder {
        if c.nocase {
            Finder::Caseless(case_insensitive_automaton(std::slice::from_ref(&c.pattern)))
        } else {
            Finder::Exact(Box::new(memmem::Finder::new(&c.pattern).into_owned()))
        }
    }

    /// Start of the first occurrence in `window`.
    fn find(&self, window: &[u8]) -> Option<usize> {
        match self {
            Finder::Exact(f) => f.find(window),
            Finder::Caseless(ac) => ac.find(window).map(|m| m.start()),
        }
    }

    /// The work of scanning `bytes` bytes.
    fn cost(&self, bytes: usize) -> usize {
        match self {
            Finder::Exact(_) => bytes.div_ceil(MEMCHR_BYTES_PER_UNIT),
            Finder::Caseless(_) => bytes,
        }
    }
}

/// An Aho-Corasick automaton over literal patterns, ASCII case-insensitively. Long patterns
/// get the contiguous NFA: building a DFA follows failure links per state and byte, which
/// for a long repetitive pattern (`AAAA...`) grows with the square of its length.
fn case_insensitive_automaton<P: AsRef<[u8]>>(patterns: &[P]) -> AhoCorasick {
    let longest = patterns.iter().map(|p| p.as_ref().len()).max().unwrap_or(0);
    AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::Standard)
        .kind((longest > LONG_PATTERN).then_some(AhoCorasickKind::ContiguousNFA))
        .build(patterns)
        .expect("literal patterns always build")
}

/// Patterns longer than this are searched with an NFA (see [`case_insensitive_automaton`]).
const LONG_PATTERN: usize = 256;

/// One detection step, compiled.
enum Step {
    Content(Content, Finder),
    Pcre(Pcre),
    Size(SizeRange),
    IsDataAt { at: u32, relative: bool, negated: bool },
    ByteTest(ByteTest),
    ByteJump(ByteJump),
}

impl Step {
    fn is_relative(&self) -> bool {
        match self {
            Step::Content(c, _) => c.is_relative(),
            Step::Pcre(p) => p.relative,
            Step::Size(_) => false,
            Step::IsDataAt { relative, .. } => *relative,
            Step::ByteTest(t) => t.reading.relative,
            Step::ByteJump(j) => j.reading.relative,
        }
    }
}

/// Rules compiled for matching.
pub struct Engine {
    rules: Vec<Rule>,
    /// Per rule, its steps grouped by buffer (in rule order within each buffer).
    plans: Vec<Vec<(Buffer, Vec<Step>)>>,
    prefilters: Vec<Option<Prefilter>>,
    /// Rules without a positive content: candidates whenever their buffers are present.
    unfiltered: Vec<u32>,
}

/// What verifying a rule found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// Every step holds; where the last positive match in the stream buffer ended (an index
    /// into that buffer; 0 when the rule does not look at the stream).
    Match(usize),
    NoMatch,
    /// The budget ran out before the answer was known.
    OutOfBudget,
}

impl Engine {
    pub fn new(rules: Vec<Rule>) -> Engine {
        let mut patterns: Vec<Vec<(Vec<u8>, u32)>> = vec![Vec::new(); BUFFERS];
        let mut unfiltered = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            match fast_pattern(rule) {
                Some((buffer, pattern)) => patterns[index(buffer)].push((pattern.to_vec(), i as u32)),
                None => unfiltered.push(i as u32),
            }
        }
        let prefilters = patterns
            .into_iter()
            .map(|list| {
                if list.is_empty() {
                    return None;
                }
                let texts: Vec<&[u8]> = list.iter().map(|(p, _)| p.as_slice()).collect();
                let automaton = case_insensitive_automaton(&texts);
                Some(Prefilter { automaton, owners: list.into_iter().map(|(_, r)| r).collect() })
            })
            .collect();
        let plans = rules.iter().map(plan).collect();
        Engine { rules, plans, prefilters, unfiltered }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The length of the longest pattern the prefilter looks for in `buffer` (0 if none): a
    /// scan of a buffer that grows must start this many bytes, less one, before its new bytes
    /// to find a pattern that straddles them.
    pub fn longest_fast_pattern(&self, buffer: Buffer) -> usize {
        self.rules.iter().filter_map(fast_pattern).filter(|(b, _)| *b == buffer).map(|(_, p)| p.len()).max().unwrap_or(0)
    }

    /// Appends to `out` the rules worth verifying against `buffers` (each at most once; `out`
    /// is sorted on return).
    pub fn candidates(&self, buffers: &Buffers<'_>, out: &mut Vec<u32>) {
        let start = out.len();
        for (i, slot) in buffers.slots.iter().enumerate() {
            let (Some(bytes), Some(pf)) = (slot, &self.prefilters[i]) else { continue };
            for m in pf.automaton.find_overlapping_iter(*bytes) {
                out.push(pf.owners[m.pattern().as_usize()]);
            }
        }
        out.extend(self.unfiltered.iter().filter(|&&r| self.rules[r as usize].items.iter().all(|(b, _)| buffers.get(*b).is_some())));
        out[start..].sort_unstable();
        let mut w = start;
        for r in start..out.len() {
            if r == start || out[r] != out[w - 1] {
                out[w] = out[r];
                w += 1;
            }
        }
        out.truncate(w);
    }

    /// Whether every detection step of rule `rule` (an index into [`Engine::rules`]) holds in
    /// `buffers` (all the buffers it looks at must be present), spending at most `budget`
    /// units of work (what it spent is taken off; see the module docs).
    pub fn verify(&self, rule: u32, buffers: &Buffers<'_>, budget: &mut u64) -> Verification {
        let mut end = 0;
        for (buffer, steps) in &self.plans[rule as usize] {
            let Some(bytes) = buffers.get(*buffer) else { return Verification::NoMatch };
            let subject = Subject { bytes, base: buffers.base(*buffer) };
            match match_steps(steps, &subject, 0, budget) {
                Steps::Matched(last) if *buffer == Buffer::Stream => end = last,
                Steps::Matched(_) => {}
                Steps::NoMatch | Steps::Never => return Verification::NoMatch,
                Steps::OutOfBudget => return Verification::OutOfBudget,
            }
        }
        Verification::Match(end)
    }
}

/// A rule's steps grouped by buffer, with their searches compiled.
fn plan(rule: &Rule) -> Vec<(Buffer, Vec<Step>)> {
    let mut groups: Vec<(Buffer, Vec<Step>)> = Vec::new();
    for (buffer, item) in &rule.items {
        let step = match item {
            Item::Content(c) => Step::Content(c.clone(), Finder::new(c)),
            Item::Pcre(p) => Step::Pcre(p.clone()),
            Item::Size(s) => Step::Size(*s),
            &Item::IsDataAt { at, relative, negated } => Step::IsDataAt { at, relative, negated },
            Item::ByteTest(t) => Step::ByteTest(*t),
            Item::ByteJump(j) => Step::ByteJump(*j),
        };
        match groups.iter_mut().find(|(b, _)| b == buffer) {
            Some((_, steps)) => steps.push(step),
            None => groups.push((*buffer, vec![step])),
        }
    }
    groups
}

/// The rule's longest positive content, or its first [`FAST_PATTERN_MAX`] bytes: the
/// prefilter looks for it (any match of the rule contains it, so a rule whose fast pattern is
/// absent cannot match). Short fast patterns keep short the overlap a stream scan must repeat
/// to find a pattern split across two pieces of the stream.
fn fast_pattern(rule: &Rule) -> Option<(Buffer, &[u8])> {
    rule.items
        .iter()
        .filter_map(|(b, i)| match i {
            Item::Content(c) if !c.negated => Some((*b, c.pattern.as_slice())),
            _ => None,
        })
        .max_by_key(|(_, p)| p.len())
        .map(|(b, p)| (b, &p[..p.len().min(FAST_PATTERN_MAX)]))
}

/// The longest fast pattern the prefilter looks for.
pub const FAST_PATTERN_MAX: usize = 64;

/// The bytes a rule's steps are matched in, and the buffer offset of their first byte.
struct Subject<'a> {
    bytes: &'a [u8],
    base: u64,
}

/// The outcome of matching the steps after one position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Steps {
    /// All steps matched; the end of the last positive match.
    Matched(usize),
    /// Not from here; an earlier step may try its next occurrence.
    NoMatch,
    /// Not from here nor from any later position: stop backtracking.
    Never,
    /// The budget ran out.
    OutOfBudget,
}

/// Takes `cost` units (at least one) off the budget. A search runs only when the budget covers
/// the most it can cost (see [`affords`]), and is charged what it actually scanned.
fn spend(budget: &mut u64, cost: usize) {
    *budget = budget.saturating_sub(cost.max(1) as u64);
}

/// Whether the budget covers a search that may cost up to `cost` units.
fn affords(budget: u64, cost: usize) -> bool {
    budget >= cost.max(1) as u64
}

/// Matches `steps[0..]` in the subject after a previous match that ended at `prev_end`. Tries
/// the later occurrences of a positive step when the steps after it fail, but only when the
/// next step is relative (otherwise its outcome does not depend on this step's position), and
/// stops as soon as a step is not found in a window that only shrinks as `prev_end` grows: no
/// later occurrence can help then.
fn match_steps(steps: &[Step], subject: &Subject<'_>, prev_end: usize, budget: &mut u64) -> Steps {
    let Some((first, rest)) = steps.split_first() else { return Steps::Matched(prev_end) };
    let retry = rest.first().is_some_and(Step::is_relative);
    let bytes = subject.bytes;
    match first {
        Step::Content(c, finder) if c.negated => match find_content(c, finder, subject, prev_end, 0, budget) {
            Found::At(_) => Steps::NoMatch,
            Found::Nowhere => match_steps(rest, subject, prev_end, budget),
            Found::OutOfBudget => Steps::OutOfBudget,
        },
        Step::Content(c, finder) => {
            let mut from = 0;
            let mut found_any = false;
            loop {
                let end = match find_content(c, finder, subject, prev_end, from, budget) {
                    Found::At(end) => end,
                    Found::Nowhere => break,
                    Found::OutOfBudget => return Steps::OutOfBudget,
                };
                found_any = true;
                match match_steps(rest, subject, end, budget) {
                    Steps::NoMatch if retry => {}
                    // The rest does not depend on where this step matched.
                    Steps::NoMatch => return Steps::Never,
                    done => return done,
                }
                // The next occurrence starts after this one's start.
                from = end - c.pattern.len() + 1;
            }
            // Without `within`, the window runs to the buffer's end, so a later previous match
            // only shrinks it: if nothing is here, nothing will be.
            if !found_any && c.within.is_none() {
                Steps::Never
            } else {
                Steps::NoMatch
            }
        }
        // The buffer's length holds or not, wherever the steps before matched.
        Step::Size(size) if size.contains(bytes.len()) => match_steps(rest, subject, prev_end, budget),
        Step::Size(_) => Steps::Never,
        // A number that is not there, or fails, may be there after another occurrence of the
        // match before (relative), or nowhere (absolute).
        Step::ByteTest(t) => match t.holds(bytes, prev_end) {
            Some(true) => match_steps(rest, subject, prev_end, budget),
            _ if t.reading.relative => Steps::NoMatch,
            _ => Steps::Never,
        },
        // The steps after it count from where it lands.
        Step::ByteJump(j) => match j.target(bytes, prev_end) {
            Some(to) => match_steps(rest, subject, to, budget),
            None if j.reading.relative => Steps::NoMatch,
            None => Steps::Never,
        },
        &Step::IsDataAt { at, relative, negated } => {
            // Absolute positions count from the stream's start, which the window may lie past.
            let end = subject.base + bytes.len() as u64;
            // Suricata's test: relative, at least `at` bytes after the match; absolute, a byte at
            // position `at`.
            let there = if relative { (prev_end as u64).saturating_add(u64::from(at)) <= bytes.len() as u64 } else { u64::from(at) < end };
            match (there != negated, relative) {
                (true, _) => match_steps(rest, subject, prev_end, budget),
                // Another occurrence of the match before may end elsewhere.
                (false, true) => Steps::NoMatch,
                (false, false) => Steps::Never,
            }
        }
        Step::Pcre(p) => {
            // A relative pcre searches the buffer from the previous match on, as a buffer of its
            // own (Suricata hands PCRE the rest of the buffer), so `^` anchors there.
            let start = if p.relative { prev_end.min(bytes.len()) } else { 0 };
            let text = &bytes[start..];
            // An anchored pattern needs the buffer's start, which a window of a stream that
            // began earlier does not hold.
            let beheaded = !p.relative && p.anchored && subject.base > 0;
            // A PCRE2 search may backtrack as well as scan (up to its match limit).
            let backtracking = if p.regex.is_linear() { 0 } else { crate::pcre::BACKTRACKING_WORK };
            if !affords(*budget, text.len() + backtracking) {
                return Steps::OutOfBudget;
            }
            if p.negated {
                spend(budget, text.len() + backtracking);
                let found = if beheaded { Ok(false) } else { p.regex.is_match(text) };
                return match found {
                    Ok(true) => Steps::NoMatch,
                    Ok(false) => match_steps(rest, subject, prev_end, budget),
                    // Neither found nor not: given up.
                    Err(_) => Steps::OutOfBudget,
                };
            }
            if beheaded {
                return Steps::Never;
            }
            // Every match, not only the first: a later step may need a later one.
            let mut at = 0;
            let mut found_any = false;
            loop {
                if !affords(*budget, text.len() - at + backtracking) {
                    return Steps::OutOfBudget;
                }
                // A search that reached PCRE2's match limits decides nothing: given up.
                let Ok(found) = p.regex.find_at(text, at) else {
                    spend(budget, text.len() - at + backtracking);
                    return Steps::OutOfBudget;
                };
                // A search scans at most to the end of the text from where it starts; a match
                // ends where it was decided (the lazy DFA may look one byte further).
                spend(budget, found.map_or(text.len(), |(_, end)| end + 1).min(text.len()) - at + backtracking);
                let Some((m_start, m_end)) = found else { break };
                found_any = true;
                match match_steps(rest, subject, start + m_end, budget) {
                    Steps::NoMatch if retry => {}
                    Steps::NoMatch => return Steps::Never,
                    done => return done,
                }
                at = m_start + 1;
                if at > text.len() {
                    break;
                }
            }
            // Not found from here: from a later start (a shorter rest of the buffer) it is not
            // found either, unless the pattern is anchored at where the search starts.
            let anchored_here = p.relative && p.anchored;
            if !found_any && !anchored_here {
                Steps::Never
            } else {
                Steps::NoMatch
            }
        }
    }
}

/// The outcome of one content search.
enum Found {
    /// The end of the occurrence.
    At(usize),
    Nowhere,
    OutOfBudget,
}

/// The first occurrence of `c` that starts at or after `from` and within its bounds, given the
/// previous match's end. Absolute bounds count from the buffer's start, `subject.base` bytes
/// before the subject's first byte.
fn find_content(c: &Content, finder: &Finder, subject: &Subject<'_>, prev_end: usize, from: usize, budget: &mut u64) -> Found {
    let bytes = subject.bytes;
    let len = c.pattern.len();
    let (mut start, mut limit) = (0usize, bytes.len());
    let absolute_start = u64::from(c.offset.unwrap_or(0));
    start = start.max(absolute_start.saturating_sub(subject.base).min(bytes.len() as u64) as usize);
    if let Some(depth) = c.depth {
        let absolute_limit = absolute_start + u64::from(depth);
        if absolute_limit <= subject.base {
            return Found::Nowhere;
        }
        limit = limit.min((absolute_limit - subject.base).min(bytes.len() as u64) as usize);
    }
    if c.is_relative() {
        let distance = i64::from(c.distance.unwrap_or(0));
        let base = (prev_end as i64 + distance).max(0) as usize;
        start = start.max(base);
        if let Some(within) = c.within {
            limit = limit.min(base.saturating_add(within as usize));
        }
    }
    start = start.max(from);
    if c.endswith {
        let Some(at) = bytes.len().checked_sub(len) else { return Found::Nowhere };
        if !affords(*budget, len) {
            return Found::OutOfBudget;
        }
        spend(budget, len);
        let here = at >= start && at + len <= limit && eq(&bytes[at..], &c.pattern, c.nocase);
        return if here { Found::At(bytes.len()) } else { Found::Nowhere };
    }
    if limit < start.saturating_add(len) {
        return Found::Nowhere;
    }
    let window = &bytes[start..limit];
    if !affords(*budget, finder.cost(window.len())) {
        return Found::OutOfBudget;
    }
    let at = finder.find(window);
    spend(budget, finder.cost(at.map_or(window.len(), |a| a + len)));
    match at {
        Some(a) => Found::At(start + a + len),
        None => Found::Nowhere,
    }
}

fn eq(a: &[u8], b: &[u8], nocase: bool) -> bool {
    if nocase {
        a.eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}

/// Which end of a flow the bytes being inspected come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Direction {
    /// True when the sender is the flow's client (originator).
    pub to_server: bool,
    pub established: bool,
}

impl Rule {
    /// Whether the header and `flow:` options allow inspecting data sent from `src:sport` to
    /// `dst:dport` in `dir`.
    pub fn header_matches(&self, src: IpAddr, sport: u16, dst: IpAddr, dport: u16, dir: Direction) -> bool {
        if self.flow.to_server.is_some_and(|t| t != dir.to_server) || self.flow.established.is_some_and(|e| e != dir.established) {
            return false;
        }
        let forward = self.src.contains(src) && self.src_ports.contains(sport) && self.dst.contains(dst) && self.dst_ports.contains(dport);
        forward
            || (self.bidirectional
                && self.src.contains(dst)
                && self.src_ports.contains(dport)
                && self.dst.contains(src)
                && self.dst_ports.contains(sport))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::Vars;
    use crate::rule::parse_rule;

    fn engine(rules: &[&str]) -> Engine {
        Engine::new(
            rules
                .iter()
                .enumerate()
                .map(|(i, r)| parse_rule(r, None, i + 1, &Vars::default(), &crate::Classifications::stock()).unwrap().unwrap())
                .collect(),
        )
    }

    fn matching(e: &Engine, buffers: &Buffers<'_>) -> Vec<u32> {
        let mut c = Vec::new();
        e.candidates(buffers, &mut c);
        c.into_iter()
            .filter(|&r| matches!(e.verify(r, buffers, &mut u64::MAX.clone()), Verification::Match(_)))
            .map(|r| e.rules()[r as usize].sid)
            .collect()
    }

    /// Bytes one verification of the engine's first rule examines.
    fn cost(e: &Engine, buffers: &Buffers<'_>) -> (Verification, u64) {
        let mut budget = u64::MAX;
        let v = e.verify(0, buffers, &mut budget);
        (v, u64::MAX - budget)
    }

    fn stream(bytes: &[u8]) -> Buffers<'_> {
        let mut b = Buffers::default();
        b.set(Buffer::Stream, bytes);
        b
    }

    #[test]
    fn contents_with_relative_bounds_backtrack() {
        let e = engine(&[
            r#"alert tcp any any -> any any (msg:"a"; content:"ab"; content:"cd"; distance:0; within:4; sid:1;)"#,
            r#"alert tcp any any -> any any (msg:"b"; content:"ab"; content:!"zz"; distance:0; within:4; sid:2;)"#,
            r#"alert tcp any any -> any any (msg:"c"; content:"GET"; offset:0; depth:3; content:"x"; endswith; sid:3;)"#,
        ]);
        // "ab" first occurs too far from "cd"; its second occurrence is close enough.
        assert_eq!(matching(&e, &stream(b"ab......abXcd")), [1, 2]);
        assert_eq!(matching(&e, &stream(b"abzz ab zz")), Vec::<u32>::new(), "every ab has zz within 4");
        assert_eq!(matching(&e, &stream(b"GET /x")), [3]);
        assert_eq!(matching(&e, &stream(b" GET /x")), Vec::<u32>::new(), "depth");
        assert_eq!(matching(&e, &stream(b"GET /xy")), Vec::<u32>::new(), "endswith");
    }

    #[test]
    fn sizes_and_isdataat_hold_on_the_buffer_and_after_the_match() {
        let e = engine(&[
            r#"alert http any any -> any any (msg:"s"; http.stat_code; content:"20"; bsize:3; sid:1;)"#,
            r#"alert tcp any any -> any any (msg:"end"; content:"ab"; isdataat:!1,relative; sid:2;)"#,
            r#"alert tcp any any -> any any (msg:"more"; content:"ab"; isdataat:2,relative; sid:3;)"#,
            r#"alert tcp any any -> any any (msg:"abs"; content:"x"; isdataat:5; sid:4;)"#,
        ]);
        let mut b = Buffers::default();
        b.set(Buffer::HttpStatCode, b"200");
        assert_eq!(matching(&e, &b), [1]);
        b.set(Buffer::HttpStatCode, b"2000");
        assert!(matching(&e, &b).is_empty(), "bsize");
        // The first "ab" has bytes after it, the last ends the buffer: backtracking finds it.
        assert_eq!(matching(&e, &stream(b"ab..ab")), [2, 3]);
        assert!(matching(&e, &stream(b"abc")).is_empty(), "one byte after ab: neither");
        assert_eq!(matching(&e, &stream(b"x.....")), [4]);
        assert!(matching(&e, &stream(b"x....")).is_empty(), "no byte at 5");
    }

    #[test]
    fn byte_jump_moves_the_next_relative_step_and_byte_test_compares() {
        // ET Open's PE download rule (sid 2018959's detection): the PE header's offset at 0x3c.
        let e = engine(&[
            r#"alert http any any -> any any (msg:"pe"; file.data; content:"MZ"; within:2; byte_jump:4,58,relative,little; content:"PE|00 00|"; distance:-64; within:4; sid:1;)"#,
            r#"alert http any any -> any any (msg:"t"; file.data; content:"MZ"; byte_test:2,>,1000,0,relative; sid:2;)"#,
        ]);
        let mut file = vec![b'.'; 256];
        file[..2].copy_from_slice(b"MZ");
        file[60..64].copy_from_slice(&128u32.to_le_bytes());
        file[128..132].copy_from_slice(b"PE\0\0");
        file[2..4].copy_from_slice(&[0x10, 0x00]);
        let mut b = Buffers::default();
        b.set(Buffer::FileData, &file);
        assert_eq!(matching(&e, &b), [1, 2]);
        file[60..64].copy_from_slice(&120u32.to_le_bytes());
        file[2..4].copy_from_slice(&[0x00, 0x10]);
        let mut b = Buffers::default();
        b.set(Buffer::FileData, &file);
        assert!(matching(&e, &b).is_empty(), "the jump lands 8 bytes short of the PE header; 16 is not above 1000");
    }

    #[test]
    fn nocase_pcre_and_buffers() {
        let e = engine(&[
            r#"alert http any any -> any any (msg:"sqli"; http.uri; content:"union"; nocase; content:"select"; nocase; distance:0; sid:2;)"#,
            r#"alert http any any -> any any (msg:"cmd"; http.uri; pcre:"/(cmd\.exe|\/bin\/sh)/i"; sid:4;)"#,
            r#"alert http any any -> any any (msg:"pe"; file.data; content:"MZ"; depth:2; content:"PE|00 00|"; distance:0; sid:5;)"#,
        ]);
        let mut b = Buffers::default();
        b.set(Buffer::HttpUri, b"/x?id=1%20UNION%20ALL%20SeLeCt%201");
        assert_eq!(matching(&e, &b), [2]);
        b.set(Buffer::HttpUri, b"/run?c=/BIN/SH");
        assert_eq!(matching(&e, &b), [4], "a pcre-only rule is always a candidate when its buffer is there");
        b.set(Buffer::FileData, b"MZ\x90\x00....PE\x00\x00L");
        assert_eq!(matching(&e, &b), [4, 5]);
        let stream_only = stream(b"MZ PE\x00\x00 union select");
        assert!(matching(&e, &stream_only).is_empty(), "contents in the stream are not file data or URIs");
    }

    #[test]
    fn headers_and_flow_options() {
        let e = engine(&[r#"alert tcp $HOME_NET any -> $EXTERNAL_NET 80 (msg:"h"; flow:established,to_server; content:"x"; sid:1;)"#]);
        let r = &e.rules()[0];
        let (home, ext): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "8.8.8.8".parse().unwrap());
        let up = Direction { to_server: true, established: true };
        assert!(r.header_matches(home, 4000, ext, 80, up));
        assert!(!r.header_matches(ext, 80, home, 4000, Direction { to_server: false, established: true }));
        assert!(!r.header_matches(home, 4000, ext, 80, Direction { to_server: true, established: false }));
        assert!(!r.header_matches(home, 4000, ext, 8080, up));
    }

    #[test]
    fn a_relative_pcre_anchors_at_the_previous_match() {
        let e = engine(&[r#"alert tcp any any -> any any (msg:"r"; content:"%7bjndi%3a"; nocase; pcre:"/^(l|r|d)/Ri"; sid:1;)"#]);
        assert_eq!(matching(&e, &stream(b"x=%7Bjndi%3Aldap://")), [1]);
        assert!(matching(&e, &stream(b"x=%7bjndi%3a ldap://")).is_empty(), "^ is right after the content");
    }

    #[test]
    fn a_pcre_tries_its_later_matches() {
        let e =
            engine(&[r#"alert tcp any any -> any any (msg:"p"; content:"zz"; pcre:"/a/R"; content:"b"; distance:0; within:1; sid:1;)"#]);
        assert_eq!(matching(&e, &stream(b"zzacab")), [1]);
    }

    #[test]
    fn a_step_that_cannot_be_found_ends_the_search() {
        // Every "A" is followed by "BB", but there is no "C": without stopping, each "A" would
        // be tried against each later "BB".
        let e =
            engine(&[r#"alert tcp any any -> any any (msg:"p"; content:"A"; content:"BB"; distance:0; content:"C"; distance:0; sid:1;)"#]);
        let input: Vec<u8> = b"\0ABB".repeat(1 << 16);
        let started = std::time::Instant::now();
        assert!(matching(&e, &stream(&input)).is_empty());
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "{:?}", started.elapsed());
        let mut ok = input.clone();
        ok.extend_from_slice(b"C");
        assert_eq!(matching(&e, &stream(&ok)), [1]);
    }

    #[test]
    fn a_pathological_rule_costs_a_bounded_multiple_of_its_input() {
        let e = engine(&[
            r#"alert tcp any any -> any any (msg:"p"; content:"a"; content:"a"; distance:0; content:"a"; distance:0; content:"b"; distance:0; sid:1;)"#,
        ]);
        let input = vec![b'a'; 5000];
        assert!(matching(&e, &stream(&input)).is_empty());
        let (v, spent) = cost(&e, &stream(&input));
        assert_eq!(v, Verification::NoMatch);
        assert!(spent < 4 * input.len() as u64, "{spent}");
    }

    #[test]
    fn a_step_that_does_not_depend_on_the_one_before_is_not_retried() {
        // Stock ET Open sid 2102699 against a stream of its fast pattern: every occurrence of
        // TO_CHAR used to run the (non-relative) pcre over the whole buffer again.
        let e = engine(&[
            r#"alert tcp any any -> any any (msg:"o"; content:"TO_CHAR"; nocase; pcre:"/TO_CHAR\s*\(\s*SYSTIMESTAMP\s*,\s*(\x27[^\x27]{256}|\x22[^\x22]{256})/smi"; sid:1;)"#,
        ]);
        let input = b"TO_CHAR ".repeat(1 << 17);
        let (v, spent) = cost(&e, &stream(&input));
        assert_eq!(v, Verification::NoMatch);
        assert!(spent <= 3 * input.len() as u64, "{spent} bytes examined for {}", input.len());
        let mut hit = input.clone();
        hit.extend_from_slice(b"TO_CHAR(SYSTIMESTAMP, '");
        hit.extend(std::iter::repeat_n(b'x', 256));
        assert_eq!(matching(&e, &stream(&hit)), [1]);
    }

    #[test]
    fn a_relative_pcre_not_found_ends_the_search() {
        let e = engine(&[r#"alert tcp any any -> any any (msg:"r"; content:"ab"; pcre:"/cd+e/R"; sid:1;)"#]);
        let input = b"ab".repeat(1 << 16);
        let (v, spent) = cost(&e, &stream(&input));
        assert_eq!(v, Verification::NoMatch);
        assert!(spent <= 3 * input.len() as u64, "{spent}");
    }

    #[test]
    fn the_budget_bounds_any_verification() {
        let e = engine(&[
            r#"alert tcp any any -> any any (msg:"p"; content:"a"; content:"a"; distance:0; within:100; content:"b"; distance:0; within:100; sid:1;)"#,
        ]);
        let input = vec![b'a'; 1 << 16];
        // Searches run only when the budget covers them: what was left is never overdrawn.
        let mut budget = 10_000;
        assert_eq!(e.verify(0, &stream(&input), &mut budget), Verification::OutOfBudget);
        assert!(budget < 10_000);
        let mut budget = 1 << 30;
        assert_eq!(e.verify(0, &stream(b"xxaayyb"), &mut budget), Verification::Match(7));
    }

    #[test]
    fn absolute_positions_count_from_the_stream_start_in_a_window() {
        let e = engine(&[
            r#"alert tcp any any -> any any (msg:"a"; content:"GET"; depth:3; sid:1;)"#,
            r#"alert tcp any any -> any any (msg:"b"; content:"xyz"; offset:100; depth:10; sid:2;)"#,
            r#"alert tcp any any -> any any (msg:"c"; pcre:"/^GET/"; sid:3;)"#,
            r#"alert tcp any any -> any any (msg:"d"; content:"GE"; pcre:"/^T/R"; sid:4;)"#,
        ]);
        let mut b = Buffers::default();
        b.set_stream_window(b"GET xyz...", 0);
        assert_eq!(matching(&e, &b), [1, 3, 4]);
        // The same bytes 100 bytes into the stream: only what may lie there matches.
        b.set_stream_window(b"GET xyz...", 100);
        assert_eq!(matching(&e, &b), [2, 4]);
        b.set_stream_window(b"GET xyz...", 96);
        assert_eq!(matching(&e, &b), [2, 4]);
        b.set_stream_window(b"GET xyz...", 105);
        assert_eq!(matching(&e, &b), [4], "offset 100 depth 10 ends before 105 + 7");
    }

    #[test]
    fn a_long_repetitive_pattern_compiles_fast() {
        let rule = format!(r#"alert tcp any any -> any any (msg:"l"; content:"{}"; nocase; sid:1;)"#, "A".repeat(30_000));
        let started = std::time::Instant::now();
        let e = engine(&[&rule]);
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "{:?}", started.elapsed());
        let mut input = vec![b'a'; 30_000];
        assert_eq!(matching(&e, &stream(&input)), [1]);
        input[29_999] = b'b';
        assert!(matching(&e, &stream(&input)).is_empty());
    }
}
