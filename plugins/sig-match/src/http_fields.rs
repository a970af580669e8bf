//! The HTTP sticky buffers of one request or response, built from its head as Suricata builds
//! them (`http.header` without the cookies, `http.header_names` framed by line ends, the
//! lower-cased host, the request and status lines cut into their parts), in one reused byte
//! buffer: a head costs a copy of its bytes, no allocation once the buffer has grown.

use mbox_proto::http::RequestHead;
use mbox_sig::{Buffer, Buffers};

/// The buffers of one HTTP message's head.
#[derive(Debug, Clone)]
pub struct HttpFields {
    bytes: Vec<u8>,
    /// Per buffer (by index), its bytes' range in `bytes`.
    spans: [Option<(u32, u32)>; Buffer::ALL.len()],
    /// How the message's body is encoded (its Content-Encoding).
    pub encoding: BodyEncoding,
}

/// A body's Content-Encoding, as far as inspection cares: rules match the decoded bytes (as
/// Suricata's libhtp decompresses bodies).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum BodyEncoding {
    #[default]
    Identity,
    Gzip,
    /// zlib-wrapped, or raw deflate as some servers send it.
    Deflate,
}

impl Default for HttpFields {
    // By hand: arrays of more than 32 have no derived Default.
    fn default() -> Self {
        HttpFields { bytes: Vec::new(), spans: [None; Buffer::ALL.len()], encoding: BodyEncoding::Identity }
    }
}

impl HttpFields {
    /// Bytes held (what a copy kept across a body costs).
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Bytes it can hold without growing.
    pub fn capacity(&self) -> usize {
        self.bytes.capacity()
    }

    pub fn clear(&mut self) {
        self.bytes.clear();
        self.spans = [None; Buffer::ALL.len()];
        self.encoding = BodyEncoding::Identity;
    }

    /// The fields of a request whose head (`head`: its bytes, blank line included) parsed as
    /// `parsed`; with `raw`, the head as sent too (`http.start`, `http.header.raw`: copies of
    /// the whole head, made only when a rule looks at them).
    pub fn request(&mut self, head: &[u8], parsed: &RequestHead<'_>, raw: bool) {
        self.clear();
        self.raw(head, raw);
        let line = first_line(head);
        self.put(Buffer::HttpRequestLine, line);
        self.put(Buffer::HttpMethod, parsed.method);
        self.put(Buffer::HttpUri, parsed.uri);
        self.put(Buffer::HttpUriRaw, parsed.uri);
        if let Some(protocol) = line.rsplit(|&b| b == b' ').next().filter(|p| p.starts_with(b"HTTP/")) {
            self.put(Buffer::HttpProtocol, protocol);
        }
        if let Some(host) = parsed.host {
            // Suricata's http.host is lower-cased.
            let start = self.bytes.len();
            self.bytes.push(b'.');
            self.bytes.extend(host.iter().map(u8::to_ascii_lowercase));
            self.span(Buffer::HttpHostDotted, start);
            self.spans[Buffer::HttpHost as usize] = Some((start as u32 + 1, self.bytes.len() as u32));
        }
        for (buffer, value) in [(Buffer::HttpUserAgent, parsed.user_agent), (Buffer::HttpReferer, parsed.referer)] {
            if let Some(value) = value {
                self.put(buffer, value);
            }
        }
        let named: [(&[u8], Buffer); 6] = [
            (b"accept", Buffer::HttpAccept),
            (b"content-type", Buffer::HttpContentType),
            (b"accept-encoding", Buffer::HttpAcceptEnc),
            (b"accept-language", Buffer::HttpAcceptLang),
            (b"connection", Buffer::HttpConnection),
            (b"content-length", Buffer::HttpContentLen),
        ];
        self.headers(head, b"cookie", &named);
    }

    /// The fields of a response whose head (its bytes, blank line included) parsed.
    pub fn response(&mut self, head: &[u8], raw: bool) {
        self.clear();
        self.raw(head, raw);
        let line = first_line(head);
        self.put(Buffer::HttpResponseLine, line);
        // `HTTP/1.1 200 OK`: the protocol, the code, and the reason phrase (possibly empty).
        let mut parts = line.splitn(3, |&b| b == b' ');
        if let Some(protocol) = parts.next() {
            self.put(Buffer::HttpProtocol, protocol);
        }
        if let Some(code) = parts.next() {
            self.put(Buffer::HttpStatCode, code);
        }
        self.put(Buffer::HttpStatMsg, parts.next().unwrap_or(b""));
        let named: [(&[u8], Buffer); 5] = [
            (b"content-type", Buffer::HttpContentType),
            (b"server", Buffer::HttpServer),
            (b"location", Buffer::HttpLocation),
            (b"connection", Buffer::HttpConnection),
            (b"content-length", Buffer::HttpContentLen),
        ];
        self.headers(head, b"set-cookie", &named);
    }

