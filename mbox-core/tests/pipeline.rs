//! The runtime end to end: shards, rings, back-pressure and drop policies, ordered NFs and
//! verdicts, publish/subscribe of NF-defined types, and fault isolation.

mod common;

use common::*;
use mbox_core::report::RunReport;
use serde_json::Value;
use std::path::Path;

/// Generated traffic with every impairment, small enough for debug builds.
const TRAFFIC: &str = "generator = { flows = 300, udp_flows = 60, concurrency = 40, response_bytes = 6000, loss = 0.02, reorder = 0.05, duplicate = 0.02, tap_loss = 0.01, seed = 7 }";

/// flow-stats lines without the run-specific flow id, sorted: comparable across runs.
fn flow_lines(path: &Path) -> Vec<String> {
    let mut lines: Vec<String> = read_jsonl(path)
        .into_iter()
        .map(|mut v| {
            v.as_object_mut().unwrap().remove("flow_id");
            v.to_string()
        })
        .collect();
    lines.sort();
    lines
}

fn flow_stats_run(extra: &str, out: &Path) -> RunReport {
    run_toml(&format!("[input]\n{TRAFFIC}\n{extra}\n[[nf]]\nplugin = \"flow-stats\"\nargs = {{ output = {} }}\n", toml_path(out)))
}

fn events_of(report: &RunReport, path: &str) -> u64 {
    let idx = report.type_paths.iter().position(|p| p == path).unwrap();
    report.shards.iter().map(|s| s.events_by_type[idx]).sum()
}

fn delivered(report: &RunReport, nf: usize) -> u64 {
    report.shards.iter().map(|s| s.delivered[nf]).sum()
}

#[test]
fn every_shard_count_gives_the_same_flows() {
    let dir = tempfile::tempdir().unwrap();
    let one = dir.path().join("one.jsonl");
    let base = flow_stats_run("[runtime]\nshards = 1", &one);
    let expected = flow_lines(&one);
    assert_eq!(expected.len(), 360);
    let packets = base.input.packets;
    // The input thread's CPU time is part of the run's.
    assert!(base.input.cpu > std::time::Duration::ZERO && base.input.cpu <= base.cpu, "{:?} of {:?}", base.input.cpu, base.cpu);
    for shards in [2, 3, 4] {
        let out = dir.path().join(format!("{shards}.jsonl"));
        let report = flow_stats_run(&format!("[runtime]\nshards = {shards}"), &out);
        assert_eq!(report.shards.len(), shards);
        assert!(report.shards.iter().all(|s| s.stack.packets > 0), "every shard got flows");
        assert_eq!(report.input.packets, packets);
        assert_eq!(flow_lines(&out), expected, "{shards} shards");
    }
}

#[test]
fn pinned_threads_give_the_same_flows_and_unavailable_cores_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (free, pinned) = (dir.path().join("free.jsonl"), dir.path().join("pinned.jsonl"));
    flow_stats_run("[runtime]\nshards = 2", &free);
    // Every thread on core 0 (more threads than cores: they wrap round), spinning.
    flow_stats_run("[runtime]\nshards = 2\ncores = [0]\nidle = \"spin\"", &pinned);
    assert_eq!(flow_lines(&pinned), flow_lines(&free));
    let e = try_run_toml(&format!("[input]\n{TRAFFIC}\n[runtime]\ncores = [0, 1023]\n")).unwrap_err();
    assert!(e.contains("[runtime] cores: core 1023 is not one this process may run on"), "{e}");
}

#[test]
fn back_pressure_with_tiny_rings_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let normal = dir.path().join("normal.jsonl");
    flow_stats_run("", &normal);
    let tiny = dir.path().join("tiny.jsonl");
    let report = flow_stats_run("[runtime]\nshards = 2\nring_capacity = 2\nevent_slots = 64\npacket_buffers = 64", &tiny);
    assert_eq!(flow_lines(&tiny), flow_lines(&normal));
    assert_eq!(report.shards.iter().map(|s| s.ring_full_drops[0]).sum::<u64>(), 0);
    assert_eq!(report.nfs[0].events, delivered(&report, 0));
}

