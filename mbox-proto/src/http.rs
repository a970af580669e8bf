//! HTTP/1.x: message heads (parsed by httparse, returned as slices of the input) and bodies
//! (Content-Length, chunked, or until the connection closes), decoded incrementally.

use crate::Parse;

/// Most headers a message head may have; more is treated as not HTTP.
const MAX_HEADERS: usize = 128;

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLength {
    None,
    Length(u64),
    Chunked,
    /// Until the connection closes (a response without a length).
    UntilClose,
}

/// A request line and the headers NFs look at, as slices of the parsed buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead<'a> {
    pub method: &'a [u8],
    pub uri: &'a [u8],
    pub host: Option<&'a [u8]>,
    pub user_agent: Option<&'a [u8]>,
    pub referer: Option<&'a [u8]>,
    /// The minor version of `HTTP/1.x` (0 or 1).
    pub version: u8,
    /// Bytes of the head, blank line included: the body starts here.
    pub head_len: usize,
    pub body: BodyLength,
}

/// A status line and what delimits the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead<'a> {
    pub status: u16,
    /// The minor version of `HTTP/1.x`.
    pub version: u8,
    pub content_type: Option<&'a [u8]>,
    pub head_len: usize,
    pub body: BodyLength,
}

/// Parses a request head at the start of `buf`. A request line that breaks the grammar but is
/// plainly HTTP (`GET /cgi-bin/x;cat /etc/passwd HTTP/1.1`: spaces in the target, as attacks
/// send them) is taken leniently, as web servers and Suricata's parser take it: the method is
/// the first word, the version the last, the target what lies between.
pub fn request_head(buf: &[u8]) -> Parse<RequestHead<'_>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(head_len)) => {
            let (Some(method), Some(uri)) = (req.method, req.path) else { return Parse::Invalid };
            request(method.as_bytes(), uri.as_bytes(), req.version.unwrap_or(1), req.headers, head_len)
        }
        Ok(httparse::Status::Partial) => Parse::Partial,
        Err(_) => lenient_request(buf),
    }
}

/// The request a head with `headers` describes.
fn request<'a>(method: &'a [u8], uri: &'a [u8], version: u8, headers: &[httparse::Header<'a>], head_len: usize) -> Parse<RequestHead<'a>> {
    let header = |name: &str| headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value);
    let body = match body_length(headers) {
        Some(BodyLength::UntilClose) | None => BodyLength::None,
        Some(b) => b,
    };
    Parse::Done(RequestHead {
        method,
        uri,
        host: header("host"),
        user_agent: header("user-agent"),
        referer: header("referer"),
        version,
        head_len,
        body,
    })
}

/// Longest request line the lenient parser looks for.
const MAX_REQUEST_LINE: usize = 8192;

/// Longest head the loose header reader takes, request line and blank line included.
const LOOSE_HEAD_LIMIT: usize = MAX_REQUEST_LINE * 4;

/// `METHOD target with spaces HTTP/1.x`, then headers as usual.
fn lenient_request(buf: &[u8]) -> Parse<RequestHead<'_>> {
    let method_len = buf.iter().take_while(|b| b.is_ascii_uppercase()).count();
    if method_len == 0 || method_len > 16 || buf.get(method_len) != Some(&b' ') {
        return Parse::Invalid;
    }
    let Some(end) = buf.iter().take(MAX_REQUEST_LINE).position(|&b| b == b'\n') else {
        return if buf.len() < MAX_REQUEST_LINE { Parse::Partial } else { Parse::Invalid };
    };
    let line = buf[..end].strip_suffix(b"\r").unwrap_or(&buf[..end]);
    let Some(version_at) = line.windows(6).rposition(|w| w == b" HTTP/") else { return Parse::Invalid };
    if version_at <= method_len + 1 || line.len() != version_at + 9 {
        return Parse::Invalid;
    }
    // Spaces around the target are separators, as libhtp reads them, not part of the URI.
    let (method, uri) = (&buf[..method_len], line[method_len + 1..version_at].trim_ascii());
    if uri.is_empty() {
        return Parse::Invalid;
    }
    let version = u8::from(line.ends_with(b"/1.1"));
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match httparse::parse_headers(&buf[end + 1..], &mut headers) {
        Ok(httparse::Status::Complete((n, parsed))) => request(method, uri, version, parsed, end + 1 + n),
        Ok(httparse::Status::Partial) => Parse::Partial,
        Err(_) => loose_headers(buf, end + 1, method, uri, version),
    }
}

