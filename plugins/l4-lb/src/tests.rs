//! The NF against a recording host: flow events built as the shard builds them.

use super::*;
use mbox_abi::kit::testing;
use mbox_abi::{DirStats, Event, EventType, FlowTcpEvent, FlowTuple, TcpSnapshot, BIND_REFUSED, DIR_NONE, REASON_FIN};
use serde_json::json;
use std::net::SocketAddr;

const SLOTS: u32 = 256;

struct Harness {
    nf: L4Lb,
    host: Box<testing::Recorder>,
    now: u64,
}

fn flow(id: u64) -> FlowRef {
    FlowRef { id, slot: SLOTS + id as u32, shard: 0, dir: DIR_NONE, _reserved: 0 }
}

impl Harness {
    fn new(args: serde_json::Value) -> Harness {
        let json = args.to_string();
        let nf = L4Lb::create(&testing::init("l4", &json, 1, 2 * SLOTS)).unwrap_or_else(|e| panic!("{args}: {e}"));
        Harness { nf, host: Box::default(), now: 1_000_000_000 }
    }

    fn deliver(&mut self, event: &EventHeader) {
        let mut calls = self.host.calls();
        let mut host = Host::new(&mut calls);
        assert_eq!(self.nf.on_event(event, &mut host), Verdict::Pass);
    }

    /// A flow event of `id` (TCP: a `FlowTcpEvent`, UDP: a `FlowEvent`, as the shard sends).
    fn event(&mut self, ty: EventType, id: u64, proto: u8, reason: u8) {
        let tuple = FlowTuple::new(proto, 0, ["198.18.1.1".parse().unwrap(), "198.18.1.80".parse().unwrap()], [40000 + id as u16, 80]);
        let header = EventHeader::new::<FlowEvent>(ty, self.now, flow(id));
        let ev = FlowEvent { header, tuple, stats: [DirStats::default(); 2], reason, _reserved: [0; 7] };
        if proto == 6 {
            let mut ev = FlowTcpEvent { flow: ev, snapshot: TcpSnapshot::default() };
            ev.flow.header.size = std::mem::size_of::<FlowTcpEvent>() as u32;
            self.deliver(ev.header());
        } else {
            self.deliver(ev.header());
        }
    }

    fn bind_of(&self, id: u64) -> Option<SocketAddr> {
        let binds = self.host.of(id).binds;
        assert!(binds.len() <= 1, "one bind per flow: {binds:?}");
        binds.first().copied()
    }

    fn counter(&self, name: &str) -> u64 {
        testing::counters(&self.nf).into_iter().find(|(n, _)| n == name).map(|(_, v)| v).unwrap_or_else(|| panic!("no counter {name}"))
    }

    fn command(&mut self, line: &str) -> Result<String, String> {
        self.nf.command(line)
    }
}

fn args() -> serde_json::Value {
    json!({
        "backends": [
            {"name": "a", "address": "198.18.1.11"},
            {"name": "b", "address": "198.18.1.12:8080", "weight": 2}
        ],
        "health": {"failures": 2, "down_for": "5s"}
    })
}

#[test]
fn each_new_flow_is_bound_once_and_counted_open_until_it_ends() {
    let mut h = Harness::new(args());
    for id in 1..=60 {
        h.event(builtin::FLOW_TCP_NEW, id, 6, 0);
        h.event(builtin::FLOW_UDP_NEW, 100 + id, 17, 0);
    }
    let binds: Vec<SocketAddr> = (1..=60).chain(101..=160).map(|id| h.bind_of(id).unwrap()).collect();
    assert!(binds.iter().all(|b| b.to_string() == "198.18.1.11:80" || b.to_string() == "198.18.1.12:8080"), "{binds:?}");
    let (a, b) = (h.counter("backend_a_open"), h.counter("backend_b_open"));
    assert_eq!((a + b, h.counter("flows")), (120, 120));
    assert!(b > a, "weight 2 against 1: {a} / {b}");
    for id in 1..=60 {
        h.event(builtin::FLOW_TCP_BOUND, id, 6, BIND_CONNECTED);
        h.event(builtin::FLOW_TCP_TERMINATE, id, 6, REASON_FIN);
        h.event(builtin::FLOW_UDP_TERMINATE, 100 + id, 17, 0);
    }
    assert_eq!((h.counter("backend_a_open"), h.counter("backend_b_open"), h.counter("bound")), (0, 0, 60));
    assert_eq!(h.counter("backend_a_picked") + h.counter("backend_b_picked"), 120);
}

