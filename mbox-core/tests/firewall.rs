//! The firewall NF end to end on a bundled capture (a phone browsing Weibo: 44 flows, 14 of them
//! plain HTTP): what it drops stays out of the output and of the NFs after it, its counters add
//! up, allowed flows pass whole in both directions, and a bad rule file stops the run with the
//! line that is wrong.

mod common;

use common::*;
use mbox_core::plugin::library_path;
use mbox_core::report::RunReport;
use serde_json::Value;
use std::path::Path;

fn capture() -> String {
    toml_path(&pcaps().join("ndpi__weibo.pcap"))
}

fn plugins_built() {
    let lib = library_path(&plugin_dir(), "firewall");
    assert!(lib.is_file(), "{} is missing: build the plugins first (`cargo build --workspace`)", lib.display());
}

fn counter(report: &RunReport, nf: usize, name: &str) -> u64 {
    let counters = &report.nfs[nf].counters;
    counters.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no counter {name}: {counters:?}")).1
}

fn pkts(flow: &Value) -> u64 {
    flow["c2s"]["pkts"].as_u64().unwrap() + flow["s2c"]["pkts"].as_u64().unwrap()
}

fn is_http(flow: &Value) -> bool {
    flow["proto"] == "TCP" && flow["server_port"] == 80
}

/// flow-stats before the firewall and after it, the firewall between with `args`; the output
/// capture of what passed.
fn around(dir: &Path, args: &str, ring: usize) -> (RunReport, Vec<Value>, Vec<Value>, u64) {
    let (before, after, pcap) = (dir.join("before.jsonl"), dir.join("after.jsonl"), dir.join("out.pcap"));
    let report = run_toml(&format!(
        "[input]\npcap = {}\n[runtime]\nring_capacity = {ring}\n[output]\npcap = {}\n\
         [[nf]]\nname = \"before\"\nplugin = \"flow-stats\"\nargs = {{ output = {} }}\n\
         [[nf]]\nplugin = \"firewall\"\nargs = {args}\n\
         [[nf]]\nname = \"after\"\nplugin = \"flow-stats\"\nargs = {{ output = {} }}\n",
        capture(),
        toml_path(&pcap),
        toml_path(&before),
        toml_path(&after)
    ));
    let written = mbox_core::io::capture::read_all(&pcap).unwrap().len() as u64;
    assert_eq!(report.output.as_ref().unwrap().packets, written);
    (report, read_jsonl(&before), read_jsonl(&after), written)
}

#[test]
fn denied_flows_stay_out_of_the_output_and_of_the_nfs_after_it() {
    plugins_built();
    // Small rings make the NFs lag each other, which is when ordering bugs show.
    for ring in [4, 1024] {
        let dir = tempfile::tempdir().unwrap();
        let args = r#"{ rule = ["deny tcp from any to any port 80"], default = "allow" }"#;
        let (report, before, after, written) = around(dir.path(), args, ring);
        assert_eq!(before.len(), 44);
        let (http, other): (Vec<&Value>, Vec<&Value>) = before.iter().partition(|f| is_http(f));
        assert_eq!((http.len(), other.len()), (14, 30));
        // The NF after the firewall saw every other flow whole, and no HTTP flow at all.
        assert_eq!(after.iter().collect::<Vec<_>>(), other, "ring {ring}");
        let http_pkts: u64 = http.iter().map(|f| pkts(f)).sum();
        let other_pkts: u64 = other.iter().map(|f| pkts(f)).sum();
        assert_eq!((http_pkts, other_pkts), (427, 71), "as in testdata/pcaps/EXPECTED-flows.tsv");
        assert_eq!(report.input.packets, http_pkts + other_pkts);
        assert_eq!(written, other_pkts, "the output holds exactly what the firewall passed");
        assert_eq!(report.nfs[1].verdict_drops, http_pkts);
        assert_eq!(report.shards.iter().map(|s| s.dropped_by_nf).sum::<u64>(), http_pkts);
        // One decision per flow, by the rule or the default; the rest of each flow follows it.
        assert_eq!(counter(&report, 1, "rule_1_deny"), 14);
        assert_eq!(counter(&report, 1, "default_allow"), 30);
        assert_eq!(counter(&report, 1, "denied_flow_dropped"), http_pkts - 14);
        assert_eq!(counter(&report, 1, "established_passed"), other_pkts - 30);
        assert_eq!(counter(&report, 1, "non_ip_passed"), 0);
    }
}

