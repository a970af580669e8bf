//! The NF against a fake host: packet and TERMINATE events built as the shard builds them
//! (addresses in the bytes, ports and flow in the fields), the verdicts, the flow state, the
//! counters, the arguments and a reload's hand-over.

use super::*;
use mbox_abi::abi_stable::std_types::RVec;
use mbox_abi::kit::testing;
use mbox_abi::nf::{Guarded, NfObject};
use mbox_abi::{DirStats, FlowRef, FlowTuple, DIR_NONE, DIR_ORIG, DIR_REPLY, REASON_FIN};
use std::net::{Ipv4Addr, Ipv6Addr};

const SLOTS: u32 = 16;

fn create(args: &serde_json::Value) -> Result<Firewall, String> {
    let json = args.to_string();
    Firewall::create(&testing::init("firewall", &json, 2, SLOTS))
}

fn firewall(args: serde_json::Value) -> Firewall {
    create(&args).unwrap_or_else(|e| panic!("{e}"))
}

/// One side of a packet: an address and a port.
type End = (&'static str, u16);

/// A packet as the shard describes it: the IP header's bytes (for the addresses) and the fields.
struct Pkt {
    bytes: Vec<u8>,
    proto: u8,
    version: u8,
    ports: (u16, u16),
    flow: FlowRef,
    arrived_on: u16,
}

fn pkt(proto: u8, src: End, dst: End, flow: FlowRef) -> Pkt {
    let (version, bytes) = match (src.0.parse::<Ipv4Addr>(), dst.0.parse::<Ipv4Addr>()) {
        (Ok(s), Ok(d)) => {
            let mut b = vec![0u8; 20];
            b[0] = 0x45;
            b[9] = proto;
            b[12..16].copy_from_slice(&s.octets());
            b[16..20].copy_from_slice(&d.octets());
            (4, b)
        }
        _ => {
            let (s, d): (Ipv6Addr, Ipv6Addr) = (src.0.parse().unwrap(), dst.0.parse().unwrap());
            let mut b = vec![0u8; 40];
            b[0] = 0x60;
            b[6] = proto;
            b[8..24].copy_from_slice(&s.octets());
            b[24..40].copy_from_slice(&d.octets());
            (6, b)
        }
    };
    Pkt { bytes, proto, version, ports: (src.1, dst.1), flow, arrived_on: 0 }
}

fn tcp(src: End, dst: End, flow: FlowRef) -> Pkt {
    pkt(6, src, dst, flow)
}

fn flow(id: u64, slot: u32, dir: u8) -> FlowRef {
    FlowRef { id, slot, shard: 1, dir, _reserved: 0 }
}

fn send(fw: &mut Firewall, p: &Pkt) -> Verdict {
    let mut ev = PktEvent::new(EventHeader::new::<PktEvent>(builtin::PKT, 1, p.flow), &p.bytes);
    (ev.l3_offset, ev.ip_version, ev.ip_proto, ev.src_port, ev.dst_port, ev.port, ev.link_type) =
        (0, p.version, p.proto, p.ports.0, p.ports.1, p.arrived_on, if p.version == 4 { 228 } else { 229 });
    deliver(fw, &ev.header)
}

fn deliver(fw: &mut Firewall, event: &EventHeader) -> Verdict {
    let mut calls = testing::null_calls();
    fw.on_event(event, &mut Host::new(&mut calls))
}

fn terminate(fw: &mut Firewall, id: u64, slot: u32) -> Verdict {
    let f = FlowRef { dir: DIR_NONE, ..flow(id, slot, 0) };
    let ev = FlowEvent {
        header: EventHeader::new::<FlowEvent>(builtin::FLOW_TCP_TERMINATE, 2, f),
        tuple: FlowTuple::default(),
        stats: [DirStats::default(); 2],
        reason: REASON_FIN,
        _reserved: [0; 7],
    };
    deliver(fw, &ev.header)
}

fn counters(fw: Firewall) -> (Firewall, Vec<(String, u64)>) {
    let mut guarded = Guarded(fw);
    let mut out = RVec::new();
    assert!(NfObject::counters(&mut guarded, &mut out).is_ok());
    let got = out.iter().map(|c| (c.name.as_str().to_string(), c.value)).collect();
    (guarded.0, got)
}

fn counter(fw: Firewall, name: &str) -> (Firewall, u64) {
    let (fw, all) = counters(fw);
    let value = all.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no counter {name} in {all:?}")).1;
    (fw, value)
}

const CLIENT: End = ("10.0.0.1", 40000);
const WEB: End = ("192.0.2.80", 80);

#[test]
fn the_reply_direction_of_an_allowed_flow_passes() {
    let args = |established| serde_json::json!({ "rule": ["allow tcp from 10.0.0.0/8 to any port 80"], "established": established });
    let mut fw = firewall(args(true));
    assert_eq!(send(&mut fw, &tcp(CLIENT, WEB, flow(7, 3, DIR_ORIG))), Verdict::Pass);
    for _ in 0..3 {
        assert_eq!(send(&mut fw, &tcp(WEB, CLIENT, flow(7, 3, DIR_REPLY))), Verdict::Pass, "the server's answer");
        assert_eq!(send(&mut fw, &tcp(CLIENT, WEB, flow(7, 3, DIR_ORIG))), Verdict::Pass);
    }
    let (_, got) = counters(fw);
    let expected = [("rule_1_allow", 1), ("default_deny", 0), ("established_passed", 6), ("denied_flow_dropped", 0), ("non_ip_passed", 0)];
    assert_eq!(got, expected.map(|(n, v)| (n.to_string(), v)));
    // Without flow state each packet meets the rules: the answer from port 80 matches none.
    let mut fw = firewall(args(false));
    assert_eq!(send(&mut fw, &tcp(CLIENT, WEB, flow(7, 3, DIR_ORIG))), Verdict::Pass);
    assert_eq!(send(&mut fw, &tcp(WEB, CLIENT, flow(7, 3, DIR_REPLY))), Verdict::Drop);
    let (fw, default) = counter(fw, "default_deny");
    let (_, passed) = counter(fw, "established_passed");
    assert_eq!((default, passed), (1, 0));
}

#[test]
fn a_denied_flow_stays_denied() {
    let mut fw = firewall(serde_json::json!({ "rule": ["deny tcp from any to any port 80", "allow any from any to any"] }));
    assert_eq!(send(&mut fw, &tcp(CLIENT, WEB, flow(9, 1, DIR_ORIG))), Verdict::Drop);
    // The rules would let this one through (rule 2): the flow's decision holds.
    assert_eq!(send(&mut fw, &tcp(WEB, CLIENT, flow(9, 1, DIR_REPLY))), Verdict::Drop);
    assert_eq!(send(&mut fw, &tcp(CLIENT, WEB, flow(9, 1, DIR_ORIG))), Verdict::Drop, "a retransmitted SYN");
    // Another flow, in another slot, to another port.
    assert_eq!(send(&mut fw, &tcp(CLIENT, ("192.0.2.80", 443), flow(10, 2, DIR_ORIG))), Verdict::Pass);
    let (_, got) = counters(fw);
    let expected = [
        ("rule_1_deny", 1),
        ("rule_2_allow", 1),
        ("default_deny", 0),
        ("established_passed", 0),
        ("denied_flow_dropped", 2),
        ("non_ip_passed", 0),
    ];
    assert_eq!(got, expected.map(|(n, v)| (n.to_string(), v)));
}

#[test]
fn terminate_or_a_new_flow_in_the_slot_forgets_the_decision() {
    let mut fw = firewall(serde_json::json!({ "rule": "allow tcp from 10.0.0.0/8 to any" }));
    assert_eq!(send(&mut fw, &tcp(CLIENT, WEB, flow(1, 5, DIR_ORIG))), Verdict::Pass);
    assert_eq!(send(&mut fw, &tcp(WEB, CLIENT, flow(1, 5, DIR_REPLY))), Verdict::Pass);
    // Another flow's TERMINATE (same slot, old id) changes nothing.
    assert_eq!(terminate(&mut fw, 99, 5), Verdict::Pass);
    assert_eq!(send(&mut fw, &tcp(WEB, CLIENT, flow(1, 5, DIR_REPLY))), Verdict::Pass);
    assert_eq!(terminate(&mut fw, 1, 5), Verdict::Pass);
    // Forgotten: a late packet of the flow meets the rules again (and the server matches none).
    assert_eq!(send(&mut fw, &tcp(WEB, CLIENT, flow(1, 5, DIR_REPLY))), Verdict::Drop);
    // A new flow in an allowed flow's slot, without a TERMINATE in between (one lost with the
    // drop policy), is decided afresh.
    assert_eq!(send(&mut fw, &tcp(CLIENT, WEB, flow(2, 6, DIR_ORIG))), Verdict::Pass);
    assert_eq!(send(&mut fw, &tcp(WEB, CLIENT, flow(3, 6, DIR_ORIG))), Verdict::Drop);
    let (fw, allowed) = counter(fw, "rule_1_allow");
    let (fw, denied) = counter(fw, "default_deny");
    let (_, passed) = counter(fw, "established_passed");
    assert_eq!((allowed, denied, passed), (2, 2, 2));
}

#[test]
fn ipv6_udp_and_icmp_and_the_arrival_port_are_matched() {
    let mut fw = firewall(serde_json::json!({
        "rule": [
            "allow udp from 2001:db8::/32 to any port 53",
            "allow icmpv6 from any to any",
            "allow tcp from any to any port 22 on 1",
        ],
    }));
    let resolver: End = ("2001:4860::8888", 53);
    assert_eq!(send(&mut fw, &pkt(17, ("2001:db8::5", 5353), resolver, flow(1, 0, DIR_ORIG))), Verdict::Pass);
    assert_eq!(send(&mut fw, &pkt(17, resolver, ("2001:db8::5", 5353), flow(1, 0, DIR_REPLY))), Verdict::Pass);
    assert_eq!(send(&mut fw, &pkt(17, ("2001:db9::5", 5353), resolver, flow(2, 1, DIR_ORIG))), Verdict::Drop, "outside the /32");
    assert_eq!(send(&mut fw, &pkt(17, ("10.0.0.1", 5353), ("8.8.8.8", 53), flow(3, 2, DIR_ORIG))), Verdict::Drop, "IPv4");
    assert_eq!(send(&mut fw, &pkt(58, ("fe80::1", 0), ("ff02::1", 0), flow(4, 3, DIR_ORIG))), Verdict::Pass);
    assert_eq!(send(&mut fw, &pkt(1, ("10.0.0.1", 0), ("10.0.0.2", 0), flow(5, 4, DIR_ORIG))), Verdict::Drop, "ICMP is not ICMPv6");
    let mut ssh = tcp(CLIENT, ("192.0.2.22", 22), flow(6, 5, DIR_ORIG));
    assert_eq!(send(&mut fw, &ssh), Verdict::Drop, "arrived on port 0");
    ssh.flow = flow(7, 6, DIR_ORIG);
    ssh.arrived_on = 1;
    assert_eq!(send(&mut fw, &ssh), Verdict::Pass);
    let mut answer = tcp(("192.0.2.22", 22), CLIENT, flow(7, 6, DIR_REPLY));
    answer.arrived_on = 0;
    assert_eq!(send(&mut fw, &answer), Verdict::Pass, "the answer comes in on the other port: established");
}

#[test]
fn non_ip_packets_pass_and_packets_without_a_flow_meet_the_rules_each_time() {
    let mut fw = firewall(serde_json::json!({ "rule": ["allow tcp from any to any port 80"] }));
    let arp = Pkt { bytes: vec![0; 42], proto: 0, version: 0, ports: (0, 0), flow: FlowRef::default(), arrived_on: 0 };
    assert_eq!(send(&mut fw, &arp), Verdict::Pass);
    assert_eq!(send(&mut fw, &arp), Verdict::Pass);
    let none = FlowRef { dir: DIR_NONE, ..FlowRef::default() };
    assert_eq!(send(&mut fw, &tcp(CLIENT, WEB, none)), Verdict::Pass);
    assert_eq!(send(&mut fw, &tcp(WEB, CLIENT, none)), Verdict::Drop);
    assert_eq!(send(&mut fw, &tcp(CLIENT, WEB, none)), Verdict::Pass);
    // A slot beyond the flow table (never given by the host): no state, no allocation.
    assert_eq!(send(&mut fw, &tcp(CLIENT, WEB, flow(5, SLOTS + 100, DIR_ORIG))), Verdict::Pass);
    // Nor for the TERMINATE of a flow it never saw (an NF before it dropped all its packets).
    assert_eq!(terminate(&mut fw, 8, 10), Verdict::Pass);
    assert_eq!(fw.flows.iter().count(), 0);
    // An address the bytes do not hold (a cut header) matches only `any`.
    let mut cut = tcp(CLIENT, WEB, flow(6, 0, DIR_ORIG));
    cut.bytes.truncate(14);
    assert_eq!(send(&mut fw, &cut), Verdict::Pass);
    let (_, got) = counters(fw);
    let expected = [("rule_1_allow", 4), ("default_deny", 1), ("established_passed", 0), ("denied_flow_dropped", 0), ("non_ip_passed", 2)];
    assert_eq!(got, expected.map(|(n, v)| (n.to_string(), v)));
}

#[test]
fn the_default_policy_and_the_order_of_inline_and_file_rules() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fw.rules");
    std::fs::write(&file, "# the file's rules come after the inline ones\ndeny tcp from any to any port 80\n").unwrap();
    let path = file.to_str().unwrap();
    let mut fw = firewall(serde_json::json!({ "rules": path, "rule": ["allow tcp from 10.0.0.1 to any"], "default": "allow" }));
    assert_eq!(send(&mut fw, &tcp(CLIENT, WEB, flow(1, 0, DIR_ORIG))), Verdict::Pass, "rule 1 (inline) first");
    assert_eq!(send(&mut fw, &tcp(("10.0.0.2", 1), WEB, flow(2, 1, DIR_ORIG))), Verdict::Drop, "rule 2 (the file's)");
    assert_eq!(send(&mut fw, &pkt(17, ("10.0.0.2", 1), ("10.0.0.3", 53), flow(3, 2, DIR_ORIG))), Verdict::Pass, "the default");
    let (_, got) = counters(fw);
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["rule_1_allow", "rule_2_deny", "default_allow", "established_passed", "denied_flow_dropped", "non_ip_passed"]);
    assert_eq!(got.iter().map(|(_, v)| *v).collect::<Vec<_>>(), [1, 1, 1, 0, 0, 0]);
    // Counter names are made once, however often the NF is created.
    let a = firewall(serde_json::json!({ "rule": ["deny any from any to any"] }));
    let b = firewall(serde_json::json!({ "rule": ["deny any from any to any"] }));
    assert!(std::ptr::eq(a.names[0], b.names[0]));
    // An empty rule list with the default deny drops every IP packet; that is what was asked.
    let mut shut = firewall(serde_json::json!({ "rule": [] }));
    assert_eq!(send(&mut shut, &tcp(CLIENT, WEB, flow(1, 0, DIR_ORIG))), Verdict::Drop);
}

