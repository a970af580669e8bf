//! sig-match against Suricata (testdata/rules/EXPECTED-suricata-alerts.tsv: Suricata 7.0.10 with
//! testdata/rules/custom.rules on every bundled capture; EXPECTED-suricata-alerts-tls.tsv with
//! tls.rules; tools/suricata-alerts-reference.sh makes them): the set of (capture, sid, flow,
//! direction) alerts must be the same. Flows are compared by protocol and endpoints (either way
//! round); how many times a rule fired in a flow is not compared (sig-match reports a rule once
//! per flow and direction). And ET Open (testdata/rules/et-open) against Suricata's alerts with
//! it (testdata/rules/EXPECTED-suricata-alerts-et-open*.tsv), as (capture, sid) pairs: none
//! extra, and the pairs found pinned (tools/et-open-alerts.sh compares all 67 captures).

mod common;

use common::*;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;

type Key = (String, u64, String, (IpAddr, u64), (IpAddr, u64), String);

/// A key for an alert; addresses are parsed, so that Suricata's long IPv6 form compares equal.
fn key(pcap: &str, sid: u64, proto: &str, a: (&str, u64), b: (&str, u64), direction: &str) -> Key {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap_or_else(|_| panic!("bad address {s}"));
    let (a, b) = ((ip(a.0), a.1), (ip(b.0), b.1));
    let (a, b) = if a <= b { (a, b) } else { (b, a) };
    (pcap.to_string(), sid, proto.to_ascii_uppercase(), a, b, direction.to_string())
}

/// The alerts sig-match raises on `capture` with `rules` (and more of its arguments, `args`),
/// as keys.
fn ours(capture: &Path, rules: &Path, args: &str, dir: &Path) -> BTreeSet<Key> {
    let out = dir.join("alerts.jsonl");
    run_toml(&format!(
        "[input]\npcap = {}\n[[nf]]\nplugin = \"sig-match\"\nargs = {{ rules = {}{args} }}\n[[nf]]\nplugin = \"logger\"\nsubscribe = [\"ALERT\"]\nargs = {{ output = {} }}\n",
        toml_path(capture),
        toml_path(rules),
        toml_path(&out)
    ));
    let name = capture.file_name().unwrap().to_string_lossy();
    read_jsonl(&out)
        .iter()
        .map(|a| {
            let f = &a["flow"];
            let ep = |ip: &str, port: &str| (f[ip].as_str().unwrap(), f[port].as_u64().unwrap());
            key(
                &name,
                a["alert"]["signature_id"].as_u64().unwrap(),
                a["proto"].as_str().unwrap(),
                ep("src_ip", "src_port"),
                ep("dest_ip", "dest_port"),
                a["direction"].as_str().unwrap(),
            )
        })
        .collect()
}

