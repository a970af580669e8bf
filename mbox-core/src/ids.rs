//! `mbox ids`: Suricata's command line on mbox's IDS chain. A capture, rule files (`-S`), a log
//! directory (`-l`), the address and port groups, classification file and stream settings of
//! a suricata.yaml (`-c`) with `--set` overrides become a run of sig-match and eve-log
//! writing `eve.json` and `fast.log`, as `suricata -r` would. The settings read from the YAML
//! are listed in [`SuricataSettings`]; everything else in it is left to Suricata.

use crate::config::{Config, ConfigError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use thiserror::Error;
use yaml_rust2::{Yaml, YamlLoader};

#[derive(Debug, Error)]
pub enum IdsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: not YAML: {message}")]
    Yaml { path: PathBuf, message: String },
    #[error("{path}: `{key}`: {problem}")]
    Setting { path: String, key: String, problem: String },
    #[error("--set `{0}`: {1}")]
    Set(String, String),
    #[error("no rules: name a rule file with -S (or `rule-files` in the YAML given with -c)")]
    NoRules,
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// What mbox takes from a suricata.yaml (and `--set`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SuricataSettings {
    /// `vars.address-groups`.
    pub address_groups: BTreeMap<String, String>,
    /// `vars.port-groups`.
    pub port_groups: BTreeMap<String, String>,
    /// `classification-file`.
    pub classification_file: Option<PathBuf>,
    /// `default-rule-path`: where `rule-files` are.
    pub default_rule_path: Option<PathBuf>,
    /// `rule-files`, used when no `-S` is given.
    pub rule_files: Vec<String>,
    /// `stream.reassembly.depth`, in bytes.
    pub stream_depth: Option<u64>,
    /// `stream.midstream`.
    pub midstream: Option<bool>,
}

/// The `--set` keys understood, for the message that names them.
const SET_KEYS: &str =
    "vars.address-groups.NAME, vars.port-groups.NAME, classification-file, default-rule-path, stream.reassembly.depth, stream.midstream";

/// A YAML scalar as text (`22` and `"22"` alike).
fn scalar(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A Suricata size (`1mb`, `64kb`, `1024`): binary units, as Suricata reads them.
pub fn parse_suricata_size(text: &str) -> Result<u64, String> {
    let t = text.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| format!("`{text}` is not a size (e.g. 1mb, 64kb)"))?;
    let scale = match unit.trim() {
        "" | "b" => 1.0,
        "kb" | "k" => 1024.0,
        "mb" | "m" => 1024f64.powi(2),
        "gb" | "g" => 1024f64.powi(3),
        other => return Err(format!("`{text}`: unknown unit `{other}` (kb, mb, gb)")),
    };
    Ok((value * scale) as u64)
}

fn parse_bool(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "yes" | "true" | "on" | "1" => Ok(true),
        "no" | "false" | "off" | "0" => Ok(false),
        other => Err(format!("`{other}` is not yes or no")),
    }
}

impl SuricataSettings {
    /// Reads a suricata.yaml.
    pub fn load(path: &Path) -> Result<SuricataSettings, IdsError> {
        let text = std::fs::read_to_string(path).map_err(|source| IdsError::Read { path: path.to_path_buf(), source })?;
        SuricataSettings::parse(&text, path)
    }

    /// Parses suricata.yaml text (`path` for messages and for relative paths in it).
    pub fn parse(text: &str, path: &Path) -> Result<SuricataSettings, IdsError> {
        let docs = YamlLoader::load_from_str(text).map_err(|e| IdsError::Yaml { path: path.to_path_buf(), message: e.to_string() })?;
        let mut s = SuricataSettings::default();
        let Some(doc) = docs.first() else { return Ok(s) };
        let bad = |key: &str, problem: String| IdsError::Setting { path: path.display().to_string(), key: key.to_string(), problem };
        for (group, table) in [("address-groups", &mut s.address_groups), ("port-groups", &mut s.port_groups)] {
            if let Yaml::Hash(h) = &doc["vars"][group] {
                for (k, v) in h {
                    let (Some(name), Some(value)) = (scalar(k), scalar(v)) else {
                        return Err(bad(&format!("vars.{group}"), "each entry must be NAME: value".into()));
                    };
                    table.insert(name, value);
                }
            }
        }
        if let Some(f) = scalar(&doc["classification-file"]) {
            s.classification_file = Some(PathBuf::from(f));
        }
        if let Some(d) = scalar(&doc["default-rule-path"]) {
            s.default_rule_path = Some(PathBuf::from(d));
        }
        if let Yaml::Array(files) = &doc["rule-files"] {
            s.rule_files = files.iter().filter_map(scalar).collect();
        }
        if let Some(depth) = scalar(&doc["stream"]["reassembly"]["depth"]) {
            s.stream_depth = Some(parse_suricata_size(&depth).map_err(|e| bad("stream.reassembly.depth", e))?);
        }
        if let Some(m) = scalar(&doc["stream"]["midstream"]) {
            s.midstream = Some(parse_bool(&m).map_err(|e| bad("stream.midstream", e))?);
        }
        Ok(s)
    }

