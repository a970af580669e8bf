//! The request head a client sends first, parsed (by httparse) into what the rules look at: the
//! host without its port, the path without its query, and the headers, all as slices of the
//! client's bytes.

pub use httparse::{Header, EMPTY_HEADER};
use std::fmt;

/// Why the start of a client's stream is not a request this NF routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadRequest {
    /// Not an HTTP/1.x request head (httparse's reason), or more headers than the scratch holds.
    NotHttp(httparse::Error),
    /// No complete head within the limit.
    TooLong { limit: usize },
    /// A request target that is neither a path (`/p`), `*`, nor an `http://` or `https://`
    /// URI (a `CONNECT`'s `host:port`, say).
    Target,
    /// More than one Host header (RFC 9112, 3.2: answered with 400, since proxies on the way
    /// may each have read another one).
    DuplicateHost,
}

impl fmt::Display for BadRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadRequest::NotHttp(e) => write!(f, "not an HTTP/1.x request: {e}"),
            BadRequest::TooLong { limit } => write!(f, "no complete request head within {limit} bytes"),
            BadRequest::Target => f.write_str("the request target is not a path or an http(s) URI"),
            BadRequest::DuplicateHost => f.write_str("more than one Host header"),
        }
    }
}

impl std::error::Error for BadRequest {}

/// A request head: slices of the buffer it was parsed from.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    method: &'a [u8],
    /// The authority of an absolute-form target, else the Host header; without a `:port`.
    host: Option<&'a [u8]>,
    /// The target's path, before any `?` or `#`; `*` for an asterisk-form target.
    path: &'a [u8],
    headers: &'a [Header<'a>],
    head_len: usize,
}

impl<'a> Request<'a> {
    pub fn method(&self) -> &'a [u8] {
        self.method
    }

    /// The host the request is for, without a port; `None` when it names none (an HTTP/1.0
    /// request without Host, or an empty Host).
    pub fn host(&self) -> Option<&'a [u8]> {
        self.host
    }

    pub fn path(&self) -> &'a [u8] {
        self.path
    }

    /// The value of the first header called `name` (any case), without surrounding blanks.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.header_values(name).next()
    }

    /// The values of every header called `name` (any case), in order.
    pub fn header_values<'n>(&self, name: &'n str) -> impl Iterator<Item = &'a [u8]> + use<'a, 'n> {
        let headers = self.headers;
        headers.iter().filter(move |h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value.trim_ascii())
    }

    /// Bytes of the head, blank line included: what follows is the body (or the next request).
    pub fn head_len(&self) -> usize {
        self.head_len
    }
}

/// Parses the start of a client's stream. `Ok(Some(request))` once a whole head is in `buf`;
/// `Ok(None)` while it may still come, that is while `buf` is shorter than `limit`; `Err` for
/// what is not an HTTP/1.x request, a head longer than `limit` (whether or not it is all in
/// `buf`, so that the answer does not depend on how the bytes arrived), or more headers than
/// `headers` holds. Nothing is allocated.
pub fn parse_request<'a>(buf: &'a [u8], limit: usize, headers: &'a mut [Header<'a>]) -> Result<Option<Request<'a>>, BadRequest> {
    let mut req = httparse::Request::new(headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n <= limit => n,
        Ok(httparse::Status::Complete(_)) => return Err(BadRequest::TooLong { limit }),
        Ok(httparse::Status::Partial) if buf.len() < limit => return Ok(None),
        Ok(httparse::Status::Partial) => return Err(BadRequest::TooLong { limit }),
        Err(e) => return Err(BadRequest::NotHttp(e)),
    };
    // A complete head always has its method and target; the fallbacks only keep this panic-free.
    let (Some(method), Some(target)) = (req.method, req.path) else { return Err(BadRequest::Target) };
    let headers: &'a [Header<'a>] = req.headers;
    let (authority, path) = split_target(target.as_bytes())?;
    let mut hosts = headers.iter().filter(|h| h.name.eq_ignore_ascii_case("host"));
    let host_header = hosts.next().map(|h| h.value.trim_ascii());
    if hosts.next().is_some() {
        return Err(BadRequest::DuplicateHost);
    }
    // RFC 9112, 3.2.2: an absolute-form target's authority wins over the Host header.
    let host = authority.or(host_header).map(without_port).filter(|h| !h.is_empty());
    Ok(Some(Request { method: method.as_bytes(), host, path, headers, head_len }))
}

/// An absolute-form target's authority (without userinfo), and the path of any target.
fn split_target(target: &[u8]) -> Result<(Option<&[u8]>, &[u8]), BadRequest> {
    if target.first() == Some(&b'/') || target == b"*" {
        return Ok((None, path_of(target)));
    }
    let rest =
        strip_prefix_ignore_case(target, b"http://").or_else(|| strip_prefix_ignore_case(target, b"https://")).ok_or(BadRequest::Target)?;
    let end = rest.iter().position(|&b| matches!(b, b'/' | b'?' | b'#')).unwrap_or(rest.len());
    let authority = &rest[..end];
    let authority = authority.iter().rposition(|&b| b == b'@').map_or(authority, |at| &authority[at + 1..]);
    let path = path_of(&rest[end..]);
    // `http://h` and `http://h?q` ask for the root.
    Ok((Some(authority), if path.is_empty() { b"/" } else { path }))
}