/// Headers that break the grammar (control bytes in a value, as scanners send): lines of
/// `name: value` up to the first blank line, read as they are, within LOOSE_HEAD_LIMIT bytes.
fn loose_headers<'a>(buf: &'a [u8], start: usize, method: &'a [u8], uri: &'a [u8], version: u8) -> Parse<RequestHead<'a>> {
    let rest = &buf[start..];
    // The blank line is looked for only within the limit, so that a head whose first
    // LOOSE_HEAD_LIMIT bytes are not HTTP stays not HTTP with more bytes (its blank line
    // further on once made it a head when the stream was parsed whole, not in pieces).
    let within = &rest[..rest.len().min(LOOSE_HEAD_LIMIT.saturating_sub(start))];
    let Some(head_end) = blank_line_end(within) else {
        return if buf.len() < LOOSE_HEAD_LIMIT { Parse::Partial } else { Parse::Invalid };
    };
    let (mut host, mut user_agent, mut referer, mut body) = (None, None, None, BodyLength::None);
    for line in rest[..head_end].split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let (name, value) = (line[..colon].trim_ascii(), line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"host") {
            host = Some(value);
        } else if name.eq_ignore_ascii_case(b"user-agent") {
            user_agent = Some(value);
        } else if name.eq_ignore_ascii_case(b"referer") {
            referer = Some(value);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") && value.windows(7).any(|w| w.eq_ignore_ascii_case(b"chunked")) {
            body = BodyLength::Chunked;
        } else if name.eq_ignore_ascii_case(b"content-length") && body != BodyLength::Chunked {
            let n = std::str::from_utf8(value).ok().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            body = if n == 0 { BodyLength::None } else { BodyLength::Length(n) };
        }
    }
    Parse::Done(RequestHead { method, uri, host, user_agent, referer, version, head_len: start + head_end, body })
}

/// Where the first blank line of `rest` (`\r\n` or a bare `\n`) ends: the first, whichever
/// its line ends are, so that the head found does not depend on the bytes after it (a
/// `\r\n\r\n` in the body once made a head ended by a bare `\n` run on to it).
fn blank_line_end(rest: &[u8]) -> Option<usize> {
    let mut at = 0;
    while let Some(len) = rest[at..].iter().position(|&b| b == b'\n') {
        if rest[at..at + len].strip_suffix(b"\r").unwrap_or(&rest[at..at + len]).is_empty() {
            return Some(at + len + 1);
        }
        at += len + 1;
    }
    None
}

/// Parses a response head at the start of `buf`; `head_request` says the request was HEAD
/// (its response has no body whatever its headers say).
pub fn response_head(buf: &[u8], head_request: bool) -> Parse<ResponseHead<'_>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut headers);
    let head_len = match res.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parse::Partial,
        Err(_) => return Parse::Invalid,
    };
    let Some(status) = res.code else { return Parse::Invalid };
    let no_body = head_request || (100..200).contains(&status) || status == 204 || status == 304;
    let body = if no_body { BodyLength::None } else { body_length(res.headers).unwrap_or(BodyLength::UntilClose) };
    let content_type = res.headers.iter().find(|h| h.name.eq_ignore_ascii_case("content-type")).map(|h| h.value);
    Parse::Done(ResponseHead { status, version: res.version.unwrap_or(1), content_type, head_len, body })
}

