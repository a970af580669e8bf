//! End-to-end tests of the NF against a fake host: events built as the shard builds them, and a
//! `HostCalls` whose publish call answers `StreamRequest`s with a send budget the test sets,
//! recording per flow the bytes taken, the close and the reset.

use super::*;
use crate::conn::{BUFFER_MAX, MAX_PENDING};
use mbox_abi::abi_stable::std_types::RVec;
use mbox_abi::kit::testing;
use mbox_abi::nf::{Guarded, NfObject};
use mbox_abi::{
    DirStats, Event, EventType, FlowEvent, FlowTcpEvent, FlowTuple, PublishStatus, StreamOp, StreamRequest, StreamStatus, TcpSnapshot,
    DIR_NONE, END_FIN, REASON_NONE, STREAM_REQUEST,
};
use serde_json::json;
use std::collections::BTreeMap;
use std::ffi::c_void;

/// What the fake host recorded for one flow.
#[derive(Default, Debug)]
struct Out {
    bytes: Vec<u8>,
    /// How many bytes had been taken when the NF closed.
    closed_at: Option<usize>,
    closes: u32,
    resets: u32,
    sends: u32,
    sends_after_close: u32,
}

/// The host's side of the stream requests.
struct Fake {
    /// Bytes the sends may still take (the connection's free send buffer).
    budget: usize,
    /// Every send answers `Ended`.
    ended: bool,
    flows: BTreeMap<u64, Out>,
}

unsafe extern "C" fn publish(state: *mut c_void, event: *const EventHeader, size: u32) -> PublishStatus {
    // SAFETY: the harness lends its `Fake` as the state for the duration of the call.
    let fake = unsafe { &mut *(state as *mut Fake) };
    // SAFETY: `Host` passes a pointer to an event struct that begins with a header.
    let header = unsafe { &*event };
    if header.ty != STREAM_REQUEST || (size as usize) < std::mem::size_of::<StreamRequest>() {
        return PublishStatus::NotDeclared;
    }
    // SAFETY: a STREAM_REQUEST of that size is a `StreamRequest` the caller owns mutably.
    let req = unsafe { &mut *(event as *mut StreamRequest) };
    let out = fake.flows.entry(req.flow.id).or_default();
    match req.op {
        StreamOp::Send => {
            out.sends += 1;
            if out.closed_at.is_some() {
                out.sends_after_close += 1;
            }
            if fake.ended {
                req.accepted = 0;
                req.answer = StreamStatus::Ended as u8;
                return PublishStatus::Published;
            }
            let n = (req.len as usize).min(fake.budget);
            if n > 0 {
                // SAFETY: the request points at `len` readable bytes during the call.
                out.bytes.extend_from_slice(unsafe { std::slice::from_raw_parts(req.bytes, n) });
            }
            fake.budget -= n;
            req.accepted = n as u32;
            req.answer = if n == req.len as usize { StreamStatus::Done } else { StreamStatus::Partial } as u8;
        }
        StreamOp::Close => {
            out.closes += 1;
            out.closed_at.get_or_insert(out.bytes.len());
            req.answer = StreamStatus::Done as u8;
        }
        StreamOp::Reset => {
            out.resets += 1;
            req.answer = StreamStatus::Done as u8;
        }
    }
    PublishStatus::Published
}

const SLOTS: u32 = 64;

fn create(args: &serde_json::Value) -> Result<HttpServer, String> {
    let json = args.to_string();
    HttpServer::create(&testing::init("http", &json, 2, SLOTS))
}

/// Connection `conn`'s flow as the data events carry it (the client's direction), with the
/// slot mbox gives it: after the flow table's.
fn flow(id: u64, conn: u32) -> FlowRef {
    FlowRef { id, slot: SLOTS + conn, shard: 1, dir: DIR_ORIG, _reserved: 0 }
}

/// The part every `FLOW/TCP/*` event begins with, sized for `E`, as the shard builds it.
fn tcp_event<E: mbox_abi::Event>(ty: EventType, flow: FlowRef) -> FlowTcpEvent {
    let header = EventHeader::new::<E>(ty, 1_700_000_000_000_000_000, flow);
    let flow = FlowEvent { header, tuple: FlowTuple::default(), stats: [DirStats::default(); 2], reason: REASON_NONE, _reserved: [0; 7] };
    FlowTcpEvent { flow, snapshot: TcpSnapshot::default() }
}

