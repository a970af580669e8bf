//! TLS: the ClientHello at the start of a client's stream and the server name (SNI) in it, and
//! the server's first flight (the version it chose, its certificates). Handshake messages
//! split over several records are put back together (in a small buffer: this is once per
//! connection).

use crate::Parse;

/// What a ClientHello tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    /// The `server_name` extension's host name, if any.
    pub sni: Option<Vec<u8>>,
    /// The highest version offered in the legacy field (0x0303 for TLS 1.2 and 1.3).
    pub legacy_version: u16,
    /// The protocols of the `application_layer_protocol_negotiation` extension, in order.
    pub alpn: Vec<Vec<u8>>,
}

/// Handshake bytes accepted in a ClientHello before it is taken for garbage.
const MAX_HELLO: usize = 1 << 16;

/// Parses the ClientHello at the start of `stream` (the client's first bytes).
pub fn client_hello(stream: &[u8]) -> Parse<ClientHello> {
    handshake(stream, CLIENT_HELLO, MAX_HELLO, |message| first_message(message, parse_hello))
}

/// Parses a ClientHello handshake message at the start of `message` (its type, length and
/// body, without the record layer: QUIC carries it so, in CRYPTO frames).
pub fn client_hello_message(message: &[u8]) -> Parse<ClientHello> {
    let Some(head) = message.get(..4) else {
        return if message.first().is_some_and(|&t| t != CLIENT_HELLO) { Parse::Invalid } else { Parse::Partial };
    };
    let len = usize::from(head[1]) << 16 | usize::from(head[2]) << 8 | usize::from(head[3]);
    if head[0] != CLIENT_HELLO || len > MAX_HELLO {
        return Parse::Invalid;
    }
    match message.get(4..4 + len) {
        Some(body) => parse_hello(body).map_or(Parse::Invalid, Parse::Done),
        None => Parse::Partial,
    }
}

/// Whether `stream` starts like a ClientHello (a handshake record of TLS or SSL 3 whose first
/// message is a ClientHello), however much of it has come: what protocol detection needs.
pub fn starts_client_hello(stream: &[u8]) -> bool {
    stream.len() >= 6 && stream[0] == 22 && stream[1] == 3 && stream[5] == CLIENT_HELLO
}

/// What a ServerHello tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerHello {
    /// The version the server chose: its `supported_versions` extension (TLS 1.3), else the
    /// legacy field.
    pub version: u16,
}

/// Parses the ServerHello at the start of `stream` (the server's first bytes).
pub fn server_hello(stream: &[u8]) -> Parse<ServerHello> {
    handshake(stream, SERVER_HELLO, MAX_HELLO, |message| first_message(message, parse_server_hello))
}

/// A hello is its side's first message: parsed from its body, whatever follows.
fn first_message<T>(message: Option<(u8, &[u8])>, parse: fn(&[u8]) -> Option<T>) -> Step<T> {
    match message.and_then(|(_, body)| parse(body)) {
        Some(hello) => Step::Done(hello),
        None => Step::Invalid,
    }
}

/// A version's name as Suricata writes it in eve.json (`TLS 1.2`, `TLSv1`, ...).
pub fn version_name(version: u16) -> &'static str {
    match version {
        0x0200 => "SSLv2",
        0x0300 => "SSLv3",
        0x0301 => "TLSv1",
        0x0302 => "TLS 1.1",
        0x0303 => "TLS 1.2",
        0x0304 => "TLS 1.3",
        0x7f1c => "TLS 1.3 draft-28",
        0x7f1b => "TLS 1.3 draft-27",
        0x7f1a => "TLS 1.3 draft-26",
        0x7f19 => "TLS 1.3 draft-25",
        0x7f18 => "TLS 1.3 draft-24",
        0x7f17 => "TLS 1.3 draft-23",
        0x7f16 => "TLS 1.3 draft-22",
        0x7f15 => "TLS 1.3 draft-21",
        0x7f14 => "TLS 1.3 draft-20",
        0x7f13 => "TLS 1.3 draft-19",
        0x7f12 => "TLS 1.3 draft-18",
        0x7f11 => "TLS 1.3 draft-17",
        0x7f10 => "TLS 1.3 draft-16",
        0x7f01..=0x7f0f => "TLS 1.3 draft-<16",
        0xfb14 => "TLS 1.3 draft-20-fb",
        0xfb15 => "TLS 1.3 draft-21-fb",
        0xfb16 => "TLS 1.3 draft-22-fb",
        0xfb17 => "TLS 1.3 draft-23-fb",
        0xfb1a => "TLS 1.3 draft-26-fb",
        _ => "UNDETERMINED",
    }
}