#[test]
fn allowed_flows_pass_in_both_directions_only_with_established() {
    plugins_built();
    let rules = r#"rule = ["allow tcp from 192.168.1.105 to any port 80", "allow udp from any to 192.168.1.1 port 53"]"#;
    let dir = tempfile::tempdir().unwrap();
    let (report, before, after, written) = around(dir.path(), &format!("{{ {rules} }}"), 1024);
    let allowed: Vec<&Value> = before.iter().filter(|f| is_http(f) || f["server_port"] == 53).collect();
    assert_eq!(allowed.len(), 14 + 12);
    assert_eq!(after.iter().collect::<Vec<_>>(), allowed, "whole flows: the servers' answers passed");
    let answers: u64 = allowed.iter().map(|f| f["s2c"]["pkts"].as_u64().unwrap()).sum();
    assert_eq!(answers, 221, "212 from the web servers, 9 from the resolver (EXPECTED-flows.tsv)");
    assert_eq!(written, allowed.iter().map(|f| pkts(f)).sum::<u64>());
    assert_eq!(
        (counter(&report, 1, "rule_1_allow"), counter(&report, 1, "rule_2_allow"), counter(&report, 1, "default_deny")),
        (14, 12, 18)
    );
    // Without flow state every packet meets the rules: no answer matches one.
    let dir = tempfile::tempdir().unwrap();
    let (report, _, stateless, written) = around(dir.path(), &format!("{{ {rules}, established = false }}"), 1024);
    assert_eq!(stateless.len(), allowed.len());
    for (got, full) in stateless.iter().zip(&allowed) {
        assert_eq!((&got["c2s"], got["s2c"]["pkts"].as_u64()), (&full["c2s"], Some(0)), "{full}");
    }
    assert_eq!(written, allowed.iter().map(|f| f["c2s"]["pkts"].as_u64().unwrap()).sum::<u64>());
    assert_eq!(counter(&report, 1, "established_passed"), 0);
}

#[test]
fn the_bundled_config_gives_the_readme_figures() {
    plugins_built();
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo().join("configs/firewall.toml"))
        .unwrap()
        .replace("\"testdata/", &format!("\"{}/testdata/", repo().display()))
        .replace("\"configs/", &format!("\"{}/configs/", repo().display()))
        .replace("\"out/", &format!("\"{}/", dir.path().display()));
    let report = run_toml(&text);
    assert_eq!((report.input.packets, report.nfs[0].verdict_drops), (498, 436));
    let counters: Vec<(&str, u64)> = report.nfs[0].counters.iter().map(|(n, v)| (n.as_str(), *v)).collect();
    assert_eq!(
        counters,
        [
            ("rule_1_allow", 12),
            ("rule_2_deny", 14),
            ("rule_3_allow", 16),
            ("rule_4_allow", 1),
            ("rule_5_allow", 0),
            ("rule_6_allow", 0),
            ("default_deny", 1),
            ("established_passed", 33),
            ("denied_flow_dropped", 421),
            ("non_ip_passed", 0),
        ]
    );
    let flows = read_jsonl(&dir.path().join("firewall-flows.jsonl"));
    let count = |proto: &str, port: u64| flows.iter().filter(|f| f["proto"] == proto && f["server_port"] == port).count();
    assert_eq!((flows.len(), count("TCP", 443), count("UDP", 443), count("UDP", 53)), (29, 16, 1, 12));
}

#[test]
fn a_bad_rule_file_stops_the_run_with_its_line() {
    plugins_built();
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("fw.rules");
    std::fs::write(&rules, "# web\nallow tcp from any to any port 80\nallow tcpp from any to any\n").unwrap();
    let e = try_run_toml(&format!(
        "[input]\npcap = {}\n[[nf]]\nplugin = \"firewall\"\nargs = {{ rules = {} }}\n",
        capture(),
        toml_path(&rules)
    ))
    .unwrap_err();
    assert_eq!(
        e,
        format!(
            "NF `firewall` could not be created: {}:3: unknown protocol \"tcpp\" (expected tcp, udp, icmp, icmpv6, any or a protocol number 0-255)",
            rules.display()
        )
    );
}
