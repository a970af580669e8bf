//! Gzip transcoding of a response on its way to the client: whether a response is one to
//! compress, its head rewritten for the compressed body (chunked framing, `Content-Encoding:
//! gzip`, `Vary: Accept-Encoding`, a strong ETag made weak), and its body compressed as it
//! streams (flate2), each piece of output sent as a chunk.

use crate::request::Request;
use flate2::write::GzEncoder;
use flate2::Compression;
use std::io::Write;

/// Which responses are compressed, and how hard.
#[derive(Debug, Clone)]
pub struct GzipConfig {
    /// flate2's level, 1 (fastest) to 9 (smallest).
    pub level: u32,
    /// Content types compressed: a type ending in `/` is a prefix (`text/`), any other exact
    /// (parameters such as `; charset=` aside).
    pub types: Vec<String>,
    /// Bodies known to be shorter than this are passed as they are (gzip's 18 bytes of
    /// framing would make them longer).
    pub min_size: u64,
    /// Responses compressed at once per NF at most (each compressor holds about 300 KiB);
    /// past it responses pass as they are, counted.
    pub max_streams: usize,
}

impl Default for GzipConfig {
    fn default() -> GzipConfig {
        let types = ["text/", "application/json", "application/javascript", "application/xml", "image/svg+xml"];
        GzipConfig { level: 6, types: types.iter().map(|t| t.to_string()).collect(), min_size: 256, max_streams: 256 }
    }
}

/// Whether the request accepts a gzip-coded response (RFC 9110 12.5.3: `gzip` or `x-gzip`
/// listed with a nonzero q, or `*` with a nonzero q and gzip not refused).
pub fn accepts_gzip(request: &Request<'_>) -> bool {
    let mut star = false;
    let mut gzip: Option<bool> = None;
    for value in request.header_values("accept-encoding") {
        for item in value.split(|&b| b == b',') {
            let mut parts = item.split(|&b| b == b';');
            let coding = parts.next().unwrap_or_default().trim_ascii();
            let q_zero = parts.any(|p| {
                let p = p.trim_ascii();
                p.len() >= 2 && p[..2].eq_ignore_ascii_case(b"q=") && p[2..].iter().all(|&b| b == b'0' || b == b'.')
            });
            if coding.eq_ignore_ascii_case(b"gzip") || coding.eq_ignore_ascii_case(b"x-gzip") {
                gzip = Some(!q_zero);
            } else if coding == b"*" {
                star = !q_zero;
            }
        }
    }
    gzip.unwrap_or(star)
}