/// Record types.
const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;

/// Handshake message types.
const CLIENT_HELLO: u8 = 1;
const SERVER_HELLO: u8 = 2;
const CERTIFICATE: u8 = 11;
const SERVER_KEY_EXCHANGE: u8 = 12;
const CERTIFICATE_REQUEST: u8 = 13;
const SERVER_HELLO_DONE: u8 = 14;

/// Handshake bytes accepted in a server's first flight (its certificate chain is most of it;
/// Zeek's test of a fragmented handshake has a certificate of 340 KB).
pub const MAX_FLIGHT: usize = 1 << 20;

/// What a server's first flight tells: the version it chose and the certificates it sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFlight {
    pub version: u16,
    /// The `Certificate` message's chain, leaf first, each certificate's DER. Empty in TLS 1.3
    /// (the server encrypts it) and when the server sent none (a resumed session, PSK).
    pub certificates: Vec<Vec<u8>>,
}

/// Parses the server's first flight at the start of `stream` (the server's first bytes): the
/// ServerHello, then the messages after it up to the `Certificate` message, or to whatever
/// shows it has none (`ServerHelloDone`, a key exchange, a record that is not handshake, TLS
/// 1.3).
pub fn server_flight(stream: &[u8]) -> Parse<ServerFlight> {
    let mut version = None;
    handshake(stream, SERVER_HELLO, MAX_FLIGHT, |message| {
        let Some((kind, body)) = message else {
            // Another record type (ChangeCipherSpec of a resumed session): no certificates.
            return version.map_or(Step::Invalid, |version| Step::Done(ServerFlight { version, certificates: Vec::new() }));
        };
        let Some(chosen) = version else {
            // The first message, a ServerHello (`handshake` checked its type).
            return match parse_server_hello(body) {
                Some(hello) if is_tls13(hello.version) => Step::Done(ServerFlight { version: hello.version, certificates: Vec::new() }),
                Some(hello) => {
                    version = Some(hello.version);
                    Step::More
                }
                None => Step::Invalid,
            };
        };
        match kind {
            CERTIFICATE => match certificate_list(body) {
                Some(certificates) => Step::Done(ServerFlight { version: chosen, certificates }),
                None => Step::Invalid,
            },
            SERVER_KEY_EXCHANGE | CERTIFICATE_REQUEST | SERVER_HELLO_DONE => {
                Step::Done(ServerFlight { version: chosen, certificates: Vec::new() })
            }
            _ => Step::More, // CertificateStatus and the like come after the certificates
        }
    })
}

/// Whether a version is TLS 1.3 or one of its drafts (whose flights after the ServerHello are
/// encrypted).
fn is_tls13(version: u16) -> bool {
    version == 0x0304 || (version >> 8) == 0x7f || (version >> 8) == 0xfb
}

/// A `Certificate` message's body: a 3-byte length, then each certificate with a 3-byte
/// length. `None` when the lengths disagree.
fn certificate_list(body: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut r = Reader(body);
    let len = r.u24()?;
    let mut list = Reader(r.take(len)?);
    let mut certificates = Vec::new();
    while !list.0.is_empty() {
        let len = list.u24()?;
        certificates.push(list.take(len)?.to_vec());
    }
    Some(certificates)
}

/// What a visitor of handshake messages decides after one.
enum Step<T> {
    Done(T),
    /// The next message is needed.
    More,
    Invalid,
}

