//! Loading rule sets as Suricata does: several rule files into one set, a sid taken only once
//! (a later duplicate is refused, naming where the first is), and the classification file that
//! gives each classtype its description and priority (an alert's `category` and `severity`).

use crate::net::Vars;
use crate::rule::{describe_rule, parse_rule, rule_lines, Loaded, RuleError, RuleInfo};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use thiserror::Error;

/// A classtype: its description (Suricata's `category`) and priority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    pub description: String,
    pub priority: u8,
}

/// A classification file's entries by classtype name.
#[derive(Debug, Clone, Default)]
pub struct Classifications {
    by_name: HashMap<String, Classification>,
}

/// A line of a classification file that is not `config classification: name,description,priority`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("line {line}: {reason}")]
pub struct ClassificationError {
    pub line: usize,
    pub reason: String,
}

/// Emerging Threats Open's classification.config (BSD licence; testdata/rules/et-open), the
/// one rule sets are written against; Suricata ships the same list plus one entry.
const STOCK_CLASSIFICATIONS: &str = include_str!("../classification.config");

impl Classifications {
    /// The stock list ([`STOCK_CLASSIFICATIONS`]).
    pub fn stock() -> Classifications {
        Classifications::parse(STOCK_CLASSIFICATIONS).expect("the bundled classification.config parses")
    }