struct Harness {
    nf: HttpServer,
    fake: Box<Fake>,
    /// The next client stream offset per flow id.
    offsets: BTreeMap<u64, u64>,
}

impl Harness {
    fn new(args: serde_json::Value) -> Harness {
        let nf = create(&args).unwrap_or_else(|e| panic!("{args}: {e}"));
        Harness { nf, fake: Box::new(Fake { budget: usize::MAX, ended: false, flows: BTreeMap::new() }), offsets: BTreeMap::new() }
    }

    fn generated() -> Harness {
        Harness::new(json!({ "generated": { "/8k": 8192, "/big.bin": 3_000_001, "/a.txt": 10, "/b.html": 20, "/100k": 100_000 } }))
    }

    fn deliver(&mut self, event: &EventHeader) {
        // SAFETY: `fake` outlives the call, and the functions only touch it and the request.
        let mut calls = unsafe { testing::calls(&mut *self.fake as *mut Fake as *mut c_void, publish) };
        let mut host = Host::new(&mut calls);
        assert_eq!(self.nf.on_event(event, &mut host), Verdict::Pass);
    }

    fn flow_event(&mut self, ty: EventType, flow: FlowRef) {
        let ev = tcp_event::<FlowTcpEvent>(ty, FlowRef { dir: DIR_NONE, ..flow });
        self.deliver(ev.header());
    }

    fn open(&mut self, flow: FlowRef) {
        self.flow_event(builtin::FLOW_TCP_NEW, flow);
    }

    fn room(&mut self, flow: FlowRef) {
        self.flow_event(builtin::FLOW_TCP_SEND_ROOM, flow);
    }

    fn terminate(&mut self, flow: FlowRef) {
        self.flow_event(builtin::FLOW_TCP_TERMINATE, flow);
    }

    /// Client bytes at an explicit offset.
    fn data_at(&mut self, flow: FlowRef, offset: u64, bytes: &[u8]) {
        let ev = StreamDataEvent::new(tcp_event::<StreamDataEvent>(builtin::FLOW_TCP_DATA_RDY, flow), offset, bytes);
        self.deliver(ev.header());
        let next = self.offsets.entry(flow.id).or_default();
        *next = (*next).max(offset + bytes.len() as u64);
    }

    /// The client's next bytes.
    fn data(&mut self, flow: FlowRef, bytes: &[u8]) {
        let offset = self.offsets.get(&flow.id).copied().unwrap_or(0);
        self.data_at(flow, offset, bytes);
    }

    fn end(&mut self, flow: FlowRef, reason: u8) {
        let offset = self.offsets.get(&flow.id).copied().unwrap_or(0);
        let ev = StreamEndEvent { tcp: tcp_event::<StreamEndEvent>(builtin::FLOW_TCP_STREAM_END, flow), offset, reason, _reserved: [0; 7] };
        self.deliver(ev.header());
    }

    fn out(&self, id: u64) -> &Out {
        static NONE: Out = Out { bytes: Vec::new(), closed_at: None, closes: 0, resets: 0, sends: 0, sends_after_close: 0 };
        self.fake.flows.get(&id).unwrap_or(&NONE)
    }

    fn pending(&mut self, flow: FlowRef) -> usize {
        self.nf.conn(&flow).map_or(0, |c| c.answers.len())
    }

    /// Gives the connection `budget` bytes of send room per SEND_ROOM until nothing waits;
    /// returns the number of SEND_ROOM events.
    fn drain(&mut self, flow: FlowRef, budget: usize) -> usize {
        let mut rounds = 0;
        while self.pending(flow) > 0 {
            assert!(self.pending(flow) <= MAX_PENDING);
            self.fake.budget = budget;
            self.room(flow);
            rounds += 1;
            assert!(rounds < 1_000_000, "no progress");
        }
        self.fake.budget = usize::MAX;
        rounds
    }
}

