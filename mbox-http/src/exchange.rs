//! The per-request exchange of an HTTP proxy NF on a split proxy (`stack = "proxy"`): every
//! request of a kept-alive client connection is routed on its own, as HAProxy's
//! `http-server-close`. For each request the NF reads the head, asks its [`Route`] for a
//! backend, binds the flow to it (mbox opens a server side), passes the request (head and body,
//! framed by Content-Length or chunked) to the server and the response (framed likewise, or by
//! the server's close) back to the client — as it came, or gzip-compressed ([`crate::gzip`])
//! — then closes the server side; the next request binds again, wherever it is routed.
//!
//! Nothing is parsed twice and nothing waits in the NF longer than the other side's room:
//! bytes one side cannot take yet stay queued (`to_server`, `to_client`) until its
//! `SEND_ROOM`, and the split proxy caps each side's window at what the other can take, so the
//! queues stay within a window. Client bytes past the current request (a pipelined next one)
//! wait unparsed until the response is done. Events of a server side closed before (its FIN
//! crossing the next request) are told from the current one's by `FlowRef::side`.

use crate::gzip::{accepts_gzip, rewrite_head, GzipBody, GzipConfig};
use crate::request::{parse_request, Header, Request as RequestHead, EMPTY_HEADER};
use mbox_abi::kit::FlowMap;
use mbox_abi::{
    bind_failed, builtin, BindStatus, Counters, EventHeader, FlowRef, FlowTcpEvent, Host, StreamDataEvent, Verdict, BIND_NOT_DONE,
    DIR_ORIG, DIR_REPLY,
};
use mbox_proto::http::{request_head, response_head, BodyDecoder, BodyLength};
use mbox_proto::Parse;
use std::net::{IpAddr, SocketAddr};

/// What a request that is not HTTP, or too long, gets.
pub const BAD_REQUEST: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
/// What a request no backend can take gets.
pub const UNAVAILABLE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
/// What a server that breaks HTTP, or closes before its response, gets the client.
pub const BAD_GATEWAY: &[u8] = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
/// Headers a request head may have (more: a 400).
const MAX_HEADERS: usize = 64;
/// The longest response head taken.
const MAX_RESPONSE_HEAD: usize = 64 << 10;

/// Where a request goes: the NF's backend (by its own index) and its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub backend: usize,
    pub address: SocketAddr,
}

/// Why a request goes nowhere: the client gets a 400 or a 503.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    BadRequest,
    Unavailable,
}