#[test]
fn the_drop_policy_counts_every_event_it_does_not_deliver() {
    let report = run_toml(&format!(
        "[input]\n{TRAFFIC}\n[runtime]\nring_capacity = 4\nring_full = \"drop\"\n\
         [[nf]]\nplugin = \"test-faults\"\nargs = {{ delay_us = 20 }}\n"
    ));
    let offered = events_of(&report, "PKT/TCP")
        + events_of(&report, "PKT/TCP/SYN")
        + events_of(&report, "PKT/TCP/FIN")
        + events_of(&report, "PKT/TCP/RST")
        + events_of(&report, "PKT/UDP");
    let dropped: u64 = report.shards.iter().map(|s| s.ring_full_drops[0]).sum();
    assert!(dropped > 0, "a slow NF behind a 4-slot ring must lose events under the drop policy");
    assert_eq!(delivered(&report, 0) + dropped, offered);
    assert_eq!(report.nfs[0].events, delivered(&report, 0));
    assert_eq!(report.shards.iter().map(|s| s.forwarded).sum::<u64>(), report.input.packets, "packets still flow");
}

#[test]
fn an_nf_that_drops_runs_in_order_and_its_drops_stay_out_of_the_output() {
    // Small rings make the NFs lag each other, which is when ordering bugs show.
    for ring in [4, 1024] {
        let dir = tempfile::tempdir().unwrap();
        let (before, after, pcap) = (dir.path().join("before.jsonl"), dir.path().join("after.jsonl"), dir.path().join("out.pcap"));
        let report = run_toml(&format!(
            "[input]\n{TRAFFIC}\n[runtime]\nring_capacity = {ring}\n[output]\npcap = {}\n\
             [[nf]]\nname = \"before\"\nplugin = \"flow-stats\"\nargs = {{ output = {} }}\n\
             [[nf]]\nplugin = \"port-filter\"\nargs = {{ drop_ports = [80] }}\n\
             [[nf]]\nname = \"after\"\nplugin = \"flow-stats\"\nargs = {{ output = {} }}\n",
            toml_path(&pcap),
            toml_path(&before),
            toml_path(&after)
        ));
        let tcp_packets = events_of(&report, "PKT/TCP")
            + events_of(&report, "PKT/TCP/SYN")
            + events_of(&report, "PKT/TCP/FIN")
            + events_of(&report, "PKT/TCP/RST");
        let udp_packets = events_of(&report, "PKT/UDP");
        assert_eq!(report.nfs[1].verdict_drops, tcp_packets, "every TCP packet is to or from port 80");
        assert_eq!(report.shards.iter().map(|s| s.dropped_by_nf).sum::<u64>(), tcp_packets);
        // The NF before the filter saw every flow; the one after it saw exactly the UDP flows,
        // each packet before the flow's end (events reach every NF in emission order).
        let before = read_jsonl(&before);
        let after = read_jsonl(&after);
        assert_eq!(before.len(), 360);
        let udp_before: Vec<&Value> = before.iter().filter(|f| f["proto"] == "UDP").collect();
        assert_eq!(after.iter().collect::<Vec<_>>(), udp_before, "ring {ring}");
        // The output holds exactly the packets the filter passed.
        let written = mbox_core::io::capture::read_all(&pcap).unwrap();
        assert_eq!(written.len() as u64, udp_packets);
        assert_eq!(report.output.unwrap().packets, udp_packets);
    }
}

