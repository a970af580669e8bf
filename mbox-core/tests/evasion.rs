//! The classic IDS evasions (testdata/pcaps/evasion, made by tools/evasion-captures.py; policy
//! per case in docs/evasion.md): sig-match with testdata/rules/evasion.rules alerts on each
//! capture where Suricata 7.0.10 does (testdata/rules/EXPECTED-suricata-alerts-evasion.tsv), in
//! both of Suricata's runs: `default` (`-k none`, as the other references: checksums trusted)
//! against mbox's defaults, and `checksums` (Suricata validating them) against `[tcp]
//! verify_checksums = true`. Every capture is checked in both, and every case is listed here
//! with what mbox must raise, what the server's stack reads, and why a miss is one.

mod common;

use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Per case: the capture's name, the sids mbox raises by default and with checksums verified,
/// the sid of what the server reads (the attack 91000NN, or the decoy 91001NN), and the reason
/// where an engine's alerts and the server disagree.
struct Case {
    name: &'static str,
    mbox: &'static [u64],
    mbox_verified: &'static [u64],
    server_reads: u64,
    note: &'static str,
}

const fn case(name: &'static str, mbox: &'static [u64], server_reads: u64, note: &'static str) -> Case {
    Case { name, mbox, mbox_verified: mbox, server_reads, note }
}

const CASES: &[Case] = &[
    case("overlap-retransmit-first", &[9100001], 9100001, "first copy wins, as at the receiver"),
    case("overlap-retransmit-last", &[9100102], 9100102, "first copy wins, as at the receiver"),
    case("overlap-ooo-first", &[9100003], 9100003, "kept copies: the first to arrive wins, as Linux"),
    case("overlap-ooo-last", &[9100104], 9100104, "kept copies: the first to arrive wins, as Linux"),
    case("overlap-ooo-partial", &[9100105], 9100105, "the segment reaching the next byte wins its bytes, as Linux"),
    case("tiny-segments", &[9100006], 9100006, "matched across segments"),
    case(
        "urgent",
        &[9100107],
        9100007,
        "MISSED by both: urgent data stays inline in the stream (Suricata's default policy too); \
         an application without SO_OOBINLINE reads it without the urgent byte",
    ),
    Case {
        name: "bad-checksum",
        mbox: &[9100108],
        mbox_verified: &[9100008],
        server_reads: 9100008,
        note: "MISSED by default (checksums trusted, as the offloaded captures need; Suricata -k none \
               alike); caught with [tcp] verify_checksums (Suricata validating alike)",
    },
    case(
        "ttl-decoy",
        &[9100109],
        9100009,
        "MISSED by both: no monitor on the wire knows how many hops away the server is; \
         the decoy comes first and wins",
    ),
    case("syn-data-refused", &[9100010], 9100010, "SYN data the SYN+ACK does not acknowledge is dropped (fixed)"),
    case("syn-data-accepted", &[9100011], 9100011, "Fast Open data the SYN+ACK acknowledges is the stream's start"),
    case(
        "rst-exact",
        &[],
        9100012,
        "MISSED by both: an RST at the exact sequence number ends the stream; the bytes that still \
         come are inspected afresh, so the match spanning the RST is lost",
    ),
    case("rst-in-window", &[9100013], 9100013, "an RST not at the exact sequence number ends nothing (RFC 5961)"),
    case("rst-out-of-window", &[9100014], 9100014, "an RST outside the window ends nothing"),
    case("out-of-window-far", &[9100115], 9100115, "data far beyond the window is never taken"),
    case(
        "out-of-window-filled",
        &[9100116],
        9100116,
        "data out of order beyond the window waits for the receiver's ACK; the copy in the window wins (fixed)",
    ),
];

/// The sids sig-match raises on `capture` (each checked to come from the client's request).
fn ours(capture: &Path, dir: &Path, verify: bool) -> BTreeSet<u64> {
    let out = dir.join("alerts.jsonl");
    let tcp = if verify { "[tcp]\nverify_checksums = true\n" } else { "" };
    run_toml(&format!(
        "[input]\npcap = {}\n{tcp}[[nf]]\nplugin = \"sig-match\"\nargs = {{ rules = {} }}\n[[nf]]\nplugin = \"logger\"\nsubscribe = [\"ALERT\"]\nargs = {{ output = {} }}\n",
        toml_path(capture),
        toml_path(&repo().join("testdata/rules/evasion.rules")),
        toml_path(&out)
    ));
    let alerts = read_jsonl(&out);
    for a in &alerts {
        // Every rule is to_server: the client's request.
        assert_eq!(a["direction"], "to_server", "{}: {a}", capture.display());
        assert_eq!(a["flow"]["src_ip"], "198.18.0.1", "{}: oriented from the client", capture.display());
    }
    let sids: Vec<u64> = alerts.iter().map(|a| a["alert"]["signature_id"].as_u64().unwrap()).collect();
    let set: BTreeSet<u64> = sids.iter().copied().collect();
    assert_eq!(set.len(), sids.len(), "{}: a rule alerts once per flow and direction", capture.display());
    set
}

/// Suricata's alerts by (capture, run): the sids.
fn suricata() -> BTreeMap<(String, String), BTreeSet<u64>> {
    let mut by: BTreeMap<(String, String), BTreeSet<u64>> = BTreeMap::new();
    for r in read_tsv(&repo().join("testdata/rules/EXPECTED-suricata-alerts-evasion.tsv")) {
        let sids = by.entry((r["pcap"].clone(), r["run"].clone())).or_default();
        if r["sid"] != "-" {
            assert_eq!(r["count"], "1", "{r:?}: one alert each");
            sids.insert(r["sid"].parse().unwrap());
        } else {
            assert_eq!(r["count"], "0");
        }
    }
    by
}

#[test]
fn sig_match_alerts_where_suricata_does_on_every_evasion() {
    let reference = suricata();
    let captures = captures_in(&pcaps().join("evasion"));
    let names: BTreeSet<String> = captures.iter().map(|p| p.file_stem().unwrap().to_string_lossy().into_owned()).collect();
    let listed: BTreeSet<String> = CASES.iter().map(|c| c.name.to_string()).collect();
    assert_eq!(names, listed, "every capture is a case here, and every case has its capture");
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for c in CASES {
        let capture = pcaps().join("evasion").join(format!("{}.pcap", c.name));
        for (run, verify, expected) in [("default", false, c.mbox), ("checksums", true, c.mbox_verified)] {
            let got = ours(&capture, dir.path(), verify);
            let expected: BTreeSet<u64> = expected.iter().copied().collect();
            let theirs = reference.get(&(format!("{}.pcap", c.name), run.to_string()));
            let theirs = theirs.unwrap_or_else(|| panic!("{}: no Suricata `{run}` row", c.name));
            if got != expected {
                failures.push(format!("{} ({run}): mbox raised {got:?}, the table says {expected:?}", c.name));
            }
            // No case differs from Suricata (each would be listed here with its reason).
            if got != *theirs {
                failures.push(format!("{} ({run}): mbox raised {got:?}, Suricata {theirs:?}", c.name));
            }
            let caught = got.contains(&c.server_reads) && got.len() == 1;
            eprintln!(
                "{:<26} {run:<9} mbox {got:?} suricata {theirs:?} server reads {}: {}{}",
                c.name,
                c.server_reads,
                if caught { "as the server" } else { "differs from the server: " },
                if caught { String::new() } else { c.note.to_string() }
            );
            assert!(caught || c.note.starts_with("MISSED"), "{}: a miss must say so: {}", c.name, c.note);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