/// One answer as a client reads it.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Reads answers back to back from `bytes`, the i-th without a body when `head_only[i]`;
/// fails unless they cover the bytes exactly.
fn responses(mut bytes: &[u8], head_only: &[bool]) -> Vec<Resp> {
    let mut all = Vec::new();
    for &head in head_only {
        let end = bytes.windows(4).position(|w| w == b"\r\n\r\n").expect("a head's end") + 4;
        let text = std::str::from_utf8(&bytes[..end - 4]).expect("an ASCII head");
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
        let status = status_line[9..12].parse().expect("a status code");
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (n, v) = l.split_once(": ").expect("a header line");
                (n.to_string(), v.to_string())
            })
            .collect();
        let mut resp = Resp { status, headers, body: Vec::new() };
        assert_eq!(resp.header("Server"), Some("mbox-http-server"));
        let len: usize = resp.header("Content-Length").expect("a length").parse().expect("a number");
        bytes = &bytes[end..];
        if !head {
            assert!(bytes.len() >= len, "body cut short: {} of {len}", bytes.len());
            resp.body = bytes[..len].to_vec();
            bytes = &bytes[len..];
        }
        all.push(resp);
    }
    assert!(bytes.is_empty(), "{} bytes after the answers: {:?}", bytes.len(), String::from_utf8_lossy(&bytes[..bytes.len().min(80)]));
    all
}

/// The documented generated body, computed independently of the server's code.
fn expected_body(len: usize) -> Vec<u8> {
    (0..len as u64).map(|i| ((i * 31 + 7) % 251) as u8).collect()
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").into_bytes()
}

#[test]
fn default_subscriptions_are_the_five_connection_events() {
    assert_eq!(
        HttpServer::INFO.subscribes,
        ["FLOW/TCP/NEW", "FLOW/TCP/DATA_RDY", "FLOW/TCP/STREAM_END", "FLOW/TCP/SEND_ROOM", "FLOW/TCP/TERMINATE"]
    );
    assert!(HttpServer::INFO.publishes.is_empty());
    for path in HttpServer::INFO.subscribes {
        assert!(builtin::ALL.iter().any(|(p, _)| p == path), "{path} is a built-in type");
    }
}

#[test]
fn a_large_generated_body_streams_through_partial_sends_and_send_room() {
    let mut h = Harness::generated();
    let f = flow(1, 3);
    h.open(f);
    h.fake.budget = 1000;
    h.data(f, &get("/big.bin"));
    assert_eq!(h.out(1).bytes.len(), 1000, "the first send took what the buffer had");
    // A SEND_ROOM with no room makes one attempt, then waits again: no spinning.
    let sends = h.out(1).sends;
    h.fake.budget = 0;
    h.room(f);
    assert_eq!(h.out(1).sends, sends + 1);
    let rounds = h.drain(f, 65_536 + 17);
    assert!(rounds >= 3_000_001 / (65_536 + 17), "{rounds}");
    let out = h.out(1);
    assert!(out.sends as usize <= 2 * rounds + 4, "{} sends for {rounds} rounds", out.sends);
    let r = responses(&out.bytes, &[false]);
    assert_eq!(r[0].status, 200);
    assert_eq!(r[0].header("Content-Length"), Some("3000001"));
    assert_eq!(r[0].header("Content-Type"), Some("application/octet-stream"));
    assert_eq!(r[0].header("Connection"), None);
    assert!(r[0].body == expected_body(3_000_001), "the body reassembles exactly");
    assert_eq!((out.closes, out.resets), (0, 0), "HTTP/1.1 keeps the connection");
    let s = h.nf.stats();
    assert_eq!((s.requests, s.responses_2xx, s.responses_4xx, s.connections), (1, 1, 0, 1));
    assert_eq!(s.bytes_sent, out.bytes.len() as u64);
    assert_eq!(s.sends_partial, rounds as u64 + 1, "one partial send per SEND_ROOM but the last, and the first");
    // The connection serves the next request once the first is out.
    h.data(f, &get("/8k"));
    let r = responses(&h.out(1).bytes, &[false, false]);
    assert_eq!(r[1].body, expected_body(8192));
}