/// The body length the headers declare: chunked wins over Content-Length (RFC 9112 6.3);
/// `None` when neither is given.
fn body_length(headers: &[httparse::Header<'_>]) -> Option<BodyLength> {
    let chunked = headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("transfer-encoding")
            && h.value.split(|&b| b == b',').any(|v| v.trim_ascii().eq_ignore_ascii_case(b"chunked"))
    });
    if chunked {
        return Some(BodyLength::Chunked);
    }
    let length = headers.iter().find(|h| h.name.eq_ignore_ascii_case("content-length"))?;
    let n = std::str::from_utf8(length.value).ok()?.trim().parse::<u64>().ok()?;
    Some(if n == 0 { BodyLength::None } else { BodyLength::Length(n) })
}

/// Where a body decoder stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyState {
    /// Body bytes left (Content-Length, or the current chunk).
    Data {
        left: u64,
        chunked: bool,
    },
    /// Reading a chunk-size line (and its extensions) up to LF.
    ChunkSize {
        size: u64,
        digits: u32,
        in_extension: bool,
    },
    /// The CRLF after a chunk's data.
    ChunkEnd {
        seen_cr: bool,
    },
    /// The trailer section after the last chunk: ends at an empty line.
    Trailer {
        line_empty: bool,
    },
    UntilClose,
    Done,
}

/// Decodes one message body from the bytes that follow its head, however they are split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyDecoder {
    state: BodyState,
    /// Bytes of the body as sent, chunk-size lines and CRLFs counted, the trailer section not
    /// (libhtp's message length, Suricata's `length`).
    message_len: u64,
}

/// Bad framing in a body: the rest of the connection cannot be parsed as HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadChunk;

impl BodyDecoder {
    pub fn new(length: BodyLength) -> BodyDecoder {
        let state = match length {
            BodyLength::None => BodyState::Done,
            BodyLength::Length(n) => BodyState::Data { left: n, chunked: false },
            BodyLength::Chunked => BodyState::ChunkSize { size: 0, digits: 0, in_extension: false },
            BodyLength::UntilClose => BodyState::UntilClose,
        };
        BodyDecoder { state, message_len: 0 }
    }

    /// Accounts for `n` bytes of the body that were never seen (a capture's or a stream's gap):
    /// true when they fall inside body data (a Content-Length body with at least `n` left, the
    /// data of a chunk, a body read until close), so that decoding goes on after them; false
    /// when framing was lost with them, and the rest cannot be decoded.
    pub fn skip(&mut self, n: u64) -> bool {
        match &mut self.state {
            BodyState::UntilClose => {}
            BodyState::Data { left, chunked } if *left > n || (*left == n && !*chunked) => {
                *left -= n;
                if *left == 0 {
                    self.state = BodyState::Done;
                }
            }
            BodyState::Data { left, chunked: true } if *left == n => self.state = BodyState::ChunkEnd { seen_cr: false },
            _ => return false,
        }
        self.message_len += n;
        true
    }

    /// True for a body that runs until the connection closes (no length, not chunked).
    pub fn is_until_close(&self) -> bool {
        self.state == BodyState::UntilClose
    }

    /// The body's bytes so far as sent: framing counted, a chunked body's trailer section not.
    pub fn message_len(&self) -> u64 {
        self.message_len
    }

    /// True once the body is complete (the next bytes start the next message).
    pub fn is_done(&self) -> bool {
        self.state == BodyState::Done
    }

    /// Consumes body framing and data from `input`, handing each run of body bytes to `data`.
    /// Returns the bytes consumed: all of `input`, or fewer when the body ended inside it.
    pub fn feed<'a>(&mut self, input: &'a [u8], data: &mut dyn FnMut(&'a [u8])) -> Result<usize, BadChunk> {
        let mut at = 0;
        while at < input.len() && !self.is_done() {
            let start = at;
            let counted = !matches!(self.state, BodyState::Trailer { .. });
            self.step(input, &mut at, data)?;
            if counted {
                self.message_len += (at - start) as u64;
            }
        }
        Ok(at)
    }

