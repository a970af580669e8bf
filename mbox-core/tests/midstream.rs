//! Connections picked up mid-stream (testdata/pcaps/midstream, tools/midstream-captures.py: one
//! HTTP exchange each, its start not captured, down to the response alone): one orientation
//! for every part of mbox — flow-stats' client, dpi's `FLOW/TYPE`, sig-match's `to_server` and
//! `to_client`, `mbox streams`' directions — whichever `[flow] midstream_client` says; with
//! `"detect"` the alerts of testdata/rules/midstream.rules are Suricata 7.0.10's with
//! `stream.midstream=true` (testdata/rules/EXPECTED-suricata-alerts-midstream.tsv), rule and
//! sending port alike.

mod common;

use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const CAPTURES: [&str; 5] = ["no-syn", "no-handshake", "from-request", "from-server-ack", "from-response"];

/// The port the real client used in each capture (its number is 40100 + its place).
fn client_port(capture: &str) -> u64 {
    40101 + CAPTURES.iter().position(|c| *c == capture).unwrap() as u64
}

/// What one run makes of a capture: flow-stats' client port, dpi's, and the alerts as
/// (sid, sending port).
fn run(capture: &Path, midstream_client: &str, dir: &Path) -> (u64, u64, BTreeSet<(u64, u64)>) {
    let (flows, eve) = (dir.join("flows.jsonl"), dir.join("eve.jsonl"));
    run_toml(&format!(
        "[input]\npcap = {}\n[flow]\nmidstream_client = \"{midstream_client}\"\n\
         [[nf]]\nplugin = \"dpi\"\n[[nf]]\nplugin = \"sig-match\"\nargs = {{ rules = {}, midstream = true }}\n\
         [[nf]]\nplugin = \"flow-stats\"\nargs = {{ output = {} }}\n\
         [[nf]]\nplugin = \"logger\"\nsubscribe = [\"ALERT\", \"FLOW/TYPE\"]\nargs = {{ output = {} }}\n",
        toml_path(capture),
        toml_path(&repo().join("testdata/rules/midstream.rules")),
        toml_path(&flows),
        toml_path(&eve)
    ));
    let flows = read_jsonl(&flows);
    assert_eq!(flows.len(), 1, "{flows:?}");
    let events = read_jsonl(&eve);
    let types: Vec<u64> = events.iter().filter(|e| e["event_type"] == "flow_type").map(|e| e["src_port"].as_u64().unwrap()).collect();
    assert_eq!(types.len(), 1, "{events:?}");
    let alerts = events
        .iter()
        .filter(|e| e["event_type"] == "alert")
        .map(|e| (e["alert"]["signature_id"].as_u64().unwrap(), e["src_port"].as_u64().unwrap()))
        .collect();
    (flows[0]["client_port"].as_u64().unwrap(), types[0], alerts)
}

/// The client port of the one connection `mbox streams` reassembled from `capture`: the
/// source of its `orig` direction.
fn streams_client(capture: &Path, midstream_client: &str, dir: &Path) -> u64 {
    let out = dir.join("streams");
    let status = mbox()
        .args(["streams", capture.to_str().unwrap(), "--out", out.to_str().unwrap(), "--midstream-client", midstream_client])
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    let index = read_tsv(&out.join("streams.tsv"));
    let orig: Vec<&String> = index.iter().filter(|r| r["direction"] == "orig").map(|r| &r["src_port"]).collect();
    assert_eq!(orig.len(), 1, "{index:?}");
    orig[0].parse().unwrap()
}

#[test]
fn every_part_of_mbox_orients_a_midstream_connection_alike_and_detect_alerts_as_suricata() {
    let mut suricata: BTreeMap<String, BTreeSet<(u64, u64)>> = BTreeMap::new();
    for r in read_tsv(&repo().join("testdata/rules/EXPECTED-suricata-alerts-midstream.tsv")) {
        let alerts = suricata.entry(r["pcap"].trim_end_matches(".pcap").to_string()).or_default();
        if r["sid"] != "-" {
            alerts.insert((r["sid"].parse().unwrap(), r["src_port"].parse().unwrap()));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    for capture in CAPTURES {
        let path = pcaps().join("midstream").join(format!("{capture}.pcap"));
        for mode in ["first", "detect"] {
            let (flow_client, dpi_client, alerts) = run(&path, mode, dir.path());
            // One orientation everywhere: dpi's and `mbox streams`' client is flow-stats', and
            // the alerts' directions follow it (a request to_server comes from that client).
            assert_eq!(dpi_client, flow_client, "{capture} ({mode}): dpi vs flow-stats");
            assert_eq!(streams_client(&path, mode, dir.path()), flow_client, "{capture} ({mode}): mbox streams vs flow-stats");
            for &(sid, port) in &alerts {
                let from_client = port == flow_client;
                let to_server = matches!(sid, 9000301 | 9000304);
                if matches!(sid, 9000301..=9000304) {
                    assert_eq!(to_server, from_client, "{capture} ({mode}): sid {sid} from port {port}, client {flow_client}");
                }
            }
            let real = client_port(capture);
            match mode {
                // Suricata's alerts exactly, and the real client.
                "detect" => {
                    assert_eq!(alerts, suricata[capture], "{capture}: ours vs Suricata with stream.midstream=true");
                    assert_eq!(flow_client, real, "{capture}: the client");
                }
                // The sender of the first packet: the real client unless the server's came first.
                _ => {
                    let server_first = matches!(capture, "from-server-ack" | "from-response");
                    assert_eq!(flow_client == real, !server_first, "{capture}: first sender {flow_client}");
                }
            }
        }
    }
}

/// `mbox ids --set stream.midstream=true` is that run: on every mid-stream capture, eve.json's
/// alerts are Suricata's (rule and sending port).
#[test]
fn mbox_ids_with_suricatas_midstream_setting_alerts_as_suricata() {
    let dir = tempfile::tempdir().unwrap();
    let rules = repo().join("testdata/rules/midstream.rules");
    let expected = read_tsv(&repo().join("testdata/rules/EXPECTED-suricata-alerts-midstream.tsv"));
    for capture in CAPTURES {
        let log = dir.path().join(capture);
        let path = pcaps().join("midstream").join(format!("{capture}.pcap"));
        let out = mbox()
            .args(["ids", "-r", path.to_str().unwrap(), "-S", rules.to_str().unwrap(), "--set", "stream.midstream=true", "-l"])
            .arg(&log)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let ours: BTreeSet<(u64, u64)> = read_jsonl(&log.join("eve.json"))
            .iter()
            .filter(|e| e["event_type"] == "alert")
            .map(|e| (e["alert"]["signature_id"].as_u64().unwrap(), e["src_port"].as_u64().unwrap()))
            .collect();
        let theirs: BTreeSet<(u64, u64)> = expected
            .iter()
            .filter(|r| r["pcap"] == format!("{capture}.pcap") && r["sid"] != "-")
            .map(|r| (r["sid"].parse().unwrap(), r["src_port"].parse().unwrap()))
            .collect();
        assert_eq!(ours, theirs, "{capture}");
    }
}