#[test]
fn head_sends_the_headers_only() {
    let mut h = Harness::generated();
    let f = flow(1, 0);
    h.open(f);
    h.data(f, &[b"HEAD /8k HTTP/1.1\r\nHost: t\r\n\r\n".as_slice(), &get("/8k"), b"HEAD /missing HTTP/1.1\r\nHost: t\r\n\r\n"].concat());
    let r = responses(&h.out(1).bytes, &[true, false, true]);
    assert_eq!((r[0].status, r[0].header("Content-Length")), (200, Some("8192")));
    assert!(r[0].body.is_empty());
    assert_eq!(r[1].body, expected_body(8192));
    assert_eq!((r[2].status, r[2].header("Content-Length")), (404, Some("14")));
}

#[test]
fn unknown_paths_get_404_and_other_methods_405_with_their_bodies_skipped() {
    let mut h = Harness::generated();
    let f = flow(7, 9);
    h.open(f);
    h.data(f, &get("/nope"));
    h.data(f, b"POST /8k HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhel");
    // The body's rest and the next requests in one event: the body is not read as a request.
    h.data(
        f,
        &[b"lo worldDELETE /a.txt HTTP/1.1\r\nHost: t\r\n\r\nget /a.txt HTTP/1.1\r\nHost: t\r\n\r\n".as_slice(), &get("/a.txt")].concat(),
    );
    // A body on a GET is skipped too, even split across events.
    h.data(f, b"GET /b.html HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\nGE");
    h.data(f, b"T /xGET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = responses(&h.out(7).bytes, &[false; 7]);
    let statuses: Vec<u16> = r.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [404, 405, 405, 405, 200, 200, 200]);
    assert_eq!(r[0].body, b"404 Not Found\n");
    assert_eq!(r[0].header("Content-Type"), Some("text/plain; charset=utf-8"));
    for r in &r[1..4] {
        assert_eq!(r.header("Allow"), Some("GET, HEAD"));
        assert_eq!(r.body, b"405 Method Not Allowed\n");
    }
    assert_eq!(r[4].header("Content-Type"), Some("text/plain; charset=utf-8"));
    assert_eq!((r[4].body.as_slice(), r[5].body.len(), r[6].body.len()), (&expected_body(10)[..], 20, 10));
    assert_eq!(r[5].header("Content-Type"), Some("text/html; charset=utf-8"));
    assert_eq!(h.out(7).closes, 0);
    let s = h.nf.stats();
    assert_eq!((s.requests, s.responses_2xx, s.responses_4xx, s.bad_requests), (7, 3, 4, 0));
}

#[test]
fn bad_requests_get_400_and_close_after_the_answers_before_them() {
    let long_head = [b"GET /8k HTTP/1.1\r\nHost: t\r\nX: ".as_slice(), &[b'a'; 9000]].concat();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("bad request line", b"GET /8k HTTP/1.1 extra\r\nHost: t\r\n\r\n".to_vec()),
        ("bad version", b"GET /8k HTTP/3.0\r\nHost: t\r\n\r\n".to_vec()),
        ("transfer-encoding", b"GET /8k HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec()),
        ("too long", long_head),
        ("encoded traversal", get("/%2e%2e/%2E%2E/etc/passwd")),
        ("traversal", get("/../8k")),
        ("no host", b"GET /8k HTTP/1.1\r\n\r\n".to_vec()),
        ("bare cr", b"GET /8k HTTP/1.1\r\nHost: t\rX: y\r\n\r\n".to_vec()),
        ("bad escape", get("/8%k")),
        ("not a path", get("*")),
    ];
    let mut h = Harness::generated();
    for (i, (what, bad)) in cases.iter().enumerate() {
        let id = 100 + i as u64;
        let f = flow(id, i as u32);
        h.open(f);
        // A good request first: it is answered before the 400.
        let stream = [get("/a.txt"), bad.clone(), get("/a.txt")].concat();
        // In pieces of 3000 bytes, so that the long head crosses the bound in kept bytes.
        for piece in stream.chunks(3000) {
            h.data(f, piece);
        }
        let out = h.out(id);
        let r = responses(&out.bytes, &[false, false]);
        assert_eq!((r[0].status, r[1].status), (200, 400), "{what}");
        assert_eq!(r[1].header("Connection"), Some("close"), "{what}");
        assert_eq!(r[1].body, b"400 Bad Request\n");
        assert_eq!((out.closes, out.closed_at), (1, Some(out.bytes.len())), "{what}: closed after the last byte");
        // Nothing more is read or written.
        h.data(f, &get("/a.txt"));
        h.room(f);
        assert_eq!((h.out(id).sends_after_close, h.out(id).closes), (0, 1), "{what}");
    }
    let s = h.nf.stats();
    assert_eq!((s.bad_requests, s.responses_4xx, s.responses_2xx), (cases.len() as u64, cases.len() as u64, cases.len() as u64));
}