#[test]
fn failed_binds_take_a_backend_out_and_drain_and_remove_send_new_flows_elsewhere() {
    let mut h = Harness::new(args());
    // Flows until two have gone to b, each refused.
    let mut id = 1;
    let mut refused = 0;
    while refused < 2 {
        h.event(builtin::FLOW_TCP_NEW, id, 6, 0);
        if h.bind_of(id).unwrap().port() == 8080 {
            h.event(builtin::FLOW_TCP_BOUND, id, 6, BIND_REFUSED);
            refused += 1;
        }
        id += 1;
    }
    assert_eq!((h.counter("backend_b_up"), h.counter("backend_b_failures"), h.counter("bind_failed")), (0, 2, 2));
    for k in 0..50 {
        h.event(builtin::FLOW_TCP_NEW, 1000 + k, 6, 0);
        assert_eq!(h.bind_of(1000 + k).unwrap().port(), 80, "b is down");
    }
    assert!(h.command("backends").unwrap().contains("down"));
    // Past down_for it is back.
    h.now += 6_000_000_000;
    assert!((0..50).any(|k| {
        h.event(builtin::FLOW_TCP_NEW, 2000 + k, 6, 0);
        h.bind_of(2000 + k).unwrap().port() == 8080
    }));
    assert!(h.command("drain a").unwrap().starts_with("a drained"));
    for k in 0..50 {
        h.event(builtin::FLOW_TCP_NEW, 3000 + k, 6, 0);
        assert_eq!(h.bind_of(3000 + k).unwrap().port(), 8080, "a is drained");
    }
    h.command("undrain a").unwrap();
    h.command("remove b").unwrap();
    h.command("add c 198.18.1.13 1").unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for k in 0..100 {
        h.event(builtin::FLOW_TCP_NEW, 4000 + k, 6, 0);
        seen.insert(h.bind_of(4000 + k).unwrap().ip().to_string());
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["198.18.1.11", "198.18.1.13"]);
    assert!(h.counter("backend_c_picked") > 0, "the added backend takes new flows");
    assert!(h.command("remove zz").unwrap_err().contains("no backend"));
    assert!(h.command("add d nowhere").unwrap_err().contains("not an IP address"));
    assert!(h.command("shuffle").unwrap_err().contains("unknown command"));
    // Nothing left to take new flows: counted, no bind.
    h.command("drain a").unwrap();
    h.command("drain c").unwrap();
    h.event(builtin::FLOW_UDP_NEW, 9000, 17, 0);
    assert_eq!((h.bind_of(9000), h.counter("no_backend")), (None, 1));
}

#[test]
fn a_reload_keeps_the_backend_set_commands_made_and_the_open_flows() {
    let mut h = Harness::new(args());
    h.command("add c 198.18.1.13:9000 3").unwrap();
    h.command("remove a").unwrap();
    h.command("drain b").unwrap();
    h.command("undrain b").unwrap();
    h.command("drain c").unwrap();
    for id in 1..=10 {
        h.event(builtin::FLOW_TCP_NEW, id, 6, 0);
    }
    let state = h.nf.save_state().unwrap().unwrap();
    let mut next = Harness::new(args());
    next.nf.restore_state(&state).unwrap();
    let listing = next.command("backends").unwrap();
    assert!(listing.lines().any(|l| l.starts_with("a ") && l.contains("removed")), "{listing}");
    assert!(listing.lines().any(|l| l.starts_with("c ") && l.contains("198.18.1.13:9000") && l.contains("drained")), "{listing}");
    assert_eq!(next.counter("backend_b_open"), 10, "the open flows, counted by the new instance");
    next.event(builtin::FLOW_TCP_TERMINATE, 3, 6, REASON_FIN);
    assert_eq!(next.counter("backend_b_open"), 9);
    assert!(next.nf.restore_state(b"{").is_err());
}
