//! sig-match under a steady rate of connections: an hour of generated HTTP-like connections
//! (in compressed time) with a memory limit that the connections closed within the linger
//! time would overflow if their streams were kept until their TERMINATE. Every connection is
//! inspected both ways, and the NF's own counters — what `mboxctl stats` and the metrics show
//! while it runs — say nothing was refused.

mod common;

use common::*;

#[test]
fn an_hour_of_steady_connections_is_inspected_in_full() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("steady.rules");
    // One rule each way that needs no more than the head of a message, but whose reach is
    // unbounded: each direction's window is kept until its stream ends.
    std::fs::write(
        &rules,
        "alert tcp any any -> any any (msg:\"request\"; flow:to_server; content:\"mbox-gen/1\"; content:\"|0d 0a|\"; distance:0; sid:1;)\n\
         alert tcp any any -> any any (msg:\"response\"; flow:to_client; content:\"200 OK\"; content:\"|0d 0a 0d 0a|\"; distance:0; sid:2;)\n",
    )
    .unwrap();
    let alerts = dir.path().join("alerts.jsonl");
    let flows = 20_000;
    // About 18 packets per connection, 12 ms apart: 72 minutes of packet time, 4.6 connections
    // a second, each holding about 8.4 KB of stream. Closed connections linger 60 s before
    // their TERMINATE: kept that long, they would need about 2.3 MB; the limit is 1 MiB.
    let report = run_toml(&format!(
        "[input]\ngenerator = {{ flows = {flows}, udp_flows = 0, concurrency = 64, response_bytes = 8192, packet_gap_ns = 12000000, seed = 5 }}\n\
         [flow]\ntcp_closed_timeout = \"60s\"\n\
         [[nf]]\nplugin = \"sig-match\"\nargs = {{ rules = {}, memory_limit = 1048576 }}\n\
         [[nf]]\nplugin = \"logger\"\nsubscribe = [\"ALERT\"]\nargs = {{ output = {} }}\n",
        toml_path(&rules),
        toml_path(&alerts)
    ));
    let lines = read_jsonl(&alerts);
    let count = |sid: u64| lines.iter().filter(|l| l["alert"]["signature_id"] == sid).count();
    let sig_match = &report.nfs[0];
    let counter = |name: &str| sig_match.counters.iter().find(|(n, _)| n == name).map(|(_, v)| *v).unwrap();
    assert_eq!((count(1), count(2)), (flows, flows), "every connection inspected both ways; counters: {:?}", sig_match.counters);
    assert_eq!(counter("directions_over_memory"), 0);
    assert_eq!(counter("bytes_over_memory"), 0);
    assert!(counter("directions_released") >= 2 * flows as u64 * 9 / 10, "{:?}", sig_match.counters);
    assert_eq!(counter("kept_bytes"), 0, "nothing kept once every flow ended");
}