#[test]
fn pipelined_requests_are_answered_in_order_however_they_are_split() {
    let stream =
        [get("/a.txt"), b"HEAD /b.html HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), get("/missing"), b"\r\n".to_vec(), get("/b.html")].concat();
    let head_only = [false, true, false, false];
    let mut h = Harness::generated();
    h.open(flow(1, 1));
    h.data(flow(1, 1), &stream);
    let reference = h.out(1).bytes.clone();
    let r = responses(&reference, &head_only);
    assert_eq!(r.iter().map(|r| r.status).collect::<Vec<_>>(), [200, 200, 404, 200]);
    assert_eq!((r[0].body.len(), r[1].body.len(), r[3].body.len()), (10, 0, 20));
    // Every two-piece split, on connections that reuse one slot.
    for cut in 0..=stream.len() {
        let id = 1000 + cut as u64;
        let f = flow(id, 2);
        h.open(f);
        h.data(f, &stream[..cut]);
        h.data(f, &stream[cut..]);
        assert_eq!(h.out(id).bytes, reference, "split at {cut}");
    }
    // A byte at a time, with little send room and a SEND_ROOM after every byte.
    let f = flow(5000, 2);
    h.open(f);
    for b in &stream {
        h.fake.budget = 7;
        h.data(f, std::slice::from_ref(b));
        h.fake.budget = 7;
        h.room(f);
    }
    h.drain(f, 7);
    assert_eq!(h.out(5000).bytes, reference);
}

#[test]
fn a_full_answer_queue_pauses_parsing_until_it_drains() {
    let mut h = Harness::generated();
    let f = flow(1, 4);
    h.open(f);
    let stream: Vec<u8> = (0..40).flat_map(|i| get(if i % 3 == 0 { "/a.txt" } else { "/8k" })).collect();
    h.fake.budget = 0;
    h.data(f, &stream);
    {
        let conn = h.nf.conn(&f).unwrap();
        assert_eq!(conn.answers.len(), MAX_PENDING);
        assert!(conn.stalled());
    }
    assert_eq!(h.nf.stats().requests, MAX_PENDING as u64, "the rest waits unparsed");
    h.drain(f, 3000);
    let r = responses(&h.out(1).bytes, &[false; 40]);
    for (i, r) in r.iter().enumerate() {
        assert_eq!(r.body.len(), if i % 3 == 0 { 10 } else { 8192 }, "answer {i} in order");
    }
    assert_eq!(h.nf.stats().responses_2xx, 40);
}

#[test]
fn a_client_that_pipelines_past_the_buffer_bound_is_reset() {
    let mut h = Harness::generated();
    let f = flow(1, 4);
    h.open(f);
    h.fake.budget = 0;
    let one = get("/8k");
    let mut sent = 0;
    while h.out(1).resets == 0 {
        h.data(f, &one);
        sent += one.len();
        assert!(sent <= BUFFER_MAX + MAX_PENDING * one.len() + one.len(), "not reset after {sent} bytes");
    }
    assert!(sent > BUFFER_MAX);
    assert_eq!(h.nf.stats().resets, 1);
    // The connection is over for the NF: nothing more is sent.
    let sends = h.out(1).sends;
    h.fake.budget = usize::MAX;
    h.room(f);
    h.data(f, &one);
    assert_eq!(h.out(1).sends, sends);
}

#[test]
fn connection_close_closes_after_the_last_byte_and_reads_no_further() {
    let mut h = Harness::generated();
    let f = flow(1, 0);
    h.open(f);
    h.fake.budget = 500;
    h.data(f, &[b"GET /100k HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".as_slice(), &get("/8k")].concat());
    while h.pending(f) > 0 {
        assert_eq!(h.out(1).closes, 0, "not closed while bytes wait");
        h.fake.budget = 4096;
        h.room(f);
    }
    let out = h.out(1);
    assert_eq!((out.closes, out.closed_at), (1, Some(out.bytes.len())));
    let r = responses(&out.bytes, &[false]);
    assert_eq!(r[0].header("Connection"), Some("close"));
    assert_eq!(r[0].body, expected_body(100_000));
    assert_eq!(h.nf.stats().requests, 1, "the request after it is not read");
}

#[test]
fn http_1_0_closes_unless_it_asks_for_keep_alive() {
    let mut h = Harness::generated();
    let (a, b) = (flow(1, 0), flow(2, 1));
    h.open(a);
    h.data(a, b"GET /a.txt HTTP/1.0\r\n\r\n");
    let r = responses(&h.out(1).bytes, &[false]);
    assert_eq!(r[0].header("Connection"), Some("close"));
    assert_eq!(h.out(1).closes, 1);

    h.open(b);
    h.data(b, b"GET /a.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(h.out(2).closes, 0);
    h.data(b, b"GET /b.html HTTP/1.0\r\nUser-Agent: x\r\n\r\n");
    let r = responses(&h.out(2).bytes, &[false, false]);
    assert_eq!(r[0].header("Connection"), Some("keep-alive"));
    assert_eq!(r[1].header("Connection"), Some("close"));
    assert_eq!(h.out(2).closes, 1);
}

#[test]
fn the_clients_fin_closes_after_the_pending_answers() {
    let mut h = Harness::generated();
    // An idle connection closes at once.
    let idle = flow(1, 0);
    h.open(idle);
    h.end(idle, END_FIN);
    assert_eq!((h.out(1).closes, h.out(1).bytes.len()), (1, 0));

    // A big answer in flight, two more complete requests and half a head: the complete ones
    // are answered, then mbox closes.
    let f = flow(2, 1);
    h.open(f);
    h.fake.budget = 1000;
    h.data(f, &[get("/100k"), get("/a.txt"), get("/b.html"), b"GET /8k HT".to_vec()].concat());
    h.end(f, END_FIN);
    assert_eq!(h.out(2).closes, 0, "answers still wait");
    h.drain(f, 10_000);
    let out = h.out(2);
    assert_eq!((out.closes, out.closed_at), (1, Some(out.bytes.len())));
    let r = responses(&out.bytes, &[false; 3]);
    assert_eq!((r[0].body.len(), r[1].body.len(), r[2].body.len()), (100_000, 10, 20));
    assert!(r.iter().all(|r| r.header("Connection").is_none()));

    // A reset from the client: nothing more is sent, and mbox does not close.
    let g = flow(3, 2);
    h.open(g);
    h.fake.budget = 100;
    h.data(g, &get("/100k"));
    h.end(g, END_RST);
    let sends = h.out(3).sends;
    h.fake.budget = usize::MAX;
    h.room(g);
    assert_eq!((h.out(3).sends, h.out(3).closes), (sends, 0));
}

#[test]
fn terminate_drops_the_state_and_a_reused_slot_starts_afresh() {
    let mut h = Harness::generated();
    let f = flow(1, 7);
    h.open(f);
    h.fake.budget = 100;
    h.data(f, &[get("/100k"), b"GET /8k HTTP/1.1\r\nHo".to_vec()].concat());
    h.terminate(f);
    assert!(h.nf.conn(&f).is_none());
    let sends = h.out(1).sends;
    h.fake.budget = usize::MAX;
    h.room(f);
    assert_eq!(h.out(1).sends, sends, "no answer of a terminated connection is written");
    // Another connection in the same slot: nothing of the first one's half head remains.
    let g = flow(2, 7);
    h.open(g);
    h.data(g, b"st: t\r\n\r\n");
    h.data(g, &get("/a.txt"));
    let r = responses(&h.out(2).bytes, &[false]);
    assert_eq!(r[0].status, 400, "`st: t` is no request line");
    let g2 = flow(3, 7);
    h.open(g2);
    h.data(g2, &get("/a.txt"));
    assert_eq!(responses(&h.out(3).bytes, &[false])[0].status, 200);
    assert_eq!(h.nf.stats().connections, 3);
}

#[test]
fn a_connection_that_ended_is_dropped_on_its_first_refused_send() {
    let mut h = Harness::generated();
    let f = flow(1, 0);
    h.open(f);
    h.fake.budget = 100;
    h.data(f, &get("/100k"));
    h.fake.ended = true;
    h.room(f);
    assert_eq!(h.nf.stats().sends_ended, 1);
    let sends = h.out(1).sends;
    h.room(f);
    h.data(f, &get("/a.txt"));
    assert_eq!(h.out(1).sends, sends, "its state is gone");
    assert_eq!(h.pending(f), 0);
}

#[test]
fn lost_client_bytes_reset_and_repeated_ones_are_read_once() {
    let mut h = Harness::generated();
    let f = flow(1, 0);
    h.open(f);
    let req = get("/a.txt");
    h.data_at(f, 0, &req[..20]);
    h.data_at(f, 10, &req[10..]);
    h.data_at(f, 0, &req[..5]);
    assert_eq!(responses(&h.out(1).bytes, &[false])[0].status, 200);
    h.data_at(f, req.len() as u64 + 50, &req);
    assert_eq!((h.out(1).resets, h.nf.stats().resets), (1, 1));
    // A connection first seen past its start (no NEW, no first bytes) is reset too.
    let g = flow(2, 1);
    h.data_at(g, 1000, &req);
    assert_eq!(h.out(2).resets, 1);
    assert!(h.out(2).bytes.is_empty());
}

#[test]
fn connections_in_the_flow_tables_slots_are_served_and_flows_outside_the_table_ignored() {
    let mut h = Harness::generated();
    for slot in [0, 5, SLOTS - 1] {
        let f = FlowRef { slot, ..flow(10 + u64::from(slot), 0) };
        h.open(f);
        h.data(f, &get("/a.txt"));
        assert_eq!(responses(&h.out(f.id).bytes, &[false])[0].status, 200);
    }
    for f in [flow(1, super::MAX_HIGH_SLOTS), FlowRef { shard: 9, ..flow(2, 0) }] {
        h.open(f);
        h.data(f, &get("/a.txt"));
        assert!(h.out(f.id).bytes.is_empty());
    }
    // The server's own direction carries no requests.
    let f = flow(3, 0);
    h.open(f);
    h.data(FlowRef { dir: 1, ..f }, &get("/a.txt"));
    assert!(h.out(3).bytes.is_empty());
}

#[test]
fn files_under_root_are_served_with_their_type_and_nothing_outside() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "<p>home</p>").unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/style.css"), "p{}").unwrap();
    std::fs::write(dir.path().join("sub/a b.txt"), "spaced").unwrap();
    std::fs::write(dir.path().join("logo.png"), [0x89, b'P', b'N', b'G']).unwrap();
    std::fs::write(dir.path().join("data.json"), "[]").unwrap();
    std::fs::write(dir.path().join("photo.jpg"), [0xff, 0xd8]).unwrap();
    std::fs::write(dir.path().join("app.js"), "1").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink("/etc/hostname", dir.path().join("hostname")).unwrap();
    let mut h = Harness::new(json!({ "root": dir.path().to_str().unwrap(), "generated": { "/gen": 3 } }));
    let f = flow(1, 0);
    h.open(f);
    let paths = ["/", "/sub/style.css", "/sub/a%20b.txt", "/logo.png", "/data.json", "/photo.jpg", "/app.js", "/gen", "/hostname", "/sub"];
    for p in paths {
        h.data(f, &get(p));
    }
    h.data(f, &get("/sub/%2e%2e/%2e%2e/etc/passwd"));
    let r = responses(&h.out(1).bytes, &[false; 11]);
    let got: Vec<(u16, Option<&str>, &[u8])> = r.iter().map(|r| (r.status, r.header("Content-Type"), r.body.as_slice())).collect();
    assert_eq!(got[0], (200, Some("text/html; charset=utf-8"), &b"<p>home</p>"[..]));
    assert_eq!(got[1], (200, Some("text/css; charset=utf-8"), &b"p{}"[..]));
    assert_eq!(got[2], (200, Some("text/plain; charset=utf-8"), &b"spaced"[..]));
    assert_eq!(got[3], (200, Some("image/png"), &[0x89, b'P', b'N', b'G'][..]));
    assert_eq!(got[4], (200, Some("application/json"), &b"[]"[..]));
    assert_eq!(got[5], (200, Some("image/jpeg"), &[0xff, 0xd8][..]));
    assert_eq!(got[6], (200, Some("text/javascript; charset=utf-8"), &b"1"[..]));
    assert_eq!(got[7], (200, Some("application/octet-stream"), &[7, 38, 69][..]));
    assert_eq!(got[8].0, 404, "a symbolic link is not followed");
    assert_eq!(got[9].0, 404, "a directory is no file");
    assert_eq!(got[10].0, 400, "no way out of the root");
    assert_eq!(h.out(1).closes, 1);
}

