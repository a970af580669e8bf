//! Bad input of every kind gets a clear error or a counted drop, never a panic: configs,
//! plugins (missing, mismatched ABI, bad arguments), service graphs, capture files.

mod common;

use common::*;
use std::path::Path;

fn err_of(toml: &str) -> String {
    match try_run_toml(toml) {
        Ok(_) => panic!("expected an error for:\n{toml}"),
        Err(e) => e,
    }
}

const INPUT: &str = "[input]\ngenerator = { flows = 10, udp_flows = 0 }\n";

#[test]
fn graph_errors_name_the_problem() {
    let e = err_of(&format!("{INPUT}[[nf]]\nplugin = \"logger\"\nsubscribe = [\"ALERT\"]\n"));
    assert!(e.contains("NF `logger` subscribes to `ALERT`, but neither the stack nor any NF publishes it"), "{e}");
    assert!(e.ends_with("; the bundled NFs `sig-match` and `heavy-hitter` publish below it"), "{e}");
    let e = err_of(&format!("{INPUT}[[nf]]\nplugin = \"heavy-hitter\"\nsubscribe = [\"PKT\", \"ALERT\"]\n"));
    assert!(e.contains("cycle: heavy-hitter -> heavy-hitter"), "{e}");
    let e = err_of(&format!("{INPUT}[[nf]]\nplugin = \"logger\"\nsubscribe = [\"FLOW/TPC\"]\n"));
    assert_eq!(e, "test.toml: [[nf]] #1 (logger) subscribe: unknown event type `FLOW/TPC`; did you mean `FLOW/TCP`?");
    let e = err_of(&format!("{INPUT}[[nf]]\nplugin = \"logger\"\nsubscribe = [\"NOPE\"]\n"));
    assert_eq!(e, "test.toml: [[nf]] #1 (logger) subscribe: unknown event type `NOPE`", "nothing near: no guess");
    // A type a bundled NF publishes, without that NF.
    let e = err_of(&format!("{INPUT}[[nf]]\nplugin = \"logger\"\nsubscribe = [\"FLOW/TYPE\"]\n"));
    assert!(
        e.ends_with("unknown event type `FLOW/TYPE`; `FLOW/TYPE` is published by the `dpi` NF: add an [[nf]] with plugin = \"dpi\""),
        "{e}"
    );
    let e = err_of(&format!("{INPUT}[[nf]]\nplugin = \"logger\"\n[[nf]]\nplugin = \"logger\"\n"));
    assert!(e.contains("two NFs are named `logger`"), "{e}");
}

#[test]
fn plugin_errors_say_what_to_do() {
    let e = err_of(&format!("{INPUT}[[nf]]\nplugin = \"no-such-nf\"\n"));
    assert!(e.contains("plugin `no-such-nf`: no library at") && e.contains("cargo build --release -p no-such-nf"), "{e}");
    // Cargo's package has the dashes the library's name lost; a near name is pointed at.
    let e = err_of(&format!("{INPUT}[[nf]]\nplugin = \"flow_statz\"\n"));
    assert!(e.contains("did you mean `flow-stats`?") && e.contains("cargo build --release -p flow-statz"), "{e}");
    // A directory as `path`: no cargo command, the key's meaning.
    let dir = tempfile::tempdir().unwrap();
    let e = err_of(&format!("{INPUT}[[nf]]\npath = {}\n", toml_path(dir.path())));
    assert!(e.ends_with("(it is a directory: `path` names the library file itself, e.g. target/release/libmy_nf.so)"), "{e}");
    let e = err_of(&format!("{INPUT}[[nf]]\nplugin = \"flow-stats\"\nargs = {{ outptu = \"x\" }}\n"));
    assert_eq!(e, "NF `flow-stats` could not be created: unknown argument `outptu` (this NF takes: output)");
    // A library that is not a plugin at all.
    let not_plugin = std::env::temp_dir().join(format!("mbox-not-a-plugin-{}.so", std::process::id()));
    std::fs::write(&not_plugin, b"not an ELF file").unwrap();
    let e = err_of(&format!("{INPUT}[[nf]]\npath = {}\n", toml_path(&not_plugin)));
    std::fs::remove_file(&not_plugin).ok();
    assert!(e.contains("cannot load the library"), "{e}");
}

#[test]
fn a_plugin_built_against_another_abi_is_refused_with_one_clear_line() {
    let lib = old_abi_plugin();
    let e = err_of(&format!("{INPUT}[[nf]]\nname = \"old\"\npath = {}\n", toml_path(&lib)));
    assert!(e.starts_with("plugin `old` ("), "{e}");
    assert!(e.contains("was built against a different mbox-abi"), "{e}");
    assert!(e.contains("rebuild the plugin against this mbox's mbox-abi"), "{e}");
    assert!(!e.contains('\n'), "one line, not abi_stable's report: {e}");
}