/// The alerts Suricata raised with `rules` on every capture (`reference`, in testdata/rules)
/// against sig-match's: the same keys, at least `floor` of them, but on the `known` captures
/// (each with why), whose alerts must still differ (so that the list stays true).
fn alerts_match_suricata(rules: &str, reference: &str, floor: usize, known: &[(&str, &str)]) {
    let rules = repo().join("testdata/rules").join(rules);
    let expected: BTreeSet<Key> = read_tsv(&repo().join("testdata/rules").join(reference))
        .iter()
        .map(|r| {
            let port = |k: &str| r[k].parse::<u64>().unwrap();
            key(
                &r["pcap"],
                r["sid"].parse().unwrap(),
                &r["proto"],
                (&r["flow_src_ip"], port("flow_src_port")),
                (&r["flow_dest_ip"], port("flow_dest_port")),
                &r["direction"],
            )
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let mut got = BTreeSet::new();
    for capture in captures() {
        got.extend(ours(&capture, &rules, "", dir.path()));
    }
    let is_known = |k: &&Key| known.iter().any(|(capture, _)| k.0 == *capture);
    for (capture, why) in known {
        let differs = expected.symmetric_difference(&got).any(|k| k.0 == *capture);
        assert!(differs, "{capture} is listed as differing ({why}) but its alerts are Suricata's: take it off the list");
    }
    let missing: Vec<_> = expected.difference(&got).filter(|k| !is_known(k)).collect();
    let extra: Vec<_> = got.difference(&expected).filter(|k| !is_known(k)).collect();
    eprintln!("{reference}: expected {} alert keys, got {}; missing {}, extra {}", expected.len(), got.len(), missing.len(), extra.len());
    assert!(expected.len() >= floor, "the reference has at least {floor} distinct (capture, sid, flow) keys");
    for m in &missing {
        eprintln!("missing {m:?}");
    }
    for e in &extra {
        eprintln!("extra   {e:?}");
    }
    assert!(missing.is_empty() && extra.is_empty());
}

#[test]
fn alerts_match_suricata_on_every_capture() {
    alerts_match_suricata("custom.rules", "EXPECTED-suricata-alerts.tsv", 190, &[]);
}

/// The server certificates' buffers (`tls.certs`, `tls.cert_subject`, `tls.cert_issuer`,
/// `tls.cert_serial`, `tls.cert_fingerprint`) in testdata/rules/tls.rules, on every TLS
/// connection of the captures whose server sent its certificates in the clear.
#[test]
fn certificate_alerts_match_suricata_on_every_capture() {
    alerts_match_suricata(
        "tls.rules",
        "EXPECTED-suricata-alerts-tls.tsv",
        340,
        &[
            // The stacks start the connection at different SYN/ACKs (as in the eve reference's
            // KNOWN-DIFFERENCES): Suricata parses no TLS there.
            ("ndpi__tls_multiple_synack_different_seq.pcapng", "handshake-anomaly"),
        ],
    );
}

/// QUIC's buffers (`quic.version` of every long header of an IETF version, `quic.sni` from
/// the client's Initial packets decrypted) in testdata/rules/quic.rules, on every capture:
/// Suricata's alerts exactly, Google QUIC's versions filling neither, as in Suricata.
#[test]
fn quic_alerts_match_suricata_on_every_capture() {
    alerts_match_suricata("quic.rules", "EXPECTED-suricata-alerts-quic.tsv", 22, &[]);
}

/// ET Open on the captures Suricata alerts on with it, with the stock variables and with
/// HOME_NET and EXTERNAL_NET any: every (capture, sid) pair sig-match raises is one of
/// Suricata's, and how many of Suricata's it finds is pinned (so that a regression fails, and
/// an improvement updates the figure and docs/ids.md). The pairs still missed need keywords
/// mbox does not have (docs/ids.md).
#[test]
fn et_open_alerts_are_suricatas_and_none_extra() {
    let rules = repo().join("testdata/rules/et-open/et-open.rules");
    let dir = tempfile::tempdir().unwrap();
    for (reference, args, found) in [
        ("EXPECTED-suricata-alerts-et-open.tsv", "", 8),
        ("EXPECTED-suricata-alerts-et-open-anynet.tsv", ", vars = { HOME_NET = \"any\", EXTERNAL_NET = \"any\" }", 32),
    ] {
        let expected: BTreeSet<(String, u64)> = read_tsv(&repo().join("testdata/rules").join(reference))
            .iter()
            .map(|r| (r["pcap"].clone(), r["sid"].parse().unwrap()))
            .collect();
        let captures: BTreeSet<&String> = expected.iter().map(|(pcap, _)| pcap).collect();
        let mut got = BTreeSet::new();
        for capture in &captures {
            got.extend(ours(&repo().join("testdata/pcaps").join(capture), &rules, args, dir.path()).into_iter().map(|k| (k.0, k.1)));
        }
        let extra: Vec<_> = got.difference(&expected).collect();
        let missing: Vec<_> = expected.difference(&got).collect();
        eprintln!("{reference}: {} of {} found; missing {missing:?}", got.len() - extra.len(), expected.len());
        assert!(extra.is_empty(), "{reference}: alerts Suricata does not raise: {extra:?}");
        assert_eq!(got.len(), found, "{reference}: pairs of Suricata's found (missing {missing:?})");
    }
}
