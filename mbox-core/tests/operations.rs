//! Running mbox as a service (docs/operations.md): the systemd unit, its logrotate snippet and
//! the sample service config in configs/systemd are what the guide says, and work — the unit's
//! command line runs mbox to the end with its report, its restart rule matches mbox's exit
//! statuses, systemd and logrotate accept the files where they are installed, and the sample
//! config compiles to its service graph.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

/// The value of `key` in the `[section]` of a systemd unit or a similar INI file.
fn unit_value(text: &str, section: &str, key: &str) -> Option<String> {
    let mut current = "";
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name;
        } else if current == section {
            if let Some((k, v)) = line.split_once('=') {
                if k.trim() == key {
                    return Some(v.trim().to_string());
                }
            }
        }
    }
    None
}

fn systemd() -> String {
    std::fs::read_to_string(repo().join("configs/systemd/mbox.service")).unwrap()
}

#[test]
fn the_systemd_units_command_runs_mbox_to_the_end_and_its_restart_rule_fits_the_exit_statuses() {
    let unit = systemd();
    let exec = unit_value(&unit, "Service", "ExecStart").expect("ExecStart");
    let words: Vec<&str> = exec.split_whitespace().collect();
    assert_eq!(words[..3], ["/usr/local/bin/mbox", "run", "/etc/mbox/mbox.toml"], "{exec}");
    // The unit's own flags, on a run of the generator: mbox takes them and writes the report.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mbox.toml");
    std::fs::write(
        &config,
        format!(
            "plugin_dir = {}\n[input]\ngenerator = {{ flows = 50 }}\n[[nf]]\nplugin = \"flow-stats\"\nargs = {{ output = {} }}\n",
            toml_path(&plugin_dir()),
            toml_path(&dir.path().join("flows.jsonl"))
        ),
    )
    .unwrap();
    let report = dir.path().join("report.json");
    let args: Vec<String> = words[3..].iter().map(|w| w.replace("/var/lib/mbox/report.json", report.to_str().unwrap())).collect();
    let out = Command::new(env!("CARGO_BIN_EXE_mbox")).arg("run").arg(&config).args(&args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert!(report["input"]["packets"].as_u64() > Some(0), "{report}");

    // SIGTERM ends a run with its results (mbox's own stop); the one status not to restart on
    // is a start-up error, which mbox reports as 1.
    assert_eq!(unit_value(&unit, "Service", "KillSignal").as_deref(), Some("SIGTERM"));
    assert_eq!(unit_value(&unit, "Service", "RestartPreventExitStatus").as_deref(), Some("1"));
    std::fs::write(&config, "[input]\npcap = \"/nonexistent.pcap\"\n[runtime]\nshards = 0\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mbox")).arg("run").arg(&config).args(&args).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    // The control socket's directory is the one systemd makes for the service.
    assert_eq!(unit_value(&unit, "Service", "RuntimeDirectory").as_deref(), Some("mbox"));
    let sample = std::fs::read_to_string(repo().join("configs/systemd/mbox.toml")).unwrap();
    assert!(sample.contains("socket = \"/run/mbox/mbox.sock\""), "the sample config's socket is in /run/mbox");

    // systemd's own check, where systemd is installed (the binary path made real).
    if Command::new("systemd-analyze").arg("--version").output().is_ok() {
        let copy = dir.path().join("mbox.service");
        std::fs::write(&copy, unit.replace("/usr/local/bin/mbox", env!("CARGO_BIN_EXE_mbox"))).unwrap();
        let out = Command::new("systemd-analyze").arg("verify").arg(&copy).output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && text.trim().is_empty(), "systemd-analyze verify: {text}");
    } else {
        skip("systemd-analyze verify of configs/systemd/mbox.service", "systemd is not installed");
    }
}

#[test]
fn the_logrotate_snippet_rotates_the_sample_configs_outputs_and_signals_mbox() {
    let text = std::fs::read_to_string(repo().join("configs/systemd/mbox.logrotate")).unwrap();
    assert!(text.contains("systemctl kill --signal=HUP --kill-whom=main mbox.service"), "{text}");
    // Every file the sample config's NFs write is one the snippet rotates.
    let sample = std::fs::read_to_string(repo().join("configs/systemd/mbox.toml")).unwrap();
    let outputs: Vec<&str> = sample.split("output = \"").skip(1).filter_map(|s| s.split('"').next()).collect();
    assert!(!outputs.is_empty());
    assert!(outputs.iter().all(|o| Path::new(o).parent() == Some(Path::new("/var/log/mbox")) && o.ends_with(".jsonl")), "{outputs:?}");
    // logrotate's own reading of it (-d: nothing is rotated), where logrotate is installed.
    let Ok(_) = Command::new("logrotate").arg("--version").output() else {
        skip("logrotate -d of configs/systemd/mbox.logrotate", "logrotate is not installed (apt-get install logrotate)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    std::fs::write(logs.join("flows.jsonl"), "{}\n").unwrap();
    let conf = dir.path().join("mbox.logrotate");
    std::fs::write(&conf, text.replace("/var/log/mbox", logs.to_str().unwrap())).unwrap();
    let out = Command::new("logrotate").arg("-d").arg("-s").arg(dir.path().join("state")).arg(&conf).output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && !said.contains("error"), "logrotate -d: {said}");
    assert!(said.contains("flows.jsonl"), "logrotate -d considers the outputs: {said}");
}

#[test]
fn the_sample_service_config_compiles_to_its_service_graph() {
    if !cfg!(feature = "dpdk") {
        return; // its [dpdk] section needs an mbox built with DPDK
    }
    let sample = std::fs::read_to_string(repo().join("configs/systemd/mbox.toml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The installed paths made this checkout's.
    let text = sample
        .replace("\"/usr/local/lib/mbox\"", &toml_path(&plugin_dir()))
        .replace("\"/etc/mbox/rules/suricata.rules\"", &toml_path(&repo().join("testdata/rules/custom.rules")))
        .replace("/var/log/mbox", dir.path().to_str().unwrap());
    let config = dir.path().join("mbox.toml");
    std::fs::write(&config, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mbox")).arg("graph").arg(&config).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dot = String::from_utf8(out.stdout).unwrap();
    for nf in ["dpi", "sig-match", "logger", "flow-stats"] {
        assert!(dot.contains(nf), "{nf} in the graph: {dot}");
    }
}
