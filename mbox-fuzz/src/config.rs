//! The run configuration (mbox_core::config): TOML text parsed and validated.
//!
//! Any text is a config or an error naming the problem, never a panic; the value parsers a
//! config's strings go through (sizes, durations, MAC addresses) take any line.

use mbox_core::config::{parse_duration, parse_mac, parse_size, Config};
use std::path::Path;

/// Config text (UTF-8: the loader refuses anything else before parsing).
pub fn fuzz_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Config::parse(text, Path::new("fuzz.toml")) {
        Ok(cfg) => {
            let _ = cfg.validate_reassembly(Path::new("fuzz.toml")).map_err(|e| e.to_string());
            for nf in &cfg.nfs {
                let _ = (nf.display_name(), nf.args_json());
            }
            for svc in &cfg.services {
                let _ = svc.display_name();
            }
            let _ = (cfg.flow.timeouts(), cfg.input.impair.as_ref().map(|i| i.impairment()));
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    for line in text.lines().take(16) {
        let _ = (parse_size(line), parse_duration(line), parse_mac(line));
    }
}
