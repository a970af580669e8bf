//! What HTTP says a shared cache may do (RFC 9111, the part this cache implements): which
//! requests it may answer, which responses it may store and for how long, and the head a hit
//! sends.

use httparse::{Header, Request, Response, Status, EMPTY_HEADER};

/// Headers a head may have; more is not cached.
const MAX_HEADERS: usize = 64;

/// A complete request head, as the cache decides on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestView {
    /// Bytes of the head, blank line included.
    pub head_len: usize,
    pub kind: RequestKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestKind {
    /// A GET the store may answer (`key` names it) and that may be stored (`refresh`: the
    /// client asked for a fresh copy, so the store is not read but may be filled).
    Cacheable { key: Vec<u8>, refresh: bool },
    /// Neither answered from nor stored (another method, credentials, a range, no-store).
    Bypass,
}

/// Parses the request head at the start of `buf`: `None` while it is incomplete (or longer
/// than `max_head`, then `Err`), `Err` when it is not HTTP.
pub fn request(buf: &[u8], max_head: usize) -> Result<Option<RequestView>, ()> {
    let mut headers = [EMPTY_HEADER; MAX_HEADERS];
    let mut req = Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(Status::Complete(n)) => n,
        Ok(Status::Partial) if buf.len() < max_head => return Ok(None),
        _ => return Err(()),
    };
    let (Some(method), Some(target)) = (req.method, req.path) else { return Err(()) };
    let has = |name: &str| req.headers.iter().any(|h| h.name.eq_ignore_ascii_case(name));
    let directives = |name: &'static str| directives_of(req.headers, name);
    let no_store = directives("cache-control").any(|(d, _)| d.eq_ignore_ascii_case(b"no-store"));
    let host = req.headers.iter().find(|h| h.name.eq_ignore_ascii_case("host")).map(|h| h.value);
    let kind = match host {
        // RFC 9110 15.4: the method that a cache stores is GET; a Host is the key's half.
        Some(host) if method == "GET" && !has("authorization") && !has("range") && !no_store => {
            let refresh = directives("cache-control").any(|(d, _)| d.eq_ignore_ascii_case(b"no-cache"))
                || directives("pragma").any(|(d, _)| d.eq_ignore_ascii_case(b"no-cache"));
            RequestKind::Cacheable { key: cache_key(host, target.as_bytes()), refresh }
        }
        _ => RequestKind::Bypass,
    };
    Ok(Some(RequestView { head_len, kind }))
}

/// The store's key: the Host (lowercase, without a default port) and the target as sent.
pub fn cache_key(host: &[u8], target: &[u8]) -> Vec<u8> {
    let host = host.trim_ascii();
    let host = host.strip_suffix(b":80").unwrap_or(host);
    let mut key = Vec::with_capacity(host.len() + 1 + target.len());
    key.extend(host.iter().map(u8::to_ascii_lowercase));
    key.push(b' ');
    key.extend_from_slice(target);
    key
}

/// A response head the store may keep: where it ends, how its body is framed, for how long
/// it is fresh, and the head a hit sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Storable {
    pub head_len: usize,
    pub body: mbox_proto::http::BodyLength,
    pub fresh_for_ns: u64,
    /// The head for the client: hop-by-hop headers gone, `Connection: close` (a hit is
    /// answered by mbox, which closes once it is sent).
    pub client_head: Vec<u8>,
}

/// Why a response is not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStorable {
    /// Not a complete head yet.
    Partial,
    /// Not HTTP, or more headers than kept.
    Invalid,
    /// A status other than 200, no-store, private, no-cache, Set-Cookie, Vary on more than
    /// Host, an Expires without max-age (not read), or a body delimited by the close.
    Refused,
}

