//! Running an NF inside mbox from the NF crate's own tests: `mbox_core::testing::run` takes a
//! capture (or the generator) and the `[[nf]]` sections of a config, finds the plugins cargo
//! built for the test (the crate's own `cdylib` among them), runs the whole pipeline in the
//! test's process and returns the run's report. An NF crate adds `mbox-core` as a
//! dev-dependency and lists `rlib` beside `cdylib` in its `crate-type`: cargo builds a crate's
//! library for its integration tests only when they could link it, and a `cdylib` alone they
//! cannot (plugins/http-hosts is the example).
//!
//! ```no_run
//! let report = mbox_core::testing::run(
//!     mbox_core::testing::Input::Capture("capture.pcap".as_ref()),
//!     "[[nf]]\nplugin = \"my-nf\"\nargs = { output = \"out.jsonl\" }\n",
//! )
//! .unwrap();
//! assert!(report.nfs[0].events > 0);
//! ```

use crate::config::Config;
use crate::plugin::library_path;
use crate::report::RunReport;
use crate::run::{self, RunOptions};
use std::path::{Path, PathBuf};

/// What the run reads.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// A pcap or pcapng file.
    Capture(&'a Path),
    /// The generator's TOML settings (`flows = 10, response_bytes = 150000`: docs/config.md).
    Generated(&'a str),
}

/// Where cargo put the plugins of the running test: the library of a crate with `crate-type =
/// ["cdylib", "rlib"]`, built for its integration tests, lands in `target/PROFILE/deps` beside
/// the test binary; one built by `cargo build` in `target/PROFILE`. `name`'s library is looked for in both, the test binary's directory first.
pub fn plugin_dir_of(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("the test binary's path: {e}"))?;
    let deps = exe.parent().ok_or("the test binary has no directory")?;
    let found = [Some(deps), deps.parent()].into_iter().flatten().find(|dir| library_path(dir, name).is_file()).map(Path::to_path_buf);
    found.ok_or_else(|| {
        format!(
            "no {} beside the test binary ({}) or in its parent: list `rlib` beside `cdylib` in `{name}`'s crate-type (cargo then builds it for the crate's tests), or build it (`cargo build -p {name}`)",
            library_path(Path::new(""), name).display(),
            deps.display()
        )
    })
}

/// Runs `nfs` (the `[[nf]]` sections of a config, and any other section but `[input]` and
/// `plugin_dir`) on `input` with the plugins of this test's build (see [`plugin_dir_of`]: the
/// first `[[nf]]`'s plugin names the directory), and returns the report; an error says what
/// failed to start or run.
pub fn run(input: Input<'_>, nfs: &str) -> Result<RunReport, String> {
    let first = nfs
        .lines()
        .find_map(|l| l.trim().strip_prefix("plugin").and_then(|r| r.trim_start().strip_prefix('=')))
        .map(|v| v.trim().trim_matches('"').to_string())
        .ok_or("the config names no plugin (`plugin = \"NAME\"` in an [[nf]])")?;
    let dir = plugin_dir_of(&first)?;
    let input = match input {
        Input::Capture(path) => format!("[input]\npcap = {}\n", toml_string(&path.display().to_string())),
        Input::Generated(settings) => format!("[input]\ngenerator = {{ {settings} }}\n"),
    };
    let text = format!("plugin_dir = {}\n{input}{nfs}", toml_string(&dir.display().to_string()));
    let path = Path::new("test.toml");
    let config = Config::parse(&text, path).map_err(|e| e.to_string())?;
    let prepared = run::prepare(config, path).map_err(|e| e.to_string())?;
    run::run(prepared, RunOptions::default()).map_err(|e| e.to_string())
}

/// `text` as a TOML basic string.
fn toml_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_toml_strings_that_read_back_as_they_were() {
        for path in ["/tmp/a b/c.pcap", "C:\\captures\\x.pcap", "/odd\"quote", "/tab\there"] {
            let v: toml::Value = toml::from_str(&format!("p = {}", toml_string(path))).unwrap();
            assert_eq!(v["p"].as_str(), Some(path));
        }
    }

    #[test]
    fn a_missing_plugin_says_where_it_was_looked_for() {
        let e = run(Input::Generated("flows = 1"), "[[nf]]\nplugin = \"no-such-nf\"\n").unwrap_err();
        assert!(e.contains("libno_such_nf.so") && e.contains("cargo build -p no-such-nf"), "{e}");
    }
}