    /// Applies a `--set KEY=VALUE` (Suricata's form).
    pub fn set(&mut self, assignment: &str) -> Result<(), IdsError> {
        let err = |problem: String| IdsError::Set(assignment.to_string(), problem);
        let (key, value) = assignment.split_once('=').ok_or_else(|| err("expected KEY=VALUE".into()))?;
        let (key, value) = (key.trim(), value.trim().to_string());
        if let Some(name) = key.strip_prefix("vars.address-groups.") {
            self.address_groups.insert(name.to_string(), value);
        } else if let Some(name) = key.strip_prefix("vars.port-groups.") {
            self.port_groups.insert(name.to_string(), value);
        } else {
            match key {
                "classification-file" => self.classification_file = Some(PathBuf::from(value)),
                "default-rule-path" => self.default_rule_path = Some(PathBuf::from(value)),
                "stream.reassembly.depth" => self.stream_depth = Some(parse_suricata_size(&value).map_err(err)?),
                "stream.midstream" => self.midstream = Some(parse_bool(&value).map_err(err)?),
                other => return Err(err(format!("`{other}` is not a setting mbox reads (it reads {SET_KEYS})"))),
            }
        }
        Ok(())
    }

    /// The rule files of the YAML, under `default-rule-path`.
    pub fn yaml_rule_files(&self) -> Vec<PathBuf> {
        let dir = self.default_rule_path.clone().unwrap_or_default();
        self.rule_files.iter().map(|f| dir.join(f)).collect()
    }
}

/// What `mbox ids` was asked to run.
#[derive(Debug, Clone)]
pub struct IdsRun {
    pub capture: PathBuf,
    pub rules: Vec<PathBuf>,
    pub log_dir: PathBuf,
    pub settings: SuricataSettings,
    /// Also write fast.log.
    pub fast: bool,
}

impl IdsRun {
    pub fn eve_path(&self) -> PathBuf {
        self.log_dir.join("eve.json")
    }

    /// The rule files: `-S`'s, else the YAML's.
    pub fn rule_files(&self) -> Result<Vec<PathBuf>, IdsError> {
        let files = if self.rules.is_empty() { self.settings.yaml_rule_files() } else { self.rules.clone() };
        if files.is_empty() {
            return Err(IdsError::NoRules);
        }
        Ok(files)
    }

    /// The config this run is: the capture, sig-match with the rules and variables, eve-log
    /// writing to the log directory. As TOML, so that it can be shown and kept.
    pub fn config_toml(&self) -> Result<String, IdsError> {
        let path = |p: &Path| toml::Value::String(p.display().to_string());
        let rules: Vec<toml::Value> = self.rule_files()?.iter().map(|p| path(p)).collect();
        let table =
            |m: &BTreeMap<String, String>| toml::Value::Table(m.iter().map(|(k, v)| (k.clone(), toml::Value::String(v.clone()))).collect());
        let mut sig = toml::Table::new();
        sig.insert("rules".into(), toml::Value::Array(rules.clone()));
        sig.insert("vars".into(), table(&self.settings.address_groups));
        sig.insert("port_vars".into(), table(&self.settings.port_groups));
        let mut eve = toml::Table::new();
        eve.insert("eve".into(), path(&self.eve_path()));
        if self.fast {
            eve.insert("fast".into(), path(&self.log_dir.join("fast.log")));
        }
        eve.insert("rules".into(), toml::Value::Array(rules));
        if let Some(c) = &self.settings.classification_file {
            sig.insert("classification".into(), path(c));
            eve.insert("classification".into(), path(c));
        }
        if let Some(depth) = self.settings.stream_depth {
            let depth = toml::Value::Integer(depth.min(i64::MAX as u64) as i64);
            sig.insert("stream_depth".into(), depth.clone());
            eve.insert("stream_depth".into(), depth);
        }
        if let Some(m) = self.settings.midstream {
            sig.insert("midstream".into(), toml::Value::Boolean(m));
        }
        let nf = |plugin: &str, args: toml::Table| {
            let mut t = toml::Table::new();
            t.insert("plugin".into(), toml::Value::String(plugin.into()));
            t.insert("args".into(), toml::Value::Table(args));
            toml::Value::Table(t)
        };
        let mut input = toml::Table::new();
        input.insert("pcap".into(), toml::Value::Array(vec![path(&self.capture)]));
        let mut top = toml::Table::new();
        top.insert("input".into(), toml::Value::Table(input));
        if self.settings.midstream == Some(true) {
            // Picked-up connections oriented as Suricata turns them round.
            let mut flow = toml::Table::new();
            flow.insert("midstream_client".into(), toml::Value::String("detect".into()));
            top.insert("flow".into(), toml::Value::Table(flow));
        }
        top.insert("nf".into(), toml::Value::Array(vec![nf("sig-match", sig), nf("eve-log", eve)]));
        let header = format!("# What `mbox ids` runs on {}: `mbox run` this file for the same run.\n", self.capture.display());
        Ok(header + &toml::to_string(&top).unwrap_or_default())
    }