    /// `http.start` (the head) and `http.header.raw` (its header lines and blank line), when
    /// `wanted`.
    fn raw(&mut self, head: &[u8], wanted: bool) {
        if wanted {
            self.put(Buffer::HttpStart, head);
            let lines = head.iter().position(|&b| b == b'\n').map_or(head.len(), |i| i + 1);
            let start = self.bytes.len() - (head.len() - lines);
            self.spans[Buffer::HttpHeaderRaw as usize] = Some((start as u32, self.bytes.len() as u32));
        }
    }

    /// The header lines of `head`: `http.header` gets every one but `cookie` (the message's
    /// cookie header, which goes to `http.cookie` instead), `http.header_names` every name, and
    /// the `named` headers a buffer of their own (the first of each).
    fn headers(&mut self, head: &[u8], cookie: &[u8], named: &[(&[u8], Buffer)]) {
        // Built in passes over the lines, each appending one buffer, so that each lies in one
        // range.
        let start = self.bytes.len();
        for (name, value) in header_lines(head) {
            if !name.eq_ignore_ascii_case(cookie) {
                self.bytes.extend_from_slice(name);
                self.bytes.extend_from_slice(b": ");
                self.bytes.extend_from_slice(value);
                self.bytes.extend_from_slice(b"\r\n");
            }
        }
        if self.bytes.len() > start {
            self.span(Buffer::HttpHeader, start);
        }
        let start = self.bytes.len();
        self.bytes.extend_from_slice(b"\r\n");
        for (name, _) in header_lines(head) {
            self.bytes.extend_from_slice(name);
            self.bytes.extend_from_slice(b"\r\n");
        }
        self.bytes.extend_from_slice(b"\r\n");
        self.span(Buffer::HttpHeaderNames, start);
        let mut cookie_seen = false;
        let mut seen = [false; 8];
        for (name, value) in header_lines(head) {
            if !cookie_seen && name.eq_ignore_ascii_case(cookie) {
                cookie_seen = true;
                self.put(Buffer::HttpCookie, value);
            }
            if name.eq_ignore_ascii_case(b"content-encoding") {
                self.encoding = match value.trim_ascii() {
                    v if v.eq_ignore_ascii_case(b"gzip") || v.eq_ignore_ascii_case(b"x-gzip") => BodyEncoding::Gzip,
                    v if v.eq_ignore_ascii_case(b"deflate") => BodyEncoding::Deflate,
                    _ => BodyEncoding::Identity,
                };
            }
            for (i, (wanted, buffer)) in named.iter().enumerate() {
                if !seen[i] && name.eq_ignore_ascii_case(wanted) {
                    seen[i] = true;
                    self.put(*buffer, value);
                }
            }
        }
    }

    fn put(&mut self, buffer: Buffer, value: &[u8]) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(value);
        self.span(buffer, start);
    }

    /// Records that `buffer` is the bytes from `start` to the end.
    fn span(&mut self, buffer: Buffer, start: usize) {
        self.spans[buffer as usize] = Some((start as u32, self.bytes.len() as u32));
    }

    /// The buffers, to match rules against (more may be set on the result: a body).
    pub fn buffers(&self) -> Buffers<'_> {
        let mut b = Buffers::default();
        for (i, span) in self.spans.iter().enumerate() {
            if let Some((start, end)) = *span {
                b.set(Buffer::ALL[i], &self.bytes[start as usize..end as usize]);
            }
        }
        b
    }
}