    /// Parses a classification file: `config classification: name,description,priority`
    /// lines, `#` comments and blank lines.
    pub fn parse(text: &str) -> Result<Classifications, ClassificationError> {
        let mut by_name = HashMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |reason: String| ClassificationError { line: i + 1, reason };
            let entry = line
                .strip_prefix("config classification:")
                .ok_or_else(|| err(format!("`{line}` is not `config classification: name,description,priority`")))?;
            let fields: Vec<&str> = entry.split(',').map(str::trim).collect();
            let [name, description, priority] = fields[..] else {
                return Err(err(format!("{} fields where name,description,priority are 3", fields.len())));
            };
            let priority =
                priority.parse::<u8>().ok().filter(|&p| p >= 1).ok_or_else(|| err(format!("priority `{priority}` (1 to 255)")))?;
            if name.is_empty() {
                return Err(err("an empty classtype name".into()));
            }
            by_name.insert(name.to_string(), Classification { description: description.to_string(), priority });
        }
        Ok(Classifications { by_name })
    }

    /// Reads a classification file; the error names the file (and the line).
    pub fn from_file(path: &std::path::Path) -> Result<Classifications, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read the classification file {}: {e}", path.display()))?;
        Classifications::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The file at `path` when one is named, else the stock list: what a `classification`
    /// argument or setting means.
    pub fn from_file_or_stock(path: Option<&std::path::Path>) -> Result<Classifications, String> {
        match path {
            Some(p) => Classifications::from_file(p),
            None => Ok(Classifications::stock()),
        }
    }

    pub fn get(&self, name: &str) -> Option<&Classification> {
        self.by_name.get(name)
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// Where a rule is: its file (if any) and first line.
fn location(file: Option<&Arc<str>>, line: usize) -> String {
    match file {
        Some(f) => format!("{f}:{line}"),
        None => format!("line {line}"),
    }
}

/// Rules from one or more files, loaded in order into one set.
pub struct RuleSet {
    vars: Vars,
    classes: Classifications,
    /// Where each loaded (gid, sid) is, to name it when a duplicate comes.
    taken: HashMap<(u32, u32), String>,
    loaded: Loaded,
}

impl RuleSet {
    pub fn new(vars: Vars, classes: Classifications) -> RuleSet {
        RuleSet { vars, classes, taken: HashMap::new(), loaded: Loaded::default() }
    }

    /// Adds every rule of a file's text (`file`: its name, for errors and alerts).
    pub fn add_text(&mut self, file: Option<&str>, text: &str) {
        let file: Option<Arc<str>> = file.map(Arc::from);
        let result = rule_lines(text, |rule, line| match parse_rule(rule, file.as_ref(), line, &self.vars, &self.classes) {
            Ok(Some(rule)) => {
                let here = location(file.as_ref(), line);
                match self.taken.get(&(rule.info.gid, rule.sid)) {
                    Some(first) => self.loaded.refused.push(RuleError {
                        file: file.clone(),
                        line,
                        sid: Some(rule.sid),
                        keyword: "duplicate".into(),
                        reason: format!("sid {} is already taken by the rule at {first}", rule.sid),
                    }),
                    None => {
                        self.taken.insert((rule.info.gid, rule.sid), here);
                        self.loaded.rules.push(rule);
                    }
                }
            }
            Ok(None) => {}
            Err(e) => self.loaded.refused.push(e),
        });
        if let Err(line) = result {
            let reason = "the file ends inside a continued line".into();
            self.loaded.refused.push(RuleError { file, line, sid: None, keyword: "syntax".into(), reason });
        }
    }

    /// Reads and adds a rule file.
    pub fn add_file(&mut self, path: &std::path::Path) -> std::io::Result<()> {
        let text = std::fs::read_to_string(path)?;
        self.add_text(Some(&path.display().to_string()), &text);
        Ok(())
    }

    pub fn finish(self) -> Loaded {
        self.loaded
    }
}

/// What each rule of a set says about itself, by sid: for outputs that describe the alerts an
/// NF raised (eve.json's `alert` object) without compiling the rules again. The first rule with
/// a sid is kept, as [`RuleSet`] keeps it.
#[derive(Debug, Default)]
pub struct RuleIndex {
    by_sid: HashMap<(u32, u32), RuleInfo>,
}

impl RuleIndex {
    /// Adds the rules of a file's text; rules whose description cannot be read are left out
    /// (the detecting NF reports them).
    pub fn add_text(&mut self, text: &str, classes: &Classifications) {
        let _ = rule_lines(text, |rule, _| {
            if let Ok(info) = describe_rule(rule, classes) {
                self.by_sid.entry((info.gid, info.sid)).or_insert(info);
            }
        });
    }

    /// The rule with this generator and signature id.
    pub fn get(&self, gid: u32, sid: u32) -> Option<&RuleInfo> {
        self.by_sid.get(&(gid, sid))
    }

    pub fn len(&self) -> usize {
        self.by_sid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_sid.is_empty()
    }
}

impl Loaded {
    /// Refusals counted by the keyword that caused them, most frequent first (ties by name).
    pub fn refused_by_keyword(&self) -> Vec<(String, usize)> {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for e in &self.refused {
            *counts.entry(e.keyword.as_str()).or_default() += 1;
        }
        let mut tally: Vec<(String, usize)> = counts.into_iter().map(|(k, n)| (k.to_string(), n)).collect();
        tally.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        tally
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifications_parse_and_refuse_bad_lines() {
        let c = Classifications::parse("# x\nconfig classification: web-application-attack,Web Application Attack,1\n").unwrap();
        assert_eq!(c.get("web-application-attack"), Some(&Classification { description: "Web Application Attack".into(), priority: 1 }));
        let e = Classifications::parse("\nconfig classification: a,b\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(Classifications::parse("config classification: a,b,0\n").is_err());
        assert!(Classifications::parse("classification: a,b,1\n").is_err());
        assert!(Classifications::stock().len() >= 40);
    }

    #[test]
    fn a_duplicate_sid_is_refused_naming_both_rules() {
        let mut set = RuleSet::new(Vars::default(), Classifications::stock());
        set.add_text(Some("a.rules"), "alert tcp any any -> any any (msg:\"one\"; content:\"x\"; sid:7;)\n");
        set.add_text(Some("b.rules"), "\nalert tcp any any -> any any (msg:\"two\"; content:\"y\"; sid:7; rev:2;)\n");
        let loaded = set.finish();
        assert_eq!(loaded.rules.len(), 1);
        assert_eq!(loaded.rules[0].msg, "one");
        let e = &loaded.refused[0];
        assert_eq!(e.to_string(), "b.rules:2 (sid 7): sid 7 is already taken by the rule at a.rules:1");
        assert_eq!(loaded.refused_by_keyword(), vec![("duplicate".to_string(), 1)]);
    }

    #[test]
    fn severity_and_category_come_from_priority_then_classtype() {
        let text = concat!(
            "alert tcp any any -> any any (msg:\"a\"; content:\"x\"; classtype:trojan-activity; sid:1;)\n",
            "drop tcp any any -> any any (msg:\"b\"; content:\"x\"; classtype:trojan-activity; priority:3; metadata: created_at 2020_01_01, former_category MALWARE; sid:2;)\n",
            "alert tcp any any -> any any (msg:\"c\"; content:\"x\"; sid:3;)\n",
            "alert tcp any any -> any any (msg:\"d\"; content:\"x\"; classtype:no-such-class; sid:4;)\n",
            "pass tcp any any -> any any (msg:\"e\"; content:\"x\"; sid:5;)\n",
        );
        let loaded = crate::parse_rules(text, &Vars::default());
        let info: Vec<_> = loaded.rules.iter().map(|r| (r.sid, r.info.severity, r.info.category.as_str(), r.info.action)).collect();
        use crate::rule::Action;
        assert_eq!(
            info,
            vec![
                (1, 1, "A Network Trojan was detected", Action::Alert),
                (2, 3, "A Network Trojan was detected", Action::Drop),
                (3, 3, "", Action::Alert)
            ]
        );
        assert_eq!(
            loaded.rules[1].info.metadata,
            vec![("created_at".into(), "2020_01_01".into()), ("former_category".into(), "MALWARE".into())]
        );
        let kinds: Vec<_> = loaded.refused.iter().map(|e| (e.sid, e.keyword.as_str())).collect();
        assert_eq!(kinds, vec![(Some(4), "classtype"), (Some(5), "action")]);
    }
}
