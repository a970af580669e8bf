//! Signature detection for mbox NFs: rules in a subset of Suricata's syntax ([`rule`]), their
//! addresses and ports ([`net`]), and matching them against streams and protocol buffers
//! ([`engine`]). A library with no threads and no I/O, so that the sig-match
//! plugin, its tests and its benches share one implementation.

pub mod engine;
pub mod net;
pub mod rule;

pub use engine::{Buffers, Direction, Engine};
pub use net::Vars;
pub use rule::{parse_rules, Buffer, Loaded, Proto, Rule, RuleError};
