//! The NF against a fake host (`kit::testing::Recorder`: each flow's sends and closes): events
//! built as the shard builds them — the client's request, then the backend's answer as
//! `FLOW/TCP/BACKEND_DATA` in pieces.

use super::*;
use mbox_abi::kit::testing;
use mbox_abi::{DirStats, Event, EventType, FlowEvent, FlowTcpEvent, FlowTuple, TcpSnapshot, DIR_NONE, REASON_FIN};
use serde_json::json;

const SLOTS: u32 = 64;
const S: u64 = 1_000_000_000;

struct Harness {
    nf: HttpCache,
    fake: Box<testing::Recorder>,
    now: u64,
}

fn flow(id: u64, dir: u8) -> FlowRef {
    FlowRef { id, slot: id as u32, shard: 0, dir, _reserved: 0 }
}

impl Harness {
    fn new(args: serde_json::Value) -> Harness {
        let json = args.to_string();
        let nf = HttpCache::create(&testing::init("cache", &json, 1, SLOTS)).unwrap_or_else(|e| panic!("{args}: {e}"));
        Harness { nf, fake: Box::default(), now: 1_000 * S }
    }

    fn tcp_event<E: Event>(&self, ty: EventType, flow: FlowRef) -> FlowTcpEvent {
        let header = EventHeader::new::<E>(ty, self.now, flow);
        let tuple = FlowTuple::new(6, 0, ["198.18.9.1".parse().unwrap(), "198.18.1.80".parse().unwrap()], [40000 + flow.id as u16, 80]);
        FlowTcpEvent {
            flow: FlowEvent { header, tuple, stats: [DirStats::default(); 2], reason: REASON_FIN, _reserved: [0; 7] },
            snapshot: TcpSnapshot::default(),
        }
    }

    fn deliver(&mut self, event: &EventHeader) -> Verdict {
        let mut calls = self.fake.calls();
        let mut host = Host::new(&mut calls);
        self.nf.on_event(event, &mut host)
    }

    /// The client's request on connection `id`: the verdict for the balancer after the cache.
    fn request(&mut self, id: u64, head: &str) -> Verdict {
        let ev = StreamDataEvent::new(self.tcp_event::<StreamDataEvent>(builtin::FLOW_TCP_DATA_RDY, flow(id, 0)), 0, head.as_bytes());
        self.deliver(ev.header())
    }

    /// The backend's answer on connection `id`, in pieces of `piece` bytes.
    fn answer(&mut self, id: u64, bytes: &[u8], piece: usize) {
        for (i, chunk) in bytes.chunks(piece).enumerate() {
            let ev = StreamDataEvent::new(
                self.tcp_event::<StreamDataEvent>(builtin::FLOW_TCP_BACKEND_DATA, flow(id, 1)),
                (i * piece) as u64,
                chunk,
            );
            assert_eq!(self.deliver(ev.header()), Verdict::Pass);
        }
    }

    fn end(&mut self, id: u64) {
        let ev = self.tcp_event::<FlowTcpEvent>(builtin::FLOW_TCP_TERMINATE, flow(id, DIR_NONE));
        assert_eq!(self.deliver(ev.header()), Verdict::Pass, "the balancer sees every end");
    }

    /// A miss filled with `response` (sent in pieces of 7 bytes) on connection `id`.
    fn miss(&mut self, id: u64, head: &str, response: &[u8]) {
        assert_eq!(self.request(id, head), Verdict::Pass, "a miss goes on to the balancer");
        self.answer(id, response, 7);
        self.end(id);
        assert!(self.fake.of(id).sent.is_empty());
    }

    fn counter(&self, name: &str) -> u64 {
        testing::counters(&self.nf).into_iter().find(|(n, _)| n == name).map(|(_, v)| v).unwrap_or_else(|| panic!("no counter {name}"))
    }
}

const GET: &str = "GET /page HTTP/1.1\r\nHost: web.example\r\nAccept: */*\r\n\r\n";
const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nConnection: keep-alive\r\n\r\nhello world";
const SERVED: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nConnection: close\r\n\r\nhello world";

#[test]
fn a_miss_is_stored_and_the_next_request_answered_from_the_store_and_closed() {
    let mut h = Harness::new(json!({}));
    h.miss(1, GET, OK);
    assert_eq!((h.counter("misses"), h.counter("stored"), h.counter("objects")), (1, 1, 1));
    assert_eq!(h.request(2, GET), Verdict::Drop, "a hit never reaches the balancer");
    let out = h.fake.of(2);
    assert_eq!((out.sent.as_slice(), out.closes), (SERVED, 1));
    // The rest of the answered connection stays the cache's; its end reaches everyone.
    let more =
        StreamDataEvent::new(h.tcp_event::<StreamDataEvent>(builtin::FLOW_TCP_DATA_RDY, flow(2, 0)), GET.len() as u64, GET.as_bytes());
    assert_eq!(h.deliver(more.header()), Verdict::Drop);
    let end = h.tcp_event::<FlowTcpEvent>(builtin::FLOW_TCP_STREAM_END, flow(2, 0));
    assert_eq!(h.deliver(end.header()), Verdict::Drop);
    h.end(2);
    assert_eq!((h.counter("hits"), h.counter("hit_bytes")), (1, SERVED.len() as u64));
    // Another target, or another host, is another object.
    assert_eq!(h.request(3, "GET /other HTTP/1.1\r\nHost: web.example\r\n\r\n"), Verdict::Pass);
    assert_eq!(h.request(4, "GET /page HTTP/1.1\r\nHost: img.example\r\n\r\n"), Verdict::Pass);
    assert_eq!(h.counter("misses"), 3);
}