#[test]
fn bad_arguments_and_rule_files_are_refused_with_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let err = |args: serde_json::Value| create(&args).err().unwrap_or_else(|| panic!("{args} was accepted"));
    assert_eq!(err(serde_json::json!({})), "give `rules` (a rule file) or `rule` (a list of rules), or both");
    assert!(err(serde_json::json!({ "rule_file": "x" })).contains("unknown argument `rule_file`"));
    assert_eq!(err(serde_json::json!({ "rule": [], "default": "drop" })), r#"argument `default` must be "allow" or "deny", not "drop""#);
    assert!(err(serde_json::json!({ "rule": [], "established": "yes" })).contains("argument `established` must be true or false"));
    assert_eq!(err(serde_json::json!({ "rule": 5 })), "argument `rule` must be a rule or a list of rules (strings), not 5");
    assert_eq!(err(serde_json::json!({ "rule": ["deny any from any to any", 5] })), "argument `rule` must list strings (rules), not 5");
    let e = err(serde_json::json!({ "rule": ["deny any from any to any", "allow tpc from any to any"] }));
    assert!(e.starts_with(r#"`rule` item 2: unknown protocol "tpc" (expected tcp, udp"#), "{e}");
    let missing = dir.path().join("missing.rules");
    let e = err(serde_json::json!({ "rules": missing.to_str().unwrap() }));
    assert!(e.starts_with(&format!("cannot read rules `{}`: ", missing.display())), "{e}");
    let bad = dir.path().join("bad.rules");
    std::fs::write(&bad, "allow tcp from any to any port 80\n\n# a comment\nallow tcpp from any to any\n").unwrap();
    let e = err(serde_json::json!({ "rules": bad.to_str().unwrap() }));
    assert_eq!(
        e,
        format!(r#"{}:4: unknown protocol "tcpp" (expected tcp, udp, icmp, icmpv6, any or a protocol number 0-255)"#, bad.display())
    );
    let many = dir.path().join("many.rules");
    std::fs::write(&many, "deny x from any to any\n".repeat(12)).unwrap();
    let e = err(serde_json::json!({ "rules": many.to_str().unwrap() }));
    assert_eq!(e.matches("unknown protocol").count(), 10, "{e}");
    assert!(e.contains(":10: ") && !e.contains(":11: ") && e.ends_with("; and 2 more bad rules"), "{e}");
    let binary = dir.path().join("binary.rules");
    std::fs::write(&binary, [0xff, 0xfe, 0x00, 0x41]).unwrap();
    assert!(err(serde_json::json!({ "rules": binary.to_str().unwrap() })).contains("cannot read rules"));
    let e = err(serde_json::json!({ "rules": dir.path().to_str().unwrap() }));
    assert!(e.starts_with("cannot read rules"), "a directory: {e}");
}

#[test]
fn a_reload_keeps_the_allowed_flows_and_forgets_the_denied_ones() {
    let args = serde_json::json!({ "rule": ["allow tcp from 10.0.0.0/8 to any port 80", "deny tcp from any to any port 443"] });
    let mut old = firewall(args.clone());
    assert_eq!(send(&mut old, &tcp(CLIENT, WEB, flow(1, 2, DIR_ORIG))), Verdict::Pass);
    assert_eq!(send(&mut old, &tcp(CLIENT, ("192.0.2.80", 443), flow(2, 3, DIR_ORIG))), Verdict::Drop);
    let state = old.save_state().unwrap().expect("state");
    // The new rules allow 443.
    let mut new = firewall(serde_json::json!({ "rule": ["allow tcp from 10.0.0.0/8 to any port 80,443"] }));
    new.restore_state(&state).unwrap();
    assert_eq!(send(&mut new, &tcp(WEB, CLIENT, flow(1, 2, DIR_REPLY))), Verdict::Pass, "established before the reload");
    assert_eq!(send(&mut new, &tcp(CLIENT, ("192.0.2.80", 443), flow(2, 3, DIR_ORIG))), Verdict::Pass, "decided again");
    let (_, passed) = counter(new, "established_passed");
    assert_eq!(passed, 1);
    // State that does not fit this run is refused.
    let mut other = firewall(args);
    assert!(other.restore_state(&[]).unwrap_err().contains("empty"));
    assert!(other.restore_state(&[9, 2, 0, 0, 0]).unwrap_err().contains("version 9"));
    assert!(other.restore_state(&state[..state.len() - 1]).unwrap_err().contains("cut short"));
    let mut three_shards = state.clone();
    three_shards[1] = 3;
    assert!(other.restore_state(&three_shards).unwrap_err().contains("3 shards, this run has 2"));
    let mut far = state.clone();
    far[7..11].copy_from_slice(&SLOTS.to_le_bytes());
    assert!(other.restore_state(&far).unwrap_err().contains(&format!("slot {SLOTS}")));
    let mut shard = state.clone();
    shard[5] = 2;
    assert!(other.restore_state(&shard).unwrap_err().contains("shard 2"));
    assert_eq!(state.len(), 1 + 4 + 14, "one allowed flow");
}
