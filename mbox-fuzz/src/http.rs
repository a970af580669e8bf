//! HTTP/1 (mbox_proto::http): request and response heads, and message bodies.
//!
//! sig-match parses a direction's stream as it grows: a head found in the first bytes is
//! taken, and a stream found not to be HTTP is never parsed again. So besides never
//! panicking and returning slices of its input, a head parser must agree with itself on
//! prefixes: a head parsed from a prefix is the head of the whole input, and a prefix that is
//! not HTTP does not become HTTP with more bytes. A body decoder must decode the same bytes
//! however its input is split, and decode what a chunked encoder writes back to the data.

use crate::{agrees, cuts, is_within};
use mbox_proto::http::{request_head, response_head, BadChunk, BodyDecoder, BodyLength, RequestHead, ResponseHead};
use mbox_proto::Parse;

fn check_request(h: &RequestHead<'_>, data: &[u8]) {
    assert!(h.head_len <= data.len(), "head_len {} past the input ({} bytes)", h.head_len, data.len());
    let head = &data[..h.head_len];
    for field in [Some(h.method), Some(h.uri), h.host, h.user_agent].into_iter().flatten() {
        assert!(is_within(field, head), "a field outside the head");
    }
    assert!(!h.method.is_empty(), "an empty method");
    assert!(h.body != BodyLength::UntilClose, "a request's body never runs until the connection closes");
}

fn check_response(h: &ResponseHead<'_>, data: &[u8], head_request: bool) {
    assert!(h.head_len <= data.len(), "head_len {} past the input ({} bytes)", h.head_len, data.len());
    if let Some(ct) = h.content_type {
        assert!(is_within(ct, &data[..h.head_len]), "Content-Type outside the head");
    }
    if head_request || (100..200).contains(&h.status) || h.status == 204 || h.status == 304 {
        assert_eq!(h.body, BodyLength::None, "status {} (HEAD: {head_request}) has no body", h.status);
    }
}

/// A request head at the start of arbitrary bytes.
pub fn fuzz_http_request(data: &[u8]) {
    let full = request_head(data);
    if let Parse::Done(h) = &full {
        check_request(h, data);
    }
    for cut in cuts(data) {
        agrees(&request_head(&data[..cut]), &full, cut, "an HTTP head");
    }
}

/// A response head at the start of arbitrary bytes, answering a HEAD request or not.
pub fn fuzz_http_response(data: &[u8]) {
    for head_request in [false, true] {
        let full = response_head(data, head_request);
        if let Parse::Done(h) = &full {
            check_response(h, data, head_request);
        }
        for cut in cuts(data) {
            agrees(&response_head(&data[..cut], head_request), &full, cut, "an HTTP head");
        }
    }
    // Whether the request was HEAD changes the body, not whether this is a head.
    let (a, b) = (response_head(data, false), response_head(data, true));
    match (&a, &b) {
        (Parse::Done(a), Parse::Done(b)) => assert_eq!((a.status, a.head_len, a.content_type), (b.status, b.head_len, b.content_type)),
        _ => assert_eq!(std::mem::discriminant(&a), std::mem::discriminant(&b)),
    }
}

/// What a decoder made of a body fed in pieces of the given sizes (cycled; the whole input
/// at once when empty): the body bytes, the input bytes consumed (`None` once the framing was
/// found bad: a failed feed does not say how far it got), and whether the body ended.
fn decode(length: BodyLength, input: &[u8], sizes: &[usize]) -> (Vec<u8>, Option<usize>, bool) {
    let mut decoder = BodyDecoder::new(length);
    let (mut body, mut used) = (Vec::new(), 0);
    let mut pieces = sizes.iter().cycle();
    while used < input.len() && !decoder.is_done() {
        let n = pieces.next().map_or(input.len(), |&n| n.max(1)).min(input.len() - used);
        let piece = &input[used..used + n];
        match decoder.feed(piece, &mut |d| {
            assert!(is_within(d, piece), "body bytes from outside the piece fed");
            body.extend_from_slice(d);
        }) {
            Ok(consumed) => {
                assert!(consumed <= n, "consumed {consumed} of {n} bytes");
                assert!(consumed == n || decoder.is_done(), "stopped inside its input ({consumed} of {n}) without ending");
                used += consumed;
            }
            Err(BadChunk) => return (body, None, decoder.is_done()),
        }
    }
    (body, Some(used), decoder.is_done())
}