#[test]
fn nfs_publish_their_own_types_to_subscribers() {
    let dir = tempfile::tempdir().unwrap();
    let (flows, events) = (dir.path().join("flows.jsonl"), dir.path().join("events.jsonl"));
    let threshold = 6_500u64;
    let report = run_toml(&format!(
        "[input]\n{TRAFFIC}\n[runtime]\nshards = 2\n\
         [[nf]]\nplugin = \"flow-stats\"\nargs = {{ output = {} }}\n\
         [[nf]]\nplugin = \"heavy-hitter\"\nargs = {{ threshold_bytes = {threshold} }}\n\
         [[nf]]\nplugin = \"logger\"\nsubscribe = [\"ALERT\"]\nargs = {{ output = {} }}\n",
        toml_path(&flows),
        toml_path(&events)
    ));
    let heavy: Vec<Value> = read_jsonl(&flows)
        .into_iter()
        .filter(|f| f["c2s"]["frame_bytes"].as_u64().unwrap() + f["s2c"]["frame_bytes"].as_u64().unwrap() >= threshold)
        .collect();
    assert!(!heavy.is_empty());
    let alerts = read_jsonl(&events);
    assert_eq!(alerts.len(), heavy.len(), "one alert per flow over the threshold");
    assert!(alerts.iter().all(|a| a["event_type"] == "alert" && a["mbox_type"] == "ALERT/HEAVY_HITTER" && a["alert"]["signature_id"] == 1));
    let mut alerted: Vec<u64> = alerts.iter().map(|a| a["flow_id"].as_u64().unwrap()).collect();
    let mut expected: Vec<u64> = heavy.iter().map(|f| f["flow_id"].as_u64().unwrap()).collect();
    alerted.sort();
    expected.sort();
    assert_eq!(alerted, expected);
    assert_eq!(report.nfs[1].published, heavy.len() as u64);
    assert_eq!(events_of(&report, "ALERT/HEAVY_HITTER"), heavy.len() as u64);
}

#[test]
fn a_panicking_plugin_is_disabled_and_the_host_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    let (alone, beside) = (dir.path().join("alone.jsonl"), dir.path().join("beside.jsonl"));
    flow_stats_run("", &alone);
    let report = run_toml(&format!(
        "[input]\n{TRAFFIC}\n[runtime]\nshards = 2\n\
         [[nf]]\nplugin = \"test-faults\"\nargs = {{ panic_after = 500 }}\n\
         [[nf]]\nplugin = \"flow-stats\"\nargs = {{ output = {} }}\n",
        toml_path(&beside)
    ));
    let faulty = &report.nfs[0];
    let failure = faulty.failure.as_deref().expect("the panic is reported");
    assert!(failure.contains("deliberate panic at event 500"), "{failure}");
    assert!(faulty.dropped_disabled > 0);
    assert_eq!(faulty.events + faulty.dropped_disabled, delivered(&report, 0), "every event is handled or counted as dropped");
    assert!(faulty.events < 500);
    assert_eq!(flow_lines(&beside), flow_lines(&alone), "the other NF is unaffected");
    assert_eq!(report.shards.iter().map(|s| s.forwarded).sum::<u64>(), report.input.packets);
}

#[test]
fn a_capture_spanning_years_expires_flows_by_packet_time() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("flows.jsonl");
    // 1kxun spans 5.8 years: with default timeouts its flows end by timeout as time jumps.
    let report = run_toml(&format!(
        "[input]\npcap = {}\n[[nf]]\nplugin = \"flow-stats\"\nargs = {{ output = {} }}\n",
        toml_path(&pcaps().join("ndpi__1kxun.pcap")),
        toml_path(&out)
    ));
    let ended_by_timeout: u64 = report.shards.iter().map(|s| s.stack.ended[mbox_abi::REASON_TIMEOUT as usize]).sum();
    assert!(ended_by_timeout > 0);
    let flows: Vec<Value> = read_jsonl(&out).into_iter().filter(|f| f["proto"] == "TCP" || f["proto"] == "UDP").collect();
    let packets: u64 = flows.iter().map(|f| f["c2s"]["pkts"].as_u64().unwrap() + f["s2c"]["pkts"].as_u64().unwrap()).sum();
    let reference: u64 = read_tsv(&pcaps().join("EXPECTED-flows.tsv"))
        .iter()
        .filter(|r| r["pcap"] == "ndpi__1kxun.pcap")
        .map(|r| r["c2s_pkts"].parse::<u64>().unwrap() + r["s2c_pkts"].parse::<u64>().unwrap())
        .sum();
    assert_eq!(packets, reference, "splitting flows by timeout loses no packet");
    // A flow idle past its timeout before the capture's last packet ended by timeout (or by its
    // FIN/RST linger); the others were still open at the end of the input.
    let ts = |f: &Value, k: &str| f[k].as_str().unwrap().split('.').next().unwrap().parse::<u64>().unwrap();
    let end = flows.iter().map(|f| ts(f, "last_ts")).max().unwrap();
    for f in &flows {
        let timeout = if f["proto"] == "TCP" { 600 } else { 120 };
        let reason = f["end_reason"].as_str().unwrap();
        if end - ts(f, "last_ts") > timeout + 1 {
            assert!(["timeout", "fin", "rst"].contains(&reason), "{f}");
        } else if end - ts(f, "last_ts") < timeout {
            assert!(["end_of_input", "fin", "rst"].contains(&reason), "{f}");
        }
    }
}

