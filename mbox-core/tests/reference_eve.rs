//! `mbox ids` against Suricata's own eve.json on every bundled capture: Suricata 7.0.10 with
//! its stock suricata.yaml and testdata/rules/custom.rules (tools/suricata-eve-reference.sh),
//! both reduced by tools/eve-keys.py to the key fields of each record type. For every type
//! both write, the records must be the same, but for the flows listed, with a reason, in
//! testdata/suricata-eve/KNOWN-DIFFERENCES.tsv (a listed flow that no longer differs fails
//! too, so that the list stays true). docs/ids.md says what differs and why.

mod common;

use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

/// The least share of Suricata's records of each type that must agree field for field.
const MIN_AGREEMENT: f64 = 0.85;

fn capture_name(p: &Path) -> String {
    p.file_stem().unwrap().to_string_lossy().into_owned()
}

/// A record's row: capture, type, then its key fields.
type Row = Vec<String>;

/// The flow a row belongs to, as KNOWN-DIFFERENCES.tsv names it: capture, type, source
/// address and port (`-` `-` for the run's stats record).
fn flow_key(row: &Row) -> (String, String, String, String) {
    let (capture, kind) = (row[0].clone(), row[1].clone());
    if kind == "stats" {
        return (capture, kind, "-".into(), "-".into());
    }
    (capture, kind, row[2].clone(), row[3].clone())
}

fn rows(text: &str) -> Vec<Row> {
    text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).map(|l| l.split('\t').map(str::to_string).collect()).collect()
}

fn counts(rows: &[Row]) -> BTreeMap<&Row, i64> {
    let mut c = BTreeMap::new();
    for r in rows {
        *c.entry(r).or_insert(0) += 1;
    }
    c
}

#[test]
fn eve_json_matches_suricatas_on_every_capture() {
    plugin_dir();
    let dir = tempfile::tempdir().unwrap();
    let rules = repo().join("testdata/rules/custom.rules");
    let mut reduce = Command::new("python3");
    reduce.arg(repo().join("tools/eve-keys.py"));
    for capture in captures() {
        let name = capture_name(&capture);
        let log_dir = dir.path().join(&name);
        let out = Command::new(env!("CARGO_BIN_EXE_mbox"))
            .args(["ids", "-q", "-r"])
            .arg(&capture)
            .arg("-S")
            .arg(&rules)
            .arg("-l")
            .arg(&log_dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "mbox ids on {name}: {}", String::from_utf8_lossy(&out.stderr));
        reduce.arg(format!("{name}={}", log_dir.join("eve.json").display()));
    }
    let reduced = reduce.output().expect("python3 runs tools/eve-keys.py");
    assert!(reduced.status.success(), "eve-keys.py: {}", String::from_utf8_lossy(&reduced.stderr));
    let ours = rows(&String::from_utf8(reduced.stdout).unwrap());
    let reference = rows(&std::fs::read_to_string(repo().join("testdata/suricata-eve/EXPECTED-eve-keys.tsv")).unwrap());
    let known: BTreeMap<_, String> = rows(&std::fs::read_to_string(repo().join("testdata/suricata-eve/KNOWN-DIFFERENCES.tsv")).unwrap())
        .into_iter()
        .skip(1) // the header
        .map(|r| ((r[0].clone(), r[1].clone(), r[2].clone(), r[3].clone()), r[4].clone()))
        .collect();

    // Rows of one side not matched by the other, by flow.
    let (mine, theirs) = (counts(&ours), counts(&reference));
    let mut unmatched: BTreeMap<_, Vec<String>> = BTreeMap::new();
    for (side, a, b) in [("mbox", &mine, &theirs), ("suricata", &theirs, &mine)] {
        for (row, n) in a {
            if *n > b.get(row).copied().unwrap_or(0) {
                unmatched.entry(flow_key(row)).or_default().push(format!("{side}: {}", row.join(" | ")));
            }
        }
    }
    let unexplained: Vec<String> = unmatched.iter().filter(|(k, _)| !known.contains_key(*k)).flat_map(|(_, v)| v.clone()).collect();
    assert!(
        unexplained.is_empty(),
        "{} record rows differ from Suricata's outside KNOWN-DIFFERENCES.tsv:\n{}",
        unexplained.len(),
        unexplained.iter().take(30).cloned().collect::<Vec<_>>().join("\n")
    );
    let agree_now: Vec<_> = known.iter().filter(|(k, _)| !unmatched.contains_key(*k)).map(|(k, r)| format!("{k:?} ({r})")).collect();
    assert!(
        agree_now.is_empty(),
        "these listed flows now agree with Suricata; take them out of KNOWN-DIFFERENCES.tsv:\n{}",
        agree_now.join("\n")
    );

    // Enough of each type agrees field for field for the comparison to mean something.
    let types: BTreeSet<&str> = reference.iter().map(|r| r[1].as_str()).collect();
    for kind in ["alert", "http", "dns", "tls", "ssh", "smtp", "flow", "stats"] {
        assert!(types.contains(kind), "the reference has no {kind} records");
    }
    for kind in types {
        let total: i64 = theirs.iter().filter(|(r, _)| r[1] == kind).map(|(_, n)| n).sum();
        let same: i64 = theirs.iter().filter(|(r, _)| r[1] == kind).map(|(r, n)| (*n).min(mine.get(*r).copied().unwrap_or(0))).sum();
        eprintln!("{kind}: {same} of Suricata's {total} records the same");
        assert!(same as f64 >= MIN_AGREEMENT * total as f64, "{kind}: only {same} of {total} records agree");
    }
}