/// Encodes `data` as chunks of the given sizes (cycled), with a chunk extension and a trailer
/// when asked, and the last chunk.
fn chunked(data: &[u8], sizes: &[usize], extension: bool, trailer: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut sizes = sizes.iter().cycle();
    let mut rest = data;
    while !rest.is_empty() {
        let n = sizes.next().map_or(rest.len(), |&n| n.max(1)).min(rest.len());
        out.extend_from_slice(format!("{n:x}").as_bytes());
        if extension {
            out.extend_from_slice(b";name=\"v\"");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&rest[..n]);
        out.extend_from_slice(b"\r\n");
        rest = &rest[n..];
    }
    out.extend_from_slice(b"0\r\n");
    if trailer {
        out.extend_from_slice(b"Expires: never\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// A body decoder on arbitrary bytes, whole and in pieces; and chunked encoding round trips.
///
/// Input: a kind byte (`% 4`: no body, Content-Length (u16 from the next two bytes), chunked,
/// until close), then the body bytes.
pub fn fuzz_http_body(input: &[u8]) {
    let Some((&kind, rest)) = input.split_first() else { return };
    let (length, body) = match kind % 4 {
        0 => (BodyLength::None, rest),
        1 if rest.len() >= 2 => (BodyLength::Length(u64::from(u16::from_le_bytes([rest[0], rest[1]]))), &rest[2..]),
        1 => return,
        2 => (BodyLength::Chunked, rest),
        _ => (BodyLength::UntilClose, rest),
    };
    let whole = decode(length, body, &[]);
    // Piece sizes from the kind byte: 1, 2, 3 ... bytes, up to 64 at a time.
    let sizes: Vec<usize> = (1..=usize::from(kind >> 2).max(1)).collect();
    let pieces = decode(length, body, &sizes);
    assert_eq!(whole, pieces, "the same body fed at once and in pieces of {sizes:?}");
    let (decoded, used, done) = whole;
    if let Some(used) = used {
        assert!(decoded.len() <= used && used <= body.len());
    } else {
        assert!(length == BodyLength::Chunked && !done, "only chunked framing can be bad, and not once the body ended");
    }
    match length {
        BodyLength::None => assert!(decoded.is_empty() && used == Some(0) && done),
        BodyLength::Length(n) => assert_eq!(decoded, body[..body.len().min(n as usize)]),
        BodyLength::UntilClose => assert!(decoded == body && !done),
        BodyLength::Chunked => assert!(decoded.len() <= body.len()),
    }
    // Chunked round trip of the body bytes, followed by the next message's first bytes.
    let data = &body[..body.len().min(4096)];
    let mut wire = chunked(data, &sizes, kind & 0x40 != 0, kind & 0x80 != 0);
    let end = wire.len();
    wire.extend_from_slice(b"GET / HTTP/1.1\r\n");
    for sizes in [&[][..], &sizes[..]] {
        let (decoded, used, done) = decode(BodyLength::Chunked, &wire, sizes);
        assert!(decoded == data && used == Some(end) && done, "chunked round trip of {} bytes in pieces of {sizes:?}", data.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loose_head_longer_than_its_limit_passes_the_request_target() {
        // Past 32 KiB a loose head (a control byte in a value) was not HTTP in its first
        // 32 KiB, yet HTTP whole once its blank line came: the prefix agreement failed. The
        // fuzzer's inputs are shorter than that (libFuzzer's -max_len), so this is kept here
        // rather than as a seed.
        let mut head = b"GET / HTTP/1.1\r\nX: \x01\r\n".to_vec();
        while head.len() < 33_000 {
            head.extend_from_slice(b"X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        head.extend_from_slice(b"\r\n");
        fuzz_http_request(&head);
    }
}