#[test]
fn start_refuses_bad_arguments_with_a_clear_error() {
    let err = |args: serde_json::Value| create(&args).err().unwrap_or_else(|| panic!("{args} accepted"));
    assert!(err(json!({})).contains("nothing to serve"));
    assert!(err(json!({ "port": 80, "generated": { "/a": 1 } })).contains("unknown argument `port`"));
    assert!(err(json!({ "generated": { "/a": -1 } })).contains("generated./a"));
    assert!(err(json!({ "generated": { "/a": "big" } })).contains("generated./a"));
    assert!(err(json!({ "generated": [1] })).contains("`generated` must be a table"));
    assert!(err(json!({ "generated": { "a": 1 } })).contains("must begin with `/`"));
    assert!(err(json!({ "generated": { "/a": 1000 }, "max_bytes": 999 })).contains("max_bytes"));
    assert!(err(json!({ "root": "/nonexistent/http-server-root" })).contains("cannot read directory"));
    assert!(err(json!({ "root": 3 })).contains("`root` must be a string"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), [0u8; 100]).unwrap();
    assert!(err(json!({ "root": dir.path().to_str().unwrap(), "max_bytes": 99 })).contains("max_bytes"));
    assert!(create(&json!({ "root": dir.path().to_str().unwrap(), "max_bytes": 100 })).is_ok());
}