/// The path part of a target (or of what follows an authority): before any `?` or `#`.
fn path_of(t: &[u8]) -> &[u8] {
    let end = t.iter().position(|&b| b == b'?' || b == b'#').unwrap_or(t.len());
    &t[..end]
}

fn strip_prefix_ignore_case<'a>(s: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)).then(|| &s[prefix.len()..])
}

/// `host` without a `:port` suffix (`[v6]:port` keeps its brackets).
pub fn without_port(host: &[u8]) -> &[u8] {
    if host.first() == Some(&b'[') {
        return match host.iter().position(|&b| b == b']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.iter().rposition(|&b| b == b':') {
        Some(colon) if host[colon + 1..].iter().all(u8::is_ascii_digit) => &host[..colon],
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(buf: &[u8], f: impl FnOnce(Result<Option<Request<'_>>, BadRequest>)) {
        let mut headers = [EMPTY_HEADER; 16];
        f(parse_request(buf, 1024, &mut headers));
    }

    #[test]
    fn a_complete_head_gives_host_path_and_headers() {
        let buf = b"GET /api/v1?x=1 HTTP/1.1\r\nHost: Img.Example:8080\r\nX-Tenant:  blue \r\nx-tenant: red\r\n\r\nbody";
        parse(buf, |r| {
            let r = r.unwrap().unwrap();
            assert_eq!(r.method(), b"GET");
            assert_eq!(r.host(), Some(&b"Img.Example"[..]));
            assert_eq!(r.path(), b"/api/v1");
            assert_eq!(r.header("X-TENANT"), Some(&b"blue"[..]));
            assert_eq!(r.header_values("x-tenant").collect::<Vec<_>>(), [&b"blue"[..], b"red"]);
            assert_eq!(r.header("missing"), None);
            assert_eq!(r.head_len(), buf.len() - 4);
        });
    }

    #[test]
    fn targets_in_every_form() {
        let check = |buf: &str, host: Option<&str>, path: &str| {
            parse(buf.as_bytes(), |r| {
                let r = r.unwrap().unwrap();
                assert_eq!((r.host(), r.path()), (host.map(str::as_bytes), path.as_bytes()), "{buf}");
            })
        };
        check("GET http://a.example:81/p/q?z HTTP/1.1\r\nHost: other\r\n\r\n", Some("a.example"), "/p/q");
        check("GET HTTPS://u:pw@b.example HTTP/1.1\r\n\r\n", Some("b.example"), "/");
        check("GET http://c.example?q HTTP/1.1\r\n\r\n", Some("c.example"), "/");
        check("OPTIONS * HTTP/1.1\r\nHost: [2001:db8::1]:8080\r\n\r\n", Some("[2001:db8::1]"), "*");
        check("GET /x HTTP/1.0\r\n\r\n", None, "/x");
        check("GET /x HTTP/1.1\r\nHost:\r\n\r\n", None, "/x");
        check("GET /a#frag HTTP/1.1\r\nHost: h:\r\n\r\n", Some("h"), "/a");
    }

    #[test]
    fn partial_heads_wait_and_garbage_is_refused() {
        for partial in [&b""[..], b"GE", b"GET / HTTP/1.1\r\n", b"GET / HTTP/1.1\r\nHost: a\r\n"] {
            parse(partial, |r| assert_eq!(r.unwrap().map(|r| r.path().to_vec()), None));
        }
        for garbage in
            [&b"\x16\x03\x01\x02\x00\x01\x00"[..], b"SSH-2.0-OpenSSH_9.6\r\n", b"GET / HTTP/2.0\r\n\r\n", b"GET /a b HTTP/1.1\r\n\r\n"]
        {
            parse(garbage, |r| assert!(matches!(r, Err(BadRequest::NotHttp(_))), "{garbage:?}"));
        }
        parse(b"CONNECT a.example:443 HTTP/1.1\r\n\r\n", |r| assert_eq!(r.unwrap_err(), BadRequest::Target));
        parse(b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", |r| assert_eq!(r.unwrap_err(), BadRequest::DuplicateHost));
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "A: b\r\n".repeat(17));
        parse(many.as_bytes(), |r| assert_eq!(r.unwrap_err(), BadRequest::NotHttp(httparse::Error::TooManyHeaders)));
    }

    #[test]
    fn heads_over_the_limit_are_refused_however_they_arrive() {
        let head = format!("GET / HTTP/1.1\r\nCookie: {}\r\n\r\n", "x".repeat(100));
        let limit = head.len() - 1;
        let mut headers = [EMPTY_HEADER; 4];
        assert_eq!(parse_request(head.as_bytes(), limit, &mut headers).unwrap_err(), BadRequest::TooLong { limit });
        let mut headers = [EMPTY_HEADER; 4];
        assert_eq!(parse_request(&head.as_bytes()[..limit], limit, &mut headers).unwrap_err(), BadRequest::TooLong { limit });
        let mut headers = [EMPTY_HEADER; 4];
        assert!(parse_request(&head.as_bytes()[..limit - 1], limit, &mut headers).unwrap().is_none());
        let mut headers = [EMPTY_HEADER; 4];
        assert!(parse_request(head.as_bytes(), head.len(), &mut headers).unwrap().is_some());
    }
}
