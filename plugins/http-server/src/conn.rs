//! One client connection: the bytes not yet parsed, the answers not yet written, and the two
//! halves of serving it: [`Server::feed`] turns client bytes into queued answers, and
//! [`Server::pump`] writes queued answers with `Host::send` until the send buffer is full.
//!
//! Both halves are bounded. A head may be at most [`HEAD_MAX`] bytes; at most [`MAX_PENDING`]
//! answers wait, beyond which parsing pauses and client bytes are kept, up to [`BUFFER_MAX`] (a
//! client that pipelines more than that without reading its answers is reset: mbox cannot shut
//! its receive window from here). An answer holds no bytes of its own: its head is rendered
//! again from a few fields whenever it is written, and its body is a reference to the NF's
//! content, so a connection costs the same whatever it asks for.

use crate::content::{request_path, Content, Id};
use crate::request::{self, Method, Parse, Request, HEAD_MAX};
use mbox_abi::{FlowRef, Host, StreamStatus};
use std::collections::VecDeque;

/// Answers that may wait per connection before parsing pauses.
pub const MAX_PENDING: usize = 16;
/// Client bytes kept per connection while parsing is paused.
pub const BUFFER_MAX: usize = 64 * 1024;
/// The `Server` header of every answer.
pub const SERVER: &str = "mbox-http-server";

/// The statuses the server answers with.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    BadRequest,
    NotFound,
    MethodNotAllowed,
}

impl Status {
    pub fn code(self) -> u16 {
        match self {
            Status::Ok => 200,
            Status::BadRequest => 400,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::BadRequest => "Bad Request",
            Status::NotFound => "Not Found",
            Status::MethodNotAllowed => "Method Not Allowed",
        }
    }

    /// The body of an error answer.
    fn text(self) -> &'static [u8] {
        match self {
            Status::Ok => b"",
            Status::BadRequest => b"400 Bad Request\n",
            Status::NotFound => b"404 Not Found\n",
            Status::MethodNotAllowed => b"405 Method Not Allowed\n",
        }
    }
}

/// What an answer says about the connection.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Persist {
    /// HTTP/1.1's default: nothing to say.
    Default,
    /// `Connection: close`, and mbox closes its side after the answer.
    Close,
    /// `Connection: keep-alive`, for an HTTP/1.0 client that asked for it.
    KeepAlive,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Body {
    Content(Id),
    Error(Status),
}

/// An answer waiting to be written.
#[derive(Copy, Clone, Debug)]
pub struct Answer {
    pub status: Status,
    body: Body,
    /// HEAD: the headers of the body, without it.
    head_only: bool,
    pub persist: Persist,
    /// Bytes of head and body that the host took so far.
    sent: u64,
}

/// Room for the longest head (181 bytes: a 405 with a 20-digit length, the longest type, and
/// `Connection: keep-alive`); a test checks it.
const HEAD_ROOM: usize = 256;

/// A rendered answer head.
pub struct Head {
    buf: [u8; HEAD_ROOM],
    len: usize,
}

impl Head {
    fn push(&mut self, s: &[u8]) {
        // Never more than the room: a head cut short would be a bug, not a crash.
        let n = s.len().min(HEAD_ROOM - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s[..n]);
        self.len += n;
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Answer {
    /// The bytes of the body the answer describes (its `Content-Length`).
    fn body<'c>(&self, content: &'c Content) -> &'c [u8] {
        match self.body {
            Body::Content(id) => content.body(id),
            Body::Error(status) => status.text(),
        }
    }

    /// The head, the same bytes every time (the answer may be written in many calls).
    pub fn head(&self, content: &Content) -> Head {
        let mut h = Head { buf: [0; HEAD_ROOM], len: 0 };
        let content_type = match self.body {
            Body::Content(id) => content.content_type(id),
            Body::Error(_) => "text/plain; charset=utf-8",
        };
        let mut digits = [0u8; 20];
        h.push(b"HTTP/1.1 ");
        h.push(decimal(u64::from(self.status.code()), &mut digits));
        h.push(b" ");
        h.push(self.status.reason().as_bytes());
        h.push(b"\r\nServer: ");
        h.push(SERVER.as_bytes());
        h.push(b"\r\nContent-Type: ");
        h.push(content_type.as_bytes());
        h.push(b"\r\nContent-Length: ");
        h.push(decimal(self.body(content).len() as u64, &mut digits));
        h.push(b"\r\n");
        if self.status == Status::MethodNotAllowed {
            h.push(b"Allow: GET, HEAD\r\n");
        }
        match self.persist {
            Persist::Default => {}
            Persist::Close => h.push(b"Connection: close\r\n"),
            Persist::KeepAlive => h.push(b"Connection: keep-alive\r\n"),
        }
        h.push(b"\r\n");
        h
    }
}