/// The head to send instead of `head` (a whole response head) when its body is to be
/// compressed: an HTTP/1.1 200 of a listed type, not encoded already, not `no-transform`,
/// not known to be shorter than `min_size`. `None`: pass it as it is.
pub fn rewrite_head(head: &[u8], cfg: &GzipConfig) -> Option<Vec<u8>> {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut res = httparse::Response::new(&mut headers);
    if !matches!(res.parse(head), Ok(httparse::Status::Complete(_))) || res.version != Some(1) || res.code != Some(200) {
        return None;
    }
    let all: &[httparse::Header<'_>] = res.headers;
    let named = |name: &'static str| all.iter().filter(move |h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value.trim_ascii());
    let media = named("content-type").next()?.split(|&b| b == b';').next().unwrap_or_default().trim_ascii().to_ascii_lowercase();
    let listed = cfg.types.iter().any(|t| match t.strip_suffix('/') {
        Some(_) => media.starts_with(t.as_bytes()),
        None => media == t.as_bytes(),
    });
    let encoded = named("content-encoding").any(|v| !v.eq_ignore_ascii_case(b"identity"));
    let no_transform =
        named("cache-control").any(|v| v.split(|&b| b == b',').any(|d| d.trim_ascii().eq_ignore_ascii_case(b"no-transform")));
    let short =
        named("content-length").next().and_then(|v| std::str::from_utf8(v).ok()?.parse::<u64>().ok()).is_some_and(|n| n < cfg.min_size);
    if !listed || encoded || no_transform || short {
        return None;
    }
    let mut out = Vec::with_capacity(head.len() + 64);
    out.extend_from_slice(b"HTTP/1.1 200 ");
    out.extend_from_slice(res.reason.unwrap_or("OK").as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut vary_done = false;
    for h in all {
        let name = h.name;
        if ["content-length", "transfer-encoding", "content-encoding"].iter().any(|n| name.eq_ignore_ascii_case(n)) {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        if name.eq_ignore_ascii_case("etag") && !h.value.starts_with(b"W/") {
            // The compressed body is another representation: a strong validator would lie.
            out.extend_from_slice(b"W/");
        }
        out.extend_from_slice(h.value);
        if name.eq_ignore_ascii_case("vary") {
            let listed =
                h.value.split(|&b| b == b',').any(|v| v.trim_ascii().eq_ignore_ascii_case(b"accept-encoding") || v.trim_ascii() == b"*");
            if !listed {
                out.extend_from_slice(b", Accept-Encoding");
            }
            vary_done = true;
        }
        out.extend_from_slice(b"\r\n");
    }
    if !vary_done {
        out.extend_from_slice(b"Vary: Accept-Encoding\r\n");
    }
    out.extend_from_slice(b"Content-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n");
    Some(out)
}

/// One response body being compressed.
pub struct GzipBody {
    encoder: GzEncoder<Vec<u8>>,
    /// Body bytes taken in and compressed bytes sent out, so far.
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl std::fmt::Debug for GzipBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GzipBody").field("bytes_in", &self.bytes_in).field("bytes_out", &self.bytes_out).finish()
    }
}

impl GzipBody {
    pub fn new(level: u32) -> GzipBody {
        GzipBody { encoder: GzEncoder::new(Vec::new(), Compression::new(level.clamp(1, 9))), bytes_in: 0, bytes_out: 0 }
    }

    /// Compresses `body` (bytes of the decoded body); what came out goes to `out` as a chunk.
    pub fn feed(&mut self, body: &[u8], out: &mut Vec<u8>) {
        self.bytes_in += body.len() as u64;
        // Writing into a Vec cannot fail.
        let _ = self.encoder.write_all(body);
        let produced = std::mem::take(self.encoder.get_mut());
        self.emit(&produced, out);
        // The buffer is kept for the next piece (no allocation per event once it has grown).
        *self.encoder.get_mut() = produced;
        self.encoder.get_mut().clear();
    }

    /// The end of the body: the compressor's last bytes and the gzip trailer, then the last
    /// chunk. Returns the compressed bytes sent out in all.
    pub fn finish(mut self, out: &mut Vec<u8>) -> u64 {
        let _ = self.encoder.try_finish();
        let rest = std::mem::take(self.encoder.get_mut());
        self.emit(&rest, out);
        out.extend_from_slice(b"0\r\n\r\n");
        self.bytes_out
    }

    fn emit(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if data.is_empty() {
            return;
        }
        self.bytes_out += data.len() as u64;
        // Writing into a Vec cannot fail; no string is made for the size line.
        let _ = write!(out, "{:x}\r\n", data.len());
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{parse_request, EMPTY_HEADER};
    use flate2::read::GzDecoder;
    use mbox_proto::http::{BodyDecoder, BodyLength};
    use std::io::Read;

    fn accepts(value: &str) -> bool {
        let head = format!("GET / HTTP/1.1\r\nHost: a\r\nAccept-Encoding: {value}\r\n\r\n");
        let mut headers = [EMPTY_HEADER; 16];
        accepts_gzip(&parse_request(head.as_bytes(), 4096, &mut headers).unwrap().unwrap())
    }

    #[test]
    fn accept_encoding_is_read_as_rfc_9110_says() {
        assert!(accepts("gzip") && accepts("deflate, gzip;q=0.5") && accepts("x-gzip") && accepts("*"));
        assert!(!accepts("identity") && !accepts("gzip;q=0") && !accepts("br, gzip; q=0.0") && !accepts("*, gzip;q=0"));
        let mut headers = [EMPTY_HEADER; 4];
        assert!(!accepts_gzip(&parse_request(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 4096, &mut headers).unwrap().unwrap()));
    }

    #[test]
    fn only_listed_types_not_encoded_and_not_too_short_are_rewritten() {
        let cfg = GzipConfig::default();
        let head =
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 5000\r\nETag: \"abc\"\r\nVary: Host\r\n\r\n";
        let new = String::from_utf8(rewrite_head(head, &cfg).unwrap()).unwrap();
        assert!(
            new.starts_with("HTTP/1.1 200 OK\r\n") && new.ends_with("Content-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"),
            "{new}"
        );
        assert!(!new.contains("Content-Length") && new.contains("ETag: W/\"abc\"") && new.contains("Vary: Host, Accept-Encoding"), "{new}");
        for other in [
            &b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 5000\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Encoding: br\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nCache-Control: public, no-transform\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n\r\n",
            b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n",
        ] {
            assert!(rewrite_head(other, &cfg).is_none(), "{}", String::from_utf8_lossy(other));
        }
    }

    #[test]
    fn a_body_compressed_in_pieces_decodes_to_itself_through_its_chunks() {
        for len in [0usize, 1, 1000, 300_000] {
            let body: Vec<u8> = (0..len as u32).map(|i| b"the quick brown fox "[(i % 20) as usize] ^ (i / 5000) as u8).collect();
            let mut gz = GzipBody::new(6);
            let mut out = Vec::new();
            for piece in body.chunks(1448) {
                gz.feed(piece, &mut out);
            }
            let bytes_in = gz.bytes_in;
            let bytes_out = gz.finish(&mut out);
            // Undo the chunked framing, then the gzip.
            let mut dechunked = Vec::new();
            let mut decoder = BodyDecoder::new(BodyLength::Chunked);
            let used = decoder.feed(&out, &mut |d| dechunked.extend_from_slice(d)).unwrap();
            assert!(decoder.is_done() && used == out.len(), "the last chunk ends the framing ({len} bytes)");
            let mut plain = Vec::new();
            GzDecoder::new(&dechunked[..]).read_to_end(&mut plain).unwrap();
            assert!(plain == body, "{len} bytes back byte-exact");
            assert_eq!(bytes_in, len as u64);
            assert!(bytes_out <= dechunked.len() as u64);
            if len == 300_000 {
                assert!(dechunked.len() < len / 10, "repetitive text compresses: {} bytes", dechunked.len());
            }
        }
    }
}
