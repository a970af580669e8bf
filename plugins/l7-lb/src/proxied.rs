//! The full proxy mode (`mode = "proxy"`, on a `[[service]]` with `stack = "proxy"`): every
//! request of a kept-alive client connection is routed on its own, as HAProxy's
//! `http-server-close`. For each request the NF reads the head, picks a backend by the rules,
//! binds the flow to it (mbox opens a server side), passes the request (head and body, framed
//! by Content-Length or chunked) to the server and the response (framed likewise, or by the
//! server's close) back to the client unchanged, then closes the server side; the next request
//! binds again, to whichever backend its rule picks.
//!
//! Nothing is parsed twice and nothing waits in the NF longer than the other side's room:
//! bytes one side cannot take yet stay queued (`to_server`, `to_client`) until its
//! `SEND_ROOM`, and the split proxy caps each side's window at what the other can take, so the
//! queues stay within a window. Client bytes past the current request (a pipelined next one)
//! wait unparsed until the response is done.

use super::{Conn, L7Lb, BAD_REQUEST, MAX_HEADERS, UNAVAILABLE};
use crate::request::{parse_request, Header, EMPTY_HEADER};
use mbox_abi::{bind_failed, BindStatus, FlowRef, Host, StreamDataEvent, DIR_ORIG, DIR_REPLY};
use mbox_proto::http::{request_head, response_head, BodyDecoder, BodyLength};
use mbox_proto::Parse;
use std::net::IpAddr;

/// What a server that breaks HTTP, or closes before its response, gets the client.
pub(crate) const BAD_GATEWAY: &[u8] = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
/// The longest response head taken.
const MAX_RESPONSE_HEAD: usize = 64 << 10;

/// One client connection in full proxy mode.
#[derive(Debug)]
pub(crate) struct Exchange {
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
    /// Server bytes not yet written to the client (its send buffer was full).
    to_client: Vec<u8>,
    /// The request being served, if any.
    current: Option<Request>,
    /// The client's stream ended (its FIN): it is closed once nothing is left to answer.
    client_done: bool,
    /// The client is closed after the current response (it asked, HTTP/1.0, or the server
    /// said `Connection: close`), or was closed already.
    close_after: bool,
    closed: bool,
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

    /// Whether a server side's event (`DIR_REPLY` bytes and ends, `BOUND`) is about the
    /// current request's server side, not one closed before.
    fn is_current(&self, flow: &FlowRef) -> bool {
        self.current.as_ref().is_some_and(|r| r.side == flow.side())
    }

    /// Whether a routed request's connection counts as open in the policy (for `TERMINATE`).
    pub(crate) fn counted_backend(&self) -> Option<usize> {
        self.current.as_ref().filter(|r| r.counted).map(|r| r.backend)
    }
}

/// A request routed to a backend, and its response so far.
#[derive(Debug)]
struct Request {
    /// The bind it came from (`FlowRef::side`).
    side: u8,
    backend: usize,
    /// The policy counts it open (until [`L7Lb::finish`]).
    counted: bool,
    connected: bool,
    /// The request's body still to come (done once its framing ended).
    body: BodyDecoder,
    head_request: bool,
    response: Response,
}

#[derive(Debug)]
enum Response {
    /// The head so far.
    Head(Vec<u8>),
    Body(BodyDecoder),
}

impl L7Lb {
    /// Bytes of a proxied flow: the client's (`DIR_ORIG`) or its server's (`DIR_REPLY`).
    pub(crate) fn proxy_data(&mut self, flow: &FlowRef, ev: &StreamDataEvent, host: &mut Host<'_>) {
        let now_ns = ev.tcp.flow.header.ts_ns;
        let client = ev.tcp.flow.tuple.addr(0);
        let fresh = self.conns.get(flow).is_none();
        let Some(Conn::Proxied(ex)) = self.conns.get_or_insert_with(flow, || Conn::Proxied(Box::new(Exchange::new(client)))) else {
            return;
        };
        if flow.dir == DIR_REPLY && !ex.is_current(flow) {
            // A server side closed after its response, its last bytes late: not this request's.
            self.stats.unasked_bytes += ev.bytes().len() as u64;
        } else if flow.dir == DIR_REPLY {
            ex.server_bytes(ev.bytes(), &mut self.stats);
        } else if fresh && ev.offset != 0 {
            // The stream's start went to an instance before a reload: no request starts here.
            self.stats.heads_lost += 1;
            ex.to_client.extend_from_slice(UNAVAILABLE);
            ex.close_after = true;
        } else {
            ex.from_client.extend_from_slice(ev.bytes());
        }
        self.proxy_pump(flow, now_ns, host);
    }

