//! The NF against a recording host (`kit::testing::Recorder`): a compressed answer decodes to
//! the server's body, others pass as they came.

use super::*;
use flate2::read::GzDecoder;
use mbox_abi::kit::testing;
use mbox_abi::{
    builtin, DirStats, Event, EventType, FlowEvent, FlowRef, FlowTcpEvent, FlowTuple, StreamDataEvent, TcpSnapshot, BIND_CONNECTED,
    DIR_NONE, DIR_ORIG, DIR_REPLY,
};
use std::io::Read;

struct Harness {
    nf: Transcoder,
    fake: Box<testing::Recorder>,
}

fn flow(dir: u8, side: u8) -> FlowRef {
    FlowRef { id: 1, slot: 7, shard: 0, dir, _reserved: side }
}

impl Harness {
    fn new(args: &str) -> Harness {
        Harness { nf: Transcoder::create(&testing::init("tc", args, 1, 64)).unwrap(), fake: Box::default() }
    }

    fn tcp_event<E: Event>(&self, ty: EventType, flow: FlowRef) -> FlowTcpEvent {
        let header = EventHeader::new::<E>(ty, 1_000, flow);
        let tuple = FlowTuple::new(6, 0, ["198.18.9.1".parse().unwrap(), "198.18.1.80".parse().unwrap()], [40000, 80]);
        FlowTcpEvent {
            flow: FlowEvent { header, tuple, stats: [DirStats::default(); 2], reason: 0, _reserved: [0; 7] },
            snapshot: TcpSnapshot::default(),
        }
    }

    fn deliver(&mut self, event: &EventHeader) {
        let mut calls = self.fake.calls();
        let mut host = Host::new(&mut calls);
        self.nf.on_event(event, &mut host);
    }

    fn data(&mut self, flow: FlowRef, offset: u64, bytes: &[u8]) {
        let ev = StreamDataEvent::new(self.tcp_event::<StreamDataEvent>(builtin::FLOW_TCP_DATA_RDY, flow), offset, bytes);
        self.deliver(ev.header());
    }

    fn bound(&mut self, side: u8) {
        let mut ev = self.tcp_event::<FlowTcpEvent>(builtin::FLOW_TCP_BOUND, FlowRef { dir: DIR_NONE, ..flow(DIR_NONE, side) });
        ev.flow.reason = BIND_CONNECTED;
        self.deliver(ev.header());
    }

    /// One request and its answer (`body` sent in pieces with Content-Length); what the client got.
    fn exchange(&mut self, side: u8, request: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
        let before = self.fake.of(1).sent.len();
        self.data(flow(DIR_ORIG, side - 1), 0, request.as_bytes());
        self.bound(side);
        let head = format!("HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nETag: \"e1\"\r\n\r\n", body.len());
        self.data(flow(DIR_REPLY, side), 0, head.as_bytes());
        let mut at = head.len() as u64;
        for piece in body.chunks(1448) {
            self.data(flow(DIR_REPLY, side), at, piece);
            at += piece.len() as u64;
        }
        self.fake.of(1).sent[before..].to_vec()
    }
}

/// A response's head and body, the body's chunked framing undone.
fn split(answer: &[u8]) -> (String, Vec<u8>) {
    let at = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8(answer[..at].to_vec()).unwrap();
    if !head.contains("Transfer-Encoding: chunked") {
        return (head, answer[at..].to_vec());
    }
    let mut body = Vec::new();
    let mut d = mbox_proto::http::BodyDecoder::new(mbox_proto::http::BodyLength::Chunked);
    d.feed(&answer[at..], &mut |b| body.extend_from_slice(b)).unwrap();
    assert!(d.is_done(), "the chunked body ends");
    (head, body)
}

fn count(h: &Harness, name: &str) -> u64 {
    testing::counters(&h.nf).into_iter().find(|(n, _)| n == name).unwrap().1
}

#[test]
fn a_text_answer_is_gzipped_for_a_client_that_takes_it_and_decodes_to_the_servers_bytes() {
    let mut h = Harness::new(r#"{"backend": "198.18.1.11:80"}"#);
    let body: Vec<u8> = (0..200_000u32).map(|i| b"lorem ipsum dolor sit amet "[(i % 27) as usize]).collect();
    let got = h.exchange(1, "GET /t HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip, br\r\n\r\n", "text/plain", &body);
    let (head, gz) = split(&got);
    assert!(head.contains("Content-Encoding: gzip") && head.contains("Vary: Accept-Encoding") && head.contains("ETag: W/\"e1\""), "{head}");
    assert!(!head.contains("Content-Length"), "{head}");
    let mut plain = Vec::new();
    GzDecoder::new(&gz[..]).read_to_end(&mut plain).unwrap();
    assert!(plain == body, "decodes to exactly the server's body");
    assert!(gz.len() < body.len() / 20, "{} bytes compressed", gz.len());
    let out = h.fake.of(1);
    assert_eq!((out.binds.len(), out.closes_reply), (1, 1), "one server side, closed after its answer");
    assert_eq!((count(&h, "compressed"), count(&h, "gzip_bytes_in")), (1, 200_000));
    // The next request of the connection, from a client that does not take gzip this time,
    // and an image: both pass as they came.
    let png = vec![0x89u8; 5000];
    let got = h.exchange(2, "GET /p HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip\r\n\r\n", "image/png", &png);
    assert!(split(&got).1 == png && split(&got).0.contains("Content-Length: 5000"));
    let got = h.exchange(3, "GET /t HTTP/1.1\r\nHost: a\r\n\r\n", "text/plain", &body);
    assert!(split(&got).1 == body, "identity for a client without Accept-Encoding");
    assert_eq!(count(&h, "compressed"), 1);
}

#[test]
fn bad_arguments_are_refused_with_what_is_wrong() {
    for (args, says) in [
        (r#"{}"#, "backend"),
        (r#"{"backend": "nowhere"}"#, "IP:PORT"),
        (r#"{"backend": "198.18.1.11:80", "level": 12}"#, "level"),
        (r#"{"backend": "198.18.1.11:80", "types": ["text"]}"#, "content type"),
        (r#"{"backend": "198.18.1.11:80", "levle": 1}"#, "unknown argument `levle`"),
    ] {
        let e = Transcoder::new(args, 1, 8).err().unwrap_or_else(|| panic!("{args} accepted"));
        assert!(e.contains(says), "{args}: {e}");
    }
}