#[test]
fn counters_report_what_happened() {
    let mut h = Harness::generated();
    let f = flow(1, 0);
    h.open(f);
    h.fake.budget = 50;
    h.data(f, &[get("/a.txt"), get("/nope"), b"BAD\r\n\r\n".to_vec()].concat());
    h.drain(f, 50);
    let expected = h.nf.stats();
    let bytes = h.out(1).bytes.len() as u64;
    let mut guarded = Guarded(h.nf);
    let mut out = RVec::new();
    assert!(NfObject::counters(&mut guarded, &mut out).is_ok());
    let got: Vec<(&str, u64)> = out.iter().map(|c| (c.name.as_str(), c.value)).collect();
    assert_eq!(
        got,
        [
            ("requests", 3),
            ("responses_2xx", 1),
            ("responses_4xx", 2),
            ("bytes_sent", bytes),
            ("connections", 1),
            ("bad_requests", 1),
            ("sends_partial", expected.sends_partial),
            ("sends_ended", 0),
            ("resets", 0),
        ]
    );
    assert!(expected.sends_partial > 3);
}

#[test]
fn arbitrary_client_bytes_and_send_room_never_panic_and_stay_bounded() {
    let mut h = Harness::generated();
    let mut x = 0x9e37_79b9u32;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    let pieces: [&[u8]; 12] = [
        b"GET /a.txt HTTP/1.1\r\n",
        b"Host: t\r\n",
        b"\r\n",
        b"HEAD /8k HTTP/1.0\r\n",
        b"Connection: keep-alive\r\n",
        b"Content-Length: 3\r\n",
        b"POST / HTTP/1.1\r\n",
        b"abc",
        b"%2e%2e/",
        b"\n",
        b"Transfer-Encoding: x\r\n",
        b"\r",
    ];
    for id in 1..200u64 {
        let f = flow(id, (id % 50) as u32);
        h.open(f);
        for _ in 0..(next() % 40) {
            let mut bytes = Vec::new();
            for _ in 0..(next() % 6) {
                bytes.extend_from_slice(pieces[next() as usize % pieces.len()]);
            }
            h.fake.budget = next() as usize % 300;
            match next() % 10 {
                0 => h.room(f),
                1 => h.end(f, END_FIN),
                _ => h.data(f, &bytes),
            }
            if let Some(conn) = h.nf.conn(&f) {
                assert!(conn.answers.len() <= MAX_PENDING);
            }
        }
        if id % 3 == 0 {
            h.terminate(f);
        }
    }
}