#[test]
fn a_full_flow_table_evicts_the_least_recent_flow_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("flows.jsonl");
    let report = flow_stats_run("[flow]\ntable_size = 8", &out);
    let evicted: u64 = report.shards.iter().map(|s| s.stack.ended[mbox_abi::REASON_EVICTED as usize]).sum();
    assert!(evicted > 0, "40 concurrent conversations cannot fit 8 slots");
    let flows = read_jsonl(&out);
    assert_eq!(flows.iter().filter(|f| f["end_reason"] == "evicted").count() as u64, evicted);
    let packets: u64 = flows.iter().map(|f| f["c2s"]["pkts"].as_u64().unwrap() + f["s2c"]["pkts"].as_u64().unwrap()).sum();
    assert_eq!(packets, report.input.packets, "an evicted flow's later packets start a new flow; none is lost");
}

#[test]
fn a_list_of_captures_is_read_in_order_as_one_input() {
    let dir = tempfile::tempdir().unwrap();
    let names = ["ndpi__smtp.pcap", "ndpi__ocsp.pcapng", "ndpi__http_ipv6.pcap"];
    let run = |files: &[&str], out: &Path| {
        let list: Vec<String> = files.iter().map(|n| toml_path(&pcaps().join(n))).collect();
        run_toml(&format!(
            "[input]\npcap = [{}]\n[[nf]]\nplugin = \"flow-stats\"\nargs = {{ output = {} }}\n",
            list.join(", "),
            toml_path(out)
        ))
    };
    let mut packets = 0;
    let mut flows = Vec::new();
    for name in names {
        let out = dir.path().join(format!("{name}.jsonl"));
        packets += run(&[name], &out).input.packets;
        flows.extend(flow_lines(&out));
    }
    let out = dir.path().join("all.jsonl");
    let report = run(&names, &out);
    assert_eq!(report.input.packets, packets);
    assert!(report.input.description.ends_with("ndpi__smtp.pcap and 2 more captures"), "{}", report.input.description);
    flows.sort();
    assert_eq!(flow_lines(&out), flows, "the same flows as the captures one by one");

    // A missing file anywhere in the list stops the run before it starts.
    let missing = dir.path().join("missing.pcap");
    let err = try_run_toml(&format!("[input]\npcap = [{}, {}]\n", toml_path(&pcaps().join(names[0])), toml_path(&missing))).unwrap_err();
    assert!(err.contains("missing.pcap"), "{err}");
}

