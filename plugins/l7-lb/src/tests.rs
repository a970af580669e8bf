//! The NF against a fake host: events built as the shard builds them, and a recording host
//! (`kit::testing::Recorder`) that keeps each flow's binds (answered `Done`), bytes and closes.

use super::*;
use mbox_abi::kit::testing;
use mbox_abi::{
    DirStats, Event, EventType, FlowEvent, FlowTuple, StreamEndEvent, TcpSnapshot, BIND_CONNECTED, BIND_REFUSED, DIR_NONE, DIR_REPLY,
    END_FIN, REASON_FIN,
};
use serde_json::json;
use std::net::SocketAddr;

const SLOTS: u32 = 64;

fn args() -> serde_json::Value {
    json!({
        "backends": [
            {"name": "web1", "address": "198.18.2.11:80"},
            {"name": "web2", "address": "198.18.2.12:80", "weight": 2},
            {"name": "img", "address": "198.18.2.13:8080"}
        ],
        "rules": [
            {"host": "img.example", "backends": ["img"]},
            {"path_prefix": "/app/", "backends": ["web1", "web2"], "balance": "least-connections"}
        ],
        "health": {"failures": 2, "down_for": "5s"}
    })
}

struct Harness {
    nf: L7Lb,
    fake: Box<testing::Recorder>,
    now: u64,
}

fn flow(id: u64) -> FlowRef {
    FlowRef { id, slot: SLOTS + id as u32, shard: 0, dir: DIR_ORIG, _reserved: 0 }
}

impl Harness {
    fn new(args: serde_json::Value) -> Harness {
        let json = args.to_string();
        let nf = L7Lb::create(&testing::init("lb", &json, 1, 2 * SLOTS)).unwrap_or_else(|e| panic!("{args}: {e}"));
        Harness { nf, fake: Box::default(), now: 1_000_000_000 }
    }

    fn tcp_event<E: Event>(&self, ty: EventType, flow: FlowRef, reason: u8) -> FlowTcpEvent {
        // As a split proxy numbers them: the latest bind's (`FlowRef::side`), unless given.
        let latest = self.fake.flows.get(&flow.id).map_or(0, |a| a.binds.len() as u8);
        let flow = FlowRef { _reserved: if flow.side() == 0 { latest } else { flow.side() }, ..flow };
        let header = EventHeader::new::<E>(ty, self.now, flow);
        let tuple = FlowTuple::new(6, 0, ["198.18.9.1".parse().unwrap(), "198.18.1.80".parse().unwrap()], [40000 + flow.id as u16, 80]);
        let flow = FlowEvent { header, tuple, stats: [DirStats::default(); 2], reason, _reserved: [0; 7] };
        FlowTcpEvent { flow, snapshot: TcpSnapshot::default() }
    }

    fn deliver(&mut self, event: &EventHeader) {
        let mut calls = self.fake.calls();
        let mut host = Host::new(&mut calls);
        assert_eq!(self.nf.on_event(event, &mut host), Verdict::Pass);
    }

    fn data(&mut self, id: u64, offset: u64, bytes: &[u8]) {
        let ev = StreamDataEvent::new(self.tcp_event::<StreamDataEvent>(builtin::FLOW_TCP_DATA_RDY, flow(id), 0), offset, bytes);
        self.deliver(ev.header());
    }

    fn request(&mut self, id: u64, head: &str) {
        self.data(id, 0, head.as_bytes());
    }

    fn flow_event(&mut self, ty: EventType, id: u64, reason: u8) {
        let ev = self.tcp_event::<FlowTcpEvent>(ty, FlowRef { dir: DIR_NONE, ..flow(id) }, reason);
        self.deliver(ev.header());
    }

    fn out(&self, id: u64) -> testing::Asked {
        self.fake.of(id)
    }

    fn counter(&self, name: &str) -> u64 {
        testing::counters(&self.nf).into_iter().find(|(n, _)| n == name).map(|(_, v)| v).unwrap_or_else(|| panic!("no counter {name}"))
    }
}

