//! Streams built to make a signature matcher stall — a repeated fast pattern (stock ET Open's
//! sid 2102699 against `TO_CHAR ` to port 1521), every ET Open fast pattern at once, classic
//! catastrophic patterns, tiny segments — cost at most a fixed amount of verification work per
//! stream byte (the matcher's own count of bytes examined, so the test does not depend on the
//! machine's speed), and a bounded multiple of a plain stream's time.

use mbox_sig::{parse_rules, Vars};
use sig_match::inspect::{Endpoints, Matcher, Settings, INITIAL_WORK, WORK_PER_BYTE};
use std::time::{Duration, Instant};

const STREAM: usize = 1 << 20;

fn et_open() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/rules/et-open/et-open.rules")).unwrap()
}

fn matcher(rules: &str) -> Matcher {
    let mut vars = Vars::default();
    for name in ["HOME_NET", "EXTERNAL_NET"] {
        vars.addresses.insert(name.into(), "any".into());
    }
    let loaded = parse_rules(rules, &vars);
    assert!(!loaded.rules.is_empty());
    Matcher::new(loaded.rules, Settings::default())
}

/// Feeds `stream` as the client's bytes in `segment`-byte pieces; returns (alerts, work, time).
fn feed(m: &mut Matcher, port: u16, stream: &[u8], segment: usize) -> (u64, u64, Duration) {
    let ends = Endpoints { addrs: ["10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()], ports: [40000, port] };
    let (alerts, work) = (m.stats.alerts, m.stats.work);
    let started = Instant::now();
    let mut flow = m.flow(1, ends, true, false);
    let mut offset = 0;
    for piece in stream.chunks(segment) {
        m.stream_data(&mut flow, 0, offset, piece, true, &mut |_| {});
        offset += piece.len() as u64;
    }
    m.stream_end(&mut flow, 0, &mut |_| {});
    m.end(flow, &mut |_| {});
    (m.stats.alerts - alerts, m.stats.work - work, started.elapsed())
}

/// A stream of `STREAM` bytes repeating `unit`.
fn repeated(unit: &[u8]) -> Vec<u8> {
    unit.iter().copied().cycle().take(STREAM).collect()
}

/// Bytes that look like nothing (a fixed xorshift sequence).
fn noise() -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..STREAM)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Every stream content of the rule file, one after another, as many times as fit.
fn every_pattern(rules: &str) -> Vec<u8> {
    let loaded = parse_rules(rules, &Vars::default());
    let mut unit = Vec::new();
    for rule in &loaded.rules {
        for (_, item) in &rule.items {
            if let mbox_sig::rule::Item::Content(c) = item {
                unit.extend_from_slice(&c.pattern);
                unit.push(b' ');
            }
        }
    }
    repeated(&unit)
}

/// The work bound every stream must keep: what a direction earns for its bytes, and the
/// scans that cannot wait (bytes about to leave the window, the stream's end), which take each
/// byte once more, and a search's overshoot of the budget.
fn bound(bytes: usize) -> u64 {
    2 * INITIAL_WORK + (WORK_PER_BYTE + 2) * bytes as u64
}

#[test]
fn et_open_against_adversarial_streams_does_bounded_work() {
    let rules = et_open();
    let mut m = matcher(&rules);
    let (_, _, plain) = feed(&mut m, 80, &noise(), 1448);
    let cases: Vec<(&str, u16, Vec<u8>, usize)> = vec![
        ("TO_CHAR to 1521", 1521, repeated(b"TO_CHAR "), 1448),
        ("TO_CHAR in 8-byte segments", 1521, repeated(b"TO_CHAR "), 8),
        ("every ET Open content", 80, every_pattern(&rules), 1448),
        ("one byte repeated", 80, vec![b'A'; STREAM], 1448),
        ("an HTTP head that never ends", 80, [b"GET / HTTP/1.1\r\n".as_slice(), &repeated(b"X-A: b\r\n")].concat(), 64),
    ];
    for (name, port, stream, segment) in cases {
        let (_, work, took) = feed(&mut m, port, &stream, segment);
        assert!(work <= bound(stream.len()), "{name}: {work} bytes examined for {} stream bytes", stream.len());
        // Time is only a sanity check (the machine is shared): the work bound is the claim.
        assert!(took < plain * 200 + Duration::from_secs(2), "{name}: {took:?} (a plain stream took {plain:?})");
        eprintln!(
            "{name}: {work} bytes examined for {} ({:.1} per byte), {took:?} (plain {plain:?})",
            stream.len(),
            work as f64 / stream.len() as f64
        );
    }
    assert_eq!(m.kept_bytes(), 0, "every flow's bytes were let go");
    // Not blind either: the attack at the end of a flood of its fast pattern is found.
    let mut attack = repeated(b"TO_CHAR ");
    attack.truncate(STREAM - 400);
    attack.extend_from_slice(b"TO_CHAR(SYSTIMESTAMP, '");
    attack.extend(std::iter::repeat_n(b'x', 300));
    for segment in [1448, 8] {
        let (alerts, work, _) = feed(&mut m, 1521, &attack, segment);
        assert!(alerts >= 1, "segments of {segment}: the TO_CHAR overflow was not found");
        assert!(work <= bound(attack.len()));
    }
}

#[test]
fn catastrophic_patterns_do_bounded_work() {
    let rules = [
        r#"alert tcp any any -> any any (msg:"nested"; content:"a"; content:"a"; distance:0; within:50; content:"a"; distance:0; within:50; content:"b"; distance:0; within:50; sid:1;)"#,
        r#"alert tcp any any -> any any (msg:"open"; content:"a"; content:"a"; distance:0; content:"a"; distance:0; content:"b"; distance:0; sid:2;)"#,
        r#"alert tcp any any -> any any (msg:"pcre"; content:"aa"; pcre:"/(a+)+b/R"; content:"c"; distance:0; sid:3;)"#,
        r#"alert tcp any any -> any any (msg:"neg"; content:"a"; content:!"aaaaaaaaab"; distance:0; within:100; content:"z"; distance:0; sid:4;)"#,
        // A backreference and a look-ahead: PCRE2's backtracking, under its match limits.
        r#"alert tcp any any -> any any (msg:"backtracking"; content:"aa"; pcre:"/(a+)+\1(?!x)b/R"; sid:5;)"#,
    ]
    .join("\n");
    let mut m = matcher(&rules);
    for (name, stream, segment) in
        [("a", vec![b'a'; STREAM], 1448), ("a, tiny segments", vec![b'a'; STREAM / 8], 3), ("ab", repeated(b"aab"), 1448)]
    {
        let (_, work, took) = feed(&mut m, 80, &stream, segment);
        assert!(work <= bound(stream.len()), "{name}: {work} bytes examined for {} stream bytes", stream.len());
        assert!(took < Duration::from_secs(20), "{name}: {took:?}");
    }
    // Bounded, and still a matcher: the rules alert where they should.
    let (alerts, _, _) = feed(&mut m, 80, b"xx aaab aac", 1448);
    assert_eq!(alerts, 3, "nested, open and pcre");
    let (alerts, _, _) = feed(&mut m, 80, b"xx aaaab", 1448);
    assert_eq!(alerts, 3, "nested, open and backtracking");
}