#[test]
fn repeated_and_retimed_captures_give_new_flows_each_pass() {
    let dir = tempfile::tempdir().unwrap();
    let capture = toml_path(&pcaps().join("ndpi__smtp.pcap"));
    let run = |input: &str, out: &Path| {
        run_toml(&format!(
            "[input]\npcap = {capture}\n{input}\n[[nf]]\nplugin = \"flow-stats\"\nargs = {{ output = {} }}\n",
            toml_path(out)
        ))
    };
    let once = dir.path().join("once.jsonl");
    let single = run("", &once);
    let thrice = dir.path().join("thrice.jsonl");
    let report = run("repeat = 3\nretime = \"1h\"", &thrice);
    assert_eq!(report.input.packets, 3 * single.input.packets);
    // Each pass's connections are new flows with the same counts, one hour and more apart.
    let counts = |v: &Value| (v["src_port"].clone(), v["c2s"].clone(), v["s2c"].clone());
    let first: Vec<Value> = read_jsonl(&once);
    let all: Vec<Value> = read_jsonl(&thrice);
    assert_eq!(all.len(), 3 * first.len());
    for f in &first {
        assert_eq!(all.iter().filter(|g| counts(g) == counts(f)).count(), 3, "{f}");
    }
    let starts: std::collections::BTreeSet<u64> =
        all.iter().map(|f| f["first_ts"].as_str().unwrap().split('.').next().unwrap().parse().unwrap()).collect();
    assert!(starts.last().unwrap() - starts.first().unwrap() >= 2 * 3600);
    // Flows of the earlier passes ended by idle timeout when the next pass began.
    let timeouts = all.iter().filter(|f| f["end_reason"] == "timeout").count();
    assert!(timeouts >= 2 * first.iter().filter(|f| f["end_reason"] == "end_of_input").count(), "{timeouts}");

    // A capture without packets first: the next one keeps its own times (nothing to follow).
    let empty = dir.path().join("empty.pcap");
    mbox_core::io::capture::PcapWriter::create(&empty, mbox_stack::wire::LinkType::Ethernet).unwrap().finish().unwrap();
    let after_empty = dir.path().join("after-empty.jsonl");
    run_toml(&format!(
        "[input]\npcap = [{}, {capture}]\nretime = \"1h\"\n[[nf]]\nplugin = \"flow-stats\"\nargs = {{ output = {} }}\n",
        toml_path(&empty),
        toml_path(&after_empty)
    ));
    let first_ts = |path: &Path| read_jsonl(path).iter().map(|f| f["first_ts"].as_str().unwrap().to_string()).min().unwrap();
    assert_eq!(first_ts(&after_empty), first_ts(&once));
    // "none" is no retiming, not retiming with no pause.
    let none = dir.path().join("none.jsonl");
    let report = run("repeat = 2\nretime = \"none\"", &none);
    assert_eq!(report.input.packets, 2 * single.input.packets);
    let last_ts = |path: &Path| read_jsonl(path).iter().map(|f| f["last_ts"].as_str().unwrap().to_string()).max().unwrap();
    assert_eq!(last_ts(&none), last_ts(&once), "the second pass was not moved in time");

    let e = try_run_toml("[input]\ngenerator = { flows = 1 }\nrepeat = 2\n").unwrap_err();
    assert!(e.contains("`repeat` and `retime` apply to captures"), "{e}");
    let e = try_run_toml(&format!("[input]\npcap = {capture}\nrepeat = 0\n")).unwrap_err();
    assert!(e.contains("[input] repeat: must be at least 1"), "{e}");
}

#[test]
fn the_bundled_ids_config_raises_its_alert_and_classifies_its_flows() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo().join("configs/ids.toml"))
        .unwrap()
        .replace("\"testdata/", &format!("\"{}/testdata/", repo().display()))
        .replace("\"out/", &format!("\"{}/", dir.path().display()));
    let report = run_toml(&text);
    assert!(report.nfs.iter().all(|nf| nf.failure.is_none()));
    let eve = read_jsonl(&dir.path().join("eve.jsonl"));
    let alerts: Vec<u64> =
        eve.iter().filter(|l| l["event_type"] == "alert").map(|l| l["alert"]["signature_id"].as_u64().unwrap()).collect();
    assert_eq!(alerts, [9_000_001]);
    let types: Vec<&str> = eve.iter().filter(|l| l["event_type"] == "flow_type").map(|l| l["app_proto"].as_str().unwrap()).collect();
    assert_eq!(types, ["http", "http", "http"]);
    assert_eq!(read_jsonl(&dir.path().join("ids-flows.jsonl")).len(), 7);
}

#[test]
fn flow_stats_and_dpi_report_their_own_counters() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("flows.jsonl");
    let report = run_toml(&format!(
        "[input]\npcap = {}\n[[nf]]\nplugin = \"dpi\"\n[[nf]]\nplugin = \"flow-stats\"\nargs = {{ output = {} }}\n",
        toml_path(&pcaps().join("ndpi__http_ipv6.pcap")),
        toml_path(&out)
    ));
    let counter = |nf: usize, name: &str| report.nfs[nf].counters.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
    let flows = read_jsonl(&out).len() as u64;
    assert_eq!(flows, 15);
    assert_eq!((counter(1, "flows_written"), counter(1, "flows_open"), counter(1, "flows_overwritten")), (Some(flows), Some(0), Some(0)));
    // dpi's classifications by protocol: every flow of this capture, 13 TLS and 2 QUIC.
    let classified: u64 = report.nfs[0].counters.iter().filter(|(n, _)| n != "not_published").map(|(_, v)| v).sum();
    assert_eq!((classified, counter(0, "tls"), counter(0, "quic")), (flows, Some(13), Some(2)), "{:?}", report.nfs[0].counters);
    assert_eq!(counter(0, "not_published"), Some(0));
}