#[test]
fn a_whole_head_is_bound_by_its_rule_and_its_end_closes_it() {
    let mut h = Harness::new(args());
    h.request(1, "GET /x HTTP/1.1\r\nHost: IMG.example:80\r\n\r\n");
    assert_eq!(h.out(1).binds, ["198.18.2.13:8080".parse::<SocketAddr>().unwrap()]);
    assert_eq!(h.counter("backend_img_open"), 1);
    h.flow_event(builtin::FLOW_TCP_BOUND, 1, BIND_CONNECTED);
    assert_eq!((h.counter("bound"), h.counter("backend_img_picked")), (1, 1));
    // Bytes after the bind (there are none on a splice, but a late event must not bind again).
    h.data(1, 40, b"GET /y HTTP/1.1\r\nHost: img.example\r\n\r\n");
    assert_eq!(h.out(1).binds.len(), 1);
    h.flow_event(builtin::FLOW_TCP_TERMINATE, 1, REASON_FIN);
    assert_eq!(h.counter("backend_img_open"), 0);
    assert!(h.out(1).sent.is_empty(), "nothing written to a bound client");
}

#[test]
fn a_head_in_pieces_is_bound_once_it_is_whole() {
    let mut h = Harness::new(args());
    let head = b"GET /app/a HTTP/1.1\r\nHost: www.example\r\nUser-Agent: t\r\n\r\n";
    for (at, piece) in [(0, &head[..5]), (5, &head[5..30]), (30, &head[30..])] {
        assert!(h.fake.flows.get(&2).is_none_or(|o| o.binds.is_empty()), "no bind before the head is whole");
        h.data(2, at as u64, piece);
    }
    let binds = &h.out(2).binds;
    assert_eq!(binds.len(), 1);
    assert!(binds[0].ip().to_string().starts_with("198.18.2.1"), "{binds:?}");
    assert_eq!(h.counter("connections"), 1);
}