/// The NF's part of an exchange: where each request goes, and what became of it.
pub trait Route {
    /// Where `request` (from `client`, at `now_ns`) goes. A `Target` counts as open for the
    /// router until [`Route::closed`] (exactly once per `Target`).
    fn route(&mut self, request: &RequestHead<'_>, client: IpAddr, now_ns: u64) -> Result<Target, Refused>;
    /// The server side's handshake: connected or not (`FLOW/TCP/BOUND`'s outcome).
    fn outcome(&mut self, backend: usize, connected: bool, now_ns: u64);
    /// The request no longer counts as open at `backend`.
    fn closed(&mut self, backend: usize);
}

/// What the exchanges counted (every count also in the NF's counters).
#[derive(Debug, Default, Clone, Copy)]
pub struct ProxyStats {
    pub connections: u64,
    /// Requests routed; responses passed whole; server sides connected, failed, and binds the
    /// host refused or could not carry out.
    pub requests: u64,
    pub responses: u64,
    pub bound: u64,
    pub bind_failed: u64,
    pub bind_not_done: u64,
    pub bind_calls_refused: u64,
    /// Requests refused (400 or 503 by the router), not HTTP (400), clients gone mid-head,
    /// and bytes whose head's start this instance never saw (a reload: a 503).
    pub refused: u64,
    pub bad_requests: u64,
    pub client_gone: u64,
    pub heads_lost: u64,
    /// Servers that broke HTTP or closed before their response was whole (the client got a
    /// 502 or was closed), and server bytes past a response (dropped).
    pub bad_responses: u64,
    pub unasked_bytes: u64,
    /// Responses compressed, their body bytes in and out, and ones that would have been but
    /// for `max_streams`.
    pub compressed: u64,
    pub gzip_bytes_in: u64,
    pub gzip_bytes_out: u64,
    pub not_compressed_busy: u64,
}

/// The exchanges of an NF's client connections.
pub struct Proxy {
    conns: FlowMap<Exchange>,
    max_head: usize,
    gzip: Option<GzipConfig>,
    /// Responses being compressed now.
    gzip_streams: usize,
    pub stats: ProxyStats,
}

/// One client connection.
#[derive(Debug)]
struct Exchange {
    /// The client's address (what hash rules on the source read).
    client: IpAddr,
    /// Binds made on the flow, numbered as mbox numbers them (`FlowRef::side`).
    binds: u8,
    /// Client bytes read and not yet given to a server: the rest of the current request's
    /// body framing is decided from them, and what follows is the next request.
    from_client: Vec<u8>,
    /// Bytes of the current request not yet written to its server (it has not connected, or
    /// its send buffer was full).
    to_server: Vec<u8>,
    /// Server bytes (or their compression) not yet written to the client.
    to_client: Vec<u8>,
    /// The request being served, if any.
    current: Option<Exchanged>,
    /// The client's stream ended (its FIN): it is closed once nothing is left to answer.
    client_done: bool,
    /// The client is closed after the current response (it asked, HTTP/1.0, or the server
    /// said `Connection: close`), or was closed already.
    close_after: bool,
    closed: bool,
}

/// A request routed to a backend, and its response so far.
#[derive(Debug)]
struct Exchanged {
    /// The bind it came from (`FlowRef::side`).
    side: u8,
    backend: usize,
    /// The router counts it open (until [`Route::closed`]).
    counted: bool,
    connected: bool,
    /// The request's body still to come (done once its framing ended).
    body: BodyDecoder,
    head_request: bool,
    /// The client takes gzip (and the NF compresses).
    gzip_ok: bool,
    response: Response,
    /// The response's body being compressed.
    gzip: Option<GzipBody>,
}

#[derive(Debug)]
enum Response {
    /// The head so far (held until whole: it may be rewritten).
    Head(Vec<u8>),
    Body(BodyDecoder),
}

impl Proxy {
    /// Exchanges for an NF of `shards` shards and `flow_slots` slots each; request heads up to
    /// `max_head` bytes; responses compressed as `gzip` says (`None`: passed as they are).
    pub fn new(shards: usize, flow_slots: usize, max_head: usize, gzip: Option<GzipConfig>) -> Proxy {
        Proxy { conns: FlowMap::new(shards, flow_slots), max_head, gzip, gzip_streams: 0, stats: ProxyStats::default() }
    }

    /// An event of the service's flows: bytes of either side, a side's end, the server
    /// side's handshake, room, the flow's end.
    pub fn on_event(&mut self, event: &EventHeader, host: &mut Host<'_>, route: &mut dyn Route) -> Verdict {
        let flow = event.flow;
        if !flow.is_some() {
            return Verdict::Pass;
        }
        let now = event.ts_ns;
        if let Some(ev) = event.view::<StreamDataEvent>() {
            self.data(&flow, ev, host, route);
        } else if event.is_a(builtin::FLOW_TCP_STREAM_END) {
            self.stream_end(&flow, now, host, route);
        } else if event.is_a(builtin::FLOW_TCP_BOUND) {
            if let Some(ev) = event.view::<FlowTcpEvent>() {
                self.bound(&flow, ev.flow.reason, now, host, route);
            }
        } else if event.is_a(builtin::FLOW_TCP_SEND_ROOM) {
            self.pump(&flow, now, host, route);
        } else if event.is_a(builtin::FLOW_TCP_TERMINATE) {
            self.terminated(&flow, route);
        }
        Verdict::Pass
    }

