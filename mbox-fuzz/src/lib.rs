//! Fuzz target bodies for every parser and state machine in mbox that takes outside input:
//! packets and the µStacks (the Splicer's frame rewrite and the L4 load balancer's address translation too), the application protocol parsers (mbox-proto), signature rules
//! and their matching (mbox-sig), pcap and pcapng files, the TOML config, the control
//! socket's requests and flow-stats' saved state.
//!
//! Each `fuzz_<name>` takes arbitrary bytes and asserts what must hold for them (no panic,
//! and the properties its module documents); a failed assertion is a bug. They are plain
//! functions so that two harnesses share them:
//!
//! - `fuzz/` is a cargo-fuzz project whose targets (one per entry of [`TARGETS`]) call them
//!   under libFuzzer: `cd mbox-fuzz && cargo fuzz run -s none NAME` (stable will do), or
//!   `tools/fuzz.sh` for a short run of each (docs/fuzzing.md);
//! - `tests/replay.rs` runs every kept seed (`seeds/NAME/`, regression inputs included)
//!   through its target on stable, as part of the workspace's tests.

pub mod capture;
pub mod config;
pub mod control;
pub mod dns;
pub mod endpoint;
pub mod flow_state;
pub mod http;
pub mod nat;
pub mod quic;
pub mod rules;
pub mod splice;
pub mod ssh;
pub mod stack;
pub mod tls;

/// A target's body: arbitrary bytes in, a panic when a property fails.
pub type Target = fn(&[u8]);

/// Every target, by the name of its libFuzzer binary and of its seed folder.
pub const TARGETS: &[(&str, Target)] = &[
    ("parse", stack::fuzz_parse),
    ("reassembly", stack::fuzz_reassembly),
    ("stack", stack::fuzz_stack),
    ("endpoint", endpoint::fuzz_endpoint),
    ("splice", splice::fuzz_splice),
    ("nat", nat::fuzz_nat),
    ("http_request", http::fuzz_http_request),
    ("http_response", http::fuzz_http_response),
    ("http_body", http::fuzz_http_body),
    ("tls_hello", tls::fuzz_tls_hello),
    ("tls_server", tls::fuzz_tls_server),
    ("quic", quic::fuzz_quic),
    ("ssh_banner", ssh::fuzz_ssh_banner),
    ("dns", dns::fuzz_dns),
    ("rules", rules::fuzz_rules),
    ("capture", capture::fuzz_capture),
    ("config", config::fuzz_config),
    ("control", control::fuzz_control),
    ("flow_state", flow_state::fuzz_flow_state),
];

/// Whether `part` is a slice of `whole` (the same memory, not equal bytes).
pub fn is_within(part: &[u8], whole: &[u8]) -> bool {
    let (start, end) = (whole.as_ptr() as usize, whole.as_ptr() as usize + whole.len());
    let p = part.as_ptr() as usize;
    part.is_empty() || (p >= start && p + part.len() <= end)
}

/// A parse of a prefix (the first `cut` bytes) must agree with the parse of the whole: what
/// is found in it is the whole's, and what is not `what` in it is not in the whole either.
pub fn agrees<T: PartialEq + std::fmt::Debug>(prefix: &mbox_proto::Parse<T>, full: &mbox_proto::Parse<T>, cut: usize, what: &str) {
    use mbox_proto::Parse;
    match prefix {
        Parse::Done(_) => assert_eq!(prefix, full, "{what} parsed from the first {cut} bytes differs from the whole input's"),
        Parse::Invalid => assert_eq!(full, &Parse::Invalid, "not {what} in the first {cut} bytes, yet in the whole input"),
        Parse::Partial => {}
    }
}

/// A few cut points in `data` where a stream may have been split: after each of the first
/// line ends, in the middle, and one byte short of the end.
pub fn cuts(data: &[u8]) -> Vec<usize> {
    let mut at: Vec<usize> = data.iter().enumerate().filter(|(_, &b)| b == b'\n').map(|(i, _)| i + 1).take(8).collect();
    at.extend([data.len() / 2, data.len().saturating_sub(1)]);
    at.retain(|&c| c < data.len());
    at.sort_unstable();
    at.dedup();
    at
}
