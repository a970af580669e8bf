//! TLS (mbox_proto::tls): the ClientHello at the start of a client's stream, gathered from
//! the records it is split into, and its server name; the server's first flight and its
//! certificates (described by mbox_proto::x509).
//!
//! Like the HTTP heads it is parsed as the stream grows, so a prefix's parse must agree with
//! the whole's (see `crate::http`). And a ClientHello written with any server name and cut
//! into records of any size parses back to that name and version.

use crate::agrees;
use mbox_proto::tls::testing::{client_hello_message as hello, records};
use mbox_proto::tls::{client_hello, server_flight};
use mbox_proto::{x509, Parse};

/// Where to cut a TLS stream to check prefixes: inside the first record header, just after
/// it, a little into its body, halfway, one byte short.
fn record_cuts(data: &[u8]) -> impl Iterator<Item = usize> + '_ {
    [5, 6, 9, data.len() / 2, data.len().saturating_sub(1)].into_iter().filter(|&cut| cut < data.len())
}

/// A ClientHello at the start of arbitrary bytes; and one written from them, parsed back.
pub fn fuzz_tls_hello(data: &[u8]) {
    let full = client_hello(data);
    if let Parse::Done(h) = &full {
        assert!(h.sni.as_ref().is_none_or(|s| s.len() < data.len()), "a server name longer than its input");
    }
    for cut in record_cuts(data) {
        agrees(&client_hello(&data[..cut]), &full, cut, "a ClientHello");
    }
    // Written and read back: the name is the first bytes (up to 300), the record size and
    // padding come from the last two.
    let (Some(&a), Some(&b)) = (data.first(), data.last()) else { return };
    let sni = (a & 1 == 1).then(|| &data[..data.len().min(300)]);
    let version = u16::from_be_bytes([3, b & 3]);
    let message = hello(version, sni, usize::from(b) * 8);
    let max = [1, 3, 100, 1000, 16_384][usize::from(a >> 1) % 5];
    let stream = records(&message, max);
    let back = client_hello(&stream);
    assert_eq!(
        back,
        Parse::Done(mbox_proto::tls::ClientHello { sni: sni.map(<[u8]>::to_vec), legacy_version: version, alpn: Vec::new() }),
        "a ClientHello of {} bytes in records of {max}",
        message.len()
    );
    assert_eq!(client_hello(&stream[..stream.len() - 1]), Parse::Partial, "cut one byte short");
}

/// A server's first flight at the start of arbitrary bytes: a prefix's parse agrees with the
/// whole's, every certificate lies within the input, and describing any certificate (or the
/// input itself as one) never panics.
pub fn fuzz_tls_server(data: &[u8]) {
    let full = server_flight(data);
    if let Parse::Done(f) = &full {
        assert!(f.certificates.iter().map(Vec::len).sum::<usize>() < data.len(), "certificates longer than their input");
        for der in &f.certificates {
            let _ = x509::certificate_fields(der);
        }
    }
    let _ = x509::certificate_fields(data);
    for cut in record_cuts(data) {
        agrees(&server_flight(&data[..cut]), &full, cut, "a server's flight");
    }
}