    /// The exchanges' counters.
    pub fn counters(&self, out: &mut Counters<'_>) {
        let s = &self.stats;
        for (name, v) in [
            ("connections", s.connections),
            ("requests", s.requests),
            ("responses", s.responses),
            ("bound", s.bound),
            ("bind_failed", s.bind_failed),
            ("bind_not_done", s.bind_not_done),
            ("bind_calls_refused", s.bind_calls_refused),
            ("refused", s.refused),
            ("bad_requests", s.bad_requests),
            ("client_gone", s.client_gone),
            ("heads_lost", s.heads_lost),
            ("bad_responses", s.bad_responses),
            ("unasked_bytes", s.unasked_bytes),
            ("compressed", s.compressed),
            ("gzip_bytes_in", s.gzip_bytes_in),
            ("gzip_bytes_out", s.gzip_bytes_out),
            ("not_compressed_busy", s.not_compressed_busy),
        ] {
            out.set(name, v);
        }
    }

    /// Bytes of a flow: the client's (`DIR_ORIG`) or its server's (`DIR_REPLY`).
    fn data(&mut self, flow: &FlowRef, ev: &StreamDataEvent, host: &mut Host<'_>, route: &mut dyn Route) {
        let now = ev.tcp.flow.header.ts_ns;
        let client = ev.tcp.flow.tuple.addr(0);
        let fresh = self.conns.get(flow).is_none();
        let Some(ex) = self.conns.get_or_insert_with(flow, || Exchange::new(client)) else { return };
        if fresh {
            self.stats.connections += 1;
        }
        if flow.dir == DIR_REPLY && !ex.is_current(flow) {
            // A server side closed after its response, its last bytes late: not this request's.
            self.stats.unasked_bytes += ev.bytes().len() as u64;
        } else if flow.dir == DIR_REPLY {
            ex.server_bytes(ev.bytes(), &mut self.stats, &mut self.gzip_streams, self.gzip.as_ref());
        } else if fresh && ev.offset != 0 {
            // The stream's start went to an instance before a reload: no request starts here.
            self.stats.heads_lost += 1;
            ex.to_client.extend_from_slice(UNAVAILABLE);
            ex.close_after = true;
        } else {
            ex.from_client.extend_from_slice(ev.bytes());
        }
        self.pump(flow, now, host, route);
    }

    /// A side's stream ended: the client's is closed once answered; a server's ends an
    /// unframed response, and cuts any other one short.
    fn stream_end(&mut self, flow: &FlowRef, now: u64, host: &mut Host<'_>, route: &mut dyn Route) {
        let Some(ex) = self.conns.get_mut(flow) else { return };
        if flow.dir != DIR_REPLY {
            ex.client_done = true;
        } else if let Some(req) = ex.current.as_ref().filter(|r| r.side == flow.side()) {
            match &req.response {
                Response::Body(b) if b.is_done() => {}
                // Until the close: this is its end.
                Response::Body(b) if b.is_until_close() => ex.response_ends(true, &mut self.stats, &mut self.gzip_streams),
                _ => {
                    // Cut short: a client that got nothing is told; one that got part of the
                    // answer can only be closed.
                    self.stats.bad_responses += 1;
                    if matches!(&req.response, Response::Head(_)) {
                        ex.to_client.extend_from_slice(BAD_GATEWAY);
                    }
                    ex.close_after = true;
                    ex.response_ends(false, &mut self.stats, &mut self.gzip_streams);
                }
            }
        }
        self.pump(flow, now, host, route);
    }

    /// The server side's handshake: connected, the request goes; not, the client gets a 503.
    fn bound(&mut self, flow: &FlowRef, reason: u8, now: u64, host: &mut Host<'_>, route: &mut dyn Route) {
        let Some(ex) = self.conns.get_mut(flow) else { return };
        let Some(req) = ex.current.as_mut().filter(|r| r.side == flow.side()) else { return };
        if !bind_failed(reason) && reason != BIND_NOT_DONE {
            req.connected = true;
            self.stats.bound += 1;
            route.outcome(req.backend, true, now);
        } else {
            if reason == BIND_NOT_DONE {
                self.stats.bind_not_done += 1;
            } else {
                self.stats.bind_failed += 1;
                route.outcome(req.backend, false, now);
            }
            if req.counted {
                route.closed(req.backend);
            }
            ex.current = None;
            ex.refuse(UNAVAILABLE);
        }
        self.pump(flow, now, host, route);
    }