/// Decodes `body` (gzip or deflate) into `out`, at most `limit` bytes; a stream that breaks
/// off or is corrupt gives what decoded before it broke (a body cut at the body limit is such a
/// stream). The decoders write into a bounded buffer, so a small body that inflates to a huge
/// one costs `limit` bytes at most.
pub fn decode_body(encoding: BodyEncoding, body: &[u8], limit: usize, out: &mut Vec<u8>) {
    use flate2::write::{DeflateDecoder, GzDecoder, ZlibDecoder};
    use std::io::Write;
    out.clear();
    // A decoder holds what it decoded until flushed: flushed whether or not the input ended
    // well, so that a broken stream still gives its start.
    fn run(mut decoder: impl Write, body: &[u8]) {
        let _ = decoder.write_all(body);
        let _ = decoder.flush();
    }
    match encoding {
        BodyEncoding::Identity => out.extend_from_slice(&body[..body.len().min(limit)]),
        BodyEncoding::Gzip => run(GzDecoder::new(Bounded { out, limit }), body),
        BodyEncoding::Deflate => {
            run(ZlibDecoder::new(Bounded { out: &mut *out, limit }), body);
            if out.is_empty() {
                run(DeflateDecoder::new(Bounded { out, limit }), body);
            }
        }
    }
}

/// A writer that takes `limit` bytes into `out`, then refuses (which stops a decoder).
struct Bounded<'a> {
    out: &'a mut Vec<u8>,
    limit: usize,
}

impl std::io::Write for Bounded<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = self.limit.saturating_sub(self.out.len());
        if room == 0 && !buf.is_empty() {
            return Err(std::io::Error::other("the body limit is reached"));
        }
        let n = buf.len().min(room);
        self.out.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The start line of a head, without its line end.
