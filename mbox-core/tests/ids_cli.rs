//! `mbox ids` and `mbox rules check` as a Suricata user runs them: rule files with their
//! refusals named by file, line and sid, duplicate sids, drop rules in IDS mode, address
//! groups from a suricata.yaml and `--set`, and the eve.json and fast.log written.

mod common;

use common::*;
use std::path::Path;

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn rules_check_names_every_refusal_and_tallies_them_by_keyword() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.rules", "alert tcp any any -> any 80 (msg:\"one\"; content:\"x\"; sid:1; rev:1;)\n");
    let b = write(
        dir.path(),
        "b.rules",
        "# comment\nalert tcp any any -> any 80 (msg:\"dup\"; content:\"y\"; sid:1;)\n\
         alert tcp any any -> any 80 (msg:\"odd\"; lua:x.lua; sid:2;)\n\
         pass tcp any any -> any 80 (msg:\"pass\"; sid:3;)\n\
         drop tcp any any -> any 80 (msg:\"drop\"; content:\"z\"; sid:4;)\n",
    );
    let out = mbox().args(["rules", "check"]).arg(&a).arg(&b).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "refusals make a non-zero exit: {text}");
    let b_name = b.display().to_string();
    assert!(
        text.contains(&format!("{b_name}:2 (sid 1)")) && text.contains(&format!("{}:1", a.display())),
        "duplicate names both lines: {text}"
    );
    assert!(text.contains(&format!("{b_name}:3 (sid 2)")) && text.contains("lua"), "{text}");
    assert!(text.contains(&format!("{b_name}:4 (sid 3)")), "pass is refused (an IDS does not pass): {text}");
    assert!(text.contains("2 of 5 rules load, 3 refused"), "the drop rule loads: {text}");
    assert!(text.contains("refused by keyword:") && text.contains("duplicate 1"), "{text}");

    let ok = mbox().args(["rules", "check"]).arg(&a).output().unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stdout));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("1 of 1 rules load, 0 refused"));
}

/// A rule on the STARTTLS of ndpi__smtp-starttls (its client 10.0.0.1 is in the stock HOME_NET).
const STARTTLS: &str = "drop tcp $HOME_NET any -> $EXTERNAL_NET 25 (msg:\"a STARTTLS from home, a message longer than one hundred and twenty bytes so that nothing is cut from it on the way\"; flow:established,to_server; content:\"STARTTLS\"; classtype:policy-violation; metadata:created_at 2024_01_01, signature_severity Minor; sid:7100; rev:3;)\n";

fn ids(dir: &Path, rules: &Path, extra: &[&str]) -> (std::process::Output, Vec<serde_json::Value>, String) {
    let log = dir.join("log");
    let _ = std::fs::remove_dir_all(&log);
    let out = mbox()
        .args(["ids", "-q", "-r"])
        .arg(pcaps().join("ndpi__smtp-starttls.pcap"))
        .arg("-S")
        .arg(rules)
        .arg("-l")
        .arg(&log)
        .args(extra)
        .output()
        .unwrap();
    let eve = std::fs::read_to_string(log.join("eve.json")).unwrap_or_default();
    let records = eve.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad eve line {l}: {e}"))).collect();
    (out, records, std::fs::read_to_string(log.join("fast.log")).unwrap_or_default())
}

fn alerts(records: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    records.iter().filter(|r| r["event_type"] == "alert").collect()
}

#[test]
fn ids_writes_suricatas_alert_records_and_fast_log() {
    plugin_dir();
    let dir = tempfile::tempdir().unwrap();
    let rules = write(dir.path(), "t.rules", STARTTLS);
    let (out, records, fast) = ids(dir.path(), &rules, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let alerts = alerts(&records);
    assert_eq!(alerts.len(), 1, "{records:?}");
    let a = &alerts[0]["alert"];
    assert_eq!(a["signature_id"], 7100);
    assert_eq!(a["rev"], 3);
    assert_eq!(a["gid"], 1);
    assert!(a["signature"].as_str().unwrap().ends_with("nothing is cut from it on the way"), "the full message: {a}");
    assert_eq!(a["category"], "Potential Corporate Privacy Violation");
    assert_eq!(a["severity"], 1, "policy-violation is priority 1");
    assert_eq!(a["metadata"]["signature_severity"][0], "Minor");
    assert_eq!(alerts[0]["app_proto"], "smtp");
    assert_eq!(alerts[0]["src_ip"], "10.0.0.1");
    // The flow record says it alerted; the run ends with a stats record.
    let flow = records.iter().find(|r| r["event_type"] == "flow" && r["src_ip"] == "10.0.0.1").unwrap();
    assert_eq!(flow["flow"]["alerted"], true);
    assert_eq!(flow["app_proto"], "tls", "after STARTTLS, as Suricata names it");
    assert!(records.iter().any(|r| r["event_type"] == "smtp"));
    assert_eq!(records.last().unwrap()["event_type"], "stats");
    // A drop rule alerts in IDS mode, and fast.log marks it as Suricata does.
    assert!(fast.contains("[wDrop] [**] [1:7100:3] a STARTTLS from home"), "{fast}");
    assert!(
        fast.contains("[Classification: Potential Corporate Privacy Violation] [Priority: 1] {TCP} 10.0.0.1:57406 -> 173.194.68.26:25"),
        "{fast}"
    );
}

#[test]
fn address_groups_come_from_the_yaml_and_set_overrides_them() {
    plugin_dir();
    let dir = tempfile::tempdir().unwrap();
    let rules = write(dir.path(), "t.rules", STARTTLS);
    // HOME_NET elsewhere: the client is not at home, no alert.
    let (out, records, _) = ids(dir.path(), &rules, &["--set", "vars.address-groups.HOME_NET=198.18.0.0/15"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(alerts(&records).is_empty(), "{:?}", alerts(&records));
    let yaml = write(
        dir.path(),
        "s.yaml",
        "%YAML 1.1\n---\nvars:\n  address-groups:\n    HOME_NET: \"[198.18.0.0/15]\"\n    EXTERNAL_NET: \"any\"\n",
    );
    let (_, records, _) = ids(dir.path(), &rules, &["-c", yaml.to_str().unwrap()]);
    assert!(alerts(&records).is_empty(), "the YAML's HOME_NET is used");
    let (_, records, _) = ids(dir.path(), &rules, &["-c", yaml.to_str().unwrap(), "--set", "vars.address-groups.HOME_NET=10.0.0.0/8"]);
    assert_eq!(alerts(&records).len(), 1, "--set wins over the YAML");
}

#[test]
fn bad_rules_and_settings_get_a_clear_message() {
    plugin_dir();
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.rules", STARTTLS);
    let b = write(dir.path(), "b.rules", STARTTLS);
    // As in Suricata, the run goes on without the refused rule, which is named.
    let (out, records, _) = ids(dir.path(), &a, &["-S", b.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "1 rules loaded, 1 refused (first: {}:1 (sid 7100): sid 7100 is already taken by the rule at {}:1",
            b.display(),
            a.display()
        )),
        "{err}"
    );
    assert_eq!(alerts(&records).len(), 1);
    let (out, _, _) = ids(dir.path(), &a, &["--set", "outputs.eve-log.enabled=no"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a setting mbox reads"));
    let out = mbox().args(["ids", "-r"]).arg(pcaps().join("ndpi__smtp-starttls.pcap")).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("no rules"), "{}", String::from_utf8_lossy(&out.stderr));
}