    fn terminated(&mut self, flow: &FlowRef, route: &mut dyn Route) {
        if let Some(mut ex) = self.conns.remove(flow) {
            if let Some(req) = ex.current.take() {
                if req.counted {
                    route.closed(req.backend);
                }
                if req.gzip.is_some() {
                    self.gzip_streams -= 1;
                }
            }
        }
    }

    /// Moves the flow on as far as it goes: the next request routed, queued bytes written,
    /// a finished response's server side closed, the client closed when it is done.
    fn pump(&mut self, flow: &FlowRef, now: u64, host: &mut Host<'_>, route: &mut dyn Route) {
        // Each round either routes a request or ends one: bounded by the bytes in hand.
        for _ in 0..64 {
            let Some(ex) = self.conns.get_mut(flow) else { return };
            if ex.closed {
                return;
            }
            if ex.current.is_none() && !ex.close_after && !ex.from_client.is_empty() {
                self.route_next(flow, now, host, route);
                continue;
            }
            ex.take_request_body();
            if ex.current.as_ref().is_some_and(|r| r.connected) {
                write_out(host, &flow.toward(DIR_REPLY), &mut ex.to_server);
            }
            write_out(host, &flow.toward(DIR_ORIG), &mut ex.to_client);
            if ex.current.as_ref().is_some_and(Exchanged::is_done) && ex.to_server.is_empty() {
                // http-server-close: the server side goes with its response.
                let req = ex.current.take().expect("checked above");
                host.close(&flow.toward(DIR_REPLY));
                self.stats.responses += 1;
                if req.counted {
                    route.closed(req.backend);
                }
                continue;
            }
            let idle = ex.current.is_none() && ex.to_client.is_empty();
            if idle && (ex.close_after || (ex.client_done && ex.from_client.is_empty())) {
                ex.closed = true;
                host.close(&flow.toward(DIR_ORIG));
            }
            return;
        }
    }

    /// The next request in the flow's client bytes: its head parsed and routed, or the
    /// client refused.
    fn route_next(&mut self, flow: &FlowRef, now: u64, host: &mut Host<'_>, route: &mut dyn Route) {
        let Some(ex) = self.conns.get_mut(flow) else { return };
        let mut headers: [Header<'_>; MAX_HEADERS] = [EMPTY_HEADER; MAX_HEADERS];
        let buf = std::mem::take(&mut ex.from_client);
        let routed = match parse_request(&buf, self.max_head, &mut headers) {
            Ok(None) => {
                ex.from_client = buf;
                if ex.client_done {
                    // The client left mid-head: nothing to answer.
                    self.stats.client_gone += 1;
                    ex.from_client.clear();
                }
                return;
            }
            Err(_) => Err(Refused::BadRequest),
            Ok(Some(request)) => match request_head(&buf) {
                Parse::Done(head) => {
                    let keep_alive = keep_alive(&request, &buf);
                    let gzip_ok = self.gzip.is_some() && accepts_gzip(&request);
                    let head_request = request.method() == b"HEAD";
                    route.route(&request, ex.client, now).map(|t| (t, head.body, request.head_len(), head_request, keep_alive, gzip_ok))
                }
                _ => Err(Refused::BadRequest),
            },
        };
        let (target, body, head_len, head_request, keep_alive, gzip_ok) = match routed {
            Ok(r) => r,
            Err(why) => {
                match why {
                    Refused::BadRequest => self.stats.bad_requests += 1,
                    Refused::Unavailable => self.stats.refused += 1,
                }
                ex.refuse(if why == Refused::BadRequest { BAD_REQUEST } else { UNAVAILABLE });
                return;
            }
        };
        self.stats.requests += 1;
        ex.close_after |= !keep_alive;
        ex.to_server.extend_from_slice(&buf[..head_len]);
        // What follows the head stays where it is: the buffer is the client's again.
        let mut buf = buf;
        buf.drain(..head_len);
        ex.from_client = buf;
        // A request's body is never delimited by the close (RFC 9112 6.3): without a length it has none.
        let body = BodyDecoder::new(if body == BodyLength::UntilClose { BodyLength::None } else { body });
        let side = ex.binds.checked_add(1).unwrap_or(1);
        ex.current = Some(Exchanged {
            side,
            backend: target.backend,
            counted: true,
            connected: false,
            body,
            head_request,
            gzip_ok,
            response: Response::Head(Vec::new()),
            gzip: None,
        });
        if host.bind(flow, target.address) == BindStatus::Done {
            ex.binds = side;
        } else {
            self.stats.bind_calls_refused += 1;
            route.closed(target.backend);
            ex.current = None;
            ex.refuse(UNAVAILABLE);
        }
    }
}

impl Exchange {
    fn new(client: IpAddr) -> Exchange {
        Exchange {
            client,
            binds: 0,
            from_client: Vec::new(),
            to_server: Vec::new(),
            to_client: Vec::new(),
            current: None,
            client_done: false,
            close_after: false,
            closed: false,
        }
    }