    /// A side's stream ended: the client's is closed once answered; a server's ends an
    /// unframed response, and cuts any other one short.
    pub(crate) fn proxy_stream_end(&mut self, flow: &FlowRef, dir: u8, now_ns: u64, host: &mut Host<'_>) {
        let Some(Conn::Proxied(ex)) = self.conns.get_mut(flow) else { return };
        if dir == DIR_ORIG {
            ex.client_done = true;
        } else if !ex.is_current(flow) {
            // The end of a server side closed before (its close crossed the next request).
        } else if let Some(req) = &ex.current {
            match &req.response {
                Response::Body(b) if b.is_done() => {}
                // Until the close: this is its end.
                Response::Body(_) if req.until_close() => ex.current_response_ends(),
                _ => {
                    // Cut short: a client that got nothing is told; one that got part of the
                    // answer can only be closed.
                    self.stats.bad_responses += 1;
                    let nothing_passed = matches!(&req.response, Response::Head(h) if h.is_empty()) && ex.to_client.is_empty();
                    if nothing_passed {
                        ex.to_client.extend_from_slice(BAD_GATEWAY);
                    }
                    ex.close_after = true;
                    ex.current_response_ends();
                }
            }
        }
        self.proxy_pump(flow, now_ns, host);
    }

    /// The server side's handshake: connected, the request goes; not, the client gets a 503.
    pub(crate) fn proxy_bound(&mut self, flow: &FlowRef, reason: u8, now_ns: u64, host: &mut Host<'_>) {
        let Some(Conn::Proxied(ex)) = self.conns.get_mut(flow) else { return };
        if !ex.is_current(flow) {
            return;
        }
        let Some(req) = ex.current.as_mut() else { return };
        if !bind_failed(reason) && reason != mbox_abi::BIND_NOT_DONE {
            req.connected = true;
            self.stats.bound += 1;
            self.policy.outcome(req.backend, true, now_ns);
        } else {
            if reason == mbox_abi::BIND_NOT_DONE {
                self.stats.bind_not_done += 1;
            } else {
                self.stats.bind_failed += 1;
                self.policy.outcome(req.backend, false, now_ns);
            }
            if std::mem::replace(&mut req.counted, false) {
                self.policy.closed(req.backend);
            }
            ex.current = None;
            ex.to_server.clear();
            ex.from_client.clear();
            ex.to_client.extend_from_slice(UNAVAILABLE);
            ex.close_after = true;
        }
        self.proxy_pump(flow, now_ns, host);
    }

    /// Room on a side: what waited for it is written.
    pub(crate) fn proxy_room(&mut self, flow: &FlowRef, now_ns: u64, host: &mut Host<'_>) {
        self.proxy_pump(flow, now_ns, host);
    }

