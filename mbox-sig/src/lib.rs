//! Signature detection for mbox NFs: rules in a subset of Suricata's syntax ([`rule`]), their
//! addresses and ports ([`net`]). A library with no threads and no I/O, so that the sig-match
//! plugin, its tests and its benches share one implementation.

pub mod net;
pub mod rule;

pub use net::Vars;
pub use rule::{parse_rules, Loaded, Rule, RuleError};