    /// Whether a server side's event is about the current request's server side.
    fn is_current(&self, flow: &FlowRef) -> bool {
        self.current.as_ref().is_some_and(|r| r.side == flow.side())
    }

    /// Answers the client with `answer` and closes it after; what it sent is dropped.
    fn refuse(&mut self, answer: &[u8]) {
        self.to_server.clear();
        self.from_client.clear();
        self.to_client.extend_from_slice(answer);
        self.close_after = true;
    }

    /// Client bytes that belong to the current request's body move to `to_server`.
    fn take_request_body(&mut self) {
        let Some(req) = self.current.as_mut() else { return };
        if req.body.is_done() || self.from_client.is_empty() {
            return;
        }
        match req.body.feed(&self.from_client, &mut |_| {}) {
            Ok(n) => {
                self.to_server.extend_from_slice(&self.from_client[..n]);
                self.from_client.drain(..n);
            }
            Err(_) => {
                // Broken chunked framing: what follows cannot be told from the body.
                req.body = BodyDecoder::new(BodyLength::None);
                req.response = Response::Body(BodyDecoder::new(BodyLength::None));
                self.refuse(BAD_REQUEST);
            }
        }
    }

    /// Server bytes: passed to the client as they are (or compressed), read for where the
    /// response ends.
    fn server_bytes(&mut self, bytes: &[u8], stats: &mut ProxyStats, streams: &mut usize, gzip: Option<&GzipConfig>) {
        let Some(req) = self.current.as_mut() else {
            stats.unasked_bytes += bytes.len() as u64;
            return;
        };
        let mut rest = bytes;
        if let Response::Head(head) = &mut req.response {
            let before = head.len();
            head.extend_from_slice(bytes);
            let (head_len, status, framing) = match response_head(head, req.head_request) {
                Parse::Partial if head.len() <= MAX_RESPONSE_HEAD => return,
                Parse::Done(h) => (h.head_len, h.status, h.body),
                _ => {
                    stats.bad_responses += 1;
                    self.to_client.extend_from_slice(BAD_GATEWAY);
                    self.close_after = true;
                    self.response_ends(false, stats, streams);
                    return;
                }
            };
            rest = &bytes[head_len - before..];
            let whole = &head[..head_len];
            if (100..200).contains(&status) && status != 101 {
                // An interim 1xx: passed on, the real response follows.
                self.to_client.extend_from_slice(whole);
                req.response = Response::Head(Vec::new());
                return self.server_bytes(rest, stats, streams, gzip);
            }
            if closes(whole) {
                self.close_after = true;
            }
            let rewritten = match gzip {
                Some(cfg) if req.gzip_ok && framing != BodyLength::None => rewrite_head(whole, cfg),
                _ => None,
            };
            match rewritten {
                Some(new) if *streams < gzip.map_or(0, |c| c.max_streams) => {
                    *streams += 1;
                    stats.compressed += 1;
                    self.to_client.extend_from_slice(&new);
                    req.gzip = Some(GzipBody::new(gzip.map_or(6, |c| c.level)));
                }
                Some(_) => {
                    stats.not_compressed_busy += 1;
                    self.to_client.extend_from_slice(whole);
                }
                None => self.to_client.extend_from_slice(whole),
            }
            req.response = Response::Body(BodyDecoder::new(framing));
        }
        let Response::Body(body) = &mut req.response else { return };
        let to_client = &mut self.to_client;
        let used = match req.gzip.as_mut() {
            Some(gz) => body.feed(rest, &mut |data| gz.feed(data, to_client)),
            None => body.feed(rest, &mut |_| {}).inspect(|&n| to_client.extend_from_slice(&rest[..n])),
        };
        let n = used.unwrap_or(rest.len());
        if n < rest.len() {
            stats.unasked_bytes += (rest.len() - n) as u64;
        }
        if used.is_err() {
            // Broken chunked framing from the server: the client can only be closed.
            stats.bad_responses += 1;
            self.close_after = true;
            self.response_ends(false, stats, streams);
        } else if body.is_done() {
            self.response_ends(true, stats, streams);
        }
    }