/// Gathers a side's handshake messages from the records at the start of its stream and hands
/// each (its type and body) to `visit` until it decides; `None` when a record of another type
/// follows them. The first message must be of type `first`, and none may exceed `max` bytes.
fn handshake<T>(stream: &[u8], first: u8, max: usize, mut visit: impl FnMut(Option<(u8, &[u8])>) -> Step<T>) -> Parse<T> {
    let decide = |step: Step<T>| match step {
        Step::Done(t) => Some(Parse::Done(t)),
        Step::More => None,
        Step::Invalid => Some(Parse::Invalid),
    };
    let mut handshake: Vec<u8> = Vec::new();
    // Where the next message starts in `handshake`.
    let mut message = 0;
    let mut at = 0;
    loop {
        let start = &stream[at.min(stream.len())..];
        // A record of another type: after whole messages, the handshake's end; else not TLS.
        if start.first().is_some_and(|&c| c != HANDSHAKE && c != ALERT) {
            return match message > 0 && message == handshake.len() {
                true => decide(visit(None)).unwrap_or(Parse::Invalid),
                false => Parse::Invalid,
            };
        }
        let Some(header) = stream.get(at..at + 5) else {
            // A header still partial is already not one when its version says so.
            return if start.get(1).is_some_and(|&v| v != 3) { Parse::Invalid } else { Parse::Partial };
        };
        let (content, major, len) = (header[0], header[1], usize::from(u16::from_be_bytes([header[3], header[4]])));
        if major != 3 || len == 0 || len > 16_384 + 2048 {
            return Parse::Invalid;
        }
        let Some(payload) = stream.get(at + 5..at + 5 + len) else {
            // Use what has come so far to decide early that it is not the message looked for.
            let partial = &stream[at + 5..];
            if content == HANDSHAKE && handshake.is_empty() && !partial.is_empty() && partial[0] != first {
                return Parse::Invalid;
            }
            return Parse::Partial;
        };
        at += 5 + len;
        if content == ALERT {
            // A warning (a server's `unrecognized_name` before its hello): the handshake goes on.
            continue;
        }
        handshake.extend_from_slice(payload);
        // Not the message as soon as its type says so, as when the record is still partial.
        if handshake[0] != first {
            return Parse::Invalid;
        }
        while let Some(head) = handshake.get(message..message + 4) {
            let needed = usize::from(head[1]) << 16 | usize::from(head[2]) << 8 | usize::from(head[3]);
            if needed > max {
                return Parse::Invalid;
            }
            let Some(body) = handshake.get(message + 4..message + 4 + needed) else { break };
            if let Some(parse) = decide(visit(Some((head[0], body)))) {
                return parse;
            }
            message += 4 + needed;
        }
    }
}

/// The ServerHello body: version, random, session id, cipher, compression, extensions.
fn parse_server_hello(body: &[u8]) -> Option<ServerHello> {
    let mut r = Reader(body);
    let mut version = r.u16()?;
    r.skip(32)?; // random
    let session = usize::from(r.u8()?);
    r.skip(session)?;
    r.skip(3)?; // cipher suite, compression
    extensions(&mut r, |kind, data| {
        if kind == 43 && data.len() == 2 {
            version = u16::from_be_bytes([data[0], data[1]]); // supported_versions
        }
    })?;
    Some(ServerHello { version })
}

/// Hands each extension of a hello's extension block (its kind and data) to `each`: `None`
/// when the block overruns the hello. A hello without a block has none.
fn extensions(r: &mut Reader<'_>, mut each: impl FnMut(u16, &[u8])) -> Option<()> {
    if r.0.is_empty() {
        return Some(());
    }
    let len = usize::from(r.u16()?);
    let mut ext = Reader(r.take(len)?);
    while !ext.0.is_empty() {
        let kind = ext.u16()?;
        let len = usize::from(ext.u16()?);
        each(kind, ext.take(len)?);
    }
    Some(())
}

/// The ClientHello body: version, random, session id, ciphers, compression, extensions.
fn parse_hello(body: &[u8]) -> Option<ClientHello> {
    let mut r = Reader(body);
    let legacy_version = r.u16()?;
    r.skip(32)?; // random
    let session = usize::from(r.u8()?);
    r.skip(session)?;
    let ciphers = usize::from(r.u16()?);
    r.skip(ciphers)?;
    let compression = usize::from(r.u8()?);
    r.skip(compression)?;
    let (mut sni, mut alpn) = (None, Vec::new());
    extensions(&mut r, |kind, data| match kind {
        0 => sni = server_name(data),
        16 => alpn = protocols(data).unwrap_or_default(),
        _ => {}
    })?;
    Some(ClientHello { sni, legacy_version, alpn })
}

/// The protocol names of an ALPN extension (`None` when its list overruns it).
fn protocols(data: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut r = Reader(data);
    let list = usize::from(r.u16()?);
    let mut names = Reader(r.take(list)?);
    let mut out = Vec::new();
    while !names.0.is_empty() {
        let len = usize::from(names.u8()?);
        out.push(names.take(len)?.to_vec());
    }
    Some(out)
}

/// The host name in a `server_name` extension.
fn server_name(data: &[u8]) -> Option<Vec<u8>> {
    let mut r = Reader(data);
    let list = usize::from(r.u16()?);
    let mut names = Reader(r.take(list)?);
    while !names.0.is_empty() {
        let kind = names.u8()?;
        let len = usize::from(names.u16()?);
        let name = names.take(len)?;
        if kind == 0 {
            return Some(name.to_vec());
        }
    }
    None
}

/// A cursor over bytes that fails (None) instead of reading past the end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn u24(&mut self) -> Option<usize> {
        self.take(3).map(|b| usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]))
    }
}