    /// Moves the flow on as far as it goes: the next request routed, queued bytes written,
    /// a finished response's server side closed, the client closed when it is done.
    fn proxy_pump(&mut self, flow: &FlowRef, now_ns: u64, host: &mut Host<'_>) {
        // Each round either routes a request or ends one: bounded by the bytes in hand.
        for _ in 0..64 {
            let Some(Conn::Proxied(ex)) = self.conns.get_mut(flow) else { return };
            if ex.closed {
                return;
            }
            if ex.current.is_none() && !ex.close_after && !ex.from_client.is_empty() {
                self.route(flow, now_ns, host);
                continue;
            }
            let Some(Conn::Proxied(ex)) = self.conns.get_mut(flow) else { return };
            ex.take_request_body();
            if ex.current.as_ref().is_some_and(|r| r.connected) {
                write_out(host, &flow.toward(DIR_REPLY), &mut ex.to_server);
            }
            write_out(host, &flow.toward(DIR_ORIG), &mut ex.to_client);
            if ex.current.as_ref().is_some_and(Request::is_done) && ex.to_server.is_empty() {
                // http-server-close: the server side goes with its response.
                let req = ex.current.take().expect("checked above");
                host.close(&flow.toward(DIR_REPLY));
                self.stats.responses += 1;
                if req.counted {
                    self.policy.closed(req.backend);
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

    /// The next request in `from_client`: its head parsed and routed, or the client refused.
    fn route(&mut self, flow: &FlowRef, now_ns: u64, host: &mut Host<'_>) {
        let Some(Conn::Proxied(ex)) = self.conns.get_mut(flow) else { return };
        let mut headers: [Header<'_>; MAX_HEADERS] = [EMPTY_HEADER; MAX_HEADERS];
        let buf = std::mem::take(&mut ex.from_client);
        let client = ex.client;
        let outcome = match parse_request(&buf, self.max_head, &mut headers) {
            Ok(None) => {
                ex.from_client = buf;
                if ex.client_done {
                    // The client left mid-head: nothing to answer.
                    self.stats.client_gone += 1;
                    ex.from_client.clear();
                }
                return;
            }
            Err(_) => Err(BAD_REQUEST),
            Ok(Some(request)) => {
                let framing = match request_head(&buf) {
                    Parse::Done(head) => Some(head.body),
                    _ => None,
                };
                let keep_alive = keep_alive(&request, &buf);
                match (framing, self.policy.pick(&request, client, now_ns)) {
                    (None, Ok(pick)) => {
                        self.policy.closed(pick.backend);
                        Err(BAD_REQUEST)
                    }
                    (None, Err(_)) => Err(BAD_REQUEST),
                    (Some(_), Err(why)) => {
                        self.count_refusal(why);

                        Err(if why == crate::policy::Refuse::BadRequest { BAD_REQUEST } else { UNAVAILABLE })
                    }
                    (Some(body), Ok(pick)) => Ok((pick, body, request.head_len(), request.method() == b"HEAD", keep_alive)),
                }
            }
        };
        let Some(Conn::Proxied(ex)) = self.conns.get_mut(flow) else { return };
        match outcome {
            Err(answer) => {
                if answer == BAD_REQUEST {
                    self.stats.bad_requests += 1;
                }
                ex.to_client.extend_from_slice(answer);
                ex.close_after = true;
            }
            Ok((pick, body, head_len, head_request, keep_alive)) => {
                self.stats.requests += 1;
                ex.close_after |= !keep_alive;
                ex.to_server.extend_from_slice(&buf[..head_len]);
                ex.from_client = buf[head_len..].to_vec();
                let body = BodyDecoder::new(if body == BodyLength::UntilClose { BodyLength::None } else { body });
                let side = ex.binds.checked_add(1).unwrap_or(1);
                let response = Response::Head(Vec::new());
                ex.current = Some(Request { side, backend: pick.backend, counted: true, connected: false, body, head_request, response });
                if host.bind(flow, pick.address) == BindStatus::Done {
                    ex.binds = side;
                } else {
                    self.stats.bind_calls_refused += 1;
                    self.policy.closed(pick.backend);
                    let Some(Conn::Proxied(ex)) = self.conns.get_mut(flow) else { return };
                    ex.current = None;
                    ex.to_server.clear();
                    ex.to_client.extend_from_slice(UNAVAILABLE);
                    ex.close_after = true;
                }
            }
        }
    }
}

impl Exchange {
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
                self.to_server.clear();
                self.from_client.clear();
                self.to_client.extend_from_slice(BAD_REQUEST);
                self.close_after = true;
                self.current_response_ends();
            }
        }
    }

    /// Server bytes: passed to the client as they are, read only for where the response ends.
    fn server_bytes(&mut self, bytes: &[u8], stats: &mut super::Stats) {
        let Some(req) = self.current.as_mut() else {
            // After its response (or with none asked): nothing the client should get.
            stats.unasked_bytes += bytes.len() as u64;
            return;
        };
        let mut rest = bytes;
        if let Response::Head(head) = &mut req.response {
            let before = head.len();
            head.extend_from_slice(bytes);
            match response_head(head, req.head_request) {
                Parse::Partial if head.len() <= MAX_RESPONSE_HEAD => {
                    self.to_client.extend_from_slice(bytes);
                    return;
                }
                Parse::Done(h) if h.status >= 200 || h.status == 101 => {
                    let head_len = h.head_len;
                    if closes(&head[..head_len]) {
                        self.close_after = true;
                    }
                    let body = h.body;
                    rest = &bytes[head_len - before..];
                    self.to_client.extend_from_slice(&bytes[..head_len - before]);
                    req.response = Response::Body(BodyDecoder::new(body));
                }
                Parse::Done(h) => {
                    // An interim 1xx: passed on, the real response follows.
                    let head_len = h.head_len;
                    self.to_client.extend_from_slice(&bytes[..head_len - before]);
                    req.response = Response::Head(Vec::new());
                    return self.server_bytes(&bytes[head_len - before..], stats);
                }
                _ => {
                    stats.bad_responses += 1;
                    self.to_client.extend_from_slice(BAD_GATEWAY);
                    self.close_after = true;
                    self.current_response_ends();
                    return;
                }
            }
        }
        if let Response::Body(body) = &mut req.response {
            let n = body.feed(rest, &mut |_| {}).unwrap_or(rest.len());
            self.to_client.extend_from_slice(&rest[..n]);
            if n < rest.len() {
                stats.unasked_bytes += (rest.len() - n) as u64;
            }
        }
    }

    /// The current response is over (cut short, or ended by the server's close).
    fn current_response_ends(&mut self) {
        if let Some(req) = self.current.as_mut() {
            req.response = Response::Body(BodyDecoder::new(BodyLength::None));
            req.body = BodyDecoder::new(BodyLength::None);
        }
    }
}

impl Request {
    /// Its response is complete and its body all sent on.
    fn is_done(&self) -> bool {
        matches!(&self.response, Response::Body(b) if b.is_done()) && self.body.is_done()
    }

    /// Its response runs until the server closes.
    fn until_close(&self) -> bool {
        matches!(&self.response, Response::Body(b) if *b == BodyDecoder::new(BodyLength::UntilClose))
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
fn keep_alive(request: &crate::request::Request<'_>, head: &[u8]) -> bool {
    let tokens = |value: &[u8], token: &[u8]| value.split(|&b| b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(token));
    let http10 = head.split(|&b| b == b'\n').next().is_some_and(|line| line.trim_ascii_end().ends_with(b"HTTP/1.0"));
    let says = |token: &[u8]| request.header_values("connection").any(|v| tokens(v, token));
    if http10 {
        says(b"keep-alive")
    } else {
        !says(b"close")
    }
}

/// Whether a response head says the server closes after it (`Connection: close`).
fn closes(head: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut headers);
    if res.parse(head).is_err() {
        return true;
    }
    res.headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .any(|h| h.value.split(|&b| b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close")))
}