#[test]
fn what_no_rule_routes_gets_a_503_and_garbage_a_400_and_no_backend_is_opened() {
    let mut h = Harness::new(args());
    h.request(3, "GET /other HTTP/1.1\r\nHost: www.example\r\n\r\n");
    assert!(h.out(3).sent.starts_with(b"HTTP/1.1 503 ") && h.out(3).closes == 1 && h.out(3).binds.is_empty());
    h.data(4, 0, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03");
    assert!(h.out(4).sent.starts_with(b"HTTP/1.1 400 ") && h.out(4).binds.is_empty());
    // A head longer than max_head, coming in pieces.
    let mut h2 = Harness::new({
        let mut a = args();
        a["max_head"] = json!(256);
        a
    });
    let long = format!("GET /app/ HTTP/1.1\r\nHost: a\r\nX-Pad: {}\r\n", "p".repeat(300));
    h2.data(5, 0, &long.as_bytes()[..200]);
    h2.data(5, 200, &long.as_bytes()[200..]);
    assert!(h2.out(5).sent.starts_with(b"HTTP/1.1 400 "));
    assert_eq!((h.counter("refused_no_rule"), h.counter("bad_requests"), h2.counter("bad_requests")), (1, 1, 1));
    assert!(L7Lb::new(r#"{"max_head": 10, "backends": [{"name": "a", "address": "198.18.2.1:80"}]}"#, 1, 8).is_err());
}

#[test]
fn a_client_gone_before_its_head_is_closed_and_counted() {
    let mut h = Harness::new(args());
    h.data(6, 0, b"GET /app/ HT");
    let ev = StreamEndEvent {
        tcp: h.tcp_event::<StreamEndEvent>(builtin::FLOW_TCP_STREAM_END, flow(6), 0),
        offset: 12,
        reason: END_FIN,
        _reserved: [0; 7],
    };
    h.deliver(ev.header());
    assert_eq!((h.out(6).closes, h.out(6).binds.len(), h.counter("client_gone")), (1, 0, 1));
}

#[test]
fn failed_binds_take_a_backend_down_and_its_share_goes_elsewhere() {
    let mut h = Harness::new(args());
    // least-connections with nothing open: weighted order, web2 first.
    let mut to_web2 = Vec::new();
    for id in 10..20 {
        h.request(id, "GET /app/ HTTP/1.1\r\nHost: w\r\n\r\n");
        let to = h.out(id).binds[0];
        if to.port() == 80 && to.ip().to_string() == "198.18.2.12" {
            to_web2.push(id);
        }
        // Every bind to web2 fails (refused); web1's connect.
        let reason = if to_web2.contains(&id) { BIND_REFUSED } else { BIND_CONNECTED };
        h.flow_event(builtin::FLOW_TCP_BOUND, id, reason);
    }
    assert_eq!(to_web2.len(), 2, "two failures (health.failures) and web2 was down: {to_web2:?}");
    assert_eq!((h.counter("backend_web2_up"), h.counter("backend_web2_failures"), h.counter("bind_failed")), (0, 2, 2));
    assert_eq!(h.counter("backend_web2_open"), 0, "failed binds do not count as open");
    // After down_for it is tried again; a success brings it back.
    h.now += 6_000_000_000;
    for id in 20..23 {
        h.request(id, "GET /app/ HTTP/1.1\r\nHost: w\r\n\r\n");
        h.flow_event(builtin::FLOW_TCP_BOUND, id, BIND_CONNECTED);
    }
    assert_eq!(h.counter("backend_web2_up"), 1);
    assert!(h.counter("backend_web2_picked") >= 3);
}

#[test]
fn drain_and_undrain_by_command_and_a_reload_keeps_both_and_the_open_counts() {
    let mut h = Harness::new(args());
    assert!(h.nf.command("drain web2").unwrap().contains("web2 drained"));
    assert!(h.nf.command("drain nobody").unwrap_err().contains("nobody"));
    assert!(h.nf.command("frobnicate").unwrap_err().contains("unknown command"));
    for id in 30..36 {
        h.request(id, "GET /app/ HTTP/1.1\r\nHost: w\r\n\r\n");
        assert_eq!(h.out(id).binds[0].ip().to_string(), "198.18.2.11", "drained web2 gets nothing");
    }
    let listed = h.nf.command("backends").unwrap();
    assert!(listed.contains("web2") && listed.contains("drained") && listed.contains("open 6"), "{listed}");
    let state = h.nf.save_state().unwrap().unwrap();
    let mut next = Harness::new(args());
    next.nf.restore_state(&state).unwrap();
    assert_eq!((next.counter("backend_web1_open"), next.counter("backend_web2_drained")), (6, 1));
    next.flow_event(builtin::FLOW_TCP_TERMINATE, 30, REASON_FIN);
    assert_eq!(next.counter("backend_web1_open"), 5, "a handed-over connection's end is counted");
    assert!(next.nf.command("undrain web2").unwrap().contains("again"));
    assert_eq!(next.counter("backend_web2_drained"), 0);
    assert!(next.nf.restore_state(b"{\"version\": 9}").is_err());
}

#[test]
fn the_bundled_config_builds_the_balancer_it_describes() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/l7-lb.toml");
    let config: toml::Value = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let nf = &config["nf"][0];
    assert_eq!(nf["plugin"].as_str(), Some("l7-lb"));
    let args = serde_json::to_string(&nf["args"]).unwrap();
    let mut lb = L7Lb::new(&args, 1, 2 * SLOTS as usize).unwrap();
    let listed = lb.command("backends").unwrap();
    assert!(["web1", "web2", "img", "198.18.1.13:80"].iter().all(|w| listed.contains(w)), "{listed}");
    assert_eq!(config["service"][0]["stack"].as_str(), Some("splicer"));
}

#[test]
fn a_head_half_read_at_a_reload_is_read_on_by_the_new_instance_and_a_lost_start_gets_a_503() {
    let mut h = Harness::new(args());
    let head = b"GET /app/x HTTP/1.1\r\nHost: w\r\n\r\n";
    h.data(40, 0, &head[..10]);
    let state = h.nf.save_state().unwrap().unwrap();
    let mut next = Harness::new(args());
    next.nf.restore_state(&state).unwrap();
    next.data(40, 10, &head[10..]);
    assert_eq!(next.out(40).binds.len(), 1, "the head completed across the reload");
    // Bytes whose start this instance never saw: not a request's start.
    next.data(41, 500, b"ost: w\r\n\r\n");
    assert!(next.out(41).sent.starts_with(b"HTTP/1.1 503 ") && next.out(41).binds.is_empty());
    assert_eq!(next.counter("heads_lost"), 1);
}

// ---- full proxy mode (`mode = "proxy"`) ----

fn proxy_args() -> serde_json::Value {
    let mut a = args();
    a["mode"] = json!("proxy");
    a
}

impl Harness {
    /// Bytes of flow `id` in direction `dir`, from `offset` of that side's stream.
    fn data_dir(&mut self, id: u64, dir: u8, offset: u64, bytes: &[u8]) {
        let f = FlowRef { dir, ..flow(id) };
        let ev = StreamDataEvent::new(self.tcp_event::<StreamDataEvent>(builtin::FLOW_TCP_DATA_RDY, f, 0), offset, bytes);
        self.deliver(ev.header());
    }

    fn stream_end(&mut self, id: u64, dir: u8, offset: u64) {
        let ev = StreamEndEvent {
            tcp: self.tcp_event::<StreamEndEvent>(builtin::FLOW_TCP_STREAM_END, FlowRef { dir, ..flow(id) }, 0),
            offset,
            reason: END_FIN,
            _reserved: [0; 7],
        };
        self.deliver(ev.header());
    }
}

#[test]
fn in_proxy_mode_each_request_of_a_kept_alive_connection_goes_where_its_rule_says() {
    let mut h = Harness::new(proxy_args());
    let first = b"GET /a HTTP/1.1\r\nHost: img.example\r\n\r\n";
    h.data_dir(1, DIR_ORIG, 0, first);
    assert_eq!(h.out(1).binds, ["198.18.2.13:8080".parse::<SocketAddr>().unwrap()]);
    assert!(h.out(1).sent_reply.is_empty(), "nothing to the server before it connected");
    h.flow_event(builtin::FLOW_TCP_BOUND, 1, BIND_CONNECTED);
    assert_eq!(h.out(1).sent_reply, first, "the request, as the client sent it");
    // The answer in two pieces; the next request comes before it is done and waits.
    let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789";
    h.data_dir(1, DIR_REPLY, 0, &answer[..30]);
    let second = b"GET /app/b HTTP/1.1\r\nHost: www.example\r\n\r\n";
    h.data_dir(1, DIR_ORIG, first.len() as u64, second);
    assert_eq!(h.out(1).binds.len(), 1, "not while the first answer is coming");
    h.data_dir(1, DIR_REPLY, 30, &answer[30..]);
    let out = h.out(1);
    assert_eq!(out.sent, answer, "the answer, unchanged");
    assert_eq!(out.closes_reply, 1, "http-server-close: the server side goes with its answer");
    assert_eq!(out.binds.len(), 2, "the second request bound on its own");
    assert!(out.binds[1].ip().to_string().starts_with("198.18.2.1") && out.binds[1].port() == 80, "{:?}", out.binds);
    h.flow_event(builtin::FLOW_TCP_BOUND, 1, BIND_CONNECTED);
    assert_eq!(h.out(1).sent_reply, [&first[..], &second[..]].concat());
    // A chunked answer ends at its last chunk; the client's FIN then closes it.
    let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n";
    h.data_dir(1, DIR_REPLY, 0, chunked);
    assert_eq!(h.out(1).closes_reply, 2);
    assert_eq!(h.out(1).closes, 0, "the client keeps its connection");
    // A late end of the first server side (closed after its answer) is not the second's.
    let third = b"GET /app/c HTTP/1.1\r\nHost: www.example\r\n\r\n";
    h.data_dir(1, DIR_ORIG, (first.len() + second.len()) as u64, third);
    assert_eq!(h.out(1).binds.len(), 3);
    let late = StreamEndEvent {
        tcp: h.tcp_event::<StreamEndEvent>(builtin::FLOW_TCP_STREAM_END, FlowRef { dir: DIR_REPLY, _reserved: 2, ..flow(1) }, 0),
        offset: 10,
        reason: END_FIN,
        _reserved: [0; 7],
    };
    h.deliver(late.header());
    assert_eq!(h.counter("bad_responses"), 0, "a stale end changes nothing");
    h.flow_event(builtin::FLOW_TCP_BOUND, 1, BIND_CONNECTED);
    h.data_dir(1, DIR_REPLY, 0, b"HTTP/1.1 204 No Content\r\n\r\n");
    h.stream_end(1, DIR_ORIG, (first.len() + second.len() + third.len()) as u64);
    assert_eq!(h.out(1).closes, 1, "closed once it has left and everything is answered");
    assert_eq!((h.counter("requests"), h.counter("responses"), h.counter("bound")), (3, 3, 3));
    h.flow_event(builtin::FLOW_TCP_TERMINATE, 1, REASON_FIN);
    assert_eq!(h.counter("backend_img_open") + h.counter("backend_web1_open") + h.counter("backend_web2_open"), 0);
}

#[test]
fn in_proxy_mode_a_request_body_goes_whole_to_its_server_and_no_further() {
    let mut h = Harness::new(proxy_args());
    let post = b"POST /app/up HTTP/1.1\r\nHost: w\r\nContent-Length: 12\r\n\r\nhello";
    h.data_dir(2, DIR_ORIG, 0, post);
    h.flow_event(builtin::FLOW_TCP_BOUND, 2, BIND_CONNECTED);
    let rest = b" world!GET /app/next HTTP/1.1\r\nHost: w\r\n\r\n";
    h.data_dir(2, DIR_ORIG, post.len() as u64, rest);
    assert_eq!(h.out(2).sent_reply, [&post[..], b" world!"].concat(), "the body's 12 bytes, not the next request");
    h.data_dir(2, DIR_REPLY, 0, b"HTTP/1.1 204 No Content\r\n\r\n");
    assert_eq!(h.out(2).binds.len(), 2, "the next request routed after the answer");
}

#[test]
fn in_proxy_mode_a_failed_bind_gets_a_503_and_an_answer_cut_short_a_502() {
    let mut h = Harness::new(proxy_args());
    h.data_dir(3, DIR_ORIG, 0, b"GET /app/ HTTP/1.1\r\nHost: w\r\n\r\n");
    h.flow_event(builtin::FLOW_TCP_BOUND, 3, BIND_REFUSED);
    assert!(h.out(3).sent.starts_with(b"HTTP/1.1 503 ") && h.out(3).closes == 1, "{:?}", h.out(3));
    h.data_dir(4, DIR_ORIG, 0, b"GET /app/ HTTP/1.1\r\nHost: w\r\n\r\n");
    h.flow_event(builtin::FLOW_TCP_BOUND, 4, BIND_CONNECTED);
    h.stream_end(4, DIR_REPLY, 0);
    assert!(h.out(4).sent.starts_with(b"HTTP/1.1 502 ") && h.out(4).closes == 1, "{:?}", h.out(4));
    // An answer without a length runs to the server's close, then the client is closed.
    h.data_dir(5, DIR_ORIG, 0, b"GET /app/ HTTP/1.0\r\nHost: w\r\n\r\n");
    h.flow_event(builtin::FLOW_TCP_BOUND, 5, BIND_CONNECTED);
    h.data_dir(5, DIR_REPLY, 0, b"HTTP/1.0 200 OK\r\n\r\nsome bytes");
    assert_eq!(h.out(5).closes, 0);
    h.stream_end(5, DIR_REPLY, 29);
    assert_eq!((h.out(5).sent, h.out(5).closes), (b"HTTP/1.0 200 OK\r\n\r\nsome bytes".to_vec(), 1));
    assert_eq!(h.counter("bad_responses"), 1);
    assert!(L7Lb::new(r#"{"mode": "tunnel", "backends": [{"name": "a", "address": "198.18.2.1:80"}]}"#, 1, 8).is_err());
}