#[test]
fn a_chunked_answer_is_stored_whole_and_sent_as_the_backend_framed_it() {
    let mut h = Harness::new(json!({}));
    let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    h.miss(1, GET, chunked);
    assert_eq!(h.request(2, GET), Verdict::Drop);
    assert_eq!(
        h.fake.of(2).sent,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    );
}

#[test]
fn hit_ratio_answers_that_share_of_the_requests_the_store_could() {
    let mut h = Harness::new(json!({ "hit_ratio": 50 }));
    h.miss(1, GET, OK);
    let verdicts: Vec<Verdict> = (2..12).map(|id| h.request(id, GET)).collect();
    assert_eq!(verdicts.iter().filter(|v| **v == Verdict::Drop).count(), 5);
    assert_eq!(verdicts[..4], [Verdict::Pass, Verdict::Drop, Verdict::Pass, Verdict::Drop], "spread, not bunched");
    assert_eq!((h.counter("hits"), h.counter("misses"), h.counter("skipped_for_ratio")), (5, 6, 5));
    let mut none = Harness::new(json!({ "hit_ratio": 0 }));
    none.miss(1, GET, OK);
    assert_eq!(none.request(2, GET), Verdict::Pass);
    assert_eq!(none.counter("hits"), 0);
    assert!(Harness::new_err(json!({ "hit_ratio": 101 })).contains("percentage"));
}

#[test]
fn what_may_not_be_stored_or_did_not_come_whole_is_not() {
    let mut h = Harness::new(json!({ "max_object": 64 }));
    // Not storable: a 404, private.
    h.miss(1, GET, b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nno!");
    h.miss(2, GET, b"HTTP/1.1 200 OK\r\nCache-Control: private\r\nContent-Length: 2\r\n\r\nhi");
    assert_eq!(h.counter("not_storable"), 2);
    // Larger than max_object.
    let big = format!("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{}", "x".repeat(100));
    h.miss(3, GET, big.as_bytes());
    // A hole in the answer (an event lost), and an answer cut by the connection's end.
    assert_eq!(h.request(4, GET), Verdict::Pass);
    let ev = StreamDataEvent::new(h.tcp_event::<StreamDataEvent>(builtin::FLOW_TCP_BACKEND_DATA, flow(4, 1)), 10, &OK[10..]);
    h.deliver(ev.header());
    h.end(4);
    assert_eq!(h.request(5, GET), Verdict::Pass);
    h.answer(5, &OK[..OK.len() - 1], 7);
    h.end(5);
    assert_eq!(h.counter("fills_abandoned"), 3);
    assert_eq!((h.counter("stored"), h.counter("objects")), (0, 0));
    // Requests it neither answers nor fills.
    assert_eq!(h.request(6, "POST /page HTTP/1.1\r\nHost: web.example\r\nContent-Length: 0\r\n\r\n"), Verdict::Pass);
    assert_eq!(h.request(7, "\x16\x03\x01\x02\x00 not http\r\n\r\n"), Verdict::Pass);
    assert_eq!((h.counter("bypassed"), h.counter("bad_requests")), (2, 1));
}

#[test]
fn a_stale_answer_is_fetched_again_and_a_no_cache_request_refreshes_it() {
    let mut h = Harness::new(json!({ "default_ttl": "10s" }));
    h.miss(1, GET, OK);
    h.now += 9 * S;
    assert_eq!(h.request(2, GET), Verdict::Drop, "fresh for 10 s");
    h.now += 2 * S;
    h.miss(3, GET, OK);
    let refresh = "GET /page HTTP/1.1\r\nHost: web.example\r\nCache-Control: no-cache\r\n\r\n";
    h.miss(4, refresh, b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nnew");
    assert_eq!(h.request(5, GET), Verdict::Drop);
    assert_eq!(h.fake.of(5).sent, b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nnew");
    assert_eq!((h.counter("stored"), h.counter("objects")), (3, 1));
}

#[test]
fn a_head_in_pieces_is_decided_once_whole() {
    let mut h = Harness::new(json!({}));
    h.miss(1, GET, OK);
    let (a, b) = GET.split_at(20);
    let first = StreamDataEvent::new(h.tcp_event::<StreamDataEvent>(builtin::FLOW_TCP_DATA_RDY, flow(2, 0)), 0, a.as_bytes());
    assert_eq!(h.deliver(first.header()), Verdict::Pass, "not decided yet");
    let rest = StreamDataEvent::new(h.tcp_event::<StreamDataEvent>(builtin::FLOW_TCP_DATA_RDY, flow(2, 0)), 20, b.as_bytes());
    assert_eq!(h.deliver(rest.header()), Verdict::Drop);
    assert_eq!(h.fake.of(2).sent, SERVED);
}

impl Harness {
    fn new_err(args: serde_json::Value) -> String {
        HttpCache::create(&testing::init("cache", &args.to_string(), 1, SLOTS)).err().expect("refused")
    }
}