/// A packet's first event that no NF gets (sig-match unsubscribes a flow from `PKT/TCP` when no
/// packet rule fits it, and the packets already on their way still come) finishes at once; the
/// packet must stay held for the events the stack emits after it (its stream bytes). It once
/// went on at that moment, and its buffer came back refilled while `DATA_RDY` still pointed
/// into it: streams read other packets' bytes, frames went out twice or not at all (and a debug
/// build's shard died of the reference count's underflow). With few packet buffers (so they
/// are reused at once), every frame comes out unchanged and sig-match alerts as it does
/// without the packets; without packet rules, it declines every flow's packets at once.
#[test]
fn a_packet_stays_held_for_its_later_events_when_no_nf_gets_its_first() {
    let dir = tempfile::tempdir().unwrap();
    let input = pcaps().join("ndpi__1kxun.pcap");
    let demo = std::fs::read_to_string(repo().join("testdata/rules/custom.rules")).unwrap();
    // A packet rule no flow of the capture fits: each flow is let go at its first packet.
    let rules = dir.path().join("rules");
    std::fs::write(&rules, format!("{demo}\nalert tcp any any -> any 1 (msg:\"port 1 SYN\"; flags:S; sid:1;)\n")).unwrap();
    let run = |name: &str, rules: &Path, subscribe: &str| {
        let (pcap, alerts) = (dir.path().join(format!("{name}.pcap")), dir.path().join(format!("{name}.jsonl")));
        let report = run_toml(&format!(
            "[input]\npcap = {}\n[runtime]\npacket_buffers = 64\n[output]\npcap = {}\n\
             [[nf]]\nplugin = \"sig-match\"\n{subscribe}args = {{ rules = {} }}\n\
             [[nf]]\nplugin = \"logger\"\nsubscribe = [\"ALERT\"]\nargs = {{ output = {} }}\n",
            toml_path(&input),
            toml_path(&pcap),
            toml_path(rules),
            toml_path(&alerts)
        ));
        let mut frames: Vec<Vec<u8>> = mbox_core::io::capture::read_all(&pcap).unwrap().into_iter().map(|(_, f)| f).collect();
        frames.sort();
        let mut sids: Vec<u64> = read_jsonl(&alerts).iter().map(|a| a["alert"]["signature_id"].as_u64().unwrap()).collect();
        sids.sort();
        (report, frames, sids)
    };
    let tcp_packets =
        |report: &RunReport| ["PKT/TCP", "PKT/TCP/SYN", "PKT/TCP/FIN", "PKT/TCP/RST"].iter().map(|t| events_of(report, t)).sum::<u64>();
    let (report, frames, sids) = run("packets", &rules, "");
    let counter = |name: &str| report.nfs[0].counters.iter().find(|(n, _)| n == name).map_or(0, |(_, v)| *v);
    assert!(counter("flows_without_packet_rules") > 50, "{:?}", report.nfs[0].counters);
    assert!(report.nfs[0].unsubscriptions >= counter("flows_without_packet_rules"));
    assert!(tcp_packets(&report) > 0, "sig-match got packets before it unsubscribed");
    let mut input_frames: Vec<Vec<u8>> = mbox_core::io::capture::read_all(&input).unwrap().into_iter().map(|(_, f)| f).collect();
    input_frames.sort();
    assert_eq!(frames.len(), input_frames.len(), "every frame out once");
    assert!(frames == input_frames, "every frame out unchanged");
    let (_, _, without) = run("streams", &rules, "subscribe = [\"FLOW/TCP\", \"PKT/UDP\", \"FLOW/UDP/TERMINATE\"]\n");
    assert!(!sids.is_empty());
    assert_eq!(sids, without, "the same alerts with and without the packets");
    // The demo rules alone have no packet rule: hardly a packet event reaches sig-match.
    std::fs::write(&rules, demo).unwrap();
    let (report, frames, sids) = run("demo", &rules, "");
    let total = input_frames.len() as u64;
    assert!(tcp_packets(&report) * 20 < total, "{} TCP packet events of {total} packets", tcp_packets(&report));
    assert_eq!((frames, sids), (input_frames, without));
}
