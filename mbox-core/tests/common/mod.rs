//! Helpers shared by the integration tests: paths, running a config in-process, reading the
//! reference TSV files.

#![allow(dead_code)] // each test binary uses a different subset

use mbox_core::config::Config;
use mbox_core::plugin::{default_plugin_dir, library_path};
use mbox_core::report::RunReport;
use mbox_core::run::{self, RunOptions};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The bundled captures and their references.
pub fn pcaps() -> PathBuf {
    repo().join("testdata/pcaps")
}

/// The `mbox` binary of this build, to run as a user would.
pub fn mbox() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_mbox"))
}

/// The captures (pcap and pcapng) in `dir`, sorted.
pub fn captures_in(dir: &Path) -> Vec<PathBuf> {
    let mut c: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pcap" || x == "pcapng"))
        .collect();
    c.sort();
    c
}

/// The bundled captures, sorted.
pub fn captures() -> Vec<PathBuf> {
    captures_in(&pcaps())
}

/// Where the plugins of this build are; fails with instructions when they were not built.
pub fn plugin_dir() -> PathBuf {
    let dir = default_plugin_dir();
    for name in ["flow-stats", "logger"] {
        let lib = library_path(&dir, name);
        assert!(
            lib.is_file(),
            "{} is missing: build the plugins first (`cargo build --workspace`, same profile as the tests)",
            lib.display()
        );
    }
    dir
}

/// A check that cannot run here: fails where it must run (`MBOX_REQUIRE_TESTBED`, set by
/// `tools/test.sh` as root), else says so on stderr and in `MBOX_SKIP_LOG` (a file
/// `tools/test.sh` counts in its summary), so that a skip is never silent.
pub fn skip(test: &str, reason: &str) {
    assert!(std::env::var_os("MBOX_REQUIRE_TESTBED").is_none(), "{test} must run here but cannot: {reason}");
    eprintln!("SKIPPED {test}: {reason}");
    if let Some(log) = std::env::var_os("MBOX_SKIP_LOG") {
        use std::io::Write;
        let line = format!("{test}: {reason}\n");
        let appended = std::fs::OpenOptions::new().create(true).append(true).open(&log).and_then(|mut f| f.write_all(line.as_bytes()));
        appended.unwrap_or_else(|e| panic!("MBOX_SKIP_LOG {}: {e}", Path::new(&log).display()));
    }
}

/// Runs a config given as TOML text (plugin_dir is filled in).
pub fn run_toml(toml: &str) -> RunReport {
    try_run_toml(toml).unwrap_or_else(|e| panic!("run failed: {e}"))
}

/// Runs a config given as TOML text, returning the pipeline's error.
pub fn try_run_toml(toml: &str) -> Result<RunReport, String> {
    let text = format!("plugin_dir = {:?}\n{toml}", plugin_dir().display().to_string());
    let cfg = Config::parse(&text, Path::new("test.toml")).map_err(|e| e.to_string())?;
    let prepared = run::prepare(cfg, Path::new("test.toml")).map_err(|e| e.to_string())?;
    run::run(prepared, RunOptions::default()).map_err(|e| e.to_string())
}

/// Rows of a reference TSV file as maps from column name to value.
pub fn read_tsv(path: &Path) -> Vec<HashMap<String, String>> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    lines.map(|l| header.iter().map(|h| h.to_string()).zip(l.split('\t').map(str::to_string)).collect()).collect()
}

/// JSON lines from a file.
pub fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l}: {e}"))).collect()
}

/// A TOML string literal for a path.
pub fn toml_path(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

/// Builds the fixture plugin whose mbox-abi has another `EventHeader` layout.
pub fn old_abi_plugin() -> PathBuf {
    fixture_plugin("old-abi-plugin", "old_abi_plugin", &[], "old-abi-fixture")
}

/// Builds the same fixture with `PktEvent` laid out otherwise (an event struct the root module
/// does not reach).
pub fn event_layout_plugin() -> PathBuf {
    fixture_plugin("old-abi-plugin", "old_abi_plugin", &["--no-default-features", "--features", "event-layout"], "event-layout-fixture")
}

/// Builds the same fixture announcing another mbox-abi version (its layouts unchanged).
pub fn version_plugin() -> PathBuf {
    fixture_plugin("old-abi-plugin", "old_abi_plugin", &["--no-default-features", "--features", "version"], "version-fixture")
}

/// Builds the fixture plugin built against the previous ABI (a frozen copy of mbox-abi).
pub fn previous_abi_plugin() -> PathBuf {
    fixture_plugin("previous-abi/plugin", "previous_abi_plugin", &[], "previous-abi-fixture")
}

/// Builds `tests/fixtures/DIR` with `cargo_args` into `target/TARGET`; the library `LIB`'s path.
fn fixture_plugin(dir: &str, lib: &str, cargo_args: &[&str], target: &str) -> PathBuf {
    let root = repo();
    let target = root.join("target").join(target);
    let status = std::process::Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--manifest-path"])
        .arg(root.join("tests/fixtures").join(dir).join("Cargo.toml"))
        .args(cargo_args)
        .arg("--target-dir")
        .arg(&target)
        .status()
        .expect("running cargo");
    assert!(status.success(), "building the {dir} fixture failed");
    target.join("debug").join(format!("{}{lib}{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX))
}