fn first_line(head: &[u8]) -> &[u8] {
    let line = head.split(|&b| b == b'\n').next().unwrap_or(b"");
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The header lines of a head (after its start line, up to the blank line) as (name, value),
/// the value without the white space around it. A line without a colon is skipped; a
/// continuation line (obsolete folding) too.
fn header_lines(head: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    head.split(|&b| b == b'\n')
        .skip(1)
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .take_while(|line| !line.is_empty())
        .filter(|line| !line.starts_with(b" ") && !line.starts_with(b"\t"))
        .filter_map(|line| {
            let colon = line.iter().position(|&b| b == b':')?;
            Some((line[..colon].trim_ascii(), line[colon + 1..].trim_ascii()))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mbox_proto::http::{request_head, response_head};
    use mbox_proto::Parse;

    fn get<'a>(b: &Buffers<'a>, buffer: Buffer) -> Option<&'a [u8]> {
        b.get(buffer)
    }

    #[test]
    fn a_requests_buffers_are_suricatas() {
        let head: &[u8] = b"POST /a%20b?x=1 HTTP/1.1\r\nHost: Example.COM\r\nUser-Agent: curl/8\r\nCookie: s=1\r\nAccept:  */*  \r\nContent-Type: text/plain\r\nContent-Length: 3\r\nAccept-Encoding: gzip\r\nAccept-Language: de\r\nConnection: close\r\n\r\n";
        let Parse::Done(parsed) = request_head(head) else { panic!() };
        let mut f = HttpFields::default();
        f.request(&head[..parsed.head_len], &parsed, false);
        assert_eq!(f.buffers().get(Buffer::HttpStart), None, "the raw head only when asked for");
        f.request(&head[..parsed.head_len], &parsed, true);
        let b = f.buffers();
        assert_eq!(get(&b, Buffer::HttpStart), Some(head));
        assert_eq!(get(&b, Buffer::HttpHeaderRaw), Some(&head[26..]));
        assert_eq!(get(&b, Buffer::HttpHostDotted), Some(&b".example.com"[..]));
        assert_eq!(get(&b, Buffer::HttpContentLen), Some(&b"3"[..]));
        assert_eq!(get(&b, Buffer::HttpAcceptEnc), Some(&b"gzip"[..]));
        assert_eq!(get(&b, Buffer::HttpAcceptLang), Some(&b"de"[..]));
        assert_eq!(get(&b, Buffer::HttpConnection), Some(&b"close"[..]));
        assert_eq!(get(&b, Buffer::HttpRequestLine), Some(&b"POST /a%20b?x=1 HTTP/1.1"[..]));
        assert_eq!(get(&b, Buffer::HttpMethod), Some(&b"POST"[..]));
        assert_eq!(get(&b, Buffer::HttpUriRaw), Some(&b"/a%20b?x=1"[..]));
        assert_eq!(get(&b, Buffer::HttpProtocol), Some(&b"HTTP/1.1"[..]));
        assert_eq!(get(&b, Buffer::HttpHost), Some(&b"example.com"[..]));
        assert_eq!(get(&b, Buffer::HttpCookie), Some(&b"s=1"[..]));
        assert_eq!(get(&b, Buffer::HttpAccept), Some(&b"*/*"[..]));
        assert_eq!(get(&b, Buffer::HttpContentType), Some(&b"text/plain"[..]));
        // Every header but the cookie, as Suricata's http.header: no blank line at the end.
        assert_eq!(
            get(&b, Buffer::HttpHeader),
            Some(&b"Host: Example.COM\r\nUser-Agent: curl/8\r\nAccept: */*\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nAccept-Encoding: gzip\r\nAccept-Language: de\r\nConnection: close\r\n"[..])
        );
        assert_eq!(
            get(&b, Buffer::HttpHeaderNames),
            Some(&b"\r\nHost\r\nUser-Agent\r\nCookie\r\nAccept\r\nContent-Type\r\nContent-Length\r\nAccept-Encoding\r\nAccept-Language\r\nConnection\r\n\r\n"[..])
        );
        assert_eq!((get(&b, Buffer::HttpStatCode), get(&b, Buffer::HttpReferer)), (None, None));
    }

    #[test]
    fn encoded_bodies_decode_within_the_limit_and_broken_ones_as_far_as_they_go() {
        use std::io::Write;
        // Text that compresses little, so that half the stream holds half of it.
        let text: Vec<u8> = (0..2000u32).flat_map(|i| format!("{} ", i.wrapping_mul(2654435761)).into_bytes()).collect();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&text).unwrap();
        let gz = gz.finish().unwrap();
        let mut out = Vec::new();
        decode_body(BodyEncoding::Gzip, &gz, 1 << 20, &mut out);
        assert_eq!(out, text);
        decode_body(BodyEncoding::Gzip, &gz, 100, &mut out);
        assert_eq!(out, &text[..100]);
        decode_body(BodyEncoding::Gzip, &gz[..gz.len() / 2], 1 << 20, &mut out);
        assert!(!out.is_empty() && text.starts_with(&out), "a cut stream decodes as far as it goes");
        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        raw.write_all(b"raw deflate").unwrap();
        decode_body(BodyEncoding::Deflate, &raw.finish().unwrap(), 1 << 20, &mut out);
        assert_eq!(out, b"raw deflate");
        decode_body(BodyEncoding::Gzip, b"not gzip at all", 1 << 20, &mut out);
        assert!(out.is_empty());
        let head: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Encoding:  GZIP \r\n\r\n";
        let mut f = HttpFields::default();
        f.response(head, false);
        assert_eq!(f.encoding, BodyEncoding::Gzip);
    }

    #[test]
    fn a_responses_buffers_are_suricatas() {
        let head: &[u8] = b"HTTP/1.1 404 Not Found\r\nSet-Cookie: id=2\r\nContent-Type: text/html\r\nServer: nginx\r\n\r\n";
        let Parse::Done(parsed) = response_head(head, false) else { panic!() };
        let mut f = HttpFields::default();
        f.response(&head[..parsed.head_len], true);
        let b = f.buffers();
        assert_eq!(get(&b, Buffer::HttpServer), Some(&b"nginx"[..]));
        assert_eq!(get(&b, Buffer::HttpHeaderRaw), Some(&head[24..]));
        assert_eq!(get(&b, Buffer::HttpLocation), None);
        assert_eq!(get(&b, Buffer::HttpResponseLine), Some(&b"HTTP/1.1 404 Not Found"[..]));
        assert_eq!(get(&b, Buffer::HttpStatCode), Some(&b"404"[..]));
        assert_eq!(get(&b, Buffer::HttpStatMsg), Some(&b"Not Found"[..]));
        assert_eq!(get(&b, Buffer::HttpCookie), Some(&b"id=2"[..]));
        assert_eq!(get(&b, Buffer::HttpHeader), Some(&b"Content-Type: text/html\r\nServer: nginx\r\n"[..]));
        assert_eq!((get(&b, Buffer::HttpUri), get(&b, Buffer::HttpHost)), (None, None));
        // Reused for the next message: nothing of this one stays.
        let head: &[u8] = b"HTTP/1.0 200\r\n\r\n";
        let Parse::Done(parsed) = response_head(head, false) else { panic!() };
        assert_eq!(parsed.head_len, head.len());
        f.response(head, false);
        let b = f.buffers();
        assert_eq!((get(&b, Buffer::HttpStatCode), get(&b, Buffer::HttpStatMsg)), (Some(&b"200"[..]), Some(&b""[..])));
        assert_eq!((get(&b, Buffer::HttpHeader), get(&b, Buffer::HttpHeaderNames)), (None, Some(&b"\r\n\r\n"[..])));
    }
}