    /// One step of [`feed`](Self::feed): a run of data or one framing byte from `input[*pos..]`.
    fn step<'a>(&mut self, input: &'a [u8], pos: &mut usize, data: &mut dyn FnMut(&'a [u8])) -> Result<(), BadChunk> {
        let mut at = *pos;
        match &mut self.state {
            BodyState::Done => {}
            BodyState::UntilClose => {
                data(&input[at..]);
                at = input.len();
            }
            BodyState::Data { left, chunked } => {
                let n = (*left).min((input.len() - at) as u64) as usize;
                data(&input[at..at + n]);
                at += n;
                *left -= n as u64;
                if *left == 0 {
                    self.state = if *chunked { BodyState::ChunkEnd { seen_cr: false } } else { BodyState::Done };
                }
            }
            BodyState::ChunkSize { size, digits, in_extension } => {
                let b = input[at];
                at += 1;
                match b {
                    b'\n' if *digits > 0 => {
                        self.state = if *size == 0 {
                            BodyState::Trailer { line_empty: true }
                        } else {
                            BodyState::Data { left: *size, chunked: true }
                        };
                    }
                    b'\r' => {}
                    _ if *in_extension => {}
                    b';' | b' ' | b'\t' if *digits > 0 => *in_extension = true,
                    _ => {
                        let digit = (b as char).to_digit(16).ok_or(BadChunk)?;
                        *digits += 1;
                        if *digits > 16 {
                            return Err(BadChunk);
                        }
                        *size = (*size << 4) | u64::from(digit);
                    }
                }
            }
            BodyState::ChunkEnd { seen_cr } => {
                let b = input[at];
                at += 1;
                match b {
                    b'\r' if !*seen_cr => *seen_cr = true,
                    b'\n' => self.state = BodyState::ChunkSize { size: 0, digits: 0, in_extension: false },
                    _ => return Err(BadChunk),
                }
            }
            BodyState::Trailer { line_empty } => {
                let b = input[at];
                at += 1;
                match b {
                    b'\n' if *line_empty => self.state = BodyState::Done,
                    b'\n' => *line_empty = true,
                    b'\r' => {}
                    _ => *line_empty = false,
                }
            }
        }
        *pos = at;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_head_and_its_fields() {
        let raw = b"GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/8.0\r\n\r\nrest";
        let Parse::Done(h) = request_head(raw) else { panic!() };
        assert_eq!(
            (h.method, h.uri, h.host, h.user_agent),
            (&b"GET"[..], &b"/a?b=1"[..], Some(&b"example.com"[..]), Some(&b"curl/8.0"[..]))
        );
        assert_eq!((h.head_len, h.body), (raw.len() - 4, BodyLength::None));
        assert_eq!(request_head(&raw[..20]), Parse::Partial);
        assert_eq!(request_head(b"\x16\x03\x01\x02\x00"), Parse::Invalid);
        let Parse::Done(h) = request_head(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n") else { panic!() };
        assert_eq!(h.body, BodyLength::Length(5));
        // Spaces in the target, as attacks send them.
        let raw = b"GET /cgi-bin/x;cat /etc/passwd|?d=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
        let Parse::Done(h) = request_head(raw) else { panic!() };
        assert_eq!(
            (h.method, h.uri, h.host, h.head_len),
            (&b"GET"[..], &b"/cgi-bin/x;cat /etc/passwd|?d=1"[..], Some(&b"127.0.0.1"[..]), raw.len())
        );
        assert_eq!(request_head(&raw[..30]), Parse::Partial);
        assert_eq!(request_head(b"GET  HTTP/1.1\r\n\r\n"), Parse::Invalid, "no target");
        assert_eq!(request_head(b"HELLO world\r\n"), Parse::Invalid);
        // A control byte in a header value, as scanners send.
        let raw = b"GET / HTTP/1.0\r\nNikto: \x1f\r\nUser-Agent: Mozilla/5.00 (Nikto)\r\nContent-Length: 2\r\n\r\nab";
        let Parse::Done(h) = request_head(raw) else { panic!() };
        assert_eq!((h.user_agent, h.body, h.head_len), (Some(&b"Mozilla/5.00 (Nikto)"[..]), BodyLength::Length(2), raw.len() - 2));
    }

    #[test]
    fn a_loose_head_ends_at_its_first_blank_line_whatever_follows() {
        // Found by the http_request fuzz target: a head that breaks the grammar (a control
        // byte) and ends with a bare-LF blank line ran on to a later CRLF CRLF, so the head
        // (and its fields) changed with the bytes after it.
        let head = b"GET /x HTTP/1.1\r\nUser-Agent: a\x19b\r\n\n";
        let more = [&head[..], b"Host: body.example\r\n\r\n"].concat();
        for buf in [&head[..], &more] {
            let Parse::Done(h) = request_head(buf) else { panic!() };
            assert_eq!((h.head_len, h.host, h.user_agent), (head.len(), None, Some(&b"a\x19b"[..])));
        }
        let crlf = b"GET /x HTTP/1.1\r\nX: \x01\r\nHost: h\r\n\r\nbody\n\n";
        let Parse::Done(h) = request_head(crlf) else { panic!() };
        assert_eq!((h.head_len, h.host), (crlf.len() - 6, Some(&b"h"[..])));
    }

    #[test]
    fn a_head_ends_at_its_blank_line_whichever_its_line_ends_strict_or_loose() {
        // The grammar's head (httparse) and the loose one (a control byte in a value) end at
        // the same blank line, for every mix of CRLF and bare LF, with the bytes after it
        // left to the body.
        for ending in ["\r\n\r\n", "\n\n", "\r\n\n", "\n\r\n"] {
            for first in ["GET / HTTP/1.1\r\n", "GET / HTTP/1.1\n", "GET /a b HTTP/1.1\n"] {
                for strange in ["", "X: \x01\r\n", "X: \x01\n"] {
                    let head = format!("{first}{strange}Host: a{ending}");
                    let buf = format!("{head}Host: b\r\n\r\n");
                    let Parse::Done(h) = request_head(buf.as_bytes()) else { panic!("{head:?}") };
                    assert_eq!((h.head_len, h.host), (head.len(), Some(&b"a"[..])), "{head:?}");
                    assert_eq!(request_head(&head.as_bytes()[..head.len() - 1]), Parse::Partial, "{head:?}");
                }
            }
        }
    }

    #[test]
    fn a_loose_head_is_not_http_past_its_limit_however_it_arrives() {
        // A loose head whose blank line ends past LOOSE_HEAD_LIMIT was not HTTP when its
        // first LOOSE_HEAD_LIMIT bytes were parsed alone, but HTTP once the blank line was
        // in: whether sig-match took it depended on how the stream arrived.
        let mut head = b"GET / HTTP/1.1\r\nX: \x01\r\n".to_vec();
        while head.len() < LOOSE_HEAD_LIMIT {
            head.extend_from_slice(b"X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        head.extend_from_slice(b"\r\n");
        assert_eq!(request_head(&head[..LOOSE_HEAD_LIMIT]), Parse::Invalid);
        assert_eq!(request_head(&head), Parse::Invalid);
        // Within the limit it is a head, found from any prefix that holds its blank line.
        let mut short = b"GET / HTTP/1.1\r\nX: \x01\r\n".to_vec();
        while short.len() < LOOSE_HEAD_LIMIT - 64 {
            short.extend_from_slice(b"X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        short.extend_from_slice(b"\r\n");
        let Parse::Done(h) = request_head(&short) else { panic!() };
        assert_eq!(h.head_len, short.len());
        assert_eq!(request_head(&short[..short.len() - 1]), Parse::Partial);
    }

    #[test]
    fn response_bodies_by_length_chunks_and_close() {
        let Parse::Done(h) = response_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 9\r\n\r\n", false)
        else {
            panic!()
        };
        assert_eq!(h.body, BodyLength::Chunked);
        let Parse::Done(h) = response_head(b"HTTP/1.0 200 OK\r\n\r\n", false) else { panic!() };
        assert_eq!(h.body, BodyLength::UntilClose);
        let Parse::Done(h) = response_head(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", false) else { panic!() };
        assert_eq!(h.body, BodyLength::None);
        let Parse::Done(h) = response_head(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", true) else { panic!() };
        assert_eq!(h.body, BodyLength::None, "a response to HEAD has no body");
    }

    /// Decodes `wire` fed in pieces of `step` bytes; returns the body and the bytes consumed.
    fn decode(length: BodyLength, wire: &[u8], step: usize) -> Result<(Vec<u8>, usize, bool), BadChunk> {
        let mut d = BodyDecoder::new(length);
        let (mut body, mut used) = (Vec::new(), 0);
        for piece in wire.chunks(step) {
            let n = d.feed(piece, &mut |b| body.extend_from_slice(b))?;
            used += n;
            if n < piece.len() {
                break;
            }
        }
        Ok((body, used, d.is_done()))
    }

    #[test]
    fn chunked_bodies_in_any_split() {
        let wire = b"4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        for step in 1..wire.len() {
            let (body, used, done) = decode(BodyLength::Chunked, wire, step).unwrap();
            assert_eq!(body, b"Wikipedia in\r\n\r\nchunks.", "step {step}");
            assert_eq!((used, done), (wire.len() - 4, true), "step {step}");
        }
        // Suricata's `length`: the framing counts, the trailer section does not.
        let mut d = BodyDecoder::new(BodyLength::Chunked);
        for piece in wire.chunks(5) {
            d.feed(piece, &mut |_| {}).unwrap();
        }
        assert_eq!(d.message_len(), (wire.len() - 4 - b"Trailer: x\r\n\r\n".len()) as u64);
        let mut d = BodyDecoder::new(BodyLength::Length(3));
        d.feed(b"abcdef", &mut |_| {}).unwrap();
        assert_eq!(d.message_len(), 3);
        assert!(decode(BodyLength::Chunked, b"zz\r\n", 3).is_err());
        assert!(decode(BodyLength::Chunked, b"3\r\nabcX", 3).is_err());
    }

    #[test]
    fn a_gap_inside_body_data_is_skipped_and_one_across_framing_is_not() {
        let mut d = BodyDecoder::new(BodyLength::Length(10));
        d.feed(b"abc", &mut |_| {}).unwrap();
        assert!(d.skip(4));
        assert_eq!(d.feed(b"xyzNEXT", &mut |_| {}), Ok(3));
        assert!(d.is_done());
        assert_eq!(d.message_len(), 10);
        let mut d = BodyDecoder::new(BodyLength::Length(10));
        assert!(!d.skip(11), "a gap past the body's end takes the next head with it");
        let mut d = BodyDecoder::new(BodyLength::Chunked);
        d.feed(b"5\r\nab", &mut |_| {}).unwrap();
        assert!(d.skip(3));
        assert_eq!(d.feed(b"\r\n0\r\n\r\n", &mut |_| {}), Ok(7));
        assert!(d.is_done());
        let mut d = BodyDecoder::new(BodyLength::Chunked);
        assert!(!d.skip(2), "a gap in a chunk-size line loses the framing");
    }

    #[test]
    fn length_bodies_stop_at_their_end() {
        let (body, used, done) = decode(BodyLength::Length(3), b"abcdef", 2).unwrap();
        assert_eq!((body.as_slice(), used, done), (&b"abc"[..], 3, true));
    }
}
