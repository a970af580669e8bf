//! Matching compiled rules against buffers: a multi-pattern prefilter (Aho-Corasick over one
//! "fast pattern" per rule, in the buffer that pattern looks at) picks candidate rules, and each
//! candidate is verified step by step — contents with their absolute and relative bounds,
//! negations and pcres — backtracking over earlier matches the way Suricata does.

use crate::rule::{Buffer, Content, Item, Rule};
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use std::net::IpAddr;

/// Number of [`Buffer`] kinds (the index space of per-buffer tables).
pub const BUFFERS: usize = 9;

fn index(b: Buffer) -> usize {
    b as usize
}

/// The buffers one inspection can see: the stream so far, or a protocol field.
#[derive(Debug, Default, Clone, Copy)]
pub struct Buffers<'a> {
    slots: [Option<&'a [u8]>; BUFFERS],
}

impl<'a> Buffers<'a> {
    pub fn set(&mut self, buffer: Buffer, bytes: &'a [u8]) -> &mut Self {
        self.slots[index(buffer)] = Some(bytes);
        self
    }
    pub fn get(&self, buffer: Buffer) -> Option<&'a [u8]> {
        self.slots[index(buffer)]
    }
}

/// The prefilter of one buffer kind.
struct Prefilter {
    automaton: AhoCorasick,
    /// Pattern index -> rule index.
    owners: Vec<u32>,
}

/// Rules compiled for matching.
pub struct Engine {
    rules: Vec<Rule>,
    /// Per rule, its steps grouped by buffer (in rule order within each buffer).
    plans: Vec<Vec<(Buffer, Vec<Item>)>>,
    prefilters: Vec<Option<Prefilter>>,
    /// Rules without a positive content: candidates whenever their buffers are present.
    unfiltered: Vec<u32>,
}

/// Steps a verification may take before the rule is given up as not matching (pathological
/// rules against adversarial input must not stall the NF).
const MAX_STEPS: u32 = 10_000;

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
                let automaton = AhoCorasickBuilder::new()
                    .ascii_case_insensitive(true)
                    .match_kind(MatchKind::Standard)
                    .build(list.iter().map(|(p, _)| p))
                    .expect("literal patterns always build");
                Some(Prefilter { automaton, owners: list.into_iter().map(|(_, r)| r).collect() })
            })
            .collect();
        let plans = rules.iter().map(plan).collect();
        Engine { rules, plans, prefilters, unfiltered }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
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
    /// `buffers` (all the buffers it looks at must be present). Returns where the last positive
    /// match in the stream ended, or 0.
    pub fn verify(&self, rule: u32, buffers: &Buffers<'_>) -> Option<usize> {
        let mut end = 0;
        for (buffer, steps) in &self.plans[rule as usize] {
            let bytes = buffers.get(*buffer)?;
            let mut budget = MAX_STEPS;
            let Steps::Matched(last) = match_steps(steps, bytes, 0, &mut budget) else { return None };
            if *buffer == Buffer::Stream {
                end = last;
            }
        }
        Some(end)
    }
}

/// A rule's steps grouped by buffer.
fn plan(rule: &Rule) -> Vec<(Buffer, Vec<Item>)> {
    let mut groups: Vec<(Buffer, Vec<Item>)> = Vec::new();
    for (buffer, item) in &rule.items {
        match groups.iter_mut().find(|(b, _)| b == buffer) {
            Some((_, steps)) => steps.push(item.clone()),
            None => groups.push((*buffer, vec![item.clone()])),
        }
    }
    groups
}

/// The rule's longest positive content: the prefilter looks for it (any match of the rule
/// contains it, so a rule whose fast pattern is absent cannot match).
fn fast_pattern(rule: &Rule) -> Option<(Buffer, &[u8])> {
    rule.items
        .iter()
        .filter_map(|(b, i)| match i {
            Item::Content(c) if !c.negated => Some((*b, c.pattern.as_slice())),
            _ => None,
        })
        .max_by_key(|(_, p)| p.len())
}

/// The outcome of matching the steps after one position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Steps {
    /// All steps matched; the end of the last positive match.
    Matched(usize),
    /// Not from here; an earlier step may try its next occurrence.
    NoMatch,
    /// Not from here nor from any later position (or the budget ran out): stop backtracking.
    Never,
}