/// The load-time check covers the event structs too (NFs cast them from `EventHeader`; the
/// root module does not reach them).
#[test]
fn a_plugin_whose_event_structs_differ_is_refused() {
    let lib = event_layout_plugin();
    let e = err_of(&format!("{INPUT}[[nf]]\nname = \"old\"\npath = {}\n", toml_path(&lib)));
    assert!(e.starts_with("plugin `old` ("), "{e}");
    assert!(e.contains("was built against a different mbox-abi"), "{e}");
    assert!(!e.contains('\n'), "one line: {e}");
}

/// A plugin announcing an mbox-abi version this host does not accept is refused by its version,
/// whatever its layouts.
#[test]
fn a_plugin_built_against_another_abi_version_is_refused_by_its_version() {
    let lib = version_plugin();
    let e = err_of(&format!("{INPUT}[[nf]]\nname = \"older\"\npath = {}\n", toml_path(&lib)));
    assert!(e.starts_with("plugin `older` ("), "{e}");
    assert!(e.contains("was built against mbox-abi 0.0.1; this mbox needs "), "{e}");
    assert!(e.contains("rebuild the plugin against this mbox's mbox-abi"), "{e}");
    assert!(!e.contains('\n'), "one line: {e}");
}

/// A plugin built against the previous ABI (mbox-abi frozen before this ABI's additions) loads
/// and runs: the ABI grew compatibly.
#[test]
fn a_plugin_built_against_the_previous_abi_still_loads_and_runs() {
    let lib = previous_abi_plugin();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("previous.jsonl");
    let report = run_toml(&format!(
        "[input]\npcap = {}\n[[nf]]\nname = \"previous\"\npath = {}\nargs = {{ output = {} }}\n",
        toml_path(&pcaps().join("ndpi__http_ipv6.pcap")),
        toml_path(&lib),
        toml_path(&out)
    ));
    assert_eq!(report.nfs[0].events, 193, "every packet of the capture");
    let line = &read_jsonl(&out)[0];
    assert_eq!((line["packets"].as_u64(), line["syns"].as_u64()), (Some(193), Some(6)), "{line}");
}

#[test]
fn bad_configs_exit_with_the_file_key_and_problem() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[input]\npcap = \"x.pcap\"\n[runtime]\nshards = 0\n").unwrap();
    let out = mbox().arg("run").arg(&cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("{}: [runtime] shards: must be between 1 and 64, not 0", cfg.display())), "{stderr}");

    std::fs::write(&cfg, "[input]\npcap = \"x.pcap\"\nshards = 2\n").unwrap();
    let out = mbox().arg("run").arg(&cfg).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("unknown field `shards`") && stderr.contains("line 3"), "{stderr}");

    let out = mbox().arg("run").arg(dir.path().join("missing.toml")).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the config"));
}

fn run_capture(dir: &Path, capture: &Path) -> std::process::Output {
    let cfg = dir.join("run.toml");
    std::fs::write(
        &cfg,
        format!(
            "plugin_dir = {}\n[input]\npcap = {}\n[[nf]]\nplugin = \"flow-stats\"\nargs = {{ output = {} }}\n",
            toml_path(&plugin_dir()),
            toml_path(capture),
            toml_path(&dir.join("flows.jsonl"))
        ),
    )
    .unwrap();
    mbox().arg("run").arg(&cfg).arg("--quiet").output().unwrap()
}

#[test]
fn garbage_and_cut_captures_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.pcap");
    std::fs::write(&garbage, b"this is not a capture at all").unwrap();
    let out = run_capture(dir.path(), &garbage);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a pcap or pcapng file"));

    // A real capture cut in the middle of a record: the packets before the cut are processed,
    // the summary says what happened, and the exit status says the input was incomplete.
    let bytes = std::fs::read(pcaps().join("ndpi__smtp.pcap")).unwrap();
    let cut = dir.path().join("cut.pcap");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let out = run_capture(dir.path(), &cut);
    assert_eq!(out.status.code(), Some(3));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("INPUT ERROR") && stdout.contains("ends inside a record"), "{stdout}");
    assert!(!read_jsonl(&dir.path().join("flows.jsonl")).is_empty(), "flows before the cut are reported");
}

#[test]
fn malformed_packets_are_counted_by_cause_and_dropped() {
    let dir = tempfile::tempdir().unwrap();
    // reasm_crash_anon holds two TCP segments with impossible data offsets.
    let out = run_capture(dir.path(), &pcaps().join("ndpi__reasm_crash_anon.pcapng"));
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("2 malformed") && stdout.contains("bad_tcp_data_offset 2"), "{stdout}");
}

