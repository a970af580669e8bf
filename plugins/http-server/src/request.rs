//! The HTTP/1.1 request-head parser (RFC 9112 sections 2 to 3 and 6 to 9): finds the end of a head
//! in buffered client bytes, checks the request line and the header fields, and pulls out what
//! the server acts on (method, target, version, persistence, body framing).
//!
//! It is strict where leniency would let a request mean two things (bare CR, obs-fold, space
//! before a colon, conflicting `Content-Length`s, a missing `Host` in HTTP/1.1) and lenient
//! where RFC 9112 allows it (bare LF line ends, empty lines before the request line). Nothing is
//! allocated: the result borrows the buffer.

/// Longest request head accepted, from the first byte (empty lines before the request line
/// included) to the blank line that ends it inclusive. A longer one is refused (400).
pub const HEAD_MAX: usize = 8 * 1024;

/// The methods the server tells apart; every other one is answered 405.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Other,
}

/// A parsed request head, borrowing the bytes it was parsed from.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub method: Method,
    /// The request-target as sent (not decoded): origin-form `/path?query`, absolute-form,
    /// `*`...
    pub target: &'a [u8],
    /// The minor version of HTTP/1.x: 0 for HTTP/1.0, 1 (or more) for HTTP/1.1.
    pub minor: u8,
    /// The connection persists after this request (RFC 9112 section 9.3): HTTP/1.1 unless
    /// `Connection: close`, HTTP/1.0 only with `Connection: keep-alive`.
    pub keep_alive: bool,
    /// The declared `Content-Length` (0 when absent): body bytes that follow the head.
    pub content_length: u64,
    /// A `Transfer-Encoding` field was present (the body's length is then not known here).
    pub transfer_encoding: bool,
}

/// Why a head was refused; every one is answered 400.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// No end of head within [`HEAD_MAX`] bytes.
    TooLong,
    /// The request line is not `method SP target SP HTTP/d.d`.
    RequestLine,
    /// An HTTP version other than 1.x.
    Version,
    /// A header line without a colon, with a bad name, with control characters, or folded.
    Header,
    /// A CR not followed by LF.
    BareCr,
    /// A `Content-Length` that is not a number, or several that differ.
    ContentLength,
    /// HTTP/1.1 without exactly one `Host` field (RFC 9112 section 3.2).
    Host,
}

/// What [`parse`] found at the start of a buffer.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Parse<'a> {
    /// No complete head yet: wait for more bytes.
    Incomplete,
    /// A head of `len` bytes (the body, if any, follows them).
    Complete { request: Request<'a>, len: usize },
    /// A head that cannot be served: answer 400 and close.
    Invalid(Error),
}

/// Parses the request head at the start of `buf`.
///
/// `scanned` carries, between calls on the same growing buffer, how far the search for the
/// head's end got, so that a head arriving a byte at a time is not searched from the start
/// every time; start it at 0 and reset it to 0 whenever bytes are taken off the buffer's front.
pub fn parse<'a>(buf: &'a [u8], scanned: &mut usize) -> Parse<'a> {
    let Some(end) = head_end(buf, scanned) else {
        return if buf.len() >= HEAD_MAX { Parse::Invalid(Error::TooLong) } else { Parse::Incomplete };
    };
    match parse_head(&buf[..end]) {
        Ok(request) => Parse::Complete { request, len: end },
        Err(e) => Parse::Invalid(e),
    }
}

/// The length of the head at the start of `buf` (through its blank line), if it is there within
/// [`HEAD_MAX`] bytes.
fn head_end(buf: &[u8], scanned: &mut usize) -> Option<usize> {
    let window = &buf[..buf.len().min(HEAD_MAX)];
    // Empty lines before the request line are skipped (RFC 9112 section 2.2); they are not
    // the blank line that ends a head.
    let start = leading_empty_lines(window);
    // A match ends at most 3 bytes past where the last search stopped: look again from there.
    let mut i = (*scanned).max(start);
    while i < window.len() {
        if window[i] == b'\n' {
            match (window.get(i + 1), window.get(i + 2)) {
                (Some(b'\n'), _) => return Some(i + 2),
                (Some(b'\r'), Some(b'\n')) => return Some(i + 3),
                (None, _) | (Some(b'\r'), None) => break,
                _ => {}
            }
        }
        i += 1;
    }
    *scanned = i;
    None
}

