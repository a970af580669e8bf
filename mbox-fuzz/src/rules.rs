//! Signature rules (mbox_sig): parsing a rule file, and matching the rules it loads.
//!
//! Whatever the text, loading it never panics and every rule is loaded or refused with its
//! line. The engine, on any buffers: verification never panics and a match ends inside its
//! buffer; the prefilter is sound (a rule that matches is among the candidates); a verdict
//! does not depend on the budget once one is reached; and a rule's `stream_reach` holds
//! (the stream's bytes past it do not change the verdict — sig-match stops inspecting a
//! stream there); a `stream_size` that cannot hold later holds at no larger sizes.

use mbox_sig::engine::Verification;
use mbox_sig::{parse_rules, Buffer, Buffers, Direction, Engine, Vars};
use std::net::IpAddr;
use std::sync::OnceLock;

/// Most rules of one input compiled into an engine.
const MAX_RULES: usize = 16;
/// Most payload bytes matched.
const MAX_PAYLOAD: usize = 4096;
/// Work units a verification may spend (sig-match earns its budget per stream byte).
const BUDGET: u64 = 1 << 20;

fn vars() -> &'static Vars {
    static VARS: OnceLock<Vars> = OnceLock::new();
    VARS.get_or_init(Vars::default)
}

/// Every buffer set to `payload`, the stream's starting at stream offset `base`.
fn buffers(payload: &[u8], base: u64) -> Buffers<'_> {
    let mut b = Buffers::default();
    for buffer in Buffer::ALL {
        b.set(buffer, payload);
    }
    b.set_stream_window(payload, base);
    b
}

fn verify(engine: &Engine, rule: u32, buffers: &Buffers<'_>, budget: u64) -> Verification {
    let mut left = budget;
    let v = engine.verify(rule, buffers, &mut left);
    assert!(left <= budget);
    v
}

/// Rules, then a NUL byte, then the bytes to match them against (every buffer holds them).
/// Without a NUL the whole input is rules.
pub fn fuzz_rules(input: &[u8]) {
    let (text, payload) = match input.iter().position(|&b| b == 0) {
        Some(at) => (&input[..at], &input[at + 1..]),
        None => (input, &[][..]),
    };
    let text = String::from_utf8_lossy(text);
    let lines = text.lines().count();
    let mut loaded = parse_rules(&text, vars());
    for e in &loaded.refused {
        assert!((1..=lines.max(1)).contains(&e.line), "refused at line {} of {lines}", e.line);
        let _ = e.to_string();
    }
    for r in &loaded.rules {
        assert!((1..=lines).contains(&r.line), "loaded at line {} of {lines}", r.line);
        let _ = (r.stream_reach(), r.app_proto());
    }
    loaded.rules.truncate(MAX_RULES);
    if loaded.rules.is_empty() {
        return;
    }
    let engine = Engine::new(loaded.rules);
    let payload = &payload[..payload.len().min(MAX_PAYLOAD)];
    let all = buffers(payload, 0);
    let mut candidates = Vec::new();
    engine.candidates(&all, &mut candidates);
    assert!(candidates.windows(2).all(|w| w[0] < w[1]), "candidates sorted, each once");
    assert!(candidates.iter().all(|&c| (c as usize) < engine.rules().len()));
    // A window of a stream that started earlier: no panic.
    let base = u64::from(payload.first().copied().unwrap_or(0)) * 97;
    let window = buffers(payload, base);
    let mut c = Vec::new();
    engine.candidates(&window, &mut c);
    for (i, rule) in engine.rules().iter().enumerate() {
        let i = i as u32;
        let _ = verify(&engine, i, &window, BUDGET);
        let verdict = verify(&engine, i, &all, BUDGET);
        match verdict {
            Verification::Match(end) => {
                assert!(end <= payload.len(), "rule {i} matched up to {end}, past the {}-byte buffer", payload.len());
                assert!(candidates.contains(&i), "rule {i} (sid {}) matches but the prefilter did not pick it", rule.sid);
            }
            Verification::NoMatch => {}
            Verification::OutOfBudget => continue,
        }
        // More budget, same verdict.
        assert_eq!(verify(&engine, i, &all, BUDGET * 4), verdict, "rule {i} (sid {}) with more budget", rule.sid);
        if let Some(reach) = rule.stream_reach().filter(|&r| r < payload.len() as u64) {
            let mut cut = all;
            cut.set_stream_window(&payload[..reach as usize], 0);
            let v = verify(&engine, i, &cut, BUDGET);
            if v != Verification::OutOfBudget {
                assert_eq!(v, verdict, "rule {i} (sid {}) on the stream cut at its reach {reach}", rule.sid);
            }
        }
        // Headers: addresses and ports from the payload.
        let at = |k: usize| payload.get(k).copied().unwrap_or(0);
        let src = IpAddr::from([at(0), at(1), at(2), at(3)]);
        let dst = IpAddr::from([0xfe80, 0, 0, 0, 0, 0, u16::from(at(4)), u16::from(at(5))]);
        let dir = Direction { to_server: at(6) & 1 == 1, established: at(6) & 2 == 2 };
        let _ = rule.header_matches(src, u16::from(at(7)), dst, 80, dir);
        // Packet conditions on a packet with flags and sizes from the payload.
        if let Some(opts) = rule.packet {
            let _ = opts.admits(at(8), payload.len());
        }
        if let Some(size) = rule.stream_size {
            let sizes = [u32::from(at(9)), u32::from(at(10))];
            // What holds now may hold later; what cannot hold later does not hold at any
            // larger sizes (sig-match drops a packet rule for a flow on it).
            assert!(!size.holds(sizes) || size.may_hold_later(sizes), "{size:?} at {sizes:?}");
            if !size.may_hold_later(sizes) {
                let grown = [sizes[0] + u32::from(at(11)), sizes[1] + u32::from(at(12))];
                assert!(!size.holds(grown), "{size:?} holds at {grown:?} after not at {sizes:?}");
            }
        }
    }
}