    /// The run's config, checked.
    pub fn config(&self) -> Result<Config, IdsError> {
        Ok(Config::parse(&self.config_toml()?, Path::new("(mbox ids)"))?)
    }
}

/// The `stats` record written at the end of a run, from its report: Suricata's counter names
/// where mbox has the same count.
pub fn stats_record(report: &crate::report::RunReport, uptime_s: u64) -> serde_json::Value {
    let summary = crate::summary::json(report);
    let nf_counter = |nf: &str, name: &str| -> u64 {
        summary["nfs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| n["plugin"] == nf)
            .map(|n| n["counters"][name].as_u64().unwrap_or(0))
            .sum()
    };
    let malformed: u64 = summary["packets"]["malformed"].as_object().map_or(0, |m| m.values().filter_map(|v| v.as_u64()).sum());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    serde_json::json!({
        "timestamp": mbox_abi::kit::ts_iso8601(now),
        "event_type": "stats",
        "stats": {
            "uptime": uptime_s,
            "decoder": {
                "pkts": summary["input"]["packets"],
                "bytes": summary["input"]["bytes"],
                "invalid": malformed,
            },
            "flow": { "tcp": summary["flows"]["tcp"], "udp": summary["flows"]["udp"], "other": summary["flows"]["other"] },
            "tcp": { "reassembly_gap": summary["streams"]["gaps"] },
            "detect": { "alert": nf_counter("sig-match", "alerts") },
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stock_suricata_yaml_gives_its_groups_and_stream_settings() {
        let yaml = "%YAML 1.1\n---\nvars:\n  address-groups:\n    HOME_NET: \"[192.168.0.0/16,10.0.0.0/8,172.16.0.0/12]\"\n    EXTERNAL_NET: \"!$HOME_NET\"\n  port-groups:\n    HTTP_PORTS: \"80\"\n    SSH_PORTS: 22\ndefault-rule-path: /var/lib/suricata/rules\nrule-files:\n  - suricata.rules\nclassification-file: /etc/suricata/classification.config\nstream:\n  midstream: false\n  reassembly:\n    depth: 1mb\n";
        let mut s = SuricataSettings::parse(yaml, Path::new("s.yaml")).unwrap();
        assert_eq!(s.address_groups["EXTERNAL_NET"], "!$HOME_NET");
        assert_eq!(s.port_groups["SSH_PORTS"], "22");
        assert_eq!(s.stream_depth, Some(1 << 20));
        assert_eq!(s.midstream, Some(false));
        assert_eq!(s.yaml_rule_files(), vec![PathBuf::from("/var/lib/suricata/rules/suricata.rules")]);
        s.set("vars.address-groups.HOME_NET=any").unwrap();
        s.set("stream.midstream=true").unwrap();
        assert_eq!(s.address_groups["HOME_NET"], "any");
        assert_eq!(s.midstream, Some(true));
        let e = s.set("outputs.eve-log=x").unwrap_err().to_string();
        assert!(e.contains("not a setting mbox reads"), "{e}");
        assert!(SuricataSettings::parse("vars: [", Path::new("x")).is_err());
        assert!(SuricataSettings::parse("stream:\n  reassembly:\n    depth: lots\n", Path::new("x")).is_err());
    }

    #[test]
    fn a_run_is_a_config_of_sig_match_and_eve_log() {
        let run = IdsRun {
            capture: "a b.pcap".into(),
            rules: vec!["x.rules".into(), "y.rules".into()],
            log_dir: "logs".into(),
            settings: SuricataSettings::default(),
            fast: true,
        };
        let cfg = run.config().unwrap();
        assert_eq!(cfg.input.pcap, vec![PathBuf::from("a b.pcap")]);
        let plugins: Vec<_> = cfg.nfs.iter().map(|n| n.plugin.clone().unwrap_or_default()).collect();
        assert_eq!(plugins, ["sig-match", "eve-log"]);
        let none = IdsRun { rules: vec![], ..run };
        assert!(matches!(none.config(), Err(IdsError::NoRules)));
    }
}