/// Handshakes written as a client writes them, for tests (here, of the NFs, of QUIC's first
/// flight) and fuzzing.
pub mod testing {
    /// A ClientHello handshake message of `version` with `sni` (if any) and `pad` bytes of
    /// padding extension.
    pub fn client_hello_message(version: u16, sni: Option<&[u8]>, pad: usize) -> Vec<u8> {
        let mut ext = Vec::new();
        if let Some(sni) = sni {
            let mut name = vec![0u8];
            name.extend_from_slice(&(sni.len() as u16).to_be_bytes());
            name.extend_from_slice(sni);
            ext.extend_from_slice(&0u16.to_be_bytes());
            ext.extend_from_slice(&(name.len() as u16 + 2).to_be_bytes());
            ext.extend_from_slice(&(name.len() as u16).to_be_bytes());
            ext.extend_from_slice(&name);
        }
        ext.extend_from_slice(&21u16.to_be_bytes());
        ext.extend_from_slice(&(pad as u16).to_be_bytes());
        ext.resize(ext.len() + pad, 0);
        let mut body = version.to_be_bytes().to_vec();
        body.extend_from_slice(&[7; 32]); // random
        body.push(0); // no session id
        body.extend_from_slice(&[0, 2, 0x13, 0x01, 1, 0]); // one cipher suite, null compression
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let mut message = vec![1, 0, (body.len() >> 8) as u8, body.len() as u8];
        message.extend_from_slice(&body);
        message
    }