/// Decides on the response head at the start of `buf`; `default_ttl_ns` is the freshness of
/// a 200 that states none (Cache-Control max-age or s-maxage).
pub fn response(buf: &[u8], default_ttl_ns: u64) -> Result<Storable, NotStorable> {
    let mut headers = [EMPTY_HEADER; MAX_HEADERS];
    let mut res = Response::new(&mut headers);
    let head_len = match res.parse(buf) {
        Ok(Status::Complete(n)) => n,
        Ok(Status::Partial) => return Err(NotStorable::Partial),
        Err(_) => return Err(NotStorable::Invalid),
    };
    if res.code != Some(200) {
        return Err(NotStorable::Refused);
    }
    let headers: &[Header<'_>] = res.headers;
    let has = |name: &str| headers.iter().any(|h| h.name.eq_ignore_ascii_case(name));
    let mut max_age = None;
    let mut s_maxage = None;
    for (d, value) in directives_of(headers, "cache-control") {
        let seconds = || value.and_then(|v| std::str::from_utf8(v).ok()).and_then(|v| v.trim_matches('"').parse::<u64>().ok());
        if [&b"no-store"[..], b"private", b"no-cache"].iter().any(|r| d.eq_ignore_ascii_case(r)) {
            return Err(NotStorable::Refused);
        } else if d.eq_ignore_ascii_case(b"max-age") {
            max_age = seconds();
        } else if d.eq_ignore_ascii_case(b"s-maxage") {
            s_maxage = seconds();
        }
    }
    // Vary on anything but Host would need the request's headers in the key.
    if directives_of(headers, "vary").any(|(d, _)| !d.eq_ignore_ascii_case(b"host")) || has("set-cookie") {
        return Err(NotStorable::Refused);
    }
    // s-maxage is for shared caches and wins (RFC 9111 5.2.2.10); an Expires alone is not
    // read (a date parser for one header), so such a response is not stored.
    let stated = s_maxage.or(max_age);
    if stated.is_none() && has("expires") {
        return Err(NotStorable::Refused);
    }
    let fresh_for_ns = stated.map_or(default_ttl_ns, |s| s.saturating_mul(1_000_000_000));
    let body = match mbox_proto::http::response_head(buf, false) {
        mbox_proto::Parse::Done(head) => head.body,
        _ => return Err(NotStorable::Invalid),
    };
    if body == mbox_proto::http::BodyLength::UntilClose || fresh_for_ns == 0 {
        return Err(NotStorable::Refused);
    }
    Ok(Storable { head_len, body, fresh_for_ns, client_head: client_head(&buf[..head_len], headers) })
}

/// Headers that describe one connection, not the response (RFC 9110 7.6.1): not sent on.
const HOP_BY_HOP: [&str; 6] = ["connection", "keep-alive", "proxy-connection", "te", "upgrade", "trailer"];

/// `head` with its hop-by-hop headers (and those its Connection header names) left out and
/// `Connection: close` added.
fn client_head(head: &[u8], headers: &[Header<'_>]) -> Vec<u8> {
    let named: Vec<&[u8]> = directives_of(headers, "connection").map(|(d, _)| d).collect();
    let status_line_end = head.iter().position(|&b| b == b'\n').map_or(head.len(), |i| i + 1);
    let mut out = Vec::with_capacity(head.len() + 19);
    out.extend_from_slice(&head[..status_line_end]);
    for h in headers {
        let dropped =
            HOP_BY_HOP.iter().any(|n| h.name.eq_ignore_ascii_case(n)) || named.iter().any(|n| n.eq_ignore_ascii_case(h.name.as_bytes()));
        if !dropped {
            out.extend_from_slice(h.name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(h.value);
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out
}

/// The comma-separated directives of every `name` header, each as (name, value after `=`).
fn directives_of<'h>(headers: &'h [Header<'_>], name: &'static str) -> impl Iterator<Item = (&'h [u8], Option<&'h [u8]>)> + 'h {
    headers.iter().filter(move |h| h.name.eq_ignore_ascii_case(name)).flat_map(|h| h.value.split(|&b| b == b',')).filter_map(|d| {
        let d = d.trim_ascii();
        if d.is_empty() {
            return None;
        }
        Some(match d.iter().position(|&b| b == b'=') {
            Some(eq) => (d[..eq].trim_ascii(), Some(d[eq + 1..].trim_ascii())),
            None => (d, None),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mbox_proto::http::BodyLength;

    const S: u64 = 1_000_000_000;

    fn kind(req: &str) -> RequestKind {
        request(req.as_bytes(), 16 << 10).unwrap().unwrap().kind
    }

    #[test]
    fn gets_with_a_host_are_cacheable_and_keyed_by_host_and_target() {
        let k = kind("GET /a?b=1 HTTP/1.1\r\nHost: WWW.Example:80\r\n\r\n");
        assert_eq!(k, RequestKind::Cacheable { key: b"www.example /a?b=1".to_vec(), refresh: false });
        let k = kind("GET /a HTTP/1.1\r\nHost: x\r\nCache-Control: max-age=0, no-cache\r\n\r\n");
        assert_eq!(k, RequestKind::Cacheable { key: b"x /a".to_vec(), refresh: true });
        assert!(matches!(kind("GET / HTTP/1.0\r\nHost: x\r\nPragma: no-cache\r\n\r\n"), RequestKind::Cacheable { refresh: true, .. }));
        for bypass in [
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
            "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Basic eA==\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nCache-Control: no-store\r\n\r\n",
            "GET / HTTP/1.0\r\n\r\n",
        ] {
            assert_eq!(kind(bypass), RequestKind::Bypass, "{bypass}");
        }
        assert_eq!(request(b"GET / HTTP/1.1\r\nHost:", 1024), Ok(None));
        assert_eq!(request(b"GET / HTTP/1.1\r\nHost:", 10), Err(()), "longer than max_head");
        assert_eq!(request(b"\x16\x03\x01 not http\r\n\r\n", 1024), Err(()));
    }

    #[test]
    fn a_plain_200_is_stored_for_the_default_time_with_a_closing_head() {
        let head = "HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 5\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nETag: \"x\"\r\n\r\n";
        let s = response(format!("{head}hello").as_bytes(), 60 * S).unwrap();
        assert_eq!((s.head_len, s.body, s.fresh_for_ns), (head.len(), BodyLength::Length(5), 60 * S));
        assert_eq!(
            String::from_utf8(s.client_head).unwrap(),
            "HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 5\r\nETag: \"x\"\r\nConnection: close\r\n\r\n"
        );
        let chunked =
            response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nCache-Control: public, max-age=7\r\n\r\n", 60 * S).unwrap();
        assert_eq!((chunked.body, chunked.fresh_for_ns), (BodyLength::Chunked, 7 * S));
        let shared = response(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nCache-Control: max-age=7, s-maxage=9\r\n\r\n", 0).unwrap();
        assert_eq!(shared.fresh_for_ns, 9 * S, "s-maxage wins for a shared cache");
        assert!(response(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nVary: Host\r\n\r\n", S).is_ok());
    }

    #[test]
    fn what_a_shared_cache_must_not_store_is_refused() {
        for refused in [
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nCache-Control: no-store\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nCache-Control: private, max-age=60\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nCache-Control: no-cache\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nCache-Control: max-age=0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nVary: Accept-Encoding\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nSet-Cookie: a=b\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nExpires: Thu, 01 Dec 1994 16:00:00 GMT\r\n\r\n",
            "HTTP/1.1 200 OK\r\n\r\n",
        ] {
            assert_eq!(response(refused.as_bytes(), 60 * S), Err(NotStorable::Refused), "{refused}");
        }
        assert_eq!(response(b"HTTP/1.1 200 OK\r\nContent-Le", S), Err(NotStorable::Partial));
        assert_eq!(response(b"SSH-2.0-OpenSSH\r\n\r\n", S), Err(NotStorable::Invalid));
    }
}