/// Bytes of CRLF or LF lines at the start of `buf`.
fn leading_empty_lines(buf: &[u8]) -> usize {
    let mut i = 0;
    loop {
        match buf.get(i..) {
            Some([b'\n', ..]) => i += 1,
            Some([b'\r', b'\n', ..]) => i += 2,
            _ => return i,
        }
    }
}

/// Parses a whole head (`head` ends with its blank line).
fn parse_head(head: &[u8]) -> Result<Request<'_>, Error> {
    let head = &head[leading_empty_lines(head)..];
    let mut lines = Lines { rest: head };
    let line = lines.next().ok_or(Error::RequestLine)??;
    let (method, target, minor) = request_line(line)?;
    let mut request = Request { method, target, minor, keep_alive: false, content_length: 0, transfer_encoding: false };
    let (mut close, mut keep) = (false, false);
    let mut content_length: Option<u64> = None;
    let mut hosts = 0u32;
    for line in lines {
        let line = line?;
        if line.is_empty() {
            break; // the blank line that ends the head
        }
        let (name, value) = field(line)?;
        if name.eq_ignore_ascii_case(b"content-length") {
            // A list of identical values is accepted, different values are not (RFC 9110
            // section 8.6): two lengths would let a proxy and this server disagree.
            let mut items = 0;
            for item in list_items(value) {
                let n = decimal(item).ok_or(Error::ContentLength)?;
                if content_length.is_some_and(|c| c != n) {
                    return Err(Error::ContentLength);
                }
                content_length = Some(n);
                items += 1;
            }
            if items == 0 {
                return Err(Error::ContentLength);
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            request.transfer_encoding = true;
        } else if name.eq_ignore_ascii_case(b"connection") {
            for option in list_items(value) {
                close |= option.eq_ignore_ascii_case(b"close");
                keep |= option.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
        }
    }
    if minor >= 1 && hosts != 1 {
        return Err(Error::Host);
    }
    request.content_length = content_length.unwrap_or(0);
    request.keep_alive = !close && (minor >= 1 || keep);
    Ok(request)
}

/// The lines of a head, without their LF or CRLF; a CR anywhere else is an error.
struct Lines<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Lines<'a> {
    type Item = Result<&'a [u8], Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let (line, rest) = match self.rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&self.rest[..i], &self.rest[i + 1..]),
            None => (self.rest, &[][..]),
        };
        self.rest = rest;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        Some(if line.contains(&b'\r') { Err(Error::BareCr) } else { Ok(line) })
    }
}

/// `method SP request-target SP HTTP-version`, with single spaces (RFC 9112 section 3).
fn request_line(line: &[u8]) -> Result<(Method, &[u8], u8), Error> {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(Error::RequestLine);
    };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(Error::RequestLine);
    }
    if target.is_empty() || !target.iter().all(|&b| (0x21..0x7f).contains(&b)) {
        return Err(Error::RequestLine);
    }
    let minor = match version {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor] if major.is_ascii_digit() && minor.is_ascii_digit() => {
            if *major != b'1' {
                return Err(Error::Version);
            }
            minor - b'0'
        }
        _ => return Err(Error::RequestLine),
    };
    // Method names are case-sensitive (RFC 9110 section 9.1): `get` is not GET.
    let method = match method {
        b"GET" => Method::Get,
        b"HEAD" => Method::Head,
        _ => Method::Other,
    };
    Ok((method, target, minor))
}

/// `field-name ":" OWS field-value OWS` (RFC 9112 section 5).
fn field(line: &[u8]) -> Result<(&[u8], &[u8]), Error> {
    // A line that begins with whitespace continues the previous one (obs-fold): refused, as
    // RFC 9112 section 5.2 allows, rather than guessed at.
    let colon = line.iter().position(|&b| b == b':').ok_or(Error::Header)?;
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    // No whitespace between the name and the colon (section 5.1), which also rules out folds.
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(Error::Header);
    }
    if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(Error::Header);
    }
    Ok((name, trim(value)))
}

