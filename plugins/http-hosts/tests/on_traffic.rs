//! http-hosts inside mbox (mbox_core::testing): on generated conversations, each of which
//! sends one request to `genN.mbox.test` (N = its id mod 16), it counts every request under
//! its host, on a clean wire and on one that loses, reorders and duplicates packets.

use mbox_core::testing::{run, Input};

fn hosts(generator: &str) -> Vec<serde_json::Value> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("hosts.jsonl");
    let nfs = format!("[[nf]]\nplugin = \"http-hosts\"\nargs = {{ output = {:?} }}\n", out.display().to_string());
    let report = run(Input::Generated(generator), &nfs).unwrap();
    assert!(report.nfs[0].events > 0, "http-hosts saw no event");
    std::fs::read_to_string(&out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn every_generated_request_is_counted_under_its_host() {
    for wire in ["", ", loss = 0.02, reorder = 0.05, duplicate = 0.01"] {
        let got = hosts(&format!("flows = 320, udp_flows = 0{wire}"));
        assert_eq!(got.len(), 16, "{got:?}");
        for line in &got {
            assert!(line["host"].as_str().unwrap().ends_with(".mbox.test"), "{line}");
            assert_eq!(line["requests"], 20, "wire `{wire}`: {line}");
        }
    }
}
