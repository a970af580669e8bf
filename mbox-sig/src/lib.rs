//! Signature detection for mbox NFs: rules in a subset of Suricata's syntax ([`rule`]), rule
//! sets of several files with their classifications ([`ruleset`]), their addresses and ports
//! ([`net`]), matching them against streams and protocol buffers ([`engine`], with numbers read
//! out of them: [`bytes`]; their pcres: [`pcre`]), and how many matches alert ([`threshold`]). A library
//! with no threads and no I/O beyond reading rule files, so that the sig-match plugin, the
//! eve-log NF, `mbox rules check`, the tests and the benches share one implementation.

pub mod bytes;
pub mod engine;
pub mod net;
pub mod packet;
pub mod pcre;
pub mod rule;
pub mod ruleset;
pub mod threshold;

pub use engine::{Buffers, Direction, Engine};
pub use net::Vars;
pub use rule::{describe_rule, parse_rules, Action, Buffer, Loaded, Proto, Rule, RuleError, RuleInfo};
pub use ruleset::{Classification, ClassificationError, Classifications, RuleIndex, RuleSet};