    /// Handshake bytes in TLS records of at most `max` bytes each.
    pub fn records(handshake: &[u8], max: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for part in handshake.chunks(max) {
            out.extend_from_slice(&[22, 3, 1]);
            out.extend_from_slice(&(part.len() as u16).to_be_bytes());
            out.extend_from_slice(part);
        }
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    use super::testing::records;

    /// A ClientHello handshake message with the given server name (and a padding extension of
    /// `pad` bytes, to make it as big as needed).
    pub(crate) fn hello_record(sni: &[u8], pad: usize) -> Vec<u8> {
        testing::client_hello_message(0x0303, Some(sni), pad)
    }

    #[test]
    fn the_server_name_in_one_record_or_several() {
        let hs = hello_record(b"www.netflix.com", 3000);
        for max in [16_384, 1000, 7] {
            let stream = records(&hs, max);
            let Parse::Done(h) = client_hello(&stream) else { panic!("max {max}") };
            assert_eq!(h.sni.as_deref(), Some(&b"www.netflix.com"[..]));
            assert_eq!(client_hello(&stream[..stream.len() - 1]), Parse::Partial);
        }
    }

    #[test]
    fn a_server_hello_names_the_chosen_version() {
        // TLS 1.3: legacy 1.2, supported_versions 1.3.
        let mut body = vec![3, 3];
        body.extend_from_slice(&[9; 32]);
        body.extend_from_slice(&[0, 0x13, 0x01, 0]);
        body.extend_from_slice(&[0, 6, 0, 43, 0, 2, 3, 4]);
        let mut hs = vec![2, 0, 0, body.len() as u8];
        hs.extend_from_slice(&body);
        let Parse::Done(h) = server_hello(&records(&hs, 16_384)) else { panic!() };
        assert_eq!(version_name(h.version), "TLS 1.3");
        assert_eq!(server_hello(&records(&hello_record(b"a", 0), 16_384)), Parse::Invalid, "a ClientHello");
        assert_eq!(version_name(0x0301), "TLSv1");
        assert_eq!(version_name(0x1234), "UNDETERMINED");
    }

    /// A handshake message of `kind` with `body`.
    fn message(kind: u8, body: &[u8]) -> Vec<u8> {
        let len = body.len();
        let mut m = vec![kind, (len >> 16) as u8, (len >> 8) as u8, len as u8];
        m.extend_from_slice(body);
        m
    }

    /// A server's first flight: ServerHello (TLS 1.2, or 1.3 by supported_versions), then a
    /// Certificate message with `certs` and ServerHelloDone.
    fn flight(tls13: bool, certs: &[&[u8]]) -> Vec<u8> {
        let mut hello = vec![3, 3];
        hello.extend_from_slice(&[9; 32]);
        hello.extend_from_slice(&[0, 0x13, 0x01, 0]);
        if tls13 {
            hello.extend_from_slice(&[0, 6, 0, 43, 0, 2, 3, 4]);
        }
        let mut list = Vec::new();
        for cert in certs {
            list.extend_from_slice(&(cert.len() as u32).to_be_bytes()[1..]);
            list.extend_from_slice(cert);
        }
        let mut body = (list.len() as u32).to_be_bytes()[1..].to_vec();
        body.extend_from_slice(&list);
        let mut out = message(SERVER_HELLO, &hello);
        out.extend(message(CERTIFICATE, &body));
        out.extend(message(SERVER_HELLO_DONE, &[]));
        out
    }

    #[test]
    fn a_server_flight_gives_its_certificates_from_records_of_any_size() {
        let (leaf, ca) = (vec![0x30; 3000], vec![0x31; 1200]);
        let hs = flight(false, &[&leaf, &ca]);
        for max in [16_384, 1000, 7] {
            let stream = records(&hs, max);
            let Parse::Done(f) = server_flight(&stream) else { panic!("max {max}") };
            assert_eq!((f.version, f.certificates), (0x0303, vec![leaf.clone(), ca.clone()]));
            // Cut before the Certificate message is whole: more is needed.
            assert_eq!(server_flight(&stream[..stream.len() - 10]), Parse::Partial, "max {max}");
        }
        // A warning alert before the hello (a server's unrecognized_name) is passed over.
        let mut stream = vec![ALERT, 3, 3, 0, 2, 1, 112];
        stream.extend(records(&hs, 16_384));
        assert!(matches!(server_flight(&stream), Parse::Done(f) if f.certificates.len() == 2));
        assert!(matches!(server_hello(&stream), Parse::Done(h) if h.version == 0x0303));
    }

    #[test]
    fn a_flight_without_certificates_in_the_clear() {
        // TLS 1.3: whatever follows the hello is encrypted.
        let hs = flight(true, &[b"x"]);
        let stream = records(&hs, 50); // the hello is the first record's 50 bytes
        assert_eq!(server_flight(&stream[..55 + 3]), Parse::Done(ServerFlight { version: 0x0304, certificates: vec![] }));
        // A resumed session: the hello, then ChangeCipherSpec.
        let hello_only = {
            let mut body = vec![3, 3];
            body.extend_from_slice(&[9; 32]);
            body.extend_from_slice(&[0, 0x13, 0x01, 0]);
            message(SERVER_HELLO, &body)
        };
        let mut stream = records(&hello_only, 16_384);
        assert_eq!(server_flight(&stream), Parse::Partial);
        stream.extend_from_slice(&[20, 3, 3, 0, 1, 1]);
        assert_eq!(server_flight(&stream), Parse::Done(ServerFlight { version: 0x0303, certificates: vec![] }));
        assert_eq!(server_flight(&stream[..stream.len() - 5]), Parse::Done(ServerFlight { version: 0x0303, certificates: vec![] }));
        // Not a server's flight: a ClientHello, a broken list, plain text.
        assert_eq!(server_flight(&records(&hello_record(b"a", 0), 16_384)), Parse::Invalid);
        let mut hs = flight(false, &[b"abc"]);
        let at = hs.len() - 4 - 3 - 1; // the certificate's last length byte
        hs[at - 3] += 1;
        assert_eq!(server_flight(&records(&hs, 16_384)), Parse::Invalid);
        assert_eq!(server_flight(b"220 mail.example.com ESMTP\r\n"), Parse::Invalid);
    }

    #[test]
    fn not_tls_and_broken_hellos() {
        assert_eq!(client_hello(b"GET / HTTP/1.1\r\n"), Parse::Invalid);
        assert_eq!(client_hello(b"\x16\x03\x01\x00\x05\x02\x00"), Parse::Invalid, "a ServerHello");
        let mut hs = hello_record(b"a.b", 0);
        hs.truncate(hs.len() - 3);
        hs[3] -= 3; // consistent lengths, but the extensions run out
        assert_eq!(client_hello(&records(&hs, 16_384)), Parse::Invalid);
    }

    #[test]
    fn another_handshake_type_is_refused_before_its_header_is_whole() {
        // Found by the tls_hello fuzz target: a first record holding 3 bytes of a handshake
        // whose type is not ClientHello was Partial once complete, though Invalid while cut
        // (a stream's verdict must not go back from Invalid as it grows).
        let stream = b"\x16\x03\x16\x00\x03\xe3\xfc\x26\x00";
        assert_eq!(client_hello(&stream[..6]), Parse::Invalid);
        assert_eq!(client_hello(stream), Parse::Invalid);
        assert_eq!(client_hello(b"\x16\x03\x01\x00\x02\x01\x00"), Parse::Partial, "a ClientHello's first two bytes");
    }
}
