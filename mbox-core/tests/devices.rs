//! The device wrappers through whole runs: `[input] trace` writes exactly the frames the
//! shards get, and `[input] impair` is a deterministic bad wire — the same seed gives the same
//! frames in the same order, and the TCP monitor reassembles what crossed it exactly as the
//! offline reassembly of its trace does.

mod common;

use common::*;
use mbox_core::io::capture::CaptureReader;
use mbox_core::streams::write_streams;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

/// Every frame of a capture: (time, wire length, bytes).
fn frames(path: &Path) -> Vec<(u64, u32, Vec<u8>)> {
    let mut reader = CaptureReader::open(path).unwrap();
    let mut out = Vec::new();
    let mut buf = Vec::new();
    while let Some(meta) = reader.next_packet(&mut buf).unwrap() {
        out.push((meta.ts_ns, meta.wire_len, buf.clone()));
    }
    out
}

fn digest(frames: &[(u64, u32, Vec<u8>)]) -> String {
    let mut h = Sha256::new();
    for (ts, len, bytes) in frames {
        h.update(ts.to_le_bytes());
        h.update(len.to_le_bytes());
        h.update(bytes);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_trace_holds_exactly_the_frames_the_input_read() {
    let dir = tempfile::tempdir().unwrap();
    let capture = pcaps().join("ndpi__http_ipv6.pcap");
    let trace = dir.path().join("trace.pcap");
    let report = run_toml(&format!(
        "[input]\npcap = {}\ntrace = {}\n[[nf]]\nplugin = \"flow-stats\"\nargs = {{ output = \"/dev/null\" }}\n",
        toml_path(&capture),
        toml_path(&trace)
    ));
    let (original, traced) = (frames(&capture), frames(&trace));
    assert_eq!(report.input.packets, original.len() as u64);
    assert_eq!(digest(&traced), digest(&original), "{} frames traced of {}", traced.len(), original.len());
}

/// Generated lossy traffic, across a wire with `impair`, traced; the run's stream hashes.
fn impaired_run(dir: &Path, name: &str, impair: &str) -> (serde_json::Value, String, BTreeMap<String, String>) {
    let trace = dir.join(format!("{name}.pcap"));
    let hashes = dir.join(format!("{name}.jsonl"));
    let report = run_toml(&format!(
        "[input]\ngenerator = {{ flows = 300, udp_flows = 20, response_bytes = 20000, seed = 4 }}\nimpair = {impair}\ntrace = {}\n\
         [runtime]\nevent_slots = 8192\n[tcp]\nmax_kept_segments_per_flow = 1024\nmax_kept_segments = 4096\n\
         [flow]\ntcp_closed_timeout = \"none\"\ntcp_idle_timeout = \"none\"\n\
         [[nf]]\nplugin = \"stream-hash\"\nargs = {{ output = {}, algorithm = \"sha256\" }}\n",
        toml_path(&trace),
        toml_path(&hashes)
    ));
    let summary = mbox_core::summary::json(&report);
    let streams = read_jsonl(&hashes)
        .into_iter()
        .map(|v| {
            let key = format!("{}:{}>{}:{}", v["src_ip"], v["src_port"], v["dst_ip"], v["dst_port"]);
            (key, format!("{} {} {}", v["bytes"], v["hash"], v["gaps"]))
        })
        .collect();
    (summary["input"]["impaired"].clone(), digest(&frames(&trace)), streams)
}

#[test]
fn an_impaired_wire_is_the_same_on_every_run_and_reassembled_as_its_trace() {
    let dir = tempfile::tempdir().unwrap();
    let impair = "{ loss = 0.01, reorder = 0.05, duplicate = 0.01, delay = \"30us\", seed = 9 }";
    let (stats, trace, streams) = impaired_run(dir.path(), "a", impair);
    for what in ["lost", "reordered", "duplicated", "overtaken"] {
        assert!(stats[what].as_u64() > Some(0), "nothing {what}: {stats}");
    }
    let sent = stats["sent"].as_u64().unwrap();
    let traced = frames(&dir.path().join("a.pcap")).len() as u64;
    assert_eq!(traced, sent - stats["lost"].as_u64().unwrap() + stats["duplicated"].as_u64().unwrap());
    // Repeatable from the seed, different with another.
    let (stats_again, trace_again, streams_again) = impaired_run(dir.path(), "b", impair);
    assert_eq!((&stats_again, &trace_again, &streams_again), (&stats, &trace, &streams));
    let (_, other, _) = impaired_run(dir.path(), "c", &impair.replace("seed = 9", "seed = 10"));
    assert_ne!(other, trace);
    // What the stack made of the wire is what offline reassembly makes of the trace.
    let offline = dir.path().join("offline");
    write_streams(&dir.path().join("a.pcap"), &offline, 65_536, Default::default()).unwrap();
    let expected: BTreeMap<String, String> = read_tsv(&offline.join("streams.tsv"))
        .into_iter()
        .map(|r| {
            let key = format!("\"{}\":{}>\"{}\":{}", r["src_ip"], r["src_port"], r["dst_ip"], r["dst_port"]);
            (key, format!("{} \"{}\" {}", r["bytes"], r["sha256"], r["gaps"]))
        })
        .collect();
    assert_eq!(streams.len(), expected.len());
    assert_eq!(streams, expected);
    assert!(streams.values().any(|v| !v.ends_with(" 0")), "the lost frames left gaps");
}

#[test]
fn an_impairment_out_of_range_or_with_dpdk_is_refused() {
    let bad = try_run_toml("[input]\ngenerator = { flows = 1 }\nimpair = { loss = 1.5 }\n").unwrap_err();
    assert!(bad.contains("[input] impair") && bad.contains("loss"), "{bad}");
    let unknown = try_run_toml("[input]\ngenerator = { flows = 1 }\nimpair = { lose = 0.1 }\n").unwrap_err();
    assert!(unknown.contains("lose"), "{unknown}");
    let live = try_run_toml("[input]\nimpair = { loss = 0.1 }\n[dpdk]\neal = [\"--no-huge\"]\n").unwrap_err();
    assert!(live.contains("[dpdk] trace") && live.contains("impaired outside mbox"), "{live}");
}