/// Matches `steps[0..]` in `bytes` after a previous match that ended at `prev_end`. Tries the
/// later occurrences of a positive step when the steps after it fail (a later step may only fit
/// after a later occurrence), but stops, as Suricata does, as soon as a step is not found in a
/// window that only shrinks as `prev_end` grows: no later occurrence can help then.
fn match_steps(steps: &[Item], bytes: &[u8], prev_end: usize, budget: &mut u32) -> Steps {
    let Some((first, rest)) = steps.split_first() else { return Steps::Matched(prev_end) };
    if *budget == 0 {
        return Steps::Never;
    }
    *budget -= 1;
    match first {
        Item::Content(c) if c.negated => {
            if find_content(c, bytes, prev_end, 0).is_some() {
                return Steps::NoMatch;
            }
            match_steps(rest, bytes, prev_end, budget)
        }
        Item::Content(c) => {
            let mut from = 0;
            let mut found_any = false;
            while let Some(end) = find_content(c, bytes, prev_end, from) {
                found_any = true;
                match match_steps(rest, bytes, end, budget) {
                    Steps::NoMatch => {}
                    done => return done,
                }
                if *budget == 0 {
                    return Steps::Never;
                }
                *budget -= 1;
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
        Item::Pcre(p) => {
            // A relative pcre searches the buffer from the previous match on, as a buffer of its
            // own (Suricata hands PCRE the rest of the buffer), so `^` anchors there.
            let start = if p.relative { prev_end.min(bytes.len()) } else { 0 };
            let subject = &bytes[start..];
            if p.negated {
                return if p.regex.is_match(subject) { Steps::NoMatch } else { match_steps(rest, bytes, prev_end, budget) };
            }
            // Every match, not only the first: a later step may need a later one.
            let mut at = 0;
            while let Some(m) = p.regex.find_at(subject, at) {
                match match_steps(rest, bytes, start + m.end(), budget) {
                    Steps::NoMatch => {}
                    done => return done,
                }
                if *budget == 0 {
                    return Steps::Never;
                }
                *budget -= 1;
                at = m.start() + 1;
                if at > subject.len() {
                    break;
                }
            }
            Steps::NoMatch
        }
    }
}

/// The end of the first occurrence of `c` that starts at or after `from` and within its
/// bounds, given the previous match's end.
fn find_content(c: &Content, bytes: &[u8], prev_end: usize, from: usize) -> Option<usize> {
    let len = c.pattern.len();
    let (mut start, mut limit) = (0usize, bytes.len());
    if let Some(offset) = c.offset {
        start = offset as usize;
    }
    if let Some(depth) = c.depth {
        limit = limit.min(start.saturating_add(depth as usize));
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
        let at = bytes.len().checked_sub(len)?;
        return (at >= start && at + len <= limit && eq(&bytes[at..], &c.pattern, c.nocase)).then_some(bytes.len());
    }
    if limit < start.saturating_add(len) {
        return None;
    }
    let window = &bytes[start..limit];
    let at = if c.nocase {
        window.windows(len).position(|w| w.eq_ignore_ascii_case(&c.pattern))
    } else {
        memchr::memmem::find(window, &c.pattern)
    }?;
    Some(start + at + len)
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
        Engine::new(rules.iter().enumerate().map(|(i, r)| parse_rule(r, i + 1, &Vars::default()).unwrap().unwrap()).collect())
    }

    fn matching(e: &Engine, buffers: &Buffers<'_>) -> Vec<u32> {
        let mut c = Vec::new();
        e.candidates(buffers, &mut c);
        c.into_iter().filter(|&r| e.verify(r, buffers).is_some()).map(|r| e.rules()[r as usize].sid).collect()
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
    fn a_pathological_rule_gives_up() {
        let e = engine(&[
            r#"alert tcp any any -> any any (msg:"p"; content:"a"; content:"a"; distance:0; content:"a"; distance:0; content:"b"; distance:0; sid:1;)"#,
        ]);
        let input = vec![b'a'; 5000];
        assert!(matching(&e, &stream(&input)).is_empty());
    }
}