/// The non-empty items of a comma-separated list, trimmed.
fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim).filter(|item| !item.is_empty())
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// `1*DIGIT` as a u64; None when empty, not digits, or too large.
fn decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |n, &b| if b.is_ascii_digit() { n.checked_mul(10)?.checked_add(u64::from(b - b'0')) } else { None })
}

/// A character of a token (RFC 9110 section 5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(buf: &[u8]) -> Parse<'_> {
        parse(buf, &mut 0)
    }

    fn complete(buf: &[u8]) -> (Request<'_>, usize) {
        match parse_all(buf) {
            Parse::Complete { request, len } => (request, len),
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    fn invalid(buf: &[u8]) -> Error {
        match parse_all(buf) {
            Parse::Invalid(e) => e,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    const GET: &[u8] = b"GET /a/b.html?x=1 HTTP/1.1\r\nHost: example\r\nUser-Agent: t\r\n\r\n";

    #[test]
    fn a_simple_get_parses() {
        let (r, len) = complete(GET);
        assert_eq!(len, GET.len());
        assert_eq!((r.method, r.target, r.minor, r.keep_alive), (Method::Get, &b"/a/b.html?x=1"[..], 1, true));
        assert_eq!((r.content_length, r.transfer_encoding), (0, false));
    }

    #[test]
    fn every_split_point_is_incomplete_until_the_last_byte_with_or_without_a_resumed_search() {
        for head in [GET, b"HEAD / HTTP/1.0\n\n".as_slice(), b"\r\n\nGET / HTTP/1.0\r\nA: b\n\r\n".as_slice()] {
            let mut scanned = 0;
            for cut in 0..head.len() {
                assert_eq!(parse(&head[..cut], &mut 0), Parse::Incomplete, "cut at {cut}");
                // The same buffer growing a byte at a time, with the search resumed.
                assert_eq!(parse(&head[..cut], &mut scanned), Parse::Incomplete, "resumed at {cut}");
            }
            let Parse::Complete { len, .. } = parse(head, &mut scanned) else { panic!("{head:?}") };
            assert_eq!(len, head.len());
        }
    }

    #[test]
    fn pipelined_heads_are_found_one_after_another() {
        let two = [GET, b"HEAD /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\nGET /tail"].concat();
        let (first, len) = complete(&two);
        assert_eq!((first.method, len), (Method::Get, GET.len()));
        let (second, len2) = complete(&two[len..]);
        assert_eq!((second.method, second.target, second.keep_alive), (Method::Head, &b"/x"[..], false));
        assert_eq!(parse_all(&two[len + len2..]), Parse::Incomplete);
    }

    #[test]
    fn bare_lf_and_leading_empty_lines_are_accepted() {
        let (r, len) = complete(b"\r\n\nGET /x HTTP/1.1\nHost: h\n\nrest");
        assert_eq!((r.target, len), (&b"/x"[..], 28));
    }

    #[test]
    fn bad_request_lines_are_refused() {
        for line in [
            &b"GET /\r\n\r\n"[..],
            b"GET  / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1 \r\n\r\n",
            b"GET / HTTP/1.1 x\r\n\r\n",
            b" GET / HTTP/1.1\r\n\r\n",
            b"GET / http/1.1\r\n\r\n",
            b"GET / HTTP/1\r\n\r\n",
            b"GET / HTTP/1.10\r\n\r\n",
            b"G(T / HTTP/1.1\r\n\r\n",
            b"GET /\x01 HTTP/1.1\r\n\r\n",
            b"GET /\xff HTTP/1.1\r\n\r\n",
            b"GET\t/ HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(invalid(line), Error::RequestLine, "{:?}", String::from_utf8_lossy(line));
        }
        assert_eq!(invalid(b"GET / HTTP/2.0\r\n\r\n"), Error::Version);
        assert_eq!(invalid(b"GET / HTTP/1.1\rX\r\nHost: h\r\n\r\n"), Error::BareCr);
    }

    #[test]
    fn bad_header_fields_are_refused() {
        for head in [
            &b"GET / HTTP/1.1\r\nHost: h\r\nNo colon\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost : h\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n folded\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\n: empty name\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\x00\r\n\r\n",
        ] {
            assert_eq!(invalid(head), Error::Header, "{:?}", String::from_utf8_lossy(head));
        }
        assert_eq!(invalid(b"GET / HTTP/1.1\r\n\r\n"), Error::Host);
        assert_eq!(invalid(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), Error::Host);
        // HTTP/1.0 needs no Host.
        assert!(matches!(parse_all(b"GET / HTTP/1.0\r\n\r\n"), Parse::Complete { .. }));
    }

    #[test]
    fn heads_longer_than_the_bound_are_refused_and_one_at_the_bound_is_not() {
        let start = b"GET / HTTP/1.1\r\nHost: h\r\nX: ";
        let fill = |total: usize| {
            let mut v = start.to_vec();
            v.resize(total - 4, b'a');
            v.extend_from_slice(b"\r\n\r\n");
            v
        };
        let exact = fill(HEAD_MAX);
        assert_eq!(complete(&exact).1, HEAD_MAX);
        let over = fill(HEAD_MAX + 1);
        assert_eq!(parse_all(&over[..HEAD_MAX - 1]), Parse::Incomplete);
        assert_eq!(invalid(&over), Error::TooLong);
        assert_eq!(invalid(&over[..HEAD_MAX]), Error::TooLong, "refused as soon as the bound is reached");
        assert_eq!(invalid(&[b'\n'; HEAD_MAX]), Error::TooLong, "empty lines count too");
    }

    #[test]
    fn keep_alive_follows_the_version_and_the_connection_field() {
        let ka = |head: &[u8]| complete(head).0.keep_alive;
        assert!(ka(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"));
        assert!(!ka(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"));
        assert!(!ka(b"GET / HTTP/1.1\r\nHost: h\r\nconnection: Upgrade, CLOSE\r\n\r\n"));
        assert!(!ka(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(ka(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
        assert!(!ka(b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"));
        assert_eq!(complete(b"GET / HTTP/1.0\r\n\r\n").0.minor, 0);
    }

    #[test]
    fn body_framing_is_read_and_checked() {
        let r = complete(b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\n\r\n").0;
        assert_eq!((r.content_length, r.transfer_encoding), (12, false));
        let r = complete(b"GET / HTTP/1.1\r\nHost: h\r\ncontent-length: 5, 5\r\nContent-Length:5\r\n\r\n").0;
        assert_eq!(r.content_length, 5);
        let r = complete(b"GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n").0;
        assert!(r.transfer_encoding);
        for bad in [&b"5, 6"[..], b"-1", b"0x10", b"", b"99999999999999999999", b"1 2"] {
            let head = [&b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: "[..], bad, b"\r\n\r\n"].concat();
            assert_eq!(invalid(&head), Error::ContentLength, "{:?}", String::from_utf8_lossy(bad));
        }
        let head = b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n";
        assert_eq!(invalid(head), Error::ContentLength);
    }

    #[test]
    fn methods_are_case_sensitive() {
        assert_eq!(complete(b"get / HTTP/1.0\r\n\r\n").0.method, Method::Other);
        assert_eq!(complete(b"POST / HTTP/1.0\r\n\r\n").0.method, Method::Other);
        assert_eq!(complete(b"HEAD / HTTP/1.0\r\n\r\n").0.method, Method::Head);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic fuzz: every prefix of many pseudo-random heads.
        let mut x = 0x1234_5678u32;
        let alphabet = b"GETHAD /\r\n:1.HTP\t,ck-";
        for _ in 0..300 {
            let mut buf = Vec::new();
            for _ in 0..64 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                buf.push(alphabet[(x as usize) % alphabet.len()]);
            }
            let mut scanned = 0;
            for cut in 0..=buf.len() {
                let _ = parse(&buf[..cut], &mut scanned);
                let _ = parse(&buf[..cut], &mut 0);
            }
        }
    }
}