/// `n` in decimal, written at the end of `buf`.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// A connection's state, kept in the NF's table at the flow's slot.
#[derive(Default)]
pub struct Conn {
    /// The flow's id; 0 when the slot holds no connection.
    pub id: u64,
    /// Client bytes received and not parsed yet.
    inbuf: Vec<u8>,
    /// How far the search for the end of the head in `inbuf` got (see `request::parse`).
    scanned: usize,
    /// Body bytes of the last request still to be skipped.
    skip: u64,
    /// The client stream offset expected next.
    pub next_offset: u64,
    pub answers: VecDeque<Answer>,
    /// Parsing paused with the queue full: resume when it drains.
    stalled: bool,
    /// An answer that closes the connection is queued: no further request is read.
    closing: bool,
    /// The client closed its side (FIN): close ours once every answer is out.
    pub peer_done: bool,
    /// Nothing more is written: mbox's side is closed (or the connection is gone). The state
    /// stays, empty, until the flow's TERMINATE, so that later events of the flow are ignored
    /// rather than taken for a new connection.
    pub done: bool,
}

impl Conn {
    /// Makes the slot hold connection `id`, reusing the buffers' memory.
    pub fn reset(&mut self, id: u64) {
        self.drop_buffers();
        *self = Conn { id, inbuf: std::mem::take(&mut self.inbuf), answers: std::mem::take(&mut self.answers), ..Conn::default() };
    }

    /// Forgets what waits and writes nothing more.
    pub fn finish(&mut self) {
        self.drop_buffers();
        self.done = true;
    }

    fn drop_buffers(&mut self) {
        self.inbuf.clear();
        self.answers.clear();
        self.skip = 0;
        self.scanned = 0;
        // A buffer grown by a pipelining client is given back rather than kept per slot.
        if self.inbuf.capacity() > 2 * HEAD_MAX {
            self.inbuf = Vec::new();
        }
    }

    /// Keeps `bytes` for later; false when that would exceed [`BUFFER_MAX`].
    fn keep(&mut self, bytes: &[u8]) -> bool {
        if self.inbuf.len() + bytes.len() > BUFFER_MAX {
            return false;
        }
        self.inbuf.extend_from_slice(bytes);
        true
    }

    /// Takes `n` bytes off the front of `inbuf`.
    fn consume(&mut self, n: usize) {
        self.inbuf.drain(..n.min(self.inbuf.len()));
        self.scanned = 0;
    }

    /// True when parsing paused on a full queue.
    pub fn stalled(&self) -> bool {
        self.stalled
    }
}

/// The NF's counters.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Request heads read (answered or refused).
    pub requests: u64,
    /// Answers fully handed to the host, by class.
    pub responses_2xx: u64,
    pub responses_4xx: u64,
    /// Bytes the host took.
    pub bytes_sent: u64,
    /// Connections seen.
    pub connections: u64,
    /// Requests answered 400.
    pub bad_requests: u64,
    /// Sends the host took only part of (each is followed by a wait for `SEND_ROOM`).
    pub sends_partial: u64,
    /// Sends refused because the connection had ended (its state is then dropped).
    pub sends_ended: u64,
    /// Connections reset: client bytes lost on the way (a jump in stream offsets), or more
    /// pipelined than [`BUFFER_MAX`] while answers waited.
    pub resets: u64,
}

/// What [`Server::pump`] left.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Pump {
    /// Every queued answer was handed over.
    Drained,
    /// The send buffer is full: continue on `SEND_ROOM`.
    Blocked,
    /// The connection is gone: drop its state.
    Gone,
}

/// What serving needs besides the connection.
pub struct Server<'a> {
    pub content: &'a Content,
    pub stats: &'a mut Stats,
    /// Scratch for decoded request paths.
    pub path: &'a mut Vec<u8>,
}