#[test]
fn graph_prints_dot_and_gen_writes_a_capture_that_runs() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("gen.pcap");
    let out = mbox().args(["gen", "--flows", "20", "--udp-flows", "5", "--reorder", "0.1", "--out"]).arg(&pcap).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run_capture(dir.path(), &pcap);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(read_jsonl(&dir.path().join("flows.jsonl")).len(), 25);

    let cfg = dir.path().join("graph.toml");
    std::fs::write(
        &cfg,
        format!(
            "plugin_dir = {}\n[input]\npcap = \"unused.pcap\"\n\
             [[nf]]\nplugin = \"heavy-hitter\"\n[[nf]]\nplugin = \"port-filter\"\n[[nf]]\nplugin = \"logger\"\nsubscribe = [\"ALERT\", \"FLOW\"]\n",
            toml_path(&plugin_dir())
        ),
    )
    .unwrap();
    let out = mbox().arg("graph").arg(&cfg).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dot = String::from_utf8_lossy(&out.stdout);
    assert!(dot.starts_with("digraph mbox {"));
    assert!(dot.contains("stack -> nf0 [label=\"PKT\"]"), "{dot}");
    assert!(dot.contains("nf0 -> nf2 [label=\"ALERT\"]"), "{dot}");
    assert!(dot.contains("// PKT/TCP: [heavy-hitter] -> [port-filter]"), "{dot}");
}

#[test]
fn an_output_that_cannot_be_created_stops_the_run_before_it_starts() {
    let e = err_of(&format!("{INPUT}[output]\npcap = \"/nonexistent-dir/out.pcap\"\n"));
    assert!(e.starts_with("output: /nonexistent-dir/out.pcap: No such file or directory"), "{e}");
}

/// A run whose NF failed (and was disabled) ends with its own status, 5, and says which.
#[test]
fn a_run_whose_nf_was_disabled_exits_with_5() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("faulty.toml");
    std::fs::write(
        &config,
        format!("plugin_dir = {}\n{INPUT}[[nf]]\nplugin = \"test-faults\"\nargs = {{ panic_after = 10 }}\n", toml_path(&plugin_dir())),
    )
    .unwrap();
    let out = mbox().args(["run", config.to_str().unwrap(), "--quiet"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(5), "{text}");
    assert!(text.contains("DISABLED: ") && text.contains("deliberate panic at event 10"), "{text}");
}

/// An NF logs through the host (`Host::log`): its lines reach mbox's log under `nf::NAME` when
/// `RUST_LOG` lets them through, at most 100 a second (the rest counted).
#[test]
fn an_nf_logs_through_the_host_within_its_budget() {
    let dir = tempfile::tempdir().unwrap();
    let (config, report) = (dir.path().join("logs.toml"), dir.path().join("report.json"));
    std::fs::write(
        &config,
        format!(
            "plugin_dir = {}\n[input]\npcap = {}\n[[nf]]\nplugin = \"test-faults\"\nargs = {{ log_every = 1 }}\n",
            toml_path(&plugin_dir()),
            toml_path(&pcaps().join("ndpi__http_ipv6.pcap"))
        ),
    )
    .unwrap();
    let run = |log: &str| {
        let out = mbox().args(["run", config.to_str().unwrap(), "--quiet", "--report"]).arg(&report).env("RUST_LOG", log).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
        (String::from_utf8_lossy(&out.stderr).to_string(), json["nfs"][0].clone())
    };
    let (stderr, nf) = run("info");
    let lines = stderr.lines().filter(|l| l.contains("nf::test-faults") && l.contains("event ")).count() as u64;
    assert!(stderr.contains("INFO  nf::test-faults] event 1\n"), "{stderr}");
    assert_eq!(
        (nf["log_lines"].as_u64(), nf["log_lines"].as_u64().unwrap() + nf["log_lines_dropped"].as_u64().unwrap()),
        (Some(lines), 193)
    );
    assert!(lines <= 2 * 100, "within the budget of 100 a second: {lines}");
    // Not enabled: nothing written, nothing counted as dropped.
    let (stderr, nf) = run("warn");
    assert!(!stderr.contains("nf::test-faults"), "{stderr}");
    assert_eq!((nf["log_lines"].as_u64(), nf["log_lines_dropped"].as_u64()), (Some(0), Some(0)));
}

#[test]
fn an_nf_whose_output_fails_says_so_at_the_end() {
    // /dev/full accepts the open and fails every write with ENOSPC.
    let report = run_toml(&format!("{INPUT}[[nf]]\nplugin = \"flow-stats\"\nargs = {{ output = \"/dev/full\" }}\n"));
    let err = report.nfs[0].finish_error.as_deref().expect("the write error is reported");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(report.nfs[0].failure.is_none(), "a failing output does not disable the NF");
}

/// The hint that names the NF publishing a type (`BUNDLED_PUBLISHERS`) says what the bundled
/// plugins' descriptors say.
#[test]
fn the_bundled_publishers_hint_matches_the_plugins() {
    use mbox_core::plugin::{default_plugin_dir, library_path, Plugin};
    for (path, nf) in mbox_core::events::registry::BUNDLED_PUBLISHERS {
        let plugin = Plugin::load(nf, &library_path(&default_plugin_dir(), nf)).unwrap();
        assert!(plugin.descriptor.publishes.iter().any(|p| p == path), "{nf} publishes {:?}, not {path}", plugin.descriptor.publishes);
    }
}