    /// The current response is over: `complete` (its framing ended, or the server's close
    /// ended an unframed one), its compression finished; or cut short.
    fn response_ends(&mut self, complete: bool, stats: &mut ProxyStats, streams: &mut usize) {
        let Some(req) = self.current.as_mut() else { return };
        if let Some(gz) = req.gzip.take() {
            *streams -= 1;
            stats.gzip_bytes_in += gz.bytes_in;
            stats.gzip_bytes_out += if complete { gz.finish(&mut self.to_client) } else { gz.bytes_out };
        }
        req.response = Response::Body(BodyDecoder::new(BodyLength::None));
        if !complete {
            req.body = BodyDecoder::new(BodyLength::None);
        }
    }
}

impl Exchanged {
    /// Its response is complete and its body all sent on.
    fn is_done(&self) -> bool {
        matches!(&self.response, Response::Body(b) if b.is_done()) && self.body.is_done()
    }
}

/// Writes what the side `flow` names takes of `queue`; the rest waits for its `SEND_ROOM`.
fn write_out(host: &mut Host<'_>, flow: &FlowRef, queue: &mut Vec<u8>) {
    if queue.is_empty() {
        return;
    }
    let sent = host.send(flow, queue);
    if sent.status == mbox_abi::StreamStatus::Ended {
        // That side is gone: nothing will take these bytes.
        queue.clear();
        return;
    }
    queue.drain(..sent.accepted);
}

/// Whether the client keeps its connection after this request (RFC 9112 9.3: HTTP/1.1 unless
/// `Connection: close`, HTTP/1.0 only with `Connection: keep-alive`).
fn keep_alive(request: &RequestHead<'_>, head: &[u8]) -> bool {
    let tokens = |value: &[u8], token: &[u8]| value.split(|&b| b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(token));
    let http10 = head.split(|&b| b == b'\n').next().is_some_and(|line| line.trim_ascii_end().ends_with(b"HTTP/1.0"));
    let says = |token: &[u8]| request.header_values("connection").any(|v| tokens(v, token));
    if http10 {
        says(b"keep-alive")
    } else {
        !says(b"close")
    }
}

/// Whether a response head says the server closes after it (`Connection: close`, or an
/// HTTP/1.0 response without keep-alive).
fn closes(head: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut res = httparse::Response::new(&mut headers);
    if res.parse(head).is_err() {
        return true;
    }
    let says = |token: &[u8]| {
        res.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("connection"))
            .any(|h| h.value.split(|&b| b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(token)))
    };
    says(b"close") || (res.version == Some(0) && !says(b"keep-alive"))
}