impl Server<'_> {
    /// Reads requests from the connection's kept bytes followed by `incoming`, queueing one
    /// answer per request while there is room; keeps what it cannot parse yet. False when the
    /// bytes to keep would exceed [`BUFFER_MAX`].
    pub fn feed(&mut self, conn: &mut Conn, incoming: &[u8]) -> bool {
        let mut rest = incoming;
        // Set again below when parsing pauses on a full queue, the only way it stays set.
        conn.stalled = false;
        loop {
            if conn.closing || conn.done {
                // Nothing after a request that closes the connection is read.
                return true;
            }
            // The body of the request just answered is skipped, kept bytes first.
            if conn.skip > 0 {
                let n = conn.skip.min(conn.inbuf.len() as u64) as usize;
                conn.consume(n);
                conn.skip -= n as u64;
                if conn.inbuf.is_empty() {
                    let n = conn.skip.min(rest.len() as u64) as usize;
                    rest = &rest[n..];
                    conn.skip -= n as u64;
                }
                if conn.skip > 0 {
                    return true;
                }
            }
            if conn.answers.len() >= MAX_PENDING {
                conn.stalled = true;
                return conn.keep(rest);
            }
            if conn.inbuf.is_empty() {
                // The common case: parse in place, without copying the client's bytes.
                if rest.is_empty() {
                    return true;
                }
                match request::parse(rest, &mut 0) {
                    Parse::Incomplete => return conn.keep(rest),
                    Parse::Complete { request, len } => {
                        self.answer(conn, &request);
                        rest = &rest[len..];
                    }
                    Parse::Invalid(_) => self.refuse(conn),
                }
            } else {
                // A head begun in an earlier event: top the kept bytes up to a head's bound.
                let take = HEAD_MAX.saturating_sub(conn.inbuf.len()).min(rest.len());
                conn.inbuf.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                let answer = match request::parse(&conn.inbuf, &mut conn.scanned) {
                    // Not complete below the bound: every byte was taken in (`rest` is empty).
                    Parse::Incomplete => return conn.keep(rest),
                    Parse::Complete { request, len } => Some((self.decide(&request), len)),
                    Parse::Invalid(_) => None,
                };
                match answer {
                    Some(((answer, skip), len)) => {
                        conn.consume(len);
                        self.queue(conn, answer, skip);
                    }
                    None => self.refuse(conn),
                }
            }
        }
    }

    /// Queues the answer to `request`.
    fn answer(&mut self, conn: &mut Conn, request: &Request<'_>) {
        let (answer, skip) = self.decide(request);
        self.queue(conn, answer, skip);
    }

    fn queue(&mut self, conn: &mut Conn, answer: Answer, skip: u64) {
        if answer.persist == Persist::Close {
            conn.closing = true;
            conn.inbuf.clear();
        } else {
            conn.skip = skip;
        }
        conn.answers.push_back(answer);
    }

    /// Queues a 400 for a head that cannot be read, and stops reading.
    fn refuse(&mut self, conn: &mut Conn) {
        self.stats.requests += 1;
        let answer = self.bad(false);
        self.queue(conn, answer, 0);
    }

    fn bad(&mut self, head_only: bool) -> Answer {
        self.stats.bad_requests += 1;
        Answer { status: Status::BadRequest, body: Body::Error(Status::BadRequest), head_only, persist: Persist::Close, sent: 0 }
    }

    /// The answer to a well-formed head, and how many body bytes follow it.
    fn decide(&mut self, request: &Request<'_>) -> (Answer, u64) {
        self.stats.requests += 1;
        let head_only = request.method == Method::Head;
        // A body whose end is not known here would be read as the next request: refuse it.
        if request.transfer_encoding {
            return (self.bad(head_only), 0);
        }
        let persist = match (request.keep_alive, request.minor) {
            (false, _) => Persist::Close,
            (true, 0) => Persist::KeepAlive,
            (true, _) => Persist::Default,
        };
        let answer = |status, body| Answer { status, body, head_only, persist, sent: 0 };
        if request.method == Method::Other {
            let status = Status::MethodNotAllowed;
            return (answer(status, Body::Error(status)), request.content_length);
        }
        if request_path(request.target, self.path).is_err() {
            return (self.bad(head_only), 0);
        }
        let answer = match self.content.find(self.path) {
            Some(id) => answer(Status::Ok, Body::Content(id)),
            None => answer(Status::NotFound, Body::Error(Status::NotFound)),
        };
        (answer, request.content_length)
    }

    /// Writes the queued answers, in order, until the host's send buffer is full. Closes mbox's
    /// side once an answer that closes the connection is all handed over.
    pub fn pump(&mut self, conn: &mut Conn, flow: &FlowRef, host: &mut Host<'_>) -> Pump {
        while let Some(answer) = conn.answers.front_mut() {
            let head = answer.head(self.content);
            let head = head.bytes();
            let body = if answer.head_only { &[][..] } else { answer.body(self.content) };
            let (head_len, total) = (head.len() as u64, (head.len() + body.len()) as u64);
            while answer.sent < total {
                let chunk = match answer.sent.checked_sub(head_len) {
                    None => &head[answer.sent as usize..],
                    Some(at) => &body[at as usize..],
                };
                let sent = host.send(flow, chunk);
                answer.sent += sent.accepted as u64;
                self.stats.bytes_sent += sent.accepted as u64;
                match sent.status {
                    // A `Done` short of the chunk took the 4 GiB a call carries: go on.
                    StreamStatus::Done if sent.accepted > 0 => {}
                    // Wait for SEND_ROOM rather than try again now (a `Done` that took nothing
                    // would otherwise spin).
                    StreamStatus::Done | StreamStatus::Partial => {
                        self.stats.sends_partial += 1;
                        return Pump::Blocked;
                    }
                    StreamStatus::Ended | StreamStatus::NoFlow | StreamStatus::Unsupported => {
                        self.stats.sends_ended += 1;
                        return Pump::Gone;
                    }
                }
            }
            match answer.status.code() {
                200..=299 => self.stats.responses_2xx += 1,
                _ => self.stats.responses_4xx += 1,
            }
            let closes = answer.persist == Persist::Close;
            conn.answers.pop_front();
            if closes {
                host.close(flow);
                conn.finish();
            }
        }
        Pump::Drained
    }

    /// Serves the connection after an event: reads `incoming`, writes what it can, and closes
    /// mbox's side when the client has closed its side and every answer is out.
    pub fn serve(&mut self, conn: &mut Conn, flow: &FlowRef, host: &mut Host<'_>, incoming: &[u8]) {
        let mut incoming = incoming;
        loop {
            if !self.feed(conn, std::mem::take(&mut incoming)) {
                host.reset(flow);
                self.stats.resets += 1;
                conn.finish();
                return;
            }
            match self.pump(conn, flow, host) {
                Pump::Blocked => return,
                Pump::Gone => {
                    conn.finish();
                    return;
                }
                // Room in the queue again: read the requests that waited for it.
                Pump::Drained if conn.stalled && !conn.done => {}
                Pump::Drained => break,
            }
        }
        if conn.peer_done && !conn.done {
            // Every complete request was answered; a head the client left unfinished never
            // will be.
            host.close(flow);
            conn.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_head_fits_its_room() {
        let content = Content::load(None, &[], 0).unwrap();
        let mut longest = Answer {
            status: Status::MethodNotAllowed,
            body: Body::Error(Status::MethodNotAllowed),
            head_only: false,
            persist: Persist::KeepAlive,
            sent: 0,
        };
        let head = longest.head(&content);
        assert!(head.bytes().ends_with(b"Connection: keep-alive\r\n\r\n"));
        // The longest status line and type, and a 20-digit length, are within the room too.
        let worst = "HTTP/1.1 405 Method Not Allowed\r\nServer: mbox-http-server\r\nContent-Type: application/octet-stream\r\n\
                     Content-Length: 18446744073709551615\r\nAllow: GET, HEAD\r\nConnection: keep-alive\r\n\r\n";
        assert_eq!(worst.len(), 181);
        assert!(worst.len() <= HEAD_ROOM);
        longest.persist = Persist::Default;
        assert_eq!(
            longest.head(&content).bytes(),
            b"HTTP/1.1 405 Method Not Allowed\r\nServer: mbox-http-server\r\nContent-Type: text/plain; charset=utf-8\r\n\
              Content-Length: 23\r\nAllow: GET, HEAD\r\n\r\n"
        );
    }

    #[test]
    fn decimals() {
        let mut b = [0u8; 20];
        assert_eq!(decimal(0, &mut b), b"0");
        assert_eq!(decimal(8192, &mut b), b"8192");
        assert_eq!(decimal(u64::MAX, &mut b), b"18446744073709551615");
    }
}
